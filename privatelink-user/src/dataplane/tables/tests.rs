//! Properties of the reconciler's core on random specs and random transitions:
//! applying `diff(b, a)` to `a` gives `b`; a second diff is empty; and at every
//! intermediate write no unchanged endpoint resolves differently and no new endpoint
//! is reachable before it is complete.

use super::*;
use std::result::Result;
use crate::model::fleet::Seat;
use crate::dataplane::shares::*;
use crate::dataplane::links::Iface;
use crate::model::{
    plan, plan_spec,
    spec::{Account, Backend, Bandwidth, Endpoint, PortMapping, Protocol, Service, Spec, Vpc},
    state::State,
    validate::Env,
};
use proptest::prelude::*;

/// What a packet to an endpoint address meets, as the data path would look it up:
/// the endpoint, its service, the port map, and the backend each Maglev slot leads to.
/// `None`: the address is not bound.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Resolved {
    endpoint: EndpointInfo,
    /// The SNAT addresses the endpoint counts (`None`: a slot not written).
    snat: Vec<Option<Ipv4Addr>>,
    service: Option<ServiceInfo>,
    ports: Vec<(u8, u16, u16)>,
    slots: Vec<Option<(Ipv4Addr, bool)>>,
}

fn resolve(t: &Tables, key: &IpKey) -> Option<Resolved> {
    let idx = *t.ep_ips.get(key)?;
    let endpoint = t.endpoints.get(&idx).copied().unwrap_or_default();
    let snat = (0..endpoint.snat_count as u32).map(|i| t.ep_snat.get(&(idx * MAX_SNAT_PER_ENDPOINT + i)).copied()).collect();
    let s = endpoint.service;
    let service = t.services.get(&s).copied();
    let ports = t.ports.iter().filter(|(k, _)| k.0 == s).map(|(k, v)| (k.1, k.2, *v)).collect();
    let slots = t
        .maglev
        .get(&s)
        .map(|m| m.iter().map(|b| t.backends.get(b).copied()).collect())
        .unwrap_or_default();
    Some(Resolved { endpoint, snat, service, ports, slots })
}

fn iface(name: &str) -> Option<Iface> {
    let n: u32 = name.trim_start_matches("gw-vpc").parse().ok()?;
    let addrs = vec![Ipv4Addr::new(10, n as u8, 0, 1)];
    Some(Iface { ifindex: 10 + n, mac: [2, 0, 0, 0, 0, n as u8], mtu: 1500 - n as u16 * 100, addrs })
}

#[derive(Clone, Debug)]
struct SvcGen {
    backends: Vec<(u8, i64)>,
    ports: Vec<(bool, u16, u16)>,
    limit: i64,
    auto: bool,
    snat: i64,
}

#[derive(Clone, Debug)]
struct EpGen {
    name: u8,
    service: usize,
    vpc: u8,
    ip: Option<u8>,
    owner: u8,
    mbps: Option<u8>,
}

fn svc_gen() -> impl Strategy<Value = SvcGen> {
    (
        proptest::collection::vec((1u8..8, 0i64..=100), 1..4),
        proptest::collection::vec((any::<bool>(), 1u16..6, 1u16..9000), 1..4),
        1i64..5000,
        any::<bool>(),
        1i64..4,
    )
        .prop_map(|(backends, ports, limit, auto, snat)| SvcGen { backends, ports, limit, auto, snat })
}

fn ep_gen() -> impl Strategy<Value = EpGen> {
    (0u8..8, 0usize..3, 1u8..3, proptest::option::of(2u8..12), 1u8..3, proptest::option::of(1u8..3))
        .prop_map(|(name, service, vpc, ip, owner, mbps)| EpGen { name, service, vpc, ip, owner, mbps })
}

