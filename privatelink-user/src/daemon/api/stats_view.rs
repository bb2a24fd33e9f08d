//! What `stats` answers: each endpoint's, service's and VPC's counters, as `-o json`
//! prints them (`docs/output-schema.json`). Counts are values, never text to parse.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Counters {
    pub fwd_packets: u64,
    pub fwd_bytes: u64,
    pub rev_packets: u64,
    pub rev_bytes: u64,
    pub new_connections: u64,
    pub resets_sent: u64,
    pub arp_replies: u64,
    /// ICMP the gateway generated: echo replies, time-exceeded, fragmentation-needed.
    #[serde(default)]
    pub icmp_sent: u64,
    /// Slot releases that found the active count at zero (an anomaly; never expected).
    #[serde(default)]
    pub slot_underflows: u64,
    /// Drop reason name -> count, only reasons that happened.
    pub drops: std::collections::BTreeMap<String, u64>,
}

impl From<privatelink_common::Stats> for Counters {
    fn from(s: privatelink_common::Stats) -> Self {
        let drops = privatelink_common::DropReason::ALL
            .into_iter()
            .filter(|r| s.drop_count(*r) > 0)
            .map(|r| (r.name().to_string(), s.drop_count(r)))
            .collect();
        Counters {
            fwd_packets: s.fwd_packets,
            fwd_bytes: s.fwd_bytes,
            rev_packets: s.rev_packets,
            rev_bytes: s.rev_bytes,
            new_connections: s.new_flows,
            resets_sent: s.resets_sent,
            arp_replies: s.arp_replies,
            icmp_sent: s.icmp_sent,
            slot_underflows: s.slot_underflows,
            drops,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EndpointStats {
    pub endpoint: String,
    pub id: String,
    pub state: String,
    pub active_connections: u64,
    pub connection_limit: i64,
    /// TCP connections whose handshake has not completed (its half-open budget).
    #[serde(default)]
    pub half_open: u64,
    /// Flows of every state it holds in the conntrack table (its share).
    #[serde(default)]
    pub flows: u64,
    /// The endpoint's bandwidth limit in each direction (bits/s); none: unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth_bps: Option<u64>,
    #[serde(flatten)]
    pub counters: Counters,
}

/// A service's counters: its endpoints' rows and their sum.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ServiceStats {
    pub service: String,
    pub id: String,
    pub active_connections: u64,
    pub endpoints: Vec<EndpointStats>,
    #[serde(flatten)]
    pub counters: Counters,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StatsView {
    pub endpoints: Vec<EndpointStats>,
    /// What each VPC interface dropped that no endpoint could be charged with.
    #[serde(default)]
    pub vpcs: Vec<VpcStats>,
    /// Packets no endpoint could be charged with: every VPC's, and the rest.
    pub gateway: Counters,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct VpcStats {
    pub vpc: String,
    #[serde(flatten)]
    pub counters: Counters,
}
