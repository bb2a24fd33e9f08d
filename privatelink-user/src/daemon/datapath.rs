//! The data path as the daemon holds it: the loaded object and its maps, the XDP links,
//! the backends' next hops, the wanted tables last written (a change then writes only
//! its difference), and its counts of reconciles and repairs. It takes a state in and
//! changes nothing but maps, links and neighbours; it publishes no route.

use super::{replication::Replication, sweeper::SweepShared};
use crate::{
    dataplane::{
        bpffs, kernel,
        links::{self, Links},
        loader::{self, Dataplane, LoadOptions},
        maps::Reader,
        reconcile::{self, Report},
        replica::{self, HandoffMaps, Takeover},
        sweep::Scope,
        tables::{self, Tables, Up},
    },
    model::{
        fleet::Seat,
        spec::XdpSetting,
        state::{EndpointState, State},
    },
};
use anyhow::{Context, Result};
use aya::programs::XdpMode;
use std::{collections::BTreeSet, path::PathBuf, sync::Arc};

const NOT_LOADED: &str = "no spec has been applied yet: the data path is not loaded";

/// Reconciles and drift repairs so far.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counts {
    pub reconciles: u64,
    pub last_reconcile: Option<Report>,
    pub last_reconcile_seconds: f64,
    /// Links re-attached, map operations rewritten.
    pub repaired_links: u64,
    pub repaired_map_ops: u64,
}

/// One VPC interface's link, as `status` shows it.
#[derive(Clone, Debug)]
pub struct LinkFacts {
    pub vpc: String,
    pub interface: String,
    pub ifindex: u32,
    pub program_id: u32,
    pub pin_path: String,
    pub native: bool,
}

/// What readers may know of the data path (a value: copied into each picture).
#[derive(Clone, Debug, Default)]
pub struct PathFacts {
    pub program_id: Option<u32>,
    pub links: Vec<LinkFacts>,
    pub ct_capacity: Option<u32>,
    pub counts: Counts,
    /// Why the pins would not outlive the daemon, found at start.
    pub warning: Option<String>,
}

pub struct DataPath {
    bpffs: PathBuf,
    dp: Option<Dataplane>,
    /// Read-only handles for the readers (descriptors of their own).
    reader: Option<Arc<Reader>>,
    links: Links,
    neighbours: kernel::Neighbours,
    /// The tables last written whole and the generation of the state they came from
    /// (None: unknown, the next write reads the maps back first).
    written: Option<(Tables, u64)>,
    /// The sweeper thread's handles and counters.
    sweep: Arc<SweepShared>,
    /// Replication's handles (given the maps at load) and counters.
    repl: Arc<Replication>,
    /// The slices taken over from dead nodes, and whose they are.
    takeover: Option<Takeover>,
    taken_from: BTreeSet<String>,
    /// The hand-off's maps, the management interface (name, index, MAC, MTU) and the
    /// data path's link on it (not pinned: a hand-off needs the daemon).
    handoff: Option<HandoffMaps>,
    mgmt: Option<(String, crate::dataplane::links::Iface)>,
    mgmt_link: Option<aya::programs::links::FdLink>,
    counts: Counts,
    warning: Option<String>,
}

impl DataPath {
    /// The bpffs directory made ready; nothing loaded yet.
    pub fn open(bpffs: PathBuf) -> Result<DataPath> {
        bpffs::ensure_bpffs(&bpffs)?;
        let warning = bpffs::pins_die_with_us(&bpffs);
        if let Some(w) = &warning {
            tracing::warn!("{w}");
        }
        let links = Links::new(&bpffs);
        Ok(DataPath { bpffs, dp: None, reader: None, links, neighbours: Default::default(), written: None, sweep: Default::default(), repl: Default::default(), takeover: None, taken_from: BTreeSet::new(), handoff: None, mgmt: None, mgmt_link: None, counts: Counts::default(), warning })
    }

    pub fn loaded(&self) -> bool {
        self.dp.is_some()
    }

    /// Load the object (or adopt its pinned maps) unless it is loaded.
    pub fn load(&mut self, ct_capacity: i64) -> Result<()> {
        if self.dp.is_some() {
            return Ok(());
        }
        let opts = LoadOptions { ct_capacity: ct_capacity as u32, pin_dir: Some(bpffs::maps_dir(&self.bpffs)) };
        let mut dp = Dataplane::load(&opts).context("loading the data path")?;
        self.sweep.install(dp.sweeper()?);
        let (events, standby, takeover, handoff) = dp.replication()?;
        self.repl.install(events, standby, dp.maps.try_clone()?, ct_capacity as usize / 2);
        self.takeover = Some(takeover);
        self.handoff = Some(handoff);
        self.reader = Some(Arc::new(dp.maps.try_clone()?));
        self.dp = Some(dp);
        self.written = None;
        Ok(())
    }

