//! The embedded store: the recorded `State` in a transactional database (redb) under
//! the state directory. Every commit is one transaction, so a crash leaves either the
//! previous state or the new one, never a mix. Records are JSON values keyed by name.

use super::{decode, encode, Store, StoreError, SCHEMA};
use crate::model::state::{Cuts, Event, State};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{de::DeserializeOwned, Serialize};
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const VPCS: TableDefinition<&str, &[u8]> = TableDefinition::new("vpcs");
const SERVICES: TableDefinition<&str, &[u8]> = TableDefinition::new("services");
const ENDPOINTS: TableDefinition<&str, &[u8]> = TableDefinition::new("endpoints");
/// seq -> Event (JSON), append-only.
const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");

fn dberr<E: std::fmt::Display>(e: E) -> StoreError {
    StoreError::Db(e.to_string())
}

pub struct RedbStore {
    db: Database,
    path: PathBuf,
}

impl RedbStore {
    /// Open (or create) the store in `dir`. Only one process may hold it.
    pub fn open(dir: &Path) -> Result<RedbStore, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Dir { dir: dir.to_path_buf(), source })?;
        let path = dir.join("state.redb");
        let db = Database::create(&path).map_err(|source| StoreError::Open { path: path.clone(), source })?;
        let store = RedbStore { db, path };
        // Make the tables exist so a fresh store reads as an empty state.
        let tx = store.db.begin_write().map_err(dberr)?;
        for t in [META, VPCS, SERVICES, ENDPOINTS] {
            tx.open_table(t).map_err(dberr)?;
        }
        tx.open_table(EVENTS).map_err(dberr)?;
        tx.commit().map_err(dberr)?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

}

impl Store for RedbStore {
    /// The recorded state (empty for a fresh store).
    fn load(&self) -> Result<State, StoreError> {
        let tx = self.db.begin_read().map_err(dberr)?;
        let meta = tx.open_table(META).map_err(dberr)?;
        let get = |k: &str| -> Result<Option<Vec<u8>>, StoreError> {
            Ok(meta.get(k).map_err(dberr)?.map(|v| v.value().to_vec()))
        };
        if let Some(b) = get("schema")? {
            let found: u64 = decode("schema", &b)?;
            if found != SCHEMA {
                return Err(StoreError::Schema { found });
            }
        }
        // A key a store of an earlier version did not write reads as its default.
        type Get<'a> = &'a dyn Fn(&str) -> Result<Option<Vec<u8>>, StoreError>;
        fn field<T: DeserializeOwned + Default>(get: Get, key: &str) -> Result<T, StoreError> {
            get(key)?.map(|b| decode(key, &b)).transpose().map(Option::unwrap_or_default)
        }
        let mut st = State {
            spec: field(&get, "spec")?,
            gateway: field(&get, "gateway")?,
            generation: field(&get, "generation")?,
            cuts: field(&get, "node_cuts")?,
            backends_down: field(&get, "backends_down")?,
            nodes: field(&get, "nodes")?,
            tokens: field(&get, "tokens")?,
            health_views: field(&get, "health_views")?,
            managed: field(&get, "managed")?,
            idempotency: field(&get, "idempotency")?,
            ..State::default()
        };
        // Cuts as a store of the single-gateway layout recorded them: any node's.
        let legacy = Cuts { endpoints: field(&get, "cuts")?, backends: field(&get, "backend_cuts")? };
        if !legacy.is_empty() {
            st.cuts.insert(String::new(), legacy);
        }
        fn all<T: DeserializeOwned>(
            tx: &redb::ReadTransaction,
            t: TableDefinition<&str, &[u8]>,
        ) -> Result<BTreeMap<String, T>, StoreError> {
            let table = tx.open_table(t).map_err(dberr)?;
            let mut out = BTreeMap::new();
            for row in table.iter().map_err(dberr)? {
                let (k, v) = row.map_err(dberr)?;
                out.insert(k.value().to_string(), decode(k.value(), v.value())?);
            }
            Ok(out)
        }
        st.vpcs = all(&tx, VPCS)?;
        st.services = all(&tx, SERVICES)?;
        st.endpoints = all(&tx, ENDPOINTS)?;
        Ok(st)
    }

