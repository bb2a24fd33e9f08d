//! What a tenant may see and ask, as functions of a picture and a caller: every one
//! asks `model::authz::decide` about the resource it touches, and answers `Refusal`
//! where the rule says no (`Hidden` exactly as for a name that does not exist). The
//! HTTP layer (`http`) only extracts and maps; the writes (`write`: what a create,
//! change or delete asks of the recorded spec) go to the writer.

pub mod write;

use super::{api::*, history::History, picture::Picture};
use crate::model::{
    authz::{decide, Action, Caller, Decision, Subject},
    state::{EndpointRecord, Event, ServiceRecord, State},
    tenancy,
};

/// Why a tenant's request is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// 404, worded as for a name that does not exist.
    Hidden(String),
    /// 403.
    Forbidden(String),
    /// 422: every invalid field (path, message).
    Invalid(Vec<(String, String)>),
    /// 500: the daemon could not read what it needed (the counters).
    Failed(String),
}

fn no_service(key: &str) -> Refusal {
    Refusal::Hidden(format!("no service named or with id `{key}`"))
}

fn no_endpoint(key: &str) -> Refusal {
    Refusal::Hidden(format!("no endpoint named or with id `{key}`"))
}

fn of_service(s: &ServiceRecord) -> Subject<'_> {
    Subject::Service { owner: &s.spec.owner.0, allowed: &s.spec.allowed_accounts }
}

fn of_endpoint<'a>(st: &'a State, e: &'a EndpointRecord) -> Subject<'a> {
    Subject::Endpoint { owner: &e.spec.owner.0, service_owner: st.services.get(&e.service).map(|s| s.spec.owner.0.as_str()) }
}

/// `decide`, with the refusal it calls for.
fn allow(caller: &Caller, action: Action, subject: Subject<'_>, hidden: impl FnOnce() -> Refusal, what: &str) -> Result<(), Refusal> {
    match decide(caller, action, subject) {
        Decision::Allow => Ok(()),
        Decision::Hidden => Err(hidden()),
        Decision::Forbidden => Err(Refusal::Forbidden(format!("this token may not {what}"))),
    }
}

fn listing(pic: &Picture, s: &ServiceRecord) -> ServiceListing {
    let mut zones: Vec<String> = s.spec.backends.iter().filter_map(|b| b.zone.clone()).collect();
    zones.sort();
    zones.dedup();
    ServiceListing {
        name: s.spec.name.clone(),
        id: s.id.clone(),
        full_name: pic.state.full_service_name(s),
        owner: s.spec.owner.0.clone(),
        ports: s.spec.ports.iter().map(|p| PortView { protocol: p.protocol.to_string(), endpoint_port: p.endpoint_port as u16, service_port: p.service_port as u16 }).collect(),
        zones,
        private_dns_name: s.spec.private_dns_name.clone(),
        auto_accept: s.spec.auto_accept,
    }
}

/// `GET /v1/services`.
pub fn services(pic: &Picture, caller: &Caller) -> anyhow::Result<ServicesAnswer> {
    let mut out = ServicesAnswer { own: Vec::new(), available: Vec::new() };
    for s in pic.state.services.values() {
        if decide(caller, Action::Read, of_service(s)) == Decision::Allow {
            out.own.push(pic.service_view(&s.spec.name)?);
        } else if decide(caller, Action::Browse, of_service(s)) == Decision::Allow {
            out.available.push(listing(pic, s));
        }
    }
    Ok(out)
}

/// `GET /v1/services/{service}`.
pub fn service(pic: &Picture, caller: &Caller, key: &str) -> Result<ServiceAnswer, Refusal> {
    let s = pic.state.find_service(key).ok_or_else(|| no_service(key))?;
    if decide(caller, Action::Read, of_service(s)) == Decision::Allow {
        return pic.service_view(&s.spec.name).map(|v| ServiceAnswer::Own(Box::new(v))).map_err(|_| no_service(key));
    }
    allow(caller, Action::Browse, of_service(s), || no_service(key), "see this service")?;
    Ok(ServiceAnswer::Listed(listing(pic, s)))
}

