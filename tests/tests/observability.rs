//! Health checks, metrics and events through the real daemon: what an operator sees
//! in `get services`, on `/metrics` and in `privatelink events`, and where new
//! connections actually land.

use privatelink_tests::{daemon_lab::*, lab::*};
use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener},
    sync::{Arc, Mutex},
};

const METRICS_PORT: u16 = 9469;

fn ep_tcp() -> SocketAddr {
    SocketAddr::from((ENDPOINT, ENDPOINT_TCP_PORT))
}

/// Which backends `n` new connections from consumer 0 reach.
fn backends_reached(lab: &DaemonLab, n: usize) -> Vec<String> {
    lab.in_client(0, move || {
        (0..n)
            .map(|_| {
                let body = http_get(ep_tcp()).expect("HTTP through the endpoint");
                body.split_whitespace().next().unwrap_or_default().trim_start_matches("backend=").to_string()
            })
            .collect()
    })
}

/// The value of the sample whose line starts with `prefix` (name and labels).
fn sample(metrics: &str, prefix: &str) -> Option<f64> {
    metrics.lines().find(|l| l.starts_with(prefix)).and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok())
}

fn health(lab: &DaemonLab) -> (Vec<bool>, bool) {
    let s = lab.json(&["get", "services", "web"]);
    let ups = s[0]["backends"].as_array().unwrap().iter().map(|b| b["health"].as_str().unwrap() != "down").collect();
    (ups, s[0]["failing_open"].as_bool().unwrap())
}

fn event_kinds(lab: &DaemonLab) -> Vec<String> {
    lab.json(&["events"]).as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap().to_string()).collect()
}

#[test]
fn a_dead_backend_stops_taking_new_flows_comes_back_and_all_dead_fails_open() {
    let mut lab = DaemonLab::with_daemon_args(1, &["--metrics", &format!("127.0.0.1:{METRICS_PORT}")]);
    let check = "health_check: { type: tcp, interval: 300ms, timeout: 200ms, healthy_threshold: 2, unhealthy_threshold: 2 }";
    let r = lab.apply(&spec(1, &service("web", "100002", &[check]), &endpoint("ep", "100002", 0, "web")), &[]);
    assert_eq!(r.code, 0, "{r:#?}");
    assert_eq!(health(&lab), (vec![true, true], false));

    lab.set_backend_running(0, false);
    lab.wait_until("backend-0 marked down", || health(&lab).0 == [false, true]);
    let reached = backends_reached(&lab, 20);
    assert!(reached.iter().all(|b| b == "backend-1"), "new flows still reach the dead backend: {reached:?}");
    let m = lab.scrape(METRICS_PORT);
    assert_eq!(sample(&m, "privatelink_backend_up{service=\"web\",backend=\"192.168.2.10\"}"), Some(0.0), "{m}");
    assert_eq!(sample(&m, "privatelink_backend_up{service=\"web\",backend=\"192.168.2.11\"}"), Some(1.0), "{m}");
    let table = lab.ok(&["get", "services"]);
    assert!(table.contains(" 1/2 "), "{table}");
    let d = lab.ok(&["describe", "service", "web"]);
    assert!(d.contains("192.168.2.10 DOWN (connect: Connection refused"), "{d}");

    // A restarted daemon starts from the last known health: no new flow to backend-0.
    lab.stop_daemon(libc::SIGTERM);
    lab.start_daemon();
    assert_eq!(health(&lab), (vec![false, true], false), "the restart forgot a backend was down");
    let reached = backends_reached(&lab, 20);
    assert!(reached.iter().all(|b| b == "backend-1"), "new flows reach the dead backend after a restart: {reached:?}");

    lab.set_backend_running(0, true);
    lab.wait_until("backend-0 back up", || health(&lab).0 == [true, true]);
    let reached = backends_reached(&lab, 24);
    assert!(reached.iter().any(|b| b == "backend-0") && reached.iter().any(|b| b == "backend-1"), "{reached:?}");

    lab.set_backend_running(0, false);
    lab.set_backend_running(1, false);
    lab.wait_until("failing open", || health(&lab) == (vec![false, false], true));
    let m = lab.scrape(METRICS_PORT);
    assert_eq!(sample(&m, "privatelink_service_failing_open{service=\"web\"}"), Some(1.0), "{m}");
    assert!(lab.ok(&["get", "services"]).contains("0/2 (failing open)"));
    let kinds = event_kinds(&lab);
    let pos = |k: &str| kinds.iter().position(|x| x == k).unwrap_or_else(|| panic!("no {k} in {kinds:?}"));
    assert!(pos("backend.down") < pos("backend.up"), "{kinds:?}");
    assert_eq!(kinds.last().map(String::as_str), Some("service.fail_open"), "{kinds:?}");
    // Failing open, the data path still has backends to send new flows to (their
    // connections are refused by the hosts, not dropped as `no_backend` by the gateway).
    assert!(lab.in_client(0, || http_get(ep_tcp())).is_err());
    let stats = lab.json(&["stats"]);
    assert!(stats["endpoints"][0]["drops"].get("no_backend").is_none(), "{stats:#}");
    lab.set_backend_running(0, true);
    lab.set_backend_running(1, true);
}

