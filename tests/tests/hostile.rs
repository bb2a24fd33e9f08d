//! What a hostile tenant can do to the shared gateway, at packet level (the real XDP
//! object, BPF_PROG_TEST_RUN): forged resets, invalid flags, reopened tuples, frames
//! for other MACs, answers provoked towards addresses no host has, rewritten frames
//! the kernel would route by the wrong table, ICMP errors as a way around a bandwidth
//! limit. Each case asserts the verdict, the frame and the counters a user would read.

use privatelink::dataplane::maps::ip_raw;
use privatelink_common::*;
use privatelink_tests::{
    frame::{decode, Packet, ACK, FIN, PSH, RST, SYN},
    packet_lab::*,
};
use std::net::Ipv4Addr;

const PAYLOAD: &[u8] = &[b'x'; 100];

fn from_client(flags: u8, seq: u32, ack: u32) -> Packet {
    Packet::tcp((CLIENT, SPORT), (EP_ACCEPTED, 80), flags).macs(CLIENT_MAC, GW_CONSUMER_MAC).seq_ack(seq, ack)
}

fn from_backend(port: u16, flags: u8, seq: u32, ack: u32) -> Packet {
    Packet::tcp((BACKEND, 8080), (SNAT_IP, port), flags).macs(BACKEND_MAC, GW_PROVIDER_MAC).seq_ack(seq, ack)
}

fn key() -> CtKey {
    fwd_key(EP_ACCEPTED, 80, SPORT, PROTO_TCP)
}

fn active(lab: &PacketLab) -> u64 {
    lab.dp.maps.active_flows(EP_IDX_ACCEPTED).unwrap()
}

fn drops(lab: &PacketLab, r: DropReason) -> u64 {
    ep_stats(lab, EP_IDX_ACCEPTED).drop_count(r)
}

/// SYN 1000, SYN-ACK 5000, ACK, then 100 bytes from the client the backend
/// acknowledged: the client's stream ends at 1101, the backend's at 5001.
fn established(lab: &PacketLab) -> u16 {
    assert_eq!(lab.from_consumer(&syn(EP_ACCEPTED, 80, SPORT).build()).action, XDP_REDIRECT);
    let port = snat_port(lab, &key());
    assert_eq!(lab.from_provider(&from_backend(port, SYN | ACK, 5000, 1001).build()).action, XDP_REDIRECT);
    assert_eq!(lab.from_consumer(&from_client(ACK, 1001, 5001).build()).action, XDP_REDIRECT);
    assert_eq!(lab.from_consumer(&from_client(ACK | PSH, 1001, 5001).payload(PAYLOAD).build()).action, XDP_REDIRECT);
    assert_eq!(lab.from_provider(&from_backend(port, ACK, 5001, 1101).build()).action, XDP_REDIRECT);
    assert_eq!(lab.dp.maps.ct_get(&key()).unwrap().unwrap().state, TCP_STATE_ESTABLISHED);
    assert_eq!(active(lab), 1);
    port
}

/// `frame` with its TCP checksum broken.
fn bad_checksum(mut frame: Vec<u8>) -> Vec<u8> {
    let at = 14 + 20 + 16;
    frame[at] ^= 0x5a;
    frame
}