/// A service the caller owns (to read its connections).
fn own_service<'a>(pic: &'a Picture, caller: &Caller, key: &str) -> Result<&'a ServiceRecord, Refusal> {
    let s = pic.state.find_service(key).ok_or_else(|| no_service(key))?;
    allow(caller, Action::Read, of_service(s), || no_service(key), "read this service's connections")?;
    Ok(s)
}

/// `GET /v1/services/{service}/connections`.
pub fn connections(pic: &Picture, caller: &Caller, key: &str) -> Result<Vec<ConnectionView>, Refusal> {
    let s = own_service(pic, caller, key)?;
    let active = |e: &EndpointRecord| pic.counters.as_ref().and_then(|c| c.active_flows(e.index).ok()).unwrap_or(0);
    Ok(pic
        .state
        .endpoints
        .values()
        .filter(|e| e.service == s.spec.name)
        .map(|e| ConnectionView {
            endpoint: e.spec.name.clone(),
            endpoint_id: e.id.clone(),
            account: e.spec.owner.0.clone(),
            state: e.state.to_string(),
            active_connections: active(e),
            created_at: Timestamp::from_unix_secs(e.created_at),
        })
        .collect())
}

/// The endpoint a provider decides on: connected to `service`, which the caller owns.
/// (endpoint name, service name).
pub fn decidable(pic: &Picture, caller: &Caller, service: &str, endpoint: &str) -> Result<(String, String), Refusal> {
    let s = pic.state.find_service(service).ok_or_else(|| no_service(service))?;
    let e = pic.state.find_endpoint(endpoint).filter(|e| e.service == s.spec.name).ok_or_else(|| no_endpoint(endpoint))?;
    // A consumer that cannot see the service learns nothing of it either.
    allow(caller, Action::Browse, of_service(s), || no_service(service), "see this service")?;
    allow(caller, Action::Decide, of_endpoint(&pic.state, e), || no_endpoint(endpoint), "accept or reject connections to this service")?;
    Ok((e.spec.name.clone(), s.spec.name.clone()))
}

/// `GET /v1/endpoints`: the caller's own endpoints, `limit` of them from the
/// `offset`th (by name), and how many there are in all.
pub fn endpoints(pic: &Picture, caller: &Caller, offset: usize, limit: usize) -> anyhow::Result<(Vec<EndpointView>, usize)> {
    let page = |names: &mut dyn ExactSizeIterator<Item = &String>| -> anyhow::Result<(Vec<EndpointView>, usize)> {
        let total = names.len();
        Ok((names.skip(offset).take(limit).map(|n| pic.endpoint_view(n)).collect::<anyhow::Result<_>>()?, total))
    };
    match caller {
        Caller::Operator { .. } => page(&mut pic.state.endpoints.keys()),
        Caller::Account { id, .. } => page(&mut pic.endpoints_of(id).iter()),
    }
}

/// An endpoint the caller may read (its own, or one connected to its service).
fn readable<'a>(pic: &'a Picture, caller: &Caller, key: &str) -> Result<&'a EndpointRecord, Refusal> {
    let e = pic.state.find_endpoint(key).ok_or_else(|| no_endpoint(key))?;
    allow(caller, Action::Read, of_endpoint(&pic.state, e), || no_endpoint(key), "read this endpoint")?;
    Ok(e)
}

/// `GET /v1/endpoints/{endpoint}`.
pub fn endpoint(pic: &Picture, caller: &Caller, key: &str) -> Result<EndpointView, Refusal> {
    let e = readable(pic, caller, key)?;
    pic.endpoint_view(&e.spec.name).map_err(|_| no_endpoint(key))
}

/// `GET /v1/endpoints/{endpoint}/stats`.
pub fn endpoint_stats(pic: &Picture, caller: &Caller, key: &str) -> Result<EndpointStats, Refusal> {
    let e = readable(pic, caller, key)?;
    let (uses, stats) = match &pic.counters {
        Some(c) => (c.endpoint_use(e.index).unwrap_or_default(), c.endpoint_stats(e.index).unwrap_or_default()),
        None => Default::default(),
    };
    Ok(pic.endpoint_stats_of(e, uses, stats))
}

