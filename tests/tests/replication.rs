//! Flow replication (issue #33): each node of a fleet streams its flows to its buddy
//! over the management network, and the buddy holds them in its standby table. What an
//! operator checks: `conntrack list --standby` on the buddy lists exactly the flows
//! `conntrack list` shows on each node it is buddy of (client, endpoint, SNAT address
//! and port, backend, state), with the node each belongs to; a flow that closes is
//! copied closing and, once removed, is gone from the copy; a daemon restarted on
//! either side leaves the copies right. And what a hostile peer on the management
//! network can do: nothing (refused and counted, no copy touched).

use privatelink::{daemon::replication::wire::Frame, model::spec::Cidr};
use privatelink_common::*;
use privatelink_tests::{
    fleet_lab::{Fleet, REPLICATION_PORT, SLICES},
    lab::{reported_peer, Session, ENDPOINT_TCP_PORT, ENDPOINT_UDP_PORT},
};
use serde_json::Value;
use std::{
    collections::{BTreeMap, BTreeSet},
    io::{Read, Write},
    net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket},
    time::Duration,
};

const E: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 100);

fn spec() -> String {
    format!(
        "gateway:\n  region: lab\n  conntrack_capacity: 65536\n  snat_slices: {SLICES}\n  timeouts: {{ tcp_closing: 8s }}\nvpcs:\n  - {{ name: vpc0, interface: gw-c0, cidr: 10.0.0.0/24 }}\n  - {{ name: prov, interface: gw-prov, cidr: 192.168.2.0/24 }}\nservices:\n  - name: web\n    owner: \"100\"\n    vpc: prov\n    health_check: {{ type: none }}\n    backends: [{{ address: 192.168.2.10 }}, {{ address: 192.168.2.11 }}]\n    ports: [{{ protocol: tcp, endpoint_port: 80, service_port: 8080 }}, {{ protocol: udp, endpoint_port: 53, service_port: 5353 }}]\nendpoints:\n  - {{ name: e1, owner: \"100\", vpc: vpc0, service: web, ip: {E} }}\n"
    )
}

/// A flow as `conntrack list -o json` shows it: what must be the same in the copy.
type Flow = (String, String, String, String, String, String);

fn flow(v: &Value) -> Flow {
    let s = |k: &str| v[k].to_string();
    (s("protocol"), s("client"), s("endpoint_address"), s("snat"), s("backend"), v["state"].as_str().unwrap_or_default().to_string())
}

/// Node `i`'s own flows.
fn own(f: &Fleet, i: usize) -> BTreeSet<Flow> {
    f.json(i, &["conntrack", "list"]).as_array().unwrap().iter().map(flow).collect()
}

/// What node `i` holds for others, by the node each flow belongs to.
fn held(f: &Fleet, i: usize) -> BTreeMap<String, BTreeSet<Flow>> {
    let mut out: BTreeMap<String, BTreeSet<Flow>> = BTreeMap::new();
    for v in f.json(i, &["conntrack", "list", "--standby"]).as_array().unwrap() {
        out.entry(v["held_for"].as_str().unwrap_or("?").to_string()).or_default().insert(flow(v));
    }
    out
}

/// Each node's buddy, as `get nodes` says.
fn buddies(f: &Fleet) -> BTreeMap<String, String> {
    f.json(0, &["get", "nodes"]).as_array().unwrap().iter().map(|n| (n["name"].as_str().unwrap().to_string(), n["buddy"].as_str().unwrap().to_string())).collect()
}

/// Whether every node's buddy holds exactly its flows (and nothing else).
fn copies_match(f: &Fleet, b: &BTreeMap<String, String>) -> Result<(), String> {
    let own: BTreeMap<String, BTreeSet<Flow>> = (0..f.nodes.len()).map(|i| (f.nodes[i].name.clone(), own(f, i))).collect();
    for (j, holder) in f.nodes.iter().enumerate() {
        let want: BTreeMap<String, BTreeSet<Flow>> = own.iter().filter(|(n, fl)| b[*n] == holder.name && !fl.is_empty()).map(|(n, fl)| (n.clone(), fl.clone())).collect();
        let got = held(f, j);
        if got != want {
            return Err(format!("{} holds {got:#?}\nbut should hold {want:#?}", holder.name));
        }
    }
    Ok(())
}

