//! Loads the embedded XDP object, sizes the conntrack table, hands out the maps and the
//! programs, and attaches the data path to interfaces. Knows nothing of specs.

use super::{
    error::{Error, Result},
    maps::Maps,
    replica::{self, FlowEvents, HandoffMaps, Standby, Takeover},
    sweep::{Scope, SweepReport, Sweeper},
    BPF_OBJECT,
};
use aya::{
    maps::{Array, HashMap, LpmTrie, Map, MapData, ProgramArray, RingBuf},
    programs::{links::FdLink, xdp::{XdpLink, XdpLinkId}, ProgramError, Xdp, XdpMode},
    Ebpf, EbpfLoader, VerifierLogLevel,
};
use privatelink_common::{
    ALL_MAPS, DEFAULT_CT_CAPACITY, MAP_CT, MAP_FLOW_EVENTS, MAP_REPLICATION, MAP_STANDBY, MAP_TAKEN, MAP_HANDOFF, MAP_PEERS, MAP_VPC_IFINDEX, PROGS_MAIN, MAP_LAYOUT, MAP_LAYOUT_VERSION, MAP_PROGS, PROGS_DNS, PROGS_NEWFLOW, PROGS_TCP, PROGS_TCP_REV, PROG_DNS, PROG_EXPIRE, PROG_NEWFLOW, PROG_TCP, PROG_TCP_REV, PROG_PASS, PROG_XDP,
};
use std::path::{Path, PathBuf};

#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Conntrack entries (two per flow). Default: `DEFAULT_CT_CAPACITY`.
    pub ct_capacity: u32,
    /// A directory on a bpffs: maps pinned there are reused (flows, counters and
    /// configuration survive a restart of the process); missing ones are created and
    /// pinned. `None`: private maps that die with the process.
    pub pin_dir: Option<PathBuf>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions { ct_capacity: DEFAULT_CT_CAPACITY, pin_dir: None }
    }
}

/// A loaded data path: its programs and its maps.
pub struct Dataplane {
    ebpf: Ebpf,
    pub maps: Maps,
}

impl Dataplane {
    pub fn load(opts: &LoadOptions) -> Result<Dataplane> {
        let mut loader = EbpfLoader::new();
        // For developers: the verifier's whole log when a program is refused.
        if std::env::var_os("PRIVATELINK_VERIFIER_LOG").is_some() {
            loader.verifier_log_level(VerifierLogLevel::VERBOSE | VerifierLogLevel::STATS);
        }
        loader.map_max_entries(MAP_CT, opts.ct_capacity);
        loader.map_max_entries(MAP_STANDBY, opts.ct_capacity);
        if let Some(dir) = &opts.pin_dir {
            std::fs::create_dir_all(dir).map_err(|source| Error::PinDir { dir: dir.clone(), source })?;
            check_layout(dir)?;
            for name in ALL_MAPS {
                loader.map_pin_path(name, dir.join(name));
            }
        }
        let mut ebpf = loader.load(BPF_OBJECT)?;
        for name in [PROG_XDP, PROG_DNS, PROG_NEWFLOW, PROG_TCP, PROG_TCP_REV, PROG_EXPIRE, PROG_PASS] {
            load_program(&mut ebpf, name)?;
        }
        // The data path tail-calls these: in place before anything attaches.
        let fd = |name| -> Result<_> {
            program(&ebpf, name)?.fd().map_err(|source| Error::Program { name, source })?.try_clone().map_err(|e| Error::Link(e.to_string()))
        };
        let (dns, newflow, tcp, tcp_rev, main) = (fd(PROG_DNS)?, fd(PROG_NEWFLOW)?, fd(PROG_TCP)?, fd(PROG_TCP_REV)?, fd(PROG_XDP)?);
        let progs = ebpf.map_mut(MAP_PROGS).ok_or(Error::Missing { kind: "map", name: MAP_PROGS })?;
        let mut progs: ProgramArray<&mut MapData> = ProgramArray::try_from(progs).map_err(|source| Error::Map { map: MAP_PROGS, source })?;
        progs.set(PROGS_DNS, &dns, 0).map_err(|source| Error::Map { map: MAP_PROGS, source })?;
        progs.set(PROGS_NEWFLOW, &newflow, 0).map_err(|source| Error::Map { map: MAP_PROGS, source })?;
        progs.set(PROGS_TCP, &tcp, 0).map_err(|source| Error::Map { map: MAP_PROGS, source })?;
        progs.set(PROGS_TCP_REV, &tcp_rev, 0).map_err(|source| Error::Map { map: MAP_PROGS, source })?;
        progs.set(PROGS_MAIN, &main, 0).map_err(|source| Error::Map { map: MAP_PROGS, source })?;
        let maps = Maps::take(&mut ebpf)?;
        let layout = ebpf.map_mut(MAP_LAYOUT).ok_or(Error::Missing { kind: "map", name: MAP_LAYOUT })?;
        let mut layout: Array<&mut MapData, u32> = Array::try_from(layout).map_err(|source| Error::Map { map: MAP_LAYOUT, source })?;
        layout.set(0, MAP_LAYOUT_VERSION, 0).map_err(|source| Error::Map { map: MAP_LAYOUT, source })?;
        Ok(Dataplane { ebpf, maps })
    }

