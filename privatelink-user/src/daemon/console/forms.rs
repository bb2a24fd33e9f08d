//! The console's forms: each is a list of fields drawn the same way (a label, the
//! control, its help, its error), turned into the tenant API's JSON body on submit and
//! sent as the session's token. The API's 422 details come back beside the fields
//! they name (`ports[1].service_port` beside "Port mappings"); everything else above
//! the form. Every form carries the session's CSRF token; a create carries an
//! Idempotency-Key, so a form sent twice makes one resource; an edit carries the
//! ETag it was drawn from, so it never overwrites a change made meanwhile.

use super::{
    pages::{enc, layout, message},
    session::random_id,
    Console, Ctx, Page,
};
use crate::daemon::api::*;
use axum::{
    extract::{Path, Query, State},
    http::{Method, StatusCode},
    response::{IntoResponse, Redirect, Response},
    Form,
};
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::{json, Map, Value};

/// A submitted form: its fields as sent.
type Sent = Form<Vec<(String, String)>>;

struct Values(Vec<(String, String)>);

impl Values {
    fn get(&self, k: &str) -> &str {
        self.0.iter().find(|(n, _)| n == k).map_or("", |(_, v)| v.as_str())
    }
    fn checked(&self, k: &str) -> bool {
        !self.get(k).is_empty()
    }
}

#[derive(Clone, Copy)]
enum Input {
    Text,
    Area,
    Number,
    Check,
    Select,
}

/// One field: its form name, the words of its label and help, its control.
struct Field {
    name: &'static str,
    label: &'static str,
    help: Option<&'static str>,
    input: Input,
    required: bool,
}

const fn field(name: &'static str, label: &'static str, help: Option<&'static str>, input: Input, required: bool) -> Field {
    Field { name, label, help, input, required }
}

const SERVICE_FIELDS: &[Field] = &[
    field("name", "name", None, Input::Text, true),
    field("vpc", "vpc", None, Input::Select, true),
    field("description", "description", None, Input::Text, false),
    field("backends", "backends", Some("backends_help"), Input::Area, false),
    field("ports", "ports", Some("ports_help"), Input::Area, true),
    field("allowed_accounts", "whitelist", Some("whitelist_help"), Input::Text, false),
    field("auto_accept", "auto_accept", None, Input::Check, false),
    field("connection_limit", "connection_limit", None, Input::Number, false),
    field("health_type", "health_check", None, Input::Select, false),
    field("health_port", "health_port", None, Input::Number, false),
    field("health_path", "health_path", None, Input::Text, false),
    field("private_dns_name", "dns_name", None, Input::Text, false),
];

const ENDPOINT_FIELDS: &[Field] = &[
    field("name", "name", None, Input::Text, true),
    field("service", "service", None, Input::Text, true),
    field("vpc", "vpc", None, Input::Select, true),
    field("ip", "address", Some("address_help"), Input::Text, false),
    field("zone_ips", "zone_ips", Some("zone_ips_help"), Input::Area, false),
    field("security_groups", "security_groups", Some("security_groups_help"), Input::Text, false),
    field("bandwidth", "bandwidth", Some("bandwidth_help"), Input::Text, false),
    field("private_dns", "private_dns", None, Input::Check, false),
];

/// Errors by field name ("" for the form as a whole).
type Errors = Vec<(String, String)>;

/// The form field an API error path belongs to (`ports[0].service_port` -> `ports`).
fn field_of(path: &str, fields: &[Field]) -> String {
    let first = path.split(['.', '[']).next().unwrap_or("");
    let first = if first == "health_check" { "health_type" } else { first };
    if fields.iter().any(|f| f.name == first) { first.to_string() } else { String::new() }
}

