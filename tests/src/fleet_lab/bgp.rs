//! The fleet lab's BGP half: BIRD on the router and on each node, and what the
//! router's and the nodes' routing tables say.

use super::{Fleet, Routing, ANNOUNCE_TABLE, ROUTER_TABLE, SNAT_ANNOUNCE_TABLE};
use crate::daemon_lab::{path_str, privatelink_bin};
use privatelink::lab::{bird, frr};
use std::{collections::BTreeSet, net::Ipv4Addr};

/// With FRR, the table the router's forwarding plane fills (see `lab ecmp`).
const RESILIENT_TABLE: u32 = 201;

impl Fleet {
    /// The router's routing daemon (sessions with every node, paths merged: BIRD into
    /// `ROUTER_TABLE`, FRR into the main table) and its forwarding plane.
    pub(super) fn start_router(&mut self) {
        let peers: Vec<_> = (1..=self.nodes.len()).map(|i| (Ipv4Addr::new(172, 16, i as u8, 2), format!("r-g{i}"))).collect();
        let router = self.router.name.clone();
        let ecmp = match self.routing {
            Some(Routing::Frr) => {
                let hops: Vec<Ipv4Addr> = peers.iter().map(|p| p.0).collect();
                let procs = self.start_frr(&router, "router", &frr::router(&hops));
                self.router_procs.extend(procs);
                self.router.ip(&["rule", "add", "pref", "100", "lookup", &RESILIENT_TABLE.to_string()]);
                vec!["--table".to_string(), "254".into(), "--into".into(), RESILIENT_TABLE.to_string()]
            }
            _ => {
                let conf = self.dir.join("bird-router.conf");
                std::fs::write(&conf, bird::router(Ipv4Addr::new(10, 0, 0, 1), &peers, ROUTER_TABLE)).unwrap();
                let ctl = self.dir.join("bird-router.ctl");
                let bird = self.spawn_in(&router, "bird-router", &["bird", "-f", "-c", path_str(&conf), "-s", path_str(&ctl)]);
                self.router_procs.push(bird);
                vec!["--table".to_string(), ROUTER_TABLE.to_string()]
            }
        };
        let mut args = vec![path_str(&privatelink_bin()).to_string(), "lab".into(), "ecmp".into()];
        args.extend(ecmp);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let ecmp = self.spawn_in(&router, "ecmp", &args);
        self.router_procs.push(ecmp);
    }

    /// The provider side's router (BIRD in the provider's namespace): a session with
    /// every node over its link, the SNAT slices they announce into the main table.
    pub(super) fn start_provider_router(&mut self) {
        let peers: Vec<_> = (1..=self.nodes.len()).map(|i| (Ipv4Addr::new(192, 168, 2, i as u8), Ipv4Addr::new(192, 168, 2, 200 + i as u8), format!("p{i}"))).collect();
        let conf = self.dir.join("bird-provider.conf");
        std::fs::write(&conf, bird::provider_router(Ipv4Addr::new(192, 168, 2, 200), &peers)).unwrap();
        let ctl = self.dir.join("bird-provider.ctl");
        let ns = self.provider.name.clone();
        let bird = self.spawn_in(&ns, "bird-provider", &["bird", "-f", "-c", path_str(&conf), "-s", path_str(&ctl)]);
        self.router_procs.push(bird);
    }

