//! Security groups in the spec: groups of rules owned by an account, attached to that
//! account's endpoints (`endpoints[].security_groups`). The consoles' model: rules in
//! priority order (1 first), the first match decides, deny wins at equal priority.

use super::Cidr;
use serde::{de, Deserialize, Deserializer, Serialize};
use serde_json::Value;
use std::fmt;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityGroup {
    pub name: String,
    pub owner: super::Account,
    #[serde(default)]
    pub rules: Vec<SgRuleSpec>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SgRuleSpec {
    /// 1-100, 1 first.
    pub priority: i64,
    pub action: SgAction,
    pub protocol: SgProtocol,
    /// The endpoint ports; ignored for ICMP.
    #[serde(default)]
    pub ports: PortRange,
    /// Where the flow comes from, as the consumer VPC sees it.
    pub source: Cidr,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SgAction {
    Allow,
    Deny,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SgProtocol {
    Tcp,
    Udp,
    Icmp,
    All,
}

impl SgProtocol {
    /// `PROTO_*`, or `SG_PROTO_ALL`.
    pub fn number(self) -> u8 {
        match self {
            SgProtocol::Tcp => privatelink_common::PROTO_TCP,
            SgProtocol::Udp => privatelink_common::PROTO_UDP,
            SgProtocol::Icmp => privatelink_common::PROTO_ICMP,
            SgProtocol::All => privatelink_common::SG_PROTO_ALL,
        }
    }
}

/// `"N"`, `"N-M"` or `all` (also a bare number). Kept as written; `bounds` checks it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortRange(pub String);

impl Default for PortRange {
    fn default() -> Self {
        PortRange("all".into())
    }
}

impl PortRange {
    /// (low, high), or what is wrong with it.
    pub fn bounds(&self) -> Result<(u16, u16), String> {
        let s = self.0.trim();
        if s == "all" {
            return Ok((1, 65535));
        }
        let port = |t: &str| t.trim().parse::<u16>().ok().filter(|p| *p >= 1);
        let (lo, hi) = match s.split_once('-') {
            Some((a, b)) => (port(a), port(b)),
            None => (port(s), port(s)),
        };
        match (lo, hi) {
            (Some(lo), Some(hi)) if lo <= hi => Ok((lo, hi)),
            _ => Err(format!("ports must be \"N\", \"N-M\" (1-65535, N <= M) or all, not {s:?}")),
        }
    }
}

impl Serialize for PortRange {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for PortRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::String(s) => Ok(PortRange(s)),
            Value::Number(n) => Ok(PortRange(n.to_string())),
            other => Err(de::Error::custom(format!("ports must be \"N\", \"N-M\" or all, not {other}"))),
        }
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
