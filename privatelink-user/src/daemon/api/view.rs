//! What the daemon answers to reads: the JSON objects `-o json` and `-o yaml` print and
//! `docs/output-schema.json` describes. Addresses, ports and counts are values, never
//! text to parse; times are RFC 3339.

use super::{Report, Timestamp};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::{fmt, net::Ipv4Addr};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ServiceView {
    pub name: String,
    pub id: String,
    pub full_name: String,
    pub state: String,
    pub owner: String,
    pub vpc: String,
    /// Its backends, with their health as checked from this node.
    pub backends: Vec<BackendView>,
    pub ports: Vec<PortView>,
    pub auto_accept: bool,
    pub allowed_accounts: Vec<String>,
    pub connection_limit: i64,
    pub on_revoke: String,
    pub snat_range: String,
    pub description: Option<String>,
    pub endpoints: Vec<String>,
    pub created_at: Timestamp,
    /// Every backend is down: new flows use them all.
    pub failing_open: bool,
    /// Its private DNS names (each resolves, in a VPC, to that VPC's endpoint).
    #[serde(default)]
    pub dns_names: Vec<String>,
    /// Who manages it: the operator's spec (`apply -f`) or the tenant API.
    #[serde(default)]
    pub managed_by: crate::model::tenancy::ManagedBy,
    /// The provider's own name for it, as its spec gives it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_dns_name: Option<String>,
    /// How its backends are checked, as its spec gives it (none: the default TCP check).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheckView>,
}

/// A service's health check as its spec gives it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HealthCheckView {
    /// `tcp`, `http` or `none`.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    pub path: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EndpointView {
    pub name: String,
    pub id: String,
    pub state: String,
    pub owner: String,
    pub vpc: String,
    pub ip: Ipv4Addr,
    pub service: String,
    pub service_id: String,
    /// The source address backends see for flows through this node.
    pub snat_ip: Ipv4Addr,
    /// Every SNAT address of the endpoint on this node (the first is `snat_ip`).
    #[serde(default)]
    pub snat_ips: Vec<Ipv4Addr>,
    /// Every node's SNAT addresses of the endpoint (from the node's slice).
    #[serde(default)]
    pub snat_by_node: Vec<NodeSnat>,
    /// This node's share of the connection limit (the limit split among live nodes).
    #[serde(default)]
    pub connection_limit_share: u32,
    /// SNAT ports its flows hold, measured by the data path.
    #[serde(default)]
    pub snat_ports_in_use: u64,
    pub connection_limit: i64,
    pub active_connections: u64,
    pub reason: Option<String>,
    pub created_at: Timestamp,
    /// Its private DNS names and what each resolves to.
    #[serde(default)]
    pub dns_names: Vec<DnsNameView>,
    /// Whether the names resolve now: the endpoint is accepted and its VPC has a DNS
    /// address.
    #[serde(default)]
    pub dns_resolving: bool,
    /// Its security groups (none: every source allowed).
    #[serde(default)]
    pub security_groups: Vec<String>,
    /// Its bandwidth limit in each direction, in bits per second; none: unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth_bps: Option<u64>,
    /// Who manages it: the operator's spec (`apply -f`) or the tenant API.
    #[serde(default)]
    pub managed_by: crate::model::tenancy::ManagedBy,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BackendView {
    pub address: Ipv4Addr,
    /// Its share of new flows (0: drained).
    pub weight: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// As this node's checks see it (what its data path follows).
    pub health: Health,
    /// The fleet's decision: down when a strict majority of the live nodes' checks see
    /// it down (alone: this node's view). Its events follow this.
    #[serde(default = "unchecked")]
    pub fleet_health: Health,
    /// The nodes whose checks see it down.
    #[serde(default)]
    pub seen_down_by: Vec<String>,
    /// Why the last check failed, while it is down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

fn unchecked() -> Health {
    Health::Unchecked
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    Up,
    Down,
    /// No check has answered yet, or the service's ports cannot be checked.
    Unchecked,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PortView {
    /// `tcp` or `udp`.
    pub protocol: String,
    pub endpoint_port: u16,
    pub service_port: u16,
}

/// An address and port as a socket sees them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
pub struct HostPort {
    pub address: Ipv4Addr,
    pub port: u16,
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.address, self.port)
    }
}

/// A route this node publishes for its routing daemon.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RouteView {
    /// The kernel routing table it is in.
    pub table: u32,
    /// The network published: an endpoint's /32, or a SNAT slice.
    pub address: Ipv4Addr,
    #[serde(default = "host_route")]
    pub prefix_len: u8,
}

