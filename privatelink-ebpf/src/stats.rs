//! Per-CPU counters: per endpoint, per VPC interface for packets no endpoint can be
//! charged with, and a global slot for the rest. Counting never fails a packet.

use crate::{PL_BACKEND_FLOWS, PL_EP_STATS, PL_GSTATS, PL_VPC_STATS};
use privatelink_common::{DropReason, Stats, DROP_REASON_SLOTS};

/// A refused packet and who it is charged to.
#[derive(Clone, Copy)]
pub struct Drop {
    pub reason: DropReason,
    /// Endpoint index, `VPC | vpc_id`, or `GLOBAL`.
    pub endpoint: u32,
}

pub const GLOBAL: u32 = u32::MAX;
/// Marks a VPC id in `Drop::endpoint` (endpoint indices stay far below).
const VPC: u32 = 0x8000_0000;

impl Drop {
    #[inline(always)]
    pub const fn global(reason: DropReason) -> Drop {
        Drop { reason, endpoint: GLOBAL }
    }
    #[inline(always)]
    pub const fn endpoint(reason: DropReason, endpoint: u32) -> Drop {
        Drop { reason, endpoint }
    }
    /// Charged to the VPC interface the packet came in on.
    #[inline(always)]
    pub const fn vpc(reason: DropReason, vpc_id: u16) -> Drop {
        Drop { reason, endpoint: VPC | vpc_id as u32 }
    }
}

/// The `Drop::endpoint` value that charges VPC `vpc_id`'s counters.
#[inline(always)]
pub const fn vpc_slot(vpc_id: u16) -> u32 {
    VPC | vpc_id as u32
}

/// The VPC id a `vpc_slot` value charges, if it is one.
#[inline(always)]
pub const fn vpc_of(slot: u32) -> Option<u32> {
    if slot != GLOBAL && slot & VPC != 0 {
        Some(slot & 0xffff)
    } else {
        None
    }
}

#[inline(always)]
pub fn slot(endpoint: u32) -> Option<&'static mut Stats> {
    let p = if endpoint == GLOBAL {
        PL_GSTATS.get_ptr_mut(0)
    } else if endpoint & VPC != 0 {
        PL_VPC_STATS.get_ptr_mut(endpoint & 0xffff)
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

#[inline(always)]
pub fn count_icmp_sent(endpoint: u32) {
    if let Some(s) = slot(endpoint) {
        s.icmp_sent += 1;
    }
}

/// A flow opened to the backend in `slot` (`removed`: its entries were removed).
#[inline(always)]
pub fn count_backend_flow(slot: u32, removed: bool) {
    // Per-CPU slot: no other writer while this program runs on this CPU.
    if let Some(p) = PL_BACKEND_FLOWS.get_ptr_mut(slot) {
        let c = unsafe { &mut *p };
        if removed {
            c.removed += 1;
        } else {
            c.opened += 1;
        }
    }
}
