//! The packet's way through the gateway. On a VPC interface the data path decides
//! every frame: flows (one conntrack lookup, `flow`), new flows to endpoints
//! (`newflow`, a program of its own), ARP,
//! ICMP for endpoints and flows, and what is addressed to the gateway itself (its own
//! addresses in that VPC, broadcast, multicast), which goes up to the kernel.
//! Everything else is dropped and counted: the gateway never routes between VPCs on
//! its own. Decides; rewriting and sending live in `send`, `nat`, `forward`, `icmp`.

use crate::{
    conntrack, flow,
    backend_hop,
    forward::{Hop, HOP_NO_NEIGHBOUR, HOP_REDIRECT},
    icmp::{self, Quote},
    lookup, police,
    parse::{self, Packet, Parsed, ETH_P_8021AD, ETH_P_8021Q, ETH_P_IPV6},
    reply, send, sg,
    stats::{self, Drop},
    sum,
    verdict::{NOT_A_FLOW, TO_DNS, TO_NEWFLOW},
};
use aya_ebpf::{bindings::xdp_action::XDP_PASS, programs::XdpContext};
use privatelink_common::{tcp::answerable, *};

/// The longest ICMP error translated through a flow: RFC 1812 4.3.2.3's 576 bytes,
/// what Linux sends at most.
const ICMP_ERROR_MAX_LEN: u16 = 576;


#[inline(always)]
pub fn run(ctx: &XdpContext) -> Result<u32, Drop> {
    let vpc = match lookup::vpc(crate::handoff::ingress(ctx)) {
        Some(v) => v,
        // A peer's hand-off on the management interface: the frame inside, as its VPC's.
        None if crate::handoff::unwrap(ctx) => match lookup::vpc(crate::handoff::ingress(ctx)) {
            Some(v) => v,
            None => return Ok(XDP_PASS),
        },
        None => return Ok(XDP_PASS), // not a VPC interface of ours
    };
    match parse::parse(ctx) {
        Parsed::Arp if to_us(ctx, &vpc) == TO_US_NOT => Err(Drop::vpc(DropReason::ForeignMac, vpc.vpc_id)),
        Parsed::Arp => arp(ctx, &vpc),
        // RFC 1812 5.2.2: a header the receiver would discard goes no further.
        Parsed::Ipv4(p) if !header_checksum_ok(ctx, &p) => Err(Drop::vpc(DropReason::Malformed, vpc.vpc_id)),
        Parsed::Ipv4(p) => match to_us(ctx, &vpc) {
            TO_US_UNICAST => ipv4(ctx, &vpc, &p),
            TO_US_GROUP => not_for_a_flow(&p, &vpc),
            _ => Err(Drop::vpc(DropReason::ForeignMac, vpc.vpc_id)),
        },
        Parsed::NotIp(ETH_P_8021Q | ETH_P_8021AD) => Err(Drop::vpc(DropReason::Vlan, vpc.vpc_id)),
        Parsed::NotIp(ETH_P_IPV6) => Err(Drop::vpc(DropReason::Ipv6, vpc.vpc_id)),
        Parsed::NotIp(_) => Err(Drop::vpc(DropReason::NotRouted, vpc.vpc_id)),
        Parsed::Runt | Parsed::Malformed => Err(Drop::vpc(DropReason::Malformed, vpc.vpc_id)),
    }
}

const TO_US_UNICAST: u8 = 0;
const TO_US_GROUP: u8 = 1;
const TO_US_NOT: u8 = 2;

