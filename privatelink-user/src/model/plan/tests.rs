//! The planner on the seeds' flows: creation, approval, revocation, deletes, and the
//! stability of ids, addresses and decisions across re-applies.

use super::*;
use std::{collections::BTreeSet, net::Ipv4Addr};
use crate::model::{
    plan_spec,
    spec::{self, OnRevoke, Spec},
    validate::Env,
};

const SPEC: &str = r#"
vpcs:
  - {name: vpc1, interface: gw-vpc1, cidr: 10.0.0.0/24}
  - {name: vpc2, interface: gw-vpc2, cidr: 192.168.2.0/24}
services:
  - name: web
    owner: "100002"
    vpc: vpc2
    backends: [{address: 192.168.2.10}]
    ports: [{protocol: tcp, endpoint_port: 80, service_port: 8080}]
    allowed_accounts: ["100001"]
  - name: auto
    owner: "100002"
    vpc: vpc2
    backends: [{address: 192.168.2.11}]
    ports: [{protocol: udp, endpoint_port: 53, service_port: 5353}]
    auto_accept: true
    allowed_accounts: ["*"]
endpoints:
  - {name: cross, owner: "100001", vpc: vpc1, service: web, ip: 10.0.0.100}
  - {name: same, owner: "100002", vpc: vpc1, service: web}
  - {name: auto-ep, owner: "100009", vpc: vpc1, service: auto}
"#;

fn parse(text: &str) -> Spec {
    spec::parse(text).unwrap().0
}

/// Both phases of an apply.
fn apply(text: &str, st: &State) -> (State, Vec<Change>) {
    let p = plan_spec(&parse(text), None, st, &Env::offline()).unwrap_or_else(|e| panic!("{e:#?}"));
    (finish(p.state), p.changes)
}

fn states(st: &State) -> Vec<(String, EndpointState)> {
    st.endpoints.iter().map(|(n, e)| (n.clone(), e.state)).collect()
}

#[test]
fn first_apply_creates_with_the_consoles_states_and_ids() {
    let p = plan_spec(&parse(SPEC), None, &State::default(), &Env::offline()).unwrap();
    // Phase 1: everything new is `creating`.
    assert!(p.state.services.values().all(|s| s.state == ServiceState::Creating));
    assert!(p.state.endpoints.values().all(|e| e.state == EndpointState::Creating));
    assert!(unfinished(&p.state));
    let ops: Vec<String> = p.changes.iter().map(|c| format!("{} {} {}", c.op, c.kind, c.name)).collect();
    assert_eq!(
        ops,
        ["+ vpc vpc1", "+ vpc vpc2", "+ service web", "+ service auto", "+ endpoint cross", "+ endpoint same", "+ endpoint auto-ep"]
    );
    let st = finish(p.state);
    assert!(!unfinished(&st));
    assert!(st.services.values().all(|s| s.state == ServiceState::Available));
    assert_eq!(
        states(&st),
        [
            ("auto-ep".to_string(), EndpointState::Accepted),   // other account, auto_accept
            ("cross".to_string(), EndpointState::PendingAcceptance), // other account, manual
            ("same".to_string(), EndpointState::Accepted),      // the owner's own endpoint
        ]
    );
    let web = &st.services["web"];
    assert!(web.id.starts_with("epsrv-") && web.id.len() == 23, "{}", web.id);
    assert_eq!(st.full_service_name(web), format!("local.web.{}", web.id));
    assert!(st.endpoints["cross"].id.starts_with("ep-"));
    // Auto-assigned addresses come from the top of the VPC range, skipping taken ones.
    assert_eq!(st.endpoints["same"].ip.to_string(), "10.0.0.254");
    assert_eq!(st.endpoints["auto-ep"].ip.to_string(), "10.0.0.253");
    // Each endpoint has its own SNAT source address from 11.163.0.0/16.
    let snat: Vec<String> = st.endpoints.values().map(|e| e.snat_ip.to_string()).collect();
    assert_eq!(snat.len(), 3);
    assert!(snat.iter().all(|s| s.starts_with("11.163.0.")));
    assert_eq!(snat.iter().collect::<BTreeSet<_>>().len(), 3);
}

