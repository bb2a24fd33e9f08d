//! What `get`, `describe`, `stats`, `conntrack list`, `whois` and `status` show: a
//! picture's recorded state joined with what the data path counts, as the API's view
//! types. Functions of a `Picture`: they read, never wait for the writer, and can
//! change nothing.

use super::{api::*, picture::Picture};
use crate::{
    dataplane::{kernel, maps, monotonic_ns, netlink},
    model::{
        buddy, dns,
        fleet::{self, Seat},
        health as model_health,
        spec::Backend,
        state::{EndpointRecord, EndpointState},
        tenancy,
    },
};
use anyhow::{bail, Context, Result};
use privatelink_common::*;
use std::{net::Ipv4Addr, sync::atomic::Ordering::Relaxed};

impl Picture {
    pub fn get(&self, kind: Kind, name: Option<&str>) -> Result<Response> {
        Ok(match kind {
            Kind::Services => {
                let names: Vec<String> = match name {
                    Some(n) => vec![n.to_string()],
                    None => self.state.services.keys().cloned().collect(),
                };
                Response::ok(names.iter().map(|n| self.service_view(n)).collect::<Result<Vec<_>>>()?)
            }
            Kind::Endpoints => match name {
                Some(n) => Response::ok(vec![self.endpoint_view(n)?]),
                None => Response::ok(self.endpoint_views()?),
            },
            Kind::Nodes => {
                let rows: Vec<NodeView> = self.nodes()?.into_iter().filter(|v| name.is_none_or(|n| n == v.name)).collect();
                if let (Some(n), true) = (name, rows.is_empty()) {
                    bail!("no node named `{n}` in the fleet");
                }
                Response::ok(rows)
            }
            Kind::Vpcs => {
                let rows: Vec<VpcView> = self
                    .state
                    .vpcs
                    .values()
                    .filter(|v| name.is_none_or(|n| n == v.spec.name))
                    .map(|v| VpcView {
                        name: v.spec.name.clone(),
                        interface: v.spec.interface.clone(),
                        cidr: v.spec.cidr.to_string(),
                        vpc_id: v.vpc_id,
                        attached: self.path.links.iter().any(|l| l.interface == v.spec.interface),
                    })
                    .collect();
                if let (Some(n), true) = (name, rows.is_empty()) {
                    bail!("no VPC named `{n}`");
                }
                Response::ok(rows)
            }
        })
    }

    pub fn service_view(&self, key: &str) -> Result<ServiceView> {
        let s = self.state.find_service(key).with_context(|| format!("no service named or with id `{key}`"))?;
        let sp = &s.spec;
        Ok(ServiceView {
            name: sp.name.clone(),
            id: s.id.clone(),
            full_name: self.state.full_service_name(s),
            state: s.state.to_string(),
            owner: sp.owner.0.clone(),
            vpc: sp.vpc.clone(),
            backends: sp.backends.iter().map(|b| self.backend_view(&sp.name, b)).collect(),
            ports: sp
                .ports
                .iter()
                .map(|p| PortView { protocol: p.protocol.to_string(), endpoint_port: p.endpoint_port as u16, service_port: p.service_port as u16 })
                .collect(),
            auto_accept: sp.auto_accept,
            allowed_accounts: sp.allowed_accounts.iter().map(|a| a.0.clone()).collect(),
            connection_limit: sp.connection_limit,
            on_revoke: format!("{:?}", sp.on_revoke).to_lowercase(),
            snat_range: self.state.snat_range_of(sp).to_string(),
            description: sp.description.clone(),
            endpoints: self.state.endpoints.values().filter(|e| e.service == sp.name).map(|e| e.spec.name.clone()).collect(),
            created_at: Timestamp::from_unix_secs(s.created_at),
            failing_open: sp.failing_open(&|n, ip| self.health.is_up(n, ip)),
            dns_names: dns::service_names(&self.state, &sp.name),
            managed_by: self.state.managed.by(tenancy::Kind::Service, &sp.name),
            private_dns_name: sp.private_dns_name.clone(),
            health_check: sp.health_check.as_ref().map(|h| HealthCheckView {
                kind: format!("{:?}", h.kind).to_lowercase(),
                port: h.port.map(|p| p as u16),
                path: h.path.clone(),
            }),
        })
    }

