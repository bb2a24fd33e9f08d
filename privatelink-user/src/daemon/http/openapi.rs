//! `GET /v1/openapi.json`: the tenant API described as OpenAPI 3.1, generated from the
//! same types the handlers answer with (a test checks real answers against it). Each
//! path is one row of `OPERATIONS`' table.

use crate::daemon::api::*;
use schemars::{generate::SchemaSettings, JsonSchema, SchemaGenerator};
use serde_json::{json, Map, Value};

fn of<T: JsonSchema>(g: &mut SchemaGenerator) -> Value {
    g.subschema_for::<T>().to_value()
}

/// (path, method, operation id, summary, path parameters, schema of the 200 answer).
type Operation = (&'static str, &'static str, &'static str, &'static str, &'static [&'static str], Value);

fn operations(g: &mut SchemaGenerator) -> Vec<Operation> {
    vec![
        ("/v1/services", "get", "listServices", "The caller's own services, and the services it may connect to", &[], of::<ServicesAnswer>(g)),
        ("/v1/services/{service}", "get", "getService", "A service: whole for its owner, its listing for a whitelisted consumer", &["service"], of::<ServiceAnswer>(g)),
        ("/v1/services/{service}/connections", "get", "listConnections", "The endpoints connected to the caller's service", &["service"], of::<Vec<ConnectionView>>(g)),
        ("/v1/services/{service}/connections/{endpoint}/accept", "post", "acceptConnection", "Accept an endpoint's connection to the caller's service", &["service", "endpoint"], of::<EndpointView>(g)),
        ("/v1/services/{service}/connections/{endpoint}/reject", "post", "rejectConnection", "Reject an endpoint's connection to the caller's service", &["service", "endpoint"], of::<EndpointView>(g)),
        ("/v1/endpoints", "get", "listEndpoints", "The caller's own endpoints", &[], of::<Vec<EndpointView>>(g)),
        ("/v1/endpoints/{endpoint}", "get", "getEndpoint", "An endpoint of the caller's, or connected to its service", &["endpoint"], of::<EndpointView>(g)),
        ("/v1/endpoints/{endpoint}/stats", "get", "getEndpointStats", "An endpoint's counters", &["endpoint"], of::<EndpointStats>(g)),
        ("/v1/events", "get", "listEvents", "Events about the caller's services and endpoints (`after`: a sequence number)", &[], of::<Vec<Event>>(g)),
        ("/v1/services", "post", "createService", "Create a service in a VPC the caller owns (body: the spec's service fields; owner: the caller's account)", &[], of::<ServiceView>(g)),
        ("/v1/services/{service}", "patch", "changeService", "Change the caller's service (a JSON merge patch of its spec fields; If-Match)", &["service"], of::<ServiceView>(g)),
        ("/v1/services/{service}", "delete", "deleteService", "Delete the caller's service (with live endpoints only with force=true; If-Match)", &["service"], Value::Null),
        ("/v1/services/{service}/stats", "get", "getServiceStats", "The counters of the caller's service: each endpoint's and their sum", &["service"], of::<ServiceStats>(g)),
        ("/v1/endpoints", "post", "createEndpoint", "Create an endpoint in a VPC the caller owns, to a service it may connect to (body: the spec's endpoint fields)", &[], of::<EndpointView>(g)),
        ("/v1/endpoints/{endpoint}", "patch", "changeEndpoint", "Change the caller's endpoint (a JSON merge patch of its spec fields; If-Match)", &["endpoint"], of::<EndpointView>(g)),
        ("/v1/endpoints/{endpoint}", "delete", "deleteEndpoint", "Delete the caller's endpoint (If-Match)", &["endpoint"], Value::Null),
        ("/v1/security-groups", "get", "listSecurityGroups", "The caller's security groups", &[], of::<Vec<SecurityGroupView>>(g)),
        ("/v1/security-groups", "post", "createSecurityGroup", "Create a security group (body: the spec's security group fields)", &[], of::<SecurityGroupView>(g)),
        ("/v1/security-groups/{group}", "get", "getSecurityGroup", "One of the caller's security groups", &["group"], of::<SecurityGroupView>(g)),
        ("/v1/security-groups/{group}", "patch", "changeSecurityGroup", "Change the caller's security group (a JSON merge patch; If-Match)", &["group"], of::<SecurityGroupView>(g)),
        ("/v1/security-groups/{group}", "delete", "deleteSecurityGroup", "Delete the caller's security group (If-Match)", &["group"], Value::Null),
        ("/v1/endpoints/{endpoint}/history", "get", "getEndpointHistory", "The last hour of an endpoint's counters on the answering node, at 10 s steps", &["endpoint"], of::<HistoryView>(g)),
        ("/v1/services/{service}/history", "get", "getServiceHistory", "The last hour of the caller's service's counters (its endpoints' summed)", &["service"], of::<HistoryView>(g)),
        ("/v1/vpcs", "get", "listVpcs", "The VPCs the caller owns (an operator: every VPC) with their drops by reason", &[], of::<Vec<TenantVpc>>(g)),
        ("/v1/nodes", "get", "listNodes", "The fleet's nodes (an operator token only)", &[], of::<Vec<NodeView>>(g)),
        ("/v1/whoami", "get", "whoAmI", "The account and token of the request", &[], of::<WhoAmI>(g)),
    ]
}