    /// The data path program.
    pub fn xdp(&self) -> Result<&Xdp> {
        program(&self.ebpf, PROG_XDP)
    }

    /// A program of the object by name (`PROG_*`).
    pub fn program(&self, name: &'static str) -> Result<&Xdp> {
        program(&self.ebpf, name)
    }

    /// Attach program `name` to `ifindex` (benchmarks), returning its link.
    pub fn attach_program(&mut self, name: &'static str, ifindex: u32, mode: XdpMode) -> Result<FdLink> {
        let prog = program_mut(&mut self.ebpf, name)?;
        let id = prog.attach_to_if_index(ifindex, mode).map_err(|source| Error::Program { name, source })?;
        let link = prog.take_link(id).map_err(|source| Error::Program { name, source })?;
        FdLink::try_from(link).map_err(|e| Error::Link(e.to_string()))
    }

    /// The flow events, the standby table, the slices taken over and the hand-off
    /// (once: the maps move out of the object).
    pub fn replication(&mut self) -> Result<(FlowEvents, Standby, Takeover, HandoffMaps)> {
        let mut take = |name: &'static str| self.ebpf.take_map(name).ok_or(Error::Missing { kind: "map", name });
        let (ring, flags, standby, taken) = (take(MAP_FLOW_EVENTS)?, take(MAP_REPLICATION)?, take(MAP_STANDBY)?, take(MAP_TAKEN)?);
        let (cfg, peers, vpcs) = (take(MAP_HANDOFF)?, take(MAP_PEERS)?, take(MAP_VPC_IFINDEX)?);
        let handoff = HandoffMaps::new(
            Array::try_from(cfg).map_err(|source| Error::Map { map: MAP_HANDOFF, source })?,
            HashMap::try_from(peers).map_err(|source| Error::Map { map: MAP_PEERS, source })?,
            Array::try_from(vpcs).map_err(|source| Error::Map { map: MAP_VPC_IFINDEX, source })?,
        );
        let ring = RingBuf::try_from(ring).map_err(|source| Error::Map { map: MAP_FLOW_EVENTS, source })?;
        let flags = Array::try_from(flags).map_err(|source| Error::Map { map: MAP_REPLICATION, source })?;
        let standby = HashMap::try_from(standby).map_err(|source| Error::Map { map: MAP_STANDBY, source })?;
        let taken = LpmTrie::try_from(taken).map_err(|source| Error::Map { map: MAP_TAKEN, source })?;
        let takeover = Takeover::new(taken, replica::again(&flags)?);
        Ok((FlowEvents::new(ring, flags), Standby::new(standby), takeover, handoff))
    }

