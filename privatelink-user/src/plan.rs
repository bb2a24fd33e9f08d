//! The planner: (spec, recorded state) -> the next state and the list of changes an
//! operator reads before it happens. Pure. Also the approval decisions (accept, reject)
//! and deletes, which are edits of the recorded state and spec.
//!
//! An apply runs in two phases so a crash at any point is recoverable: `plan` gives the
//! phase-1 state (new things `creating`, removed things `deleting`, both still in the
//! data path as inactive), `finish` the phase-2 state (final states, removed things gone).

use crate::{
    spec::{Spec, SpecError},
    state::{new_id, unix_now, EndpointRecord, EndpointState, ServiceRecord, ServiceState, State, VpcRecord},
    validate::{self, Known},
    yaml::Doc,
};
use privatelink_common::{MAX_BACKENDS, MAX_ENDPOINTS, MAX_SERVICES, MAX_VPCS};
use serde::{Deserialize, Serialize};
use std::{collections::BTreeSet, fmt, net::Ipv4Addr};

/// What the host contributes to planning.
pub struct Env<'a> {
    /// Capacity of the live conntrack table, if the data path is loaded.
    pub ct_capacity: Option<u32>,
    /// Whether an interface exists on the gateway.
    pub interface_exists: &'a dyn Fn(&str) -> bool,
}

impl Env<'_> {
    /// No data path yet, every interface exists (tests, dry runs of examples).
    pub fn offline() -> Env<'static> {
        Env { ct_capacity: None, interface_exists: &|_| true }
    }
}

/// One line of a plan: `+ create`, `~ change`, `- delete`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub op: char,
    pub kind: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<String>,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.op, self.kind, self.name)?;
        if let Some(id) = &self.id {
            write!(f, " ({id})")?;
        }
        for d in &self.details {
            write!(f, "\n    {d}")?;
        }
        Ok(())
    }
}

#[derive(Clone, Debug)]
pub struct Planned {
    /// The phase-1 state.
    pub state: State,
    pub changes: Vec<Change>,
    /// Endpoints (slot indices) whose live flows must be cut now: rejected by a
    /// revocation under `on_revoke: reset`.
    pub reset: Vec<u32>,
}

fn err(doc: Option<&Doc>, path: String, message: String) -> SpecError {
    SpecError { pos: doc.and_then(|d| d.pos(&path)), path, message }
}

/// Values of `lo..=hi` handed out one by one, skipping `used` ones: lowest first, or
/// highest first when `down`. A cursor keeps a plan of N allocations O(N log N).
struct Pool {
    used: BTreeSet<u64>,
    next: i64,
    lo: i64,
    hi: i64,
    step: i64,
}

impl Pool {
    fn new(lo: u64, hi: u64, used: impl IntoIterator<Item = u64>, down: bool) -> Pool {
        let (lo, hi) = (lo as i64, hi as i64);
        Pool { used: used.into_iter().collect(), next: if down { hi } else { lo }, lo, hi, step: if down { -1 } else { 1 } }
    }

    fn take(&mut self) -> Option<u64> {
        while self.lo <= self.next && self.next <= self.hi {
            let v = self.next as u64;
            self.next += self.step;
            if self.used.insert(v) {
                return Some(v);
            }
        }
        None
    }
}

fn list<T: fmt::Display>(v: &[T]) -> String {
    v.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(", ")
}

