//! The conntrack sweeper: finds flows idle past their timeout and removes them through
//! the `privatelink_expire` program, which deletes both entries and releases the
//! endpoint's connection slot exactly once (the kernel's delete decides who wins, so a
//! concurrent sweep or reset cannot release a slot twice). Userspace cannot do that
//! decrement itself: it would race the data path's atomic adds.

use super::{
    error::{Error, Result},
    maps::Maps,
    monotonic_ns, sys,
};
use crate::model::spec;
use aya::programs::Xdp;
use privatelink_common::*;
use std::{
    os::fd::{AsFd, BorrowedFd, OwnedFd},
    time::Duration,
};

/// Idle timeouts by flow state (defaults: the spec's, `spec::DEFAULT_TCP_SYN`...).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    pub tcp_syn: Duration,
    pub tcp_established: Duration,
    pub tcp_closing: Duration,
    pub udp: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            tcp_syn: spec::DEFAULT_TCP_SYN,
            tcp_established: spec::DEFAULT_TCP_ESTABLISHED,
            tcp_closing: spec::DEFAULT_TCP_CLOSING,
            udp: spec::DEFAULT_UDP,
        }
    }
}

impl From<spec::Timeouts> for Timeouts {
    fn from(t: spec::Timeouts) -> Self {
        Timeouts { tcp_syn: t.tcp_syn.0, tcp_established: t.tcp_established.0, tcp_closing: t.tcp_closing.0, udp: t.udp.0 }
    }
}

