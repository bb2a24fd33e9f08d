//! The control plane end to end: the real daemon in a gateway namespace, driven only
//! through the `privatelink` CLI, with real TCP/UDP from consumer namespaces to the
//! provider's backends. What is asserted is what an operator or a backend would see.

use privatelink_common::{EpIpKey, MAP_EP_IPS};
use privatelink_tests::{daemon_lab::*, lab::*};
use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

fn ep_tcp() -> SocketAddr {
    SocketAddr::from((ENDPOINT, ENDPOINT_TCP_PORT))
}

/// A long-lived connection: the backend echoes what it gets until 1 MB went through.
fn echo_session() -> std::io::Result<TcpStream> {
    let mut s = connect(ep_tcp())?;
    s.write_all(b"ECHO 1000000\n")?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    Ok(s)
}

/// One round trip on an echo session.
fn roundtrip(s: &mut TcpStream, msg: &[u8]) -> std::io::Result<()> {
    s.write_all(msg)?;
    let mut back = vec![0u8; msg.len()];
    s.read_exact(&mut back)?;
    if back != msg {
        return Err(std::io::Error::other("echo mismatch"));
    }
    Ok(())
}

#[test]
fn cross_account_endpoint_waits_for_approval_then_reaches_a_backend_from_its_snat_address() {
    let lab = DaemonLab::new(1);
    let spec = spec(
        1,
        &service("web", "100002", &["allowed_accounts: [\"100001\"]", "description: orders API"]),
        &endpoint("web-from-vpc1", "100001", 0, "web"),
    );
    let r = lab.apply(&spec, &[]);
    assert_eq!(r.code, 0, "{r:#?}");
    assert!(r.stdout.contains("+ service web (epsrv-"), "{}", r.stdout);
    assert!(r.stdout.contains("+ endpoint web-from-vpc1 (ep-"), "{}", r.stdout);
    assert!(r.stdout.contains("10.0.0.100 in VPC vpc0 -> service web (pendingAcceptance)"), "{}", r.stdout);

    let table = lab.ok(&["get", "endpoints"]);
    let row = table.lines().find(|l| l.starts_with("web-from-vpc1")).unwrap_or_else(|| panic!("{table}"));
    assert!(row.contains("pendingAcceptance"), "{table}");
    let ep = lab.endpoint("web-from-vpc1");
    assert_eq!(ep["state"], "pendingAcceptance");
    assert!(ep["id"].as_str().unwrap().starts_with("ep-"));
    let snat: std::net::Ipv4Addr = ep["snat_ip"].as_str().unwrap().parse().unwrap();
    assert!(snat.octets()[..2] == [11, 163], "{snat}");

    // Pending: the client cannot connect, and the drop is counted as such.
    assert!(lab.in_client(0, || http_get(ep_tcp())).is_err(), "connected through a pending endpoint");
    let stats = lab.json(&["stats"]);
    assert!(stats["endpoints"][0]["drops"]["pending"].as_u64().unwrap() >= 1, "{stats:#}");

    let out = lab.ok(&["accept", "web-from-vpc1"]);
    assert!(out.contains("now accepted"), "{out}");
    let body = lab.in_client(0, || http_get(ep_tcp())).expect("HTTP through the accepted endpoint");
    assert!(body.starts_with("backend=backend-"), "{body}");
    let peer = reported_peer(&body);
    assert_eq!(peer.ip(), std::net::IpAddr::V4(snat), "the backend saw {peer}, not the endpoint's SNAT address");

    // The backend's view, explained: whois on the address and port it saw.
    let w = lab.json(&["whois", &peer.to_string()]);
    assert_eq!(w["endpoint"], "web-from-vpc1");
    assert_eq!(w["account"], "100001");
    assert_eq!(w["vpc"], "vpc0");
    assert_eq!(w["flows"][0]["client"]["address"], "10.0.0.2", "{w:#}");
    let flows = lab.json(&["conntrack", "list", "--endpoint", "web-from-vpc1"]);
    let same = |f: &&serde_json::Value| f["snat"]["address"] == peer.ip().to_string() && f["snat"]["port"] == peer.port();
    assert!(flows.as_array().unwrap().iter().any(|f| same(&f)), "{flows:#}");
    let stats = lab.json(&["stats"]);
    assert_eq!(stats["endpoints"][0]["new_connections"], 1, "{stats:#}");

    let d = lab.ok(&["describe", "service", "web"]);
    assert!(d.contains("full name:") && d.contains("lab.web.epsrv-"), "{d}");
    assert!(d.contains("description:      orders API"), "{d}");

    // Rejected: new connections are refused again.
    let out = lab.ok(&["reject", "web-from-vpc1"]);
    assert!(out.contains("now rejected"), "{out}");
    assert!(lab.in_client(0, || http_get(ep_tcp())).is_err(), "connected through a rejected endpoint");
    let stats = lab.json(&["stats"]);
    assert!(stats["endpoints"][0]["drops"]["rejected"].as_u64().unwrap() >= 1, "{stats:#}");
}

