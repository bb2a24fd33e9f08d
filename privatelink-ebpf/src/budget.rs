//! What each endpoint and each consumer VPC hold of the shared data path, so that no
//! tenant takes another's share: an endpoint's connection slots (its limit), its
//! half-open budget (a SYN flood takes that, not its open connections), and the flows
//! it and its VPC hold in the conntrack table (every state). Counters change only with
//! atomic adds and never go below zero (a give-back that finds zero is counted as an
//! anomaly instead). Also the ring of each endpoint's recently closed flows, which a
//! new flow over a share reclaims before it is refused, and the ring of everybody's,
//! which it reclaims when the whole table is full (closed flows otherwise hold their
//! entries until the sweeper's pass).

use crate::{PL_EP_CLOSED, PL_EP_USE, PL_VPC_FLOWS};
use core::intrinsics::{atomic_cxchg, atomic_xadd, AtomicOrdering};
use privatelink_common::*;

/// Closed flows remembered per endpoint.
pub const CLOSED_RING: u32 = 16;

/// An endpoint's counter at byte offset `at` of its `EpUse` (`EP_USE_*`).
#[inline(always)]
pub fn ep(endpoint: u32, at: usize) -> Option<*mut u64> {
    PL_EP_USE.get_ptr_mut(endpoint).map(|p| unsafe { (p as *mut u8).add(at) as *mut u64 })
}

/// A consumer VPC's flow count.
#[inline(always)]
pub fn vpc(vpc_id: u16) -> Option<*mut u64> {
    if vpc_id as u32 >= MAX_VPCS {
        return None;
    }
    PL_VPC_FLOWS.get_ptr_mut(vpc_id as u32)
}

/// The whole table's flow count.
#[inline(always)]
fn table() -> Option<*mut u64> {
    PL_VPC_FLOWS.get_ptr_mut(TABLE_FLOWS)
}

/// Add `delta` and return the value before. SeqCst on purpose: with Relaxed, LLVM 22
/// emits a plain BPF XADD whose "returned old value" is garbage (seen on kernel 6.18:
/// the limit never fired); SeqCst emits atomic_fetch_add, which returns it.
#[inline(always)]
fn add(c: *mut u64, delta: u64) -> u64 {
    unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::SeqCst }>(c, delta) }
}

/// Take one unit of counter `c` under `limit`; `false` when the limit is reached (or
/// the counter does not exist).
#[inline(always)]
pub fn take(c: Option<*mut u64>, limit: u32, endpoint: u32) -> bool {
    let Some(c) = c else { return false };
    if add(c, 1) < limit as u64 {
        return true;
    }
    give(Some(c), endpoint);
    false
}

/// Give one unit of counter `c` back, never below zero (charged to `endpoint`'s
/// `slot_underflows` if it finds zero).
#[inline(always)]
pub fn give(c: Option<*mut u64>, endpoint: u32) {
    let Some(p) = c else { return };
    let mut tries = 0;
    while tries < 8 {
        let cur = unsafe { core::ptr::read_volatile(p) };
        if cur == 0 {
            if let Some(s) = crate::stats::slot(endpoint) {
                s.slot_underflows += 1;
            }
            return;
        }
        let (_, done) = unsafe { atomic_cxchg::<u64, { AtomicOrdering::SeqCst }, { AtomicOrdering::SeqCst }>(p, cur, cur - 1) };
        if done {
            return;
        }
        tries += 1;
    }
    // Eight CPUs raced this one: a plain atomic decrement.
    add(p, u64::MAX);
}

/// The value of counter `c` now.
#[inline(always)]
pub fn read(c: Option<*mut u64>) -> u64 {
    c.map_or(u64::MAX, |p| unsafe { core::ptr::read_volatile(p) })
}

/// Take one connection slot of `endpoint`; `false` when its limit is reached.
#[inline(always)]
pub fn acquire_slot(endpoint: u32, limit: u32) -> bool {
    take(ep(endpoint, EP_USE_OPEN), limit, endpoint)
}

/// Give one connection slot of `endpoint` back.
#[inline(always)]
pub fn release_slot(endpoint: u32) {
    give(ep(endpoint, EP_USE_OPEN), endpoint);
}

/// A new flow took its places (`take_share`).
pub const SHARE_TAKEN: u32 = 0;
/// Its endpoint's or its VPC's share is full.
pub const SHARE_FULL: u32 = 1;
/// The whole table is full.
pub const TABLE_FULL: u32 = 2;

/// Take a place in the conntrack table for a new flow of `endpoint` in consumer VPC
/// `vpc_id`: within the endpoint's share, the VPC's and the table's. Returns `SHARE_*`
/// or `TABLE_FULL`; nothing is held unless `SHARE_TAKEN`.
#[inline(always)]
pub fn take_share(endpoint: u32, ep_limit: u32, vpc_id: u16, vpc_limit: u32, table_limit: u32) -> u32 {
    if !take(ep(endpoint, EP_USE_FLOWS), ep_limit, endpoint) {
        return SHARE_FULL;
    }
    if !take(vpc(vpc_id), vpc_limit, endpoint) {
        give(ep(endpoint, EP_USE_FLOWS), endpoint);
        return SHARE_FULL;
    }
    if !take(table(), table_limit, endpoint) {
        give(ep(endpoint, EP_USE_FLOWS), endpoint);
        give(vpc(vpc_id), endpoint);
        return TABLE_FULL;
    }
    SHARE_TAKEN
}

/// Give a removed flow's places back (the shares and the table's).
#[inline(always)]
pub fn give_share(endpoint: u32, vpc_id: u16) {
    give(ep(endpoint, EP_USE_FLOWS), endpoint);
    give(vpc(vpc_id), endpoint);
    give(table(), endpoint);
}

/// Remember `key`, the forward key of a flow of `endpoint` that just closed, in its
/// endpoint's ring and in the ring of every endpoint's.
#[inline(always)]
pub fn closed(endpoint: u32, key: &CtKey) {
    remember(endpoint, key);
    remember(CLOSED_ANY, key);
}

#[inline(always)]
fn remember(ring: u32, key: &CtKey) {
    let Some(c) = ep(ring, EP_USE_CLOSED) else { return };
    let i = (add(c, 1) % CLOSED_RING as u64) as u32;
    if let Some(slot) = PL_EP_CLOSED.get_ptr_mut(ring.wrapping_mul(CLOSED_RING).wrapping_add(i)) {
        unsafe { *slot = *key };
    }
}

/// Take the oldest closed flow ring `ring` (an endpoint, or `CLOSED_ANY`) remembers
/// (each CPU its own, by an atomic add on the ring's tail). `None`: the ring is empty.
#[inline(always)]
pub fn oldest_closed(ring: u32) -> Option<CtKey> {
    let head = read(ep(ring, EP_USE_CLOSED));
    let tail = ep(ring, EP_USE_RECLAIMED)?;
    let t = add(tail, 1);
    if t >= head {
        // Empty: the tail goes back (approximately, under races: a flow of the ring is
        // then skipped or looked at twice, and a look only ever finds a flow or not).
        add(tail, u64::MAX);
        return None;
    }
    let i = (t % CLOSED_RING as u64) as u32;
    PL_EP_CLOSED.get(ring.wrapping_mul(CLOSED_RING).wrapping_add(i)).copied()
}
