//! A packet of a flow the table knows. Two paths:
//! - the fast path, in the data path itself: UDP, and TCP data and ACKs of an
//!   established flow with no FIN or reset pending. It polices, rewrites and sends,
//!   and moves the sender's tracked sequence end and acknowledgement forward;
//! - the control path, a program of its own (`privatelink_tcp`, tail-called, with a
//!   verifier budget of its own): every other TCP segment (handshake, FIN, RST, a flow
//!   closing or closed), judged by `tcpstate` before it is sent and applied after.
//! Both change a flow only for a frame they sent on.

use crate::{
    conntrack,
    backend_hop,
    forward::Hop,
    lookup, nat, police,
    parse::{self, Packet, Parsed, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN},
    reply, send,
    stats::{self, Drop},
    tcpstate,
    verdict::{NOT_A_FLOW, TO_NEWFLOW, TO_TCP, TO_TCP_REV},
};
use aya_ebpf::{bindings::xdp_action::XDP_DROP, programs::XdpContext};
use privatelink_common::{
    tcp::{advance, seg_end},
    *,
};


/// A packet of a known flow on the fast path, to its end: the XDP action (a drop
/// already counted), `NOT_A_FLOW`, or `TO_TCP`.
#[inline(always)]
pub fn known(ctx: &XdpContext, p: &Packet, vpc_id: u16) -> u32 {
    let Some(entry) = conntrack::get(&conntrack::flow_key(p, vpc_id)) else { return NOT_A_FLOW };
    if p.proto == PROTO_TCP && needs_control(p, entry) {
        return if entry.kind == CT_KIND_FORWARD { TO_TCP } else { TO_TCP_REV };
    }
    match fast(ctx, p, entry) {
        Ok(action) => action,
        Err(d) => {
            stats::count_drop(d);
            XDP_DROP
        }
    }
}

/// Whether a TCP segment may change its flow's state (or the flow is not plainly open).
#[inline(always)]
fn needs_control(p: &Packet, entry: &CtValue) -> bool {
    if p.tcp_flags & (TCP_SYN | TCP_FIN | TCP_RST) != 0 {
        return true;
    }
    if entry.kind == CT_KIND_FORWARD {
        entry.state != TCP_STATE_ESTABLISHED || entry.flags & (CT_FLAG_FIN_FWD | CT_FLAG_FIN_REV | CT_FLAG_RESET) != 0
    } else {
        entry.flags & (CT_FLAG_PEER_FIN | CT_FLAG_RESET) != 0
    }
}

#[inline(always)]
fn fast(ctx: &XdpContext, p: &Packet, entry: &mut CtValue) -> Result<u32, Drop> {
    let ep = entry.endpoint;
    let forward = entry.kind == CT_KIND_FORWARD;
    let now = conntrack::now();
    if !police::admits(ep, if forward { DIR_FORWARD } else { DIR_REVERSE }, p.frame_len, now) {
        return Err(Drop::endpoint(DropReason::OverBandwidth, ep));
    }
    let sent = if forward { send_forward(ctx, p, entry)? } else { send::rewrite_and_send(ctx, p, entry, stats::count_reverse, Hop::cached(entry))? };
    if sent.forwarded {
        entry.last_seen_ns = now;
        if p.proto == PROTO_TCP {
            entry.seq_end = advance(entry.seq_end, seg_end(p.seq, p.tcp_payload(), false, false));
            if p.tcp_flags & TCP_ACK != 0 {
                entry.ack = advance(entry.ack, p.ack);
            }
        }
    }
    Ok(sent.action)
}

/// A forward packet rewritten and sent towards its backend; the FIB's answer, asked
/// once, stays with the flow, as the reverse entry keeps the consumer's (a backend's
/// next hop changing reaches new flows only).
#[inline(always)]
fn send_forward(ctx: &XdpContext, p: &Packet, entry: &mut CtValue) -> Result<send::Sent, Drop> {
    let cached = entry.route == CT_ROUTE_CACHED;
    let hop = if cached { Hop::cached(entry) } else { backend_hop::hop_towards_backend(ctx, p, entry)? };
    let sent = send::rewrite_and_send(ctx, p, entry, stats::count_forward, hop)?;
    if sent.forwarded && !cached {
        entry.ifindex = hop.ifindex;
        entry.smac = hop.smac;
        entry.dmac = hop.dmac;
        entry.mtu = hop.mtu;
        // Published last: a reader that sees the flag sees the hop.
        unsafe { core::ptr::write_volatile(&mut entry.route, CT_ROUTE_CACHED) };
    }
    Ok(sent)
}

