//! Every semantic rule of a spec, checked at once: names, ranges, references,
//! uniqueness, address plans, whitelists and quotas. Pure: it reads the spec and what
//! the state already knows (`Known`), and returns every error with its path.

use crate::{
    spec::{Account, Cidr, Spec},
    yaml::Doc,
    SpecError,
};
use privatelink_common::{MAX_BACKENDS, MAX_ENDPOINTS, MAX_PORTS_PER_SERVICE, MAX_SERVICES, MAX_VPCS};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// What the recorded state contributes to validation.
#[derive(Clone, Debug, Default)]
pub struct Known {
    /// Endpoints that exist already (by name): the whitelist gates creation only; an
    /// existing endpoint whose account loses access is revoked, not refused.
    pub endpoints: BTreeSet<String>,
    /// Ids of existing services, by name (for full service names).
    pub service_ids: BTreeMap<String, String>,
}

struct Check<'a> {
    doc: Option<&'a Doc>,
    errors: Vec<SpecError>,
}

impl Check<'_> {
    fn err(&mut self, path: impl Into<String>, message: impl Into<String>) {
        let path = path.into();
        let pos = self.doc.and_then(|d| d.pos(&path));
        self.errors.push(SpecError { path, pos, message: message.into() });
    }

    /// The owner's id is well formed and within its account's quota of `what`.
    fn owner<'s>(&mut self, p: &str, owner: &'s Account, counts: &mut BTreeMap<&'s Account, usize>, quota: i64, what: &str) {
        if !account_ok(owner) {
            self.err(format!("{p}.owner"), "an account id is 1-64 characters: letters, digits, '-' and '_'");
        }
        let n = counts.entry(owner).or_default();
        *n += 1;
        if *n as i64 == quota + 1 {
            self.err(p, format!("account {owner} exceeds its quota of {quota} {what}"));
        }
    }

    /// A range with room for hosts besides its network and broadcast addresses.
    fn big_enough(&mut self, path: String, r: &Cidr) {
        if r.prefix > 30 {
            self.err(path, format!("{r} is too small: use a /30 or larger"));
        }
    }

    fn range(&mut self, path: String, v: i64, lo: i64, hi: i64, what: &str) {
        if v < lo || v > hi {
            self.err(path, format!("{what} must be {lo}-{hi}, not {v}"));
        }
    }
}

