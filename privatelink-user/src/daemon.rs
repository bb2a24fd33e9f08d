//! `privatelink daemon`: owns the state store and the data path. Mounts bpffs if
//! needed, pins maps and XDP links there (so flows outlive a restart or an upgrade),
//! runs the conntrack sweeper, and serves the local API to root on a Unix socket.
//! Every mutation goes: validate -> plan -> commit phase 1 -> reconcile -> commit
//! phase 2 -> reconcile, so a crash anywhere is finished by the next start.

use crate::{
    api::*,
    health, metrics,
    state::Event,
    loader::{self, Dataplane, LoadOptions},
    plan::{self, Env, Planned},
    reconcile::{self, Report},
    spec,
    state::{EndpointState, State},
    store::Store,
    sweep::Scope,
    tables,
};
use anyhow::{bail, Context, Result};
use aya::programs::links::{FdLink, PinnedLink};
use privatelink_common::*;
use std::{
    collections::BTreeMap,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::{UnixListener, UnixStream},
    sync::{Mutex, Notify},
};

/// Defaults of the daemon's paths (a systemd unit would use the same).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/privatelink";
pub const DEFAULT_BPFFS: &str = "/sys/fs/bpf/privatelink";
pub const DEFAULT_SOCKET: &str = "/run/privatelink.sock";
/// How often the sweeper looks for idle flows.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Clone, Debug)]
pub struct Options {
    pub state_dir: PathBuf,
    pub bpffs: PathBuf,
    pub socket: PathBuf,
    /// Serve Prometheus metrics on `/metrics` here.
    pub metrics: Option<std::net::SocketAddr>,
}

const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

fn on_bpffs(p: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()) else { return false };
    // SAFETY: statfs into a zeroed struct with a NUL-terminated path.
    unsafe {
        let mut s: libc::statfs = std::mem::zeroed();
        libc::statfs(c.as_ptr(), &mut s) == 0 && s.f_type as i64 == BPF_FS_MAGIC
    }
}

fn mount_bpffs(at: &Path) -> Result<()> {
    std::fs::create_dir_all(at).with_context(|| format!("creating {}", at.display()))?;
    let target = std::ffi::CString::new(at.as_os_str().as_encoded_bytes())?;
    let (src, fstype) = (c"bpf", c"bpf");
    // SAFETY: valid NUL-terminated strings; no mount data.
    let rc = unsafe { libc::mount(src.as_ptr(), target.as_ptr(), fstype.as_ptr(), 0, std::ptr::null()) };
    if rc != 0 {
        bail!("mounting bpffs at {}: {}", at.display(), std::io::Error::last_os_error());
    }
    Ok(())
}

/// Make `dir` a directory on a bpffs: mount one at /sys/fs/bpf (for paths below it)
/// or at `dir` itself when there is none.
pub fn ensure_bpffs(dir: &Path) -> Result<()> {
    if dir.exists() && on_bpffs(dir) {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| p.exists()) {
        if on_bpffs(parent) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            return Ok(());
        }
        if parent == Path::new("/sys/fs/bpf") {
            mount_bpffs(parent)?;
            std::fs::create_dir_all(dir)?;
            return Ok(());
        }
    }
    mount_bpffs(dir)
}

/// ifindex and MAC of an interface in this network namespace (ioctl, so it works
/// whatever /sys shows).
pub fn interface(name: &str) -> Option<(u32, [u8; 6])> {
    let ifindex = loader::ifindex(name).ok()?;
    if name.len() >= libc::IFNAMSIZ {
        return None;
    }
    // SAFETY: a plain datagram socket used for one ioctl on a zeroed ifreq whose name
    // is NUL-terminated (checked length above); closed before returning.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return None;
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        for (d, s) in req.ifr_name.iter_mut().zip(name.bytes()) {
            *d = s as libc::c_char;
        }
        let rc = libc::ioctl(fd, libc::SIOCGIFHWADDR, &mut req);
        libc::close(fd);
        if rc != 0 {
            return None;
        }
        let mut mac = [0u8; 6];
        for (m, b) in mac.iter_mut().zip(req.ifr_ifru.ifru_hwaddr.sa_data.iter()) {
            *m = *b as u8;
        }
        Some((ifindex, mac))
    }
}

pub struct Gateway {
    opts: Options,
    store: Store,
    state: State,
    dp: Option<Dataplane>,
    /// interface name -> its pinned XDP link
    links: BTreeMap<String, FdLink>,
    reconciles: u64,
    last_reconcile: Option<Report>,
    last_reconcile_seconds: f64,
    sweeps: u64,
    expired: u64,
    checker: health::Checker,
    /// (endpoint index, drop reason) -> refusals counted so far, and the count when
    /// the current episode began (None: no episode).
    episodes: BTreeMap<(u32, u32), (u64, Option<u64>)>,
    /// The last spec text read and what it parsed to: re-applying the same file skips
    /// the YAML parse (a pure function of the text); planning still runs in full.
    parsed: Option<(String, Arc<(spec::Spec, crate::yaml::Doc)>)>,
}

