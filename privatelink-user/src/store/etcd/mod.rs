//! The fleet's store: the recorded `State` in etcd, shared by every node.
//!
//! Layout under `/privatelink/`:
//! - `generation`: the generation, compared by every commit (the compare-and-swap).
//! - `root`: which blob holds each section of the state (`spec`, `meta`, and the
//!   endpoints in 32 buckets by name), written in the same transaction.
//! - `blob/<section>@<generation>.<node>/<part>`: a section, deflated JSON, in parts of
//!   at most 512 KiB (etcd refuses requests over 1.5 MiB). Blobs are written before the
//!   transaction that points to them; a section that did not change keeps its blob, so
//!   a small change writes little. Blobs nothing points to any more are deleted after.
//! - `events/<seq>` and `events-seq`: the event log in batches (deflated JSON, keyed by
//!   the batch's last sequence number), the newest 10,000 kept.
//! - `nodes/<name>`: each live node's registration, under its lease.
//!
//! Loads read the blobs at the revision of the root they came from, so a load is one
//! consistent snapshot even while another node commits. The client is async (tonic);
//! the store runs it on a runtime of its own, so its sync methods can be called from
//! anywhere, the daemon's runtime included.

mod background;
mod layout;
mod url;

pub use url::StoreUrl;

use super::{decode, encode, Beat, Store, StoreError, SCHEMA};
use crate::model::{
    state::{Event, State},
    time::unix_now_ms,
};
use etcd_client::{Client, Compare, CompareOp, ConnectOptions, GetOptions, Txn, TxnOp};
use layout::{assemble, deflate, inflate, key, sections, Known, Root, PART};
use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    future::Future,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

const KEEP_EVENTS: u64 = 10_000;
const EVENTS_PER_KEY: usize = 1_000;
/// How long one exchange with etcd may take before the store counts as unreachable.
const OP_TIMEOUT: Duration = Duration::from_secs(3);

pub struct EtcdStore {
    rt: Option<tokio::runtime::Runtime>,
    client: Client,
    endpoints: String,
    node: String,
    known: Mutex<HashMap<String, Known>>,
    reachable: Arc<AtomicBool>,
    /// Unix ms of the last lease renewal (0: none yet).
    renewed_ms: Arc<AtomicU64>,
    changes: tokio::sync::watch::Receiver<u64>,
    beat: Arc<Mutex<Option<Beat>>>,
}

