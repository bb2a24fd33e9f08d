//! Slots and addresses handed out by a plan: values of a range, skipping the ones in
//! use, lowest or highest first.

use std::collections::BTreeSet;

/// Values of `lo..=hi` handed out one by one, skipping `used` ones: lowest first, or
/// highest first when `down`. A cursor keeps a plan of N allocations O(N log N).
pub(super) struct Pool {
    used: BTreeSet<u64>,
    next: i64,
    lo: i64,
    hi: i64,
    step: i64,
}

impl Pool {
    pub(super) fn new(lo: u64, hi: u64, used: impl IntoIterator<Item = u64>, down: bool) -> Pool {
        let (lo, hi) = (lo as i64, hi as i64);
        Pool { used: used.into_iter().collect(), next: if down { hi } else { lo }, lo, hi, step: if down { -1 } else { 1 } }
    }

    pub(super) fn take(&mut self) -> Option<u64> {
        while self.lo <= self.next && self.next <= self.hi {
            let v = self.next as u64;
            self.next += self.step;
            if self.used.insert(v) {
                return Some(v);
            }
        }
        None
    }
}
