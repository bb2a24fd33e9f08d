//! The gateway as one node of a fleet: joining (a slice of every SNAT range), the
//! registration it keeps under a lease, the liveness of the others (each node's share
//! of every connection limit follows it), and catching up with changes other nodes
//! commit. Alone (the embedded store) the same code runs with one node.

use super::{api::{NodeView, Timestamp}, gateway::Gateway};
use crate::{
    dataplane::announce::Announcer,
    model::{
        fleet::{self, Seat},
        state::{Cuts, Event, State},
    },
    store::Beat,
};
use anyhow::{Context, Result};
use std::sync::Arc;
use tokio::sync::Mutex;

impl Gateway {
    /// Take (or keep) this node's seat in the recorded state. Alone, the store's one
    /// node record is this node's whatever its name was.
    pub(super) fn join(&mut self) -> Result<()> {
        let (me, zone, shared) = (self.opts.node.clone(), self.opts.zone.clone(), self.store.shared());
        self.transact(|st| {
            if !shared {
                return Ok(alone(st, &me, zone.as_deref()));
            }
            // Slices are handed out up to the most a spec may ask for; validation holds
            // `gateway.snat_slices` to the slices taken.
            Ok(fleet::join(st, &me, zone.as_deref(), fleet::MAX_SLICES)?)
        })?;
        self.beat();
        Ok(())
    }

    /// Take the store's latest state, and make the maps and links follow it. Commits
    /// nothing (what this node still owes is `catch_up`'s).
    pub(super) fn reload(&mut self) -> Result<()> {
        let st = self.store.load().context("reading the shared state")?;
        if st.generation == self.state.generation {
            return Ok(());
        }
        self.adopt(st);
        if !self.state.vpcs.is_empty() {
            self.load_data_path()?;
            self.sync()?;
            self.ensure_links()?;
        }
        Ok(())
    }

    /// After other nodes' changes: follow them, then do this node's part (cut its flows
    /// of revoked endpoints and of backends gone down; sweep its flows of endpoints
    /// being deleted).
    pub fn catch_up(&mut self) -> Result<()> {
        self.reload()?;
        if self.dp.is_some() {
            self.sweep_deleting()?;
            self.finish_cuts()?;
        }
        Ok(())
    }

    /// Once a second: publish this node's registration, and record which nodes are
    /// alive (a change moves every node's share of the limits).
    pub fn fleet_tick(&mut self) -> Result<()> {
        if !self.store.shared() {
            return Ok(());
        }
        self.beat();
        let live: Vec<String> = match self.store.beats() {
            Ok(b) => b.into_iter().map(|b| b.name).collect(),
            // Cut off from the store: the data path goes on with the maps it has.
            Err(_) => return Ok(()),
        };
        let me = self.opts.node.clone();
        if self.transact(|st| Ok(fleet::liveness(st, &me, &live)))? {
            self.sync()?;
        }
        Ok(())
    }

    fn beat(&mut self) {
        let flows = self.live_flows();
        let beat = Beat {
            name: self.opts.node.clone(),
            zone: self.opts.zone.clone(),
            interfaces: self.links.attached(),
            flows,
            at_ms: 0,
        };
        if let Err(e) = self.store.heartbeat(&beat) {
            tracing::warn!(error = %e, "node registration");
        }
    }

    /// `get nodes`: every recorded node, with what its registration says when alive.
    pub(super) fn nodes(&self) -> Result<Vec<NodeView>> {
        let beats = if self.store.shared() { self.store.beats()? } else { Vec::new() };
        let mut out = Vec::new();
        for (name, r) in &self.state.nodes {
            let me = *name == self.opts.node;
            let beat = beats.iter().find(|b| b.name == *name);
            let (interfaces, flows, last) = match (me, beat) {
                (true, _) if !self.store.shared() => (self.links.attached(), self.live_flows(), None),
                (_, Some(b)) => (b.interfaces.clone(), b.flows, Some(Timestamp(b.at_ms))),
                (_, None) => (Vec::new(), 0, None),
            };
            let live = !self.store.shared() || beat.is_some();
            let state = match (r.up, live) {
                (true, true) => "up",
                // Its lease ran out; the others have not recorded it yet.
                (true, false) => "unreachable",
                (false, true) => "joining",
                (false, false) => "down",
            };
            out.push(NodeView {
                name: name.clone(),
                zone: r.zone.clone(),
                state: state.into(),
                slice: r.slice,
                snat_slices: self.snat_slices_of(r.slice),
                interfaces,
                flows,
                last_heartbeat: last,
                this_node: me,
            });
        }
        Ok(out)
    }

