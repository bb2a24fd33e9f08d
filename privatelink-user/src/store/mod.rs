//! The store: the model's recorded state and its events, persisted behind one trait
//! (`Store`): load, commit a state with the events it caused in one transaction,
//! append events, read events. Transactions and nothing else: it knows nothing of
//! maps, of the daemon, or of what a spec means. `redb` is the embedded
//! implementation (one gateway); `etcd` is the shared one of a fleet, which also
//! watches for changes and keeps each node's registration under a lease.
//!
//! Every commit is a compare-and-swap on the generation: it lands only if the store
//! still holds the generation the new state was computed from, else `Conflict` (the
//! caller reloads and computes again). So two writers never lose an update.

mod etcd;
mod redb;

pub use self::{
    etcd::{EtcdStore, StoreUrl},
    redb::RedbStore,
};

use crate::model::state::{Event, State};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Version of the record layout; a store written by another layout is refused.
const SCHEMA: u64 = 1;

/// Where the recorded state lives.
pub trait Store: Send + Sync {
    /// The recorded state (empty for a fresh store).
    fn load(&self) -> Result<State, StoreError>;

    /// Record `st` and append `events` (their `seq` is assigned here) in one
    /// transaction: a state change and the events it caused land together or not at
    /// all. `st.generation` is the generation it was computed from; it is bumped here.
    /// `Conflict` when the store has moved on (nothing is written then).
    fn commit_with_events(&self, st: &mut State, events: &mut [Event]) -> Result<(), StoreError>;

    /// Record `st` in one transaction (its generation is bumped first).
    fn commit(&self, st: &mut State) -> Result<(), StoreError> {
        self.commit_with_events(st, &mut [])
    }

    /// Append events on their own (health changes, limit episodes).
    fn record(&self, events: &mut [Event]) -> Result<(), StoreError>;

    /// Events with `seq > after`, oldest first, at most `limit`.
    fn events(&self, after: u64, limit: usize) -> Result<Vec<Event>, StoreError>;

    /// Shared by several gateways (a fleet), so others change it too.
    fn shared(&self) -> bool {
        false
    }

    /// Wakes when another writer may have changed the state (never, alone).
    fn changes(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }

    /// Publish this node's registration (kept under a lease while it beats).
    fn heartbeat(&self, _beat: &Beat) -> Result<(), StoreError> {
        Ok(())
    }

    /// The registrations of the nodes alive now (under a live lease).
    fn beats(&self) -> Result<Vec<Beat>, StoreError> {
        Ok(Vec::new())
    }

    /// Whether the last exchange with the store succeeded.
    fn reachable(&self) -> bool {
        true
    }

    /// Whether this node surely still holds its lease (the others count it alive).
    /// Alone, always.
    fn holds_lease(&self) -> bool {
        true
    }

    /// Where the state lives, for `status`.
    fn describe(&self) -> String;
}

/// A record read back from its JSON (`what` names it in the error).
fn decode<T: serde::de::DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Record { key: what.to_string(), source })
}

/// A record as JSON (`what` names it in the error).
fn encode<T: Serialize>(what: &str, v: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(v).map_err(|source| StoreError::Record { key: what.to_string(), source })
}

/// A node's registration: who it is and what it does now.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Beat {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    pub interfaces: Vec<String>,
    pub flows: u64,
    /// Unix milliseconds of this beat.
    pub at_ms: u64,
    /// The generation of the shared state this node follows (its maps and the tokens it
    /// accepts): a change waits on it to be everywhere (a token's revocation).
    #[serde(default)]
    pub generation: u64,
    /// Where its buddy's flows reach it (`--replication-listen`), the flows it holds
    /// for other nodes, and the 99th percentile of its own replication lag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication: Option<std::net::SocketAddr>,
    #[serde(default)]
    pub standby_flows: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication_lag_seconds: Option<f64>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state directory {}: {source}", dir.display())]
    Dir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("state store {}: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: ::redb::DatabaseError,
    },
    #[error("state store: {0}")]
    Db(String),
    #[error("state store record {key}: {source}")]
    Record {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("state store has schema {found}; this privatelink reads schema {SCHEMA}")]
    Schema { found: u64 },
    #[error("the state changed under this change (generation {expected} was expected, the store holds {found}): retry on the new state")]
    Conflict { expected: u64, found: u64 },
    #[error("etcd ({endpoints}): {message}")]
    Etcd { endpoints: String, message: String },
}

#[cfg(test)]
pub(crate) mod tests {
    use crate::model::{
        state::{Cuts, State},
        tenancy::{self, Kind},
        tokens::TokenRecord,
    };

    /// A state with every part recorded: what each store must give back whole.
    pub fn full_state() -> State {
        let text = "
vpcs: [{name: p, interface: a, cidr: 10.1.0.0/16, owner: '2'}, {name: c, interface: b, cidr: 10.2.0.0/16}]
services: [{name: sv, owner: '2', vpc: p, backends: [{address: 10.1.0.5}], ports: [{protocol: tcp, endpoint_port: 80, service_port: 80}], allowed_accounts: ['1']}]
endpoints: [{name: ep, owner: '1', vpc: c, service: sv}]
security_groups: [{name: gr, owner: '1'}]
";
        let spec = crate::model::spec::parse(text).unwrap().0;
        let planned = crate::model::plan_spec(&spec, None, &State::default(), &crate::model::validate::Env::offline()).unwrap();
        let mut st = crate::model::plan::finish(planned.state);
        tenancy::settle(&mut st, Some((Kind::Service, "sv")));
        tenancy::remember_key(&mut st, "t:k".into(), tenancy::KeyRecord { at: crate::model::time::unix_now(), request: "d".into(), kind: "service".into(), name: "sv".into() });
        st.tokens.insert("0a1b2c3d".into(), TokenRecord::new("0a1b2c3d", "secret", "ci", Some("1"), false, None));
        st.cuts.insert("gw1".into(), Cuts { endpoints: [3].into(), backends: Default::default() });
        st.backends_down.insert(("sv".into(), "10.1.0.5".parse().unwrap()));
        st.health_views.insert("gw1".into(), [("sv".to_string(), "10.1.0.5".parse().unwrap())].into());
        st.nodes = crate::model::fleet::alone(&st, "gw1", Some("z1")).map(|(s, _)| s.nodes).unwrap_or_default();
        st.generation = 7;
        st
    }

    #[test]
    fn the_embedded_store_gives_back_every_part_of_the_state() {
        use super::Store;
        let dir = std::env::temp_dir().join(format!("pl-store-full-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = super::RedbStore::open(&dir).unwrap();
        let mut st = full_state();
        st.generation = 0;
        store.commit_with_events(&mut st, &mut []).unwrap();
        let back = store.load().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(!back.managed.is_empty() && !back.idempotency.is_empty() && !back.tokens.is_empty() && !back.nodes.is_empty() && !back.health_views.is_empty());
        assert_eq!(back, st);
    }
}
