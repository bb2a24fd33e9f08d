//! What a console form's fields mean in the tenant API's terms, both ways: a service's
//! or an endpoint's form as the JSON body the API takes (lines of backends, port
//! mappings and zone addresses read here, everything else left to the API to judge at
//! its path), and a service as the values of its edit form.

use crate::daemon::api::ServiceView;
use serde_json::{json, Map, Value};

/// A submitted form's fields, as sent.
pub struct Values(pub Vec<(String, String)>);

impl Values {
    pub fn get(&self, k: &str) -> &str {
        self.0.iter().find(|(n, _)| n == k).map_or("", |(_, v)| v.as_str())
    }
    pub fn checked(&self, k: &str) -> bool {
        !self.get(k).is_empty()
    }
}

/// Errors by field name ("" for the form as a whole).
pub type Errors = Vec<(String, String)>;

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
pub fn service_body(v: &Values, errors: &mut Errors) -> Map<String, Value> {
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
pub fn opt(s: &str) -> Value {
    if s.trim().is_empty() { Value::Null } else { json!(s.trim()) }
}

/// A create's body: nulls left out.
pub fn without_nulls(m: Map<String, Value>) -> Value {
    Value::Object(m.into_iter().filter(|(_, v)| !v.is_null()).collect())
}

/// The form's values for a service as it is (to edit it).
pub fn service_values(s: &ServiceView) -> Values {
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

/// The endpoint fields of a form as the API's body; errors of lines that cannot be read.
pub fn endpoint_body(v: &Values, errors: &mut Errors) -> Map<String, Value> {
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
    body
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
}
