//! The recorded state: every service and endpoint with its generated id, lifecycle
//! state, approval decision and the data-path slots it holds, and the events a change
//! of it carries. Plain data; `plan` changes it, the store persists it, the data plane
//! turns it into map contents.

use super::{
    slices::NodeRecord,
    spec::{Cidr, Endpoint, Gateway, Service, Spec, Vpc},
};
use serde::{Deserialize, Serialize};
use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    net::Ipv4Addr,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ServiceState {
    Creating,
    Available,
    Failed,
    Deleting,
    Deleted,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum EndpointState {
    PendingAcceptance,
    Creating,
    Accepted,
    Rejected,
    Failed,
    Deleting,
}

impl fmt::Display for ServiceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = serde_json::to_value(self).map_err(|_| fmt::Error)?;
        f.write_str(s.as_str().unwrap_or("?"))
    }
}

impl fmt::Display for EndpointState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = serde_json::to_value(self).map_err(|_| fmt::Error)?;
        f.write_str(s.as_str().unwrap_or("?"))
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VpcRecord {
    pub spec: Vpc,
    /// Small id carried in conntrack keys (VPC ranges may overlap).
    pub vpc_id: u16,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServiceRecord {
    /// `epsrv-` + 17 lowercase hex digits, fixed for the life of the service.
    pub id: String,
    pub spec: Service,
    pub state: ServiceState,
    /// Slot in PL_SERVICES / PL_MAGLEV / PL_PORTS keys.
    pub index: u32,
    /// Global PL_BACKENDS slot of each backend address.
    pub backend_slots: BTreeMap<Ipv4Addr, u32>,
    /// Unix seconds.
    pub created_at: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EndpointRecord {
    /// `ep-` + 17 lowercase hex digits, fixed for the life of the endpoint.
    pub id: String,
    pub spec: Endpoint,
    /// The service it connects to (its name; ids are in `services`).
    pub service: String,
    pub state: EndpointState,
    /// The endpoint's address (given, or assigned once and kept).
    pub ip: Ipv4Addr,
    /// The source address backends see for this endpoint, from its SNAT range.
    pub snat_ip: Ipv4Addr,
    /// More SNAT addresses (`snat_addresses_per_endpoint` - 1): new flows move on to
    /// them when a port space is full.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_snat_ips: Vec<Ipv4Addr>,
    /// Slot in PL_ENDPOINTS / PL_EP_ACTIVE / PL_EP_STATS.
    pub index: u32,
    /// Why the endpoint is rejected, when the provider did not say it with `reject`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub created_at: u64,
}

impl EndpointRecord {
    /// Every SNAT address of the endpoint, the first one first.
    pub fn snat_ips(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        std::iter::once(self.snat_ip).chain(self.extra_snat_ips.iter().copied())
    }

    /// Every address the endpoint answers on in its VPC: its own, then its zonal ones.
    pub fn addresses(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        std::iter::once(self.ip).chain(self.spec.zone_ips.values().copied())
    }
}

/// Everything the gateway has recorded.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// The spec last applied (as edited by `delete`): what `apply` diffs against.
    pub spec: Spec,
    pub gateway: Gateway,
    pub vpcs: BTreeMap<String, VpcRecord>,
    pub services: BTreeMap<String, ServiceRecord>,
    pub endpoints: BTreeMap<String, EndpointRecord>,
    /// Bumped by every change that reaches the store.
    pub generation: u64,
    /// Flows each node must still cut: recorded with the decision that asks for it
    /// (reject or revoke under `on_revoke: reset`, a backend gone down under
    /// `on_backend_down: reset`) for every node of the fleet, and cleared by each node
    /// once its own flows are gone, so a node that dies in between finishes at start.
    /// The key "" holds cuts recorded before any node joined (any node takes them).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub cuts: BTreeMap<String, Cuts>,
    /// (service, backend) down by the fleet's decision (`health::decided_down`: a strict
    /// majority of the live nodes' checks see it down): its events and the flows its
    /// loss cuts follow this, and tenants read it.
    #[serde(default, skip_serializing_if = "std::collections::BTreeSet::is_empty")]
    pub backends_down: std::collections::BTreeSet<(String, Ipv4Addr)>,
    /// Each node's own view: the (service, backend) its checks see down. A node's data
    /// path follows its own view (a restarted daemon starts with it, so new flows never
    /// go to a backend that was down); nodes that disagree each keep theirs.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub health_views: BTreeMap<String, BTreeSet<(String, Ipv4Addr)>>,
    /// The gateways sharing this state (one, without a fleet store), by node name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub nodes: BTreeMap<String, NodeRecord>,
    /// API tokens by id (their hashes only: `tokens`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tokens: BTreeMap<String, super::tokens::TokenRecord>,
    /// The services, endpoints and security groups created through the tenant API
    /// (every other one is the operator spec's): `apply -f` keeps them.
    #[serde(default, skip_serializing_if = "super::tenancy::Managed::is_empty")]
    pub managed: super::tenancy::Managed,
    /// Creates made with an Idempotency-Key, by `token id:key`, for 24 hours.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub idempotency: BTreeMap<String, super::tenancy::KeyRecord>,
}

/// Flows one node must still cut.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cuts {
    /// Endpoints (slot indices) whose live flows go.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub endpoints: BTreeSet<u32>,
    /// Backends (address, provider VPC id) whose live flows go.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub backends: BTreeSet<(Ipv4Addr, u16)>,
}

