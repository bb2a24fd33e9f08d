//! `vpcs[].xdp_mode` and the warnings `status` gives. On veths whose peers run no XDP
//! program (a host that knows nothing of XDP), `auto` attaches in generic mode and
//! traffic flows; `native` attaches natively, traffic vanishes, and `status` says why.
//! A daemon whose bpffs lives in its own mount namespace is warned that its pins die
//! with it.

use privatelink_tests::{daemon_lab::*, lab::*, netns::Netns};
use std::{net::SocketAddr, time::Duration};

fn ep() -> SocketAddr {
    SocketAddr::from((ENDPOINT, ENDPOINT_TCP_PORT))
}

fn with_mode(spec: &str, mode: &str) -> String {
    spec.replace("cidr: 10.0.0.0/24 }", &format!("cidr: 10.0.0.0/24, xdp_mode: {mode} }}"))
        .replace("cidr: 192.168.2.0/24 }", &format!("cidr: 192.168.2.0/24, xdp_mode: {mode} }}"))
}

/// Each attached interface's mode, and the warnings.
fn modes(lab: &DaemonLab) -> (Vec<(String, String)>, Vec<String>) {
    let s = lab.json(&["status"]);
    let mut modes: Vec<(String, String)> = s["interfaces"].as_array().unwrap().iter().map(|i| (i["interface"].as_str().unwrap().into(), i["xdp_mode"].as_str().unwrap().into())).collect();
    modes.sort();
    let warnings = s["warnings"].as_array().unwrap().iter().map(|w| w.as_str().unwrap().to_string()).collect();
    (modes, warnings)
}

fn all(mode: &str) -> Vec<(String, String)> {
    [("gw-c0", mode), ("gw-prov", mode)].map(|(i, m)| (i.to_string(), m.to_string())).into()
}

#[test]
fn on_veths_whose_peers_run_no_xdp_auto_uses_generic_mode_and_native_is_warned_about() {
    let lab = DaemonLab::on(Topology::bare(1), &[], &[]);
    let spec = spec(1, &service("web", "100001", &[]), &endpoint("web-from-vpc1", "100001", 0, "web"));
    assert_eq!(lab.apply(&spec, &[]).code, 0);
    let (m, warnings) = modes(&lab);
    assert_eq!(m, all("generic"), "auto on bare veths");
    assert!(warnings.is_empty(), "{warnings:?}");
    let body = lab.in_client(0, || http_get(ep())).expect("HTTP through generic-mode XDP on bare veths");
    assert!(body.starts_with("backend="), "{body}");

    // Native by choice: attached anew, and the frames the gateway sends vanish.
    let r = lab.apply(&with_mode(&spec, "native"), &[]);
    assert_eq!(r.code, 0, "{r:#?}");
    let (m, warnings) = modes(&lab);
    assert_eq!(m, all("native"));
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(warnings.iter().all(|w| w.contains("peer runs no XDP program") && w.contains("xdp_mode")), "{warnings:?}");
    let table = lab.ok(&["status"]);
    assert!(table.contains("WARNING: gw-c0 (VPC vpc0) is a veth in native XDP mode"), "{table}");
    assert!(lab.in_client(0, || http_get(ep())).is_err(), "native mode on a bare veth delivered: the warning would be wrong");

    // Generic by choice works as auto did; back to auto keeps it.
    assert_eq!(lab.apply(&with_mode(&spec, "generic"), &[]).code, 0);
    assert_eq!(modes(&lab), (all("generic"), vec![]));
    assert!(lab.in_client(0, || http_get(ep())).is_ok());
    assert_eq!(lab.apply(&spec, &[]).code, 0);
    assert_eq!(modes(&lab).0, all("generic"));

    // A mode that is not one is a spec error.
    let r = lab.apply(&with_mode(&spec, "turbo"), &["--dry-run"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("vpcs[0].xdp_mode: unknown variant `turbo`, expected one of `auto`, `native`, `generic`"), "{}", r.stderr);
}

#[test]
fn on_veths_whose_peers_run_xdp_auto_stays_native() {
    let lab = DaemonLab::new(1);
    let spec = spec(1, &service("web", "100001", &[]), &endpoint("web-from-vpc1", "100001", 0, "web"));
    assert_eq!(lab.apply(&spec, &[]).code, 0);
    assert_eq!(modes(&lab), (all("native"), vec![]));
}

/// Kills and reaps the daemon, and removes its directory, also when the test fails.
struct Daemon(std::process::Child, std::path::PathBuf);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

#[test]
fn a_bpffs_only_the_daemons_mount_namespace_has_is_warned_about() {
    let ns = Netns::new("bpfwarn");
    let dir = std::path::PathBuf::from(format!("/run/pltest{}-bpfwarn", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("api.sock");
    let log = dir.join("daemon.log");
    // `ip netns exec` gives the daemon a private /sys: its bpffs under /sys/fs/bpf is
    // mounted there, and nowhere else.
    let bpffs = format!("/sys/fs/bpf/pltest{}", std::process::id());
    let args = ["--state-dir", path_str(&dir.join("state")), "--bpffs", &bpffs].map(String::from);
    let mut d = Daemon(spawn_daemon(&ns.name, &socket, &args, &[], &log), dir.clone());
    wait_answering(&mut d.0, &socket, &log).unwrap();
    let s: serde_json::Value = serde_json::from_str(&cli_at(&socket, &["status", "-o", "json"]).stdout).unwrap();
    let w = s["warnings"].as_array().unwrap();
    assert!(w.len() == 1 && w[0].as_str().unwrap().contains("mounted in this daemon's mount namespace only"), "{s:#}");
    assert!(std::fs::read_to_string(&log).unwrap().contains("next start resets every flow"), "the daemon logs it too");
    assert!(!std::path::Path::new(&bpffs).exists(), "the test must not have touched the host's /sys/fs/bpf");
    drop(d);
    std::thread::sleep(Duration::from_millis(50));
}