/// Whom the frame is addressed to: the interface's MAC (the only frames that may open
/// or use a flow, so that everything the gateway sends leaves from that MAC), a group
/// (broadcast, multicast: only the kernel's), or another host.
#[inline(always)]
fn to_us(ctx: &XdpContext, vpc: &VpcInfo) -> u8 {
    let Some(eth) = parse::ptr_at::<[u8; 6]>(ctx, 0) else { return TO_US_NOT };
    let d = unsafe { *eth };
    let m = vpc.mac;
    let high = u32::from_ne_bytes([d[0], d[1], d[2], d[3]]) ^ u32::from_ne_bytes([m[0], m[1], m[2], m[3]]);
    let low = u16::from_ne_bytes([d[4], d[5]]) ^ u16::from_ne_bytes([m[4], m[5]]);
    if high | low as u32 == 0 {
        TO_US_UNICAST
    } else if d[0] & 1 != 0 {
        TO_US_GROUP
    } else {
        TO_US_NOT
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
fn ipv4(ctx: &XdpContext, vpc: &VpcInfo, p: &Packet) -> Result<u32, Drop> {
    if p.has_ports {
        let action = flow::known(ctx, p, vpc.vpc_id);
        if action != NOT_A_FLOW {
            return Ok(action);
        }
    }
    if p.proto == PROTO_ICMP && !p.fragment {
        return icmp_in(ctx, vpc, p);
    }
    match lookup::endpoint_at(vpc.vpc_id, p.dst_ip) {
        Some(EP_GATEWAY_OWN) => return Ok(XDP_PASS),
        Some(EP_DNS) => return Ok(TO_DNS),
        Some(_) => return Ok(TO_NEWFLOW),
        None => {}
    }
    if lookup::in_snat_range(p.dst_ip) {
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
        (Ok(None), None) if lookup::in_snat_range(p.dst_ip) => Err(Drop::vpc(DropReason::NoFlow, vpc.vpc_id)),
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
    if !answerable(p.src_ip) {
        return Err(Drop::endpoint(DropReason::BadSource, ep));
    }
    if !reply::allowed(ep, REPLY_ECHO) {
        return Err(Drop::endpoint(DropReason::IcmpRateLimited, ep));
    }
    if !icmp::message_checksum_ok(ctx, p) {
        return Err(Drop::endpoint(DropReason::Malformed, ep));
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
    if p.ip_tot_len > ICMP_ERROR_MAX_LEN {
        // Longer than any host sends (RFC 1812 4.3.2.3): no bulk carrier through a flow.
        return Err(Drop::endpoint(DropReason::IcmpUnsupported, ep));
    }
    if p.ttl <= 1 {
        // No ICMP about ICMP errors (RFC 1812 4.3.2.7).
        return Err(Drop::endpoint(DropReason::TtlExceeded, ep));
    }
    // From the provider: quoted SNAT address -> backend, back to client -> endpoint.
    // From the consumer: quoted endpoint -> client, back to backend -> SNAT address.
    // Either way the flow entry's NAT fields are what the quote must become, reversed.
    let reverse = v.kind == CT_KIND_REVERSE;
    let hop = if reverse || v.route == CT_ROUTE_CACHED { Hop::cached(&v) } else { backend_hop::hop_towards_backend(ctx, p, &v)? };
    let (src, dst) = (v.nat_src_ip_be, v.nat_dst_ip_be);
    let (q_src, q_dst, q_sport, q_dport) = (v.nat_dst_ip_be, v.nat_src_ip_be, v.nat_dst_port_be, v.nat_src_port_be);
    if hop.kind == HOP_NO_NEIGHBOUR {
        return Err(Drop::endpoint(DropReason::NoNeighbour, ep));
    }
    if hop.kind != HOP_REDIRECT {
        return Err(Drop::endpoint(DropReason::NoRoute, ep));
    }
    // Policed and capped as the flow's own packets are: an error quoting a flow is no
    // way around its endpoint's bandwidth limit.
    if !police::admits(ep, if reverse { DIR_REVERSE } else { DIR_FORWARD }, p.frame_len, conntrack::now()) {
        return Err(Drop::endpoint(DropReason::OverBandwidth, ep));
    }
    if !icmp::translate(ctx, p, q, src, dst, q_src, q_dst, q_sport, q_dport, true) {
        return Err(Drop::endpoint(DropReason::IcmpUnsupported, ep));
    }
    let action = send::redirect(ctx, &hop, ep)?;
    if reverse {
        stats::count_reverse(ep, p.frame_len);
    } else {
        stats::count_forward(ep, p.frame_len);
    }
    Ok(Some(action))
}

/// Whether packet `p`'s IPv4 header sums to all
/// ones, as RFC 1812 5.2.2 has a router verify before anything else: a header the
/// receiver would discard is not forwarded, answered or quoted. The common 20-byte
/// header is summed in place, word by word with no branch; a header with options
/// through `sum`. Checked by the
/// data path's entry program only: the programs it tail-calls parse frames it already
/// checked (done in `parse` itself, its branch on the length split the verifier's
/// states through every path after it in them: past the 1M budget on 6.18).
#[inline(always)]
fn header_checksum_ok(ctx: &XdpContext, p: &Packet) -> bool {
    let ihl = p.ihl_bytes as usize;
    let Some(ip) = parse::ptr_at::<[u8; 20]>(ctx, parse::ETH_LEN) else { return false };
    let ip = ip as *const u8;
    let mut sum = 0u32;
    if ihl == 20 {
        let h = unsafe { &*(ip as *const [u8; 20]) };
        let mut i = 0;
        while i < 20 {
            sum += u16::from_be_bytes([h[i], h[i + 1]]) as u32;
            i += 2;
        }
    } else {
        // 24..=60 bytes: one chunk.
        let Some(s) = sum::bytes(ctx, parse::ETH_LEN as u32, ihl as u32) else { return false };
        sum = s;
    }
    privatelink_common::csum::fold(sum) == 0xffff
}
