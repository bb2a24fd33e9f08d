//! One case per validation rule: the spec text, and the exact paths and messages
//! expected back.

use super::*;
use crate::model::spec;

const BASE: &str = r#"gateway: {region: local}
vpcs:
  - {name: vpc1, interface: gw-vpc1, cidr: 10.0.0.0/24}
  - {name: vpc2, interface: gw-vpc2, cidr: 192.168.2.0/24}
services:
  - name: web
    owner: "100002"
    vpc: vpc2
    backends: [{address: 192.168.2.10}, {address: 192.168.2.11, weight: 50}]
    ports: [{protocol: tcp, endpoint_port: 80, service_port: 8080}]
    allowed_accounts: ["100001"]
endpoints:
  - {name: web-from-vpc1, owner: "100001", vpc: vpc1, service: web, ip: 10.0.0.100}
"#;

fn errors_of(text: &str, known: &Known) -> Vec<SpecError> {
    let (s, doc) = spec::parse(text).unwrap_or_else(|e| panic!("structural errors: {e:#?}\n{text}"));
    validate(&s, Some(&doc), known)
}

/// `BASE` with `from` replaced by `to` (which must occur) gives exactly `want`.
#[track_caller]
fn case(from: &str, to: &str, want: &[(&str, &str)]) {
    assert!(BASE.contains(from), "case does not apply: {from}");
    let text = BASE.replacen(from, to, 1);
    let got = errors_of(&text, &Known::default());
    let pairs: Vec<(String, String)> = got.iter().map(|e| (e.path.clone(), e.message.clone())).collect();
    assert_eq!(got.len(), want.len(), "{from} -> {to}: {pairs:#?}");
    for ((path, msg), e) in want.iter().zip(&got) {
        assert_eq!(&e.path, path, "{from} -> {to}: {pairs:#?}");
        assert!(e.message.contains(msg), "{from} -> {to}: `{}` lacks `{msg}`", e.message);
        assert!(e.pos.is_some(), "no position for {}", e.path);
    }
}

#[test]
fn the_base_spec_is_valid() {
    assert_eq!(errors_of(BASE, &Known::default()), vec![]);
}

#[test]
fn gateway_rules() {
    case("{region: local}", "{region: Local!}", &[("gateway.region", "lowercase letters, digits and '-'")]);
    case("{region: local}", "{snat_range: 11.163.0.0/31}", &[("gateway.snat_range", "11.163.0.0/31 is too small")]);
    case("{region: local}", "{conntrack_capacity: 10}", &[("gateway.conntrack_capacity", "must be 1024-16777216, not 10")]);
    case("{region: local}", "{timeouts: {udp: 0s}}", &[("gateway.timeouts.udp", "longer than 0s")]);
    case(
        "{region: local}",
        "{quotas: {services_per_account: 0}}",
        &[
            ("gateway.quotas.services_per_account", "must be 1-1024, not 0"),
            ("services[0]", "account 100002 exceeds its quota of 0 services"),
        ],
    );
}

#[test]
fn vpc_rules() {
    case(
        "{name: vpc1,",
        "{name: 'vpc 1',",
        &[("vpcs[0].name", "letters, digits, '-' and '_'"), ("endpoints[0].vpc", "VPC `vpc1` is not defined")],
    );
    case("interface: gw-vpc2", "interface: gw-vpc1", &[("vpcs[1].interface", "interface `gw-vpc1` already faces vpcs[0]")]);
    case("interface: gw-vpc1", "interface: an-interface-name-too-long", &[("vpcs[0].interface", "1-15 characters")]);
    case(
        "cidr: 10.0.0.0/24",
        "cidr: 11.163.4.0/24",
        &[
            ("vpcs[0].cidr", "11.163.4.0/24 overlaps the SNAT range 11.163.0.0/16 (gateway.snat_range)"),
            ("endpoints[0].ip", "10.0.0.100 is outside VPC vpc1 (11.163.4.0/24)"),
        ],
    );
    case("cidr: 10.0.0.0/24}", "cidr: 10.0.0.0/24, route_table: -1}", &[("vpcs[0].route_table", "must be 0-4294967295, not -1")]);
    case(
        "  - {name: vpc2, interface: gw-vpc2, cidr: 192.168.2.0/24}\n",
        "  - {name: vpc2, interface: gw-vpc2, cidr: 192.168.2.0/24}\n  - {name: vpc1, interface: gw-vpc3, cidr: 10.1.0.0/24}\n",
        &[("vpcs[2].name", "VPC `vpc1` is already defined at vpcs[0]")],
    );
}