/// The statuses every operation may answer with besides its success, each with an
/// `ErrorBody`.
const ERRORS: [(&str, &str); 10] = [
    ("400", "a body that is not JSON"),
    ("401", "no token, or a malformed, unknown, revoked or expired one"),
    ("403", "the caller sees the resource but may not do this"),
    ("404", "no such resource, or one the caller may not see"),
    ("409", "the state does not allow it: a name taken, a resource of the operator's spec, a service with live endpoints"),
    ("412", "If-Match no longer matches the resource's ETag"),
    ("413", "a body over 1 MiB"),
    ("422", "invalid input: every error with the path of its field (`errors`); nothing was changed"),
    ("429", "the token is over its rate; `Retry-After` says when to retry"),
    ("500", "the daemon failed"),
];

/// The document, built at the first request (it follows from the types alone).
pub fn shared() -> &'static Value {
    static DOC: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    DOC.get_or_init(document)
}

pub fn document() -> Value {
    let mut settings = SchemaSettings::draft2020_12().for_serialize();
    settings.definitions_path = "/components/schemas".into();
    let mut g = settings.into_generator();
    let ops = operations(&mut g);
    let error = of::<ErrorBody>(&mut g);
    let mut paths = Map::new();
    for (path, method, id, summary, params, answer) in ops {
        let mut responses = Map::new();
        let tagged = json!({ "ETag": { "description": "the resource's version, for If-Match", "schema": { "type": "string" } } });
        match method {
            "delete" => responses.insert("204".into(), json!({ "description": "deleted" })),
            "post" if id.starts_with("create") => responses.insert("201".into(), json!({ "description": "created (Location: its path)", "headers": tagged, "content": { "application/json": { "schema": answer } } })),
            _ => responses.insert("200".into(), json!({ "description": "OK", "headers": tagged, "content": { "application/json": { "schema": answer } } })),
        };
        for (code, why) in ERRORS {
            responses.insert(code.into(), json!({ "description": why, "content": { "application/json": { "schema": error } } }));
        }
        let mut parameters: Vec<Value> = params.iter().map(|p| json!({ "name": p, "in": "path", "required": true, "description": "a name or an id", "schema": { "type": "string" } })).collect();
        match method {
            "patch" | "delete" => parameters.push(json!({ "name": "If-Match", "in": "header", "required": false, "description": "the ETag the resource was read with: 412 when it changed since (`*`: any)", "schema": { "type": "string" } })),
            "post" if id.starts_with("create") => parameters.push(json!({ "name": "Idempotency-Key", "in": "header", "required": false, "description": "a retry with the same key and body (24 hours) answers with what the first request made", "schema": { "type": "string" } })),
            _ => {}
        }
        if id == "deleteService" {
            parameters.push(json!({ "name": "force", "in": "query", "required": false, "description": "delete it with its endpoints, even live ones", "schema": { "type": "boolean" } }));
        }
        let mut op = json!({ "operationId": id, "summary": summary, "parameters": parameters, "responses": responses });
        if method == "post" && id.starts_with("create") || method == "patch" {
            let what = if method == "patch" { "a JSON merge patch (RFC 7396) of the resource's spec fields" } else { "the resource in the spec's field names (`owner` may be left out: the caller's account)" };
            op["requestBody"] = json!({ "required": true, "description": what, "content": { "application/json": { "schema": { "type": "object" } } } });
        }
        paths.entry(path).or_insert_with(|| json!({})).as_object_mut().map(|m| m.insert(method.into(), op));
    }
    // Lists that page.
    if let Some(op) = paths.get_mut("/v1/endpoints").and_then(|p| p.get_mut("get")) {
        op["parameters"] = json!([
            { "name": "offset", "in": "query", "required": false, "description": "skip this many (by name)", "schema": { "type": "integer", "minimum": 0 } },
            { "name": "limit", "in": "query", "required": false, "description": "at most this many (absent: all)", "schema": { "type": "integer", "minimum": 0 } },
        ]);
        op["responses"]["200"]["headers"]["X-Total-Count"] = json!({ "description": "how many there are in all", "schema": { "type": "integer" } });
    }
    // Events: a list, or with `watch=true` a stream of server-sent events.
    if let Some(op) = paths.get_mut("/v1/events").and_then(|p| p.get_mut("get")) {
        op["parameters"] = json!([
            { "name": "after", "in": "query", "required": false, "description": "only events with a higher sequence number", "schema": { "type": "integer", "minimum": 0 } },
            { "name": "watch", "in": "query", "required": false, "description": "keep the connection and send each new event as a server-sent event (id: sequence number, event: kind, data: the event)", "schema": { "type": "boolean" } },
            { "name": "tail", "in": "query", "required": false, "description": "with watch: only events recorded from now on, no backlog", "schema": { "type": "boolean" } },
            { "name": "named", "in": "query", "required": false, "description": "with watch: false sends every event unnamed (an EventSource's `message`), the kind only in its data", "schema": { "type": "boolean", "default": true } },
        ]);
        op["responses"]["200"]["content"]["text/event-stream"] = json!({ "schema": { "type": "string" } });
    }
    json!({
        "openapi": "3.1.0",
        "info": { "title": "privatelink tenant API", "version": env!("CARGO_PKG_VERSION") },
        "security": [{ "bearer": [] }],
        "paths": paths,
        "components": {
            "schemas": g.take_definitions(true),
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer", "description": "a token from `privatelink token create`" } },
        },
    })
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    /// Every `$ref` in `v`.
    fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r);
                }
                m.values().for_each(|x| refs(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
            _ => {}
        }
    }

    #[test]
    fn every_reference_resolves_and_every_route_is_described() {
        let doc = super::document();
        let mut all = Vec::new();
        refs(&doc, &mut all);
        assert!(all.len() > 20, "{all:?}");
        for r in all {
            let name = r.strip_prefix("#/components/schemas/").unwrap_or_else(|| panic!("{r}"));
            assert!(doc["components"]["schemas"][name].is_object(), "{r} does not resolve");
        }
        let paths = doc["paths"].as_object().unwrap();
        let routes = include_str!("routes.rs");
        for p in routes.lines().filter_map(|l| l.trim().strip_prefix(".route(\"")).map(|l| l.split('"').next().unwrap()) {
            assert!(p == "/v1/openapi.json" || paths.contains_key(p), "route {p} is missing from the document");
        }
    }
}