impl Timeouts {
    pub fn for_state(&self, state: u8) -> Duration {
        match state {
            TCP_STATE_SYN => self.tcp_syn,
            TCP_STATE_ESTABLISHED => self.tcp_established,
            TCP_STATE_CLOSING => self.tcp_closing,
            _ => self.udp,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Flows removed (each released one connection slot).
    pub expired: u64,
    /// Reverse entries removed whose forward entry no longer existed.
    pub orphans: u64,
    /// Flows still alive after the sweep.
    pub alive: u64,
    /// Entries the pass read (two per flow).
    pub entries: u64,
}

/// What to remove.
#[derive(Clone, Copy, Debug)]
pub enum Scope<'a> {
    /// Flows idle past their timeout.
    Idle(Timeouts),
    /// Every flow of these endpoints, whatever its age (reset on revoke, endpoints
    /// deleted): one pass over the table however many endpoints.
    Endpoints(&'a std::collections::BTreeSet<u32>),
    /// Every flow to this backend address in this (provider) VPC: a backend that went
    /// down under `on_backend_down: reset`.
    Backend { ip_be: u32, vpc_id: u16 },
}

/// The sweeper's own handles on the conntrack map and the expiry program: it runs on
/// its own thread, beside whoever holds the `Dataplane`, and reads the table a few
/// thousand entries per syscall.
pub struct Sweeper {
    ct: OwnedFd,
    expire: OwnedFd,
}

/// Entries read per `BPF_MAP_LOOKUP_BATCH` (a hash bucket never holds more).
const BATCH: usize = 4096;

/// Every entry of conntrack map `ct`, a batch per syscall.
pub fn read_all(ct: BorrowedFd<'_>) -> Result<Vec<(CtKey, CtValue)>> {
    let mut out = Vec::new();
    sys::for_each_batch::<CtKey, CtValue>(ct, BATCH, |k, v| out.extend(k.iter().copied().zip(v.iter().copied())))
        .map_err(|source| Error::Sys { what: MAP_CT, source })?;
    Ok(out)
}

impl Sweeper {
    pub fn new(maps: &Maps, expire: &Xdp) -> Result<Sweeper> {
        let dup = |fd: BorrowedFd<'_>, name: &'static str| fd.try_clone_to_owned().map_err(|source| Error::Sys { what: name, source });
        let prog = expire.fd().map_err(|source| Error::Program { name: PROG_EXPIRE, source })?;
        Ok(Sweeper { ct: dup(maps.ct_fd(), MAP_CT)?, expire: dup(prog.as_fd(), PROG_EXPIRE)? })
    }

    /// Remove one flow by its forward key. `cutoff_ns`: only if idle since then
    /// (`u64::MAX`: unconditionally). Returns whether this call removed it.
    pub fn expire_flow(&self, key: CtKey, cutoff_ns: u64) -> Result<bool> {
        let req = ExpireRequest { key, cutoff_ns };
        let mut data = vec![0u8; EXPIRE_PAD + std::mem::size_of::<ExpireRequest>()];
        // SAFETY: ExpireRequest is repr(C) plain data.
        let bytes = unsafe {
            std::slice::from_raw_parts((&req as *const ExpireRequest).cast::<u8>(), std::mem::size_of::<ExpireRequest>())
        };
        data[EXPIRE_PAD..].copy_from_slice(bytes);
        let rc = sys::test_run(self.expire.as_fd(), &data).map_err(|source| Error::Sys { what: PROG_EXPIRE, source })?;
        match rc {
            EXPIRE_DELETED | EXPIRE_DELETED_NO_PEER => Ok(true),
            EXPIRE_KEPT => Ok(false),
            value => Err(Error::UnexpectedReturn { name: PROG_EXPIRE, value }),
        }
    }

    /// Every entry of the table.
    pub fn read(&self) -> Result<Vec<(CtKey, CtValue)>> {
        read_all(self.ct.as_fd())
    }

    /// One pass over the conntrack table.
    pub fn sweep(&self, scope: Scope) -> Result<SweepReport> {
        self.sweep_with(scope, &mut |_, _| {})
    }

    /// One pass, showing `seen` every entry it read (before any is removed).
    pub fn sweep_with(&self, scope: Scope, seen: &mut dyn FnMut(&CtKey, &CtValue)) -> Result<SweepReport> {
        let now = monotonic_ns();
        let entries = self.read()?;
        for (k, v) in &entries {
            seen(k, v);
        }
        let mut report = SweepReport { entries: entries.len() as u64, ..Default::default() };
        let index: std::collections::HashMap<CtKey, CtValue> = entries.iter().copied().collect();
        let ct = self.ct.as_fd();
        let sys_err = |source| Error::Sys { what: MAP_CT, source };
        for (key, value) in &entries {
            match value.kind {
                CT_KIND_FORWARD => {
                    let cutoff = match scope {
                        Scope::Endpoints(eps) if eps.contains(&value.endpoint) => u64::MAX,
                        Scope::Backend { ip_be, vpc_id } if value.nat_dst_ip_be == ip_be && value.egress_vpc == vpc_id => u64::MAX,
                        Scope::Endpoints(_) | Scope::Backend { .. } => {
                            report.alive += 1;
                            continue;
                        }
                        Scope::Idle(t) => {
                            let peer_seen = index.get(&value.peer_key(key.proto)).map_or(0, |v| v.last_seen_ns);
                            let seen = value.last_seen_ns.max(peer_seen);
                            let timeout = t.for_state(value.state).as_nanos() as u64;
                            if now.saturating_sub(seen) < timeout {
                                report.alive += 1;
                                continue;
                            }
                            now.saturating_sub(timeout)
                        }
                    };
                    if self.expire_flow(*key, cutoff)? {
                        report.expired += 1;
                    } else {
                        report.alive += 1;
                    }
                }
                CT_KIND_REVERSE => {
                    // A reverse entry exists alone for an instant while a flow is created
                    // or expired; one alone and idle for a second is an orphan. The map is
                    // asked again (not only the snapshot) so a flow created meanwhile is
                    // kept.
                    let old = now.saturating_sub(value.last_seen_ns) > Duration::from_secs(1).as_nanos() as u64;
                    let peer = value.peer_key(key.proto);
                    if old
                        && !index.contains_key(&peer)
                        && sys::lookup::<CtKey, CtValue>(ct, &peer).map_err(sys_err)?.is_none()
                        && sys::delete(ct, key).map_err(sys_err)?
                    {
                        report.orphans += 1;
                    }
                }
                _ => {}
            }
        }
        Ok(report)
    }
}
