//! The packet's way through the gateway. On a VPC interface the data path decides
//! every frame: flows (one conntrack lookup), new flows to endpoints (`newflow`), ARP,
//! ICMP for endpoints and flows, and what is addressed to the gateway itself (its own
//! addresses in that VPC, broadcast, multicast), which goes up to the kernel.
//! Everything else is dropped and counted: the gateway never routes between VPCs on
//! its own. Decides; rewriting and sending live in `send`, `nat`, `forward`, `icmp`.

use crate::{
    conntrack,
    forward::{self, Hop, HOP_NO_ROUTE, HOP_REDIRECT},
    icmp::{self, Quote},
    lookup, nat, newflow, police,
    parse::{self, Packet, Parsed, ETH_P_8021AD, ETH_P_8021Q, ETH_P_IPV6, TCP_FIN, TCP_RST, TCP_SYN},
    reply,
    send, sg,
    stats::{self, Drop},
    PL_SNAT_RANGES,
};
use aya_ebpf::{bindings::xdp_action::XDP_PASS, maps::lpm_trie::Key, programs::XdpContext};
use privatelink_common::*;

/// Not an XDP action: the entry shim tail-calls the DNS program for this packet.
pub const TO_DNS: u32 = 0xd45;

#[inline(always)]
pub fn run(ctx: &XdpContext) -> Result<u32, Drop> {
    let ifindex = ctx.ingress_ifindex() as u32;
    let vpc = match lookup::vpc(ifindex) {
        Some(v) => v,
        None => return Ok(XDP_PASS), // not a VPC interface of ours
    };
    match parse::parse(ctx) {
        Parsed::Arp => arp(ctx, &vpc),
        Parsed::Ipv4(p) => ipv4(ctx, &vpc, ifindex, &p),
        Parsed::NotIp(ETH_P_8021Q | ETH_P_8021AD) => Err(Drop::vpc(DropReason::Vlan, vpc.vpc_id)),
        Parsed::NotIp(ETH_P_IPV6) => Err(Drop::vpc(DropReason::Ipv6, vpc.vpc_id)),
        Parsed::NotIp(_) => Err(Drop::vpc(DropReason::NotRouted, vpc.vpc_id)),
        Parsed::Runt | Parsed::Malformed => Err(Drop::vpc(DropReason::Malformed, vpc.vpc_id)),
    }
}

/// ARP requests for endpoint addresses are answered here; the rest (the gateway's own
/// addresses, replies to its own requests) is the kernel's.
#[inline(always)]
fn arp(ctx: &XdpContext, vpc: &VpcInfo) -> Result<u32, Drop> {
    let target = match reply::arp_request_target(ctx) {
        Some(t) => t,
        None => return Ok(XDP_PASS),
    };
    // Charged to the endpoint, or to the VPC for its DNS address.
    let charge = match lookup::endpoint_at(vpc.vpc_id, target) {
        Some(EP_DNS) => stats::vpc_slot(vpc.vpc_id),
        Some(ep) if ep != EP_GATEWAY_OWN => ep,
        _ => return Ok(XDP_PASS),
    };
    let action = reply::arp_reply(ctx, &vpc.mac).ok_or(Drop::endpoint(DropReason::Malformed, charge))?;
    stats::count_arp_reply(charge);
    Ok(action)
}

#[inline(always)]
fn ipv4(ctx: &XdpContext, vpc: &VpcInfo, ifindex: u32, p: &Packet) -> Result<u32, Drop> {
    if p.has_ports {
        if let Some(entry) = conntrack::get(&flow_key(p, vpc.vpc_id)) {
            if entry.kind == CT_KIND_FORWARD {
                return established_forward(ctx, p, entry);
            }
            return established_reverse(ctx, p, entry);
        }
    }
    if p.proto == PROTO_ICMP && !p.fragment {
        return icmp_in(ctx, vpc, p);
    }
    match lookup::endpoint_at(vpc.vpc_id, p.dst_ip) {
        Some(EP_GATEWAY_OWN) => return Ok(XDP_PASS),
        Some(EP_DNS) => return Ok(TO_DNS),
        Some(ep) => return newflow::new_flow(ctx, vpc, ifindex, p, ep),
        None => {}
    }
    if in_snat_range(p.dst_ip) {
        // One-way access: the provider side may only answer flows.
        let reason = if p.fragment {
            DropReason::Fragment
        } else if (p.proto == PROTO_TCP || p.proto == PROTO_UDP) && !p.has_ports {
            DropReason::Malformed
        } else {
            DropReason::NoFlow
        };
        return Err(Drop::vpc(reason, vpc.vpc_id));
    }
    not_for_a_flow(p, vpc)
}

/// A packet of no flow and no endpoint: the kernel's if it is the gateway's
/// (broadcast, multicast), dropped otherwise.
#[inline(always)]
fn not_for_a_flow(p: &Packet, vpc: &VpcInfo) -> Result<u32, Drop> {
    let dst = u32::from_be(p.dst_ip);
    if dst == u32::MAX || dst >> 28 == 0xe {
        return Ok(XDP_PASS);
    }
    Err(Drop::vpc(DropReason::NotRouted, vpc.vpc_id))
}

