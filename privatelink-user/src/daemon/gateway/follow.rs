//! Keeping up: with this node's seat in the fleet (joining, its registration, the
//! others' liveness, removing a node gone for good), with other nodes' commits, and
//! with the health checker's verdicts. Each ends with the maps written and, where the
//! state changed, the routes published.

use super::Gateway;
use crate::{daemon::health::Target, model::{fleet, health}};
use anyhow::Result;

impl Gateway {
    /// Take (or keep) this node's seat in the recorded state, and register.
    pub(super) fn join(&mut self) -> Result<()> {
        let fleet = &self.fleet;
        let before = self.rec.state().clone();
        let r = self.rec.transact(|st| fleet.join(st));
        self.followed(&before);
        r?;
        self.beat();
        Ok(())
    }

    fn beat(&self) {
        let r = self.path.replication();
        let replicated = super::super::fleet::Replicated { address: self.opts.replication_listen, standby_flows: r.standby_flows(), lag_p99: r.lag_quantile(0.99) };
        self.fleet.beat(self.path.attached(), self.path.live_flows(self.rec.state()), self.rec.state().generation, replicated);
    }

    /// Take the store's latest state (committing nothing).
    pub(super) fn reload(&mut self) -> Result<()> {
        let before = self.rec.state().clone();
        self.rec.reload()?;
        self.followed(&before);
        Ok(())
    }

    /// After other nodes' changes: follow them into the maps and links, then do this
    /// node's part (cut its flows of revoked endpoints and of backends gone down; sweep
    /// its flows of endpoints being deleted).
    pub fn catch_up(&mut self) -> Result<()> {
        let was = self.rec.state().generation;
        self.reload()?;
        if self.rec.state().generation != was {
            // Say at once which generation this node follows: a revocation waits on it.
            self.beat();
        }
        if self.rec.state().vpcs.is_empty() && !self.path.loaded() {
            return Ok(());
        }
        if self.path.behind(self.rec.state()) {
            self.path.load(self.rec.state().gateway.conntrack_capacity)?;
            self.write_maps()?;
            self.path.ensure_links(self.rec.state())?;
            self.publish_routes(false);
        }
        self.path.cut_deleting(self.rec.state())?;
        self.finish_cuts()
    }

    /// Once a second: publish this node's registration, and record which nodes are
    /// alive (a change moves every node's share of the limits).
    pub fn fleet_tick(&mut self) -> Result<()> {
        self.beat();
        let Some(live) = self.fleet.alive() else { return Ok(()) };
        let me = self.opts.node.clone();
        if self.transact(|st| Ok(fleet::liveness(st, &me, &live)))? && self.path.loaded() {
            self.write_maps()?;
        }
        self.take_over()
    }

    /// Take over the SNAT slices (and the standby flows) of the nodes recorded down
    /// whose buddy this node is; give up those back or gone.
    fn take_over(&mut self) -> Result<()> {
        if self.opts.replication_listen.is_none() {
            return Ok(());
        }
        let st = self.rec.state().clone();
        let from: std::collections::BTreeSet<String> = crate::model::buddy::taken_over_by(&st, &self.opts.node).into_iter().collect();
        let slices = from.iter().flat_map(|n| fleet::snat_slice_ranges(&st, st.nodes[n].slice)).map(|c| (c.net, c.prefix)).collect();
        let (newly, gone) = self.path.take_over(&slices, from)?;
        if let Err(e) = self.hand_off(&st) {
            tracing::warn!(error = %format!("{e:#}"), "the hand-off to a dead node's buddy");
        }
        let held = self.path.replication().held.lock().unwrap().clone();
        let events: Vec<_> = newly
            .iter()
            .map(|n| {
                let flows = held.iter().find(|(o, _)| o == n).map_or(0, |(_, c)| *c);
                let message = format!("{} takes over node {n}'s SNAT slice and the {flows} flows it held for it (each moves here with its next packet from the client)", self.opts.node);
                crate::model::state::Event::new("node.takeover", n, None, message)
            })
            .collect();
        for n in gone {
            tracing::info!(node = %n, "gave node's SNAT slice up (it is back or gone): flows adopted from it stay here until they end");
        }
        if !events.is_empty() {
            self.rec.record(events)?;
        }
        Ok(())
    }

