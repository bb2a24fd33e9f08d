//! The tenant API under load, through the real daemon in its gateway namespace (plain
//! HTTP on the namespace's loopback, so what is measured is the daemon, not TLS): a
//! tenant's list of its own endpoints fetched by 100 clients at once with 10,000
//! endpoints on the gateway (200 accounts of 50, the consoles' quota); endpoints created
//! one after another through the API; and the data path's request/response round trips
//! through an endpoint, alone and while the API is hammered.

use super::{Effort, Row};
use crate::{daemon_lab::DaemonLab, netns::Netns};
use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{
        atomic::{AtomicBool, Ordering::Relaxed},
        Arc,
    },
    time::{Duration, Instant},
};

const PART: &str = "2. scale";
const API: &str = "127.0.0.1:8443";
/// Endpoints per account (the consoles' quota).
const PER_ACCOUNT: usize = 50;
/// The echo service's port on the backend (endpoint port 7).
const ECHO_PORT: u16 = 7000;

/// `n` endpoints of `n / 50` accounts (`acct{k}`), each VPC owned by nobody; one
/// service whitelisting everyone, with an HTTP port and an echo port.
pub(super) fn spec(n: usize) -> String {
    let mut s = String::from(
        "gateway:\n  conntrack_capacity: 262144\nvpcs:\n  - { name: vpc0, interface: gw-c0, cidr: 10.0.0.0/16, owner: \"acct0\" }\n  - { name: prov, interface: gw-prov, cidr: 192.168.2.0/24, owner: \"prov\" }\nservices:\n  - name: web\n    owner: \"prov\"\n    vpc: prov\n    backends: [{ address: 192.168.2.10 }]\n    ports: [{ protocol: tcp, endpoint_port: 80, service_port: 8080 }, { protocol: tcp, endpoint_port: 7, service_port: 7000 }]\n    allowed_accounts: [\"*\"]\n    auto_accept: true\n    health_check: { type: none }\nendpoints:\n",
    );
    for i in 0..n {
        let ip = std::net::Ipv4Addr::from(0x0a00_0100u32 + i as u32);
        s.push_str(&format!("  - {{ name: ep{i}, owner: \"acct{}\", vpc: vpc0, service: web, ip: {ip} }}\n", i / PER_ACCOUNT));
    }
    s
}

/// A token of `account`, made by root.
pub(super) fn token(lab: &DaemonLab, account: &str) -> String {
    lab.json(&["token", "create", "--account", account, "--name", "bench"])["token"].as_str().unwrap().to_string()
}

/// One HTTP/1.1 exchange on a kept-alive connection; the status and the body's length.
pub(super) fn exchange(s: &mut BufReader<TcpStream>, method: &str, path: &str, token: &str, body: Option<&str>) -> (u16, usize) {
    let b = body.unwrap_or("");
    let req = format!("{method} {path} HTTP/1.1\r\nHost: {API}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}", b.len());
    s.get_mut().write_all(req.as_bytes()).unwrap();
    let mut line = String::new();
    s.read_line(&mut line).unwrap();
    let status: u16 = line.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("{line:?}"));
    let mut len = 0usize;
    loop {
        line.clear();
        s.read_line(&mut line).unwrap();
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().unwrap();
        }
    }
    let mut buf = vec![0u8; len];
    s.read_exact(&mut buf).unwrap();
    (status, len)
}

pub(super) fn connect() -> BufReader<TcpStream> {
    let s = TcpStream::connect(API).expect("the tenant API");
    s.set_nodelay(true).unwrap();
    BufReader::new(s)
}

/// `clients` threads in the gateway's namespace, each on its own connection with its
/// own account's token, GETting its endpoints until `until`: every round trip's time
/// (ms).
pub(super) fn hammer(gw: &Netns, tokens: &[String], until: Instant, stop: &Arc<AtomicBool>) -> Vec<std::thread::JoinHandle<Vec<f64>>> {
    tokens
        .iter()
        .map(|t| {
            let (t, stop) = (t.clone(), stop.clone());
            gw.spawn(move || {
                let mut c = connect();
                let mut times = Vec::new();
                while Instant::now() < until && !stop.load(Relaxed) {
                    let start = Instant::now();
                    let (status, len) = exchange(&mut c, "GET", "/v1/endpoints", &t, None);
                    assert!(status == 200 && len > 1000, "GET /v1/endpoints: {status}, {len} bytes");
                    times.push(start.elapsed().as_secs_f64() * 1e3);
                }
                times
            })
        })
        .collect()
}

/// A backend that echoes whatever it reads (the provider's side of the round trips).
fn echo_server(provider: &Netns, stop: Arc<AtomicBool>) {
    let l = provider.spawn(|| TcpListener::bind(("192.168.2.10", ECHO_PORT)).unwrap()).join().unwrap();
    l.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        while !stop.load(Relaxed) {
            match l.accept() {
                Ok((mut s, _)) => {
                    s.set_nonblocking(false).unwrap();
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 64];
                        while let Ok(n) = s.read(&mut buf) {
                            if n == 0 || s.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                    });
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    });
}