#[test]
fn forged_resets_free_no_slot_and_the_connection_goes_on() {
    let lab = PacketLab::new(1024);
    let port = established(&lab);
    // TTL 1: the gateway answers time-exceeded and forwards nothing.
    let ttl1 = from_client(RST, 1101, 0).ttl(1).build();
    assert_eq!(action_name(lab.from_consumer(&ttl1).action), "XDP_TX", "TTL 1 is answered, not forwarded");
    // A bad checksum, and sequence numbers outside what the client sent and the backend
    // acknowledged: dropped and counted.
    let cases = [
        ("bad checksum", bad_checksum(from_client(RST, 1101, 0).build())),
        ("before the window", from_client(RST, 1000, 0).build()),
        ("after the window", from_client(RST, 1102, 0).build()),
        ("far away", from_client(RST, 0x8000_0000, 0).build()),
        ("SYN with RST", from_client(SYN | RST, 1101, 0).build()),
    ];
    for (i, (case, f)) in cases.iter().enumerate() {
        expect(&lab.from_consumer(f), XDP_DROP, f, case);
        assert_eq!(drops(&lab, DropReason::InvalidTcp), i as u64 + 1, "{case}: counted");
    }
    assert_eq!(active(&lab), 1, "no forged reset freed the slot");
    assert_eq!(lab.dp.maps.ct_get(&key()).unwrap().unwrap().state, TCP_STATE_ESTABLISHED);
    // The connection goes on both ways.
    let more = from_client(ACK | PSH, 1101, 5001).payload(b"more").build();
    assert_eq!(action_name(lab.from_consumer(&more).action), "XDP_REDIRECT");
    assert_eq!(action_name(lab.from_provider(&from_backend(port, ACK, 5001, 1105).build()).action), "XDP_REDIRECT");
    // The backend's side: a blind reset outside its window does nothing either.
    let blind = from_backend(port, RST, 9999, 0).build();
    expect(&lab.from_provider(&blind), XDP_DROP, &blind, "blind reset from the provider side");
    assert_eq!(active(&lab), 1);
}

#[test]
fn a_real_reset_closes_the_flow_at_both_ends() {
    let lab = PacketLab::new(1024);
    let port = established(&lab);
    // Inside the window (what the backend acknowledged .. what the client sent).
    let rst = from_client(RST, 1101, 0).build();
    assert_eq!(action_name(lab.from_consumer(&rst).action), "XDP_REDIRECT", "forwarded");
    assert_eq!(active(&lab), 0, "the slot is back");
    let v = lab.dp.maps.ct_get(&key()).unwrap().unwrap();
    assert_eq!((v.state, v.flags & CT_FLAG_RESET), (TCP_STATE_CLOSING, CT_FLAG_RESET));
    // The client keeps sending on the reset connection: answered with a reset, never
    // forwarded, so a reset is no way around the connection limit.
    let data = from_client(ACK | PSH, 1101, 5001).payload(b"still here").build();
    let out = lab.from_consumer(&data);
    assert_eq!(action_name(out.action), "XDP_TX");
    let d = decode(&out.frame).unwrap();
    let ip = d.ip.clone().unwrap();
    assert_eq!((d.src_mac, ip.src, ip.dst, ip.tcp_flags & RST), (GW_CONSUMER_MAC, EP_ACCEPTED, CLIENT, RST), "{d}");
    assert_eq!(drops(&lab, DropReason::NoFlow), 1);
    // The backend that did not take the reset (a challenge ACK, RFC 5961) gets one it
    // takes: sequence number = its acknowledgement.
    let challenge = from_backend(port, ACK, 5001, 1101).build();
    let out = lab.from_provider(&challenge);
    assert_eq!(action_name(out.action), "XDP_TX");
    let d = decode(&out.frame).unwrap();
    let ip = d.ip.clone().unwrap();
    assert_eq!((d.src_mac, ip.src, ip.dst, ip.dport, ip.tcp_flags & RST, ip.seq), (GW_PROVIDER_MAC, SNAT_IP, BACKEND, 8080, RST, 1101), "{d}");
    assert_eq!(active(&lab), 0);
}

