//! The declarative spec: its types (serde, unknown fields refused), its defaults, and
//! reading it from YAML with every structural error reported at once with its path and
//! line:column. Semantic rules live in `validate`; this module only reads.

use crate::yaml::{self, Doc, Pos};
use serde::{de, Deserialize, Deserializer, Serialize};
use serde_json::Value;
use std::{fmt, net::Ipv4Addr, str::FromStr, time::Duration};

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
// Conntrack timeouts: defaults are `sweep::Timeouts::default()`'s.

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
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gateway {
    #[serde(default = "default_region")]
    pub region: String,
    #[serde(default = "default_snat_range")]
    pub snat_range: Cidr,
    #[serde(default = "default_ct_capacity")]
    pub conntrack_capacity: i64,
    #[serde(default)]
    pub timeouts: Timeouts,
    #[serde(default)]
    pub quotas: Quotas,
}

impl Default for Gateway {
    fn default() -> Self {
        Gateway {
            region: default_region(),
            snat_range: DEFAULT_SNAT_RANGE,
            conntrack_capacity: default_ct_capacity(),
            timeouts: Timeouts::default(),
            quotas: Quotas::default(),
        }
    }
}

fn default_region() -> String {
    DEFAULT_REGION.to_string()
}
fn default_snat_range() -> Cidr {
    DEFAULT_SNAT_RANGE
}
fn default_ct_capacity() -> i64 {
    privatelink_common::DEFAULT_CT_CAPACITY as i64
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    #[serde(default = "d_syn")]
    pub tcp_syn: Dur,
    #[serde(default = "d_est")]
    pub tcp_established: Dur,
    #[serde(default = "d_closing")]
    pub tcp_closing: Dur,
    #[serde(default = "d_udp")]
    pub udp: Dur,
}
fn d_syn() -> Dur {
    Dur(crate::sweep::Timeouts::default().tcp_syn)
}
fn d_est() -> Dur {
    Dur(crate::sweep::Timeouts::default().tcp_established)
}
fn d_closing() -> Dur {
    Dur(crate::sweep::Timeouts::default().tcp_closing)
}
fn d_udp() -> Dur {
    Dur(crate::sweep::Timeouts::default().udp)
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts { tcp_syn: d_syn(), tcp_established: d_est(), tcp_closing: d_closing(), udp: d_udp() }
    }
}

impl From<Timeouts> for crate::sweep::Timeouts {
    fn from(t: Timeouts) -> Self {
        crate::sweep::Timeouts {
            tcp_syn: t.tcp_syn.0,
            tcp_established: t.tcp_established.0,
            tcp_closing: t.tcp_closing.0,
            udp: t.udp.0,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quotas {
    #[serde(default = "d_sq")]
    pub services_per_account: i64,
    #[serde(default = "d_eq")]
    pub endpoints_per_account: i64,
}
fn d_sq() -> i64 {
    DEFAULT_SERVICES_PER_ACCOUNT
}
fn d_eq() -> i64 {
    DEFAULT_ENDPOINTS_PER_ACCOUNT
}
impl Default for Quotas {
    fn default() -> Self {
        Quotas { services_per_account: d_sq(), endpoints_per_account: d_eq() }
    }
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
    #[serde(default)]
    pub on_revoke: OnRevoke,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// SNAT range of this service's endpoints; the gateway's when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snat_range: Option<Cidr>,
    /// How backends are checked; absent: TCP connect to the first TCP service port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    /// `http://host:port/path`: every event of this service is POSTed there as JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_url: Option<String>,
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
fn d_limit() -> i64 {
    DEFAULT_CONNECTION_LIMIT
}

impl Service {
    pub fn allows(&self, account: &Account) -> bool {
        *account == self.owner || self.allowed_accounts.iter().any(|a| a.0 == "*" || a == account)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backend {
    pub address: Ipv4Addr,
    #[serde(default = "d_weight")]
    pub weight: i64,
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
}

/// An account id. Written as a string or a number in YAML; kept as text.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Account(pub String);

impl<'de> Deserialize<'de> for Account {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::String(s) => Ok(Account(s)),
            Value::Number(n) if n.is_u64() => Ok(Account(n.to_string())),
            other => Err(de::Error::custom(format!("an account id must be a string or a number, not {other}"))),
        }
    }
}

impl fmt::Display for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An IPv4 network, `a.b.c.d/len`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr {
    pub net: Ipv4Addr,
    pub prefix: u8,
}

impl Cidr {
    pub fn mask(&self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - self.prefix as u32)
        }
    }
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.net)
    }
    pub fn overlaps(&self, o: &Cidr) -> bool {
        self.contains(o.net) || o.contains(self.net)
    }
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.net) | !self.mask())
    }
    /// Number of addresses in the range.
    pub fn size(&self) -> u64 {
        1u64 << (32 - self.prefix as u32)
    }
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (ip, len) = s.split_once('/').ok_or_else(|| format!("`{s}` is not a CIDR (a.b.c.d/len)"))?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| format!("`{s}`: `{ip}` is not an IPv4 address"))?;
        let prefix: u8 = len
            .parse()
            .ok()
            .filter(|p| *p <= 32)
            .ok_or_else(|| format!("`{s}`: prefix length must be 0-32"))?;
        let c = Cidr { net: ip, prefix };
        if u32::from(ip) & !c.mask() != 0 {
            let net = Ipv4Addr::from(u32::from(ip) & c.mask());
            return Err(format!("`{s}` has host bits set (did you mean {net}/{prefix}?)"));
        }
        Ok(c)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.net, self.prefix)
    }
}

