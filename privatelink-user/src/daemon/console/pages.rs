//! The console's screens, rendered on the server from what the tenant API answers (maud
//! escapes every value: names and descriptions are tenants' input). Live regions
//! (`live`) are fetched again by htmx whenever the event stream says something
//! changed; graphs are drawn by `console.js` with uPlot from the history reads.

use super::{i18n::Lang, Console, Ctx, Page};
use crate::daemon::api::*;
use axum::{
    extract::{Path, Query, State},
    http::StatusCode,
    response::{Html, IntoResponse, Response},
};
use maud::{html, Markup, DOCTYPE};
use serde::Deserialize;

/// Path segments and query values put into links.
pub fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn head(lang: Lang, title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            meta name="htmx-config" content=r#"{"includeIndicatorStyles":false,"allowEval":false,"allowScriptTags":false}"#;
            title { (title) " · " (lang.t("title")) }
            link rel="stylesheet" href="/console/assets/uplot.min.css";
            link rel="stylesheet" href="/console/assets/console.css";
            script src="/console/assets/htmx.min.js" defer {}
            script src="/console/assets/uplot.min.js" defer {}
            script src="/console/assets/console.js" defer {}
        }
    }
}

/// A whole page for a signed-in session: the header with the account and the menu,
/// then `body`. `here`: the page's own path (the language switch comes back to it).
pub fn layout(ctx: &Ctx, here: &str, title: &str, body: Markup) -> Response {
    let t = |k| ctx.lang.t(k);
    let mut menu: Vec<(&str, &str)> = Vec::new();
    if ctx.s.operator() {
        menu.extend([("/console/nodes", t("nodes")), ("/console/vpcs", t("vpcs")), ("/console/services", t("my_services")), ("/console/endpoints", t("my_endpoints"))]);
    } else {
        menu.extend([("/console/services", t("my_services")), ("/console/available", t("available")), ("/console/endpoints", t("my_endpoints")), ("/console/vpcs", t("vpcs"))]);
    }
    menu.push(("/console/events", t("events")));
    let page = html! {
        (DOCTYPE)
        html lang=(ctx.lang.code()) {
            (head(ctx.lang, title))
            body data-live="/console/v1/events?watch=true&tail=true" {
                a.skip href="#main" { "Skip to content" }
                header {
                    strong.brand { (t("title")) }
                    nav aria-label="menu" {
                        ul { @for (href, label) in &menu { li { a href=(href) aria-current=[here.starts_with(href).then_some("page")] { (label) } } } }
                    }
                    div.who {
                        span { (t("signed_in_as")) " " strong #account { (ctx.s.account.as_deref().unwrap_or(t("operator"))) } }
                        @if ctx.s.read_only { " (" (t("read_only")) ")" }
                        a #lang href={ "/console/lang?to=" (ctx.lang.other().code()) "&back=" (enc(here)) } lang=(ctx.lang.other().code()) { (t("language")) }
                        form method="post" action="/console/sign-out" {
                            input type="hidden" name="csrf" value=(ctx.s.csrf);
                            button #sign-out type="submit" { (t("sign_out")) }
                        }
                    }
                }
                main #main tabindex="-1" {
                    h1 { (title) }
                    (body)
                }
            }
        }
    };
    Html(page.into_string()).into_response()
}

/// A page with a message (an error, a refusal), signed in or not.
pub fn message(lang: Lang, status: StatusCode, text: &str) -> Response {
    let page = html! {
        (DOCTYPE)
        html lang=(lang.code()) {
            (head(lang, lang.t("failed")))
            body {
                main #main {
                    h1 { (status.as_u16()) " " (status.canonical_reason().unwrap_or("")) }
                    p.error role="alert" { (text) }
                    p { a href="/console/" { (lang.t("title")) } }
                }
            }
        }
    };
    (status, Html(page.into_string())).into_response()
}