fn spec_gen() -> impl Strategy<Value = Spec> {
    (proptest::collection::vec(svc_gen(), 1..4), proptest::collection::vec(ep_gen(), 0..7)).prop_map(|(svcs, eps)| {
        let vpcs = (1..=3)
            .map(|i| Vpc {
                name: format!("vpc{i}"),
                interface: format!("gw-vpc{i}"),
                cidr: format!("10.{i}.0.0/24").parse().unwrap(),
                route_table: None,
                announce_table: None,
                dns: None,
                xdp_mode: Default::default(),
                flow_share: None,
                owner: None,
            })
            .collect();
        let services: Vec<Service> = svcs
            .iter()
            .enumerate()
            .map(|(i, g)| {
                let mut backends: Vec<Backend> = Vec::new();
                for (host, w) in &g.backends {
                    let address = format!("10.3.0.{host}").parse().unwrap();
                    if !backends.iter().any(|b| b.address == address) {
                        // The first backend takes flows: a service with none is invalid.
                        let weight = if backends.is_empty() { (*w).max(1) } else { *w };
                        backends.push(Backend { address, weight, zone: None });
                    }
                }
                let mut ports: Vec<PortMapping> = Vec::new();
                for (tcp, ep, sp) in &g.ports {
                    let protocol = if *tcp { Protocol::Tcp } else { Protocol::Udp };
                    if !ports.iter().any(|p| p.protocol == protocol && p.endpoint_port == *ep as i64) {
                        ports.push(PortMapping { protocol, endpoint_port: *ep as i64, service_port: *sp as i64 });
                    }
                }
                Service {
                    name: format!("svc{i}"),
                    owner: Account("1".into()),
                    vpc: "vpc3".into(),
                    backends,
                    ports,
                    auto_accept: g.auto,
                    allowed_accounts: vec![Account("*".into())],
                    connection_limit: g.limit,
                    on_revoke: Default::default(),
                    description: None,
                    snat_range: None,
                    snat_addresses_per_endpoint: g.snat,
                    half_open_limit: None,
                    flow_share: None,
                    health_check: None,
                    notify_url: None,
                    zone_affinity: false,
                    private_dns_name: None,
                }
            })
            .collect();
        let mut endpoints: Vec<Endpoint> = Vec::new();
        for e in eps {
            let name = format!("ep{}", e.name);
            let ip = e.ip.map(|h| format!("10.{}.0.{h}", e.vpc).parse().unwrap());
            let clash = endpoints.iter().any(|x| x.name == name || (x.ip.is_some() && x.ip == ip && x.vpc == format!("vpc{}", e.vpc)));
            if !clash {
                endpoints.push(Endpoint {
                    name,
                    owner: Account(e.owner.to_string()),
                    vpc: format!("vpc{}", e.vpc),
                    service: format!("svc{}", e.service % services.len()),
                    ip,
                    zone_ips: Default::default(),
                    private_dns: true,
                    security_groups: vec![],
                    bandwidth: e.mbps.map(|m| Bandwidth(m as u64 * 1_000_000)),
                });
            }
        }
        Spec { vpcs, services, endpoints, ..Default::default() }
    })
}

/// The endpoint addresses of either side.
fn keys(a: &Tables, b: &Tables) -> BTreeSet<IpKey> {
    a.ep_ips.keys().chain(b.ep_ips.keys()).copied().collect()
}

/// Run `ops` on `from` one write at a time, checking the safety property after each.
fn check_transition(from: &Tables, to: &Tables) -> Result<(), TestCaseError> {
    let ops = diff(to, from);
    let mut mid = from.clone();
    for (n, op) in ops.iter().enumerate() {
        op.apply(&mut mid);
        for k in keys(from, to) {
            let (a, b, m) = (resolve(from, &k), resolve(to, &k), resolve(&mid, &k));
            if a.is_some() && a == b {
                prop_assert_eq!(&m, &a, "unchanged endpoint {:?} disturbed after op {} {:?}", k, n, op);
            } else if a.is_none() {
                if let (Some(m), Some(b)) = (&m, &b) {
                    prop_assert_eq!(m.endpoint, b.endpoint, "new endpoint {:?} half-configured after {:?}", k, op);
                    prop_assert_eq!(&m.snat, &b.snat, "new endpoint {:?} without its SNAT addresses after {:?}", k, op);
                    prop_assert_eq!(m.service, b.service);
                    prop_assert_eq!(&m.slots, &b.slots);
                    prop_assert!(b.ports.iter().all(|p| m.ports.contains(p)), "new endpoint {:?} lacks ports after {:?}", k, op);
                }
            }
        }
    }
    prop_assert_eq!(&mid, to, "diff did not reach the target");
    prop_assert!(diff(to, &mid).is_empty(), "a second diff is not empty");
    Ok(())
}