    fn backend_view(&self, service: &str, b: &Backend) -> BackendView {
        let h = self.health.backend(service, b.address);
        let health = match (h.checked, h.up) {
            (false, _) => Health::Unchecked,
            (true, true) => Health::Up,
            (true, false) => Health::Down,
        };
        let seen_down_by: Vec<String> = model_health::seen_down_by(&self.state, service, b.address).into_iter().cloned().collect();
        let fleet_health = match (h.checked || !seen_down_by.is_empty(), model_health::decided_down(&self.state, service, b.address)) {
            (false, _) => Health::Unchecked,
            (true, true) => Health::Down,
            (true, false) => Health::Up,
        };
        BackendView { address: b.address, weight: b.weight, zone: b.zone.clone(), health, fleet_health, seen_down_by, last_error: h.last_error }
    }

    pub fn endpoint_view(&self, key: &str) -> Result<EndpointView> {
        let e = self.state.find_endpoint(key).with_context(|| format!("no endpoint named or with id `{key}`"))?;
        let counts = match &self.counters {
            Some(c) => (c.active_flows(e.index)?, c.endpoint_stats(e.index)?.snat_ports_in_use()),
            None => (0, 0),
        };
        let names = dns::endpoint_names_given(&self.state, &e.spec.name, self.dns_holder(&e.spec.vpc, &e.service));
        Ok(self.endpoint_view_of(e, counts, names, &self.seat()))
    }

    /// Every endpoint's view: the counters read once for all, the DNS names' holders
    /// found once for all.
    fn endpoint_views(&self) -> Result<Vec<EndpointView>> {
        let counters = self.counters.as_ref().map(|c| c.endpoint_counters(self.state.endpoint_slots_used())).transpose()?;
        let seat = self.seat();
        let views = self.state.endpoints.values().map(|e| {
            let counts = counters.as_ref().map_or((0, 0), |c| (c.active(e.index), c.stats(e.index).snat_ports_in_use()));
            let holder = self.dns_holder(&e.spec.vpc, &e.service);
            self.endpoint_view_of(e, counts, dns::endpoint_names_given(&self.state, &e.spec.name, holder), &seat)
        });
        Ok(views.collect())
    }

    /// An endpoint's view given its (live flows, SNAT ports in use) and DNS names.
    fn endpoint_view_of(&self, e: &EndpointRecord, (active, ports_in_use): (u64, u64), names: Vec<(String, Ipv4Addr)>, seat: &Seat) -> EndpointView {
        let svc = self.state.services.get(&e.service);
        let mine = self.state.snat_ips_on(e, seat.slice);
        EndpointView {
            name: e.spec.name.clone(),
            id: e.id.clone(),
            state: e.state.to_string(),
            owner: e.spec.owner.0.clone(),
            vpc: e.spec.vpc.clone(),
            ip: e.ip,
            service: e.service.clone(),
            service_id: svc.map(|s| s.id.clone()).unwrap_or_default(),
            snat_ip: mine.first().copied().unwrap_or(e.snat_ip),
            snat_ips: mine,
            snat_by_node: self.state.nodes.iter().map(|(n, r)| NodeSnat { node: n.clone(), slice: r.slice, snat_ips: self.state.snat_ips_on(e, r.slice) }).collect(),
            connection_limit_share: seat.share(svc.map_or(0, |s| s.spec.connection_limit as u32)),
            snat_ports_in_use: ports_in_use,
            connection_limit: svc.map_or(0, |s| s.spec.connection_limit),
            active_connections: active,
            reason: e.reason.clone(),
            created_at: Timestamp::from_unix_secs(e.created_at),
            dns_names: names.into_iter().map(|(name, address)| DnsNameView { name, address }).collect(),
            security_groups: e.spec.security_groups.clone(),
            managed_by: self.state.managed.by(tenancy::Kind::Endpoint, &e.spec.name),
            bandwidth_bps: e.spec.bandwidth.map(|b| b.0),
            dns_resolving: e.state == EndpointState::Accepted && self.state.vpcs.get(&e.spec.vpc).is_some_and(|v| v.spec.dns.is_some()),
        }
    }