#[test]
fn fins_free_the_slot_only_once_both_are_acknowledged() {
    let lab = PacketLab::new(1024);
    let port = established(&lab);
    // The client's FIN (at 1101) with a bad checksum: the backend never takes it, so it
    // never acknowledges it.
    let fin = bad_checksum(from_client(FIN | ACK, 1101, 5001).build());
    assert_eq!(lab.from_consumer(&fin).action, XDP_REDIRECT);
    // The backend closes its side without acknowledging the client's FIN; the client
    // acknowledges the backend's FIN.
    assert_eq!(lab.from_provider(&from_backend(port, FIN | ACK, 5001, 1101).build()).action, XDP_REDIRECT);
    assert_eq!(lab.from_consumer(&from_client(ACK, 1102, 5002).build()).action, XDP_REDIRECT);
    assert_eq!(active(&lab), 1, "the client's FIN was never acknowledged: still open");
    // The retransmitted FIN arrives and is acknowledged: closed.
    assert_eq!(lab.from_consumer(&from_client(FIN | ACK, 1101, 5002).build()).action, XDP_REDIRECT);
    assert_eq!(active(&lab), 1);
    assert_eq!(lab.from_provider(&from_backend(port, ACK, 5002, 1102).build()).action, XDP_REDIRECT);
    assert_eq!(active(&lab), 0);
    assert_eq!(lab.dp.maps.ct_get(&key()).unwrap().unwrap().state, TCP_STATE_CLOSING);
}

#[test]
fn syn_with_fin_or_rst_opens_nothing() {
    let lab = PacketLab::new(1024);
    for (case, flags) in [("SYN+FIN", SYN | FIN), ("SYN+RST", SYN | RST)] {
        let f = Packet::tcp((CLIENT, SPORT), (EP_ACCEPTED, 80), flags).macs(CLIENT_MAC, GW_CONSUMER_MAC).build();
        expect(&lab.from_consumer(&f), XDP_DROP, &f, case);
    }
    assert_eq!(drops(&lab, DropReason::InvalidTcp), 2);
    assert!(lab.dp.maps.ct_get(&key()).unwrap().is_none());
    assert_eq!((active(&lab), ep_stats(&lab, EP_IDX_ACCEPTED).new_flows), (0, 0));
}

#[test]
fn reopening_a_closed_tuple_passes_every_check_a_new_flow_does() {
    let mut lab = PacketLab::new(1024);
    let port = established(&lab);
    assert_eq!(lab.from_consumer(&from_client(RST, 1101, 0).build()).action, XDP_REDIRECT);
    assert_eq!(active(&lab), 0);
    // The provider rejects the endpoint (its flows kept, as `on_revoke: keep` does): the
    // same tuple cannot open a connection again.
    let info = lab.dp.maps.endpoint(EP_IDX_ACCEPTED).unwrap();
    lab.dp.maps.set_endpoint(EP_IDX_ACCEPTED, EndpointInfo { state: EP_STATE_REJECTED, ..info }).unwrap();
    let again = syn(EP_ACCEPTED, 80, SPORT).build();
    expect(&lab.from_consumer(&again), XDP_DROP, &again, "reopened by a rejected endpoint");
    assert_eq!((drops(&lab, DropReason::Rejected), active(&lab)), (1, 0));
    assert!(lab.dp.maps.ct_get(&key()).unwrap().is_none(), "the closed flow went, nothing new opened");
    assert!(lab.dp.maps.ct_get(&rev_key(SNAT_IP, port)).unwrap().is_none());
    // Accepted again, but its only backend is marked down: refused with a reset, and no
    // SYN reaches the backend.
    lab.dp.maps.set_endpoint(EP_IDX_ACCEPTED, info).unwrap();
    assert_eq!(lab.from_consumer(&syn(EP_ACCEPTED, 80, SPORT).build()).action, XDP_REDIRECT);
    assert_eq!(lab.from_consumer(&from_client(RST, 1001, 0).build()).action, XDP_REDIRECT);
    lab.dp.maps.set_backend(0, BACKEND, false).unwrap();
    let out = lab.from_consumer(&syn(EP_ACCEPTED, 80, SPORT).build());
    assert_eq!(action_name(out.action), "XDP_TX", "refused");
    assert_eq!((drops(&lab, DropReason::NoBackend), active(&lab)), (1, 0));
}

