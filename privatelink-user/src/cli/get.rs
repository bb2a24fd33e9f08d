//! `get services|endpoints|vpcs|nodes [NAME]`, `describe service|endpoint|node NAME`

use super::{client, output::{self, Format}};
use crate::daemon::api::{BackendView, EndpointView, Health, Kind, NodeView, One, PortView, Request, ServiceAnswer, ServiceListing, ServiceView, ServicesAnswer, Timestamp, VpcView};
use crate::model::spec::Bandwidth;
use anyhow::Result;

pub fn get(to: &client::Target, kind: Kind, name: Option<String>, fmt: Format) -> Result<()> {
    let v = to.call(&Request::Get { kind, name })?;
    if let Some(text) = output::structured(fmt, &v) {
        print!("{text}");
        return Ok(());
    }
    let out = match kind {
        Kind::Services => {
            let (own, available) = own_and_available(v)?;
            let mut out = services_table(&own);
            if !available.is_empty() {
                out.push_str("\nAVAILABLE SERVICES (whitelisted for this account)\n");
                out.push_str(&output::table_of(
                    &available,
                    &[
                        ("NAME", &|s| s.name.clone()),
                        ("FULL NAME", &|s| s.full_name.clone()),
                        ("OWNER", &|s| s.owner.clone()),
                        ("PORTS", &|s| s.ports.iter().map(port).collect::<Vec<_>>().join(",")),
                        ("APPROVAL", &|s| if s.auto_accept { "auto".into() } else { "manual".into() }),
                        ("ZONES", &|s| if s.zones.is_empty() { "-".into() } else { s.zones.join(",") }),
                    ],
                ));
            }
            out
        }
        Kind::Endpoints => output::table_of(
            &serde_json::from_value::<Vec<EndpointView>>(v)?,
            &[
                ("NAME", &|e| e.name.clone()),
                ("ID", &|e| e.id.clone()),
                ("STATE", &|e| e.state.clone()),
                ("OWNER", &|e| e.owner.clone()),
                ("VPC", &|e| e.vpc.clone()),
                ("IP", &|e| e.ip.to_string()),
                ("SERVICE", &|e| e.service.clone()),
                ("SNAT IP", &|e| e.snat_ip.to_string()),
                ("CONNECTIONS", &|e| format!("{}/{}", e.active_connections, e.connection_limit)),
                ("DNS NAME", &|e| e.dns_names.first().map_or("-".into(), |d| d.name.clone())),
                ("MANAGED BY", &|e| e.managed_by.to_string()),
            ],
        ),
        Kind::Vpcs => output::table_of(
            &serde_json::from_value::<Vec<VpcView>>(v)?,
            &[
                ("NAME", &|r| r.name.clone()),
                ("INTERFACE", &|r| r.interface.clone()),
                ("CIDR", &|r| r.cidr.clone()),
                ("VPC ID", &|r| r.vpc_id.to_string()),
                ("XDP", &|r| if r.attached { "attached".into() } else { "-".into() }),
            ],
        ),
        Kind::Nodes => output::table_of(
            &serde_json::from_value::<Vec<NodeView>>(v)?,
            &[
                ("NAME", &|n| if n.this_node { format!("{} (this)", n.name) } else { n.name.clone() }),
                ("ZONE", &|n| n.zone.clone().unwrap_or_else(|| "-".into())),
                ("STATE", &|n| n.state.clone()),
                ("BUDDY", &|n| n.buddy.clone().unwrap_or_else(|| "-".into())),
                ("SNAT SLICE", &|n| n.snat_slices.join(",")),
                ("INTERFACES", &|n| if n.interfaces.is_empty() { "-".into() } else { n.interfaces.join(",") }),
                ("FLOWS", &|n| n.flows.to_string()),
                ("STANDBY", &|n| if n.replication.is_some() { n.standby_flows.to_string() } else { "-".into() }),
                ("LAG P99", &|n| n.replication_lag_seconds.map_or_else(|| "-".into(), |s| format!("{:.1}ms", s * 1e3))),
                ("LAST HEARTBEAT", &|n| heartbeat_age(n.last_heartbeat)),
            ],
        ),
    };
    print!("{out}");
    Ok(())
}

