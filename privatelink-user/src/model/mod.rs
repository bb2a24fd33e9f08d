//! The model: pure. Spec text -> validated spec -> plan -> the next recorded state.
//! `yaml` reads text with positions, `spec` describes and reads a spec, `validate`
//! checks every rule (the spec's own, the recorded state's, the host's answers given
//! as `Env`), `plan` computes the next state and its changes, `state` is the recorded
//! state and the events its changes carry, `fleet` the nodes sharing it (liveness,
//! seats, published routes), `slices` the SNAT slices they hold, `buddy` each node's
//! buddy (who takes over its flows), `health` what a backend's
//! verdict changes, `dns` the private
//! names a state calls for, `time` the clock and how a moment is shown, `tokens` the
//! API tokens as recorded (hashes only), `authz` who may do what to which resource,
//! `tenancy` what the tenant API manages beside the operator's spec and the edits it makes.
//! Uses nothing of the other layers: no BPF, no store, no sockets, no files. It reads
//! the clock and a random key only to stamp and name new records, and privatelink-common
//! only for the data path's table sizes it validates against.

pub mod accounts;
pub mod authz;
pub mod buddy;
pub mod dns;
pub mod fleet;
pub mod health;
pub mod plan;
pub mod slices;
pub mod spec;
pub mod state;
pub mod tenancy;
pub mod time;
pub mod tokens;
pub mod validate;
pub mod yaml;

use spec::{Spec, SpecError};
use state::State;
use validate::Env;

/// Every error of a spec read in part (`spec::read_all`): its structural errors, and
/// the rules' errors of every part that did read, sorted by position.
pub fn all_errors(partial: &spec::Partial, doc: &yaml::Doc, old: &State, env: &Env) -> Vec<SpecError> {
    let mut errors = partial.errors.clone();
    errors.extend(validate::check_partial(partial, doc, old, env));
    spec::sort(&mut errors);
    errors
}

/// The one way from a spec to the next state: every rule checked, then planned.
pub fn plan_spec(spec: &Spec, doc: Option<&yaml::Doc>, old: &State, env: &Env) -> Result<plan::Planned, Vec<SpecError>> {
    let valid = validate::check(spec, doc, old, env)?;
    plan::plan(&valid, old)
}