#[test]
fn frames_for_another_mac_are_dropped_and_answers_leave_from_the_interfaces() {
    let lab = PacketLab::new(1024);
    let foreign = syn(EP_ACCEPTED, 80, SPORT).macs(CLIENT_MAC, [0x02, 0xaa, 0, 0, 0, 1]).build();
    expect(&lab.from_consumer(&foreign), XDP_DROP, &foreign, "unicast to another host");
    assert_eq!(lab.dp.maps.vpc_stats(CONSUMER_VPC).unwrap().drop_count(DropReason::ForeignMac), 1);
    // Broadcast to an endpoint's address: not a flow's, and nothing answers from a
    // group address.
    let bcast = syn(EP_PENDING, 80, SPORT).macs(CLIENT_MAC, [0xff; 6]).build();
    expect(&lab.from_consumer(&bcast), XDP_DROP, &bcast, "broadcast frame to an endpoint address");
    assert!(lab.dp.maps.ct_get(&key()).unwrap().is_none());
    assert_eq!(ep_stats(&lab, EP_IDX_ACCEPTED).new_flows, 0);
    // A refusal's reset leaves from the interface's MAC.
    let out = lab.from_consumer(&syn(EP_NO_BACKEND, 80, SPORT).build());
    assert_eq!(action_name(out.action), "XDP_TX");
    assert_eq!(decode(&out.frame).unwrap().src_mac, GW_CONSUMER_MAC);
}

#[test]
fn nothing_is_generated_towards_addresses_no_host_has() {
    let lab = PacketLab::new(1024);
    for (i, src) in [Ipv4Addr::new(127, 0, 0, 1), Ipv4Addr::new(0, 0, 0, 0), Ipv4Addr::new(224, 0, 0, 1), Ipv4Addr::new(240, 0, 0, 1), Ipv4Addr::BROADCAST].into_iter().enumerate() {
        // A SYN refused (no backend): no reset, counted under its reason.
        let s = Packet::tcp((src, SPORT), (EP_NO_BACKEND, 80), SYN).macs(CLIENT_MAC, GW_CONSUMER_MAC).build();
        expect(&lab.from_consumer(&s), XDP_DROP, &s, &format!("SYN from {src}"));
        assert_eq!(ep_stats(&lab, EP_IDX_NO_BACKEND).drop_count(DropReason::NoBackend), i as u64 + 1);
        // A ping: no echo reply. TTL 1: no time-exceeded.
        let ping = Packet::icmp_echo(src, EP_ACCEPTED).macs(CLIENT_MAC, GW_CONSUMER_MAC).build();
        expect(&lab.from_consumer(&ping), XDP_DROP, &ping, &format!("ping from {src}"));
        let ttl1 = Packet::udp((src, 5555), (EP_ACCEPTED, 53)).macs(CLIENT_MAC, GW_CONSUMER_MAC).ttl(1).build();
        expect(&lab.from_consumer(&ttl1), XDP_DROP, &ttl1, &format!("TTL 1 from {src}"));
    }
    let s = ep_stats(&lab, EP_IDX_ACCEPTED);
    assert_eq!((s.drop_count(DropReason::BadSource), s.icmp_sent, s.resets_sent), (10, 0, 0));
    assert_eq!(ep_stats(&lab, EP_IDX_NO_BACKEND).resets_sent, 0);
}

