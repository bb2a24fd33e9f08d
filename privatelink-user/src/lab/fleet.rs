//! `privatelink lab up --nodes N`: a fleet of N gateway nodes on one host.
//!
//! ```text
//!  pl-vpc1 client 10.0.0.2 ── pl-router 10.0.0.1 ══(BGP, resilient ECMP)══ pl-gwK gw-vpc1 172.16.K.2
//!                              BIRD + `lab ecmp`                           pl-gwK gw-vpc2 192.168.2.K ── pl-vpc2 backends
//!                                                                          pl-gwK m0 10.255.0.K ── pl-ctl etcd 10.255.0.100:2379
//! ```
//! Node K (`gwK`, zone z1 when K is odd, z2 when even) runs the daemon on the shared
//! etcd and BIRD (or FRR: `--routing frr`), which announces what the daemon publishes
//! in table 100 to the router. The provider's backends 192.168.2.10 (zone z1) and .11 (z2) route node K's
//! SNAT slice back to node K.

use super::{add_ns, bird, frr, in_ns, in_netns, ip, pass_link, sh, spawn_detached, wait_socket, BACKENDS, LAB_DIR, NS_CLIENT, NS_PROVIDER};
use crate::dataplane::loader::{Dataplane, LoadOptions};
use anyhow::{bail, Result};
use std::{
    net::{Ipv4Addr, SocketAddr, TcpStream},
    path::Path,
    time::{Duration, Instant},
};

pub const NS_ROUTER: &str = "pl-router";
const NS_CTL: &str = "pl-ctl";
/// 11.163.0.0/16 is cut in four slices (`examples/fleet.yaml`): one per node.
pub const MAX_NODES: usize = 4;
pub const ETCD: &str = "10.255.0.100:2379";
/// Where node K takes its peers' flows: 10.255.0.K on the management network.
pub const REPLICATION_PORT: u16 = 7946;
/// Where nodes publish their endpoint routes, and where the router's BIRD merges them.
pub const ANNOUNCE_TABLE: u32 = 100;
const ROUTER_TABLE: u32 = 200;
/// With FRR, the table the router's forwarding plane fills (looked up before main,
/// where FRR installs its routes).
const RESILIENT_TABLE: u32 = 201;

/// The routing daemon on the nodes and the router.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Routing {
    Bird,
    Frr,
}

pub fn node_ns(k: usize) -> String {
    format!("pl-gw{k}")
}

/// Zones alternate: odd nodes in z1, even ones in z2.
pub fn zone_of(k: usize) -> &'static str {
    if k % 2 == 1 {
        "z1"
    } else {
        "z2"
    }
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

fn veth(a_ns: &str, a: &str, b_ns: &str, b: &str) -> Result<()> {
    ip(a_ns, &["link", "add", a, "type", "veth", "peer", "name", b, "netns", b_ns])?;
    ip(a_ns, &["link", "set", a, "up"])?;
    ip(b_ns, &["link", "set", b, "up"])
}

fn forwarding(ns: &str) -> Result<()> {
    for kv in ["net.ipv4.ip_forward=1", "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0"] {
        in_ns(ns, &["sysctl", "-qw", kv])?;
    }
    Ok(())
}

pub(super) fn build(n: usize, routing: Routing) -> Result<()> {
    let dir = Path::new(LAB_DIR);
    std::fs::create_dir_all(dir)?;
    for ns in [NS_CTL, NS_ROUTER, NS_CLIENT, NS_PROVIDER] {
        add_ns(ns)?;
    }
    forwarding(NS_ROUTER)?;
    forwarding(NS_PROVIDER)?;
    // Layer-4 hashing: flows of one client spread over the nodes.
    in_ns(NS_ROUTER, &["sysctl", "-qw", "net.ipv4.fib_multipath_hash_policy=1"])?;
    veth(NS_CLIENT, "eth0", NS_ROUTER, "r-vpc1")?;
    ip(NS_CLIENT, &["addr", "add", "10.0.0.2/24", "dev", "eth0"])?;
    // Endpoint addresses (10.0.0.64-127) are behind the router, like any subnet's.
    ip(NS_CLIENT, &["route", "add", "10.0.0.64/26", "via", "10.0.0.1"])?;
    in_ns(NS_CLIENT, &["ethtool", "-K", "eth0", "tx", "off"])?;
    ip(NS_ROUTER, &["addr", "add", "10.0.0.1/24", "dev", "r-vpc1"])?;
    for (_, addr) in BACKENDS {
        let host = addr.split(':').next().unwrap_or_default();
        ip(NS_PROVIDER, &["addr", "add", &format!("{host}/32"), "dev", "lo"])?;
    }
    ip(NS_CTL, &["link", "add", "br-m", "type", "bridge"])?;
    ip(NS_CTL, &["addr", "add", "10.255.0.100/24", "dev", "br-m"])?;
    ip(NS_CTL, &["link", "set", "br-m", "up"])?;

    let bpffs = dir.join("bpffs");
    node_links(n, &bpffs)?;
    start_processes(n, routing, dir, &bpffs)?;
    // `PRIVATELINK_SOCKET=/run/privatelink-lab/api.sock` talks to node 1.
    std::os::unix::fs::symlink(dir.join("gw1.sock"), super::socket())?;
    Ok(())
}


