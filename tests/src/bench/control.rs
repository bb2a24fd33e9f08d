//! The control-plane half of part 2: `apply` of a spec with 10,000 endpoints and a
//! no-op re-apply, through the real daemon and CLI; the daemon's RSS and the BPF map
//! memory at 1 and at 10,000 endpoints; and the daemon with 10,000 endpoints and
//! 1,000,000 live flows: API latency while the sweeper passes, a scrape, its RSS.

use super::{Effort, Row};
use crate::daemon_lab::DaemonLab;
use aya::maps::{HashMap, Map, MapData};
use privatelink::{daemon::api::Request, dataplane::bpffs};
use privatelink_common::*;
use std::{
    io::{BufRead, BufReader, Write},
    net::Ipv4Addr,
    os::unix::net::UnixStream,
    time::{Duration, Instant},
};

const PART: &str = "2. scale";

/// A spec: one consumer VPC (10.0.0.0/16 on gw-c0), the provider VPC, one service, and
/// `n` endpoints of `n / 50` accounts at most... quotas raised to fit.
fn spec(n: usize) -> String {
    spec_with(n, 65_536)
}

fn spec_with(n: usize, ct_capacity: u32) -> String {
    let mut s = String::from(
        "gateway:\n  conntrack_capacity: 65536\n  quotas: { endpoints_per_account: 16384 }\nvpcs:\n  - { name: vpc0, interface: gw-c0, cidr: 10.0.0.0/16 }\n  - { name: prov, interface: gw-prov, cidr: 192.168.2.0/24 }\nservices:\n  - name: web\n    owner: \"100002\"\n    vpc: prov\n    backends: [{ address: 192.168.2.10 }, { address: 192.168.2.11 }]\n    ports: [{ protocol: tcp, endpoint_port: 80, service_port: 8080 }]\n    allowed_accounts: [\"*\"]\n    auto_accept: true\n    health_check: { type: none }\nendpoints:\n",
    )
    .replace("conntrack_capacity: 65536", &format!("conntrack_capacity: {ct_capacity}"));
    for i in 0..n {
        let ip = std::net::Ipv4Addr::from(0x0a00_0100u32 + i as u32);
        s.push_str(&format!("  - {{ name: ep{i}, owner: \"100001\", vpc: vpc0, service: web, ip: {ip} }}\n"));
    }
    s
}

/// Kernel memory of the BPF maps the daemon holds (`memlock` of each map, once however
/// many of its fds refer to it).
fn map_memory(pid: u32) -> u64 {
    let mut maps = std::collections::BTreeMap::new();
    let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else { return 0 };
    for e in rd.flatten() {
        let Ok(info) = std::fs::read_to_string(e.path()) else { continue };
        let field = |k: &str| info.lines().find_map(|l| l.strip_prefix(k)).and_then(|v| v.trim().parse::<u64>().ok());
        if let (Some(id), Some(memlock)) = (field("map_id:"), field("memlock:")) {
            maps.insert(id, memlock);
        }
    }
    maps.values().sum()
}

/// Resident memory of the daemon, without its read-only views of BPF maps (the maps'
/// own kernel memory, counted by `map_memory`, resident whole as soon as mapped).
fn rss_kib(pid: u32) -> u64 {
    let Ok(smaps) = std::fs::read_to_string(format!("/proc/{pid}/smaps")) else { return 0 };
    let (mut total, mut bpf_view) = (0, false);
    for line in smaps.lines() {
        if let Some(kib) = line.strip_prefix("Rss:") {
            if !bpf_view {
                total += kib.trim().trim_end_matches("kB").trim().parse::<u64>().unwrap_or(0);
            }
        } else if line.split_whitespace().next().is_some_and(|f| f.contains('-') && f.chars().all(|c| c.is_ascii_hexdigit() || c == '-')) {
            // A mapping's header: "start-end perms offset dev inode [name]".
            bpf_view = line.ends_with("anon_inode:bpf-map");
        }
    }
    total
}

