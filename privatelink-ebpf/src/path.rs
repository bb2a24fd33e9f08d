//! The packet's way through the gateway: ARP for endpoint addresses, the established
//! forward and reverse paths (one conntrack lookup), and new flows (state gate, backend
//! choice, connection limit, SNAT). Decides; the rewriting and sending live in `nat`,
//! `forward` and `reply`.

use crate::{
    conntrack::{self, CreateError, NewFlow},
    forward::{self, Fib, Route},
    lookup,
    nat,
    parse::{self, ptr_at, Packet, Parsed, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN},
    reply,
    stats::{self, Drop},
    PL_SNAT_RANGES,
};
use aya_ebpf::{bindings::xdp_action::XDP_PASS, maps::lpm_trie::Key, programs::XdpContext};
use privatelink_common::{hash::{self, flow_hash}, *};

#[inline(always)]
pub fn run(ctx: &XdpContext) -> Result<u32, Drop> {
    let ifindex = ctx.ingress_ifindex() as u32;
    let vpc = match lookup::vpc(ifindex) {
        Some(v) => v,
        None => return Ok(XDP_PASS), // not a VPC interface of ours
    };
    match parse::parse(ctx) {
        Parsed::Other => Ok(XDP_PASS),
        Parsed::Arp => arp(ctx, &vpc),
        Parsed::Malformed => Err(Drop::global(DropReason::Malformed)),
        Parsed::Ipv4(p) => ipv4(ctx, &vpc, ifindex, &p),
    }
}

#[inline(always)]
fn arp(ctx: &XdpContext, vpc: &VpcInfo) -> Result<u32, Drop> {
    let target = match reply::arp_request_target(ctx) {
        Some(t) => t,
        None => return Ok(XDP_PASS),
    };
    let ep = match lookup::endpoint_at(vpc.vpc_id, target) {
        Some(ep) => ep,
        None => return Ok(XDP_PASS),
    };
    let action = reply::arp_reply(ctx, &vpc.mac).ok_or(Drop::endpoint(DropReason::Malformed, ep))?;
    stats::count_arp_reply(ep);
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
    if let Some(ep) = lookup::endpoint_at(vpc.vpc_id, p.dst_ip) {
        return new_flow(ctx, vpc, ifindex, p, ep);
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
        return Err(Drop::global(reason));
    }
    Ok(XDP_PASS)
}

/// The conntrack key of a packet as it arrives.
#[inline(always)]
fn flow_key(p: &Packet, vpc_id: u16) -> CtKey {
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
    entry.last_seen_ns = conntrack::now();
    if p.proto == PROTO_TCP {
        conntrack::track_tcp(entry, p.tcp_flags, false);
    }
    let fwd = *entry;
    if fwd.route == CT_ROUTE_CACHED {
        return rewrite_and_send(ctx, p, &fwd, stats::count_forward, || {
            forward::set_macs_and_redirect(ctx, fwd.ifindex, &fwd.smac, &fwd.dmac)
        });
    }
    // Not yet cached: ask the FIB once and keep its answer in the flow, as the reverse
    // entry keeps the consumer's. A backend's next hop changing (its MAC, the route)
    // reaches new flows only.
    match fib_towards_backend(ctx, p, &fwd)? {
        Fib::Next { ifindex, smac, dmac } => {
            entry.ifindex = ifindex;
            entry.smac = smac;
            entry.dmac = dmac;
            // Published last: a reader that sees the flag sees the hop.
            unsafe { core::ptr::write_volatile(&mut entry.route, CT_ROUTE_CACHED) };
            rewrite_and_send(ctx, p, &fwd, stats::count_forward, || {
                forward::set_macs_and_redirect(ctx, ifindex, &smac, &dmac)
            })
        }
        hop => rewrite_and_send(ctx, p, &fwd, stats::count_forward, || forward::uncached(hop)),
    }
}

#[inline(always)]
fn established_reverse(ctx: &XdpContext, p: &Packet, entry: &mut CtValue) -> Result<u32, Drop> {
    entry.last_seen_ns = conntrack::now();
    let rev = *entry;
    if p.proto == PROTO_TCP && p.tcp_flags & (TCP_SYN | TCP_FIN | TCP_RST) != 0 {
        if let Some(fwd) = conntrack::get(&rev.peer_key(p.proto)) {
            conntrack::track_tcp(fwd, p.tcp_flags, true);
        }
    }
    rewrite_and_send(ctx, p, &rev, stats::count_reverse, || {
        forward::set_macs_and_redirect(ctx, rev.ifindex, &rev.smac, &rev.dmac)
    })
}

/// The FIB's answer for a flow's rewritten packet, in its provider VPC's table.
#[inline(always)]
fn fib_towards_backend(ctx: &XdpContext, p: &Packet, fwd: &CtValue) -> Result<Fib, Drop> {
    let table = match lookup::vpc(fwd.ifindex) {
        Some(v) => v.fib_table,
        None => return Err(Drop::endpoint(DropReason::NoRoute, fwd.endpoint)),
    };
    Ok(forward::fib(ctx, fwd.ifindex, table, fwd.nat_src_ip_be, fwd.nat_dst_ip_be, p.proto, p.ip_tot_len))
}

/// A new flow's first packet: through the FIB, nothing cached yet.
#[inline(always)]
fn send_forward(ctx: &XdpContext, p: &Packet, fwd: &CtValue) -> Result<u32, Drop> {
    let hop = fib_towards_backend(ctx, p, fwd)?;
    rewrite_and_send(ctx, p, fwd, stats::count_forward, || match hop {
        Fib::Next { ifindex, smac, dmac } => forward::set_macs_and_redirect(ctx, ifindex, &smac, &dmac),
        other => forward::uncached(other),
    })
}

