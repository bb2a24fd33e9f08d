//! Internet checksum math (RFC 1071) and incremental updates (RFC 1624, eqn. 3:
//! HC' = ~(~HC + ~m + m')). Values are taken as raw 16-bit words in memory order:
//! the one's-complement sum is byte-order independent as long as every word and the
//! checksum field are loaded the same way, so the data path needs no byte swaps.

/// Fold a 32-bit one's-complement sum to 16 bits (not complemented).
#[inline(always)]
pub const fn fold(mut sum: u32) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

/// Checksum after one 16-bit word of the covered data changed from `old` to `new`.
#[inline(always)]
pub const fn replace_u16(check: u16, old: u16, new: u16) -> u16 {
    !fold(!check as u32 + !old as u32 + new as u32)
}

/// Checksum after one 32-bit field (two words) changed from `old` to `new`.
#[inline(always)]
pub const fn replace_u32(check: u16, old: u32, new: u32) -> u16 {
    !fold(
        !check as u32
            + !(old as u16) as u32
            + !((old >> 16) as u16) as u32
            + (new & 0xffff)
            + (new >> 16),
    )
}

/// UDP over IPv4: a zero checksum means "none" and stays zero (RFC 768); a computed
/// zero is sent as all ones.
#[inline(always)]
pub const fn udp_fixup(old_check: u16, new_check: u16) -> u16 {
    if old_check == 0 {
        0
    } else if new_check == 0 {
        0xffff
    } else {
        new_check
    }
}

/// One's-complement sum of `data` read as big-endian 16-bit words (odd tail padded
/// with zero), added to `initial`. Not folded.
pub fn sum_be(data: &[u8], initial: u32) -> u32 {
    let mut sum = initial as u64;
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u16::from_be_bytes([c[0], c[1]]) as u64;
    }
    if let [last] = chunks.remainder() {
        sum += (*last as u64) << 8;
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u32
}

/// The checksum to store (big-endian value) for `data` with its checksum field zeroed.
pub fn checksum_be(data: &[u8], initial: u32) -> u16 {
    !fold(sum_be(data, initial))
}

/// Sum of the IPv4 pseudo header for TCP/UDP (RFC 793 / RFC 768).
pub fn pseudo_header_sum(src: [u8; 4], dst: [u8; 4], proto: u8, l4_len: u16) -> u32 {
    let mut ph = [0u8; 12];
    ph[0..4].copy_from_slice(&src);
    ph[4..8].copy_from_slice(&dst);
    ph[9] = proto;
    ph[10..12].copy_from_slice(&l4_len.to_be_bytes());
    sum_be(&ph, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip_header() -> [u8; 20] {
        // 10.0.0.1 -> 10.0.0.100, TCP, ttl 64, id 0x1c46, DF
        let mut h = [
            0x45, 0x00, 0x00, 0x3c, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x06, 0, 0, 10, 0, 0, 1, 10,
            0, 0, 100,
        ];
        let c = checksum_be(&h, 0);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        h
    }

    #[test]
    fn full_checksum_verifies_to_zero() {
        let h = ip_header();
        assert_eq!(fold(sum_be(&h, 0)), 0xffff);
    }

    #[test]
    fn known_vector_rfc1071_example() {
        // RFC 1071 section 3 example: words 0001 f203 f4f5 f6f7 sum to ddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum_be(&data, 0)), 0xddf2);
        assert_eq!(checksum_be(&data, 0), !0xddf2);
    }

    #[test]
    fn incremental_u32_matches_full_recompute_in_both_byte_orders() {
        let mut h = ip_header();
        let old = [h[16], h[17], h[18], h[19]];
        let new = [192, 168, 2, 10];
        let check = [h[10], h[11]];
        h[16..20].copy_from_slice(&new);
        h[10] = 0;
        h[11] = 0;
        let expect = checksum_be(&h, 0);
        // big-endian words
        let be = replace_u32(
            u16::from_be_bytes(check),
            u32::from_be_bytes(old),
            u32::from_be_bytes(new),
        );
        assert_eq!(be, expect);
        // raw memory order (what the data path does on little-endian)
        let ne = replace_u32(
            u16::from_le_bytes(check),
            u32::from_le_bytes(old),
            u32::from_le_bytes(new),
        );
        assert_eq!(ne.to_le_bytes(), expect.to_be_bytes());
    }

    #[test]
    fn incremental_u16_matches_full_recompute() {
        let mut h = ip_header();
        let check = u16::from_be_bytes([h[10], h[11]]);
        let old = u16::from_be_bytes([h[8], h[9]]);
        h[8] = 63; // ttl decrement
        let new = u16::from_be_bytes([h[8], h[9]]);
        h[10] = 0;
        h[11] = 0;
        assert_eq!(replace_u16(check, old, new), checksum_be(&h, 0));
    }

    #[test]
    fn udp_zero_checksum_stays_zero_and_computed_zero_becomes_ffff() {
        assert_eq!(udp_fixup(0, 0x1234), 0);
        assert_eq!(udp_fixup(0x1111, 0), 0xffff);
        assert_eq!(udp_fixup(0x1111, 0x2222), 0x2222);
    }

    #[test]
    fn exhaustive_small_updates_agree_with_recompute() {
        // Every 16-bit replacement at one position of a fixed buffer.
        let base = [0x12u8, 0x34, 0xab, 0xcd, 0xff, 0xff, 0x00, 0x01];
        let check = checksum_be(&base, 0);
        for new in (0u32..=0xffff).step_by(7) {
            let mut b = base;
            b[4..6].copy_from_slice(&(new as u16).to_be_bytes());
            let full = checksum_be(&b, 0);
            let inc = replace_u16(check, 0xffff, new as u16);
            // 0x0000 and 0xffff are the same number in one's complement.
            assert!(inc == full || (inc == 0xffff && full == 0) || (inc == 0 && full == 0xffff));
        }
    }
}
