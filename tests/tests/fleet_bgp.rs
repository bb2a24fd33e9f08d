//! A fleet behind real BGP: each node's daemon publishes the endpoint addresses it
//! serves in its announce table, BIRD (each test's `_bird` run) or FRR (`_frr`, with
//! the recipes of docs/operator.md) announces them to the consumer's router, and the router spreads
//! flows over the nodes. Nobody touches a route: a node that
//! stops, loses its lease or dies is routed around by BGP alone.

use privatelink_tests::{
    daemon_lab::detach_by_hand,
    fleet_lab::{Fleet, Routing, ANNOUNCE_TABLE, RESTART_GRACE, SLICES},
    lab::{http_get, reported_peer, Session, ENDPOINT_TCP_PORT, ENDPOINT_UDP_PORT},
};
use std::{
    collections::{BTreeMap, BTreeSet},
    net::{Ipv4Addr, SocketAddr},
    time::{Duration, Instant},
};

const E: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 100);
const Z1: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 101);
const Z2: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 102);

/// Service `web` (backends .10 in z1 and .11 in z2; `extra` lines added) and its
/// owner's endpoint at 10.0.0.100 with a zonal address in each zone.
fn spec(extra: &[&str]) -> String {
    let mut s = format!(
        "gateway:\n  region: lab\n  conntrack_capacity: 65536\n  snat_slices: {SLICES}\n  fleet: {{ announce_table: {ANNOUNCE_TABLE} }}\nvpcs:\n  - {{ name: vpc0, interface: gw-c0, cidr: 10.0.0.0/24 }}\n  - {{ name: prov, interface: gw-prov, cidr: 192.168.2.0/24 }}\nservices:\n  - name: web\n    owner: \"100\"\n    vpc: prov\n    backends: [{{ address: 192.168.2.10, zone: z1 }}, {{ address: 192.168.2.11, zone: z2 }}]\n    ports: [{{ protocol: tcp, endpoint_port: 80, service_port: 8080 }}, {{ protocol: udp, endpoint_port: 53, service_port: 5353 }}]\n"
    );
    for e in extra {
        s.push_str(&format!("    {e}\n"));
    }
    s.push_str(&format!("endpoints:\n  - {{ name: e1, owner: \"100\", vpc: vpc0, service: web, ip: {E}, zone_ips: {{ z1: {Z1}, z2: {Z2} }} }}\n"));
    s
}

fn node_addr(k: u8) -> Ipv4Addr {
    Ipv4Addr::new(172, 16, k, 2)
}

fn hops(ks: &[u8]) -> BTreeSet<Ipv4Addr> {
    ks.iter().map(|k| node_addr(*k)).collect()
}

/// The node (0-based, by slice: they join in order) a SNAT address belongs to.
fn node_of(peer: SocketAddr) -> usize {
    match peer {
        SocketAddr::V4(a) => a.ip().octets()[2] as usize / (256 / SLICES as usize),
        other => panic!("{other}"),
    }
}

/// `n` GETs to `addr` from the client: (backend name, node) of each, or the first
/// failure.
fn try_gets(f: &Fleet, addr: Ipv4Addr, n: usize) -> Result<Vec<(String, usize)>, String> {
    f.in_client(move || {
        (0..n)
            .map(|i| {
                let body = http_get(SocketAddr::from((addr, ENDPOINT_TCP_PORT))).map_err(|e| format!("GET {i} of {addr}: {e}"))?;
                let backend = body.split_whitespace().find_map(|w| w.strip_prefix("backend=")).unwrap_or_default().to_string();
                Ok((backend, node_of(reported_peer(&body))))
            })
            .collect()
    })
}

/// `try_gets`, every one of which must succeed.
fn gets(f: &Fleet, addr: Ipv4Addr, n: usize) -> Vec<(String, usize)> {
    try_gets(f, addr, n).unwrap_or_else(|e| panic!("{e}\n{}", f.logs()))
}

#[test]
fn announcements_follow_each_daemon_and_its_lease_and_a_dead_node_is_routed_around_bird() {
    announcements_follow_each_daemon_and_its_lease_and_a_dead_node_is_routed_around(Routing::Bird);
}

#[test]
fn announcements_follow_each_daemon_and_its_lease_and_a_dead_node_is_routed_around_frr() {
    announcements_follow_each_daemon_and_its_lease_and_a_dead_node_is_routed_around(Routing::Frr);
}

