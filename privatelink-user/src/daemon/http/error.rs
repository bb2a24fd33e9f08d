//! The tenant API's one error type: every refusal and failure becomes a status and a
//! JSON body (`ErrorBody`) here, in one place.

use crate::{
    daemon::{api::{ErrorBody, FieldError}, tenant::Refusal},
    model::{plan::DecisionError, tenancy::EditError, tokens::TokenError},
};
use axum::{
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// Seconds before a retry may succeed (429).
    pub retry_after: Option<u64>,
    /// Every invalid field (422).
    pub errors: Vec<FieldError>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into(), retry_after: None, errors: Vec::new() }
    }

    /// 422: every invalid field (path, message), nothing applied.
    pub fn invalid(errors: Vec<(String, String)>) -> ApiError {
        let n = errors.len();
        let errors = errors.into_iter().map(|(path, message)| FieldError { path, message }).collect();
        let message = format!("the request has {n} error{}; nothing was changed", if n == 1 { "" } else { "s" });
        ApiError { errors, ..ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, message) }
    }

    /// 429: the token is over its rate; a request may succeed after `wait`.
    pub fn too_many(wait: std::time::Duration) -> ApiError {
        let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
        ApiError { retry_after: Some(secs), ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, format!("this token is over its rate (--api-rate): retry in {secs} s")) }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody { error: self.message, status: self.status.as_u16(), errors: self.errors };
        let mut r = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"privatelink\""));
        }
        r
    }
}

impl From<TokenError> for ApiError {
    fn from(e: TokenError) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, e.to_string())
    }
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> ApiError {
        match r {
            Refusal::Hidden(m) => ApiError::new(StatusCode::NOT_FOUND, m),
            Refusal::Forbidden(m) => ApiError::new(StatusCode::FORBIDDEN, m),
            Refusal::Invalid(errors) => ApiError::invalid(errors),
            Refusal::Failed(m) => {
                tracing::error!(error = %m, "tenant API");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, m)
            }
        }
    }
}

/// A failure of the daemon's own work: a decision or an edit the state does not allow
/// is a conflict (409), a name that went away meanwhile 404, an If-Match that no longer
/// matches 412, a reused Idempotency-Key 422, anything else 500.
impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> ApiError {
        let status = match (e.downcast_ref::<DecisionError>(), e.downcast_ref::<EditError>()) {
            (Some(DecisionError::NoEndpoint(_) | DecisionError::NoService(_)), _) => StatusCode::NOT_FOUND,
            (Some(_), _) => StatusCode::CONFLICT,
            (_, Some(EditError::Missing { .. })) => StatusCode::NOT_FOUND,
            (_, Some(EditError::Stale { .. })) => StatusCode::PRECONDITION_FAILED,
            (_, Some(EditError::KeyReused)) => StatusCode::UNPROCESSABLE_ENTITY,
            (_, Some(EditError::Taken { .. } | EditError::SpecManaged { .. } | EditError::InUse { .. })) => StatusCode::CONFLICT,
            (None, None) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %format!("{e:#}"), "tenant API");
        }
        ApiError::new(status, format!("{e:#}"))
    }
}