/// Node K's namespace and its three links: to the router (VPC 1), to the provider
/// (VPC 2, with the provider's routes to node K's SNAT slice) and to the management
/// bridge; the hosts' ends run XDP_PASS pinned under `bpffs`.
fn node_links(n: usize, bpffs: &Path) -> Result<()> {
    std::fs::create_dir_all(bpffs)?;
    sh(&["mount", "-t", "bpf", "bpf", path(bpffs)])?;
    let mut pass = Dataplane::load(&LoadOptions { ct_capacity: 1024, pin_dir: None })?;
    for k in 1..=n {
        let ns = node_ns(k);
        add_ns(&ns)?;
        forwarding(&ns)?;
        veth(&ns, "gw-vpc1", NS_ROUTER, &format!("r-gw{k}"))?;
        ip(&ns, &["addr", "add", &format!("172.16.{k}.2/30"), "dev", "gw-vpc1"])?;
        ip(&ns, &["route", "add", "10.0.0.0/24", "via", &format!("172.16.{k}.1")])?;
        ip(NS_ROUTER, &["addr", "add", &format!("172.16.{k}.1/30"), "dev", &format!("r-gw{k}")])?;
        pass_link(&mut pass, bpffs, NS_ROUTER, &format!("r-gw{k}"), &format!("router-gw{k}"))?;

        let p_if = format!("p{k}");
        veth(&ns, "gw-vpc2", NS_PROVIDER, &p_if)?;
        ip(&ns, &["addr", "add", &format!("192.168.2.{k}/24"), "dev", "gw-vpc2"])?;
        ip(NS_PROVIDER, &["addr", "add", &format!("192.168.2.{}/24", 200 + k), "dev", &p_if])?;
        // Every link is on 192.168.2.0/24: node K's answers and SNAT slice K-1 go by
        // node K's link.
        ip(NS_PROVIDER, &["route", "add", &format!("192.168.2.{k}/32"), "dev", &p_if])?;
        ip(NS_PROVIDER, &["route", "add", &format!("11.163.{}.0/18", (k - 1) * 64), "via", &format!("192.168.2.{k}"), "dev", &p_if])?;
        in_ns(NS_PROVIDER, &["ethtool", "-K", &p_if, "tx", "off"])?;
        pass_link(&mut pass, bpffs, NS_PROVIDER, &p_if, &format!("provider-gw{k}"))?;

        veth(&ns, "m0", NS_CTL, &format!("m{k}"))?;
        ip(&ns, &["addr", "add", &format!("10.255.0.{k}/24"), "dev", "m0"])?;
        ip(NS_CTL, &["link", "set", &format!("m{k}"), "master", "br-m"])?;
    }

    Ok(())
}

