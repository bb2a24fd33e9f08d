//! The spec's value types written as text: account ids, CIDRs, durations, webhook
//! URLs. Each one parses with `FromStr`, prints with `Display`, and goes through serde
//! as that same text (one impl for all of them, `text_serde!`).

use serde::{de, Deserialize, Deserializer, Serialize};
use serde_json::Value;
use std::{fmt, net::Ipv4Addr, str::FromStr, time::Duration};

/// Serialize a type as its `Display` text and read it back with its `FromStr`.
macro_rules! text_serde {
    ($($t:ty),*) => {$(
        impl Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                String::deserialize(d)?.parse().map_err(de::Error::custom)
            }
        }
    )*};
}
text_serde!(Cidr, Dur, Bandwidth);

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


/// A bandwidth written `100Mbps`, `512Kbps` or `1Gbps` (bits per second, decimal units
/// as the consoles use them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Bandwidth(pub u64);

impl FromStr for Bandwidth {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}` is not a bandwidth (a whole number with Kbps, Mbps or Gbps: `100Mbps`)");
        let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let (n, unit) = s.split_at(split);
        let n: u64 = n.parse().map_err(|_| bad())?;
        let scale = match unit.to_ascii_lowercase().as_str() {
            "kbps" => 1_000,
            "mbps" => 1_000_000,
            "gbps" => 1_000_000_000,
            _ => return Err(bad()),
        };
        n.checked_mul(scale).map(Bandwidth).ok_or_else(bad)
    }
}

impl fmt::Display for Bandwidth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        match () {
            _ if b > 0 && b.is_multiple_of(1_000_000_000) => write!(f, "{}Gbps", b / 1_000_000_000),
            _ if b > 0 && b.is_multiple_of(1_000_000) => write!(f, "{}Mbps", b / 1_000_000),
            _ => write!(f, "{}Kbps", b / 1_000),
        }
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

/// `gateway.mss_clamp`: the MSS TCP SYNs through the gateway are clamped to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MssClamp {
    /// The smaller MTU of the two sides' interfaces, less 40.
    #[default]
    Auto,
    Off,
    Value(u16),
}

impl Serialize for MssClamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            MssClamp::Auto => s.serialize_str("auto"),
            MssClamp::Off => s.serialize_str("off"),
            MssClamp::Value(v) => s.serialize_u16(*v),
        }
    }
}

impl<'de> Deserialize<'de> for MssClamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::String(s) if s == "auto" => Ok(MssClamp::Auto),
            Value::String(s) if s == "off" => Ok(MssClamp::Off),
            Value::Number(n) if n.as_u64().is_some_and(|v| v <= u16::MAX as u64) => Ok(MssClamp::Value(n.as_u64().unwrap_or(0) as u16)),
            other => Err(de::Error::custom(format!("mss_clamp is auto, off or a number of bytes, not {other}"))),
        }
    }
}

/// Split an `http://host:port/path` URL into its authority and path (webhooks speak
/// plain HTTP only: there is no TLS client in the dependency set).
pub fn parse_http_url(url: &str) -> Option<(String, String)> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains(['@', ' ']) {
        return None;
    }
    let authority = if authority.contains(':') { authority.to_string() } else { format!("{authority}:80") };
    Some((authority, path.to_string()))
}

/// `vpcs[].xdp_mode`: how the data path attaches to a VPC's interface.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum XdpSetting {
    /// Native, except generic on a veth whose peer runs no XDP program (a veth hands on
    /// frames an XDP program sends only to a peer running one; generic mode sends them
    /// through the normal transmit path) and where the driver has no native XDP.
    #[default]
    Auto,
    /// The driver's own XDP hook; refused where the driver has none.
    Native,
    /// The kernel's generic (skb) hook: any interface, at the cost of an skb per packet.
    Generic,
}

impl XdpSetting {
    pub fn is_auto(&self) -> bool {
        *self == XdpSetting::Auto
    }
}