#[test]
fn reapplying_changes_nothing_and_keeps_decisions_ids_and_addresses() {
    let (st, _) = apply(SPEC, &State::default());
    let st = accept(&st, "cross").unwrap();
    assert_eq!(st.endpoints["cross"].state, EndpointState::Accepted);
    let p = plan_spec(&parse(SPEC), None, &st, &Env::offline()).unwrap();
    assert_eq!(p.changes, vec![]);
    assert!(p.reset.is_empty());
    assert_eq!(finish(p.state), st);
}

#[test]
fn revoking_an_account_rejects_its_endpoint_and_reset_cuts_its_flows() {
    let (st, _) = apply(SPEC, &State::default());
    let st = accept(&st, "cross").unwrap();
    let revoked = SPEC.replacen("allowed_accounts: [\"100001\"]", "allowed_accounts: []\n    on_revoke: reset", 1);
    let p = plan_spec(&parse(&revoked), None, &st, &Env::offline()).unwrap();
    let cross = &p.state.endpoints["cross"];
    assert_eq!(cross.state, EndpointState::Rejected);
    assert_eq!(cross.reason.as_deref(), Some("account 100001 was removed from allowed_accounts"));
    assert_eq!(p.reset, vec![cross.index]);
    let ep = p.changes.iter().find(|c| c.name == "cross").unwrap();
    assert_eq!(ep.op, '~');
    assert!(ep.details.iter().any(|d| d.contains("rejected")), "{ep}");
    // The owner's own endpoint is untouched.
    assert_eq!(p.state.endpoints["same"].state, EndpointState::Accepted);
    // Accepting again is refused until the account is allowed again.
    let st2 = finish(p.state);
    assert_eq!(
        accept(&st2, "cross").unwrap_err(),
        DecisionError::NotAllowed { account: "100001".into(), service: "web".into() }
    );
    // Re-allowing does not undo the decision: decisions are state.
    let (st3, _) = apply(SPEC, &st2);
    assert_eq!(st3.endpoints["cross"].state, EndpointState::Rejected);
    assert_eq!(accept(&st3, "cross").unwrap().endpoints["cross"].state, EndpointState::Accepted);
}

#[test]
fn reject_honours_on_revoke() {
    let (st, _) = apply(SPEC, &State::default());
    let (st2, cut) = reject(&st, "cross").unwrap();
    assert_eq!(st2.endpoints["cross"].state, EndpointState::Rejected);
    assert_eq!(cut, None, "on_revoke: keep");
    assert!(matches!(reject(&st2, "cross"), Err(DecisionError::CannotReject { .. })));
    let mut reset = st.clone();
    reset.services.get_mut("web").unwrap().spec.on_revoke = OnRevoke::Reset;
    let id = st.endpoints["cross"].id.clone();
    let (_, cut) = reject(&reset, &id).unwrap();
    assert_eq!(cut, Some(st.endpoints["cross"].index));
    assert_eq!(accept(&st, "nope").unwrap_err(), DecisionError::NoEndpoint("nope".into()));
    assert!(matches!(accept(&st, "same"), Err(DecisionError::CannotAccept { .. })));
}