/// Round trips of 64 bytes through endpoint ep0 (10.0.1.0:7) for `secs`: per second.
fn round_trips(client: &Netns, secs: f64) -> f64 {
    client
        .spawn(move || {
            let mut s = TcpStream::connect(SocketAddr::from(([10, 0, 1, 0], 7))).expect("through the endpoint");
            s.set_nodelay(true).unwrap();
            let (msg, mut back) = ([7u8; 64], [0u8; 64]);
            let (start, mut n) = (Instant::now(), 0u64);
            while start.elapsed().as_secs_f64() < secs {
                s.write_all(&msg).unwrap();
                s.read_exact(&mut back).unwrap();
                n += 1;
            }
            n as f64 / start.elapsed().as_secs_f64()
        })
        .join()
        .unwrap()
}

pub fn run(e: Effort) -> Vec<Row> {
    let n = if e.quick { 1_000 } else { 10_000 };
    let clients = 100;
    let lab = DaemonLab::with_daemon_args(1, &["--api-listen", API, "--api-rate", "1000000"]);
    let r = lab.apply(&spec(n), &[]);
    assert_eq!(r.code, 0, "{r:?}");
    let accounts = n / PER_ACCOUNT;
    let tokens: Vec<String> = (0..clients).map(|i| token(&lab, &format!("acct{}", i % accounts))).collect();
    let stop = Arc::new(AtomicBool::new(false));
    echo_server(&lab.provider, stop.clone());
    // The client reaches the endpoints of the whole /16 on its link (the gateway answers
    // ARP for them).
    lab.consumers[0].ns.ip(&["route", "add", "10.0.0.0/16", "dev", "c0"]);

    // The data path alone, then while 100 clients list their endpoints as fast as the
    // API answers them.
    let secs = if e.quick { 2.0 } else { 5.0 };
    let alone: Vec<f64> = (0..e.trials.min(3)).map(|_| round_trips(&lab.consumers[0].ns, secs)).collect();
    let window = Duration::from_secs_f64(secs * e.trials.min(3) as f64 + 2.0);
    let workers = hammer(&lab.gw, &tokens, Instant::now() + window, &stop);
    std::thread::sleep(Duration::from_millis(500));
    let loaded: Vec<f64> = (0..e.trials.min(3)).map(|_| round_trips(&lab.consumers[0].ns, secs)).collect();
    let mut times: Vec<f64> = workers.into_iter().flat_map(|w| w.join().expect("an API client")).collect();
    times.sort_by(|a, b| a.total_cmp(b));
    let at = |p: f64| times[((times.len() - 1) as f64 * p) as usize];
    let rate = times.len() as f64 / window.as_secs_f64();
    let (alone_med, loaded_med) = (super::summary(&alone).0, super::summary(&loaded).0);

    // Creates, one after another, by one account with room under its quota (acct0's
    // VPC), at the gateway's full size.
    let creator = token(&lab, "acct0");
    let deleted = lab.apply(&spec(n).replace("owner: \"acct0\", vpc: vpc0", "owner: \"gone\", vpc: vpc0").lines().filter(|l| !l.contains("\"gone\"")).collect::<Vec<_>>().join("\n"), &[]);
    assert_eq!(deleted.code, 0, "{deleted:?}");
    let creates = if e.quick { 10 } else { 40 };
    let mut c = lab.gw.spawn(connect).join().unwrap();
    let times_c: Vec<f64> = lab
        .gw
        .spawn(move || {
            (0..creates)
                .map(|k| {
                    let body = format!("{{\"name\": \"new{k}\", \"vpc\": \"vpc0\", \"service\": \"web\", \"ip\": \"10.0.200.{}\"}}", k + 1);
                    let t = Instant::now();
                    let (status, _) = exchange(&mut c, "POST", "/v1/endpoints", &creator, Some(&body));
                    assert_eq!(status, 201, "create {k}");
                    t.elapsed().as_secs_f64() * 1e3
                })
                .collect()
        })
        .join()
        .unwrap();
    let per_create = super::summary(&times_c).0;
    stop.store(true, Relaxed);
    vec![
        Row::new(PART, format!("tenant GET /v1/endpoints p99, {clients} concurrent clients, {n} endpoints ({PER_ACCOUNT} per account)"), &[at(0.99)], "ms")
            .note(format!("target p99 <= 20 ms; p50 {:.2} ms, max {:.1} ms, {rate:.0} requests/s in all over {:.0} s (plain HTTP on loopback, 2 cores shared by the clients and the daemon)", at(0.5), times[times.len() - 1], window.as_secs_f64())),
        Row::new(PART, format!("endpoint creates through the tenant API, one after another, {n} endpoints on the gateway"), &[1e3 / per_create], "/s")
            .note(format!("target >= 200/s; median {per_create:.0} ms a create (each is a whole apply: every rule over the {n}-endpoint spec, two commits, the maps' write), min {:.0} ms, max {:.0} ms, {creates} creates", super::summary(&times_c).1, super::summary(&times_c).2)),
        Row::new(PART, "data path round trips (64 B, one TCP flow through an endpoint) while 100 API clients list endpoints", &loaded, "/s")
            .note(format!("alone: {alone_med:.0}/s; under API load {:.0}% of it (the clients, the daemon and both ends of the flow share 2 cores)", 100.0 * loaded_med / alone_med)),
    ]
}
