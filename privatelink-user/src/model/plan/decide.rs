//! The provider's decisions and the deletes: edits of the recorded state (accept,
//! reject) or of the recorded spec (delete), each refused with a reason when it does
//! not apply.

use crate::model::{
    spec::{OnRevoke, Spec},
    state::{EndpointState, State},
};
use std::collections::BTreeSet;

/// An approval decision went wrong.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecisionError {
    #[error("no endpoint named or with id `{0}`")]
    NoEndpoint(String),
    #[error("no service named or with id `{0}`")]
    NoService(String),
    #[error("endpoint {name} is {state}: only a pendingAcceptance or rejected endpoint can be accepted")]
    CannotAccept { name: String, state: EndpointState },
    #[error("endpoint {name} is {state}: only a pendingAcceptance or accepted endpoint can be rejected")]
    CannotReject { name: String, state: EndpointState },
    #[error("account {account} is not allowed by service {service} any more: add it to allowed_accounts first")]
    NotAllowed { account: String, service: String },
    #[error("service {service} still has endpoints that are accepted or creating: {}; delete them first or use --force", .endpoints.join(", "))]
    InUse { service: String, endpoints: Vec<String> },
}

/// `accept ENDPOINT`: the provider approves the connection.
pub fn accept(st: &State, key: &str) -> Result<State, DecisionError> {
    let e = st.find_endpoint(key).ok_or_else(|| DecisionError::NoEndpoint(key.into()))?;
    if !matches!(e.state, EndpointState::PendingAcceptance | EndpointState::Rejected) {
        return Err(DecisionError::CannotAccept { name: e.spec.name.clone(), state: e.state });
    }
    let svc = &st.services[&e.service].spec;
    if !svc.allows(&e.spec.owner) {
        return Err(DecisionError::NotAllowed { account: e.spec.owner.0.clone(), service: svc.name.clone() });
    }
    let mut next = st.clone();
    let r = next.endpoints.get_mut(&e.spec.name).expect("found above");
    r.state = EndpointState::Accepted;
    r.reason = None;
    Ok(next)
}

/// `reject ENDPOINT`. Returns the new state and whether live flows must be cut
/// (the service's `on_revoke: reset`).
pub fn reject(st: &State, key: &str) -> Result<(State, Option<u32>), DecisionError> {
    let e = st.find_endpoint(key).ok_or_else(|| DecisionError::NoEndpoint(key.into()))?;
    if !matches!(e.state, EndpointState::PendingAcceptance | EndpointState::Accepted) {
        return Err(DecisionError::CannotReject { name: e.spec.name.clone(), state: e.state });
    }
    let svc = &st.services[&e.service].spec;
    let cut = (svc.on_revoke == OnRevoke::Reset).then_some(e.index);
    let mut next = st.clone();
    let r = next.endpoints.get_mut(&e.spec.name).expect("found above");
    r.state = EndpointState::Rejected;
    r.reason = Some("rejected by the provider".into());
    Ok((next, cut))
}

/// The spec without an endpoint (for `delete endpoint`).
pub fn without_endpoint(st: &State, key: &str) -> Result<Spec, DecisionError> {
    let e = st.find_endpoint(key).ok_or_else(|| DecisionError::NoEndpoint(key.into()))?;
    let mut spec = st.spec.clone();
    spec.endpoints.retain(|x| x.name != e.spec.name);
    Ok(spec)
}

/// The spec without a service and its endpoints (for `delete service`). Refused while
/// endpoints are accepted or creating, unless forced.
pub fn without_service(st: &State, key: &str, force: bool) -> Result<Spec, DecisionError> {
    let s = st.find_service(key).ok_or_else(|| DecisionError::NoService(key.into()))?;
    let name = s.spec.name.clone();
    let busy: Vec<String> = st
        .endpoints
        .values()
        .filter(|e| e.service == name && matches!(e.state, EndpointState::Accepted | EndpointState::Creating))
        .map(|e| e.spec.name.clone())
        .collect();
    if !busy.is_empty() && !force {
        return Err(DecisionError::InUse { service: name, endpoints: busy });
    }
    let mut spec = st.spec.clone();
    let gone: BTreeSet<String> = st.endpoints.values().filter(|e| e.service == name).map(|e| e.spec.name.clone()).collect();
    spec.endpoints.retain(|e| !gone.contains(&e.name));
    spec.services.retain(|x| x.name != name);
    Ok(spec)
}
