use super::*;
use crate::model::spec::parse;

fn spec(text: &str) -> Spec {
    parse(text).unwrap().0
}

const BASE: &str = "
vpcs: [{name: p, interface: a, cidr: 10.1.0.0/16}, {name: c, interface: b, cidr: 10.2.0.0/16}]
services:
- {name: ops, owner: '100001', vpc: p, backends: [{address: 10.1.0.5}], ports: [{protocol: tcp, endpoint_port: 80, service_port: 80}]}
";

/// `spec` planned and finished, as an apply records it.
fn applied(spec: &Spec, old: &State) -> State {
    let p = crate::model::plan_spec(spec, None, old, &crate::model::validate::Env::offline()).unwrap();
    crate::model::plan::finish(p.state)
}

fn state_with_api_service() -> State {
    let st = applied(&spec(BASE), &State::default());
    let mut s = st.spec.services[0].clone();
    s.name = "tenant-svc".into();
    s.owner = Account("100002".into());
    let mut st = applied(&edited(&st, &Edit::Create(Resource::Service(Box::new(s))), None).unwrap(), &st);
    settle(&mut st, Some((Kind::Service, "tenant-svc")));
    st
}

#[test]
fn the_operators_spec_keeps_api_resources_and_refuses_their_names() {
    let st = state_with_api_service();
    assert_eq!(st.managed.by(Kind::Service, "tenant-svc"), ManagedBy::Api);
    assert_eq!(st.managed.by(Kind::Service, "ops"), ManagedBy::Spec);
    // The operator's spec without the API's service keeps it.
    let merged = merge(&spec(BASE), &st).unwrap();
    assert_eq!(merged.services.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["ops", "tenant-svc"]);
    // An operator's spec with nothing keeps it too.
    assert_eq!(merge(&Spec::default(), &st).unwrap().services.len(), 1);
    // Claiming its name is an error naming the account.
    let clash = spec(&BASE.replace("name: ops", "name: tenant-svc"));
    let errors = merge(&clash, &st).unwrap_err();
    assert_eq!(errors[0].path, "services[0].name");
    assert!(errors[0].message.contains("account 100002"), "{}", errors[0].message);
}

#[test]
fn edits_are_refused_where_they_do_not_apply() {
    let st = state_with_api_service();
    let ops = Resource::Service(Box::new(st.spec.services[0].clone()));
    assert!(matches!(edited(&st, &Edit::Create(ops.clone()), None), Err(EditError::Taken { .. })));
    assert!(matches!(edited(&st, &Edit::Replace(ops), None), Err(EditError::SpecManaged { .. })));
    let gone = Edit::Delete { kind: Kind::Endpoint, name: "nope".into(), force: false };
    assert!(matches!(edited(&st, &gone, None), Err(EditError::Missing { .. })));
    let del = Edit::Delete { kind: Kind::Service, name: "tenant-svc".into(), force: false };
    assert!(matches!(edited(&st, &del, Some("\"0000\"")), Err(EditError::Stale { .. })));
    let tag = etag(&st, Kind::Service, "tenant-svc").unwrap();
    assert!(tag.starts_with('"') && tag.len() == 26, "{tag}");
    assert_ne!(etag(&st, Kind::Service, "ops").unwrap(), tag);
    let after = edited(&st, &del, Some(&tag)).unwrap();
    assert_eq!(after.services.len(), 1);
    let mut next = st.clone();
    next.spec = after;
    settle(&mut next, None);
    assert!(next.managed.is_empty());
}

#[test]
fn merge_patches_follow_rfc_7396() {
    // The RFC's own example (section 3).
    let mut t = serde_json::json!({"a": "b", "c": {"d": "e", "f": "g"}});
    merge_patch(&mut t, &serde_json::json!({"a": "z", "c": {"f": null}}));
    assert_eq!(t, serde_json::json!({"a": "z", "c": {"d": "e"}}));
    let mut t = serde_json::json!({"ports": [1, 2]});
    merge_patch(&mut t, &serde_json::json!({"ports": [3]}));
    assert_eq!(t, serde_json::json!({"ports": [3]}), "arrays are replaced whole");
}

#[test]
fn keys_answer_the_same_request_and_refuse_another() {
    let mut st = State::default();
    let d = request_digest("POST", "/v1/services", b"{}");
    remember_key(&mut st, "t:k".into(), KeyRecord { at: 1000, request: d.clone(), kind: "service".into(), name: "s".into() });
    assert_eq!(repeated(&st, "t:k", &d, 1001).unwrap().map(|r| r.name.as_str()), Some("s"));
    assert_eq!(repeated(&st, "t:k", "other", 1001), Err(EditError::KeyReused));
    assert_eq!(repeated(&st, "t:k", &d, 1000 + KEY_LIFETIME_SECS).unwrap(), None, "expired");
    remember_key(&mut st, "t:k2".into(), KeyRecord { at: 1000 + KEY_LIFETIME_SECS, request: d, kind: "service".into(), name: "s2".into() });
    assert_eq!(st.idempotency.len(), 1, "the expired key is forgotten");
}