#[test]
fn service_rules() {
    case(
        "  - name: web\n",
        "  - name: web-service-long-name\n",
        &[("services[0].name", "1-16 characters"), ("endpoints[0].service", "service `web` is not in the spec")],
    );
    case("owner: \"100002\"", "owner: \"a b\"", &[("services[0].owner", "an account id is 1-64 characters")]);
    case("vpc: vpc2", "vpc: vpc9", &[("services[0].vpc", "VPC `vpc9` is not defined under vpcs")]);
    case(
        "backends: [{address: 192.168.2.10}, {address: 192.168.2.11, weight: 50}]",
        "backends: []",
        &[("services[0].backends", "at least one backend")],
    );
    case("{address: 192.168.2.11, weight: 50}", "{address: 192.168.2.10}", &[("services[0].backends[1].address", "192.168.2.10 is already backends[0]")]);
    case("{address: 192.168.2.11, weight: 50}", "{address: 10.9.9.9}", &[("services[0].backends[1].address", "10.9.9.9 is outside VPC vpc2 (192.168.2.0/24)")]);
    case("weight: 50", "weight: 101", &[("services[0].backends[1].weight", "a weight must be 0-100, not 101")]);
    case(
        "[{address: 192.168.2.10}, {address: 192.168.2.11, weight: 50}]",
        "[{address: 192.168.2.10, weight: 0}]",
        &[("services[0].backends", "at least one backend needs a weight above 0")],
    );
    case("ports: [{protocol: tcp, endpoint_port: 80, service_port: 8080}]", "ports: []", &[("services[0].ports", "at least one port mapping")]);
    let many: Vec<String> = (1..=51).map(|p| format!("{{protocol: udp, endpoint_port: {p}, service_port: {p}}}")).collect();
    case(
        "ports: [{protocol: tcp, endpoint_port: 80, service_port: 8080}]",
        &format!("ports: [{}]", many.join(", ")),
        &[("services[0].ports", "at most 50 port mappings, not 51")],
    );
    case("endpoint_port: 80,", "endpoint_port: 0,", &[("services[0].ports[0].endpoint_port", "a port must be 1-65535, not 0")]);
    case("service_port: 8080}", "service_port: 70000}", &[("services[0].ports[0].service_port", "a port must be 1-65535, not 70000")]);
    case(
        "service_port: 8080}]",
        "service_port: 8080}, {protocol: udp, endpoint_port: 80, service_port: 1}, {protocol: tcp, endpoint_port: 80, service_port: 2}]",
        &[("services[0].ports[2].endpoint_port", "tcp/80 is already mapped by ports[0]")],
    );
    case("allowed_accounts: [\"100001\"]", "allowed_accounts: [\"100001\", \"bad id\"]", &[("services[0].allowed_accounts[1]", "or \"*\"")]);
    case("allowed_accounts: [\"100001\"]", "allowed_accounts: [\"100001\"]\n    connection_limit: 0", &[("services[0].connection_limit", "must be 1-1000000, not 0")]);
    // The sizes of an endpoint's budgets: the half-open limit, and its share of the table
    // (at least its connection limit, at most the table's 131072 flows by default).
    case("allowed_accounts: [\"100001\"]", "allowed_accounts: [\"100001\"]\n    half_open_limit: 0", &[("services[0].half_open_limit", "must be 1-1000000, not 0")]);
    case(
        "allowed_accounts: [\"100001\"]",
        "allowed_accounts: [\"100001\"]\n    flow_share: 2999",
        &[("services[0].flow_share", "at least the connection limit (3000) and at most the flows the table holds (131072: half of gateway.conntrack_capacity), not 2999")],
    );
    case("allowed_accounts: [\"100001\"]", "allowed_accounts: [\"100001\"]\n    flow_share: 131073", &[("services[0].flow_share", "not 131073")]);
    case("allowed_accounts: [\"100001\"]", "allowed_accounts: [\"100001\"]\n    half_open_limit: 50\n    flow_share: 131072", &[]);
    case("cidr: 10.0.0.0/24}", "cidr: 10.0.0.0/24, flow_share: 0}", &[("vpcs[0].flow_share", "the flow share must be 1-131072, not 0")]);
    case("cidr: 10.0.0.0/24}", "cidr: 10.0.0.0/24, flow_share: 131072}", &[]);
    case("allowed_accounts: [\"100001\"]", "allowed_accounts: [\"100001\"]\n    description: x", &[("services[0].description", "2-256 characters, not 1")]);
    case(
        "allowed_accounts: [\"100001\"]",
        "allowed_accounts: [\"100001\"]\n    description: https://example.org",
        &[("services[0].description", "must not start with http:// or https://")],
    );
    case("allowed_accounts: [\"100001\"]", "allowed_accounts: [\"100001\"]\n    snat_range: 11.164.0.0/31", &[("services[0].snat_range", "too small")]);
}

