//! The private DNS ABI: the name key both sides build (userspace from a name, the data
//! path from a query's wire name), the entry a key leads to, and the per-VPC answer
//! counters. Never holds a lookup.
//!
//! A name's key is its labels from the last to the first, each label's bytes reversed
//! and followed by a 0 separator, lowercase: `ab.cd` -> `dc\0ba\0`. So every zone a
//! name lies in is a byte prefix of the name's key ending at a separator, and the LPM
//! trie `PL_DNS` finds the most specific entry for a name in one lookup (RFC 1034 3.1:
//! names compare case-insensitively, label by label).

/// `PL_DNS`: LPM trie, key [`DnsName`] (prefix = the whole key of an entry's name),
/// value [`DnsEntry`].
pub const MAP_DNS: &str = "PL_DNS";
/// Per VPC id: [`DnsStats`] (per CPU).
pub const MAP_DNS_STATS: &str = "PL_DNS_STATS";
/// Per CPU: the data path's scratch space for one query.
pub const MAP_DNS_SCRATCH: &str = "PL_DNS_SCRATCH";
pub const MAX_DNS_NAMES: u32 = 65_536;
/// A wire name is at most 255 bytes with its root label (RFC 1035 3.1); its key drops
/// the root's length byte.
pub const DNS_KEY_MAX: usize = 254;
/// `PL_EP_IPS` value of a VPC's DNS address: the gateway answers ARP for it and serves
/// DNS queries sent to it.
pub const EP_DNS: u32 = u32::MAX - 1;

/// LPM data of `PL_DNS`: the VPC (big-endian, always inside the prefix) and the key.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DnsName {
    pub vpc_id_be: [u8; 2],
    pub key: [u8; DNS_KEY_MAX],
}
const _: () = assert!(size_of::<DnsName>() == 256);

/// The LPM prefix (bits) of a key of `key_len` bytes.
pub const fn dns_prefix_bits(key_len: usize) -> u32 {
    ((2 + key_len) * 8) as u32
}

/// A name with an A record (the address in `ip_be`).
pub const DNS_KIND_A: u8 = 1;
/// A name that exists without records of its own: a zone apex, or a name with names
/// below it (an "empty non-terminal", RFC 8020): NODATA, never NXDOMAIN.
pub const DNS_KIND_EXISTS: u8 = 2;

/// Value of `PL_DNS`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct DnsEntry {
    pub ip_be: u32,
    /// TTL of the A record, and of the SOA and negative answers of its zone.
    pub ttl: u32,
    /// The zone's SOA serial.
    pub serial: u32,
    /// Length of this entry's key: a query whose key is longer lies below it.
    pub key_len: u16,
    /// Length of the key of the zone the entry lies in (its SOA's owner).
    pub zone_key_len: u16,
    /// `DNS_KIND_*`.
    pub kind: u8,
    pub _pad: [u8; 3],
}
const _: () = assert!(size_of::<DnsEntry>() == 20);

/// Index into `DnsStats::answers`: the RCODE sent (RFC 1035 4.1.1, RFC 6891 BADVERS).
pub const DNS_NOERROR: usize = 0;
pub const DNS_FORMERR: usize = 1;
pub const DNS_NXDOMAIN: usize = 3;
pub const DNS_NOTIMP: usize = 4;
pub const DNS_REFUSED: usize = 5;
/// BADVERS is RCODE 16; counted in this slot.
pub const DNS_BADVERS: usize = 6;
pub const DNS_STAT_SLOTS: usize = 8;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DnsStats {
    pub answers: [u64; DNS_STAT_SLOTS],
}

impl DnsStats {
    /// (label, slot) of every RCODE the gateway sends.
    pub const RCODES: [(&'static str, usize); 6] = [
        ("noerror", DNS_NOERROR),
        ("formerr", DNS_FORMERR),
        ("nxdomain", DNS_NXDOMAIN),
        ("notimp", DNS_NOTIMP),
        ("refused", DNS_REFUSED),
        ("badvers", DNS_BADVERS),
    ];
}

/// The key of `name` (dotted, no trailing dot needed) in VPC `vpc_id`, and the key's
/// length; `None` when the name is not a name the gateway can hold (empty labels,
/// labels over 63 bytes, over 253 characters, bytes other than letters, digits, `-`, `_`).
pub fn dns_key(vpc_id: u16, name: &str) -> Option<(DnsName, usize)> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.len() > DNS_KEY_MAX - 1 {
        return None;
    }
    let mut out = DnsName { vpc_id_be: vpc_id.to_be_bytes(), key: [0; DNS_KEY_MAX] };
    let mut n = 0;
    for label in name.split('.').rev() {
        let ok = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
        if label.is_empty() || label.len() > 63 || !label.bytes().all(ok) {
            return None;
        }
        for b in label.bytes().rev() {
            out.key[n] = b.to_ascii_lowercase();
            n += 1;
        }
        out.key[n] = 0;
        n += 1;
    }
    Some((out, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> ([u8; DNS_KEY_MAX], usize) {
        let (k, n) = dns_key(1, name).unwrap();
        (k.key, n)
    }

    #[test]
    fn keys_reverse_labels_and_put_zones_first() {
        let (k, n) = key("Ab.cd");
        assert_eq!(&k[..n], b"dc\0ba\0");
        let (z, zn) = key("cd.");
        assert_eq!(&k[..zn], &z[..zn], "a zone's key is a prefix of its names' keys");
        let (other, _) = key("xcd");
        assert_ne!(&other[..zn], &z[..zn], "and of no name that merely ends the same");
    }

    #[test]
    fn what_cannot_be_a_key() {
        for bad in ["", ".", "a..b", "a b.c", "\u{e9}.example", &"a".repeat(64), &["a"; 128].join(".")] {
            assert!(dns_key(1, bad).is_none(), "{bad:?}");
        }
        let longest = ["abc"; 63].join(".") + ".d";
        assert_eq!(longest.len(), 253);
        assert_eq!(dns_key(1, &longest).unwrap().1, 254);
    }
}