    /// Take hand-offs from the other nodes, and hand a dead node's client segments to
    /// its buddy when this node is not that buddy.
    fn hand_off(&mut self, st: &crate::model::state::State) -> Result<()> {
        let Some(std::net::SocketAddr::V4(listen)) = self.opts.replication_listen else { return Ok(()) };
        let Some(beats) = self.fleet.beats() else { return Ok(()) };
        let me = &self.opts.node;
        let addr = |n: &str| beats.iter().find(|b| b.name == n).and_then(|b| b.replication);
        let peers = beats.iter().filter(|b| b.name != *me).filter_map(|b| match b.replication {
            Some(std::net::SocketAddr::V4(a)) => Some(*a.ip()),
            _ => None,
        });
        let peers = peers.collect();
        // The first dead node whose buddy is another node (one target at a time).
        let target = st
            .nodes
            .iter()
            .filter(|(n, r)| !r.up && *n != me)
            .filter_map(|(n, _)| crate::model::buddy::buddy_of(st, n))
            .find(|b| b != me)
            .and_then(|b| addr(&b));
        let on = self.path.hand_off(st, *listen.ip(), target, &peers)?;
        self.path.replication().handing.store(on, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// This daemon stops and its data path stays attached (SIGTERM): tell the fleet it
    /// is restarting, so the others keep counting it up for the restart grace (its
    /// lease runs out meanwhile). Alone, or with nothing attached, nothing to say.
    pub fn leaving(&mut self) -> Result<()> {
        if !self.fleet.shared() || !self.path.loaded() {
            return Ok(());
        }
        let (me, until) = (self.opts.node.clone(), crate::model::time::unix_now_ms() + self.opts.restart_grace.as_millis() as u64);
        self.transact(|st| Ok(fleet::restarting(st, &me, until)))?;
        Ok(())
    }

    /// `delete node NAME`: forget a node that is gone for good (its slice is free).
    pub fn remove_node(&mut self, name: &str) -> Result<()> {
        let live = self.fleet.alive_now()?;
        self.transact(|st| Ok(Some(fleet::remove(st, name, &live)?)))?;
        if self.path.loaded() {
            self.write_maps()?;
        }
        self.publish_routes(false);
        Ok(())
    }

    /// A health probe finished: on a flip, record it, rewrite the backend tables, cut
    /// the backend's flows where the service says so, and show readers the result (a
    /// probe that flips nothing waits for the next tick's picture).
    pub fn health_result(&mut self, target: &Target, result: Result<(), String>) -> Result<()> {
        let Some(flip) = self.health.record(target, result) else { return Ok(()) };
        let users = self.health.users(target);
        // The flip, the flows it cuts and its events are recorded together; in a fleet
        // another node may have recorded the same flip already (then nothing is).
        let checker = &self.health;
        let st = self.rec.state().clone();
        let open: Vec<&String> = users.iter().filter(|svc| st.services.get(*svc).is_some_and(|s| s.spec.failing_open(&|n, ip| checker.is_up(n, ip)))).collect();
        let verdict = health::Flip { ip: target.ip, up: flip.up, error: flip.error.as_deref() };
        let me = self.opts.node.clone();
        let changed = self.transact(|st| Ok(health::record(st, &me, &users, &verdict, &open)))?;
        if self.path.loaded() {
            self.write_maps()?;
            if changed {
                self.finish_cuts()?;
            }
        }
        self.show();
        Ok(())
    }

    /// Targets due for a health probe.
    pub fn due_probes(&mut self) -> Vec<Target> {
        self.health.due(std::time::Instant::now())
    }
}