#[test]
fn duplicate_service_names_and_quotas() {
    let svc = "  - name: web\n    owner: \"100002\"\n    vpc: vpc2\n    backends: [{address: 192.168.2.12}]\n    ports: [{protocol: udp, endpoint_port: 53, service_port: 53}]\n";
    case("endpoints:\n", &format!("{svc}endpoints:\n"), &[("services[1].name", "service `web` is already defined at services[0]")]);
    let other = svc.replace("name: web", "name: dns");
    case(
        "{region: local}",
        "{region: local, quotas: {services_per_account: 1}}",
        &[],
    );
    let text = BASE
        .replacen("{region: local}", "{region: local, quotas: {services_per_account: 1, endpoints_per_account: 1}}", 1)
        .replacen("endpoints:\n", &format!("{other}endpoints:\n"), 1)
        .replacen("ip: 10.0.0.100}", "ip: 10.0.0.100}\n  - {name: second, owner: \"100001\", vpc: vpc1, service: web}", 1);
    let got = errors_of(&text, &Known::default());
    let paths: Vec<_> = got.iter().map(|e| (e.path.as_str(), e.message.as_str())).collect();
    assert_eq!(
        paths,
        vec![
            ("services[1]", "account 100002 exceeds its quota of 1 services"),
            ("endpoints[1]", "account 100001 exceeds its quota of 1 endpoints"),
        ]
    );
}

#[test]
fn endpoint_rules() {
    case("name: web-from-vpc1", "name: 1web", &[("endpoints[0].name", "start with a letter")]);
    case("name: web-from-vpc1", "name: w", &[("endpoints[0].name", "2-128 characters")]);
    case("name: web-from-vpc1", "name: \"web from\"", &[("endpoints[0].name", "only letters, digits")]);
    case("name: web-from-vpc1", "name: 订单-api_1", &[]);
    case("ip: 10.0.0.100", "ip: 10.0.1.100", &[("endpoints[0].ip", "10.0.1.100 is outside VPC vpc1 (10.0.0.0/24)")]);
    case("ip: 10.0.0.100", "ip: 10.0.0.255", &[("endpoints[0].ip", "network or broadcast address of 10.0.0.0/24")]);
    case("service: web,", "service: nope,", &[("endpoints[0].service", "service `nope` is not in the spec")]);
    case("service: web,", "service: local.web.epsrv-00000000000000000,", &[("endpoints[0].service", "service `web` is new and has no id yet")]);
    case("service: web,", "service: other.web.epsrv-00000000000000000,", &[("endpoints[0].service", "names region `other`, this gateway is `local`")]);
    case(
        "owner: \"100001\", vpc: vpc1",
        "owner: \"100003\", vpc: vpc1",
        &[("endpoints[0].owner", "account 100003 may not connect to service `web`: it is neither the owner (100002) nor in allowed_accounts")],
    );
    // "*" lets every account in; the owner is always allowed.
    case("allowed_accounts: [\"100001\"]", "allowed_accounts: [\"*\"]", &[]);
    case("owner: \"100001\", vpc: vpc1", "owner: \"100002\", vpc: vpc1", &[]);
    let two = "ip: 10.0.0.100}\n  - {name: again, owner: \"100001\", vpc: vpc1, service: web, ip: 10.0.0.100}";
    case("ip: 10.0.0.100}", two, &[("endpoints[1].ip", "10.0.0.100 in VPC vpc1 is already an address of endpoints[0]")]);
    // The same address in another VPC is fine: VPC ranges may overlap.
    let other_vpc = "ip: 10.0.0.100}\n  - {name: again, owner: \"100001\", vpc: vpc3, service: web, ip: 10.0.0.100}";
    let text = BASE
        .replacen("ip: 10.0.0.100}", other_vpc, 1)
        .replacen("cidr: 192.168.2.0/24}\n", "cidr: 192.168.2.0/24}\n  - {name: vpc3, interface: gw-vpc3, cidr: 10.0.0.0/24}\n", 1);
    assert_eq!(errors_of(&text, &Known::default()), vec![]);
    let dup = "ip: 10.0.0.100}\n  - {name: web-from-vpc1, owner: \"100001\", vpc: vpc1, service: web}";
    case("ip: 10.0.0.100}", dup, &[("endpoints[1].name", "endpoint `web-from-vpc1` is already defined at endpoints[0]")]);
}

