//! FRR configurations of the fleet lab (`lab up --nodes N --routing frr`, and the
//! fleet tests' FRR run): the recipes of docs/operator.md, `examples/frr/gateway-node.conf` and
//! `consumer-router.conf`, are the text used, with each node's and the router's
//! addresses put in. zebra, bfdd and bgpd run per namespace with their own path space.

use anyhow::{bail, Result};
use std::{net::Ipv4Addr, path::Path, process::Command, time::{Duration, Instant}};

/// The recipes, as README shows them (their addresses are the first node's).
const NODE: &str = include_str!("../../../examples/frr/gateway-node.conf");
const ROUTER: &str = include_str!("../../../examples/frr/consumer-router.conf");

/// The daemons of one namespace, in start order.
pub const DAEMONS: [&str; 3] = ["zebra", "bfdd", "bgpd"];

/// A gateway node at `local` announcing to the router at `peer`.
pub fn node(local: Ipv4Addr, peer: Ipv4Addr) -> String {
    NODE.replace("172.16.1.2", &local.to_string()).replace("172.16.1.1", &peer.to_string())
}

/// The consumer-side router with a session to each of `peers`. The lab's router
/// keeps FRR's routes as plain multipath routes (no kernel next-hop objects): its
/// forwarding plane (`lab ecmp`) makes resilient groups of its own from them.
pub fn router(peers: &[Ipv4Addr]) -> String {
    let mut out = String::from("no zebra nexthop kernel enable\n");
    let mut placed = false;
    for line in ROUTER.lines() {
        if line.trim_start().starts_with("neighbor 172.16.") && line.ends_with("peer-group gateways") {
            if !placed {
                for p in peers {
                    out.push_str(&format!(" neighbor {p} peer-group gateways\n"));
                }
                placed = true;
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The command line of `daemon` (one of `DAEMONS`) in the foreground, its sockets,
/// pid file and log in `dir` (which the `frr` user must be able to write).
pub fn command(daemon: &str, dir: &Path) -> Vec<String> {
    let d = |p: &str| dir.join(p).to_string_lossy().into_owned();
    vec![
        format!("/usr/lib/frr/{daemon}"),
        "-f".into(),
        d("empty.conf"),
        "-i".into(),
        d(&format!("{daemon}.pid")),
        "--vty_socket".into(),
        d(""),
        "-z".into(),
        d("zserv.api"),
        "--log".into(),
        format!("file:{}", d(&format!("{daemon}.log"))),
    ]
}

/// Prepare `dir` for the daemons (it is made world-writable: they drop to `frr`).
pub fn prepare(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777))?;
    std::fs::write(dir.join("empty.conf"), "")?;
    Ok(())
}

/// Load `conf` into the daemons of namespace `ns` (path space `dir`) with vtysh, once
/// every one of them listens (within 10 s): vtysh leaves out, without an error, the
/// lines of a daemon that is not up yet.
pub fn configure(ns: &str, dir: &Path, conf: &str) -> Result<()> {
    let file = dir.join("frr.conf");
    std::fs::write(&file, conf)?;
    let start = Instant::now();
    while let Some(d) = DAEMONS.iter().find(|d| !dir.join(format!("{d}.vty")).exists()) {
        if start.elapsed() > Duration::from_secs(10) {
            bail!("FRR's {d} in {ns} did not come up within 10 s (its log: {})", dir.join(format!("{d}.log")).display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    loop {
        let o = Command::new("ip").args(["netns", "exec", ns, "vtysh", "--vty_socket"]).arg(dir).arg("-f").arg(&file).output()?;
        if o.status.success() {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(10) {
            bail!("vtysh -f {} in {ns}: {}{}", file.display(), String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipes_get_each_nodes_addresses() {
        let n = node(Ipv4Addr::new(172, 16, 3, 2), Ipv4Addr::new(172, 16, 3, 1));
        assert!(n.contains("neighbor 172.16.3.1 route-map PRIVATELINK-OUT out") && n.contains("bgp router-id 172.16.3.2"), "{n}");
        assert!(!n.contains("172.16.1."), "{n}");
        let r = router(&[Ipv4Addr::new(172, 16, 1, 2), Ipv4Addr::new(172, 16, 2, 2), Ipv4Addr::new(172, 16, 3, 2)]);
        assert_eq!(r.matches("peer-group gateways\n").count(), 3, "{r}");
        assert!(r.contains(" neighbor 172.16.3.2 peer-group gateways\n") && r.contains("maximum-paths 16"), "{r}");
    }
}