fn announcements_follow_each_daemon_and_its_lease_and_a_dead_node_is_routed_around(routing: Routing) {
    let mut f = Fleet::with_routing(3, routing);
    let r = f.apply(0, &spec(&["health_check: { type: none }"]));
    assert_eq!(r.code, 0, "{r:#?}");

    // Every node publishes the endpoint's address, and its own zone's (gw1, gw3: z1).
    let t = Instant::now();
    f.wait_until("each node to publish its addresses", |f| {
        f.published(0) == [E, Z1].into() && f.published(1) == [E, Z2].into() && f.published(2) == [E, Z1].into()
    });
    f.wait_until("the router to learn them over BGP", |f| f.next_hops(E) == hops(&[1, 2, 3]) && f.next_hops(Z1) == hops(&[1, 3]) && f.next_hops(Z2) == hops(&[2]));
    eprintln!("announced and learned {:?} after the apply", t.elapsed());
    let spread = gets(&f, E, 30);
    let on: BTreeSet<usize> = spread.iter().map(|(_, n)| *n).collect();
    assert!(on.len() >= 2, "30 connections used one node only: {spread:?}");
    assert!(gets(&f, Z2, 5).iter().all(|(_, n)| *n == 1), "the z2 address is served by the z2 node (gw2) only");

    // A daemon stopped (SIGTERM) stays announced while its data path carries on; back
    // within the restart grace, nothing moved.
    f.stop(2);
    std::thread::sleep(RESTART_GRACE / 2);
    assert_eq!(f.published(2), [E, Z1].into(), "a stopped daemon's routes stay for the restart grace");
    assert_eq!(f.next_hops(E), hops(&[1, 2, 3]));
    f.start(2);
    std::thread::sleep(RESTART_GRACE);
    assert_eq!(f.published(2), [E, Z1].into(), "the restarted daemon took its routes over");
    assert_eq!(f.next_hops(E), hops(&[1, 2, 3]));
    // Not back within the grace: its keeper withdraws them, and they come back with it.
    // (Counted from before the stop: its last beat.)
    let t = Instant::now();
    f.stop(2);
    f.wait_until("gw3's keeper to withdraw once the grace is over", |f| f.published(2).is_empty() && f.next_hops(E) == hops(&[1, 2]) && f.next_hops(Z1) == hops(&[1]));
    let took = t.elapsed();
    eprintln!("gw3 withdrawn {took:?} after its daemon stopped (grace {RESTART_GRACE:?})");
    assert!(took >= RESTART_GRACE - Duration::from_millis(1000), "withdrawn before the grace was over: {took:?}");
    f.start(2);
    f.wait_until("gw3's routes to come back with its daemon", |f| f.published(2) == [E, Z1].into() && f.next_hops(E) == hops(&[1, 2, 3]));

    // A wedged daemon (stopped by SIGSTOP: it beats no more) is withdrawn after the
    // grace, and announces again once it runs.
    f.freeze(2, true);
    f.wait_until("a wedged gw3 to be withdrawn", |f| f.published(2).is_empty() && f.next_hops(E) == hops(&[1, 2]));
    f.freeze(2, false);
    f.wait_until("gw3 to announce again once it runs", |f| f.published(2) == [E, Z1].into() && f.next_hops(E) == hops(&[1, 2, 3]));

    // Stopped, then its data path detached by hand: its keeper withdraws at once, not
    // after the grace; the next daemon attaches again and announces.
    f.stop(2);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(f.published(2), [E, Z1].into(), "still held while the data path runs");
    for link in std::fs::read_dir(f.nodes[2].bpffs.join("links")).expect("gw3's link pins").flatten() {
        detach_by_hand(&link.path());
    }
    let t = Instant::now();
    f.wait_until("gw3's keeper to withdraw a detached data path", |f| f.published(2).is_empty() && f.next_hops(E) == hops(&[1, 2]));
    assert!(t.elapsed() < RESTART_GRACE / 2, "withdrawn {:?} after the detach: the keeper waited for the grace", t.elapsed());
    f.start(2);
    f.wait_until("gw3 to attach and announce again", |f| f.published(2) == [E, Z1].into() && f.next_hops(E) == hops(&[1, 2, 3]));

    // Cut off from etcd: its lease is in doubt within its TTL, so its routes go.
    f.nodes[2].ns.ip(&["link", "set", "m0", "down"]);
    let t = Instant::now();
    f.wait_until("gw3 to withdraw while cut off from etcd", |f| f.published(2).is_empty() && f.next_hops(E) == hops(&[1, 2]));
    eprintln!("gw3 withdrew {:?} after losing etcd", t.elapsed());
    f.nodes[2].ns.ip(&["link", "set", "m0", "up"]);
    f.wait_until("gw3 to publish again with its lease", |f| f.published(2) == [E, Z1].into() && f.next_hops(E) == hops(&[1, 2, 3]));

    // Live sessions on every node, then gw1 dies (daemon and BIRD killed).
    let mut sessions: Vec<(Session, String)> = Vec::new();
    let mut per_node = BTreeMap::<usize, usize>::new();
    while per_node.len() < 3 {
        assert!(sessions.len() < 60, "60 sessions did not reach all three nodes: {per_node:?}");
        let (s, first) = f.in_client(|| {
            let mut s = Session::open(SocketAddr::from((E, ENDPOINT_TCP_PORT))).expect("open a session");
            let first = s.ask().expect("first exchange");
            (s, first)
        });
        *per_node.entry(node_of(reported_peer(&first))).or_default() += 1;
        sessions.push((s, first));
    }
    f.kill(0);
    let t = Instant::now();
    f.wait_until("the router to withdraw the dead node", |f| f.next_hops(E) == hops(&[2, 3]) && f.next_hops(Z1) == hops(&[3]));
    eprintln!("gw1 withdrawn {:?} after its death; sessions per node {per_node:?}", t.elapsed());

    let (mut kept, mut reset) = (0, 0);
    for (s, first) in &mut sessions {
        let node = node_of(reported_peer(first));
        match s.ask() {
            Ok(answer) => {
                assert_ne!(node, 0, "a session of the dead node went on: {answer}");
                assert_eq!(&answer, first, "a surviving node's session changed backend or source");
                kept += 1;
            }
            Err(e) => {
                assert_eq!(node, 0, "a session on surviving gw{} failed: {e}", node + 1);
                assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "the dead node's session ends with a reset at its next segment: {e}");
                reset += 1;
            }
        }
    }
    eprintln!("{kept} sessions on survivors untouched, {reset} of the dead node reset");
    assert_eq!(reset, per_node[&0]);
    // New connections go to the survivors.
    let after = gets(&f, E, 20);
    assert!(after.iter().all(|(_, n)| *n != 0), "{after:?}");

    // gw2's whole namespace dies (its links vanish with it): gw3's sessions go on.
    let mut sessions: Vec<(Session, String, usize)> = Vec::new();
    while !(sessions.iter().any(|s| s.2 == 1) && sessions.iter().any(|s| s.2 == 2)) {
        assert!(sessions.len() < 60, "60 sessions did not reach gw2 and gw3");
        let (s, first) = f.in_client(|| {
            let mut s = Session::open(SocketAddr::from((E, ENDPOINT_TCP_PORT))).expect("open a session");
            let first = s.ask().expect("first exchange");
            (s, first)
        });
        let node = node_of(reported_peer(&first));
        sessions.push((s, first, node));
    }
    f.destroy(1);
    f.wait_until("the router to withdraw the vanished node", |f| f.next_hops(E) == hops(&[3]) && f.next_hops(Z2).is_empty());
    for (s, first, node) in &mut sessions {
        match (s.ask(), *node) {
            (Ok(answer), 2) => assert_eq!(&answer, first),
            (Err(e), 1) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
            (r, n) => panic!("a session on gw{}: {r:?}", n + 1),
        }
    }
    assert!(gets(&f, E, 10).iter().all(|(_, n)| *n == 2));
}

