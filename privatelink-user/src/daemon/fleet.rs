//! This gateway as one node of a fleet: its name and zone, the registration it keeps
//! under a lease, the other nodes' liveness as the store reports it, and the routes it
//! publishes for its routing daemon. The transitions are `model::fleet`'s; this file
//! talks to the store's membership (never commits: the gateway records what it
//! returns) and owns the route table's contents, held across restarts by the announce
//! keeper (`dataplane::announce::keeper`), which this file beats every second. Alone
//! (the embedded store) the same code runs with one node.

use crate::{
    dataplane::announce::Announcer,
    model::{
        fleet::{self, Seat},
        state::State,
    },
    store::{Beat, Store},
};
use anyhow::Result;
use std::{
    net::Ipv4Addr,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

pub struct Fleet {
    node: String,
    zone: Option<String>,
    store: Arc<dyn Store>,
    /// The routes published (None: no announce table in the state), and why
    /// publishing them last failed.
    routes: Option<Announcer>,
    route_error: Option<String>,
    /// Where the announce keeper listens (beside the daemon's socket) and how long it
    /// holds the routes without a beat.
    socket: PathBuf,
    grace: Duration,
    /// When this daemon started, and whether its lease has been held since: until it
    /// is (within the grace), the routes a previous daemon published are kept as
    /// they are.
    started: Instant,
    lease_seen: bool,
    /// Whether this node takes over its dead peers' slices (it holds their flows).
    pub taking: bool,
}

/// What a node's registration says of its replication.
#[derive(Default)]
pub struct Replicated {
    pub address: Option<std::net::SocketAddr>,
    pub standby_flows: u64,
    pub lag_p99: Option<f64>,
}

/// Routes as (table, network, prefix length).
pub type Routes = Vec<(u32, Ipv4Addr, u8)>;

impl Fleet {
    pub fn new(node: String, zone: Option<String>, store: Arc<dyn Store>, socket: PathBuf, grace: Duration) -> Fleet {
        Fleet { node, zone, store, routes: None, route_error: None, socket, grace, started: Instant::now(), lease_seen: false, taking: false }
    }

    /// Whether the store is shared by a fleet.
    pub fn shared(&self) -> bool {
        self.store.shared()
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
    pub fn beat(&self, interfaces: Vec<String>, flows: u64, generation: u64, replication: Replicated) {
        if !self.store.shared() {
            return;
        }
        let beat = Beat {
            name: self.node.clone(),
            zone: self.zone.clone(),
            interfaces,
            flows,
            at_ms: 0,
            generation,
            replication: replication.address,
            standby_flows: replication.standby_flows,
            replication_lag_seconds: replication.lag_p99,
        };
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

    /// The nodes' registrations (None alone, or while the store does not answer).
    pub fn beats(&self) -> Option<Vec<crate::store::Beat>> {
        if !self.store.shared() {
            return None;
        }
        self.store.beats().ok()
    }

    /// The nodes alive, for removing one: an error when the store does not answer.
    pub fn alive_now(&self) -> Result<Vec<String>> {
        if !self.store.shared() {
            return Ok(vec![self.node.clone()]);
        }
        Ok(self.store.beats()?.into_iter().map(|b| b.name).collect())
    }

    /// Publish the routes this node announces in `st` (`fleet::announced`); with
    /// `verify`, read back what the kernel holds first, and beat the keeper. A failure
    /// is logged once and shown by `status`; forwarding goes on. `attached`:
    /// interfaces carrying the data path (none when it is not loaded).
    pub fn publish_routes(&mut self, st: &State, attached: &dyn Fn(&str) -> bool, loaded: bool, verify: bool) {
        let any_table = st.vpcs.values().any(|v| v.spec.announce_table(&st.gateway).is_some()) || st.gateway.fleet.snat_announce_table.is_some();
        if !any_table || !loaded {
            self.withdraw();
            return;
        }
        let lease = self.store.holds_lease();
        self.lease_seen |= lease;
        // Just restarted, the lease not back yet: what the last daemon published stays.
        let settling = self.store.shared() && !self.lease_seen && self.started.elapsed() < self.grace;
        let mut interfaces: Vec<String> = st.vpcs.values().map(|v| v.spec.interface.clone()).filter(|i| attached(i)).collect();
        interfaces.sort();
        interfaces.dedup();
        let mut want: std::collections::BTreeSet<(u32, Ipv4Addr, u8)> = fleet::announced(st, &self.seat(st), attached, lease).into_iter().map(|(t, ip)| (t, ip, 32)).collect();
        want.extend(fleet::snat_announced(st, &self.node, attached, lease, self.taking).into_iter().map(|(t, c)| (t, c.net, c.prefix)));
        let before = self.routes.as_ref().map(|r| r.published().len());
        let mut lost = false;
        let r = self.announcer().and_then(|a| {
            if verify || settling {
                a.beat(&interfaces).inspect_err(|_| lost = true)?;
            }
            if settling {
                return Ok(());
            }
            a.publish(&want, verify)
        });
        match r {
            Ok(()) => {
                self.route_error = None;
                let now = self.routes.as_ref().map(|r| r.published().len());
                if now != before {
                    tracing::info!(routes = now.unwrap_or(0), lease, settling, "publishing endpoint routes");
                }
            }
            Err(e) => {
                // A keeper that is gone took its routes along: the next try starts one.
                if lost {
                    self.routes = None;
                }
                let e = e.to_string();
                if self.route_error.as_ref() != Some(&e) {
                    tracing::warn!(error = %e, "publishing endpoint routes");
                }
                self.route_error = Some(e);
            }
        }
    }

    /// The connection to the announce keeper (started when none listens).
    fn announcer(&mut self) -> crate::dataplane::Result<&mut Announcer> {
        let a = match self.routes.take() {
            Some(a) => a,
            None => Announcer::open(&self.socket, self.grace)?,
        };
        Ok(self.routes.insert(a))
    }

    /// Withdraw every route now (the data path stops or has nothing to announce): the
    /// keeper deletes them and ends.
    pub fn withdraw(&mut self) {
        self.route_error = None;
        // A keeper left by the last daemon is asked too.
        if let Some(a) = self.routes.take().or_else(|| Announcer::existing(&self.socket, self.grace)) {
            if let Err(e) = a.release() {
                tracing::warn!(error = %e, "withdrawing endpoint routes");
                self.route_error = Some(e.to_string());
            }
        }
    }

    /// The routes published now, and why publishing them last failed.
    pub fn routes(&self) -> (Routes, Option<String>) {
        let published = self.routes.as_ref().map(|r| r.published().iter().copied().collect()).unwrap_or_default();
        (published, self.route_error.clone())
    }
}