impl Cuts {
    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty() && self.backends.is_empty()
    }
}

impl State {
    /// Ask every node (every recorded one; "" before any joined) to cut these flows.
    pub fn cut(&mut self, endpoints: impl IntoIterator<Item = u32> + Clone, backends: impl IntoIterator<Item = (Ipv4Addr, u16)> + Clone) {
        let names: Vec<String> = if self.nodes.is_empty() { vec![String::new()] } else { self.nodes.keys().cloned().collect() };
        for n in names {
            let c = self.cuts.entry(n).or_default();
            c.endpoints.extend(endpoints.clone());
            c.backends.extend(backends.clone());
        }
        self.cuts.retain(|_, c| !c.is_empty());
    }

    /// What node `me` must still cut (its own entry and the unaddressed one).
    pub fn cuts_of(&self, me: &str) -> Cuts {
        let mut out = Cuts::default();
        for c in [self.cuts.get(me), self.cuts.get("")].into_iter().flatten() {
            out.endpoints.extend(c.endpoints.iter().copied());
            out.backends.extend(c.backends.iter().copied());
        }
        out
    }

    /// `me` has cut `done`: they leave its entry and the unaddressed one.
    pub fn cuts_done(&mut self, me: &str, done: &Cuts) {
        for n in [me, ""] {
            if let Some(c) = self.cuts.get_mut(n) {
                c.endpoints.retain(|e| !done.endpoints.contains(e));
                c.backends.retain(|b| !done.backends.contains(b));
            }
        }
        self.cuts.retain(|_, c| !c.is_empty());
    }

    pub fn full_service_name(&self, s: &ServiceRecord) -> String {
        format!("{}.{}.{}", self.gateway.region, s.spec.name, s.id)
    }

    /// A service by name, id or full name.
    pub fn find_service(&self, key: &str) -> Option<&ServiceRecord> {
        self.services.get(key).or_else(|| {
            self.services.values().find(|s| s.id == key || self.full_service_name(s) == key)
        })
    }

    /// Endpoint slots `0..n` hold every endpoint (what a batch read of their counters
    /// must cover).
    pub fn endpoint_slots_used(&self) -> u32 {
        self.endpoints.values().map(|e| e.index + 1).max().unwrap_or(0)
    }

    /// An endpoint by name or id.
    pub fn find_endpoint(&self, key: &str) -> Option<&EndpointRecord> {
        self.endpoints.get(key).or_else(|| self.endpoints.values().find(|e| e.id == key))
    }

    /// The SNAT range of a service's endpoints.
    pub fn snat_range_of(&self, s: &Service) -> Cidr {
        s.snat_range.unwrap_or(self.gateway.snat_range)
    }

    /// How many slices each SNAT range is cut into (one per node of a fleet).
    pub fn snat_slices(&self) -> u32 {
        self.gateway.snat_slices.clamp(1, super::slices::MAX_SLICES as i64) as u32
    }

    /// The endpoint one of whose SNAT addresses, on any node, is `ip`, and the slice
    /// (node) that address belongs to.
    pub fn endpoint_by_snat_ip(&self, ip: Ipv4Addr) -> Option<(&EndpointRecord, u32)> {
        let slices = self.snat_slices();
        self.endpoints.values().find_map(|e| {
            let (slice, base) = super::slices::from_slice(self.endpoint_snat_range(e), slices, ip)?;
            e.snat_ips().any(|s| s == base).then_some((e, slice))
        })
    }

    /// An endpoint's SNAT addresses on the node holding `slice`.
    pub fn snat_ips_on(&self, e: &EndpointRecord, slice: u32) -> Vec<Ipv4Addr> {
        let range = self.endpoint_snat_range(e);
        e.snat_ips().map(|a| super::slices::on_slice(range, self.snat_slices(), slice, a)).collect()
    }

