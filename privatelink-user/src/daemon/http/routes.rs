//! The tenant API's paths, one line each: extract (caller, path, query, body), call
//! one function, answer JSON. Reads come from the picture of the moment; decisions and
//! edits go to the writer with their audit event; resources carry an `ETag`.

use super::{auth::Authed, error::ApiError, App, Peer};
use crate::{
    daemon::{
        api::*,
        gateway::{EditRequest, Edited},
        picture::Picture,
        tenant,
    },
    model::{
        authz::Caller,
        time::unix_now_ms,
        tenancy::{self, Edit, Kind, Resource},
    },
};
use axum::{
    extract::{ConnectInfo, DefaultBodyLimit, Path, Query, State},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
    Router,
};
use serde::Deserialize;

type Answer<T> = Result<Json<T>, ApiError>;

/// A JSON answer written into one buffer at once (axum's `Json` writes through a
/// `BytesMut` piece by piece, growing it as it goes: a fifth of a 50-endpoint list's
/// cost in the profile).
pub struct Json<T>(pub T);

impl<T: serde::Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        match serde_json::to_vec(&self.0) {
            Ok(body) => ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response(),
            Err(e) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("encoding the answer: {e}")).into_response(),
        }
    }
}

/// Largest request body accepted (413 above).
pub const MAX_BODY: usize = 1 << 20;

/// The writes of one kind of resource: its POST, its PATCH and its DELETE.
macro_rules! create {
    ($k:expr) => {
        post(|s: State<App>, a: Authed, p: ConnectInfo<Peer>, h: HeaderMap, b: Body| create(s, a, p, h, b, $k))
    };
}
macro_rules! change {
    ($k:expr) => {
        |s: State<App>, a: Authed, p: ConnectInfo<Peer>, k: Path<String>, h: HeaderMap, b: Body| patch(s, a, p, k, h, b, $k)
    };
}
macro_rules! remove {
    ($k:expr) => {
        |s: State<App>, a: Authed, p: ConnectInfo<Peer>, k: Path<String>, h: HeaderMap, q: Query<DeleteQuery>| delete(s, a, p, k, h, q, $k)
    };
}

pub fn router(app: App) -> Router {
    Router::new()
        .route("/v1/services", get(services).merge(create!(Kind::Service)))
        .route("/v1/services/{service}", get(service).patch(change!(Kind::Service)).delete(remove!(Kind::Service)))
        .route("/v1/services/{service}/stats", get(service_stats))
        .route("/v1/services/{service}/connections", get(connections))
        .route("/v1/services/{service}/connections/{endpoint}/accept", post(accept))
        .route("/v1/services/{service}/connections/{endpoint}/reject", post(reject))
        .route("/v1/endpoints", get(endpoints).merge(create!(Kind::Endpoint)))
        .route("/v1/endpoints/{endpoint}", get(endpoint).patch(change!(Kind::Endpoint)).delete(remove!(Kind::Endpoint)))
        .route("/v1/endpoints/{endpoint}/stats", get(endpoint_stats))
        .route("/v1/security-groups", get(groups).merge(create!(Kind::SecurityGroup)))
        .route("/v1/security-groups/{group}", get(group).patch(change!(Kind::SecurityGroup)).delete(remove!(Kind::SecurityGroup)))
        .route("/v1/services/{service}/history", get(service_history))
        .route("/v1/endpoints/{endpoint}/history", get(endpoint_history))
        .route("/v1/vpcs", get(vpcs))
        .route("/v1/nodes", get(nodes))
        .route("/v1/whoami", get(whoami))
        .route("/v1/events", get(events))
        .route("/v1/openapi.json", get(|| async { Json(super::openapi::shared()) }))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such path in the tenant API (its paths start with /v1/)") })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(app)
}

async fn services(State(app): State<App>, a: Authed) -> Answer<ServicesAnswer> {
    Ok(Json(tenant::services(&app.shown.now(), &a.caller)?))
}

async fn service(State(app): State<App>, a: Authed, Path(s): Path<String>) -> Result<Response, ApiError> {
    let pic = app.shown.now();
    let answer = tenant::service(&pic, &a.caller, &s)?;
    let tag = match &answer {
        ServiceAnswer::Own(v) => tenant::etag(&pic, Kind::Service, &v.name),
        ServiceAnswer::Listed(_) => None,
    };
    Ok(tagged(StatusCode::OK, tag, None, &answer))
}

