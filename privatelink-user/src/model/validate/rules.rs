//! The spec's own rules, one step per part of the spec: gateway, VPCs, services (and
//! each service's backends, ports and checks), endpoints.

use super::{account_ok, endpoint_name_ok, resolve_service, simple_name, Check, Known};
use crate::model::fleet::MAX_SLICES;
use crate::model::spec::{Account, CheckKind, Cidr, Dur, HealthCheck, MssClamp, Protocol, Service, Spec};
use privatelink_common::{MAX_BACKENDS, MAX_ENDPOINTS, MAX_PORTS_PER_SERVICE, MAX_SERVICES, MAX_SNAT_PER_ENDPOINT, MAX_VPCS};
use std::collections::{BTreeMap, HashMap};

impl Check<'_> {
    pub(super) fn gateway(&mut self, spec: &Spec) {
        let g = &spec.gateway;
        if !(1..=32).contains(&g.region.len())
            || !g.region.chars().all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-')
        {
            self.err("gateway.region", "must be 1-32 characters: lowercase letters, digits and '-'");
        }
        self.big_enough("gateway.snat_range".into(), &g.snat_range, g.snat_slices);
        let slices = g.snat_slices;
        if !(1..=MAX_SLICES as i64).contains(&slices) || (slices as u64).count_ones() != 1 {
            self.err("gateway.snat_slices", format!("must be a power of two from 1 to {MAX_SLICES}, not {slices}"));
        }
        self.range("gateway.conntrack_capacity".into(), g.conntrack_capacity, 1024, 16 << 20, "the conntrack capacity");
        for (name, d) in [
            ("tcp_syn", g.timeouts.tcp_syn),
            ("tcp_established", g.timeouts.tcp_established),
            ("tcp_closing", g.timeouts.tcp_closing),
            ("udp", g.timeouts.udp),
        ] {
            if d.0.is_zero() {
                self.err(format!("gateway.timeouts.{name}"), "must be longer than 0s");
            }
        }
        self.range("gateway.quotas.services_per_account".into(), g.quotas.services_per_account, 1, MAX_SERVICES as i64, "the quota");
        self.range("gateway.quotas.endpoints_per_account".into(), g.quotas.endpoints_per_account, 1, MAX_ENDPOINTS as i64, "the quota");
        if let Some(t) = g.fleet.announce_table {
            self.announce_table("gateway.fleet.announce_table".into(), t);
        }
        if let Some(t) = g.fleet.snat_announce_table {
            self.announce_table("gateway.fleet.snat_announce_table".into(), t);
            if g.fleet.announce_table == Some(t) {
                self.err("gateway.fleet.snat_announce_table", format!("table {t} is gateway.fleet.announce_table too: the provider side's routes (SNAT slices) and the consumer side's (endpoint addresses) go to different routers, so to different tables"));
            }
        }
        if let MssClamp::Value(v) = g.mss_clamp {
            // 536: the MSS every IPv4 host must accept (RFC 879); 9000: jumbo frames.
            self.range("gateway.mss_clamp".into(), v as i64, 536, 9000, "an MSS");
        }
    }

    pub(super) fn vpcs(&mut self, spec: &Spec) {
        let mut vpc_names: HashMap<&str, usize> = HashMap::new();
        let mut ifaces: HashMap<&str, usize> = HashMap::new();
        if spec.vpcs.len() >= MAX_VPCS as usize {
            self.err("vpcs", format!("at most {} VPCs", MAX_VPCS - 1));
        }
        let snat_ranges: Vec<(String, Cidr)> = std::iter::once(("gateway.snat_range".to_string(), spec.gateway.snat_range))
            .chain(
                spec.services
                    .iter()
                    .enumerate()
                    .filter_map(|(i, s)| s.snat_range.map(|r| (format!("services[{i}].snat_range"), r))),
            )
            .collect();
        for (i, v) in spec.vpcs.iter().enumerate() {
            let p = format!("vpcs[{i}]");
            if !simple_name(&v.name, 64) {
                self.err(format!("{p}.name"), "must be 1-64 characters: letters, digits, '-' and '_'");
            } else if let Some(j) = vpc_names.insert(&v.name, i) {
                self.err(format!("{p}.name"), format!("VPC `{}` is already defined at vpcs[{j}]", v.name));
            }
            if v.interface.is_empty() || v.interface.len() > 15 || v.interface.contains(['/', ' ', ':']) {
                self.err(format!("{p}.interface"), "must be a Linux interface name (1-15 characters, no '/', ':' or space)");
            } else if let Some(j) = ifaces.insert(&v.interface, i) {
                self.err(format!("{p}.interface"), format!("interface `{}` already faces vpcs[{j}]", v.interface));
            }
            self.big_enough(format!("{p}.cidr"), &v.cidr, 1);
            for (sp, r) in &snat_ranges {
                if r.overlaps(&v.cidr) {
                    self.err(format!("{p}.cidr"), format!("{} overlaps the SNAT range {r} ({sp}): traffic into a SNAT range is one-way", v.cidr));
                }
            }
            if let Some(t) = v.route_table {
                self.range(format!("{p}.route_table"), t, 0, u32::MAX as i64, "a routing table id");
            }
            if let Some(f) = v.flow_share {
                let flows = spec.gateway.conntrack_capacity / 2;
                self.range(format!("{p}.flow_share"), f, 1, flows.max(1), "the flow share");
            }
            if let Some(t) = v.announce_table {
                self.announce_table(format!("{p}.announce_table"), t);
            }
            // A router that learns one VPC's endpoint addresses must not learn another's
            // that overlaps it: it would send its own hosts' traffic to the gateway.
            let table = v.announce_table(&spec.gateway);
            if let Some((j, w)) = spec.vpcs[..i].iter().enumerate().find(|(_, w)| table.is_some() && w.announce_table(&spec.gateway) == table && w.cidr.overlaps(&v.cidr)) {
                self.err(
                    format!("{p}.announce_table"),
                    format!("{} overlaps vpcs[{j}] ({}, {}) and both publish into table {}: give each VPC its own announce_table", v.cidr, w.name, w.cidr, table.unwrap_or_default()),
                );
            }
        }
    }

    /// A routing table of privatelink's own: not 0 or the kernel's default, main and
    /// local tables (253-255).
    fn announce_table(&mut self, path: String, t: i64) {
        if !(1..=u32::MAX as i64).contains(&t) || (253..=255).contains(&t) {
            self.err(path, format!("must be a routing table id of its own (1-{}, not 253-255: default, main and local), not {t}", u32::MAX));
        }
    }

    pub(super) fn services(&mut self, spec: &Spec) {
        let mut names: HashMap<&str, usize> = HashMap::new();
        let mut per_account: BTreeMap<&Account, usize> = BTreeMap::new();
        if spec.services.len() > MAX_SERVICES as usize {
            self.err("services", format!("at most {MAX_SERVICES} services per gateway"));
        }
        for (i, s) in spec.services.iter().enumerate() {
            let p = format!("services[{i}]");
            if !simple_name(&s.name, 16) {
                self.err(format!("{p}.name"), "must be 1-16 characters: letters, digits, '_' and '-'");
            } else if let Some(j) = names.insert(&s.name, i) {
                self.err(format!("{p}.name"), format!("service `{}` is already defined at services[{j}]", s.name));
            }
            self.owner(&p, &s.owner, &mut per_account, spec.gateway.quotas.services_per_account, "services");
            self.service(spec, &p, s);
        }
        let backends_total: usize = spec.services.iter().map(|s| s.backends.len()).sum();
        if backends_total > MAX_BACKENDS as usize {
            self.err("services", format!("{backends_total} backends in all; the gateway holds at most {MAX_BACKENDS}"));
        }
    }

    /// One service's own fields (`p` is its path).
    fn service(&mut self, spec: &Spec, p: &str, s: &Service) {
        self.backends(spec, p, s);
        self.ports(p, s);
        for (k, a) in s.allowed_accounts.iter().enumerate() {
            if a.0 != "*" && !account_ok(a) {
                self.err(format!("{p}.allowed_accounts[{k}]"), "an account id (letters, digits, '-', '_') or \"*\"");
            }
        }
        self.range(format!("{p}.connection_limit"), s.connection_limit, 1, 1_000_000, "the connection limit");
        if let Some(h) = s.half_open_limit {
            self.range(format!("{p}.half_open_limit"), h, 1, 1_000_000, "the half-open limit");
        }
        let flows = spec.gateway.conntrack_capacity / 2;
        if let Some(f) = s.flow_share {
            if f < s.connection_limit || f > flows {
                self.err(
                    format!("{p}.flow_share"),
                    format!("must be at least the connection limit ({}) and at most the flows the table holds ({flows}: half of gateway.conntrack_capacity), not {f}", s.connection_limit),
                );
            }
        }
        if let Some(d) = &s.description {
            let n = d.chars().count();
            if !(2..=256).contains(&n) {
                self.err(format!("{p}.description"), format!("must be 2-256 characters, not {n}"));
            } else if d.starts_with("http://") || d.starts_with("https://") {
                self.err(format!("{p}.description"), "must not start with http:// or https://");
            }
        }
        if let Some(r) = &s.snat_range {
            self.big_enough(format!("{p}.snat_range"), r, spec.gateway.snat_slices);
        }
        self.range(format!("{p}.snat_addresses_per_endpoint"), s.snat_addresses_per_endpoint, 1, MAX_SNAT_PER_ENDPOINT as i64, "the SNAT addresses per endpoint");
        if let Some(h) = &s.health_check {
            self.health_check(&format!("{p}.health_check"), s, h);
        }
        if let Some(u) = &s.notify_url {
            if crate::model::spec::parse_http_url(u).is_none() {
                self.err(format!("{p}.notify_url"), "must be an http://host:port/path URL (https is not supported)");
            }
        }
    }

    fn backends(&mut self, spec: &Spec, p: &str, s: &Service) {
        let vpc = spec.vpcs.iter().find(|v| v.name == s.vpc);
        if vpc.is_none() && !self.missing("vpcs", &s.vpc) {
            self.err(format!("{p}.vpc"), format!("VPC `{}` is not defined under vpcs", s.vpc));
        }
        if s.backends.is_empty() {
            self.err(format!("{p}.backends"), "a service needs at least one backend");
        }
        let mut seen = HashMap::new();
        for (k, b) in s.backends.iter().enumerate() {
            let bp = format!("{p}.backends[{k}]");
            self.range(format!("{bp}.weight"), b.weight, 0, 100, "a weight");
            if let Some(z) = &b.zone {
                self.zone(format!("{bp}.zone"), z);
            }
            if let Some(j) = seen.insert(b.address, k) {
                self.err(format!("{bp}.address"), format!("{} is already backends[{j}]", b.address));
            }
            if let Some(v) = vpc {
                if !v.cidr.contains(b.address) {
                    self.err(format!("{bp}.address"), format!("{} is outside VPC {} ({})", b.address, v.name, v.cidr));
                }
            }
        }
        if !s.backends.is_empty() && s.backends.iter().all(|b| b.weight <= 0) {
            self.err(format!("{p}.backends"), "at least one backend needs a weight above 0");
        }
        if s.zone_affinity && !s.backends.iter().any(|b| b.zone.is_some()) {
            self.err(format!("{p}.zone_affinity"), "no backend has a zone: give backends[].zone, or leave zone_affinity off");
        }
    }

    /// A zone name, as nodes are given it (`--zone`).
    fn zone(&mut self, path: String, z: &str) {
        if !simple_name(z, 64) {
            self.err(path, format!("`{z}` is not a zone name: 1-64 characters, letters, digits, '-' and '_'"));
        }
    }

    fn ports(&mut self, p: &str, s: &Service) {
        if s.ports.is_empty() {
            self.err(format!("{p}.ports"), "a service needs at least one port mapping");
        }
        if s.ports.len() > MAX_PORTS_PER_SERVICE as usize {
            self.err(format!("{p}.ports"), format!("at most {MAX_PORTS_PER_SERVICE} port mappings, not {}", s.ports.len()));
        }
        let mut seen = HashMap::new();
        for (k, m) in s.ports.iter().enumerate() {
            let mp = format!("{p}.ports[{k}]");
            self.range(format!("{mp}.endpoint_port"), m.endpoint_port, 1, 65535, "a port");
            self.range(format!("{mp}.service_port"), m.service_port, 1, 65535, "a port");
            if let Some(j) = seen.insert((m.protocol, m.endpoint_port), k) {
                self.err(format!("{mp}.endpoint_port"), format!("{}/{} is already mapped by ports[{j}]", m.protocol, m.endpoint_port));
            }
        }
    }

    fn health_check(&mut self, hp: &str, s: &Service, h: &HealthCheck) {
        if let Some(port) = h.port {
            self.range(format!("{hp}.port"), port, 1, 65535, "a port");
        } else if h.kind != CheckKind::None && !s.ports.iter().any(|m| m.protocol == Protocol::Tcp) {
            self.err(format!("{hp}.port"), "the service has no TCP port mapping to check: give a port (or type: none)");
        }
        if !h.path.starts_with('/') {
            self.err(format!("{hp}.path"), "must start with '/'");
        }
        self.range(format!("{hp}.expected_status"), h.expected_status, 100, 599, "an HTTP status");
        let ms = |d: Dur| d.0.as_millis() as i64;
        self.range(format!("{hp}.interval"), ms(h.interval), 200, 300_000, "the interval (ms)");
        if h.timeout.0.is_zero() || h.timeout >= h.interval {
            self.err(format!("{hp}.timeout"), format!("must be above 0 and below the interval ({})", h.interval));
        }
        self.range(format!("{hp}.healthy_threshold"), h.healthy_threshold, 1, 10, "a threshold");
        self.range(format!("{hp}.unhealthy_threshold"), h.unhealthy_threshold, 1, 10, "a threshold");
    }

    /// Returns the service each endpoint connects to (None: an error was reported).
    pub(super) fn endpoints(&mut self, spec: &Spec, known: &Known) -> Vec<Option<usize>> {
        let mut names: HashMap<&str, usize> = HashMap::new();
        let mut ips = HashMap::new();
        let mut per_account: BTreeMap<&Account, usize> = BTreeMap::new();
        if spec.endpoints.len() > MAX_ENDPOINTS as usize {
            self.err("endpoints", format!("at most {MAX_ENDPOINTS} endpoints per gateway"));
        }
        let mut service_of = Vec::with_capacity(spec.endpoints.len());
        for (i, e) in spec.endpoints.iter().enumerate() {
            let p = format!("endpoints[{i}]");
            if !endpoint_name_ok(&e.name) {
                self.err(format!("{p}.name"), "must be 2-128 characters, start with a letter, and hold only letters, digits, '-' and '_'");
            } else if let Some(j) = names.insert(&e.name, i) {
                self.err(format!("{p}.name"), format!("endpoint `{}` is already defined at endpoints[{j}]", e.name));
            }
            self.owner(&p, &e.owner, &mut per_account, spec.gateway.quotas.endpoints_per_account, "endpoints");
            match spec.vpcs.iter().find(|v| v.name == e.vpc) {
                None if self.missing("vpcs", &e.vpc) => {}
                None => self.err(format!("{p}.vpc"), format!("VPC `{}` is not defined under vpcs", e.vpc)),
                Some(v) => {
                    let zonal = e.zone_ips.iter().map(|(z, ip)| (format!("{p}.zone_ips.{z}"), *ip));
                    for (path, ip) in e.ip.map(|ip| (format!("{p}.ip"), ip)).into_iter().chain(zonal) {
                        if !v.cidr.contains(ip) {
                            self.err(path, format!("{ip} is outside VPC {} ({})", v.name, v.cidr));
                        } else if ip == v.cidr.net || ip == v.cidr.broadcast() {
                            self.err(path, format!("{ip} is the network or broadcast address of {}", v.cidr));
                        } else if let Some(j) = ips.insert((e.vpc.as_str(), ip), i) {
                            self.err(path, format!("{ip} in VPC {} is already an address of endpoints[{j}]", v.name));
                        }
                    }
                    for z in e.zone_ips.keys() {
                        self.zone(format!("{p}.zone_ips"), z);
                    }
                }
            }
            match resolve_service(spec, known, &e.service) {
                Err(m) => {
                    // A full name `region.name.id` names the service in its middle.
                    let named = e.service.split('.').nth(1).unwrap_or(&e.service);
                    if !self.missing("services", &e.service) && !self.missing("services", named) {
                        self.err(format!("{p}.service"), m);
                    }
                    service_of.push(None);
                }
                Ok(si) => {
                    let s = &spec.services[si];
                    if !known.endpoints.contains(&e.name) && !s.allows(&e.owner) {
                        self.err(
                            format!("{p}.owner"),
                            format!(
                                "account {} may not connect to service `{}`: it is neither the owner ({}) nor in allowed_accounts",
                                e.owner, s.name, s.owner
                            ),
                        );
                    }
                    service_of.push(Some(si));
                }
            }
        }
        service_of
    }
}