    /// The SNAT range an endpoint's addresses come from (its service's).
    fn endpoint_snat_range(&self, e: &EndpointRecord) -> Cidr {
        self.services.get(&e.service).map_or(self.gateway.snat_range, |s| self.snat_range_of(&s.spec))
    }

    pub fn endpoint_by_index(&self, index: u32) -> Option<&EndpointRecord> {
        self.endpoints.values().find(|e| e.index == index)
    }

    /// The owners of endpoint `endpoint` (a name) and of service `service` (a name, id
    /// or full name), those that exist: whom an event about them concerns.
    pub fn owners(&self, endpoint: Option<&str>, service: Option<&str>) -> Vec<String> {
        let e = endpoint.and_then(|n| self.endpoints.get(n)).map(|e| e.spec.owner.0.clone());
        let s = service.and_then(|n| self.find_service(n)).map(|s| s.spec.owner.0.clone());
        e.into_iter().chain(s).collect()
    }
}

/// Something that happened, as `privatelink events` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Event {
    /// Increasing from 1; assigned by the store.
    pub seq: u64,
    /// When it happened (recorded before 0.2 as `at_ms`, Unix milliseconds).
    #[serde(alias = "at_ms")]
    pub at: super::time::Timestamp,
    /// `endpoint.created`, `endpoint.accepted`, `backend.down`, `endpoint.connection_limit`...
    pub kind: String,
    /// The endpoint's name, or `service/backend-address`.
    pub subject: String,
    /// The service concerned (its webhook gets the event).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    pub message: String,
    /// The accounts it concerns (the owners of the endpoint and the service it is about),
    /// fixed when it happens: an account reads its events through the tenant API even
    /// after what they are about is gone. Empty: the operator's alone (or recorded
    /// before 0.3, when tenants were shown events by what exists now).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accounts: Vec<String>,
}

impl Event {
    pub fn new(kind: &str, subject: &str, service: Option<&str>, message: String) -> Event {
        Event { seq: 0, at: super::time::Timestamp::now(), kind: kind.into(), subject: subject.into(), service: service.map(Into::into), message, accounts: Vec::new() }
    }

    /// The same, concerning `accounts` too.
    pub fn to(mut self, accounts: impl IntoIterator<Item = String>) -> Event {
        self.accounts.extend(accounts);
        self.accounts.sort();
        self.accounts.dedup();
        self
    }
}

/// The endpoint events a change of state carries (created, each new lifecycle state,
/// deleted), in a stable order.
pub fn endpoint_events(old: &State, new: &State) -> Vec<Event> {
    let mut out = Vec::new();
    for (name, e) in &new.endpoints {
        let before = old.endpoints.get(name).filter(|o| o.id == e.id);
        if before.is_none() {
            out.push(Event::new("endpoint.created", name, Some(&e.service), format!("{} ({}) created in VPC {} at {}, for service {}", name, e.id, e.spec.vpc, e.ip, e.service)).to(new.owners(Some(name), Some(&e.service))));
        }
        let was = before.map(|o| o.state);
        if was != Some(e.state) && !matches!(e.state, EndpointState::Creating | EndpointState::Deleting) {
            let why = e.reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default();
            out.push(Event::new(&format!("endpoint.{}", e.state), name, Some(&e.service), format!("{name} is {}{why}", e.state)).to(new.owners(Some(name), Some(&e.service))));
        }
    }
    for (name, e) in &old.endpoints {
        if new.endpoints.get(name).is_none_or(|n| n.id != e.id) {
            let owners = old.owners(Some(name), Some(&e.service)).into_iter().chain(new.owners(None, Some(&e.service)));
            out.push(Event::new("endpoint.deleted", name, Some(&e.service), format!("{name} ({}) deleted", e.id)).to(owners));
        }
    }
    out
}

/// A new random id: `prefix` + 17 lowercase hex digits (68 random bits, from the
/// standard library's randomly keyed SipHash: unique, not secret).
pub fn new_id(prefix: &str) -> String {
    use std::hash::{BuildHasher, Hasher};
    let word = || {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(super::time::unix_now());
        h.finish()
    };
    format!("{prefix}{:016x}{:01x}", word(), word() & 0xf)
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_the_consoles_shape() {
        let a = new_id("epsrv-");
        let b = new_id("ep-");
        assert_eq!(a.len(), 6 + 17);
        assert_eq!(b.len(), 3 + 17);
        assert!(a[6..].chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(new_id("ep-"), b);
    }

    #[test]
    fn states_print_as_the_consoles_name_them() {
        assert_eq!(EndpointState::PendingAcceptance.to_string(), "pendingAcceptance");
        assert_eq!(ServiceState::Available.to_string(), "available");
    }
}
