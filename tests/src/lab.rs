//! The network-namespace lab: a gateway namespace running the real XDP program in native
//! mode on its veths, consumer VPC namespaces with a client each, and a provider VPC
//! namespace whose backends answer with their own name and the source address they saw.
//! Everything is removed on drop. Traffic stays between these namespaces.
//!
//! Lab facts (kernel 6.18): a frame redirected or XDP_TX'd into a veth is only
//! delivered when the peer runs NAPI; `ethtool -K PEER gro on` did not make that happen
//! here, an XDP program on the peer does, so the hosts run `privatelink_pass`. Local
//! senders on veth emit partial checksums that an XDP rewrite would turn into bad ones,
//! so the hosts turn tx checksum offload off (a real NIC delivers full checksums).

use crate::netns::{veth, Netns};
use aya::programs::XdpMode;
use privatelink::dataplane::{
    loader::{Dataplane, LoadOptions},
    maglev::{self, Member},
    maps::ip_raw,
};
use privatelink_common::*;
use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

pub const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
pub const ENDPOINT: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 100);
pub const BACKENDS: [Ipv4Addr; 2] = [Ipv4Addr::new(192, 168, 2, 10), Ipv4Addr::new(192, 168, 2, 11)];
pub const GW_PROVIDER: Ipv4Addr = Ipv4Addr::new(192, 168, 2, 1);
pub const SNAT_NET: Ipv4Addr = Ipv4Addr::new(11, 163, 0, 0);
pub const SERVICE_TCP_PORT: u16 = 8080;
pub const SERVICE_UDP_PORT: u16 = 5353;
pub const ENDPOINT_TCP_PORT: u16 = 80;
pub const ENDPOINT_UDP_PORT: u16 = 53;
pub const PROVIDER_VPC: u16 = 100;

pub fn snat_ip(endpoint: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(SNAT_NET) + 1 + endpoint)
}

/// A consumer VPC: its client namespace and the gateway interface facing it.
pub struct Consumer {
    pub ns: Netns,
    pub gw_if: String,
    pub ifindex: u32,
    pub vpc_id: u16,
}

/// The namespaces, veths, XDP_PASS programs on the hosts' veth ends, and the backend
/// servers: everything but the gateway's own data path configuration.
pub struct Topology {
    pub consumers: Vec<Consumer>,
    pub provider: Netns,
    stop: Arc<AtomicBool>,
    /// Per backend: while set, its TCP server is closed (connections are refused).
    paused: Vec<Arc<AtomicBool>>,
    /// Holds the XDP_PASS attachments of the hosts' veth ends (none: bare veths).
    _pass: Option<Dataplane>,
    pub gw: Netns,
}

impl Drop for Topology {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

pub struct Lab {
    pub dp: Dataplane,
    pub topo: Topology,
}

impl std::ops::Deref for Lab {
    type Target = Topology;
    fn deref(&self) -> &Topology {
        &self.topo
    }
}

pub(crate) fn host_offloads(ns: &Netns, dev: &str) {
    ns.exec(&["ethtool", "-K", dev, "tx", "off"]);
}

impl Topology {
    /// A gateway namespace facing `consumers` consumer VPCs (interfaces `gw-c{i}`, all
    /// 10.0.0.0/24 with a client at 10.0.0.2) and one provider VPC (`gw-prov`,
    /// 192.168.2.1/24) whose backends serve TCP 8080 and UDP 5353, and route the SNAT
    /// range back to the gateway.
    pub fn new(consumers: usize) -> Topology {
        Topology::build(consumers, true)
    }

    /// `new`, but no XDP program on the hosts' veth ends (what a host that knows nothing
    /// of XDP looks like): frames an XDP program redirects into these veths in native
    /// mode vanish.
    pub fn bare(consumers: usize) -> Topology {
        Topology::build(consumers, false)
    }