#[test]
fn resets_are_rate_limited_and_fragmentation_needed_has_a_budget_of_its_own() {
    let mut lab = PacketLab::new(1024);
    // Resets: at most the budget per CPU and second (the test may move between CPUs).
    let cpus = aya::util::nr_cpus().unwrap() as u64;
    let n = ICMP_RATE_PER_SEC as u64 * cpus + 100;
    let sent = (0..n).filter(|i| lab.from_consumer(&syn(EP_NO_BACKEND, 80, 20_000 + *i as u16).build()).action == XDP_TX).count() as u64;
    let s = ep_stats(&lab, EP_IDX_NO_BACKEND);
    assert!(sent >= ICMP_RATE_PER_SEC as u64 && sent <= ICMP_RATE_PER_SEC as u64 * cpus, "{sent} resets of {n}");
    assert_eq!((s.resets_sent, s.drop_count(DropReason::NoBackend)), (sent, n), "every refusal counted");
    // Pings spend the echo budget; path-MTU discovery still gets its answer.
    let ping = Packet::icmp_echo(CLIENT, EP_ACCEPTED).macs(CLIENT_MAC, GW_CONSUMER_MAC).build();
    let replies = (0..n).filter(|_| lab.from_consumer(&ping).action == XDP_TX).count() as u64;
    assert!(replies < n, "the echo budget ran out ({replies} of {n})");
    let prov = lab.dp.maps.vpc(lab.provider_if).unwrap().unwrap();
    lab.dp.maps.set_vpc(lab.provider_if, VpcInfo { mtu: 1000, ..prov }).unwrap();
    let big = Packet::udp((CLIENT, 5555), (EP_ACCEPTED, 53)).macs(CLIENT_MAC, GW_CONSUMER_MAC).payload(&[7u8; 1000]).build();
    let out = lab.from_consumer(&big);
    assert_eq!(action_name(out.action), "XDP_TX", "fragmentation-needed despite the pings");
    assert_eq!(decode(&out.frame).unwrap().ip.unwrap().proto, PROTO_ICMP);
}

#[test]
fn a_route_out_of_another_vpcs_interface_is_no_way_out() {
    let mut lab = PacketLab::new(1024);
    // Service 2's backend sits behind a route in the provider's table that leads out
    // of the consumer VPC's interface (a misconfiguration, or a hostile route).
    let stray = Ipv4Addr::new(192, 168, 7, 7);
    lab.ns.ip(&["route", "add", "192.168.7.0/24", "dev", "vpc1"]);
    lab.ns.ip(&["neigh", "replace", "192.168.7.7", "lladdr", "02:0b:00:00:07:07", "dev", "vpc1", "nud", "permanent"]);
    lab.dp.maps.set_backend(1, stray, true).unwrap();
    let members = [privatelink::dataplane::maglev::Member { index: 1, id: ip_raw(stray), weight: 100 }];
    lab.dp.maps.set_maglev(2, &privatelink::dataplane::maglev::table(&members)).unwrap();
    let input = syn(EP_UNRESOLVED, 80, SPORT).build();
    expect(&lab.from_consumer(&input), XDP_DROP, &input, "FIB answer towards another VPC");
    assert_eq!(ep_stats(&lab, EP_IDX_UNRESOLVED).drop_count(DropReason::ForeignEgress), 1);
    assert_eq!(lab.dp.maps.active_flows(EP_IDX_UNRESOLVED).unwrap(), 0);
}

#[test]
fn icmp_errors_through_a_flow_are_policed_and_capped() {
    let mut lab = PacketLab::new(1024);
    // A UDP flow; the backend's answer as the client saw it, quoted in its errors.
    let q = Packet::udp((CLIENT, 5555), (EP_ACCEPTED, 53)).macs(CLIENT_MAC, GW_CONSUMER_MAC).payload(b"query");
    assert_eq!(lab.from_consumer(&q.build()).action, XDP_REDIRECT);
    let port = snat_port(&lab, &fwd_key(EP_ACCEPTED, 53, 5555, PROTO_UDP));
    let answer = Packet::udp((BACKEND, 5353), (SNAT_IP, port)).macs(BACKEND_MAC, GW_PROVIDER_MAC).payload(b"answer!");
    let out = lab.from_provider(&answer.build());
    let quote = out.frame[14..].to_vec();
    let err = |extra: usize| {
        let mut body = quote.clone();
        body.extend(std::iter::repeat_n(0u8, extra));
        Packet::icmp_error(CLIENT, EP_ACCEPTED, 3, 3, 0, &body).macs(CLIENT_MAC, GW_CONSUMER_MAC).build()
    };
    // Longer than any host sends (576 bytes): dropped.
    let long = err(600);
    expect(&lab.from_consumer(&long), XDP_DROP, &long, "an ICMP error of 600+ bytes");
    assert_eq!(drops(&lab, DropReason::IcmpUnsupported), 1);
    // A limit whose burst holds three errors: the fourth is over it.
    let e = err(0);
    lab.dp.maps.set_rate(EP_IDX_ACCEPTED, Rate { ps_per_byte: 1_000_000_000_000 / e.len() as u64, burst_ns: 2_500_000_000 }).unwrap();
    let got: Vec<_> = (0..4).map(|_| action_name(lab.from_consumer(&e).action)).collect();
    assert_eq!(got, ["XDP_REDIRECT", "XDP_REDIRECT", "XDP_REDIRECT", "XDP_DROP"]);
    assert_eq!(drops(&lab, DropReason::OverBandwidth), 1);
}