/// `GET /v1/vpcs`: the VPCs the caller owns (every VPC for an operator), with their
/// interfaces' drops.
pub fn vpcs(pic: &Picture, caller: &Caller) -> anyhow::Result<Vec<TenantVpc>> {
    let mut out = Vec::new();
    for v in pic.state.vpcs.values() {
        let owner = v.spec.owner.as_ref().map(|a| a.0.as_str());
        if decide(caller, Action::Read, Subject::Vpc { owner }) != Decision::Allow {
            continue;
        }
        let drops = match &pic.counters {
            Some(c) => Counters::from(c.vpc_stats(v.vpc_id)?).drops,
            None => Default::default(),
        };
        let endpoints = pic.state.endpoints.values().filter(|e| e.spec.vpc == v.spec.name).map(|e| e.spec.name.clone()).collect();
        out.push(TenantVpc { name: v.spec.name.clone(), cidr: v.spec.cidr.to_string(), owner: owner.map(str::to_string), endpoints, drops });
    }
    Ok(out)
}

/// `GET /v1/nodes`: the fleet's nodes, for an operator.
pub fn nodes(pic: &Picture, caller: &Caller) -> Result<Vec<NodeView>, Refusal> {
    allow(caller, Action::Read, Subject::Fleet, || Refusal::Hidden("only an operator token reads the fleet's nodes".into()), "read the fleet")?;
    pic.nodes().map_err(|e| Refusal::Failed(format!("{e:#}")))
}

/// `GET /v1/endpoints/{endpoint}/history`.
pub fn endpoint_history(pic: &Picture, history: &History, caller: &Caller, key: &str, now_ms: u64) -> Result<HistoryView, Refusal> {
    let e = readable(pic, caller, key)?;
    let limit = pic.state.services.get(&e.service).map_or(0, |s| s.spec.connection_limit);
    history.of(pic, &[e], limit, now_ms).map_err(|err| Refusal::Failed(format!("reading the counters: {err:#}")))
}

/// `GET /v1/services/{service}/history`: its endpoints' summed.
pub fn service_history(pic: &Picture, history: &History, caller: &Caller, key: &str, now_ms: u64) -> Result<HistoryView, Refusal> {
    let s = own_service(pic, caller, key)?;
    let eps: Vec<&EndpointRecord> = pic.state.endpoints.values().filter(|e| e.service == s.spec.name).collect();
    let limit = s.spec.connection_limit.saturating_mul(eps.len() as i64);
    history.of(pic, &eps, limit, now_ms).map_err(|err| Refusal::Failed(format!("reading the counters: {err:#}")))
}

/// `GET /v1/events`: events about the caller's services and endpoints.
pub fn events(pic: &Picture, caller: &Caller, after: u64) -> anyhow::Result<Vec<Event>> {
    let all = pic.store.events(after, 10_000)?;
    Ok(all.into_iter().filter(|e| sees(pic, caller, e)).collect())
}

/// Whether an event is about the caller's services or endpoints (an operator: any).
pub fn sees(pic: &Picture, caller: &Caller, e: &Event) -> bool {
    let Caller::Account { id, .. } = caller else { return true };
    if !e.accounts.is_empty() {
        return e.accounts.iter().any(|a| a == id);
    }
    // Recorded before events named their accounts: by what exists now, and only where
    // the subject cannot be mistaken (an endpoint named like a service, a group or a
    // node must not show their events).
    let owns_service = |s: &str| pic.state.services.get(s).is_some_and(|s| s.spec.owner.0 == *id);
    let owns_endpoint = |e: &str| pic.state.endpoints.get(e).is_some_and(|e| e.spec.owner.0 == *id);
    if let Some(g) = e.subject.strip_prefix(GROUP_SUBJECT) {
        return pic.state.spec.security_groups.iter().any(|x| x.name == g && x.owner.0 == *id);
    }
    e.service.as_deref().is_some_and(owns_service) || (e.kind.starts_with("endpoint.") && owns_endpoint(&e.subject))
}

/// How events name a security group (`security-group/NAME`).
pub const GROUP_SUBJECT: &str = "security-group/";

/// Who made a request: the caller, the name of its token, its address.
pub struct Who<'a> {
    pub caller: &'a Caller,
    pub token: &'a str,
    pub client: std::net::SocketAddr,
}