#[test]
fn same_account_is_accepted_at_once_star_with_auto_accept_too_and_a_stranger_is_refused() {
    let lab = DaemonLab::new(3);
    let services = service("web", "100002", &[]) + &service("open", "100002", &["allowed_accounts: [\"*\"]", "auto_accept: true"]);
    let endpoints = endpoint("own", "100002", 0, "web") + &endpoint("anyone", "100007", 1, "open");
    let spec1 = spec(3, &services, &endpoints);
    let r = lab.apply(&spec1, &[]);
    assert_eq!(r.code, 0, "{r:#?}");
    assert_eq!(lab.endpoint("own")["state"], "accepted", "the owner's own endpoint needs no approval");
    assert_eq!(lab.endpoint("anyone")["state"], "accepted", "\"*\" with auto_accept");
    for i in [0, 1] {
        let body = lab.in_client(i, || http_get(ep_tcp())).expect("HTTP through an accepted endpoint");
        assert!(body.starts_with("backend=backend-"), "{body}");
    }
    // UDP through the same endpoint: 53 -> 5353.
    let answer = lab.in_client(1, || udp_ask(SocketAddr::from((ENDPOINT, ENDPOINT_UDP_PORT)), b"q")).expect("UDP answer");
    assert!(answer.contains("got=q"), "{answer}");

    // A second apply of the same spec changes nothing and writes nothing.
    let r = lab.apply(&spec1, &[]);
    assert_eq!(r.code, 0, "{r:#?}");
    assert_eq!(r.stdout.trim(), "no changes (0 map writes)");

    // An account that is neither the owner nor allowed: refused with the reason, and
    // nothing of that apply happens (the other new endpoint is not created either).
    let stranger = endpoints.clone() + &endpoint("stranger", "100009", 2, "web") + "  - { name: extra, owner: \"100002\", vpc: vpc2, service: open, ip: 10.0.0.50 }\n";
    let r = lab.apply(&spec(3, &services, &stranger), &[]);
    assert_eq!(r.code, 1, "{r:#?}");
    assert!(
        r.stderr.contains("endpoints[2].owner: account 100009 may not connect to service `web`: it is neither the owner (100002) nor in allowed_accounts"),
        "{}",
        r.stderr
    );
    let names: Vec<String> = lab.json(&["get", "endpoints"]).as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap().to_string()).collect();
    assert_eq!(names, ["anyone", "own"]);
    assert!(lab.in_client(2, || http_get(ep_tcp())).is_err());
}

