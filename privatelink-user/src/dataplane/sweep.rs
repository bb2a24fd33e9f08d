//! The conntrack sweeper: finds flows idle past their timeout and removes them through
//! the `privatelink_expire` program, which deletes both entries and releases the
//! endpoint's connection slot exactly once (the kernel's delete decides who wins, so a
//! concurrent sweep or reset cannot release a slot twice). Userspace cannot do that
//! decrement itself: it would race the data path's atomic adds.

use super::{
    audit::{Audit, Repair, Tally},
    error::{Error, Result},
    maps::{self, Maps},
    monotonic_ns, sys,
};
use crate::model::spec;
use aya::programs::Xdp;
use privatelink_common::*;
use std::{
    collections::HashSet,
    hash::{BuildHasherDefault, Hasher},
    os::fd::{AsFd, OwnedFd},
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

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Flows removed (each released one connection slot).
    pub expired: u64,
    /// Reverse entries removed whose forward entry no longer existed.
    pub orphans: u64,
    /// Flows still alive after the sweep.
    pub alive: u64,
    /// Entries the pass read (two per flow).
    pub entries: u64,
    /// Counters the accounting audit repaired (idle passes only; should stay empty).
    pub repairs: Vec<Repair>,
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
/// thousand entries per syscall. Its idle passes also audit the slot accounting.
pub struct Sweeper {
    ct: OwnedFd,
    expire: OwnedFd,
    audit: std::sync::Mutex<Audit>,
    capacity: u64,
}


impl Sweeper {
    pub fn new(maps: &Maps, expire: &Xdp) -> Result<Sweeper> {
        let prog = expire.fd().map_err(|source| Error::Program { name: PROG_EXPIRE, source })?;
        let audit = Audit::new(maps.counters(MAP_EP_USE)?, maps.counters(MAP_VPC_FLOWS)?);
        Ok(Sweeper { ct: maps::dup(maps.ct_fd(), MAP_CT)?, expire: maps::dup(prog.as_fd(), PROG_EXPIRE)?, audit: std::sync::Mutex::new(audit), capacity: maps.ct_capacity() as u64 })
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

    /// Entries the table holds at most.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Every entry of the table.
    pub fn read(&self) -> Result<Vec<(CtKey, CtValue)>> {
        maps::read_conntrack(self.ct.as_fd())
    }

    /// One pass over the conntrack table. The table is read a batch at a time and never
    /// held whole: what the pass keeps is the forward entries that may go and a set of
    /// the reverse keys forward entries point at.
    pub fn sweep(&self, scope: Scope) -> Result<SweepReport> {
        let now = monotonic_ns();
        let mut report = SweepReport::default();
        let mut forwards = 0u64;
        // Forward entries that may go: idle on their own side for their timeout (the
        // expiry program looks at the other side's last packet too), or in the scope.
        let mut candidates: Vec<(CtKey, u64)> = Vec::new();
        // Reverse keys some forward entry points at, and reverse entries idle for a
        // second (an orphan is one with no forward entry).
        let mut pointed: HashSet<u128, BuildHasherDefault<KeyHasher>> = HashSet::default();
        let mut quiet_reverse: Vec<(CtKey, CtKey)> = Vec::new();
        let one_second = Duration::from_secs(1).as_nanos() as u64;
        let idle = matches!(scope, Scope::Idle(_));
        let mut audit = self.audit.lock().unwrap_or_else(|e| e.into_inner());
        let before = if idle { audit.snapshot() } else { Vec::new() };
        let mut tally = Tally::default();
        sys::for_each_batch::<CtKey, CtValue>(self.ct.as_fd(), maps::CT_BATCH, |keys, values| {
            for (k, v) in keys.iter().zip(values) {
                report.entries += 1;
                match v.kind {
                    CT_KIND_FORWARD => {
                        forwards += 1;
                        tally.count(k, v);
                        pointed.insert(packed(&v.peer_key(k.proto)));
                        let cutoff = match scope {
                            Scope::Endpoints(eps) => eps.contains(&v.endpoint).then_some(u64::MAX),
                            Scope::Backend { ip_be, vpc_id } => (v.nat_dst_ip_be == ip_be && v.egress_vpc == vpc_id).then_some(u64::MAX),
                            Scope::Idle(t) => {
                                let timeout = t.for_state(v.state).as_nanos() as u64;
                                (now.saturating_sub(v.last_seen_ns) >= timeout).then(|| now.saturating_sub(timeout))
                            }
                        };
                        if let Some(c) = cutoff {
                            candidates.push((*k, c));
                        }
                    }
                    CT_KIND_REVERSE if now.saturating_sub(v.last_seen_ns) > one_second => quiet_reverse.push((*k, v.peer_key(k.proto))),
                    _ => {}
                }
            }
        })
        .map_err(|source| Error::Sys { what: MAP_CT, source })?;
        if idle {
            report.repairs = audit.check(&before, &tally);
        }
        drop(audit);
        for (key, cutoff) in candidates {
            if self.expire_flow(key, cutoff)? {
                report.expired += 1;
            }
        }
        report.alive = forwards - report.expired;
        // A reverse entry exists alone for an instant while a flow is created or
        // expired; one alone and quiet for a second is an orphan. The map is asked again
        // (not only what the pass read) so a flow created meanwhile is kept.
        let ct = self.ct.as_fd();
        let sys_err = |source| Error::Sys { what: MAP_CT, source };
        for (key, peer) in quiet_reverse {
            if !pointed.contains(&packed(&key)) && sys::lookup::<CtKey, CtValue>(ct, &peer).map_err(sys_err)?.is_none() && sys::delete(ct, &key).map_err(sys_err)? {
                report.orphans += 1;
            }
        }
        Ok(report)
    }
}

/// A conntrack key as one number (exact: a set of them has no collisions).
fn packed(k: &CtKey) -> u128 {
    (k.src_ip_be as u128) << 96 | (k.dst_ip_be as u128) << 64 | (k.src_port_be as u128) << 48 | (k.dst_port_be as u128) << 32 | (k.vpc_id as u128) << 16 | k.proto as u128
}

/// A cheap hasher for packed keys (the table's own keys, not chosen by an attacker
/// beyond what the data path already accepts): multiply and fold.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ *b as u64).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_u128(&mut self, v: u128) {
        let x = (v as u64 ^ (v >> 64) as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 = x ^ (x >> 29);
    }
}
