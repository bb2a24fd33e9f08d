//! Who is asking: the bearer token checked against the recorded tokens of the picture
//! of the moment (a token revoked on this node fails from the commit on; on another
//! node of a fleet once it has followed that commit), turned into a `Caller`, and held
//! to its rate (`rate`).

use super::App;
use crate::model::{
    authz::Caller,
    time::unix_now_ms,
    tokens::{self, TokenError},
};
use axum::{extract::FromRequestParts, http::{header::AUTHORIZATION, request::Parts}};

/// A request's verified caller and the name of the token it used (for the audit trail).
pub struct Authed {
    pub caller: Caller,
    /// The token's name and id.
    pub token: String,
    pub token_id: String,
}

impl FromRequestParts<App> for Authed {
    type Rejection = super::error::ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Authed, Self::Rejection> {
        let header = parts.headers.get(AUTHORIZATION).ok_or(TokenError::Missing)?;
        let text = header.to_str().ok().and_then(|h| h.strip_prefix("Bearer ")).ok_or(TokenError::Malformed)?;
        let (id, secret) = tokens::parse(text)?;
        let pic = app.shown.now();
        let rec = pic.state.tokens.get(id).ok_or(TokenError::Unknown)?;
        rec.check(secret, unix_now_ms())?;
        app.limiter.take(&rec.id, std::time::Instant::now()).map_err(super::error::ApiError::too_many)?;
        let caller = match &rec.account {
            None => Caller::Operator { read_only: rec.read_only },
            Some(a) => Caller::Account { id: a.clone(), read_only: rec.read_only },
        };
        Ok(Authed { caller, token: rec.name.clone(), token_id: rec.id.clone() })
    }
}
