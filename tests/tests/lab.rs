//! `privatelink lab up|down` (what `cargo xtask demo` drives): the quick start through
//! the lab's own processes, and nothing left behind afterwards.

use privatelink_tests::{daemon_lab::privatelink_bin, netns::require_root};
use std::process::Command;

fn pl(args: &[&str]) -> std::process::Output {
    Command::new(privatelink_bin())
        .env("PRIVATELINK_SOCKET", "/run/privatelink-lab/api.sock")
        .args(args)
        .output()
        .expect("run privatelink")
}

#[track_caller]
fn ok(args: &[&str]) -> String {
    let o = pl(args);
    assert!(o.status.success(), "privatelink {args:?}: {}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `lab down` on drop, also when the test fails.
struct Up;
impl Drop for Up {
    fn drop(&mut self) {
        let _ = pl(&["lab", "down"]);
    }
}

fn client_get() -> std::process::Output {
    Command::new("ip")
        .args(["netns", "exec", "pl-vpc1"])
        .arg(privatelink_bin())
        .args(["lab", "get", "10.0.0.100:80", "--timeout-secs", "2"])
        .output()
        .unwrap()
}

/// The labs share their names: one at a time.
static ONE_LAB: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn the_lab_runs_the_quick_start_and_leaves_nothing_behind() {
    require_root();
    let _one = ONE_LAB.lock().unwrap_or_else(|p| p.into_inner());
    let quickstart = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/quickstart.yaml");
    {
        let _up = Up;
        ok(&["lab", "up"]);
        let r = pl(&["lab", "up"]);
        assert_eq!(r.status.code(), Some(1), "a second lab up must refuse");
        assert!(String::from_utf8_lossy(&r.stderr).contains("a lab is already up"));
        ok(&["apply", "-f", quickstart]);
        assert!(!client_get().status.success(), "connected through a pending endpoint");
        // The lab's daemon serves the tenant API on the gateway's loopback.
        let api = Command::new("ip").args(["netns", "exec", "pl-gw", "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:8443/v1/services"]).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&api.stdout), "401", "the tenant API answers (no token: 401)");
        ok(&["accept", "web-from-vpc1"]);
        let out = client_get();
        let body = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && body.starts_with("backend=backend-") && body.contains(" peer=11.163.0.1:"), "{body}");
        ok(&["lab", "down"]);
    }
    for ns in ["pl-vpc1", "pl-vpc2", "pl-gw"] {
        assert!(!std::path::Path::new("/run/netns").join(ns).exists(), "{ns} left behind");
    }
    assert!(!std::path::Path::new("/run/privatelink-lab").exists());
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    assert!(!mounts.contains("privatelink-lab"), "bpffs left mounted");
}

#[test]
fn the_fleet_lab_runs_on_frr_and_leaves_nothing_behind() {
    require_root();
    let _one = ONE_LAB.lock().unwrap_or_else(|p| p.into_inner());
    let r = pl(&["lab", "up", "--routing", "frr"]);
    assert_eq!(r.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&r.stderr).contains("--routing is for a fleet"), "{}", String::from_utf8_lossy(&r.stderr));
    let fleet = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/fleet.yaml");
    {
        let _up = Up;
        ok(&["lab", "up", "--nodes", "2", "--routing", "frr"]);
        ok(&["apply", "-f", fleet]);
        ok(&["accept", "web-from-vpc1"]);
        // Both nodes' FRR announce the endpoint; the router's FRR merges the paths and
        // its forwarding plane makes a resilient group of them.
        let learned = || {
            let o = Command::new("ip").args(["netns", "exec", "pl-router", "ip", "route", "show", "10.0.0.100", "proto", "bgp"]).output().unwrap();
            String::from_utf8_lossy(&o.stdout).into_owned()
        };
        let start = std::time::Instant::now();
        while !(learned().contains("via 172.16.1.2") && learned().contains("via 172.16.2.2")) {
            assert!(start.elapsed() < std::time::Duration::from_secs(20), "the router did not learn 10.0.0.100 from both nodes: {}", learned());
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        let out = client_get();
        let body = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && body.starts_with("backend=backend-") && body.contains(" peer=11.163."), "{body}");
        ok(&["lab", "down"]);
    }
    for ns in ["pl-vpc1", "pl-vpc2", "pl-router", "pl-ctl", "pl-gw1", "pl-gw2"] {
        assert!(!std::path::Path::new("/run/netns").join(ns).exists(), "{ns} left behind");
    }
    let left = Command::new("pgrep").args(["-f", "privatelink-lab"]).output().unwrap();
    assert!(left.stdout.is_empty(), "processes left: {}", String::from_utf8_lossy(&left.stdout));
    assert!(!std::path::Path::new("/run/privatelink-lab").exists());
}
