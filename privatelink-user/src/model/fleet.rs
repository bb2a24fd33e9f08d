//! The fleet in the model: the nodes that share one recorded state, their liveness,
//! each one's seat (its SNAT slice, its share of an endpoint's limits, its zone) and
//! the routes it publishes. Pure: the store says which nodes are alive, the daemon
//! records it here. The slices themselves are `slices`.

pub use super::slices::{allocatable, from_slice, on_slice, slice_range, NodeRecord, MAX_SLICES};
use super::{
    spec::Cidr,
    state::{EndpointState, Event, State},
    time::unix_now_ms,
};
use std::{collections::BTreeSet, net::Ipv4Addr};

/// What one node takes from the recorded state: its slice, its share of limits and
/// its zone (which zonal addresses it publishes, which backends it prefers).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seat {
    pub slice: u32,
    /// This node's rank among the `of` nodes that share limits (0-based).
    pub rank: u32,
    pub of: u32,
    pub zone: Option<String>,
}

impl Seat {
    /// A gateway alone (no fleet recorded yet): slice 0, the whole limit, no zone.
    pub const ALONE: Seat = Seat { slice: 0, rank: 0, of: 1, zone: None };

    /// `me`'s seat: limits are shared among the nodes recorded up, and `me` (a node
    /// always counts itself: one cut off from the store keeps its last share), ranked
    /// by slice.
    pub fn of(st: &State, me: &str) -> Seat {
        let Some(mine) = st.nodes.get(me) else { return Seat::ALONE };
        let mut sharing: Vec<u32> = st.nodes.iter().filter(|(n, r)| r.up || n.as_str() == me).map(|(_, r)| r.slice).collect();
        sharing.sort_unstable();
        let rank = sharing.iter().position(|s| *s == mine.slice).unwrap_or(0) as u32;
        Seat { slice: mine.slice, rank, of: sharing.len().max(1) as u32, zone: mine.zone.clone() }
    }

    /// This node's share of a fleet-wide `limit`: the limit split evenly, the first
    /// `limit % of` nodes one more, so the shares sum to the limit exactly. A share is
    /// at least 1 (a limit smaller than the fleet lets each node open one flow).
    pub fn share(&self, limit: u32) -> u32 {
        let of = self.of.max(1);
        (limit / of + u32::from(self.rank < limit % of)).max(1)
    }
}

/// Slice `k` of every SNAT range in use (the gateway's and the services' own), as
/// text: what `get nodes` shows of a node.
pub fn snat_slices_of(st: &State, k: u32) -> Vec<String> {
    snat_slice_ranges(st, k).into_iter().map(|r| r.to_string()).collect()
}

/// Slice `k` of every SNAT range in `st` (the gateway's first, then services' own).
pub fn snat_slice_ranges(st: &State, k: u32) -> Vec<Cidr> {
    let n = st.snat_slices();
    let mut ranges = vec![st.gateway.snat_range];
    for s in st.services.values() {
        let r = st.snat_range_of(&s.spec);
        if !ranges.contains(&r) {
            ranges.push(r);
        }
    }
    ranges.into_iter().map(|r| slice_range(r, n, k)).collect()
}

/// The routes the node in `seat` publishes, as (table, address): the address of every
/// endpoint it serves (pending and rejected ones too: the gateway answers them) whose
/// VPC has an announce table and whose two interfaces carry the data path
/// (`attached`), and the zonal addresses of its own zone. Nothing when the node may
/// not hold its lease.
pub fn announced(st: &State, seat: &Seat, attached: &dyn Fn(&str) -> bool, holds_lease: bool) -> BTreeSet<(u32, Ipv4Addr)> {
    let mut out = BTreeSet::new();
    if !holds_lease {
        return out;
    }
    for e in st.endpoints.values() {
        if !matches!(e.state, EndpointState::Accepted | EndpointState::PendingAcceptance | EndpointState::Rejected) {
            continue;
        }
        let (Some(vpc), Some(svc)) = (st.vpcs.get(&e.spec.vpc), st.services.get(&e.service)) else { continue };
        let Some(table) = vpc.spec.announce_table(&st.gateway) else { continue };
        let served = st.vpcs.get(&svc.spec.vpc).is_some_and(|p| attached(&p.spec.interface)) && attached(&vpc.spec.interface);
        if !served {
            continue;
        }
        out.insert((table as u32, e.ip));
        for (zone, ip) in &e.spec.zone_ips {
            if seat.zone.as_deref() == Some(zone.as_str()) {
                out.insert((table as u32, *ip));
            }
        }
    }
    // Every node answers a VPC's DNS queries: each publishes its DNS address.
    for v in st.vpcs.values() {
        if let (Some(ip), Some(table)) = (v.spec.dns, v.spec.announce_table(&st.gateway)) {
            if attached(&v.spec.interface) {
                out.insert((table as u32, ip));
            }
        }
    }
    out
}