fn spec_error_response(errors: Vec<spec::SpecError>) -> Response {
    let n = errors.len();
    Response::Err { error: format!("the spec has {n} error{}; nothing was applied", if n == 1 { "" } else { "s" }), spec_errors: errors }
}

impl Gateway {
    pub fn open(opts: Options) -> Result<Gateway> {
        ensure_bpffs(&opts.bpffs)?;
        let store = Store::open(&opts.state_dir)?;
        let state = store.load()?;
        let mut gw = Gateway {
            opts,
            store,
            state,
            dp: None,
            links: BTreeMap::new(),
            reconciles: 0,
            last_reconcile: None,
            last_reconcile_seconds: 0.0,
            sweeps: 0,
            expired: 0,
            checker: health::Checker::default(),
            episodes: BTreeMap::new(),
            parsed: None,
        };
        gw.checker.sync(&gw.state);
        if !gw.state.vpcs.is_empty() {
            gw.load_data_path()?;
            gw.sync().context("reconciling the recorded state into the maps")?;
            gw.ensure_links()?;
            if plan::unfinished(&gw.state) {
                tracing::warn!("finishing an apply that was interrupted");
                gw.finish_apply()?;
            }
        }
        Ok(gw)
    }

    fn maps_dir(&self) -> PathBuf {
        self.opts.bpffs.join("maps")
    }
    fn links_dir(&self) -> PathBuf {
        self.opts.bpffs.join("links")
    }

    fn load_data_path(&mut self) -> Result<()> {
        if self.dp.is_none() {
            let opts = LoadOptions {
                ct_capacity: self.state.gateway.conntrack_capacity as u32,
                pin_dir: Some(self.maps_dir()),
            };
            self.dp = Some(Dataplane::load(&opts).context("loading the data path")?);
        }
        Ok(())
    }

    fn dp(&mut self) -> Result<&mut Dataplane> {
        self.dp.as_mut().context("no spec has been applied yet: the data path is not loaded")
    }

    /// Reconcile the maps with the current state.
    fn sync(&mut self) -> Result<Report> {
        let started = std::time::Instant::now();
        let checker = &self.checker;
        let want = tables::desired(&self.state, &interface, &|s, ip| checker.is_up(s, ip));
        let r = reconcile::reconcile(&mut self.dp()?.maps, &want)?;
        self.reconciles += 1;
        self.last_reconcile = Some(r);
        self.last_reconcile_seconds = started.elapsed().as_secs_f64();
        if r.ops > 0 {
            tracing::info!(ops = r.ops, writes = r.writes, seconds = self.last_reconcile_seconds, "reconciled the maps");
        }
        Ok(r)
    }

    /// Record events (and send them to their service's webhook).
    fn record(&mut self, mut events: Vec<Event>) -> Result<()> {
        self.store.record(&mut events)?;
        self.announce(&events);
        Ok(())
    }

    fn announce(&self, events: &[Event]) {
        for e in events {
            tracing::info!(kind = %e.kind, subject = %e.subject, seq = e.seq, "{}", e.message);
            let url = e.service.as_ref().and_then(|s| self.state.services.get(s)).and_then(|s| s.spec.notify_url.clone());
            if let Some(url) = url {
                crate::notify::send(url, e.clone());
            }
        }
    }

    /// A health probe finished: on a flip, record it, rewrite the backend tables, and
    /// cut the backend's flows where the service says so.
    pub fn health_result(&mut self, target: &health::Target, result: std::result::Result<(), String>) -> Result<()> {
        let Some(flip) = self.checker.record(target, result) else { return Ok(()) };
        let mut events = Vec::new();
        let users = self.checker.users(target);
        for svc in &users {
            let subject = format!("{svc}/{}", target.ip);
            let (kind, msg) = if flip.up {
                ("backend.up", format!("backend {} of service {svc} is healthy again", target.ip))
            } else {
                ("backend.down", format!("backend {} of service {svc} failed its checks: {}", target.ip, flip.error.clone().unwrap_or_default()))
            };
            events.push(Event::new(kind, &subject, Some(svc), msg));
            if let Some(s) = self.state.services.get(svc) {
                let checker = &self.checker;
                if tables::failing_open(&s.spec, &|n, ip| checker.is_up(n, ip)) && !flip.up {
                    events.push(Event::new("service.fail_open", svc, Some(svc), format!("every backend of {svc} is down: failing open, new flows use them all")));
                }
            }
        }
        self.record(events)?;
        if self.dp.is_some() {
            self.sync()?;
            if !flip.up {
                for svc in &users {
                    let Some(s) = self.state.services.get(svc) else { continue };
                    let reset = s.spec.effective_check().is_some_and(|(hc, _)| hc.on_backend_down == spec::OnRevoke::Reset);
                    let vpc_id = self.state.vpcs.get(&s.spec.vpc).map(|v| v.vpc_id);
                    if let (true, Some(vpc_id)) = (reset, vpc_id) {
                        let scope = Scope::Backend { ip_be: crate::maps::ip_raw(target.ip), vpc_id };
                        let r = self.dp()?.sweep(scope)?;
                        self.expired += r.expired;
                    }
                }
            }
        }
        Ok(())
    }

