//! The FRR recipes docs/operator.md publishes (examples/frr/), run as written: FRR's zebra, bfdd
//! and bgpd on a gateway node and on the consumer-side router, each in its own
//! namespace with its own path space. A host route privatelink would publish in table
//! 100 reaches the router's kernel table, and leaves it when it leaves table 100.
//! The BGP fleet tests (`fleet_bgp.rs`) run every scenario with FRR too, from the same
//! files (`lab::frr` renders them per node).

use privatelink::lab::frr;
use privatelink_tests::netns::{veth, Netns};
use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// FRR's daemons in one namespace (started as `lab::frr` starts them), configured
/// with `conf`; killed and their directory removed on drop.
struct Frr {
    dir: PathBuf,
    procs: Vec<std::process::Child>,
}

impl Frr {
    fn start(ns: &Netns, conf: &str) -> Frr {
        let dir = PathBuf::from(format!("/run/pltest{}-frr-{}", std::process::id(), ns.name));
        let _ = std::fs::remove_dir_all(&dir);
        frr::prepare(&dir).unwrap();
        let mut me = Frr { dir: dir.clone(), procs: Vec::new() };
        for daemon in frr::DAEMONS {
            let log = std::fs::File::create(dir.join(format!("{daemon}.out"))).unwrap();
            let child = Command::new("ip")
                .args(["netns", "exec", &ns.name])
                .args(frr::command(daemon, &dir))
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("{daemon} (apt install frr: cargo xtask setup): {e}"));
            me.procs.push(child);
        }
        frr::configure(&ns.name, &dir, conf).unwrap_or_else(|e| panic!("{e:#}"));
        me
    }
}

impl Drop for Frr {
    fn drop(&mut self) {
        for c in &mut self.procs {
            let _ = c.kill();
            let _ = c.wait();
        }
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
    // README links the operator's guide, which holds the recipes.
    let readme = std::fs::read_to_string(root().join("docs/operator.md")).unwrap();
    let node_conf = std::fs::read_to_string(root().join("examples/frr/gateway-node.conf")).unwrap();
    let router_conf = std::fs::read_to_string(root().join("examples/frr/consumer-router.conf")).unwrap();
    for file in ["gateway-node.conf", "consumer-router.conf"] {
        assert!(readme.contains(&format!("examples/frr/{file}")), "docs/operator.md names examples/frr/{file}");
    }
    // What the guide quotes of the node's recipe is the file's, line for line.
    let policy = |l: &&str| !l.starts_with('!') && (l.contains("route-map") || l.contains("import-table") || l.contains("prefix-list") || l.contains("redistribute"));
    for line in node_conf.lines().filter(policy) {
        assert!(readme.contains(line.trim()), "docs/operator.md's FRR recipe lacks `{}` of examples/frr/gateway-node.conf", line.trim());
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
