//! Publishing the endpoint addresses this node serves as /32 routes (and its SNAT
//! slices, for the provider side) in the kernel
//! routing tables the spec names, for a routing daemon (BIRD, FRR) to announce.
//!
//! The routes lead to a TUN device (`pl-announce`) that the announce keeper
//! (`keeper`, a small process of its own) holds open and never reads, so they outlive
//! a daemon restart as the pinned data path does. The daemon adds and removes routes
//! and beats the keeper every second; a keeper that hears no beat within the restart
//! grace, or sees the data path gone, deletes every route and exits (the device goes
//! with it). The tables are for announcing only; no `ip rule` should look them up.

pub mod keeper;

use super::{Error, Result};
use std::{
    collections::BTreeSet,
    fs::OpenOptions,
    io::{BufRead, BufReader, Write},
    net::Ipv4Addr,
    os::{
        fd::AsRawFd,
        unix::{fs::OpenOptionsExt, net::UnixStream},
    },
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};

/// The device every published route goes through.
pub const DEVICE: &str = "pl-announce";

/// The protocol the routes carry (`proto static`): routing daemons learn them from
/// the kernel (BIRD's `learn`, FRR's `redistribute kernel`).
const PROTO: &str = "static";

/// A published route: (routing table, endpoint address).
/// (table, network, prefix length): endpoint addresses are /32s, SNAT slices wider.
pub type Route = (u32, Ipv4Addr, u8);

pub struct Announcer {
    /// The connection to the keeper, which holds the device.
    keeper: UnixStream,
    /// The keeper, when this daemon started it (reaped when it ends).
    child: Option<Child>,
    grace: Duration,
    have: BTreeSet<Route>,
}

impl Announcer {
    /// Connect to the keeper of the daemon socket `daemon_socket` (started now when
    /// none listens: the device and its routes then start empty). `grace`: how long
    /// the keeper holds the routes without a beat.
    pub fn open(daemon_socket: &Path, grace: Duration) -> Result<Announcer> {
        let socket = keeper::socket_of(daemon_socket);
        let (keeper, child) = match UnixStream::connect(&socket) {
            Ok(s) => {
                tracing::info!(socket = %socket.display(), "the announce keeper holds the routes of the last daemon: taking them over");
                (s, None)
            }
            Err(_) => {
                let child = keeper::spawn(daemon_socket, grace)?;
                let s = UnixStream::connect(&socket).map_err(|e| fail(format!("connecting to the announce keeper at {}: {e}", socket.display())))?;
                (s, Some(child))
            }
        };
        // What the last daemon published stays until this one publishes otherwise.
        Ok(Announcer { keeper, child, grace, have: kernel_routes()? })
    }

    /// The keeper a previous daemon left, if one listens.
    pub fn existing(daemon_socket: &Path, grace: Duration) -> Option<Announcer> {
        let keeper = UnixStream::connect(keeper::socket_of(daemon_socket)).ok()?;
        Some(Announcer { keeper, child: None, grace, have: BTreeSet::new() })
    }

    /// Tell the keeper this daemon is here, watching `interfaces` (those carrying the
    /// data path). An error when the keeper is gone (its routes went with it).
    pub fn beat(&mut self, interfaces: &[String]) -> Result<()> {
        let line = format!("beat {} {}\n", self.grace.as_millis(), interfaces.join(","));
        self.keeper.write_all(line.as_bytes()).map_err(|e| fail(format!("the announce keeper is gone ({e}): its routes went with it")))?;
        if let Some(c) = &mut self.child {
            if let Ok(Some(status)) = c.try_wait() {
                self.child = None;
                return Err(fail(format!("the announce keeper exited ({status})")));
            }
        }
        Ok(())
    }

    /// Withdraw every route and end the keeper (and the device): the node stops
    /// announcing now, not after the grace.
    pub fn release(mut self) -> Result<()> {
        self.keeper.write_all(b"withdraw\n").map_err(|e| fail(format!("asking the announce keeper to withdraw: {e}")))?;
        self.keeper.set_read_timeout(Some(Duration::from_secs(5))).ok();
        let mut answer = String::new();
        let r = BufReader::new(&self.keeper).read_line(&mut answer);
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
        match (r, answer.trim()) {
            (_, "withdrawn") => Ok(()),
            (Err(e), _) => Err(fail(format!("waiting for the announce keeper to withdraw: {e}"))),
            (Ok(_), other) => Err(fail(format!("the announce keeper answered {other:?} to withdraw: some routes may remain (`ip route show table all dev {DEVICE}`)"))),
        }
    }

    /// The routes published now.
    pub fn published(&self) -> &BTreeSet<Route> {
        &self.have
    }

    /// Make the published routes `want`. With `verify`, what the kernel holds is read
    /// back first, so a route removed by hand is published again.
    pub fn publish(&mut self, want: &BTreeSet<Route>, verify: bool) -> Result<()> {
        if verify {
            self.have = kernel_routes()?;
        }
        let mut batch = String::new();
        for (table, ip, len) in self.have.difference(want) {
            batch.push_str(&format!("route del {ip}/{len} dev {DEVICE} table {table}\n"));
        }
        for (table, ip, len) in want.difference(&self.have) {
            batch.push_str(&format!("route replace {ip}/{len} dev {DEVICE} table {table} proto {PROTO}\n"));
        }
        if batch.is_empty() {
            return Ok(());
        }
        let r = run_batch(&batch);
        // Whatever happened, the kernel says what is published now.
        self.have = kernel_routes()?;
        r
    }
}

