//! The tenant API over TLS, end to end: the real daemon in its gateway namespace with a
//! certificate signed by a CA the test makes, tokens made by root with the CLI, and
//! `curl` (verifying the chain) as each tenant's client. A provider and a consumer do
//! their parts of the seeds' quick start through the API alone and traffic flows at
//! the end; a third account sees none of it and can change nothing; every refusal has
//! its status and a JSON body.

use privatelink_tests::{daemon_lab::*, lab::*, pki::Pki};
use serde_json::Value;
use std::{net::SocketAddr, path::PathBuf, process::Command};

const API: &str = "127.0.0.1:8443";

/// The schema `/v1/openapi.json` gives for what `method path` answers with `status`
/// (the path matched against the document's templates), made a document of its own
/// with the components it refers to.
fn schema_of(openapi: &Value, method: &str, path: &str, status: u16) -> Option<Value> {
    let fits = |template: &str| {
        let (t, p): (Vec<&str>, Vec<&str>) = (template.split('/').collect(), path.split('?').next().unwrap().split('/').collect());
        t.len() == p.len() && t.iter().zip(&p).all(|(t, p)| t.starts_with('{') || t == p)
    };
    let errors = serde_json::json!({ "$ref": "#/components/schemas/ErrorBody" });
    let schema = match status {
        200 | 201 => {
            let (_, item) = openapi["paths"].as_object()?.iter().find(|(t, _)| fits(t))?;
            item[method.to_lowercase()]["responses"][status.to_string()]["content"]["application/json"]["schema"].clone()
        }
        204 => {
            let (_, item) = openapi["paths"].as_object()?.iter().find(|(t, _)| fits(t))?;
            item[method.to_lowercase()]["responses"]["204"].as_object()?;
            serde_json::json!({ "type": "null" })
        }
        _ => errors,
    };
    let mut doc = schema.as_object()?.clone();
    doc.insert("components".into(), openapi["components"].clone());
    Some(Value::Object(doc))
}

/// One request with `curl` in the gateway namespace (the chain checked against the
/// test's CA): the status and the JSON body, which must be what the API's own OpenAPI
/// document says that answer is.
fn call(lab: &DaemonLab, pki: &Pki, token: Option<&str>, method: &str, path: &str) -> (u16, Value) {
    let a = send(lab, pki, token, method, path, None, &[]);
    (a.code, a.body)
}

/// An answer: status, JSON body (null when empty), the ETag and Location headers.
struct Answer {
    code: u16,
    body: Value,
    etag: String,
    location: String,
}

/// `call` with a body (JSON text) and more headers (`Name: value`).
fn send(lab: &DaemonLab, pki: &Pki, token: Option<&str>, method: &str, path: &str, body: Option<&str>, headers: &[&str]) -> Answer {
    let a = raw_send(lab, pki, token, method, path, body, headers);
    let code = a.code;
    let body = &a.body;
    if path != "/v1/openapi.json" {
        let openapi = raw_call(lab, pki, None, "GET", "/v1/openapi.json").1;
        let schema = schema_of(&openapi, method, path, code).unwrap_or_else(|| panic!("{method} {path} ({code}) is not in /v1/openapi.json"));
        let v = jsonschema::options().build(&schema).unwrap_or_else(|e| panic!("{method} {path}: the OpenAPI schema does not compile: {e}"));
        let errors: Vec<String> = v.iter_errors(body).map(|e| format!("{e} at {}", e.instance_path())).collect();
        assert!(errors.is_empty(), "{method} {path} ({code}) does not match /v1/openapi.json:\n{}\n{body:#}", errors.join("\n"));
    }
    a
}

fn raw_call(lab: &DaemonLab, pki: &Pki, token: Option<&str>, method: &str, path: &str) -> (u16, Value) {
    let a = raw_send(lab, pki, token, method, path, None, &[]);
    (a.code, a.body)
}

fn raw_send(lab: &DaemonLab, pki: &Pki, token: Option<&str>, method: &str, path: &str, body: Option<&str>, headers: &[&str]) -> Answer {
    let url = format!("https://{API}{path}");
    let auth = token.map(|t| format!("Authorization: Bearer {t}"));
    let ca = pki.path("ca.pem");
    let mut args = vec!["curl", "-sS", "--cacert", &ca, "-X", method, "-w", "\n%{http_code}\n%header{etag}\n%header{location}"];
    if let Some(a) = &auth {
        args.extend(["-H", a.as_str()]);
    }
    for h in headers {
        args.extend(["-H", h]);
    }
    let file = pki.path(&format!("body-{}", BODIES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)));
    let data = format!("@{file}");
    if let Some(b) = body {
        std::fs::write(&file, b).unwrap();
        args.extend(["-H", "Content-Type: application/json", "--data-binary", &data]);
    }
    args.push(&url);
    let o = lab.gw.exec(&args);
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(o.status.success(), "curl {method} {path}: {}{out}", String::from_utf8_lossy(&o.stderr));
    let mut tail = out.rsplitn(4, '\n');
    let (location, etag, code, text) = (tail.next().unwrap(), tail.next().unwrap(), tail.next().unwrap(), tail.next().unwrap_or(""));
    let json = if text.is_empty() { Value::Null } else { serde_json::from_str(text).unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {text}")) };
    Answer { code: code.parse().unwrap_or_else(|_| panic!("{out}")), body: json, etag: etag.to_string(), location: location.to_string() }
}

