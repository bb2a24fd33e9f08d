//! `get services|endpoints|vpcs [NAME]`, `describe service|endpoint NAME`

use super::{client, output::{self, Format}};
use crate::daemon::api::{EndpointView, Kind, One, Request, ServiceView, VpcView};
use anyhow::Result;
use std::path::Path;

pub fn get(socket: &Path, kind: Kind, name: Option<String>, fmt: Format) -> Result<()> {
    let v = client::call(socket, &Request::Get { kind, name })?;
    if fmt == Format::Json {
        print!("{}", output::json(&v));
        return Ok(());
    }
    let out = match kind {
        Kind::Services => output::table_of(
            &serde_json::from_value::<Vec<ServiceView>>(v)?,
            &[
                ("NAME", &|s| s.name.clone()),
                ("ID", &|s| s.id.clone()),
                ("STATE", &|s| s.state.clone()),
                ("OWNER", &|s| s.owner.clone()),
                ("VPC", &|s| s.vpc.clone()),
                ("PORTS", &|s| s.ports.join(",")),
                ("APPROVAL", &|s| if s.auto_accept { "auto".into() } else { "manual".into() }),
                ("BACKENDS UP", &health_summary),
                ("ENDPOINTS", &|s| s.endpoints.len().to_string()),
            ],
        ),
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
    };
    print!("{out}");
    Ok(())
}

pub fn describe(socket: &Path, kind: One, name: String, fmt: Format) -> Result<()> {
    let v = client::call(socket, &Request::Describe { kind, name })?;
    if fmt == Format::Json {
        print!("{}", output::json(&v));
        return Ok(());
    }
    let out = match kind {
        One::Service => {
            let s: ServiceView = serde_json::from_value(v)?;
            let health = health_detail(&s);
            output::fields(&[
                ("name", s.name),
                ("id", s.id),
                ("full name", s.full_name),
                ("state", s.state),
                ("owner", s.owner),
                ("vpc", s.vpc),
                ("backends", s.backends.join(", ")),
                ("health", health),
                ("ports", s.ports.join(", ")),
                ("approval", if s.auto_accept { "automatic".into() } else { "manual".into() }),
                ("allowed accounts", if s.allowed_accounts.is_empty() { "(owner only)".into() } else { s.allowed_accounts.join(", ") }),
                ("connection limit", format!("{} per endpoint", s.connection_limit)),
                ("on revoke", s.on_revoke),
                ("snat range", s.snat_range),
                ("description", s.description.unwrap_or_default()),
                ("endpoints", s.endpoints.join(", ")),
            ])
        }
        One::Endpoint => {
            let e: EndpointView = serde_json::from_value(v)?;
            output::fields(&[
                ("name", e.name),
                ("id", e.id),
                ("state", e.state),
                ("owner", e.owner),
                ("vpc", e.vpc),
                ("ip", e.ip.to_string()),
                ("service", format!("{} ({})", e.service, e.service_id)),
                ("snat ip", e.snat_ips.iter().map(|ip| ip.to_string()).collect::<Vec<_>>().join(", ")),
                ("snat ports in use", e.snat_ports_in_use.to_string()),
                ("connections", format!("{} active, limit {}", e.active_connections, e.connection_limit)),
                ("reason", e.reason.unwrap_or_default()),
            ])
        }
    };
    print!("{out}");
    Ok(())
}

fn health_summary(s: &ServiceView) -> String {
    let up = s.health.iter().filter(|h| h.up).count();
    let open = if s.failing_open { " (failing open)" } else { "" };
    format!("{up}/{}{open}", s.health.len())
}

fn health_detail(s: &ServiceView) -> String {
    let mut parts: Vec<String> = s
        .health
        .iter()
        .map(|h| match (h.checked, h.up, &h.last_error) {
            (false, _, _) => format!("{} unchecked", h.address),
            (true, true, _) => format!("{} up", h.address),
            (true, false, Some(e)) => format!("{} DOWN ({e})", h.address),
            (true, false, None) => format!("{} DOWN", h.address),
        })
        .collect();
    if s.failing_open {
        parts.push("failing open: every backend is down, new flows use them all".into());
    }
    parts.join(", ")
}
