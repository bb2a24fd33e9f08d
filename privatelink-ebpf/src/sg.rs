//! Security groups: a new flow's first packet (or a ping) against its endpoint's rule
//! set, compiled by userspace in decision order. Stateful like the clouds': a flow's
//! later packets and its replies are never checked again. Reads maps, writes nothing.

use crate::PL_SG_SETS;
use privatelink_common::*;

/// Whether the endpoint's groups let a packet from `src_be` of `proto` to endpoint
/// port `port` (host order; 0 for ICMP) in. No group: everything is allowed; a set
/// that cannot be found denies (a group is attached).
#[inline(always)]
pub fn allows(info: &EndpointInfo, src_be: u32, proto: u8, port: u16) -> bool {
    if info.sg_set == 0 {
        return true;
    }
    let Some(set) = (unsafe { PL_SG_SETS.get(&info.sg_set) }) else { return false };
    let mut verdict = SG_DENY;
    for i in 0..MAX_SG_RULES {
        // Read afresh each time, so no bound of it outlives the loop (each way out of
        // it would otherwise be a state of its own for the verifier).
        let count = unsafe { core::ptr::read_volatile(&set.count) } as usize;
        if i >= count {
            break;
        }
        let r = &set.rules[i];
        if r.matches(src_be, proto, port) {
            verdict = r.action;
            break;
        }
    }
    verdict == SG_ALLOW
}