    /// Targets due for a health probe.
    pub fn due_probes(&mut self) -> Vec<health::Target> {
        self.checker.due(std::time::Instant::now())
    }

    /// Connection-limit and SNAT-exhaustion episodes: an episode starts when refusals
    /// grow and ends at the first quiet second.
    fn watch_limits(&mut self) -> Result<()> {
        let Some(dp) = &self.dp else { return Ok(()) };
        let mut events = Vec::new();
        for e in self.state.endpoints.values() {
            let stats = dp.maps.endpoint_stats(e.index)?;
            for reason in [DropReason::OverLimit, DropReason::SnatExhausted] {
                let n = stats.drop_count(reason);
                let (last, start) = self.episodes.entry((e.index, reason as u32)).or_insert((n, None));
                let what = if reason == DropReason::OverLimit { "connection_limit" } else { "snat_exhausted" };
                match (*start, n > *last) {
                    (None, true) => {
                        events.push(Event::new(&format!("endpoint.{what}"), &e.spec.name, Some(&e.service), format!("{}: new connections refused ({what})", e.spec.name)));
                        *start = Some(*last);
                    }
                    (Some(from), false) => {
                        events.push(Event::new(&format!("endpoint.{what}_ended"), &e.spec.name, Some(&e.service), format!("{}: {} connections refused in the episode ({what})", e.spec.name, n - from)));
                        *start = None;
                    }
                    _ => {}
                }
                *last = n;
            }
        }
        if !events.is_empty() {
            self.record(events)?;
        }
        Ok(())
    }

    /// What `/metrics` shows.
    pub fn snapshot(&self) -> Result<metrics::Snapshot> {
        let mut snap = metrics::Snapshot {
            reconciles: self.reconciles,
            last_reconcile_seconds: self.last_reconcile_seconds,
            sweeps: self.sweeps,
            expired_flows: self.expired,
            ..Default::default()
        };
        for s in self.state.services.values() {
            let checker = &self.checker;
            snap.services.push((s.spec.name.clone(), tables::failing_open(&s.spec, &|n, ip| checker.is_up(n, ip))));
        }
        let Some(dp) = &self.dp else { return Ok(snap) };
        let flows = dp.maps.conntrack()?;
        let (used, cap) = (flows.len() as u64, dp.maps.ct_capacity() as u64);
        snap.conntrack_entries = used;
        snap.conntrack_capacity = cap;
        snap.gateway = dp.maps.global_stats()?.into();
        for e in self.state.endpoints.values() {
            let Some(svc) = self.state.services.get(&e.service) else { continue };
            let active = dp.maps.active_flows(e.index)?;
            let protos = svc.spec.ports.iter().map(|p| p.protocol).collect::<std::collections::BTreeSet<_>>().len() as u64;
            let up = svc.spec.backends.iter().filter(|b| self.checker.is_up(&svc.spec.name, b.address)).count().max(1) as u64;
            let ports = (SNAT_PORT_MAX as u64 - SNAT_PORT_MIN as u64 + 1) * protos * up;
            snap.endpoints.push(metrics::EndpointSample {
                labels: vec![
                    ("endpoint".into(), e.spec.name.clone()),
                    ("endpoint_id".into(), e.id.clone()),
                    ("service".into(), e.service.clone()),
                    ("account".into(), e.spec.owner.0.clone()),
                    ("vpc".into(), e.spec.vpc.clone()),
                ],
                counters: dp.maps.endpoint_stats(e.index)?.into(),
                active,
                snat_ports_in_use: active,
                snat_ports_free: ports.saturating_sub(active),
            });
        }
        for s in self.state.services.values() {
            let vpc_id = self.state.vpcs.get(&s.spec.vpc).map_or(0, |v| v.vpc_id);
            for b in &s.spec.backends {
                let raw = crate::maps::ip_raw(b.address);
                let n = flows.iter().filter(|(_, v)| v.kind == CT_KIND_FORWARD && v.nat_dst_ip_be == raw && v.egress_vpc == vpc_id).count();
                snap.backends.push(metrics::BackendSample {
                    labels: vec![("service".into(), s.spec.name.clone()), ("backend".into(), b.address.to_string())],
                    up: self.checker.is_up(&s.spec.name, b.address),
                    flows: n as u64,
                });
            }
        }
        Ok(snap)
    }

