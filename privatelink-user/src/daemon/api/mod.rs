//! The daemon's local API: one JSON request per line on a Unix socket, one JSON
//! response line back. These types are the whole protocol; the daemon fills them,
//! the CLI prints them. `view` holds what reads answer (`stats_view` the counters `stats` answers), `tenant` what the tenant API
//! answers besides, `token` the tokens' answers, `schema` documents it, `client` sends a request and reads the
//! answer, `remote` sends the same requests through the tenant API for a tenant.

pub mod client;
pub mod remote;
pub mod schema;
mod tenant;
mod token;
mod stats_view;
mod view;

pub use crate::{
    dataplane::reconcile::Report,
    model::{plan::Change, spec::SpecError, state::Event, time::Timestamp},
};
pub use tenant::*;
pub use token::*;
pub use stats_view::*;
pub use view::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Services,
    Endpoints,
    Vpcs,
    Nodes,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum One {
    Service,
    Endpoint,
    Node,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case")]
pub enum Request {
    Apply { spec: String, dry_run: bool },
    Get { kind: Kind, name: Option<String> },
    Describe { kind: One, name: String },
    Accept { endpoint: String },
    Reject { endpoint: String },
    Delete { kind: One, name: String, force: bool },
    Stats,
    Conntrack {
        endpoint: Option<String>,
        /// The flows this node holds for other nodes (its standby table) instead.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        standby: bool,
    },
    Whois { ip: Ipv4Addr, port: Option<u16> },
    Status,
    Down,
    /// Events with a sequence number above `after`.
    Events { after: u64 },
    /// A new API token for `account` (None: an operator token); its text is in the
    /// answer, once.
    TokenCreate { account: Option<String>, name: String, expires_secs: Option<u64>, read_only: bool },
    TokenList,
    TokenRevoke { id: String },
}

/// An answer line: `{"ok": ...}` or `{"error": ..., "spec_errors": [...]}`. The
/// daemon writes an answer's JSON once, straight from its view types (`ok` is raw
/// JSON: 10,000 endpoints are not built as a tree of values first); the client reads
/// it back with `client::call`.
#[derive(Clone, Debug, Serialize)]
#[serde(untagged)]
pub enum Response {
    Ok { ok: Box<serde_json::value::RawValue> },
    Err { error: String, #[serde(default, skip_serializing_if = "Vec::is_empty")] spec_errors: Vec<SpecError> },
}

/// A failed answer as the client reads it.
#[derive(Clone, Debug, Deserialize)]
pub struct Failure {
    pub error: String,
    #[serde(default)]
    pub spec_errors: Vec<SpecError>,
}

impl Response {
    /// An answer: `v` in JSON.
    pub fn ok<T: Serialize>(v: T) -> Response {
        match serde_json::value::to_raw_value(&v) {
            Ok(ok) => Response::Ok { ok },
            Err(e) => Response::error(format!("encoding the answer: {e}")),
        }
    }
    /// A failure, with no spec errors.
    pub fn error(error: String) -> Response {
        Response::Err { error, spec_errors: vec![] }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ApplyResult {
    pub dry_run: bool,
    pub changes: Vec<Change>,
    /// Map writes the apply made (0 for a dry run or an apply that changed nothing).
    pub reconcile: Report,
}
