//! The declarative spec: its types (serde, unknown fields refused) and their defaults.
//! The gateway section is `gateway`, security groups `sg`; reading it from YAML is
//! `read`, its text-valued fields are `values`; the semantic rules live in `validate`.
//! This module only describes.

mod gateway;
mod read;
mod sg;
mod values;

pub use gateway::{FleetSettings, Gateway, Quotas, Timeouts, DEFAULT_DNS_ZONE};
pub use read::{parse, read_all, sort, Broken, Partial, SpecError, LISTS};
pub use sg::{PortRange, SecurityGroup, SgAction, SgProtocol, SgRuleSpec};
pub use values::{parse_http_url, Account, Bandwidth, Cidr, Dur, MssClamp, XdpSetting};

use serde::{Deserialize, Serialize};
use std::{collections::BTreeMap, fmt, net::Ipv4Addr, time::Duration};

// ---- defaults: written once, each with where it comes from ----
/// Region part of full service names.
pub const DEFAULT_REGION: &str = "local";
/// Tencent Cloud documents 11.163.0.0/16 as the range backends see.
pub const DEFAULT_SNAT_RANGE: Cidr = Cidr { net: Ipv4Addr::new(11, 163, 0, 0), prefix: 16 };
/// "An endpoint allows at most 3000 concurrent connections" (the consoles).
pub const DEFAULT_CONNECTION_LIMIT: i64 = 3000;
/// Quotas of the consoles: 20 services and 50 endpoints per account.
pub const DEFAULT_SERVICES_PER_ACCOUNT: i64 = 20;
pub const DEFAULT_ENDPOINTS_PER_ACCOUNT: i64 = 50;
/// Backend weight: 0-100, 100 unless given (Alibaba's server weight).
pub const DEFAULT_WEIGHT: i64 = 100;
/// Conntrack idle timeouts: established TCP 350 s and UDP 60 s as the seeds' consoles
/// document for PrivateLink; closing 10 s; a SYN left unanswered 60 s (Linux
/// nf_conntrack keeps SYN_RECV 60 s).
pub const DEFAULT_TCP_SYN: Duration = Duration::from_secs(60);
pub const DEFAULT_TCP_ESTABLISHED: Duration = Duration::from_secs(350);
pub const DEFAULT_TCP_CLOSING: Duration = Duration::from_secs(10);
pub const DEFAULT_UDP: Duration = Duration::from_secs(60);

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    #[serde(default)]
    pub gateway: Gateway,
    #[serde(default)]
    pub vpcs: Vec<Vpc>,
    #[serde(default)]
    pub services: Vec<Service>,
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub security_groups: Vec<SecurityGroup>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vpc {
    pub name: String,
    /// The gateway's interface facing this VPC.
    pub interface: String,
    pub cidr: Cidr,
    /// Routing table for lookups towards this VPC's hosts (0 or absent: main).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_table: Option<i64>,
    /// Routing table this VPC's endpoint addresses are published in; absent:
    /// `gateway.fleet.announce_table`. Overlapping VPCs need tables of their own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub announce_table: Option<i64>,
    /// An address in this VPC where the gateway answers DNS queries for this VPC's
    /// private names (and answers ARP for it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<Ipv4Addr>,
    /// How the data path attaches to the interface.
    #[serde(default, skip_serializing_if = "XdpSetting::is_auto")]
    pub xdp_mode: XdpSetting,
    /// Flows (every state) this VPC's consumers may hold in each node's conntrack
    /// table; absent: the whole table while one VPC has endpoints, half for two, a
    /// third for three, a quarter from four on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow_share: Option<i64>,
    /// The account that owns the VPC: through the tenant API it alone creates services
    /// and endpoints in it. None: the operator's alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Account>,
}

