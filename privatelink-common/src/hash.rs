//! The flow hash: picks a flow's backend (Maglev slot) and its first SNAT port probe.
//! Both sides use it: the data path to choose, userspace tests to predict the choice.

/// murmur3's 32-bit finalizer: full avalanche, a handful of instructions.
#[inline(always)]
pub const fn mix32(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    h
}

/// Hash of a flow as the client sent it (addresses and ports raw, in memory order).
#[inline(always)]
pub const fn flow_hash(src_ip: u32, dst_ip: u32, src_port: u16, dst_port: u16, proto: u8) -> u32 {
    let mut h = mix32(src_ip ^ 0x9e37_79b9);
    h = mix32(h ^ dst_ip);
    h = mix32(h ^ ((src_port as u32) << 16 | dst_port as u32));
    mix32(h ^ proto as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_sensitive_to_every_field() {
        let base = flow_hash(1, 2, 3, 4, 6);
        assert_eq!(base, flow_hash(1, 2, 3, 4, 6));
        assert_ne!(base, flow_hash(9, 2, 3, 4, 6));
        assert_ne!(base, flow_hash(1, 9, 3, 4, 6));
        assert_ne!(base, flow_hash(1, 2, 9, 4, 6));
        assert_ne!(base, flow_hash(1, 2, 3, 9, 6));
        assert_ne!(base, flow_hash(1, 2, 3, 4, 17));
        assert_ne!(flow_hash(1, 2, 3, 4, 6), flow_hash(2, 1, 4, 3, 6));
    }

    #[test]
    fn spreads_source_ports_evenly_over_buckets() {
        let mut buckets = [0u32; 8];
        for port in 0..8000u16 {
            buckets[(flow_hash(0x0a000001, 0x0a000064, port, 80, 6) % 8) as usize] += 1;
        }
        for b in buckets {
            assert!((800..1200).contains(&b), "uneven: {buckets:?}");
        }
    }
}
