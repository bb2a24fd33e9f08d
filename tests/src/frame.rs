//! A small frame builder (Ethernet / ARP / IPv4 with options / TCP / UDP / ICMP) and a
//! decoder that verifies checksums on its own (RFC 1071, written here from scratch so
//! that a bug in the product's checksum code cannot hide itself).

use std::{fmt, net::Ipv4Addr};

pub type Mac = [u8; 6];

pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;

/// RFC 1071 checksum of `data` with `init` already summed in.
pub fn inet_checksum(data: &[u8], init: u32) -> u16 {
    let mut sum: u64 = init as u64;
    for pair in data.chunks(2) {
        let hi = pair[0] as u64;
        let lo = pair.get(1).copied().unwrap_or(0) as u64;
        sum += (hi << 8) | lo;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn pseudo_sum(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, len: usize) -> u32 {
    let s = src.octets();
    let d = dst.octets();
    let mut sum = 0u32;
    for w in [[s[0], s[1]], [s[2], s[3]], [d[0], d[1]], [d[2], d[3]]] {
        sum += u16::from_be_bytes(w) as u32;
    }
    sum + proto as u32 + len as u32
}

#[derive(Clone, Debug)]
pub enum L4 {
    Tcp { sport: u16, dport: u16, flags: u8, seq: u32, ack: u32, window: u16 },
    Udp { sport: u16, dport: u16, zero_checksum: bool },
    Icmp { kind: u8, code: u8 },
    /// An ICMP error: `rest` is the header's second word (the MTU of a
    /// fragmentation-needed); the quoted packet goes in the payload.
    IcmpError { kind: u8, code: u8, rest: u32 },
    Raw { proto: u8 },
}

/// An IPv4 packet in an Ethernet frame, described field by field.
#[derive(Clone, Debug)]
pub struct Packet {
    pub src_mac: Mac,
    pub dst_mac: Mac,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub ttl: u8,
    pub id: u16,
    /// Raw flags + fragment offset field (e.g. 0x4000 = DF, 0x2000 = MF).
    pub frag: u16,
    pub options: Vec<u8>,
    /// TCP options (a multiple of 4 bytes).
    pub tcp_options: Vec<u8>,
    pub l4: L4,
    pub payload: Vec<u8>,
}

impl Packet {
    fn base(src: Ipv4Addr, dst: Ipv4Addr, l4: L4) -> Packet {
        Packet {
            src_mac: [0x02, 0, 0, 0, 0, 0x01],
            dst_mac: [0x02, 0, 0, 0, 0, 0x02],
            src,
            dst,
            ttl: 64,
            id: 0x1c46,
            frag: 0x4000,
            options: vec![],
            tcp_options: vec![],
            l4,
            payload: vec![],
        }
    }

    pub fn tcp(src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), flags: u8) -> Packet {
        let l4 = L4::Tcp { sport: src.1, dport: dst.1, flags, seq: 1000, ack: 0, window: 64240 };
        Packet::base(src.0, dst.0, l4)
    }

    pub fn udp(src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16)) -> Packet {
        Packet::base(src.0, dst.0, L4::Udp { sport: src.1, dport: dst.1, zero_checksum: false })
    }

    pub fn icmp_echo(src: Ipv4Addr, dst: Ipv4Addr) -> Packet {
        Packet::base(src, dst, L4::Icmp { kind: 8, code: 0 })
    }

    /// An ICMP error quoting `quote` (the IP packet, from its IP header on).
    pub fn icmp_error(src: Ipv4Addr, dst: Ipv4Addr, kind: u8, code: u8, rest: u32, quote: &[u8]) -> Packet {
        let mut p = Packet::base(src, dst, L4::IcmpError { kind, code, rest });
        p.payload = quote.to_vec();
        p.frag = 0;
        p.id = 0;
        p
    }

    pub fn ttl(mut self, t: u8) -> Self {
        self.ttl = t;
        self
    }
    pub fn tcp_options(mut self, o: &[u8]) -> Self {
        assert!(o.len().is_multiple_of(4) && o.len() <= 40, "TCP options are 4-byte words, at most 40 bytes");
        self.tcp_options = o.to_vec();
        self
    }
    /// The IP packet (no Ethernet header): what an ICMP error quotes.
    pub fn ip_bytes(&self) -> Vec<u8> {
        self.build()[14..].to_vec()
    }

    pub fn macs(mut self, src: Mac, dst: Mac) -> Self {
        self.src_mac = src;
        self.dst_mac = dst;
        self
    }
    pub fn seq_ack(mut self, s: u32, a: u32) -> Self {
        if let L4::Tcp { seq, ack, .. } = &mut self.l4 {
            *seq = s;
            *ack = a;
        }
        self
    }
    pub fn payload(mut self, p: &[u8]) -> Self {
        self.payload = p.to_vec();
        self
    }
    pub fn options(mut self, o: &[u8]) -> Self {
        assert!(o.len().is_multiple_of(4) && o.len() <= 40, "IPv4 options are 4-byte words, at most 40 bytes");
        self.options = o.to_vec();
        self
    }
    pub fn frag(mut self, f: u16) -> Self {
        self.frag = f;
        self
    }
    pub fn udp_no_checksum(mut self) -> Self {
        if let L4::Udp { zero_checksum, .. } = &mut self.l4 {
            *zero_checksum = true;
        }
        self
    }

    pub fn proto(&self) -> u8 {
        match self.l4 {
            L4::Tcp { .. } => 6,
            L4::Udp { .. } => 17,
            L4::Icmp { .. } | L4::IcmpError { .. } => 1,
            L4::Raw { proto } => proto,
        }
    }

    fn l4_bytes(&self) -> Vec<u8> {
        let mut b = Vec::new();
        match self.l4 {
            L4::Tcp { sport, dport, flags, seq, ack, window } => {
                b.extend(sport.to_be_bytes());
                b.extend(dport.to_be_bytes());
                b.extend(seq.to_be_bytes());
                b.extend(ack.to_be_bytes());
                b.push(((5 + self.tcp_options.len() / 4) as u8) << 4);
                b.push(flags);
                b.extend(window.to_be_bytes());
                b.extend([0, 0, 0, 0]);
                b.extend(&self.tcp_options);
                b.extend(&self.payload);
                let c = inet_checksum(&b, pseudo_sum(self.src, self.dst, 6, b.len()));
                b[16..18].copy_from_slice(&c.to_be_bytes());
            }
            L4::Udp { sport, dport, zero_checksum } => {
                b.extend(sport.to_be_bytes());
                b.extend(dport.to_be_bytes());
                b.extend(((8 + self.payload.len()) as u16).to_be_bytes());
                b.extend([0, 0]);
                b.extend(&self.payload);
                if !zero_checksum {
                    let mut c = inet_checksum(&b, pseudo_sum(self.src, self.dst, 17, b.len()));
                    if c == 0 {
                        c = 0xffff;
                    }
                    b[6..8].copy_from_slice(&c.to_be_bytes());
                }
            }
            L4::Icmp { kind, code } => {
                b.extend([kind, code, 0, 0, 0x12, 0x34, 0, 1]);
                b.extend(&self.payload);
                let c = inet_checksum(&b, 0);
                b[2..4].copy_from_slice(&c.to_be_bytes());
            }
            L4::IcmpError { kind, code, rest } => {
                b.extend([kind, code, 0, 0]);
                b.extend(rest.to_be_bytes());
                b.extend(&self.payload);
                let c = inet_checksum(&b, 0);
                b[2..4].copy_from_slice(&c.to_be_bytes());
            }
            L4::Raw { .. } => b.extend(&self.payload),
        }
        b
    }

    /// The frame's bytes, every checksum correct.
    pub fn build(&self) -> Vec<u8> {
        let l4 = self.l4_bytes();
        let ihl = 20 + self.options.len();
        let mut ip = Vec::with_capacity(ihl);
        ip.push(0x40 | (ihl / 4) as u8);
        ip.push(0);
        ip.extend(((ihl + l4.len()) as u16).to_be_bytes());
        ip.extend(self.id.to_be_bytes());
        ip.extend(self.frag.to_be_bytes());
        ip.push(self.ttl);
        ip.push(self.proto());
        ip.extend([0, 0]);
        ip.extend(self.src.octets());
        ip.extend(self.dst.octets());
        ip.extend(&self.options);
        let c = inet_checksum(&ip, 0);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        let mut f = Vec::new();
        f.extend(self.dst_mac);
        f.extend(self.src_mac);
        f.extend(0x0800u16.to_be_bytes());
        f.extend(ip);
        f.extend(l4);
        f
    }
}