impl Vpc {
    /// The table this VPC's endpoint addresses are published in, if any.
    pub fn announce_table(&self, g: &Gateway) -> Option<i64> {
        self.announce_table.or(g.fleet.announce_table)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    pub name: String,
    pub owner: Account,
    pub vpc: String,
    #[serde(default)]
    pub backends: Vec<Backend>,
    #[serde(default)]
    pub ports: Vec<PortMapping>,
    #[serde(default)]
    pub auto_accept: bool,
    #[serde(default)]
    pub allowed_accounts: Vec<Account>,
    #[serde(default = "d_limit")]
    pub connection_limit: i64,
    /// TCP connections whose handshake has not completed that each endpoint may hold
    /// (a SYN flood takes these, never its open connections); absent: the connection
    /// limit. Shared by a fleet's nodes as the connection limit is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub half_open_limit: Option<i64>,
    /// Flows (every state: half-open, open, closing, UDP) each endpoint may hold in
    /// the conntrack table, at least the connection limit; absent: 4x the connection
    /// limit. Shared by a fleet's nodes as the connection limit is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow_share: Option<i64>,
    #[serde(default)]
    pub on_revoke: OnRevoke,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// SNAT range of this service's endpoints; the gateway's when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snat_range: Option<Cidr>,
    /// SNAT addresses each endpoint gets (1-16): new flows move to the next one when
    /// the ports of one towards a backend port are all taken.
    #[serde(default = "d_snat_addresses")]
    pub snat_addresses_per_endpoint: i64,
    /// How backends are checked; absent: TCP connect to the first TCP service port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    /// `http://host:port/path`: every event of this service is POSTed there as JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_url: Option<String>,
    /// Each node prefers the healthy backends of its own zone, and uses every healthy
    /// backend when none of its zone is (Alibaba's "same-zone priority").
    #[serde(default, skip_serializing_if = "is_false")]
    pub zone_affinity: bool,
    /// The provider's own name for the service (`api.orders.example`): in every VPC
    /// with an accepted endpoint of the service it resolves to that endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_dns_name: Option<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Backend health checks, run by the daemon from the gateway into the provider VPC.
/// Defaults are the CLB console's: every 5 s, 2 s timeout, 3 results to change state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    #[serde(default, rename = "type")]
    pub kind: CheckKind,
    /// Port checked on each backend; default: the first TCP mapping's service port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i64>,
    /// HTTP only.
    #[serde(default = "d_path")]
    pub path: String,
    /// HTTP only: the status a healthy backend answers.
    #[serde(default = "d_status")]
    pub expected_status: i64,
    #[serde(default = "d_interval")]
    pub interval: Dur,
    #[serde(default = "d_timeout")]
    pub timeout: Dur,
    #[serde(default = "d_threshold")]
    pub healthy_threshold: i64,
    #[serde(default = "d_threshold")]
    pub unhealthy_threshold: i64,
    /// Flows already on a backend that goes down: `keep` them until they end, or `reset`.
    #[serde(default)]
    pub on_backend_down: OnRevoke,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckKind {
    #[default]
    Tcp,
    Http,
    /// No checks: every backend is always up.
    None,
}

fn d_path() -> String {
    "/".into()
}
fn d_status() -> i64 {
    200
}
fn d_interval() -> Dur {
    Dur(Duration::from_secs(5))
}
fn d_timeout() -> Dur {
    Dur(Duration::from_secs(2))
}
fn d_threshold() -> i64 {
    3
}

impl Default for HealthCheck {
    fn default() -> Self {
        HealthCheck {
            kind: CheckKind::Tcp,
            port: None,
            path: d_path(),
            expected_status: d_status(),
            interval: d_interval(),
            timeout: d_timeout(),
            healthy_threshold: d_threshold(),
            unhealthy_threshold: d_threshold(),
            on_backend_down: OnRevoke::Keep,
        }
    }
}

impl Service {
    /// The checks in force: the spec's, or TCP connect on the first TCP service port;
    /// `None` when nothing can be checked (UDP only, or `type: none`).
    pub fn effective_check(&self) -> Option<(HealthCheck, u16)> {
        let hc = self.health_check.clone().unwrap_or_default();
        if hc.kind == CheckKind::None {
            return None;
        }
        let port = hc
            .port
            .or_else(|| self.ports.iter().find(|p| p.protocol == Protocol::Tcp).map(|p| p.service_port))?;
        u16::try_from(port).ok().map(|p| (hc, p))
    }
}
fn d_snat_addresses() -> i64 {
    1
}
fn d_limit() -> i64 {
    DEFAULT_CONNECTION_LIMIT
}

impl Service {
    pub fn allows(&self, account: &Account) -> bool {
        *account == self.owner || self.allowed_accounts.iter().any(|a| a.0 == "*" || a == account)
    }

    /// Whether every weighted backend is down (`up` says which are up), so the service
    /// fails open and uses all of them, as AWS NLB does rather than refusing everything.
    pub fn failing_open(&self, up: &dyn Fn(&str, Ipv4Addr) -> bool) -> bool {
        let weighted: Vec<_> = self.backends.iter().filter(|b| b.weight > 0).collect();
        !weighted.is_empty() && weighted.iter().all(|b| !up(&self.name, b.address))
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backend {
    pub address: Ipv4Addr,
    #[serde(default = "d_weight")]
    pub weight: i64,
    /// The zone the backend runs in (for `zone_affinity`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
}
fn d_weight() -> i64 {
    DEFAULT_WEIGHT
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortMapping {
    pub protocol: Protocol,
    pub endpoint_port: i64,
    pub service_port: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => privatelink_common::PROTO_TCP,
            Protocol::Udp => privatelink_common::PROTO_UDP,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

/// What happens to live flows when an endpoint is rejected or its account loses access.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnRevoke {
    /// Live flows continue until they end; new ones are refused.
    #[default]
    Keep,
    /// Live flows are removed at once (the next packet of each gets a TCP reset).
    Reset,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    pub name: String,
    pub owner: Account,
    pub vpc: String,
    /// The service's name or its full name `{region}.{name}.{service_id}`.
    pub service: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<Ipv4Addr>,
    /// Zonal addresses: each is published by the nodes of its zone only (the
    /// endpoint's `ip` by every node).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub zone_ips: BTreeMap<String, Ipv4Addr>,
    /// Whether the endpoint has private DNS names (CTyun's "create private domain").
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub private_dns: bool,
    /// Security groups (names, the endpoint owner's): none allows everything.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub security_groups: Vec<String>,
    /// Bandwidth limit in each direction (policed); none: unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth: Option<Bandwidth>,
}

fn yes() -> bool {
    true
}
fn is_true(b: &bool) -> bool {
    *b
}


#[cfg(test)]
mod tests;
