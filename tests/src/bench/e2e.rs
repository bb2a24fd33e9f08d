//! Part 3: end to end through a gateway namespace, client | gateway | server on veths,
//! every variant in the same run, interleaved trial by trial:
//! D direct routing (no NAT), F an XDP forwarder without NAT (R1), X privatelink,
//! N nftables DNAT + SNAT with a `ct count` limit, H HAProxy in TCP mode.
//!
//! Identical settings for all: the hosts' veth ends run XDP_PASS (a veth only takes
//! XDP_TX'd or redirected frames with NAPI running) and have tx checksum offload off
//! (an XDP rewrite of a partial checksum breaks it); the generator's frames arrive at
//! the gateway through XDP_TX, so D and N get XDP_PASS on the gateway's client-side
//! veth too. Senders run on CPU 0. `PLBENCH_DEBUG=1` prints every veth's counters and
//! the gateway's `nstat` after each UDP run (where did the packets go).

use super::{summary, Effort, Row};
use crate::{
    frame::{Packet, SYN},
    netns::{veth, Netns},
};
use aya::programs::{links::FdLink, TestRun, TestRunAttrs, TestRunOptions, XdpMode};
use privatelink::dataplane::{
    loader::{Dataplane, LoadOptions},
    maglev::{self, Member},
    maps::ip_raw,
    sweep::{Scope, Timeouts},
};
use privatelink_common::*;
use std::{
    io::{Read, Write},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

const PART: &str = "3. end to end (veth, netns)";
const SERVER: Ipv4Addr = Ipv4Addr::new(192, 168, 2, 10);
const ENDPOINT: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 100);
const SNAT: Ipv4Addr = Ipv4Addr::new(11, 163, 0, 1);
const PINGPONG: u16 = 7000;
const HTTP: u16 = 8080;
const IPERF: u16 = 5201;
const DISCARD: u16 = 9;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    D,
    F,
    X,
    /// privatelink attached in generic (skb) mode.
    G,
    N,
    H,
}

impl Variant {
    const ALL: [Variant; 6] = [Variant::D, Variant::F, Variant::X, Variant::G, Variant::N, Variant::H];
    fn label(self) -> &'static str {
        match self {
            Variant::D => "D direct routing",
            Variant::F => "F XDP forwarder (R1)",
            Variant::X => "X privatelink",
            Variant::G => "G privatelink, generic (skb) XDP mode",
            Variant::N => "N nftables NAT + ct count",
            Variant::H => "H HAProxy (tcp mode)",
        }
    }
    /// Where a client connects for service port `port`.
    fn target(self, port: u16) -> SocketAddr {
        match self {
            Variant::D | Variant::F => SocketAddr::from((SERVER, port)),
            _ => SocketAddr::from((ENDPOINT, port)),
        }
    }
}

struct Bed {
    client: Netns,
    gw: Netns,
    server: Netns,
    dp: Dataplane,
    /// R1 and the traffic generator.
    bench: super::object::BenchObject,
    links: Vec<FdLink>,
    haproxy: Option<Child>,
    nginx: Option<Child>,
    iperf: Option<Child>,
    dir: std::path::PathBuf,
    gw_c: u32,
    gw_s: u32,
}

fn pin_to_cpu(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t with one CPU set, for the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

fn rx_packets(ns: &Netns, dev: &str) -> u64 {
    ns.sys(dev, "statistics/rx_packets").parse().unwrap_or(0)
}

/// A 1-byte ping-pong of `n` round trips on one connection to `target`, from CPU
/// `cpu` (call it inside the client namespace); `connected` runs once the connection
/// is up. (p50, p99) in microseconds.
fn pingpong(target: SocketAddr, n: usize, cpu: usize, connected: impl FnOnce()) -> Option<(f64, f64)> {
    pin_to_cpu(cpu);
    let mut s = TcpStream::connect_timeout(&target, Duration::from_secs(2)).ok()?;
    s.set_nodelay(true).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    connected();
    let mut b = [7u8; 1];
    let mut us = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        s.write_all(&b).ok()?;
        s.read_exact(&mut b).ok()?;
        us.push(t.elapsed().as_secs_f64() * 1e6);
    }
    us.sort_by(|a, b| a.total_cmp(b));
    Some((us[n / 2], us[n * 99 / 100]))
}

