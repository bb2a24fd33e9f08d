//! Flow events for the buddy (`privatelink_common::replication`): one record per flow
//! opened, changed or removed, written to the ring buffer only when the daemon has
//! switched replication on. A full ring loses the event and counts it (`REPL_LOST`);
//! the packet goes on regardless, and the next snapshot repairs the buddy's copy.

use crate::{conntrack, PL_FLOW_EVENTS, PL_REPLICATION};
use aya_ebpf::maps::ring_buf::RingBufEntry;
use core::intrinsics::{atomic_xadd, AtomicOrdering};
use privatelink_common::*;

#[inline(always)]
fn on() -> bool {
    matches!(PL_REPLICATION.get(REPL_ON), Some(v) if *v != 0)
}

#[inline(always)]
fn lost() {
    if let Some(p) = PL_REPLICATION.get_ptr_mut(REPL_LOST) {
        unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::SeqCst }>(p, 1) };
    }
}

/// Room for one event, when replication is on (a full ring counts the loss).
#[inline(always)]
fn reserve() -> Option<RingBufEntry<FlowEvent>> {
    if !on() {
        return None;
    }
    let e = PL_FLOW_EVENTS.reserve::<FlowEvent>(0);
    if e.is_none() {
        lost();
    }
    e
}

/// The flow under forward key `key` was opened or changed: both entries as they are.
#[inline(always)]
pub fn upsert(key: &CtKey, fwd: *const CtValue, rev_key: &CtKey, rev: *const CtValue) {
    let Some(mut e) = reserve() else { return };
    let p = e.as_mut_ptr();
    unsafe {
        (*p).at_ns = conntrack::now();
        (*p).op = FLOW_UPSERT;
        (*p)._pad = [0; 7];
        (*p).key = *key;
        (*p).fwd = core::ptr::read(fwd);
        (*p).rev_key = *rev_key;
        (*p).rev = core::ptr::read(rev);
    }
    e.submit(0);
}

/// A TCP flow's state changed: the forward entry `fwd` and its reverse one, read now.
#[inline(always)]
pub fn tcp_changed(fwd: *const CtValue) {
    if !on() {
        return;
    }
    let rev_key = unsafe { (*fwd).peer_key(PROTO_TCP) };
    let Some(rev) = conntrack::get(&rev_key) else { return };
    let key = rev.peer_key(PROTO_TCP);
    upsert(&key, fwd, &rev_key, rev as *const CtValue);
}

/// The flow under forward key `key` was removed.
#[inline(always)]
pub fn removed(key: &CtKey) {
    let Some(mut e) = reserve() else { return };
    let p = e.as_mut_ptr();
    unsafe {
        core::ptr::write_bytes(p as *mut u8, 0, size_of::<FlowEvent>());
        (*p).at_ns = conntrack::now();
        (*p).op = FLOW_REMOVED;
        (*p).key = *key;
    }
    e.submit(0);
}