/// The backends, etcd, the router's BIRD and ECMP helper, then each node's BIRD and
/// daemon, one after the other.
fn start_processes(n: usize, routing: Routing, dir: &Path, bpffs: &Path) -> Result<()> {
    let me = std::env::current_exe()?;
    let me = path(&me);
    for (name, addr) in BACKENDS {
        spawn_detached(NS_PROVIDER, name, &[me, "lab", "serve", "--name", name, "--address", addr])?;
    }
    start_etcd(dir)?;
    let peers: Vec<(Ipv4Addr, String)> = (1..=n).map(|k| (Ipv4Addr::new(172, 16, k as u8, 2), format!("r-gw{k}"))).collect();
    match routing {
        Routing::Bird => {
            let conf = dir.join("bird-router.conf");
            std::fs::write(&conf, bird::router(Ipv4Addr::new(10, 0, 0, 1), &peers, ROUTER_TABLE))?;
            spawn_detached(NS_ROUTER, "bird-router", &["bird", "-f", "-c", path(&conf), "-s", path(&dir.join("bird-router.ctl"))])?;
            spawn_detached(NS_ROUTER, "ecmp", &[me, "lab", "ecmp", "--table", &ROUTER_TABLE.to_string()])?;
        }
        Routing::Frr => {
            let hops: Vec<Ipv4Addr> = peers.iter().map(|p| p.0).collect();
            start_frr(NS_ROUTER, "router", &frr::router(&hops))?;
            let into = RESILIENT_TABLE.to_string();
            ip(NS_ROUTER, &["rule", "add", "pref", "100", "lookup", &into])?;
            spawn_detached(NS_ROUTER, "ecmp", &[me, "lab", "ecmp", "--table", "254", "--into", &into])?;
        }
    }
    let store = format!("etcd://{ETCD}");
    for k in 1..=n {
        let ns = node_ns(k);
        let addr = Ipv4Addr::new(172, 16, k as u8, 2);
        let peer = Ipv4Addr::new(172, 16, k as u8, 1);
        match routing {
            Routing::Bird => {
                let conf = dir.join(format!("bird-gw{k}.conf"));
                std::fs::write(&conf, bird::node(addr, peer, "gw-vpc1", ANNOUNCE_TABLE))?;
                spawn_detached(&ns, &format!("bird-gw{k}"), &["bird", "-f", "-c", path(&conf), "-s", path(&dir.join(format!("bird-gw{k}.ctl")))])?;
            }
            Routing::Frr => start_frr(&ns, &format!("gw{k}"), &frr::node(addr, peer))?,
        }
        let sock = dir.join(format!("gw{k}.sock"));
        let (state, pins) = (dir.join(format!("state-gw{k}")), bpffs.join(format!("gw{k}")));
        let node = format!("gw{k}");
        let repl = format!("10.255.0.{k}:{REPLICATION_PORT}");
        let args = [me, "--socket", path(&sock), "daemon", "--state-dir", path(&state), "--bpffs", path(&pins), "--store", &store, "--node", &node, "--zone", zone_of(k), "--replication-listen", &repl];
        spawn_detached(&ns, &node, &args)?;
        // One after the other: node K takes slice K-1 (the provider's routes above).
        wait_socket(&sock, &format!("{node}.log"))?;
    }
    Ok(())
}

/// FRR's daemons in `ns` (named `frr-NAME-DAEMON`, so `lab down` stops them), then
/// `conf` loaded into them.
fn start_frr(ns: &str, name: &str, conf: &str) -> Result<()> {
    let dir = Path::new(LAB_DIR).join(format!("frr-{name}"));
    frr::prepare(&dir)?;
    for daemon in frr::DAEMONS {
        let cmd = frr::command(daemon, &dir);
        let args: Vec<&str> = cmd.iter().map(String::as_str).collect();
        spawn_detached(ns, &format!("frr-{name}-{daemon}"), &args)?;
    }
    frr::configure(ns, &dir, conf)
}

fn start_etcd(dir: &Path) -> Result<()> {
    let url = format!("http://{ETCD}");
    let data = dir.join("etcd");
    let args = [
        "etcd", "--name", "pl", "--data-dir", path(&data), "--listen-client-urls", &url, "--advertise-client-urls", &url,
        "--listen-peer-urls", "http://127.0.0.1:2380", "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
        "--initial-cluster", "pl=http://127.0.0.1:2380",
    ];
    spawn_detached(NS_CTL, "etcd", &args)?;
    let addr: SocketAddr = ETCD.parse()?;
    let start = Instant::now();
    while in_netns(NS_CTL, || Ok(TcpStream::connect_timeout(&addr, Duration::from_millis(200))?)).is_err() {
        if start.elapsed() > Duration::from_secs(20) {
            let log = std::fs::read_to_string(dir.join("etcd.log")).unwrap_or_default();
            bail!("etcd did not come up (apt install etcd-server):\n{log}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}