/// A UDP flow from the client: one socket, so one 5-tuple, asking the endpoint.
struct UdpFlow(std::net::UdpSocket);

impl UdpFlow {
    fn open(f: &Fleet) -> UdpFlow {
        f.in_client(|| {
            let s = std::net::UdpSocket::bind("10.0.0.2:0").expect("bind");
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            s.connect(SocketAddr::from((E, ENDPOINT_UDP_PORT))).expect("connect");
            UdpFlow(s)
        })
    }

    /// The backend's `backend=NAME peer=SNAT:PORT` for one datagram.
    fn ask(&self) -> std::io::Result<String> {
        self.0.send(b"?")?;
        let mut buf = [0u8; 512];
        let n = self.0.recv(&mut buf)?;
        let text = String::from_utf8_lossy(&buf[..n]).to_string();
        Ok(text.split(" got=").next().unwrap_or_default().to_string())
    }
}

#[test]
fn restarting_every_daemon_in_turn_resets_no_session_and_moves_no_flow_bird() {
    restarting_every_daemon_in_turn_resets_no_session_and_moves_no_flow(Routing::Bird);
}

#[test]
fn restarting_every_daemon_in_turn_resets_no_session_and_moves_no_flow_frr() {
    restarting_every_daemon_in_turn_resets_no_session_and_moves_no_flow(Routing::Frr);
}

