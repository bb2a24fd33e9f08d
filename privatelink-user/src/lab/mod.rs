//! `privatelink lab up|down`: the seeds' quick-start topology on one Linux host, in
//! network namespaces, for people who want to try the gateway by hand.
//!
//!   pl-vpc1 (consumer VPC1, 10.0.0.0/24)      pl-vpc2 (provider VPC2, 192.168.2.0/24)
//!   client 10.0.0.2 ── gw-vpc1 ┐   pl-gw   ┌ gw-vpc2 192.168.2.1 ── backends .10 .11 :8080
//!                              └ privatelink daemon (XDP) ┘
//!
//! `lab up --nodes N` builds a fleet instead (`fleet`): etcd, N gateway nodes in two
//! zones announcing over BGP (BIRD) to a consumer-side router.
//!
//! Everything it starts (daemons, backends, etcd, BIRD) runs detached with a pid file
//! under `LAB_DIR`, and every namespace it creates is listed there; `down` stops it
//! all and removes namespaces, pins and files. Never touches anything it did not
//! create.

pub mod bird;
pub mod ecmp;
pub mod frr;
pub mod fleet;
pub use fleet::Routing;
pub mod forward;

use crate::dataplane::loader::{self, Dataplane, LoadOptions};
use anyhow::{bail, Context, Result};
use std::{
    fs::File,
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    os::fd::AsRawFd,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

pub const LAB_DIR: &str = "/run/privatelink-lab";
pub const NS_CLIENT: &str = "pl-vpc1";
pub const NS_PROVIDER: &str = "pl-vpc2";
pub const NS_GATEWAY: &str = "pl-gw";
pub const BACKENDS: [(&str, &str); 2] = [("backend-1", "192.168.2.10:8080"), ("backend-2", "192.168.2.11:8080")];

pub fn socket() -> PathBuf {
    Path::new(LAB_DIR).join("api.sock")
}

fn sh(args: &[&str]) -> Result<()> {
    let out = Command::new(args[0]).args(&args[1..]).output().with_context(|| format!("running {}", args.join(" ")))?;
    if !out.status.success() {
        bail!("`{}` failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

fn ip(ns: &str, args: &[&str]) -> Result<()> {
    let mut v = vec!["ip", "-n", ns];
    v.extend_from_slice(args);
    sh(&v)
}

fn in_ns(ns: &str, args: &[&str]) -> Result<()> {
    let mut v = vec!["ip", "netns", "exec", ns];
    v.extend_from_slice(args);
    sh(&v)
}

fn ns_exists(ns: &str) -> bool {
    Path::new("/run/netns").join(ns).exists()
}

/// Create namespace `ns` (loopback up), listed in `LAB_DIR/namespaces` for `down`.
fn add_ns(ns: &str) -> Result<()> {
    let mut list = std::fs::OpenOptions::new().create(true).append(true).open(Path::new(LAB_DIR).join("namespaces"))?;
    writeln!(list, "{ns}")?;
    sh(&["ip", "netns", "add", ns])?;
    ip(ns, &["link", "set", "lo", "up"])
}

/// Wait until `sock` answers (a daemon came up), or fail with its log.
fn wait_socket(sock: &Path, log: &str) -> Result<()> {
    let start = Instant::now();
    while std::os::unix::net::UnixStream::connect(sock).is_err() {
        if start.elapsed() > Duration::from_secs(20) {
            let log = std::fs::read_to_string(Path::new(LAB_DIR).join(log)).unwrap_or_default();
            bail!("the daemon did not come up:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Attach an XDP_PASS program to `dev` in `ns` and pin the link as `pass-<name>`:
/// a veth receives frames the gateway redirects into its peer only then.
fn pass_link(pass: &mut Dataplane, bpffs: &Path, ns: &str, dev: &str, name: &str) -> Result<()> {
    let link = in_netns(ns, || Ok(pass.attach_pass_link(loader::ifindex(dev)?)?))?;
    link.pin(bpffs.join(format!("pass-{name}"))).with_context(|| format!("pinning the XDP_PASS link of {dev} in {ns}"))?;
    Ok(())
}

/// Start `args` in namespace `ns`, detached (own session), output to `log`, pid to
/// `LAB_DIR/<name>.pid`.
fn spawn_detached(ns: &str, name: &str, args: &[&str]) -> Result<()> {
    let dir = Path::new(LAB_DIR);
    let log = File::create(dir.join(format!("{name}.log")))?;
    let child = Command::new("setsid")
        .args(["ip", "netns", "exec", ns])
        .args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {name}"))?;
    std::fs::write(dir.join(format!("{name}.pid")), child.id().to_string())?;
    Ok(())
}

/// `spawn_detached` in the host's own namespace.
fn spawn_detached_here(name: &str, args: &[&str]) -> Result<()> {
    let dir = Path::new(LAB_DIR);
    let log = File::create(dir.join(format!("{name}.log")))?;
    let child = Command::new("setsid").args(args).stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log).spawn().with_context(|| format!("starting {name}"))?;
    std::fs::write(dir.join(format!("{name}.pid")), child.id().to_string())?;
    Ok(())
}

/// Run `f` on a thread inside network namespace `ns`.
fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    let file = File::open(Path::new("/run/netns").join(ns)).with_context(|| format!("opening netns {ns}"))?;
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: setns on this thread only, with a valid netns fd.
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                bail!("entering netns {ns}: {}", std::io::Error::last_os_error());
            }
            f()
        })
        .join()
        .map_err(|_| anyhow::anyhow!("thread in {ns} panicked"))?
    })
}

/// Build the topology, start the backends and the daemon (`nodes` > 1: a fleet).
/// Fails if a lab is up.
pub fn up(nodes: usize, console: Option<u16>, routing: fleet::Routing) -> Result<()> {
    if ns_exists(NS_GATEWAY) || ns_exists(fleet::NS_ROUTER) || Path::new(LAB_DIR).exists() {
        bail!("a lab is already up (or was left half-made): run `privatelink lab down` first");
    }
    if !(1..=fleet::MAX_NODES).contains(&nodes) {
        bail!("--nodes must be 1 to {}", fleet::MAX_NODES);
    }
    let r = if nodes == 1 { build(console) } else { fleet::build(nodes, routing) };
    if r.is_err() {
        // Nothing half-made stays behind.
        let _ = down();
    }
    r
}

fn build(console: Option<u16>) -> Result<()> {
    let dir = Path::new(LAB_DIR);
    std::fs::create_dir_all(dir)?;
    for ns in [NS_GATEWAY, NS_CLIENT, NS_PROVIDER] {
        add_ns(ns)?;
    }
    for (gw_if, ns) in [("gw-vpc1", NS_CLIENT), ("gw-vpc2", NS_PROVIDER)] {
        ip(NS_GATEWAY, &["link", "add", gw_if, "type", "veth", "peer", "name", "eth0", "netns", ns])?;
        ip(NS_GATEWAY, &["link", "set", gw_if, "up"])?;
        ip(ns, &["link", "set", "eth0", "up"])?;
        // Local senders on veth leave checksums to offload; an XDP rewrite would turn
        // them into bad ones (a real NIC delivers full checksums).
        in_ns(ns, &["ethtool", "-K", "eth0", "tx", "off"])?;
    }
    in_ns(NS_GATEWAY, &["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
    ip(NS_GATEWAY, &["addr", "add", "192.168.2.1/24", "dev", "gw-vpc2"])?;
    ip(NS_CLIENT, &["addr", "add", "10.0.0.2/24", "dev", "eth0"])?;
    for (_, addr) in BACKENDS {
        let host = addr.split(':').next().unwrap_or_default();
        ip(NS_PROVIDER, &["addr", "add", &format!("{host}/24"), "dev", "eth0"])?;
    }
    // The provider routes the SNAT range back to the gateway (the seeds' security
    // group rule for 11.163.0.0/16).
    ip(NS_PROVIDER, &["route", "add", "11.163.0.0/16", "via", "192.168.2.1"])?;

    // A bpffs in the host's mount namespace, so pins outlive every process here.
    let bpffs = dir.join("bpffs");
    std::fs::create_dir_all(&bpffs)?;
    sh(&["mount", "-t", "bpf", "bpf", bpffs.to_str().unwrap_or_default()])?;

    // The hosts' veth ends need an XDP program of their own to receive the frames
    // the gateway redirects into them (kernel 6.18 veth); pin those links too.
    let mut pass = Dataplane::load(&LoadOptions { ct_capacity: 1024, pin_dir: None })?;
    for ns in [NS_CLIENT, NS_PROVIDER] {
        pass_link(&mut pass, &bpffs, ns, "eth0", ns)?;
    }

    let me = std::env::current_exe()?;
    let me = me.to_str().context("binary path")?;
    for (name, addr) in BACKENDS {
        spawn_detached(NS_PROVIDER, name, &[me, "lab", "serve", "--name", name, "--address", addr])?;
    }
    let sock = socket();
    let state = dir.join("state");
    let pins = bpffs.join("privatelink");
    let mut daemon = vec![me, "--socket", sock.to_str().unwrap_or_default(), "daemon", "--state-dir", state.to_str().unwrap_or_default(), "--bpffs", pins.to_str().unwrap_or_default(), "--api-listen", LAB_API];
    let (cert, key) = (console_cert(), dir.join("console.key"));
    if let Some(port) = console {
        let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()]).context("making the console's certificate")?;
        std::fs::write(&cert, made.cert.pem())?;
        use sha2::Digest;
        let fingerprint: Vec<String> = sha2::Sha256::digest(made.cert.der()).iter().map(|b| format!("{b:02X}")).collect();
        std::fs::write(dir.join("console.sha256"), fingerprint.join(":"))?;
        std::fs::write(&key, made.signing_key.serialize_pem())?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))?;
        daemon.extend(["--api-tls-cert", cert.to_str().unwrap_or_default(), "--api-tls-key", key.to_str().unwrap_or_default()]);
        let listen = format!("127.0.0.1:{port}");
        spawn_detached_here("forward", &[me, "lab", "forward", "--listen", &listen, "--netns", NS_GATEWAY, "--to", LAB_API])?;
    }
    spawn_detached(NS_GATEWAY, "daemon", &daemon)?;
    wait_socket(&sock, "daemon.log")
}