/// An ARP request: who has `target`? tell `sender`.
pub fn arp_request(sender_mac: Mac, sender: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend([0xff; 6]);
    f.extend(sender_mac);
    f.extend(0x0806u16.to_be_bytes());
    f.extend([0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend(sender_mac);
    f.extend(sender.octets());
    f.extend([0; 6]);
    f.extend(target.octets());
    f
}

/// A frame taken apart, with every checksum verified independently.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decoded {
    pub dst_mac: Mac,
    pub src_mac: Mac,
    pub ether_type: u16,
    pub ip: Option<DecodedIp>,
    pub arp: Option<DecodedArp>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodedIp {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub proto: u8,
    pub ttl: u8,
    pub ihl: usize,
    pub tot_len: usize,
    pub ip_checksum_ok: bool,
    pub sport: u16,
    pub dport: u16,
    pub tcp_flags: u8,
    pub seq: u32,
    pub ack: u32,
    /// TCP/UDP checksum verified over pseudo header + segment (UDP zero: "none"),
    /// ICMP's over the message.
    pub l4_checksum_ok: bool,
    pub l4_checksum: u16,
    pub payload: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodedArp {
    pub oper: u16,
    pub sha: Mac,
    pub spa: Ipv4Addr,
    pub tha: Mac,
    pub tpa: Ipv4Addr,
}

pub fn decode(f: &[u8]) -> Option<Decoded> {
    if f.len() < 14 {
        return None;
    }
    let mut d = Decoded {
        dst_mac: f[0..6].try_into().ok()?,
        src_mac: f[6..12].try_into().ok()?,
        ether_type: u16::from_be_bytes([f[12], f[13]]),
        ip: None,
        arp: None,
    };
    let b = &f[14..];
    if d.ether_type == 0x0806 && b.len() >= 28 {
        d.arp = Some(DecodedArp {
            oper: u16::from_be_bytes([b[6], b[7]]),
            sha: b[8..14].try_into().ok()?,
            spa: Ipv4Addr::new(b[14], b[15], b[16], b[17]),
            tha: b[18..24].try_into().ok()?,
            tpa: Ipv4Addr::new(b[24], b[25], b[26], b[27]),
        });
    }
    if d.ether_type == 0x0800 && b.len() >= 20 {
        let ihl = ((b[0] & 0x0f) as usize) * 4;
        let tot_len = u16::from_be_bytes([b[2], b[3]]) as usize;
        if ihl < 20 || b.len() < tot_len || tot_len < ihl {
            return Some(d);
        }
        let src = Ipv4Addr::new(b[12], b[13], b[14], b[15]);
        let dst = Ipv4Addr::new(b[16], b[17], b[18], b[19]);
        let proto = b[9];
        let l4 = &b[ihl..tot_len];
        let mut ip = DecodedIp {
            src,
            dst,
            proto,
            ttl: b[8],
            ihl,
            tot_len,
            ip_checksum_ok: inet_checksum(&b[..ihl], 0) == 0,
            sport: 0,
            dport: 0,
            tcp_flags: 0,
            seq: 0,
            ack: 0,
            l4_checksum_ok: false,
            l4_checksum: 0,
            payload: vec![],
        };
        match proto {
            6 if l4.len() >= 20 => {
                let doff = ((l4[12] >> 4) as usize) * 4;
                ip.sport = u16::from_be_bytes([l4[0], l4[1]]);
                ip.dport = u16::from_be_bytes([l4[2], l4[3]]);
                ip.seq = u32::from_be_bytes(l4[4..8].try_into().ok()?);
                ip.ack = u32::from_be_bytes(l4[8..12].try_into().ok()?);
                ip.tcp_flags = l4[13];
                ip.l4_checksum = u16::from_be_bytes([l4[16], l4[17]]);
                ip.l4_checksum_ok = inet_checksum(l4, pseudo_sum(src, dst, 6, l4.len())) == 0;
                ip.payload = l4.get(doff..).unwrap_or_default().to_vec();
            }
            17 if l4.len() >= 8 => {
                ip.sport = u16::from_be_bytes([l4[0], l4[1]]);
                ip.dport = u16::from_be_bytes([l4[2], l4[3]]);
                ip.l4_checksum = u16::from_be_bytes([l4[6], l4[7]]);
                ip.l4_checksum_ok = ip.l4_checksum == 0
                    || inet_checksum(l4, pseudo_sum(src, dst, 17, l4.len())) == 0;
                ip.payload = l4[8..].to_vec();
            }
            1 if l4.len() >= 8 => {
                // Type and code shown where TCP shows its flags; the rest in seq.
                ip.tcp_flags = l4[0];
                ip.sport = l4[1] as u16;
                ip.seq = u32::from_be_bytes(l4[4..8].try_into().ok()?);
                ip.l4_checksum = u16::from_be_bytes([l4[2], l4[3]]);
                ip.l4_checksum_ok = inet_checksum(l4, 0) == 0;
                ip.payload = l4[8..].to_vec();
            }
            _ => ip.payload = l4.to_vec(),
        }
        d.ip = Some(ip);
    }
    Some(d)
}

fn mac(m: &Mac) -> String {
    m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

impl fmt::Display for Decoded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -> {} type {:#06x}", mac(&self.src_mac), mac(&self.dst_mac), self.ether_type)?;
        if let Some(ip) = &self.ip {
            write!(
                f,
                " | {}:{} -> {}:{} proto {} ttl {} len {} ipcsum {} | flags {:#04x} seq {} ack {} l4csum {:#06x} {} | payload {} bytes",
                ip.src, ip.sport, ip.dst, ip.dport, ip.proto, ip.ttl, ip.tot_len,
                if ip.ip_checksum_ok { "ok" } else { "BAD" },
                ip.tcp_flags, ip.seq, ip.ack, ip.l4_checksum,
                if ip.l4_checksum_ok { "ok" } else { "BAD" },
                ip.payload.len()
            )?;
        }
        if let Some(a) = &self.arp {
            write!(f, " | arp op {} {} is-at {} -> {} {}", a.oper, a.spa, mac(&a.sha), a.tpa, mac(&a.tha))?;
        }
        Ok(())
    }
}

/// Every checksum of an ICMP error frame, each verified on its own: the outer IP
/// header's, the ICMP message's, the quoted IP header's, and the quoted L4 checksum
/// when the quote holds the whole segment. Panics with the frame decoded.
#[track_caller]
pub fn assert_icmp_checksums(f: &[u8], case: &str) {
    let d = decode(f).unwrap_or_else(|| panic!("{case}: not a frame"));
    let ip = d.ip.clone().unwrap_or_else(|| panic!("{case}: not IPv4: {d}"));
    assert!(ip.ip_checksum_ok && ip.proto == 1 && ip.l4_checksum_ok, "{case}: outer IP or ICMP checksum: {d}");
    let q = &ip.payload;
    let ihl = q.first().map_or(0, |v| ((v & 0x0f) as usize) * 4);
    assert!(ihl >= 20 && q.len() >= ihl + 8, "{case}: the quote holds no IP header and 8 bytes: {d}");
    assert_eq!(inet_checksum(&q[..ihl], 0), 0, "{case}: quoted IP checksum: {d}");
    let tot_len = u16::from_be_bytes([q[2], q[3]]) as usize;
    if tot_len == q.len() {
        // The whole packet is quoted: its L4 checksum can be checked too.
        let mut inner = vec![0u8; 12];
        inner.extend([0x08, 0x00]);
        inner.extend(q);
        let qi = decode(&inner).and_then(|x| x.ip).unwrap_or_else(|| panic!("{case}: quoted packet"));
        assert!(qi.l4_checksum_ok, "{case}: quoted L4 checksum over the whole quoted segment: {d}");
    }
}

/// Assert two frames are byte-identical; on failure print both decoded and the first
/// differing offset.
#[track_caller]
pub fn assert_frame_eq(got: &[u8], want: &[u8], case: &str) {
    if got == want {
        return;
    }
    let show = |b: &[u8]| decode(b).map(|d| d.to_string()).unwrap_or_else(|| format!("{b:02x?}"));
    let first = got.iter().zip(want).position(|(a, b)| a != b).unwrap_or(got.len().min(want.len()));
    panic!(
        "{case}: frames differ (first at byte {first}; lengths {} vs {})\n  got:  {}\n  want: {}",
        got.len(),
        want.len(),
        show(got),
        show(want)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_frames_decode_with_valid_checksums() {
        let a = Ipv4Addr::new(10, 0, 0, 2);
        let b = Ipv4Addr::new(10, 0, 0, 100);
        for p in [
            Packet::tcp((a, 40000), (b, 80), SYN).payload(b"hi"),
            Packet::udp((a, 40000), (b, 53)).payload(b"odd"),
            Packet::tcp((a, 1), (b, 2), ACK).options(&[1, 1, 1, 0]),
        ] {
            let d = decode(&p.build()).unwrap();
            let ip = d.ip.unwrap();
            assert!(ip.ip_checksum_ok && ip.l4_checksum_ok, "{p:?}");
            assert_eq!((ip.src, ip.dst), (a, b));
        }
    }

    #[test]
    fn decoder_catches_a_flipped_bit() {
        let a = Ipv4Addr::new(10, 0, 0, 2);
        let mut f = Packet::tcp((a, 1), (a, 2), SYN).build();
        f[40] ^= 0x10;
        assert!(!decode(&f).unwrap().ip.unwrap().l4_checksum_ok);
    }
}