impl Who<'_> {
    /// The audit event of a change a tenant made (`api.accept`, `api.create`...): who,
    /// with which token, from where, to what (`subject`: a name; `service`: the service
    /// concerned, whose webhook gets it too; `accounts`: the owners of what it changes).
    pub fn audit(&self, verb: &str, what: &str, subject: &str, service: Option<&str>, accounts: Vec<String>) -> Event {
        let who = match self.caller {
            Caller::Operator { .. } => "the operator".to_string(),
            Caller::Account { id, .. } => format!("account {id}"),
        };
        let shown = subject.strip_prefix(GROUP_SUBJECT).unwrap_or(subject);
        Event::new(&format!("api.{verb}"), subject, service, format!("{who} (token {}) from {}: {verb} {what} {shown}", self.token, self.client)).to(accounts)
    }
}

/// `GET /v1/services/{service}/stats`: the caller's service, its endpoints' counters
/// and their sum.
pub fn service_stats(pic: &Picture, caller: &Caller, key: &str) -> Result<ServiceStats, Refusal> {
    let s = pic.state.find_service(key).ok_or_else(|| no_service(key))?;
    allow(caller, Action::Read, of_service(s), || no_service(key), "read this service's counters")?;
    let mut total = privatelink_common::Stats::default();
    let mut endpoints = Vec::new();
    for e in pic.state.endpoints.values().filter(|e| e.service == s.spec.name) {
        let (uses, stats) = match &pic.counters {
            Some(c) => (c.endpoint_use(e.index).unwrap_or_default(), c.endpoint_stats(e.index).unwrap_or_default()),
            None => Default::default(),
        };
        total.add(&stats);
        endpoints.push(pic.endpoint_stats_of(e, uses, stats));
    }
    let active_connections = endpoints.iter().map(|e| e.active_connections).sum();
    Ok(ServiceStats { service: s.spec.name.clone(), id: s.id.clone(), active_connections, endpoints, counters: total.into() })
}

/// `GET /v1/security-groups`: the caller's groups (the operator: every group).
pub fn groups(pic: &Picture, caller: &Caller) -> Vec<SecurityGroupView> {
    let st = &pic.state;
    st.spec
        .security_groups
        .iter()
        .filter(|g| decide(caller, Action::Read, Subject::Group { owner: &g.owner.0 }) == Decision::Allow)
        .map(|g| group_view(pic, g))
        .collect()
}

/// `GET /v1/security-groups/{group}`.
pub fn group(pic: &Picture, caller: &Caller, key: &str) -> Result<SecurityGroupView, Refusal> {
    let g = pic.state.spec.security_groups.iter().find(|g| g.name == key).ok_or_else(|| write::no_group(key))?;
    allow(caller, Action::Read, Subject::Group { owner: &g.owner.0 }, || write::no_group(key), "read this security group")?;
    Ok(group_view(pic, g))
}

fn group_view(pic: &Picture, g: &crate::model::spec::SecurityGroup) -> SecurityGroupView {
    let text = |v: &dyn erased::Text| v.text();
    SecurityGroupView {
        name: g.name.clone(),
        owner: g.owner.0.clone(),
        rules: g
            .rules
            .iter()
            .map(|r| RuleView { priority: r.priority, action: text(&r.action), protocol: text(&r.protocol), ports: r.ports.to_string(), source: r.source.to_string() })
            .collect(),
        endpoints: pic.state.spec.endpoints.iter().filter(|e| e.security_groups.contains(&g.name)).map(|e| e.name.clone()).collect(),
        managed_by: pic.state.managed.by(tenancy::Kind::SecurityGroup, &g.name),
    }
}

/// A serde enum's name as written in the spec.
mod erased {
    pub trait Text {
        fn text(&self) -> String;
    }
    impl<T: serde::Serialize> Text for T {
        fn text(&self) -> String {
            serde_json::to_value(self).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
        }
    }
}

/// The version tag of a resource the caller may read (for the `ETag` header).
pub fn etag(pic: &Picture, kind: tenancy::Kind, name: &str) -> Option<String> {
    tenancy::etag(&pic.state, kind, name)
}
