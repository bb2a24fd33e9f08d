//! SNAT slices and the node records that hold them. Every SNAT range (the gateway's
//! and each service's own) is cut into `gateway.snat_slices` equal slices. Plans hand
//! out an endpoint's SNAT addresses in slice 0; node k uses the address at the same
//! offset in slice k. So one allocation serves the whole fleet, an address has one
//! owner (the endpoint, on the node of its slice), and the provider routes slice k to
//! node k. Pure arithmetic; knows nothing of the recorded state.

use super::spec::Cidr;
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;

/// Upper bound of `gateway.snat_slices` (a node per slice).
pub const MAX_SLICES: u32 = 64;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// Which slice of every SNAT range this node's addresses come from, for life.
    pub slice: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// Registered under a live lease (as last recorded).
    pub up: bool,
    /// Unix milliseconds of the last change of `up`.
    pub since_ms: u64,
    /// Set by a daemon stopping with its data path attached (a restart, an upgrade):
    /// the others take it for up until then (unix ms), although its lease runs out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restarting_until_ms: Option<u64>,
}

/// Slice `k` of `range` cut into `slices`.
pub fn slice_range(range: Cidr, slices: u32, k: u32) -> Cidr {
    let bits = slices.max(1).trailing_zeros() as u8;
    let size = range.size() >> bits;
    Cidr { net: Ipv4Addr::from((u32::from(range.net) as u64 + k as u64 * size) as u32), prefix: range.prefix + bits }
}

/// The addresses plans hand out (in slice 0): all but the first and the last of a
/// slice, so that no node's address is a network or broadcast address of the range.
pub fn allocatable(range: Cidr, slices: u32) -> (u64, u64) {
    let s0 = slice_range(range, slices, 0);
    (u32::from(s0.net) as u64 + 1, u32::from(s0.net) as u64 + s0.size() - 2)
}

/// Node `slice`'s address for the slice-0 address `addr` of `range`.
pub fn on_slice(range: Cidr, slices: u32, slice: u32, addr: Ipv4Addr) -> Ipv4Addr {
    let size = slice_range(range, slices, 0).size();
    Ipv4Addr::from((u32::from(addr) as u64 + slice as u64 * size) as u32)
}

/// For an address of `range`: (its slice, the slice-0 address at the same offset).
pub fn from_slice(range: Cidr, slices: u32, addr: Ipv4Addr) -> Option<(u32, Ipv4Addr)> {
    if !range.contains(addr) {
        return None;
    }
    let size = slice_range(range, slices, 0).size();
    let off = u32::from(addr) as u64 - u32::from(range.net) as u64;
    Some(((off / size) as u32, Ipv4Addr::from((u32::from(range.net) as u64 + off % size) as u32)))
}