    /// Record `st` and append `events` (their `seq` is assigned here) in one
    /// transaction: a state change and the events it caused land together or not at all.
    fn commit_with_events(&self, st: &mut State, events: &mut [Event]) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(dberr)?;
        {
            let mut meta = tx.open_table(META).map_err(dberr)?;
            let found: u64 = meta.get("generation").map_err(dberr)?.map(|v| decode("generation", v.value())).transpose()?.unwrap_or(0);
            if found != st.generation {
                return Err(StoreError::Conflict { expected: st.generation, found });
            }
            st.generation += 1;
            let fields: [(&str, Vec<u8>); 11] = [
                ("schema", encode("schema", &SCHEMA)?),
                ("spec", encode("spec", &st.spec)?),
                ("gateway", encode("gateway", &st.gateway)?),
                ("generation", encode("generation", &st.generation)?),
                ("node_cuts", encode("node_cuts", &st.cuts)?),
                ("backends_down", encode("backends_down", &st.backends_down)?),
                ("nodes", encode("nodes", &st.nodes)?),
                ("tokens", encode("tokens", &st.tokens)?),
                ("health_views", encode("health_views", &st.health_views)?),
                ("managed", encode("managed", &st.managed)?),
                ("idempotency", encode("idempotency", &st.idempotency)?),
            ];
            for (k, v) in fields {
                meta.insert(k, v.as_slice()).map_err(dberr)?;
            }
            for legacy in ["cuts", "backend_cuts"] {
                meta.remove(legacy).map_err(dberr)?;
            }
            fn put<T: Serialize>(
                tx: &redb::WriteTransaction,
                t: TableDefinition<&str, &[u8]>,
                rows: &BTreeMap<String, T>,
            ) -> Result<(), StoreError> {
                let mut table = tx.open_table(t).map_err(dberr)?;
                table.retain(|k, _| rows.contains_key(k)).map_err(dberr)?;
                for (k, v) in rows {
                    let bytes = encode(k, v)?;
                    // A row that did not change is not written again: a commit that
                    // changes one endpoint of 10,000 dirties one row's pages.
                    let same = table.get(k.as_str()).map_err(dberr)?.is_some_and(|old| old.value() == bytes.as_slice());
                    if !same {
                        table.insert(k.as_str(), bytes.as_slice()).map_err(dberr)?;
                    }
                }
                Ok(())
            }
            put(&tx, VPCS, &st.vpcs)?;
            put(&tx, SERVICES, &st.services)?;
            put(&tx, ENDPOINTS, &st.endpoints)?;
        }
        append(&tx, events)?;
        tx.commit().map_err(dberr)?;
        Ok(())
    }

    fn describe(&self) -> String {
        format!("redb {}", self.path.display())
    }

    /// Append events on their own (health changes, limit episodes).
    fn record(&self, events: &mut [Event]) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(dberr)?;
        append(&tx, events)?;
        tx.commit().map_err(dberr)
    }

    /// Events with `seq > after`, oldest first, at most `limit`.
    fn events(&self, after: u64, limit: usize) -> Result<Vec<Event>, StoreError> {
        let tx = self.db.begin_read().map_err(dberr)?;
        let t = tx.open_table(EVENTS).map_err(dberr)?;
        let mut out = Vec::new();
        for row in t.range(after.saturating_add(1)..).map_err(dberr)?.take(limit) {
            let (k, v) = row.map_err(dberr)?;
            out.push(decode(&format!("event {}", k.value()), v.value())?);
        }
        Ok(out)
    }
}

fn append(tx: &redb::WriteTransaction, events: &mut [Event]) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    let mut t = tx.open_table(EVENTS).map_err(dberr)?;
    let mut seq = t.last().map_err(dberr)?.map_or(0, |(k, _)| k.value());
    for e in events.iter_mut() {
        seq += 1;
        e.seq = seq;
        t.insert(seq, encode("event", e)?.as_slice()).map_err(dberr)?;
    }
    Ok(())
}