/// The SNAT slices the node `me` publishes in `gateway.fleet.snat_announce_table`, as
/// (table, slice): its own, and (`taking`) those of the nodes it has taken over
/// (`buddy::taken_over_by`). Nothing while it may not hold its lease or no provider
/// VPC's interface carries the data path.
pub fn snat_announced(st: &State, me: &str, attached: &dyn Fn(&str) -> bool, holds_lease: bool, taking: bool) -> BTreeSet<(u32, Cidr)> {
    let mut out = BTreeSet::new();
    let (Some(table), Some(rec)) = (st.gateway.fleet.snat_announce_table, st.nodes.get(me)) else { return out };
    let serving = st.services.values().any(|s| st.vpcs.get(&s.spec.vpc).is_some_and(|v| attached(&v.spec.interface)));
    if !holds_lease || !serving {
        return out;
    }
    let mut slices = vec![rec.slice];
    if taking {
        slices.extend(super::buddy::taken_over_by(st, me).iter().filter_map(|n| st.nodes.get(n)).map(|r| r.slice));
    }
    for k in slices {
        out.extend(snat_slice_ranges(st, k).into_iter().map(|c| (table as u32, c)));
    }
    out
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FleetError {
    #[error("no free SNAT slice for node {node}: gateway.snat_slices is {slices} and nodes {holders} hold them; raise gateway.snat_slices (while no endpoint exists) or remove a node that is gone (`privatelink delete node NAME`)")]
    NoSlice { node: String, slices: u32, holders: String },
    #[error("node {0} is not part of the fleet")]
    Unknown(String),
    #[error("node {0} is alive (its lease is live); stop it before removing it")]
    Alive(String),
}

/// `me` joins (or comes back): it keeps its slice, or takes the lowest free one. Its
/// zone is updated. Returns the next state and the event, or None when nothing changes.
pub fn join(st: &State, me: &str, zone: Option<&str>, slices_limit: u32) -> Result<Option<(State, Vec<Event>)>, FleetError> {
    let mut next = st.clone();
    let mut events = Vec::new();
    match next.nodes.get_mut(me) {
        Some(r) => {
            if r.up && r.zone.as_deref() == zone && r.restarting_until_ms.is_none() {
                return Ok(None);
            }
            let was_restarting = r.restarting_until_ms.take().is_some();
            if !r.up {
                events.push(node_event("node.joined", me, format!("node {me} is back (slice {})", r.slice)));
            } else if was_restarting {
                events.push(node_event("node.joined", me, format!("node {me} is back from its restart")));
            }
            r.up = true;
            r.zone = zone.map(str::to_string);
            r.since_ms = unix_now_ms();
        }
        None => {
            let slice = (0..slices_limit.max(1))
                .find(|k| !st.nodes.values().any(|r| r.slice == *k))
                .ok_or_else(|| FleetError::NoSlice { node: me.into(), slices: slices_limit, holders: st.nodes.keys().cloned().collect::<Vec<_>>().join(", ") })?;
            events.push(node_event("node.joined", me, format!("node {me} joined the fleet with SNAT slice {slice}")));
            next.nodes.insert(me.into(), NodeRecord { slice, zone: zone.map(str::to_string), up: true, since_ms: unix_now_ms(), restarting_until_ms: None });
        }
    }
    Ok(Some((next, events)))
}

/// How long a node recorded up is not taken for expired without a registration: it
/// registers under its lease within a second of joining.
pub const JOIN_GRACE_MS: u64 = 5_000;

/// `me` stops with its data path attached (SIGTERM: a restart, an upgrade): the others
/// take it for up until `until_ms` although its lease runs out, so a restart changes
/// no share and expires nothing. None when it is not recorded up.
pub fn restarting(st: &State, me: &str, until_ms: u64) -> Option<(State, Vec<Event>)> {
    let mut next = st.clone();
    let r = next.nodes.get_mut(me).filter(|r| r.up)?;
    r.restarting_until_ms = Some(until_ms);
    let secs = until_ms.saturating_sub(unix_now_ms()).div_ceil(1000);
    let message = format!("node {me} is restarting: its data path carries its flows on, and it counts as up for {secs} s (its restart grace)");
    Some((next, vec![node_event("node.restarting", me, message)]))
}

/// Whether `r` is a restarting node's record still within its restart grace at `now`.
pub fn still_restarting(r: &NodeRecord, now_ms: u64) -> bool {
    r.restarting_until_ms.is_some_and(|until| now_ms < until)
}

/// Record which nodes are alive (`live`: names registered under a live lease). Only
/// changes of `up` count; `me` is never recorded down by itself, nor a node that
/// joined less than `JOIN_GRACE_MS` ago, nor one restarting within its grace.
pub fn liveness(st: &State, me: &str, live: &[String]) -> Option<(State, Vec<Event>)> {
    let mut next = st.clone();
    let mut events = Vec::new();
    let now = unix_now_ms();
    for (name, r) in next.nodes.iter_mut() {
        let up = name == me || live.contains(name) || (r.up && (now.saturating_sub(r.since_ms) < JOIN_GRACE_MS || still_restarting(r, now)));
        if up != r.up {
            r.up = up;
            r.restarting_until_ms = None;
            r.since_ms = unix_now_ms();
            let (kind, what) = if up { ("node.joined", "is back") } else { ("node.expired", "expired (its lease ran out): its share of each limit goes to the others") };
            events.push(node_event(kind, name, format!("node {name} {what}")));
        }
    }
    (!events.is_empty()).then_some((next, events))
}

/// The record of a lone gateway (the embedded store): one node, `me`, slice 0, up.
/// Cuts recorded for another name (the host was renamed) become `me`'s. None when the
/// record already says so.
pub fn alone(st: &State, me: &str, zone: Option<&str>) -> Option<(State, Vec<Event>)> {
    let r = st.nodes.get(me);
    if st.nodes.len() == 1 && r.is_some_and(|r| r.slice == 0 && r.up && r.zone.as_deref() == zone) {
        return None;
    }
    let mut next = st.clone();
    let mut owed = super::state::Cuts::default();
    for (name, c) in std::mem::take(&mut next.cuts) {
        if name != me {
            owed.endpoints.extend(c.endpoints);
            owed.backends.extend(c.backends);
        } else {
            next.cuts.insert(name, c);
        }
    }
    if !owed.is_empty() {
        let c = next.cuts.entry(me.to_string()).or_default();
        c.endpoints.extend(owed.endpoints);
        c.backends.extend(owed.backends);
    }
    next.nodes.clear();
    next.nodes.insert(me.to_string(), NodeRecord { slice: 0, zone: zone.map(str::to_string), up: true, since_ms: unix_now_ms(), restarting_until_ms: None });
    Some((next, Vec::new()))
}

/// Remove a node that is gone for good (its slice becomes free).
pub fn remove(st: &State, name: &str, live: &[String]) -> Result<(State, Vec<Event>), FleetError> {
    if !st.nodes.contains_key(name) {
        return Err(FleetError::Unknown(name.into()));
    }
    if live.iter().any(|n| n == name) {
        return Err(FleetError::Alive(name.into()));
    }
    let mut next = st.clone();
    next.nodes.remove(name);
    next.cuts.remove(name);
    next.health_views.remove(name);
    Ok((next, vec![node_event("node.removed", name, format!("node {name} was removed from the fleet"))]))
}

fn node_event(kind: &str, name: &str, message: String) -> Event {
    Event::new(kind, name, None, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::spec::Cidr;

    fn cidr(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    #[test]
    fn slices_cut_a_range_evenly_and_map_offsets_both_ways() {
        let r = cidr("11.163.0.0/16");
        assert_eq!(slice_range(r, 4, 0).to_string(), "11.163.0.0/18");
        assert_eq!(slice_range(r, 4, 3).to_string(), "11.163.192.0/18");
        assert_eq!(allocatable(r, 4), (u32::from(Ipv4Addr::new(11, 163, 0, 1)) as u64, u32::from(Ipv4Addr::new(11, 163, 63, 254)) as u64));
        assert_eq!(allocatable(r, 1).1, u32::from(Ipv4Addr::new(11, 163, 255, 254)) as u64);
        let a = Ipv4Addr::new(11, 163, 0, 7);
        let on2 = on_slice(r, 4, 2, a);
        assert_eq!(on2, Ipv4Addr::new(11, 163, 128, 7));
        assert_eq!(from_slice(r, 4, on2), Some((2, a)));
        assert_eq!(from_slice(r, 4, Ipv4Addr::new(10, 0, 0, 1)), None);
    }

    fn fleet(names: &[(&str, bool)]) -> State {
        let mut st = State::default();
        for (i, (n, up)) in names.iter().enumerate() {
            st.nodes.insert(n.to_string(), NodeRecord { slice: i as u32, zone: None, up: *up, since_ms: 0, restarting_until_ms: None });
        }
        st
    }

    #[test]
    fn shares_sum_to_the_limit_and_follow_the_live_nodes() {
        let st = fleet(&[("a", true), ("b", true), ("c", true)]);
        for limit in [1u32, 2, 3, 10, 3000, 3001] {
            let total: u32 = ["a", "b", "c"].iter().map(|n| Seat::of(&st, n).share(limit)).sum();
            assert_eq!(total, limit.max(3), "limit {limit}");
        }
        let st = fleet(&[("a", true), ("b", false), ("c", true)]);
        assert_eq!(Seat::of(&st, "a").share(3000) + Seat::of(&st, "c").share(3000), 3000);
        // A node recorded down still counts itself (it keeps its last share).
        assert_eq!(Seat::of(&st, "b").of, 3);
        assert_eq!(Seat::of(&State::default(), "x"), Seat::ALONE);
    }

    #[test]
    fn joining_takes_the_lowest_free_slice_and_keeps_it() {
        let st = fleet(&[("a", true), ("c", false)]);
        let (st, ev) = join(&st, "b", Some("z1"), 4).unwrap().unwrap();
        assert_eq!(st.nodes["b"].slice, 2);
        assert_eq!(ev[0].kind, "node.joined");
        assert_eq!(join(&st, "b", Some("z1"), 4).unwrap(), None);
        let (st2, _) = join(&st, "c", None, 4).unwrap().unwrap();
        assert_eq!(st2.nodes["c"].slice, 1);
        assert!(st2.nodes["c"].up);
        let err = join(&st, "d", None, 3).unwrap_err();
        assert!(err.to_string().contains("no free SNAT slice for node d"), "{err}");
    }

    #[test]
    fn a_node_publishes_its_snat_slices_and_those_it_took_over() {
        let text = "gateway: {snat_slices: 4, fleet: {snat_announce_table: 101}}\nvpcs:\n- {name: c, interface: gw-c, cidr: 10.0.0.0/24}\n- {name: p, interface: gw-p, cidr: 10.3.0.0/24}\nservices:\n- {name: s, owner: \"1\", vpc: p, auto_accept: true, backends: [{address: 10.3.0.5}], ports: [{protocol: tcp, endpoint_port: 80, service_port: 80}]}\n- {name: t, owner: \"1\", vpc: p, snat_range: 198.19.128.0/20, auto_accept: true, backends: [{address: 10.3.0.6}], ports: [{protocol: tcp, endpoint_port: 80, service_port: 80}]}\n";
        let spec = crate::model::spec::parse(text).unwrap().0;
        let env = crate::model::validate::Env::offline();
        let mut st = crate::model::plan::finish(crate::model::plan_spec(&spec, None, &State::default(), &env).unwrap().state);
        for (k, n) in ["gw1", "gw2", "gw3"].iter().enumerate() {
            st.nodes.insert(n.to_string(), NodeRecord { slice: k as u32, zone: None, up: true, since_ms: 0, restarting_until_ms: None });
        }
        let all = |_: &str| true;
        let c = |s: &str| s.parse::<Cidr>().unwrap();
        // gw2 (slice 1): its slice of each range, in table 101.
        let own: BTreeSet<_> = [(101, c("11.163.64.0/18")), (101, c("198.19.132.0/22"))].into();
        assert_eq!(snat_announced(&st, "gw2", &all, true, true), own);
        assert!(snat_announced(&st, "gw2", &all, false, true).is_empty(), "its lease in doubt");
        assert!(snat_announced(&st, "gw2", &|i| i != "gw-p", true, true).is_empty(), "no data path towards the providers");
        // gw1 dies: its buddy publishes gw1's slices too (when it takes over), the
        // other node nothing more.
        st.nodes.get_mut("gw1").unwrap().up = false;
        let holder = crate::model::buddy::buddy_of(&st, "gw1").unwrap();
        let other = if holder == "gw2" { "gw3" } else { "gw2" };
        let took = snat_announced(&st, &holder, &all, true, true);
        assert!(took.contains(&(101, c("11.163.0.0/18"))) && took.contains(&(101, c("198.19.128.0/22"))) && took.len() == 4, "{took:?}");
        assert_eq!(snat_announced(&st, &holder, &all, true, false).len(), 2, "without replication it holds no flows of gw1's: it takes nothing");
        assert_eq!(snat_announced(&st, other, &all, true, true).len(), 2);
    }

    #[test]
    fn a_node_publishes_the_endpoints_it_serves_its_zones_addresses_and_dns_addresses() {
        let text = "gateway: {fleet: {announce_table: 100}}\nvpcs:\n- {name: c, interface: gw-c, cidr: 10.0.0.0/24}\n- {name: d, interface: gw-d, cidr: 10.9.0.0/24, announce_table: 7}\n- {name: p, interface: gw-p, cidr: 10.3.0.0/24}\nservices:\n- {name: s, owner: \"1\", vpc: p, auto_accept: true, backends: [{address: 10.3.0.5}], ports: [{protocol: tcp, endpoint_port: 80, service_port: 80}]}\nendpoints:\n- {name: e1, owner: \"1\", vpc: c, service: s, ip: 10.0.0.9, zone_ips: {z1: 10.0.0.11, z2: 10.0.0.12}}\n- {name: e2, owner: \"1\", vpc: d, service: s, ip: 10.9.0.9}\n- {name: e3, owner: \"1\", vpc: p, service: s, ip: 10.3.0.9}\n";
        let spec = crate::model::spec::parse(text).unwrap().0;
        let env = crate::model::validate::Env::offline();
        let st = crate::model::plan::finish(crate::model::plan_spec(&spec, None, &State::default(), &env).unwrap().state);
        let seat = Seat { zone: Some("z1".into()), ..Seat::ALONE };
        let all = |_: &str| true;
        let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        // VPC d has a table of its own; the others use the gateway's. Node z1 publishes
        // z1's zonal address, not z2's.
        let want: BTreeSet<_> = [(100, ip("10.0.0.9")), (100, ip("10.0.0.11")), (7, ip("10.9.0.9")), (100, ip("10.3.0.9"))].into();
        assert_eq!(announced(&st, &seat, &all, true), want);
        // Its lease in doubt, a node publishes nothing.
        assert!(announced(&st, &seat, &all, false).is_empty());
        // No data path on the provider side: nothing is served.
        assert!(announced(&st, &seat, &|i| i != "gw-p", true).is_empty());
        // Only the consumer VPC d's interface down: its endpoint is withdrawn.
        assert_eq!(announced(&st, &seat, &|i| i != "gw-d", true).len(), 3);
        // Another zone's node publishes that zone's address instead.
        let z2 = Seat { zone: Some("z2".into()), ..Seat::ALONE };
        assert!(announced(&st, &z2, &all, true).contains(&(100, ip("10.0.0.12"))));
        assert!(!announced(&st, &z2, &all, true).contains(&(100, ip("10.0.0.11"))));
        // A VPC's DNS address is published by every node whose link to the VPC is up.
        let dns = text.replace("cidr: 10.0.0.0/24}", "cidr: 10.0.0.0/24, dns: 10.0.0.53}");
        let spec = crate::model::spec::parse(&dns).unwrap().0;
        let st = crate::model::plan::finish(crate::model::plan_spec(&spec, None, &State::default(), &env).unwrap().state);
        assert!(announced(&st, &z2, &all, true).contains(&(100, ip("10.0.0.53"))));
        assert!(!announced(&st, &z2, &|i| i != "gw-c", true).contains(&(100, ip("10.0.0.53"))));
    }

    #[test]
    fn alone_takes_the_one_record_and_the_cuts_of_an_old_name() {
        let mut st = State::default();
        st.nodes.insert("old".into(), NodeRecord { slice: 3, zone: None, up: false, since_ms: 0, restarting_until_ms: None });
        st.cuts.entry("old".into()).or_default().endpoints.insert(7);
        let (next, events) = alone(&st, "gw", Some("z1")).expect("renamed: a new record");
        assert!(events.is_empty());
        assert_eq!(next.nodes.keys().collect::<Vec<_>>(), ["gw"]);
        let r = &next.nodes["gw"];
        assert_eq!((r.slice, r.up, r.zone.as_deref()), (0, true, Some("z1")));
        assert_eq!(next.cuts.keys().collect::<Vec<_>>(), ["gw"], "the old name's cuts are owed by the new one");
        assert!(next.cuts["gw"].endpoints.contains(&7));
        assert_eq!(alone(&next, "gw", Some("z1")), None, "already alone: nothing to record");
        assert!(alone(&next, "gw", None).is_some(), "a new zone is recorded");
    }

    #[test]
    fn liveness_records_only_changes_and_never_downs_itself() {
        let mut st = fleet(&[("a", true), ("b", true)]);
        assert!(liveness(&st, "a", &["a".into(), "b".into()]).is_none());
        st.nodes.get_mut("b").unwrap().since_ms = unix_now_ms();
        assert!(liveness(&st, "a", &[]).is_none(), "b joined a moment ago: not expired yet");
        st.nodes.get_mut("b").unwrap().since_ms = unix_now_ms() - JOIN_GRACE_MS;
        let (next, ev) = liveness(&st, "a", &[]).unwrap();
        assert!(next.nodes["a"].up && !next.nodes["b"].up);
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].kind, "node.expired");
        assert_eq!(remove(&next, "b", &[]).unwrap().0.nodes.len(), 1);
        assert_eq!(remove(&next, "a", &["a".into()]).unwrap_err(), FleetError::Alive("a".into()));
    }

    #[test]
    fn a_restarting_node_stays_up_within_its_grace_and_its_return_clears_the_mark() {
        let st = fleet(&[("a", true), ("b", true)]);
        let (st, ev) = restarting(&st, "b", unix_now_ms() + 10_000).unwrap();
        assert_eq!(ev[0].kind, "node.restarting");
        assert!(ev[0].message.contains("10 s"), "{}", ev[0].message);
        // Its lease ran out (b is not live): still up, nothing recorded.
        assert!(liveness(&st, "a", &["a".into()]).is_none());
        // Back: the mark goes, said once.
        let (back, ev) = join(&st, "b", None, 4).unwrap().unwrap();
        assert_eq!(back.nodes["b"].restarting_until_ms, None);
        assert_eq!((ev.len(), ev[0].kind.as_str()), (1, "node.joined"));
        assert!(join(&back, "b", None, 4).unwrap().is_none());
        // Not back within the grace: expired like any node.
        let mut late = st.clone();
        late.nodes.get_mut("b").unwrap().restarting_until_ms = Some(unix_now_ms() - 1);
        let (next, ev) = liveness(&late, "a", &["a".into()]).unwrap();
        assert!(!next.nodes["b"].up && next.nodes["b"].restarting_until_ms.is_none());
        assert_eq!(ev[0].kind, "node.expired");
        // A node recorded down is not marked.
        assert!(restarting(&next, "b", unix_now_ms() + 10_000).is_none());
    }
}
