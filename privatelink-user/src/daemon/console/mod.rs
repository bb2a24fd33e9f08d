//! The console: the seeds' screens as server-rendered HTML on the tenant API's own
//! listener, for providers, consumers and the operator. Every read and every change
//! is a request to the tenant API's own router made with the session's token
//! (`Console::call`): the console can do exactly what its token can, through the
//! same handlers, and has no authorization of its own. `session` holds sign-ins and
//! CSRF tokens, `pages` renders the screens of services and endpoints (`operator`:
//! VPCs, nodes, events), `forms` draws and takes the forms (the API's 422 details
//! back beside their fields; `bodies`: their fields in the API's terms), `i18n` has
//! the words in English and Chinese, `assets/` the scripts and styles compiled in.
//! Uses only `http`'s router and `api`'s types.

mod bodies;
mod forms;
mod i18n;
mod operator;
mod pages;
mod session;

use crate::daemon::{api::ErrorBody, http::Peer};
use axum::{
    body::{Body, Bytes},
    extract::{ConnectInfo, FromRequestParts, Path, Query, Request, State},
    http::{header, request::Parts, HeaderMap, HeaderValue, Method, StatusCode},
    middleware::map_response,
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
    Router,
};
pub use i18n::Lang;
use serde::Deserialize;
use session::{cookie, Session, Sessions};
use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};
use tower::ServiceExt;

/// What the console's handlers share.
#[derive(Clone)]
pub struct Console {
    /// The tenant API, called in-process.
    api: Router,
    sessions: Arc<Sessions>,
    /// Where the operator's Grafana dashboard is (`--grafana-url`).
    grafana: Option<String>,
}

/// The console's routes, to be merged beside the API's (`api`: that router).
pub fn router(api: Router, grafana: Option<String>) -> Router {
    let c = Console { api, sessions: Arc::new(Sessions::default()), grafana };
    Router::new()
        .route("/", get(|| async { Redirect::to("/console/") }))
        .route("/console", get(|| async { Redirect::to("/console/") }))
        .route("/console/", get(home))
        .route("/console/sign-in", get(sign_in_page).post(sign_in))
        .route("/console/sign-out", post(sign_out))
        .route("/console/lang", get(switch_lang))
        .route("/console/assets/{file}", get(asset))
        .route("/console/v1/{*rest}", get(proxy))
        .route("/console/services", get(pages::services).post(forms::create_service))
        .route("/console/services/new", get(forms::new_service))
        .route("/console/services/{s}", get(pages::service))
        .route("/console/services/{s}/edit", get(forms::edit_service).post(forms::change_service))
        .route("/console/services/{s}/delete", get(forms::confirm_delete_service).post(forms::delete_service))
        .route("/console/services/{s}/connections/{e}/{verb}", post(forms::decide))
        .route("/console/available", get(pages::available))
        .route("/console/endpoints", get(pages::endpoints).post(forms::create_endpoint))
        .route("/console/endpoints/new", get(forms::new_endpoint))
        .route("/console/endpoints/{e}", get(pages::endpoint))
        .route("/console/endpoints/{e}/delete", get(forms::confirm_delete_endpoint).post(forms::delete_endpoint))
        .route("/console/vpcs", get(operator::vpcs))
        .route("/console/nodes", get(operator::nodes))
        .route("/console/events", get(operator::events))
        .layer(map_response(secure))
        .with_state(c)
}

/// What every console answer carries: a policy that runs only the console's own
/// scripts and styles, no framing, no sniffing, no referrer to other sites; pages are
/// not cached.
async fn secure(mut r: Response) -> Response {
    let h = r.headers_mut();
    let csp = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(csp));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // `no-referrer` would make Chromium send `Origin: null` with every form.
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    r
}

/// A signed-in request: its session, language and client address.
pub struct Ctx {
    pub s: Arc<Session>,
    pub lang: Lang,
    pub peer: SocketAddr,
    /// An htmx request (answer a fragment's page; redirects by `HX-Redirect`).
    pub htmx: bool,
}

fn peer_of(parts: &Parts) -> SocketAddr {
    parts.extensions.get::<ConnectInfo<Peer>>().map_or(SocketAddr::from(([127, 0, 0, 1], 0)), |c| c.0 .0)
}

/// A state-changing request must come from a page of this console: its `Origin` (when
/// sent) names this host, and the browser does not call it cross-site. The form's
/// CSRF token is checked by `forms` besides.
fn same_origin(headers: &HeaderMap) -> bool {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    let origin_ok = match headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) {
        None => true,
        Some(o) => o.split_once("://").is_some_and(|(_, h)| h == host),
    };
    let site_ok = headers.get("sec-fetch-site").and_then(|s| s.to_str().ok()).is_none_or(|s| s == "same-origin" || s == "none");
    origin_ok && site_ok
}