/// Plan `spec` against `old`. Errors: every validation error, plus what only the state
/// and the host can tell (immutable fields, address pools, interfaces, table sizes).
pub fn plan(spec: &Spec, doc: Option<&Doc>, old: &State, env: &Env) -> Result<Planned, Vec<SpecError>> {
    let live = |s: &ServiceState| *s != ServiceState::Deleting;
    let known = Known {
        endpoints: old.endpoints.iter().filter(|(_, e)| e.state != EndpointState::Deleting).map(|(n, _)| n.clone()).collect(),
        service_ids: old.services.iter().filter(|(_, s)| live(&s.state)).map(|(n, s)| (n.clone(), s.id.clone())).collect(),
    };
    let mut errors = validate::validate(spec, doc, &known);
    if let Some(cap) = env.ct_capacity {
        if spec.gateway.conntrack_capacity != cap as i64 && !old.vpcs.is_empty() {
            errors.push(err(
                doc,
                "gateway.conntrack_capacity".into(),
                format!("the live conntrack table holds {cap} entries; resizing it needs `privatelink down` (which drops every flow) and a new apply"),
            ));
        }
    }
    for (i, v) in spec.vpcs.iter().enumerate() {
        if !(env.interface_exists)(&v.interface) {
            errors.push(err(doc, format!("vpcs[{i}].interface"), format!("interface `{}` does not exist on this gateway", v.interface)));
        }
    }
    for (i, s) in spec.services.iter().enumerate() {
        if let Some(r) = old.services.get(&s.name).filter(|r| live(&r.state)) {
            if r.spec.owner != s.owner {
                errors.push(err(doc, format!("services[{i}].owner"), format!("service `{}` belongs to account {}; an owner cannot change (delete the service and create it anew)", s.name, r.spec.owner)));
            }
            if r.spec.vpc != s.vpc {
                errors.push(err(doc, format!("services[{i}].vpc"), format!("service `{}` lives in VPC {}; a VPC cannot change (delete the service and create it anew)", s.name, r.spec.vpc)));
            }
        }
    }
    for (i, e) in spec.endpoints.iter().enumerate() {
        if let Some(r) = old.endpoints.get(&e.name).filter(|r| r.state != EndpointState::Deleting) {
            for (field, was, now) in [("owner", &r.spec.owner.0, &e.owner.0), ("vpc", &r.spec.vpc, &e.vpc)] {
                if was != now {
                    errors.push(err(doc, format!("endpoints[{i}].{field}"), format!("endpoint `{}` has {field} {was}; it cannot change (delete the endpoint and create it anew)", e.name)));
                }
            }
            if let Ok(si) = validate::resolve_service(spec, &known, &e.service) {
                if spec.services[si].name != r.service {
                    errors.push(err(doc, format!("endpoints[{i}].service"), format!("endpoint `{}` connects to service {}; an endpoint connects to one service for life (delete it and create it anew)", e.name, r.service)));
                }
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }

    let now = unix_now();
    let mut st = old.clone();
    st.spec = spec.clone();
    st.gateway = spec.gateway.clone();
    let mut changes = Vec::new();
    let mut reset = Vec::new();

    if old.generation > 0 && old.gateway != spec.gateway {
        let (a, b) = (serde_json::to_value(&old.gateway).unwrap_or_default(), serde_json::to_value(&spec.gateway).unwrap_or_default());
        let mut details = Vec::new();
        if let (Some(a), Some(b)) = (a.as_object(), b.as_object()) {
            for (k, v) in b {
                if a.get(k) != Some(v) {
                    details.push(format!("{k}: {} -> {v}", a.get(k).map(|x| x.to_string()).unwrap_or_default()));
                }
            }
        }
        changes.push(Change { op: '~', kind: "gateway".into(), name: spec.gateway.region.clone(), id: None, details });
    }

    // ---- VPCs (removed ones stay until `finish`: deleting endpoints still use their id)
    let mut vpc_ids = Pool::new(1, MAX_VPCS as u64 - 1, old.vpcs.values().map(|v| v.vpc_id as u64), false);
    for v in &spec.vpcs {
        match st.vpcs.get_mut(&v.name) {
            Some(r) => {
                let mut d = Vec::new();
                if r.spec.interface != v.interface {
                    d.push(format!("interface: {} -> {}", r.spec.interface, v.interface));
                }
                if r.spec.cidr != v.cidr {
                    d.push(format!("cidr: {} -> {}", r.spec.cidr, v.cidr));
                }
                if r.spec.route_table != v.route_table {
                    d.push(format!("route_table: {:?} -> {:?}", r.spec.route_table, v.route_table));
                }
                if !d.is_empty() {
                    changes.push(Change { op: '~', kind: "vpc".into(), name: v.name.clone(), id: None, details: d });
                }
                r.spec = v.clone();
            }
            None => {
                let id = vpc_ids.take().expect("validated: fewer VPCs than ids") as u16;
                changes.push(Change { op: '+', kind: "vpc".into(), name: v.name.clone(), id: None, details: vec![format!("interface {}, cidr {}", v.interface, v.cidr)] });
                st.vpcs.insert(v.name.clone(), VpcRecord { spec: v.clone(), vpc_id: id });
            }
        }
    }
    for name in old.vpcs.keys().filter(|n| !spec.vpcs.iter().any(|v| &v.name == *n)) {
        changes.push(Change { op: '-', kind: "vpc".into(), name: name.clone(), id: None, details: vec![] });
    }

    // ---- services
    let mut svc_slots = Pool::new(0, MAX_SERVICES as u64 - 1, old.services.values().map(|s| s.index as u64), false);
    let mut backend_slots =
        Pool::new(0, MAX_BACKENDS as u64 - 1, old.services.values().flat_map(|s| s.backend_slots.values().map(|v| *v as u64)), false);
    let mut backend_error = None;
    for s in &spec.services {
        let rec = match st.services.get_mut(&s.name).filter(|r| live(&r.state)) {
            Some(r) => {
                let d = service_diff(&r.spec, s);
                if !d.is_empty() {
                    changes.push(Change { op: '~', kind: "service".into(), name: s.name.clone(), id: Some(r.id.clone()), details: d });
                }
                r.spec = s.clone();
                r
            }
            None => {
                let index = svc_slots.take().ok_or_else(|| vec![err(doc, "services".into(), "no free service slot".into())])? as u32;
                let id = new_id("epsrv-");
                changes.push(Change {
                    op: '+',
                    kind: "service".into(),
                    name: s.name.clone(),
                    id: Some(id.clone()),
                    details: vec![format!(
                        "{}.{}.{id}: {} backend(s), ports {}, {}",
                        spec.gateway.region,
                        s.name,
                        s.backends.len(),
                        list(&s.ports.iter().map(|p| format!("{}/{}->{}", p.protocol, p.endpoint_port, p.service_port)).collect::<Vec<_>>()),
                        if s.auto_accept { "auto-accept" } else { "manual approval" }
                    )],
                });
                st.services.insert(
                    s.name.clone(),
                    ServiceRecord { id, spec: s.clone(), state: ServiceState::Creating, index, backend_slots: Default::default(), created_at: now },
                );
                st.services.get_mut(&s.name).expect("just inserted")
            }
        };
        rec.backend_slots.retain(|ip, _| s.backends.iter().any(|b| b.address == *ip));
        for b in &s.backends {
            if let std::collections::btree_map::Entry::Vacant(v) = rec.backend_slots.entry(b.address) {
                match backend_slots.take() {
                    Some(slot) => {
                        v.insert(slot as u32);
                    }
                    None => backend_error = Some(err(doc, "services".into(), "no free backend slot".into())),
                }
            }
        }
    }
    if let Some(e) = backend_error {
        return Err(vec![e]);
    }
    for (name, r) in st.services.iter_mut().filter(|(n, r)| live(&r.state) && !spec.services.iter().any(|s| &s.name == *n)) {
        changes.push(Change { op: '-', kind: "service".into(), name: name.clone(), id: Some(r.id.clone()), details: vec![] });
        r.state = ServiceState::Deleting;
    }

    // ---- endpoints
    let mut ep_slots = Pool::new(0, MAX_ENDPOINTS as u64 - 1, old.endpoints.values().map(|e| e.index as u64), false);
    let used_snat: Vec<u64> = old.endpoints.values().map(|e| u32::from(e.snat_ip) as u64).collect();
    // SNAT addresses per range, lowest first; endpoint addresses per VPC, highest first
    // (hosts are usually numbered from the bottom), skipping the ones endpoints hold now
    // and the ones the spec gives.
    let mut snat_pools: std::collections::HashMap<crate::spec::Cidr, Pool> = Default::default();
    let mut ip_pools: std::collections::HashMap<String, Pool> = Default::default();
    let mut given_snat: std::collections::HashSet<u64> = Default::default();
    let mut taken: std::collections::HashMap<&str, Vec<u64>> = Default::default();
    for (vpc, ip) in old.endpoints.values().map(|e| (e.spec.vpc.as_str(), e.ip)).chain(spec.endpoints.iter().filter_map(|e| e.ip.map(|ip| (e.vpc.as_str(), ip)))) {
        taken.entry(vpc).or_default().push(u32::from(ip) as u64);
    }
    let mut errors = Vec::new();
    for (i, e) in spec.endpoints.iter().enumerate() {
        let si = validate::resolve_service(spec, &known, &e.service).expect("validated");
        let svc = &spec.services[si];
        let range = st.snat_range_of(svc);
        let vpc = &st.vpcs[&e.vpc].spec;
        let existing = st.endpoints.get(&e.name).filter(|r| r.state != EndpointState::Deleting).cloned();
        let ip = match (e.ip, &existing) {
            (Some(ip), _) => ip,
            (None, Some(r)) => r.ip,
            (None, None) => {
                let pool = ip_pools.entry(e.vpc.clone()).or_insert_with(|| {
                    let used = taken.get(e.vpc.as_str()).cloned().unwrap_or_default();
                    Pool::new(u32::from(vpc.cidr.net) as u64 + 1, u32::from(vpc.cidr.broadcast()) as u64 - 1, used, true)
                });
                match pool.take() {
                    Some(ip) => Ipv4Addr::from(ip as u32),
                    None => {
                        errors.push(err(doc, format!("endpoints[{i}].ip"), format!("VPC {} ({}) has no free address left", vpc.name, vpc.cidr)));
                        continue;
                    }
                }
            }
        };
        let snat_ip = match existing.as_ref().map(|r| r.snat_ip).filter(|s| range.contains(*s)) {
            Some(s) => s,
            None => {
                let pool = snat_pools.entry(range).or_insert_with(|| {
                    Pool::new(u32::from(range.net) as u64 + 1, u32::from(range.broadcast()) as u64 - 1, used_snat.iter().copied(), false)
                });
                // Ranges of different services may overlap: an address handed out from
                // another range's pool in this plan is skipped too.
                let mut got = pool.take();
                while got.is_some_and(|a| given_snat.contains(&a)) {
                    got = pool.take();
                }
                match got {
                    Some(a) => {
                        given_snat.insert(a);
                        Ipv4Addr::from(a as u32)
                    }
                    None => {
                        errors.push(err(doc, format!("endpoints[{i}]"), format!("SNAT range {range} has no free address for this endpoint")));
                        continue;
                    }
                }
            }
        };
        match existing {
            Some(mut r) => {
                let mut d = Vec::new();
                if r.ip != ip {
                    d.push(format!("ip: {} -> {ip}", r.ip));
                }
                if r.snat_ip != snat_ip {
                    d.push(format!("snat ip: {} -> {snat_ip}", r.snat_ip));
                }
                if r.spec.service != e.service {
                    d.push(format!("service: {} -> {}", r.spec.service, e.service));
                }
                let revoked = !svc.allows(&e.owner) && matches!(r.state, EndpointState::Accepted | EndpointState::PendingAcceptance);
                if revoked {
                    r.state = EndpointState::Rejected;
                    r.reason = Some(format!("account {} was removed from allowed_accounts", e.owner));
                    d.push(format!("rejected: account {} is no longer allowed (on_revoke: {:?})", e.owner, svc.on_revoke).to_lowercase());
                    if svc.on_revoke == crate::spec::OnRevoke::Reset {
                        reset.push(r.index);
                    }
                }
                if !d.is_empty() {
                    changes.push(Change { op: '~', kind: "endpoint".into(), name: e.name.clone(), id: Some(r.id.clone()), details: d });
                }
                r.ip = ip;
                r.snat_ip = snat_ip;
                r.spec = e.clone();
                st.endpoints.insert(e.name.clone(), r);
            }
            None => {
                let Some(index) = ep_slots.take().map(|i| i as u32) else {
                    errors.push(err(doc, format!("endpoints[{i}]"), "no free endpoint slot".into()));
                    continue;
                };
                let id = new_id("ep-");
                let fate = if initial_state(svc, e) == EndpointState::Accepted { "accepted" } else { "pendingAcceptance" };
                changes.push(Change {
                    op: '+',
                    kind: "endpoint".into(),
                    name: e.name.clone(),
                    id: Some(id.clone()),
                    details: vec![format!("{ip} in VPC {} -> service {} ({fate}), source {snat_ip}", e.vpc, svc.name)],
                });
                st.endpoints.insert(
                    e.name.clone(),
                    EndpointRecord {
                        id,
                        spec: e.clone(),
                        service: svc.name.clone(),
                        state: EndpointState::Creating,
                        ip,
                        snat_ip,
                        index,
                        reason: None,
                        created_at: now,
                    },
                );
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let in_spec: std::collections::HashSet<&str> = spec.endpoints.iter().map(|e| e.name.as_str()).collect();
    for (name, r) in st.endpoints.iter_mut().filter(|(n, r)| r.state != EndpointState::Deleting && !in_spec.contains(n.as_str())) {
        changes.push(Change { op: '-', kind: "endpoint".into(), name: name.clone(), id: Some(r.id.clone()), details: vec![] });
        r.state = EndpointState::Deleting;
    }
    Ok(Planned { state: st, changes, reset })
}

/// Same owner: accepted whatever auto_accept says; other owner: auto_accept decides.
fn initial_state(svc: &crate::spec::Service, e: &crate::spec::Endpoint) -> EndpointState {
    if e.owner == svc.owner || svc.auto_accept {
        EndpointState::Accepted
    } else {
        EndpointState::PendingAcceptance
    }
}

fn service_diff(a: &crate::spec::Service, b: &crate::spec::Service) -> Vec<String> {
    let mut d = Vec::new();
    let show = |v: &dyn fmt::Debug| format!("{v:?}");
    let fields: [(&str, String, String); 10] = [
        ("backends", show(&a.backends.iter().map(|x| format!("{}@{}", x.address, x.weight)).collect::<Vec<_>>()), show(&b.backends.iter().map(|x| format!("{}@{}", x.address, x.weight)).collect::<Vec<_>>())),
        ("ports", show(&a.ports.iter().map(|p| format!("{}/{}->{}", p.protocol, p.endpoint_port, p.service_port)).collect::<Vec<_>>()), show(&b.ports.iter().map(|p| format!("{}/{}->{}", p.protocol, p.endpoint_port, p.service_port)).collect::<Vec<_>>())),
        ("auto_accept", a.auto_accept.to_string(), b.auto_accept.to_string()),
        ("allowed_accounts", show(&a.allowed_accounts.iter().map(|x| &x.0).collect::<Vec<_>>()), show(&b.allowed_accounts.iter().map(|x| &x.0).collect::<Vec<_>>())),
        ("connection_limit", a.connection_limit.to_string(), b.connection_limit.to_string()),
        ("on_revoke", show(&a.on_revoke), show(&b.on_revoke)),
        ("description", show(&a.description), show(&b.description)),
        ("snat_range", show(&a.snat_range.map(|r| r.to_string())), show(&b.snat_range.map(|r| r.to_string()))),
        ("health_check", show(&a.health_check), show(&b.health_check)),
        ("notify_url", show(&a.notify_url), show(&b.notify_url)),
    ];
    for (name, x, y) in fields {
        if x != y {
            d.push(format!("{name}: {x} -> {y}"));
        }
    }
    d
}

/// Phase 2: `creating` becomes its final state, `deleting` goes away, VPCs no longer in
/// the spec go away.
pub fn finish(mut st: State) -> State {
    st.endpoints.retain(|_, e| e.state != EndpointState::Deleting);
    st.services.retain(|_, s| s.state != ServiceState::Deleting);
    let spec = st.spec.clone();
    st.vpcs.retain(|n, _| spec.vpcs.iter().any(|v| &v.name == n));
    for s in st.services.values_mut() {
        if s.state == ServiceState::Creating {
            s.state = ServiceState::Available;
        }
    }
    let services = st.services.clone();
    for e in st.endpoints.values_mut() {
        if e.state == EndpointState::Creating {
            e.state = match services.get(&e.service) {
                Some(s) => initial_state(&s.spec, &e.spec),
                None => EndpointState::Failed,
            };
        }
    }
    st
}

/// Whether a state has work left for `finish` (an apply was interrupted).
pub fn unfinished(st: &State) -> bool {
    st.endpoints.values().any(|e| matches!(e.state, EndpointState::Creating | EndpointState::Deleting))
        || st.services.values().any(|s| matches!(s.state, ServiceState::Creating | ServiceState::Deleting))
        || st.vpcs.keys().any(|n| !st.spec.vpcs.iter().any(|v| &v.name == n))
}

/// An approval decision went wrong.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecisionError {
    #[error("no endpoint named or with id `{0}`")]
    NoEndpoint(String),
    #[error("no service named or with id `{0}`")]
    NoService(String),
    #[error("endpoint {name} is {state}: only a pendingAcceptance or rejected endpoint can be accepted")]
    CannotAccept { name: String, state: EndpointState },
    #[error("endpoint {name} is {state}: only a pendingAcceptance or accepted endpoint can be rejected")]
    CannotReject { name: String, state: EndpointState },
    #[error("account {account} is not allowed by service {service} any more: add it to allowed_accounts first")]
    NotAllowed { account: String, service: String },
    #[error("service {service} still has endpoints that are accepted or creating: {}; delete them first or use --force", .endpoints.join(", "))]
    InUse { service: String, endpoints: Vec<String> },
}

/// `accept ENDPOINT`: the provider approves the connection.
pub fn accept(st: &State, key: &str) -> Result<State, DecisionError> {
    let e = st.find_endpoint(key).ok_or_else(|| DecisionError::NoEndpoint(key.into()))?;
    if !matches!(e.state, EndpointState::PendingAcceptance | EndpointState::Rejected) {
        return Err(DecisionError::CannotAccept { name: e.spec.name.clone(), state: e.state });
    }
    let svc = &st.services[&e.service].spec;
    if !svc.allows(&e.spec.owner) {
        return Err(DecisionError::NotAllowed { account: e.spec.owner.0.clone(), service: svc.name.clone() });
    }
    let mut next = st.clone();
    let r = next.endpoints.get_mut(&e.spec.name).expect("found above");
    r.state = EndpointState::Accepted;
    r.reason = None;
    Ok(next)
}

/// `reject ENDPOINT`. Returns the new state and whether live flows must be cut
/// (the service's `on_revoke: reset`).
pub fn reject(st: &State, key: &str) -> Result<(State, Option<u32>), DecisionError> {
    let e = st.find_endpoint(key).ok_or_else(|| DecisionError::NoEndpoint(key.into()))?;
    if !matches!(e.state, EndpointState::PendingAcceptance | EndpointState::Accepted) {
        return Err(DecisionError::CannotReject { name: e.spec.name.clone(), state: e.state });
    }
    let svc = &st.services[&e.service].spec;
    let cut = (svc.on_revoke == crate::spec::OnRevoke::Reset).then_some(e.index);
    let mut next = st.clone();
    let r = next.endpoints.get_mut(&e.spec.name).expect("found above");
    r.state = EndpointState::Rejected;
    r.reason = Some("rejected by the provider".into());
    Ok((next, cut))
}

/// The spec without an endpoint (for `delete endpoint`).
pub fn without_endpoint(st: &State, key: &str) -> Result<Spec, DecisionError> {
    let e = st.find_endpoint(key).ok_or_else(|| DecisionError::NoEndpoint(key.into()))?;
    let mut spec = st.spec.clone();
    spec.endpoints.retain(|x| x.name != e.spec.name);
    Ok(spec)
}

/// The spec without a service and its endpoints (for `delete service`). Refused while
/// endpoints are accepted or creating, unless forced.
pub fn without_service(st: &State, key: &str, force: bool) -> Result<Spec, DecisionError> {
    let s = st.find_service(key).ok_or_else(|| DecisionError::NoService(key.into()))?;
    let name = s.spec.name.clone();
    let busy: Vec<String> = st
        .endpoints
        .values()
        .filter(|e| e.service == name && matches!(e.state, EndpointState::Accepted | EndpointState::Creating))
        .map(|e| e.spec.name.clone())
        .collect();
    if !busy.is_empty() && !force {
        return Err(DecisionError::InUse { service: name, endpoints: busy });
    }
    let mut spec = st.spec.clone();
    let gone: BTreeSet<String> = st.endpoints.values().filter(|e| e.service == name).map(|e| e.spec.name.clone()).collect();
    spec.endpoints.retain(|e| !gone.contains(&e.name));
    spec.services.retain(|x| x.name != name);
    Ok(spec)
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