/// The lab console's certificate (PEM), made by `up --console`.
pub fn console_cert() -> PathBuf {
    Path::new(LAB_DIR).join("console.pem")
}

/// SHA-256 of the console's certificate (DER), as browsers show it (`AB:CD:...`).
pub fn console_fingerprint() -> Result<String> {
    Ok(std::fs::read_to_string(Path::new(LAB_DIR).join("console.sha256")).context("the console's certificate fingerprint")?.trim().to_string())
}

/// The lab's tenant API: plain HTTP on the gateway namespace's loopback (reach it with
/// `ip netns exec pl-gw curl http://127.0.0.1:8443/...`).
pub const LAB_API: &str = "127.0.0.1:8443";

/// Stop everything `up` started and remove what it made. Safe to run twice.
pub fn down() -> Result<()> {
    let dir = Path::new(LAB_DIR);
    let files: Vec<PathBuf> = std::fs::read_dir(dir).map(|rd| rd.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    // Every daemon (one, or each node of a fleet) detaches and removes its pins.
    // (api.sock is a link to node 1's: each daemon is asked once.)
    for sock in files.iter().filter(|p| p.extension().is_some_and(|x| x == "sock") && !p.is_symlink()) {
        if std::os::unix::net::UnixStream::connect(sock).is_ok() {
            if let Err(e) = crate::daemon::api::client::call(sock, &crate::daemon::api::Request::Down) {
                // The processes are stopped below whatever it answered.
                eprintln!("lab down: {} did not take its daemon down: {e:#}", sock.display());
            }
        }
    }
    let pids: Vec<i32> = files
        .iter()
        .filter(|p| p.extension().is_some_and(|x| x == "pid"))
        .filter_map(|p| std::fs::read_to_string(p).ok()?.trim().parse().ok())
        .collect();
    // SAFETY (both): signalling processes this lab started (their pid files).
    for pid in &pids {
        unsafe { libc::kill(*pid, libc::SIGTERM) };
    }
    // Gone within 5 s, or killed.
    let start = Instant::now();
    while pids.iter().any(|p| unsafe { libc::kill(*p, 0) } == 0) && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
    }
    for pid in &pids {
        unsafe { libc::kill(*pid, libc::SIGKILL) };
    }
    let listed = std::fs::read_to_string(dir.join("namespaces")).unwrap_or_default();
    let mut namespaces: Vec<&str> = listed.lines().filter(|l| !l.is_empty()).collect();
    namespaces.extend([NS_CLIENT, NS_PROVIDER, NS_GATEWAY]);
    namespaces.dedup();
    for ns in namespaces {
        if ns_exists(ns) {
            // What still runs inside (an announce keeper whose daemon was killed) goes too.
            kill_inside(ns);
            sh(&["ip", "netns", "del", ns])?;
        }
    }
    let bpffs = dir.join("bpffs");
    if bpffs.exists() {
        if let Ok(rd) = std::fs::read_dir(&bpffs) {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().starts_with("pass-") {
                    std::fs::remove_file(e.path())?;
                } else if e.path().is_dir() {
                    // A daemon's pins (`privatelink`, or a fleet node's `gwK`).
                    crate::dataplane::bpffs::remove_pins(&e.path())?;
                    std::fs::remove_dir(e.path()).ok();
                }
            }
        }
        let _ = Command::new("umount").arg(&bpffs).status();
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    Ok(())
}