#[test]
fn spec_errors_come_back_all_at_once_with_file_line_and_column_and_usage_errors_exit_2() {
    let lab = DaemonLab::new(1);
    let bad = spec(
        1,
        &service("web", "100002", &["connection_limit: 0", "colour: blue"]).replace("endpoint_port: 80,", "endpoint_port: 99999,"),
        &endpoint("1-bad-name", "100002", 0, "web"),
    );
    let r = lab.apply(&bad, &["--dry-run"]);
    assert_eq!(r.code, 1, "{r:#?}");
    // One report: the unknown field (left out, so the rest of its item is still
    // checked) with every rule's error, in the order of the file.
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(lines.len(), 5, "{}", r.stderr);
    assert!(lines[0].ends_with(".yaml:14:26: services[0].ports[0].endpoint_port: a port must be 1-65535, not 99999"), "{}", r.stderr);
    assert!(lines[1].ends_with(".yaml:16:5: services[0].connection_limit: the connection limit must be 1-1000000, not 0"), "{}", r.stderr);
    assert!(lines[2].ends_with(".yaml:17:5: services[0].colour: unknown field `colour`, expected one of `name`, `owner`, `vpc`, `backends`, `ports`, `auto_accept`, `allowed_accounts`, `connection_limit`, `half_open_limit`, `flow_share`, `on_revoke`, `description`, `snat_range`, `snat_addresses_per_endpoint`, `health_check`, `notify_url`, `zone_affinity`, `private_dns_name`"), "{}", r.stderr);
    assert!(lines[3].contains(".yaml:19:7: endpoints[0].name: must be 2-128 characters, start with a letter"), "{}", r.stderr);
    assert_eq!(lines[4], "privatelink: the spec has 4 errors; nothing was applied");
    let bad = bad.replace("    colour: blue\n", "");
    let r = lab.apply(&bad, &[]);
    assert_eq!(r.code, 1, "{r:#?}");
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(lines.len(), 4, "{}", r.stderr);
    assert!(lines[0].ends_with(".yaml:14:26: services[0].ports[0].endpoint_port: a port must be 1-65535, not 99999"), "{}", r.stderr);
    assert_eq!(lines[3], "privatelink: the spec has 3 errors; nothing was applied");
    assert_eq!(lab.json(&["get", "services"]), serde_json::json!([]), "nothing was applied");
    // Usage errors exit 2; a missing name exits 1 with a one-line reason.
    assert_eq!(lab.cli(&["get", "widgets"]).code, 2);
    assert_eq!(lab.cli(&["whois", "11.163.0.1:notaport"]).code, 2);
    let r = lab.cli(&["describe", "endpoint", "nope"]);
    assert_eq!((r.code, r.stderr.trim()), (1, "privatelink: no endpoint named or with id `nope`"));
}

#[test]
fn the_connection_limit_holds_and_quotas_are_enforced() {
    let lab = DaemonLab::new(1);
    let r = lab.apply(&spec(1, &service("web", "100002", &["connection_limit: 2"]), &endpoint("ep", "100002", 0, "web")), &[]);
    assert_eq!(r.code, 0, "{r:#?}");
    let held = lab.in_client(0, || {
        let a = hold(ep_tcp()).expect("first connection");
        let b = hold(ep_tcp()).expect("second connection");
        let third = hold(ep_tcp());
        (a, b, third.is_err())
    });
    assert!(held.2, "a third connection got through a limit of 2");
    let ep = lab.endpoint("ep");
    assert_eq!(ep["active_connections"], 2, "{ep:#}");
    let stats = lab.json(&["stats"]);
    assert!(stats["endpoints"][0]["drops"]["over_limit"].as_u64().unwrap() >= 1, "{stats:#}");
    let table = lab.ok(&["stats"]);
    assert!(table.lines().any(|l| l.starts_with("ep ") && l.contains("2/2") && l.contains("over_limit=")), "{table}");
    drop(held);

    // Quotas: one service per account here, and the second is refused with its path.
    let quota = spec(1, &(service("web", "100002", &[]) + &service("web2", "100002", &[])), "")
        .replace("region: lab\n", "region: lab\n  quotas: { services_per_account: 1 }\n");
    let r = lab.apply(&quota, &[]);
    assert_eq!(r.code, 1, "{r:#?}");
    assert!(r.stderr.contains("services[1]: account 100002 exceeds its quota of 1 services"), "{}", r.stderr);
}