    /// A sweeper with its own handles (see `sweep`), for another thread.
    pub fn sweeper(&self) -> Result<Sweeper> {
        Sweeper::new(&self.maps, program(&self.ebpf, PROG_EXPIRE)?)
    }

    /// One sweeper pass over the conntrack table (see `sweep`).
    pub fn sweep(&self, scope: Scope<'_>) -> Result<SweepReport> {
        self.sweeper()?.sweep(scope)
    }

    /// Attach the data path to `ifindex` (native mode unless `mode` says otherwise).
    pub fn attach(&mut self, ifindex: u32, mode: XdpMode) -> Result<XdpLinkId> {
        program_mut(&mut self.ebpf, PROG_XDP)?
            .attach_to_if_index(ifindex, mode)
            .map_err(|source| Error::Program { name: PROG_XDP, source })
    }

    /// Attach the XDP_PASS program to `ifindex` (in the calling thread's network
    /// namespace): for the far end of a veth that the data path redirects into.
    pub fn attach_pass(&mut self, ifindex: u32, mode: XdpMode) -> Result<XdpLinkId> {
        program_mut(&mut self.ebpf, PROG_PASS)?
            .attach_to_if_index(ifindex, mode)
            .map_err(|source| Error::Program { name: PROG_PASS, source })
    }

    /// `attach_pass`, returning the bpf_link so it can be pinned (outlive the process).
    pub fn attach_pass_link(&mut self, ifindex: u32) -> Result<FdLink> {
        let prog = program_mut(&mut self.ebpf, PROG_PASS)?;
        let id = prog
            .attach_to_if_index(ifindex, XdpMode::Driver)
            .map_err(|source| Error::Program { name: PROG_PASS, source })?;
        let link = prog.take_link(id).map_err(|source| Error::Program { name: PROG_PASS, source })?;
        FdLink::try_from(link).map_err(|e| Error::Link(e.to_string()))
    }

    /// Detach the data path from the interface behind `link`.
    pub fn detach(&mut self, link: XdpLinkId) -> Result<()> {
        program_mut(&mut self.ebpf, PROG_XDP)?
            .detach(link)
            .map_err(|source| Error::Program { name: PROG_XDP, source })
    }

    /// Attach the data path to `ifindex` in native mode, falling back to generic (skb)
    /// mode where the driver has no native XDP, and return the bpf_link (to pin it).
    pub fn attach_link(&mut self, ifindex: u32) -> Result<(FdLink, XdpMode)> {
        let (id, mode) = match self.attach(ifindex, XdpMode::Driver) {
            Ok(id) => (id, XdpMode::Driver),
            Err(_) => (self.attach(ifindex, XdpMode::Skb)?, XdpMode::Skb),
        };
        Ok((self.take_link(id)?, mode))
    }

    /// Point an existing (pinned) XDP link at this object's data path program: the
    /// kernel swaps the program atomically, so the interface never runs without one.
    pub fn adopt_link(&mut self, link: FdLink) -> Result<FdLink> {
        let link = XdpLink::try_from(link).map_err(|e| Error::Link(e.to_string()))?;
        let id = program_mut(&mut self.ebpf, PROG_XDP)?
            .attach_to_link(link)
            .map_err(|source| Error::Program { name: PROG_XDP, source })?;
        self.take_link(id)
    }

    /// Take ownership of an attachment as a bpf_link fd (to pin it).
    pub fn take_link(&mut self, link: XdpLinkId) -> Result<FdLink> {
        let l = program_mut(&mut self.ebpf, PROG_XDP)?
            .take_link(link)
            .map_err(|source| Error::Program { name: PROG_XDP, source })?;
        FdLink::try_from(l).map_err(|e| Error::Link(e.to_string()))
    }
}

