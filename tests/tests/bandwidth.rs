//! Bandwidth limits end to end: the real daemon, iperf3 through two endpoints of one
//! service (one limited to 100 Mbit/s, one unlimited, in two overlapping VPCs), both
//! directions, and a rate changed with `apply` under a running transfer.

use privatelink_tests::daemon_lab::*;
use serde_json::Value;

/// The two tests measure rates on a 2-core machine: one at a time, so neither measures
/// the other's load.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// Consumer VPC i uses iperf3 server port 5201 + i (an iperf3 server runs one test at a
/// time).
fn the_spec(limit: &str) -> String {
    let svc = "  - name: bulk\n    owner: \"100001\"\n    vpc: prov\n    backends: [{ address: 192.168.2.10 }]\n    ports:\n      - { protocol: tcp, endpoint_port: 5201, service_port: 5201 }\n      - { protocol: tcp, endpoint_port: 5202, service_port: 5202 }\n";
    let eps = format!(
        "  - {{ name: limited, owner: \"100001\", vpc: vpc0, service: bulk, ip: 10.0.0.100, bandwidth: {limit} }}\n  - {{ name: open, owner: \"100001\", vpc: vpc1, service: bulk, ip: 10.0.0.100 }}\n"
    );
    spec(2, svc, &eps)
}

/// iperf3 from consumer `i` through its endpoint for `secs` (`-R`: the backend sends),
/// after `omit` seconds left out of the result (the bucket's initial burst).
fn iperf(lab: &DaemonLab, i: usize, secs: u32, omit: u32, reverse: bool) -> Value {
    let port = (5201 + i).to_string();
    let (t, o) = (secs.to_string(), omit.to_string());
    let mut args = vec!["iperf3", "-c", "10.0.0.100", "-p", &port, "-t", &t, "-O", &o, "-i", "1", "-J", "--connect-timeout", "2000"];
    if reverse {
        args.push("-R");
    }
    let out = lab.consumers[i].ns.try_exec(&args);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("iperf3 output ({e}): {}", String::from_utf8_lossy(&out.stdout)));
    assert!(v.get("error").is_none(), "iperf3 failed: {}", v["error"]);
    v
}

fn received_mbps(v: &Value) -> f64 {
    v["end"]["sum_received"]["bits_per_second"].as_f64().expect("sum_received") / 1e6
}

/// The client's rate of each 1 s interval (what it received, in a `-R` test).
fn intervals_mbps(v: &Value) -> Vec<f64> {
    v["intervals"].as_array().expect("intervals").iter().map(|x| x["sum"]["bits_per_second"].as_f64().unwrap() / 1e6).collect()
}

fn endpoint_stats(lab: &DaemonLab, name: &str) -> Value {
    let s = lab.json(&["stats"]);
    s["endpoints"].as_array().unwrap().iter().find(|e| e["endpoint"] == name).cloned().unwrap_or_else(|| panic!("no {name} in {s}"))
}

#[test]
fn a_limited_endpoint_gets_its_rate_and_an_unlimited_one_is_not_slowed() {
    let _one = serial();
    let lab = DaemonLab::new(2);
    let r = lab.apply(&the_spec("100Mbps"), &[]);
    assert_eq!(r.code, 0, "{r:#?}");
    let _servers = [5201, 5202].map(|p| lab.provider.background(&["iperf3", "-s", "-B", "192.168.2.10", "-p", &p.to_string()]));
    lab.wait_until("the iperf3 servers listen", || {
        let out = lab.provider.try_exec(&["ss", "-Htln", "sport = :5201 or sport = :5202"]);
        String::from_utf8_lossy(&out.stdout).lines().count() == 2
    });

    // Both at once through the same gateway: each consumer to its own endpoint.
    let (limited, open) = std::thread::scope(|s| {
        let a = s.spawn(|| iperf(&lab, 0, 4, 1, false));
        let b = s.spawn(|| iperf(&lab, 1, 4, 1, false));
        (a.join().unwrap(), b.join().unwrap())
    });
    let (l, o) = (received_mbps(&limited), received_mbps(&open));
    eprintln!("forward: limited {l:.1} Mbit/s, unlimited {o:.1} Mbit/s at the same time");
    assert!((85.0..=105.0).contains(&l), "the 100 Mbit/s endpoint carried {l:.1} Mbit/s");
    assert!(o > 3.0 * 105.0, "the unlimited endpoint carried only {o:.1} Mbit/s");

    // The other direction has its own bucket at the same rate.
    let back = received_mbps(&iperf(&lab, 0, 4, 1, true));
    eprintln!("reverse: limited {back:.1} Mbit/s");
    assert!((85.0..=105.0).contains(&back), "backend to client through the limited endpoint: {back:.1} Mbit/s");

    let ls = endpoint_stats(&lab, "limited");
    assert_eq!(ls["bandwidth_bps"], 100_000_000, "{ls}");
    assert!(ls["drops"]["over_bandwidth"].as_u64().unwrap_or(0) > 0, "the policer dropped something: {ls}");
    let os = endpoint_stats(&lab, "open");
    assert!(os.get("bandwidth_bps").is_none() && os["drops"].get("over_bandwidth").is_none(), "{os}");
    let table = lab.ok(&["stats"]);
    let row = table.lines().find(|l| l.starts_with("limited ")).unwrap_or_else(|| panic!("{table}"));
    assert!(row.contains(" 100Mbps ") && row.contains("over_bandwidth="), "{table}");
    let described = lab.ok(&["describe", "endpoint", "limited"]);
    assert!(described.lines().any(|l| l.starts_with("bandwidth:") && l.contains("100Mbps each way")), "{described}");
}

#[test]
fn a_new_rate_applies_to_a_running_transfer() {
    let _one = serial();
    let lab = DaemonLab::new(2);
    assert_eq!(lab.apply(&the_spec("100Mbps"), &[]).code, 0);
    let _server = lab.provider.background(&["iperf3", "-s", "-B", "192.168.2.10", "-p", "5201"]);
    lab.wait_until("the iperf3 server listens", || {
        String::from_utf8_lossy(&lab.provider.try_exec(&["ss", "-Htln", "sport = :5201"]).stdout).lines().count() == 1
    });
    // One 8 s transfer from the backend (so each second is measured where it is
    // received); the rate drops to 30 Mbit/s after about 3.5 s.
    let run = std::thread::scope(|s| {
        let t = s.spawn(|| iperf(&lab, 0, 8, 0, true));
        std::thread::sleep(std::time::Duration::from_millis(3500));
        let r = lab.apply(&the_spec("30Mbps"), &[]);
        assert_eq!(r.code, 0, "{r:#?}");
        t.join().unwrap()
    });
    let each = intervals_mbps(&run);
    eprintln!("per second: {each:.1?}");
    assert_eq!(each.len(), 8, "the one connection ran to its end");
    // Means over whole seconds: one second alone swings with the policer's cycles (a
    // burst, a loss, a retransmission timeout).
    let mean = |s: &[f64]| s.iter().sum::<f64>() / s.len() as f64;
    let (before, after) = (mean(&each[..3]), mean(&each[5..]));
    assert!((80.0..=115.0).contains(&before), "before the change: {before:.1} ({each:.1?})");
    assert!((22.0..=33.0).contains(&after), "after the change: {after:.1} ({each:.1?})");
    assert_eq!(endpoint_stats(&lab, "limited")["bandwidth_bps"], 30_000_000);
}
