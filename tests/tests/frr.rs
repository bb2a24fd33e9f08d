//! The FRR recipes README publishes (examples/frr/), run as written: FRR's zebra, bfdd
//! and bgpd on a gateway node and on the consumer-side router, each in its own
//! namespace with its own path space. A host route privatelink would publish in table
//! 100 reaches the router's kernel table, and leaves it when it leaves table 100.
//! (The BGP fleet tests' own routing runs BIRD; FRR there is #35's rest.)

use privatelink_tests::netns::{veth, Netns};
use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// FRR's daemons in one namespace, configured with `conf` through vtysh; stopped and
/// their directory removed on drop.
struct Frr {
    dir: PathBuf,
    ns: String,
}

impl Frr {
    fn start(ns: &Netns, conf: &str) -> Frr {
        let dir = PathBuf::from(format!("/run/pltest{}-frr-{}", std::process::id(), ns.name));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // The daemons drop to the `frr` user: their sockets and logs live here.
        Command::new("chmod").args(["777", dir.to_str().unwrap()]).status().unwrap();
        let empty = dir.join("empty.conf");
        std::fs::write(&empty, "").unwrap();
        let frr = Frr { dir: dir.clone(), ns: ns.name.clone() };
        let d = |p: &str| dir.join(p).to_str().unwrap().to_string();
        for daemon in ["zebra", "bfdd", "bgpd"] {
            let (pid, log) = (d(&format!("{daemon}.pid")), format!("file:{}", d(&format!("{daemon}.log"))));
            let o = ns.try_exec(&[&format!("/usr/lib/frr/{daemon}"), "-d", "-f", &d("empty.conf"), "-i", &pid, "--vty_socket", &d(""), "-z", &d("zserv.api"), "--log", &log]);
            assert!(o.status.success(), "{daemon} (apt install frr: cargo xtask setup): {}", String::from_utf8_lossy(&o.stderr));
        }
        let file = dir.join("frr.conf");
        std::fs::write(&file, conf).unwrap();
        let start = Instant::now();
        loop {
            let o = frr.vtysh(&["-f", file.to_str().unwrap()]);
            if o.status.success() {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(10), "vtysh -f: {}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
            std::thread::sleep(Duration::from_millis(100));
        }
        frr
    }

    fn vtysh(&self, args: &[&str]) -> std::process::Output {
        let sock = self.dir.to_str().unwrap().to_string();
        Command::new("ip").args(["netns", "exec", &self.ns, "vtysh", "--vty_socket", &sock]).args(args).output().expect("vtysh")
    }
}

impl Drop for Frr {
    fn drop(&mut self) {
        for daemon in ["bgpd", "bfdd", "zebra"] {
            if let Some(pid) = std::fs::read_to_string(self.dir.join(format!("{daemon}.pid"))).ok().and_then(|p| p.trim().parse::<i32>().ok()) {
                // SAFETY: signalling a daemon this test started.
                unsafe { libc::kill(pid, libc::SIGTERM) };
            }
        }
        std::thread::sleep(Duration::from_millis(300));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether the router's main table routes `dst` via `hop` (by BGP).
fn routed(router: &Netns, dst: &str, hop: &str) -> bool {
    let o = router.try_exec(&["ip", "route", "show", dst]);
    let out = String::from_utf8_lossy(&o.stdout);
    out.contains(&format!("via {hop}")) && out.contains("proto bgp")
}

fn wait(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < Duration::from_secs(secs), "{what}: not within {secs} s");
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("{what}: {:?}", start.elapsed());
}

#[test]
fn the_readmes_frr_recipes_announce_the_endpoints_and_withdraw_them() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let node_conf = std::fs::read_to_string(root().join("examples/frr/gateway-node.conf")).unwrap();
    let router_conf = std::fs::read_to_string(root().join("examples/frr/consumer-router.conf")).unwrap();
    for file in ["gateway-node.conf", "consumer-router.conf"] {
        assert!(readme.contains(&format!("examples/frr/{file}")), "README names examples/frr/{file}");
    }
    // What README quotes of the node's recipe is the file's, line for line.
    let policy = |l: &&str| !l.starts_with('!') && (l.contains("route-map") || l.contains("import-table") || l.contains("prefix-list") || l.contains("redistribute"));
    for line in node_conf.lines().filter(policy) {
        assert!(readme.contains(line.trim()), "README's FRR recipe lacks `{}` of examples/frr/gateway-node.conf", line.trim());
    }

    let node = Netns::new("frn");
    let router = Netns::new("frr");
    veth(&node, "n0", &router, "r0");
    node.ip(&["addr", "add", "172.16.1.2/24", "dev", "n0"]);
    router.ip(&["addr", "add", "172.16.1.1/24", "dev", "r0"]);
    // What the daemon does: a device of its own, a host route through it in table 100.
    node.ip(&["link", "add", "pl-announce", "type", "veth", "peer", "name", "pl-announce-p"]);
    node.ip(&["link", "set", "pl-announce", "up"]);
    node.ip(&["link", "set", "pl-announce-p", "up"]);
    node.ip(&["route", "add", "10.0.0.100/32", "dev", "pl-announce", "table", "100", "proto", "static"]);
    // Neither learns anything else: a route the node does not hold is never announced.
    node.ip(&["route", "add", "10.9.0.0/16", "dev", "pl-announce", "table", "100", "proto", "static"]);

    let _router = Frr::start(&router, &router_conf);
    let _node = Frr::start(&node, &node_conf);
    wait("the endpoint address reaches the router", 15, || routed(&router, "10.0.0.100", "172.16.1.2"));
    assert!(!routed(&router, "10.9.0.0/16", "172.16.1.2"), "only host routes leave the node");
    let learned = node.try_exec(&["ip", "route", "show", "proto", "bgp"]);
    assert!(String::from_utf8_lossy(&learned.stdout).trim().is_empty(), "the node learns nothing from the router");
    // A route the daemon removes (a withdrawn endpoint, a lost lease) leaves the router.
    node.ip(&["route", "del", "10.0.0.100/32", "dev", "pl-announce", "table", "100"]);
    wait("the router forgets it", 5, || !routed(&router, "10.0.0.100", "172.16.1.2"));
}
