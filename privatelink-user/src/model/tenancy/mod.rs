//! Resources tenants manage through the API beside the operator's spec: which ones the
//! API manages (`Managed`, recorded in the state), the operator's spec merged with them
//! (a name both claim is an error naming the owner), the edits a tenant's request makes
//! of the recorded spec, the version tag of each resource (`etag`) and the record of
//! idempotent creates. Pure: the daemon validates and plans what these return exactly
//! as an `apply`.

use super::{
    spec::{Account, Endpoint, SecurityGroup, Service, Spec, SpecError},
    state::State,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::{collections::{BTreeMap, BTreeSet}, fmt};

mod keys;
pub use keys::{remember_key, repeated, request_digest, KeyRecord, KEY_LIFETIME_SECS};

/// The resources created through the tenant API, by name; every other one is the
/// operator spec's.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Managed {
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub services: BTreeSet<String>,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub endpoints: BTreeSet<String>,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub security_groups: BTreeSet<String>,
}

impl Managed {
    pub fn is_empty(&self) -> bool {
        self.services.is_empty() && self.endpoints.is_empty() && self.security_groups.is_empty()
    }

    fn of(&self, kind: Kind) -> &BTreeSet<String> {
        match kind {
            Kind::Service => &self.services,
            Kind::Endpoint => &self.endpoints,
            Kind::SecurityGroup => &self.security_groups,
        }
    }

    fn of_mut(&mut self, kind: Kind) -> &mut BTreeSet<String> {
        match kind {
            Kind::Service => &mut self.services,
            Kind::Endpoint => &mut self.endpoints,
            Kind::SecurityGroup => &mut self.security_groups,
        }
    }

    /// Who manages resource `name` of `kind`.
    pub fn by(&self, kind: Kind, name: &str) -> ManagedBy {
        if self.of(kind).contains(name) {
            ManagedBy::Api
        } else {
            ManagedBy::Spec
        }
    }
}

/// Who manages a resource: the operator's `apply -f`, or the tenant API.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ManagedBy {
    #[default]
    Spec,
    Api,
}

impl fmt::Display for ManagedBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ManagedBy::Spec => "spec",
            ManagedBy::Api => "api",
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Service,
    Endpoint,
    SecurityGroup,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Service => "service",
            Kind::Endpoint => "endpoint",
            Kind::SecurityGroup => "security group",
        })
    }
}

/// A resource as a tenant writes it (the spec's own types and field names).
#[derive(Clone, Debug, PartialEq)]
pub enum Resource {
    Service(Box<Service>),
    Endpoint(Endpoint),
    SecurityGroup(SecurityGroup),
}

impl Resource {
    pub fn kind(&self) -> Kind {
        match self {
            Resource::Service(_) => Kind::Service,
            Resource::Endpoint(_) => Kind::Endpoint,
            Resource::SecurityGroup(_) => Kind::SecurityGroup,
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Resource::Service(s) => &s.name,
            Resource::Endpoint(e) => &e.name,
            Resource::SecurityGroup(g) => &g.name,
        }
    }

    pub fn owner(&self) -> &Account {
        match self {
            Resource::Service(s) => &s.owner,
            Resource::Endpoint(e) => &e.owner,
            Resource::SecurityGroup(g) => &g.owner,
        }
    }
}

/// What a tenant's request does to the recorded spec.
#[derive(Clone, Debug, PartialEq)]
pub enum Edit {
    Create(Resource),
    /// The resource named `resource.name()` becomes `resource`.
    Replace(Resource),
    Delete { kind: Kind, name: String, force: bool },
}

impl Edit {
    pub fn kind(&self) -> Kind {
        match self {
            Edit::Create(r) | Edit::Replace(r) => r.kind(),
            Edit::Delete { kind, .. } => *kind,
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Edit::Create(r) | Edit::Replace(r) => r.name(),
            Edit::Delete { name, .. } => name,
        }
    }
}

