//! What readers see: an immutable picture of the daemon, published by the writer after
//! each change (`arc-swap`), as Kubernetes' informers and Cilium's statedb do. `get`,
//! `describe`, `stats`, `status`, events and scrapes are answered from the picture of
//! the moment and the data path's read-only handles (`maps::Reader`); a reader never
//! waits for a writer, and a writer never for a reader. `views` and `metrics` read it.

use super::{datapath::PathFacts, fleet::Routes, health::Checker, options::Options, sweeper::SweepShared};
use crate::{dataplane::maps::Reader, model::{fleet::Seat, state::State}, store::Store};
use arc_swap::ArcSwap;
use std::sync::Arc;

pub struct Picture {
    pub state: Arc<State>,
    /// The backends' health as the checker knew it.
    pub health: Arc<Checker>,
    pub opts: Arc<Options>,
    /// The store, for what it answers itself (events, registrations, reachability).
    pub store: Arc<dyn Store>,
    /// The sweeper's live counters.
    pub sweeper: Arc<SweepShared>,
    /// Replication's live counters.
    pub replication: Arc<super::replication::Replication>,
    /// The counters and flow table (None: the data path is not loaded).
    pub counters: Option<Arc<Reader>>,
    pub path: PathFacts,
    pub routes: Routes,
    pub route_error: Option<String>,
    /// Which endpoint each VPC's service names resolve to (`dns::holders`), found once
    /// per picture by the first reader that needs it.
    pub holders: std::sync::OnceLock<std::collections::BTreeMap<(String, String), String>>,
    /// Each account's endpoints (names), indexed once per picture by the first reader.
    pub by_owner: std::sync::OnceLock<std::collections::HashMap<String, Vec<String>>>,
}

impl Picture {
    /// The endpoints (names) of `account`.
    pub fn endpoints_of(&self, account: &str) -> &[String] {
        let index = self.by_owner.get_or_init(|| {
            let mut m: std::collections::HashMap<String, Vec<String>> = std::collections::HashMap::new();
            for e in self.state.endpoints.values() {
                m.entry(e.spec.owner.0.clone()).or_default().push(e.spec.name.clone());
            }
            m
        });
        index.get(account).map_or(&[], Vec::as_slice)
    }

    /// The endpoint (name) `vpc`'s names of `service` resolve to, if any.
    pub fn dns_holder(&self, vpc: &str, service: &str) -> Option<&str> {
        let held = self.holders.get_or_init(|| {
            crate::model::dns::holders(&self.state).into_iter().map(|((v, s), e)| ((v.to_string(), s.to_string()), e.to_string())).collect()
        });
        held.get(&(vpc.to_string(), service.to_string())).map(String::as_str)
    }

    /// This node's seat in the pictured state.
    pub fn seat(&self) -> Seat {
        Seat::of(&self.state, &self.opts.node)
    }
}

/// Where pictures are published: cloned by every reader, written by the writer only.
#[derive(Clone)]
pub struct Shown(Arc<ArcSwap<Picture>>);

impl Shown {
    pub fn new(p: Picture) -> Shown {
        Shown(Arc::new(ArcSwap::from_pointee(p)))
    }
    /// The picture of the moment (it stays whole while held, whatever is published).
    pub fn now(&self) -> Arc<Picture> {
        self.0.load_full()
    }
    pub fn show(&self, p: Picture) {
        self.0.store(Arc::new(p));
    }
}