impl EtcdStore {
    /// Connect as node `node`, start watching the state and keeping the node's lease.
    pub fn connect(url: &StoreUrl, node: &str) -> Result<EtcdStore, StoreError> {
        let endpoints = url.endpoints.join(",");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("etcd")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Etcd { endpoints: endpoints.clone(), message: format!("starting its runtime: {e}") })?;
        let opts = ConnectOptions::new()
            .with_connect_timeout(OP_TIMEOUT)
            .with_timeout(OP_TIMEOUT)
            .with_keep_alive(Duration::from_secs(1), OP_TIMEOUT);
        let eps = url.endpoints.clone();
        // Not `block_on`: the caller may be inside the daemon's runtime.
        let (tx, rx) = std::sync::mpsc::channel();
        rt.spawn(async move {
            tx.send(tokio::time::timeout(OP_TIMEOUT, Client::connect(eps, Some(opts))).await).ok();
        });
        let client = rx
            .recv()
            .map_err(|_| StoreError::Etcd { endpoints: endpoints.clone(), message: "the client's runtime stopped".into() })?
            .map_err(|_| StoreError::Etcd { endpoints: endpoints.clone(), message: "unreachable (connect timed out)".into() })?
            .map_err(|e| StoreError::Etcd { endpoints: endpoints.clone(), message: format!("unreachable: {e}") })?;
        let reachable = Arc::new(AtomicBool::new(true));
        let (tx, changes) = tokio::sync::watch::channel(0u64);
        rt.spawn(background::watch(client.clone(), tx, reachable.clone()));
        let beat = Arc::new(Mutex::new(None));
        let renewed_ms = Arc::new(AtomicU64::new(0));
        rt.spawn(background::keep_lease(client.clone(), node.to_string(), beat.clone(), reachable.clone(), renewed_ms.clone()));
        let store = EtcdStore { rt: Some(rt), client, endpoints, node: node.to_string(), known: Mutex::new(HashMap::new()), reachable, renewed_ms, changes, beat };
        // The first exchange tells whether etcd answers at all.
        store.root()?;
        Ok(store)
    }

    /// Run `f` on the store's runtime and wait for it (at most `OP_TIMEOUT`).
    fn block<T: Send + 'static, F>(&self, f: impl FnOnce(Client) -> F) -> Result<T, StoreError>
    where
        F: Future<Output = Result<T, etcd_client::Error>> + Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::channel();
        let fut = f(self.client.clone());
        let rt = self.rt.as_ref().ok_or_else(|| StoreError::Db("the store is closed".into()))?;
        rt.spawn(async move {
            let r = tokio::time::timeout(OP_TIMEOUT, fut).await;
            tx.send(r).ok();
        });
        let r = rx.recv().map_err(|_| StoreError::Db("the store's runtime stopped".into()))?;
        let r = match r {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(StoreError::Etcd { endpoints: self.endpoints.clone(), message: e.to_string() }),
            Err(_) => Err(StoreError::Etcd { endpoints: self.endpoints.clone(), message: format!("no answer within {}s", OP_TIMEOUT.as_secs()) }),
        };
        self.reachable.store(r.is_ok(), Ordering::Relaxed);
        r
    }

    /// The root and the revision it was read at (None: nothing recorded yet).
    fn root(&self) -> Result<(Option<Root>, i64), StoreError> {
        let resp = self.block(|mut c| async move { c.get(key("root"), None).await })?;
        let rev = resp.header().map_or(0, |h| h.revision());
        match resp.kvs().first() {
            None => Ok((None, rev)),
            Some(kv) => {
                let root: Root = decode("root", kv.value())?;
                if root.schema != SCHEMA {
                    return Err(StoreError::Schema { found: root.schema });
                }
                Ok((Some(root), rev))
            }
        }
    }

    /// The values of `keys` as of `rev` (one request per key; parts are few).
    fn read_at(&self, keys: Vec<String>, rev: i64) -> Result<Vec<Vec<u8>>, StoreError> {
        self.block(move |mut c| async move {
            let mut out = Vec::with_capacity(keys.len());
            for k in keys {
                let r = c.get(k.clone(), Some(GetOptions::new().with_revision(rev))).await?;
                out.push(r.kvs().first().map(|kv| kv.value().to_vec()).unwrap_or_default());
            }
            Ok(out)
        })
    }

    fn generation_now(&self) -> Result<u64, StoreError> {
        Ok(self.root()?.0.map_or(0, |r| r.generation))
    }

    /// Append events in `txn`'s success branch: returns the ops and the compare on the
    /// sequence counter they were numbered from.
    fn event_ops(&self, events: &mut [Event]) -> Result<(Vec<TxnOp>, Compare), StoreError> {
        let resp = self.block(|mut c| async move { c.get(key("events-seq"), None).await })?;
        let (mut seq, rev) = match resp.kvs().first() {
            Some(kv) => (decode::<u64>("events-seq", kv.value())?, kv.mod_revision()),
            None => (0, 0),
        };
        let cmp = Compare::mod_revision(key("events-seq"), CompareOp::Equal, rev);
        for e in events.iter_mut() {
            seq += 1;
            e.seq = seq;
        }
        // Batches of events under the key of their last one, deflated: an apply of
        // thousands of endpoints stays within etcd's operations and bytes per request.
        let mut ops = Vec::new();
        for batch in events.chunks(EVENTS_PER_KEY) {
            let last = batch.last().map_or(0, |e| e.seq);
            ops.push(TxnOp::put(key(&format!("events/{last:020}")), deflate(&encode("events", &batch)?), None));
        }
        if !events.is_empty() {
            ops.push(TxnOp::put(key("events-seq"), seq.to_string(), None));
            if seq > KEEP_EVENTS {
                let end = key(&format!("events/{:020}", seq - KEEP_EVENTS));
                ops.push(TxnOp::delete(key("events/"), Some(etcd_client::DeleteOptions::new().with_range(end))));
            }
        }
        Ok((ops, cmp))
    }
}

