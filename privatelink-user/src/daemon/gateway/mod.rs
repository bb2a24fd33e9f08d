//! The writer: the one place changes are made, composed of owners that each hold their
//! own state: the recorder (store, recorded state, retries, events), the data path
//! (maps, links, neighbours, drift repair), the fleet (membership, routes), the health
//! checker and the limit episodes. A change goes through the recorder first (store),
//! then the data path (maps), then one route publication; `Writer::run` then shows
//! readers a new picture. `apply` runs applies and the provider's decisions, `cuts`
//! removes the flows a change calls for, `follow` keeps up with the fleet, the health
//! verdicts and the clock, `edit` makes a tenant's create, change or delete.

mod apply;
mod cuts;
mod edit;
mod follow;

pub use edit::{EditRequest, Edited};

use super::{
    datapath::DataPath,
    fleet::Fleet,
    health::Checker,
    limits::Limits,
    picture::{Picture, Shown},
    record::{Change, Recorder},
    sweeper::SweepShared,
    options::Options,
};
use crate::{
    dataplane::reconcile::Report,
    model::{plan, spec::Spec, state::State, yaml::Doc},
    store::{EtcdStore, RedbStore, Store},
};
use anyhow::{Context, Result};
use std::{sync::Arc, time::Instant};

pub struct Gateway {
    opts: Arc<Options>,
    rec: Recorder,
    path: DataPath,
    fleet: Fleet,
    health: Checker,
    limits: Limits,
    /// The last spec text read and what it parsed to: re-applying the same file skips
    /// the YAML parse (a pure function of the text); planning still runs in full.
    parsed: Option<(String, Arc<(Spec, Doc)>)>,
    last_repair: Instant,
    shown: Shown,
}

impl Gateway {
    /// Open the store and the data path, join the fleet, and finish whatever a previous
    /// process left half done.
    pub fn open(opts: Options) -> Result<Gateway> {
        let path = DataPath::open(opts.bpffs.clone())?;
        let store: Arc<dyn Store> = match &opts.store {
            Some(url) => Arc::new(EtcdStore::connect(url, &opts.node)?),
            None => Arc::new(RedbStore::open(&opts.state_dir)?),
        };
        let rec = Recorder::open(store.clone())?;
        let mut fleet = Fleet::new(opts.node.clone(), opts.zone.clone(), store, opts.socket.clone(), opts.restart_grace);
        fleet.taking = opts.replication_listen.is_some();
        let opts = Arc::new(opts);
        let mut health = Checker::default();
        health.sync(rec.state(), &opts.node);
        let shown = Shown::new(picture(&opts, &rec, &path, &fleet, &health));
        let mut gw = Gateway { opts, rec, path, fleet, health, limits: Limits::default(), parsed: None, last_repair: Instant::now(), shown };
        gw.join().context("joining the fleet")?;
        if !gw.rec.state().vpcs.is_empty() {
            gw.path.load(gw.rec.state().gateway.conntrack_capacity)?;
            gw.reconcile().context("reconciling the recorded state into the maps")?;
            gw.path.ensure_links(gw.rec.state())?;
            if plan::unfinished(gw.rec.state()) {
                tracing::warn!("finishing an apply that was interrupted");
                gw.finish_apply()?;
            }
            let cuts = gw.rec.state().cuts_of(&gw.opts.node);
            if !cuts.is_empty() {
                tracing::warn!(endpoints = ?cuts.endpoints, backends = ?cuts.backends, "finishing flow cuts that were interrupted");
                gw.finish_cuts()?;
            }
        }
        gw.path.sweeper().set_timeouts(gw.rec.state().gateway.timeouts.into());
        gw.publish_routes(false);
        gw.show();
        Ok(gw)
    }

    /// Where this gateway's pictures are shown to readers.
    pub fn shown(&self) -> Shown {
        self.shown.clone()
    }

    /// Replication's handles and counters (its tasks are the daemon's).
    pub fn replication(&self) -> Arc<super::replication::Replication> {
        self.path.replication().clone()
    }

    /// The sweeper's handles and counters (its thread is the daemon's).
    pub fn sweeper(&self) -> Arc<SweepShared> {
        self.path.sweeper().clone()
    }

    /// Show readers what is true now.
    pub fn show(&self) {
        self.shown.show(picture(&self.opts, &self.rec, &self.path, &self.fleet, &self.health));
    }

    /// `Recorder::transact`, then the owners follow the state it leaves (also when
    /// another node's state was read on the way and nothing was committed).
    fn transact(&mut self, f: impl FnMut(&State) -> Result<Change>) -> Result<bool> {
        let before = self.rec.state().clone();
        let r = self.rec.transact(f);
        self.followed(&before);
        r
    }

