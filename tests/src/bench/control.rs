//! The control-plane half of part 2: `apply` of a spec with 10,000 endpoints and a
//! no-op re-apply, through the real daemon and CLI; the daemon's RSS and the BPF map
//! memory at 1 and at 10,000 endpoints.

use super::{Effort, Row};
use crate::daemon_lab::DaemonLab;
use std::time::Instant;

const PART: &str = "2. scale";

/// A spec: one consumer VPC (10.0.0.0/16 on gw-c0), the provider VPC, one service, and
/// `n` endpoints of `n / 50` accounts at most... quotas raised to fit.
fn spec(n: usize) -> String {
    let mut s = String::from(
        "gateway:\n  conntrack_capacity: 65536\n  quotas: { endpoints_per_account: 16384 }\nvpcs:\n  - { name: vpc0, interface: gw-c0, cidr: 10.0.0.0/16 }\n  - { name: prov, interface: gw-prov, cidr: 192.168.2.0/24 }\nservices:\n  - name: web\n    owner: \"100002\"\n    vpc: prov\n    backends: [{ address: 192.168.2.10 }, { address: 192.168.2.11 }]\n    ports: [{ protocol: tcp, endpoint_port: 80, service_port: 8080 }]\n    allowed_accounts: [\"*\"]\n    auto_accept: true\n    health_check: { type: none }\nendpoints:\n",
    );
    for i in 0..n {
        let ip = std::net::Ipv4Addr::from(0x0a00_0100u32 + i as u32);
        s.push_str(&format!("  - {{ name: ep{i}, owner: \"100001\", vpc: vpc0, service: web, ip: {ip} }}\n"));
    }
    s
}

/// Kernel memory of the BPF maps the daemon holds (`memlock` of each map fd).
fn map_memory(pid: u32) -> u64 {
    let mut total = 0;
    let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else { return 0 };
    for e in rd.flatten() {
        let Ok(info) = std::fs::read_to_string(e.path()) else { continue };
        if !info.contains("map_type:") {
            continue;
        }
        total += info.lines().find_map(|l| l.strip_prefix("memlock:")).and_then(|v| v.trim().parse::<u64>().ok()).unwrap_or(0);
    }
    total
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next()?.parse().ok()))
        .unwrap_or(0)
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