async fn service_history(State(app): State<App>, a: Authed, Path(s): Path<String>) -> Answer<HistoryView> {
    Ok(Json(tenant::service_history(&app.shown.now(), &app.history, &a.caller, &s, unix_now_ms())?))
}

async fn endpoint_history(State(app): State<App>, a: Authed, Path(e): Path<String>) -> Answer<HistoryView> {
    Ok(Json(tenant::endpoint_history(&app.shown.now(), &app.history, &a.caller, &e, unix_now_ms())?))
}

async fn vpcs(State(app): State<App>, a: Authed) -> Answer<Vec<TenantVpc>> {
    Ok(Json(tenant::vpcs(&app.shown.now(), &a.caller)?))
}

async fn nodes(State(app): State<App>, a: Authed) -> Answer<Vec<NodeView>> {
    Ok(Json(tenant::nodes(&app.shown.now(), &a.caller)?))
}

async fn whoami(a: Authed) -> Answer<WhoAmI> {
    let (account, read_only) = match a.caller {
        Caller::Operator { read_only } => (None, read_only),
        Caller::Account { id, read_only } => (Some(id), read_only),
    };
    Ok(Json(WhoAmI { account, token: a.token, read_only }))
}

async fn service_stats(State(app): State<App>, a: Authed, Path(s): Path<String>) -> Answer<ServiceStats> {
    Ok(Json(tenant::service_stats(&app.shown.now(), &a.caller, &s)?))
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
    let who = tenant::Who { caller: &a.caller, token: &a.token, client: from };
    let accounts = app.shown.now().state.owners(Some(&name), Some(&svc));
    let audit = vec![who.audit(verb, "endpoint", &name, Some(&svc), accounts)];
    if verb == "accept" {
        app.writer.run(|g| g.accept(&name, audit)).await?;
    } else {
        app.writer.run(|g| g.reject(&name, audit)).await?;
    }
    Ok(Json(tenant::endpoint(&app.shown.now(), &a.caller, &name)?))
}

/// A request's body: at most `MAX_BODY` bytes (413), JSON (400), kept as sent for the
/// Idempotency-Key's digest.
pub struct Body {
    json: serde_json::Value,
    raw: axum::body::Bytes,
}

impl<S: Send + Sync> axum::extract::FromRequest<S> for Body {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Body, ApiError> {
        let raw = axum::body::Bytes::from_request(req, state).await.map_err(|r| {
            let status = r.status();
            let message = if status == StatusCode::PAYLOAD_TOO_LARGE { format!("the body is over {MAX_BODY} bytes") } else { r.body_text() };
            ApiError::new(status, message)
        })?;
        let json = serde_json::from_slice(&raw).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("the body is not JSON: {e}")))?;
        Ok(Body { json, raw })
    }
}

/// A JSON answer with its resource's `ETag` and, for a create, its `Location`.
fn tagged<T: serde::Serialize>(status: StatusCode, tag: Option<String>, location: Option<String>, body: &T) -> Response {
    let mut r = (status, Json(body)).into_response();
    for (name, value) in [(header::ETAG, tag), (header::LOCATION, location)] {
        if let Some(v) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
            r.headers_mut().insert(name, v);
        }
    }
    r
}

fn header_text(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
}

/// The path a kind lives under.
fn collection(kind: Kind) -> &'static str {
    match kind {
        Kind::Service => "/v1/services",
        Kind::Endpoint => "/v1/endpoints",
        Kind::SecurityGroup => "/v1/security-groups",
    }
}

/// A resource as its owner reads it now, with its tag.
fn view_of(pic: &Picture, caller: &Caller, kind: Kind, name: &str, status: StatusCode, location: Option<String>) -> Result<Response, ApiError> {
    let tag = tenant::etag(pic, kind, name);
    Ok(match kind {
        Kind::Service => tagged(status, tag, location, &pic.service_view(name).map_err(|_| tenant::Refusal::Hidden(format!("no service named `{name}`")))?),
        Kind::Endpoint => tagged(status, tag, location, &tenant::endpoint(pic, caller, name)?),
        Kind::SecurityGroup => tagged(status, tag, location, &tenant::group(pic, caller, name)?),
    })
}

