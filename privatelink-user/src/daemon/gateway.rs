//! The gateway the daemon runs: the recorded state, its store, the loaded data path
//! and its links, and the counters the views show. Opening it finishes whatever a
//! previous process left half done; every change goes through `commit` (store first)
//! and `sync` (maps after).

use super::{health, Options};
use crate::{
    dataplane::{
        announce::Announcer,
        bpffs, kernel,
        links::{self, Links},
        loader::{Dataplane, LoadOptions},
        reconcile::{self, Report},
        tables,
    },
    model::{
        fleet::Seat,
        plan,
        spec::{self, XdpSetting},
        state::{endpoint_events, Event, State},
        yaml::Doc,
    },
    store::{EtcdStore, RedbStore, Store, StoreError},
};
use anyhow::{Context, Result};
use privatelink_common::DropReason;
use std::{collections::BTreeMap, sync::Arc};

/// How many times a change is computed anew when other nodes' commits keep winning.
pub(super) const MAX_TRIES: u32 = 8;

/// Whether `e` is a commit that lost to another writer's.
pub(super) fn is_conflict(e: &anyhow::Error) -> bool {
    e.chain().any(|c| matches!(c.downcast_ref::<StoreError>(), Some(StoreError::Conflict { .. })))
}

pub struct Gateway {
    pub(super) opts: Options,
    pub(super) store: Box<dyn Store>,
    pub(super) state: State,
    pub(super) dp: Option<Dataplane>,
    pub(super) links: Links,
    pub(super) reconciles: u64,
    pub(super) last_reconcile: Option<Report>,
    pub(super) last_reconcile_seconds: f64,
    /// The sweeper thread's handles and counters.
    pub(super) sweep: Arc<super::sweeper::SweepShared>,
    /// Drift repairs so far: links re-attached, map operations rewritten.
    pub(super) repaired_links: u64,
    pub(super) repaired_map_ops: u64,
    pub(super) last_repair: std::time::Instant,
    pub(super) checker: health::Checker,
    /// (endpoint index, drop reason) -> refusals counted so far, and the count when
    /// the current episode began (None: no episode).
    pub(super) episodes: BTreeMap<(u32, u32), (u64, Option<u64>)>,
    /// The last spec text read and what it parsed to: re-applying the same file skips
    /// the YAML parse (a pure function of the text); planning still runs in full.
    pub(super) parsed: Option<(String, Arc<(spec::Spec, Doc)>)>,
    /// The routes this node publishes for its routing daemon (None: no announce
    /// table in the spec), and why publishing them last failed.
    pub(super) routes: Option<Announcer>,
    pub(super) route_error: Option<String>,
    /// Why the pins would not outlive the daemon, found at start (see `status`).
    pub(super) bpffs_warning: Option<String>,
    /// Backends whose next hop the kernel keeps resolved.
    pub(super) neighbours: kernel::Neighbours,
}

impl Gateway {
    pub fn open(opts: Options) -> Result<Gateway> {
        bpffs::ensure_bpffs(&opts.bpffs)?;
        let bpffs_warning = bpffs::pins_die_with_us(&opts.bpffs);
        if let Some(w) = &bpffs_warning {
            tracing::warn!("{w}");
        }
        let store: Box<dyn Store> = match &opts.store {
            Some(url) => Box::new(EtcdStore::connect(url, &opts.node)?),
            None => Box::new(RedbStore::open(&opts.state_dir)?),
        };
        let state = store.load()?;
        let links = Links::new(&opts.bpffs);
        let mut gw = Gateway {
            opts,
            store,
            state,
            dp: None,
            links,
            reconciles: 0,
            last_reconcile: None,
            last_reconcile_seconds: 0.0,
            sweep: Default::default(),
            repaired_links: 0,
            repaired_map_ops: 0,
            last_repair: std::time::Instant::now(),
            checker: health::Checker::default(),
            episodes: BTreeMap::new(),
            parsed: None,
            routes: None,
            route_error: None,
            bpffs_warning,
            neighbours: Default::default(),
        };
        gw.checker.sync(&gw.state);
        gw.join().context("joining the fleet")?;
        if !gw.state.vpcs.is_empty() {
            gw.load_data_path()?;
            gw.sync().context("reconciling the recorded state into the maps")?;
            gw.ensure_links()?;
            if plan::unfinished(&gw.state) {
                tracing::warn!("finishing an apply that was interrupted");
                gw.finish_apply()?;
            }
            let cuts = gw.state.cuts_of(&gw.opts.node);
            if !cuts.is_empty() {
                tracing::warn!(endpoints = ?cuts.endpoints, backends = ?cuts.backends, "finishing flow cuts that were interrupted");
                gw.finish_cuts()?;
            }
        }
        Ok(gw)
    }

    pub fn store_description(&self) -> String {
        self.store.describe()
    }

    pub(super) fn load_data_path(&mut self) -> Result<()> {
        if self.dp.is_none() {
            let opts = LoadOptions {
                ct_capacity: self.state.gateway.conntrack_capacity as u32,
                pin_dir: Some(bpffs::maps_dir(&self.opts.bpffs)),
            };
            let dp = Dataplane::load(&opts).context("loading the data path")?;
            self.sweep.install(dp.sweeper()?);
            self.dp = Some(dp);
        }
        Ok(())
    }

