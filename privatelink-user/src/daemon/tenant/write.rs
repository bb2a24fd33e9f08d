//! A tenant's writes, turned into edits of the recorded spec: the body read as the
//! spec's own type (its field names, unknown fields refused, every shape error with its
//! path), the caller's account filled in as owner, and every rule of who may write
//! where asked of `authz::decide` (a VPC of its own, a service whitelisted for it, a
//! resource of its own) before the writer sees it. Pure: functions of the recorded state.

use super::{allow, no_endpoint, no_service, of_endpoint, of_service, Refusal};
use crate::model::{
    authz::{decide, Action, Caller, Decision, Subject},
    spec::{Endpoint, SecurityGroup, Service, SpecError},
    state::State,
    tenancy::{self, Edit, Kind, Resource},
};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// A field's error, as a 422 lists them.
pub fn field(path: &str, message: impl Into<String>) -> Refusal {
    Refusal::Invalid(vec![(path.to_string(), message.into())])
}

/// `v` read as `T`, or its first shape error with its path (serde stops at the first;
/// the rules after it report every error at once).
fn read<T: DeserializeOwned>(v: Value) -> Result<T, Refusal> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        field(if path == "." { "" } else { &path }, e.into_inner().to_string())
    })
}

/// The caller's account as the owner of what it creates: filled in when absent,
/// refused when it names another. The operator names the owner itself.
fn own(caller: &Caller, body: &mut Value) -> Result<(), Refusal> {
    let Some(obj) = body.as_object_mut() else { return Err(field("", "the body must be a JSON object")) };
    let Caller::Account { id, .. } = caller else { return Ok(()) };
    match obj.get("owner") {
        None => {
            obj.insert("owner".into(), Value::String(id.clone()));
            Ok(())
        }
        Some(Value::String(o)) if o == id => Ok(()),
        Some(_) => Err(field("owner", format!("must be this token's account ({id}), or left out"))),
    }
}

/// The caller may create in VPC `name`: one it owns (the operator: any).
fn in_own_vpc(st: &State, caller: &Caller, name: &str) -> Result<(), Refusal> {
    let owner = st.spec.vpcs.iter().find(|v| v.name == name).map(|v| v.owner.as_ref().map(|a| a.0.as_str()));
    let subject = Subject::Vpc { owner: owner.flatten() };
    match (owner, decide(caller, Action::Write, subject)) {
        (Some(_), Decision::Allow) => Ok(()),
        (None, Decision::Allow) => Err(field("vpc", format!("no VPC named `{name}`"))),
        (_, Decision::Forbidden) => Err(Refusal::Forbidden("this token may not write".into())),
        (_, Decision::Hidden) => Err(field("vpc", format!("no VPC named `{name}` of this account"))),
    }
}

/// A read-only token writes nothing.
fn may_write(caller: &Caller) -> Result<(), Refusal> {
    match caller {
        Caller::Operator { read_only: true } | Caller::Account { read_only: true, .. } => Err(Refusal::Forbidden("this token is read-only".into())),
        _ => Ok(()),
    }
}

/// `POST /v1/{kind}`: the resource to create.
pub fn create(st: &State, caller: &Caller, kind: Kind, mut body: Value) -> Result<Resource, Refusal> {
    may_write(caller)?;
    own(caller, &mut body)?;
    resource(st, caller, kind, body, None)
}

/// `v` read as a resource of `kind` the caller may write: in a VPC of its own, an
/// endpoint to a service it may connect to (unless it stays with `kept_service`).
fn resource(st: &State, caller: &Caller, kind: Kind, v: Value, kept_service: Option<&str>) -> Result<Resource, Refusal> {
    match kind {
        Kind::Service => {
            let s: Service = read(v)?;
            in_own_vpc(st, caller, &s.vpc)?;
            Ok(Resource::Service(Box::new(s)))
        }
        Kind::Endpoint => {
            let mut e: Endpoint = read(v)?;
            in_own_vpc(st, caller, &e.vpc)?;
            if kept_service != Some(e.service.as_str()) {
                e.service = connectable(st, caller, &e.service)?;
            }
            Ok(Resource::Endpoint(e))
        }
        Kind::SecurityGroup => Ok(Resource::SecurityGroup(read::<SecurityGroup>(v)?)),
    }
}