static BODIES: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// A token made by root with the CLI; its text.
fn token(lab: &DaemonLab, args: &[&str]) -> String {
    let mut a = vec!["token", "create"];
    a.extend_from_slice(args);
    let v = lab.json(&a);
    let t = v["token"].as_str().unwrap_or_else(|| panic!("{v}")).to_string();
    assert!(t.starts_with("pltok_"), "{t}");
    t
}

fn names(v: &Value) -> Vec<&str> {
    v.as_array().unwrap_or_else(|| panic!("{v}")).iter().map(|s| s["name"].as_str().unwrap()).collect()
}

#[test]
fn two_accounts_do_the_quick_start_through_the_api_and_a_third_sees_and_changes_nothing() {
    let pki = Pki::new();
    let (cert, key) = (pki.path("api.pem"), pki.path("api.key"));
    let lab = DaemonLab::with_daemon_args(1, &["--api-listen", API, "--api-tls-cert", &cert, "--api-tls-key", &key, "--api-rate", "60"]);
    let services = format!("{}{}", service("web", "100002", &["allowed_accounts: [\"100001\"]"]), service("secret", "100002", &[]));
    let r = lab.apply(&spec(1, &services, &endpoint("web-from-vpc1", "100001", 0, "web")), &[]);
    assert_eq!(r.code, 0, "{r:#?}");
    assert!(lab.log().contains("serving the tenant API over HTTPS"), "{}", lab.log());

    let provider = token(&lab, &["--account", "100002", "--name", "prov"]);
    let consumer = token(&lab, &["--account", "100001", "--name", "cons"]);
    let stranger = token(&lab, &["--account", "100003", "--name", "x"]);
    let watcher = token(&lab, &["--account", "100002", "--name", "ro", "--read-only"]);
    let list = lab.ok(&["token", "list"]);
    assert!(list.contains("prov") && list.contains("read-only") && !list.contains(&provider[6..]), "no secret in the list:\n{list}");

    // Who is asking: nobody, a forged token, a well-formed unknown one.
    for bad in [None, Some("nonsense"), Some("pltok_00000000_0000000000000000000000000000000000000000000000000000000000000000")] {
        let (code, body) = call(&lab, &pki, bad, "GET", "/v1/services");
        assert_eq!(code, 401, "{bad:?}: {body}");
        assert_eq!(body["status"], 401, "{body}");
    }
    let last = if provider.ends_with('0') { "1" } else { "0" };
    let forged = format!("{}{last}", &provider[..provider.len() - 1]);
    assert_eq!(call(&lab, &pki, Some(&forged), "GET", "/v1/services").0, 401, "the provider's token with one digit of its secret changed");

    // The consumer sees the service whitelisted for it, as a listing; not the other one.
    let (code, mine) = call(&lab, &pki, Some(&consumer), "GET", "/v1/services");
    assert_eq!(code, 200, "{mine}");
    assert!(mine["own"].as_array().unwrap().is_empty(), "{mine}");
    assert_eq!(names(&mine["available"]), ["web"], "{mine}");
    let web = &mine["available"][0];
    assert!(web["full_name"].as_str().unwrap().contains("epsrv-") && web["ports"][0]["endpoint_port"] == 80, "{web}");
    assert!(web.get("backends").is_none(), "a consumer sees none of the provider's backends: {web}");
    let (code, listed) = call(&lab, &pki, Some(&consumer), "GET", "/v1/services/web");
    assert_eq!((code, listed.get("backends").is_none()), (200, true), "{listed}");
    let (hidden, hidden_body) = call(&lab, &pki, Some(&consumer), "GET", "/v1/services/secret");
    let (absent, absent_body) = call(&lab, &pki, Some(&consumer), "GET", "/v1/services/nosuch");
    assert_eq!((hidden, absent), (404, 404));
    assert_eq!(hidden_body["error"].as_str().unwrap().replace("secret", "X"), absent_body["error"].as_str().unwrap().replace("nosuch", "X"), "a hidden service reads as one that does not exist");

    // The third account: nothing to see, nothing to decide.
    let (_, none) = call(&lab, &pki, Some(&stranger), "GET", "/v1/services");
    assert!(none["own"].as_array().unwrap().is_empty() && none["available"].as_array().unwrap().is_empty(), "{none}");
    assert_eq!(call(&lab, &pki, Some(&stranger), "GET", "/v1/services/web").0, 404);
    assert_eq!(call(&lab, &pki, Some(&stranger), "GET", "/v1/endpoints/web-from-vpc1").0, 404);
    assert_eq!(call(&lab, &pki, Some(&stranger), "GET", "/v1/endpoints/web-from-vpc1/stats").0, 404);
    assert_eq!(call(&lab, &pki, Some(&stranger), "GET", "/v1/services/web/connections").0, 404);
    assert_eq!(call(&lab, &pki, Some(&stranger), "POST", "/v1/services/web/connections/web-from-vpc1/accept").0, 404);
    assert!(names(&call(&lab, &pki, Some(&stranger), "GET", "/v1/endpoints").1).is_empty());

    // The consumer sees its endpoint pending, and cannot accept it itself.
    let (_, eps) = call(&lab, &pki, Some(&consumer), "GET", "/v1/endpoints");
    assert_eq!(names(&eps), ["web-from-vpc1"]);
    assert_eq!(eps[0]["state"], "pendingAcceptance");
    let (code, body) = call(&lab, &pki, Some(&consumer), "POST", "/v1/services/web/connections/web-from-vpc1/accept");
    assert_eq!(code, 403, "a consumer cannot accept its own endpoint: {body}");
    assert_eq!(call(&lab, &pki, Some(&consumer), "GET", "/v1/services/web/connections").0, 403, "a consumer reads no provider's connections");
    assert!(lab.in_client(0, || http_get(SocketAddr::from((ENDPOINT, ENDPOINT_TCP_PORT)))).is_err(), "pending: no traffic yet");

    // The provider: its connections, a read-only token's refusal, then its decision.
    let (code, conns) = call(&lab, &pki, Some(&provider), "GET", "/v1/services/web/connections");
    assert_eq!(code, 200, "{conns}");
    assert_eq!((conns[0]["endpoint"].as_str(), conns[0]["account"].as_str(), conns[0]["state"].as_str()), (Some("web-from-vpc1"), Some("100001"), Some("pendingAcceptance")), "{conns}");
    assert_eq!(call(&lab, &pki, Some(&watcher), "POST", "/v1/services/web/connections/web-from-vpc1/accept").0, 403, "read-only");
    assert_eq!(call(&lab, &pki, Some(&provider), "POST", "/v1/services/secret/connections/web-from-vpc1/accept").0, 404, "not a connection of that service");
    let (code, accepted) = call(&lab, &pki, Some(&provider), "POST", "/v1/services/web/connections/web-from-vpc1/accept");
    assert_eq!((code, accepted["state"].as_str()), (200, Some("accepted")), "{accepted}");
    let (code, again) = call(&lab, &pki, Some(&provider), "POST", "/v1/services/web/connections/web-from-vpc1/accept");
    assert_eq!(code, 409, "accepting twice is a conflict: {again}");

    // Traffic flows, and the consumer's counters show it.
    let got = lab.in_client(0, || http_get(SocketAddr::from((ENDPOINT, ENDPOINT_TCP_PORT)))).expect("the accepted endpoint carries traffic");
    assert!(got.contains("backend"), "{got}");
    let (code, stats) = call(&lab, &pki, Some(&consumer), "GET", "/v1/endpoints/web-from-vpc1/stats");
    assert_eq!(code, 200, "{stats}");
    assert!(stats["new_connections"].as_u64().unwrap_or(0) >= 1, "{stats}");

    // The audit trail: who decided, with which token, from where; the stranger sees none.
    let (_, ev) = call(&lab, &pki, Some(&consumer), "GET", "/v1/events");
    let audit = ev.as_array().unwrap().iter().find(|e| e["kind"] == "api.accept").unwrap_or_else(|| panic!("{ev}"));
    assert!(audit["message"].as_str().unwrap().contains("account 100002 (token prov) from 127.0.0.1"), "{audit}");
    assert!(call(&lab, &pki, Some(&stranger), "GET", "/v1/events").1.as_array().unwrap().is_empty());
    assert!(lab.ok(&["events"]).contains("token prov"), "root's events hold the audit trail too");

    // A watch: the provider's events as server-sent events, the reject made meanwhile
    // among them (curl stops after 8 s: the stream itself never ends).
    let last = ev.as_array().unwrap().iter().map(|e| e["seq"].as_u64().unwrap()).max().unwrap();
    let watched = std::thread::scope(|s| {
        let (gw, ca, auth) = (&lab.gw, pki.path("ca.pem"), format!("Authorization: Bearer {provider}"));
        let url = format!("https://{API}/v1/events?watch=true&after={last}");
        // Exits 28 (its time is up) by design: not `exec`, which wants 0.
        let watch = s.spawn(move || Command::new("ip").args(["netns", "exec", &gw.name, "curl", "-N", "-sS", "--max-time", "8", "--cacert", &ca, "-H", &auth, &url]).output().expect("curl"));
        std::thread::sleep(std::time::Duration::from_millis(2500));
        let (code, rejected) = call(&lab, &pki, Some(&provider), "POST", "/v1/services/web/connections/web-from-vpc1/reject");
        assert_eq!((code, rejected["state"].as_str()), (200, Some("rejected")), "{rejected}");
        let out = watch.join().unwrap();
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    });
    assert!(watched.contains("event: api.reject") && watched.contains("token prov"), "{watched}");
    let ids: Vec<u64> = watched.lines().filter_map(|l| l.strip_prefix("id: ")?.parse().ok()).collect();
    assert!(!ids.is_empty() && ids.iter().all(|i| *i > last) && ids.windows(2).all(|w| w[0] < w[1]), "new events only, in order: {ids:?}\n{watched}");

    // The API describes itself (OpenAPI 3.1, no token needed); every answer above was
    // checked against it.
    let (code, doc) = call(&lab, &pki, None, "GET", "/v1/openapi.json");
    assert_eq!((code, doc["openapi"].as_str()), (200, Some("3.1.0")));
    assert!(doc["paths"]["/v1/services/{service}/connections/{endpoint}/accept"]["post"]["responses"]["403"].is_object(), "{doc}");

    // Each token is held to its rate (60 a second here, bursts of 60): 200 requests on
    // one connection as fast as curl sends them meet 429s, each with Retry-After.
    let burst = token(&lab, &["--account", "100001", "--name", "burst"]);
    let (ca, url, auth) = (pki.path("ca.pem"), format!("https://{API}/v1/endpoints"), format!("Authorization: Bearer {burst}"));
    let mut args = vec!["curl", "-sS", "--cacert", &ca, "-H", &auth, "-w", "%{http_code} %header{retry-after}\n"];
    for _ in 0..200 {
        args.extend(["-o", "/dev/null", url.as_str()]);
    }
    let o = lab.gw.exec(&args);
    let lines = String::from_utf8_lossy(&o.stdout).to_string();
    let ok = lines.lines().filter(|l| l.starts_with("200")).count();
    let limited: Vec<&str> = lines.lines().filter(|l| l.starts_with("429")).collect();
    assert!(ok >= 60 && !limited.is_empty() && ok + limited.len() == 200, "{ok} answered, {} limited:\n{lines}", limited.len());
    assert!(limited.iter().all(|l| l.split_whitespace().nth(1).and_then(|s| s.parse::<u64>().ok()).is_some_and(|n| n >= 1)), "Retry-After on every 429:\n{lines}");
    assert_eq!(call(&lab, &pki, Some(&consumer), "GET", "/v1/endpoints").0, 200, "another token's bucket is its own");

    // Revoked: refused at once. Unknown paths: a JSON 404.
    let id = &provider[6..14];
    lab.ok(&["token", "revoke", id]);
    assert_eq!(call(&lab, &pki, Some(&provider), "GET", "/v1/services").0, 401, "revoked");
    assert_eq!(call(&lab, &pki, Some(&consumer), "GET", "/v2/nothing").0, 404);
}