/// SIGKILL every process left in namespace `ns` and wait (up to 2 s) for them to go.
pub fn kill_inside(ns: &str) {
    let pids = || -> Vec<i32> {
        Command::new("ip").args(["netns", "pids", ns]).output().map(|o| String::from_utf8_lossy(&o.stdout).split_whitespace().filter_map(|p| p.parse().ok()).collect()).unwrap_or_default()
    };
    for pid in pids() {
        // SAFETY: signalling a process inside a namespace the caller made.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let start = Instant::now();
    while !pids().is_empty() && start.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A backend: answers each HTTP request with `backend=NAME peer=IP:PORT` (the source
/// address it saw); HTTP/1.0 requests close the connection, HTTP/1.1 ones keep it.
pub fn serve(name: &str, addr: SocketAddr) -> Result<()> {
    let l = TcpListener::bind(addr).with_context(|| format!("binding {addr}"))?;
    eprintln!("{name}: serving on {addr}");
    for s in l.incoming() {
        let Ok(s) = s else { continue };
        let name = name.to_string();
        std::thread::spawn(move || answer(s, &name));
    }
    Ok(())
}

fn answer(mut s: TcpStream, name: &str) {
    let Ok(peer) = s.peer_addr() else { return };
    s.set_read_timeout(Some(Duration::from_secs(60))).ok();
    let Ok(c) = s.try_clone() else { return };
    let mut r = BufReader::new(c);
    loop {
        let mut request = String::new();
        if r.read_line(&mut request).map_or(true, |n| n == 0) {
            return;
        }
        let mut line = String::new();
        while r.read_line(&mut line).map(|n| n > 0 && line.trim_end() != "").unwrap_or(false) {
            line.clear();
        }
        let keep = request.trim_end().ends_with("HTTP/1.1");
        let body = format!("backend={name} peer={peer}\n");
        let version = if keep { "1.1" } else { "1.0" };
        if write!(s, "HTTP/{version} 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}", body.len()).is_err() || !keep {
            return;
        }
    }
}

/// `lab session`: `requests` GETs on one connection, each answer printed at once.
pub fn session(addr: SocketAddr, requests: u32, interval: Duration) -> Result<()> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(3)).with_context(|| format!("connecting to {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut r = BufReader::new(s.try_clone()?);
    let mut w = s;
    for i in 1..=requests {
        write!(w, "GET / HTTP/1.1\r\nHost: {addr}\r\n\r\n").with_context(|| format!("request {i}"))?;
        let mut len = 0usize;
        let mut line = String::new();
        loop {
            line.clear();
            if r.read_line(&mut line).with_context(|| format!("answer {i}"))? == 0 {
                bail!("answer {i}: the connection was closed");
            }
            if line.trim_end().is_empty() {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0u8; len];
        r.read_exact(&mut body).with_context(|| format!("answer {i}"))?;
        println!("{i}: {}", String::from_utf8_lossy(&body).trim_end());
        std::io::stdout().flush()?;
        if i < requests {
            std::thread::sleep(interval);
        }
    }
    Ok(())
}

/// A minimal HTTP/1.0 GET with timeouts (for the demo; curl does the same by hand).
pub fn http_get(addr: SocketAddr, timeout: Duration) -> Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, timeout).with_context(|| format!("connecting to {addr}"))?;
    s.set_read_timeout(Some(timeout))?;
    write!(s, "GET / HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let (head, body) = resp.split_once("\r\n\r\n").context("not an HTTP answer")?;
    if !head.starts_with("HTTP/1.0 200") {
        bail!("{}", head.lines().next().unwrap_or_default());
    }
    Ok(body.trim_end().to_string())
}