impl Drop for EtcdStore {
    fn drop(&mut self) {
        // The daemon drops its gateway inside its own runtime: no blocking wait here.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl Store for EtcdStore {
    fn load(&self) -> Result<State, StoreError> {
        // Another node may commit (and delete blobs) between the root and the parts:
        // the parts are read at the root's revision. Retried when etcd has compacted it.
        let mut last = None;
        for _ in 0..3 {
            let (Some(root), rev) = self.root()? else { return Ok(State::default()) };
            let missing: Vec<(String, Vec<String>)> = {
                let known = self.known.lock().map_err(|_| StoreError::Db("poisoned".into()))?;
                root.sections.iter().filter(|(n, keys)| known.get(*n).is_none_or(|k| &k.keys != *keys)).map(|(n, k)| (n.clone(), k.clone())).collect()
            };
            let flat: Vec<String> = missing.iter().flat_map(|(_, k)| k.clone()).collect();
            let values = match self.read_at(flat, rev) {
                Ok(v) => v,
                Err(e) => {
                    last = Some(e);
                    continue;
                }
            };
            let mut values = values.into_iter();
            let mut known = self.known.lock().map_err(|_| StoreError::Db("poisoned".into()))?;
            for (name, keys) in missing {
                let mut deflated = Vec::new();
                for _ in &keys {
                    deflated.extend(values.next().unwrap_or_default());
                }
                let json = inflate(&name, &deflated)?;
                known.insert(name, Known { keys, json: Arc::new(json) });
            }
            known.retain(|n, _| root.sections.contains_key(n));
            let parts: BTreeMap<String, Arc<Vec<u8>>> = known.iter().map(|(n, k)| (n.clone(), k.json.clone())).collect();
            return assemble(root.generation, &parts);
        }
        Err(last.unwrap_or_else(|| StoreError::Db("load".into())))
    }

    fn commit_with_events(&self, st: &mut State, events: &mut [Event]) -> Result<(), StoreError> {
        let base = st.generation;
        let next = base + 1;
        let fresh = sections(st)?;
        let (old_root, _) = self.root()?;
        let old_root = old_root.unwrap_or_default();
        if old_root.generation != base {
            return Err(StoreError::Conflict { expected: base, found: old_root.generation });
        }
        // Sections whose JSON is what the current root points to keep their blobs.
        let mut root = Root { schema: SCHEMA, generation: next, sections: BTreeMap::new() };
        let mut writes: Vec<(String, Vec<u8>)> = Vec::new();
        let mut wrote: HashMap<String, Known> = HashMap::new();
        {
            let known = self.known.lock().map_err(|_| StoreError::Db("poisoned".into()))?;
            for (name, json) in fresh {
                let same = known.get(&name).filter(|k| old_root.sections.get(&name) == Some(&k.keys) && *k.json == json);
                if let Some(k) = same {
                    root.sections.insert(name, k.keys.clone());
                    continue;
                }
                let deflated = deflate(&json);
                let keys: Vec<String> = deflated
                    .chunks(PART)
                    .enumerate()
                    .map(|(i, part)| {
                        let k = key(&format!("blob/{name}@{next}.{}/{i}", self.node));
                        writes.push((k.clone(), part.to_vec()));
                        k
                    })
                    .collect();
                root.sections.insert(name.clone(), keys.clone());
                wrote.insert(name, Known { keys, json: Arc::new(json) });
            }
        }
        let blob_keys: Vec<String> = writes.iter().map(|(k, _)| k.clone()).collect();
        self.block(move |mut c| async move {
            for (k, v) in writes {
                c.put(k, v, None).await?;
            }
            Ok(())
        })?;
        let gen_cmp = if base == 0 {
            Compare::version(key("generation"), CompareOp::Equal, 0)
        } else {
            Compare::value(key("generation"), CompareOp::Equal, base.to_string())
        };
        let root_json = encode("root", &root)?;
        for _ in 0..10 {
            let (mut ops, seq_cmp) = self.event_ops(events)?;
            ops.push(TxnOp::put(key("generation"), next.to_string(), None));
            ops.push(TxnOp::put(key("root"), root_json.clone(), None));
            let txn = Txn::new().when(vec![gen_cmp.clone(), seq_cmp]).and_then(ops);
            let done = self.block(|mut c| async move { c.txn(txn).await })?;
            if done.succeeded() {
                st.generation = next;
                let mut known = self.known.lock().map_err(|_| StoreError::Db("poisoned".into()))?;
                known.extend(wrote);
                known.retain(|n, _| root.sections.contains_key(n));
                drop(known);
                // Blobs the old root pointed to and the new one does not.
                let keep: BTreeSet<&String> = root.sections.values().flatten().collect();
                let stale: Vec<String> = old_root.sections.values().flatten().filter(|k| !keep.contains(k)).cloned().collect();
                self.delete(stale);
                return Ok(());
            }
            let found = self.generation_now()?;
            if found != base {
                self.delete(blob_keys);
                return Err(StoreError::Conflict { expected: base, found });
            }
            // Only the event counter moved (another node recorded events): renumber.
        }
        self.delete(blob_keys);
        Err(StoreError::Db("the event log kept moving: gave up after 10 tries".into()))
    }

    fn record(&self, events: &mut [Event]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        for _ in 0..10 {
            let (ops, cmp) = self.event_ops(events)?;
            let txn = Txn::new().when(vec![cmp]).and_then(ops);
            if self.block(|mut c| async move { c.txn(txn).await })?.succeeded() {
                return Ok(());
            }
        }
        Err(StoreError::Db("the event log kept moving: gave up after 10 tries".into()))
    }

    fn events(&self, after: u64, limit: usize) -> Result<Vec<Event>, StoreError> {
        let from = key(&format!("events/{:020}", after.saturating_add(1)));
        let end = key("events0"); // '/' + 1: the end of the events/ prefix
        // A batch is keyed by its last event: the first batch read may start before
        // `after`. Every batch holds one event or more: `limit` batches are enough.
        let batches = limit as i64;
        let resp = self.block(move |mut c| async move { c.get(from, Some(GetOptions::new().with_range(end).with_limit(batches))).await })?;
        let mut out = Vec::new();
        for kv in resp.kvs() {
            let batch: Vec<Event> = decode("events", &inflate("events", kv.value())?)?;
            out.extend(batch.into_iter().filter(|e| e.seq > after));
        }
        out.truncate(limit);
        Ok(out)
    }

    fn shared(&self) -> bool {
        true
    }

    fn changes(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        Some(self.changes.clone())
    }

    fn heartbeat(&self, beat: &Beat) -> Result<(), StoreError> {
        *self.beat.lock().map_err(|_| StoreError::Db("poisoned".into()))? = Some(beat.clone());
        Ok(())
    }

    fn beats(&self) -> Result<Vec<Beat>, StoreError> {
        let resp = self.block(|mut c| async move { c.get(key("nodes/"), Some(GetOptions::new().with_prefix())).await })?;
        resp.kvs().iter().map(|kv| decode("node", kv.value())).collect()
    }

    fn reachable(&self) -> bool {
        self.reachable.load(Ordering::Relaxed)
    }

    fn holds_lease(&self) -> bool {
        let at = self.renewed_ms.load(Ordering::Relaxed);
        at > 0 && unix_now_ms().saturating_sub(at) < background::LEASE_SURE_MS
    }

    fn describe(&self) -> String {
        format!("etcd {}", self.endpoints)
    }
}

impl EtcdStore {
    /// Delete keys nothing points to any more (best effort: a leftover is only space).
    fn delete(&self, keys: Vec<String>) {
        if keys.is_empty() {
            return;
        }
        let r = self.block(move |mut c| async move {
            for k in keys {
                c.delete(k, None).await?;
            }
            Ok(())
        });
        if let Err(e) = r {
            tracing::warn!(error = %e, "deleting stale state blobs");
        }
    }
}

