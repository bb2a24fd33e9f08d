//! Idempotent creates: what a create made with an Idempotency-Key asked (a digest) and
//! made, remembered in the state for a day, so a retry answers with the first result on
//! every node. Pure.

use super::{hex, EditError};
use crate::model::state::State;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// How long an Idempotency-Key is remembered (Stripe's and the IETF draft's 24 hours).
pub const KEY_LIFETIME_SECS: u64 = 24 * 3600;

/// A create made with an Idempotency-Key: what was asked (a digest) and what it made.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// Unix seconds.
    pub at: u64,
    /// SHA-256 of the request (method, path, body), hex.
    pub request: String,
    pub kind: String,
    pub name: String,
}

/// The digest a key is recorded with.
pub fn request_digest(method: &str, path: &str, body: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(method.as_bytes());
    h.update(b" ");
    h.update(path.as_bytes());
    h.update(b"\n");
    h.update(body);
    hex(&h.finalize())
}

/// A key's earlier create, if any: `Some(name)` when the same request was made with it
/// (answer with what it made), an error when another one was.
pub fn repeated<'a>(st: &'a State, key: &str, request: &str, now: u64) -> Result<Option<&'a KeyRecord>, EditError> {
    match st.idempotency.get(key).filter(|r| now.saturating_sub(r.at) < KEY_LIFETIME_SECS) {
        Some(r) if r.request == request => Ok(Some(r)),
        Some(_) => Err(EditError::KeyReused),
        None => Ok(None),
    }
}

/// Record `key` (and forget keys past their lifetime).
pub fn remember_key(st: &mut State, key: String, record: KeyRecord) {
    let now = record.at;
    st.idempotency.retain(|_, r| now.saturating_sub(r.at) < KEY_LIFETIME_SECS);
    st.idempotency.insert(key, record);
}