/// The name of the service `key` (name, id or full name) names, if the caller may
/// connect to it; one it may not see is refused exactly as one that does not exist.
fn connectable(st: &State, caller: &Caller, key: &str) -> Result<String, Refusal> {
    let missing = || field("service", format!("no service named or with id `{key}` that this account may connect to"));
    let s = st.find_service(key).ok_or_else(missing)?;
    match decide(caller, Action::Browse, of_service(s)) {
        Decision::Allow => Ok(s.spec.name.clone()),
        _ => Err(missing()),
    }
}

/// The name of the caller's resource `key` of `kind`, for a change (`action`: Write).
pub fn resolve(st: &State, caller: &Caller, kind: Kind, key: &str) -> Result<String, Refusal> {
    match kind {
        Kind::Service => {
            let s = st.find_service(key).ok_or_else(|| no_service(key))?;
            allow(caller, Action::Write, of_service(s), || no_service(key), "change this service")?;
            Ok(s.spec.name.clone())
        }
        Kind::Endpoint => {
            let e = st.find_endpoint(key).ok_or_else(|| no_endpoint(key))?;
            allow(caller, Action::Write, of_endpoint(st, e), || no_endpoint(key), "change this endpoint")?;
            Ok(e.spec.name.clone())
        }
        Kind::SecurityGroup => {
            let g = st.spec.security_groups.iter().find(|g| g.name == key).ok_or_else(|| no_group(key))?;
            allow(caller, Action::Write, Subject::Group { owner: &g.owner.0 }, || no_group(key), "change this security group")?;
            Ok(g.name.clone())
        }
    }
}

pub fn no_group(key: &str) -> Refusal {
    Refusal::Hidden(format!("no security group named `{key}`"))
}

/// `PATCH /v1/{kind}/{name}`: the resource with a JSON merge patch (RFC 7396) made to
/// its spec. Its name and owner stay.
pub fn patched(st: &State, caller: &Caller, kind: Kind, key: &str, patch: &Value) -> Result<Resource, Refusal> {
    let name = resolve(st, caller, kind, key)?;
    if !patch.is_object() {
        return Err(field("", "a merge patch is a JSON object"));
    }
    let mut v = tenancy::current(st, kind, &name).ok_or_else(|| Refusal::Hidden(format!("no {kind} named `{key}`")))?;
    let (was_name, was_owner) = (v["name"].clone(), v["owner"].clone());
    tenancy::merge_patch(&mut v, patch);
    for (f, was) in [("name", was_name), ("owner", was_owner)] {
        if v[f] != was {
            return Err(field(f, format!("cannot change: create a new {kind} instead")));
        }
    }
    let kept = st.endpoints.get(&name).map(|e| e.spec.service.as_str());
    resource(st, caller, kind, v, kept)
}

/// `DELETE /v1/{kind}/{name}`.
pub fn delete(st: &State, caller: &Caller, kind: Kind, key: &str, force: bool) -> Result<Edit, Refusal> {
    may_write(caller)?;
    Ok(Edit::Delete { kind, name: resolve(st, caller, kind, key)?, force })
}

/// The spec's errors of an edit, with the edited resource's own paths made relative to
/// it (`services[3].ports[0]` -> `ports[0]`, as its body says it).
pub fn relative(errors: Vec<SpecError>, spec_list: &str, index: Option<usize>) -> Vec<(String, String)> {
    let prefix = index.map(|i| format!("{spec_list}[{i}]"));
    errors
        .into_iter()
        .map(|e| {
            let path = match prefix.as_deref().and_then(|p| e.path.strip_prefix(p)) {
                Some(rest) => rest.trim_start_matches('.').to_string(),
                None => e.path,
            };
            (path, e.message)
        })
        .collect()
}

