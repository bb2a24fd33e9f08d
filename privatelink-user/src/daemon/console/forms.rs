//! The console's forms: each is a list of fields drawn the same way (a label, the
//! control, its help, its error), turned into the tenant API's JSON body on submit and
//! sent as the session's token. The API's 422 details come back beside the fields
//! they name (`ports[1].service_port` beside "Port mappings"); everything else above
//! the form. Every form carries the session's CSRF token; a create carries an
//! Idempotency-Key, so a form sent twice makes one resource; an edit carries the
//! ETag it was drawn from, so it never overwrites a change made meanwhile. What a
//! form's fields mean in the API's terms is `bodies`.

use super::{
    bodies::{endpoint_body, service_body, service_values, without_nulls, Errors, Values},
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
use serde_json::Value;

/// A submitted form: its fields as sent.
type Sent = Form<Vec<(String, String)>>;

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

fn health_kinds() -> Vec<String> {
    ["", "tcp", "http", "none"].map(String::from).to_vec()
}

/// The VPCs the caller may create in (its own).
async fn my_vpcs(c: &Console, ctx: &Ctx) -> Result<Vec<String>, Response> {
    let (vpcs, _): (Vec<TenantVpc>, _) = c.get(ctx, "/v1/vpcs").await?;
    Ok(vpcs.into_iter().filter(|v| ctx.s.operator() || v.owner == ctx.s.account).map(|v| v.name).collect())
}

/// A submitted form's values, if it carries this session's CSRF token.
#[allow(clippy::result_large_err)] // a `Page`'s refusal is the page itself
fn submitted(ctx: &Ctx, Form(sent): Sent) -> Result<Values, Response> {
    let v = Values(sent);
    if ctx.s.csrf_ok(v.get("csrf")) {
        Ok(v)
    } else {
        Err(message(ctx.lang, StatusCode::FORBIDDEN, ctx.lang.t("stale_form")))
    }
}

/// After a decision or a delete: on to `then`, or the page saying why not.
#[allow(clippy::result_large_err)] // as `submitted`
fn done(ctx: &Ctx, r: super::Reply, then: &str) -> Page {
    if r.status.is_success() {
        Ok(Redirect::to(then).into_response())
    } else {
        Err(message(ctx.lang, r.status, &r.error().error))
    }
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

pub async fn create_service(ctx: Ctx, State(c): State<Console>, sent: Sent) -> Page {
    let v = submitted(&ctx, sent)?;
    let mut errors = Errors::new();
    let mut body = service_body(&v, &mut errors);
    body.insert("name".into(), Value::from(v.get("name").trim()));
    body.insert("vpc".into(), Value::from(v.get("vpc")));
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

pub async fn change_service(ctx: Ctx, State(c): State<Console>, Path(name): Path<String>, sent: Sent) -> Page {
    let v = submitted(&ctx, sent)?;
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

pub async fn delete_service(ctx: Ctx, State(c): State<Console>, Path(name): Path<String>, sent: Sent) -> Page {
    let v = submitted(&ctx, sent)?;
    let force = if v.checked("force") { "?force=true" } else { "" };
    let r = c.call(&ctx, Method::DELETE, &format!("/v1/services/{}{force}", enc(&name)), None, &[]).await;
    done(&ctx, r, "/console/services")
}

pub async fn decide(ctx: Ctx, State(c): State<Console>, Path((service, endpoint, verb)): Path<(String, String, String)>, sent: Sent) -> Page {
    submitted(&ctx, sent)?;
    if verb != "accept" && verb != "reject" {
        return Err(message(ctx.lang, StatusCode::NOT_FOUND, ctx.lang.t("not_found")));
    }
    let path = format!("/v1/services/{}/connections/{}/{verb}", enc(&service), enc(&endpoint));
    let r = c.call(&ctx, Method::POST, &path, None, &[]).await;
    done(&ctx, r, &format!("/console/services/{}", enc(&service)))
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

pub async fn create_endpoint(ctx: Ctx, State(c): State<Console>, sent: Sent) -> Page {
    let v = submitted(&ctx, sent)?;
    let mut errors = Errors::new();
    let body = endpoint_body(&v, &mut errors);
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

pub async fn delete_endpoint(ctx: Ctx, State(c): State<Console>, Path(name): Path<String>, sent: Sent) -> Page {
    submitted(&ctx, sent)?;
    let r = c.call(&ctx, Method::DELETE, &format!("/v1/endpoints/{}", enc(&name)), None, &[]).await;
    done(&ctx, r, "/console/endpoints")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_error_paths_land_beside_their_fields() {
        assert_eq!(field_of("ports[1].service_port", SERVICE_FIELDS), "ports");
        assert_eq!(field_of("health_check.path", SERVICE_FIELDS), "health_type");
        assert_eq!(field_of("name", ENDPOINT_FIELDS), "name");
        assert_eq!(field_of("", ENDPOINT_FIELDS), "");
        assert_eq!(field_of("snat_range", SERVICE_FIELDS), "", "a field the form does not have goes above it");
    }
}
