//! The tail every forwarded packet of a flow goes through, as a router does it
//! (RFC 1812 5.3.1): a packet that arrives with TTL <= 1 is answered with a
//! time-exceeded; a DF packet larger than its next hop's MTU with a
//! fragmentation-needed carrying that MTU; the others are rewritten (NAT), their TTL
//! taken down by one, and sent on. Frames the kernel must finish (a neighbour not
//! resolved yet, a non-DF packet to fragment) are rewritten and passed up with their
//! TTL untouched: the kernel's forwarding takes it down itself.

use crate::{
    forward::{self, Hop, HOP_KERNEL, HOP_NO_ROUTE, HOP_REDIRECT},
    icmp, nat,
    parse::Packet,
    stats::{self, Drop},
};
use aya_ebpf::{bindings::xdp_action::XDP_PASS, programs::XdpContext};
use privatelink_common::*;

/// Answer `p` with an ICMP error from the gateway's address it was sent to (the
/// endpoint on the consumer side, the SNAT address on the provider side), charged to
/// endpoint `ep` under `reason` (the packet itself is not forwarded).
#[inline(always)]
pub fn icmp_error(ctx: &XdpContext, p: &Packet, ep: u32, typ: u8, code: u8, mtu: u16, reason: DropReason) -> Result<u32, Drop> {
    if !icmp::rate_allows(ep) {
        return Err(Drop::endpoint(DropReason::IcmpRateLimited, ep));
    }
    match icmp::send_error(ctx, p, typ, code, mtu, p.dst_ip) {
        Some(action) => {
            stats::count_drop(Drop::endpoint(reason, ep));
            stats::count_icmp_sent(ep);
            Ok(action)
        }
        None => Err(Drop::endpoint(reason, ep)),
    }
}

/// Rewrite `p` as flow entry `v` says and send it towards `hop`, counted with `count`
/// (a rewrite that fails is `Malformed`, a hop with no way out `NoRoute`).
#[inline(always)]
pub fn rewrite_and_send(ctx: &XdpContext, p: &Packet, v: &CtValue, count: fn(u32, u32), hop: Hop) -> Result<u32, Drop> {
    let ep = v.endpoint;
    if p.ttl <= 1 {
        return icmp_error(ctx, p, ep, icmp::TIME_EXCEEDED, 0, 0, DropReason::TtlExceeded);
    }
    if hop.kind == HOP_NO_ROUTE {
        return Err(Drop::endpoint(DropReason::NoRoute, ep));
    }
    let mtu = if hop.kind == HOP_KERNEL { 0 } else { hop.mtu };
    let too_big = mtu != 0 && p.ip_tot_len > mtu;
    if too_big && p.df {
        return icmp_error(ctx, p, ep, icmp::DEST_UNREACH, icmp::FRAG_NEEDED, mtu, DropReason::FragNeeded);
    }
    // Sent by the gateway itself only when it fits; the kernel finishes the rest.
    let send = hop.kind == HOP_REDIRECT && !too_big;
    if !nat::rewrite(ctx, p, v.nat_src_ip_be, v.nat_dst_ip_be, v.nat_src_port_be, v.nat_dst_port_be, send) {
        return Err(Drop::endpoint(DropReason::Malformed, ep));
    }
    let action = if send { redirect(ctx, &hop, ep)? } else { XDP_PASS };
    count(ep, p.frame_len);
    Ok(action)
}

/// Send the frame out of `hop`'s interface with its MACs.
#[inline(always)]
pub fn redirect(ctx: &XdpContext, hop: &Hop, ep: u32) -> Result<u32, Drop> {
    match forward::set_macs_and_redirect(ctx, hop.ifindex, &hop.smac, &hop.dmac) {
        forward::Route::Action(a) => Ok(a),
        forward::Route::NoRoute => Err(Drop::endpoint(DropReason::NoRoute, ep)),
    }
}