/// `POST /v1/services|endpoints|security-groups`: 201 with the new resource. With an
/// Idempotency-Key, a retry of the same request answers with what the first made.
async fn create(State(app): State<App>, a: Authed, ConnectInfo(Peer(from)): ConnectInfo<Peer>, h: HeaderMap, body: Body, kind: Kind) -> Result<Response, ApiError> {
    let resource = tenant::write::create(&app.shown.now().state, &a.caller, kind, body.json)?;
    let key = header_text(&h, "idempotency-key").map(|k| (format!("{}:{k}", a.token_id), tenancy::request_digest("POST", collection(kind), &body.raw)));
    let index = tenancy::current_len(&app.shown.now().state, kind);
    let edit = Edit::Create(resource);
    edit_and_show(app, a, from, edit, None, key, Some(index), StatusCode::CREATED).await
}

/// `PATCH /v1/{kind}/{name}`: a JSON merge patch of the resource's spec, honouring
/// If-Match.
async fn patch(State(app): State<App>, a: Authed, ConnectInfo(Peer(from)): ConnectInfo<Peer>, Path(key): Path<String>, h: HeaderMap, body: Body, kind: Kind) -> Result<Response, ApiError> {
    let pic = app.shown.now();
    let resource = tenant::write::patched(&pic.state, &a.caller, kind, &key, &body.json)?;
    let index = tenancy::position(&pic.state, kind, resource.name());
    edit_and_show(app, a, from, Edit::Replace(resource), header_text(&h, "if-match"), None, index, StatusCode::OK).await
}

#[derive(Deserialize)]
struct DeleteQuery {
    #[serde(default)]
    force: bool,
}

/// `DELETE /v1/{kind}/{name}`: 204; a service with live endpoints only with
/// `?force=true`.
async fn delete(State(app): State<App>, a: Authed, ConnectInfo(Peer(from)): ConnectInfo<Peer>, Path(key): Path<String>, h: HeaderMap, Query(q): Query<DeleteQuery>, kind: Kind) -> Result<Response, ApiError> {
    let edit = tenant::write::delete(&app.shown.now().state, &a.caller, kind, &key, q.force)?;
    edit_and_show(app, a, from, edit, header_text(&h, "if-match"), None, None, StatusCode::NO_CONTENT).await
}

/// Hand an edit to the writer with its audit event, and answer with the resource as it
/// is then (nothing for a delete), or the spec's errors at the body's paths (422).
#[allow(clippy::too_many_arguments)]
async fn edit_and_show(app: App, a: Authed, from: std::net::SocketAddr, edit: Edit, if_match: Option<String>, key: Option<(String, String)>, index: Option<usize>, status: StatusCode) -> Result<Response, ApiError> {
    let (kind, name) = (edit.kind(), edit.name().to_string());
    let verb = match edit {
        Edit::Create(_) => "create",
        Edit::Replace(_) => "change",
        Edit::Delete { .. } => "delete",
    };
    let service = match &edit {
        Edit::Create(Resource::Service(s)) | Edit::Replace(Resource::Service(s)) => Some(s.name.clone()),
        Edit::Create(Resource::Endpoint(e)) | Edit::Replace(Resource::Endpoint(e)) => Some(e.service.clone()),
        Edit::Delete { kind: Kind::Service, name, .. } => Some(name.clone()),
        Edit::Delete { kind: Kind::Endpoint, name, .. } => app.shown.now().state.endpoints.get(name).map(|e| e.service.clone()),
        _ => None,
    };
    let who = tenant::Who { caller: &a.caller, token: &a.token, client: from };
    let subject = if kind == Kind::SecurityGroup { format!("{}{name}", tenant::GROUP_SUBJECT) } else { name.clone() };
    // Whom it concerns: the owner of what it makes, changes or deletes, and of the
    // service concerned.
    let pic = app.shown.now();
    let mut accounts = pic.state.owners((kind == Kind::Endpoint).then_some(name.as_str()), service.as_deref());
    match &edit {
        Edit::Create(r) | Edit::Replace(r) => accounts.push(r.owner().0.clone()),
        Edit::Delete { .. } if kind == Kind::SecurityGroup => accounts.extend(pic.state.spec.security_groups.iter().filter(|g| g.name == name).map(|g| g.owner.0.clone())),
        Edit::Delete { .. } => {}
    }
    let audit = who.audit(verb, &kind.to_string(), &subject, service.as_deref(), accounts);
    let req = EditRequest { edit, if_match, key, audit };
    let name = match app.writer.run(|g| g.edit(req)).await? {
        Edited::Done(Ok(_)) => name,
        Edited::Repeated { name } => name,
        Edited::Done(Err(errors)) => return Err(ApiError::invalid(tenant::write::relative(errors, tenant::write::list_of(kind), index))),
    };
    if status == StatusCode::NO_CONTENT {
        return Ok(status.into_response());
    }
    let location = (status == StatusCode::CREATED).then(|| format!("{}/{name}", collection(kind)));
    view_of(&app.shown.now(), &a.caller, kind, &name, status, location)
}

