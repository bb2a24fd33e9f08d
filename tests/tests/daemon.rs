//! The control plane end to end: the real daemon in a gateway namespace, driven only
//! through the `privatelink` CLI, with real TCP/UDP from consumer namespaces to the
//! provider's backends. What is asserted is what an operator or a backend would see.

use privatelink_tests::{daemon_lab::*, lab::*};
use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
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

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < Duration::from_secs(10), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
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
    assert_eq!(w["flows"][0]["client"].as_str().unwrap().split(':').next(), Some("10.0.0.2"));
    let flows = lab.json(&["conntrack", "list", "--endpoint", "web-from-vpc1"]);
    assert!(flows.as_array().unwrap().iter().any(|f| f["snat"] == peer.to_string()), "{flows:#}");
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