pub fn sign_in(lang: Lang, error: Option<&str>) -> Response {
    let page = html! {
        (DOCTYPE)
        html lang=(lang.code()) {
            (head(lang, lang.t("sign_in")))
            body {
                main #main.narrow {
                    h1 { (lang.t("title")) }
                    form method="post" action="/console/sign-in" {
                        label for="token" { (lang.t("token")) }
                        input #token type="password" name="token" autocomplete="off" required aria-describedby="token-help" aria-invalid=[error.map(|_| "true")];
                        p #token-help.help { (lang.t("token_help")) }
                        @if let Some(e) = error { p.error #token-error role="alert" { (e) } }
                        button #sign-in type="submit" { (lang.t("sign_in")) }
                    }
                    p { a href={ "/console/lang?to=" (lang.other().code()) "&back=%2Fconsole%2Fsign-in" } lang=(lang.other().code()) { (lang.t("language")) } }
                }
            }
        }
    };
    let status = if error.is_some() { StatusCode::UNAUTHORIZED } else { StatusCode::OK };
    (status, Html(page.into_string())).into_response()
}

/// An endpoint's state in the seeds' words.
pub fn state_word(lang: Lang, s: &str) -> &'static str {
    match s {
        "pendingAcceptance" => lang.t("pendingAcceptance"),
        "accepted" => lang.t("accepted"),
        "rejected" => lang.t("rejected"),
        "revoked" => lang.t("revoked"),
        _ => "?",
    }
}

fn state_badge(lang: Lang, s: &str) -> Markup {
    html! { span class={ "state " (s) } data-state=(s) { (state_word(lang, s)) } }
}

fn copyable(ctx: &Ctx, text: &str) -> Markup {
    html! { code { (text) } " " button.copy type="button" data-copy=(text) data-done=(ctx.lang.t("copied")) { (ctx.lang.t("copy")) } }
}

/// A region fetched again (from `url`) when an event arrives.
pub(super) fn live(id: &str, url: &str, inner: Markup) -> Markup {
    html! { section id=(id) hx-get=(url) hx-select={ "#" (id) } hx-target="this" hx-swap="outerHTML" hx-trigger="pl-event from:body" { (inner) } }
}

pub(super) fn nothing(ctx: &Ctx) -> Markup {
    html! { p.empty { (ctx.lang.t("nothing")) } }
}