/// Make EP_PENDING an accepted endpoint of the same service: a neighbour of
/// EP_ACCEPTED's in the same VPC.
fn accept_neighbour(lab: &mut PacketLab) {
    let info = lab.dp.maps.endpoint(EP_IDX_PENDING).unwrap();
    lab.dp.maps.set_endpoint(EP_IDX_PENDING, EndpointInfo { state: EP_STATE_ACCEPTED, ..info }).unwrap();
}

fn set_budgets(lab: &mut PacketLab, ep: u32, conn: u32, half_open: u32, flows: u32) {
    let info = lab.dp.maps.endpoint(ep).unwrap();
    lab.dp.maps.set_endpoint(ep, EndpointInfo { conn_limit: conn, half_open_limit: half_open, flow_limit: flows, ..info }).unwrap();
}

#[test]
fn a_syn_flood_takes_its_half_open_budget_not_open_connections_nor_the_neighbours() {
    let mut lab = PacketLab::new(1 << 14);
    accept_neighbour(&mut lab);
    set_budgets(&mut lab, EP_IDX_ACCEPTED, 10, 5, 1000);
    for sport in 1..=3 {
        assert!(connect(&lab, sport).is_some());
    }
    // Forged SYNs that never complete: five take the half-open budget, the rest are
    // refused; the three open connections keep their slots, seven slots stay free.
    let flood: Vec<u32> = (0..50u16).map(|i| lab.from_consumer(&syn(EP_ACCEPTED, 80, 30_000 + i).build()).action).collect();
    assert_eq!(flood.iter().filter(|a| **a == XDP_REDIRECT).count(), 5);
    let u = lab.dp.maps.endpoint_use(EP_IDX_ACCEPTED).unwrap();
    assert_eq!((u.open, u.half_open), (3, 5));
    assert_eq!(drops(&lab, DropReason::HalfOpenLimit), 45);
    assert_eq!(drops(&lab, DropReason::OverLimit), 0, "no open-connection slot was taken");
    // The open connections go on; the neighbour endpoint opens connections as before.
    let data = Packet::tcp((CLIENT, 1), (EP_ACCEPTED, 80), ACK | PSH).macs(CLIENT_MAC, GW_CONSUMER_MAC).seq_ack(1001, 5001).payload(b"hi").build();
    assert_eq!(action_name(lab.from_consumer(&data).action), "XDP_REDIRECT");
    assert_eq!(action_name(lab.from_consumer(&syn(EP_PENDING, 80, 40_000).build()).action), "XDP_REDIRECT");
}

#[test]
fn an_endpoint_over_its_share_reclaims_its_closed_flows_and_alone_is_refused() {
    let mut lab = PacketLab::new(1 << 14);
    accept_neighbour(&mut lab);
    set_budgets(&mut lab, EP_IDX_ACCEPTED, 100, 100, 4);
    // Sequential short connections, each closed before the next: far more than its
    // share of 4 flows, because each new one reclaims the oldest closed one.
    for sport in 1..=40u16 {
        assert!(connect(&lab, sport).is_some(), "connection {sport}");
        let rst = Packet::tcp((CLIENT, sport), (EP_ACCEPTED, 80), RST).macs(CLIENT_MAC, GW_CONSUMER_MAC).seq_ack(1001, 0).build();
        assert_eq!(lab.from_consumer(&rst).action, XDP_REDIRECT);
    }
    let u = lab.dp.maps.endpoint_use(EP_IDX_ACCEPTED).unwrap();
    assert!(u.flows <= 4, "{u:?}");
    assert_eq!(drops(&lab, DropReason::FlowShare), 0);
    // Four flows held open (half-open): the fifth has no closed flow to reclaim.
    let mut open = 0;
    for sport in 100..110u16 {
        open += (lab.from_consumer(&syn(EP_ACCEPTED, 80, sport).build()).action == XDP_REDIRECT) as u32;
    }
    assert!(open <= 4, "{open} flows past a share of 4");
    assert!(drops(&lab, DropReason::FlowShare) >= 6);
    // Its neighbour in the same VPC is not refused.
    assert_eq!(action_name(lab.from_consumer(&syn(EP_PENDING, 80, 40_000).build()).action), "XDP_REDIRECT");
}