impl Serialize for Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(de::Error::custom)
    }
}

/// A duration written `350s`, `5m`, `1h` or `500ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dur(pub Duration);

impl FromStr for Dur {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}` is not a duration (a whole number with ms, s, m or h: `350s`)");
        let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let (n, unit) = s.split_at(split);
        let n: u64 = n.parse().map_err(|_| bad())?;
        let ms = match unit {
            "ms" => Some(n),
            "s" => n.checked_mul(1_000),
            "m" => n.checked_mul(60_000),
            "h" => n.checked_mul(3_600_000),
            _ => None,
        }
        .ok_or_else(bad)?;
        Ok(Dur(Duration::from_millis(ms)))
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if !ms.is_multiple_of(1000) {
            write!(f, "{ms}ms")
        } else {
            write!(f, "{}s", ms / 1000)
        }
    }
}

impl Serialize for Dur {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(de::Error::custom)
    }
}

/// One problem with a spec: where it is and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpecError {
    /// `services[0].ports[1].endpoint_port`; empty for the whole document.
    pub path: String,
    pub pos: Option<Pos>,
    pub message: String,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(p) = self.pos {
            write!(f, "{}:{}: ", p.line, p.col)?;
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

/// Top level with each list kept as raw values, so every item is read on its own and
/// one broken item does not hide the errors of the others.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    gateway: Option<Value>,
    #[serde(default)]
    vpcs: Option<Vec<Value>>,
    #[serde(default)]
    services: Option<Vec<Value>>,
    #[serde(default)]
    endpoints: Option<Vec<Value>>,
}

fn join(prefix: &str, inner: &str) -> String {
    match (prefix.is_empty(), inner.is_empty() || inner == ".") {
        (_, true) => prefix.to_string(),
        (true, false) => inner.to_string(),
        (false, false) if inner.starts_with('[') => format!("{prefix}{inner}"),
        (false, false) => format!("{prefix}.{inner}"),
    }
}

/// serde's messages name Rust types; say it in the spec's words.
fn clean(msg: &str) -> String {
    msg.replace("i64", "an integer")
        .replace("u64", "an integer")
        .replace("a sequence", "a list")
        .replace("a map", "a mapping")
        .replace("struct ", "")
}

fn read<T: serde::de::DeserializeOwned>(v: Value, prefix: &str, doc: &Doc, errors: &mut Vec<SpecError>) -> Option<T> {
    match serde_path_to_error::deserialize::<_, T>(v) {
        Ok(t) => Some(t),
        Err(e) => {
            let path = join(prefix, &e.path().to_string());
            let msg = e.inner().to_string();
            errors.push(SpecError { pos: doc.pos(&path), path, message: clean(&msg) });
            None
        }
    }
}

/// Read a spec from YAML text: every structural error (syntax, unknown field, wrong
/// type, missing field) at once. The `Doc` is kept for positions of later errors.
pub fn parse(text: &str) -> Result<(Spec, Doc), Vec<SpecError>> {
    let doc = yaml::parse(text).map_err(|errs| {
        errs.into_iter()
            .map(|e| SpecError { path: String::new(), pos: Some(e.pos), message: e.message })
            .collect::<Vec<_>>()
    })?;
    let mut errors = Vec::new();
    let root = match &doc.value {
        Value::Null => Value::Object(Default::default()),
        v => v.clone(),
    };
    let Some(raw) = read::<Raw>(root, "", &doc, &mut errors) else {
        return Err(errors);
    };
    let gateway = match raw.gateway {
        None | Some(Value::Null) => Some(Gateway::default()),
        Some(v) => read::<Gateway>(v, "gateway", &doc, &mut errors),
    };
    fn list<T: serde::de::DeserializeOwned>(
        items: Option<Vec<Value>>,
        name: &str,
        doc: &Doc,
        errors: &mut Vec<SpecError>,
    ) -> Vec<T> {
        items
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .filter_map(|(i, v)| read::<T>(v, &format!("{name}[{i}]"), doc, errors))
            .collect()
    }
    let vpcs = list(raw.vpcs, "vpcs", &doc, &mut errors);
    let services = list(raw.services, "services", &doc, &mut errors);
    let endpoints = list(raw.endpoints, "endpoints", &doc, &mut errors);
    if !errors.is_empty() {
        return Err(errors);
    }
    let spec = Spec { gateway: gateway.unwrap_or_default(), vpcs, services, endpoints };
    Ok((spec, doc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fill_what_is_left_out() {
        let (s, _) = parse(
            "vpcs: [{name: a, interface: eth1, cidr: 10.0.0.0/24}]\n\
             services:\n- name: web\n  owner: 100002\n  vpc: a\n  backends: [{address: 10.0.0.5}]\n  ports: [{protocol: tcp, endpoint_port: 80, service_port: 8080}]\n",
        )
        .unwrap();
        assert_eq!(s.gateway, Gateway::default());
        assert_eq!(s.gateway.snat_range.to_string(), "11.163.0.0/16");
        let svc = &s.services[0];
        assert_eq!(svc.owner, Account("100002".into()));
        assert_eq!(svc.backends[0].weight, 100);
        assert_eq!(svc.connection_limit, 3000);
        assert!(!svc.auto_accept);
        assert_eq!(svc.on_revoke, OnRevoke::Keep);
    }

    #[test]
    fn every_structural_error_is_reported_with_path_and_position() {
        let text = "\
gateway:
  regoin: x
vpcs:
  - {name: a, interface: eth1, cidr: 10.0.0.1/24}
services:
  - name: web
    vpc: a
    owner: \"1\"
    ports:
      - {protocol: sctp, endpoint_port: 80, service_port: 80}
endpoints:
  - {name: e1, owner: \"2\", vpc: a, service: web, ip: 10.0.0.300}
  - {name: e2, owner: \"2\", vpc: a}
";
        let errs = parse(text).unwrap_err();
        let got: Vec<(String, Option<(usize, usize)>)> =
            errs.iter().map(|e| (e.path.clone(), e.pos.map(|p| (p.line, p.col)))).collect();
        assert_eq!(
            got,
            vec![
                ("gateway.regoin".to_string(), Some((2, 3))),
                ("vpcs[0].cidr".to_string(), Some((4, 32))),
                ("services[0].ports[0].protocol".to_string(), Some((10, 10))),
                ("endpoints[0].ip".to_string(), Some((12, 50))),
                ("endpoints[1]".to_string(), Some((13, 5))),
            ],
            "{errs:#?}"
        );
        assert!(errs[0].message.starts_with("unknown field `regoin`"), "{}", errs[0].message);
        assert!(errs[1].message.contains("has host bits set (did you mean 10.0.0.0/24?)"), "{}", errs[1].message);
        assert!(errs[2].message.contains("unknown variant `sctp`"), "{}", errs[2].message);
        assert!(errs[4].message.contains("missing field `service`"), "{}", errs[4].message);
        assert_eq!(errs[0].to_string(), format!("2:3: gateway.regoin: {}", errs[0].message));
    }

    #[test]
    fn unknown_top_level_field_and_wrong_types() {
        let errs = parse("servics: []\n").unwrap_err();
        assert_eq!(errs[0].path, "servics");
        let errs = parse("vpcs: {name: a}\n").unwrap_err();
        assert_eq!(errs[0].path, "vpcs");
        assert!(errs[0].message.contains("expected a list"), "{}", errs[0].message);
        let errs = parse("gateway: {timeouts: {udp: 10x}}\n").unwrap_err();
        assert_eq!(errs[0].path, "gateway.timeouts.udp");
        assert!(errs[0].message.contains("is not a duration"), "{}", errs[0].message);
    }

    #[test]
    fn durations_and_cidrs() {
        assert_eq!("350s".parse::<Dur>().unwrap().0, Duration::from_secs(350));
        assert_eq!("5m".parse::<Dur>().unwrap().0, Duration::from_secs(300));
        assert_eq!("250ms".parse::<Dur>().unwrap().to_string(), "250ms");
        assert!("s".parse::<Dur>().is_err());
        assert!("-1s".parse::<Dur>().is_err());
        let c: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(c.contains("10.1.255.255".parse().unwrap()));
        assert!(!c.contains("10.2.0.0".parse().unwrap()));
        assert_eq!(c.broadcast(), "10.1.255.255".parse::<Ipv4Addr>().unwrap());
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
    }
}