    /// Where the provider's namespace routes `addr` now (the next hop), if anywhere.
    pub fn provider_route(&self, addr: Ipv4Addr) -> Option<Ipv4Addr> {
        let out = self.provider.try_exec(&["ip", "-j", "route", "get", &addr.to_string()]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        v[0]["gateway"].as_str()?.parse().ok()
    }

    /// Node `i`'s routing daemon: announces what its daemon publishes to the router.
    pub fn start_routing(&mut self, i: usize) {
        assert!(self.nodes[i].routing.is_empty());
        let k = i as u8 + 1;
        let (local, peer) = (Ipv4Addr::new(172, 16, k, 2), Ipv4Addr::new(172, 16, k, 1));
        let ns = self.nodes[i].ns.name.clone();
        let procs = match self.routing {
            Some(Routing::Frr) => self.start_frr(&ns, &format!("gw{k}"), &frr::node(local, peer)),
            _ => {
                let conf = self.dir.join(format!("bird-gw{k}.conf"));
                let mut text = bird::node(local, peer, "gw-c0", ANNOUNCE_TABLE);
                if self.provider_bgp {
                    text += &bird::node_provider(Ipv4Addr::new(192, 168, 2, k), Ipv4Addr::new(192, 168, 2, 200 + k), "gw-prov", SNAT_ANNOUNCE_TABLE);
                }
                std::fs::write(&conf, text).unwrap();
                let ctl = self.dir.join(format!("bird-gw{k}.ctl"));
                vec![self.spawn_in(&ns, &format!("bird-gw{k}"), &["bird", "-f", "-c", path_str(&conf), "-s", path_str(&ctl)])]
            }
        };
        self.nodes[i].routing = procs;
    }

    /// FRR's zebra, bfdd and bgpd in `ns` with their own path space, `conf` loaded.
    fn start_frr(&self, ns: &str, name: &str, conf: &str) -> Vec<std::process::Child> {
        let dir = self.dir.join(format!("frr-{name}"));
        frr::prepare(&dir).expect("FRR's directory");
        let procs = frr::DAEMONS
            .iter()
            .map(|d| {
                let cmd = frr::command(d, &dir);
                let args: Vec<&str> = cmd.iter().map(String::as_str).collect();
                self.spawn_in(ns, &format!("frr-{name}-{d}"), &args)
            })
            .collect();
        frr::configure(ns, &dir, conf).unwrap_or_else(|e| panic!("FRR in {ns} (apt install frr: cargo xtask setup): {e:#}"));
        procs
    }

    /// The addresses node `i` publishes in its announce table.
    pub fn published(&self, i: usize) -> BTreeSet<Ipv4Addr> {
        let out = self.nodes[i].ns.try_exec(&["ip", "-j", "route", "show", "table", &ANNOUNCE_TABLE.to_string()]);
        routes_json(&String::from_utf8_lossy(&out.stdout)).into_iter().map(|(dst, _)| dst).collect()
    }

    /// The next hops (node addresses) the router forwards `addr` to now: what BGP
    /// gives it (`ROUTER_TABLE`), once the forwarding plane follows (the route's
    /// next-hop group in the main table holds the same nodes).
    pub fn next_hops(&self, addr: Ipv4Addr) -> BTreeSet<Ipv4Addr> {
        let json = |args: &[&str]| -> serde_json::Value {
            let out = self.router.try_exec(args);
            serde_json::from_slice(&out.stdout).unwrap_or_default()
        };
        let router_table = ROUTER_TABLE.to_string();
        let (learned, forwarding) = match self.routing {
            Some(Routing::Frr) => (vec!["ip", "-j", "route", "show", "proto", "bgp"], RESILIENT_TABLE),
            _ => (vec!["ip", "-j", "route", "show", "table", &router_table], 254),
        };
        let out = self.router.try_exec(&learned);
        let bgp: BTreeSet<Ipv4Addr> = routes_json(&String::from_utf8_lossy(&out.stdout)).into_iter().filter(|(d, _)| *d == addr).flat_map(|(_, h)| h).collect();
        let route = json(&["ip", "-j", "route", "show", &format!("{addr}/32"), "table", &forwarding.to_string()]);
        let Some(group) = route[0]["nhid"].as_u64() else { return BTreeSet::new() };
        let objects = json(&["ip", "-j", "nexthop", "show"]);
        let objects = objects.as_array().map(Vec::as_slice).unwrap_or_default();
        let of_id = |id: u64| objects.iter().find(|o| o["id"].as_u64() == Some(id));
        let members = of_id(group).and_then(|g| g["group"].as_array().cloned()).unwrap_or_default();
        let forwarding: BTreeSet<Ipv4Addr> =
            members.iter().filter_map(|m| of_id(m["id"].as_u64()?)?["gateway"].as_str()?.parse().ok()).collect();
        if forwarding == bgp {
            bgp
        } else {
            BTreeSet::new()
        }
    }
}

/// (destination, next hops) of each route in `ip -j route show` output.
fn routes_json(out: &str) -> Vec<(Ipv4Addr, Vec<Ipv4Addr>)> {
    let v: serde_json::Value = serde_json::from_str(out).unwrap_or_default();
    let hop = |h: &serde_json::Value| h["gateway"].as_str().and_then(|g| g.parse().ok());
    v.as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|r| {
            let dst = r["dst"].as_str()?.trim_end_matches("/32").parse().ok()?;
            let hops = match r["nexthops"].as_array() {
                Some(n) => n.iter().filter_map(hop).collect(),
                None => hop(r).into_iter().collect(),
            };
            Some((dst, hops))
        })
        .collect()
}
