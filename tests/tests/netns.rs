//! Real traffic through the XDP data path attached in native mode to veths between
//! network namespaces: what clients and backends actually see.

use privatelink_common::*;
use privatelink_tests::lab::*;
use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

fn ep_tcp() -> SocketAddr {
    SocketAddr::from((ENDPOINT, ENDPOINT_TCP_PORT))
}

fn ep_udp() -> SocketAddr {
    SocketAddr::from((ENDPOINT, ENDPOINT_UDP_PORT))
}

#[test]
fn http_through_the_endpoint_reaches_a_backend_from_the_snat_address() {
    let lab = Lab::new(1, 3000);
    let body = lab.in_client(0, || http_get(ep_tcp())).expect("HTTP through the endpoint");
    assert!(body.starts_with("backend=backend-"), "{body}");
    let peer = reported_peer(&body);
    // Port mapping 80 -> 8080 happened (the backend listens only on 8080), and the
    // backend saw the endpoint's SNAT address, never the client's.
    assert_eq!(peer.ip(), std::net::IpAddr::V4(snat_ip(0)), "{body}");
    assert!(peer.port() >= SNAT_PORT_MIN);
    let s = lab.dp.maps.endpoint_stats(0).unwrap();
    assert!(s.fwd_packets >= 3 && s.rev_packets >= 3, "{s:?}");
    assert_eq!(s.new_flows, 1);
}

#[test]
fn multi_megabyte_transfer_arrives_intact_both_ways() {
    let lab = Lab::new(1, 3000);
    let data: Vec<u8> = (0..8 * 1024 * 1024u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let sent = fnv1a(&data);
    let back = lab.in_client(0, move || echo(ep_tcp(), &data)).expect("8 MiB echo");
    assert_eq!(back.len(), 8 * 1024 * 1024);
    assert_eq!(fnv1a(&back), sent, "bytes changed on the way");
    let s = lab.dp.maps.endpoint_stats(0).unwrap();
    assert!(s.fwd_bytes > 8 * 1024 * 1024 && s.rev_bytes > 8 * 1024 * 1024, "{s:?}");
}

#[test]
fn udp_request_response_through_the_endpoint() {
    let lab = Lab::new(1, 3000);
    let answer = lab.in_client(0, || udp_ask(ep_udp(), b"ping")).expect("UDP answer");
    assert!(answer.contains("got=ping"), "{answer}");
    let peer = reported_peer(&answer);
    assert_eq!(peer.ip(), std::net::IpAddr::V4(snat_ip(0)));
}

#[test]
fn overlapping_consumer_vpcs_reach_the_same_service_at_once() {
    let lab = Lab::new(2, 3000);
    let a = lab.consumers[0].ns.spawn(|| (0..5).map(|_| http_get(ep_tcp())).collect::<Result<Vec<_>, _>>());
    let b = lab.consumers[1].ns.spawn(|| (0..5).map(|_| http_get(ep_tcp())).collect::<Result<Vec<_>, _>>());
    let (a, b) = (a.join().unwrap().expect("VPC 1"), b.join().unwrap().expect("VPC 2"));
    // Same client IP, same endpoint IP in both VPCs: each answer went back to the VPC
    // that asked, and the backend told them apart by SNAT address.
    for body in &a {
        assert_eq!(reported_peer(body).ip(), std::net::IpAddr::V4(snat_ip(0)), "{body}");
    }
    for body in &b {
        assert_eq!(reported_peer(body).ip(), std::net::IpAddr::V4(snat_ip(1)), "{body}");
    }
    assert_eq!(lab.dp.maps.endpoint_stats(0).unwrap().new_flows, 5);
    assert_eq!(lab.dp.maps.endpoint_stats(1).unwrap().new_flows, 5);
}

#[test]
fn pending_and_rejected_endpoints_pass_nothing() {
    let mut lab = Lab::new(1, 3000);
    lab.set_endpoint_state(0, EP_STATE_PENDING);
    assert!(lab.in_client(0, || http_get(ep_tcp())).is_err(), "pending endpoint answered");
    assert!(lab.in_client(0, || udp_ask(ep_udp(), b"x")).is_err(), "pending endpoint answered UDP");
    let s = lab.dp.maps.endpoint_stats(0).unwrap();
    assert!(s.drop_count(DropReason::Pending) >= 2, "{s:?}");

    lab.set_endpoint_state(0, EP_STATE_ACCEPTED);
    lab.in_client(0, || http_get(ep_tcp())).expect("accepted endpoint");

    lab.set_endpoint_state(0, EP_STATE_REJECTED);
    assert!(lab.in_client(0, || http_get(ep_tcp())).is_err(), "rejected endpoint answered");
    assert!(lab.dp.maps.endpoint_stats(0).unwrap().drop_count(DropReason::Rejected) >= 1);
}

#[test]
fn connection_limit_admits_n_resets_the_next_and_frees_on_close() {
    let lab = Lab::new(1, 3);
    let held = lab.in_client(0, || (0..3).map(|_| hold(ep_tcp())).collect::<Result<Vec<_>, _>>()).expect("3 connections");
    let refused = lab.in_client(0, || connect(ep_tcp()).map(|_| ()));
    let err = refused.expect_err("the 4th connection must be refused");
    // The gateway answered the SYN with a RST: refused at once, not a timeout.
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
    assert_eq!(lab.dp.maps.active_flows(0).unwrap(), 3);
    assert!(lab.dp.maps.endpoint_stats(0).unwrap().drop_count(DropReason::OverLimit) >= 1);

    // Close one: once its FINs went through its slot is free, with no sweep (the
    // closed flow's entries stay for the closing timeout, 10 s, but do not count).
    let mut held = held;
    drop(held.pop());
    wait_active(&lab, 2);
    let again = lab.in_client(0, || hold(ep_tcp())).expect("a new connection after one closed");
    assert_eq!(lab.dp.maps.active_flows(0).unwrap(), 3);
    drop((held, again));
}

/// Wait (at most 2 s, far below the 10 s closing timeout) for the endpoint's active
/// count to reach `n`.
fn wait_active(lab: &Lab, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(2);
    while lab.dp.maps.active_flows(0).unwrap() != n {
        assert!(Instant::now() < deadline, "active count {} never reached {n}", lab.dp.maps.active_flows(0).unwrap());
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn two_thousand_short_connections_pass_a_limit_of_8_and_count_only_while_open() {
    let lab = Lab::new(1, 8);
    let failures = lab.in_client(0, || (0..2000).filter(|_| http_get(ep_tcp()).is_err()).count());
    assert_eq!(failures, 0, "short connections refused by a limit of 8 they never reached");
    wait_active(&lab, 0);
    let s = lab.dp.maps.endpoint_stats(0).unwrap();
    assert_eq!((s.new_flows, s.drop_count(DropReason::OverLimit), s.slot_underflows), (2000, 0, 0));
    // And the limit still holds: 8 of 9 concurrent connections.
    let results = lab.in_client(0, || (0..9).map(|_| hold(ep_tcp())).collect::<Vec<_>>());
    let admitted = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(admitted, 8, "{:?}", results.iter().map(|r| r.as_ref().err().map(|e| e.kind())).collect::<Vec<_>>());
    assert_eq!(lab.dp.maps.active_flows(0).unwrap(), 8);
    drop(results);
    wait_active(&lab, 0);
}

