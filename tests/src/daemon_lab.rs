//! The network-namespace lab driven the way an operator drives a gateway: the real
//! `privatelink daemon` runs in the gateway namespace (started with `ip netns exec`),
//! pins into a bpffs mounted in the host's mount namespace (so pins outlive a daemon
//! restart), and every step goes through the `privatelink` CLI. On drop: `down`, the
//! daemon killed, the bpffs unmounted, the namespaces deleted.

use crate::{
    lab::Topology,
    netns::{require_root, sh},
};
use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// The `privatelink` binary: `PRIVATELINK_BIN`, or beside the test executable's
/// directory (target/<profile>/privatelink).
pub fn privatelink_bin() -> PathBuf {
    find_bin().unwrap_or_else(|| panic!("the privatelink binary is missing: build it (cargo build -p privatelink-user) or set PRIVATELINK_BIN"))
}

/// `PRIVATELINK_BIN`, or `privatelink` beside this executable or one directory up
/// (tests live in target/<profile>/deps, binaries in target/<profile>).
fn find_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("PRIVATELINK_BIN") {
        return Some(PathBuf::from(p));
    }
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    [dir.join("privatelink"), dir.parent()?.join("privatelink")].into_iter().find(|p| p.exists())
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

/// `privatelink --socket SOCKET args...`, from the host namespace.
pub fn cli_at(socket: &Path, args: &[&str]) -> Run {
    Command::new(privatelink_bin()).arg("--socket").arg(socket).args(args).output().expect("run privatelink").into()
}

/// `privatelink daemon args...` started in namespace `ns` (`ip netns exec` execs it,
/// so the child's pid is the daemon's), its output appended to `log`.
pub fn spawn_daemon(ns: &str, socket: &Path, args: &[String], env: &[(String, String)], log: &Path) -> Child {
    spawn_daemon_wrapped(ns, &[], socket, args, env, log)
}

/// `spawn_daemon` through `wrapper` (a command that execs its arguments, such as
/// `setpriv --bounding-set ...`, so the child's pid stays the daemon's).
pub fn spawn_daemon_wrapped(ns: &str, wrapper: &[String], socket: &Path, args: &[String], env: &[(String, String)], log: &Path) -> Child {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
    Command::new("ip")
        .args(["netns", "exec", ns])
        .args(wrapper)
        .arg(privatelink_bin())
        .arg("--socket")
        .arg(socket)
        .arg("daemon")
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("spawn the daemon")
}

