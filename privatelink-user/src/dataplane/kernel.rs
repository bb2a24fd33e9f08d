//! What the kernel must and must not do beside the data path on VPC interfaces.
//! - ARP: the kernel answers only for addresses of the interface a request came in on
//!   (`arp_ignore=1`) and asks from that interface's own address (`arp_announce=2`):
//!   by default (0) it claims, in every VPC, the gateway's addresses in the others,
//!   and with overlapping ranges would take over a real host's address.
//! - Neighbours: the data path never hands a rewritten frame to the kernel to resolve
//!   a next hop (its routing is not the flow's), so the next hop of every backend is
//!   kept resolved by the kernel itself (`managed` neighbours, NTF_EXT_MANAGED, Linux
//!   >= 5.16).
//!
//! Never touches BPF; runs `ip` and writes /proc/sys, in this process's network namespace.

use super::{error::Error, Result};
use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
    process::Command,
};

/// The ARP settings every VPC interface gets, and `status` checks.
pub const ARP_SETTINGS: [(&str, &str); 2] = [("arp_ignore", "1"), ("arp_announce", "2")];

fn conf_path(iface: &str, key: &str) -> String {
    format!("/proc/sys/net/ipv4/conf/{iface}/{key}")
}

/// Set the ARP settings of `iface`.
pub fn harden_arp(iface: &str) -> Result<()> {
    for (key, value) in ARP_SETTINGS {
        let path = conf_path(iface, key);
        if std::fs::read_to_string(&path).is_ok_and(|v| v.trim() == value) {
            continue;
        }
        std::fs::write(&path, value).map_err(|e| Error::Link(format!("setting {path} to {value}: {e}")))?;
    }
    Ok(())
}

/// What differs from the ARP settings on `iface`, as `key=value (want W)` lines.
pub fn arp_drift(iface: &str) -> Vec<String> {
    ARP_SETTINGS
        .iter()
        .filter_map(|(key, want)| {
            let have = std::fs::read_to_string(conf_path(iface, key)).map(|v| v.trim().to_string()).unwrap_or_else(|_| "unreadable".into());
            (have != *want).then(|| format!("{key}={have} (want {want})"))
        })
        .collect()
}

/// The backends whose next hop this process has made managed: each looked up once
/// (a route that changes later reaches the backends added after it).
#[derive(Default)]
pub struct Neighbours {
    done: BTreeSet<(String, u32, Ipv4Addr)>,
}

impl Neighbours {
    /// Make the next hop of every backend in `backends` ((provider interface, routing
    /// table, address), as `Tables::backend_hops` gives them) a managed neighbour on
    /// its provider VPC's interface. One `ip route` per interface and table with new backends, one
    /// `ip neigh` per new next hop. A next hop that cannot be found or set is logged and
    /// tried again at the next call; its backend's new flows are dropped as
    /// `no_neighbour` meanwhile.
    pub fn ensure(&mut self, backends: BTreeSet<(u32, u32, Ipv4Addr)>) {
        let named = backends.into_iter().filter_map(|(ifindex, table, ip)| Some((ifname(ifindex)?, table, ip)));
        let new: Vec<_> = named.filter(|b| !self.done.contains(b)).collect();
        let mut routes: BTreeMap<(String, u32), Vec<serde_json::Value>> = BTreeMap::new();
        let mut managed: BTreeSet<(String, Ipv4Addr)> = BTreeSet::new();
        for (iface, table, backend) in new {
            let key = (iface.clone(), table);
            if !routes.contains_key(&key) {
                match route_table(&iface, table) {
                    Ok(r) => routes.insert(key.clone(), r),
                    Err(e) => {
                        tracing::warn!(interface = %iface, table, error = %e, "reading the routes towards backends");
                        continue;
                    }
                };
            }
            let Some(hop) = longest_match(&routes[&key], backend) else {
                tracing::warn!(interface = %iface, table, backend = %backend, "no route towards a backend out of its VPC's interface");
                continue;
            };
            if !managed.contains(&(iface.clone(), hop)) {
                if let Err(e) = manage(&iface, hop) {
                    tracing::warn!(interface = %iface, next_hop = %hop, error = %e, "keeping a backend's next hop resolved");
                    continue;
                }
                managed.insert((iface.clone(), hop));
            }
            self.done.insert((iface, table, backend));
        }
    }
}

fn ifname(ifindex: u32) -> Option<String> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: the buffer holds IF_NAMESIZE bytes, as if_indextoname requires.
    let p = unsafe { libc::if_indextoname(ifindex, buf.as_mut_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: if_indextoname wrote a NUL-terminated name into buf.
    Some(unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }.to_string_lossy().into_owned())
}