    /// Attach (or re-adopt) the XDP link of every VPC interface; drop the links of
    /// interfaces no longer in the state.
    fn ensure_links(&mut self) -> Result<()> {
        let dir = self.links_dir();
        std::fs::create_dir_all(&dir)?;
        let wanted: Vec<String> = self.state.vpcs.values().map(|v| v.spec.interface.clone()).collect();
        for name in self.links.keys().filter(|n| !wanted.contains(n)).cloned().collect::<Vec<_>>() {
            self.detach(&name)?;
        }
        for name in wanted {
            if self.links.contains_key(&name) {
                continue;
            }
            let pin = dir.join(&name);
            let Ok(ifindex) = loader::ifindex(&name) else {
                // Say so and carry on: the other VPCs keep working, and `status` shows
                // this one unattached until the interface is back and a spec is applied.
                tracing::error!(interface = %name, "the interface does not exist; its VPC is not attached");
                continue;
            };
            let adopted = match PinnedLink::from_pin(&pin) {
                Ok(p) => match self.dp()?.adopt_link(FdLink::from(p)) {
                    Ok(l) => Some(l),
                    Err(e) => {
                        tracing::warn!(interface = %name, error = %e, "the pinned link is stale; attaching anew");
                        std::fs::remove_file(&pin).ok();
                        None
                    }
                },
                Err(_) => None,
            };
            let link = match adopted {
                Some(l) => l,
                None => {
                    let (l, mode) = self.dp()?.attach_link(ifindex).with_context(|| format!("attaching XDP to {name}"))?;
                    if mode != aya::programs::XdpMode::Driver {
                        tracing::warn!(interface = %name, "no native XDP; attached in generic (skb) mode");
                    }
                    FdLink::from(l.pin(&pin).with_context(|| format!("pinning the XDP link of {name}"))?)
                }
            };
            self.links.insert(name, link);
        }
        Ok(())
    }

