//! A fleet: three daemons sharing one state in a real etcd, behind a router that
//! spreads flows over them with a layer-4 multipath route.

use privatelink_tests::{
    daemon_lab::service,
    fleet_lab::{Fleet, SLICES},
    lab::{http_get, reported_peer, ENDPOINT, ENDPOINT_TCP_PORT},
};
use std::{
    collections::{BTreeMap, BTreeSet},
    net::{Ipv4Addr, SocketAddr},
    time::Instant,
};

const LIMIT: u32 = 10;

/// Service `web` of account 100 (limit 10, manual approval for account 200) and
/// endpoint `e1` of its owner at 10.0.0.100; `pending` more endpoints of account 200.
fn spec(pending: &[&str]) -> String {
    let mut s = format!(
        "gateway:\n  region: lab\n  conntrack_capacity: 65536\n  snat_slices: {SLICES}\nvpcs:\n  - {{ name: vpc0, interface: gw-c0, cidr: 10.0.0.0/24 }}\n  - {{ name: prov, interface: gw-prov, cidr: 192.168.2.0/24 }}\nservices:\n"
    );
    s.push_str(&service("web", "100", &[&format!("connection_limit: {LIMIT}"), "allowed_accounts: [\"200\"]"]));
    s.push_str("endpoints:\n  - { name: e1, owner: \"100\", vpc: vpc0, service: web, ip: 10.0.0.100 }\n");
    for (i, p) in pending.iter().enumerate() {
        s.push_str(&format!("  - {{ name: {p}, owner: \"200\", vpc: vpc0, service: web, ip: 10.0.0.{} }}\n", 110 + i));
    }
    s
}

/// The node (by slice) an address of 11.163.0.0/16 cut in four belongs to.
fn slice_of(ip: Ipv4Addr) -> u32 {
    ip.octets()[2] as u32 / (256 / SLICES)
}

/// `n` HTTP GETs to the endpoint from the client: the SNAT address each backend saw.
fn spread(f: &Fleet, n: usize) -> Vec<Ipv4Addr> {
    f.in_client(move || {
        (0..n)
            .map(|i| {
                let body = http_get(SocketAddr::from((ENDPOINT, ENDPOINT_TCP_PORT))).unwrap_or_else(|e| panic!("GET {i} through the fleet: {e}"));
                match reported_peer(&body) {
                    SocketAddr::V4(a) => *a.ip(),
                    other => panic!("{other}"),
                }
            })
            .collect()
    })
}

fn endpoint_state(f: &Fleet, i: usize, name: &str) -> String {
    let r = f.cli(i, &["get", "endpoints", name, "-o", "json"]);
    serde_json::from_str::<serde_json::Value>(&r.stdout).ok().and_then(|v| v[0]["state"].as_str().map(str::to_string)).unwrap_or_default()
}

fn share(f: &Fleet, i: usize) -> u32 {
    f.json(i, &["describe", "endpoint", "e1"])["connection_limit_share"].as_u64().unwrap() as u32
}

