//! The tenant API's paths, one line each: extract (caller, path, query), call one
//! function, answer JSON. Reads come from the picture of the moment; decisions go to
//! the writer with their audit event.

use super::{auth::Authed, error::ApiError, App, Peer};
use crate::daemon::{api::*, tenant};
use axum::{
    extract::{ConnectInfo, DefaultBodyLimit, Path, Query, State},
    http::StatusCode,
    routing::{get, post},
    Json, Router,
};
use serde::Deserialize;

type Answer<T> = Result<Json<T>, ApiError>;

/// Largest request body accepted (413 above).
pub const MAX_BODY: usize = 1 << 20;

pub fn router(app: App) -> Router {
    Router::new()
        .route("/v1/services", get(services))
        .route("/v1/services/{service}", get(service))
        .route("/v1/services/{service}/connections", get(connections))
        .route("/v1/services/{service}/connections/{endpoint}/accept", post(accept))
        .route("/v1/services/{service}/connections/{endpoint}/reject", post(reject))
        .route("/v1/endpoints", get(endpoints))
        .route("/v1/endpoints/{endpoint}", get(endpoint))
        .route("/v1/endpoints/{endpoint}/stats", get(endpoint_stats))
        .route("/v1/events", get(events))
        .route("/v1/openapi.json", get(|| async { Json(super::openapi::shared()) }))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such path in the tenant API (its paths start with /v1/)") })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(app)
}

async fn services(State(app): State<App>, a: Authed) -> Answer<ServicesAnswer> {
    Ok(Json(tenant::services(&app.shown.now(), &a.caller)?))
}

async fn service(State(app): State<App>, a: Authed, Path(s): Path<String>) -> Answer<ServiceAnswer> {
    Ok(Json(tenant::service(&app.shown.now(), &a.caller, &s)?))
}

async fn connections(State(app): State<App>, a: Authed, Path(s): Path<String>) -> Answer<Vec<ConnectionView>> {
    Ok(Json(tenant::connections(&app.shown.now(), &a.caller, &s)?))
}

async fn accept(State(app): State<App>, a: Authed, ConnectInfo(Peer(from)): ConnectInfo<Peer>, Path((s, e)): Path<(String, String)>) -> Answer<EndpointView> {
    decide(app, a, from, s, e, "accept").await
}

async fn reject(State(app): State<App>, a: Authed, ConnectInfo(Peer(from)): ConnectInfo<Peer>, Path((s, e)): Path<(String, String)>) -> Answer<EndpointView> {
    decide(app, a, from, s, e, "reject").await
}

/// A provider's decision on a connection to its service, recorded with who made it.
async fn decide(app: App, a: Authed, from: std::net::SocketAddr, service: String, endpoint: String, verb: &str) -> Answer<EndpointView> {
    let (name, svc) = tenant::decidable(&app.shown.now(), &a.caller, &service, &endpoint)?;
    let audit = vec![tenant::audit(verb, &a.caller, &a.token, from, &name, &svc)];
    if verb == "accept" {
        app.writer.run(|g| g.accept(&name, audit)).await?;
    } else {
        app.writer.run(|g| g.reject(&name, audit)).await?;
    }
    Ok(Json(tenant::endpoint(&app.shown.now(), &a.caller, &name)?))
}

async fn endpoints(State(app): State<App>, a: Authed) -> Answer<EndpointsAnswer> {
    Ok(Json(tenant::endpoints(&app.shown.now(), &a.caller)?))
}

async fn endpoint(State(app): State<App>, a: Authed, Path(e): Path<String>) -> Answer<EndpointView> {
    Ok(Json(tenant::endpoint(&app.shown.now(), &a.caller, &e)?))
}

async fn endpoint_stats(State(app): State<App>, a: Authed, Path(e): Path<String>) -> Answer<EndpointStats> {
    Ok(Json(tenant::endpoint_stats(&app.shown.now(), &a.caller, &e)?))
}

#[derive(Deserialize)]
struct EventsQuery {
    #[serde(default)]
    after: u64,
    #[serde(default)]
    watch: bool,
}

/// How often a watch looks for new events.
const WATCH_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// `GET /v1/events`: the caller's events after `after`; with `watch=true`, those and
/// then each new one as it is recorded, as server-sent events (`id`: its sequence
/// number, `event`: its kind, `data`: the event as JSON), until the client leaves.
async fn events(State(app): State<App>, a: Authed, Query(q): Query<EventsQuery>) -> Result<axum::response::Response, ApiError> {
    use axum::response::{sse, IntoResponse};
    let first = tenant::events(&app.shown.now(), &a.caller, q.after)?;
    if !q.watch {
        return Ok(Json(first).into_response());
    }
    let after = first.last().map_or(q.after, |e| e.seq);
    let start = (app, a.caller, after, std::collections::VecDeque::from(first));
    let stream = futures_util::stream::unfold(start, |(app, caller, mut after, mut pending)| async move {
        loop {
            if let Some(e) = pending.pop_front() {
                let out = sse::Event::default().id(e.seq.to_string()).event(e.kind.clone()).json_data(&e);
                return Some((out, (app, caller, after, pending)));
            }
            tokio::time::sleep(WATCH_EVERY).await;
            // The store stopped answering: the stream ends, the client reconnects with
            // `after` (its last id).
            let new = tenant::events(&app.shown.now(), &caller, after).ok()?;
            after = new.last().map_or(after, |e| e.seq);
            pending.extend(new);
        }
    });
    Ok(sse::Sse::new(stream).keep_alive(sse::KeepAlive::default()).into_response())
}
