//! Flows a change calls for removing, on this node: those of revoked endpoints and of
//! backends gone down under `on_backend_down: reset` (those of endpoints being deleted
//! are `DataPath::cut_deleting`'s). Each node cuts its own flows, then records that its
//! part is done.

use super::Gateway;
use crate::dataplane::{maps, sweep::Scope};
use anyhow::Result;

impl Gateway {
    /// Cut the flows the recorded state says this node must cut, then record that they
    /// are gone (each node clears its own part).
    pub(super) fn finish_cuts(&mut self) -> Result<()> {
        let me = self.opts.node.clone();
        let cuts = self.rec.state().cuts_of(&me);
        if cuts.is_empty() || !self.path.loaded() {
            return Ok(());
        }
        failpoint("before-cut");
        if !cuts.endpoints.is_empty() {
            let n = self.path.cut(Scope::Endpoints(&cuts.endpoints))?;
            if n > 0 {
                tracing::info!(flows = n, endpoints = ?cuts.endpoints, "cut the live flows of revoked endpoints");
            }
        }
        for (ip, vpc_id) in cuts.backends.iter().copied() {
            let n = self.path.cut(Scope::Backend { ip_be: maps::ip_raw(ip), vpc_id })?;
            tracing::info!(flows = n, backend = %ip, "cut the live flows of a backend gone down");
        }
        self.transact(|st| {
            let mut next = st.clone();
            next.cuts_done(&me, &cuts);
            Ok((next.cuts != st.cuts).then_some((next, Vec::new())))
        })?;
        Ok(())
    }
}

/// Crash-recovery tests stop the daemon at a named point (`PRIVATELINK_FAILPOINT`):
/// the process aborts as a crash would. Unset in production; nothing else reads it.
fn failpoint(name: &str) {
    if std::env::var_os("PRIVATELINK_FAILPOINT").is_some_and(|v| v == name) {
        tracing::error!(failpoint = name, "failpoint reached: aborting");
        std::process::abort();
    }
}
