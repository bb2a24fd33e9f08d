//! Per-endpoint bandwidth limits: XDP cannot pace, so it polices. Each endpoint and
//! direction has a GCRA bucket (the "virtual scheduling" form of a token bucket, ITU-T
//! I.371): a theoretical arrival time (TAT) that each admitted packet pushes forward by
//! its length at the rate; a packet is admitted while the TAT is at most the burst
//! ahead of now. One 64-bit word per bucket, moved with compare-and-swap, so every CPU
//! shares one bucket and one rate.

/// `PL_EP_RATE`: array per endpoint of [`Rate`] (zero: no limit).
pub const MAP_EP_RATE: &str = "PL_EP_RATE";
/// `PL_EP_TAT`: array per `endpoint * 2 + direction` of `u64` TATs (ktime ns).
pub const MAP_EP_TAT: &str = "PL_EP_TAT";
pub const DIR_FORWARD: u32 = 0;
pub const DIR_REVERSE: u32 = 1;

/// How far ahead of now a bucket may run: 300 ms at the rate (3.75 MB at 100 Mbit/s).
/// Measured, not guessed: between hosts a few tens of microseconds apart, even a
/// congestion window of two segments sends faster than a modest limit, so a TCP stream
/// through a policer keeps losing its tail and waits out a retransmission timeout
/// (200 ms at least on Linux, doubled when the retransmission is lost too). A bucket
/// that refills over that wait keeps the stream's average at the rate: through 100
/// Mbit/s, 10 ms of burst gave 5.7 Mbit/s, 100 ms gave 47, 200 ms 80-95, 300 ms 93-98
/// (`tests/tests/bandwidth.rs`, iperf3 goodput; 95.6 is the most 1448-byte segments in
/// 1514-byte frames can carry). Longer round trips need less.
pub const BURST_NS: u64 = 300_000_000;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rate {
    /// Picoseconds each byte takes at the rate; 0: no limit.
    pub ps_per_byte: u64,
    /// How far ahead of now the bucket may run.
    pub burst_ns: u64,
}
const _: () = assert!(size_of::<Rate>() == 16);

impl Rate {
    /// The rate of `bits_per_s` (0: no limit).
    pub const fn of_bps(bits_per_s: u64) -> Rate {
        if bits_per_s == 0 {
            return Rate { ps_per_byte: 0, burst_ns: 0 };
        }
        let ps = 8_000_000_000_000 / bits_per_s;
        Rate { ps_per_byte: if ps == 0 { 1 } else { ps }, burst_ns: BURST_NS }
    }

    /// What a packet of `len` bytes costs, in ns of the bucket.
    #[inline(always)]
    pub const fn cost_ns(&self, len: u32) -> u64 {
        len as u64 * self.ps_per_byte / 1000
    }
}

/// One GCRA step on a bucket whose TAT is `tat`: the new TAT if a packet of `cost_ns`
/// arriving at `now` is admitted, `None` if it is over the rate.
#[inline(always)]
pub const fn gcra(tat: u64, now: u64, cost_ns: u64, burst_ns: u64) -> Option<u64> {
    let base = if tat > now { tat } else { now };
    if base - now > burst_ns {
        return None;
    }
    Some(base + cost_ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_admits_the_burst_then_the_rate() {
        let r = Rate::of_bps(100_000_000);
        assert_eq!(r.ps_per_byte, 80_000);
        assert_eq!(r.cost_ns(1500), 120_000);
        // Back to back at one instant: the burst and one more packet pass.
        let (mut tat, mut passed) = (0u64, 0);
        while let Some(t) = gcra(tat, 1_000_000_000, r.cost_ns(1500), r.burst_ns) {
            tat = t;
            passed += 1;
        }
        assert_eq!(passed, BURST_NS / 120_000 + 1);
        let (mut tat, mut bytes, mut now) = (0u64, 0u64, 0u64);
        while now < 1_000_000_000 {
            if let Some(t) = gcra(tat, now, r.cost_ns(1500), r.burst_ns) {
                tat = t;
                bytes += 1500;
            }
            now += 1_000; // 1.5 Gbit/s offered
        }
        // Over a second at line rate, what passes is the rate plus the burst.
        let mbps = bytes * 8 / 1_000_000;
        let burst_mbit = 100 * BURST_NS / 1_000_000_000;
        assert!((100 + burst_mbit..=102 + burst_mbit).contains(&mbps), "{mbps} Mbit/s");
        assert_eq!(Rate::of_bps(0), Rate::default());
    }
}