impl FromRequestParts<Console> for Ctx {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, c: &Console) -> Result<Ctx, Response> {
        let lang = Lang::of(&parts.headers, cookie(&parts.headers, session::LANG_COOKIE));
        let htmx = parts.headers.contains_key("hx-request");
        if parts.method != Method::GET && !same_origin(&parts.headers) {
            return Err(pages::message(lang, StatusCode::FORBIDDEN, lang.t("stale_form")));
        }
        match c.sessions.find(&parts.headers, Instant::now()) {
            Some(s) => Ok(Ctx { s, lang, peer: peer_of(parts), htmx }),
            None => Err(to_sign_in(htmx)),
        }
    }
}

/// Back to the sign-in page (an htmx request is told to go there whole).
fn to_sign_in(htmx: bool) -> Response {
    if htmx {
        (StatusCode::UNAUTHORIZED, [("hx-redirect", "/console/sign-in")]).into_response()
    } else {
        Redirect::to("/console/sign-in").into_response()
    }
}

/// What the API answered to a call.
pub struct Reply {
    pub status: StatusCode,
    pub etag: Option<String>,
    /// `X-Total-Count` of a paged list.
    pub total: Option<usize>,
    pub body: Bytes,
}

impl Reply {
    /// The API's error body (or one made of the status).
    pub fn error(&self) -> ErrorBody {
        serde_json::from_slice(&self.body).unwrap_or(ErrorBody { error: self.status.to_string(), status: self.status.as_u16(), errors: Vec::new() })
    }
}

/// A page's answer: the page, or the page that says why not.
pub type Page = Result<Response, Response>;