/// Wait until `copies_match` (and `also`), saying what differs last if it never does.
fn wait_copies(f: &Fleet, b: &BTreeMap<String, String>, what: &str, also: impl Fn(&Fleet) -> bool) {
    let start = std::time::Instant::now();
    loop {
        let last = match copies_match(f, b) {
            Ok(()) if also(f) => return,
            Ok(()) => "the copies match, the rest does not".to_string(),
            Err(e) => e,
        };
        assert!(start.elapsed() < Duration::from_secs(30), "timed out waiting for {what}: {last}\n{}", f.logs());
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn index(f: &Fleet, name: &str) -> usize {
    f.nodes.iter().position(|n| n.name == name).unwrap()
}

/// 30 TCP sessions, each with the node it went through (by its SNAT address's
/// slice: node i holds slice i), and 12 UDP flows.
fn open_flows(f: &Fleet) -> (Vec<(Session, usize)>, Vec<UdpSocket>) {
    let sessions: Vec<(Session, usize)> = (0..30)
        .map(|_| {
            f.in_client(|| {
                let mut s = Session::open(SocketAddr::from((E, ENDPOINT_TCP_PORT))).expect("open a session");
                let first = s.ask().expect("first exchange");
                let node = match reported_peer(&first) {
                    SocketAddr::V4(a) => a.ip().octets()[2] as usize / (256 / SLICES as usize),
                    other => panic!("{other}"),
                };
                (s, node)
            })
        })
        .collect();
    let udp: Vec<UdpSocket> = (0..12)
        .map(|_| {
            f.in_client(|| {
                let s = UdpSocket::bind("10.0.0.2:0").unwrap();
                s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                s.connect(SocketAddr::from((E, ENDPOINT_UDP_PORT))).unwrap();
                s.send(b"?").unwrap();
                let mut b = [0u8; 256];
                s.recv(&mut b).expect("a UDP answer");
                s
            })
        })
        .collect();
    (sessions, udp)
}

#[test]
fn every_nodes_flows_are_held_by_its_buddy_through_state_changes_and_restarts() {
    let mut f = Fleet::new(3);
    let r = f.apply(0, &spec());
    assert_eq!(r.code, 0, "{r:#?}");
    f.wait_until("every node to register its replication address and its links", |f| {
        f.json(0, &["get", "nodes"]).as_array().unwrap().iter().all(|n| n["replication"].is_string() && n["state"] == "up" && n["interfaces"].as_array().is_some_and(|a| a.len() == 2))
    });
    let b = buddies(&f);
    eprintln!("buddies {b:?}");
    let (mut sessions, _udp) = open_flows(&f);
    let per_node: Vec<usize> = (0..3).map(|i| own(&f, i).len()).collect();
    eprintln!("flows per node {per_node:?}");
    assert_eq!(per_node.iter().sum::<usize>(), 42);
    wait_copies(&f, &b, "every buddy to hold its nodes' flows", |_| true);
    // Other nodes' counts are as they last registered (each second).
    f.wait_until("get nodes' STANDBY column to count them", |f| {
        f.json(0, &["get", "nodes"]).as_array().unwrap().iter().map(|n| n["standby_flows"].as_u64().unwrap()).sum::<u64>() == 42
    });
    let table = f.ok(0, &["get", "nodes"]);
    assert!(table.lines().next().unwrap().contains("STANDBY") && table.contains("LAG P99"), "{table}");
    // The metrics say the same, by node, and lags were measured.
    let gw1_holder = index(&f, &b["gw1"]);
    let held_for_gw1 = f.metric(gw1_holder, "privatelink_standby_flows{node=\"gw1\"}");
    assert_eq!(held_for_gw1, Some(per_node[0] as f64).filter(|n| *n > 0.0), "{}", f.logs());
    assert!(f.metric(0, "privatelink_replication_lag_seconds{quantile=\"0.99\"}").is_some_and(|l| l > 0.0));
    assert_eq!(f.metric(0, "privatelink_replication_connected"), Some(1.0));

    // Ten sessions close: their copies close too, then go with the flows.
    // (Ten not through gw1: its sessions close later.)
    let mut closing = 0;
    sessions.retain(|(_, n)| {
        let close = *n != 0 && closing < 10;
        closing += close as usize;
        !close
    });
    assert_eq!(closing, 10);
    // (Closed flows wait out tcp_closing, 8 s, before they are removed.)
    f.wait_until("the closed sessions' copies to be closing, like the flows", |f| {
        let closing: usize = (0..3).map(|i| own(f, i).iter().filter(|fl| fl.5 == "closing").count()).sum();
        closing == 10 && copies_match(f, &b).is_ok()
    });
    f.wait_until("the closed flows to be removed from the copies", |f| {
        let left: usize = (0..3).map(|i| held(f, i).values().map(|s| s.len()).sum::<usize>()).sum();
        left == 32 && copies_match(f, &b).is_ok()
    });

    // gw1's daemon stops and its sessions close meanwhile (its data path sees them
    // close; nobody reads its events): started again, it sends its buddy a snapshot,
    // which closes the copies too. Then the buddy's daemon restarts (its standby table
    // is a new one): it is filled again.
    f.stop(0);
    let on_gw1 = sessions.iter().filter(|(_, n)| *n == 0).count();
    assert!(on_gw1 > 0, "no session went through gw1");
    sessions.retain(|(_, n)| *n != 0);
    // The FINs pass at once; the flows stay closing until the next daemon's sweeper.
    std::thread::sleep(Duration::from_millis(500));
    f.start(0);
    wait_copies(&f, &b, "gw1's copy to be whole after its restart", |f| f.metric(0, "privatelink_replication_snapshots_total").is_some_and(|n| n >= 1.0));
    let holder = index(&f, &b["gw1"]);
    f.stop(holder);
    f.start(holder);
    wait_copies(&f, &b, "the restarted buddy to hold its nodes' flows again", |_| true);
    for (s, _) in &mut sessions {
        s.ask().expect("a session after the restarts");
    }
    assert_eq!(f.metric(holder, "privatelink_replication_events_refused_total"), Some(0.0));
    assert_eq!(f.metric(holder, "privatelink_replication_peers_refused_total"), Some(0.0));
}

/// Connect to `to` from `from` (an address of the namespace the caller runs in), say
/// `hello`, and return what the peer answered (None: it closed the connection).
fn hello(from: Ipv4Addr, to: SocketAddr, node: &str) -> (Option<Frame>, TcpStream) {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.bind(&SocketAddr::from((from, 0)).into()).unwrap();
    s.connect(&to.into()).unwrap();
    let mut s: TcpStream = s.into();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(&Frame::Hello { node: node.into(), run: 42 }.encode()).unwrap();
    (read_frame(&mut s), s)
}

fn read_frame(s: &mut TcpStream) -> Option<Frame> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).ok()?;
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).ok()?;
    Frame::decode(body[0], &body[1..]).ok()
}