/// The caller's services and, through the tenant API, those whitelisted for it: the
/// socket answers a list of services, the API its own and the available ones (or, for
/// one name, either).
fn own_and_available(v: serde_json::Value) -> Result<(Vec<ServiceView>, Vec<ServiceListing>)> {
    if v.is_object() {
        let a: ServicesAnswer = serde_json::from_value(v)?;
        return Ok((a.own, a.available));
    }
    let (mut own, mut available) = (Vec::new(), Vec::new());
    for item in serde_json::from_value::<Vec<ServiceAnswer>>(v)? {
        match item {
            ServiceAnswer::Own(s) => own.push(*s),
            ServiceAnswer::Listed(l) => available.push(l),
        }
    }
    Ok((own, available))
}

fn services_table(own: &[ServiceView]) -> String {
    output::table_of(
        own,
        &[
            ("NAME", &|s| s.name.clone()),
            ("ID", &|s| s.id.clone()),
            ("STATE", &|s| s.state.clone()),
            ("OWNER", &|s| s.owner.clone()),
            ("VPC", &|s| s.vpc.clone()),
            ("PORTS", &|s| s.ports.iter().map(port).collect::<Vec<_>>().join(",")),
            ("APPROVAL", &|s| if s.auto_accept { "auto".into() } else { "manual".into() }),
            ("BACKENDS UP", &health_summary),
            ("ENDPOINTS", &|s| s.endpoints.len().to_string()),
            ("MANAGED BY", &|s| s.managed_by.to_string()),
        ],
    )
}

/// An endpoint's names, one per line after the first, with their addresses; marked
/// when they do not resolve now.
fn dns_names(e: &EndpointView) -> String {
    if e.dns_names.is_empty() {
        return "(none: private_dns is off)".into();
    }
    let names: Vec<String> = e.dns_names.iter().map(|d| format!("{} -> {}", d.name, d.address)).collect();
    let note = if e.dns_resolving { "" } else { " (not resolving: the endpoint is not accepted or its VPC has no dns address)" };
    format!("{}{note}", names.join("\n"))
}

pub fn describe(to: &client::Target, kind: One, name: String, fmt: Format) -> Result<()> {
    let v = to.call(&Request::Describe { kind, name })?;
    if let Some(text) = output::structured(fmt, &v) {
        print!("{text}");
        return Ok(());
    }
    let out = match kind {
        One::Service => {
            let s = match serde_json::from_value::<ServiceAnswer>(v)? {
                ServiceAnswer::Own(s) => *s,
                // Through the tenant API, a service whitelisted for the caller.
                ServiceAnswer::Listed(l) => {
                    print!("{}", output::fields(&[
                        ("name", l.name),
                        ("id", l.id),
                        ("full name", l.full_name),
                        ("owner", l.owner),
                        ("ports", l.ports.iter().map(port).collect::<Vec<_>>().join(", ")),
                        ("approval", if l.auto_accept { "automatic".into() } else { "manual".into() }),
                        ("zones", l.zones.join(", ")),
                        ("private dns name", l.private_dns_name.unwrap_or_default()),
                    ]));
                    return Ok(());
                }
            };
            let health = health_detail(&s);
            output::fields(&[
                ("name", s.name),
                ("id", s.id),
                ("full name", s.full_name),
                ("state", s.state),
                ("owner", s.owner),
                ("vpc", s.vpc),
                ("backends", s.backends.iter().map(backend).collect::<Vec<_>>().join(", ")),
                ("health", health),
                ("ports", s.ports.iter().map(port).collect::<Vec<_>>().join(", ")),
                ("approval", if s.auto_accept { "automatic".into() } else { "manual".into() }),
                ("allowed accounts", if s.allowed_accounts.is_empty() { "(owner only)".into() } else { s.allowed_accounts.join(", ") }),
                ("connection limit", format!("{} per endpoint", s.connection_limit)),
                ("on revoke", s.on_revoke),
                ("snat range", s.snat_range),
                ("description", s.description.unwrap_or_default()),
                ("endpoints", s.endpoints.join(", ")),
                ("dns names", s.dns_names.join(", ")),
                ("managed by", s.managed_by.to_string()),
            ])
        }
        One::Endpoint => {
            let e: EndpointView = serde_json::from_value(v)?;
            let names = dns_names(&e);
            output::fields(&[
                ("name", e.name),
                ("id", e.id),
                ("state", e.state),
                ("owner", e.owner),
                ("vpc", e.vpc),
                ("ip", e.ip.to_string()),
                ("service", format!("{} ({})", e.service, e.service_id)),
                ("snat ip", list(&e.snat_ips)),
                ("snat by node", e.snat_by_node.iter().map(|n| format!("{}: {}", n.node, list(&n.snat_ips))).collect::<Vec<_>>().join("; ")),
                ("snat ports in use", e.snat_ports_in_use.to_string()),
                ("connections", format!("{} active, limit {} (this node's share {})", e.active_connections, e.connection_limit, e.connection_limit_share)),
                ("reason", e.reason.unwrap_or_default()),
                ("security groups", if e.security_groups.is_empty() { "(none: every source allowed)".into() } else { e.security_groups.join(", ") }),
                ("bandwidth", e.bandwidth_bps.map_or("unlimited".into(), |b| format!("{} each way", Bandwidth(b)))),
                ("dns names", names),
                ("managed by", e.managed_by.to_string()),
            ])
        }
        One::Node => {
            let n: NodeView = serde_json::from_value(v)?;
            output::fields(&[
                ("name", n.name),
                ("zone", n.zone.unwrap_or_default()),
                ("state", n.state),
                ("buddy", n.buddy.unwrap_or_else(|| "-".into())),
                ("snat slice", format!("{}: {}", n.slice, n.snat_slices.join(", "))),
                ("interfaces", n.interfaces.join(", ")),
                ("flows", n.flows.to_string()),
                ("last heartbeat", heartbeat_age(n.last_heartbeat)),
            ])
        }
    };
    print!("{out}");
    Ok(())
}

