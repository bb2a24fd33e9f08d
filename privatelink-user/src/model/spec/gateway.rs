//! The spec's `gateway` section: region, SNAT range and slices, conntrack size and
//! timeouts, quotas, DNS zone, fleet settings; with their defaults.

use super::*;

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
    /// MSS clamping of TCP SYNs both ways: `auto` (the smaller MTU of the endpoint's
    /// and the service's interface less 40), `off`, or a number of bytes.
    #[serde(default)]
    pub mss_clamp: MssClamp,
    /// How many equal slices every SNAT range is cut into: one per gateway node of a
    /// fleet (a power of two, 1 to 64). Fixed while endpoints exist.
    #[serde(default = "default_snat_slices")]
    pub snat_slices: i64,
    /// How the fleet's nodes draw traffic to themselves.
    #[serde(default)]
    pub fleet: FleetSettings,
    /// The zone every endpoint and service name lives under (private DNS).
    #[serde(default = "default_dns_zone")]
    pub dns_zone: String,
    /// TTL of the private DNS answers (and of negative answers).
    #[serde(default = "default_dns_ttl")]
    pub dns_ttl: Dur,
}

/// `gateway.fleet`: each node publishes the endpoint addresses it serves as /32 routes
/// in a kernel routing table of its own, for a routing daemon (BIRD, FRR) to announce.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetSettings {
    /// The table; absent: nothing is published (VPCs may still name their own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub announce_table: Option<i64>,
    /// Where each node publishes its SNAT slices (and those it has taken over from a
    /// dead node whose buddy it is), for the provider side's routers: replies to a
    /// node's SNAT addresses reach it, or its buddy once it is gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snat_announce_table: Option<i64>,
}

impl Default for Gateway {
    fn default() -> Self {
        Gateway {
            region: default_region(),
            snat_range: DEFAULT_SNAT_RANGE,
            conntrack_capacity: default_ct_capacity(),
            timeouts: Timeouts::default(),
            quotas: Quotas::default(),
            mss_clamp: MssClamp::Auto,
            snat_slices: 1,
            fleet: FleetSettings::default(),
            dns_zone: default_dns_zone(),
            dns_ttl: default_dns_ttl(),
        }
    }
}

fn default_region() -> String {
    DEFAULT_REGION.to_string()
}
/// AWS's PrivateLink names live under a zone of its own; ours is `privatelink.internal`
/// (`.internal` is reserved for private use, ICANN 2024).
pub const DEFAULT_DNS_ZONE: &str = "privatelink.internal";
fn default_dns_zone() -> String {
    DEFAULT_DNS_ZONE.to_string()
}
/// 60 s: the TTL Alibaba's and AWS's private zones use for endpoint records.
fn default_dns_ttl() -> Dur {
    Dur(std::time::Duration::from_secs(60))
}
fn default_snat_slices() -> i64 {
    1
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
    Dur(DEFAULT_TCP_SYN)
}
fn d_est() -> Dur {
    Dur(DEFAULT_TCP_ESTABLISHED)
}
fn d_closing() -> Dur {
    Dur(DEFAULT_TCP_CLOSING)
}
fn d_udp() -> Dur {
    Dur(DEFAULT_UDP)
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts { tcp_syn: d_syn(), tcp_established: d_est(), tcp_closing: d_closing(), udp: d_udp() }
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
