//! The fleet lab: a real etcd and N gateway daemons, each in its own namespace, behind
//! a router namespace whose route to the endpoint is a multipath route hashed on layer
//! 4, in front of one consumer client and one provider namespace whose backends route
//! each node's SNAT slice back to that node. Everything is removed on drop.
//!
//! `Fleet::with_bgp` replaces the router's static multipath route with real BGP: BIRD
//! on each node announces what the node's daemon publishes in table `ANNOUNCE_TABLE`,
//! BIRD on the router merges the paths into table `ROUTER_TABLE`, and `privatelink
//! lab ecmp` (the router's forwarding plane) mirrors them into resilient next-hop
//! groups. Nobody touches a route after that.
//!
//! ```text
//!  client 10.0.0.2 -- router 10.0.0.1 --(ECMP)-- gwK gw-c0 172.16.K.2 | gw-prov 192.168.2.K -- pK (provider)
//!                                                  gwK m0 10.255.0.K -- ctl (etcd 10.255.0.100:2379)
//! ```
//! Backends 192.168.2.10/.11 live on the provider's loopback (the provider answers ARP
//! for them on every link); slice K of 11.163.0.0/16 is routed via 192.168.2.K.

use crate::{
    daemon_lab::{cli_at, path_str, privatelink_bin, spawn_daemon, wait_answering, Bpffs, Run},
    lab::{host_offloads, start_tcp_server, start_udp_server, BACKENDS, SERVICE_TCP_PORT, SERVICE_UDP_PORT},
    netns::{kill_inside, sh, veth, Netns},
};
use aya::programs::XdpMode;
use privatelink::dataplane::loader::{Dataplane, LoadOptions};
pub use privatelink::lab::fleet::REPLICATION_PORT;
use std::{
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicBool, AtomicU32, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

mod bgp;

pub use privatelink::lab::Routing;

static NEXT: AtomicU32 = AtomicU32::new(0);
pub const ETCD: &str = "10.255.0.100:2379";
/// Where nodes publish their SNAT slices for the provider side (`with_bgp_both_sides`).
pub const SNAT_ANNOUNCE_TABLE: u32 = 101;
/// Every node serves the tenant API here, on its own loopback.
pub const API: &str = "127.0.0.1:8080";
/// And its metrics here.
pub const METRICS: &str = "127.0.0.1:9469";
/// `gateway.snat_slices` of the lab's specs: 11.163.0.0/16 in four /18s.
pub const SLICES: u32 = 4;
/// The nodes' `gateway.fleet.announce_table`, and the table the router's BIRD fills.
pub const ANNOUNCE_TABLE: u32 = 100;
pub const ROUTER_TABLE: u32 = 200;
/// The nodes' `--restart-grace`: how long a stopped daemon's routes stay. A daemon
/// here takes 4-7 s to start (the kernel verifies the XDP object again), and the
/// restart test waits for its lease to run out (3 s) before starting it again.
pub const RESTART_GRACE: Duration = Duration::from_secs(15);

pub struct Node {
    pub name: String,
    pub ns: Netns,
    pub socket: PathBuf,
    pub bpffs: PathBuf,
    log: PathBuf,
    daemon: Option<Child>,
    /// Its routing daemon's processes (BIRD, or FRR's zebra, bfdd and bgpd).
    routing: Vec<Child>,
    fs: Option<Bpffs>,
}

pub struct Fleet {
    pub dir: PathBuf,
    pub client: Netns,
    pub router: Netns,
    pub provider: Netns,
    pub ctl: Netns,
    pub nodes: Vec<Node>,
    etcd: Option<Child>,
    /// The router's BIRD and its forwarding plane (with BGP).
    router_procs: Vec<Child>,
    /// The routing daemon of the router and the nodes (None: a static route).
    pub routing: Option<Routing>,
    /// BGP on the provider side too (BIRD): each node announces its SNAT slices
    /// (`SNAT_ANNOUNCE_TABLE`) to a router in the provider's namespace instead of
    /// static routes there.
    pub provider_bgp: bool,
    /// The daemons replicate flows (`--replication-listen` on the management network).
    pub replicate: bool,
    /// Set: backend i refuses connections (its health checks fail).
    pub paused: Vec<Arc<AtomicBool>>,
    stop: Arc<AtomicBool>,
    _pass: Vec<Dataplane>,
    /// Held for the fleet's life (released last).
    _turn: Turn,
}

/// At most this many fleets run at once in one test process: each is an etcd, three
/// daemons and their routing daemons, and a daemon's start (the verifier) slows with
/// every other one; four at once on two cores pushed restarts past the grace.
const FLEETS_AT_ONCE: usize = 2;
static RUNNING: std::sync::Mutex<usize> = std::sync::Mutex::new(0);
static FREED: std::sync::Condvar = std::sync::Condvar::new();

/// A fleet's turn to run.
struct Turn;

impl Turn {
    fn take() -> Turn {
        let mut n = RUNNING.lock().unwrap_or_else(|p| p.into_inner());
        while *n >= FLEETS_AT_ONCE {
            n = FREED.wait(n).unwrap_or_else(|p| p.into_inner());
        }
        *n += 1;
        Turn
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        *RUNNING.lock().unwrap_or_else(|p| p.into_inner()) -= 1;
        FREED.notify_one();
    }
}

fn attach_pass(ns: &Netns, dev: &str) -> Dataplane {
    let mut pass = Dataplane::load(&LoadOptions { ct_capacity: 1024, pin_dir: None }).expect("load the XDP object");
    let idx = ns.ifindex(dev);
    let name = ns.name.clone();
    std::thread::scope(|sc| {
        sc.spawn(|| {
            Netns { name }.enter_and_forget();
            pass.attach_pass(idx, XdpMode::Driver).map(|_| ())
        })
        .join()
    })
    .expect("attach thread")
    .expect("attach XDP_PASS");
    pass
}

impl Fleet {
    /// The namespaces, etcd, and `n` daemons (nodes `gw1`..`gwN`) all joined, behind
    /// a static multipath route.
    pub fn new(n: usize) -> Fleet {
        Fleet::build(n, None)
    }

    /// The same with BGP: BIRD on every node and on the router (see the module).
    pub fn with_bgp(n: usize) -> Fleet {
        Fleet::build(n, Some(Routing::Bird))
    }

    /// The same with BGP spoken by `routing` (BIRD or FRR) on every node and the router.
    pub fn with_routing(n: usize, routing: Routing) -> Fleet {
        Fleet::build(n, Some(routing))
    }

    /// BIRD on both sides: the consumer's router as `with_bgp`, and the provider's
    /// namespace routes each SNAT slice where the nodes announce it (a dead node's to
    /// the buddy that took it over).
    pub fn with_bgp_both_sides(n: usize) -> Fleet {
        Fleet::build_with(n, Some(Routing::Bird), true, true)
    }

    /// `new` with no flow replication (`--replication-listen` left out).
    pub fn new_without_replication(n: usize) -> Fleet {
        Fleet::build_with(n, None, false, false)
    }

    fn build(n: usize, routing: Option<Routing>) -> Fleet {
        Fleet::build_with(n, routing, false, true)
    }

    fn build_with(n: usize, routing: Option<Routing>, provider_bgp: bool, replicate: bool) -> Fleet {
        let turn = Turn::take();
        let bgp = routing.is_some();
        let k = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = PathBuf::from(format!("/run/pltest{}-fleet-{k}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let client = Netns::new("fc");
        let router = Netns::new("fr");
        let provider = Netns::new("fp");
        let ctl = Netns::new("fctl");
        for ns in [&router, &provider] {
            ns.sysctl("net.ipv4.ip_forward", "1");
            ns.sysctl("net.ipv4.conf.all.rp_filter", "0");
            ns.sysctl("net.ipv4.conf.default.rp_filter", "0");
        }
        router.sysctl("net.ipv4.fib_multipath_hash_policy", "1");
        veth(&client, "c0", &router, "r-c");
        client.ip(&["addr", "add", "10.0.0.2/24", "dev", "c0"]);
        // The endpoints' addresses (10.0.0.64-127) are behind the router.
        client.ip(&["route", "add", "10.0.0.64/26", "via", "10.0.0.1"]);
        host_offloads(&client, "c0");
        router.ip(&["addr", "add", "10.0.0.1/24", "dev", "r-c"]);
        for b in BACKENDS {
            provider.ip(&["addr", "add", &format!("{b}/32"), "dev", "lo"]);
        }
        ctl.ip(&["link", "add", "br-m", "type", "bridge"]);
        ctl.ip(&["addr", "add", "10.255.0.100/24", "dev", "br-m"]);
        ctl.ip(&["link", "set", "br-m", "up"]);

        let mut pass = Vec::new();
        let mut nodes = Vec::new();
        let mut hops = Vec::new();
        for i in 1..=n {
            let gw = Netns::new(&format!("fg{i}"));
            gw.sysctl("net.ipv4.ip_forward", "1");
            gw.sysctl("net.ipv4.conf.all.rp_filter", "0");
            gw.sysctl("net.ipv4.conf.default.rp_filter", "0");
            let r_if = format!("r-g{i}");
            veth(&gw, "gw-c0", &router, &r_if);
            gw.ip(&["addr", "add", &format!("172.16.{i}.2/30"), "dev", "gw-c0"]);
            gw.ip(&["route", "add", "10.0.0.0/24", "via", &format!("172.16.{i}.1")]);
            router.ip(&["addr", "add", &format!("172.16.{i}.1/30"), "dev", &r_if]);
            pass.push(attach_pass(&router, &r_if));
            hops.extend(["nexthop".to_string(), "via".into(), format!("172.16.{i}.2"), "dev".into(), r_if.clone()]);

            let p_if = format!("p{i}");
            veth(&gw, "gw-prov", &provider, &p_if);
            gw.ip(&["addr", "add", &format!("192.168.2.{i}/24"), "dev", "gw-prov"]);
            provider.ip(&["addr", "add", &format!("192.168.2.{}/24", 200 + i), "dev", &p_if]);
            // Every link is on 192.168.2.0/24: answers to node i (its health checks)
            // leave by node i's link.
            provider.ip(&["route", "add", &format!("192.168.2.{i}/32"), "dev", &p_if]);
            host_offloads(&provider, &p_if);
            pass.push(attach_pass(&provider, &p_if));

            let m_if = format!("m{i}");
            veth(&gw, "m0", &ctl, &m_if);
            gw.ip(&["addr", "add", &format!("10.255.0.{i}/24"), "dev", "m0"]);
            ctl.ip(&["link", "set", &m_if, "master", "br-m"]);
            // XDP on the bridge's side: a veth delivers redirected frames (hand-offs)
            // only to a peer running XDP. Only where a hand-off can happen (BGP on the
            // provider side, three nodes or more): with these programs on the bridge's
            // ports, destroying one node's namespace has cut another node off etcd now
            // and then (not understood yet; likewise raising the ports' MTU to 1600).
            // The management MTU stays 1500: the sessions' segments are small.
            if provider_bgp && n >= 3 {
                pass.push(attach_pass(&ctl, &m_if));
            }

            let fs = Bpffs::new(dir.join(format!("bpffs{i}")));
            nodes.push(Node {
                name: format!("gw{i}"),
                ns: gw,
                socket: dir.join(format!("gw{i}.sock")),
                bpffs: fs.0.join("privatelink"),
                log: dir.join(format!("gw{i}.log")),
                daemon: None,
                routing: Vec::new(),
                fs: Some(fs),
            });
        }
        // Each node's SNAT slice goes back to it (node i holds slice i-1: they join in
        // order), unless the nodes announce them.
        for i in (1..=n).filter(|_| !provider_bgp) {
            let slice = format!("11.163.{}.0/18", (i - 1) * 64);
            provider.ip(&["route", "add", &slice, "via", &format!("192.168.2.{i}"), "dev", &format!("p{i}")]);
        }
        if !bgp {
            let mut args = vec!["route", "add", "10.0.0.100/32"];
            args.extend(hops.iter().map(String::as_str));
            router.ip(&args);
        }

        let stop = Arc::new(AtomicBool::new(false));
        let paused: Vec<_> = BACKENDS.iter().map(|_| Arc::new(AtomicBool::new(false))).collect();
        for (i, b) in BACKENDS.iter().enumerate() {
            start_tcp_server(&provider, SocketAddr::from((*b, SERVICE_TCP_PORT)), format!("backend-{i}"), stop.clone(), paused[i].clone());
            start_udp_server(&provider, SocketAddr::from((*b, SERVICE_UDP_PORT)), format!("backend-{i}"), stop.clone());
        }
        let mut fleet = Fleet { dir, client, router, provider, ctl, nodes, etcd: None, routing, provider_bgp, replicate, router_procs: Vec::new(), paused, stop, _pass: pass, _turn: turn };
        fleet.start_etcd();
        if provider_bgp {
            fleet.start_provider_router();
        }
        if bgp {
            fleet.start_router();
            for i in 0..n {
                fleet.start_routing(i);
            }
        }
        for i in 0..n {
            fleet.start(i);
            // In order, so node i holds slice i-1 (the provider's routes above).
            fleet.wait_until("the node to join", |f| f.nodes_seen(i) == i + 1);
        }
        fleet
    }

    fn start_etcd(&mut self) {
        let data = self.dir.join("etcd");
        let log = std::fs::File::create(self.dir.join("etcd.log")).unwrap();
        let url = format!("http://{ETCD}");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ctl.name, "etcd", "--name", "pl", "--data-dir"])
            .arg(&data)
            .args(["--listen-client-urls", &url, "--advertise-client-urls", &url])
            .args(["--listen-peer-urls", "http://127.0.0.1:2380", "--initial-advertise-peer-urls", "http://127.0.0.1:2380"])
            .args(["--initial-cluster", "pl=http://127.0.0.1:2380", "--auto-compaction-mode", "revision", "--auto-compaction-retention", "1000"])
            .args(["--max-request-bytes", "4194304"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start etcd (apt install etcd-server: cargo xtask setup)");
        self.etcd = Some(child);
        let start = Instant::now();
        // Ready when it says so.
        while self.etcdctl(&["endpoint", "health"]).code != 0 {
            assert!(start.elapsed() < Duration::from_secs(20), "etcd did not come up:\n{}", std::fs::read_to_string(self.dir.join("etcd.log")).unwrap_or_default());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn spawn_in(&self, ns: &str, what: &str, args: &[&str]) -> Child {
        let log = std::fs::File::create(self.dir.join(format!("{what}.log"))).unwrap();
        Command::new("ip")
            .args(["netns", "exec", ns])
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {what}: {e}"))
    }

    /// Node `i` dies: everything running in it (its daemon, the daemon's announce
    /// keeper, its BIRD) is killed (SIGKILL, no goodbye).
    pub fn kill(&mut self, i: usize) {
        kill_inside(&self.nodes[i].ns.name);
        for mut c in self.nodes[i].daemon.take().into_iter().chain(self.nodes[i].routing.drain(..)) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Node `i`'s daemon alone crashes (SIGKILL): its announce keeper and its routing
    /// daemon go on.
    pub fn crash(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].daemon.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Node `i`'s daemon stops or goes on running (SIGSTOP, SIGCONT): a wedged daemon.
    pub fn freeze(&self, i: usize, frozen: bool) {
        let child = self.nodes[i].daemon.as_ref().expect("a running daemon");
        // SAFETY: signalling our own child (`ip netns exec` execs the daemon).
        unsafe { libc::kill(child.id() as i32, if frozen { libc::SIGSTOP } else { libc::SIGCONT }) };
    }

    /// Node `i`'s namespace dies: its processes are killed and the namespace deleted
    /// (its links, and the router's end of them, go with it).
    pub fn destroy(&mut self, i: usize) {
        self.kill(i);
        sh(&["ip", "netns", "del", &self.nodes[i].ns.name]);
    }

    /// `etcdctl` against the lab's etcd (from its namespace).
    pub fn etcdctl(&self, args: &[&str]) -> Run {
        Command::new("ip")
            .args(["netns", "exec", &self.ctl.name, "etcdctl", "--endpoints", ETCD, "--command-timeout=2s"])
            .args(args)
            .env("ETCDCTL_API", "3")
            .output()
            .expect("run etcdctl")
            .into()
    }

    /// `curl` to node `i`'s tenant API (in its namespace) with `token`: status, JSON
    /// body (null when empty), ETag.
    pub fn api(&self, i: usize, token: &str, method: &str, path: &str, body: Option<&str>, headers: &[&str]) -> (u16, serde_json::Value, String) {
        let url = format!("http://{API}{path}");
        let auth = format!("Authorization: Bearer {token}");
        let mut args = vec!["curl", "-sS", "-X", method, "-H", &auth, "-w", "\n%{http_code}\n%header{etag}"];
        for h in headers {
            args.extend(["-H", h]);
        }
        if let Some(b) = body {
            args.extend(["-H", "Content-Type: application/json", "--data-binary", b]);
        }
        args.push(&url);
        let o = self.nodes[i].ns.exec(&args);
        let out = String::from_utf8_lossy(&o.stdout).to_string();
        let mut tail = out.rsplitn(3, '\n');
        let (etag, code, text) = (tail.next().unwrap_or(""), tail.next().unwrap_or(""), tail.next().unwrap_or(""));
        let json = if text.is_empty() { serde_json::Value::Null } else { serde_json::from_str(text).unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {text}")) };
        (code.parse().unwrap_or_else(|_| panic!("{out}")), json, etag.to_string())
    }

    /// The value of metric `name` (without labels) in node `i`'s scrape.
    pub fn metric(&self, i: usize, name: &str) -> Option<f64> {
        let o = self.nodes[i].ns.exec(&["curl", "-sS", &format!("http://{METRICS}/metrics")]);
        String::from_utf8_lossy(&o.stdout).lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
    }

    /// Start node `i`'s daemon and wait until it answers.
    pub fn start(&mut self, i: usize) {
        let node = &self.nodes[i];
        assert!(node.daemon.is_none());
        let state = self.dir.join(format!("state{i}"));
        let mut args = [
            "--state-dir", path_str(&state), "--bpffs", path_str(&node.bpffs),
            "--store", &format!("etcd://{ETCD}"), "--node", &node.name, "--zone", &format!("z{}", 1 + i % 2),
            // The tenant API, plain HTTP on the node's own loopback (`API`).
            "--api-listen", API,
            "--restart-grace", &format!("{}s", RESTART_GRACE.as_secs()),
            // Prometheus metrics, on the node's own loopback (`metric`).
            "--metrics", METRICS,
        ]
        .map(String::from)
        .to_vec();
        if self.replicate {
            // Flows to the buddy and from the nodes it is buddy of, on the management network.
            args.extend(["--replication-listen".to_string(), format!("10.255.0.{}:{REPLICATION_PORT}", i + 1)]);
        }
        let mut child = spawn_daemon(&node.ns.name, &node.socket, &args, &[], &node.log);
        if let Err(e) = wait_answering(&mut child, &node.socket, &node.log) {
            panic!("daemon {i}: {e}");
        }
        self.nodes[i].daemon = Some(child);
    }

    /// Stop node `i`'s daemon (SIGTERM): its pins stay, so its data path goes on.
    pub fn stop(&mut self, i: usize) {
        let Some(mut child) = self.nodes[i].daemon.take() else { return };
        // SAFETY: signalling our own child (`ip netns exec` execs the daemon).
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let start = Instant::now();
        while child.try_wait().unwrap().is_none() {
            if start.elapsed() > Duration::from_secs(10) {
                let _ = child.kill();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.nodes[i].log).unwrap_or_default()
    }

    pub fn logs(&self) -> String {
        (0..self.nodes.len()).map(|i| format!("--- {} ---\n{}", self.nodes[i].name, self.log(i))).collect()
    }

    pub fn cli(&self, i: usize, args: &[&str]) -> Run {
        cli_at(&self.nodes[i].socket, args)
    }

    #[track_caller]
    pub fn ok(&self, i: usize, args: &[&str]) -> String {
        let r = self.cli(i, args);
        assert_eq!(r.code, 0, "node {i}: privatelink {args:?} failed: {r:#?}\n{}", self.logs());
        r.stdout
    }

    #[track_caller]
    pub fn json(&self, i: usize, args: &[&str]) -> serde_json::Value {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        let out = self.ok(i, &a);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {out}"))
    }

    /// Write `spec` to a file and `apply -f` it on node `i`.
    pub fn apply(&self, i: usize, spec: &str) -> Run {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = self.dir.join(format!("spec-{n}.yaml"));
        std::fs::write(&path, spec).unwrap();
        self.cli(i, &["apply", "-f", path.to_str().unwrap()])
    }

    /// How many nodes node `i` lists as up.
    pub fn nodes_seen(&self, i: usize) -> usize {
        let r = self.cli(i, &["get", "nodes", "-o", "json"]);
        let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap_or_default();
        v.as_array().map_or(0, |a| a.iter().filter(|n| n["state"] == "up").count())
    }

    /// Wait (up to 20 s) until `f` holds.
    #[track_caller]
    pub fn wait_until(&self, what: &str, mut f: impl FnMut(&Fleet) -> bool) {
        let start = Instant::now();
        while !f(self) {
            assert!(start.elapsed() < Duration::from_secs(30), "timed out waiting for {what}\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Run `f` on a thread inside the client's namespace and wait for it.
    pub fn in_client<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        self.client.spawn(f).join().expect("client thread panicked")
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for i in 0..self.nodes.len() {
            if self.nodes[i].daemon.is_some() {
                // A test that failed with a daemon frozen leaves it able to go down.
                self.freeze(i, false);
                let _ = self.cli(i, &["down"]);
            }
            for mut c in self.nodes[i].daemon.take().into_iter().chain(self.nodes[i].routing.drain(..)) {
                let _ = c.kill();
                let _ = c.wait();
            }
            let _ = Command::new(privatelink_bin()).arg("--socket").arg(&self.nodes[i].socket).args(["down", "--bpffs"]).arg(&self.nodes[i].bpffs).output();
            drop(self.nodes[i].fs.take());
        }
        for mut c in self.etcd.take().into_iter().chain(self.router_procs.drain(..)) {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = sh(&["true"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