#[test]
fn deleting_a_service_in_use_needs_force_and_takes_its_endpoints() {
    let (st, _) = apply(SPEC, &State::default());
    let e = without_service(&st, "web", false).unwrap_err();
    assert_eq!(e, DecisionError::InUse { service: "web".into(), endpoints: vec!["same".into()] });
    assert_eq!(
        e.to_string(),
        "service web still has endpoints that are accepted or creating: same; delete them first or use --force"
    );
    let spec = without_service(&st, &st.services["web"].id, true).unwrap();
    let p = plan_spec(&spec, None, &st, &Env::offline()).unwrap();
    let gone: Vec<_> = p.changes.iter().map(|c| format!("{} {}", c.op, c.name)).collect();
    assert_eq!(gone, ["- web", "- cross", "- same"]);
    // Phase 1 keeps them, deleting; phase 2 removes them.
    assert_eq!(p.state.services["web"].state, ServiceState::Deleting);
    assert_eq!(p.state.endpoints["same"].state, EndpointState::Deleting);
    let after = finish(p.state);
    assert!(!after.services.contains_key("web"));
    assert_eq!(after.endpoints.keys().collect::<Vec<_>>(), ["auto-ep"]);
}

#[test]
fn freed_slots_are_not_reused_in_the_same_apply() {
    let (st, _) = apply(SPEC, &State::default());
    let old = st.endpoints["cross"].index;
    let replaced = SPEC.replacen("{name: cross,", "{name: cross2,", 1);
    let p = plan_spec(&parse(&replaced), None, &st, &Env::offline()).unwrap();
    let new = p.state.endpoints["cross2"].index;
    assert_ne!(new, old);
    assert_ne!(p.state.endpoints["cross2"].snat_ip, st.endpoints["cross"].snat_ip);
    assert_eq!(p.state.endpoints["cross"].state, EndpointState::Deleting);
}

#[test]
fn immutable_fields_and_host_facts_are_errors() {
    let (st, _) = apply(SPEC, &State::default());
    let owner = SPEC.replacen("    owner: \"100002\"\n    vpc: vpc2\n    backends: [{address: 192.168.2.10}]", "    owner: \"100005\"\n    vpc: vpc2\n    backends: [{address: 192.168.2.10}]", 1);
    let text = owner.replacen("allowed_accounts: [\"100001\"]", "allowed_accounts: [\"*\"]", 1);
    let e = plan_spec(&parse(&text), None, &st, &Env::offline()).unwrap_err();
    assert_eq!(e.len(), 1, "{e:#?}");
    assert_eq!(e[0].path, "services[0].owner");
    assert!(e[0].message.contains("an owner cannot change"), "{}", e[0].message);
    let moved = SPEC.replacen("service: web}", "service: auto}", 1);
    let e = plan_spec(&parse(&moved), None, &st, &Env::offline()).unwrap_err();
    assert_eq!(e[0].path, "endpoints[1].service");
    let no_if = Env { interface_exists: &|i| i != "gw-vpc2", ..Env::offline() };
    let e = plan_spec(&parse(SPEC), None, &State::default(), &no_if).unwrap_err();
    assert_eq!((e[0].path.as_str(), e[0].message.as_str()), ("vpcs[1].interface", "interface `gw-vpc2` does not exist on this gateway"));
    let cap = Env { ct_capacity: Some(1024), ..Env::offline() };
    let e = plan_spec(&parse(SPEC), None, &st, &cap).unwrap_err();
    assert_eq!(e[0].path, "gateway.conntrack_capacity");
}

#[test]
fn the_gateways_own_addresses_are_never_an_endpoints() {
    // vpc1's interface holds 10.0.0.254 and 10.0.0.100: the top address is skipped by
    // assignment, and a spec that gives the other is refused.
    let own = |i: &str| if i == "gw-vpc1" { vec![Ipv4Addr::new(10, 0, 0, 254), Ipv4Addr::new(10, 0, 0, 100)] } else { vec![] };
    let env = Env { gateway_addrs: &own, ..Env::offline() };
    let e = plan_spec(&parse(SPEC), None, &State::default(), &env).unwrap_err();
    assert_eq!((e[0].path.as_str(), e[0].message.as_str()), ("endpoints[0].ip", "10.0.0.100 is the gateway's own address in VPC vpc1"));
    let given = SPEC.replacen("ip: 10.0.0.100", "ip: 10.0.0.99", 1);
    let p = plan_spec(&parse(&given), None, &State::default(), &env).unwrap();
    let assigned: BTreeSet<Ipv4Addr> = p.state.endpoints.values().filter(|e| e.spec.ip.is_none()).map(|e| e.ip).collect();
    assert_eq!(assigned, [Ipv4Addr::new(10, 0, 0, 253), Ipv4Addr::new(10, 0, 0, 252)].into(), "assigned from the top, skipping the gateway's");
}