    pub fn stats(&self) -> Result<StatsView> {
        let Some(c) = &self.counters else {
            return Ok(StatsView { endpoints: vec![], vpcs: vec![], gateway: Counters::default() });
        };
        let mut endpoints = Vec::new();
        let counters = c.endpoint_counters(self.state.endpoint_slots_used())?;
        for e in self.state.endpoints.values() {
            endpoints.push(self.endpoint_stats_of(e, counters.uses(e.index), counters.stats(e.index)));
        }
        let (vpcs, gateway) = self.vpc_counters()?;
        Ok(StatsView { endpoints, vpcs, gateway })
    }

    /// One endpoint's row of `stats`, given what it holds and its counters.
    pub fn endpoint_stats_of(&self, e: &EndpointRecord, uses: EpUse, stats: Stats) -> EndpointStats {
        EndpointStats {
            endpoint: e.spec.name.clone(),
            id: e.id.clone(),
            state: e.state.to_string(),
            active_connections: uses.open,
            connection_limit: self.state.services.get(&e.service).map_or(0, |s| s.spec.connection_limit),
            half_open: uses.half_open,
            flows: uses.flows,
            bandwidth_bps: e.spec.bandwidth.map(|b| b.0),
            counters: stats.into(),
        }
    }

    /// Each VPC interface's counters, and the gateway's: theirs plus the global slot.
    pub fn vpc_counters(&self) -> Result<(Vec<VpcStats>, Counters)> {
        let Some(c) = &self.counters else { return Ok((vec![], Counters::default())) };
        let mut total = c.global_stats()?;
        let mut vpcs = Vec::new();
        for v in self.state.vpcs.values() {
            let s = c.vpc_stats(v.vpc_id)?;
            total.add(&s);
            vpcs.push(VpcStats { vpc: v.spec.name.clone(), counters: s.into() });
        }
        Ok((vpcs, total.into()))
    }

    pub fn flows(&self, keep: impl Fn(&CtValue) -> bool) -> Result<Vec<FlowView>> {
        let Some(c) = &self.counters else { return Ok(vec![]) };
        self.flow_views(c.conntrack()?, keep, false)
    }

    /// The forward entries of `entries` that `keep` keeps, as views (`standby`: with
    /// the node each is held for).
    fn flow_views(&self, entries: Vec<(CtKey, CtValue)>, keep: impl Fn(&CtValue) -> bool, standby: bool) -> Result<Vec<FlowView>> {
        let now = monotonic_ns();
        let at = |ip: u32, port_be: u16| HostPort { address: maps::ip_from_raw(ip), port: u16::from_be(port_be) };
        let mut out = Vec::new();
        for (k, v) in entries {
            if v.kind != CT_KIND_FORWARD || !keep(&v) {
                continue;
            }
            let endpoint = self.state.endpoint_by_index(v.endpoint).map_or_else(|| format!("#{}", v.endpoint), |e| e.spec.name.clone());
            let state = match v.state {
                TCP_STATE_SYN => "syn",
                TCP_STATE_ESTABLISHED => "established",
                TCP_STATE_CLOSING => "closing",
                UDP_STATE => "udp",
                _ => "?",
            };
            out.push(FlowView {
                endpoint,
                protocol: if k.proto == PROTO_TCP { "tcp" } else { "udp" }.into(),
                client: at(k.src_ip_be, k.src_port_be),
                endpoint_address: at(k.dst_ip_be, k.dst_port_be),
                snat: at(v.nat_src_ip_be, v.nat_src_port_be),
                backend: at(v.nat_dst_ip_be, v.nat_dst_port_be),
                state: state.into(),
                // A copy's time is its origin's clock: not comparable here.
                idle_seconds: if standby { 0.0 } else { now.saturating_sub(v.last_seen_ns) as f64 / 1e9 },
                held_for: if standby { self.node_of_snat(maps::ip_from_raw(v.nat_src_ip_be)) } else { None },
            });
        }
        out.sort_by(|a, b| (&a.endpoint, &a.client).cmp(&(&b.endpoint, &b.client)));
        Ok(out)
    }