/// The control programs (`forward`: the clients' segments; else the backends'): a TCP
/// segment the fast path handed over, parsed and looked up again. `Ok(TO_NEWFLOW)`: a
/// client's SYN on a closed flow, whose old flow is gone (its slot went back when it
/// closed): it opens a new flow through every check.
#[inline(always)]
pub fn control(ctx: &XdpContext, forward: bool) -> Result<u32, Drop> {
    let vpc = lookup::vpc(crate::handoff::ingress(ctx)).ok_or(Drop::global(DropReason::NoFlow))?;
    let Parsed::Ipv4(p) = parse::parse(ctx) else { return Err(Drop::vpc(DropReason::Malformed, vpc.vpc_id)) };
    let key = conntrack::flow_key(&p, vpc.vpc_id);
    let entry = conntrack::get(&key).ok_or(Drop::vpc(DropReason::NoFlow, vpc.vpc_id))?;
    let ep = entry.endpoint;
    if forward != (entry.kind == CT_KIND_FORWARD) {
        return Err(Drop::endpoint(DropReason::NoFlow, ep));
    }
    let peer = if forward { None } else { conntrack::get(&entry.peer_key(PROTO_TCP)) };
    let verdict = if forward { tcpstate::judge_forward(ctx, &p, entry) } else { tcpstate::judge_reverse(ctx, &p, entry, peer.as_deref()) };
    // Taken by the handshake's last ACK: given back if that ACK is not sent on.
    let mut took_slot = false;
    match verdict {
        tcpstate::PASS => {}
        tcpstate::ESTABLISH => {
            let limit = lookup::endpoint(ep).map_or(0, |i| i.conn_limit);
            if !conntrack::establish(entry, ep, limit) {
                // The limit filled while the handshake ran: the connection is refused
                // at both ends.
                tcpstate::reset(entry);
                return reply::refuse(ctx, &p, Drop::endpoint(DropReason::OverLimit, ep));
            }
            took_slot = true;
        }
        tcpstate::REOPEN => {
            conntrack::retire(&key, u64::MAX);
            return Ok(TO_NEWFLOW);
        }
        tcpstate::ANSWER_RESET => return reply::refuse(ctx, &p, Drop::endpoint(DropReason::NoFlow, ep)),
        _ => return Err(Drop::endpoint(DropReason::InvalidTcp, ep)),
    }
    let sent = control_send(ctx, &p, entry, forward);
    if took_slot && !matches!(&sent, Ok(s) if s.forwarded) {
        conntrack::release_flow(entry, ep);
    }
    let sent = sent?;
    let now = conntrack::now();
    if sent.forwarded {
        entry.last_seen_ns = now;
        if forward {
            tcpstate::forwarded_from_client(&p, entry);
        } else {
            tcpstate::forwarded_from_backend(&p, entry, peer);
        }
    }
    Ok(sent.action)
}

/// A control segment policed, clamped, rewritten and sent.
#[inline(always)]
fn control_send(ctx: &XdpContext, p: &Packet, entry: &mut CtValue, forward: bool) -> Result<send::Sent, Drop> {
    let ep = entry.endpoint;
    if !police::admits(ep, if forward { DIR_FORWARD } else { DIR_REVERSE }, p.frame_len, conntrack::now()) {
        return Err(Drop::endpoint(DropReason::OverBandwidth, ep));
    }
    if p.tcp_flags & TCP_SYN != 0 {
        clamp_mss(ctx, p, ep);
    }
    if forward {
        send_forward(ctx, p, entry)
    } else {
        send::rewrite_and_send(ctx, p, entry, stats::count_reverse, Hop::cached(entry))
    }
}

/// Clamp a SYN's MSS to its endpoint's `mss_clamp` (0: off).
#[inline(always)]
fn clamp_mss(ctx: &XdpContext, p: &Packet, ep: u32) {
    if let Some(info) = lookup::endpoint(ep) {
        if info.mss_clamp != 0 {
            nat::clamp_mss(ctx, p, info.mss_clamp);
        }
    }
}
