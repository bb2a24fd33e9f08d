//! The exact contents of every table a state calls for on one node, built entity by
//! entity (a VPC, a service, an endpoint each fill several tables). Pure.

use super::{Tables, Up, Resolve};
use crate::dataplane::{
    sg,
    shares::{endpoint_flow_limit, half_open_limit, vpc_flow_limit},
    maglev::{self, Member},
    maps::ip_raw,
};
use crate::model::{
    dns,
    fleet::Seat,
    spec::MssClamp,
    state::{EndpointRecord, EndpointState, ServiceRecord, State},
};
use privatelink_common::*;
use std::collections::{BTreeMap, BTreeSet};

/// The byte the data path reads for an endpoint's state (`EP_STATE_*`).
fn state_byte(s: EndpointState) -> u8 {
    match s {
        EndpointState::Accepted => EP_STATE_ACCEPTED,
        EndpointState::PendingAcceptance => EP_STATE_PENDING,
        EndpointState::Rejected => EP_STATE_REJECTED,
        EndpointState::Creating | EndpointState::Failed | EndpointState::Deleting => EP_STATE_INACTIVE,
    }
}

/// The MSS a flow's SYNs are clamped to: `auto` is the smaller MTU of the endpoint's
/// and the service's interface less 40 (IPv4 and TCP headers without options).
fn mss_clamp(m: MssClamp, smallest_mtu: Option<u16>) -> u16 {
    match m {
        MssClamp::Off => 0,
        MssClamp::Value(v) => v,
        MssClamp::Auto => smallest_mtu.map_or(0, |mtu| mtu.saturating_sub(40)),
    }
}

/// The map contents `st` calls for on the node in `seat` (its SNAT slice, its share of
/// each connection limit), with backends' health from `up`.
pub fn desired(st: &State, seat: &Seat, resolve: Resolve, up: Up) -> Tables {
    let mut t = Tables::default();
    t.snat_ranges.insert((st.gateway.snat_range.net, st.gateway.snat_range.prefix), ());
    // Flows the table holds (two entries each).
    let flows = (st.gateway.conntrack_capacity / 2).clamp(0, u32::MAX as i64) as u32;
    let mtus = vpcs(st, resolve, flows, &mut t);
    for s in st.services.values() {
        service(st, s, seat, resolve, up, &mut t);
    }
    // Deleting endpoints first: a new endpoint given the same address wins the key.
    let mut eps: Vec<_> = st.endpoints.values().collect();
    eps.sort_by_key(|e| (e.state != EndpointState::Deleting, e.index));
    for e in eps {
        endpoint(st, e, seat, &mtus, flows, &mut t);
    }
    dns_entries(st, &mut t);
    t
}

/// Each VPC's interface (with its share of the table's `flows`) and the gateway's own
/// addresses on it; returns each VPC's MTU by name.
fn vpcs<'a>(st: &'a State, resolve: Resolve, flows: u32, t: &mut Tables) -> BTreeMap<&'a str, u16> {
    let mut mtus = BTreeMap::new();
    let consumers: BTreeSet<&str> = st.endpoints.values().map(|e| e.spec.vpc.as_str()).collect();
    for v in st.vpcs.values() {
        let Some(i) = resolve(&v.spec.interface) else { continue };
        let info = VpcInfo {
            vpc_id: v.vpc_id,
            mtu: i.mtu,
            fib_table: v.spec.route_table.unwrap_or(0) as u32,
            mac: i.mac,
            flow_limit: v.spec.flow_share.map_or(vpc_flow_limit(flows, consumers.len()), |f| (f as u32).min(flows)),
            table_flow_limit: flows,
            ..Default::default()
        };
        t.vpcs.insert(i.ifindex, info);
        mtus.insert(v.spec.name.as_str(), i.mtu);
        // The gateway's own addresses there: traffic to them is the kernel's.
        for a in i.addrs {
            t.ep_ips.insert((v.vpc_id, a), EP_GATEWAY_OWN);
        }
    }
    mtus
}

