//! Network namespaces for tests: RAII (deleted on drop, also when a test panics), unique
//! names per test so tests run in parallel, veth pairs, commands and threads inside.
//! Stale namespaces of dead test processes are removed on first use.

use std::{
    fs::File,
    os::fd::AsRawFd,
    process::{Child, Command, Output, Stdio},
    sync::{
        atomic::{AtomicU32, Ordering},
        Once,
    },
    thread::JoinHandle,
};

const PREFIX: &str = "pltest";
static NEXT: AtomicU32 = AtomicU32::new(0);
static CLEAN: Once = Once::new();

/// Fail (never skip) when the tests cannot run here.
pub fn require_root() {
    // SAFETY: trivial libc call.
    if unsafe { libc::geteuid() } != 0 {
        panic!("this test loads XDP programs and creates network namespaces: run it as root (cargo xtask test)");
    }
}

fn remove_stale() {
    let Ok(dir) = std::fs::read_dir("/run/netns") else { return };
    for e in dir.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let Some(rest) = name.strip_prefix(PREFIX) else { continue };
        let pid: Option<i32> = rest.split('-').next().and_then(|p| p.parse().ok());
        if let Some(pid) = pid {
            if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                let _ = Command::new("ip").args(["netns", "del", &name]).status();
            }
        }
    }
}

/// Run a command and panic with its output if it fails.
#[track_caller]
pub fn sh(cmd: &[&str]) -> Output {
    let out = Command::new(cmd[0])
        .args(&cmd[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    if !out.status.success() {
        panic!(
            "{cmd:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Netns {
        require_root();
        CLEAN.call_once(remove_stale);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("{PREFIX}{}-{tag}-{n}", std::process::id());
        sh(&["ip", "netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip -n NAME args...`
    #[track_caller]
    pub fn ip(&self, args: &[&str]) -> Output {
        let mut v = vec!["ip", "-n", &self.name];
        v.extend_from_slice(args);
        sh(&v)
    }

    /// Run a command inside the namespace (`ip netns exec`); panics on failure.
    #[track_caller]
    pub fn exec(&self, cmd: &[&str]) -> Output {
        let mut v = vec!["ip", "netns", "exec", &self.name];
        v.extend_from_slice(cmd);
        sh(&v)
    }

    /// Run a command inside the namespace and return its output whatever its status.
    pub fn try_exec(&self, cmd: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(cmd)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {cmd:?} in {}: {e}", self.name))
    }

    pub fn sysctl(&self, key: &str, value: &str) {
        self.exec(&["sysctl", "-qw", &format!("{key}={value}")]);
    }

    /// Start a program inside the namespace in the background (output discarded); it
    /// is killed when the returned guard drops.
    pub fn background(&self, cmd: &[&str]) -> Background {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(cmd)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?} in {}: {e}", self.name));
        Background(child)
    }

    /// Move the calling thread into this namespace (network only; threads have their
    /// own network namespace in Linux, so other threads are unaffected).
    pub fn enter(&self) {
        let f = File::open(format!("/run/netns/{}", self.name))
            .unwrap_or_else(|e| panic!("open netns {}: {e}", self.name));
        // SAFETY: valid fd of a network namespace.
        let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns into {}: {}", self.name, std::io::Error::last_os_error());
    }

    /// Run `f` on a new thread inside this namespace.
    pub fn spawn<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> JoinHandle<T> {
        let name = self.name.clone();
        std::thread::spawn(move || {
            Netns { name }.enter_and_forget();
            f()
        })
    }

    /// Enter this namespace on the calling thread without deleting it on drop.
    pub fn enter_and_forget(self) {
        self.enter();
        std::mem::forget(self);
    }

    /// `/sys/class/net/DEV/WHAT` of `dev` inside this namespace, trimmed.
    pub fn sys(&self, dev: &str, what: &str) -> String {
        let out = self.exec(&["cat", &format!("/sys/class/net/{dev}/{what}")]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// ifindex of `dev` inside this namespace.
    pub fn ifindex(&self, dev: &str) -> u32 {
        self.sys(dev, "ifindex").parse().expect("ifindex")
    }

    /// MAC address of `dev` inside this namespace.
    pub fn mac(&self, dev: &str) -> [u8; 6] {
        let s = self.sys(dev, "address");
        let mut m = [0u8; 6];
        for (i, p) in s.split(':').enumerate().take(6) {
            m[i] = u8::from_str_radix(p, 16).expect("MAC");
        }
        m
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the name also destroys its veths once no socket or thread holds it.
        // A test may have deleted it already (a node's death).
        if !std::path::Path::new("/run/netns").join(&self.name).exists() {
            return;
        }
        // Whatever still runs inside goes first (a daemon's announce keeper outlives it
        // by design).
        kill_inside(&self.name);
        if let Err(e) = Command::new("ip").args(["netns", "del", &self.name]).status() {
            eprintln!("cannot delete netns {}: {e}", self.name);
        }
    }
}

pub use privatelink::lab::kill_inside;

/// A program started with [`Netns::background`]: killed and reaped on drop.
pub struct Background(pub Child);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A veth pair between two namespaces: `a_if` in `a`, `b_if` in `b`, both up.
pub fn veth(a: &Netns, a_if: &str, b: &Netns, b_if: &str) {
    a.ip(&["link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", &b.name]);
    a.ip(&["link", "set", a_if, "up"]);
    b.ip(&["link", "set", b_if, "up"]);
}
