//! The conntrack sweeper: finds flows idle past their timeout and removes them through
//! the `privatelink_expire` program, which deletes both entries and releases the
//! endpoint's connection slot exactly once (the kernel's delete decides who wins, so a
//! concurrent sweep or reset cannot release a slot twice). Userspace cannot do that
//! decrement itself: it would race the data path's atomic adds.

use super::{
    error::{Error, Result},
    maps::Maps,
    monotonic_ns,
};
use crate::model::spec;
use aya::programs::{TestRun, TestRunOptions, Xdp};
use privatelink_common::*;
use std::time::Duration;

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

/// Remove one flow by its forward key. `cutoff_ns`: only if idle since then
/// (`u64::MAX`: unconditionally). Returns whether this call removed it.
pub fn expire_flow(prog: &Xdp, key: CtKey, cutoff_ns: u64) -> Result<bool> {
    let req = ExpireRequest { key, cutoff_ns };
    let mut data = vec![0u8; EXPIRE_PAD + std::mem::size_of::<ExpireRequest>()];
    // SAFETY: ExpireRequest is repr(C) plain data.
    let bytes = unsafe {
        std::slice::from_raw_parts(
            (&req as *const ExpireRequest).cast::<u8>(),
            std::mem::size_of::<ExpireRequest>(),
        )
    };
    data[EXPIRE_PAD..].copy_from_slice(bytes);
    let opts = TestRunOptions { data_in: Some(&data), ..Default::default() };
    let r = prog
        .test_run(opts)
        .map_err(|source| Error::TestRun { name: PROG_EXPIRE, source })?;
    match r.return_value {
        EXPIRE_DELETED | EXPIRE_DELETED_NO_PEER => Ok(true),
        EXPIRE_KEPT => Ok(false),
        value => Err(Error::UnexpectedReturn { name: PROG_EXPIRE, value }),
    }
}

/// One pass over the conntrack table.
pub fn sweep(maps: &mut Maps, prog: &Xdp, scope: Scope) -> Result<SweepReport> {
    let now = monotonic_ns();
    let entries = maps.conntrack()?;
    let mut report = SweepReport::default();
    let index: std::collections::HashMap<CtKey, CtValue> = entries.iter().copied().collect();
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
                if expire_flow(prog, *key, cutoff)? {
                    report.expired += 1;
                } else {
                    report.alive += 1;
                }
            }
            CT_KIND_REVERSE => {
                // A reverse entry exists alone for an instant while a flow is created or
                // expired; one alone and idle for a second is an orphan. The map is asked
                // again (not only the snapshot) so a flow created meanwhile is kept.
                let old = now.saturating_sub(value.last_seen_ns) > Duration::from_secs(1).as_nanos() as u64;
                let peer = value.peer_key(key.proto);
                if old
                    && !index.contains_key(&peer)
                    && maps.ct_get(&peer)?.is_none()
                    && maps.ct_remove_orphan(key)?
                {
                    report.orphans += 1;
                }
            }
            _ => {}
        }
    }
    Ok(report)
}