/// Both phases of an apply; every generated spec plans, so an error fails the case.
fn phases(spec: &Spec, st: &State) -> Result<(State, State), TestCaseError> {
    let p = plan_spec(spec, None, st, &Env::offline()).map_err(|e| TestCaseError::fail(format!("the plan failed: {e:#?}")))?;
    let one = p.state.clone();
    Ok((one, plan::finish(p.state)))
}

/// `next` as an operator would write it after `st`: an endpoint that keeps its name
/// keeps its owner, VPC and service (they are immutable), so a generated endpoint that
/// changes one of them is a new endpoint under a new name (the old one is deleted);
/// and nobody asks for an address another endpoint that stays holds (the plan refuses
/// that), so such an endpoint is given one automatically.
fn as_successor(mut next: Spec, st: &State) -> Spec {
    for e in &mut next.endpoints {
        if let Some(r) = st.endpoints.get(&e.name) {
            if r.spec.owner != e.owner || r.spec.vpc != e.vpc || r.service != e.service {
                e.name.push_str("-new");
            }
        }
    }
    let staying: Vec<String> = next.endpoints.iter().map(|e| e.name.clone()).collect();
    for e in &mut next.endpoints {
        let held = |ip: Ipv4Addr| {
            st.endpoints.values().any(|r| r.spec.name != e.name && r.spec.vpc == e.vpc && staying.contains(&r.spec.name) && r.addresses().any(|a| a == ip))
        };
        if e.ip.is_some_and(held) {
            e.ip = None;
        }
        e.zone_ips.retain(|_, ip| !held(*ip));
    }
    next
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, .. ProptestConfig::default() })]

    #[test]
    fn diff_reaches_the_target_safely(a in spec_gen(), b in spec_gen(), accept_mask in any::<u8>()) {
        let (_, mut sa) = phases(&a, &State::default())?;
        // Some provider decisions in between.
        let names: Vec<String> = sa.endpoints.keys().cloned().collect();
        for (i, n) in names.iter().enumerate() {
            if accept_mask & (1 << (i % 8)) != 0 {
                if let Ok(next) = plan::accept(&sa, n) { sa = next; }
            } else if let Ok((next, _)) = plan::reject(&sa, n) {
                sa = next;
            }
        }
        let ta = desired(&sa, &Seat::ALONE, &iface, &|_, _| true);
        check_transition(&Tables::default(), &ta)?;
        let b = as_successor(b, &sa);
        let (p1, p2) = phases(&b, &sa)?;
        let (t1, t2) = (desired(&p1, &Seat::ALONE, &iface, &|_, _| true), desired(&p2, &Seat::ALONE, &iface, &|_, _| true));
        check_transition(&ta, &t1)?;
        check_transition(&t1, &t2)?;
        // Re-planning the same spec is a no-op, in state and in writes.
        let (q1, q2) = phases(&b, &p2)?;
        prop_assert_eq!(&q2, &p2);
        prop_assert!(diff(&desired(&q1, &Seat::ALONE, &iface, &|_, _| true), &t2).is_empty());
        // Every bound address leads to a complete endpoint.
        for (k, _) in t2.ep_ips.iter().filter(|(_, i)| **i != EP_GATEWAY_OWN) {
            let r = resolve(&t2, k).unwrap();
            prop_assert!(r.service.is_some());
            prop_assert!(!r.snat.is_empty() && r.snat.iter().all(Option::is_some), "an endpoint without its SNAT addresses");
            prop_assert_eq!(r.slots.len(), MAGLEV_SIZE as usize);
        }
    }
}