    /// The state moved on from `before`: health targets and limit baselines follow.
    fn followed(&mut self, before: &Arc<State>) {
        let now = self.rec.state();
        if !Arc::ptr_eq(before, now) {
            self.limits.follow(before, now);
            self.health.sync(now, &self.opts.node);
        }
    }

    /// Write what the recorded state calls for beyond what the maps were last given.
    fn write_maps(&mut self) -> Result<Report> {
        let (st, health) = (self.rec.state().clone(), &self.health);
        self.path.step(&st, &self.fleet.seat(&st), &|s, ip| health.is_up(s, ip))
    }

    /// Record a change the data path never sees (tokens): committed with its events and
    /// delivered; no map is written. Whether it committed.
    pub fn remember(&mut self, f: impl FnMut(&State) -> Result<Change>) -> Result<bool> {
        self.transact(f)
    }

    /// Read the maps back and write what differs from the recorded state.
    fn reconcile(&mut self) -> Result<Report> {
        let (st, health) = (self.rec.state().clone(), &self.health);
        self.path.reconcile(&st, &self.fleet.seat(&st), &|s, ip| health.is_up(s, ip))
    }

    /// Publish the routes this node announces now (with `verify`, read back what the
    /// kernel holds first).
    fn publish_routes(&mut self, verify: bool) {
        let path = &self.path;
        self.fleet.publish_routes(self.rec.state(), &|i| path.contains(i), path.loaded(), verify);
    }

    /// Withdraw the routes, detach from every interface and remove every pin. The
    /// recorded state stays.
    pub fn down(&mut self) -> Result<()> {
        // Withdrawn first: no traffic is drawn to a node that stops forwarding.
        self.fleet.withdraw();
        self.path.down()
    }

    /// The once-a-second housekeeping: the sweeper's timeouts, the routes (withdrawn
    /// once the lease is in doubt, a route removed by hand put back), limit episodes,
    /// and every `repair_interval` drift repair.
    pub fn tick(&mut self) -> Result<()> {
        self.path.sweeper().set_timeouts(self.rec.state().gateway.timeouts.into());
        if self.last_repair.elapsed() >= self.opts.repair_interval {
            self.last_repair = Instant::now();
            let (st, health) = (self.rec.state().clone(), &self.health);
            self.path.repair(&st, &self.fleet.seat(&st), &|s, ip| health.is_up(s, ip))?;
        }
        self.publish_routes(true);
        self.watch_limits()
    }

    /// Record the limit episodes that began or ended since the last look.
    fn watch_limits(&mut self) -> Result<()> {
        let Some(r) = self.path.reader() else { return Ok(()) };
        let st = self.rec.state().clone();
        let events = self.limits.watch(&st, &r.endpoint_counters(st.endpoint_slots_used())?);
        if !events.is_empty() {
            self.rec.record(events)?;
        }
        Ok(())
    }
}

fn picture(opts: &Arc<Options>, rec: &Recorder, path: &DataPath, fleet: &Fleet, health: &Checker) -> Picture {
    let (routes, route_error) = fleet.routes();
    Picture {
        state: rec.state().clone(),
        health: Arc::new(health.clone()),
        opts: opts.clone(),
        store: rec.store().clone(),
        sweeper: path.sweeper().clone(),
        replication: path.replication().clone(),
        counters: path.reader(),
        path: path.facts(rec.state()),
        routes,
        route_error,
        holders: Default::default(),
        by_owner: Default::default(),
    }
}

/// The writer behind its lock: each change made through `run` ends with a new picture.
pub struct Writer(tokio::sync::Mutex<Gateway>);

impl Writer {
    pub fn new(gw: Gateway) -> Writer {
        Writer(tokio::sync::Mutex::new(gw))
    }
    /// Make a change, then show readers its result. The change runs in place of the
    /// runtime worker it is on (`block_in_place`): its other tasks (readers) move to the
    /// other workers meanwhile.
    pub async fn run<T>(&self, f: impl FnOnce(&mut Gateway) -> T) -> T {
        let mut gw = self.0.lock().await;
        tokio::task::block_in_place(|| {
            let r = f(&mut gw);
            gw.show();
            r
        })
    }
    /// Use the writer for what readers cannot see (the health checker's schedule).
    pub async fn quietly<T>(&self, f: impl FnOnce(&mut Gateway) -> T) -> T {
        let mut gw = self.0.lock().await;
        tokio::task::block_in_place(|| f(&mut gw))
    }
}
