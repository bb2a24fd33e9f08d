//! The exact BPF map contents a state calls for (`desired`), and the ordered writes
//! that turn observed contents into desired ones (`diff`). Pure: `reconcile` reads and
//! writes the real maps; the tests run the same ops on an in-memory model of them.
//! Takes the model's state in; touches no map itself.
//!
//! Order of writes: everything an endpoint depends on (SNAT ranges, VPC interfaces,
//! backends, services, ports, Maglev tables) is written before the endpoint itself,
//! and an endpoint's address is bound last; removals go the other way round. So an
//! unchanged endpoint never loses a piece it uses, and a new one is reachable only
//! once it is complete.

use super::{
    sg,
    shares::{endpoint_flow_limit, half_open_limit, vpc_flow_limit},
    links::Iface,
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
use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
};

pub type IpKey = (u16, Ipv4Addr);
pub type PortK = (u32, u8, u16);

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tables {
    /// ifindex -> VPC
    pub vpcs: BTreeMap<u32, VpcInfo>,
    pub ep_ips: BTreeMap<IpKey, u32>,
    pub endpoints: BTreeMap<u32, EndpointInfo>,
    pub services: BTreeMap<u32, ServiceInfo>,
    /// (service, proto, endpoint port) -> service port
    pub ports: BTreeMap<PortK, u16>,
    /// slot -> (address, up)
    pub backends: BTreeMap<u32, (Ipv4Addr, bool)>,
    /// Maglev table of each active service.
    pub maglev: BTreeMap<u32, Vec<u32>>,
    /// `endpoint * MAX_SNAT_PER_ENDPOINT + i` -> the endpoint's i-th SNAT address.
    pub ep_snat: BTreeMap<u32, Ipv4Addr>,
    pub snat_ranges: BTreeSet<(Ipv4Addr, u8)>,
    /// (VPC id, name) -> its private DNS entry.
    pub dns: BTreeMap<DnsK, DnsEntry>,
    /// Security-group rule sets by content key (see `sg`).
    pub sg_sets: BTreeMap<u32, Vec<SgRule>>,
    /// Endpoint -> its bandwidth limit (endpoints with one only).
    pub rates: BTreeMap<u32, Rate>,
}

pub type DnsK = (u16, String);

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    AddSnatRange(Ipv4Addr, u8),
    SetVpc(u32, VpcInfo),
    SetBackend(u32, Ipv4Addr, bool),
    SetService(u32, ServiceInfo),
    SetPort(PortK, u16),
    SetMaglev(u32, Vec<u32>),
    /// A slot taken by a new endpoint starts with zero counters.
    ResetCounters(u32),
    SetEpSnat(u32, Ipv4Addr),
    SetSgSet(u32, Vec<SgRule>),
    RemoveSgSet(u32),
    /// A rate changes live: the buckets (and flows) are left as they are.
    SetRate(u32, Rate),
    ClearRate(u32),
    SetEndpoint(u32, EndpointInfo),
    BindIp(IpKey, u32),
    SetDns(DnsK, DnsEntry),
    RemoveDns(DnsK),
    UnbindIp(IpKey),
    ClearEndpoint(u32),
    ClearEpSnat(u32),
    RemovePort(PortK),
    ClearService(u32),
    ClearBackend(u32),
    RemoveSnatRange(Ipv4Addr, u8),
    RemoveVpc(u32),
}

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

/// What the host tells about an interface: its ifindex, MAC, MTU and addresses.
pub type Resolve<'a> = &'a dyn Fn(&str) -> Option<Iface>;

/// Whether a service's backend passes its health checks.
pub type Up<'a> = &'a dyn Fn(&str, Ipv4Addr) -> bool;

impl Tables {
    /// (provider interface index, routing table, address) of every backend of an
    /// active service: the next hops the kernel must keep resolved.
    pub fn backend_hops(&self) -> BTreeSet<(u32, u32, Ipv4Addr)> {
        let mut out = BTreeSet::new();
        for (svc, info) in &self.services {
            let Some(vpc) = self.vpcs.get(&info.ifindex) else { continue };
            let slots: BTreeSet<u32> = self.maglev.get(svc).into_iter().flatten().copied().filter(|s| *s != BACKEND_NONE).collect();
            for slot in slots {
                if let Some((ip, _)) = self.backends.get(&slot) {
                    out.insert((info.ifindex, vpc.fib_table, *ip));
                }
            }
        }
        out
    }
}