async fn groups(State(app): State<App>, a: Authed) -> Answer<Vec<SecurityGroupView>> {
    Ok(Json(tenant::groups(&app.shown.now(), &a.caller)))
}

async fn group(State(app): State<App>, a: Authed, Path(g): Path<String>) -> Result<Response, ApiError> {
    let pic = app.shown.now();
    let view = tenant::group(&pic, &a.caller, &g)?;
    Ok(tagged(StatusCode::OK, tenant::etag(&pic, Kind::SecurityGroup, &view.name), None, &view))
}

/// A page of a list: `limit` items (all when absent) from the `offset`th.
#[derive(Deserialize)]
struct PageQuery {
    #[serde(default)]
    offset: usize,
    limit: Option<usize>,
}

/// `GET /v1/endpoints[?offset=N&limit=M]`: `X-Total-Count` says how many in all.
async fn endpoints(State(app): State<App>, a: Authed, Query(p): Query<PageQuery>) -> Result<Response, ApiError> {
    let (views, total) = tenant::endpoints(&app.shown.now(), &a.caller, p.offset, p.limit.unwrap_or(usize::MAX))?;
    let mut r = Json::<EndpointsAnswer>(views).into_response();
    r.headers_mut().insert("x-total-count", HeaderValue::from(total));
    Ok(r)
}

async fn endpoint(State(app): State<App>, a: Authed, Path(e): Path<String>) -> Result<Response, ApiError> {
    let pic = app.shown.now();
    let view = tenant::endpoint(&pic, &a.caller, &e)?;
    Ok(tagged(StatusCode::OK, tenant::etag(&pic, Kind::Endpoint, &view.name), None, &view))
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
    /// `false`: every event as an unnamed (`message`) event, for an EventSource that
    /// wants them all in one handler (the console's).
    #[serde(default = "yes")]
    named: bool,
    /// With `watch`: only what is recorded from now on (no backlog).
    #[serde(default)]
    tail: bool,
}

fn yes() -> bool {
    true
}

/// How long a watching stream waits on the feed before it reads the log itself.
const RECHECK: std::time::Duration = std::time::Duration::from_secs(10);

/// `GET /v1/events`: the caller's events after `after`; with `watch=true`, those and
/// then each new one as it is recorded (from the shared `feed`), as server-sent events
/// (`id`: its sequence number, `event`: its kind unless `named=false`, `data`: the
/// event as JSON), until the client leaves.
async fn events(State(app): State<App>, a: Authed, Query(q): Query<EventsQuery>) -> Result<axum::response::Response, ApiError> {
    use axum::response::{sse, IntoResponse};
    use tokio::sync::broadcast::error::RecvError;
    // Subscribed before the first read: nothing recorded in between is missed.
    let feed = app.feed.subscribe();
    let first = if q.watch && q.tail { Vec::new() } else { tenant::events(&app.shown.now(), &a.caller, q.after)? };
    if !q.watch {
        return Ok(Json(first).into_response());
    }
    let after = if q.tail { app.feed.last().max(q.after) } else { first.last().map_or(q.after, |e| e.seq) };
    let named = q.named;
    let start = (app, a.caller, after, std::collections::VecDeque::from(first), feed);
    let stream = futures_util::stream::unfold(start, move |(app, caller, mut after, mut pending, mut feed)| async move {
        loop {
            if let Some(e) = pending.pop_front() {
                after = after.max(e.seq);
                let out = sse::Event::default().id(e.seq.to_string());
                let out = if named { out.event(e.kind.clone()) } else { out };
                return Some((out.json_data(&e), (app, caller, after, pending, feed)));
            }
            match tokio::time::timeout(RECHECK, feed.recv()).await {
                Ok(Ok(e)) if e.seq > after && tenant::sees(&app.shown.now(), &caller, &e) => pending.push_back((*e).clone()),
                Ok(Ok(_)) => {}
                // Fell behind the feed, or heard nothing for a while: read the log itself
                // from where it is (a stalled feed costs latency, never an event).
                Ok(Err(RecvError::Lagged(_))) | Err(_) => pending.extend(tenant::events(&app.shown.now(), &caller, after).ok()?),
                Ok(Err(RecvError::Closed)) => return None,
            }
        }
    });
    Ok(sse::Sse::new(stream).keep_alive(sse::KeepAlive::default()).into_response())
}