#[test]
fn plain_http_is_refused_off_loopback_before_anything_starts() {
    let dir = PathBuf::from(format!("/run/pltest{}-plain", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let state = dir.join("state");
    let out = Command::new(privatelink_bin())
        .args(["--socket", dir.join("s.sock").to_str().unwrap(), "daemon", "--state-dir", state.to_str().unwrap(), "--bpffs", dir.join("bpffs").to_str().unwrap(), "--api-listen", "192.0.2.1:8080"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("plain HTTP is allowed on a loopback address only"), "{err}");
    assert!(!state.exists(), "nothing was created before the refusal");
}

/// `privatelink ARGS` as a tenant: an unprivileged user (nobody) in the gateway's
/// namespace, the API, token file and CA given by the environment. (status, stdout,
/// stderr).
fn tenant_cli(lab: &DaemonLab, pki: &Pki, token_file: &str, args: &[&str]) -> (i32, String, String) {
    let bin = privatelink_bin();
    let mut cmd = vec!["env", "PRIVATELINK_API=https://127.0.0.1:8443"];
    let (tf, ca) = (format!("PRIVATELINK_TOKEN_FILE={token_file}"), format!("PRIVATELINK_API_CA={}", pki.path("ca.pem")));
    cmd.extend([tf.as_str(), ca.as_str(), "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", bin.to_str().unwrap()]);
    cmd.extend_from_slice(args);
    let o = lab.gw.try_exec(&cmd);
    (o.status.code().unwrap_or(-1), String::from_utf8_lossy(&o.stdout).to_string(), String::from_utf8_lossy(&o.stderr).to_string())
}

/// The lab's spec with no service or endpoint, its consumer VPC owned by account
/// 100001 and its provider VPC by 100002 (`extra`: more lines for `gateway`).
fn web_service(name: &str) -> Value {
    serde_json::json!({
        "name": name, "vpc": "prov",
        "backends": [{ "address": "192.168.2.10" }, { "address": "192.168.2.11" }],
        "ports": [{ "protocol": "tcp", "endpoint_port": 80, "service_port": 8080 }],
        "allowed_accounts": ["100001"],
    })
}

#[test]
fn tenants_create_change_and_delete_their_own_resources_and_apply_keeps_them() {
    let pki = Pki::new();
    let (cert, key) = (pki.path("api.pem"), pki.path("api.key"));
    let lab = DaemonLab::with_daemon_args(1, &["--api-listen", API, "--api-tls-cert", &cert, "--api-tls-key", &key]);
    let operator_spec = owned_vpcs("  quotas: { services_per_account: 2 }\n");
    let r = lab.apply(&operator_spec, &[]);
    assert_eq!(r.code, 0, "{r:#?}");
    let provider = token(&lab, &["--account", "100002", "--name", "prov"]);
    let consumer = token(&lab, &["--account", "100001", "--name", "cons"]);
    let stranger = token(&lab, &["--account", "100003", "--name", "x"]);
    let reader = token(&lab, &["--account", "100002", "--name", "ro", "--read-only"]);
    let post = |t: &str, path: &str, body: &Value, headers: &[&str]| send(&lab, &pki, Some(t), "POST", path, Some(&body.to_string()), headers);

    // The provider publishes its service, with an Idempotency-Key: 201, its ETag and
    // Location; the same request again answers with the same service, made once.
    let created = post(&provider, "/v1/services", &web_service("web"), &["Idempotency-Key: k1"]);
    assert_eq!(created.code, 201, "{}", created.body);
    assert_eq!((created.body["owner"].as_str(), created.body["managed_by"].as_str(), created.location.as_str()), (Some("100002"), Some("api"), "/v1/services/web"), "{}", created.body);
    assert!(created.etag.starts_with('"'), "an ETag: {:?}", created.etag);
    let again = post(&provider, "/v1/services", &web_service("web"), &["Idempotency-Key: k1"]);
    assert_eq!((again.code, &again.body["id"]), (201, &created.body["id"]), "a retried create answers with the first result: {}", again.body);
    let reused = post(&provider, "/v1/services", &web_service("web2"), &["Idempotency-Key: k1"]);
    assert_eq!(reused.code, 422, "the key with another body: {}", reused.body);
    assert_eq!(post(&provider, "/v1/services", &web_service("web"), &[]).code, 409, "a name taken");
    assert_eq!(post(&reader, "/v1/services", &web_service("ro"), &[]).code, 403, "a read-only token creates nothing");
    // The provider changes its service with the tag it read (a merge patch).
    let changed = send(&lab, &pki, Some(&provider), "PATCH", "/v1/services/web", Some(r#"{"description": "orders API", "connection_limit": 100}"#), &[&format!("If-Match: {}", created.etag)]);
    assert_eq!((changed.code, changed.body["description"].as_str(), changed.body["connection_limit"].as_i64()), (200, Some("orders API"), Some(100)), "{}", changed.body);
    // The operator's token acts for any account, naming the owner itself.
    let admin = token(&lab, &["--admin", "--name", "ops"]);
    let mut for_b = web_service("ops-made");
    let a = post(&admin, "/v1/services", &for_b, &[]);
    assert_eq!((a.code, a.body["errors"][0]["path"].as_str()), (422, Some("")), "the operator names the owner: {}", a.body);
    for_b["owner"] = "100002".into();
    let a = post(&admin, "/v1/services", &for_b, &[]);
    assert_eq!((a.code, a.body["owner"].as_str()), (201, Some("100002")), "{}", a.body);
    assert_eq!(send(&lab, &pki, Some(&admin), "DELETE", "/v1/services/ops-made", None, &[]).code, 204);

    // Where it may not: the consumer's VPC; another owner; every rule's error at once at
    // its path in the body; a body that is not JSON; one over 1 MiB.
    let mut elsewhere = web_service("elsewhere");
    elsewhere["vpc"] = "vpc0".into();
    let a = post(&provider, "/v1/services", &elsewhere, &[]);
    assert_eq!((a.code, a.body["errors"][0]["path"].as_str()), (422, Some("vpc")), "{}", a.body);
    let mut theirs = web_service("theirs");
    theirs["owner"] = "100001".into();
    let a = post(&provider, "/v1/services", &theirs, &[]);
    assert_eq!((a.code, a.body["errors"][0]["path"].as_str()), (422, Some("owner")), "{}", a.body);
    let mut bad = web_service("bad");
    bad["ports"][0]["service_port"] = 0.into();
    bad["connection_limit"] = 0.into();
    bad["backends"][0]["address"] = "10.9.9.9".into();
    let a = post(&provider, "/v1/services", &bad, &[]);
    let paths: Vec<&str> = a.body["errors"].as_array().unwrap_or_else(|| panic!("{}", a.body)).iter().map(|e| e["path"].as_str().unwrap()).collect();
    assert_eq!(a.code, 422, "{}", a.body);
    for p in ["ports[0].service_port", "connection_limit", "backends[0].address"] {
        assert!(paths.contains(&p), "{p} missing from {paths:?}: {}", a.body);
    }
    let mut unknown = web_service("typo");
    unknown["auto_acept"] = true.into();
    let a = post(&provider, "/v1/services", &unknown, &[]);
    assert!(a.code == 422 && a.body["errors"][0]["message"].as_str().unwrap().contains("auto_acept"), "{}", a.body);
    let a = send(&lab, &pki, Some(&provider), "POST", "/v1/services", Some("{\"name\": "), &[]);
    assert_eq!((a.code, a.body["status"].as_u64()), (400, Some(400)), "{}", a.body);
    let big = serde_json::json!({ "name": "big", "description": "x".repeat(1_100_000) });
    let a = post(&provider, "/v1/services", &big, &[]);
    assert_eq!((a.code, a.body["status"].as_u64()), (413, Some(413)), "{}", a.body);

    // The stranger cannot connect to a service not whitelisted for it: refused exactly
    // as for one that does not exist; nor create anything in a VPC not its own.
    let ep = |name: &str, service: &str| serde_json::json!({ "name": name, "vpc": "vpc0", "service": service, "ip": "10.0.0.100" });
    let hidden = post(&stranger, "/v1/endpoints", &ep("sneaky", "web"), &[]);
    let absent = post(&stranger, "/v1/endpoints", &ep("sneaky", "nosuch"), &[]);
    assert_eq!((hidden.code, absent.code), (422, 422), "{} {}", hidden.body, absent.body);
    assert_eq!(hidden.body["errors"][0]["message"].as_str().unwrap().replace("web", "X"), absent.body["errors"][0]["message"].as_str().unwrap().replace("nosuch", "X"));

    // The consumer connects by the service's id, with a security group of its own.
    let sg = serde_json::json!({ "name": "clients", "rules": [{ "priority": 1, "action": "allow", "protocol": "tcp", "ports": "80", "source": "10.0.0.0/24" }] });
    let a = post(&consumer, "/v1/security-groups", &sg, &[]);
    assert_eq!((a.code, a.body["owner"].as_str()), (201, Some("100001")), "{}", a.body);
    // An endpoint named like another account's security group shows none of the
    // group's audit trail (who made it, with which token, from where).
    let twin = post(&provider, "/v1/endpoints", &serde_json::json!({ "name": "clients", "vpc": "prov", "service": "web", "ip": "192.168.2.100" }), &[]);
    assert_eq!(twin.code, 201, "{}", twin.body);
    let said = |t: &str| call(&lab, &pki, Some(t), "GET", "/v1/events").1.as_array().unwrap().iter().map(|e| e["message"].as_str().unwrap_or("").to_string()).collect::<Vec<_>>();
    assert!(!said(&provider).iter().any(|m| m.contains("security group")), "{:?}", said(&provider));
    assert!(said(&consumer).iter().any(|m| m.contains("create security group clients")), "the group's owner sees its trail: {:?}", said(&consumer));
    assert_eq!(send(&lab, &pki, Some(&provider), "DELETE", "/v1/endpoints/clients", None, &[]).code, 204);
    assert!(said(&provider).iter().any(|m| m.starts_with("clients (ep-") && m.ends_with("deleted")), "an account still reads the events of what it deleted: {:?}", said(&provider));
    // Nor does an endpoint named like another account's service show the service's
    // audit trail.
    let named_web = post(&consumer, "/v1/endpoints", &serde_json::json!({ "name": "web", "vpc": "vpc0", "service": "web", "ip": "10.0.0.101" }), &[]);
    assert_eq!(named_web.code, 201, "{}", named_web.body);
    assert!(!said(&consumer).iter().any(|m| m.contains(": create service web") || m.contains(": change service web")), "{:?}", said(&consumer));
    assert!(said(&provider).iter().any(|m| m.contains("create service web")), "{:?}", said(&provider));
    assert_eq!(send(&lab, &pki, Some(&consumer), "DELETE", "/v1/endpoints/web", None, &[]).code, 204);
    let mut mine = ep("web-from-vpc0", created.body["id"].as_str().unwrap());
    mine["security_groups"] = serde_json::json!(["clients"]);
    let a = post(&consumer, "/v1/endpoints", &mine, &[]);
    assert_eq!((a.code, a.body["state"].as_str(), a.body["service"].as_str()), (201, Some("pendingAcceptance"), Some("web")), "{}", a.body);
    assert!(lab.in_client(0, || http_get(SocketAddr::from((ENDPOINT, ENDPOINT_TCP_PORT)))).is_err(), "pending: no traffic yet");

    // The third account sees none of it and changes nothing of theirs.
    for path in ["/v1/services/web", "/v1/endpoints/web-from-vpc0", "/v1/security-groups/clients"] {
        assert_eq!(send(&lab, &pki, Some(&stranger), "PATCH", path, Some("{\"description\": \"mine now\"}"), &[]).code, 404, "PATCH {path}");
        assert_eq!(send(&lab, &pki, Some(&stranger), "DELETE", path, None, &[]).code, 404, "DELETE {path}");
    }
    assert_eq!(call(&lab, &pki, Some(&stranger), "POST", "/v1/services/web/connections/web-from-vpc0/accept").0, 404);
    assert_eq!(call(&lab, &pki, Some(&consumer), "POST", "/v1/services/web/connections/web-from-vpc0/accept").0, 403, "a consumer cannot accept its own endpoint");

    // The provider accepts; traffic flows.
    let a = call(&lab, &pki, Some(&provider), "POST", "/v1/services/web/connections/web-from-vpc0/accept");
    assert_eq!((a.0, a.1["state"].as_str()), (200, Some("accepted")), "{}", a.1);
    let got = lab.in_client(0, || http_get(SocketAddr::from((ENDPOINT, ENDPOINT_TCP_PORT)))).expect("the accepted endpoint carries traffic");
    assert!(got.contains("backend"), "{got}");
    // The provider's counters of its service: each endpoint's and their sum.
    let (code, st) = call(&lab, &pki, Some(&provider), "GET", "/v1/services/web/stats");
    assert_eq!((code, st["endpoints"][0]["endpoint"].as_str()), (200, Some("web-from-vpc0")), "{st}");
    assert!(st["new_connections"].as_u64().unwrap_or(0) >= 1, "{st}");
    assert_eq!(call(&lab, &pki, Some(&consumer), "GET", "/v1/services/web/stats").0, 403, "a consumer reads no provider's counters");
    assert_eq!(call(&lab, &pki, Some(&stranger), "GET", "/v1/services/web/stats").0, 404);

    // The CLI as a tenant, run as an unprivileged user with the API and token file in
    // its environment: the consoles' lists, the stranger's refusals, root's verbs
    // refused.
    let cons_file = pki.path("consumer.token");
    std::fs::write(&cons_file, format!("{consumer}\n")).unwrap();
    let (code, out, _) = tenant_cli(&lab, &pki, &cons_file, &["get", "services"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("AVAILABLE SERVICES") && out.lines().any(|l| l.starts_with("web ") && l.contains("lab.web.epsrv-")), "{out}");
    let (code, out, _) = tenant_cli(&lab, &pki, &cons_file, &["get", "endpoints"]);
    assert!(code == 0 && out.lines().any(|l| l.starts_with("web-from-vpc0 ") && l.contains("accepted") && l.contains(" api")), "{out}");
    let (code, out, _) = tenant_cli(&lab, &pki, &cons_file, &["get", "endpoints", "-o", "json"]);
    assert_eq!((code, serde_json::from_str::<Value>(&out).unwrap()[0]["state"].as_str()), (0, Some("accepted")), "{out}");
    let (code, _, err) = tenant_cli(&lab, &pki, &cons_file, &["reject", "web-from-vpc0"]);
    assert!(code == 1 && err.contains("may not") && err.contains("HTTP 403"), "a consumer decides nothing: {err}");
    let (code, _, err) = tenant_cli(&lab, &pki, &cons_file, &["token", "list"]);
    assert!(code == 1 && err.contains("for root on the gateway"), "{err}");
    let x_file = pki.path("stranger.token");
    std::fs::write(&x_file, &stranger).unwrap();
    let (code, _, err) = tenant_cli(&lab, &pki, &x_file, &["describe", "endpoint", "web-from-vpc0"]);
    assert!(code == 1 && err.contains("no endpoint named") && err.contains("HTTP 404"), "{err}");

    // Two consoles: the second change made with the tag the first one read is refused
    // (412); with the new tag it applies.
    let read = send(&lab, &pki, Some(&consumer), "GET", "/v1/endpoints/web-from-vpc0", None, &[]);
    let first = send(&lab, &pki, Some(&consumer), "PATCH", "/v1/endpoints/web-from-vpc0", Some("{\"bandwidth\": \"100Mbps\"}"), &[&format!("If-Match: {}", read.etag)]);
    assert_eq!((first.code, first.body["bandwidth_bps"].as_u64()), (200, Some(100_000_000)), "{}", first.body);
    assert_ne!(first.etag, read.etag);
    let second = send(&lab, &pki, Some(&consumer), "PATCH", "/v1/endpoints/web-from-vpc0", Some("{\"bandwidth\": \"200Mbps\"}"), &[&format!("If-Match: {}", read.etag)]);
    assert_eq!(second.code, 412, "{}", second.body);
    let renamed = send(&lab, &pki, Some(&consumer), "PATCH", "/v1/endpoints/web-from-vpc0", Some("{\"name\": \"other\"}"), &[]);
    assert_eq!((renamed.code, renamed.body["errors"][0]["path"].as_str()), (422, Some("name")), "{}", renamed.body);

    // Quotas: a second service fits the operator's quota of 2, a third does not.
    assert_eq!(post(&provider, "/v1/services", &web_service("web2"), &[]).code, 201);
    let a = post(&provider, "/v1/services", &web_service("web3"), &[]);
    assert!(a.code == 422 && a.body.to_string().contains("quota of 2 services"), "{}", a.body);

    // The operator applies its spec again: every tenant's resource stays, marked as the
    // API's; claiming one of their names is an error naming the owner.
    let r = lab.apply(&operator_spec, &[]);
    assert_eq!(r.code, 0, "{r:#?}");
    let table = lab.ok(&["get", "services"]);
    assert!(table.contains("MANAGED BY") && table.lines().any(|l| l.starts_with("web ") && l.contains("api")), "{table}");
    assert_eq!(lab.endpoint("web-from-vpc0")["state"], "accepted", "the decision stays");
    assert!(lab.in_client(0, || http_get(SocketAddr::from((ENDPOINT, ENDPOINT_TCP_PORT)))).is_ok(), "still carries traffic");
    let clash = operator_spec.replace("services: []\n", &format!("services:\n{}", service("web", "100009", &[])));
    let r = lab.apply(&clash, &[]);
    assert!(r.code != 0 && r.stderr.contains("managed through the tenant API by account 100002"), "{r:#?}");
    assert!(lab.ok(&["events"]).contains("account 100002 (token prov)"), "the audit trail names who created");

    // Deleting a service with a live endpoint needs force; then both go.
    let a = send(&lab, &pki, Some(&provider), "DELETE", "/v1/services/web", None, &[]);
    assert_eq!(a.code, 409, "{}", a.body);
    let a = send(&lab, &pki, Some(&provider), "DELETE", "/v1/services/web?force=true", None, &[]);
    assert_eq!(a.code, 204, "{}", a.body);
    assert!(names(&call(&lab, &pki, Some(&consumer), "GET", "/v1/endpoints").1).is_empty(), "its endpoint went with it");
    assert!(lab.in_client(0, || http_get(SocketAddr::from((ENDPOINT, ENDPOINT_TCP_PORT)))).is_err(), "no traffic after the delete");
    assert_eq!(send(&lab, &pki, Some(&consumer), "DELETE", "/v1/security-groups/clients", None, &[]).code, 204);
    assert!(call(&lab, &pki, Some(&consumer), "GET", "/v1/security-groups").1.as_array().unwrap().is_empty());
}

/// EMQX's bidirectional PrivateLink, as docs/tenant-api.md and examples/ give it: the operator
/// applies examples/bidirectional.yaml, then examples/bidirectional-api.sh runs as
/// written (curl, each account with its own token); traffic flows both ways, each way
/// consumer to provider, and each backend sees a SNAT address, never the client.
#[test]
fn the_bidirectional_example_runs_as_written() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let script = root.join("examples/bidirectional-api.sh");
    let readme = std::fs::read_to_string(root.join("docs/tenant-api.md")).unwrap();
    let text = std::fs::read_to_string(&script).unwrap();
    for line in text.lines().filter(|l| l.starts_with("api ")) {
        assert!(readme.contains(line), "docs/tenant-api.md's bidirectional section lacks the script's line:\n{line}");
    }
    let pki = Pki::new();
    let (cert, key) = (pki.path("api.pem"), pki.path("api.key"));
    let lab = DaemonLab::with_daemon_args(1, &["--api-listen", API, "--api-tls-cert", &cert, "--api-tls-key", &key]);
    // VPC1 hosts account A's backend (the lab's client host, 10.0.0.2): the gateway has
    // an address there and the host routes the SNAT range back to it.
    lab.gw.ip(&["addr", "add", "10.0.0.1/24", "dev", "gw-c0"]);
    lab.consumers[0].ns.ip(&["route", "add", "11.163.0.0/16", "via", "10.0.0.1"]);
    let spec = std::fs::read_to_string(root.join("examples/bidirectional.yaml")).unwrap().replace("gw-vpc1", "gw-c0").replace("gw-vpc2", "gw-prov");
    let r = lab.apply(&spec, &[]);
    assert_eq!(r.code, 0, "{r:#?}");
    let (a, b) = (token(&lab, &["--account", "100001", "--name", "a"]), token(&lab, &["--account", "100002", "--name", "b"]));

    let env = [format!("API=https://{API}"), format!("CA={}", pki.path("ca.pem")), format!("TOKEN_A={a}"), format!("TOKEN_B={b}")];
    let mut cmd: Vec<&str> = vec!["env"];
    cmd.extend(env.iter().map(String::as_str));
    cmd.extend(["sh", script.to_str().unwrap()]);
    let o = lab.gw.try_exec(&cmd);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "the script failed: {}\n{out}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(out.matches("\"state\":\"accepted\"").count(), 2, "both accepts answered: {out}");

    // A's backend: an HTTP answer naming the peer it saw, in VPC1.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (ready_tx, ready) = std::sync::mpsc::channel();
    let server = {
        let stop = stop.clone();
        lab.consumers[0].ns.spawn(move || {
            use std::io::{Read, Write};
            let l = std::net::TcpListener::bind("10.0.0.2:9090").unwrap();
            l.set_nonblocking(true).unwrap();
            ready_tx.send(()).unwrap();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match l.accept() {
                    Ok((mut s, peer)) => {
                        s.set_nonblocking(false).unwrap();
                        let mut buf = [0u8; 512];
                        let _ = s.read(&mut buf);
                        let _ = s.write_all(format!("HTTP/1.0 200 OK\r\n\r\nbackend-a peer={peer}\n").as_bytes());
                    }
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
                }
            }
        })
    };
    ready.recv().unwrap();
    // B's client (a host of VPC2) through a-from-vpc2 to A's service.
    let got = lab.provider.spawn(|| http_get(SocketAddr::from(([192, 168, 2, 100], 90)))).join().unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    server.join().unwrap();
    let got = got.expect("B reaches A's service through its endpoint");
    let peer = reported_peer(&got);
    assert!(got.contains("backend-a") && peer.ip().to_string().starts_with("11.163."), "A's backend sees a SNAT address: {got}");
    // A's client (VPC1) through b-from-vpc1 to B's service.
    let got = lab.in_client(0, || http_get(SocketAddr::from((ENDPOINT, ENDPOINT_TCP_PORT)))).expect("A reaches B's service through its endpoint");
    assert!(got.contains("backend") && reported_peer(&got).ip().to_string().starts_with("11.163."), "{got}");
    // Each account sees its own service and endpoint, the other's service as available.
    let (_, mine) = call(&lab, &pki, Some(&a), "GET", "/v1/services");
    assert_eq!((names(&mine["own"]), names(&mine["available"])), (vec!["a-api"], vec!["b-api"]), "{mine}");
    assert_eq!(names(&call(&lab, &pki, Some(&b), "GET", "/v1/endpoints").1), ["a-from-vpc2"]);
}