#[test]
fn on_revoke_keep_lets_live_flows_finish_and_reset_cuts_them() {
    let lab = DaemonLab::new(2);
    let services = service("keep", "100002", &["allowed_accounts: [\"100001\"]", "auto_accept: true", "on_revoke: keep"])
        + &service("cut", "100002", &["allowed_accounts: [\"100001\"]", "auto_accept: true", "on_revoke: reset"]);
    let endpoints = endpoint("ep-keep", "100001", 0, "keep") + &endpoint("ep-cut", "100001", 1, "cut");
    let r = lab.apply(&spec(2, &services, &endpoints), &[]);
    assert_eq!(r.code, 0, "{r:#?}");
    let mut keep = lab.in_client(0, echo_session).expect("session through ep-keep");
    let mut cut = lab.in_client(1, echo_session).expect("session through ep-cut");
    roundtrip(&mut keep, b"before").unwrap();
    roundtrip(&mut cut, b"before").unwrap();

    // The provider removes the account from both whitelists.
    let revoked = spec(2, &services.replace("allowed_accounts: [\"100001\"]", "allowed_accounts: []"), &endpoints);
    let r = lab.apply(&revoked, &[]);
    assert_eq!(r.code, 0, "{r:#?}");
    assert!(r.stdout.contains("rejected: account 100001 is no longer allowed (on_revoke: reset)"), "{}", r.stdout);
    assert_eq!(lab.endpoint("ep-keep")["state"], "rejected");
    assert_eq!(lab.endpoint("ep-cut")["reason"], "account 100001 was removed from allowed_accounts");

    roundtrip(&mut keep, b"after").expect("on_revoke: keep must let a live flow go on");
    assert!(roundtrip(&mut cut, b"after").is_err(), "on_revoke: reset must cut the live flow");
    assert_eq!(lab.endpoint("ep-cut")["active_connections"], 0);
    assert_eq!(lab.endpoint("ep-keep")["active_connections"], 1);
    // New connections are refused on both.
    assert!(lab.in_client(0, || http_get(ep_tcp())).is_err());
    assert!(lab.in_client(1, || http_get(ep_tcp())).is_err());

    // `reject` on an accepted endpoint of a reset service cuts as well.
    let r = lab.apply(&spec(2, &services, &endpoints), &[]);
    assert_eq!(r.code, 0, "{r:#?}");
    assert_eq!(lab.endpoint("ep-cut")["state"], "rejected", "re-applying never resets a decision");
    lab.ok(&["accept", "ep-cut"]);
    let mut again = lab.in_client(1, echo_session).expect("session after accepting again");
    roundtrip(&mut again, b"x").unwrap();
    lab.ok(&["reject", "ep-cut"]);
    assert!(roundtrip(&mut again, b"y").is_err(), "reject under on_revoke: reset must cut the live flow");
}