/// Load (verify) one program. The verifier gives up with EAGAIN when a signal arrives
/// for the loading thread while it works (seen on 6.18 with several loads in parallel,
/// ~0.7 s each, and children exiting: SIGCHLD): the thread blocks signals while the
/// kernel verifies (they wait, nothing is lost), and, like libbpf, tries again a few
/// times.
fn load_program(ebpf: &mut Ebpf, name: &'static str) -> Result<()> {
    let mut tries = 0;
    loop {
        let loaded = {
            let _quiet = SignalsHeld::now();
            program_mut(ebpf, name)?.load()
        };
        match loaded {
            Ok(()) => return Ok(()),
            Err(ProgramError::LoadError { io_error, .. }) if io_error.raw_os_error() == Some(libc::EAGAIN) && tries < 5 => {
                tries += 1;
                tracing::debug!(program = name, tries, "the verifier was interrupted (EAGAIN): loading again");
            }
            Err(source) => return Err(Error::Program { name, source }),
        }
    }
}

/// This thread's signals held back (blockable ones) until drop.
struct SignalsHeld(libc::sigset_t);

impl SignalsHeld {
    fn now() -> SignalsHeld {
        // SAFETY: zeroed sigset_t are valid outputs; sigfillset and pthread_sigmask
        // only touch this thread's mask and the sets passed.
        unsafe {
            let mut all: libc::sigset_t = std::mem::zeroed();
            let mut before: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_BLOCK, &all, &mut before);
            SignalsHeld(before)
        }
    }
}

impl Drop for SignalsHeld {
    fn drop(&mut self) {
        // SAFETY: restores the mask saved by `now` on this same thread.
        unsafe {
            libc::pthread_sigmask(libc::SIG_SETMASK, &self.0, std::ptr::null_mut());
        }
    }
}

fn program<'a>(ebpf: &'a Ebpf, name: &'static str) -> Result<&'a Xdp> {
    ebpf.program(name)
        .ok_or(Error::Missing { kind: "program", name })?
        .try_into()
        .map_err(|source| Error::Program { name, source })
}

fn program_mut<'a>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut Xdp> {
    ebpf.program_mut(name)
        .ok_or(Error::Missing { kind: "program", name })?
        .try_into()
        .map_err(|source| Error::Program { name, source })
}

/// Pinned maps are reused only when they were pinned with this layout: a map of
/// another layout is never read. No pins at all is a fresh start.
fn check_layout(dir: &Path) -> Result<()> {
    if !ALL_MAPS.iter().any(|m| dir.join(m).exists()) {
        return Ok(());
    }
    let pin = dir.join(MAP_LAYOUT);
    let found = if pin.exists() {
        let data = MapData::from_pin(&pin).map_err(|source| Error::Map { map: MAP_LAYOUT, source })?;
        let a: Array<MapData, u32> = Array::try_from(Map::Array(data)).map_err(|source| Error::Map { map: MAP_LAYOUT, source })?;
        a.get(&0, 0).map_err(|source| Error::Map { map: MAP_LAYOUT, source })?
    } else {
        1
    };
    if found != MAP_LAYOUT_VERSION {
        return Err(Error::Layout { dir: dir.to_path_buf(), found: found.to_string(), want: MAP_LAYOUT_VERSION });
    }
    Ok(())
}

/// Remove the pinned maps in `dir` (what `privatelink down` will do): the kernel frees
/// them once no program uses them. Pins already gone are fine.
pub fn remove_pins(dir: &Path) -> Result<()> {
    for name in ALL_MAPS {
        match std::fs::remove_file(dir.join(name)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(Error::PinDir { dir: dir.to_path_buf(), source }),
        }
    }
    Ok(())
}

/// Interface index of `name`.
pub fn ifindex(name: &str) -> Result<u32> {
    let c = std::ffi::CString::new(name).map_err(|_| Error::NoInterface(name.to_string()))?;
    // SAFETY: NUL-terminated string that lives across the call.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        return Err(Error::NoInterface(name.to_string()));
    }
    Ok(idx)
}
