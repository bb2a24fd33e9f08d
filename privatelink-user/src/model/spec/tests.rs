//! Reading specs: defaults, every structural error with its position, value types.

use super::*;
use std::{net::Ipv4Addr, time::Duration};

#[test]
fn defaults_fill_what_is_left_out() {
    let (s, _) = parse(
        "vpcs: [{name: a, interface: eth1, cidr: 10.0.0.0/24}]\n\
         services:\n- name: web\n  owner: 100002\n  vpc: a\n  backends: [{address: 10.0.0.5}]\n  ports: [{protocol: tcp, endpoint_port: 80, service_port: 8080}]\n",
    )
    .unwrap();
    assert_eq!(s.gateway, Gateway::default());
    assert_eq!(s.gateway.snat_range.to_string(), "11.163.0.0/16");
    let svc = &s.services[0];
    assert_eq!(svc.owner, Account("100002".into()));
    assert_eq!(svc.backends[0].weight, 100);
    assert_eq!(svc.connection_limit, 3000);
    assert!(!svc.auto_accept);
    assert_eq!(svc.on_revoke, OnRevoke::Keep);
}

#[test]
fn every_structural_error_is_reported_with_path_and_position() {
    let text = "\
gateway:
  regoin: x
vpcs:
  - {name: a, interface: eth1, cidr: 10.0.0.1/24}
services:
  - name: web
    vpc: a
    owner: \"1\"
    ports:
      - {protocol: sctp, endpoint_port: 80, service_port: 80}
endpoints:
  - {name: e1, owner: \"2\", vpc: a, service: web, ip: 10.0.0.300}
  - {name: e2, owner: \"2\", vpc: a}
";
    let errs = parse(text).unwrap_err();
    let got: Vec<(String, Option<(usize, usize)>)> =
        errs.iter().map(|e| (e.path.clone(), e.pos.map(|p| (p.line, p.col)))).collect();
    assert_eq!(
        got,
        vec![
            ("gateway.regoin".to_string(), Some((2, 3))),
            ("vpcs[0].cidr".to_string(), Some((4, 32))),
            ("services[0].ports[0].protocol".to_string(), Some((10, 10))),
            ("endpoints[0].ip".to_string(), Some((12, 50))),
            ("endpoints[1]".to_string(), Some((13, 5))),
        ],
        "{errs:#?}"
    );
    assert!(errs[0].message.starts_with("unknown field `regoin`"), "{}", errs[0].message);
    assert!(errs[1].message.contains("has host bits set (did you mean 10.0.0.0/24?)"), "{}", errs[1].message);
    assert!(errs[2].message.contains("unknown variant `sctp`"), "{}", errs[2].message);
    assert!(errs[4].message.contains("missing field `service`"), "{}", errs[4].message);
    assert_eq!(errs[0].to_string(), format!("2:3: gateway.regoin: {}", errs[0].message));
}

#[test]
fn unknown_top_level_field_and_wrong_types() {
    let errs = parse("servics: []\n").unwrap_err();
    assert_eq!(errs[0].path, "servics");
    let errs = parse("vpcs: {name: a}\n").unwrap_err();
    assert_eq!(errs[0].path, "vpcs");
    assert!(errs[0].message.contains("expected a list"), "{}", errs[0].message);
    let errs = parse("gateway: {timeouts: {udp: 10x}}\n").unwrap_err();
    assert_eq!(errs[0].path, "gateway.timeouts.udp");
    assert!(errs[0].message.contains("is not a duration"), "{}", errs[0].message);
}

#[test]
fn durations_and_cidrs() {
    assert_eq!("350s".parse::<Dur>().unwrap().0, Duration::from_secs(350));
    assert_eq!("5m".parse::<Dur>().unwrap().0, Duration::from_secs(300));
    assert_eq!("250ms".parse::<Dur>().unwrap().to_string(), "250ms");
    assert!("s".parse::<Dur>().is_err());
    assert!("-1s".parse::<Dur>().is_err());
    let c: Cidr = "10.1.0.0/16".parse().unwrap();
    assert!(c.contains("10.1.255.255".parse().unwrap()));
    assert!(!c.contains("10.2.0.0".parse().unwrap()));
    assert_eq!(c.broadcast(), "10.1.255.255".parse::<Ipv4Addr>().unwrap());
    assert!("10.0.0.0/33".parse::<Cidr>().is_err());
}

#[test]
fn webhook_urls() {
    assert_eq!(parse_http_url("http://10.0.0.1:8080/hook"), Some(("10.0.0.1:8080".into(), "/hook".into())));
    assert_eq!(parse_http_url("http://example"), Some(("example:80".into(), "/".into())));
    assert_eq!(parse_http_url("https://x/"), None);
    assert_eq!(parse_http_url("http:///x"), None);
}