#[test]
fn a_fleet_shares_one_state_and_each_flow_returns_through_the_node_that_opened_it() {
    let mut f = Fleet::new(3);

    // An apply on one node converges on all three (the watch, not a poll of ours).
    let r = f.apply(0, &spec(&[]));
    assert_eq!(r.code, 0, "{r:#?}");
    let t = Instant::now();
    f.wait_until("e1 accepted on every node", |f| (0..3).all(|i| endpoint_state(f, i, "e1") == "accepted"));
    eprintln!("converged on three nodes {:?} after the apply returned", t.elapsed());

    // Registrations are republished every second: they catch up with the attach.
    f.wait_until("every node to report its links", |f| {
        f.json(2, &["get", "nodes"]).as_array().unwrap().iter().all(|n| n["interfaces"].as_array().is_some_and(|a| a.len() == 2))
    });
    let nodes = f.json(2, &["get", "nodes"]);
    let rows = nodes.as_array().unwrap();
    assert_eq!(rows.len(), 3, "{nodes:#}");
    for (k, n) in rows.iter().enumerate() {
        assert_eq!(n["name"], format!("gw{}", k + 1));
        assert_eq!(n["state"], "up", "{n:#}");
        assert_eq!(n["slice"], k as u64);
        assert_eq!(n["snat_slices"][0], format!("11.163.{}.0/18", k * 64));
        assert_eq!(n["zone"], format!("z{}", 1 + k % 2));
        let at = n["last_heartbeat"].as_str().unwrap_or_default();
        assert!(at.starts_with("20") && at.ends_with('Z'), "not an RFC 3339 time: {n:#}");
    }
    let table = f.ok(0, &["get", "nodes"]);
    assert!(table.contains("gw1 (this)") && table.contains("11.163.128.0/18") && table.contains("BUDDY"), "{table}");
    // Each node's buddy is another node that is up, and every node sees the same pairs.
    let pairs = |f: &Fleet, i: usize| -> BTreeMap<String, String> {
        f.json(i, &["get", "nodes"]).as_array().unwrap().iter().map(|n| (n["name"].as_str().unwrap().into(), n["buddy"].as_str().unwrap_or("-").into())).collect()
    };
    let paired = pairs(&f, 0);
    for (node, buddy) in &paired {
        assert!(buddy != node && paired.contains_key(buddy), "{node}'s buddy is {buddy}: {paired:?}");
    }
    assert_eq!(pairs(&f, 1), paired);
    assert_eq!(pairs(&f, 2), paired);

    // Every node's SNAT address of e1, from its slice; describe lists all of them.
    let d = f.json(1, &["describe", "endpoint", "e1"]);
    let by_node: BTreeMap<String, Ipv4Addr> =
        d["snat_by_node"].as_array().unwrap().iter().map(|n| (n["node"].as_str().unwrap().to_string(), n["snat_ips"][0].as_str().unwrap().parse().unwrap())).collect();
    assert_eq!(by_node.len(), 3, "{d:#}");
    for (k, (name, ip)) in by_node.iter().enumerate() {
        assert_eq!(name, &format!("gw{}", k + 1));
        assert_eq!(slice_of(*ip), k as u32, "{name}: {ip}");
    }
    assert_eq!(d["snat_ip"], by_node["gw2"].to_string(), "describe on gw2 shows gw2's own address first");

    // Flows spread over the nodes, and each one's replies come back through the node
    // that opened it: backends see addresses of several slices, every GET completes.
    let seen = spread(&f, 40);
    let slices: BTreeSet<u32> = seen.iter().map(|ip| slice_of(*ip)).collect();
    assert!(slices.len() >= 2, "40 flows all went through one node: {seen:?}");
    for ip in &seen {
        assert!(by_node.values().any(|a| a == ip), "{ip} is no node's SNAT address of e1: {by_node:?}");
    }

    // Any node resolves any node's SNAT address.
    let w = f.json(2, &["whois", &by_node["gw1"].to_string()]);
    assert_eq!(w["endpoint"], "e1", "{w:#}");
    assert_eq!(w["node"], "gw1", "{w:#}");
    let bad = f.cli(2, &["whois", "11.163.200.77"]);
    assert_ne!(bad.code, 0);
    assert!(bad.stderr.contains("not the SNAT address of any endpoint"), "{bad:#?}");

    // Limit shares sum to the limit.
    let shares: Vec<u32> = (0..3).map(|i| share(&f, i)).collect();
    assert_eq!(shares.iter().sum::<u32>(), LIMIT, "{shares:?}");
    assert_eq!(shares, vec![4, 3, 3]);

    // Concurrent changes from every node: no update is lost.
    let pending = ["p1", "p2", "p3", "p4"];
    assert_eq!(f.apply(0, &spec(&pending)).code, 0);
    f.wait_until("the pending endpoints everywhere", |f| (0..3).all(|i| endpoint_state(f, i, "p4") == "pendingAcceptance"));
    let more = spec(&["p1", "p2", "p3", "p4", "p5"]);
    std::thread::scope(|sc| {
        let f = &f;
        let a = sc.spawn(move || f.cli(0, &["accept", "p1"]));
        let b = sc.spawn(move || f.cli(1, &["accept", "p2"]));
        let c = sc.spawn(move || f.cli(2, &["reject", "p3"]));
        let d = sc.spawn(move || f.apply(1, &more));
        for (what, r) in [("accept p1", a), ("accept p2", b), ("reject p3", c), ("apply p5", d)] {
            let r = r.join().unwrap();
            assert_eq!(r.code, 0, "{what}: {r:#?}");
        }
    });
    f.wait_until("every change on every node", |f| {
        (0..3).all(|i| {
            endpoint_state(f, i, "p1") == "accepted"
                && endpoint_state(f, i, "p2") == "accepted"
                && endpoint_state(f, i, "p3") == "rejected"
                && endpoint_state(f, i, "p4") == "pendingAcceptance"
                && endpoint_state(f, i, "p5") == "pendingAcceptance"
        })
    });
    let eps = f.json(2, &["get", "endpoints"]);
    let eps = eps.as_array().unwrap();
    let ids: BTreeSet<&str> = eps.iter().map(|e| e["id"].as_str().unwrap()).collect();
    let snat: BTreeSet<&str> = eps.iter().map(|e| e["snat_ip"].as_str().unwrap()).collect();
    assert_eq!((ids.len(), snat.len()), (eps.len(), eps.len()), "ids and SNAT addresses have one owner each: {eps:#?}");

    // One tenant API across the fleet: a token made on gw1 works on gw3; a create with
    // an Idempotency-Key retried on another node makes nothing twice; a resource's ETag
    // is the same on every node, and If-Match holds across them; a token revoked on
    // gw2 is refused on every node once `token revoke` has returned.
    let tok = f.json(0, &["token", "create", "--account", "100", "--name", "fleet"])["token"].as_str().unwrap().to_string();
    let tags: Vec<String> = (0..3).map(|i| f.api(i, &tok, "GET", "/v1/services/web", None, &[])).map(|(code, body, tag)| {
        assert_eq!(code, 200, "{body}");
        tag
    }).collect();
    assert!(tags[0].starts_with('"') && tags.iter().all(|t| *t == tags[0]), "one ETag on every node: {tags:?}");
    let group = r#"{"name": "g1", "rules": [{"priority": 1, "action": "allow", "protocol": "tcp", "ports": "80", "source": "10.0.0.0/24"}]}"#;
    let (code, first, tag) = f.api(0, &tok, "POST", "/v1/security-groups", Some(group), &["Idempotency-Key: fleet-1"]);
    assert_eq!(code, 201, "{first}");
    let (code, again, _) = f.api(2, &tok, "POST", "/v1/security-groups", Some(group), &["Idempotency-Key: fleet-1"]);
    assert_eq!((code, &again["name"]), (201, &first["name"]), "the retry on another node answers with the first result: {again}");
    let (_, listed, _) = f.api(1, &tok, "GET", "/v1/security-groups", None, &[]);
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "made once: {listed}");
    let patch = r#"{"rules": []}"#;
    let (code, changed, _) = f.api(1, &tok, "PATCH", "/v1/security-groups/g1", Some(patch), &[&format!("If-Match: {tag}")]);
    assert_eq!(code, 200, "gw2 honours the tag gw1 gave: {changed}");
    let (code, stale, _) = f.api(2, &tok, "PATCH", "/v1/security-groups/g1", Some(patch), &[&format!("If-Match: {tag}")]);
    assert_eq!(code, 412, "the tag is stale on every node: {stale}");
    let said = f.ok(1, &["token", "revoke", &tok[6..14]]);
    assert!(said.contains("on every node"), "{said}");
    for i in 0..3 {
        let (code, body, _) = f.api(i, &tok, "GET", "/v1/services", None, &[]);
        assert_eq!(code, 401, "gw{}: {body}", i + 1);
    }

    // A node dies (a daemon stopped by SIGTERM would count as restarting for its
    // grace): its lease expires, the others take its share, and say so.
    f.kill(2);
    f.wait_until("gw3 recorded down", |f| f.json(0, &["get", "nodes", "gw3"])[0]["state"] == "down");
    f.wait_until("the shares follow", |f| share(f, 0) + share(f, 1) == LIMIT);
    // Nobody's buddy is down; gw3 keeps one, the node that would hold its flows, and
    // whoever was not paired with gw3 keeps its buddy.
    let now = pairs(&f, 0);
    assert!(now.iter().all(|(n, b)| b != "gw3" && (n == "gw3" || b != n)), "{now:?}");
    assert!(["gw1", "gw2"].contains(&now["gw3"].as_str()), "{now:?}");
    for n in ["gw1", "gw2"] {
        if paired[n] != "gw3" {
            assert_eq!(now[n], paired[n], "{n} changed buddy though gw3 was not its buddy: {paired:?} -> {now:?}");
        }
    }
    assert_eq!((share(&f, 0), share(&f, 1)), (5, 5));
    let events = f.json(1, &["events"]);
    let kinds: Vec<(String, String)> = events.as_array().unwrap().iter().map(|e| (e["kind"].as_str().unwrap().into(), e["subject"].as_str().unwrap().into())).collect();
    assert!(kinds.contains(&("node.expired".into(), "gw3".into())), "{kinds:?}");
    assert_eq!(kinds.iter().filter(|k| k.0 == "node.joined").count(), 3, "one join event per node: {kinds:?}");
    assert_eq!(kinds.iter().filter(|k| k.0 == "endpoint.accepted" && k.1 == "p1").count(), 1, "one event per change, whoever recorded it: {kinds:?}");

    // A node cut off from etcd keeps forwarding with the maps it has, and says so.
    f.nodes[1].ns.ip(&["link", "set", "m0", "down"]);
    f.wait_until("gw2 to notice", |f| f.json(1, &["status"])["store_reachable"] == false);
    let seen = spread(&f, 40);
    let slices: BTreeSet<u32> = seen.iter().map(|ip| slice_of(*ip)).collect();
    assert!(slices.contains(&1), "no flow went through the cut-off gw2 (slice 1): {seen:?}");
    let st = f.ok(1, &["status"]);
    assert!(st.contains("UNREACHABLE, forwarding with the maps as they are"), "{st}");
}
