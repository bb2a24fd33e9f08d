//! The steps of a plan, in the order a reader follows a spec: the gateway's settings,
//! VPCs, services (with their slots), endpoints (with their slots and addresses), and
//! endpoints gone from the spec. Each step edits one `Draft` and lists its changes.

use super::{initial_state, pool::Pool, Change, Planned};
use crate::model::{
    fleet,
    spec::{Cidr, Endpoint, OnRevoke, Service, SpecError, Vpc},
    state::{new_id, EndpointRecord, EndpointState, ServiceRecord, ServiceState, State, VpcRecord},
    validate::Valid,
};
use privatelink_common::{MAX_BACKENDS, MAX_ENDPOINTS, MAX_SERVICES, MAX_SNAT_PER_ENDPOINT, MAX_VPCS};
use std::{
    collections::{HashMap, HashSet},
    fmt,
    net::Ipv4Addr,
};

/// The next state as it is being built.
pub(super) struct Draft<'a> {
    v: &'a Valid<'a>,
    old: &'a State,
    st: State,
    changes: Vec<Change>,
    reset: Vec<u32>,
    now: u64,
}

fn err(v: &Valid, path: String, message: String) -> SpecError {
    SpecError { pos: v.doc.and_then(|d| d.pos(&path)), path, message }
}

fn list<T: fmt::Display>(v: &[T]) -> String {
    v.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(", ")
}

fn live(s: &ServiceState) -> bool {
    *s != ServiceState::Deleting
}

fn change(op: char, kind: &str, name: &str, id: Option<&str>, details: Vec<String>) -> Change {
    Change { op, kind: kind.into(), name: name.into(), id: id.map(Into::into), details }
}

