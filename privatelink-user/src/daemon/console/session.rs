//! Console sessions: signing in with an API token makes a session, named by a random
//! id in an `HttpOnly; Secure; SameSite=Strict` cookie, that holds the token in this
//! daemon's memory only (never on disk, never sent back to the browser) with a random
//! CSRF token every form carries. A session ends at sign-out, after `LIFETIME`, when
//! the daemon stops, or as soon as its token stops working (revoked, expired).

use axum::http::{header, HeaderMap};
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

/// How long a session lasts from sign-in (the consoles' working day).
pub const LIFETIME: Duration = Duration::from_secs(8 * 3600);
/// Sessions one daemon holds at most; sign-ins beyond wait for one to end.
pub const MAX_SESSIONS: usize = 10_000;
pub const COOKIE: &str = "pl_session";
pub const LANG_COOKIE: &str = "pl_lang";

pub struct Session {
    pub id: String,
    /// `Authorization` of every call made for it.
    pub bearer: String,
    pub csrf: String,
    /// None: an operator token.
    pub account: Option<String>,
    pub token_name: String,
    pub read_only: bool,
    expires: Instant,
}

impl Session {
    pub fn operator(&self) -> bool {
        self.account.is_none()
    }
    /// Whether a form's CSRF token is this session's (compared in constant time).
    pub fn csrf_ok(&self, sent: &str) -> bool {
        let (a, b) = (self.csrf.as_bytes(), sent.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
    }
}

#[derive(Default)]
pub struct Sessions(Mutex<HashMap<String, Arc<Session>>>);

/// 32 random bytes, hex.
pub fn random_id() -> String {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).expect("the OS's random source");
    crate::model::tenancy::hex(&b)
}

impl Sessions {
    /// A new session for a token that was just accepted; None: too many sessions.
    pub fn open(&self, bearer: String, account: Option<String>, token_name: String, read_only: bool, now: Instant) -> Option<Arc<Session>> {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() >= MAX_SESSIONS {
            m.retain(|_, s| s.expires > now);
            if m.len() >= MAX_SESSIONS {
                return None;
            }
        }
        let s = Arc::new(Session { id: random_id(), bearer, csrf: random_id(), account, token_name, read_only, expires: now + LIFETIME });
        m.insert(s.id.clone(), s.clone());
        Some(s)
    }

    /// The live session a request's cookie names.
    pub fn find(&self, headers: &HeaderMap, now: Instant) -> Option<Arc<Session>> {
        let id = cookie(headers, COOKIE)?;
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match m.get(id) {
            Some(s) if s.expires > now => Some(s.clone()),
            Some(_) => {
                m.remove(id);
                None
            }
            None => None,
        }
    }

    pub fn close(&self, id: &str) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
    }
}

/// The value of cookie `name` in a request.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| kv.trim().strip_prefix(name).and_then(|rest| rest.strip_prefix('=')))
}

/// `Set-Cookie` for a session (empty id and zero age: the cookie's removal).
pub fn set_cookie(id: &str, max_age: Duration) -> String {
    format!("{COOKIE}={id}; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age={}", max_age.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_found_by_its_cookie_until_it_expires_or_closes() {
        let s = Sessions::default();
        let t0 = Instant::now();
        let a = s.open("Bearer x".into(), Some("100001".into()), "t".into(), false, t0).unwrap();
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, format!("other=1; {COOKIE}={}; pl_lang=zh", a.id).parse().unwrap());
        assert_eq!(s.find(&h, t0).map(|x| x.id.clone()), Some(a.id.clone()));
        assert!(s.find(&h, t0 + LIFETIME).is_none(), "expired");
        let b = s.open("Bearer x".into(), None, "t".into(), false, t0).unwrap();
        h.insert(header::COOKIE, format!("{COOKIE}={}", b.id).parse().unwrap());
        s.close(&b.id);
        assert!(s.find(&h, t0).is_none(), "closed");
        h.insert(header::COOKIE, format!("{COOKIE}=forged").parse().unwrap());
        assert!(s.find(&h, t0).is_none());
        assert!(a.csrf_ok(&a.csrf) && !a.csrf_ok("") && !a.csrf_ok(&b.csrf));
    }
}