    fn detach(&mut self, name: &str) -> Result<()> {
        let pin = self.links_dir().join(name);
        match std::fs::remove_file(&pin) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", pin.display())),
        }
        // Closing the last reference to the link detaches the program.
        self.links.remove(name);
        Ok(())
    }

    /// Record a new state with the endpoint events it carries, in one transaction.
    fn commit(&mut self, mut st: State) -> Result<()> {
        let mut events = crate::state::endpoint_events(&self.state, &st);
        self.store.commit_with_events(&mut st, &mut events).context("recording the state")?;
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
        self.announce(&events);
        Ok(())
    }

    /// Remove every flow of these endpoints (one pass over the conntrack table).
    fn sweep_endpoints(&mut self, indices: std::collections::BTreeSet<u32>) -> Result<u64> {
        if indices.is_empty() {
            return Ok(0);
        }
        let r = self.dp()?.sweep(Scope::Endpoints(&indices))?;
        self.expired += r.expired;
        Ok(r.expired)
    }

    /// Phase 2 of an apply (also run at start when a crash interrupted one).
    fn finish_apply(&mut self) -> Result<Report> {
        // Flows of endpoints being deleted go now, while they are inactive.
        let going = self.state.endpoints.values().filter(|e| e.state == EndpointState::Deleting).map(|e| e.index).collect();
        self.sweep_endpoints(going)?;
        let next = plan::finish(self.state.clone());
        self.commit(next)?;
        let r = self.sync()?;
        self.ensure_links()?;
        Ok(r)
    }

    fn env_ct(&self) -> Option<u32> {
        self.dp.as_ref().map(|d| d.maps.ct_capacity())
    }

    /// Apply a spec (parsed and planned against the recorded state).
    fn apply_spec(&mut self, s: &spec::Spec, doc: Option<&crate::yaml::Doc>, dry_run: bool) -> Response {
        let ct = self.env_ct();
        let env = Env { ct_capacity: ct, interface_exists: &|i| loader::ifindex(i).is_ok() };
        let planned = match plan::plan(s, doc, &self.state, &env) {
            Ok(p) => p,
            Err(errors) => return spec_error_response(errors),
        };
        if dry_run {
            return ok(ApplyResult { dry_run, changes: planned.changes, reconcile: Report::default() });
        }
        match self.run_plan(planned) {
            Ok(r) => ok(r),
            Err(e) => Response::Err { error: format!("{e:#}"), spec_errors: vec![] },
        }
    }

    fn run_plan(&mut self, p: Planned) -> Result<ApplyResult> {
        let Planned { state, changes, reset } = p;
        let mut total = Report::default();
        if state == self.state && !plan::unfinished(&self.state) && self.dp.is_some() {
            // Nothing to record; the maps are still checked (and written only if they
            // drifted).
            let r = self.sync()?;
            return Ok(ApplyResult { dry_run: false, changes, reconcile: r });
        }
        self.commit(state)?;
        self.load_data_path()?;
        let r = self.sync()?;
        total.ops += r.ops;
        total.writes += r.writes;
        self.sweep_endpoints(reset.into_iter().collect())?;
        self.ensure_links()?;
        let r = self.finish_apply()?;
        total.ops += r.ops;
        total.writes += r.writes;
        Ok(ApplyResult { dry_run: false, changes, reconcile: total })
    }

    pub fn handle(&mut self, req: Request) -> Response {
        match self.try_handle(req) {
            Ok(r) => r,
            Err(e) => Response::Err { error: format!("{e:#}"), spec_errors: vec![] },
        }
    }

    fn try_handle(&mut self, req: Request) -> Result<Response> {
        Ok(match req {
            Request::Apply { spec: text, dry_run } => {
                let cached = self.parsed.as_ref().filter(|(t, _)| *t == text).map(|(_, p)| p.clone());
                let parsed = match cached {
                    Some(p) => p,
                    None => match spec::parse(&text) {
                        Ok(p) => {
                            let p = Arc::new(p);
                            self.parsed = Some((text, p.clone()));
                            p
                        }
                        Err(errors) => return Ok(spec_error_response(errors)),
                    },
                };
                self.apply_spec(&parsed.0, Some(&parsed.1), dry_run)
            }
            Request::Get { kind, name } => self.get(kind, name.as_deref())?,
            Request::Describe { kind, name } => match kind {
                One::Service => ok(self.service_view(&name)?),
                One::Endpoint => ok(self.endpoint_view(&name)?),
            },
            Request::Accept { endpoint } => {
                let next = plan::accept(&self.state, &endpoint)?;
                self.commit(next)?;
                self.sync()?;
                ok(self.endpoint_view(&endpoint)?)
            }
            Request::Reject { endpoint } => {
                let (next, cut) = plan::reject(&self.state, &endpoint)?;
                self.commit(next)?;
                self.sync()?;
                self.sweep_endpoints(cut.into_iter().collect())?;
                ok(self.endpoint_view(&endpoint)?)
            }
            Request::Delete { kind, name, force } => {
                let next = match kind {
                    One::Endpoint => plan::without_endpoint(&self.state, &name)?,
                    One::Service => plan::without_service(&self.state, &name, force)?,
                };
                self.apply_spec(&next, None, false)
            }
            Request::Stats => ok(self.stats()?),
            Request::Conntrack { endpoint } => {
                let only = match endpoint {
                    Some(e) => Some(self.state.find_endpoint(&e).with_context(|| format!("no endpoint named or with id `{e}`"))?.index),
                    None => None,
                };
                ok(self.flows(|v| only.is_none_or(|i| v.endpoint == i))?)
            }
            Request::Whois { ip, port } => ok(self.whois(ip, port)?),
            Request::Status => ok(self.status()?),
            Request::Events { after } => ok(self.store.events(after, 10_000)?),
            Request::Down => {
                self.down()?;
                ok("the data path is detached and every pinned map and link is removed; the daemon stops")
            }
        })
    }

    fn get(&mut self, kind: Kind, name: Option<&str>) -> Result<Response> {
        Ok(match kind {
            Kind::Services => {
                let names: Vec<String> = match name {
                    Some(n) => vec![n.to_string()],
                    None => self.state.services.keys().cloned().collect(),
                };
                ok(names.iter().map(|n| self.service_view(n)).collect::<Result<Vec<_>>>()?)
            }
            Kind::Endpoints => {
                let names: Vec<String> = match name {
                    Some(n) => vec![n.to_string()],
                    None => self.state.endpoints.keys().cloned().collect(),
                };
                ok(names.iter().map(|n| self.endpoint_view(n)).collect::<Result<Vec<_>>>()?)
            }
            Kind::Vpcs => {
                let rows: Vec<VpcView> = self
                    .state
                    .vpcs
                    .values()
                    .filter(|v| name.is_none_or(|n| n == v.spec.name))
                    .map(|v| VpcView {
                        name: v.spec.name.clone(),
                        interface: v.spec.interface.clone(),
                        cidr: v.spec.cidr.to_string(),
                        vpc_id: v.vpc_id,
                        attached: self.links.contains_key(&v.spec.interface),
                    })
                    .collect();
                if let (Some(n), true) = (name, rows.is_empty()) {
                    bail!("no VPC named `{n}`");
                }
                ok(rows)
            }
        })
    }

    fn service_view(&self, key: &str) -> Result<ServiceView> {
        let s = self.state.find_service(key).with_context(|| format!("no service named or with id `{key}`"))?;
        let sp = &s.spec;
        Ok(ServiceView {
            name: sp.name.clone(),
            id: s.id.clone(),
            full_name: self.state.full_service_name(s),
            state: s.state.to_string(),
            owner: sp.owner.0.clone(),
            vpc: sp.vpc.clone(),
            backends: sp.backends.iter().map(|b| format!("{} (weight {})", b.address, b.weight)).collect(),
            ports: sp.ports.iter().map(|p| format!("{}/{} -> {}", p.protocol, p.endpoint_port, p.service_port)).collect(),
            auto_accept: sp.auto_accept,
            allowed_accounts: sp.allowed_accounts.iter().map(|a| a.0.clone()).collect(),
            connection_limit: sp.connection_limit,
            on_revoke: format!("{:?}", sp.on_revoke).to_lowercase(),
            snat_range: self.state.snat_range_of(sp).to_string(),
            description: sp.description.clone(),
            endpoints: self.state.endpoints.values().filter(|e| e.service == sp.name).map(|e| e.spec.name.clone()).collect(),
            created_at: s.created_at,
            health: sp.backends.iter().map(|b| self.checker.backend(&sp.name, b.address)).collect(),
            failing_open: tables::failing_open(sp, &|n, ip| self.checker.is_up(n, ip)),
        })
    }

    fn endpoint_view(&self, key: &str) -> Result<EndpointView> {
        let e = self.state.find_endpoint(key).with_context(|| format!("no endpoint named or with id `{key}`"))?;
        let svc = self.state.services.get(&e.service);
        let active = match &self.dp {
            Some(dp) => dp.maps.active_flows(e.index)?,
            None => 0,
        };
        Ok(EndpointView {
            name: e.spec.name.clone(),
            id: e.id.clone(),
            state: e.state.to_string(),
            owner: e.spec.owner.0.clone(),
            vpc: e.spec.vpc.clone(),
            ip: e.ip,
            service: e.service.clone(),
            service_id: svc.map(|s| s.id.clone()).unwrap_or_default(),
            snat_ip: e.snat_ip,
            connection_limit: svc.map_or(0, |s| s.spec.connection_limit),
            active_connections: active,
            reason: e.reason.clone(),
            created_at: e.created_at,
        })
    }

    fn stats(&mut self) -> Result<StatsView> {
        let Some(dp) = &self.dp else {
            return Ok(StatsView { endpoints: vec![], gateway: Counters::default() });
        };
        let mut endpoints = Vec::new();
        for e in self.state.endpoints.values() {
            endpoints.push(EndpointStats {
                endpoint: e.spec.name.clone(),
                id: e.id.clone(),
                state: e.state.to_string(),
                active_connections: dp.maps.active_flows(e.index)?,
                connection_limit: self.state.services.get(&e.service).map_or(0, |s| s.spec.connection_limit),
                counters: dp.maps.endpoint_stats(e.index)?.into(),
            });
        }
        Ok(StatsView { endpoints, gateway: dp.maps.global_stats()?.into() })
    }

    fn flows(&self, keep: impl Fn(&CtValue) -> bool) -> Result<Vec<FlowView>> {
        let Some(dp) = &self.dp else { return Ok(vec![]) };
        let now = crate::monotonic_ns();
        let ip = crate::maps::ip_from_raw;
        let mut out = Vec::new();
        for (k, v) in dp.maps.conntrack()? {
            if v.kind != CT_KIND_FORWARD || !keep(&v) {
                continue;
            }
            let endpoint = self.state.endpoint_by_index(v.endpoint).map_or_else(|| format!("#{}", v.endpoint), |e| e.spec.name.clone());
            let state = match v.state {
                TCP_STATE_SYN => "syn",
                TCP_STATE_ESTABLISHED => "established",
                TCP_STATE_CLOSING => "closing",
                UDP_STATE => "udp",
                _ => "?",
            };
            out.push(FlowView {
                endpoint,
                protocol: if k.proto == PROTO_TCP { "tcp" } else { "udp" }.into(),
                client: format!("{}:{}", ip(k.src_ip_be), u16::from_be(k.src_port_be)),
                endpoint_address: format!("{}:{}", ip(k.dst_ip_be), u16::from_be(k.dst_port_be)),
                snat: format!("{}:{}", ip(v.nat_src_ip_be), u16::from_be(v.nat_src_port_be)),
                backend: format!("{}:{}", ip(v.nat_dst_ip_be), u16::from_be(v.nat_dst_port_be)),
                state: state.into(),
                idle_seconds: now.saturating_sub(v.last_seen_ns) as f64 / 1e9,
            });
        }
        out.sort_by(|a, b| (&a.endpoint, &a.client).cmp(&(&b.endpoint, &b.client)));
        Ok(out)
    }

    fn whois(&self, snat_ip: Ipv4Addr, port: Option<u16>) -> Result<WhoisView> {
        let e = self
            .state
            .endpoint_by_snat_ip(snat_ip)
            .with_context(|| format!("{snat_ip} is not the SNAT address of any endpoint"))?;
        let raw = crate::maps::ip_raw(snat_ip);
        let flows = self.flows(|v| v.nat_src_ip_be == raw && port.is_none_or(|p| v.nat_src_port_be == p.to_be()))?;
        if let (Some(p), true) = (port, flows.is_empty()) {
            bail!("no live flow uses {snat_ip}:{p} (it belongs to endpoint {} of account {})", e.spec.name, e.spec.owner);
        }
        Ok(WhoisView {
            snat_ip,
            endpoint: e.spec.name.clone(),
            endpoint_id: e.id.clone(),
            account: e.spec.owner.0.clone(),
            vpc: e.spec.vpc.clone(),
            endpoint_ip: e.ip,
            service: e.service.clone(),
            flows,
        })
    }

    fn status(&mut self) -> Result<StatusView> {
        let mut view = StatusView {
            data_path_loaded: self.dp.is_some(),
            program_id: None,
            interfaces: vec![],
            maps: vec![],
            bpffs: self.opts.bpffs.display().to_string(),
            state_dir: self.opts.state_dir.display().to_string(),
            generation: self.state.generation,
            reconciles: self.reconciles,
            last_reconcile: self.last_reconcile,
            sweeps: self.sweeps,
            expired_flows: self.expired,
        };
        let Some(dp) = &self.dp else { return Ok(view) };
        view.program_id = Some(dp.xdp()?.info()?.id());
        for v in self.state.vpcs.values() {
            let Some(link) = self.links.get(&v.spec.interface) else { continue };
            view.interfaces.push(InterfaceView {
                vpc: v.spec.name.clone(),
                interface: v.spec.interface.clone(),
                ifindex: loader::ifindex(&v.spec.interface).unwrap_or(0),
                program_id: link.info().map(|i| i.program_id()).unwrap_or(0),
                link_pinned: self.links_dir().join(&v.spec.interface).display().to_string(),
            });
        }
        let (ct, cap) = dp.maps.conntrack_fill()?;
        let fill = |t: &str, used: usize, cap: u32| Fill { table: t.into(), used: used as u64, capacity: cap as u64 };
        view.maps = vec![
            Fill { table: "conntrack entries".into(), used: ct, capacity: cap as u64 },
            fill("endpoints", self.state.endpoints.len(), MAX_ENDPOINTS),
            fill("services", self.state.services.len(), MAX_SERVICES),
            fill("backends", self.state.services.values().map(|s| s.backend_slots.len()).sum(), MAX_BACKENDS),
            fill("vpcs", self.state.vpcs.len(), MAX_VPCS - 1),
        ];
        Ok(view)
    }

    /// Detach from every interface and remove every pin. The recorded state stays.
    pub fn down(&mut self) -> Result<()> {
        for name in self.links.keys().cloned().collect::<Vec<_>>() {
            self.detach(&name)?;
        }
        self.dp = None;
        remove_pins(&self.opts.bpffs)
    }

    /// The once-a-second housekeeping: expire idle flows, watch limit episodes.
    pub fn tick(&mut self) -> Result<()> {
        let timeouts = self.state.gateway.timeouts.into();
        if let Some(dp) = &mut self.dp {
            let r = dp.sweep(Scope::Idle(timeouts))?;
            self.sweeps += 1;
            self.expired += r.expired;
        }
        self.watch_limits()
    }
}

