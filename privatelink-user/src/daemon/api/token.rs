//! The API tokens as the socket's `token` verbs answer: one just made (its text shown
//! once) and one as `token list` shows it (never its secret or hash).

use super::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A token just made: its text is shown this once (the store keeps its hash).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TokenCreated {
    pub id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    pub read_only: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    /// `Authorization: Bearer TOKEN`.
    pub token: String,
}

/// A token as `token list` shows it (never its secret or hash).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TokenView {
    pub id: String,
    pub name: String,
    /// None: an operator token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    pub read_only: bool,
    pub created_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
}