/// A service: its SNAT range, interface, ports, backends (healthy as `up` says) and
/// the Maglev table over those this node uses.
fn service(st: &State, s: &ServiceRecord, seat: &Seat, resolve: Resolve, up: Up, t: &mut Tables) {
    let range = st.snat_range_of(&s.spec);
    t.snat_ranges.insert((range.net, range.prefix), ());
    let vpc = st.vpcs.get(&s.spec.vpc);
    let ifindex = vpc.and_then(|v| resolve(&v.spec.interface)).map_or(0, |r| r.ifindex);
    let info = ServiceInfo {
        ifindex,
        vpc_id: vpc.map_or(0, |v| v.vpc_id),
        // A deleting service keeps serving until its endpoints are gone.
        active: 1,
        ..Default::default()
    };
    t.services.insert(s.index, info);
    for p in &s.spec.ports {
        t.ports.insert((s.index, p.protocol.number(), p.endpoint_port as u16), p.service_port as u16);
    }
    let mut members = Vec::new();
    let open = s.spec.failing_open(up);
    for b in &s.spec.backends {
        if let Some(slot) = s.backend_slots.get(&b.address) {
            let healthy = open || up(&s.spec.name, b.address);
            t.backends.insert(*slot, (b.address, healthy));
            if b.weight > 0 && healthy {
                members.push((Member { index: *slot, id: ip_raw(b.address), weight: b.weight as u32 }, b.zone.as_deref()));
            }
        }
    }
    // Same-zone priority: this node's zone's healthy backends, when it has any.
    if s.spec.zone_affinity && seat.zone.is_some() && members.iter().any(|(_, z)| *z == seat.zone.as_deref()) {
        members.retain(|(_, z)| *z == seat.zone.as_deref());
    }
    let members: Vec<Member> = members.into_iter().map(|(m, _)| m).collect();
    t.maglev.insert(s.index, maglev::table(&members));
}

/// An endpoint: its SNAT addresses on this node's slice, its security groups' rule
/// set, its limits (this node's share), its rate, and its addresses.
fn endpoint(st: &State, e: &EndpointRecord, seat: &Seat, mtus: &BTreeMap<&str, u16>, flows: u32, t: &mut Tables) {
    let (Some(svc), Some(vpc)) = (st.services.get(&e.service), st.vpcs.get(&e.spec.vpc)) else { return };
    let sides = [mtus.get(e.spec.vpc.as_str()), mtus.get(svc.spec.vpc.as_str())];
    let snat = st.snat_ips_on(e, seat.slice);
    for (i, ip) in snat.iter().enumerate() {
        t.ep_snat.insert(e.index * MAX_SNAT_PER_ENDPOINT + i as u32, *ip);
    }
    // A set's key names its content; two different sets on one key (a hash
    // collision) take the next free key.
    let rules = sg::compile(&st.spec, e);
    let mut sg_set = 0;
    if !rules.is_empty() {
        sg_set = sg::key_of(&rules);
        while t.sg_sets.get(&sg_set).is_some_and(|r| *r != rules) {
            sg_set = sg_set.wrapping_add(1).max(1);
        }
        t.sg_sets.insert(sg_set, rules);
    }
    let s = &svc.spec;
    let conn_limit = seat.share(s.connection_limit as u32);
    let info = EndpointInfo {
        service: svc.index,
        sg_set,
        conn_limit,
        state: state_byte(e.state),
        snat_count: snat.len() as u8,
        mss_clamp: mss_clamp(st.gateway.mss_clamp, sides.into_iter().flatten().copied().min()),
        half_open_limit: s.half_open_limit.map_or(half_open_limit(conn_limit), |h| seat.share(h as u32)),
        flow_limit: s.flow_share.map_or(endpoint_flow_limit(conn_limit, flows), |f| seat.share(f as u32).min(flows)),
    };
    t.endpoints.insert(e.index, info);
    if let Some(b) = e.spec.bandwidth {
        t.rates.insert(e.index, Rate::of_bps(b.0));
    }
    // Every node answers on every address (zonal ones included): only where each
    // is published follows the zones.
    for ip in e.addresses() {
        t.ep_ips.insert((vpc.vpc_id, ip), e.index);
    }
}

/// Each VPC's DNS address, and its names (see `model::dns`).
fn dns_entries(st: &State, t: &mut Tables) {
    for v in st.vpcs.values() {
        if let Some(ip) = v.spec.dns {
            t.ep_ips.insert((v.vpc_id, ip), EP_DNS);
        }
    }
    let ttl = st.gateway.dns_ttl.0.as_secs() as u32;
    for ((vpc, name), r) in dns::records(st) {
        let Some(vpc_id) = st.vpcs.get(&vpc).map(|v| v.vpc_id) else { continue };
        // Names that cannot be keys (a label over 63 bytes) are left out.
        let (Some((_, key_len)), Some((_, zone_len))) = (dns_key(vpc_id, &name), dns_key(vpc_id, &r.zone)) else { continue };
        let entry = DnsEntry {
            ip_be: r.ip.map_or(0, ip_raw),
            ttl,
            // Nothing transfers these zones: the serial never needs to move.
            serial: 1,
            key_len: key_len as u16,
            zone_key_len: zone_len as u16,
            kind: if r.ip.is_some() { DNS_KIND_A } else { DNS_KIND_EXISTS },
            _pad: [0; 3],
        };
        t.dns.insert((vpc_id, name), entry);
    }
}
