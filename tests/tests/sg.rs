//! Security groups end to end: the real daemon and CLI, real HTTP from two source
//! addresses in one consumer VPC (`curl --interface`), rules changed live with `apply`.

use privatelink_tests::daemon_lab::*;

const ALLOWED: &str = "10.0.0.2";
const OTHER: &str = "10.0.0.9";

fn the_spec(rules: &[&str]) -> String {
    let svc = service("web", "100001", &[]);
    let eps = "  - { name: ep1, owner: \"100001\", vpc: vpc0, service: web, ip: 10.0.0.100, security_groups: [clients] }\n";
    let rules: String = rules.iter().map(|r| format!("      - {r}\n")).collect();
    format!("{}security_groups:\n  - name: clients\n    owner: \"100001\"\n    rules:\n{rules}", spec(1, &svc, eps))
}

/// `curl` from `src` in the consumer VPC to the endpoint: Ok(body), or curl's exit code
/// (28: timed out, what a silently dropped SYN looks like).
fn get_from(lab: &DaemonLab, src: &str) -> Result<String, i32> {
    let out = lab.consumers[0].ns.try_exec(&["curl", "-sS", "--max-time", "2", "--interface", src, "http://10.0.0.100/"]);
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).to_string())
    } else {
        Err(out.status.code().unwrap_or(-1))
    }
}

#[test]
fn rules_admit_and_refuse_sources_and_change_live() {
    let lab = DaemonLab::new(1);
    lab.consumers[0].ns.ip(&["addr", "add", &format!("{OTHER}/24"), "dev", "c0"]);
    let only_one = the_spec(&["{priority: 1, action: allow, protocol: tcp, ports: \"80\", source: 10.0.0.2/32}"]);
    let r = lab.apply(&only_one, &[]);
    assert_eq!(r.code, 0, "{r:#?}");
    let body = get_from(&lab, ALLOWED).expect("the allowed source connects");
    assert!(body.starts_with("backend="), "{body}");
    assert_eq!(get_from(&lab, OTHER), Err(28), "a source no rule allows times out (silent drop)");
    let drops = lab.json(&["stats"]);
    let ep = drops["endpoints"].as_array().unwrap().iter().find(|e| e["endpoint"] == "ep1").unwrap().clone();
    assert!(ep["drops"]["security_group"].as_u64().unwrap_or(0) >= 1, "counted: {ep}");
    let described = lab.ok(&["describe", "endpoint", "ep1"]);
    assert!(described.lines().any(|l| l.starts_with("security groups:") && l.trim_end().ends_with(" clients")), "{described}");

    // Live: the whole /24 allowed, but .2 denied at a higher priority.
    let swapped = the_spec(&[
        "{priority: 1, action: deny, protocol: all, source: 10.0.0.2/32}",
        "{priority: 2, action: allow, protocol: tcp, ports: 80-80, source: 10.0.0.0/24}",
    ]);
    let r = lab.apply(&swapped, &[]);
    assert_eq!(r.code, 0, "{r:#?}");
    assert!(get_from(&lab, OTHER).is_ok(), "now admitted");
    assert_eq!(get_from(&lab, ALLOWED), Err(28), "now refused");

    // Deny wins over allow at equal priority; no group at all allows everyone.
    let tie = the_spec(&["{priority: 5, action: allow, protocol: all, source: 0.0.0.0/0}", "{priority: 5, action: deny, protocol: tcp, source: 10.0.0.9/32}"]);
    assert_eq!(lab.apply(&tie, &[]).code, 0);
    assert_eq!(get_from(&lab, OTHER), Err(28));
    assert!(get_from(&lab, ALLOWED).is_ok());
    let none = tie.replace(", security_groups: [clients]", "");
    assert_eq!(lab.apply(&none, &[]).code, 0);
    assert!(get_from(&lab, OTHER).is_ok() && get_from(&lab, ALLOWED).is_ok());
}