fn fail(message: String) -> Error {
    Error::Announce(message)
}

/// Create the device, up (not persistent: it lives as long as its holder, the keeper).
fn open_device() -> Result<std::fs::File> {
    let tun = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open("/dev/net/tun")
        .map_err(|e| fail(format!("opening /dev/net/tun (the tun module): {e}")))?;
    // SAFETY: a zeroed ifreq is valid; the name fits (15 bytes and a NUL).
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(DEVICE.bytes()) {
        *d = s as libc::c_char;
    }
    req.ifr_ifru.ifru_flags = (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short;
    // SAFETY: TUNSETIFF on a tun fd with a valid ifreq.
    if unsafe { libc::ioctl(tun.as_raw_fd(), libc::TUNSETIFF, &mut req) } != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EBUSY) {
            return Err(fail(format!("device {DEVICE} is held by another process (another privatelink daemon or keeper in this network namespace?)")));
        }
        return Err(fail(format!("creating device {DEVICE}: {e}")));
    }
    ip(&["link", "set", DEVICE, "up"])?;
    Ok(tun)
}

fn no_ip(e: std::io::Error) -> Error {
    fail(format!("running ip (iproute2): {e}"))
}

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip").args(args).output().map_err(no_ip)?;
    if !out.status.success() {
        return Err(fail(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim())));
    }
    Ok(())
}

fn run_batch(batch: &str) -> Result<()> {
    let mut child = Command::new("ip")
        .args(["-force", "-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(no_ip)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(batch.as_bytes()).map_err(no_ip)?;
    }
    let out = child.wait_with_output().map_err(no_ip)?;
    if !out.status.success() {
        return Err(fail(format!("publishing routes: {}", String::from_utf8_lossy(&out.stderr).trim())));
    }
    Ok(())
}

/// The routes through the device now, in every table: those this code wrote (`proto
/// static`; FRR's zebra copies what it imports into the main table as `proto zebra`).
fn kernel_routes() -> Result<BTreeSet<Route>> {
    let out = Command::new("ip").args(["-N", "-j", "-4", "route", "show", "table", "all", "dev", DEVICE, "proto", PROTO]).output().map_err(no_ip)?;
    if !out.status.success() {
        return Err(fail(format!("reading the routes of {DEVICE}: {}", String::from_utf8_lossy(&out.stderr).trim())));
    }
    parse_routes(&out.stdout)
}

fn parse_routes(json: &[u8]) -> Result<BTreeSet<Route>> {
    let v: serde_json::Value = serde_json::from_slice(json).map_err(|e| fail(format!("reading ip's JSON: {e}")))?;
    let mut set = BTreeSet::new();
    for r in v.as_array().map(Vec::as_slice).unwrap_or_default() {
        // `ip` writes a host route without its length.
        let Some((dst, len)) = r["dst"].as_str().and_then(|d| match d.split_once('/') {
            Some((net, len)) => Some((net.parse::<Ipv4Addr>().ok()?, len.parse::<u8>().ok().filter(|l| *l <= 32)?)),
            None => Some((d.parse().ok()?, 32)),
        }) else {
            continue;
        };
        // `ip` leaves the table out for main (254) and names the ones rt_tables names.
        let table = match &r["table"] {
            serde_json::Value::Null => 254,
            t => t
                .as_str()
                .and_then(|s| s.parse().ok())
                .or_else(|| t.as_u64().and_then(|n| u32::try_from(n).ok()))
                .ok_or_else(|| fail(format!("route {dst} of {DEVICE} is in table {t}, which has a name: privatelink's announce tables must be numbered")))?,
        };
        set.insert((table, dst, len));
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_read_back_from_ip_json() {
        let json = br#"[{"dst":"10.0.0.100","dev":"pl-announce","table":"100","protocol":"4","scope":"link","flags":[]},
                        {"dst":"10.0.0.101","dev":"pl-announce","table":"7","protocol":"4","scope":"link","flags":[]},
                        {"dst":"11.163.64.0/18","dev":"pl-announce","table":"101","protocol":"4","scope":"link","flags":[]},
                        {"dst":"11.163.64.0/33","dev":"pl-announce","table":"101"},
                        {"type":"local","dst":"fe80::/64","dev":"pl-announce"}]"#;
        let got = parse_routes(json).unwrap();
        assert_eq!(got, [(100, Ipv4Addr::new(10, 0, 0, 100), 32), (7, Ipv4Addr::new(10, 0, 0, 101), 32), (101, Ipv4Addr::new(11, 163, 64, 0), 18)].into());
        assert!(parse_routes(br#"[{"dst":"10.0.0.1","table":"edge"}]"#).unwrap_err().to_string().contains("has a name"));
    }
}
