//! Flow replication and failover (issue #33), end to end in the fleet lab's
//! namespaces: the replication lag (from the data path's event to the buddy's
//! acknowledgement, as the sending node's `privatelink_replication_lag_seconds`
//! reports it over its last batches) at a paced rate of new TCP connections, new
//! connections a second with replication on and off, the management network's bytes
//! per connection, and the time from a node's death to the first answer through its
//! buddy.

use super::{Effort, Row};
use crate::{
    fleet_lab::{Fleet, SLICES, SNAT_ANNOUNCE_TABLE},
    lab::{Session, ENDPOINT_TCP_PORT},
};
use std::{
    net::{Ipv4Addr, SocketAddr, TcpStream},
    time::{Duration, Instant},
};

const PART: &str = "3. end to end (veth, netns)";
const E: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 100);
/// Client threads opening connections.
const THREADS: usize = 4;

fn spec(announce: bool) -> String {
    let fleet = if announce { format!("\n  fleet: {{ announce_table: 100, snat_announce_table: {SNAT_ANNOUNCE_TABLE} }}") } else { String::new() };
    format!(
        "gateway:\n  region: lab\n  conntrack_capacity: 262144\n  snat_slices: {SLICES}\n  timeouts: {{ tcp_closing: 1s }}{fleet}\nvpcs:\n  - {{ name: vpc0, interface: gw-c0, cidr: 10.0.0.0/24 }}\n  - {{ name: prov, interface: gw-prov, cidr: 192.168.2.0/24 }}\nservices:\n  - name: web\n    owner: \"100\"\n    vpc: prov\n    connection_limit: 100000\n    health_check: {{ type: none }}\n    backends: [{{ address: 192.168.2.10 }}, {{ address: 192.168.2.11 }}]\n    ports: [{{ protocol: tcp, endpoint_port: 80, service_port: 8080 }}]\nendpoints:\n  - {{ name: e1, owner: \"100\", vpc: vpc0, service: web, ip: {E} }}\n"
    )
}

/// Open and close connections from the client for `secs`, `rate` a second in all
/// (0: as fast as the threads go): the rate reached.
fn load(f: &Fleet, rate: u64, secs: f64) -> f64 {
    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            f.client.spawn(move || {
                let per = rate as f64 / THREADS as f64;
                let start = Instant::now();
                let mut n = 0u64;
                while start.elapsed().as_secs_f64() < secs {
                    if per > 0.0 {
                        let due = Duration::from_secs_f64(n as f64 / per);
                        if let Some(wait) = due.checked_sub(start.elapsed()) {
                            std::thread::sleep(wait);
                        }
                    }
                    // Closed with a reset (linger 0): no TIME_WAIT holds the client's ports.
                    if let Ok(s) = TcpStream::connect_timeout(&SocketAddr::from((E, ENDPOINT_TCP_PORT)), Duration::from_secs(1)) {
                        let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
                        n += 1;
                    }
                }
                n
            })
        })
        .collect();
    let total: u64 = threads.into_iter().map(|t| t.join().expect("client thread")).sum();
    total as f64 / secs
}

/// Node `i`'s metric, 0 when absent.
fn metric(f: &Fleet, i: usize, name: &str) -> f64 {
    f.metric(i, name).unwrap_or(0.0)
}

/// A fleet of two on etcd with the endpoint (replication as `replicate` says).
fn fleet(replicate: bool) -> Fleet {
    let f = if replicate { Fleet::new(2) } else { Fleet::new_without_replication(2) };
    let r = f.apply(0, &spec(false));
    assert_eq!(r.code, 0, "{r:?}");
    f.wait_until("both nodes to attach", |f| {
        f.json(0, &["get", "nodes"]).as_array().unwrap().iter().all(|n| n["interfaces"].as_array().is_some_and(|a| a.len() == 2) && (!replicate || n["replication"].is_string()))
    });
    f
}

/// The lag quantiles of both nodes' senders (each streams to the other), ms: the
/// larger of the two.
fn lags(f: &Fleet) -> (f64, f64) {
    let q = |quantile: &str| (0..2).map(|i| metric(f, i, &format!("privatelink_replication_lag_seconds{{quantile=\"{quantile}\"}}"))).fold(0.0, f64::max) * 1e3;
    (q("0.5"), q("0.99"))
}

fn events_sent(f: &Fleet) -> f64 {
    (0..2).map(|i| metric(f, i, "privatelink_replication_events_sent_total")).sum()
}

fn bytes_sent(f: &Fleet) -> f64 {
    (0..2).map(|i| metric(f, i, "privatelink_replication_bytes_sent_total")).sum()
}