#[test]
fn an_existing_endpoint_is_not_refused_by_the_whitelist_and_full_names_resolve() {
    let text = BASE.replacen("owner: \"100001\", vpc: vpc1", "owner: \"100003\", vpc: vpc1", 1);
    let known = Known {
        endpoints: ["web-from-vpc1".to_string()].into(),
        service_ids: [("web".to_string(), "epsrv-0123456789abcdef0".to_string())].into(),
    };
    assert_eq!(errors_of(&text, &known), vec![]);
    let full = BASE.replacen("service: web,", "service: local.web.epsrv-0123456789abcdef0,", 1);
    assert_eq!(errors_of(&full, &known), vec![]);
    let wrong = BASE.replacen("service: web,", "service: local.web.epsrv-11111111111111111,", 1);
    let e = errors_of(&wrong, &known);
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].message, "service `web` has id epsrv-0123456789abcdef0, not epsrv-11111111111111111");
}

#[test]
fn errors_carry_line_and_column() {
    let text = BASE.replacen("endpoint_port: 80,", "endpoint_port: 0,", 1).replacen("ip: 10.0.0.100", "ip: 10.0.9.1", 1);
    let got = errors_of(&text, &Known::default());
    let shown: Vec<String> = got.iter().map(|e| e.to_string()).collect();
    assert_eq!(
        shown,
        vec![
            "10:29: services[0].ports[0].endpoint_port: a port must be 1-65535, not 0".to_string(),
            "13:69: endpoints[0].ip: 10.0.9.1 is outside VPC vpc1 (10.0.0.0/24)".to_string(),
        ]
    );
}

