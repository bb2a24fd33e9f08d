//! Applying changes, in two phases so a crash anywhere is finished by the next start:
//! validate -> plan -> commit phase 1 -> reconcile -> commit phase 2 -> reconcile. The
//! provider's decisions (accept, reject) and deletes go the same way.

use super::{
    api::{ApplyResult, EndpointView, One, Response},
    gateway::{is_conflict, Gateway, MAX_TRIES},
    handler::{ok, spec_error_response},
};
use crate::{
    dataplane::{links, loader, maps, reconcile::Report, sweep::Scope},
    model::{
        plan::{self, Planned},
        plan_spec,
        spec::{self, Spec},
        state::{EndpointState, State},
        validate::Env,
        yaml::Doc,
    },
};
use anyhow::Result;
use std::{borrow::Cow, collections::BTreeSet, sync::Arc};

impl Gateway {
    /// `apply -f`: the spec text is parsed (or its last parse reused), then applied.
    pub(super) fn apply_text(&mut self, text: String, dry_run: bool) -> Response {
        let cached = self.parsed.as_ref().filter(|(t, _)| *t == text).map(|(_, p)| p.clone());
        let parsed = match cached {
            Some(p) => p,
            None => match spec::read_all(&text) {
                Ok((p, doc)) if p.errors.is_empty() => {
                    let p = Arc::new((p.spec, doc));
                    self.parsed = Some((text, p.clone()));
                    p
                }
                // Parts did not read: the rules still run on the rest, for one report.
                Ok((p, doc)) => return self.with_env(|env| spec_error_response(crate::model::all_errors(&p, &doc, &self.state, env))),
                Err(errors) => return spec_error_response(errors),
            },
        };
        self.apply_spec(&parsed.0, Some(&parsed.1), dry_run)
    }

    /// `f` given what the host answers: the live conntrack size, interfaces and their
    /// addresses.
    fn with_env<R>(&self, f: impl FnOnce(&Env) -> R) -> R {
        let ct = self.dp.as_ref().map(|d| d.maps.ct_capacity());
        let own = |i: &str| links::interface(i).map(|f| f.addrs).unwrap_or_default();
        f(&Env { ct_capacity: ct, interface_exists: &|i| loader::ifindex(i).is_ok(), gateway_addrs: &own })
    }

    /// Apply a spec (parsed and planned against the recorded state; planned again on
    /// the new state when another node's commit came first).
    fn apply_spec(&mut self, s: &Spec, doc: Option<&Doc>, dry_run: bool) -> Response {
        self.retry_apply(|_| Ok(Cow::Borrowed(s)), doc, dry_run).unwrap_or_else(|e| Response::Err { error: format!("{e:#}"), spec_errors: vec![] })
    }