    fn build(consumers: usize, peer_xdp: bool) -> Topology {
        let gw = Netns::new("gw");
        gw.sysctl("net.ipv4.ip_forward", "1");
        gw.sysctl("net.ipv4.conf.all.rp_filter", "0");
        gw.sysctl("net.ipv4.conf.default.rp_filter", "0");

        let provider = Netns::new("prov");
        veth(&gw, "gw-prov", &provider, "b0");
        gw.ip(&["addr", "add", "192.168.2.1/24", "dev", "gw-prov"]);
        for b in BACKENDS {
            provider.ip(&["addr", "add", &format!("{b}/24"), "dev", "b0"]);
        }
        // The provider's route for the SNAT range back to the gateway.
        provider.ip(&["route", "add", "11.163.0.0/16", "via", "192.168.2.1"]);
        host_offloads(&provider, "b0");

        let mut cs = Vec::new();
        for i in 0..consumers {
            let ns = Netns::new(&format!("c{i}"));
            let gw_if = format!("gw-c{i}");
            veth(&gw, &gw_if, &ns, "c0");
            gw.sysctl(&format!("net.ipv4.conf.{gw_if}.rp_filter"), "0");
            ns.ip(&["addr", "add", "10.0.0.2/24", "dev", "c0"]);
            host_offloads(&ns, "c0");
            let ifindex = gw.ifindex(&gw_if);
            cs.push(Consumer { ns, gw_if, ifindex, vpc_id: 1 + i as u16 });
        }

        // The hosts' ends of the veths: XDP_PASS, so redirected frames are delivered.
        let mut pass = peer_xdp.then(|| Dataplane::load(&LoadOptions { ct_capacity: 1024, pin_dir: None }).expect("load the XDP object"));
        for (ns, dev) in cs.iter().map(|c| (&c.ns, "c0")).chain([(&provider, "b0")]) {
            let Some(pass) = pass.as_mut() else { break };
            let idx = ns.ifindex(dev);
            let ns_name = ns.name.clone();
            // Attach from inside the host's namespace (ifindexes are per namespace).
            let handle = std::thread::scope(|sc| {
                sc.spawn(|| {
                    Netns { name: ns_name }.enter_and_forget();
                    pass.attach_pass(idx, XdpMode::Driver)
                })
                .join()
            });
            handle.expect("attach thread").expect("attach XDP_PASS to a host veth");
        }

        let stop = Arc::new(AtomicBool::new(false));
        let mut paused = Vec::new();
        for (i, b) in BACKENDS.iter().enumerate() {
            let name = format!("backend-{i}");
            let p = Arc::new(AtomicBool::new(false));
            start_tcp_server(&provider, SocketAddr::from((*b, SERVICE_TCP_PORT)), name.clone(), stop.clone(), p.clone());
            start_udp_server(&provider, SocketAddr::from((*b, SERVICE_UDP_PORT)), name, stop.clone());
            paused.push(p);
        }
        Topology { consumers: cs, provider, stop, paused, _pass: pass, gw }
    }

    /// Stop (close) or restart backend `i`'s TCP server.
    pub fn set_backend_running(&self, i: usize, running: bool) {
        self.paused[i].store(!running, Ordering::Relaxed);
        // The server loop notices within 20 ms.
        std::thread::sleep(Duration::from_millis(100));
    }

    /// Run `f` on a thread inside consumer `i`'s client namespace and wait for it.
    pub fn in_client<T: Send + 'static>(&self, i: usize, f: impl FnOnce() -> T + Send + 'static) -> T {
        self.consumers[i].ns.spawn(f).join().expect("client thread panicked")
    }
}

