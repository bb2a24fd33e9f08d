//! What `get`, `describe`, `stats`, `conntrack list`, `whois` and `status` show: the
//! recorded state joined with what the data path observes, as the API's view types.
//! Reads only; never changes the state or the maps (it takes the gateway mutably
//! only because the one lock hands it out that way).

use super::{api::*, gateway::Gateway, handler::ok};
use crate::{
    dataplane::{kernel, loader, maps, monotonic_ns, netlink},
    model::{dns, fleet::Seat, spec::Backend, state::EndpointState},
};
use anyhow::{bail, Context, Result};
use aya::programs::XdpMode;
use privatelink_common::*;
use std::{net::Ipv4Addr, sync::atomic::Ordering::Relaxed};

impl Gateway {
    pub(super) fn get(&mut self, kind: Kind, name: Option<&str>) -> Result<Response> {
        Ok(match kind {
            Kind::Services => {
                let names: Vec<String> = match name {
                    Some(n) => vec![n.to_string()],
                    None => self.state.services.keys().cloned().collect(),
                };
                ok(names.iter().map(|n| self.service_view(n)).collect::<Result<Vec<_>>>()?)
            }
            Kind::Endpoints => {
                let names: Vec<String> = match name {
                    Some(n) => vec![n.to_string()],
                    None => self.state.endpoints.keys().cloned().collect(),
                };
                ok(names.iter().map(|n| self.endpoint_view(n)).collect::<Result<Vec<_>>>()?)
            }
            Kind::Nodes => {
                let rows: Vec<NodeView> = self.nodes()?.into_iter().filter(|v| name.is_none_or(|n| n == v.name)).collect();
                if let (Some(n), true) = (name, rows.is_empty()) {
                    bail!("no node named `{n}` in the fleet");
                }
                ok(rows)
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
                        attached: self.links.contains(&v.spec.interface),
                    })
                    .collect();
                if let (Some(n), true) = (name, rows.is_empty()) {
                    bail!("no VPC named `{n}`");
                }
                ok(rows)
            }
        })
    }

    pub(super) fn service_view(&self, key: &str) -> Result<ServiceView> {
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
            failing_open: sp.failing_open(&|n, ip| self.checker.is_up(n, ip)),
            dns_names: dns::service_names(&self.state, &sp.name),
        })
    }

    fn backend_view(&self, service: &str, b: &Backend) -> BackendView {
        let h = self.checker.backend(service, b.address);
        let health = match (h.checked, h.up) {
            (false, _) => Health::Unchecked,
            (true, true) => Health::Up,
            (true, false) => Health::Down,
        };
        BackendView { address: b.address, weight: b.weight, zone: b.zone.clone(), health, last_error: h.last_error }
    }

    pub(super) fn endpoint_view(&self, key: &str) -> Result<EndpointView> {
        let e = self.state.find_endpoint(key).with_context(|| format!("no endpoint named or with id `{key}`"))?;
        let svc = self.state.services.get(&e.service);
        let (active, ports_in_use) = match &self.dp {
            Some(dp) => (dp.maps.active_flows(e.index)?, dp.maps.endpoint_stats(e.index)?.snat_ports_in_use()),
            None => (0, 0),
        };
        let seat = Seat::of(&self.state, &self.opts.node);
        let mine = self.state.snat_ips_on(e, seat.slice);
        Ok(EndpointView {
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
            dns_names: dns::endpoint_names(&self.state, &e.spec.name).into_iter().map(|(name, address)| DnsNameView { name, address }).collect(),
            security_groups: e.spec.security_groups.clone(),
            bandwidth_bps: e.spec.bandwidth.map(|b| b.0),
            dns_resolving: e.state == EndpointState::Accepted && self.state.vpcs.get(&e.spec.vpc).is_some_and(|v| v.spec.dns.is_some()),
        })
    }

    pub(super) fn stats(&mut self) -> Result<StatsView> {
        let Some(dp) = &self.dp else {
            return Ok(StatsView { endpoints: vec![], vpcs: vec![], gateway: Counters::default() });
        };
        let mut endpoints = Vec::new();
        let counters = dp.maps.endpoint_counters(self.state.endpoint_slots_used())?;
        for e in self.state.endpoints.values() {
            endpoints.push(EndpointStats {
                endpoint: e.spec.name.clone(),
                id: e.id.clone(),
                state: e.state.to_string(),
                active_connections: counters.active(e.index),
                connection_limit: self.state.services.get(&e.service).map_or(0, |s| s.spec.connection_limit),
                half_open: counters.uses(e.index).half_open,
                flows: counters.uses(e.index).flows,
                bandwidth_bps: e.spec.bandwidth.map(|b| b.0),
                counters: counters.stats(e.index).into(),
            });
        }
        let (vpcs, gateway) = self.vpc_counters()?;
        Ok(StatsView { endpoints, vpcs, gateway })
    }

    /// Each VPC interface's counters, and the gateway's: theirs plus the global slot.
    pub(super) fn vpc_counters(&self) -> Result<(Vec<VpcStats>, Counters)> {
        let Some(dp) = &self.dp else { return Ok((vec![], Counters::default())) };
        let mut total = dp.maps.global_stats()?;
        let mut vpcs = Vec::new();
        for v in self.state.vpcs.values() {
            let s = dp.maps.vpc_stats(v.vpc_id)?;
            total.add(&s);
            vpcs.push(VpcStats { vpc: v.spec.name.clone(), counters: s.into() });
        }
        Ok((vpcs, total.into()))
    }

    pub(super) fn flows(&self, keep: impl Fn(&CtValue) -> bool) -> Result<Vec<FlowView>> {
        let Some(dp) = &self.dp else { return Ok(vec![]) };
        let now = monotonic_ns();
        let at = |ip: u32, port_be: u16| HostPort { address: maps::ip_from_raw(ip), port: u16::from_be(port_be) };
        let mut out = Vec::new();
        for (k, v) in dp.maps.conntrack()? {
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
                idle_seconds: now.saturating_sub(v.last_seen_ns) as f64 / 1e9,
            });
        }
        out.sort_by(|a, b| (&a.endpoint, &a.client).cmp(&(&b.endpoint, &b.client)));
        Ok(out)
    }

    /// `conntrack list [--endpoint E]`.
    pub(super) fn conntrack(&self, endpoint: Option<&str>) -> Result<Vec<FlowView>> {
        let only = match endpoint {
            Some(e) => Some(self.state.find_endpoint(e).with_context(|| format!("no endpoint named or with id `{e}`"))?.index),
            None => None,
        };
        self.flows(|v| only.is_none_or(|i| v.endpoint == i))
    }

    pub(super) fn whois(&self, snat_ip: Ipv4Addr, port: Option<u16>) -> Result<WhoisView> {
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

    pub(super) fn status(&mut self) -> Result<StatusView> {
        let mut view = StatusView {
            data_path_loaded: self.dp.is_some(),
            program_id: None,
            interfaces: vec![],
            maps: vec![],
            bpffs: self.opts.bpffs.display().to_string(),
            state_dir: self.opts.state_dir.display().to_string(),
            generation: self.state.generation,
            reconciles: self.reconciles,
            last_reconcile: self.last_reconcile,
            sweeps: self.sweep.runs.load(Relaxed),
            expired_flows: self.sweep.expired.load(Relaxed),
            repaired_links: self.repaired_links,
            repaired_map_ops: self.repaired_map_ops,
            repaired_accounting: self.sweep.repairs.load(Relaxed),
            node: self.opts.node.clone(),
            zone: self.opts.zone.clone(),
            store: self.store.describe(),
            store_reachable: self.store.reachable(),
            nodes_up: self.state.nodes.values().filter(|n| n.up).count().max(1) as u32,
            announced: self
                .routes
                .as_ref()
                .map(|r| r.published().iter().map(|&(table, address)| RouteView { table, address }).collect())
                .unwrap_or_default(),
            announce_error: self.route_error.clone(),
            warnings: self.bpffs_warning.iter().cloned().collect(),
        };
        let Some(dp) = &self.dp else { return Ok(view) };
        view.program_id = Some(dp.xdp()?.info()?.id());
        for v in self.state.vpcs.values() {
            let Some(link) = self.links.get(&v.spec.interface) else { continue };
            let ifindex = loader::ifindex(&v.spec.interface).unwrap_or(0);
            let native = self.links.mode(&v.spec.interface) == Some(XdpMode::Driver);
            if native && netlink::veth_peer_runs_xdp(ifindex) == Some(false) {
                view.warnings.push(format!(
                    "{} (VPC {}) is a veth in native XDP mode whose peer runs no XDP program: frames the gateway sends out of it vanish; set vpcs[].xdp_mode to auto or generic",
                    v.spec.interface, v.spec.name
                ));
            }
            let arp = kernel::arp_drift(&v.spec.interface);
            if !arp.is_empty() {
                view.warnings.push(format!(
                    "{} (VPC {}): {}: the kernel answers ARP there for the gateway's addresses in other VPCs",
                    v.spec.interface,
                    v.spec.name,
                    arp.join(", ")
                ));
            }
            view.interfaces.push(InterfaceView {
                vpc: v.spec.name.clone(),
                interface: v.spec.interface.clone(),
                ifindex,
                program_id: link.info().map(|i| i.program_id()).unwrap_or(0),
                link_pinned: self.links.pin_path(&v.spec.interface).display().to_string(),
                xdp_mode: if native { "native" } else { "generic" }.into(),
            });
        }
        // Counted by the sweeper's last pass: a status never walks the table.
        let (ct, cap) = (self.sweep.entries.load(Relaxed), dp.maps.ct_capacity());
        let fill = |t: &str, used: usize, cap: u32| Fill { table: t.into(), used: used as u64, capacity: cap as u64 };
        view.maps = vec![
            Fill { table: "conntrack entries".into(), used: ct, capacity: cap as u64 },
            fill("endpoints", self.state.endpoints.len(), MAX_ENDPOINTS),
            fill("services", self.state.services.len(), MAX_SERVICES),
            fill("backends", self.state.services.values().map(|s| s.backend_slots.len()).sum(), MAX_BACKENDS),
            fill("vpcs", self.state.vpcs.len(), MAX_VPCS - 1),
        ];
        Ok(view)
    }
}