fn simple_name(s: &str, max: usize) -> bool {
    (1..=max).contains(&s.chars().count()) && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Endpoint names: 2-128 characters, starting with a letter (CJK included); letters,
/// digits, '-' and '_' (the consoles' rule).
pub fn endpoint_name_ok(s: &str) -> bool {
    let n = s.chars().count();
    (2..=128).contains(&n)
        && s.chars().next().is_some_and(char::is_alphabetic)
        && s.chars().all(|c| c.is_alphanumeric() || c == '-' || c == '_')
}

fn account_ok(a: &Account) -> bool {
    simple_name(&a.0, 64)
}

/// Resolve an endpoint's `service:` (a name or a full name) to a service index.
pub fn resolve_service(spec: &Spec, known: &Known, reference: &str) -> Result<usize, String> {
    if let Some(i) = spec.services.iter().position(|s| s.name == reference) {
        return Ok(i);
    }
    let parts: Vec<&str> = reference.split('.').collect();
    if let [region, name, id] = parts[..] {
        let Some(i) = spec.services.iter().position(|s| s.name == name) else {
            return Err(format!("service `{name}` (of full name `{reference}`) is not in the spec"));
        };
        if region != spec.gateway.region {
            return Err(format!("`{reference}` names region `{region}`, this gateway is `{}`", spec.gateway.region));
        }
        return match known.service_ids.get(name) {
            Some(known_id) if known_id == id => Ok(i),
            Some(known_id) => Err(format!("service `{name}` has id {known_id}, not {id}")),
            None => Err(format!("service `{name}` is new and has no id yet: refer to it by its name")),
        };
    }
    Err(format!("service `{reference}` is not in the spec"))
}

/// Check every rule; an empty result means the spec may be applied.
pub fn validate(spec: &Spec, doc: Option<&Doc>, known: &Known) -> Vec<SpecError> {
    let mut c = Check { doc, errors: Vec::new() };
    let g = &spec.gateway;
    if !(1..=32).contains(&g.region.len())
        || !g.region.chars().all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-')
    {
        c.err("gateway.region", "must be 1-32 characters: lowercase letters, digits and '-'");
    }
    c.big_enough("gateway.snat_range".into(), &g.snat_range);
    c.range("gateway.conntrack_capacity".into(), g.conntrack_capacity, 1024, 16 << 20, "the conntrack capacity");
    for (name, d) in [
        ("tcp_syn", g.timeouts.tcp_syn),
        ("tcp_established", g.timeouts.tcp_established),
        ("tcp_closing", g.timeouts.tcp_closing),
        ("udp", g.timeouts.udp),
    ] {
        if d.0.is_zero() {
            c.err(format!("gateway.timeouts.{name}"), "must be longer than 0s");
        }
    }
    c.range("gateway.quotas.services_per_account".into(), g.quotas.services_per_account, 1, MAX_SERVICES as i64, "the quota");
    c.range("gateway.quotas.endpoints_per_account".into(), g.quotas.endpoints_per_account, 1, MAX_ENDPOINTS as i64, "the quota");

    // ---- VPCs ----
    let mut vpc_names: HashMap<&str, usize> = HashMap::new();
    let mut ifaces: HashMap<&str, usize> = HashMap::new();
    if spec.vpcs.len() >= MAX_VPCS as usize {
        c.err("vpcs", format!("at most {} VPCs", MAX_VPCS - 1));
    }
    let snat_ranges: Vec<(String, Cidr)> = std::iter::once(("gateway.snat_range".to_string(), g.snat_range))
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
            c.err(format!("{p}.name"), "must be 1-64 characters: letters, digits, '-' and '_'");
        } else if let Some(j) = vpc_names.insert(&v.name, i) {
            c.err(format!("{p}.name"), format!("VPC `{}` is already defined at vpcs[{j}]", v.name));
        }
        if v.interface.is_empty() || v.interface.len() > 15 || v.interface.contains(['/', ' ', ':']) {
            c.err(format!("{p}.interface"), "must be a Linux interface name (1-15 characters, no '/', ':' or space)");
        } else if let Some(j) = ifaces.insert(&v.interface, i) {
            c.err(format!("{p}.interface"), format!("interface `{}` already faces vpcs[{j}]", v.interface));
        }
        c.big_enough(format!("{p}.cidr"), &v.cidr);
        for (sp, r) in &snat_ranges {
            if r.overlaps(&v.cidr) {
                c.err(format!("{p}.cidr"), format!("{} overlaps the SNAT range {r} ({sp}): traffic into a SNAT range is one-way", v.cidr));
            }
        }
        if let Some(t) = v.route_table {
            c.range(format!("{p}.route_table"), t, 0, u32::MAX as i64, "a routing table id");
        }
    }

    // ---- services ----
    let mut svc_names: HashMap<&str, usize> = HashMap::new();
    let mut per_account: BTreeMap<&Account, usize> = BTreeMap::new();
    let mut backends_total = 0usize;
    if spec.services.len() > MAX_SERVICES as usize {
        c.err("services", format!("at most {MAX_SERVICES} services per gateway"));
    }
    for (i, s) in spec.services.iter().enumerate() {
        let p = format!("services[{i}]");
        if !simple_name(&s.name, 16) {
            c.err(format!("{p}.name"), "must be 1-16 characters: letters, digits, '_' and '-'");
        } else if let Some(j) = svc_names.insert(&s.name, i) {
            c.err(format!("{p}.name"), format!("service `{}` is already defined at services[{j}]", s.name));
        }
        c.owner(&p, &s.owner, &mut per_account, g.quotas.services_per_account, "services");
        let vpc = spec.vpcs.iter().find(|v| v.name == s.vpc);
        if vpc.is_none() {
            c.err(format!("{p}.vpc"), format!("VPC `{}` is not defined under vpcs", s.vpc));
        }
        if s.backends.is_empty() {
            c.err(format!("{p}.backends"), "a service needs at least one backend");
        }
        backends_total += s.backends.len();
        let mut seen = HashMap::new();
        for (k, b) in s.backends.iter().enumerate() {
            let bp = format!("{p}.backends[{k}]");
            c.range(format!("{bp}.weight"), b.weight, 0, 100, "a weight");
            if let Some(j) = seen.insert(b.address, k) {
                c.err(format!("{bp}.address"), format!("{} is already backends[{j}]", b.address));
            }
            if let Some(v) = vpc {
                if !v.cidr.contains(b.address) {
                    c.err(format!("{bp}.address"), format!("{} is outside VPC {} ({})", b.address, v.name, v.cidr));
                }
            }
        }
        if !s.backends.is_empty() && s.backends.iter().all(|b| b.weight <= 0) {
            c.err(format!("{p}.backends"), "at least one backend needs a weight above 0");
        }
        if s.ports.is_empty() {
            c.err(format!("{p}.ports"), "a service needs at least one port mapping");
        }
        if s.ports.len() > MAX_PORTS_PER_SERVICE as usize {
            c.err(format!("{p}.ports"), format!("at most {MAX_PORTS_PER_SERVICE} port mappings, not {}", s.ports.len()));
        }
        let mut seen = HashMap::new();
        for (k, m) in s.ports.iter().enumerate() {
            let mp = format!("{p}.ports[{k}]");
            c.range(format!("{mp}.endpoint_port"), m.endpoint_port, 1, 65535, "a port");
            c.range(format!("{mp}.service_port"), m.service_port, 1, 65535, "a port");
            if let Some(j) = seen.insert((m.protocol, m.endpoint_port), k) {
                c.err(
                    format!("{mp}.endpoint_port"),
                    format!("{}/{} is already mapped by ports[{j}]", m.protocol, m.endpoint_port),
                );
            }
        }
        for (k, a) in s.allowed_accounts.iter().enumerate() {
            if a.0 != "*" && !account_ok(a) {
                c.err(format!("{p}.allowed_accounts[{k}]"), "an account id (letters, digits, '-', '_') or \"*\"");
            }
        }
        c.range(format!("{p}.connection_limit"), s.connection_limit, 1, 1_000_000, "the connection limit");
        if let Some(d) = &s.description {
            let n = d.chars().count();
            if !(2..=256).contains(&n) {
                c.err(format!("{p}.description"), format!("must be 2-256 characters, not {n}"));
            } else if d.starts_with("http://") || d.starts_with("https://") {
                c.err(format!("{p}.description"), "must not start with http:// or https://");
            }
        }
        if let Some(r) = &s.snat_range {
            c.big_enough(format!("{p}.snat_range"), r);
        }
        if let Some(h) = &s.health_check {
            let hp = format!("{p}.health_check");
            if let Some(port) = h.port {
                c.range(format!("{hp}.port"), port, 1, 65535, "a port");
            } else if h.kind != crate::spec::CheckKind::None && !s.ports.iter().any(|m| m.protocol == crate::spec::Protocol::Tcp) {
                c.err(format!("{hp}.port"), "the service has no TCP port mapping to check: give a port (or type: none)");
            }
            if !h.path.starts_with('/') {
                c.err(format!("{hp}.path"), "must start with '/'");
            }
            c.range(format!("{hp}.expected_status"), h.expected_status, 100, 599, "an HTTP status");
            let ms = |d: crate::spec::Dur| d.0.as_millis() as i64;
            c.range(format!("{hp}.interval"), ms(h.interval), 200, 300_000, "the interval (ms)");
            if h.timeout.0.is_zero() || h.timeout >= h.interval {
                c.err(format!("{hp}.timeout"), format!("must be above 0 and below the interval ({})", h.interval));
            }
            c.range(format!("{hp}.healthy_threshold"), h.healthy_threshold, 1, 10, "a threshold");
            c.range(format!("{hp}.unhealthy_threshold"), h.unhealthy_threshold, 1, 10, "a threshold");
        }
        if let Some(u) = &s.notify_url {
            if crate::notify::parse_url(u).is_none() {
                c.err(format!("{p}.notify_url"), "must be an http://host:port/path URL (https is not supported)");
            }
        }
    }
    if backends_total > MAX_BACKENDS as usize {
        c.err("services", format!("{backends_total} backends in all; the gateway holds at most {MAX_BACKENDS}"));
    }

    // ---- endpoints ----
    let mut ep_names: HashMap<&str, usize> = HashMap::new();
    let mut ep_ips = HashMap::new();
    let mut per_account: BTreeMap<&Account, usize> = BTreeMap::new();
    if spec.endpoints.len() > MAX_ENDPOINTS as usize {
        c.err("endpoints", format!("at most {MAX_ENDPOINTS} endpoints per gateway"));
    }
    for (i, e) in spec.endpoints.iter().enumerate() {
        let p = format!("endpoints[{i}]");
        if !endpoint_name_ok(&e.name) {
            c.err(
                format!("{p}.name"),
                "must be 2-128 characters, start with a letter, and hold only letters, digits, '-' and '_'",
            );
        } else if let Some(j) = ep_names.insert(&e.name, i) {
            c.err(format!("{p}.name"), format!("endpoint `{}` is already defined at endpoints[{j}]", e.name));
        }
        c.owner(&p, &e.owner, &mut per_account, g.quotas.endpoints_per_account, "endpoints");
        let vpc = spec.vpcs.iter().find(|v| v.name == e.vpc);
        match vpc {
            None => c.err(format!("{p}.vpc"), format!("VPC `{}` is not defined under vpcs", e.vpc)),
            Some(v) => {
                if let Some(ip) = e.ip {
                    if !v.cidr.contains(ip) {
                        c.err(format!("{p}.ip"), format!("{ip} is outside VPC {} ({})", v.name, v.cidr));
                    } else if ip == v.cidr.net || ip == v.cidr.broadcast() {
                        c.err(format!("{p}.ip"), format!("{ip} is the network or broadcast address of {}", v.cidr));
                    } else if let Some(j) = ep_ips.insert((e.vpc.as_str(), ip), i) {
                        c.err(format!("{p}.ip"), format!("{ip} in VPC {} is already endpoints[{j}]'s address", v.name));
                    }
                }
            }
        }
        match resolve_service(spec, known, &e.service) {
            Err(m) => c.err(format!("{p}.service"), m),
            Ok(si) => {
                let s = &spec.services[si];
                if !known.endpoints.contains(&e.name) && !s.allows(&e.owner) {
                    c.err(
                        format!("{p}.owner"),
                        format!(
                            "account {} may not connect to service `{}`: it is neither the owner ({}) nor in allowed_accounts",
                            e.owner, s.name, s.owner
                        ),
                    );
                }
            }
        }
    }
    c.errors
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