pub fn run(e: Effort) -> Vec<Row> {
    let secs = if e.quick { 2.0 } else { 5.0 };
    let trials = e.trials.min(3);
    let mut rows = Vec::new();
    for target in [1_000u64, 10_000] {
        let (mut p50, mut p99, mut reached) = (Vec::new(), Vec::new(), Vec::new());
        let mut per_conn = Vec::new();
        for _ in 0..trials {
            let f = fleet(true);
            let (b0, ev0) = (bytes_sent(&f), events_sent(&f));
            let r = load(&f, target, secs);
            // The closed connections' removals too (tcp_closing 1 s, the sweeper each second).
            std::thread::sleep(Duration::from_secs(3));
            let (a, b) = lags(&f);
            p50.push(a);
            p99.push(b);
            reached.push(r);
            let conns = r * secs;
            if conns > 0.0 {
                per_conn.push((bytes_sent(&f) - b0) / conns);
            }
            eprintln!("  {target}/s: reached {r:.0}/s, lag p50 {a:.2} ms p99 {b:.2} ms, {} events", events_sent(&f) - ev0);
        }
        let (rate, low, high) = super::summary(&reached);
        // The label says the rate reached: the lab's client does not always reach
        // the pace asked (its floor is reported, not hidden).
        let at = if low >= target as f64 * 0.95 { format!("{target}") } else { format!("{low:.0}-{high:.0} (paced at {target}: the lab's client reaches no more)") };
        let note = format!("{THREADS} client threads, median {rate:.0}/s; connections opened and reset by the client, each 4 flow events");
        rows.push(Row::new(PART, format!("replication lag p50 at {at} new TCP connections/s (event to the buddy's acknowledgement)"), &p50, "ms").note(note.clone()));
        rows.push(Row::new(PART, format!("replication lag p99 at {at} new TCP connections/s (event to the buddy's acknowledgement)"), &p99, "ms").note(format!("target <= 100 ms at 10,000/s; {note}")));
        if target == 1_000 {
            rows.push(Row::new(PART, "management-network bytes per TCP connection (opened, established, closing, removed)", &per_conn, "B").note("bytes written to the buddy over the connections opened at 1000/s, snapshots excluded (none happened)"));
        }
    }
    // New connections a second through two nodes, replication on and off, in turn.
    let (mut on, mut off) = (Vec::new(), Vec::new());
    for _ in 0..trials {
        let f = fleet(false);
        off.push(load(&f, 0, secs));
        drop(f);
        let f = fleet(true);
        on.push(load(&f, 0, secs));
    }
    let ratio = super::summary(&on).0 / super::summary(&off).0;
    rows.push(Row::new(PART, "new TCP connections/s through a fleet of two, replication off", &off, "conn/s").note(format!("{THREADS} client threads as fast as they go; in turn with the next row. The lab's client is the limit (paced, it reaches 1,000/s and up to 3,557/s; unpaced only this: not understood), so these two rows do not load the gateway: the target (>= 0.9x) is not shown by them")));
    rows.push(Row::new(PART, "new TCP connections/s through a fleet of two, replication on", &on, "conn/s").note(format!("{ratio:.2}x off (target >= 0.9x; see the row above)")));
    // From a node's death (everything in it killed) to the first answer through its
    // buddy, two nodes, BIRD on both sides.
    let mut failover = Vec::new();
    for _ in 0..trials {
        let mut f = Fleet::with_bgp_both_sides(2);
        let r = f.apply(0, &spec(true));
        assert_eq!(r.code, 0, "{r:?}");
        f.wait_until("the router to learn both nodes", |f| f.next_hops(E).len() == 2);
        // A session through gw1 (its SNAT address in slice 0).
        let s = (0..20)
            .find_map(|_| {
                f.in_client(|| {
                    let mut s = Session::open(SocketAddr::from((E, ENDPOINT_TCP_PORT))).expect("open a session");
                    let a = s.ask().expect("first exchange");
                    let through_gw1 = matches!(crate::lab::reported_peer(&a), SocketAddr::V4(p) if (p.ip().octets()[2] as u32) < 256 / SLICES);
                    through_gw1.then_some(s)
                })
            })
            .expect("no session of 20 went through gw1");
        f.wait_until("gw2 to hold gw1's flows", |f| metric(f, 1, "privatelink_standby_flows{node=\"gw1\"}") >= 1.0);
        let t = Instant::now();
        f.kill(0);
        f.in_client(move || {
            let mut s = s;
            loop {
                match s.ask() {
                    Ok(_) => return,
                    Err(e) if t.elapsed() < Duration::from_secs(60) && e.kind() == std::io::ErrorKind::WouldBlock => continue,
                    Err(e) => panic!("the session did not come back: {e}"),
                }
            }
        });
        failover.push(t.elapsed().as_secs_f64() * 1e3);
    }
    rows.push(
        Row::new(PART, "failover: a node killed to the first answer through its buddy (2 nodes, BIRD both sides)", &failover, "ms")
            .note("the lease (3 s) until the buddy takes over, then the client's TCP retransmission (its backoff decides when the answer comes)"),
    );
    rows
}
