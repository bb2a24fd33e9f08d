//! Per-CPU counters: per endpoint, and a global slot for packets no endpoint can be
//! charged with. Counting never fails a packet.

use crate::{PL_EP_STATS, PL_GSTATS};
use privatelink_common::{DropReason, Stats, DROP_REASON_SLOTS};

/// A refused packet and who it is charged to.
#[derive(Clone, Copy)]
pub struct Drop {
    pub reason: DropReason,
    /// Endpoint index, or `GLOBAL`.
    pub endpoint: u32,
}

pub const GLOBAL: u32 = u32::MAX;

impl Drop {
    #[inline(always)]
    pub const fn global(reason: DropReason) -> Drop {
        Drop { reason, endpoint: GLOBAL }
    }
    #[inline(always)]
    pub const fn endpoint(reason: DropReason, endpoint: u32) -> Drop {
        Drop { reason, endpoint }
    }
}

#[inline(always)]
pub fn slot(endpoint: u32) -> Option<&'static mut Stats> {
    let p = if endpoint == GLOBAL {
        PL_GSTATS.get_ptr_mut(0)
    } else {
        PL_EP_STATS.get_ptr_mut(endpoint)
    }?;
    // Per-CPU slot: no other writer while this program runs on this CPU.
    Some(unsafe { &mut *p })
}

#[inline(always)]
pub fn count_drop(d: Drop) {
    let idx = d.reason as usize;
    if let Some(s) = slot(d.endpoint) {
        if idx < DROP_REASON_SLOTS {
            if let Some(c) = s.drops.get_mut(idx) {
                *c += 1;
            }
        }
    }
}

#[inline(always)]
pub fn count_forward(endpoint: u32, bytes: u32) {
    if let Some(s) = slot(endpoint) {
        s.fwd_packets += 1;
        s.fwd_bytes += bytes as u64;
    }
}

#[inline(always)]
pub fn count_reverse(endpoint: u32, bytes: u32) {
    if let Some(s) = slot(endpoint) {
        s.rev_packets += 1;
        s.rev_bytes += bytes as u64;
    }
}

#[inline(always)]
pub fn count_new_flow(endpoint: u32) {
    if let Some(s) = slot(endpoint) {
        s.new_flows += 1;
    }
}

#[inline(always)]
pub fn count_reset(endpoint: u32) {
    if let Some(s) = slot(endpoint) {
        s.resets_sent += 1;
    }
}

#[inline(always)]
pub fn count_arp_reply(endpoint: u32) {
    if let Some(s) = slot(endpoint) {
        s.arp_replies += 1;
    }
}