fn host_route() -> u8 {
    32
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DnsNameView {
    pub name: String,
    pub address: Ipv4Addr,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NodeSnat {
    pub node: String,
    pub slice: u32,
    pub snat_ips: Vec<Ipv4Addr>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NodeView {
    pub name: String,
    pub zone: Option<String>,
    /// up, down (its lease expired), unreachable (expired, not yet recorded), joining,
    /// restarting (stopped with its data path attached, within its restart grace).
    pub state: String,
    /// Its slice of every SNAT range: the provider routes these to it.
    pub slice: u32,
    pub snat_slices: Vec<String>,
    pub interfaces: Vec<String>,
    pub flows: u64,
    /// Its last registration (none: not registered now).
    pub last_heartbeat: Option<Timestamp>,
    /// The node that takes its flows and SNAT slice over when it dies (rendezvous
    /// hashing over the nodes up: `model::buddy`); none alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buddy: Option<String>,
    /// Where it takes its peers' flows (`--replication-listen`); none: it replicates
    /// nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication: Option<std::net::SocketAddr>,
    /// The 99th percentile of its replication lag (event to the buddy's
    /// acknowledgement), seconds, as it last registered it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication_lag_seconds: Option<f64>,
    /// Flows it holds in its standby table for the nodes whose buddy it is.
    #[serde(default)]
    pub standby_flows: u64,
    /// The node that answered.
    pub this_node: bool,
    /// The routes it announces (the answering node's own only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub announced: Vec<RouteView>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct VpcView {
    pub name: String,
    pub interface: String,
    pub cidr: String,
    pub vpc_id: u16,
    pub attached: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FlowView {
    pub endpoint: String,
    pub protocol: String,
    pub client: HostPort,
    pub endpoint_address: HostPort,
    /// The source the backend sees.
    pub snat: HostPort,
    pub backend: HostPort,
    /// syn, established, closing (TCP) or udp.
    pub state: String,
    pub idle_seconds: f64,
    /// A standby copy: the node whose flow it is (whose SNAT slice holds `snat`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_for: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct WhoisView {
    pub snat_ip: Ipv4Addr,
    pub endpoint: String,
    pub endpoint_id: String,
    pub account: String,
    pub vpc: String,
    pub endpoint_ip: Ipv4Addr,
    pub service: String,
    /// The node whose slice the address is in (its flows are on that node).
    #[serde(default)]
    pub node: Option<String>,
    /// Flows on the answering node using this SNAT address (and port, if one was asked).
    pub flows: Vec<FlowView>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct InterfaceView {
    pub vpc: String,
    pub interface: String,
    pub ifindex: u32,
    pub program_id: u32,
    pub link_pinned: String,
    /// `native` or `generic`.
    #[serde(default)]
    pub xdp_mode: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Fill {
    pub table: String,
    pub used: u64,
    pub capacity: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StatusView {
    pub data_path_loaded: bool,
    pub program_id: Option<u32>,
    pub interfaces: Vec<InterfaceView>,
    pub maps: Vec<Fill>,
    pub bpffs: String,
    pub state_dir: String,
    pub generation: u64,
    pub reconciles: u64,
    pub last_reconcile: Option<Report>,
    pub sweeps: u64,
    pub expired_flows: u64,
    /// Drift repairs: links re-attached, and map operations rewritten.
    #[serde(default)]
    pub repaired_links: u64,
    #[serde(default)]
    pub repaired_map_ops: u64,
    /// Slot-accounting counters the sweeper's audit repaired (each one a leak; 0).
    #[serde(default)]
    pub repaired_accounting: u64,
    /// This node, its zone, and where the state lives.
    #[serde(default)]
    pub node: String,
    #[serde(default)]
    pub zone: Option<String>,
    #[serde(default)]
    pub store: String,
    /// Whether the store answered last time; the data path forwards either way.
    #[serde(default)]
    pub store_reachable: bool,
    /// Nodes of the fleet recorded up (1 alone).
    #[serde(default)]
    pub nodes_up: u32,
    /// Routes this node publishes for its routing daemon (table, address), and why
    /// publishing last failed.
    #[serde(default)]
    pub announced: Vec<RouteView>,
    #[serde(default)]
    pub announce_error: Option<String>,
    /// What an operator should fix: pins that die with the daemon, a veth attached in
    /// native mode whose peer runs no XDP program.
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// What `delete node NAME` prints with `-o json` / `-o yaml`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NodeDeleted {
    pub node: String,
    pub message: String,
}
