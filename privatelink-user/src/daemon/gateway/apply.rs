//! Applying changes, in two phases so a crash anywhere is finished by the next start:
//! validate -> plan -> commit phase 1 -> reconcile -> commit phase 2 -> write the
//! difference -> publish routes once. The provider's decisions (accept, reject) and
//! deletes go the same way.

use super::Gateway;
use crate::{
    daemon::{
        api::{ApplyResult, One, Response},
        datapath::DataPath,
        record::{is_conflict, MAX_TRIES},
    },
    dataplane::{links, loader, reconcile::Report},
    model::{
        plan::{self, Planned},
        plan_spec,
        spec::{self, Spec, SpecError},
        state::{Event, State},
        tenancy,
        validate::Env,
        yaml::Doc,
    },
};
use anyhow::Result;
use std::{borrow::Cow, sync::Arc};

impl Gateway {
    /// `apply -f`: the spec text is parsed (or its last parse reused), then applied
    /// with the tenant API's resources kept (`tenancy::merge`).
    pub fn apply_text(&mut self, text: String, dry_run: bool) -> Response {
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
                Ok((p, doc)) => return with_env(&self.path, |env| spec_errors(crate::model::all_errors(&p, &doc, self.rec.state(), env))),
                Err(errors) => return spec_errors(errors),
            },
        };
        let merged = |st: &State| match tenancy::merge(&parsed.0, st) {
            Ok(spec) => Ok(Cow::Owned(spec)),
            Err(errors) => Err(anyhow::Error::new(Invalid(errors.into_iter().map(|mut e| {
                e.pos = parsed.1.pos(&e.path);
                e
            }).collect()))),
        };
        let how = How { doc: Some(&parsed.1), dry_run, ..How::default() };
        answer(self.retry_apply(merged, how))
    }

    /// Apply the spec `spec_of` makes of the recorded state, computed anew (from the
    /// new state) each time another node's commit came first. `spec_of` may refuse with
    /// `Invalid` (spec errors) or any other error.
    pub(super) fn retry_apply<'s>(&mut self, mut spec_of: impl FnMut(&State) -> Result<Cow<'s, Spec>>, how: How<'_>) -> Result<Outcome> {
        for attempt in 1..=MAX_TRIES {
            let st = self.rec.state().clone();
            let s = match spec_of(&st) {
                Ok(s) => s,
                Err(e) => return match e.downcast::<Invalid>() {
                    Ok(Invalid(errors)) => Ok(Err(errors)),
                    Err(e) => Err(e),
                },
            };
            let mut planned = match with_env(&self.path, |env| plan_spec(&s, how.doc, &st, env)) {
                Ok(p) => p,
                Err(errors) => return Ok(Err(errors)),
            };
            if how.dry_run {
                return Ok(Ok(ApplyResult { dry_run: true, changes: planned.changes, reconcile: Report::default() }));
            }
            (how.settle)(&mut planned.state);
            match self.run_plan(planned, how.audit.clone(), how.read_back) {
                Ok(r) => return Ok(Ok(r)),
                Err(e) if is_conflict(&e) && attempt < MAX_TRIES => self.reload()?,
                Err(e) => return Err(e),
            }
        }
        anyhow::bail!("other nodes kept changing the state: gave up after {MAX_TRIES} tries")
    }

    fn run_plan(&mut self, p: Planned, audit: Vec<Event>, read_back: bool) -> Result<ApplyResult> {
        let Planned { mut state, changes, reset } = p;
        if state == **self.rec.state() && !plan::unfinished(self.rec.state()) && self.path.loaded() {
            // Nothing to record; the maps are still checked (and written only if they
            // drifted).
            let r = self.reconcile()?;
            self.publish_routes(false);
            return Ok(ApplyResult { dry_run: false, changes, reconcile: r });
        }
        // Flows to cut are part of the committed state (finished at start after a crash).
        state.cut(reset, []);
        let before = self.rec.state().clone();
        let committed = self.rec.commit(state, audit);
        self.followed(&before);
        committed?;
        self.path.load(self.rec.state().gateway.conntrack_capacity)?;
        let first = if read_back { self.reconcile()? } else { self.write_maps()? };
        self.finish_cuts()?;
        self.path.ensure_links(self.rec.state())?;
        let second = self.finish_apply()?;
        self.publish_routes(false);
        let reconcile = Report { ops: first.ops + second.ops, writes: first.writes + second.writes };
        Ok(ApplyResult { dry_run: false, changes, reconcile })
    }

    /// Phase 2 of an apply (also run at start when a crash interrupted one): the flows
    /// of endpoints being deleted go while they are inactive, then they are.
    pub(super) fn finish_apply(&mut self) -> Result<Report> {
        self.path.cut_deleting(self.rec.state())?;
        self.transact(|st| Ok(plan::unfinished(st).then(|| (plan::finish(st.clone()), Vec::new()))))?;
        let r = self.write_maps()?;
        self.path.ensure_links(self.rec.state())?;
        Ok(r)
    }

    /// `accept ENDPOINT`: the provider approves the connection (`audit`: who asked,
    /// recorded with the decision).
    pub fn accept(&mut self, endpoint: &str, audit: Vec<Event>) -> Result<()> {
        self.transact(|st| Ok(Some((plan::accept(st, endpoint)?, audit.clone()))))?;
        self.write_maps()?;
        self.publish_routes(false);
        Ok(())
    }

    /// `reject ENDPOINT`: live flows are cut when the service says `on_revoke: reset`.
    pub fn reject(&mut self, endpoint: &str, audit: Vec<Event>) -> Result<()> {
        self.transact(|st| {
            let (mut next, cut) = plan::reject(st, endpoint)?;
            next.cut(cut, []);
            Ok(Some((next, audit.clone())))
        })?;
        self.write_maps()?;
        self.finish_cuts()?;
        self.publish_routes(false);
        Ok(())
    }

    /// `delete endpoint|service NAME`: the recorded spec without it, applied.
    pub fn delete(&mut self, kind: One, name: &str, force: bool) -> Result<Response> {
        let without = |st: &State| {
            Ok(Cow::Owned(match kind {
                One::Endpoint => plan::without_endpoint(st, name)?,
                One::Service => plan::without_service(st, name, force)?,
                One::Node => anyhow::bail!("nodes are deleted on their own"),
            }))
        };
        Ok(answer(self.retry_apply(without, How::default())))
    }
}

