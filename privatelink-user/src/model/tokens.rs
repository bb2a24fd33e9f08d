//! API tokens: what the recorded state keeps of each (never the secret: its SHA-256),
//! how a token reads (`pltok_ID_SECRET`), and checking one presented against its
//! record. Pure: the daemon draws the random parts.

use super::time::unix_now_ms;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What a token's text starts with (so a leaked one is recognisable in logs and by
/// secret scanners).
pub const PREFIX: &str = "pltok_";

/// One token as recorded (by its public id).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TokenRecord {
    /// Public: shown by `token list`, part of the token's text.
    pub id: String,
    pub name: String,
    /// The account it acts for; None: an operator token (acts for every account).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// SHA-256 of the secret part, hex.
    pub hash: String,
    #[serde(default)]
    pub read_only: bool,
    pub created_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_ms: Option<u64>,
}

/// Why a presented token does not authenticate (all answered with 401).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("no token: send `Authorization: Bearer TOKEN`")]
    Missing,
    #[error("not a privatelink token")]
    Malformed,
    #[error("unknown or revoked token")]
    Unknown,
    #[error("the token expired")]
    Expired,
}

/// SHA-256 of `secret`, hex.
pub fn hash(secret: &str) -> String {
    Sha256::digest(secret.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// A token's text from its id and secret.
pub fn text(id: &str, secret: &str) -> String {
    format!("{PREFIX}{id}_{secret}")
}

/// (id, secret) of a token's text.
pub fn parse(text: &str) -> Result<(&str, &str), TokenError> {
    let rest = text.trim().strip_prefix(PREFIX).ok_or(TokenError::Malformed)?;
    let (id, secret) = rest.split_once('_').ok_or(TokenError::Malformed)?;
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    if !hex(id, 8) || !hex(secret, 64) {
        return Err(TokenError::Malformed);
    }
    Ok((id, secret))
}

impl TokenRecord {
    /// Whether `secret` is this token's, and the token still valid at `now_ms`. The
    /// hashes are compared in constant time.
    pub fn check(&self, secret: &str, now_ms: u64) -> Result<(), TokenError> {
        let (a, b) = (hash(secret), self.hash.as_bytes());
        let same = a.len() == b.len() && a.bytes().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0;
        if !same {
            return Err(TokenError::Unknown);
        }
        if self.expires_ms.is_some_and(|e| now_ms >= e) {
            return Err(TokenError::Expired);
        }
        Ok(())
    }

    /// A new record for `secret` (`ttl_ms`: its lifetime, if limited).
    pub fn new(id: &str, secret: &str, name: &str, account: Option<&str>, read_only: bool, ttl_ms: Option<u64>) -> TokenRecord {
        let now = unix_now_ms();
        TokenRecord {
            id: id.into(),
            name: name.into(),
            account: account.map(Into::into),
            hash: hash(secret),
            read_only,
            created_ms: now,
            expires_ms: ttl_ms.map(|t| now.saturating_add(t)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0a1b2c3d";
    const SECRET: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    #[test]
    fn a_token_reads_back_and_checks_only_with_its_secret_and_in_time() {
        let t = text(ID, SECRET);
        assert_eq!(parse(&t), Ok((ID, SECRET)));
        let rec = TokenRecord::new(ID, SECRET, "ci", Some("100001"), false, Some(1_000));
        assert_ne!(rec.hash, SECRET, "only the hash is kept");
        assert_eq!(rec.check(SECRET, rec.created_ms), Ok(()));
        let other = SECRET.replace('0', "1");
        assert_eq!(rec.check(&other, rec.created_ms), Err(TokenError::Unknown));
        assert_eq!(rec.check(SECRET, rec.created_ms + 1_000), Err(TokenError::Expired));
        for bad in ["", "Bearer x", "pltok_", "pltok_0a1b2c3d", "pltok_0a1b2c3d_short", &format!("pltok_0a1b2c3g_{SECRET}"), &format!("pltok_{ID}_{SECRET}0")] {
            assert_eq!(parse(bad), Err(TokenError::Malformed), "{bad:?}");
        }
    }
}