    /// `conntrack list [--endpoint E] [--standby]`.
    pub fn conntrack(&self, endpoint: Option<&str>, standby: bool) -> Result<Vec<FlowView>> {
        let only = match endpoint {
            Some(e) => Some(self.state.find_endpoint(e).with_context(|| format!("no endpoint named or with id `{e}`"))?.index),
            None => None,
        };
        let keep = |v: &CtValue| only.is_none_or(|i| v.endpoint == i);
        if !standby {
            return self.flows(keep);
        }
        let reader = self.replication.standby_reader.lock().unwrap().clone();
        let Some(r) = reader else { return Ok(vec![]) };
        self.flow_views(r.entries()?, keep, true)
    }

    /// The node whose SNAT slice holds `ip`.
    fn node_of_snat(&self, ip: Ipv4Addr) -> Option<String> {
        let (_, slice) = self.state.endpoint_by_snat_ip(ip)?;
        self.state.nodes.iter().find(|(_, r)| r.slice == slice).map(|(n, _)| n.clone())
    }

    pub fn whois(&self, snat_ip: Ipv4Addr, port: Option<u16>) -> Result<WhoisView> {
        let (e, slice) = self
            .state
            .endpoint_by_snat_ip(snat_ip)
            .with_context(|| format!("{snat_ip} is not the SNAT address of any endpoint"))?;
        let node = self.state.nodes.iter().find(|(_, r)| r.slice == slice).map(|(n, _)| n.clone());
        let raw = maps::ip_raw(snat_ip);
        let flows = self.flows(|v| v.nat_src_ip_be == raw && port.is_none_or(|p| v.nat_src_port_be == p.to_be()))?;
        if let (Some(p), true) = (port, flows.is_empty()) {
            bail!("no live flow uses {snat_ip}:{p} (it belongs to endpoint {} of account {})", e.spec.name, e.spec.owner);
        }
        Ok(WhoisView {
            snat_ip,
            endpoint: e.spec.name.clone(),
            endpoint_id: e.id.clone(),
            account: e.spec.owner.0.clone(),
            vpc: e.spec.vpc.clone(),
            endpoint_ip: e.ip,
            service: e.service.clone(),
            node,
            flows,
        })
    }

    pub fn status(&self) -> Result<StatusView> {
        let (st, f, sweep) = (&self.state, &self.path, &self.sweeper);
        let mut view = StatusView {
            data_path_loaded: self.counters.is_some(),
            program_id: f.program_id,
            interfaces: vec![],
            maps: vec![],
            bpffs: self.opts.bpffs.display().to_string(),
            state_dir: self.opts.state_dir.display().to_string(),
            generation: st.generation,
            reconciles: f.counts.reconciles,
            last_reconcile: f.counts.last_reconcile,
            sweeps: sweep.runs.load(Relaxed),
            expired_flows: sweep.expired.load(Relaxed),
            repaired_links: f.counts.repaired_links,
            repaired_map_ops: f.counts.repaired_map_ops,
            repaired_accounting: sweep.repairs.load(Relaxed),
            node: self.opts.node.clone(),
            zone: self.opts.zone.clone(),
            store: self.store.describe(),
            store_reachable: self.store.reachable(),
            nodes_up: st.nodes.values().filter(|n| n.up).count().max(1) as u32,
            announced: self.routes.iter().map(|&(table, address, prefix_len)| RouteView { table, address, prefix_len }).collect(),
            announce_error: self.route_error.clone(),
            warnings: f.warning.iter().cloned().collect(),
        };
        let Some(cap) = f.ct_capacity else { return Ok(view) };
        for l in &f.links {
            if l.native && netlink::veth_peer_runs_xdp(l.ifindex) == Some(false) {
                view.warnings.push(format!(
                    "{} (VPC {}) is a veth in native XDP mode whose peer runs no XDP program: frames the gateway sends out of it vanish; set vpcs[].xdp_mode to auto or generic",
                    l.interface, l.vpc
                ));
            }
            let arp = kernel::arp_drift(&l.interface);
            if !arp.is_empty() {
                view.warnings.push(format!("{} (VPC {}): {}: the kernel answers ARP there for the gateway's addresses in other VPCs", l.interface, l.vpc, arp.join(", ")));
            }
            view.interfaces.push(InterfaceView {
                vpc: l.vpc.clone(),
                interface: l.interface.clone(),
                ifindex: l.ifindex,
                program_id: l.program_id,
                link_pinned: l.pin_path.clone(),
                xdp_mode: if l.native { "native" } else { "generic" }.into(),
            });
        }
        // Counted by the sweeper's last pass: a status never walks the table.
        let fill = |t: &str, used: usize, cap: u32| Fill { table: t.into(), used: used as u64, capacity: cap as u64 };
        view.maps = vec![
            Fill { table: "conntrack entries".into(), used: sweep.entries.load(Relaxed), capacity: cap as u64 },
            fill("endpoints", st.endpoints.len(), MAX_ENDPOINTS),
            fill("services", st.services.len(), MAX_SERVICES),
            fill("backends", st.services.values().map(|s| s.backend_slots.len()).sum(), MAX_BACKENDS),
            fill("vpcs", st.vpcs.len(), MAX_VPCS - 1),
        ];
        Ok(view)
    }

