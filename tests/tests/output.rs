//! What scripts read: every read command's `-o json` validated against
//! `docs/output-schema.json` by an independent validator, `-o yaml` read back as the same
//! objects, and the fields a script reaches for checked as values, the way `jq` would.

use privatelink_tests::{daemon_lab::*, lab::*};
use serde_json::{json, Value};
use std::{
    io::{Read, Write},
    net::SocketAddr,
    time::Duration,
};

fn schema() -> jsonschema::Validator {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/output-schema.json");
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    jsonschema::options().should_validate_formats(true).build(&doc).unwrap()
}

/// `command`'s JSON must be what the schema's property `name` describes.
#[track_caller]
fn valid(schema: &jsonschema::Validator, name: &str, out: &Value) {
    let doc = json!({ name: out });
    let errors: Vec<String> = schema.iter_errors(&doc).map(|e| format!("{} at {}", e, e.instance_path())).collect();
    assert!(errors.is_empty(), "`{name} -o json` does not match docs/output-schema.json:\n{}\n{out:#}", errors.join("\n"));
}

fn from_yaml(y: &yaml_rust2::Yaml) -> Value {
    use yaml_rust2::Yaml;
    match y {
        Yaml::Null => Value::Null,
        Yaml::Boolean(b) => json!(b),
        Yaml::Integer(i) => json!(i),
        Yaml::Real(r) => json!(r.parse::<f64>().unwrap()),
        Yaml::String(s) => json!(s),
        Yaml::Array(a) => Value::Array(a.iter().map(from_yaml).collect()),
        Yaml::Hash(h) => Value::Object(h.iter().map(|(k, v)| (k.as_str().unwrap().to_string(), from_yaml(v))).collect()),
        other => panic!("unexpected YAML node {other:?}"),
    }
}

fn is_rfc3339(v: &Value) -> bool {
    let s = v.as_str().unwrap_or_default();
    s.len() == 24 && s.ends_with('Z') && s.as_bytes()[10] == b'T' && s.starts_with("20")
}

fn vpc_view_like() -> Value {
    json!({ "name": "vpc0", "interface": "gw-c0", "cidr": "10.0.0.0/24", "vpc_id": 1, "attached": true })
}