#[test]
fn removing_everything_clears_every_table() {
    let spec = Spec {
        vpcs: vec![Vpc { name: "vpc1".into(), interface: "gw-vpc1".into(), cidr: "10.1.0.0/24".parse().unwrap(), route_table: None, announce_table: None, dns: None, xdp_mode: Default::default(), flow_share: None, owner: None }],
        ..Default::default()
    };
    let mut spec_full = spec.clone();
    spec_full.vpcs.push(Vpc { name: "vpc3".into(), interface: "gw-vpc3".into(), cidr: "10.3.0.0/24".parse().unwrap(), route_table: Some(7), announce_table: None, dns: None, xdp_mode: Default::default(), flow_share: None, owner: None });
    spec_full.services.push(Service {
        name: "s".into(),
        owner: Account("1".into()),
        vpc: "vpc3".into(),
        backends: vec![Backend { address: "10.3.0.5".parse().unwrap(), weight: 100, zone: None }],
        ports: vec![PortMapping { protocol: Protocol::Tcp, endpoint_port: 80, service_port: 8080 }],
        auto_accept: false,
        allowed_accounts: vec![],
        connection_limit: 10,
        on_revoke: Default::default(),
        description: None,
        snat_range: Some("11.164.0.0/24".parse().unwrap()),
        snat_addresses_per_endpoint: 2,
        half_open_limit: None,
        flow_share: None,
        health_check: None,
        notify_url: None,
        zone_affinity: false,
        private_dns_name: None,
    });
    spec_full.endpoints.push(Endpoint { name: "e1".into(), owner: Account("1".into()), vpc: "vpc1".into(), service: "s".into(), ip: None, zone_ips: Default::default(), private_dns: true, security_groups: vec![], bandwidth: None });
    let (_, full) = phases(&spec_full, &State::default()).unwrap();
    let t = desired(&full, &Seat::ALONE, &iface, &|_, _| true);
    assert_eq!(t.vpcs[&13].fib_table, 7);
    assert_eq!(t.vpcs[&13].mtu, 1200);
    assert_eq!(t.ep_ips[&(2, Ipv4Addr::new(10, 3, 0, 1))], EP_GATEWAY_OWN, "the gateway's own address on vpc3");
    // mss_clamp auto: the smaller of the two sides' MTUs (1400, 1200) less 40.
    assert_eq!(t.endpoints[&0].mss_clamp, 1160);
    assert_eq!(t.services[&0], ServiceInfo { ifindex: 13, vpc_id: 2, active: 1, ..Default::default() });
    assert_eq!(t.ports[&(0, PROTO_TCP, 80)], 8080);
    assert!(t.snat_ranges.contains_key(&("11.164.0.0".parse().unwrap(), 24)));
    let e = t.endpoints[&0];
    assert_eq!((e.conn_limit, e.state, e.snat_count), (10, EP_STATE_ACCEPTED, 2));
    let snat: Vec<String> = t.ep_snat.range(0..MAX_SNAT_PER_ENDPOINT).map(|(_, ip)| ip.to_string()).collect();
    assert_eq!(snat, ["11.164.0.1", "11.164.0.2"], "both SNAT addresses, in order");
    let (_, empty) = phases(&spec, &full).unwrap();
    let t2 = desired(&empty, &Seat::ALONE, &iface, &|_, _| true);
    let ops = diff(&t2, &t);
    let mut m = t.clone();
    for op in &ops {
        op.apply(&mut m);
    }
    assert_eq!(m, t2);
    assert!(t2.endpoints.is_empty() && t2.services.is_empty() && t2.ports.is_empty() && t2.backends.is_empty() && t2.ep_snat.is_empty());
    assert_eq!(t2.vpcs.len(), 1);
    assert_eq!(t2.snat_ranges.len(), 1, "only the gateway's default range stays");
}