#[test]
fn fleet_and_zone_rules() {
    case("region: local}", "region: local, fleet: {announce_table: 100}}", &[]);
    case("region: local}", "region: local, fleet: {announce_table: 254}}", &[("gateway.fleet.announce_table", "not 253-255: default, main and local")]);
    case("region: local}", "region: local, fleet: {announce_table: 0}}", &[("gateway.fleet.announce_table", "not 0")]);
    case("region: local}", "region: local, fleet: {announce_table: 100, snat_announce_table: 101}}", &[]);
    case("region: local}", "region: local, fleet: {snat_announce_table: 255}}", &[("gateway.fleet.snat_announce_table", "not 253-255")]);
    case("region: local}", "region: local, fleet: {announce_table: 100, snat_announce_table: 100}}", &[("gateway.fleet.snat_announce_table", "table 100 is gateway.fleet.announce_table too")]);
    case("cidr: 10.0.0.0/24}", "cidr: 10.0.0.0/24, announce_table: 4294967296}", &[("vpcs[0].announce_table", "not 4294967296")]);
    // Overlapping VPCs publishing into one table would leak each other's addresses.
    let overlapping = "cidr: 192.168.2.0/24}\n  - {name: vpc3, interface: gw-vpc3, cidr: 10.0.0.0/16}";
    let text = BASE.replacen("region: local}", "region: local, fleet: {announce_table: 100}}", 1).replacen("cidr: 192.168.2.0/24}", overlapping, 1);
    let got = errors_of(&text, &Known::default());
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(got[0].path, "vpcs[2].announce_table");
    assert!(got[0].message.contains("10.0.0.0/16 overlaps vpcs[0] (vpc1, 10.0.0.0/24) and both publish into table 100"), "{}", got[0].message);
    let own = text.replacen("cidr: 10.0.0.0/16}", "cidr: 10.0.0.0/16, announce_table: 101}", 1);
    assert_eq!(errors_of(&own, &Known::default()), vec![]);

    case("{address: 192.168.2.10}", "{address: 192.168.2.10, zone: cn-hangzhou-h}", &[]);
    case("{address: 192.168.2.10}", "{address: 192.168.2.10, zone: \"a b\"}", &[("services[0].backends[0].zone", "`a b` is not a zone name")]);
    case("allowed_accounts: [\"100001\"]", "allowed_accounts: [\"100001\"]\n    zone_affinity: true", &[("services[0].zone_affinity", "no backend has a zone")]);

    case("ip: 10.0.0.100}", "ip: 10.0.0.100, zone_ips: {z1: 10.0.0.101, z2: 10.0.0.102}}", &[]);
    case("ip: 10.0.0.100}", "ip: 10.0.0.100, zone_ips: {z1: 10.0.0.100}}", &[("endpoints[0].zone_ips.z1", "10.0.0.100 in VPC vpc1 is already an address of endpoints[0]")]);
    case("ip: 10.0.0.100}", "ip: 10.0.0.100, zone_ips: {z1: 10.0.1.1}}", &[("endpoints[0].zone_ips.z1", "10.0.1.1 is outside VPC vpc1")]);
    case("ip: 10.0.0.100}", "ip: 10.0.0.100, zone_ips: {\"z 1\": 10.0.0.7}}", &[("endpoints[0].zone_ips", "`z 1` is not a zone name")]);
}

#[test]
fn dns_rules() {
    case("{region: local}", "{dns_zone: internal}", &[("gateway.dns_zone", "at least two labels")]);
    case("{region: local}", "{dns_zone: 'pl..internal'}", &[("gateway.dns_zone", "at least two labels")]);
    case("{region: local}", "{dns_ttl: 0s}", &[("gateway.dns_ttl", "whole seconds from 1s to 86400s")]);
    case("{region: local}", "{dns_ttl: 1500ms}", &[("gateway.dns_ttl", "whole seconds")]);
    case("cidr: 10.0.0.0/24}", "cidr: 10.0.0.0/24, dns: 10.0.1.53}", &[("vpcs[0].dns", "10.0.1.53 is not a host address of the VPC's 10.0.0.0/24")]);
    case("cidr: 10.0.0.0/24}", "cidr: 10.0.0.0/24, dns: 10.0.0.255}", &[("vpcs[0].dns", "not a host address")]);
    case("cidr: 10.0.0.0/24}", "cidr: 10.0.0.0/24, dns: 10.0.0.100}", &[("endpoints[0].ip", "10.0.0.100 is VPC vpc1's DNS address (vpcs[0].dns)")]);
    let own = |name: &str| format!("allowed_accounts: [\"100001\"]\n    private_dns_name: {name}");
    case("allowed_accounts: [\"100001\"]", &own("api"), &[("services[0].private_dns_name", "at least two labels")]);
    case("allowed_accounts: [\"100001\"]", &own("'api orders.example'"), &[("services[0].private_dns_name", "at least two labels")]);
    case("allowed_accounts: [\"100001\"]", &own("web.privatelink.internal"), &[("services[0].private_dns_name", "overlaps the gateway's zone privatelink.internal")]);
    case("allowed_accounts: [\"100001\"]", &own("internal"), &[("services[0].private_dns_name", "at least two labels")]);
    case("allowed_accounts: [\"100001\"]", &own("API.Orders.Example."), &[]);
}