/// Remove every pin under a daemon's bpffs directory (links first, then maps).
pub fn remove_pins(bpffs: &Path) -> Result<()> {
    let links = bpffs.join("links");
    if let Ok(rd) = std::fs::read_dir(&links) {
        for e in rd.flatten() {
            std::fs::remove_file(e.path()).with_context(|| format!("removing {}", e.path().display()))?;
        }
        std::fs::remove_dir(&links).ok();
    }
    let maps = bpffs.join("maps");
    if maps.exists() {
        loader::remove_pins(&maps)?;
        std::fs::remove_dir(&maps).ok();
    }
    Ok(())
}

fn ok<T: serde::Serialize>(v: T) -> Response {
    match serde_json::to_value(v) {
        Ok(ok) => Response::Ok { ok },
        Err(e) => Response::Err { error: format!("encoding the answer: {e}"), spec_errors: vec![] },
    }
}

fn is_root() -> bool {
    // SAFETY: trivial libc call.
    unsafe { libc::geteuid() == 0 }
}

/// Run the daemon in the foreground until SIGTERM/SIGINT or `down`.
pub async fn run(opts: Options) -> Result<()> {
    if !is_root() {
        bail!("the daemon must run as root (it loads XDP programs and pins BPF objects)");
    }
    let socket = opts.socket.clone();
    let gw = Gateway::open(opts.clone())?;
    if socket.exists() {
        if UnixStream::connect(&socket).await.is_ok() {
            bail!("another daemon is already listening on {}", socket.display());
        }
        std::fs::remove_file(&socket).with_context(|| format!("removing the stale socket {}", socket.display()))?;
    }
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let listener = UnixListener::bind(&socket).with_context(|| format!("listening on {}", socket.display()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))?;
    tracing::info!(socket = %socket.display(), state = %opts.state_dir.display(), bpffs = %opts.bpffs.display(), "privatelink daemon listening");
    let gw = Arc::new(Mutex::new(gw));
    let stop = Arc::new(Notify::new());

    let checks = tokio::spawn(health_loop(gw.clone()));
    let metrics_server = opts.metrics.map(|addr| {
        let g = gw.clone();
        let snap: metrics::Snap = Arc::new(move || {
            let g = g.clone();
            Box::pin(async move {
                g.lock().await.snapshot().unwrap_or_else(|e| {
                    tracing::error!(error = %format!("{e:#}"), "metrics snapshot");
                    metrics::Snapshot::default()
                })
            })
        });
        tokio::spawn(async move {
            if let Err(e) = metrics::serve(addr, snap).await {
                tracing::error!(error = %format!("{e:#}"), "the metrics server stopped");
            }
        })
    });

    let sweeper = {
        let gw = gw.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SWEEP_INTERVAL);
            loop {
                tick.tick().await;
                if let Err(e) = gw.lock().await.tick() {
                    tracing::error!(error = %format!("{e:#}"), "sweeper");
                }
            }
        })
    };

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = accepted?;
                let (gw, stop) = (gw.clone(), stop.clone());
                tokio::spawn(async move {
                    if let Err(e) = serve(stream, gw, stop).await {
                        tracing::warn!(error = %format!("{e:#}"), "API client");
                    }
                });
            }
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
            _ = stop.notified() => break,
        }
    }
    sweeper.abort();
    checks.abort();
    if let Some(m) = metrics_server {
        m.abort();
    }
    std::fs::remove_file(&socket).ok();
    // Pinned links and maps stay: the data path keeps running without the daemon.
    tracing::info!("privatelink daemon stopped (the data path stays attached)");
    Ok(())
}