impl<'a> Draft<'a> {
    pub(super) fn new(v: &'a Valid<'a>, old: &'a State) -> Draft<'a> {
        let mut st = old.clone();
        st.spec = v.spec.clone();
        st.gateway = v.spec.gateway.clone();
        Draft { v, old, st, changes: Vec::new(), reset: Vec::new(), now: crate::model::time::unix_now() }
    }

    pub(super) fn done(self) -> Planned {
        Planned { state: self.st, changes: self.changes, reset: self.reset }
    }

    /// The gateway's settings, field by field.
    pub(super) fn gateway(&mut self) {
        let (old, new) = (&self.old.gateway, &self.v.spec.gateway);
        if self.old.generation == 0 || self.old.vpcs.is_empty() || old == new {
            return;
        }
        let (a, b) = (serde_json::to_value(old).unwrap_or_default(), serde_json::to_value(new).unwrap_or_default());
        let mut details = Vec::new();
        if let (Some(a), Some(b)) = (a.as_object(), b.as_object()) {
            for (k, v) in b {
                if a.get(k) != Some(v) {
                    details.push(format!("{k}: {} -> {v}", a.get(k).map(|x| x.to_string()).unwrap_or_default()));
                }
            }
        }
        self.changes.push(change('~', "gateway", &new.region, None, details));
    }

    /// VPCs get a small id each; removed ones stay until `finish` (deleting endpoints
    /// still use their id).
    pub(super) fn vpcs(&mut self) {
        let mut ids = Pool::new(1, MAX_VPCS as u64 - 1, self.old.vpcs.values().map(|v| v.vpc_id as u64), false);
        for v in &self.v.spec.vpcs {
            match self.st.vpcs.get_mut(&v.name) {
                Some(r) => {
                    let d = vpc_diff(&r.spec, v);
                    if !d.is_empty() {
                        self.changes.push(change('~', "vpc", &v.name, None, d));
                    }
                    r.spec = v.clone();
                }
                None => {
                    let id = ids.take().expect("validated: fewer VPCs than ids") as u16;
                    self.changes.push(change('+', "vpc", &v.name, None, vec![format!("interface {}, cidr {}", v.interface, v.cidr)]));
                    self.st.vpcs.insert(v.name.clone(), VpcRecord { spec: v.clone(), vpc_id: id });
                }
            }
        }
        for name in self.old.vpcs.keys().filter(|n| !self.v.spec.vpcs.iter().any(|v| &v.name == *n)) {
            self.changes.push(change('-', "vpc", name, None, vec![]));
        }
    }

    /// Services get a slot and each backend a global backend slot; removed ones are
    /// `deleting`.
    pub(super) fn services(&mut self) -> Result<(), Vec<SpecError>> {
        let v = self.v;
        let mut slots = Pool::new(0, MAX_SERVICES as u64 - 1, self.old.services.values().map(|s| s.index as u64), false);
        let used = self.old.services.values().flat_map(|s| s.backend_slots.values().map(|v| *v as u64));
        let mut backend_slots = Pool::new(0, MAX_BACKENDS as u64 - 1, used, false);
        let mut backend_error = None;
        for s in &v.spec.services {
            let rec = match self.st.services.get_mut(&s.name).filter(|r| live(&r.state)) {
                Some(r) => {
                    let d = service_diff(&r.spec, s);
                    if !d.is_empty() {
                        self.changes.push(change('~', "service", &s.name, Some(&r.id), d));
                    }
                    r.spec = s.clone();
                    r
                }
                None => {
                    let index = slots.take().ok_or_else(|| vec![err(v, "services".into(), "no free service slot".into())])? as u32;
                    let id = new_id("epsrv-");
                    self.changes.push(change('+', "service", &s.name, Some(&id), vec![new_service_line(&v.spec.gateway.region, &id, s)]));
                    let rec = ServiceRecord { id, spec: s.clone(), state: ServiceState::Creating, index, backend_slots: Default::default(), created_at: self.now };
                    self.st.services.insert(s.name.clone(), rec);
                    self.st.services.get_mut(&s.name).expect("just inserted")
                }
            };
            rec.backend_slots.retain(|ip, _| s.backends.iter().any(|b| b.address == *ip));
            for b in &s.backends {
                if let std::collections::btree_map::Entry::Vacant(e) = rec.backend_slots.entry(b.address) {
                    match backend_slots.take() {
                        Some(slot) => {
                            e.insert(slot as u32);
                        }
                        None => backend_error = Some(err(v, "services".into(), "no free backend slot".into())),
                    }
                }
            }
        }
        if let Some(e) = backend_error {
            return Err(vec![e]);
        }
        for (name, r) in self.st.services.iter_mut().filter(|(n, r)| live(&r.state) && !v.spec.services.iter().any(|s| &s.name == *n)) {
            self.changes.push(change('-', "service", name, Some(&r.id), vec![]));
            r.state = ServiceState::Deleting;
        }
        Ok(())
    }

    /// Endpoints: an existing one keeps its slot and addresses (a revoked account
    /// rejects it), a new one gets a slot, an address and a SNAT address.
    pub(super) fn endpoints(&mut self) -> Result<(), Vec<SpecError>> {
        let v = self.v;
        let mut slots = Pool::new(0, MAX_ENDPOINTS as u64 - 1, self.old.endpoints.values().map(|e| e.index as u64), false);
        let mut addrs = Addresses::new(self.old, v);
        let mut errors = Vec::new();
        for (i, e) in v.spec.endpoints.iter().enumerate() {
            let svc = &v.spec.services[v.service_of[i]];
            let existing = self.st.endpoints.get(&e.name).filter(|r| r.state != EndpointState::Deleting).cloned();
            let vpc = &self.st.vpcs[&e.vpc].spec;
            let ip = match (e.ip, &existing) {
                (Some(ip), _) => ip,
                (None, Some(r)) => r.ip,
                (None, None) => match addrs.endpoint_ip(vpc) {
                    Some(ip) => ip,
                    None => {
                        errors.push(err(v, format!("endpoints[{i}].ip"), format!("VPC {} ({}) has no free address left", vpc.name, vpc.cidr)));
                        continue;
                    }
                },
            };
            let (range, slices) = (self.st.snat_range_of(svc), self.st.snat_slices());
            let Some(snat) = snat_addresses(existing.as_ref(), svc, range, slices, &mut addrs) else {
                let place = if slices > 1 { format!("slice 0 of SNAT range {range} (cut into {slices})") } else { format!("SNAT range {range}") };
                errors.push(err(v, format!("endpoints[{i}]"), format!("{place} has no free address for this endpoint")));
                continue;
            };
            match existing {
                Some(r) => self.update_endpoint(r, e, svc, ip, snat),
                None => match slots.take() {
                    Some(index) => self.new_endpoint(e, svc, index as u32, ip, snat),
                    None => errors.push(err(v, format!("endpoints[{i}]"), "no free endpoint slot".into())),
                },
            }
        }
        if errors.is_empty() {
            errors.extend(self.shared_addresses());
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// An address the spec gives that another endpoint holds already (one it was
    /// given automatically) is refused: an address leads to one endpoint.
    fn shared_addresses(&self) -> Vec<SpecError> {
        let v = self.v;
        let mut holder: HashMap<(&str, Ipv4Addr), &str> = HashMap::new();
        let mut errors = Vec::new();
        // Endpoints gone from the spec are not marked deleting yet: a new one may take
        // such an endpoint's address (it wins the address in the data path).
        for (i, spec) in v.spec.endpoints.iter().enumerate() {
            let Some(e) = self.st.endpoints.get(&spec.name) else { continue };
            for ip in e.addresses() {
                if let Some(other) = holder.insert((e.spec.vpc.as_str(), ip), e.spec.name.as_str()) {
                    errors.push(err(v, format!("endpoints[{i}]"), format!("{ip} in VPC {} is already endpoint {other}'s address", e.spec.vpc)));
                }
            }
        }
        errors
    }

    fn update_endpoint(&mut self, mut r: EndpointRecord, e: &Endpoint, svc: &Service, ip: Ipv4Addr, snat: Vec<Ipv4Addr>) {
        let mut d = Vec::new();
        let snat_ip = snat[0];
        if r.ip != ip {
            d.push(format!("ip: {} -> {ip}", r.ip));
        }
        if r.snat_ip != snat_ip {
            d.push(format!("snat ip: {} -> {snat_ip}", r.snat_ip));
        }
        if r.extra_snat_ips[..] != snat[1..] {
            d.push(format!("more snat ips: [{}] -> [{}]", list(&r.extra_snat_ips), list(&snat[1..])));
        }
        if r.spec.service != e.service {
            d.push(format!("service: {} -> {}", r.spec.service, e.service));
        }
        if r.spec.zone_ips != e.zone_ips {
            d.push(format!("zone ips: {:?} -> {:?}", r.spec.zone_ips, e.zone_ips));
        }
        let revoked = !svc.allows(&e.owner) && matches!(r.state, EndpointState::Accepted | EndpointState::PendingAcceptance);
        if revoked {
            r.state = EndpointState::Rejected;
            r.reason = Some(format!("account {} was removed from allowed_accounts", e.owner));
            d.push(format!("rejected: account {} is no longer allowed (on_revoke: {:?})", e.owner, svc.on_revoke).to_lowercase());
            if svc.on_revoke == OnRevoke::Reset {
                self.reset.push(r.index);
            }
        }
        if !d.is_empty() {
            self.changes.push(change('~', "endpoint", &e.name, Some(&r.id), d));
        }
        r.ip = ip;
        r.snat_ip = snat_ip;
        r.extra_snat_ips = snat[1..].to_vec();
        r.spec = e.clone();
        self.st.endpoints.insert(e.name.clone(), r);
    }

    fn new_endpoint(&mut self, e: &Endpoint, svc: &Service, index: u32, ip: Ipv4Addr, snat: Vec<Ipv4Addr>) {
        let id = new_id("ep-");
        let fate = if initial_state(svc, e) == EndpointState::Accepted { "accepted" } else { "pendingAcceptance" };
        let line = format!("{ip} in VPC {} -> service {} ({fate}), source {}", e.vpc, svc.name, list(&snat));
        let snat_ip = snat[0];
        self.changes.push(change('+', "endpoint", &e.name, Some(&id), vec![line]));
        let rec = EndpointRecord {
            id,
            spec: e.clone(),
            service: svc.name.clone(),
            state: EndpointState::Creating,
            ip,
            snat_ip,
            extra_snat_ips: snat[1..].to_vec(),
            index,
            reason: None,
            created_at: self.now,
        };
        self.st.endpoints.insert(e.name.clone(), rec);
    }

    /// Endpoints no longer in the spec are `deleting`.
    pub(super) fn removed_endpoints(&mut self) {
        let in_spec: HashSet<&str> = self.v.spec.endpoints.iter().map(|e| e.name.as_str()).collect();
        for (name, r) in self.st.endpoints.iter_mut().filter(|(n, r)| r.state != EndpointState::Deleting && !in_spec.contains(n.as_str())) {
            self.changes.push(change('-', "endpoint", name, Some(&r.id), vec![]));
            r.state = EndpointState::Deleting;
        }
    }
}

/// Address pools of one plan: SNAT addresses per range, lowest first; endpoint
/// addresses per VPC, highest first (hosts are usually numbered from the bottom),
/// skipping the ones endpoints hold now, the ones the spec gives and the gateway's own.
struct Addresses {
    used_snat: Vec<u64>,
    snat: HashMap<Cidr, Pool>,
    /// Handed out in this plan from any range (ranges of services may overlap).
    given_snat: HashSet<u64>,
    taken: HashMap<String, Vec<u64>>,
    ips: HashMap<String, Pool>,
}

impl Addresses {
    fn new(old: &State, v: &Valid) -> Addresses {
        let mut taken: HashMap<String, Vec<u64>> = HashMap::new();
        let held = old.endpoints.values().flat_map(|e| e.addresses().map(|ip| (e.spec.vpc.as_str(), ip)));
        let given = v.spec.endpoints.iter().flat_map(|e| e.ip.iter().chain(e.zone_ips.values()).map(|ip| (e.vpc.as_str(), *ip)));
        let own = v.reserved.iter().flat_map(|(vpc, ips)| ips.iter().map(move |ip| (vpc.as_str(), *ip)));
        for (vpc, ip) in held.chain(given).chain(own) {
            taken.entry(vpc.to_string()).or_default().push(u32::from(ip) as u64);
        }
        Addresses {
            used_snat: old.endpoints.values().flat_map(|e| e.snat_ips()).map(|a| u32::from(a) as u64).collect(),
            snat: HashMap::new(),
            given_snat: HashSet::new(),
            taken,
            ips: HashMap::new(),
        }
    }

    fn endpoint_ip(&mut self, vpc: &Vpc) -> Option<Ipv4Addr> {
        let taken = &self.taken;
        let pool = self.ips.entry(vpc.name.clone()).or_insert_with(|| {
            let used = taken.get(&vpc.name).cloned().unwrap_or_default();
            Pool::new(u32::from(vpc.cidr.net) as u64 + 1, u32::from(vpc.cidr.broadcast()) as u64 - 1, used, true)
        });
        pool.take().map(|ip| Ipv4Addr::from(ip as u32))
    }

    /// A free SNAT address of `range`'s slice 0 (nodes add their slice's offset).
    fn snat_ip(&mut self, range: Cidr, slices: u32) -> Option<Ipv4Addr> {
        let used = &self.used_snat;
        let pool = self.snat.entry(range).or_insert_with(|| {
            let (lo, hi) = fleet::allocatable(range, slices);
            Pool::new(lo, hi, used.iter().copied(), false)
        });
        let mut got = pool.take();
        while got.is_some_and(|a| self.given_snat.contains(&a)) {
            got = pool.take();
        }
        let a = got?;
        self.given_snat.insert(a);
        Some(Ipv4Addr::from(a as u32))
    }
}

/// An endpoint's SNAT addresses (`snat_addresses_per_endpoint` of them, from slice 0
/// of `range`): the ones it holds stay, missing ones are handed out. `None`: full.
fn snat_addresses(existing: Option<&EndpointRecord>, svc: &Service, range: Cidr, slices: u32, addrs: &mut Addresses) -> Option<Vec<Ipv4Addr>> {
    let want = svc.snat_addresses_per_endpoint.clamp(1, MAX_SNAT_PER_ENDPOINT as i64) as usize;
    let (lo, hi) = fleet::allocatable(range, slices);
    let ok = |a: &Ipv4Addr| (lo..=hi).contains(&(u32::from(*a) as u64));
    let mut out: Vec<Ipv4Addr> = existing.into_iter().flat_map(|r| r.snat_ips()).filter(ok).take(want).collect();
    while out.len() < want {
        out.push(addrs.snat_ip(range, slices)?);
    }
    Some(out)
}

fn vpc_diff(a: &Vpc, b: &Vpc) -> Vec<String> {
    let mut d = Vec::new();
    if a.interface != b.interface {
        d.push(format!("interface: {} -> {}", a.interface, b.interface));
    }
    if a.cidr != b.cidr {
        d.push(format!("cidr: {} -> {}", a.cidr, b.cidr));
    }
    if a.route_table != b.route_table {
        d.push(format!("route_table: {:?} -> {:?}", a.route_table, b.route_table));
    }
    if a.announce_table != b.announce_table {
        d.push(format!("announce_table: {:?} -> {:?}", a.announce_table, b.announce_table));
    }
    d
}

fn ports_text(s: &Service) -> Vec<String> {
    s.ports.iter().map(|p| format!("{}/{}->{}", p.protocol, p.endpoint_port, p.service_port)).collect()
}

fn new_service_line(region: &str, id: &str, s: &Service) -> String {
    let approval = if s.auto_accept { "auto-accept" } else { "manual approval" };
    format!("{region}.{}.{id}: {} backend(s), ports {}, {approval}", s.name, s.backends.len(), list(&ports_text(s)))
}

fn service_diff(a: &Service, b: &Service) -> Vec<String> {
    let show = |v: &dyn fmt::Debug| format!("{v:?}");
    let backends = |s: &Service| {
        let one = |x: &crate::model::spec::Backend| format!("{}@{}{}", x.address, x.weight, x.zone.as_ref().map(|z| format!(" in {z}")).unwrap_or_default());
        show(&s.backends.iter().map(one).collect::<Vec<_>>())
    };
    let accounts = |s: &Service| show(&s.allowed_accounts.iter().map(|x| &x.0).collect::<Vec<_>>());
    let fields: [(&str, String, String); 12] = [
        ("backends", backends(a), backends(b)),
        ("ports", show(&ports_text(a)), show(&ports_text(b))),
        ("auto_accept", a.auto_accept.to_string(), b.auto_accept.to_string()),
        ("allowed_accounts", accounts(a), accounts(b)),
        ("connection_limit", a.connection_limit.to_string(), b.connection_limit.to_string()),
        ("on_revoke", show(&a.on_revoke), show(&b.on_revoke)),
        ("description", show(&a.description), show(&b.description)),
        ("snat_range", show(&a.snat_range.map(|r| r.to_string())), show(&b.snat_range.map(|r| r.to_string()))),
        ("health_check", show(&a.health_check), show(&b.health_check)),
        ("notify_url", show(&a.notify_url), show(&b.notify_url)),
        ("snat_addresses_per_endpoint", a.snat_addresses_per_endpoint.to_string(), b.snat_addresses_per_endpoint.to_string()),
        ("zone_affinity", a.zone_affinity.to_string(), b.zone_affinity.to_string()),
    ];
    fields.into_iter().filter(|(_, x, y)| x != y).map(|(name, x, y)| format!("{name}: {x} -> {y}")).collect()
}