/// Wait (up to 20 s) until the daemon answers `status` on `socket`; its exit status and
/// log when it stops on its own first.
pub fn wait_answering(child: &mut Child, socket: &Path, log: &Path) -> Result<(), String> {
    let read_log = || std::fs::read_to_string(log).unwrap_or_default();
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Err(format!("the daemon exited ({status}):\n{}", read_log()));
        }
        if socket.exists() && cli_at(socket, &["status"]).code == 0 {
            return Ok(());
        }
        assert!(start.elapsed() < Duration::from_secs(20), "the daemon did not come up:\n{}", read_log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A bpffs mounted at a fresh directory in the host's mount namespace; unmounted and
/// removed on drop.
pub struct Bpffs(pub PathBuf);

impl Bpffs {
    pub fn new(dir: PathBuf) -> Bpffs {
        require_root();
        std::fs::create_dir_all(&dir).unwrap();
        sh(&["mount", "-t", "bpf", "bpf", dir.to_str().unwrap()]);
        Bpffs(dir)
    }
}

impl Drop for Bpffs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// What a CLI call did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

pub struct DaemonLab {
    pub topo: Topology,
    pub dir: PathBuf,
    pub socket: PathBuf,
    pub state_dir: PathBuf,
    pub bpffs: PathBuf,
    daemon: Option<Child>,
    daemon_args: Vec<String>,
    /// Environment for the next `start_daemon` (failpoints of crash tests).
    pub daemon_env: Vec<(String, String)>,
    /// What the daemon is started through (e.g. `setpriv` with fewer capabilities).
    daemon_wrapper: Vec<String>,
    fs: Option<Bpffs>,
}

impl std::ops::Deref for DaemonLab {
    type Target = Topology;
    fn deref(&self) -> &Topology {
        &self.topo
    }
}

impl DaemonLab {
    pub fn new(consumers: usize) -> DaemonLab {
        DaemonLab::with_daemon_args(consumers, &[])
    }

    /// A lab whose daemon gets `args` too (e.g. `--metrics 127.0.0.1:9469`).
    pub fn with_daemon_args(consumers: usize, args: &[&str]) -> DaemonLab {
        DaemonLab::with_wrapper(consumers, args, &[])
    }

    /// A lab whose daemon is started through `wrapper` (see `spawn_daemon_wrapped`).
    pub fn with_wrapper(consumers: usize, args: &[&str], wrapper: &[&str]) -> DaemonLab {
        DaemonLab::on(Topology::new(consumers), args, wrapper)
    }

    /// The daemon (given `args`, started through `wrapper`) on `topo`.
    pub fn on(topo: Topology, args: &[&str], wrapper: &[&str]) -> DaemonLab {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = PathBuf::from(format!("/run/pltest{}-daemon-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let fs = Bpffs::new(dir.join("bpffs"));
        let mut lab = DaemonLab {
            topo,
            socket: dir.join("api.sock"),
            state_dir: dir.join("state"),
            bpffs: fs.0.join("privatelink"),
            dir,
            daemon: None,
            daemon_args: args.iter().map(|a| a.to_string()).collect(),
            daemon_env: Vec::new(),
            daemon_wrapper: wrapper.iter().map(|a| a.to_string()).collect(),
            fs: Some(fs),
        };
        lab.start_daemon();
        lab
    }

    /// What the daemon wrote to stderr.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default()
    }

    /// Start `privatelink daemon` in the gateway namespace and wait until it answers.
    pub fn start_daemon(&mut self) {
        if let Err(e) = self.try_start_daemon() {
            panic!("{e}");
        }
    }

    /// `start_daemon`, returning the daemon's exit and log when it stops on its own.
    pub fn try_start_daemon(&mut self) -> Result<(), String> {
        assert!(self.daemon.is_none(), "daemon already running");
        let mut args: Vec<String> = ["--state-dir", path_str(&self.state_dir), "--bpffs", path_str(&self.bpffs)].map(String::from).into();
        args.extend(self.daemon_args.iter().cloned());
        let log = self.dir.join("daemon.log");
        let mut child = spawn_daemon_wrapped(&self.topo.gw.name, &self.daemon_wrapper, &self.socket, &args, &self.daemon_env, &log);
        wait_answering(&mut child, &self.socket, &log)?;
        self.daemon = Some(child);
        Ok(())
    }

    /// Stop the daemon with `signal` (SIGTERM: orderly; SIGKILL: a crash) and reap it.
    pub fn stop_daemon(&mut self, signal: i32) {
        let mut child = self.daemon.take().expect("no daemon running");
        // `ip netns exec` execs the daemon, so the child's pid is the daemon's.
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, signal) };
        let start = Instant::now();
        while child.try_wait().unwrap().is_none() {
            assert!(start.elapsed() < Duration::from_secs(10), "the daemon did not stop:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The daemon's pid (`ip netns exec` execs it, so it is the child's).
    pub fn daemon_pid(&self) -> u32 {
        self.daemon.as_ref().expect("no daemon running").id()
    }

    /// Whether the daemon process is still running.
    pub fn daemon_running(&mut self) -> bool {
        match &mut self.daemon {
            Some(c) => c.try_wait().unwrap().is_none(),
            None => false,
        }
    }

    /// Wait for the daemon to exit on its own (after `down`).
    pub fn wait_daemon_exit(&mut self) -> bool {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if !self.daemon_running() {
                self.daemon = None;
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Run the CLI (from the host namespace: the API is a Unix socket path).
    pub fn cli(&self, args: &[&str]) -> Run {
        cli_at(&self.socket, args)
    }

    /// Run the CLI and panic unless it succeeds; its stdout.
    #[track_caller]
    pub fn ok(&self, args: &[&str]) -> String {
        let r = self.cli(args);
        assert_eq!(r.code, 0, "privatelink {args:?} failed: {r:#?}\ndaemon log:\n{}", self.log());
        r.stdout
    }

    /// A read command's JSON output.
    #[track_caller]
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        let out = self.ok(&a);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {out}"))
    }

    /// Write `spec` to a file in the lab directory and `apply -f` it.
    pub fn apply(&self, spec: &str, extra: &[&str]) -> Run {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = self.dir.join(format!("spec-{n}.yaml"));
        std::fs::write(&path, spec).unwrap();
        let mut args = vec!["apply", "-f", path.to_str().unwrap()];
        args.extend_from_slice(extra);
        self.cli(&args)
    }

    /// An endpoint's field from `get endpoints NAME -o json`.
    pub fn endpoint(&self, name: &str) -> serde_json::Value {
        let v = self.json(&["get", "endpoints", name]);
        v[0].clone()
    }

    /// `GET /metrics` from the daemon's metrics server at 127.0.0.1:`port` in the
    /// gateway namespace.
    pub fn scrape(&self, port: u16) -> String {
        self.topo
            .gw
            .spawn(move || {
                use std::io::{Read, Write};
                let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to /metrics");
                s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
                let mut out = String::new();
                s.read_to_string(&mut out).unwrap();
                out
            })
            .join()
            .unwrap()
    }

    /// Wait (up to 15 s) until `f` holds.
    #[track_caller]
    pub fn wait_until(&self, what: &str, mut f: impl FnMut() -> bool) {
        let start = Instant::now();
        while !f() {
            assert!(start.elapsed() < Duration::from_secs(15), "timed out waiting for {what}\ndaemon log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Pins under the daemon's bpffs directory.
    pub fn pins(&self) -> Vec<String> {
        let mut out = Vec::new();
        for sub in ["maps", "links"] {
            if let Ok(rd) = std::fs::read_dir(self.bpffs.join(sub)) {
                out.extend(rd.flatten().map(|e| format!("{sub}/{}", e.file_name().to_string_lossy())));
            }
        }
        out.sort();
        out
    }
}

impl Drop for DaemonLab {
    fn drop(&mut self) {
        if self.daemon_running() {
            let r = self.cli(&["down"]);
            if r.code != 0 {
                eprintln!("privatelink down failed: {r:?}");
            }
            self.wait_daemon_exit();
        }
        if let Some(mut c) = self.daemon.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Pins left by a killed daemon: remove them so the bpffs unmounts clean.
        if let Some(bin) = find_bin() {
            let _ = Command::new(bin).arg("--socket").arg(&self.socket).args(["down", "--bpffs"]).arg(&self.bpffs).output();
        }
        drop(self.fs.take());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A spec for a `Topology` of `consumers` consumer VPCs: VPCs `vpc{i}` (gw-c{i},
/// 10.0.0.0/24) and `prov` (gw-prov, 192.168.2.0/24); `services` and `endpoints` are
/// YAML list items, already indented by two spaces.
pub fn spec(consumers: usize, services: &str, endpoints: &str) -> String {
    let mut s = String::from("gateway:\n  region: lab\n  conntrack_capacity: 65536\n  timeouts: { tcp_established: 350s, tcp_closing: 10s, udp: 60s }\nvpcs:\n");
    for i in 0..consumers {
        s.push_str(&format!("  - {{ name: vpc{i}, interface: gw-c{i}, cidr: 10.0.0.0/24 }}\n"));
    }
    s.push_str("  - { name: prov, interface: gw-prov, cidr: 192.168.2.0/24 }\nservices:\n");
    s.push_str(services);
    s.push_str("endpoints:\n");
    s.push_str(endpoints);
    s
}

/// One service `name` on both lab backends (tcp 80 -> 8080, udp 53 -> 5353), owned by
/// `owner`; `extra` are more `key: value` lines for it.
/// `spec(1, ..)` with no services or endpoints, its consumer VPC owned by account
/// 100001 and the provider's by 100002 (the tenant API creates in them), `extra`
/// lines added to `gateway:`.
pub fn owned_vpcs(extra: &str) -> String {
    spec(1, "", "")
        .replace("interface: gw-c0, cidr: 10.0.0.0/24 }", "interface: gw-c0, cidr: 10.0.0.0/24, owner: \"100001\" }")
        .replace("interface: gw-prov, cidr: 192.168.2.0/24 }", "interface: gw-prov, cidr: 192.168.2.0/24, owner: \"100002\" }")
        .replace("services:\nendpoints:\n", "services: []\nendpoints: []\n")
        .replace("  region: lab\n", &format!("  region: lab\n{extra}"))
}

pub fn service(name: &str, owner: &str, extra: &[&str]) -> String {
    let mut s = format!(
        "  - name: {name}\n    owner: \"{owner}\"\n    vpc: prov\n    backends: [{{ address: 192.168.2.10 }}, {{ address: 192.168.2.11 }}]\n    ports:\n      - {{ protocol: tcp, endpoint_port: 80, service_port: 8080 }}\n      - {{ protocol: udp, endpoint_port: 53, service_port: 5353 }}\n"
    );
    for e in extra {
        s.push_str(&format!("    {e}\n"));
    }
    s
}

/// An endpoint item at 10.0.0.100 in consumer VPC `consumer`.
pub fn endpoint(name: &str, owner: &str, consumer: usize, service: &str) -> String {
    format!("  - {{ name: {name}, owner: \"{owner}\", vpc: vpc{consumer}, service: {service}, ip: 10.0.0.100 }}\n")
}

/// Detach the XDP link pinned at `pin` by hand (BPF_LINK_DETACH), as an operator
/// or another program could: the pin stays, the interface runs no program.
pub fn detach_by_hand(pin: &std::path::Path) {
    let c = std::ffi::CString::new(pin.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: bpf(2) with attrs laid out as `union bpf_attr`'s members for BPF_OBJ_GET
    // (pathname, bpf_fd, file_flags) and BPF_LINK_DETACH (link_fd); the fd is closed.
    unsafe {
        let get: [u64; 2] = [c.as_ptr() as u64, 0];
        let fd = libc::syscall(libc::SYS_bpf, 7, get.as_ptr(), 16);
        assert!(fd >= 0, "BPF_OBJ_GET {}: {}", pin.display(), std::io::Error::last_os_error());
        let detach: [u32; 2] = [fd as u32, 0];
        let rc = libc::syscall(libc::SYS_bpf, 34, detach.as_ptr(), 8);
        assert_eq!(rc, 0, "BPF_LINK_DETACH: {}", std::io::Error::last_os_error());
        libc::close(fd as i32);
    }
}