impl Lab {
    /// `Topology::new(consumers)` with the data path configured directly through the
    /// maps: one endpoint 10.0.0.100 per consumer VPC (endpoint index = consumer
    /// index), all on one service with both backends, tcp 80 -> 8080, udp 53 -> 5353.
    pub fn new(consumers: usize, conn_limit: u32) -> Lab {
        let topo = Topology::new(consumers);
        let (gw, cs) = (&topo.gw, &topo.consumers);
        gw.enter();
        let mut dp = Dataplane::load(&LoadOptions { ct_capacity: 65536, pin_dir: None }).expect("load the XDP object");
        let prov_if = gw.ifindex("gw-prov");
        let m = &mut dp.maps;
        let prov_mac = gw.mac("gw-prov");
        m.set_vpc(prov_if, VpcInfo { vpc_id: PROVIDER_VPC, mac: prov_mac, flow_limit: 1 << 24, table_flow_limit: 1 << 24, ..Default::default() }).unwrap();
        m.add_snat_range(SNAT_NET, 16).unwrap();
        m.set_service(0, ServiceInfo { ifindex: prov_if, vpc_id: PROVIDER_VPC, active: 1, ..Default::default() })
            .unwrap();
        m.set_port(0, PROTO_TCP, ENDPOINT_TCP_PORT, SERVICE_TCP_PORT).unwrap();
        m.set_port(0, PROTO_UDP, ENDPOINT_UDP_PORT, SERVICE_UDP_PORT).unwrap();
        let members: Vec<Member> = BACKENDS
            .iter()
            .enumerate()
            .map(|(i, b)| {
                // As the daemon does: the kernel keeps each backend's neighbour resolved
                // (the data path never hands a frame to the kernel to resolve it).
                gw.ip(&["neigh", "replace", &b.to_string(), "dev", "gw-prov", "managed"]);
                m.set_backend(i as u32, *b, true).unwrap();
                Member { index: i as u32, id: ip_raw(*b), weight: 100 }
            })
            .collect();
        m.set_maglev(0, &maglev::table(&members)).unwrap();
        for (i, c) in cs.iter().enumerate() {
            let mac = gw.mac(&c.gw_if);
            m.set_vpc(c.ifindex, VpcInfo { vpc_id: c.vpc_id, mac, flow_limit: 1 << 24, table_flow_limit: 1 << 24, ..Default::default() }).unwrap();
            let info = EndpointInfo {
                service: 0,
                conn_limit,
                state: EP_STATE_ACCEPTED,
                half_open_limit: conn_limit,
                flow_limit: 1 << 24,
                ..Default::default()
            };
            m.set_ep_snat(i as u32 * MAX_SNAT_PER_ENDPOINT, Some(snat_ip(i as u32))).unwrap();
            m.set_endpoint(i as u32, info).unwrap();
            m.bind_endpoint_ip(c.vpc_id, ENDPOINT, i as u32).unwrap();
        }
        dp.attach(prov_if, XdpMode::Driver).expect("attach XDP (native) to gw-prov");
        for c in cs {
            dp.attach(c.ifindex, XdpMode::Driver).expect("attach XDP (native) to a consumer interface");
        }
        Lab { dp, topo }
    }

    pub fn set_endpoint_state(&mut self, endpoint: u32, state: u8) {
        let mut info = self.dp.maps.endpoint(endpoint).unwrap();
        info.state = state;
        self.dp.maps.set_endpoint(endpoint, info).unwrap();
    }

}

/// Backends answer on TCP:
/// - `GET ...` (HTTP/1.0): 200 with body `backend=NAME peer=IP:PORT`;
/// - `ECHO N`: N bytes echoed back;
/// - `HOLD`: `held` then keep the connection until the client closes it.
pub(crate) fn start_tcp_server(ns: &Netns, addr: SocketAddr, name: String, stop: Arc<AtomicBool>, paused: Arc<AtomicBool>) {
    let bind = {
        let ns_name = ns.name.clone();
        move || {
            let l = std::thread::spawn({
                let ns_name = ns_name.clone();
                move || {
                    Netns { name: ns_name }.enter_and_forget();
                    TcpListener::bind(addr)
                }
            })
            .join()
            .unwrap()
            .expect("bind backend");
            l.set_nonblocking(true).unwrap();
            l
        }
    };
    let mut listener = Some(bind());
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            if paused.load(Ordering::Relaxed) {
                listener = None;
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            let l = listener.get_or_insert_with(&bind);
            match l.accept() {
                Ok((s, peer)) => {
                    let name = name.clone();
                    std::thread::spawn(move || serve(s, peer, &name));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    });
}

fn serve(s: TcpStream, peer: SocketAddr, name: &str) {
    s.set_nonblocking(false).ok();
    s.set_read_timeout(Some(Duration::from_secs(30))).ok();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut w = s;
    let mut line = String::new();
    if r.read_line(&mut line).is_err() {
        return;
    }
    if line.starts_with("GET ") {
        let mut h = String::new();
        while r.read_line(&mut h).map(|n| n > 0 && h.trim_end() != "").unwrap_or(false) {
            h.clear();
        }
        let body = format!("backend={name} peer={peer}");
        let _ = write!(w, "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
    } else if let Some(n) = line.trim().strip_prefix("ECHO ") {
        let mut left: usize = n.parse().unwrap_or(0);
        let mut buf = vec![0u8; 65536];
        while left > 0 {
            let want = left.min(buf.len());
            match r.read(&mut buf[..want]) {
                Ok(0) | Err(_) => return,
                Ok(k) => {
                    if w.write_all(&buf[..k]).is_err() {
                        return;
                    }
                    left -= k;
                }
            }
        }
    } else if line.trim() == "SESSION" {
        // One answer per line, on one connection, until the client closes it.
        let mut l = String::new();
        while r.read_line(&mut l).is_ok_and(|n| n > 0) {
            if w.write_all(format!("backend={name} peer={peer}\n").as_bytes()).is_err() {
                return;
            }
            l.clear();
        }
    } else if line.trim() == "HOLD" {
        let _ = w.write_all(b"held\n");
        let mut b = [0u8; 1];
        let _ = r.read(&mut b);
    }
    let _ = w.shutdown(Shutdown::Both);
}

pub fn start_udp_server(ns: &Netns, addr: SocketAddr, name: String, stop: Arc<AtomicBool>) {
    let sock = ns.spawn(move || UdpSocket::bind(addr)).join().unwrap().expect("bind UDP backend");
    sock.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while !stop.load(Ordering::Relaxed) {
            if let Ok((n, peer)) = sock.recv_from(&mut buf) {
                let reply = format!("backend={name} peer={peer} got={}", String::from_utf8_lossy(&buf[..n]));
                let _ = sock.send_to(reply.as_bytes(), peer);
            }
        }
    });
}