    fn dp(&mut self) -> Result<&mut Dataplane> {
        self.dp.as_mut().context(NOT_LOADED)
    }

    pub fn sweeper(&self) -> &Arc<SweepShared> {
        &self.sweep
    }

    pub fn replication(&self) -> &Arc<Replication> {
        &self.repl
    }

    /// The hand-off on the management interface holding `listen`: frames are taken from
    /// `peers` (their management addresses), and, with a `target` (the buddy of a dead
    /// node whose buddy this node is not), a dead node's client segments go there.
    /// Returns whether segments are handed on now.
    pub fn hand_off(&mut self, st: &State, listen: std::net::Ipv4Addr, target: Option<std::net::SocketAddr>, peers: &BTreeSet<std::net::Ipv4Addr>) -> Result<bool> {
        if self.handoff.is_none() {
            return Ok(false);
        }
        if self.mgmt.is_none() {
            self.mgmt = Some(replica::interface_of(listen).context("the management interface (--replication-listen's)")?);
        }
        let (name, iface) = self.mgmt.clone().unwrap_or_default();
        let (ifindex, mac, mtu) = (iface.ifindex, iface.mac, iface.mtu as u32);
        if self.mgmt_link.is_none() {
            let link = self.dp()?.attach_program(privatelink_common::PROG_XDP, ifindex, XdpMode::default()).with_context(|| format!("attaching the data path to {name} (hand-offs from peers)"))?;
            self.mgmt_link = Some(link);
        }
        let Some(h) = &mut self.handoff else { return Ok(false) };
        for v in st.vpcs.values() {
            if let Ok(i) = loader::ifindex(&v.spec.interface) {
                h.set_vpc(v.vpc_id, i)?;
            }
        }
        h.set_peers(peers)?;
        let mut cfg = privatelink_common::Handoff { mgmt_ifindex: ifindex, saddr_be: crate::dataplane::maps::ip_raw(listen), smac: mac, mtu, ..Default::default() };
        if let Some(t) = target {
            let std::net::IpAddr::V4(ip) = t.ip() else { return Ok(false) };
            match replica::neighbour(ip, &name) {
                Some(dmac) => {
                    cfg.active = 1;
                    cfg.daddr_be = crate::dataplane::maps::ip_raw(ip);
                    cfg.dmac = dmac;
                }
                // Resolved by the kernel when something is sent there: a connection.
                None => {
                    let _ = std::net::TcpStream::connect_timeout(&t, std::time::Duration::from_millis(200));
                }
            }
        }
        h.set(cfg)?;
        Ok(cfg.active != 0)
    }

    /// Take over exactly the SNAT `slices` of the nodes `from`: (the nodes newly taken
    /// over, those given up). Nothing loaded: nothing to take.
    pub fn take_over(&mut self, slices: &BTreeSet<(std::net::Ipv4Addr, u8)>, from: BTreeSet<String>) -> Result<(Vec<String>, Vec<String>)> {
        let Some(t) = &mut self.takeover else { return Ok((vec![], vec![])) };
        t.set(slices).context("writing the slices taken over")?;
        let newly = from.difference(&self.taken_from).cloned().collect();
        let gone = self.taken_from.difference(&from).cloned().collect();
        self.taken_from = from;
        self.repl.taken.store(slices.len() as u64, std::sync::atomic::Ordering::Relaxed);
        if let Ok(n) = t.adopted() {
            self.repl.adopted.store(n, std::sync::atomic::Ordering::Relaxed);
        }
        if let Ok(n) = t.held_packets() {
            self.repl.held_packets.store(n, std::sync::atomic::Ordering::Relaxed);
        }
        Ok((newly, gone))
    }

    pub fn reader(&self) -> Option<Arc<Reader>> {
        self.reader.clone()
    }

    /// Read the maps back and write what differs from what `st` calls for.
    pub fn reconcile(&mut self, st: &State, seat: &Seat, up: Up) -> Result<Report> {
        self.written = None;
        self.step(st, seat, up)
    }

