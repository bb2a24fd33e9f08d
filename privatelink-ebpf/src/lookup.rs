//! Frontend -> service -> backend resolution. Read-only: the data path never writes
//! round-robin or any other selection state; the Maglev table is built by userspace.

use crate::{stats::Drop, PL_BACKENDS, PL_ENDPOINTS, PL_EP_IPS, PL_MAGLEV, PL_PORTS, PL_SERVICES, PL_SNAT_RANGES, PL_VPCS};
use aya_ebpf::maps::lpm_trie::Key;
use privatelink_common::*;

#[inline(always)]
pub fn vpc(ifindex: u32) -> Option<VpcInfo> {
    unsafe { PL_VPCS.get(&ifindex) }.copied()
}

/// The endpoint index owning `ip` in `vpc_id`, if any.
#[inline(always)]
pub fn endpoint_at(vpc_id: u16, ip_be: u32) -> Option<u32> {
    let key = EpIpKey { ip_be, vpc_id, _pad: 0 };
    unsafe { PL_EP_IPS.get(&key) }.copied()
}

#[inline(always)]
pub fn endpoint(idx: u32) -> Option<EndpointInfo> {
    PL_ENDPOINTS.get(idx).copied().filter(|e| e.state != 0)
}

/// An endpoint passes traffic only when accepted; otherwise the drop its state calls for.
#[inline(always)]
pub fn accepted(info: &EndpointInfo, ep: u32) -> Result<(), Drop> {
    match info.state {
        EP_STATE_ACCEPTED => Ok(()),
        EP_STATE_PENDING => Err(Drop::endpoint(DropReason::Pending, ep)),
        EP_STATE_REJECTED => Err(Drop::endpoint(DropReason::Rejected, ep)),
        _ => Err(Drop::endpoint(DropReason::Inactive, ep)),
    }
}

/// The service port a port mapping sends `endpoint_port_be` to.
#[inline(always)]
pub fn service_port(service: u32, endpoint_port_be: u16, proto: u8) -> Option<u16> {
    let key = PortKey { service, endpoint_port_be, proto, _pad: 0 };
    unsafe { PL_PORTS.get(&key) }.map(|t| t.service_port_be)
}

#[inline(always)]
pub fn service(idx: u32) -> Option<ServiceInfo> {
    PL_SERVICES.get(idx).copied().filter(|s| s.active != 0)
}

/// The backend a flow with hash `h` goes to (its slot and what it holds): the Maglev slot
/// of the service, then the backend's own up flag as a backstop.
#[inline(always)]
pub fn backend(service: u32, h: u32) -> Option<(u32, BackendInfo)> {
    if service >= MAX_SERVICES {
        return None;
    }
    let slot = service * MAGLEV_SIZE + h % MAGLEV_SIZE;
    let idx = *PL_MAGLEV.get(slot)?;
    if idx == BACKEND_NONE {
        return None;
    }
    let b = *PL_BACKENDS.get(idx)?;
    if b.flags & BACKEND_FLAG_UP == 0 {
        return None;
    }
    Some((idx, b))
}

/// Whether `ip` (raw) is in a SNAT range: an answer to a flow, never a flow's start.
#[inline(always)]
pub fn in_snat_range(ip: u32) -> bool {
    PL_SNAT_RANGES.get(Key::new(32, ip)).is_some()
}