// ---- client side helpers (call them inside a client namespace) ----

pub fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    Ok(s)
}

/// HTTP/1.0 GET; returns the body of a 200 answer.
pub fn http_get(addr: SocketAddr) -> std::io::Result<String> {
    let mut s = connect(addr)?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: endpoint\r\n\r\n")?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let (head, body) = resp
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other(format!("not HTTP: {resp:?}")))?;
    if !head.starts_with("HTTP/1.0 200") {
        return Err(std::io::Error::other(format!("status: {head}")));
    }
    Ok(body.to_string())
}

/// Send `data` through an ECHO connection and return what came back.
pub fn echo(addr: SocketAddr, data: &[u8]) -> std::io::Result<Vec<u8>> {
    let s = connect(addr)?;
    let mut w = s.try_clone()?;
    w.write_all(format!("ECHO {}\n", data.len()).as_bytes())?;
    let data = data.to_vec();
    let writer = std::thread::spawn(move || w.write_all(&data));
    let mut back = Vec::new();
    (&s).read_to_end(&mut back)?;
    writer.join().expect("writer")?;
    Ok(back)
}

/// A session: one connection on which every `ask` gets the backend's
/// `backend=NAME peer=IP:PORT` line.
pub struct Session {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Session {
    pub fn open(addr: SocketAddr) -> std::io::Result<Session> {
        let mut w = connect(addr)?;
        w.set_read_timeout(Some(Duration::from_secs(5)))?;
        w.write_all(b"SESSION\n")?;
        Ok(Session { r: BufReader::new(w.try_clone()?), w })
    }

    /// One exchange: a line out, the backend's answer back.
    pub fn ask(&mut self) -> std::io::Result<String> {
        self.w.write_all(b"?\n")?;
        let mut line = String::new();
        if self.r.read_line(&mut line)? == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the session was closed"));
        }
        Ok(line.trim_end().to_string())
    }
}

/// A connection held open by the backend until dropped.
pub fn hold(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let mut s = connect(addr)?;
    s.write_all(b"HOLD\n")?;
    let mut b = [0u8; 5];
    s.read_exact(&mut b)?;
    if &b != b"held\n" {
        return Err(std::io::Error::other("backend did not hold"));
    }
    Ok(s)
}

pub fn udp_ask(addr: SocketAddr, msg: &[u8]) -> std::io::Result<String> {
    let s = UdpSocket::bind("0.0.0.0:0")?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.send_to(msg, addr)?;
    let mut buf = [0u8; 2048];
    let (n, _) = s.recv_from(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf[..n]).to_string())
}

/// FNV-1a over a byte stream: the checksum both ends compare.
pub fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ *b as u64).wrapping_mul(0x100_0000_01b3))
}

/// The peer address a backend reported in `backend=NAME peer=IP:PORT`.
pub fn reported_peer(body: &str) -> SocketAddr {
    body.split_whitespace()
        .find_map(|w| w.strip_prefix("peer="))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no peer in {body:?}"))
}