    /// Flows this node holds now (the data path's count of every endpoint's).
    fn live_flows(&self) -> u64 {
        let Some(dp) = &self.dp else { return 0 };
        self.state.endpoints.values().filter_map(|e| dp.maps.active_flows(e.index).ok()).sum()
    }

    /// The slice `k` of every SNAT range in use (the gateway's and the services' own).
    fn snat_slices_of(&self, k: u32) -> Vec<String> {
        let n = self.state.snat_slices();
        let mut ranges = vec![self.state.gateway.snat_range];
        for s in self.state.services.values() {
            let r = self.state.snat_range_of(&s.spec);
            if !ranges.contains(&r) {
                ranges.push(r);
            }
        }
        ranges.into_iter().map(|r| fleet::slice_range(r, n, k).to_string()).collect()
    }

    /// Publish the routes this node announces now (`fleet::announced`); with
    /// `verify`, read back what the kernel holds first. A failure is logged once and
    /// shown by `status`; forwarding goes on.
    pub(super) fn publish_routes(&mut self, verify: bool) {
        let any_table = self.state.vpcs.values().any(|v| v.spec.announce_table(&self.state.gateway).is_some());
        if !any_table || self.dp.is_none() {
            // Closing the device withdraws whatever it carried.
            self.routes = None;
            self.route_error = None;
            return;
        }
        let seat = Seat::of(&self.state, &self.opts.node);
        let links = &self.links;
        let want = fleet::announced(&self.state, &seat, &|i| links.contains(i), self.store.holds_lease());
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

    /// `delete node NAME`: forget a node that is gone for good (its slice is free).
    pub(super) fn remove_node(&mut self, name: &str) -> Result<()> {
        let live: Vec<String> = if self.store.shared() {
            self.store.beats()?.into_iter().map(|b| b.name).collect()
        } else {
            vec![self.opts.node.clone()]
        };
        self.transact(|st| Ok(Some(fleet::remove(st, name, &live)?)))?;
        self.sync()?;
        Ok(())
    }
}

/// The record of a lone gateway: one node, this one, slice 0. Cuts recorded for
/// another name (the host was renamed) become this node's.
fn alone(st: &State, me: &str, zone: Option<&str>) -> Option<(State, Vec<Event>)> {
    let r = st.nodes.get(me);
    if st.nodes.len() == 1 && r.is_some_and(|r| r.slice == 0 && r.up && r.zone.as_deref() == zone) {
        return None;
    }
    let mut next = st.clone();
    let mut owed = Cuts::default();
    for (name, c) in std::mem::take(&mut next.cuts) {
        if name != me {
            owed.endpoints.extend(c.endpoints);
            owed.backends.extend(c.backends);
        } else {
            next.cuts.insert(name, c);
        }
    }
    if !owed.is_empty() {
        let c = next.cuts.entry(me.to_string()).or_default();
        c.endpoints.extend(owed.endpoints);
        c.backends.extend(owed.backends);
    }
    next.nodes.clear();
    next.nodes.insert(me.to_string(), fleet::NodeRecord { slice: 0, zone: zone.map(str::to_string), up: true, since_ms: crate::model::time::unix_now_ms() });
    Some((next, Vec::new()))
}

/// Follow the store: catch up whenever it says the state changed, and beat every
/// second (with a catch-up too, so nothing waits on a missed notification).
pub(super) async fn fleet_loop(gw: Arc<Mutex<Gateway>>) {
    let changes = gw.lock().await.store.changes();
    let Some(mut changes) = changes else { return };
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tokio::select! {
            r = changes.changed() => if r.is_err() { return },
            _ = tick.tick() => {
                if let Err(e) = gw.lock().await.fleet_tick() {
                    tracing::warn!(error = %format!("{e:#}"), "fleet liveness");
                }
            }
        }
        if let Err(e) = gw.lock().await.catch_up() {
            tracing::warn!(error = %format!("{e:#}"), "following the shared state");
        }
    }
}