#[test]
fn changes_are_listed_field_by_field() {
    let (st, _) = apply(SPEC, &State::default());
    let text = SPEC
        .replacen("backends: [{address: 192.168.2.10}]", "backends: [{address: 192.168.2.10}, {address: 192.168.2.12, weight: 20}]", 1)
        .replacen("ip: 10.0.0.100", "ip: 10.0.0.101", 1);
    let p = plan_spec(&parse(&text), None, &st, &Env::offline()).unwrap();
    let shown: Vec<String> = p.changes.iter().map(|c| c.to_string()).collect();
    assert_eq!(
        shown,
        [
            format!("~ service web ({})\n    backends: [\"192.168.2.10@100\"] -> [\"192.168.2.10@100\", \"192.168.2.12@20\"]", st.services["web"].id),
            format!("~ endpoint cross ({})\n    ip: 10.0.0.100 -> 10.0.0.101", st.endpoints["cross"].id),
        ]
    );
    let after = finish(p.state);
    assert_eq!(after.services["web"].backend_slots.len(), 2);
}

#[test]
fn every_service_field_and_the_gateway_show_up_in_the_plan() {
    let (mut st, _) = apply(SPEC, &State::default());
    st.generation = 1;
    let text = SPEC
        .replacen("allowed_accounts: [\"100001\"]", "allowed_accounts: [\"100001\"]\n    health_check: { type: http }\n    notify_url: http://10.9.9.9/hook", 1)
        .replacen("vpcs:", "gateway: { timeouts: { udp: 30s } }\nvpcs:", 1);
    let p = plan_spec(&parse(&text), None, &st, &Env::offline()).unwrap();
    let shown: Vec<String> = p.changes.iter().map(|c| c.to_string()).collect();
    assert_eq!(shown.len(), 2, "{shown:#?}");
    assert!(shown[0].starts_with("~ gateway local\n    timeouts: ") && shown[0].contains("\"udp\":\"30s\""), "{}", shown[0]);
    assert!(shown[1].contains("health_check: None -> Some(") && shown[1].contains("notify_url: None -> Some(\"http://10.9.9.9/hook\")"), "{}", shown[1]);
}

#[test]
fn a_zonal_address_is_never_assigned_and_never_one_another_endpoint_holds() {
    // `same` and `auto-ep` get the top addresses of vpc1 (.254, .253) unless a zonal
    // address takes one first.
    let zonal = SPEC.replacen("ip: 10.0.0.100}", "ip: 10.0.0.100, zone_ips: {z1: 10.0.0.254}}", 1);
    let (st, _) = apply(&zonal, &State::default());
    let auto: BTreeSet<Ipv4Addr> = ["same", "auto-ep"].iter().map(|n| st.endpoints[*n].ip).collect();
    assert_eq!(auto, [Ipv4Addr::new(10, 0, 0, 253), Ipv4Addr::new(10, 0, 0, 252)].into());
    // Giving `cross` a zonal address `same` was given automatically is refused.
    let taken = st.endpoints["same"].ip;
    let clash = SPEC.replacen("ip: 10.0.0.100}", &format!("ip: 10.0.0.100, zone_ips: {{z2: {taken}}}}}"), 1);
    let e = plan_spec(&parse(&clash), None, &st, &Env::offline()).unwrap_err();
    assert_eq!(e.len(), 1, "{e:#?}");
    assert!(e[0].message.contains(&format!("{taken} in VPC vpc1 is already endpoint")), "{}", e[0].message);
}