/// Why a tenant's edit does not apply (beside the spec's own rules).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EditError {
    #[error("a {kind} named `{name}` exists already")]
    Taken { kind: Kind, name: String },
    #[error("no {kind} named `{name}`")]
    Missing { kind: Kind, name: String },
    #[error("{kind} `{name}` is managed by the operator's spec: it changes there (`apply -f`), not through the API")]
    SpecManaged { kind: Kind, name: String },
    #[error("{kind} `{name}` changed since it was read (its ETag is now {now}, the request's If-Match {expected}): read it again")]
    Stale { kind: Kind, name: String, expected: String, now: String },
    #[error("this Idempotency-Key was used with a different request")]
    KeyReused,
    #[error("service {service} still has endpoints that are accepted or creating: {}; delete them first or use ?force=true", .endpoints.join(", "))]
    InUse { service: String, endpoints: Vec<String> },
}

fn list_names(spec: &Spec, kind: Kind) -> Vec<&str> {
    match kind {
        Kind::Service => spec.services.iter().map(|s| s.name.as_str()).collect(),
        Kind::Endpoint => spec.endpoints.iter().map(|e| e.name.as_str()).collect(),
        Kind::SecurityGroup => spec.security_groups.iter().map(|g| g.name.as_str()).collect(),
    }
}

/// Where resource `name` of `kind` is in the recorded spec's list.
pub fn position(st: &State, kind: Kind, name: &str) -> Option<usize> {
    list_names(&st.spec, kind).iter().position(|n| *n == name)
}

/// How many resources of `kind` the recorded spec has (where a created one goes).
pub fn current_len(st: &State, kind: Kind) -> usize {
    list_names(&st.spec, kind).len()
}

/// The recorded spec of `kind` `name`, as JSON (what a PATCH is applied to).
pub fn current(st: &State, kind: Kind, name: &str) -> Option<serde_json::Value> {
    let spec = &st.spec;
    let v = match kind {
        Kind::Service => spec.services.iter().find(|s| s.name == name).map(serde_json::to_value),
        Kind::Endpoint => spec.endpoints.iter().find(|e| e.name == name).map(serde_json::to_value),
        Kind::SecurityGroup => spec.security_groups.iter().find(|g| g.name == name).map(serde_json::to_value),
    };
    v.and_then(Result::ok)
}