/// The map contents `st` calls for on the node in `seat` (its SNAT slice, its share of
/// each connection limit), with backends' health from `up`.
pub fn desired(st: &State, seat: &Seat, resolve: Resolve, up: Up) -> Tables {
    let mut t = Tables::default();
    t.snat_ranges.insert((st.gateway.snat_range.net, st.gateway.snat_range.prefix));
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
    t.snat_ranges.insert((range.net, range.prefix));
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

/// Writes that turn `have` into `want`, in a safe order (see the module comment).
pub fn diff(want: &Tables, have: &Tables) -> Vec<Op> {
    let mut ops = Vec::new();
    sets(want, have, &mut ops);
    removals(want, have, &mut ops);
    ops
}

fn changed<'a, K: Ord + Clone, V: PartialEq>(want: &'a BTreeMap<K, V>, have: &'a BTreeMap<K, V>) -> impl Iterator<Item = (&'a K, &'a V)> {
    want.iter().filter(move |(k, v)| have.get(k) != Some(v))
}

fn gone<'a, K: Ord, V>(want: &'a BTreeMap<K, V>, have: &'a BTreeMap<K, V>) -> impl Iterator<Item = &'a K> {
    have.keys().filter(move |k| !want.contains_key(k))
}

/// What is new or changed, dependencies first (see the module comment).
fn sets(want: &Tables, have: &Tables, ops: &mut Vec<Op>) {
    for (net, p) in want.snat_ranges.difference(&have.snat_ranges) {
        ops.push(Op::AddSnatRange(*net, *p));
    }
    for (k, v) in changed(&want.vpcs, &have.vpcs) {
        ops.push(Op::SetVpc(*k, *v));
    }
    // A backend coming up (or new) is marked before Maglev slots point at it; one
    // going down is marked after the slots moved away from it.
    let (going_down, rest): (Vec<_>, Vec<_>) = changed(&want.backends, &have.backends)
        .partition(|(k, (_, up))| !*up && have.backends.get(*k).is_some_and(|h| h.1));
    for (k, (ip, up)) in rest {
        ops.push(Op::SetBackend(*k, *ip, *up));
    }
    for (k, v) in changed(&want.services, &have.services) {
        ops.push(Op::SetService(*k, *v));
    }
    for (k, v) in changed(&want.ports, &have.ports) {
        ops.push(Op::SetPort(*k, *v));
    }
    for (k, v) in changed(&want.maglev, &have.maglev) {
        ops.push(Op::SetMaglev(*k, v.clone()));
    }
    for (k, (ip, up)) in going_down {
        ops.push(Op::SetBackend(*k, *ip, *up));
    }
    // An endpoint's SNAT addresses and rule set are written before the endpoint that
    // uses them.
    for (k, ip) in changed(&want.ep_snat, &have.ep_snat) {
        ops.push(Op::SetEpSnat(*k, *ip));
    }
    for (k, v) in changed(&want.sg_sets, &have.sg_sets) {
        ops.push(Op::SetSgSet(*k, v.clone()));
    }
    for (k, v) in changed(&want.rates, &have.rates) {
        ops.push(Op::SetRate(*k, *v));
    }
    for (k, v) in changed(&want.endpoints, &have.endpoints) {
        if !have.endpoints.contains_key(k) {
            ops.push(Op::ResetCounters(*k));
        }
        ops.push(Op::SetEndpoint(*k, *v));
    }
    for (k, v) in changed(&want.ep_ips, &have.ep_ips) {
        ops.push(Op::BindIp(*k, *v));
    }
    // Names appear once their addresses answer, and go before them.
    for (k, v) in changed(&want.dns, &have.dns) {
        ops.push(Op::SetDns(k.clone(), *v));
    }
}

/// What is gone, dependents first.
fn removals(want: &Tables, have: &Tables, ops: &mut Vec<Op>) {
    for k in gone(&want.dns, &have.dns) {
        ops.push(Op::RemoveDns(k.clone()));
    }
    for k in gone(&want.ep_ips, &have.ep_ips) {
        ops.push(Op::UnbindIp(*k));
    }
    for k in gone(&want.endpoints, &have.endpoints) {
        ops.push(Op::ClearEndpoint(*k));
    }
    for k in gone(&want.ep_snat, &have.ep_snat) {
        ops.push(Op::ClearEpSnat(*k));
    }
    for k in gone(&want.sg_sets, &have.sg_sets) {
        ops.push(Op::RemoveSgSet(*k));
    }
    for k in gone(&want.rates, &have.rates) {
        ops.push(Op::ClearRate(*k));
    }
    for k in gone(&want.ports, &have.ports) {
        ops.push(Op::RemovePort(*k));
    }
    for k in gone(&want.services, &have.services) {
        ops.push(Op::ClearService(*k));
    }
    for k in gone(&want.backends, &have.backends) {
        ops.push(Op::ClearBackend(*k));
    }
    for (net, p) in have.snat_ranges.difference(&want.snat_ranges) {
        ops.push(Op::RemoveSnatRange(*net, *p));
    }
    for k in gone(&want.vpcs, &have.vpcs) {
        ops.push(Op::RemoveVpc(*k));
    }
}

#[cfg(test)]
#[path = "tables_tests.rs"]
mod tests;
