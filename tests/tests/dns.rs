//! Private DNS end to end: the real daemon and CLI, two overlapping consumer VPCs with
//! the same DNS address, `dig` (Debian's dnsutils) asking from each consumer, and
//! `curl` reaching a backend by the provider's own name with the gateway as its
//! resolver.

use privatelink_tests::daemon_lab::*;
use std::path::PathBuf;

const DNS: &str = "10.0.0.53";
const METRICS: u16 = 9473;

/// web: manual approval, its own name api.orders.example; ep1 in vpc0 (10.0.0.100)
/// and ep2 in vpc1 (10.0.0.150), both VPCs 10.0.0.0/24 with DNS at 10.0.0.53.
fn the_spec(with_ep2: bool) -> String {
    let svc = service("web", "100002", &["allowed_accounts: [\"*\"]", "private_dns_name: api.orders.example"]);
    let mut eps = endpoint("ep1", "100001", 0, "web");
    if with_ep2 {
        eps.push_str("  - { name: ep2, owner: \"100003\", vpc: vpc1, service: web, ip: 10.0.0.150 }\n");
    }
    spec(2, &svc, &eps).replace("cidr: 10.0.0.0/24 }", &format!("cidr: 10.0.0.0/24, dns: {DNS} }}"))
}

/// `dig` from consumer `i`: (status, answer lines "name ttl class type data").
fn dig(lab: &DaemonLab, i: usize, name: &str, rtype: &str) -> (String, Vec<String>) {
    let out = lab.consumers[i].ns.try_exec(&["dig", &format!("@{DNS}"), name, rtype, "+time=2", "+tries=2", "+noall", "+comments", "+answer"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "dig {name} {rtype} from consumer {i}: {text}{}\n{}", String::from_utf8_lossy(&out.stderr), lab.cli(&["stats"]).stdout);
    let status = text.split("status: ").nth(1).and_then(|s| s.split(',').next()).unwrap_or_else(|| panic!("no status in:\n{text}")).to_string();
    let answers = text.lines().filter(|l| !l.starts_with(';') && !l.trim().is_empty()).map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).collect();
    (status, answers)
}

/// The A addresses `dig` gets, with its status.
fn resolve(lab: &DaemonLab, i: usize, name: &str) -> (String, Vec<String>) {
    let (status, answers) = dig(lab, i, name, "A");
    (status, answers.iter().filter_map(|l| l.split(' ').nth(4).map(String::from)).collect())
}

