//! A flow's first packet: the endpoint's state gate, the security groups, the port
//! mapping, the bandwidth limit, the backend choice, the connection limit and SNAT,
//! then the flow's two entries. A refused TCP SYN is answered with a reset (a packet
//! over the groups or the rate is dropped silently); every refusal is counted by reason.

use crate::{
    budget,
    conntrack::{self, CreateError, NewFlow},
    backend_hop, icmp, lookup, nat,
    parse::{self, ptr_at, Packet, Parsed, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN},
    police,
    reply::refuse,
    send, sg,
    stats::{self, Drop},
};
use aya_ebpf::programs::XdpContext;
use privatelink_common::{hash::flow_hash, *};

/// The new-flow program: the packet the data path handed over (a VPC interface's,
/// addressed to an endpoint there, of no flow), parsed and looked up again.
#[inline(always)]
pub fn run(ctx: &XdpContext) -> Result<u32, Drop> {
    let ifindex = crate::handoff::ingress(ctx);
    let vpc = lookup::vpc(ifindex).ok_or(Drop::global(DropReason::Inactive))?;
    let Parsed::Ipv4(p) = parse::parse(ctx) else { return Err(Drop::vpc(DropReason::Malformed, vpc.vpc_id)) };
    match lookup::endpoint_at(vpc.vpc_id, p.dst_ip) {
        Some(ep) if ep != EP_GATEWAY_OWN && ep != EP_DNS => new_flow(ctx, &vpc, ifindex, &p, ep),
        _ => Err(Drop::vpc(DropReason::NotRouted, vpc.vpc_id)),
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
    // The security groups first, as at the clouds' network interfaces: a source they
    // do not allow learns nothing (a silent drop, never a reset).
    if !sg::allows(&info, p.src_ip, p.proto, u16::from_be(p.dst_port)) {
        return Err(Drop::endpoint(DropReason::SecurityGroup, ep));
    }
    let service_port = lookup::service_port(info.service, p.dst_port, p.proto)
        .ok_or(Drop::endpoint(DropReason::UnmappedPort, ep))?;
    lookup::accepted(&info, ep)?;
    // A flow of a node that died, whose slice this node has taken over: adopted, and
    // the packet goes through the data path again as one of its flows.
    match crate::standby::adopt(ctx, p, vpc, ifindex, ep, &info) {
        crate::standby::ADOPTED => return Ok(crate::verdict::TO_MAIN),
        // A copy of a slice this node has not taken (its buddy's copy of a flow the
        // buddy adopted, say): the buddy's, when handing off; else held.
        crate::standby::HELD => {
            if !crate::handoff::handed(ctx) {
                if let Some(action) = crate::handoff::send(ctx, vpc.vpc_id) {
                    return Ok(action);
                }
            }
            return Err(Drop::endpoint(DropReason::NoFlow, ep));
        }
        // A peer handed it over for a flow this node does not hold: nothing to do.
        _ if crate::handoff::handed(ctx) => return Err(Drop::endpoint(DropReason::NoFlow, ep)),
        // A mid-stream segment of no flow while a dead node's buddy holds its flows:
        // that node's, perhaps; the buddy adopts it or answers it.
        _ if p.proto == PROTO_TCP && p.tcp_flags & TCP_SYN == 0 => {
            if let Some(action) = crate::handoff::send(ctx, vpc.vpc_id) {
                return Ok(action);
            }
        }
        _ => {}
    }
    let go = screen(ctx, p, ep)?;
    if go != GO_ON {
        return Ok(go);
    }
    let svc = match lookup::service(info.service) {
        Some(s) => s,
        None => return refuse(ctx, p, Drop::endpoint(DropReason::NoBackend, ep)),
    };
    let h = flow_hash(p.src_ip, p.dst_ip, p.src_port, p.dst_port, p.proto);
    let (backend_slot, backend) = match lookup::backend(info.service, h) {
        Some(b) => b,
        None => return refuse(ctx, p, Drop::endpoint(DropReason::NoBackend, ep)),
    };
    let tcp = p.proto == PROTO_TCP;
    let go = take_budgets(ctx, p, &info, vpc, ep)?;
    if go != GO_ON {
        return Ok(go);
    }
    let eth = match ptr_at::<[u8; 12]>(ctx, 0) {
        Some(e) => unsafe { *e },
        None => {
            give_back(ep, tcp, Some(vpc.vpc_id));
            return Err(Drop::endpoint(DropReason::Malformed, ep));
        }
    };
    let key = conntrack::flow_key(p, vpc.vpc_id);
    let flow = NewFlow {
        key,
        endpoint: ep,
        snat_count: info.snat_count,
        backend_ip: backend.ip_be,
        backend_slot,
        service_port,
        provider_vpc: svc.vpc_id,
        provider_ifindex: svc.ifindex,
        consumer_ifindex: ifindex,
        consumer_mtu: vpc.mtu,
        client_mac: [eth[6], eth[7], eth[8], eth[9], eth[10], eth[11]],
        gateway_mac: [eth[0], eth[1], eth[2], eth[3], eth[4], eth[5]],
        syn_seq: p.seq,
    };
    open(ctx, p, &flow, info.mss_clamp, vpc.vpc_id)
}

/// `Ok(GO_ON)` from a step of `new_flow`: go on to the next.
const GO_ON: u32 = u32::MAX;

/// What a new flow's first packet must be: a TCP SYN alone (anything else mid-stream
/// is reset so the client fails fast, SYN with FIN or RST opens nothing), not at the
/// end of its TTL (answered, never forwarded), within the endpoint's bandwidth (a
/// flow's first packet pays too, else new UDP flows would pass a limit for free).
#[inline(always)]
fn screen(ctx: &XdpContext, p: &Packet, ep: u32) -> Result<u32, Drop> {
    if p.proto == PROTO_TCP {
        let f = p.tcp_flags;
        if f & TCP_SYN != 0 && f & (TCP_FIN | TCP_RST) != 0 {
            // Opens nothing: backends discard SYN+FIN, and SYN+RST is no segment at all.
            return Err(Drop::endpoint(DropReason::InvalidTcp, ep));
        }
        if f & TCP_RST != 0 {
            return Err(Drop::endpoint(DropReason::NoFlow, ep));
        }
        if f & TCP_SYN == 0 || f & TCP_ACK != 0 {
            // Mid-stream segment of no flow (expired, or the gateway restarted without
            // its maps): reset it so the client fails fast instead of hanging.
            return refuse(ctx, p, Drop::endpoint(DropReason::NoFlow, ep));
        }
    }
    if p.ttl <= 1 {
        // Not forwarded, so no flow: traceroute's first probe is answered, not counted.
        return send::icmp_error(ctx, p, ep, icmp::TIME_EXCEEDED, 0, 0, DropReason::TtlExceeded);
    }
    // A flow's first packet pays too (else new UDP flows would pass a limit for free).
    if !police::admits(ep, DIR_FORWARD, p.frame_len, conntrack::now()) {
        return Err(Drop::endpoint(DropReason::OverBandwidth, ep));
    }
    Ok(GO_ON)
}

/// What the new flow takes of its endpoint's budgets (see `take_share` for the table).
#[inline(always)]
fn take_budgets(ctx: &XdpContext, p: &Packet, info: &EndpointInfo, vpc: &VpcInfo, ep: u32) -> Result<u32, Drop> {
    // What the new flow takes of its endpoint's budgets: a TCP SYN a place in the
    // half-open budget (its slot comes when the handshake completes; the limit is
    // checked now so that the client is refused at once), a UDP flow its slot; either a
    // place in its endpoint's and its VPC's shares of the conntrack table.
    let tcp = p.proto == PROTO_TCP;
    if tcp {
        if budget::read(budget::ep(ep, EP_USE_OPEN)) >= info.conn_limit as u64 {
            return refuse(ctx, p, Drop::endpoint(DropReason::OverLimit, ep));
        }
        if !budget::take(budget::ep(ep, EP_USE_HALF_OPEN), info.half_open_limit, ep) {
            return refuse(ctx, p, Drop::endpoint(DropReason::HalfOpenLimit, ep));
        }
    } else if !budget::acquire_slot(ep, info.conn_limit) {
        return refuse(ctx, p, Drop::endpoint(DropReason::OverLimit, ep));
    }
    if let Err(reason) = take_share(ep, info, vpc) {
        give_back(ep, tcp, None);
        return refuse(ctx, p, Drop::endpoint(reason, ep));
    }
    Ok(GO_ON)
}

/// Create `flow`'s two entries and send its first packet on; a flow whose packet is
/// not sent goes with it, and what it took is given back if it was never created.
#[inline(always)]
fn open(ctx: &XdpContext, p: &Packet, flow: &NewFlow, mss_clamp: u16, vpc_id: u16) -> Result<u32, Drop> {
    let (ep, key, tcp) = (flow.endpoint, flow.key, p.proto == PROTO_TCP);
    let fwd = match conntrack::create(flow) {
        Ok(v) => {
            stats::count_new_flow(ep);
            v
        }
        Err(CreateError::Raced) => {
            give_back(ep, tcp, Some(vpc_id));
            match conntrack::get(&key) {
                Some(v) => &*v,
                None => return Err(Drop::endpoint(DropReason::NoFlow, ep)),
            }
        }
        Err(CreateError::Refused(d)) => {
            give_back(ep, tcp, Some(vpc_id));
            return refuse(ctx, p, d);
        }
    };
    if p.proto == PROTO_TCP && mss_clamp != 0 {
        nat::clamp_mss(ctx, p, mss_clamp);
    }
    let sent = match backend_hop::hop_towards_backend(ctx, p, fwd) {
        Ok(hop) => send::rewrite_and_send(ctx, p, fwd, stats::count_forward, hop),
        Err(d) => Err(d),
    };
    match sent {
        Ok(s) => Ok(s.action),
        Err(d) => {
            // Not sent (no route, no neighbour, ...): the flow it opened goes with it.
            conntrack::retire(&key, u64::MAX);
            Err(d)
        }
    }
}

/// A place in the endpoint's and the VPC's shares of the conntrack table, and in the
/// table. Over a share, the endpoint's oldest closed flow it remembers makes room, if
/// it is still closed: a tenant's closed flows give way to its own new ones before it
/// is refused. With the table full, the oldest closed flow of anybody's does (a closed
/// flow only waits out its timeout; Linux conntrack's early drop likewise evicts flows
/// not assured). A live flow is never evicted. Refused: `FlowShare` over a share,
/// `ConntrackFull` with the table full.
#[inline(always)]
fn take_share(ep: u32, info: &EndpointInfo, vpc: &VpcInfo) -> Result<(), DropReason> {
    let take = || match budget::take_share(ep, info.flow_limit, vpc.vpc_id, vpc.flow_limit, vpc.table_flow_limit) {
        budget::SHARE_TAKEN => Ok(()),
        budget::TABLE_FULL => Err(DropReason::ConntrackFull),
        _ => Err(DropReason::FlowShare),
    };
    let Err(reason) = take() else { return Ok(()) };
    let ring = if reason == DropReason::ConntrackFull { CLOSED_ANY } else { ep };
    let Some(k) = budget::oldest_closed(ring) else { return Err(reason) };
    match conntrack::get(&k) {
        Some(v) if v.kind == CT_KIND_FORWARD && (v.endpoint == ep || ring == CLOSED_ANY) && v.state == TCP_STATE_CLOSING => {}
        _ => return Err(reason),
    }
    conntrack::retire(&k, u64::MAX);
    take()
}

/// Undo what a new flow took: its half-open place (TCP) or slot (UDP), and its place
/// in the shares of consumer VPC `share` when it took one.
#[inline(always)]
fn give_back(ep: u32, tcp: bool, share: Option<u16>) {
    if tcp {
        budget::give(budget::ep(ep, EP_USE_HALF_OPEN), ep);
    } else {
        budget::release_slot(ep);
    }
    if let Some(vpc_id) = share {
        budget::give_share(ep, vpc_id);
    }
}