fn list(ips: &[std::net::Ipv4Addr]) -> String {
    ips.iter().map(|ip| ip.to_string()).collect::<Vec<_>>().join(", ")
}

/// How long ago a heartbeat was, as `1.2s ago` (`-` for none).
fn heartbeat_age(at: Option<Timestamp>) -> String {
    let Some(at) = at else { return "-".into() };
    let now = crate::model::time::unix_now_ms();
    format!("{:.1}s ago", now.saturating_sub(at.unix_ms()) as f64 / 1000.0)
}

/// `tcp/80 -> 8080`
fn port(p: &PortView) -> String {
    format!("{}/{} -> {}", p.protocol, p.endpoint_port, p.service_port)
}

/// `192.168.2.10 (weight 100, zone z1)`
fn backend(b: &BackendView) -> String {
    let zone = b.zone.as_ref().map(|z| format!(", zone {z}")).unwrap_or_default();
    format!("{} (weight {}{zone})", b.address, b.weight)
}

/// Backends not unchecked and not down (as the data path counts them up).
fn health_summary(s: &ServiceView) -> String {
    let up = s.backends.iter().filter(|b| b.health != Health::Down).count();
    let open = if s.failing_open { " (failing open)" } else { "" };
    format!("{up}/{}{open}", s.backends.len())
}

fn health_detail(s: &ServiceView) -> String {
    let mut parts: Vec<String> = s
        .backends
        .iter()
        .map(|b| match (b.health, &b.last_error) {
            (Health::Unchecked, _) => format!("{} unchecked", b.address),
            (Health::Up, _) => format!("{} up", b.address),
            (Health::Down, Some(e)) => format!("{} DOWN ({e})", b.address),
            (Health::Down, None) => format!("{} DOWN", b.address),
        })
        .collect();
    if s.failing_open {
        parts.push("failing open: every backend is down, new flows use them all".into());
    }
    // Where the fleet's view differs from this node's, or some node sees one down.
    for b in s.backends.iter().filter(|b| !b.seen_down_by.is_empty() || (b.fleet_health != b.health && b.fleet_health != Health::Unchecked)) {
        let fleet = if b.fleet_health == Health::Down { "down" } else { "up" };
        parts.push(format!("{}: fleet says {fleet} (seen down by {})", b.address, if b.seen_down_by.is_empty() { "no node".into() } else { b.seen_down_by.join(", ") }));
    }
    parts.join(", ")
}