/// Rewrite `p` as flow entry `v` says, send it with `send`, and count it with `count`
/// (a rewrite that fails is `Malformed`, a send with no way out `NoRoute`).
#[inline(always)]
fn rewrite_and_send(
    ctx: &XdpContext,
    p: &Packet,
    v: &CtValue,
    count: fn(u32, u32),
    send: impl FnOnce() -> Route,
) -> Result<u32, Drop> {
    let ep = v.endpoint;
    if !nat::rewrite(ctx, p, v.nat_src_ip_be, v.nat_dst_ip_be, v.nat_src_port_be, v.nat_dst_port_be) {
        return Err(Drop::endpoint(DropReason::Malformed, ep));
    }
    match send() {
        Route::Action(a) => {
            count(ep, p.frame_len);
            Ok(a)
        }
        Route::NoRoute => Err(Drop::endpoint(DropReason::NoRoute, ep)),
    }
}

/// Refuse a new flow: a TCP SYN is answered with a RST so the client fails fast, a UDP
/// datagram is dropped. Counted under `d` either way.
#[inline(always)]
fn refuse(ctx: &XdpContext, p: &Packet, d: Drop) -> Result<u32, Drop> {
    if p.proto != PROTO_TCP {
        return Err(d);
    }
    match reply::tcp_reset(ctx, p) {
        Some(action) => {
            stats::count_drop(d);
            stats::count_reset(d.endpoint);
            Ok(action)
        }
        None => Err(d),
    }
}

#[inline(always)]
fn new_flow(ctx: &XdpContext, vpc: &VpcInfo, ifindex: u32, p: &Packet, ep: u32) -> Result<u32, Drop> {
    if p.fragment {
        return Err(Drop::endpoint(DropReason::Fragment, ep));
    }
    if p.proto != PROTO_TCP && p.proto != PROTO_UDP {
        return Err(Drop::endpoint(DropReason::UnmappedPort, ep));
    }
    if !p.has_ports {
        return Err(Drop::endpoint(DropReason::Malformed, ep));
    }
    let info = lookup::endpoint(ep).ok_or(Drop::endpoint(DropReason::Inactive, ep))?;
    let service_port = lookup::service_port(info.service, p.dst_port, p.proto)
        .ok_or(Drop::endpoint(DropReason::UnmappedPort, ep))?;
    match info.state {
        EP_STATE_ACCEPTED => {}
        EP_STATE_PENDING => return Err(Drop::endpoint(DropReason::Pending, ep)),
        EP_STATE_REJECTED => return Err(Drop::endpoint(DropReason::Rejected, ep)),
        _ => return Err(Drop::endpoint(DropReason::Inactive, ep)),
    }
    if p.proto == PROTO_TCP {
        let f = p.tcp_flags;
        if f & TCP_RST != 0 {
            return Err(Drop::endpoint(DropReason::NoFlow, ep));
        }
        if f & TCP_SYN == 0 || f & TCP_ACK != 0 {
            // Mid-stream segment of no flow (expired, or the gateway restarted without
            // its maps): reset it so the client fails fast instead of hanging.
            return refuse(ctx, p, Drop::endpoint(DropReason::NoFlow, ep));
        }
    }
    let svc = match lookup::service(info.service) {
        Some(s) => s,
        None => return refuse(ctx, p, Drop::endpoint(DropReason::NoBackend, ep)),
    };
    let h = flow_hash(p.src_ip, p.dst_ip, p.src_port, p.dst_port, p.proto);
    let backend = match lookup::backend(info.service, h) {
        Some(b) => b,
        None => return refuse(ctx, p, Drop::endpoint(DropReason::NoBackend, ep)),
    };
    if !conntrack::acquire_slot(ep, info.conn_limit) {
        return refuse(ctx, p, Drop::endpoint(DropReason::OverLimit, ep));
    }
    let eth = match ptr_at::<[u8; 12]>(ctx, 0) {
        Some(e) => unsafe { *e },
        None => {
            conntrack::release_slot(ep);
            return Err(Drop::endpoint(DropReason::Malformed, ep));
        }
    };
    let key = flow_key(p, vpc.vpc_id);
    let flow = NewFlow {
        key,
        endpoint: ep,
        snat_ip: info.snat_ip_be,
        backend_ip: backend.ip_be,
        service_port,
        provider_vpc: svc.vpc_id,
        provider_ifindex: svc.ifindex,
        consumer_ifindex: ifindex,
        client_mac: [eth[6], eth[7], eth[8], eth[9], eth[10], eth[11]],
        gateway_mac: [eth[0], eth[1], eth[2], eth[3], eth[4], eth[5]],
        port_seed: hash::mix32(h),
    };
    let fwd = match conntrack::create(&flow) {
        Ok(v) => {
            stats::count_new_flow(ep);
            v
        }
        Err(CreateError::Raced) => {
            conntrack::release_slot(ep);
            match conntrack::get(&key) {
                Some(v) => *v,
                None => return Err(Drop::endpoint(DropReason::NoFlow, ep)),
            }
        }
        Err(CreateError::Refused(d)) => {
            conntrack::release_slot(ep);
            return refuse(ctx, p, d);
        }
    };
    send_forward(ctx, p, &fwd)
}