#[test]
fn metrics_count_exactly_what_went_through_an_endpoint() {
    let lab = DaemonLab::with_daemon_args(1, &["--metrics", &format!("127.0.0.1:{METRICS_PORT}"), "--log-format", "json"]);
    let r = lab.apply(&spec(1, &service("dns", "100002", &["health_check: { type: none }"]), &endpoint("ep-dns", "100001", 0, "dns")), &[]);
    assert_eq!(r.code, 1, "cross-account without allowed_accounts must be refused");
    let services = service("dns", "100002", &["allowed_accounts: [\"100001\"]", "auto_accept: true", "health_check: { type: none }"]);
    let r = lab.apply(&spec(1, &services, &endpoint("ep-dns", "100001", 0, "dns")), &[]);
    assert_eq!(r.code, 0, "{r:#?}");
    let id = lab.endpoint("ep-dns")["id"].as_str().unwrap().to_string();
    // Exactly one datagram each way.
    let answer = lab.in_client(0, || udp_ask(SocketAddr::from((ENDPOINT, ENDPOINT_UDP_PORT)), b"hello")).expect("UDP answer");
    assert!(answer.contains("got=hello"), "{answer}");
    let m = lab.scrape(METRICS_PORT);
    let labels = format!("endpoint=\"ep-dns\",endpoint_id=\"{id}\",service=\"dns\",account=\"100001\",vpc=\"vpc0\"");
    let get = |name: &str, extra: &str| sample(&m, &format!("{name}{{{labels}{extra}}}")).unwrap_or_else(|| panic!("no {name}{{{labels}{extra}}} in\n{m}"));
    assert_eq!(get("privatelink_endpoint_packets_total", ",direction=\"forward\""), 1.0);
    assert_eq!(get("privatelink_endpoint_packets_total", ",direction=\"reverse\""), 1.0);
    // IPv4 20 + UDP 8 + "hello" 5 (the count is of IP bytes or of frames: 14 more).
    let fwd_bytes = get("privatelink_endpoint_bytes_total", ",direction=\"forward\"");
    assert!(fwd_bytes == 33.0 || fwd_bytes == 47.0, "{fwd_bytes}");
    assert_eq!(get("privatelink_endpoint_new_flows_total", ""), 1.0);
    assert_eq!(get("privatelink_endpoint_active_flows", ""), 1.0);
    assert_eq!(get("privatelink_endpoint_snat_ports_in_use", ""), 1.0);
    // A drop reason appears once it has happened; none has.
    assert!(!m.contains(&format!("privatelink_endpoint_drops_total{{{labels}")), "{m}");
    assert_eq!(get("privatelink_endpoint_connection_limit_hits_total", ""), 0.0);
    // Each backend's flows are the data path's counters: the first scrape has the flow,
    // on exactly one backend, without waiting for the sweeper.
    let per_backend: Vec<f64> = m.lines().filter(|l| l.starts_with("privatelink_backend_flows{service=\"dns\",")).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).collect();
    assert!(!per_backend.is_empty(), "no privatelink_backend_flows for dns:\n{m}");
    assert_eq!(per_backend.iter().sum::<f64>(), 1.0, "the flow is on one backend:\n{m}");
    assert_eq!(per_backend.iter().filter(|f| **f == 1.0).count(), 1, "{m}");
    // The table's size comes from the sweeper's passes, at most a pass old: one flow is
    // two entries by the next one.
    lab.wait_until("the sweeper counted the flow's two entries", || sample(&lab.scrape(METRICS_PORT), "privatelink_conntrack_entries ") == Some(2.0));
    assert_eq!(sample(&m, "privatelink_conntrack_capacity "), Some(65536.0));
    assert!(sample(&m, "privatelink_reconciles_total ").unwrap() >= 1.0, "{m}");
    assert!(m.contains("# TYPE privatelink_endpoint_packets counter"), "{m}");
    assert!(m.trim_end().ends_with("# EOF"), "{m}");
    // --log-format json: every log line is a JSON object with a level and a message.
    let log = lab.log();
    let lines: Vec<serde_json::Value> = log.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect();
    assert!(lines.iter().any(|l| l["fields"]["message"] == "privatelink daemon listening" && l["level"] == "INFO"), "{log}");
    assert!(lines.iter().any(|l| l["fields"]["kind"] == "endpoint.accepted"), "{log}");
}