fn restarting_every_daemon_in_turn_resets_no_session_and_moves_no_flow(routing: Routing) {
    let mut f = Fleet::with_routing(3, routing);
    let r = f.apply(0, &spec(&["health_check: { type: none }"]));
    assert_eq!(r.code, 0, "{r:#?}");
    f.wait_until("the router to learn the endpoint from all three", |f| f.next_hops(E) == hops(&[1, 2, 3]));
    // 30 long TCP sessions and 12 UDP flows over the three nodes.
    let mut sessions: Vec<(Session, String)> = (0..30)
        .map(|_| {
            f.in_client(|| {
                let mut s = Session::open(SocketAddr::from((E, ENDPOINT_TCP_PORT))).expect("open a session");
                let first = s.ask().expect("first exchange");
                (s, first)
            })
        })
        .collect();
    let flows: Vec<(UdpFlow, String)> = (0..12)
        .map(|_| {
            let u = UdpFlow::open(&f);
            let first = u.ask().unwrap_or_else(|e| panic!("first datagram: {e}\n{}", f.logs()));
            (u, first)
        })
        .collect();
    let per_node = |answers: Vec<&String>| answers.into_iter().fold(BTreeMap::<usize, usize>::new(), |mut m, a| {
        *m.entry(node_of(reported_peer(a))).or_default() += 1;
        m
    });
    let spread = per_node(sessions.iter().map(|s| &s.1).collect());
    eprintln!("sessions per node {spread:?}; UDP flows per node {:?}", per_node(flows.iter().map(|u| &u.1).collect()));
    assert_eq!(spread.len(), 3, "30 sessions did not reach all three nodes: {spread:?}");

    // gw2's daemon crashes instead (SIGKILL): nobody is told, its lease runs out and it
    // expires, but its keeper holds its routes and its data path its flows.
    for i in 0..3 {
        let t = Instant::now();
        let (crash, other) = (i == 1, (i + 1) % 3);
        if crash {
            f.crash(i);
        } else {
            f.stop(i);
        }
        // Its lease runs out (3 s) before it is back: the others say it restarts (or,
        // crashed, that it is down).
        let shown = if crash { "down" } else { "restarting" };
        f.wait_until("the others to show it restarting or down", |f| f.json(other, &["get", "nodes", &f.nodes[i].name])[0]["state"] == shown);
        assert_eq!(f.metric(other, "privatelink_fleet_nodes_restarting"), Some(if crash { 0.0 } else { 1.0 }));
        assert_eq!(f.metric(other, "privatelink_fleet_nodes_up"), Some(if crash { 2.0 } else { 3.0 }), "a restarting node counts as up");
        f.start(i);
        eprintln!("gw{} restarted in {:?}", i + 1, t.elapsed());
        let (mut kept, mut failed) = (0, Vec::new());
        for (n, (s, first)) in sessions.iter_mut().enumerate() {
            match s.ask() {
                Ok(a) if &a == first => kept += 1,
                other => failed.push(format!("session {n} (on gw{}): {other:?}", node_of(reported_peer(first)) + 1)),
            }
        }
        for (n, (u, first)) in flows.iter().enumerate() {
            match u.ask() {
                Ok(a) if &a == first => kept += 1,
                other => failed.push(format!("UDP flow {n} (on gw{}): {other:?}", node_of(reported_peer(first)) + 1)),
            }
        }
        assert!(failed.is_empty(), "after gw{}'s restart {kept} of 42 went on; {failed:#?}\n{}", i + 1, f.logs());
        assert_eq!(f.next_hops(E), hops(&[1, 2, 3]), "a restart moved routes");
    }
    // Still announced by all three once every restarted daemon holds its lease again.
    std::thread::sleep(RESTART_GRACE);
    assert_eq!(f.next_hops(E), hops(&[1, 2, 3]));
    // Only the crashed node expired: the fleet heard the two others were restarting.
    let events = f.json(0, &["events"]);
    let count = |kind: &str| events.as_array().unwrap().iter().filter(|e| e["kind"] == kind).count();
    assert_eq!((count("node.restarting"), count("node.expired")), (2, 1), "{events:#}");
    assert!(f.json(0, &["get", "nodes"]).as_array().unwrap().iter().all(|n| n["state"] == "up"));
    for (s, first) in &mut sessions {
        assert_eq!(&s.ask().expect("a session after every restart"), first);
    }
}

