//! Which hop a flow's rewritten frame may take towards its backend: the FIB's answer
//! in the provider VPC's table, allowed only out of an interface of that VPC. Apart
//! from `forward`, which the benchmarks' object shares without the lookups.

use crate::{
    forward::{fib, Hop, HOP_REDIRECT},
    lookup,
    parse::Packet,
    stats::Drop,
};
use aya_ebpf::programs::XdpContext;
use privatelink_common::{CtValue, DropReason};

/// The FIB's answer for a flow's rewritten packet, in its provider VPC's table, with
/// the MTU of the interface it leads out of: only an interface of the flow's provider
/// VPC (a route towards another VPC or the underlay in its table is a
/// misconfiguration, not a way out: `ForeignEgress`).
#[inline(always)]
pub fn hop_towards_backend(ctx: &XdpContext, p: &Packet, fwd: &CtValue) -> Result<Hop, Drop> {
    let vpc = match lookup::vpc(fwd.ifindex) {
        Some(v) => v,
        None => return Err(Drop::endpoint(DropReason::NoRoute, fwd.endpoint)),
    };
    let mut hop = fib(ctx, fwd.ifindex, vpc.fib_table, fwd.nat_src_ip_be, fwd.nat_dst_ip_be, p.proto, p.ip_tot_len);
    if hop.kind == HOP_REDIRECT {
        hop.mtu = if hop.ifindex == fwd.ifindex {
            vpc.mtu
        } else {
            match lookup::vpc(hop.ifindex) {
                Some(v) if v.vpc_id == fwd.egress_vpc => v.mtu,
                _ => return Err(Drop::endpoint(DropReason::ForeignEgress, fwd.endpoint)),
            }
        };
    }
    Ok(hop)
}