    /// `describe node NAME`.
    pub fn node(&self, name: &str) -> Result<NodeView> {
        self.nodes()?.into_iter().find(|n| n.name == name).ok_or_else(|| anyhow::anyhow!("no node named `{name}` in the fleet"))
    }

    /// `get nodes`: every recorded node, with what its registration says when alive.
    pub fn nodes(&self) -> Result<Vec<NodeView>> {
        let shared = self.store.shared();
        let beats = if shared { self.store.beats()? } else { Vec::new() };
        let mut out = Vec::new();
        for (name, r) in &self.state.nodes {
            let me = *name == self.opts.node;
            let beat = beats.iter().find(|b| b.name == *name);
            let repl = &self.replication;
            let (address, lag, standby) = match (me, beat) {
                (true, _) => (self.opts.replication_listen, repl.lag_quantile(0.99), repl.standby_flows()),
                (_, Some(b)) => (b.replication, b.replication_lag_seconds, b.standby_flows),
                (_, None) => (None, None, 0),
            };
            let (interfaces, flows, last) = match (me, beat) {
                (true, _) if !shared => (self.path.links.iter().map(|l| l.interface.clone()).collect(), self.live_flows(), None),
                (_, Some(b)) => (b.interfaces.clone(), b.flows, Some(Timestamp(b.at_ms))),
                (_, None) => (Vec::new(), 0, None),
            };
            let state = match (r.up, !shared || beat.is_some()) {
                (true, true) => "up",
                // Stopped with its data path attached, within its restart grace.
                (true, false) if fleet::still_restarting(r, crate::model::time::unix_now_ms()) => "restarting",
                // Its lease ran out; the others have not recorded it yet.
                (true, false) => "unreachable",
                (false, true) => "joining",
                (false, false) => "down",
            };
            out.push(NodeView {
                name: name.clone(),
                zone: r.zone.clone(),
                state: state.into(),
                slice: r.slice,
                snat_slices: fleet::snat_slices_of(&self.state, r.slice),
                interfaces,
                flows,
                last_heartbeat: last,
                buddy: buddy::buddy_of(&self.state, name),
                replication: address,
                replication_lag_seconds: lag,
                standby_flows: standby,
                this_node: me,
                announced: if me { self.routes.iter().map(|&(table, address, prefix_len)| RouteView { table, address, prefix_len }).collect() } else { Vec::new() },
            });
        }
        Ok(out)
    }

    /// Flows this node holds now (the data path's count of every endpoint's).
    fn live_flows(&self) -> u64 {
        self.counters.as_ref().map_or(0, |c| c.active_flows_of(self.state.endpoints.values().map(|e| e.index)))
    }
}