#[test]
fn security_group_rules() {
    let groups = |rule: &str, owner: &str| format!("{BASE}security_groups:\n  - name: g\n    owner: \"{owner}\"\n    rules:\n      - {rule}\n");
    let errs = |text: &str| -> Vec<(String, String)> { errors_of(text, &Known::default()).into_iter().map(|e| (e.path, e.message)).collect() };
    let ok = groups("{priority: 1, action: allow, protocol: tcp, ports: \"80\", source: 10.0.0.0/28}", "100001");
    assert_eq!(errs(&ok), vec![]);
    for (rule, path, msg) in [
        ("{priority: 0, action: allow, protocol: tcp, source: 10.0.0.0/28}", "security_groups[0].rules[0].priority", "must be 1-100, not 0"),
        ("{priority: 1, action: allow, protocol: tcp, ports: \"90-80\", source: 10.0.0.0/28}", "security_groups[0].rules[0].ports", "N <= M"),
        ("{priority: 1, action: allow, protocol: tcp, ports: \"0\", source: 10.0.0.0/28}", "security_groups[0].rules[0].ports", "1-65535"),
        ("{priority: 1, action: allow, protocol: icmp, ports: \"80\", source: 10.0.0.0/28}", "security_groups[0].rules[0].ports", "ICMP has no ports"),
    ] {
        let got = errs(&groups(rule, "100001"));
        assert_eq!(got.len(), 1, "{rule}: {got:?}");
        assert_eq!(got[0].0, path);
        assert!(got[0].1.contains(msg), "{rule}: {}", got[0].1);
    }
    // Attached: the endpoint's own account's groups, at most 5, each defined once.
    let attach = |list: &str, owner: &str| groups("{priority: 1, action: allow, protocol: all, source: 0.0.0.0/0}", owner).replace("ip: 10.0.0.100}", &format!("ip: 10.0.0.100, security_groups: {list}}}"));
    assert_eq!(errs(&attach("[g]", "100001")), vec![]);
    let got = errs(&attach("[g]", "100002"));
    assert!(got.len() == 1 && got[0].0 == "endpoints[0].security_groups[0]" && got[0].1.contains("belongs to account 100002"), "{got:?}");
    let got = errs(&attach("[h]", "100001"));
    assert!(got.len() == 1 && got[0].1.contains("security group `h` is not defined"), "{got:?}");
    let got = errs(&attach("[g, g]", "100001"));
    assert!(got.len() == 1 && got[0].1.contains("listed twice"), "{got:?}");
    let got = errs(&attach("[a, b, c, d, e, f]", "100001"));
    assert!(got.iter().any(|e| e.0 == "endpoints[0].security_groups" && e.1.contains("at most 5")), "{got:?}");
    let many: String = (0..101).map(|i| format!("      - {{priority: 1, action: allow, protocol: tcp, ports: \"{}\", source: 10.0.0.0/24}}\n", i + 1)).collect();
    let text = format!("{BASE}security_groups:\n  - name: g\n    owner: \"100001\"\n    rules:\n{many}");
    assert!(errs(&text).iter().any(|e| e.0 == "security_groups[0].rules" && e.1.contains("at most 100 rules")));
}

#[test]
fn bandwidth_rules() {
    let ep = "ip: 10.0.0.100}";
    case(ep, "ip: 10.0.0.100, bandwidth: 100Mbps}", &[]);
    case(ep, "ip: 10.0.0.100, bandwidth: 1Kbps}", &[]);
    case(ep, "ip: 10.0.0.100, bandwidth: 0Mbps}", &[("endpoints[0].bandwidth", "must be 1Kbps-100Gbps, not 0Kbps")]);
    case(ep, "ip: 10.0.0.100, bandwidth: 101Gbps}", &[("endpoints[0].bandwidth", "must be 1Kbps-100Gbps, not 101Gbps")]);
    // Not a bandwidth at all: refused when read, saying how to write one.
    for bad in ["100", "100MB", "1.5Gbps", "-1Mbps", "99999999999999Gbps"] {
        let text = BASE.replacen(ep, &format!("ip: 10.0.0.100, bandwidth: \"{bad}\"}}"), 1);
        let errs = spec::parse(&text).err().unwrap_or_else(|| panic!("{bad} was read"));
        let all = format!("{errs:?}");
        assert!(all.contains("is not a bandwidth") && all.contains("100Mbps"), "{bad}: {all}");
    }
    let b: spec::Bandwidth = "1024Mbps".parse().unwrap();
    assert_eq!((b.0, b.to_string()), (1_024_000_000, "1024Mbps".to_string()));
    assert_eq!("2gbps".parse::<spec::Bandwidth>().unwrap().to_string(), "2Gbps");
}

