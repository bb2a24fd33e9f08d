//! A tenant's writes, turned into edits of the recorded spec: the body read as the
//! spec's own type (its field names, unknown fields refused, every shape error with its
//! path), the caller's account filled in as owner, and every rule of who may write
//! where asked of `authz::decide` (a VPC of its own, a service whitelisted for it, a
//! resource of its own) before the writer sees it. Pure: functions of a picture.

use super::{allow, no_endpoint, no_service, of_endpoint, of_service, Refusal};
use crate::{
    daemon::picture::Picture,
    model::{
        authz::{decide, Action, Caller, Decision, Subject},
        spec::{Endpoint, SecurityGroup, Service, SpecError},
        tenancy::{self, Edit, Kind, Resource},
    },
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
fn in_own_vpc(pic: &Picture, caller: &Caller, name: &str) -> Result<(), Refusal> {
    let owner = pic.state.spec.vpcs.iter().find(|v| v.name == name).map(|v| v.owner.as_ref().map(|a| a.0.as_str()));
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
pub fn create(pic: &Picture, caller: &Caller, kind: Kind, mut body: Value) -> Result<Resource, Refusal> {
    may_write(caller)?;
    own(caller, &mut body)?;
    resource(pic, caller, kind, body, None)
}

/// `v` read as a resource of `kind` the caller may write: in a VPC of its own, an
/// endpoint to a service it may connect to (unless it stays with `kept_service`).
fn resource(pic: &Picture, caller: &Caller, kind: Kind, v: Value, kept_service: Option<&str>) -> Result<Resource, Refusal> {
    match kind {
        Kind::Service => {
            let s: Service = read(v)?;
            in_own_vpc(pic, caller, &s.vpc)?;
            Ok(Resource::Service(Box::new(s)))
        }
        Kind::Endpoint => {
            let mut e: Endpoint = read(v)?;
            in_own_vpc(pic, caller, &e.vpc)?;
            if kept_service != Some(e.service.as_str()) {
                e.service = connectable(pic, caller, &e.service)?;
            }
            Ok(Resource::Endpoint(e))
        }
        Kind::SecurityGroup => Ok(Resource::SecurityGroup(read::<SecurityGroup>(v)?)),
    }
}

/// The name of the service `key` (name, id or full name) names, if the caller may
/// connect to it; one it may not see is refused exactly as one that does not exist.
fn connectable(pic: &Picture, caller: &Caller, key: &str) -> Result<String, Refusal> {
    let missing = || field("service", format!("no service named or with id `{key}` that this account may connect to"));
    let s = pic.state.find_service(key).ok_or_else(missing)?;
    match decide(caller, Action::Browse, of_service(s)) {
        Decision::Allow => Ok(s.spec.name.clone()),
        _ => Err(missing()),
    }
}

/// The name of the caller's resource `key` of `kind`, for a change (`action`: Write).
pub fn resolve(pic: &Picture, caller: &Caller, kind: Kind, key: &str) -> Result<String, Refusal> {
    let st = &pic.state;
    match kind {
        Kind::Service => {
            let s = st.find_service(key).ok_or_else(|| no_service(key))?;
            allow(caller, Action::Write, of_service(s), || no_service(key), "change this service")?;
            Ok(s.spec.name.clone())
        }
        Kind::Endpoint => {
            let e = st.find_endpoint(key).ok_or_else(|| no_endpoint(key))?;
            allow(caller, Action::Write, of_endpoint(pic, e), || no_endpoint(key), "change this endpoint")?;
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
pub fn patched(pic: &Picture, caller: &Caller, kind: Kind, key: &str, patch: &Value) -> Result<Resource, Refusal> {
    let name = resolve(pic, caller, kind, key)?;
    if !patch.is_object() {
        return Err(field("", "a merge patch is a JSON object"));
    }
    let mut v = tenancy::current(&pic.state, kind, &name).ok_or_else(|| Refusal::Hidden(format!("no {kind} named `{key}`")))?;
    let (was_name, was_owner) = (v["name"].clone(), v["owner"].clone());
    tenancy::merge_patch(&mut v, patch);
    for (f, was) in [("name", was_name), ("owner", was_owner)] {
        if v[f] != was {
            return Err(field(f, format!("cannot change: create a new {kind} instead")));
        }
    }
    let kept = pic.state.endpoints.get(&name).map(|e| e.spec.service.as_str());
    resource(pic, caller, kind, v, kept)
}

/// `DELETE /v1/{kind}/{name}`.
pub fn delete(pic: &Picture, caller: &Caller, kind: Kind, key: &str, force: bool) -> Result<Edit, Refusal> {
    may_write(caller)?;
    Ok(Edit::Delete { kind, name: resolve(pic, caller, kind, key)?, force })
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