#[test]
fn a_vpc_takes_no_more_than_its_share_of_the_table() {
    let mut lab = PacketLab::new(1 << 14);
    let consumer = lab.dp.maps.vpc(lab.consumer_if).unwrap().unwrap();
    lab.dp.maps.set_vpc(lab.consumer_if, VpcInfo { flow_limit: 3, ..consumer }).unwrap();
    let passed = (0..10u16).filter(|i| lab.from_consumer(&syn(EP_ACCEPTED, 80, 1000 + i).build()).action == XDP_REDIRECT).count();
    assert_eq!(passed, 3);
    assert_eq!(drops(&lab, DropReason::FlowShare), 7);
    // Removing one gives its place back.
    assert!(lab.dp.sweeper().unwrap().expire_flow(fwd_key(EP_ACCEPTED, 80, 1000, PROTO_TCP), u64::MAX).unwrap());
    assert_eq!(action_name(lab.from_consumer(&syn(EP_ACCEPTED, 80, 2000).build()).action), "XDP_REDIRECT");
}

#[test]
fn a_full_table_makes_room_from_anybodys_closed_flows_never_from_live_ones() {
    // 20 entries: 10 flows. The endpoints' and the VPC's shares are the whole table.
    let mut lab = PacketLab::new(20);
    accept_neighbour(&mut lab);
    // Ten short connections of EP_ACCEPTED, each reset: the table is full of closed flows.
    for sport in 1..=10u16 {
        assert!(connect(&lab, sport).is_some(), "connection {sport}");
        let rst = Packet::tcp((CLIENT, sport), (EP_ACCEPTED, 80), RST).macs(CLIENT_MAC, GW_CONSUMER_MAC).seq_ack(1001, 0).build();
        assert_eq!(lab.from_consumer(&rst).action, XDP_REDIRECT);
    }
    assert_eq!(lab.dp.maps.conntrack().unwrap().len(), 20, "the table is full");
    // Another endpoint's new flows take the closed flows' room, one each...
    for sport in 0..10u16 {
        let out = lab.from_consumer(&syn(EP_PENDING, 80, 40_000 + sport).build());
        assert_eq!(action_name(out.action), "XDP_REDIRECT", "new flow {sport} on a table full of closed flows");
    }
    assert_eq!(lab.dp.maps.endpoint_use(EP_IDX_ACCEPTED).unwrap().flows, 0, "every closed flow made room");
    // ... and once only live flows are left, the next is refused as the table's, and
    // no live flow was evicted.
    let out = lab.from_consumer(&syn(EP_PENDING, 80, 50_000).build());
    assert_eq!(action_name(out.action), "XDP_TX", "refused with a reset");
    assert_eq!(ep_stats(&lab, EP_IDX_PENDING).drop_count(DropReason::ConntrackFull), 1);
    for sport in 0..10u16 {
        assert!(lab.dp.maps.ct_get(&fwd_key(EP_PENDING, 80, 40_000 + sport, PROTO_TCP)).unwrap().is_some(), "live flow {sport} kept");
    }
}