/// A webhook receiver in the gateway namespace: the bodies it got.
fn webhook(lab: &DaemonLab, port: u16) -> Arc<Mutex<Vec<serde_json::Value>>> {
    let got = Arc::new(Mutex::new(Vec::new()));
    let listener = lab.topo.gw.spawn(move || TcpListener::bind(("127.0.0.1", port))).join().unwrap().expect("bind the webhook");
    let sink = got.clone();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(mut s) = s else { continue };
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut len = 0usize;
            let mut line = String::new();
            while r.read_line(&mut line).map(|n| n > 0).unwrap_or(false) && line.trim_end() != "" {
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                line.clear();
            }
            let mut body = vec![0u8; len];
            if r.read_exact(&mut body).is_ok() {
                if let Ok(v) = serde_json::from_slice(&body) {
                    sink.lock().unwrap().push(v);
                }
            }
            let _ = s.write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n");
        }
    });
    got
}

#[test]
fn events_list_a_cross_account_approval_in_order_and_reach_the_webhook() {
    let lab = DaemonLab::new(1);
    let hook = webhook(&lab, 8099);
    let services = service("web", "100002", &["allowed_accounts: [\"100001\"]", "notify_url: http://127.0.0.1:8099/events", "connection_limit: 1"]);
    let spec1 = spec(1, &services, &endpoint("cross", "100001", 0, "web"));
    assert_eq!(lab.apply(&spec1, &[]).code, 0);
    lab.ok(&["accept", "cross"]);
    // A connection-limit episode: one connection held, a second refused.
    let held = lab.in_client(0, || hold(ep_tcp()).expect("first connection"));
    assert!(lab.in_client(0, || http_get(ep_tcp())).is_err());
    lab.wait_until("the limit episode", || event_kinds(&lab).contains(&"endpoint.connection_limit".to_string()));
    drop(held);
    lab.ok(&["reject", "cross"]);
    lab.ok(&["delete", "endpoint", "cross"]);
    let kinds = event_kinds(&lab);
    let lifecycle: Vec<&str> = kinds.iter().map(String::as_str).filter(|k| !k.contains("connection_limit")).collect();
    assert_eq!(
        lifecycle,
        ["endpoint.created", "endpoint.pendingAcceptance", "endpoint.accepted", "endpoint.rejected", "endpoint.deleted"],
        "{kinds:?}"
    );
    let text = lab.ok(&["events"]);
    assert!(text.lines().any(|l| l.contains("endpoint.accepted") && l.contains("cross is accepted")), "{text}");
    let seqs: Vec<u64> = lab.json(&["events"]).as_array().unwrap().iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    lab.wait_until("the webhook deliveries", || hook.lock().unwrap().len() >= kinds.len());
    let mut delivered: Vec<String> = hook.lock().unwrap().iter().map(|v| v["kind"].as_str().unwrap().to_string()).collect();
    delivered.sort();
    let mut want = kinds.clone();
    want.sort();
    assert_eq!(delivered, want);
    assert!(hook.lock().unwrap().iter().all(|v| v["service"] == "web"));
}

#[test]
fn http_checks_compare_the_status_and_a_reset_policy_cuts_flows_on_a_dead_backend() {
    let lab = DaemonLab::new(1);
    let http = |status: u16| {
        format!("health_check: {{ type: http, path: /healthz, expected_status: {status}, interval: 300ms, timeout: 200ms, healthy_threshold: 1, unhealthy_threshold: 1, on_backend_down: reset }}")
    };
    let with = |status: u16| spec(1, &service("web", "100002", &[&http(status)]), &endpoint("ep", "100002", 0, "web"));
    assert_eq!(lab.apply(&with(204), &[]).code, 0);
    // The lab backends answer 200: both fail a check expecting 204.
    lab.wait_until("both down", || health(&lab) == (vec![false, false], true));
    let d = lab.ok(&["describe", "service", "web"]);
    assert!(d.contains("DOWN (HTTP status 200, expected 204)"), "{d}");
    let r = lab.apply(&with(200), &[]);
    assert!(r.stdout.contains("health_check"), "the plan shows the change: {}", r.stdout);
    lab.wait_until("both up", || health(&lab) == (vec![true, true], false));

    // A live session on one backend; that backend dies; `reset` cuts the session.
    let mut s = lab.in_client(0, || {
        let mut s = connect(ep_tcp()).unwrap();
        s.write_all(b"ECHO 1000000\n").unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(2))).unwrap();
        s
    });
    let roundtrip = |s: &mut std::net::TcpStream| -> std::io::Result<()> {
        s.write_all(b"ping")?;
        let mut b = [0u8; 4];
        s.read_exact(&mut b)
    };
    roundtrip(&mut s).expect("the session works");
    let flows = lab.json(&["conntrack", "list"]);
    let i = if flows[0]["backend"]["address"] == "192.168.2.10" { 0 } else { 1 };
    lab.set_backend_running(i, false);
    // The HTTP check of the stopped backend now fails to connect.
    lab.wait_until("the session's backend down", || !health(&lab).0[i]);
    lab.wait_until("its flow removed", || lab.json(&["conntrack", "list"]).as_array().unwrap().is_empty());
    assert!(roundtrip(&mut s).is_err(), "on_backend_down: reset must cut the session");
    lab.set_backend_running(i, true);
}