pub(crate) fn ip_json(args: &[&str]) -> Result<serde_json::Value> {
    let out = Command::new("ip").args(args).output().map_err(|e| Error::Link(format!("running ip: {e}")))?;
    if !out.status.success() {
        return Err(Error::Link(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim())));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| Error::Link(format!("reading ip {}: {e}", args.join(" "))))
}

/// The routes of routing table `table` (0: main) that leave `iface`.
fn route_table(iface: &str, table: u32) -> Result<Vec<serde_json::Value>> {
    let table = if table == 0 { "main".to_string() } else { table.to_string() };
    let routes = ip_json(&["-4", "-j", "route", "show", "table", &table, "dev", iface])?;
    Ok(routes.as_array().cloned().unwrap_or_default())
}

/// The neighbour `backend` is reached through, as the FIB would answer from these
/// routes (all of one device): the longest matching prefix's gateway, or the backend
/// itself on a link route. `None`: no route.
fn longest_match(routes: &[serde_json::Value], backend: Ipv4Addr) -> Option<Ipv4Addr> {
    let mut best: Option<(u8, Ipv4Addr)> = None;
    for r in routes {
        let Some(dst) = r["dst"].as_str() else { continue };
        let (net, len) = match dst {
            "default" => (Ipv4Addr::UNSPECIFIED, 0),
            d => match d.split_once('/') {
                Some((n, l)) => match (n.parse::<Ipv4Addr>(), l.parse::<u8>()) {
                    (Ok(n), Ok(l)) if l <= 32 => (n, l),
                    _ => continue,
                },
                None => match d.parse::<Ipv4Addr>() {
                    Ok(n) => (n, 32),
                    Err(_) => continue,
                },
            },
        };
        let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
        if u32::from(backend) & mask != u32::from(net) & mask || best.is_some_and(|(l, _)| l >= len) {
            continue;
        }
        let hop = r["gateway"].as_str().and_then(|g| g.parse().ok()).unwrap_or(backend);
        best = Some((len, hop));
    }
    best.map(|(_, h)| h)
}

/// Make `hop` on `iface` a managed neighbour, keeping an entry that is already usable:
/// a static one (permanent, noarp) is left as it is, a learned one keeps its address
/// while the kernel takes over refreshing it.
fn manage(iface: &str, hop: Ipv4Addr) -> Result<()> {
    let hop_s = hop.to_string();
    let rows = ip_json(&["-4", "-j", "neigh", "show", "to", &hop_s, "dev", iface])?;
    let row = rows.as_array().and_then(|a| a.first()).cloned().unwrap_or_default();
    let states: Vec<&str> = row["state"].as_array().map(|s| s.iter().filter_map(|v| v.as_str()).collect()).unwrap_or_default();
    if row.get("managed").is_some() || states.iter().any(|s| *s == "PERMANENT" || *s == "NOARP") {
        return Ok(());
    }
    let mut args = vec!["neigh", "replace", hop_s.as_str(), "dev", iface];
    let lladdr = row["lladdr"].as_str().map(str::to_string);
    if let Some(mac) = &lladdr {
        args.extend(["lladdr", mac.as_str(), "nud", "stale"]);
    }
    args.push("managed");
    let out = Command::new("ip").args(&args).output().map_err(|e| Error::Link(format!("running ip: {e}")))?;
    if !out.status.success() {
        return Err(Error::Link(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim())));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_hop_is_the_longest_prefix_gateway_or_the_backend() {
        let routes: Vec<serde_json::Value> = serde_json::from_str(
            r#"[{"dst":"default","gateway":"192.168.2.254","dev":"vpc2"},
                {"dst":"192.168.2.0/24","dev":"vpc2","scope":"link"},
                {"dst":"10.9.0.0/16","gateway":"192.168.2.1","dev":"vpc2"},
                {"dst":"10.9.8.7","gateway":"192.168.2.2","dev":"vpc2"},
                {"dst":"junk/99","dev":"vpc2"}]"#,
        )
        .unwrap();
        let hop = |b: &str| longest_match(&routes, b.parse().unwrap()).map(|h| h.to_string());
        assert_eq!(hop("192.168.2.10").as_deref(), Some("192.168.2.10"), "on link: the backend itself");
        assert_eq!(hop("10.9.1.1").as_deref(), Some("192.168.2.1"));
        assert_eq!(hop("10.9.8.7").as_deref(), Some("192.168.2.2"), "a host route wins");
        assert_eq!(hop("172.16.0.1").as_deref(), Some("192.168.2.254"), "the default route");
        assert_eq!(longest_match(&routes[1..2], "172.16.0.1".parse().unwrap()), None, "no route");
    }
}
