//! What the tenant API answers, beside the views the CLI shows (`view`): a service
//! as a consumer may know it, the provider's view of connections, the error body.

use super::view::{EndpointView, PortView, ServiceView};
use super::Timestamp;
pub use crate::model::tenancy::ManagedBy;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A service as a consumer whitelisted for it sees it (the consoles' "available
/// services"): what it needs to connect, nothing of the provider's inside.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ServiceListing {
    pub name: String,
    pub id: String,
    pub full_name: String,
    pub owner: String,
    pub ports: Vec<PortView>,
    /// Zones its backends are in.
    pub zones: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_dns_name: Option<String>,
    pub auto_accept: bool,
}

/// `GET /v1/services`: the caller's own services, and those it may connect to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ServicesAnswer {
    pub own: Vec<ServiceView>,
    pub available: Vec<ServiceListing>,
}

/// `GET /v1/services/{service}`: the whole service for its owner, its listing for a
/// consumer it is whitelisted for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum ServiceAnswer {
    Own(Box<ServiceView>),
    Listed(ServiceListing),
}

/// One endpoint connected to a provider's service, as the provider sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ConnectionView {
    pub endpoint: String,
    pub endpoint_id: String,
    /// The consumer's account.
    pub account: String,
    pub state: String,
    pub active_connections: u64,
    pub created_at: Timestamp,
}

/// `GET /v1/endpoints`.
pub type EndpointsAnswer = Vec<EndpointView>;

/// Every error's body: a message and the HTTP status again; for invalid input (422)
/// every error with the path of its field.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ErrorBody {
    pub error: String,
    pub status: u16,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

/// One invalid field: its path in the request's body (`ports[0].service_port`; empty:
/// the whole body) and what is wrong, in the words `apply` uses.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FieldError {
    pub path: String,
    pub message: String,
}

/// A security group as its owner reads it (the spec's field names: what is read can be
/// sent back in a PATCH).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SecurityGroupView {
    pub name: String,
    pub owner: String,
    pub rules: Vec<RuleView>,
    /// The endpoints it is attached to.
    pub endpoints: Vec<String>,
    pub managed_by: ManagedBy,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RuleView {
    pub priority: i64,
    /// `allow` or `deny`.
    pub action: String,
    /// `tcp`, `udp`, `icmp` or `all`.
    pub protocol: String,
    /// `N`, `N-M` or `all`.
    pub ports: String,
    pub source: String,
}

/// `GET /v1/whoami`: the account and token a request is made with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct WhoAmI {
    /// None: an operator token (acts for every account).
    pub account: Option<String>,
    /// The token's name.
    pub token: String,
    pub read_only: bool,
}

/// `GET /v1/vpcs`: a VPC the caller owns (every VPC for an operator), with what its
/// interface dropped that no endpoint could be charged with, by reason.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TenantVpc {
    pub name: String,
    pub cidr: String,
    /// None: the operator's alone.
    pub owner: Option<String>,
    /// Its endpoints' names.
    pub endpoints: Vec<String>,
    pub drops: std::collections::BTreeMap<String, u64>,
}

/// `GET /v1/endpoints/{e}/history`, `GET /v1/services/{s}/history`: the last hour on
/// the answering node at `step_seconds` resolution, oldest first, the last point being
/// the moment of the request; a service's is its endpoints' summed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HistoryView {
    pub step_seconds: u32,
    /// The endpoint's limit (a service's: the sum of its endpoints').
    pub connection_limit: i64,
    pub points: Vec<HistoryPoint>,
}

/// One step: live connections at its end and the rates over it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HistoryPoint {
    /// Unix seconds.
    pub t: u64,
    pub active_connections: u32,
    pub new_connections_per_s: f64,
    /// Consumer -> provider.
    pub bytes_in_per_s: f64,
    /// Provider -> consumer.
    pub bytes_out_per_s: f64,
    pub drops_per_s: f64,
}