/// The version tag of a resource as recorded (its spec, and for services and
/// endpoints their record: id, state, addresses): any change gives another. The same on
/// every node of a fleet (a function of the shared state). `None`: no such resource.
pub fn etag(st: &State, kind: Kind, name: &str) -> Option<String> {
    let text = match kind {
        Kind::Service => serde_json::to_string(st.services.get(name)?),
        Kind::Endpoint => serde_json::to_string(st.endpoints.get(name)?),
        Kind::SecurityGroup => serde_json::to_string(st.spec.security_groups.iter().find(|g| g.name == name)?),
    }
    .ok()?;
    let digest = Sha256::digest(text.as_bytes());
    Some(format!("\"{}\"", hex(&digest[..12])))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The recorded spec with `edit` made, refused when it does not apply: a create of a
/// name taken, a change of something missing or of the operator spec's, a tag that no
/// longer matches (`if_match`), a service with live endpoints deleted unforced.
pub fn edited(st: &State, edit: &Edit, if_match: Option<&str>) -> Result<Spec, EditError> {
    let (kind, name) = (edit.kind(), edit.name().to_string());
    let exists = list_names(&st.spec, kind).contains(&name.as_str());
    match edit {
        Edit::Create(_) if exists => return Err(EditError::Taken { kind, name }),
        Edit::Create(_) => {}
        _ if !exists => return Err(EditError::Missing { kind, name }),
        _ if st.managed.by(kind, &name) == ManagedBy::Spec => return Err(EditError::SpecManaged { kind, name }),
        _ => {}
    }
    if let (Some(expected), false) = (if_match, matches!(edit, Edit::Create(_))) {
        let now = etag(st, kind, &name).unwrap_or_default();
        if expected != "*" && expected != now {
            return Err(EditError::Stale { kind, name, expected: expected.into(), now });
        }
    }
    let mut spec = st.spec.clone();
    match edit {
        Edit::Create(r) => match r.clone() {
            Resource::Service(s) => spec.services.push(*s),
            Resource::Endpoint(e) => spec.endpoints.push(e),
            Resource::SecurityGroup(g) => spec.security_groups.push(g),
        },
        Edit::Replace(r) => match r.clone() {
            Resource::Service(s) => replace(&mut spec.services, |x| x.name == name, *s),
            Resource::Endpoint(e) => replace(&mut spec.endpoints, |x| x.name == name, e),
            Resource::SecurityGroup(g) => replace(&mut spec.security_groups, |x| x.name == name, g),
        },
        Edit::Delete { kind: Kind::Endpoint, .. } => spec.endpoints.retain(|e| e.name != name),
        Edit::Delete { kind: Kind::SecurityGroup, .. } => spec.security_groups.retain(|g| g.name != name),
        Edit::Delete { kind: Kind::Service, force, .. } => {
            return super::plan::without_service(st, &name, *force).map_err(|e| match e {
                super::plan::DecisionError::InUse { service, endpoints } => EditError::InUse { service, endpoints },
                _ => EditError::Missing { kind, name: name.clone() },
            })
        }
    }
    Ok(spec)
}

fn replace<T>(list: &mut [T], is: impl Fn(&T) -> bool, with: T) {
    if let Some(x) = list.iter_mut().find(|x| is(x)) {
        *x = with;
    }
}

/// The operator's spec with every API-managed resource of `st` added after its own. A
/// name the operator's spec declares that the API manages is an error at its path,
/// naming the account that manages it.
pub fn merge(operator: &Spec, st: &State) -> Result<Spec, Vec<SpecError>> {
    let mut errors = Vec::new();
    let mut clash = |list: &str, kind: Kind, names: Vec<&str>, owner: &dyn Fn(&str) -> String| {
        for (i, n) in names.into_iter().enumerate() {
            if st.managed.by(kind, n) == ManagedBy::Api {
                errors.push(SpecError {
                    path: format!("{list}[{i}].name"),
                    pos: None,
                    message: format!("{kind} `{n}` is managed through the tenant API by account {}: delete it there, or give this one another name", owner(n)),
                });
            }
        }
    };
    let owner_of = |list: Vec<(&str, &Account)>| -> BTreeMap<String, String> { list.into_iter().map(|(n, a)| (n.to_string(), a.0.clone())).collect() };
    let owners = [
        owner_of(st.spec.services.iter().map(|s| (s.name.as_str(), &s.owner)).collect()),
        owner_of(st.spec.endpoints.iter().map(|e| (e.name.as_str(), &e.owner)).collect()),
        owner_of(st.spec.security_groups.iter().map(|g| (g.name.as_str(), &g.owner)).collect()),
    ];
    clash("services", Kind::Service, list_names(operator, Kind::Service), &|n| owners[0].get(n).cloned().unwrap_or_default());
    clash("endpoints", Kind::Endpoint, list_names(operator, Kind::Endpoint), &|n| owners[1].get(n).cloned().unwrap_or_default());
    clash("security_groups", Kind::SecurityGroup, list_names(operator, Kind::SecurityGroup), &|n| owners[2].get(n).cloned().unwrap_or_default());
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut spec = operator.clone();
    let m = &st.managed;
    spec.services.extend(st.spec.services.iter().filter(|s| m.services.contains(&s.name)).cloned());
    spec.endpoints.extend(st.spec.endpoints.iter().filter(|e| m.endpoints.contains(&e.name)).cloned());
    spec.security_groups.extend(st.spec.security_groups.iter().filter(|g| m.security_groups.contains(&g.name)).cloned());
    Ok(spec)
}

/// After a plan: a resource the API created is recorded as the API's (`created`), and
/// names no longer in the spec leave the record (deleted by either side).
pub fn settle(st: &mut State, created: Option<(Kind, &str)>) {
    if let Some((kind, name)) = created {
        st.managed.of_mut(kind).insert(name.to_string());
    }
    let spec = st.spec.clone();
    for kind in [Kind::Service, Kind::Endpoint, Kind::SecurityGroup] {
        let names = list_names(&spec, kind);
        st.managed.of_mut(kind).retain(|n| names.contains(&n.as_str()));
    }
}

/// `target` with a JSON merge patch applied (RFC 7396): an object's members replace
/// or (`null`) remove the target's, recursively; anything else replaces it whole.
pub fn merge_patch(target: &mut serde_json::Value, patch: &serde_json::Value) {
    use serde_json::Value;
    let Value::Object(members) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(serde_json::Map::new());
    }
    let Value::Object(t) = target else { unreachable!("made an object above") };
    for (k, v) in members {
        if v.is_null() {
            t.remove(k);
        } else {
            merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

#[cfg(test)]
mod tests;