#[test]
fn the_audit_repairs_counters_that_disagree_with_the_table_and_only_those() {
    use privatelink::dataplane::sweep::{Scope, Timeouts};
    let lab = PacketLab::new(1 << 14);
    for sport in 1..=3u16 {
        assert!(connect(&lab, sport).is_some());
    }
    assert_eq!(lab.from_consumer(&syn(EP_ACCEPTED, 80, 100).build()).action, XDP_REDIRECT);
    let sweeper = lab.dp.sweeper().unwrap();
    let idle = || sweeper.sweep(Scope::Idle(Timeouts::default())).unwrap();
    assert_eq!(idle().repairs, vec![], "nothing to repair in a consistent table");
    assert_eq!(idle().repairs, vec![]);
    // A leak, as a path that forgot its give-back would leave: 5 slots too many, and a
    // VPC count 2 short.
    let ep_use = lab.dp.maps.counters(MAP_EP_USE).unwrap();
    let vpc_flows = lab.dp.maps.counters(MAP_VPC_FLOWS).unwrap();
    ep_use.add(EP_IDX_ACCEPTED as usize * std::mem::size_of::<EpUse>() + EP_USE_OPEN, 5);
    vpc_flows.add(CONSUMER_VPC as usize * 8, -2);
    assert_eq!(idle().repairs, vec![], "one pass is not evidence");
    let mut repairs: Vec<_> = idle().repairs.iter().map(|r| (r.endpoint, r.vpc, r.counter, r.was, r.now)).collect();
    repairs.sort();
    assert_eq!(repairs, vec![(None, Some(CONSUMER_VPC), "flows", 2, 4), (Some(EP_IDX_ACCEPTED), None, "open", 8, 3)]);
    let u = lab.dp.maps.endpoint_use(EP_IDX_ACCEPTED).unwrap();
    assert_eq!((u.open, u.half_open, u.flows), (3, 1, 4));
    assert_eq!(idle().repairs, vec![], "repaired for good");
    // The repaired counts are the ones the data path goes on with: the flows close and
    // every counter comes back to zero, none below.
    for sport in [1u16, 2, 3, 100] {
        assert!(sweeper.expire_flow(fwd_key(EP_ACCEPTED, 80, sport, PROTO_TCP), u64::MAX).unwrap());
    }
    let u = lab.dp.maps.endpoint_use(EP_IDX_ACCEPTED).unwrap();
    assert_eq!((u.open, u.half_open, u.flows), (0, 0, 0));
    assert_eq!(ep_stats(&lab, EP_IDX_ACCEPTED).slot_underflows, 0);
    assert_eq!(vpc_flows.load(CONSUMER_VPC as usize * 8), 0);
    assert_eq!(idle().repairs, vec![]);
}

#[test]
fn corrupt_headers_are_neither_forwarded_nor_answered() {
    let lab = PacketLab::new(1024);
    // RFC 1812 5.2.2: an IP header whose checksum is wrong goes no further.
    let mut f = syn(EP_ACCEPTED, 80, SPORT).build();
    f[14 + 10] ^= 0x40;
    expect(&lab.from_consumer(&f), XDP_DROP, &f, "bad IP header checksum");
    assert_eq!(lab.dp.maps.vpc_stats(CONSUMER_VPC).unwrap().drop_count(DropReason::Malformed), 1);
    assert!(lab.dp.maps.ct_get(&key()).unwrap().is_none());
    // A corrupt echo request gets no (corrupt) reply, as a host would give none.
    let mut ping = Packet::icmp_echo(CLIENT, EP_ACCEPTED).macs(CLIENT_MAC, GW_CONSUMER_MAC).payload(&[7u8; 1000]).build();
    let n = ping.len();
    ping[n - 1] ^= 1;
    expect(&lab.from_consumer(&ping), XDP_DROP, &ping, "bad ICMP checksum");
    assert_eq!((drops(&lab, DropReason::Malformed), ep_stats(&lab, EP_IDX_ACCEPTED).icmp_sent), (1, 0));
    ping[n - 1] ^= 1;
    assert_eq!(action_name(lab.from_consumer(&ping).action), "XDP_TX", "the same ping intact is answered");
}