impl Console {
    /// A request to the tenant API's own router with `bearer` (an `Authorization`
    /// value), as from `peer`: the answer as the API gives it (a stream stays one).
    async fn send(&self, bearer: &str, peer: SocketAddr, method: Method, path: &str, body: Option<&serde_json::Value>, headers: &[(&'static str, String)]) -> Response {
        let mut req = Request::builder().method(method).uri(path).header(header::AUTHORIZATION, bearer);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let body = match body {
            Some(b) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Body::from(serde_json::to_vec(b).unwrap_or_default())
            }
            None => Body::empty(),
        };
        let mut req = match req.body(body) {
            Ok(r) => r,
            // A path or header a request cannot carry (what a page put in it).
            Err(_) => return StatusCode::BAD_REQUEST.into_response(),
        };
        req.extensions_mut().insert(ConnectInfo(Peer(peer)));
        match self.api.clone().oneshot(req).await {
            Ok(r) => r,
            Err(e) => match e {},
        }
    }

    /// A request to the tenant API as the session's token, from the session's client.
    pub async fn call(&self, ctx: &Ctx, method: Method, path: &str, body: Option<&serde_json::Value>, headers: &[(&'static str, String)]) -> Reply {
        let r = self.send(&ctx.s.bearer, ctx.peer, method, path, body, headers).await;
        let status = r.status();
        let etag = r.headers().get(header::ETAG).and_then(|v| v.to_str().ok()).map(str::to_string);
        let total = r.headers().get("x-total-count").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
        let body = axum::body::to_bytes(r.into_body(), 64 << 20).await.unwrap_or_default();
        if status == StatusCode::UNAUTHORIZED {
            // The token stopped working: so does the session.
            self.sessions.close(&ctx.s.id);
        }
        Reply { status, etag, total, body }
    }

    /// A read the page cannot do without: its answer, or the page saying why not.
    pub async fn get<T: serde::de::DeserializeOwned>(&self, ctx: &Ctx, path: &str) -> Result<(T, Option<String>), Response> {
        self.read(ctx, path).await.map(|(v, r)| (v, r.etag))
    }

    /// A page of a list: the page, and how many there are in all.
    pub async fn list<T: serde::de::DeserializeOwned>(&self, ctx: &Ctx, path: &str) -> Result<(T, usize), Response> {
        self.read(ctx, path).await.map(|(v, r)| (v, r.total.unwrap_or(0)))
    }

    async fn read<T: serde::de::DeserializeOwned>(&self, ctx: &Ctx, path: &str) -> Result<(T, Reply), Response> {
        let r = self.call(ctx, Method::GET, path, None, &[]).await;
        if r.status == StatusCode::UNAUTHORIZED {
            return Err(to_sign_in(ctx.htmx));
        }
        if !r.status.is_success() {
            let e = r.error();
            return Err(pages::message(ctx.lang, r.status, &e.error));
        }
        match serde_json::from_slice(&r.body) {
            Ok(v) => Ok((v, r)),
            Err(e) => Err(pages::message(ctx.lang, StatusCode::INTERNAL_SERVER_ERROR, &format!("reading the API's answer: {e}"))),
        }
    }
}

async fn home(ctx: Ctx) -> Redirect {
    Redirect::to(if ctx.s.operator() { "/console/nodes" } else { "/console/services" })
}

async fn sign_in_page(State(c): State<Console>, headers: HeaderMap) -> Response {
    if c.sessions.find(&headers, Instant::now()).is_some() {
        return Redirect::to("/console/").into_response();
    }
    let lang = Lang::of(&headers, cookie(&headers, session::LANG_COOKIE));
    pages::sign_in(lang, None)
}

#[derive(Deserialize)]
struct SignIn {
    token: String,
}

/// Sign in: the token is asked of the API (`/v1/whoami`); only a token it accepts
/// makes a session.
async fn sign_in(State(c): State<Console>, ConnectInfo(Peer(peer)): ConnectInfo<Peer>, headers: HeaderMap, axum::Form(f): axum::Form<SignIn>) -> Response {
    let lang = Lang::of(&headers, cookie(&headers, session::LANG_COOKIE));
    if !same_origin(&headers) {
        return pages::message(lang, StatusCode::FORBIDDEN, lang.t("stale_form"));
    }
    let token = f.token.trim();
    if token.is_empty() || token.len() > 512 || !token.is_ascii() {
        return pages::sign_in(lang, Some(lang.t("bad_token")));
    }
    let r = c.send(&format!("Bearer {token}"), peer, Method::GET, "/v1/whoami", None, &[]).await;
    if !r.status().is_success() {
        let body = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap_or_default();
        let why = serde_json::from_slice::<ErrorBody>(&body).map(|e| e.error).unwrap_or_default();
        return pages::sign_in(lang, Some(&format!("{}: {why}", lang.t("bad_token"))));
    }
    let body = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap_or_default();
    let Ok(who) = serde_json::from_slice::<crate::daemon::api::WhoAmI>(&body) else { return pages::sign_in(lang, Some(lang.t("bad_token"))) };
    let Some(s) = c.sessions.open(format!("Bearer {token}"), who.account, who.token, who.read_only, Instant::now()) else {
        return pages::message(lang, StatusCode::SERVICE_UNAVAILABLE, "too many console sessions; try again later");
    };
    tracing::info!(token = %s.token_name, account = s.account.as_deref().unwrap_or("operator"), client = %peer, "console sign-in");
    ([(header::SET_COOKIE, session::set_cookie(&s.id, session::LIFETIME))], Redirect::to("/console/")).into_response()
}

#[derive(Deserialize)]
pub struct CsrfOnly {
    #[serde(default)]
    csrf: String,
}

async fn sign_out(ctx: Ctx, State(c): State<Console>, axum::Form(f): axum::Form<CsrfOnly>) -> Response {
    if !ctx.s.csrf_ok(&f.csrf) {
        return pages::message(ctx.lang, StatusCode::FORBIDDEN, ctx.lang.t("stale_form"));
    }
    c.sessions.close(&ctx.s.id);
    ([(header::SET_COOKIE, session::set_cookie("", Duration::ZERO))], Redirect::to("/console/sign-in")).into_response()
}

#[derive(Deserialize)]
struct LangQuery {
    to: String,
    #[serde(default)]
    back: String,
}

/// Switch the language and go back to the page (only a page of the console).
async fn switch_lang(Query(q): Query<LangQuery>) -> Response {
    let lang = Lang::parse(&q.to).unwrap_or(Lang::En);
    let back = if q.back.starts_with("/console/") && !q.back.contains("//") && !q.back.contains('\\') { q.back } else { "/console/".into() };
    let cookie = format!("{}={}; Path=/; Secure; SameSite=Strict; Max-Age=31536000", session::LANG_COOKIE, lang.code());
    ([(header::SET_COOKIE, cookie)], Redirect::to(&back)).into_response()
}

/// The scripts and styles, from inside the binary.
async fn asset(Path(file): Path<String>) -> Response {
    let (body, kind): (&'static [u8], &str) = match file.as_str() {
        "htmx.min.js" => (include_bytes!("assets/htmx.min.js"), "text/javascript"),
        "uplot.min.js" => (include_bytes!("assets/uplot.min.js"), "text/javascript"),
        "uplot.min.css" => (include_bytes!("assets/uplot.min.css"), "text/css"),
        "console.js" => (include_bytes!("assets/console.js"), "text/javascript"),
        "console.css" => (include_bytes!("assets/console.css"), "text/css"),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    ([(header::CONTENT_TYPE, kind), (header::CACHE_CONTROL, "private, max-age=3600")], body).into_response()
}

/// `GET /console/v1/...`: the tenant API's reads for the console's scripts (graphs'
/// series, the event stream), as the session's token. Reads only.
async fn proxy(ctx: Ctx, State(c): State<Console>, req: Request) -> Response {
    let Some(path) = req.uri().path_and_query().map(|p| p.as_str().trim_start_matches("/console").to_string()) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    c.send(&ctx.s.bearer, ctx.peer, Method::GET, &path, None, &[]).await
}