    pub(super) fn dp(&mut self) -> Result<&mut Dataplane> {
        self.dp.as_mut().context("no spec has been applied yet: the data path is not loaded")
    }


    /// Reconcile the maps with the current state.
    pub(super) fn sync(&mut self) -> Result<Report> {
        let started = std::time::Instant::now();
        let checker = &self.checker;
        let seat = Seat::of(&self.state, &self.opts.node);
        let want = tables::desired(&self.state, &seat, &links::interface, &|s, ip| checker.is_up(s, ip));
        let r = reconcile::reconcile(&mut self.dp()?.maps, &want)?;
        self.neighbours.ensure(want.backend_hops());
        self.reconciles += 1;
        self.last_reconcile = Some(r);
        self.last_reconcile_seconds = started.elapsed().as_secs_f64();
        if r.ops > 0 {
            tracing::info!(ops = r.ops, writes = r.writes, seconds = self.last_reconcile_seconds, "reconciled the maps");
        }
        self.publish_routes(false);
        Ok(r)
    }

    /// Attach (or re-adopt) the XDP link of every VPC interface; drop the links of
    /// interfaces no longer in the state.
    pub(super) fn ensure_links(&mut self) -> Result<()> {
        let wanted: Vec<(String, XdpSetting)> = self.state.vpcs.values().map(|v| (v.spec.interface.clone(), v.spec.xdp_mode)).collect();
        let dp = self.dp.as_mut().context("no spec has been applied yet: the data path is not loaded")?;
        let r = self.links.ensure(dp, &wanted);
        self.publish_routes(false);
        Ok(r?)
    }

    /// Compute the next state from the recorded one and commit it; when another node
    /// committed first, reload and compute again (a few times, then report the
    /// conflict). `f` returns None when there is nothing to change. Whether it committed.
    pub(super) fn transact(&mut self, mut f: impl FnMut(&State) -> Result<Option<(State, Vec<Event>)>>) -> Result<bool> {
        for attempt in 1..=MAX_TRIES {
            let Some((next, events)) = f(&self.state)? else { return Ok(false) };
            match self.commit_with(next, events) {
                Err(e) if is_conflict(&e) && attempt < MAX_TRIES => self.reload()?,
                Err(e) => return Err(e),
                Ok(()) => return Ok(true),
            }
        }
        unreachable!("the last try returns")
    }

    /// Record a new state with the endpoint events it carries, in one transaction.
    pub(super) fn commit(&mut self, st: State) -> Result<()> {
        self.commit_with(st, Vec::new())
    }

    /// `commit`, with `more` events (health flips) in the same transaction.
    pub(super) fn commit_with(&mut self, mut st: State, more: Vec<Event>) -> Result<()> {
        let mut events = endpoint_events(&self.state, &st);
        events.extend(more);
        self.store.commit_with_events(&mut st, &mut events).context("recording the state")?;
        self.adopt(st);
        self.deliver(&events);
        Ok(())
    }

    /// Make `st` (just committed here, or by another node) the current state.
    pub(super) fn adopt(&mut self, st: State) {
        // A new endpoint's counters start at zero: so does its refusal baseline.
        for e in st.endpoints.values() {
            if self.state.endpoints.get(&e.spec.name).is_none_or(|o| o.id != e.id) {
                for reason in [DropReason::OverLimit, DropReason::SnatExhausted] {
                    self.episodes.insert((e.index, reason as u32), (0, None));
                }
            }
        }
        self.state = st;
        self.checker.sync(&self.state);
    }

    /// Detach from every interface and remove every pin. The recorded state stays.
    pub fn down(&mut self) -> Result<()> {
        // Withdrawn first: no traffic is drawn to a node that stops forwarding.
        self.routes = None;
        self.links.detach_all()?;
        self.dp = None;
        Ok(bpffs::remove_pins(&self.opts.bpffs)?)
    }

    /// The once-a-second housekeeping: expire idle flows, watch limit episodes, and
    /// every `repair_interval` repair drift.
    pub fn tick(&mut self) -> Result<()> {
        // The sweeper thread expires idle flows with the timeouts of the day.
        self.sweep.set_timeouts(self.state.gateway.timeouts.into());
        // Also withdraws the routes once the lease is in doubt, and puts back a route
        // removed by hand.
        self.publish_routes(true);
        if self.last_repair.elapsed() >= self.opts.repair_interval {
            self.last_repair = std::time::Instant::now();
            self.repair()?;
        }
        self.watch_limits()
    }

    /// Make links and maps what the recorded state says again: a link detached by hand
    /// is attached anew, map entries changed or removed by hand are rewritten.
    pub(super) fn repair(&mut self) -> Result<()> {
        if self.dp.is_none() {
            return Ok(());
        }
        for name in self.links.drop_detached() {
            tracing::warn!(interface = %name, "the XDP link was detached by hand: attaching it again");
            self.repaired_links += 1;
        }
        self.ensure_links()?;
        let r = self.sync()?;
        if r.ops > 0 {
            tracing::warn!(ops = r.ops, writes = r.writes, "the maps had drifted from the recorded state: repaired");
            self.repaired_map_ops += r.ops as u64;
        }
        Ok(())
    }
}
