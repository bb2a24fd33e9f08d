//! Accounts' tokens as recorded transitions: a token added (its hash only), a token
//! revoked, each with its event. Pure; the daemon draws the random parts
//! (`tokens::text`) and records what these return.

use super::{
    state::{Event, State},
    tokens::TokenRecord,
};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AccountError {
    #[error("a token's name is 1 to 64 letters, digits, '-', '_' or '.', not {0:?}")]
    BadName(String),
    #[error("an account id is 1 to 64 letters, digits, '-' or '_', not {0:?}")]
    BadAccount(String),
    #[error("no token with id `{0}` (see `privatelink token list`)")]
    NoToken(String),
    #[error("a token with id `{0}` exists already")]
    Taken(String),
}

fn word(s: &str, extra: &[u8]) -> bool {
    (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || extra.contains(&b))
}

/// `st` with token `t` added.
pub fn add_token(st: &State, t: TokenRecord) -> Result<(State, Vec<Event>), AccountError> {
    if !word(&t.name, b"-_.") {
        return Err(AccountError::BadName(t.name));
    }
    if let Some(a) = t.account.as_deref().filter(|a| !word(a, b"-_")) {
        return Err(AccountError::BadAccount(a.into()));
    }
    if st.tokens.contains_key(&t.id) {
        return Err(AccountError::Taken(t.id));
    }
    let who = t.account.as_deref().map_or("the operator (every account)".to_string(), |a| format!("account {a}"));
    let event = Event::new("token.created", &format!("token/{}", t.id), None, format!("token {} ({}) for {who}{}", t.id, t.name, if t.read_only { ", read-only" } else { "" }));
    let mut next = st.clone();
    next.tokens.insert(t.id.clone(), t);
    Ok((next, vec![event]))
}

/// `st` without token `id`: from the commit on, it authenticates nothing.
pub fn revoke_token(st: &State, id: &str) -> Result<(State, Vec<Event>), AccountError> {
    let mut next = st.clone();
    let t = next.tokens.remove(id).ok_or_else(|| AccountError::NoToken(id.into()))?;
    let event = Event::new("token.revoked", &format!("token/{id}"), None, format!("token {id} ({}) revoked", t.name));
    Ok((next, vec![event]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_added_once_and_revoked_with_events() {
        let t = TokenRecord::new("0a1b2c3d", "s", "ci", Some("100001"), false, None);
        let (st, ev) = add_token(&State::default(), t.clone()).unwrap();
        assert_eq!(ev[0].kind, "token.created");
        assert_eq!(add_token(&st, t.clone()).unwrap_err(), AccountError::Taken(t.id.clone()));
        let bad = TokenRecord { name: "a b".into(), ..t.clone() };
        assert!(matches!(add_token(&State::default(), bad), Err(AccountError::BadName(_))));
        let (st, ev) = revoke_token(&st, "0a1b2c3d").unwrap();
        assert!(st.tokens.is_empty() && ev[0].kind == "token.revoked");
        assert_eq!(revoke_token(&st, "0a1b2c3d").unwrap_err(), AccountError::NoToken("0a1b2c3d".into()));
    }
}
