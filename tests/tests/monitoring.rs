//! The monitoring assets in deploy/: the alert rules pass `promtool check rules` and
//! their unit tests (`promtool test rules`), and
//! every metric the rules and the Grafana dashboard name is in a live scrape of the
//! daemon (a renamed metric would leave a silent alert or an empty panel).

use privatelink_tests::{daemon_lab::*, lab::*};
use std::{net::SocketAddr, path::Path, process::Command};

const METRICS_PORT: u16 = 9471;

fn read(rel: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)).unwrap()
}

/// Every `privatelink_...` metric name in `text`.
fn metric_names(text: &str) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("privatelink_") {
        let name: String = rest[i..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        rest = &rest[i + name.len()..];
        out.insert(name);
    }
    out
}

#[test]
fn the_alert_rules_pass_promtool() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/prometheus/alerts.yaml");
    let out = Command::new("promtool").args(["check", "rules"]).arg(&path).output().expect("promtool (Debian prometheus; `cargo xtask setup` installs it)");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && said.contains("SUCCESS: 11 rules found"), "{said}{}", String::from_utf8_lossy(&out.stderr));
    // They fire on the series they are about, after their `for`, and not below their
    // thresholds (deploy/prometheus/alerts_test.yaml).
    let out = Command::new("promtool").args(["test", "rules", "alerts_test.yaml"]).current_dir(path.parent().unwrap()).output().unwrap();
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    // Each alert the issue asks for is there.
    let rules = read("deploy/prometheus/alerts.yaml");
    for alert in ["EndpointNearConnectionLimit", "SnatPortsExhausted", "ConntrackNearlyFull", "BackendDown", "ServiceFailingOpen", "SweeperFallingBehind", "EndpointOverItsShares", "AccountingRepaired", "NodeRestartTakingLong"] {
        assert!(rules.contains(&format!("alert: Privatelink{alert}\n")), "{alert} missing");
    }
}

#[test]
fn every_metric_the_alerts_and_the_dashboard_name_is_in_a_live_scrape() {
    let dashboard: serde_json::Value = serde_json::from_str(&read("deploy/grafana/privatelink.json")).expect("the dashboard is JSON");
    let exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| t["expr"].as_str().unwrap().to_string())
        .collect();
    let panels = exprs.join("\n");
    // What the dashboard must show: rates per endpoint, active against the limit, drops
    // by reason (0 before any: absent series are no line at all), backend health.
    for needed in ["rate(privatelink_endpoint_bytes_total", "privatelink_endpoint_active_flows", "privatelink_endpoint_connection_limit", "by (reason)", "or vector(0)", "privatelink_backend_up"] {
        assert!(panels.contains(needed), "no panel uses {needed}");
    }
    let mut names = metric_names(&panels);
    names.extend(metric_names(&read("deploy/prometheus/alerts.yaml")));
    assert!(names.len() >= 15, "{names:?}");

    // A daemon with something to show for each: a limited endpoint, a connection, a drop.
    let lab = DaemonLab::with_daemon_args(1, &["--metrics", &format!("127.0.0.1:{METRICS_PORT}")]);
    let spec = spec(1, &service("web", "100001", &[]), &endpoint("web-from-vpc1", "100001", 0, "web").replace(" }", ", bandwidth: 100Mbps }"));
    assert_eq!(lab.apply(&spec, &[]).code, 0);
    let body = lab.in_client(0, || http_get(SocketAddr::from((ENDPOINT, ENDPOINT_TCP_PORT)))).expect("HTTP through the endpoint");
    assert!(body.starts_with("backend="), "{body}");
    // Port 81 is not mapped: a drop charged to the endpoint.
    assert!(lab.in_client(0, || connect(SocketAddr::from((ENDPOINT, 81)))).is_err());
    let runs = |m: &str| m.lines().find_map(|l| l.strip_prefix("privatelink_sweeper_runs_total ")).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    lab.wait_until("the sweeper's first pass", || runs(&lab.scrape(METRICS_PORT)) >= 1);
    let scrape = lab.scrape(METRICS_PORT);
    let missing: Vec<&String> = names.iter().filter(|n| !scrape.lines().any(|l| l.strip_prefix(n.as_str()).is_some_and(|r| r.starts_with(['{', ' '])))).collect();
    assert!(missing.is_empty(), "named in deploy/ but not in a scrape: {missing:?}\n{scrape}");
}
