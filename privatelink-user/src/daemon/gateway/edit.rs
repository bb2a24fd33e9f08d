//! A tenant's create, change or delete: the recorded spec with the edit made
//! (`tenancy::edited`), applied exactly as an `apply -f` is (every rule, two phases),
//! recorded with its audit event, the API's ownership of what it created and the
//! request's Idempotency-Key. The If-Match and key checks run on the state the edit is
//! made to, so two writers (two consoles, two nodes) never overwrite each other blindly.

use super::{
    apply::{How, Outcome},
    Gateway,
};
use crate::model::{
    state::{Event, State},
    tenancy::{self, Edit, KeyRecord},
    time::unix_now,
};
use anyhow::Result;
use std::borrow::Cow;

/// A tenant's edit and what comes with it.
pub struct EditRequest {
    pub edit: Edit,
    /// The ETag the client read the resource with (`*`: any).
    pub if_match: Option<String>,
    /// (`token id:Idempotency-Key`, the request's digest) of a create.
    pub key: Option<(String, String)>,
    pub audit: Event,
}

/// What an edit came to.
pub enum Edited {
    Done(Outcome),
    /// The Idempotency-Key's first request made this resource (kind, name): nothing
    /// was done again.
    Repeated { name: String },
}

/// An earlier create with the same key, found in the state the edit was made to.
#[derive(Debug)]
struct Repeat(String);

impl std::fmt::Display for Repeat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "repeated create of {}", self.0)
    }
}

impl std::error::Error for Repeat {}

impl Gateway {
    pub fn edit(&mut self, req: EditRequest) -> Result<Edited> {
        let now = unix_now();
        let spec_of = |st: &State| {
            if let Some((key, digest)) = &req.key {
                if let Some(first) = tenancy::repeated(st, key, digest, now)? {
                    return Err(anyhow::Error::new(Repeat(first.name.clone())));
                }
            }
            Ok(Cow::Owned(tenancy::edited(st, &req.edit, req.if_match.as_deref())?))
        };
        let created = matches!(req.edit, Edit::Create(_)).then(|| (req.edit.kind(), req.edit.name()));
        let settle = |st: &mut State| {
            tenancy::settle(st, created);
            if let Some((key, digest)) = &req.key {
                let record = KeyRecord { at: now, request: digest.clone(), kind: req.edit.kind().to_string(), name: req.edit.name().to_string() };
                tenancy::remember_key(st, key.clone(), record);
            }
        };
        let how = How { audit: vec![req.audit.clone()], settle: &settle, read_back: false, ..How::default() };
        match self.retry_apply(spec_of, how) {
            Ok(outcome) => Ok(Edited::Done(outcome)),
            Err(e) => match e.downcast::<Repeat>() {
                Ok(Repeat(name)) => Ok(Edited::Repeated { name }),
                Err(e) => Err(e),
            },
        }
    }
}