#[test]
fn zone_affinity_prefers_the_nodes_zone_and_falls_back_when_its_backends_are_down_bird() {
    zone_affinity_prefers_the_nodes_zone_and_falls_back_when_its_backends_are_down(Routing::Bird);
}

#[test]
fn zone_affinity_prefers_the_nodes_zone_and_falls_back_when_its_backends_are_down_frr() {
    zone_affinity_prefers_the_nodes_zone_and_falls_back_when_its_backends_are_down(Routing::Frr);
}

fn zone_affinity_prefers_the_nodes_zone_and_falls_back_when_its_backends_are_down(routing: Routing) {
    let f = Fleet::with_routing(3, routing);
    let check = "health_check: { interval: 500ms, timeout: 300ms, healthy_threshold: 1, unhealthy_threshold: 1 }";
    let r = f.apply(0, &spec(&["zone_affinity: true", check]));
    assert_eq!(r.code, 0, "{r:#?}");
    f.wait_until("the router to learn the endpoint from all three", |f| f.next_hops(E) == hops(&[1, 2, 3]));
    // gw1 and gw3 are in z1 (backend-0, 192.168.2.10), gw2 in z2 (backend-1).
    let zone_backend = |node: usize| if node == 1 { "backend-1" } else { "backend-0" };
    let seen = gets(&f, E, 30);
    for (backend, node) in &seen {
        assert_eq!(backend, zone_backend(*node), "gw{} chose another zone's backend: {seen:?}", node + 1);
    }
    // z2's only backend down: gw2 falls back to the healthy one of z1.
    f.paused[1].store(true, std::sync::atomic::Ordering::Relaxed);
    // (Until the checks see it down, gw2's new connections are refused by it.)
    f.wait_until("gw2 to fall back to z1's backend", |f| {
        try_gets(f, E, 12).is_ok_and(|g| g.iter().any(|(_, n)| *n == 1) && g.iter().all(|(b, _)| b == "backend-0"))
    });
    // Back up: each zone its own again.
    f.paused[1].store(false, std::sync::atomic::Ordering::Relaxed);
    f.wait_until("gw2 to prefer its zone again", |f| try_gets(f, E, 12).is_ok_and(|g| g.iter().any(|(_, n)| *n == 1) && g.iter().all(|(b, n)| b == zone_backend(*n))));
}

/// The BIRD recipe docs/operator.md shows is the file every `_bird` run uses
/// (`lab::bird::node` renders it per node), line for line.
#[test]
fn the_guides_bird_recipe_is_the_file_the_fleet_runs() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let guide = std::fs::read_to_string(root.join("docs/operator.md")).unwrap();
    // The consumer side's and the provider side's (the failover tests run both).
    for (file, least) in [("examples/bird/gateway-node.conf", 15), ("examples/bird/gateway-node-provider.conf", 12)] {
        let conf = std::fs::read_to_string(root.join(file)).unwrap();
        assert!(guide.contains(file), "docs/operator.md does not name {file}");
        let mut checked = 0;
        for line in conf.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with("log ")) {
            assert!(guide.contains(line), "docs/operator.md's BIRD recipe lacks `{line}` of {file}");
            checked += 1;
        }
        assert!(checked >= least, "only {checked} lines of {file} read");
    }
}