#[test]
fn a_down_backend_leaves_the_maglev_table_before_it_is_marked_down_and_all_down_fails_open() {
    let spec_text = "vpcs:\n- {name: c, interface: gw-vpc1, cidr: 10.1.0.0/24}\n- {name: p, interface: gw-vpc3, cidr: 10.3.0.0/24}\nservices:\n- name: s\n  owner: \"1\"\n  vpc: p\n  backends: [{address: 10.3.0.5}, {address: 10.3.0.6}]\n  ports: [{protocol: tcp, endpoint_port: 80, service_port: 80}]\nendpoints:\n- {name: e1, owner: \"1\", vpc: c, service: s}\n";
    let spec = crate::model::spec::parse(spec_text).unwrap().0;
    let (_, st) = phases(&spec, &State::default()).unwrap();
    let b5: Ipv4Addr = "10.3.0.5".parse().unwrap();
    let all = desired(&st, &Seat::ALONE, &iface, &|_, _| true);
    let one_down = desired(&st, &Seat::ALONE, &iface, &|_, ip| ip != b5);
    let slot5 = st.services["s"].backend_slots[&b5];
    assert!(!one_down.backends[&slot5].1, "10.3.0.5 is marked down");
    assert!(!one_down.maglev[&0].contains(&slot5), "and no Maglev slot leads to it");
    let ops = diff(&one_down, &all);
    let maglev_at = ops.iter().position(|o| o.sets::<Maglev>().is_some()).unwrap();
    let down_at = ops.iter().position(|o| o.sets::<Backends>().is_some_and(|(k, v)| *k == slot5 && !v.1)).unwrap();
    assert!(maglev_at < down_at, "{ops:?}");
    // Coming back: marked up before the table points at it again.
    let ops = diff(&all, &one_down);
    let maglev_at = ops.iter().position(|o| o.sets::<Maglev>().is_some()).unwrap();
    let up_at = ops.iter().position(|o| o.sets::<Backends>().is_some_and(|(k, v)| *k == slot5 && v.1)).unwrap();
    assert!(up_at < maglev_at, "{ops:?}");
    // Every backend down: fail open, the table uses them all.
    assert!(st.services["s"].spec.failing_open(&|_, _| false));
    assert_eq!(desired(&st, &Seat::ALONE, &iface, &|_, _| false), all);
}

#[test]
fn zone_affinity_prefers_the_nodes_zone_and_falls_back_to_every_healthy_backend() {
    let spec_text = "vpcs:\n- {name: c, interface: gw-vpc1, cidr: 10.1.0.0/24}\n- {name: p, interface: gw-vpc3, cidr: 10.3.0.0/24}\nservices:\n- name: s\n  owner: \"1\"\n  vpc: p\n  zone_affinity: true\n  backends: [{address: 10.3.0.5, zone: z1}, {address: 10.3.0.6, zone: z2}, {address: 10.3.0.7}]\n  ports: [{protocol: tcp, endpoint_port: 80, service_port: 80}]\nendpoints:\n- {name: e1, owner: \"1\", vpc: c, service: s, ip: 10.1.0.9, zone_ips: {z1: 10.1.0.11, z2: 10.1.0.12}}\n";
    let spec = crate::model::spec::parse(spec_text).unwrap().0;
    let (_, st) = phases(&spec, &State::default()).unwrap();
    let slot = |a: &str| st.services["s"].backend_slots[&a.parse::<Ipv4Addr>().unwrap()];
    let seat = |zone: Option<&str>| Seat { zone: zone.map(str::to_string), ..Seat::ALONE };
    let used = |t: &Tables| t.maglev[&0].iter().copied().collect::<BTreeSet<u32>>();
    let (b5, b6, b7) = (slot("10.3.0.5"), slot("10.3.0.6"), slot("10.3.0.7"));
    assert_eq!(used(&desired(&st, &seat(Some("z1")), &iface, &|_, _| true)), [b5].into());
    assert_eq!(used(&desired(&st, &seat(Some("z2")), &iface, &|_, _| true)), [b6].into());
    // No healthy backend of its zone: every healthy backend.
    let z1_down = desired(&st, &seat(Some("z1")), &iface, &|_, ip| ip.octets()[3] != 5);
    assert_eq!(used(&z1_down), [b6, b7].into());
    // A zone no backend is in, or no zone: every backend.
    assert_eq!(used(&desired(&st, &seat(Some("z9")), &iface, &|_, _| true)), [b5, b6, b7].into());
    assert_eq!(used(&desired(&st, &seat(None), &iface, &|_, _| true)), [b5, b6, b7].into());
    // Without zone_affinity a node's zone changes nothing.
    let mut plain = st.clone();
    plain.services.get_mut("s").unwrap().spec.zone_affinity = false;
    assert_eq!(used(&desired(&plain, &seat(Some("z1")), &iface, &|_, _| true)), [b5, b6, b7].into());
    // The endpoint answers on its address and on both zonal ones, on every node.
    let t = desired(&st, &seat(Some("z1")), &iface, &|_, _| true);
    let vpc = st.vpcs["c"].vpc_id;
    for a in ["10.1.0.9", "10.1.0.11", "10.1.0.12"] {
        assert_eq!(t.ep_ips.get(&(vpc, a.parse().unwrap())), Some(&0), "{a}");
    }
}