/// The list a kind lives in, in the spec.
pub fn list_of(kind: Kind) -> &'static str {
    match kind {
        Kind::Service => "services",
        Kind::Endpoint => "endpoints",
        Kind::SecurityGroup => "security_groups",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{authz::may_connect, plan, plan_spec, spec, validate::Env};
    use proptest::prelude::*;
    use std::cell::Cell;

    const ACCOUNTS: [&str; 3] = ["a1", "a2", "a3"];

    /// A random world: (owner, VPC, whitelist) of each service (whitelist entry 3: `*`),
    /// (owner, VPC, service) of each endpoint, the owner of each security group.
    type World = (Vec<(usize, usize, Vec<usize>)>, Vec<(usize, usize, usize)>, Vec<usize>);

    fn world() -> impl Strategy<Value = World> {
        (
            prop::collection::vec((0..3usize, 0..3usize, prop::collection::vec(0..4usize, 0..3)), 0..4),
            prop::collection::vec((0..3usize, 0..3usize, 0..4usize), 0..5),
            prop::collection::vec(0..3usize, 0..3),
        )
    }

    /// The world planned as an apply records it: VPC v0 is a1's, v1 a2's, v2 nobody's;
    /// endpoints whose account the service does not allow are left out. None: it did not
    /// plan (counted as a skip).
    fn state((services, endpoints, groups): &World) -> Option<State> {
        let mut t = String::from("vpcs:\n  - {name: v0, interface: i0, cidr: 10.0.0.0/16, owner: a1}\n  - {name: v1, interface: i1, cidr: 10.1.0.0/16, owner: a2}\n  - {name: v2, interface: i2, cidr: 10.2.0.0/16}\nservices:\n");
        let list = |l: &[usize]| l.iter().map(|a| format!("'{}'", ACCOUNTS.get(*a).copied().unwrap_or("*"))).collect::<Vec<_>>().join(", ");
        for (k, (owner, vpc, allowed)) in services.iter().enumerate() {
            t += &format!("  - {{name: s{k}, owner: {}, vpc: v{vpc}, backends: [{{address: 10.{vpc}.9.{}}}], ports: [{{protocol: tcp, endpoint_port: 80, service_port: 80}}], allowed_accounts: [{}]}}\n", ACCOUNTS[*owner], k + 1, list(allowed));
        }
        t += "endpoints:\n";
        for (k, (owner, vpc, svc)) in endpoints.iter().enumerate().filter(|_| !services.is_empty()) {
            let (s_owner, _, allowed) = &services[svc % services.len()];
            if s_owner == owner || allowed.iter().any(|a| a == owner || *a == 3) {
                t += &format!("  - {{name: e{k}, owner: {}, vpc: v{vpc}, service: s{}, ip: 10.{vpc}.1.{}}}\n", ACCOUNTS[*owner], svc % services.len(), k + 1);
            }
        }
        t += "security_groups:\n";
        for (k, owner) in groups.iter().enumerate() {
            t += &format!("  - {{name: g{k}, owner: {}}}\n", ACCOUNTS[*owner]);
        }
        let t = t.replace("services:\nendpoints:", "services: []\nendpoints:").replace("endpoints:\nsecurity_groups:", "endpoints: []\nsecurity_groups:");
        let t = if t.ends_with("security_groups:\n") { t.replace("security_groups:\n", "security_groups: []\n") } else { t };
        let (s, _) = spec::parse(&t).ok()?;
        let planned = plan_spec(&s, None, &State::default(), &Env::offline()).ok()?;
        Some(plan::finish(planned.state))
    }

    #[derive(Clone, Debug)]
    enum Req {
        /// kind, the owner named in the body (None: left out), VPC, service.
        Create(Kind, Option<usize>, usize, usize),
        Patch(Kind, usize),
        Delete(Kind, usize),
    }

    fn kind() -> impl Strategy<Value = Kind> {
        prop::sample::select(vec![Kind::Service, Kind::Endpoint, Kind::SecurityGroup])
    }

    fn request() -> impl Strategy<Value = Req> {
        prop_oneof![
            (kind(), prop::option::of(0..3usize), 0..3usize, 0..4usize).prop_map(|(k, o, v, s)| Req::Create(k, o, v, s)),
            (kind(), 0..5usize).prop_map(|(k, i)| Req::Patch(k, i)),
            (kind(), 0..5usize).prop_map(|(k, i)| Req::Delete(k, i)),
        ]
    }

    fn caller() -> impl Strategy<Value = Caller> {
        prop_oneof![
            1 => any::<bool>().prop_map(|read_only| Caller::Operator { read_only }),
            6 => (0..3usize, any::<bool>()).prop_map(|(a, read_only)| Caller::Account { id: ACCOUNTS[a].into(), read_only }),
        ]
    }

    fn key(kind: Kind, i: usize) -> String {
        match kind {
            Kind::Service => format!("s{i}"),
            Kind::Endpoint => format!("e{i}"),
            Kind::SecurityGroup => format!("g{i}"),
        }
    }

    /// The owner of an existing resource.
    fn owner_of(st: &State, kind: Kind, name: &str) -> Option<String> {
        match kind {
            Kind::Service => st.services.get(name).map(|s| s.spec.owner.0.clone()),
            Kind::Endpoint => st.endpoints.get(name).map(|e| e.spec.owner.0.clone()),
            Kind::SecurityGroup => st.spec.security_groups.iter().find(|g| g.name == name).map(|g| g.owner.0.clone()),
        }
    }

    /// Every write a random caller asks of a random world: whatever succeeds is the
    /// caller's to do (its own resource, in its own VPC, towards a service whitelisted
    /// for it), never a read-only token's.
    #[test]
    fn no_write_succeeds_on_what_its_account_does_not_own_or_may_not_reach() {
        let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(3000));
        let (ran, skipped, allowed) = (Cell::new(0u32), Cell::new(0u32), Cell::new(0u32));
        runner
            .run(&(world(), caller(), request()), |(w, c, r)| {
                let Some(st) = state(&w) else {
                    skipped.set(skipped.get() + 1);
                    return Ok(());
                };
                ran.set(ran.get() + 1);
                let vpc_owner = |v: usize| st.spec.vpcs.iter().find(|x| x.name == format!("v{v}")).and_then(|x| x.owner.as_ref().map(|a| a.0.clone()));
                let outcome: Result<Option<String>, Refusal> = match &r {
                    Req::Create(k, owner, vpc, svc) => {
                        let mut body = match k {
                            Kind::Service => serde_json::json!({"name": "new", "vpc": format!("v{vpc}"), "backends": [{"address": format!("10.{vpc}.9.200")}], "ports": [{"protocol": "tcp", "endpoint_port": 81, "service_port": 81}]}),
                            Kind::Endpoint => serde_json::json!({"name": "newe", "vpc": format!("v{vpc}"), "service": format!("s{svc}"), "ip": format!("10.{vpc}.1.200")}),
                            Kind::SecurityGroup => serde_json::json!({"name": "newg"}),
                        };
                        if let Some(o) = owner {
                            body["owner"] = ACCOUNTS[*o].into();
                        }
                        create(&st, &c, *k, body).map(|res| {
                            if let (Caller::Account { id, .. }, true) = (&c, matches!(k, Kind::Service | Kind::Endpoint)) {
                                assert_eq!(vpc_owner(*vpc).as_deref(), Some(id.as_str()), "{id} created in VPC v{vpc}, not its own");
                            }
                            if let (Caller::Account { id, .. }, Resource::Endpoint(e)) = (&c, &res) {
                                let s = &st.services[&e.service].spec;
                                assert!(may_connect(&s.owner.0, &s.allowed_accounts, id), "{id} reached service {} not whitelisted for it", s.name);
                            }
                            Some(res.owner().0.clone())
                        })
                    }
                    Req::Patch(k, i) => {
                        let patch = match k {
                            Kind::Service => serde_json::json!({"description": "mine now"}),
                            Kind::Endpoint => serde_json::json!({"private_dns": false}),
                            Kind::SecurityGroup => serde_json::json!({"rules": []}),
                        };
                        patched(&st, &c, *k, &key(*k, *i), &patch).map(|res| owner_of(&st, *k, res.name()))
                    }
                    Req::Delete(k, i) => delete(&st, &c, *k, &key(*k, *i), false).map(|e| owner_of(&st, *k, e.name())),
                };
                if let Ok(owner) = outcome {
                    allowed.set(allowed.get() + 1);
                    match &c {
                        Caller::Operator { read_only } => prop_assert!(!read_only, "a read-only operator token wrote: {r:?}"),
                        Caller::Account { id, read_only } => {
                            prop_assert!(!read_only, "a read-only token wrote: {r:?}");
                            prop_assert_eq!(owner.as_deref(), Some(id.as_str()), "{:?} by {} on what is not its own", r, id);
                        }
                    }
                }
                Ok(())
            })
            .unwrap();
        eprintln!("{} cases ran, {} allowed, {} skipped (their random world did not plan)", ran.get(), allowed.get(), skipped.get());
        assert!(skipped.get() < ran.get(), "more worlds skipped than run: {} of {}", skipped.get(), ran.get() + skipped.get());
        assert!(allowed.get() > ran.get() / 20, "too few writes allowed to test anything: {} of {}", allowed.get(), ran.get());
    }
}
