//! The fleet's control plane: `apply` of 10,000 endpoints on one node of three sharing
//! a real etcd, timed until every node has taken the new state into its maps, and a
//! no-op re-apply.

use super::{Effort, Row};
use crate::fleet_lab::{Fleet, SLICES};
use std::time::{Duration, Instant};

const PART: &str = "2. scale";

fn spec(n: usize) -> String {
    let mut s = format!(
        "gateway:\n  conntrack_capacity: 65536\n  snat_slices: {SLICES}\n  quotas: {{ endpoints_per_account: 16384 }}\nvpcs:\n  - {{ name: vpc0, interface: gw-c0, cidr: 10.0.0.0/16 }}\n  - {{ name: prov, interface: gw-prov, cidr: 192.168.2.0/24 }}\nservices:\n  - name: web\n    owner: \"100002\"\n    vpc: prov\n    backends: [{{ address: 192.168.2.10 }}, {{ address: 192.168.2.11 }}]\n    ports: [{{ protocol: tcp, endpoint_port: 80, service_port: 8080 }}]\n    allowed_accounts: [\"*\"]\n    auto_accept: true\n    health_check: {{ type: none }}\nendpoints:\n"
    );
    for i in 0..n {
        let ip = std::net::Ipv4Addr::from(0x0a00_0100u32 + i as u32);
        s.push_str(&format!("  - {{ name: ep{i}, owner: \"100001\", vpc: vpc0, service: web, ip: {ip} }}\n"));
    }
    s
}

/// The generation node `i` has taken in (its `status` answers once its maps follow).
fn generation(f: &Fleet, i: usize) -> u64 {
    f.json(i, &["status"])["generation"].as_u64().unwrap_or(0)
}

/// Wait until every node holds generation `g`; how long it took from `since`.
fn converged(f: &Fleet, g: u64, since: Instant) -> f64 {
    loop {
        if (0..f.nodes.len()).all(|i| generation(f, i) >= g) {
            return since.elapsed().as_secs_f64() * 1e3;
        }
        assert!(since.elapsed() < Duration::from_secs(120), "the fleet did not converge on generation {g}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn run(e: Effort) -> Vec<Row> {
    let n = if e.quick { 1_000 } else { 10_000 };
    let trials = e.trials.min(3);
    let (mut cli, mut all, mut noop) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..trials {
        let f = Fleet::new(3);
        let r = f.apply(0, &spec(1));
        assert_eq!(r.code, 0, "{r:?}");
        let text = spec(n);
        let t = Instant::now();
        let r = f.apply(0, &text);
        cli.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(r.code, 0, "{r:?}");
        all.push(converged(&f, generation(&f, 0), t));
        let t = Instant::now();
        let r = f.apply(1, &text);
        noop.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(r.stdout.trim(), "no changes (0 map writes)", "{r:?}");
    }
    vec![
        Row::new(PART, format!("fleet of 3 on etcd: apply {n} endpoints on one node (CLI round trip)"), &cli, "ms"),
        Row::new(PART, format!("fleet of 3 on etcd: apply {n} endpoints until all three nodes converged"), &all, "ms"),
        Row::new(PART, format!("fleet of 3 on etcd: no-op re-apply of {n} endpoints (another node)"), &noop, "ms"),
    ]
}