#[test]
fn forged_replication_streams_are_refused_and_touch_no_copy() {
    let f = Fleet::new(3);
    let r = f.apply(0, &spec());
    assert_eq!(r.code, 0, "{r:#?}");
    f.wait_until("every node to register its replication address and its links", |f| {
        f.json(0, &["get", "nodes"]).as_array().unwrap().iter().all(|n| n["replication"].is_string() && n["state"] == "up" && n["interfaces"].as_array().is_some_and(|a| a.len() == 2))
    });
    let b = buddies(&f);
    let (_sessions, _udp) = open_flows(&f);
    wait_copies(&f, &b, "every buddy to hold its nodes' flows", |_| true);
    let holder = index(&f, &b["gw1"]);
    let target = SocketAddr::from((Ipv4Addr::new(10, 255, 0, holder as u8 + 1), REPLICATION_PORT));
    let before: Vec<BTreeMap<String, BTreeSet<Flow>>> = (0..3).map(|i| held(&f, i)).collect();

    // From the management network's other host (etcd's), claiming to be gw1; from
    // gw1's own address claiming to be gw3 (or gw2); a name that is no node's; bytes
    // that are no frame; a frame of 2 GB.
    let liar = if b["gw1"] == "gw3" { "gw2" } else { "gw3" };
    let ctl = f.ctl.spawn(move || hello(Ipv4Addr::new(10, 255, 0, 100), target, "gw1").0).join().unwrap();
    assert_eq!(ctl, None, "a host that is no node was welcomed");
    let lie = f.nodes[0].ns.spawn(move || hello(Ipv4Addr::new(10, 255, 0, 1), target, liar).0).join().unwrap();
    assert_eq!(lie, None, "gw1 was welcomed as {liar}");
    let nobody = f.nodes[0].ns.spawn(move || hello(Ipv4Addr::new(10, 255, 0, 1), target, "gw9").0).join().unwrap();
    assert_eq!(nobody, None);
    for junk in [b"GET / HTTP/1.1\r\n\r\n".to_vec(), 0x8000_0000u32.to_be_bytes().to_vec()] {
        let answered = f.ctl.spawn(move || {
            let mut s = TcpStream::connect_timeout(&target, Duration::from_secs(2)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s.write_all(&junk).unwrap();
            let mut b = [0u8; 1];
            s.read(&mut b).unwrap_or(0)
        });
        assert_eq!(answered.join().unwrap(), 0, "junk got an answer");
    }
    f.wait_until("the five refusals to be counted", |f| f.metric(holder, "privatelink_replication_peers_refused_total") == Some(5.0));

    // gw1 itself (its own address and name) sends events it may not: a flow of
    // another node's slice, entries that do not point at each other, and the removal
    // of another node's flow. Counted, none written; its stream is superseded while
    // the test speaks (its daemon reconnects).
    let other = b.iter().find(|(n, h)| **h == b["gw1"] && n.as_str() != "gw1").map(|(n, _)| n.clone());
    let victim = other.as_ref().and_then(|o| before[holder].get(o)).and_then(|s| s.iter().next().cloned());
    let forged = f.nodes[0].ns.spawn(move || {
        let (welcome, mut s) = hello(Ipv4Addr::new(10, 255, 0, 1), target, "gw1");
        let Some(Frame::Welcome { applied }) = welcome else { panic!("gw1 itself was refused: {welcome:?}") };
        assert_eq!(applied, 0, "a new run starts from nothing");
        let slice2: Cidr = "11.163.64.0/18".parse().unwrap();
        let mut events = vec![event(u32::from(slice2.net) + 5, 40000)];
        let mut crossed = event(u32::from(Ipv4Addr::new(11, 163, 0, 5)), 40001);
        crossed.rev_key.src_port_be = 1;
        events.push(crossed);
        if let Some(v) = victim {
            // Under whichever VPC id the data path gave the consumer VPC.
            events.extend((0..8).map(|vpc| removal_of(&v, vpc)));
        }
        s.write_all(&Frame::Batch { seq: 1, events }.encode()).unwrap();
        read_frame(&mut s)
    });
    assert_eq!(forged.join().unwrap(), Some(Frame::Ack { seq: 1 }));
    assert_eq!(f.metric(holder, "privatelink_replication_events_refused_total"), Some(2.0));
    let after = held(&f, holder);
    for (node, flows) in &before[holder] {
        if node != "gw1" {
            assert_eq!(after.get(node), Some(flows), "{node}'s copies were touched by gw1");
        }
    }
    assert!(!after.values().flatten().any(|fl| fl.1.contains("40000") || fl.1.contains("40001")), "a forged flow was written: {after:#?}");
    // gw1's daemon streams again, and every copy is whole.
    wait_copies(&f, &b, "every copy to be whole again", |_| true);
}

/// A TCP flow from 10.0.0.2:`port` to the endpoint with SNAT address `snat` (host
/// order), consistent in itself.
fn event(snat: u32, port: u16) -> FlowEvent {
    let raw = |ip: Ipv4Addr| u32::from_ne_bytes(ip.octets());
    let key = CtKey { src_ip_be: raw(Ipv4Addr::new(10, 0, 0, 2)), dst_ip_be: raw(E), src_port_be: port.to_be(), dst_port_be: 80u16.to_be(), vpc_id: 1, proto: PROTO_TCP, _pad: 0 };
    let fwd = CtValue {
        kind: CT_KIND_FORWARD,
        state: TCP_STATE_ESTABLISHED,
        nat_src_ip_be: raw(Ipv4Addr::from(snat)),
        nat_dst_ip_be: raw(Ipv4Addr::new(192, 168, 2, 10)),
        nat_src_port_be: port.to_be(),
        nat_dst_port_be: 8080u16.to_be(),
        egress_vpc: 2,
        ..Default::default()
    };
    let rev_key = fwd.peer_key(PROTO_TCP);
    let rev = CtValue { kind: CT_KIND_REVERSE, nat_src_ip_be: key.dst_ip_be, nat_dst_ip_be: key.src_ip_be, nat_src_port_be: key.dst_port_be, nat_dst_port_be: key.src_port_be, egress_vpc: 1, ..Default::default() };
    FlowEvent { at_ns: 1, op: FLOW_UPSERT, _pad: [0; 7], key, fwd, rev_key, rev }
}

/// The removal of the flow `conntrack list` shows as `fl` (its forward key, with
/// consumer VPC id `vpc`).
fn removal_of(fl: &Flow, vpc: u16) -> FlowEvent {
    let hp = |s: &str| -> (Ipv4Addr, u16) {
        let v: Value = serde_json::from_str(s).unwrap();
        (v["address"].as_str().unwrap().parse().unwrap(), v["port"].as_u64().unwrap() as u16)
    };
    let raw = |ip: Ipv4Addr| u32::from_ne_bytes(ip.octets());
    let ((c, cp), (e, ep)) = (hp(&fl.1), hp(&fl.2));
    let proto = if fl.0.contains("tcp") { PROTO_TCP } else { PROTO_UDP };
    let key = CtKey { src_ip_be: raw(c), dst_ip_be: raw(e), src_port_be: cp.to_be(), dst_port_be: ep.to_be(), vpc_id: vpc, proto, _pad: 0 };
    FlowEvent { op: FLOW_REMOVED, key, ..Default::default() }
}
