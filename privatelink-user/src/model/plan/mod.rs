//! The planner: (valid spec, recorded state) -> the next state and the list of changes
//! an operator reads before it happens. Pure. One step per part of the spec, in the
//! order a reader follows a spec: gateway, VPCs, services, endpoints (`steps`), with
//! slots and addresses from `pool`; the provider's decisions and deletes are `decide`.
//!
//! An apply runs in two phases so a crash at any point is recoverable: `plan` gives the
//! phase-1 state (new things `creating`, removed things `deleting`, both still in the
//! data path as inactive), `finish` the phase-2 state (final states, removed things gone).

mod decide;
mod pool;
mod steps;

pub use decide::{accept, reject, without_endpoint, without_service, DecisionError};

use super::{
    spec::{Endpoint, Service, SpecError},
    state::{EndpointState, ServiceState, State},
    validate::Valid,
};
use serde::{Deserialize, Serialize};
use std::fmt;

/// One line of a plan: `+ create`, `~ change`, `- delete`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Change {
    pub op: char,
    pub kind: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<String>,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.op, self.kind, self.name)?;
        if let Some(id) = &self.id {
            write!(f, " ({id})")?;
        }
        for d in &self.details {
            write!(f, "\n    {d}")?;
        }
        Ok(())
    }
}

#[derive(Clone, Debug)]
pub struct Planned {
    /// The phase-1 state.
    pub state: State,
    pub changes: Vec<Change>,
    /// Endpoints (slot indices) whose live flows must be cut now: rejected by a
    /// revocation under `on_revoke: reset`.
    pub reset: Vec<u32>,
}

/// Plan a valid spec against `old`. Errors: what only allocation can tell (no free
/// slot or address left).
pub fn plan(v: &Valid, old: &State) -> Result<Planned, Vec<SpecError>> {
    let mut d = steps::Draft::new(v, old);
    d.gateway();
    d.vpcs();
    d.services()?;
    d.endpoints()?;
    d.removed_endpoints();
    Ok(d.done())
}

/// Same owner: accepted whatever auto_accept says; other owner: auto_accept decides.
fn initial_state(svc: &Service, e: &Endpoint) -> EndpointState {
    if e.owner == svc.owner || svc.auto_accept {
        EndpointState::Accepted
    } else {
        EndpointState::PendingAcceptance
    }
}

/// Phase 2: `creating` becomes its final state, `deleting` goes away, VPCs no longer in
/// the spec go away.
pub fn finish(mut st: State) -> State {
    st.endpoints.retain(|_, e| e.state != EndpointState::Deleting);
    st.services.retain(|_, s| s.state != ServiceState::Deleting);
    let spec = st.spec.clone();
    st.vpcs.retain(|n, _| spec.vpcs.iter().any(|v| &v.name == n));
    for s in st.services.values_mut() {
        if s.state == ServiceState::Creating {
            s.state = ServiceState::Available;
        }
    }
    let services = st.services.clone();
    for e in st.endpoints.values_mut() {
        if e.state == EndpointState::Creating {
            e.state = match services.get(&e.service) {
                Some(s) => initial_state(&s.spec, &e.spec),
                None => EndpointState::Failed,
            };
        }
    }
    st
}

/// Whether a state has work left for `finish` (an apply was interrupted).
pub fn unfinished(st: &State) -> bool {
    st.endpoints.values().any(|e| matches!(e.state, EndpointState::Creating | EndpointState::Deleting))
        || st.services.values().any(|s| matches!(s.state, ServiceState::Creating | ServiceState::Deleting))
        || st.vpcs.keys().any(|n| !st.spec.vpcs.iter().any(|v| &v.name == n))
}

#[cfg(test)]
mod tests;