/// `/etc/netns/NS/resolv.conf` (what `ip netns exec` shows a namespace as
/// /etc/resolv.conf), removed on drop.
struct Resolver(PathBuf);
impl Resolver {
    fn new(ns: &str) -> Resolver {
        let dir = PathBuf::from("/etc/netns").join(ns);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("resolv.conf"), format!("nameserver {DNS}\noptions timeout:2 attempts:2\n")).unwrap();
        Resolver(dir)
    }
}
impl Drop for Resolver {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn names_resolve_per_vpc_while_accepted_and_reach_a_backend() {
    let lab = DaemonLab::with_daemon_args(2, &["--metrics", &format!("127.0.0.1:{METRICS}")]);
    let r = lab.apply(&the_spec(true), &[]);
    assert_eq!(r.code, 0, "{r:#?}");
    let (own, refused) = ("api.orders.example", "REFUSED".to_string());
    // Pending: no names. The provider's name is in no zone of the VPC yet.
    assert_eq!(resolve(&lab, 0, own), (refused.clone(), vec![]));
    lab.ok(&["accept", "ep1"]);
    lab.ok(&["accept", "ep2"]);
    let names: Vec<String> = lab.endpoint("ep1")["dns_names"].as_array().unwrap().iter().map(|n| n["name"].as_str().unwrap().to_string()).collect();
    let (ep_name, svc_name) = (names[0].clone(), names[1].clone());
    assert!(ep_name.starts_with("ep-") && ep_name.ends_with(".lab.privatelink.internal"), "{names:?}");
    assert_eq!(names[2], own);
    // Each overlapping VPC resolves every name to its own endpoint.
    for name in [&ep_name, &svc_name, &own.to_string()] {
        assert_eq!(resolve(&lab, 0, name), ("NOERROR".to_string(), vec!["10.0.0.100".to_string()]), "{name} in vpc0");
    }
    assert_eq!(resolve(&lab, 1, &svc_name).1, ["10.0.0.150"]);
    assert_eq!(resolve(&lab, 1, own).1, ["10.0.0.150"]);
    let (_, answers) = dig(&lab, 0, own, "A");
    assert_eq!(answers, [format!("{own}. 60 IN A 10.0.0.100")], "TTL 60 s");
    // ep1's own name is not vpc1's: NXDOMAIN there (its zone, not its name).
    assert_eq!(resolve(&lab, 1, &ep_name).0, "NXDOMAIN");
    // AAAA: NODATA; unknown inside the zone: NXDOMAIN; outside: REFUSED.
    assert_eq!(dig(&lab, 0, own, "AAAA"), ("NOERROR".to_string(), vec![]));
    assert_eq!(resolve(&lab, 0, &format!("nope.{svc_name}")).0, "NXDOMAIN");
    assert_eq!(resolve(&lab, 0, "example.com").0, refused);
    // A client that falls back to TCP (RFC 7766) is refused at once, never left hanging.
    let t = std::time::Instant::now();
    let out = lab.consumers[0].ns.try_exec(&["dig", "+tcp", &format!("@{DNS}"), own, "A", "+time=3", "+tries=1"]);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(t.elapsed() < std::time::Duration::from_secs(1), "dig +tcp took {:?}: {text}", t.elapsed());
    assert!(text.contains("connection refused"), "dig +tcp: {text}");

    // curl by the provider's name, with the gateway as the consumer's resolver.
    let _conf = Resolver::new(&lab.consumers[0].ns.name);
    let out = lab.consumers[0].ns.try_exec(&["curl", "-sS", "--max-time", "5", &format!("http://{own}/")]);
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && body.starts_with("backend=") && body.contains("peer=11.163."), "curl: {body}{}", String::from_utf8_lossy(&out.stderr));

    // The CLI shows the names; the metrics count the answers per VPC and RCODE.
    let described = lab.ok(&["describe", "endpoint", "ep1"]);
    assert!(described.contains(&format!("{ep_name} -> 10.0.0.100")) && described.contains(&format!("{own} -> 10.0.0.100")), "{described}");
    assert!(lab.ok(&["get", "endpoints"]).contains(&ep_name));
    assert!(lab.ok(&["describe", "service", "web"]).contains(own));
    let metrics = lab.scrape(METRICS);
    let count = |vpc: &str, rcode: &str| -> u64 {
        let key = format!("privatelink_dns_queries_total{{vpc=\"{vpc}\",rcode=\"{rcode}\"}} ");
        metrics.lines().find_map(|l| l.strip_prefix(&key)).and_then(|v| v.trim().parse().ok()).unwrap_or_else(|| panic!("no {key} in\n{metrics}"))
    };
    assert!(count("vpc0", "noerror") >= 6 && count("vpc0", "refused") >= 2 && count("vpc0", "nxdomain") >= 1, "{metrics}");
    assert!(count("vpc1", "noerror") >= 2 && count("vpc1", "nxdomain") >= 1);

    // A reject takes ep1's names away; a delete takes ep2's.
    lab.ok(&["reject", "ep1"]);
    assert_eq!(resolve(&lab, 0, own), (refused.clone(), vec![]));
    assert_eq!(resolve(&lab, 0, &ep_name).0, "NXDOMAIN");
    let r = lab.apply(&the_spec(false), &[]);
    assert_eq!(r.code, 0, "{r:#?}");
    lab.wait_until("ep2 deleted", || lab.json(&["get", "endpoints"]).as_array().is_some_and(|a| a.len() == 1));
    assert_eq!(resolve(&lab, 1, own), (refused, vec![]));
}