/// Busy CPU time of all CPUs so far (ns), from /proc/stat.
fn cpu_busy_ns() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let f: Vec<u64> = stat.lines().next().unwrap_or_default().split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal: busy = all but idle and iowait.
    let busy: u64 = f.iter().enumerate().filter(|(i, _)| *i != 3 && *i != 4).map(|(_, v)| *v).sum();
    busy * (1_000_000_000 / 100) // USER_HZ = 100
}

impl Bed {
    fn new() -> Bed {
        let client = Netns::new("bcli");
        let gw = Netns::new("bgw");
        let server = Netns::new("bsrv");
        veth(&client, "c0", &gw, "gw-c");
        veth(&gw, "gw-s", &server, "s0");
        client.ip(&["addr", "add", "10.0.0.2/24", "dev", "c0"]);
        client.ip(&["route", "add", "192.168.2.0/24", "via", "10.0.0.1"]);
        gw.ip(&["addr", "add", "10.0.0.1/24", "dev", "gw-c"]);
        gw.ip(&["addr", "add", "10.0.0.100/32", "dev", "gw-c"]);
        gw.ip(&["addr", "add", "192.168.2.1/24", "dev", "gw-s"]);
        server.ip(&["addr", "add", "192.168.2.10/24", "dev", "s0"]);
        server.ip(&["route", "add", "10.0.0.0/24", "via", "192.168.2.1"]);
        server.ip(&["route", "add", "11.163.0.0/16", "via", "192.168.2.1"]);
        for (k, v) in [("net.ipv4.ip_forward", "1"), ("net.ipv4.conf.all.rp_filter", "0"), ("net.ipv4.conf.default.rp_filter", "0"), ("net.ipv4.ip_nonlocal_bind", "1")] {
            gw.sysctl(k, v);
        }
        client.sysctl("net.ipv4.ip_local_port_range", "1024 65535");
        client.sysctl("net.ipv4.tcp_tw_reuse", "1");
        for (ns, dev) in [(&client, "c0"), (&server, "s0")] {
            ns.exec(&["ethtool", "-K", dev, "tx", "off"]);
        }
        gw.enter();
        let mut dp = Dataplane::load(&LoadOptions { ct_capacity: 2 << 20, pin_dir: None }).expect("load the XDP object");
        let (gw_c, gw_s) = (gw.ifindex("gw-c"), gw.ifindex("gw-s"));
        // X's configuration: one endpoint, one backend, the bench's ports.
        let m = &mut dp.maps;
        m.set_vpc(gw_c, VpcInfo { vpc_id: 1, mac: gw.mac("gw-c"), flow_limit: 1 << 24, table_flow_limit: 1 << 24, ..Default::default() }).unwrap();
        m.set_vpc(gw_s, VpcInfo { vpc_id: 2, mac: gw.mac("gw-s"), flow_limit: 1 << 24, table_flow_limit: 1 << 24, ..Default::default() }).unwrap();
        m.add_snat_range(Ipv4Addr::new(11, 163, 0, 0), 16).unwrap();
        m.set_service(0, ServiceInfo { ifindex: gw_s, vpc_id: 2, active: 1, ..Default::default() }).unwrap();
        for p in [PINGPONG, HTTP, IPERF] {
            m.set_port(0, PROTO_TCP, p, p).unwrap();
        }
        m.set_port(0, PROTO_UDP, DISCARD, DISCARD).unwrap();
        m.set_backend(0, SERVER, true).unwrap();
        // As the daemon does: the kernel keeps the backend's neighbour resolved.
        gw.ip(&["neigh", "replace", &SERVER.to_string(), "dev", "gw-s", "managed"]);
        m.set_maglev(0, &maglev::table(&[Member { index: 0, id: ip_raw(SERVER), weight: 100 }])).unwrap();
        let ep = EndpointInfo { service: 0, conn_limit: 1_000_000, state: EP_STATE_ACCEPTED, half_open_limit: 1_000_000, flow_limit: 1 << 24, ..Default::default() };
        m.set_ep_snat(0, Some(SNAT)).unwrap();
        m.set_endpoint(0, ep).unwrap();
        m.bind_endpoint_ip(1, ENDPOINT, 0).unwrap();
        // XDP_PASS on the hosts' ends, for every variant.
        let mut links = Vec::new();
        for (ns, dev) in [(&client, "c0"), (&server, "s0")] {
            let idx = ns.ifindex(dev);
            let name = ns.name.clone();
            let l = std::thread::scope(|sc| {
                sc.spawn(|| {
                    Netns { name }.enter_and_forget();
                    dp.attach_program(PROG_PASS, idx, XdpMode::Driver)
                })
                .join()
                .unwrap()
            })
            .expect("XDP_PASS on a host veth");
            links.push(l);
        }
        let dir = std::env::temp_dir().join(format!("plbench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bench = super::object::BenchObject::load();
        let mut bed = Bed { client, gw, server, dp, bench, links, haproxy: None, nginx: None, iperf: None, dir, gw_c, gw_s };
        bed.start_servers();
        bed
    }

    fn start_servers(&mut self) {
        // Ping-pong echo (one byte back per byte in).
        let l = self.server.spawn(|| TcpListener::bind(("0.0.0.0", PINGPONG))).join().unwrap().expect("bind ping-pong");
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut s = s;
                    s.set_nodelay(true).ok();
                    let mut b = [0u8; 1];
                    while s.read_exact(&mut b).is_ok() && s.write_all(&b).is_ok() {}
                });
            }
        });
        let conf = self.dir.join("nginx.conf");
        std::fs::write(
            &conf,
            format!(
                "worker_processes 1;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/nginx.err;\ndaemon off;\nevents {{ worker_connections 4096; }}\nhttp {{ access_log off; server {{ listen {HTTP} reuseport backlog=4096; location / {{ return 200 \"ok\\n\"; }} }} }}\n",
                d = self.dir.display()
            ),
        )
        .unwrap();
        let spawn = |ns: &Netns, args: &[&str]| -> Child {
            Command::new("ip").args(["netns", "exec", &ns.name]).args(args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("start a bench server")
        };
        self.nginx = Some(spawn(&self.server, &["nginx", "-c", conf.to_str().unwrap()]));
        self.iperf = Some(spawn(&self.server, &["iperf3", "-s", "-p", &IPERF.to_string()]));
        let hcfg = self.dir.join("haproxy.cfg");
        let mut h = String::from("global\n  maxconn 9000\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n");
        for p in [PINGPONG, HTTP, IPERF] {
            h.push_str(&format!("listen l{p}\n  bind {ENDPOINT}:{p}\n  server s {SERVER}:{p}\n"));
        }
        std::fs::write(&hcfg, h).unwrap();
        self.haproxy = Some(spawn(&self.gw, &["haproxy", "-f", hcfg.to_str().unwrap()]));
        std::thread::sleep(Duration::from_millis(500));
    }

    /// Configure the gateway for `v` (and undo every other variant).
    fn switch(&mut self, v: Variant) {
        self.links.truncate(2);
        let _ = self.gw.try_exec(&["nft", "flush", "ruleset"]);
        let gw_c = self.gw_c;
        let gw_s = self.gw_s;
        match v {
            Variant::D | Variant::N | Variant::H => {
                self.links.push(self.dp.attach_program(PROG_PASS, gw_c, XdpMode::Driver).unwrap());
            }
            Variant::F => {
                self.links.push(self.bench.attach(PROG_FWD, gw_c, XdpMode::Driver));
                self.links.push(self.bench.attach(PROG_FWD, gw_s, XdpMode::Driver));
            }
            Variant::X => {
                self.links.push(self.dp.attach_program(PROG_XDP, gw_c, XdpMode::Driver).unwrap());
                self.links.push(self.dp.attach_program(PROG_XDP, gw_s, XdpMode::Driver).unwrap());
            }
            Variant::G => {
                self.links.push(self.dp.attach_program(PROG_XDP, gw_c, XdpMode::Skb).unwrap());
                self.links.push(self.dp.attach_program(PROG_XDP, gw_s, XdpMode::Skb).unwrap());
            }
        }
        if v == Variant::N {
            let mut rules = String::from("table ip plbench {\n chain pre {\n  type nat hook prerouting priority -100;\n");
            for p in [PINGPONG, HTTP, IPERF] {
                rules.push_str(&format!("  ip daddr {ENDPOINT} tcp dport {p} dnat to {SERVER}:{p}\n"));
            }
            rules.push_str(&format!("  ip daddr {ENDPOINT} udp dport {DISCARD} dnat to {SERVER}:{DISCARD}\n }}\n"));
            rules.push_str(&format!(" chain post {{\n  type nat hook postrouting priority 100;\n  ip daddr {SERVER} ip saddr 10.0.0.0/24 snat to {SNAT}\n }}\n"));
            rules.push_str(&format!(" chain guard {{\n  type filter hook forward priority 0;\n  ct state new ip daddr {SERVER} ct count over 1000000 reject\n }}\n}}\n"));
            let f = self.dir.join("rules.nft");
            std::fs::write(&f, rules).unwrap();
            self.gw.exec(&["nft", "-f", f.to_str().unwrap()]);
        }
        // Flows of an earlier trial go (X keeps state in its own table).
        let t = Timeouts { tcp_syn: Duration::ZERO, tcp_established: Duration::ZERO, tcp_closing: Duration::ZERO, udp: Duration::ZERO };
        let _ = self.dp.sweep(Scope::Idle(t));
        std::thread::sleep(Duration::from_millis(100));
    }

    fn offloads(&self, matched: bool) {
        let state = if matched { "off" } else { "on" };
        for (ns, dev) in [(&self.client, "c0"), (&self.gw, "gw-c"), (&self.gw, "gw-s"), (&self.server, "s0")] {
            let _ = ns.try_exec(&["ethtool", "-K", dev, "tso", state, "gso", state, "gro", state]);
            if matched || (dev != "c0" && dev != "s0") {
                let _ = ns.try_exec(&["ethtool", "-K", dev, "tx", if matched { "off" } else { "on" }]);
            }
        }
    }

    /// UDP small packets: generator rate in, what reaches the server per second, and
    /// busy CPU-ns of the whole machine per delivered packet.
    /// The generator's frame, padded to `TX_FRAME_LEN` (Ethernet padding).
    fn load_frame(&mut self, frame: &[u8]) {
        let mut f = [0u8; TX_FRAME_LEN];
        f[..frame.len().min(TX_FRAME_LEN)].copy_from_slice(&frame[..frame.len().min(TX_FRAME_LEN)]);
        self.bench.set_tx_frame(f);
    }

    /// Send `frame` `packets` times out of the client's veth from CPU 0 (live-frames
    /// BPF_PROG_TEST_RUN of the XDP_TX generator), as fast as it goes.
    fn send(&mut self, frame: &[u8], packets: u32) -> Result<(), aya::programs::ProgramError> {
        self.load_frame(frame);
        let mut frame = frame.to_vec();
        frame.resize(TX_FRAME_LEN, 0);
        let c0 = self.client.ifindex("c0");
        let name = self.client.name.clone();
        let bench = &self.bench;
        std::thread::scope(|sc| {
            sc.spawn(|| {
                Netns { name }.enter_and_forget();
                pin_to_cpu(0);
                let prog = bench.program(PROG_TX);
                let ctx = crate::packet_lab::xdp_md(c0, frame.len());
                let opts = TestRunOptions {
                    data_in: Some(&frame),
                    ctx_in: Some(&ctx),
                    repeat: packets,
                    attrs: TestRunAttrs::new().xdp_live_frames(64),
                    ..Default::default()
                };
                prog.test_run(opts).map(|_| ())
            })
            .join()
            .expect("generator thread")
        })
    }

    fn udp_rate(&mut self, v: Variant, packets: u32) -> (f64, f64) {
        let dst = v.target(DISCARD);
        let dst_ip = match dst.ip() {
            std::net::IpAddr::V4(ip) => ip,
            _ => unreachable!(),
        };
        let frame = Packet::udp((Ipv4Addr::new(10, 0, 0, 2), 40000), (dst_ip, DISCARD))
            .macs(self.client.mac("c0"), self.gw.mac("gw-c"))
            .payload(&[0u8; 18])
            .build();
        let before = rx_packets(&self.server, "s0");
        let cpu0 = cpu_busy_ns();
        let t = Instant::now();
        self.send(&frame, packets).expect("live-frames generator");
        std::thread::sleep(Duration::from_millis(200));
        let secs = t.elapsed().as_secs_f64() - 0.2;
        let got = rx_packets(&self.server, "s0").saturating_sub(before);
        if std::env::var_os("PLBENCH_DEBUG").is_some() {
            eprintln!("frame dst mac {:02x?} src mac {:02x?}; gw-c now {:02x?}", &frame[0..6], &frame[6..12], self.gw.mac("gw-c"));
            for (ns, dev) in [(&self.client, "c0"), (&self.gw, "gw-c"), (&self.gw, "gw-s"), (&self.server, "s0")] {
                let o = ns.exec(&["ip", "-s", "-s", "link", "show", dev]);
                eprintln!("{v:?} {dev}: {}", String::from_utf8_lossy(&o.stdout));
            }
            let o = self.gw.exec(&["nstat", "-a"]);
            eprintln!("{}", String::from_utf8_lossy(&o.stdout).lines().filter(|l| !l.contains(" 0 ")).collect::<Vec<_>>().join("\n"));
        }
        let cpu = cpu_busy_ns().saturating_sub(cpu0) as f64;
        (got as f64 / secs, if got > 0 { cpu / got as f64 } else { f64::NAN })
    }

    /// Round trips of one byte on one connection: (p50, p99) in microseconds.
    fn rtt(&self, v: Variant, n: usize, cpu: usize) -> Option<(f64, f64)> {
        let target = v.target(PINGPONG);
        self.client.spawn(move || pingpong(target, n, cpu, || {})).join().unwrap()
    }

    fn iperf(&self, v: Variant, streams: u32, secs: u32) -> Option<f64> {
        let t = v.target(IPERF);
        let out = self.client.try_exec(&["taskset", "-c", "0", "iperf3", "-c", &t.ip().to_string(), "-p", &t.port().to_string(), "-t", &secs.to_string(), "-P", &streams.to_string(), "-J"]);
        let j: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        j["end"]["sum_received"]["bits_per_second"].as_f64().map(|b| b / 1e9)
    }

    fn wrk(&self, v: Variant, secs: u32) -> Option<f64> {
        let t = v.target(HTTP);
        let url = format!("http://{}:{}/", t.ip(), t.port());
        let out = self.client.try_exec(&["taskset", "-c", "0", "wrk", "-t1", "-c32", &format!("-d{secs}s"), "-H", "Connection: close", &url]);
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines().find_map(|l| l.strip_prefix("Requests/sec:")).and_then(|v| v.trim().parse().ok())
    }

    /// An over-limit SYN flood at the endpoint from the client's veth, on CPU 0.
    fn flood(&mut self, packets: u32) {
        let frame = Packet::tcp((Ipv4Addr::new(10, 0, 0, 3), 50000), (ENDPOINT, HTTP), SYN)
            .macs(self.client.mac("c0"), self.gw.mac("gw-c"))
            .build();
        // Refused SYNs come back as resets; some are lost when the ring is full.
        let _ = self.send(&frame, packets);
    }

    /// p99 of a ping-pong on CPU 1, with an over-limit SYN flood from CPU 0 meanwhile
    /// if `flood`.
    fn pinger_p99(&mut self, n: usize, flood: bool, flood_packets: u32) -> Option<f64> {
        let name = self.client.name.clone();
        let target = Variant::X.target(PINGPONG);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let pinger = std::thread::spawn(move || {
            Netns { name }.enter_and_forget();
            pingpong(target, n, 1, move || {
                let _ = ready_tx.send(());
                std::thread::sleep(Duration::from_millis(30));
            })
            .map(|(_, p99)| p99)
        });
        if ready_rx.recv_timeout(Duration::from_secs(3)).is_ok() && flood {
            self.flood(flood_packets);
        }
        pinger.join().ok().flatten()
    }

    fn set_limit(&mut self, limit: u32) {
        let mut ep = self.dp.maps.endpoint(0).unwrap();
        ep.conn_limit = limit;
        self.dp.maps.set_endpoint(0, ep).unwrap();
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        for c in [self.haproxy.take(), self.nginx.take(), self.iperf.take()].into_iter().flatten() {
            let mut c = c;
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn ratio(a: f64, b: f64) -> String {
    if b.is_finite() && b > 0.0 {
        format!("{:.2}", a / b)
    } else {
        "-".into()
    }
}

pub fn run(e: Effort) -> Vec<Row> {
    let trials = if e.quick { 1 } else { 5 };
    let secs = if e.quick { 1 } else { 4 };
    let udp_packets = if e.quick { 200_000 } else { 3_000_000 };
    let rtt_n = if e.quick { 500 } else { 5_000 };
    let mut bed = Bed::new();
    let mut udp: Vec<(Variant, Vec<f64>, Vec<f64>)> = Variant::ALL.iter().map(|v| (*v, vec![], vec![])).collect();
    let mut tput: Vec<(Variant, bool, u32, Vec<f64>)> = Vec::new();
    for v in Variant::ALL {
        for matched in [true, false] {
            for s in [1, 4] {
                tput.push((v, matched, s, vec![]));
            }
        }
    }
    let mut cps: Vec<(Variant, Vec<f64>)> = Variant::ALL.iter().map(|v| (*v, vec![])).collect();
    let mut rtts: Vec<(Variant, Vec<f64>, Vec<f64>)> = Variant::ALL.iter().map(|v| (*v, vec![], vec![])).collect();
    let (mut calm, mut flooded) = (Vec::new(), Vec::new());

    // Warm-up, then trials with the variants interleaved.
    for round in 0..=trials {
        let warmup = round == 0;
        for (vi, v) in Variant::ALL.into_iter().enumerate() {
            bed.switch(v);
            bed.offloads(true);
            // The generator's frames are XDP_TX'd into the client's veth, which hands
            // them only to a native program: not to HAProxy's or generic mode's gateway.
            if v != Variant::H && v != Variant::G {
                let (rate, cpu) = bed.udp_rate(v, udp_packets);
                if !warmup {
                    udp[vi].1.push(rate / 1e6);
                    udp[vi].2.push(cpu);
                }
            }
            if let Some((p50, p99)) = bed.rtt(v, rtt_n, 0) {
                if !warmup {
                    rtts[vi].1.push(p50);
                    rtts[vi].2.push(p99);
                }
            }
            if let Some(r) = bed.wrk(v, secs) {
                if !warmup {
                    cps[vi].1.push(r);
                }
            }
            bed.switch(v);
            for t in tput.iter_mut().filter(|t| t.0 == v) {
                bed.offloads(t.1);
                if let Some(g) = bed.iperf(v, t.2, secs) {
                    if !warmup {
                        t.3.push(g);
                    }
                }
            }
            bed.offloads(true);
            if v == Variant::X && !warmup {
                // An established flow's round trips, calm and under an over-limit SYN
                // flood at the same endpoint (limit 1: the flow holds it), alternated,
                // both with every CPU kept out of idle (see `IdleSpinners`) so that
                // neither measures a CPU waking up.
                let _spin = IdleSpinners::start();
                for _ in 0..3 {
                    for flood in [false, true] {
                        bed.switch(v);
                        bed.set_limit(1);
                        if let Some(p99) = bed.pinger_p99(rtt_n, flood, udp_packets) {
                            if flood { flooded.push(p99) } else { calm.push(p99) }
                        }
                        bed.set_limit(1_000_000);
                    }
                }
            }
        }
    }

    let mut rows = Vec::new();
    let med = |v: &[f64]| summary(v).0;
    let find = |list: &[(Variant, Vec<f64>, Vec<f64>)], v: Variant| list.iter().find(|x| x.0 == v).map(|x| med(&x.1)).unwrap_or(f64::NAN);
    let (uf, un) = (find(&udp, Variant::F), find(&udp, Variant::N));
    for (v, rate, cpu) in &udp {
        if rate.is_empty() {
            continue;
        }
        let note = if *v == Variant::X { format!("X/F {} , X/N {}; {:.0} CPU-ns/pkt (all CPUs)", ratio(med(rate), uf), ratio(med(rate), un), med(cpu)) } else { format!("{:.0} CPU-ns/pkt (all CPUs)", med(cpu)) };
        rows.push(Row::new(PART, format!("UDP 64-byte forwarding rate, {}", v.label()), rate, "Mpps").note(note));
    }
    for matched in [true, false] {
        for s in [1u32, 4] {
            let get = |v: Variant| tput.iter().find(|t| t.0 == v && t.1 == matched && t.2 == s).map(|t| med(&t.3)).unwrap_or(f64::NAN);
            for t in tput.iter().filter(|t| t.1 == matched && t.2 == s) {
                let profile = if matched { "matched offloads (TSO/GSO/GRO/tx-csum off)" } else { "default offloads" };
                let note = match t.0 {
                    Variant::X => format!("X/D {}, X/N {}", ratio(med(&t.3), get(Variant::D)), ratio(med(&t.3), get(Variant::N))),
                    Variant::G => format!("G/X {} (generic mode's cost)", ratio(med(&t.3), get(Variant::X))),
                    _ => String::new(),
                };
                rows.push(Row::new(PART, format!("TCP throughput, {s} stream(s), {profile}, {}", t.0.label()), &t.3, "Gbit/s").note(note));
            }
        }
    }
    let c = |v: Variant| cps.iter().find(|x| x.0 == v).map(|x| med(&x.1)).unwrap_or(f64::NAN);
    for (v, r) in &cps {
        let note = match v {
            Variant::X => format!("X/D {}, X/N {}, X/H {}", ratio(med(r), c(Variant::D)), ratio(med(r), c(Variant::N)), ratio(med(r), c(Variant::H))),
            Variant::G => format!("G/X {}", ratio(med(r), c(Variant::X))),
            _ => String::new(),
        };
        rows.push(Row::new(PART, format!("new connections/s (wrk, Connection: close, nginx), {}", v.label()), r, "conn/s").note(note));
    }
    let d50 = find(&rtts, Variant::D);
    for (v, p50, p99) in &rtts {
        let note = format!("p99 {:.1} us; p50 - D {:+.1} us", med(p99), med(p50) - d50);
        rows.push(Row::new(PART, format!("TCP round trip p50 (1-byte ping-pong), {}", v.label()), p50, "us").note(note));
    }
    rows.push(Row::new(PART, "X established p99 round trip, calm (CPUs kept busy at idle priority)", &calm, "us"));
    rows.push(
        Row::new(PART, "X established p99 round trip, over-limit SYN flood at the same endpoint (the same background)", &flooded, "us")
            .note(format!("{} x calm", ratio(med(&flooded), med(&calm)))),
    );
    rows
}

/// One thread per CPU spinning at `SCHED_IDLE`: it runs only when nothing else wants
/// the CPU, so it takes no time from the measured threads, but no CPU ever drops into
/// an idle state a packet would have to wake it from.
struct IdleSpinners {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl IdleSpinners {
    fn start() -> IdleSpinners {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = (0..cpus)
            .map(|cpu| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    // SAFETY: plain libc calls on the calling thread with valid arguments.
                    unsafe {
                        let param = libc::sched_param { sched_priority: 0 };
                        libc::sched_setscheduler(0, libc::SCHED_IDLE, &param);
                        let mut set: libc::cpu_set_t = std::mem::zeroed();
                        libc::CPU_SET(cpu, &mut set);
                        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
                    }
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        std::hint::spin_loop();
                    }
                })
            })
            .collect();
        IdleSpinners { stop, threads }
    }
}

impl Drop for IdleSpinners {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