    /// Write what `st` calls for beyond the tables last written (read back first when
    /// those are unknown: at load, or after a failed write).
    pub fn step(&mut self, st: &State, seat: &Seat, up: Up) -> Result<Report> {
        let started = std::time::Instant::now();
        let want = tables::desired(st, seat, &links::interface, up);
        let known = self.written.take();
        let maps = &mut self.dp()?.maps;
        let r = match &known {
            Some((have, _)) => reconcile::step(maps, &want, have)?,
            None => reconcile::reconcile(maps, &want)?,
        };
        self.neighbours.ensure(want.backend_hops());
        self.written = Some((want, st.generation));
        let c = &mut self.counts;
        c.reconciles += 1;
        c.last_reconcile = Some(r);
        c.last_reconcile_seconds = started.elapsed().as_secs_f64();
        if r.ops > 0 {
            tracing::info!(ops = r.ops, writes = r.writes, seconds = c.last_reconcile_seconds, "wrote the maps");
        }
        Ok(r)
    }

    /// Whether the maps were last written from another state than `st` (or are not
    /// known to hold what was last written).
    pub fn behind(&self, st: &State) -> bool {
        self.written.as_ref().map(|(_, g)| *g) != Some(st.generation)
    }

    /// Attach (or re-adopt) the XDP link of every VPC interface of `st`; drop the links
    /// of interfaces no longer in it.
    pub fn ensure_links(&mut self, st: &State) -> Result<()> {
        let wanted: Vec<(String, XdpSetting)> = st.vpcs.values().map(|v| (v.spec.interface.clone(), v.spec.xdp_mode)).collect();
        let dp = self.dp.as_mut().context(NOT_LOADED)?;
        Ok(self.links.ensure(dp, &wanted)?)
    }

    /// Make links and maps what `st` says again: a link detached by hand is attached
    /// anew, map entries changed or removed by hand are rewritten.
    pub fn repair(&mut self, st: &State, seat: &Seat, up: Up) -> Result<()> {
        if self.dp.is_none() {
            return Ok(());
        }
        for name in self.links.drop_detached() {
            tracing::warn!(interface = %name, "the XDP link was detached by hand: attaching it again");
            self.counts.repaired_links += 1;
        }
        self.ensure_links(st)?;
        let r = self.reconcile(st, seat, up)?;
        if r.ops > 0 {
            tracing::warn!(ops = r.ops, writes = r.writes, "the maps had drifted from the recorded state: repaired");
            self.counts.repaired_map_ops += r.ops as u64;
        }
        Ok(())
    }

    /// Remove the flows `scope` names now (one pass over the table). How many.
    pub fn cut(&mut self, scope: Scope) -> Result<u64> {
        let Some(dp) = &self.dp else { return Ok(0) };
        let r = dp.sweep(scope)?;
        self.sweep.count_expired(r.expired);
        Ok(r.expired)
    }

    /// Remove this node's flows of the endpoints `st` is deleting.
    pub fn cut_deleting(&mut self, st: &State) -> Result<u64> {
        let going: BTreeSet<u32> = st.endpoints.values().filter(|e| e.state == EndpointState::Deleting).map(|e| e.index).collect();
        if going.is_empty() {
            return Ok(0);
        }
        self.cut(Scope::Endpoints(&going))
    }

    /// Detach from every interface and remove every pin.
    pub fn down(&mut self) -> Result<()> {
        self.links.detach_all()?;
        self.reader = None;
        self.dp = None;
        self.written = None;
        Ok(bpffs::remove_pins(&self.bpffs)?)
    }

    /// The interfaces with a link held now.
    pub fn attached(&self) -> Vec<String> {
        self.links.attached()
    }

    pub fn contains(&self, interface: &str) -> bool {
        self.links.contains(interface)
    }

    /// Flows this node holds now (the data path's count of every endpoint's).
    pub fn live_flows(&self, st: &State) -> u64 {
        self.reader.as_ref().map_or(0, |r| r.active_flows_of(st.endpoints.values().map(|e| e.index)))
    }

    /// What readers may know now.
    pub fn facts(&self, st: &State) -> PathFacts {
        let mut f = PathFacts { counts: self.counts, warning: self.warning.clone(), ..Default::default() };
        let Some(dp) = &self.dp else { return f };
        f.program_id = dp.xdp().ok().and_then(|p| p.info().ok()).map(|i| i.id());
        f.ct_capacity = Some(dp.maps.ct_capacity());
        for v in st.vpcs.values() {
            let Some(link) = self.links.get(&v.spec.interface) else { continue };
            f.links.push(LinkFacts {
                vpc: v.spec.name.clone(),
                interface: v.spec.interface.clone(),
                ifindex: loader::ifindex(&v.spec.interface).unwrap_or(0),
                program_id: link.info().map(|i| i.program_id()).unwrap_or(0),
                pin_path: self.links.pin_path(&v.spec.interface).display().to_string(),
                native: self.links.mode(&v.spec.interface) == Some(XdpMode::Driver),
            });
        }
        f
    }
}