#[test]
fn an_endpoint_can_have_several_snat_addresses_and_whois_knows_each() {
    let lab = DaemonLab::new(1);
    let svc = service("web", "100002", &["snat_addresses_per_endpoint: 3"]);
    assert_eq!(lab.apply(&spec(1, &svc, &endpoint("ep", "100002", 0, "web")), &[]).code, 0);
    let ep = lab.endpoint("ep");
    let ips: Vec<String> = ep["snat_ips"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
    assert_eq!(ips, ["11.163.0.1", "11.163.0.2", "11.163.0.3"], "{ep:#}");
    assert_eq!(ep["snat_ip"], "11.163.0.1");
    for ip in &ips {
        assert_eq!(lab.json(&["whois", ip])["endpoint"], "ep", "whois {ip}");
    }
    // A connection holds one port, as the data path counts it.
    let body = lab.in_client(0, || http_get(ep_tcp())).expect("through the endpoint");
    assert!(body.contains("peer=11.163.0.1:"), "the first address while its ports last: {body}");
    assert!(lab.endpoint("ep")["snat_ports_in_use"].as_u64().unwrap() >= 1);
    // Fewer addresses: the first ones stay.
    let fewer = service("web", "100002", &["snat_addresses_per_endpoint: 2"]);
    let r = lab.apply(&spec(1, &fewer, &endpoint("ep", "100002", 0, "web")), &[]);
    assert!(r.stdout.contains("more snat ips: [11.163.0.2, 11.163.0.3] -> [11.163.0.2]"), "{}", r.stdout);
    assert_eq!(lab.endpoint("ep")["snat_ips"].as_array().unwrap().len(), 2);
    let bad = service("web", "100002", &["snat_addresses_per_endpoint: 17"]);
    let r = lab.apply(&spec(1, &bad, &endpoint("ep", "100002", 0, "web")), &[]);
    assert!(r.stderr.contains("services[0].snat_addresses_per_endpoint: the SNAT addresses per endpoint must be 1-16, not 17"), "{}", r.stderr);
}

#[test]
fn a_cut_the_daemon_died_before_is_finished_by_the_next_start() {
    let mut lab = DaemonLab::new(1);
    let svc = service("cut", "100002", &["allowed_accounts: [\"100001\"]", "auto_accept: true", "on_revoke: reset"]);
    assert_eq!(lab.apply(&spec(1, &svc, &endpoint("ep-cut", "100001", 0, "cut")), &[]).code, 0);
    let mut s = lab.in_client(0, echo_session).expect("session through ep-cut");
    roundtrip(&mut s, b"before").unwrap();
    // The daemon dies between recording the reject (with its cut) and the cut itself.
    lab.stop_daemon(libc::SIGTERM);
    lab.daemon_env = vec![("PRIVATELINK_FAILPOINT".into(), "before-cut".into())];
    lab.start_daemon();
    let r = lab.cli(&["reject", "ep-cut"]);
    assert_ne!(r.code, 0, "the daemon was to die mid-reject: {r:#?}");
    assert!(lab.wait_daemon_exit(), "the failpoint did not stop the daemon");
    assert!(lab.log().contains("failpoint reached"), "{}", lab.log());
    roundtrip(&mut s, b"still").expect("the cut had not happened yet: the flow is alive");
    // The next start reads the recorded cut and finishes it.
    lab.daemon_env.clear();
    lab.start_daemon();
    assert_eq!(lab.endpoint("ep-cut")["state"], "rejected", "the decision was committed");
    assert!(roundtrip(&mut s, b"after").is_err(), "the restarted daemon must cut the live flow");
    assert_eq!(lab.endpoint("ep-cut")["active_connections"], 0);
    assert!(lab.log().contains("finishing flow cuts that were interrupted"), "{}", lab.log());
}

/// `bpftool link detach` for the XDP link pinned at `pin`: the bpf(2) BPF_LINK_DETACH
/// command on the pin's link.

#[test]
fn drift_is_repaired_a_detached_link_and_a_removed_map_entry() {
    let lab = DaemonLab::with_daemon_args(1, &["--repair-interval", "1"]);
    assert_eq!(lab.apply(&spec(1, &service("web", "100002", &[]), &endpoint("ep", "100002", 0, "web")), &[]).code, 0);
    lab.in_client(0, || http_get(ep_tcp())).expect("through the endpoint");
    // Somebody detaches the data path from the consumer interface by hand.
    detach_by_hand(&lab.bpffs.join("links/gw-c0"));
    lab.wait_until("the link re-attached", || lab.json(&["status"])["repaired_links"].as_u64() == Some(1));
    assert!(lab.log().contains("the XDP link was detached by hand: attaching it again"), "{}", lab.log());
    lab.in_client(0, || http_get(ep_tcp())).expect("through the endpoint again");
    // Somebody removes the endpoint's address from the data path's map.
    let pin = lab.bpffs.join("maps").join(MAP_EP_IPS);
    let data = aya::maps::MapData::from_pin(&pin).expect("the pinned map");
    let mut ips: aya::maps::HashMap<aya::maps::MapData, EpIpKey, u32> = aya::maps::HashMap::try_from(aya::maps::Map::HashMap(data)).unwrap();
    let key = EpIpKey { ip_be: u32::from_ne_bytes([10, 0, 0, 100]), vpc_id: lab.json(&["get", "vpcs", "vpc0"])[0]["vpc_id"].as_u64().unwrap() as u16, _pad: 0 };
    ips.remove(&key).expect("the endpoint's address was bound");
    lab.wait_until("the map entry rewritten", || lab.json(&["status"])["repaired_map_ops"].as_u64().unwrap_or(0) >= 1);
    assert!(lab.log().contains("the maps had drifted from the recorded state: repaired"), "{}", lab.log());
    assert_eq!(ips.get(&key, 0).expect("bound again"), 0);
    lab.in_client(0, || http_get(ep_tcp())).expect("through the endpoint after the repair");
}

#[test]
fn pins_of_an_older_map_layout_are_refused_with_the_way_out() {
    let mut lab = DaemonLab::new(1);
    assert_eq!(lab.apply(&spec(1, &service("web", "100002", &[]), &endpoint("ep", "100002", 0, "web")), &[]).code, 0);
    lab.stop_daemon(libc::SIGTERM);
    // What a privatelink of layout 1 leaves behind: its maps, no layout map.
    std::fs::remove_file(lab.bpffs.join("maps").join(privatelink_common::MAP_LAYOUT)).unwrap();
    let err = lab.try_start_daemon().expect_err("a daemon must not read maps of another layout");
    assert!(err.contains("have layout 1") && err.contains("`privatelink down`"), "{err}");
    // The way out it names: down (removes the pins), then start.
    let r = lab.cli(&["down", "--bpffs", lab.bpffs.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{r:#?}");
    lab.start_daemon();
    lab.in_client(0, || http_get(ep_tcp())).expect("the recorded state is applied anew");
}

#[test]
fn a_live_connection_survives_daemon_restarts_and_a_crash() {
    let mut lab = DaemonLab::new(1);
    let spec1 = spec(1, &service("web", "100002", &[]), &endpoint("ep", "100002", 0, "web"));
    assert_eq!(lab.apply(&spec1, &[]).code, 0);
    let mut s = lab.in_client(0, echo_session).expect("session");
    roundtrip(&mut s, b"one").unwrap();
    let prog_before = lab.json(&["status"])["interfaces"][0]["program_id"].as_u64().unwrap();

    // An orderly stop detaches nothing: the pinned links keep the data path running.
    lab.stop_daemon(libc::SIGTERM);
    assert_eq!(lab.pins().iter().filter(|p| p.starts_with("links/")).count(), 2, "{:?}", lab.pins());
    roundtrip(&mut s, b"daemon stopped").expect("the flow must survive the daemon stopping");
    lab.start_daemon();
    roundtrip(&mut s, b"restarted").expect("the flow must survive a restart");
    let status = lab.json(&["status"]);
    let prog_after = status["interfaces"][0]["program_id"].as_u64().unwrap();
    assert_ne!(prog_before, prog_after, "the restarted daemon swaps in its own program");
    assert_eq!(lab.endpoint("ep")["active_connections"], 1, "the flow is still counted");
    let r = lab.apply(&spec1, &[]);
    assert_eq!(r.stdout.trim(), "no changes (0 map writes)", "the restart lost nothing: {r:#?}");

    // A crash (SIGKILL) is no different, and with no daemon at all new connections
    // still open and close: the tail-called programs stay in their pinned table.
    lab.stop_daemon(libc::SIGKILL);
    roundtrip(&mut s, b"crashed").expect("the flow must survive a crash");
    let body = lab.in_client(0, || http_get(ep_tcp())).expect("a new connection with no daemon running");
    assert!(body.starts_with("backend=backend-"), "{body}");
    lab.start_daemon();
    roundtrip(&mut s, b"back").expect("the flow must survive the restart after a crash");
    let body = lab.in_client(0, || http_get(ep_tcp())).expect("new connections after the restart");
    assert!(body.starts_with("backend=backend-"), "{body}");
}

#[test]
fn deleting_a_service_in_use_needs_force_and_down_leaves_nothing_behind() {
    let mut lab = DaemonLab::new(1);
    let r = lab.apply(&spec(1, &service("web", "100002", &[]), &endpoint("ep", "100002", 0, "web")), &[]);
    assert_eq!(r.code, 0, "{r:#?}");
    assert!(lab.in_client(0, || http_get(ep_tcp())).is_ok());
    let r = lab.cli(&["delete", "service", "web"]);
    assert_eq!(r.code, 1);
    assert_eq!(
        r.stderr.trim(),
        "privatelink: service web still has endpoints that are accepted or creating: ep; delete them first or use --force"
    );
    let id = lab.json(&["get", "services"])[0]["id"].as_str().unwrap().to_string();
    let out = lab.ok(&["delete", "service", &id, "--force"]);
    assert!(out.contains("- service web") && out.contains("- endpoint ep"), "{out}");
    assert_eq!(lab.json(&["get", "endpoints"]), serde_json::json!([]));
    assert!(lab.in_client(0, || http_get(ep_tcp())).is_err(), "a deleted endpoint still answers");

    assert!(lab.topo.gw.exec(&["ip", "link", "show", "gw-c0"]).stdout.windows(3).any(|w| w == b"xdp"));
    let out = lab.ok(&["down"]);
    assert!(out.contains("detached"), "{out}");
    assert!(lab.wait_daemon_exit(), "the daemon did not stop after down");
    assert_eq!(lab.pins(), Vec::<String>::new(), "pins left after down");
    for dev in ["gw-c0", "gw-prov"] {
        let link = lab.topo.gw.exec(&["ip", "link", "show", dev]).stdout;
        assert!(!link.windows(3).any(|w| w == b"xdp"), "XDP still attached to {dev}: {}", String::from_utf8_lossy(&link));
    }
}

#[test]
fn only_root_may_use_the_cli() {
    let lab = DaemonLab::new(1);
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(privatelink_bin())
        .arg("--socket")
        .arg(&lab.socket)
        .arg("status")
        .output()
        .expect("setpriv");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "privatelink: must be run as root (the API and the data path are root-only); a tenant uses --api URL --token-file FILE"
    );
    // The daemon checks on its own (SO_PEERCRED), whatever the client: open the socket
    // to everyone and ask as uid 65534, from a thread whose credentials alone change
    // (the raw setresuid syscall, not libc's process-wide wrapper).
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&lab.socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let socket = lab.socket.clone();
    let answer = std::thread::spawn(move || {
        // SAFETY: changes only this thread's credentials; the thread ends right after.
        let rc = unsafe { libc::syscall(libc::SYS_setresuid, 65534, 65534, 65534) };
        assert_eq!(rc, 0, "setresuid: {}", std::io::Error::last_os_error());
        let mut s = std::os::unix::net::UnixStream::connect(&socket).expect("connect as uid 65534");
        s.write_all(b"{\"request\":\"status\"}\n").unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(s), &mut line).unwrap();
        line
    })
    .join()
    .expect("the unprivileged client");
    let v: serde_json::Value = serde_json::from_str(&answer).unwrap_or_else(|e| panic!("{e}: {answer}"));
    assert_eq!(v["error"], "only root may use the privatelink API", "{answer}");
    assert!(v.get("ok").is_none(), "{answer}");
    // Root still gets answers.
    assert_eq!(lab.cli(&["status"]).code, 0);
}