    /// Apply the spec `spec_of` makes of the recorded state, computed anew (from the
    /// new state) each time another node's commit came first.
    fn retry_apply<'s>(&mut self, mut spec_of: impl FnMut(&State) -> Result<Cow<'s, Spec>>, doc: Option<&Doc>, dry_run: bool) -> Result<Response> {
        for attempt in 1..=MAX_TRIES {
            let s = spec_of(&self.state)?;
            let planned = match self.with_env(|env| plan_spec(&s, doc, &self.state, env)) {
                Ok(p) => p,
                Err(errors) => return Ok(spec_error_response(errors)),
            };
            if dry_run {
                return Ok(ok(ApplyResult { dry_run, changes: planned.changes, reconcile: Report::default() }));
            }
            match self.run_plan(planned) {
                Ok(r) => return Ok(ok(r)),
                Err(e) if is_conflict(&e) && attempt < MAX_TRIES => self.reload()?,
                Err(e) => return Err(e),
            }
        }
        anyhow::bail!("other nodes kept changing the state: gave up after {MAX_TRIES} tries")
    }

    fn run_plan(&mut self, p: Planned) -> Result<ApplyResult> {
        let Planned { mut state, changes, reset } = p;
        let mut total = Report::default();
        if state == self.state && !plan::unfinished(&self.state) && self.dp.is_some() {
            // Nothing to record; the maps are still checked (and written only if they
            // drifted).
            let r = self.sync()?;
            return Ok(ApplyResult { dry_run: false, changes, reconcile: r });
        }
        // Flows to cut are part of the committed state (finished at start after a crash).
        state.cut(reset, []);
        self.commit(state)?;
        self.load_data_path()?;
        let r = self.sync()?;
        total.ops += r.ops;
        total.writes += r.writes;
        self.finish_cuts()?;
        self.ensure_links()?;
        let r = self.finish_apply()?;
        total.ops += r.ops;
        total.writes += r.writes;
        Ok(ApplyResult { dry_run: false, changes, reconcile: total })
    }

    /// Phase 2 of an apply (also run at start when a crash interrupted one).
    pub(super) fn finish_apply(&mut self) -> Result<Report> {
        // Flows of endpoints being deleted go now, while they are inactive.
        self.sweep_deleting()?;
        self.transact(|st| Ok(plan::unfinished(st).then(|| (plan::finish(st.clone()), Vec::new()))))?;
        let r = self.sync()?;
        self.ensure_links()?;
        Ok(r)
    }

    /// Remove this node's flows of endpoints being deleted.
    pub(super) fn sweep_deleting(&mut self) -> Result<u64> {
        let going = self.state.endpoints.values().filter(|e| e.state == EndpointState::Deleting).map(|e| e.index).collect();
        self.sweep_endpoints(going)
    }

    /// Remove every flow of these endpoints (one pass over the conntrack table).
    fn sweep_endpoints(&mut self, indices: BTreeSet<u32>) -> Result<u64> {
        if indices.is_empty() {
            return Ok(0);
        }
        let r = self.dp()?.sweep(Scope::Endpoints(&indices))?;
        self.sweep.count_expired(r.expired);
        Ok(r.expired)
    }

    /// Cut the flows the recorded state says this node must cut (of revoked endpoints,
    /// of backends gone down under `on_backend_down: reset`), then record that they are
    /// gone (each node clears its own part).
    pub(super) fn finish_cuts(&mut self) -> Result<()> {
        let me = self.opts.node.clone();
        let cuts = self.state.cuts_of(&me);
        if cuts.is_empty() || self.dp.is_none() {
            return Ok(());
        }
        failpoint("before-cut");
        let n = self.sweep_endpoints(cuts.endpoints.clone())?;
        if n > 0 {
            tracing::info!(flows = n, endpoints = ?cuts.endpoints, "cut the live flows of revoked endpoints");
        }
        for (ip, vpc_id) in cuts.backends.iter().copied() {
            let r = self.dp()?.sweep(Scope::Backend { ip_be: maps::ip_raw(ip), vpc_id })?;
            self.sweep.count_expired(r.expired);
            tracing::info!(flows = r.expired, backend = %ip, "cut the live flows of a backend gone down");
        }
        self.transact(|st| {
            let mut next = st.clone();
            next.cuts_done(&me, &cuts);
            Ok((next.cuts != st.cuts).then_some((next, Vec::new())))
        })?;
        Ok(())
    }

    /// `accept ENDPOINT`: the provider approves the connection.
    pub(super) fn accept(&mut self, endpoint: &str) -> Result<EndpointView> {
        self.transact(|st| Ok(Some((plan::accept(st, endpoint)?, Vec::new()))))?;
        self.sync()?;
        self.endpoint_view(endpoint)
    }

    /// `reject ENDPOINT`: live flows are cut when the service says `on_revoke: reset`.
    pub(super) fn reject(&mut self, endpoint: &str) -> Result<EndpointView> {
        self.transact(|st| {
            let (mut next, cut) = plan::reject(st, endpoint)?;
            next.cut(cut, []);
            Ok(Some((next, Vec::new())))
        })?;
        self.sync()?;
        self.finish_cuts()?;
        self.endpoint_view(endpoint)
    }

    /// `delete endpoint|service NAME`: the recorded spec without it, applied.
    pub(super) fn delete(&mut self, kind: One, name: &str, force: bool) -> Result<Response> {
        self.retry_apply(
            |st| {
                Ok(Cow::Owned(match kind {
                    One::Endpoint => plan::without_endpoint(st, name)?,
                    One::Service => plan::without_service(st, name, force)?,
                    One::Node => anyhow::bail!("nodes are deleted on their own"),
                }))
            },
            None,
            false,
        )
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