#[allow(clippy::too_many_arguments)]
fn draw(ctx: &Ctx, action: &str, fields: &[Field], v: &Values, errors: &Errors, options: &[(&str, Vec<String>)], hidden: &[(&str, String)], submit: &'static str, locked: &[&str]) -> Markup {
    let t = |k| ctx.lang.t(k);
    let general: Vec<&String> = errors.iter().filter(|(f, _)| f.is_empty()).map(|(_, m)| m).collect();
    html! {
        @if !general.is_empty() { div.error #form-errors role="alert" { @for m in &general { p { (m) } } } }
        form.resource method="post" action=(action) novalidate {
            input type="hidden" name="csrf" value=(ctx.s.csrf);
            @for (k, val) in hidden { input type="hidden" name=(k) value=(val); }
            @for f in fields {
                @let id = format!("f-{}", f.name);
                @let mine: Vec<&String> = errors.iter().filter(|(n, _)| n == f.name).map(|(_, m)| m).collect();
                @let described = format!("{}{}", if f.help.is_some() { format!("{id}-help ") } else { String::new() }, if mine.is_empty() { String::new() } else { format!("{id}-error") });
                @let invalid = (!mine.is_empty()).then_some("true");
                @let ro = locked.contains(&f.name);
                div.field {
                    @match f.input {
                        Input::Check => {
                            input id=(id) type="checkbox" name=(f.name) value="on" checked[v.checked(f.name)] aria-describedby=[(!described.is_empty()).then_some(described.trim())] disabled[ro];
                            label for=(id) { (t(f.label)) }
                        }
                        Input::Area => {
                            label for=(id) { (t(f.label)) }
                            textarea id=(id) name=(f.name) rows="3" required[f.required] aria-invalid=[invalid] aria-describedby=[(!described.is_empty()).then_some(described.trim())] { (v.get(f.name)) }
                        }
                        Input::Select => {
                            label for=(id) { (t(f.label)) }
                            @let opts = options.iter().find(|(n, _)| *n == f.name).map(|(_, o)| o.clone()).unwrap_or_default();
                            select id=(id) name=(f.name) required[f.required] aria-invalid=[invalid] aria-describedby=[(!described.is_empty()).then_some(described.trim())] disabled[ro] {
                                @for o in &opts { option value=(o) selected[v.get(f.name) == o] { @if o.is_empty() { "—" } @else { (o) } } }
                            }
                            @if ro { input type="hidden" name=(f.name) value=(v.get(f.name)); }
                        }
                        Input::Text | Input::Number => {
                            label for=(id) { (t(f.label)) }
                            input id=(id) name=(f.name) type=(if matches!(f.input, Input::Number) { "number" } else { "text" }) value=(v.get(f.name)) required[f.required] readonly[ro] aria-invalid=[invalid] aria-describedby=[(!described.is_empty()).then_some(described.trim())];
                        }
                    }
                    @if let Some(h) = f.help { p.help id={ (id) "-help" } { (t(h)) } }
                    @if !mine.is_empty() { p.error id={ (id) "-error" } role="alert" { @for m in &mine { (m) " " } } }
                }
            }
            button #submit type="submit" { (t(submit)) }
        }
    }
}

fn words(s: &str) -> Vec<Value> {
    s.split([',', ' ', '\n', '\t']).map(str::trim).filter(|w| !w.is_empty()).map(|w| json!(w)).collect()
}

/// A number as the API expects one; anything else is sent as written, for the API to
/// say what is wrong with it at its path.
fn number(s: &str) -> Value {
    s.trim().parse::<i64>().map_or_else(|_| json!(s.trim()), |n| json!(n))
}

fn lines(s: &str) -> impl Iterator<Item = (usize, &str)> {
    s.lines().map(str::trim).enumerate().filter(|(_, l)| !l.is_empty())
}

/// The service fields of a form as the API's body; errors of lines that cannot be read.
fn service_body(v: &Values, errors: &mut Errors) -> Map<String, Value> {
    let mut backends = Vec::new();
    for (i, line) in lines(v.get("backends")) {
        let mut words = line.split_whitespace();
        let mut b = Map::new();
        b.insert("address".into(), json!(words.next().unwrap_or("")));
        for w in words {
            match w.split_once('=') {
                Some(("zone", z)) => drop(b.insert("zone".into(), json!(z))),
                Some(("weight", n)) => drop(b.insert("weight".into(), number(n))),
                _ => errors.push(("backends".into(), format!("line {}: `{w}` is not zone=ZONE or weight=N", i + 1))),
            }
        }
        backends.push(Value::Object(b));
    }
    let mut ports = Vec::new();
    for (i, line) in lines(v.get("ports")) {
        match line.split_once(char::is_whitespace).and_then(|(p, rest)| rest.trim().split_once(':').map(|(a, b)| (p, a, b))) {
            Some((proto, from, to)) => ports.push(json!({ "protocol": proto.to_ascii_lowercase(), "endpoint_port": number(from), "service_port": number(to) })),
            None => errors.push(("ports".into(), format!("line {}: write PROTOCOL ENDPOINT_PORT:SERVICE_PORT (tcp 80:8080)", i + 1))),
        }
    }
    let mut m = Map::new();
    m.insert("description".into(), opt(v.get("description")));
    m.insert("backends".into(), json!(backends));
    m.insert("ports".into(), json!(ports));
    m.insert("allowed_accounts".into(), json!(words(v.get("allowed_accounts"))));
    m.insert("auto_accept".into(), json!(v.checked("auto_accept")));
    if !v.get("connection_limit").trim().is_empty() {
        m.insert("connection_limit".into(), number(v.get("connection_limit")));
    }
    m.insert("private_dns_name".into(), opt(v.get("private_dns_name")));
    let check = match v.get("health_type") {
        "" => Value::Null,
        kind => {
            let mut h = Map::new();
            h.insert("type".into(), json!(kind));
            if !v.get("health_port").trim().is_empty() {
                h.insert("port".into(), number(v.get("health_port")));
            }
            if !v.get("health_path").trim().is_empty() {
                h.insert("path".into(), json!(v.get("health_path").trim()));
            }
            Value::Object(h)
        }
    };
    m.insert("health_check".into(), check);
    m
}

/// Empty: null (absent in a create, removed by a merge patch).
fn opt(s: &str) -> Value {
    if s.trim().is_empty() { Value::Null } else { json!(s.trim()) }
}

/// A create's body: nulls left out.
fn without_nulls(m: Map<String, Value>) -> Value {
    Value::Object(m.into_iter().filter(|(_, v)| !v.is_null()).collect())
}

/// The form's values for a service as it is (to edit it).
fn service_values(s: &ServiceView) -> Values {
    let backends: Vec<String> = s
        .backends
        .iter()
        .map(|b| {
            let mut l = b.address.to_string();
            if let Some(z) = &b.zone {
                l.push_str(&format!(" zone={z}"));
            }
            if b.weight != crate::model::spec::DEFAULT_WEIGHT {
                l.push_str(&format!(" weight={}", b.weight));
            }
            l
        })
        .collect();
    let ports: Vec<String> = s.ports.iter().map(|p| format!("{} {}:{}", p.protocol, p.endpoint_port, p.service_port)).collect();
    let h = s.health_check.as_ref();
    Values(vec![
        ("name".into(), s.name.clone()),
        ("vpc".into(), s.vpc.clone()),
        ("description".into(), s.description.clone().unwrap_or_default()),
        ("backends".into(), backends.join("\n")),
        ("ports".into(), ports.join("\n")),
        ("allowed_accounts".into(), s.allowed_accounts.join(", ")),
        ("auto_accept".into(), if s.auto_accept { "on".into() } else { String::new() }),
        ("connection_limit".into(), s.connection_limit.to_string()),
        ("health_type".into(), h.map(|h| h.kind.clone()).unwrap_or_default()),
        ("health_port".into(), h.and_then(|h| h.port).map(|p| p.to_string()).unwrap_or_default()),
        ("health_path".into(), h.map(|h| h.path.clone()).unwrap_or_default()),
        ("private_dns_name".into(), s.private_dns_name.clone().unwrap_or_default()),
    ])
}

fn health_kinds() -> Vec<String> {
    ["", "tcp", "http", "none"].map(String::from).to_vec()
}

/// The VPCs the caller may create in (its own).
async fn my_vpcs(c: &Console, ctx: &Ctx) -> Result<Vec<String>, Response> {
    let (vpcs, _): (Vec<TenantVpc>, _) = c.get(ctx, "/v1/vpcs").await?;
    Ok(vpcs.into_iter().filter(|v| ctx.s.operator() || v.owner == ctx.s.account).map(|v| v.name).collect())
}

fn refused(ctx: &Ctx) -> Response {
    message(ctx.lang, StatusCode::FORBIDDEN, ctx.lang.t("stale_form"))
}

/// What the API said to a submitted form, as errors beside its fields.
fn answer_errors(ctx: &Ctx, r: &super::Reply, fields: &[Field]) -> Errors {
    let e = r.error();
    let mut out: Errors = e.errors.iter().map(|f| (field_of(&f.path, fields), if field_of(&f.path, fields).is_empty() && !f.path.is_empty() { format!("{}: {}", f.path, f.message) } else { f.message.clone() })).collect();
    if r.status == StatusCode::PRECONDITION_FAILED {
        out.push((String::new(), ctx.lang.t("changed_meanwhile").into()));
    } else if out.is_empty() {
        out.push((String::new(), e.error));
    }
    out
}

pub async fn new_service(ctx: Ctx, State(c): State<Console>) -> Page {
    let vpcs = my_vpcs(&c, &ctx).await?;
    let v = Values(vec![("vpc".into(), vpcs.first().cloned().unwrap_or_default()), ("connection_limit".into(), "3000".into())]);
    Ok(service_form(&ctx, &v, &Errors::new(), vpcs, None))
}

fn service_form(ctx: &Ctx, v: &Values, errors: &Errors, vpcs: Vec<String>, editing: Option<(&str, &str)>) -> Response {
    let t = |k| ctx.lang.t(k);
    let options = [("vpc", vpcs), ("health_type", health_kinds())];
    match editing {
        None => {
            // A form drawn again keeps its key: sent twice, it makes one service.
            let key = if v.get("key").is_empty() { random_id() } else { v.get("key").to_string() };
            let hidden = [("key", key)];
            let body = draw(ctx, "/console/services", SERVICE_FIELDS, v, errors, &options, &hidden, "create", &[]);
            with_status(errors, layout(ctx, "/console/services/new", t("create_service"), body))
        }
        Some((name, etag)) => {
            let action = format!("/console/services/{}/edit", enc(name));
            let body = draw(ctx, &action, SERVICE_FIELDS, v, errors, &options, &[("etag", etag.to_string())], "save", &["name", "vpc"]);
            with_status(errors, layout(ctx, &action, &format!("{} · {}", t("edit"), name), body))
        }
    }
}

/// A form drawn again with errors answers 422.
fn with_status(errors: &Errors, mut r: Response) -> Response {
    if !errors.is_empty() {
        *r.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
    }
    r
}

pub async fn create_service(ctx: Ctx, State(c): State<Console>, Form(sent): Sent) -> Page {
    let v = Values(sent);
    if !ctx.s.csrf_ok(v.get("csrf")) {
        return Err(refused(&ctx));
    }
    let mut errors = Errors::new();
    let mut body = service_body(&v, &mut errors);
    body.insert("name".into(), json!(v.get("name").trim()));
    body.insert("vpc".into(), json!(v.get("vpc")));
    if errors.is_empty() {
        let r = c.call(&ctx, Method::POST, "/v1/services", Some(&without_nulls(body)), &[("idempotency-key", v.get("key").to_string())]).await;
        if r.status.is_success() {
            return Ok(Redirect::to(&format!("/console/services/{}", enc(v.get("name").trim()))).into_response());
        }
        errors = answer_errors(&ctx, &r, SERVICE_FIELDS);
    }
    Ok(service_form(&ctx, &v, &errors, my_vpcs(&c, &ctx).await?, None))
}

pub async fn edit_service(ctx: Ctx, State(c): State<Console>, Path(name): Path<String>) -> Page {
    let (answer, etag): (ServiceAnswer, _) = c.get(&ctx, &format!("/v1/services/{}", enc(&name))).await?;
    let ServiceAnswer::Own(s) = answer else { return Err(message(ctx.lang, StatusCode::NOT_FOUND, ctx.lang.t("not_found"))) };
    Ok(service_form(&ctx, &service_values(&s), &Errors::new(), vec![s.vpc.clone()], Some((&s.name, etag.as_deref().unwrap_or("")))))
}

pub async fn change_service(ctx: Ctx, State(c): State<Console>, Path(name): Path<String>, Form(sent): Sent) -> Page {
    let v = Values(sent);
    if !ctx.s.csrf_ok(v.get("csrf")) {
        return Err(refused(&ctx));
    }
    let mut errors = Errors::new();
    let body = Value::Object(service_body(&v, &mut errors));
    if errors.is_empty() {
        let r = c.call(&ctx, Method::PATCH, &format!("/v1/services/{}", enc(&name)), Some(&body), &[("if-match", v.get("etag").to_string())]).await;
        if r.status.is_success() {
            return Ok(Redirect::to(&format!("/console/services/{}", enc(&name))).into_response());
        }
        errors = answer_errors(&ctx, &r, SERVICE_FIELDS);
    }
    let mut v = v;
    v.0.push(("name".into(), name.clone()));
    Ok(service_form(&ctx, &v, &errors, vec![v.get("vpc").to_string()], Some((&name, v.get("etag")))))
}

/// The consoles' confirmation before a delete.
fn confirm(ctx: &Ctx, action: &str, back: &str, what: &str, force: bool) -> Response {
    let t = |k| ctx.lang.t(k);
    let question = t("confirm_delete").replace("%s", what);
    let body = html! {
        form.confirm method="post" action=(action) {
            p role="alert" { (question) }
            input type="hidden" name="csrf" value=(ctx.s.csrf);
            @if force { div.field { input #f-force type="checkbox" name="force" value="on"; label for="f-force" { (t("force_delete")) } } }
            button.danger #confirm type="submit" { (t("delete")) } " "
            a.button href=(back) { (t("cancel")) }
        }
    };
    layout(ctx, action, &format!("{} · {what}", t("delete")), body)
}

pub async fn confirm_delete_service(ctx: Ctx, Path(name): Path<String>) -> Response {
    let here = format!("/console/services/{}", enc(&name));
    confirm(&ctx, &format!("{here}/delete"), &here, &name, true)
}

pub async fn delete_service(ctx: Ctx, State(c): State<Console>, Path(name): Path<String>, Form(sent): Sent) -> Page {
    let v = Values(sent);
    if !ctx.s.csrf_ok(v.get("csrf")) {
        return Err(refused(&ctx));
    }
    let force = if v.checked("force") { "?force=true" } else { "" };
    let r = c.call(&ctx, Method::DELETE, &format!("/v1/services/{}{force}", enc(&name)), None, &[]).await;
    if r.status.is_success() {
        return Ok(Redirect::to("/console/services").into_response());
    }
    Err(message(ctx.lang, r.status, &r.error().error))
}

pub async fn decide(ctx: Ctx, State(c): State<Console>, Path((service, endpoint, verb)): Path<(String, String, String)>, Form(sent): Sent) -> Page {
    let v = Values(sent);
    if !ctx.s.csrf_ok(v.get("csrf")) {
        return Err(refused(&ctx));
    }
    if verb != "accept" && verb != "reject" {
        return Err(message(ctx.lang, StatusCode::NOT_FOUND, ctx.lang.t("not_found")));
    }
    let path = format!("/v1/services/{}/connections/{}/{verb}", enc(&service), enc(&endpoint));
    let r = c.call(&ctx, Method::POST, &path, None, &[]).await;
    if r.status.is_success() {
        return Ok(Redirect::to(&format!("/console/services/{}", enc(&service))).into_response());
    }
    Err(message(ctx.lang, r.status, &r.error().error))
}

#[derive(Deserialize)]
pub struct ForService {
    #[serde(default)]
    service: String,
}

pub async fn new_endpoint(ctx: Ctx, State(c): State<Console>, Query(q): Query<ForService>) -> Page {
    let vpcs = my_vpcs(&c, &ctx).await?;
    let v = Values(vec![("service".into(), q.service), ("vpc".into(), vpcs.first().cloned().unwrap_or_default()), ("private_dns".into(), "on".into())]);
    Ok(endpoint_form(&ctx, &v, &Errors::new(), vpcs))
}

fn endpoint_form(ctx: &Ctx, v: &Values, errors: &Errors, vpcs: Vec<String>) -> Response {
    let key = if v.get("key").is_empty() { random_id() } else { v.get("key").to_string() };
    let body = draw(ctx, "/console/endpoints", ENDPOINT_FIELDS, v, errors, &[("vpc", vpcs)], &[("key", key)], "create", &["service"]);
    with_status(errors, layout(ctx, "/console/endpoints/new", ctx.lang.t("create_endpoint"), body))
}

pub async fn create_endpoint(ctx: Ctx, State(c): State<Console>, Form(sent): Sent) -> Page {
    let v = Values(sent);
    if !ctx.s.csrf_ok(v.get("csrf")) {
        return Err(refused(&ctx));
    }
    let mut errors = Errors::new();
    let mut zones = Map::new();
    for (i, line) in lines(v.get("zone_ips")) {
        match line.split_once(char::is_whitespace) {
            Some((zone, ip)) => drop(zones.insert(zone.to_string(), json!(ip.trim()))),
            None => errors.push(("zone_ips".into(), format!("line {}: write ZONE ADDRESS", i + 1))),
        }
    }
    let mut body = Map::new();
    body.insert("name".into(), json!(v.get("name").trim()));
    body.insert("vpc".into(), json!(v.get("vpc")));
    body.insert("service".into(), json!(v.get("service").trim()));
    body.insert("ip".into(), opt(v.get("ip")));
    if !zones.is_empty() {
        body.insert("zone_ips".into(), Value::Object(zones));
    }
    body.insert("security_groups".into(), json!(words(v.get("security_groups"))));
    body.insert("bandwidth".into(), opt(v.get("bandwidth")));
    body.insert("private_dns".into(), json!(v.checked("private_dns")));
    if errors.is_empty() {
        let r = c.call(&ctx, Method::POST, "/v1/endpoints", Some(&without_nulls(body)), &[("idempotency-key", v.get("key").to_string())]).await;
        if r.status.is_success() {
            return Ok(Redirect::to(&format!("/console/endpoints/{}", enc(v.get("name").trim()))).into_response());
        }
        errors = answer_errors(&ctx, &r, ENDPOINT_FIELDS);
    }
    Ok(endpoint_form(&ctx, &v, &errors, my_vpcs(&c, &ctx).await?))
}

pub async fn confirm_delete_endpoint(ctx: Ctx, Path(name): Path<String>) -> Response {
    let here = format!("/console/endpoints/{}", enc(&name));
    confirm(&ctx, &format!("{here}/delete"), &here, &name, false)
}

pub async fn delete_endpoint(ctx: Ctx, State(c): State<Console>, Path(name): Path<String>, Form(sent): Sent) -> Page {
    let v = Values(sent);
    if !ctx.s.csrf_ok(v.get("csrf")) {
        return Err(refused(&ctx));
    }
    let r = c.call(&ctx, Method::DELETE, &format!("/v1/endpoints/{}", enc(&name)), None, &[]).await;
    if r.status.is_success() {
        return Ok(Redirect::to("/console/endpoints").into_response());
    }
    Err(message(ctx.lang, r.status, &r.error().error))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_form_becomes_the_apis_body() {
        let v = Values(
            [("backends", "10.1.0.5 zone=a\n\n10.1.0.6 weight=50"), ("ports", "TCP 80:8080\nudp 53:5353"), ("allowed_accounts", "100001, 100003 *"), ("auto_accept", "on"), ("connection_limit", "12"), ("health_type", "http"), ("health_path", "/ok")]
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .to_vec(),
        );
        let mut errors = Errors::new();
        let body = without_nulls(service_body(&v, &mut errors));
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            body,
            json!({
                "backends": [{ "address": "10.1.0.5", "zone": "a" }, { "address": "10.1.0.6", "weight": 50 }],
                "ports": [{ "protocol": "tcp", "endpoint_port": 80, "service_port": 8080 }, { "protocol": "udp", "endpoint_port": 53, "service_port": 5353 }],
                "allowed_accounts": ["100001", "100003", "*"],
                "auto_accept": true,
                "connection_limit": 12,
                "health_check": { "type": "http", "path": "/ok" },
            })
        );
        let bad = Values(vec![("ports".into(), "tcp 80\nhttp".into()), ("backends".into(), "10.0.0.1 rack=4".into())]);
        let mut errors = Errors::new();
        service_body(&bad, &mut errors);
        assert_eq!(errors.iter().filter(|(f, _)| f == "ports").count(), 2, "{errors:?}");
        assert!(errors.iter().any(|(f, m)| f == "backends" && m.contains("rack=4")), "{errors:?}");
    }

    #[test]
    fn api_error_paths_land_beside_their_fields() {
        assert_eq!(field_of("ports[1].service_port", SERVICE_FIELDS), "ports");
        assert_eq!(field_of("health_check.path", SERVICE_FIELDS), "health_type");
        assert_eq!(field_of("name", ENDPOINT_FIELDS), "name");
        assert_eq!(field_of("", ENDPOINT_FIELDS), "");
        assert_eq!(field_of("snat_range", SERVICE_FIELDS), "", "a field the form does not have goes above it");
    }
}
