//! The store: the model's recorded state and its events, persisted behind one trait
//! (`Store`): load, commit a state with the events it caused in one transaction,
//! append events, read events. Transactions and nothing else: it knows nothing of
//! maps, of the daemon, or of what a spec means. `redb` is the embedded
//! implementation (the fleet adds etcd).

mod redb;

pub use self::redb::RedbStore;

use crate::model::state::{Event, State};
use std::path::PathBuf;

/// Version of the record layout; a store written by another layout is refused.
const SCHEMA: u64 = 1;

/// Where the recorded state lives.
pub trait Store: Send {
    /// The recorded state (empty for a fresh store).
    fn load(&self) -> Result<State, StoreError>;

    /// Record `st` and append `events` (their `seq` is assigned here) in one
    /// transaction: a state change and the events it caused land together or not at
    /// all. The state's generation is bumped first.
    fn commit_with_events(&self, st: &mut State, events: &mut [Event]) -> Result<(), StoreError>;

    /// Record `st` in one transaction (its generation is bumped first).
    fn commit(&self, st: &mut State) -> Result<(), StoreError> {
        self.commit_with_events(st, &mut [])
    }

    /// Append events on their own (health changes, limit episodes).
    fn record(&self, events: &mut [Event]) -> Result<(), StoreError>;

    /// Events with `seq > after`, oldest first, at most `limit`.
    fn events(&self, after: u64, limit: usize) -> Result<Vec<Event>, StoreError>;
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
}
