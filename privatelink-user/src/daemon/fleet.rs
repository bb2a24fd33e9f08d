//! This gateway as one node of a fleet: its name and zone, the registration it keeps
//! under a lease, the other nodes' liveness as the store reports it, and the routes it
//! publishes for its routing daemon. The transitions are `model::fleet`'s; this file
//! talks to the store's membership (never commits: the gateway records what it
//! returns) and owns the route table's contents. Alone (the embedded store) the same
//! code runs with one node.

use crate::{
    dataplane::announce::Announcer,
    model::{
        fleet::{self, Seat},
        state::State,
    },
    store::{Beat, Store},
};
use anyhow::Result;
use std::{net::Ipv4Addr, sync::Arc};

pub struct Fleet {
    node: String,
    zone: Option<String>,
    store: Arc<dyn Store>,
    /// The routes published (None: no announce table in the state), and why
    /// publishing them last failed.
    routes: Option<Announcer>,
    route_error: Option<String>,
}

/// Routes as (table, address).
pub type Routes = Vec<(u32, Ipv4Addr)>;

impl Fleet {
    pub fn new(node: String, zone: Option<String>, store: Arc<dyn Store>) -> Fleet {
        Fleet { node, zone, store, routes: None, route_error: None }
    }

    /// This node's seat in `st`.
    pub fn seat(&self, st: &State) -> Seat {
        Seat::of(st, &self.node)
    }

    /// The change that takes (or keeps) this node's seat in `st`. Alone, the store's one
    /// node record is this node's whatever its name was.
    pub fn join(&self, st: &State) -> Result<Option<(State, Vec<crate::model::state::Event>)>> {
        if !self.store.shared() {
            return Ok(fleet::alone(st, &self.node, self.zone.as_deref()));
        }
        // Slices are handed out up to the most a spec may ask for; validation holds
        // `gateway.snat_slices` to the slices taken.
        Ok(fleet::join(st, &self.node, self.zone.as_deref(), fleet::MAX_SLICES)?)
    }

    /// Publish this node's registration (alone: nothing to publish).
    pub fn beat(&self, interfaces: Vec<String>, flows: u64, generation: u64) {
        if !self.store.shared() {
            return;
        }
        let beat = Beat { name: self.node.clone(), zone: self.zone.clone(), interfaces, flows, at_ms: 0, generation };
        if let Err(e) = self.store.heartbeat(&beat) {
            tracing::warn!(error = %e, "node registration");
        }
    }

    /// The nodes registered under a live lease; None alone, or while the store does not
    /// answer (the data path goes on with the maps it has).
    pub fn alive(&self) -> Option<Vec<String>> {
        if !self.store.shared() {
            return None;
        }
        self.store.beats().ok().map(|b| b.into_iter().map(|b| b.name).collect())
    }

    /// The nodes alive, for removing one: an error when the store does not answer.
    pub fn alive_now(&self) -> Result<Vec<String>> {
        if !self.store.shared() {
            return Ok(vec![self.node.clone()]);
        }
        Ok(self.store.beats()?.into_iter().map(|b| b.name).collect())
    }

    /// Publish the routes this node announces in `st` (`fleet::announced`); with
    /// `verify`, read back what the kernel holds first. A failure is logged once and
    /// shown by `status`; forwarding goes on. `attached`: interfaces carrying the data
    /// path (none when it is not loaded).
    pub fn publish_routes(&mut self, st: &State, attached: &dyn Fn(&str) -> bool, loaded: bool, verify: bool) {
        let any_table = st.vpcs.values().any(|v| v.spec.announce_table(&st.gateway).is_some());
        if !any_table || !loaded {
            // Closing the device withdraws whatever it carried.
            self.withdraw();
            return;
        }
        let want = fleet::announced(st, &self.seat(st), attached, self.store.holds_lease());
        let before = self.routes.as_ref().map(|r| r.published().len());
        let r = match &mut self.routes {
            Some(a) => a.publish(&want, verify),
            None => Announcer::open().and_then(|mut a| {
                let r = a.publish(&want, verify);
                self.routes = Some(a);
                r
            }),
        };
        match r {
            Ok(()) => {
                self.route_error = None;
                let now = self.routes.as_ref().map(|r| r.published().len());
                if now != before {
                    tracing::info!(routes = now.unwrap_or(0), lease = self.store.holds_lease(), "publishing endpoint routes");
                }
            }
            Err(e) => {
                let e = e.to_string();
                if self.route_error.as_ref() != Some(&e) {
                    tracing::warn!(error = %e, "publishing endpoint routes");
                }
                self.route_error = Some(e);
            }
        }
    }

    /// Withdraw every route (the data path stops or has nothing to announce).
    pub fn withdraw(&mut self) {
        self.routes = None;
        self.route_error = None;
    }

    /// The routes published now, and why publishing them last failed.
    pub fn routes(&self) -> (Routes, Option<String>) {
        let published = self.routes.as_ref().map(|r| r.published().iter().copied().collect()).unwrap_or_default();
        (published, self.route_error.clone())
    }
}