#[test]
fn shares_of_the_table_protect_tenants_and_leave_few_tenants_the_whole_table() {
    // One consumer VPC may use every flow; two get half each; from four on a quarter.
    assert_eq!([1, 2, 3, 4, 9].map(|n| vpc_flow_limit(1000, n)), [1000, 500, 333, 250, 250]);
    assert_eq!(vpc_flow_limit(1000, 0), 1000, "no consumer yet");
    // An endpoint: open + half-open + as many again, never more than the table.
    assert_eq!(endpoint_flow_limit(3000, 131_072), 12_000);
    assert_eq!(endpoint_flow_limit(100_000, 131_072), 131_072);
    assert_eq!(endpoint_flow_limit(u32::MAX, u32::MAX), u32::MAX, "saturates");
    assert_eq!(half_open_limit(3000), 3000);
}

#[test]
fn the_spec_sizes_the_budgets_and_a_fleet_shares_an_endpoints() {
    let text = r#"gateway: {region: local, conntrack_capacity: 2048}
vpcs:
  - {name: c, interface: gw-vpc1, cidr: 10.1.0.0/24, flow_share: 300}
  - {name: p, interface: gw-vpc3, cidr: 10.3.0.0/24}
services:
  - {name: s, owner: "1", vpc: p, backends: [{address: 10.3.0.5}], ports: [{protocol: tcp, endpoint_port: 80, service_port: 8080}], connection_limit: 100, half_open_limit: 10, flow_share: 400}
endpoints:
  - {name: e1, owner: "1", vpc: c, service: s}
"#;
    let (spec, _) = crate::model::spec::parse(text).unwrap();
    let (_, st) = phases(&spec, &State::default()).unwrap();
    let t = desired(&st, &Seat::ALONE, &iface, &|_, _| true);
    let e = t.endpoints[&0];
    assert_eq!((e.conn_limit, e.half_open_limit, e.flow_limit), (100, 10, 400));
    let c = t.vpcs.values().find(|v| v.vpc_id == st.vpcs["c"].vpc_id).unwrap();
    assert_eq!((c.flow_limit, c.table_flow_limit), (300, 1024));
    // On one node of two, each gets half of the endpoint's budgets; the VPC's share is
    // of each node's own table.
    let two = Seat { slice: 0, rank: 0, of: 2, zone: None };
    let t = desired(&st, &two, &iface, &|_, _| true);
    let e = t.endpoints[&0];
    assert_eq!((e.conn_limit, e.half_open_limit, e.flow_limit), (50, 5, 200));
    assert_eq!(t.vpcs.values().find(|v| v.vpc_id == st.vpcs["c"].vpc_id).unwrap().flow_limit, 300);
}
