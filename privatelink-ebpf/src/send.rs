//! The tail every forwarded packet of a flow goes through, as a router does it
//! (RFC 1812 5.3.1): a packet that arrives with TTL <= 1 is answered with a
//! time-exceeded; a DF packet larger than its next hop's MTU with a
//! fragmentation-needed carrying that MTU; the others are rewritten (NAT), their TTL
//! taken down by one, and sent on. A rewritten frame never goes to the kernel: its
//! routing tables are not the flow's (overlapping VPCs), so a non-DF packet too big
//! for the next hop (`TooBig`: the gateway does not fragment) and a next hop whose MAC
//! is not resolved yet (`NoNeighbour`: the daemon keeps backends' neighbours resolved)
//! are dropped and counted.

use crate::{
    forward::{self, Hop, HOP_NO_NEIGHBOUR, HOP_NO_ROUTE, HOP_REDIRECT},
    icmp, nat,
    parse::Packet,
    reply,
    stats::{self, Drop},
};
use aya_ebpf::programs::XdpContext;
use privatelink_common::{tcp::answerable, *};

/// What became of a frame handed to `rewrite_and_send`: its XDP action, and whether it
/// was sent on (`false`: answered with an ICMP error instead). Only a frame sent on may
/// change its flow's state.
pub struct Sent {
    pub action: u32,
    pub forwarded: bool,
}

/// Answer `p` with an ICMP error from the gateway's address it was sent to (the
/// endpoint on the consumer side, the SNAT address on the provider side), charged to
/// endpoint `ep` under `reason` (the packet itself is not forwarded).
#[inline(always)]
pub fn icmp_error(ctx: &XdpContext, p: &Packet, ep: u32, typ: u8, code: u8, mtu: u16, reason: DropReason) -> Result<u32, Drop> {
    if !answerable(p.src_ip) {
        return Err(Drop::endpoint(DropReason::BadSource, ep));
    }
    let kind = if typ == icmp::DEST_UNREACH { REPLY_FRAG_NEEDED } else { REPLY_ERROR };
    if !reply::allowed(ep, kind) {
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
pub fn rewrite_and_send(ctx: &XdpContext, p: &Packet, v: &CtValue, count: fn(u32, u32), hop: Hop) -> Result<Sent, Drop> {
    let ep = v.endpoint;
    // Answered instead of sent on (one call site: each inlined copy of the error's
    // construction costs the verifier a path of its own).
    let (typ, code, mtu, reason) = if p.ttl <= 1 {
        (icmp::TIME_EXCEEDED, 0, 0, DropReason::TtlExceeded)
    } else if hop.kind == HOP_NO_ROUTE {
        return Err(Drop::endpoint(DropReason::NoRoute, ep));
    } else if hop.kind == HOP_NO_NEIGHBOUR {
        return Err(Drop::endpoint(DropReason::NoNeighbour, ep));
    } else if hop.mtu != 0 && p.ip_tot_len > hop.mtu {
        if !p.df {
            return Err(Drop::endpoint(DropReason::TooBig, ep));
        }
        (icmp::DEST_UNREACH, icmp::FRAG_NEEDED, hop.mtu, DropReason::FragNeeded)
    } else {
        (0, 0, 0, DropReason::Malformed)
    };
    if reason != DropReason::Malformed {
        let action = icmp_error(ctx, p, ep, typ, code, mtu, reason)?;
        return Ok(Sent { action, forwarded: false });
    }
    if hop.kind != HOP_REDIRECT {
        return Err(Drop::endpoint(DropReason::NoRoute, ep));
    }
    if !nat::rewrite(ctx, p, v.nat_src_ip_be, v.nat_dst_ip_be, v.nat_src_port_be, v.nat_dst_port_be, true) {
        return Err(Drop::endpoint(DropReason::Malformed, ep));
    }
    let action = redirect(ctx, &hop, ep)?;
    count(ep, p.frame_len);
    Ok(Sent { action, forwarded: true })
}

/// Send the frame out of `hop`'s interface with its MACs.
#[inline(always)]
pub fn redirect(ctx: &XdpContext, hop: &Hop, ep: u32) -> Result<u32, Drop> {
    match forward::set_macs_and_redirect(ctx, hop.ifindex, &hop.smac, &hop.dmac) {
        forward::Route::Action(a) => Ok(a),
        forward::Route::NoRoute => Err(Drop::endpoint(DropReason::NoRoute, ep)),
    }
}
