//! Which names each VPC resolves: per endpoint, per service, the provider's own name,
//! zonal names, the names in between, and what an endpoint's state and
//! `private_dns` do to them.

use super::*;
use crate::model::{
    plan::{self, finish},
    plan_spec,
    spec,
    validate::Env,
};

const SPEC: &str = r#"
vpcs:
  - {name: vpc1, interface: gw-vpc1, cidr: 10.0.0.0/24, dns: 10.0.0.2}
  - {name: vpc2, interface: gw-vpc2, cidr: 192.168.2.0/24}
  - {name: vpc3, interface: gw-vpc3, cidr: 10.0.0.0/24, dns: 10.0.0.2}
services:
  - name: web
    owner: "100002"
    vpc: vpc2
    backends: [{address: 192.168.2.10}]
    ports: [{protocol: tcp, endpoint_port: 80, service_port: 8080}]
    allowed_accounts: ["*"]
    auto_accept: true
    private_dns_name: API.orders.example.
endpoints:
  - {name: one, owner: "100001", vpc: vpc1, service: web, ip: 10.0.0.100, zone_ips: {z1: 10.0.0.101}}
  - {name: three, owner: "100003", vpc: vpc3, service: web, ip: 10.0.0.200}
  - {name: quiet, owner: "100003", vpc: vpc3, service: web, ip: 10.0.0.201, private_dns: false}
"#;

fn state(text: &str) -> State {
    let p = plan_spec(&spec::parse(text).unwrap().0, None, &State::default(), &Env::offline()).unwrap_or_else(|e| panic!("{e:#?}"));
    finish(p.state)
}

fn names(st: &State, vpc: &str) -> BTreeMap<String, (Option<Ipv4Addr>, String)> {
    records(st).into_iter().filter(|((v, _), _)| v == vpc).map(|((_, n), r)| (n, (r.ip, r.zone))).collect()
}

#[test]
fn each_vpc_resolves_its_own_endpoint_under_every_name() {
    let st = state(SPEC);
    let (one, three, svc) = (&st.endpoints["one"].id, &st.endpoints["three"].id, &st.services["web"].id);
    let z = "privatelink.internal".to_string();
    let a = |ip: [u8; 4], zone: &str| (Some(Ipv4Addr::from(ip)), zone.to_string());
    let exists = |zone: &str| (None, zone.to_string());
    let want1: BTreeMap<String, _> = [
        (z.clone(), exists(&z)),
        (format!("local.{z}"), exists(&z)),
        (format!("{svc}.local.{z}"), a([10, 0, 0, 100], &z)),
        (format!("{one}.{svc}.local.{z}"), a([10, 0, 0, 100], &z)),
        (format!("z1.{one}.{svc}.local.{z}"), a([10, 0, 0, 101], &z)),
        ("api.orders.example".to_string(), a([10, 0, 0, 100], "api.orders.example")),
    ]
    .into();
    assert_eq!(names(&st, "vpc1"), want1);
    // vpc3 overlaps vpc1: the same service names lead to its own endpoint; `quiet`
    // wanted no names.
    let n3 = names(&st, "vpc3");
    assert_eq!(n3[&format!("{svc}.local.{z}")].0, Some(Ipv4Addr::new(10, 0, 0, 200)));
    assert_eq!(n3["api.orders.example"].0, Some(Ipv4Addr::new(10, 0, 0, 200)));
    assert!(n3.contains_key(&format!("{three}.{svc}.local.{z}")));
    let quiet = &st.endpoints["quiet"].id;
    assert!(n3.keys().all(|n| !n.contains(quiet.as_str())), "{n3:#?}");
    // vpc2 has no DNS address: no names.
    assert!(names(&st, "vpc2").is_empty());
}

#[test]
fn names_exist_only_while_their_endpoint_is_accepted() {
    let manual = SPEC.replace("    auto_accept: true\n", "");
    let st = state(&manual);
    let only_apex: Vec<String> = names(&st, "vpc1").into_keys().collect();
    assert_eq!(only_apex, ["privatelink.internal"], "pending endpoints have no names");
    let st = plan::accept(&st, "one").unwrap();
    assert!(names(&st, "vpc1").contains_key("api.orders.example"));
    let (st, _) = plan::reject(&st, "one").unwrap();
    assert!(!names(&st, "vpc1").contains_key("api.orders.example"), "gone after a reject");
}

#[test]
fn describe_lists_an_endpoints_names_and_a_services() {
    let st = state(SPEC);
    let got: Vec<String> = endpoint_names(&st, "one").into_iter().map(|(n, _)| n).collect();
    assert_eq!(got.len(), 4, "{got:?}");
    assert!(got.contains(&"api.orders.example".to_string()));
    assert!(endpoint_names(&st, "quiet").is_empty());
    assert_eq!(service_names(&st, "web")[1], "api.orders.example");
}