/// Graphs of a history read (`src`: its console path), with the live count beside.
fn graphs(ctx: &Ctx, src: &str, active: u64, limit: i64) -> Markup {
    let t = |k| ctx.lang.t(k);
    html! {
        section.graphs aria-labelledby="graphs-title" {
            h2 #graphs-title { (t("graphs")) }
            p { (t("live_connections")) ": " strong #live-count data-src=(src) { (active) } " / " span #limit { (limit) } }
            div.charts {
                figure { figcaption { (t("conn_graph")) } div.chart data-src=(src) data-kind="conn" data-labels={ (t("live_connections")) "|" (t("connection_limit")) } {} }
                figure { figcaption { (t("rate_graph")) } div.chart data-src=(src) data-kind="rate" data-labels="new/s|drops/s" {} }
                figure { figcaption { (t("bytes_graph")) } div.chart data-src=(src) data-kind="bytes" data-labels="in B/s|out B/s" {} }
            }
        }
    }
}

pub(super) fn drops_table(ctx: &Ctx, drops: &std::collections::BTreeMap<String, u64>) -> Markup {
    html! {
        @if drops.is_empty() { (nothing(ctx)) } @else {
            table { tbody { @for (reason, n) in drops { tr { th scope="row" { (reason) } td.num { (n) } } } } }
        }
    }
}

pub async fn services(ctx: Ctx, State(c): State<Console>) -> Page {
    let (a, _): (ServicesAnswer, _) = c.get(&ctx, "/v1/services").await?;
    let t = |k| ctx.lang.t(k);
    let body = html! {
        @if !ctx.s.read_only { p { a.button #create-service href="/console/services/new" { (t("create_service")) } } }
        @if a.own.is_empty() { (nothing(&ctx)) } @else {
            (live("services", "/console/services", html! {
                div.scroll { table {
                    thead { tr { th { (t("name")) } th { (t("id")) } th { (t("vpc")) } th { (t("my_endpoints")) } th { (t("whitelist")) } th { (t("auto_accept")) } } }
                    tbody { @for s in &a.own { tr {
                        td { a href={ "/console/services/" (enc(&s.name)) } { (s.name) } }
                        td { code { (s.id) } }
                        td { (s.vpc) }
                        td.num { (s.endpoints.len()) }
                        td { (s.allowed_accounts.join(", ")) }
                        td { @if s.auto_accept { "✓" } }
                    } } }
                } }
            }))
        }
    };
    Ok(layout(&ctx, "/console/services", t("my_services"), body))
}

pub async fn service(ctx: Ctx, State(c): State<Console>, Path(name): Path<String>, Query(q): Query<PageNo>) -> Page {
    let base = format!("/console/services/{}", enc(&name));
    let here = if q.page == 0 { base.clone() } else { format!("{base}?page={}", q.page) };
    let (answer, _): (ServiceAnswer, _) = c.get(&ctx, &format!("/v1/services/{}", enc(&name))).await?;
    let t = |k| ctx.lang.t(k);
    let ServiceAnswer::Own(s) = answer else {
        return Err(message(ctx.lang, StatusCode::NOT_FOUND, t("not_found")));
    };
    let (conns, _): (Vec<ConnectionView>, _) = c.get(&ctx, &format!("/v1/services/{}/connections", enc(&s.name))).await?;
    let api_managed = s.managed_by == ManagedBy::Api;
    let writable = api_managed && !ctx.s.read_only;
    let active: u64 = conns.iter().map(|c| c.active_connections).sum();
    let total = conns.len();
    let first = q.page.saturating_mul(PER_PAGE).min(total);
    let shown = &conns[first..(first + PER_PAGE).min(total)];
    let body = html! {
        @if !api_managed { p.note { (t("managed_by_spec")) } }
        @if writable { p.actions {
            a.button #edit href={ (base) "/edit" } { (t("edit")) } " "
            a.button.danger #delete href={ (base) "/delete" } { (t("delete")) }
        } }
        dl.facts {
            dt { (t("full_name")) } dd { (copyable(&ctx, &s.full_name)) }
            dt { (t("id")) } dd { code { (s.id) } }
            dt { (t("vpc")) } dd { (s.vpc) }
            dt { (t("ports")) } dd { @for p in &s.ports { span.tag { (p.protocol) " " (p.endpoint_port) " → " (p.service_port) } " " } }
            dt { (t("whitelist")) } dd { (s.allowed_accounts.join(", ")) }
            dt { (t("auto_accept")) } dd { @if s.auto_accept { "✓" } @else { "—" } }
            dt { (t("connection_limit")) } dd { (s.connection_limit) }
            @if !s.dns_names.is_empty() { dt { (t("dns_name")) } dd { @for n in &s.dns_names { (copyable(&ctx, n)) br; } } }
            @if let Some(d) = &s.description { dt { (t("description")) } dd { (d) } }
        }
        h2 { (t("connections")) }
        (live("connections", &here, html! {
            (pager(&ctx, &base, q.page, shown.len(), total))
            @if shown.is_empty() { (nothing(&ctx)) } @else {
                div.scroll { table {
                    thead { tr { th { (t("id")) } th { (t("name")) } th { (t("owner")) } th { (t("state")) } th { (t("live_connections")) } th { span.visually-hidden { (t("accept")) } } } }
                    tbody { @for e in shown { tr data-endpoint=(e.endpoint) {
                        td { code { (e.endpoint_id) } }
                        td { (e.endpoint) }
                        td { (e.account) }
                        td { (state_badge(ctx.lang, &e.state)) }
                        td.num { (e.active_connections) }
                        td { @if !ctx.s.read_only {
                            @if e.state != "accepted" { (decision(&ctx, &s.name, &e.endpoint, "accept")) }
                            @if e.state != "rejected" { (decision(&ctx, &s.name, &e.endpoint, "reject")) }
                        } }
                    } } }
                } }
            }
        }))
        h2 { (t("health")) }
        div.scroll { table {
            thead { tr { th { (t("address")) } th { (t("zone")) } th { (t("state")) } } }
            tbody { @for b in &s.backends { tr {
                td { code { (b.address) } }
                td { (b.zone.as_deref().unwrap_or("—")) }
                td { span class={ "health " (health_class(b.fleet_health)) } { (health_word(ctx.lang, b.fleet_health)) } @if let Some(e) = &b.last_error { " " small { (e) } } }
            } } }
        } }
        (graphs(&ctx, &format!("/console/v1/services/{}/history", enc(&s.name)), active, s.connection_limit.saturating_mul(total as i64)))
    };
    Ok(layout(&ctx, &here, &s.name, body))
}

fn decision(ctx: &Ctx, service: &str, endpoint: &str, verb: &'static str) -> Markup {
    html! {
        form.inline method="post" action={ "/console/services/" (enc(service)) "/connections/" (enc(endpoint)) "/" (verb) } {
            input type="hidden" name="csrf" value=(ctx.s.csrf);
            button class=(verb) type="submit" data-for=(endpoint) aria-label={ (ctx.lang.t(verb)) " " (endpoint) } { (ctx.lang.t(verb)) }
        }
    }
}

fn health_class(h: Health) -> &'static str {
    match h {
        Health::Up => "up",
        Health::Down => "down",
        Health::Unchecked => "unchecked",
    }
}

fn health_word(lang: Lang, h: Health) -> &'static str {
    lang.t(health_class(h))
}

pub async fn available(ctx: Ctx, State(c): State<Console>) -> Page {
    let (a, _): (ServicesAnswer, _) = c.get(&ctx, "/v1/services").await?;
    let t = |k| ctx.lang.t(k);
    let body = html! {
        @if a.available.is_empty() { (nothing(&ctx)) } @else {
            div.scroll { table {
                thead { tr { th { (t("full_name")) } th { (t("owner")) } th { (t("ports")) } th { (t("zones")) } th { (t("dns_name")) } th { span.visually-hidden { (t("create_endpoint")) } } } }
                tbody { @for s in &a.available { tr data-service=(s.name) {
                    td { (copyable(&ctx, &s.full_name)) }
                    td { (s.owner) }
                    td { @for p in &s.ports { span.tag { (p.protocol) " " (p.endpoint_port) } " " } }
                    td { (s.zones.join(", ")) }
                    td { (s.private_dns_name.as_deref().unwrap_or("—")) }
                    td { @if !ctx.s.read_only { a.button href={ "/console/endpoints/new?service=" (enc(&s.full_name)) } aria-label={ (t("create_endpoint")) " " (s.name) } { (t("create_endpoint")) } } }
                } } }
            } }
        }
    };
    Ok(layout(&ctx, "/console/available", t("available"), body))
}

/// Rows a page of a long list shows.
pub const PER_PAGE: usize = 50;

#[derive(Deserialize)]
pub struct PageNo {
    #[serde(default)]
    page: usize,
}

/// "1–50 of 10000" with the links to the pages before and after.
fn pager(ctx: &Ctx, base: &str, page: usize, shown: usize, total: usize) -> Markup {
    let first = page * PER_PAGE;
    html! {
        @if total > PER_PAGE {
            nav.pager aria-label=(ctx.lang.t("pages")) {
                @if page > 0 { a rel="prev" href={ (base) "?page=" (page - 1) } { "← " (ctx.lang.t("previous")) } " " }
                span #page-range { (first + 1) "–" (first + shown) " / " (total) }
                @if first + shown < total { " " a rel="next" href={ (base) "?page=" (page + 1) } { (ctx.lang.t("next")) " →" } }
            }
        }
    }
}

pub async fn endpoints(ctx: Ctx, State(c): State<Console>, Query(q): Query<PageNo>) -> Page {
    let page = q.page.min(usize::MAX / PER_PAGE - 1);
    let (eps, total): (Vec<EndpointView>, _) = c.list(&ctx, &format!("/v1/endpoints?offset={}&limit={PER_PAGE}", page * PER_PAGE)).await?;
    let t = |k| ctx.lang.t(k);
    let here = if page == 0 { "/console/endpoints".to_string() } else { format!("/console/endpoints?page={page}") };
    let body = html! {
        @if !ctx.s.read_only && !ctx.s.operator() { p { a.button href="/console/available" { (t("create_endpoint")) } } }
        (live("endpoints", &here, html! {
            (pager(&ctx, "/console/endpoints", page, eps.len(), total))
            @if eps.is_empty() { (nothing(&ctx)) } @else {
                div.scroll { table {
                    thead { tr { th { (t("name")) } th { (t("id")) } th { (t("state")) } th { (t("service")) } th { (t("vpc")) } th { (t("address")) } th { (t("domain_names")) } th { (t("snat_ips")) } } }
                    tbody { @for e in &eps { tr data-endpoint=(e.name) {
                        td { a href={ "/console/endpoints/" (enc(&e.name)) } { (e.name) } }
                        td { code { (e.id) } }
                        td { (state_badge(ctx.lang, &e.state)) }
                        td { (e.service) }
                        td { (e.vpc) }
                        td { code { (e.ip) } }
                        td { @for n in &e.dns_names { (copyable(&ctx, &n.name)) br; } }
                        td { @for ip in &e.snat_ips { code { (ip) } " " } }
                    } } }
                } }
            }
        }))
    };
    Ok(layout(&ctx, &here, t("my_endpoints"), body))
}

pub async fn endpoint(ctx: Ctx, State(c): State<Console>, Path(name): Path<String>) -> Page {
    let here = format!("/console/endpoints/{}", enc(&name));
    let (e, _): (EndpointView, _) = c.get(&ctx, &format!("/v1/endpoints/{}", enc(&name))).await?;
    let (stats, _): (EndpointStats, _) = c.get(&ctx, &format!("/v1/endpoints/{}/stats", enc(&e.name))).await?;
    let t = |k| ctx.lang.t(k);
    let own = ctx.s.account.as_deref().is_none_or(|a| a == e.owner);
    let body = html! {
        @if e.managed_by != ManagedBy::Api { p.note { (t("managed_by_spec")) } }
        @else if own && !ctx.s.read_only { p.actions { a.button.danger #delete href={ (here) "/delete" } { (t("delete")) } } }
        (live("endpoint", &here, html! {
            dl.facts {
                dt { (t("state")) } dd { (state_badge(ctx.lang, &e.state)) @if let Some(r) = &e.reason { " " small { (r) } } }
                dt { (t("id")) } dd { code { (e.id) } }
                dt { (t("service")) } dd { (e.service) " " code { (e.service_id) } }
                dt { (t("vpc")) } dd { (e.vpc) }
                dt { (t("address")) } dd { (copyable(&ctx, &e.ip.to_string())) }
                dt { (t("domain_names")) } dd { @for n in &e.dns_names { (copyable(&ctx, &n.name)) br; } @if e.dns_names.is_empty() { "—" } }
                dt { (t("snat_ips")) } dd { @for ip in &e.snat_ips { code { (ip) } " " } }
                dt { (t("security_groups")) } dd { @if e.security_groups.is_empty() { "—" } (e.security_groups.join(", ")) }
                dt { (t("bandwidth")) } dd { @match e.bandwidth_bps { Some(b) => { (b / 1_000_000) " Mbps" }, None => "—" } }
            }
        }))
        (graphs(&ctx, &format!("/console/v1/endpoints/{}/history", enc(&e.name)), e.active_connections, e.connection_limit))
        h2 { (t("drops")) }
        (drops_table(&ctx, &stats.counters.drops))
    };
    Ok(layout(&ctx, &here, &e.name, body))
}