/// ICMP: errors about a flow are translated through the NAT, echo requests to an
/// endpoint answered; ICMP for the gateway itself goes up.
#[inline(always)]
fn icmp_in(ctx: &XdpContext, vpc: &VpcInfo, p: &Packet) -> Result<u32, Drop> {
    let quote = icmp::quote(ctx, p);
    // A translated error needs nothing more: the address is looked up only after.
    if let Ok(Some(q)) = &quote {
        if let Some(action) = translate_error(ctx, vpc, p, q)? {
            return Ok(action);
        }
    }
    let at = lookup::endpoint_at(vpc.vpc_id, p.dst_ip);
    match (quote, at) {
        (_, Some(EP_GATEWAY_OWN)) => Ok(XDP_PASS),
        (_, Some(EP_DNS)) => Err(Drop::vpc(DropReason::DnsDropped, vpc.vpc_id)),
        (Ok(Some(_)), _) => Err(Drop::vpc(DropReason::NoFlow, vpc.vpc_id)),
        (Err(()), _) => Err(Drop::vpc(DropReason::IcmpUnsupported, vpc.vpc_id)),
        (Ok(None), Some(ep)) => echo(ctx, p, ep),
        (Ok(None), None) if in_snat_range(p.dst_ip) => Err(Drop::vpc(DropReason::NoFlow, vpc.vpc_id)),
        (Ok(None), None) => not_for_a_flow(p, vpc),
    }
}

/// An echo request to an endpoint: answered when the endpoint is accepted.
#[inline(always)]
fn echo(ctx: &XdpContext, p: &Packet, ep: u32) -> Result<u32, Drop> {
    let info = lookup::endpoint(ep).ok_or(Drop::endpoint(DropReason::Inactive, ep))?;
    if !sg::allows(&info, p.src_ip, PROTO_ICMP, 0) {
        return Err(Drop::endpoint(DropReason::SecurityGroup, ep));
    }
    lookup::accepted(&info, ep)?;
    if !icmp::rate_allows(ep) {
        return Err(Drop::endpoint(DropReason::IcmpRateLimited, ep));
    }
    let action = icmp::echo_reply(ctx, p).ok_or(Drop::endpoint(DropReason::IcmpUnsupported, ep))?;
    stats::count_icmp_sent(ep);
    Ok(action)
}

/// An ICMP error about a packet of a flow, rewritten to what the other side sent and
/// sent there (RFC 5508): from the provider side about a forward packet (to a SNAT
/// address), or from the consumer side about a reverse packet (to an endpoint).
/// `None`: no flow matches the quote (or the error is not addressed to its sender).
#[inline(always)]
fn translate_error(ctx: &XdpContext, vpc: &VpcInfo, p: &Packet, q: &Quote) -> Result<Option<u32>, Drop> {
    let key = CtKey {
        src_ip_be: q.dst_ip,
        dst_ip_be: q.src_ip,
        src_port_be: q.dst_port,
        dst_port_be: q.src_port,
        vpc_id: vpc.vpc_id,
        proto: q.proto,
        _pad: 0,
    };
    let v = match conntrack::get(&key) {
        Some(v) if p.dst_ip == q.src_ip => *v,
        _ => return Ok(None),
    };
    let ep = v.endpoint;
    if p.ttl <= 1 {
        // No ICMP about ICMP errors (RFC 1812 4.3.2.7).
        return Err(Drop::endpoint(DropReason::TtlExceeded, ep));
    }
    // From the provider: quoted SNAT address -> backend, back to client -> endpoint.
    // From the consumer: quoted endpoint -> client, back to backend -> SNAT address.
    // Either way the flow entry's NAT fields are what the quote must become, reversed.
    let reverse = v.kind == CT_KIND_REVERSE;
    let hop = if reverse || v.route == CT_ROUTE_CACHED { Hop::cached(&v) } else { hop_towards_backend(ctx, p, &v)? };
    let (src, dst) = (v.nat_src_ip_be, v.nat_dst_ip_be);
    let (q_src, q_dst, q_sport, q_dport) = (v.nat_dst_ip_be, v.nat_src_ip_be, v.nat_dst_port_be, v.nat_src_port_be);
    if hop.kind == HOP_NO_ROUTE {
        return Err(Drop::endpoint(DropReason::NoRoute, ep));
    }
    let send = hop.kind == HOP_REDIRECT;
    if !icmp::translate(ctx, p, q, src, dst, q_src, q_dst, q_sport, q_dport, send) {
        return Err(Drop::endpoint(DropReason::IcmpUnsupported, ep));
    }
    let action = if send { send::redirect(ctx, &hop, ep)? } else { XDP_PASS };
    if reverse {
        stats::count_reverse(ep, p.frame_len);
    } else {
        stats::count_forward(ep, p.frame_len);
    }
    Ok(Some(action))
}