#[test]
fn json_output_is_structured_and_matches_the_documented_schema() {
    let lab = DaemonLab::new(1);
    let spec = spec(1, &service("web", "100002", &["allowed_accounts: [\"*\"]"]), &endpoint("web-from-vpc1", "100001", 0, "web"));
    assert_eq!(lab.apply(&spec, &["--dry-run"]).code, 0);
    let schema = schema();
    // The validator is no rubber stamp: text where values belong, or a bad address, fails.
    let mut bad = vpc_view_like();
    assert!(schema.is_valid(&json!({ "get vpcs": [bad.clone()] })));
    bad["vpc_id"] = json!("1");
    assert!(!schema.is_valid(&json!({ "get vpcs": [bad.clone()] })));
    bad["vpc_id"] = json!(1);
    bad["cidr"] = json!(7);
    assert!(!schema.is_valid(&json!({ "get vpcs": [bad] })));
    assert!(!schema.is_valid(&json!({ "whois": { "snat_ip": "11.163.0.300" } })));
    let dry = lab.apply(&spec, &["--dry-run", "-o", "json"]);
    valid(&schema, "apply", &serde_json::from_str(&dry.stdout).unwrap());
    let applied: Value = serde_json::from_str(&lab.apply(&spec, &["-o", "json"]).stdout).unwrap();
    valid(&schema, "apply", &applied);
    assert_eq!(applied["changes"][0]["op"], "+", "{applied:#}");
    let accepted = lab.json(&["accept", "web-from-vpc1"]);
    valid(&schema, "accept", &accepted);
    assert_eq!(accepted["state"], "accepted");

    // A live flow for conntrack and whois.
    let mut s = lab.in_client(0, || {
        let mut s = connect(SocketAddr::from((ENDPOINT, ENDPOINT_TCP_PORT))).unwrap();
        s.write_all(b"ECHO 1000\n").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        s
    });
    s.write_all(b"ping").unwrap();
    s.read_exact(&mut [0u8; 4]).unwrap();

    let services = lab.json(&["get", "services"]);
    valid(&schema, "get services", &services);
    let web = &services[0];
    // What jq would read: `.[0].backends[0].address`, `.[0].ports[0].endpoint_port`.
    assert_eq!(web["backends"][0]["address"], "192.168.2.10", "{web:#}");
    assert_eq!(web["backends"][0]["weight"], 100, "{web:#}");
    assert!(["up", "unchecked"].contains(&web["backends"][0]["health"].as_str().unwrap()), "{web:#}");
    assert_eq!(web["ports"][0], json!({"protocol": "tcp", "endpoint_port": 80, "service_port": 8080}), "{web:#}");
    assert_eq!(web["ports"][1]["protocol"], "udp");
    assert!(is_rfc3339(&web["created_at"]), "{web:#}");
    valid(&schema, "describe service", &lab.json(&["describe", "service", "web"]));

    let eps = lab.json(&["get", "endpoints"]);
    valid(&schema, "get endpoints", &eps);
    assert_eq!(eps[0]["ip"], "10.0.0.100");
    assert_eq!(eps[0]["active_connections"], 1, "{eps:#}");
    assert!(is_rfc3339(&eps[0]["created_at"]), "{eps:#}");
    valid(&schema, "describe endpoint", &lab.json(&["describe", "endpoint", "web-from-vpc1"]));
    valid(&schema, "get vpcs", &lab.json(&["get", "vpcs"]));
    valid(&schema, "get nodes", &lab.json(&["get", "nodes"]));
    valid(&schema, "stats", &lab.json(&["stats"]));
    valid(&schema, "status", &lab.json(&["status"]));

    let flows = lab.json(&["conntrack", "list"]);
    valid(&schema, "conntrack list", &flows);
    let f = &flows[0];
    assert_eq!(f["client"]["address"], "10.0.0.2", "{flows:#}");
    assert!(f["client"]["port"].as_u64().unwrap() > 0, "{flows:#}");
    assert_eq!(f["endpoint_address"], json!({"address": "10.0.0.100", "port": 80}), "{flows:#}");
    assert_eq!(f["backend"]["port"], 8080, "{flows:#}");
    assert_eq!(f["state"], "established", "{flows:#}");
    let snat = format!("{}:{}", f["snat"]["address"].as_str().unwrap(), f["snat"]["port"]);
    let who = lab.json(&["whois", &snat]);
    valid(&schema, "whois", &who);
    assert_eq!(who["flows"][0]["client"], f["client"], "{who:#}");

    let events = lab.json(&["events"]);
    valid(&schema, "events", &events);
    assert!(events.as_array().unwrap().iter().all(|e| is_rfc3339(&e["at"])), "{events:#}");

    // -o yaml: the same objects (for the reads that do not move between two calls).
    for args in [&["get", "services"][..], &["describe", "endpoint", "web-from-vpc1"], &["get", "vpcs"], &["events"]] {
        let json_out = lab.json(args);
        let mut a = args.to_vec();
        a.extend(["-o", "yaml"]);
        let text = lab.ok(&a);
        let docs = yaml_rust2::YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{args:?} -o yaml is not YAML ({e}):\n{text}"));
        assert_eq!(from_yaml(&docs[0]), json_out, "{args:?}: -o yaml differs from -o json:\n{text}");
    }

    let deleted = lab.json(&["delete", "endpoint", "web-from-vpc1"]);
    valid(&schema, "delete endpoint", &deleted);
    assert_eq!(deleted["changes"][0]["op"], "-", "{deleted:#}");
}