pub fn run(e: Effort) -> Vec<Row> {
    let n = if e.quick { 1_000 } else { 10_000 };
    let trials = e.trials.min(5);
    let (mut full, mut noop) = (Vec::new(), Vec::new());
    let mut mem = None;
    for _ in 0..trials {
        let lab = DaemonLab::new(1);
        let small = lab.apply(&spec(1), &[]);
        assert_eq!(small.code, 0, "{small:?}");
        let pid = lab.daemon_pid();
        let (rss1, maps1) = (rss_kib(pid), map_memory(pid));
        let text = spec(n);
        let t = Instant::now();
        let r = lab.apply(&text, &[]);
        full.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(r.code, 0, "{r:?}");
        let t = Instant::now();
        let r = lab.apply(&text, &[]);
        noop.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(r.stdout.trim(), "no changes (0 map writes)", "{r:?}");
        mem = Some((rss1, maps1, rss_kib(pid), map_memory(pid)));
    }
    let mut rows = vec![
        Row::new(PART, format!("apply {n} endpoints (CLI round trip, wall clock)"), &full, "ms"),
        Row::new(PART, format!("no-op re-apply of {n} endpoints"), &noop, "ms"),
    ];
    if let Some((rss1, maps1, rssn, mapsn)) = mem {
        let mib = |k: u64| k as f64 / 1024.0;
        rows.push(Row::new(PART, "daemon RSS, 1 endpoint", &[mib(rss1)], "MiB"));
        rows.push(Row::new(PART, format!("daemon RSS, {n} endpoints"), &[mib(rssn)], "MiB"));
        rows.push(Row::new(PART, "BPF map memory, 1 endpoint (conntrack 65,536)", &[mib(maps1 / 1024)], "MiB"));
        rows.push(Row::new(PART, format!("BPF map memory, {n} endpoints"), &[mib(mapsn / 1024)], "MiB").note("maps are preallocated: size follows capacity, not use"));
    }
    rows
}

