//! Publishing the endpoint addresses this node serves as /32 routes in the kernel
//! routing tables the spec names, for a routing daemon (BIRD, FRR) to announce.
//!
//! The routes lead to a TUN device this process holds open and never reads: when
//! the process ends, by any means (a crash, SIGKILL), the kernel removes the device
//! and every route through it, so a dead daemon's addresses are withdrawn without
//! anybody cleaning up. The tables are for announcing only; no `ip rule` should
//! look them up.

use super::{Error, Result};
use std::{
    collections::BTreeSet,
    fs::OpenOptions,
    io::Write,
    net::Ipv4Addr,
    os::{fd::AsRawFd, unix::fs::OpenOptionsExt},
    process::{Command, Stdio},
};

/// The device every published route goes through.
pub const DEVICE: &str = "pl-announce";

/// The protocol the routes carry (`proto static`): routing daemons learn them from
/// the kernel (BIRD's `learn`, FRR's `redistribute kernel`).
const PROTO: &str = "static";

/// A published route: (routing table, endpoint address).
pub type Route = (u32, Ipv4Addr);

pub struct Announcer {
    /// Held open for the routes' life; closing it removes the device.
    _tun: std::fs::File,
    have: BTreeSet<Route>,
}

impl Announcer {
    /// Create the device (not persistent: it lives as long as this process holds it).
    pub fn open() -> Result<Announcer> {
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
                return Err(fail(format!("device {DEVICE} is held by another process (another privatelink daemon in this network namespace?)")));
            }
            return Err(fail(format!("creating device {DEVICE}: {e}")));
        }
        ip(&["link", "set", DEVICE, "up"])?;
        Ok(Announcer { _tun: tun, have: BTreeSet::new() })
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
        for (table, ip) in self.have.difference(want) {
            batch.push_str(&format!("route del {ip}/32 dev {DEVICE} table {table}\n"));
        }
        for (table, ip) in want.difference(&self.have) {
            batch.push_str(&format!("route replace {ip}/32 dev {DEVICE} table {table} proto {PROTO}\n"));
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

/// The routes through the device now, in every table.
fn kernel_routes() -> Result<BTreeSet<Route>> {
    let out = Command::new("ip").args(["-N", "-j", "-4", "route", "show", "table", "all", "dev", DEVICE]).output().map_err(no_ip)?;
    if !out.status.success() {
        return Err(fail(format!("reading the routes of {DEVICE}: {}", String::from_utf8_lossy(&out.stderr).trim())));
    }
    parse_routes(&out.stdout)
}

fn parse_routes(json: &[u8]) -> Result<BTreeSet<Route>> {
    let v: serde_json::Value = serde_json::from_slice(json).map_err(|e| fail(format!("reading ip's JSON: {e}")))?;
    let mut set = BTreeSet::new();
    for r in v.as_array().map(Vec::as_slice).unwrap_or_default() {
        let Some(dst) = r["dst"].as_str().and_then(|d| d.trim_end_matches("/32").parse().ok()) else { continue };
        // `ip` leaves the table out for main (254) and names the ones rt_tables names.
        let table = match &r["table"] {
            serde_json::Value::Null => 254,
            t => t
                .as_str()
                .and_then(|s| s.parse().ok())
                .or_else(|| t.as_u64().and_then(|n| u32::try_from(n).ok()))
                .ok_or_else(|| fail(format!("route {dst} of {DEVICE} is in table {t}, which has a name: privatelink's announce tables must be numbered")))?,
        };
        set.insert((table, dst));
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
                        {"type":"local","dst":"fe80::/64","dev":"pl-announce"}]"#;
        let got = parse_routes(json).unwrap();
        assert_eq!(got, [(100, Ipv4Addr::new(10, 0, 0, 100)), (7, Ipv4Addr::new(10, 0, 0, 101))].into());
        assert!(parse_routes(br#"[{"dst":"10.0.0.1","table":"edge"}]"#).unwrap_err().to_string().contains("has a name"));
    }
}
