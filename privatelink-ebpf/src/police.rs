//! Bandwidth limits: each packet of an endpoint's flows against its bucket for that
//! direction (see `privatelink_common::police`). Shared by every CPU: the bucket moves
//! with compare-and-swap. Never writes anything but the bucket.

use crate::{PL_EP_RATE, PL_EP_TAT};
use core::intrinsics::{atomic_cxchg, AtomicOrdering};
use privatelink_common::*;

/// Whether a packet of `len` bytes of endpoint `ep` in direction `dir` fits its rate
/// at `now`. No limit: always.
#[inline(always)]
pub fn admits(ep: u32, dir: u32, len: u32, now: u64) -> bool {
    let Some(rate) = PL_EP_RATE.get(ep) else { return true };
    if rate.ps_per_byte == 0 {
        return true;
    }
    let Some(p) = PL_EP_TAT.get_ptr_mut(ep.wrapping_mul(2).wrapping_add(dir)) else { return true };
    let cost = rate.cost_ns(len);
    // A few tries against other CPUs moving the same bucket; a packet that loses every
    // race is dropped: nothing passes without paying (the CPUs that won did pay, so the
    // rate is still met under contention, by fewer and larger winners).
    for _ in 0..POLICE_TRIES {
        let tat = unsafe { core::ptr::read_volatile(p) };
        let Some(next) = gcra(tat, now, cost, rate.burst_ns) else { return false };
        // SeqCst: see `budget::add` (Relaxed atomics misbehave on 6.18).
        let (_, done) = unsafe { atomic_cxchg::<u64, { AtomicOrdering::SeqCst }, { AtomicOrdering::SeqCst }>(p, tat, next) };
        if done {
            return true;
        }
    }
    false
}

/// Compare-and-swap tries a packet gets against other CPUs moving its bucket.
const POLICE_TRIES: u32 = 4;