/// Live flows written straight into the daemon's pinned conntrack map, both entries
/// each, as the data path would have made them (ESTABLISHED, seen now: none expires).
fn fill_flows(lab: &DaemonLab, n: u32) {
    let path = bpffs::maps_dir(&lab.bpffs).join(MAP_CT);
    let md = MapData::from_pin(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut ct: HashMap<MapData, CtKey, CtValue> = HashMap::try_from(Map::HashMap(md)).expect("the conntrack map");
    let now = privatelink::dataplane::monotonic_ns();
    for i in 0..n {
        let src = u32::from(Ipv4Addr::new(10, 0, 0, 0)) + 2 + i % 250;
        let key = CtKey { src_ip_be: u32::from(Ipv4Addr::from(src)).to_be(), dst_ip_be: u32::from(Ipv4Addr::new(10, 0, 1, 0)).to_be(), src_port_be: (1024 + (i / 250) as u16).to_be(), dst_port_be: 80u16.to_be(), vpc_id: 1, proto: PROTO_TCP, _pad: 0 };
        let fwd = CtValue {
            kind: CT_KIND_FORWARD,
            state: TCP_STATE_ESTABLISHED,
            last_seen_ns: now + 3_600_000_000_000,
            nat_src_ip_be: u32::from(Ipv4Addr::new(11, 163, 128, (i / 60_000) as u8)).to_be(),
            nat_src_port_be: (1024 + (i % 60_000) as u16).to_be(),
            nat_dst_ip_be: u32::from(Ipv4Addr::new(192, 168, 2, 10)).to_be(),
            nat_dst_port_be: 8080u16.to_be(),
            egress_vpc: 2,
            ..Default::default()
        };
        let rev = CtValue { kind: CT_KIND_REVERSE, last_seen_ns: fwd.last_seen_ns, nat_src_ip_be: key.dst_ip_be, nat_dst_ip_be: key.src_ip_be, nat_src_port_be: key.dst_port_be, nat_dst_port_be: key.src_port_be, egress_vpc: 1, ..Default::default() };
        ct.insert(fwd.peer_key(PROTO_TCP), rev, 0).expect("insert a reverse entry");
        ct.insert(key, fwd, 0).expect("insert a forward entry");
    }
}

/// One `status` request on the daemon's socket, as the CLI sends it; its wall time.
fn api_round_trip(socket: &std::path::Path) -> Duration {
    round_trip(socket, &Request::Status)
}

/// One request on the daemon's socket, as the CLI sends it, its whole answer read;
/// its wall time.
fn round_trip(socket: &std::path::Path, req: &Request) -> Duration {
    let t = Instant::now();
    let mut s = UnixStream::connect(socket).expect("the daemon's socket");
    let mut line = serde_json::to_vec(req).unwrap();
    line.push(b'\n');
    s.write_all(&line).unwrap();
    let mut answer = String::new();
    BufReader::new(&s).read_line(&mut answer).unwrap();
    assert!(answer.starts_with("{\"ok\""), "{}", &answer[..answer.len().min(300)]);
    t.elapsed()
}

/// The daemon with `n` endpoints and `flows` live flows: API round trips over several
/// sweeper passes (p50 and p99 of every request), a scrape, the sweeper's pass as the
/// daemon reports it, and the daemon's RSS.
/// The value of the unlabelled sample `name` in a scrape (0 when absent).
fn metric(scrape: &str, name: &str) -> f64 {
    scrape.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')).and_then(|v| v.trim().parse::<f64>().ok()).unwrap_or(0.0)
}

pub fn under_load(e: Effort) -> Vec<Row> {
    const METRICS: u16 = 9479;
    let (n, flows) = if e.quick { (1_000, 100_000u32) } else { (10_000, 1_000_000u32) };
    let lab = DaemonLab::with_daemon_args(1, &["--metrics", &format!("127.0.0.1:{METRICS}")]);
    let r = lab.apply(&spec_with(n, 2 * flows + 65_536), &[]);
    assert_eq!(r.code, 0, "{r:?}");
    fill_flows(&lab, flows);
    let start = Instant::now();
    while metric(&lab.scrape(METRICS), "privatelink_conntrack_entries") < 2.0 * flows as f64 {
        assert!(start.elapsed() < Duration::from_secs(120), "the sweeper never counted the filled table");
        std::thread::sleep(Duration::from_millis(200));
    }
    let runs = "privatelink_sweeper_runs_total";
    let runs_before = metric(&lab.scrape(METRICS), runs);
    // Requests every 10 ms over 32 s: at 1M flows a pass takes about a second and the
    // sweeper then rests twelve times as long, so the window holds two passes or more.
    let mut rtt: Vec<f64> = Vec::new();
    let until = Instant::now() + Duration::from_secs(if e.quick { 4 } else { 32 });
    while Instant::now() < until {
        rtt.push(api_round_trip(&lab.socket).as_secs_f64() * 1e3);
        std::thread::sleep(Duration::from_millis(10));
    }
    rtt.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| rtt[((rtt.len() - 1) as f64 * p) as usize];
    let mut scrapes = Vec::new();
    let mut last = String::new();
    for _ in 0..e.trials.min(10) {
        let t = Instant::now();
        last = lab.scrape(METRICS);
        scrapes.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let passes = metric(&last, runs) - runs_before;
    let pass_s = metric(&last, "privatelink_sweeper_last_pass_seconds");
    // The drift repair's last reconcile (all maps read back and compared), under the
    // daemon's lock: what a request may wait for.
    let reconcile_s = metric(&last, "privatelink_last_reconcile_duration_seconds");
    let rss = rss_kib(lab.daemon_pid()) as f64 / 1024.0;
    let reads = reads_during_writes(&lab, e, n, 2 * flows + 65_536);
    let mut rows = vec![
        Row::new(PART, format!("API round trip (status) p99, {n} endpoints and {flows} live flows, while the sweeper passes"), &[pct(0.99)], "ms")
            .note(format!("p50 {:.2} ms, max {:.1} ms; {} requests during {passes:.0} sweeper passes of {:.0} ms each; the drift repair's reconcile takes {:.0} ms", pct(0.5), rtt[rtt.len() - 1], rtt.len(), pass_s * 1e3, reconcile_s * 1e3)),
        Row::new(PART, format!("scrape of /metrics, {n} endpoints and {flows} live flows"), &scrapes, "ms"),
        Row::new(PART, format!("daemon RSS, {n} endpoints and {flows} live flows"), &[rss], "MiB"),
    ];
    rows.extend(reads);
    rows
}

/// p50, p99 and max of `v` (sorted here), in its unit.
fn percentiles(v: &mut [f64]) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    let at = |p: f64| v[((v.len() - 1) as f64 * p) as usize];
    (at(0.5), at(0.99), v[v.len() - 1])
}

/// Reads while the daemon writes: `get endpoints` (all, and one) and `stats`, round
/// trips on the socket, first with nothing else going on, then while a second client
/// applies a change to every endpoint again and again (their bandwidth limits on, then
/// off: 10,000 endpoints rewritten each time) and the sweeper passes over the flows
/// already in the table. Readers answer from the daemon's published picture: the
/// second set of numbers should look like the first.
fn reads_during_writes(lab: &DaemonLab, e: Effort, n: usize, ct: u32) -> Vec<Row> {
    use privatelink::daemon::api::Kind;
    let plain = lab.dir.join("reads-plain.yaml");
    let limited = lab.dir.join("reads-limited.yaml");
    let text = spec_with(n, ct);
    std::fs::write(&plain, &text).unwrap();
    std::fs::write(&limited, text.replace(", ip: ", ", bandwidth: 100Mbps, ip: ")).unwrap();
    let one = format!("ep{}", n / 2);
    let reads: [(&str, Request); 3] = [
        ("get endpoints (all)", Request::Get { kind: Kind::Endpoints, name: None }),
        ("get endpoints NAME", Request::Get { kind: Kind::Endpoints, name: Some(one) }),
        ("stats", Request::Stats),
    ];
    let window = Duration::from_secs(if e.quick { 6 } else { 40 });
    let measure = |until: Instant| {
        let mut times: Vec<Vec<f64>> = vec![Vec::new(); reads.len()];
        while Instant::now() < until {
            for (i, (_, req)) in reads.iter().enumerate() {
                times[i].push(round_trip(&lab.socket, req).as_secs_f64() * 1e3);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        times
    };
    let idle = measure(Instant::now() + window / 4);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (busy, applies) = std::thread::scope(|s| {
        let writer = s.spawn(|| {
            let mut applies = Vec::new();
            for k in 0.. {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let f = if k % 2 == 0 { &limited } else { &plain };
                let t = Instant::now();
                let r = crate::daemon_lab::cli_at(&lab.socket, &["apply", "-f", f.to_str().unwrap()]);
                assert_eq!(r.code, 0, "{r:?}");
                applies.push(t.elapsed().as_secs_f64() * 1e3);
            }
            applies
        });
        let busy = measure(Instant::now() + window);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        (busy, writer.join().expect("the writing client"))
    });
    let mut rows = Vec::new();
    for (i, (name, _)) in reads.iter().enumerate() {
        let (mut quiet, mut loaded) = (idle[i].clone(), busy[i].clone());
        let (q50, q99, _) = percentiles(&mut quiet);
        let (b50, b99, bmax) = percentiles(&mut loaded);
        rows.push(
            Row::new(PART, format!("{name} p99, {n} endpoints, during applies of {n} endpoints and sweeper passes"), &[b99], "ms")
                .note(format!("p50 {b50:.2} ms, max {bmax:.1} ms, {} requests during {} applies (median {:.0} ms each); with no writer: p50 {q50:.2} ms, p99 {q99:.2} ms", loaded.len(), applies.len(), super::summary(&applies).0)),
        );
    }
    rows
}