/// A spec with broken parts: the structural errors of those and the rules' errors of
/// every other part, at once, in the order of the text, numbered as in the text; a
/// reference to a broken item is not a second error.
#[test]
fn every_error_of_a_spec_at_once() {
    let text = r#"gateway: {region: local}
colour: blue
vpcs:
  - {name: vpc1, interface: gw-vpc1, cidr: 10.0.0.0/24}
  - {name: vpc2, interface: gw-vpc2, cidr: 192.168.2.0/24}
  - {name: vpc3, interface: gw-vpc3, cidr: 10.9.0.0/33}
services:
  - name: web
    owner: "100002"
    vpc: vpc2
    backends: [{address: 192.168.2.10}]
    ports: [{protocol: tcp, endpoint_port: 80, service_port: 8080}]
    colour: red
  - name: api
    owner: "100002"
    vpc: vpc9
    backends: [{address: 192.168.2.20}]
    ports: [{protocol: tcp, endpoint_port: 70000, service_port: 8080}]
endpoints:
  - {name: ep-a, owner: "100002", vpc: vpc1, service: web, ip: 10.0.0.100}
  - {name: ep-b, owner: "100002", vpc: vpc3, service: api, ip: 10.0.0.5}
  - {name: ep-c, owner: "100002", vpc: vpc1, service: api, ip: 10.0.0.300}
  - {name: ep-d, owner: "100002", vpc: vpc1, service: api, ip: 10.0.1.5}
  - {name: ep-d, owner: "100002", vpc: vpc1, service: nope, ip: 10.0.0.7}
"#;
    let (p, doc) = spec::read_all(text).unwrap();
    let got = crate::model::all_errors(&p, &doc, &State::default(), &Env::offline());
    let seen: Vec<(usize, &str, &str)> = got.iter().map(|e| (e.pos.map_or(0, |p| p.line), e.path.as_str(), e.message.as_str())).collect();
    let want: [(usize, &str, &str); 9] = [
        (2, "colour", "unknown field `colour`"),
        (6, "vpcs[2].cidr", "10.9.0.0/33"),
        (13, "services[0].colour", "unknown field `colour`"),
        (16, "services[1].vpc", "VPC `vpc9` is not defined"),
        (18, "services[1].ports[0].endpoint_port", "70000"),
        (22, "endpoints[2].ip", "invalid IPv4 address"),
        (23, "endpoints[3].ip", "10.0.1.5 is outside VPC vpc1"),
        (24, "endpoints[4].name", "already defined at endpoints[3]"),
        (24, "endpoints[4].service", "service `nope` is not in the spec"),
    ];
    assert_eq!(seen.len(), want.len(), "{seen:#?}");
    for ((line, path, msg), (l, p, m)) in want.iter().zip(&seen) {
        assert_eq!((line, path), (l, p), "{seen:#?}");
        assert!(m.contains(msg), "`{m}` lacks `{msg}`: {seen:#?}");
    }
    // A spec that reads has the same report as before: the rules' errors alone.
    let fine = BASE.replacen("endpoint_port: 80", "endpoint_port: 0", 1);
    let (p, doc) = spec::read_all(&fine).unwrap();
    let got = crate::model::all_errors(&p, &doc, &State::default(), &Env::offline());
    assert_eq!(got.iter().map(|e| e.path.as_str()).collect::<Vec<_>>(), ["services[0].ports[0].endpoint_port"], "{got:#?}");
}

#[test]
fn renumbering_touches_list_items_only() {
    let mut b = spec::Broken::default();
    b.index.insert("endpoints", vec![0, 2, 5]);
    b.index.insert("security_groups", vec![1, 4]);
    assert_eq!(b.renumber("endpoints[2].security_groups[1]"), "endpoints[5].security_groups[1]");
    assert_eq!(b.renumber("already an address of endpoints[1]"), "already an address of endpoints[2]");
    assert_eq!(b.renumber("security_groups[0].rules[1]"), "security_groups[1].rules[1]");
    assert_eq!(b.renumber("services[3].vpc"), "services[3].vpc");
}