/// What an apply ended with: done, or the spec's errors (nothing applied).
pub type Outcome = Result<ApplyResult, Vec<SpecError>>;

/// The spec's errors, as `retry_apply`'s `spec_of` refuses with them.
#[derive(Debug)]
pub struct Invalid(pub Vec<SpecError>);

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the spec has {} errors", self.0.len())
    }
}

impl std::error::Error for Invalid {}

/// How an apply is made beside its spec: the positions of the spec's text, whether it
/// only plans, the events recorded with it (who asked, through the API), what the
/// state records beside the spec (`tenancy::settle`), and whether the maps are read
/// back first (an operator's apply also repairs drift; a tenant's edit writes only
/// what it changes, the periodic repair does the rest).
pub(super) struct How<'a> {
    pub doc: Option<&'a Doc>,
    pub dry_run: bool,
    pub audit: Vec<Event>,
    pub settle: &'a dyn Fn(&mut State),
    pub read_back: bool,
}

impl Default for How<'_> {
    fn default() -> Self {
        How { doc: None, dry_run: false, audit: Vec::new(), settle: &|st| tenancy::settle(st, None), read_back: true }
    }
}

/// The socket's answer to an apply.
fn answer(r: Result<Outcome>) -> Response {
    match r {
        Ok(Ok(done)) => Response::ok(done),
        Ok(Err(errors)) => spec_errors(errors),
        Err(e) => Response::error(format!("{e:#}")),
    }
}

/// `f` given what the host answers: the live conntrack size, interfaces and their
/// addresses.
fn with_env<R>(path: &DataPath, f: impl FnOnce(&Env) -> R) -> R {
    let ct = path.reader().map(|r| r.ct_capacity());
    let own = |i: &str| links::interface(i).map(|f| f.addrs).unwrap_or_default();
    f(&Env { ct_capacity: ct, interface_exists: &|i| loader::ifindex(i).is_ok(), gateway_addrs: &own })
}

/// Every error of a spec, in the order of its text.
pub fn spec_errors(mut errors: Vec<SpecError>) -> Response {
    crate::model::spec::sort(&mut errors);
    let n = errors.len();
    let error = format!("the spec has {n} error{}; nothing was applied", if n == 1 { "" } else { "s" });
    Response::Err { error, spec_errors: errors }
}