async fn serve(stream: UnixStream, gw: Arc<Mutex<Gateway>>, stop: Arc<Notify>) -> Result<()> {
    let uid = stream.peer_cred()?.uid();
    let (r, mut w) = stream.into_split();
    let mut lines = BufReader::new(r).lines();
    while let Some(line) = lines.next_line().await? {
        let (resp, down) = if uid != 0 {
            (Response::Err { error: "only root may use the privatelink API".into(), spec_errors: vec![] }, false)
        } else {
            match serde_json::from_str::<Request>(&line) {
                Ok(req) => {
                    let down = req == Request::Down;
                    (gw.lock().await.handle(req), down)
                }
                Err(e) => (Response::Err { error: format!("bad request: {e}"), spec_errors: vec![] }, false),
            }
        };
        let mut out = serde_json::to_vec(&resp)?;
        out.push(b'\n');
        w.write_all(&out).await?;
        if down && matches!(resp, Response::Ok { .. }) {
            stop.notify_one();
        }
    }
    Ok(())
}

/// Most probes in flight at once, whatever the number of targets.
const MAX_PROBES: usize = 64;

/// Run due health probes (bounded) and feed their results back.
async fn health_loop(gw: Arc<Mutex<Gateway>>) {
    let sem = Arc::new(tokio::sync::Semaphore::new(MAX_PROBES));
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tick.tick().await;
        let due = gw.lock().await.due_probes();
        for t in due {
            let (gw, sem) = (gw.clone(), sem.clone());
            tokio::spawn(async move {
                let Ok(_permit) = sem.acquire().await else { return };
                let r = health::probe(&t).await;
                if let Err(e) = gw.lock().await.health_result(&t, r) {
                    tracing::error!(error = %format!("{e:#}"), "applying a health result");
                }
            });
        }
    }
}