/// The conntrack key of a packet as it arrives.
#[inline(always)]
pub fn flow_key(p: &Packet, vpc_id: u16) -> CtKey {
    CtKey {
        src_ip_be: p.src_ip,
        dst_ip_be: p.dst_ip,
        src_port_be: p.src_port,
        dst_port_be: p.dst_port,
        vpc_id,
        proto: p.proto,
        _pad: 0,
    }
}

#[inline(always)]
fn in_snat_range(ip: u32) -> bool {
    PL_SNAT_RANGES.get(Key::new(32, ip)).is_some()
}

#[inline(always)]
fn established_forward(ctx: &XdpContext, p: &Packet, entry: &mut CtValue) -> Result<u32, Drop> {
    let now = conntrack::now();
    entry.last_seen_ns = now;
    // Over the bandwidth limit: dropped before it changes any flow state.
    if !police::admits(entry.endpoint, DIR_FORWARD, p.frame_len, now) {
        return Err(Drop::endpoint(DropReason::OverBandwidth, entry.endpoint));
    }
    if p.proto == PROTO_TCP {
        if conntrack::track_tcp(entry, p.tcp_flags, false) == conntrack::Tcp::Reopen {
            let info = lookup::endpoint(entry.endpoint).unwrap_or_default();
            // A new connection on the tuple of a closed one: the groups decide again.
            if !sg::allows(&info, p.src_ip, p.proto, u16::from_be(p.dst_port)) {
                return Err(Drop::endpoint(DropReason::SecurityGroup, entry.endpoint));
            }
            let limit = info.conn_limit;
            if !conntrack::reopen(entry, limit) {
                return newflow::refuse(ctx, p, Drop::endpoint(DropReason::OverLimit, entry.endpoint));
            }
            // The same tuple, a new connection.
            stats::count_new_flow(entry.endpoint);
        }
        if p.tcp_flags & TCP_SYN != 0 {
            clamp_mss(ctx, p, entry.endpoint);
        }
    }
    let fwd = *entry;
    if fwd.route == CT_ROUTE_CACHED {
        return send::rewrite_and_send(ctx, p, &fwd, stats::count_forward, Hop::cached(&fwd));
    }
    // Not yet cached: ask the FIB once and keep its answer in the flow, as the reverse
    // entry keeps the consumer's. A backend's next hop changing (its MAC, the route)
    // reaches new flows only.
    let hop = hop_towards_backend(ctx, p, &fwd)?;
    if hop.kind == HOP_REDIRECT {
        entry.ifindex = hop.ifindex;
        entry.smac = hop.smac;
        entry.dmac = hop.dmac;
        entry.mtu = hop.mtu;
        // Published last: a reader that sees the flag sees the hop.
        unsafe { core::ptr::write_volatile(&mut entry.route, CT_ROUTE_CACHED) };
    }
    send::rewrite_and_send(ctx, p, &fwd, stats::count_forward, hop)
}

#[inline(always)]
fn established_reverse(ctx: &XdpContext, p: &Packet, entry: &mut CtValue) -> Result<u32, Drop> {
    let now = conntrack::now();
    entry.last_seen_ns = now;
    if !police::admits(entry.endpoint, DIR_REVERSE, p.frame_len, now) {
        return Err(Drop::endpoint(DropReason::OverBandwidth, entry.endpoint));
    }
    let rev = *entry;
    if p.proto == PROTO_TCP && p.tcp_flags & (TCP_SYN | TCP_FIN | TCP_RST) != 0 {
        if let Some(fwd) = conntrack::get(&rev.peer_key(p.proto)) {
            conntrack::track_tcp(fwd, p.tcp_flags, true);
        }
        if p.tcp_flags & TCP_SYN != 0 {
            clamp_mss(ctx, p, rev.endpoint);
        }
    }
    send::rewrite_and_send(ctx, p, &rev, stats::count_reverse, Hop::cached(&rev))
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

/// The FIB's answer for a flow's rewritten packet, in its provider VPC's table, with
/// the MTU of the interface it leads out of.
#[inline(always)]
pub fn hop_towards_backend(ctx: &XdpContext, p: &Packet, fwd: &CtValue) -> Result<Hop, Drop> {
    let vpc = match lookup::vpc(fwd.ifindex) {
        Some(v) => v,
        None => return Err(Drop::endpoint(DropReason::NoRoute, fwd.endpoint)),
    };
    let mut hop = forward::fib(ctx, fwd.ifindex, vpc.fib_table, fwd.nat_src_ip_be, fwd.nat_dst_ip_be, p.proto, p.ip_tot_len);
    if hop.kind == HOP_REDIRECT {
        hop.mtu = if hop.ifindex == fwd.ifindex { vpc.mtu } else { lookup::vpc(hop.ifindex).map_or(0, |v| v.mtu) };
    }
    Ok(hop)
}
