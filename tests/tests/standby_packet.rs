//! Takeover at the packet level (BPF_PROG_TEST_RUN on the real object): a flow of a
//! node that died, held in the standby table as replication copied it, is adopted by
//! the client's next packet only when its SNAT slice is taken over here; it then
//! leaves rewritten exactly as the dead node rewrote it (same SNAT address and port,
//! same backend), the backend's answers find it, and its removal gives back exactly
//! what adopting it took. Copies that do not fit are never adopted.

use privatelink::dataplane::{
    maps::ip_raw,
    sweep::{Scope, Timeouts},
};
use privatelink_common::*;
use privatelink_tests::{
    frame::{Packet, ACK, PSH, RST},
    packet_lab::*,
};
use std::{collections::BTreeSet, net::Ipv4Addr, time::Duration};

/// The dead node's SNAT address (slice 1 of 11.163.0.0/16 cut in four) and port.
const DEAD_SNAT: Ipv4Addr = Ipv4Addr::new(11, 163, 64, 5);
const DEAD_PORT: u16 = 33000;
/// The SNAT port of `copy(41000, ..)`.
const PORT_41000: u16 = DEAD_PORT;
const DEAD_SLICE: (Ipv4Addr, u8) = (Ipv4Addr::new(11, 163, 64, 0), 18);

/// The copy of an established flow CLIENT:`sport` -> EP_ACCEPTED:80 as the dead node
/// held it (SNAT port `DEAD_PORT` + `sport` % 1000): its hops (interface 999, MACs)
/// are the dead node's.
fn copy(sport: u16, snat: Ipv4Addr, endpoint: u32) -> FlowEvent {
    let port = DEAD_PORT + sport % 1000;
    let key = fwd_key(EP_ACCEPTED, 80, sport, PROTO_TCP);
    let fwd = CtValue {
        last_seen_ns: 1,
        endpoint,
        kind: CT_KIND_FORWARD,
        state: TCP_STATE_ESTABLISHED,
        flags: CT_FLAG_SYNACK,
        route: 1,
        nat_src_ip_be: ip_raw(snat),
        nat_dst_ip_be: ip_raw(BACKEND),
        nat_src_port_be: port.to_be(),
        nat_dst_port_be: 8080u16.to_be(),
        egress_vpc: PROVIDER_VPC,
        mtu: 1500,
        ifindex: 999,
        smac: [0xde, 0xad, 0, 0, 0, 1],
        dmac: [0xde, 0xad, 0, 0, 0, 2],
        backend: 0,
        holds: 0,
        seq_end: 2001,
        ack: 6001,
    };
    let rev_key = fwd.peer_key(PROTO_TCP);
    let rev = CtValue {
        last_seen_ns: 1,
        endpoint,
        kind: CT_KIND_REVERSE,
        state: TCP_STATE_ESTABLISHED,
        nat_src_ip_be: ip_raw(EP_ACCEPTED),
        nat_dst_ip_be: ip_raw(CLIENT),
        nat_src_port_be: 80u16.to_be(),
        nat_dst_port_be: sport.to_be(),
        egress_vpc: CONSUMER_VPC,
        mtu: 1500,
        ifindex: 999,
        smac: [0xde, 0xad, 0, 0, 0, 3],
        dmac: [0xde, 0xad, 0, 0, 0, 4],
        seq_end: 6001,
        ack: 2001,
        ..Default::default()
    };
    FlowEvent { at_ns: 1, op: FLOW_UPSERT, _pad: [0; 7], key, fwd, rev_key, rev }
}

fn data(sport: u16) -> Packet {
    Packet::tcp((CLIENT, sport), (EP_ACCEPTED, 80), ACK | PSH).macs(CLIENT_MAC, GW_CONSUMER_MAC).seq_ack(2001, 6001).payload(b"still there?")
}

fn rst_for(sport: u16) -> Vec<u8> {
    let mut p = Packet::tcp((EP_ACCEPTED, 80), (CLIENT, sport), RST).macs(GW_CONSUMER_MAC, CLIENT_MAC).seq_ack(6001, 0);
    p.id = 0;
    if let privatelink_tests::frame::L4::Tcp { window, .. } = &mut p.l4 {
        *window = 0;
    }
    p.build()
}

fn slices(s: &[(Ipv4Addr, u8)]) -> BTreeSet<(Ipv4Addr, u8)> {
    s.iter().copied().collect()
}

#[test]
fn a_taken_over_flow_is_adopted_by_the_clients_packet_and_leaves_as_the_dead_node_sent_it() {
    let mut lab = PacketLab::new(1024);
    let (_events, mut standby, mut takeover, _handoff) = lab.dp.replication().expect("replication maps");
    let c = copy(41000, DEAD_SNAT, EP_IDX_ACCEPTED);
    standby.put(&c).unwrap();

    // Not taken over (the node is dying, or alive and the consumer's router moved the
    // flow): not this node's to use, and not reset either: dropped, counted, so the
    // client's retransmission finds the takeover done.
    let input = data(41000).build();
    let out = lab.from_consumer(&input);
    expect(&out, XDP_DROP, &input, "no takeover yet: held");
    assert_eq!((ep_stats(&lab, EP_IDX_ACCEPTED).drop_count(DropReason::NoFlow), ep_stats(&lab, EP_IDX_ACCEPTED).resets_sent), (1, 0));
    assert_eq!(takeover.held_packets().unwrap(), 1);
    assert!(standby.get(&c.key).is_some(), "the copy stays");

    // The slice is taken over: the same segment adopts the flow and leaves for the
    // backend from the dead node's SNAT address and port.
    takeover.set(&slices(&[DEAD_SLICE])).unwrap();
    let before = lab.dp.maps.endpoint_use(EP_IDX_ACCEPTED).unwrap();
    let out = lab.from_consumer(&data(41000).build());
    let want = Packet::tcp((DEAD_SNAT, PORT_41000), (BACKEND, 8080), ACK | PSH).ttl(63).macs(GW_PROVIDER_MAC, BACKEND_MAC).seq_ack(2001, 6001).payload(b"still there?").build();
    expect(&out, XDP_REDIRECT, &want, "adopted: on to the backend as before");
    assert!(standby.get(&c.key).is_none() && standby.get(&c.rev_key).is_none(), "the copy moved");
    let fwd = lab.dp.maps.ct_get(&c.key).unwrap().expect("forward entry");
    assert_eq!((fwd.nat_src_ip_be, fwd.nat_src_port_be, fwd.state, fwd.ifindex), (ip_raw(DEAD_SNAT), PORT_41000.to_be(), TCP_STATE_ESTABLISHED, lab.provider_if));
    let rev = lab.dp.maps.ct_get(&c.rev_key).unwrap().expect("reverse entry");
    assert_eq!((rev.ifindex, rev.smac, rev.dmac), (lab.consumer_if, GW_CONSUMER_MAC, CLIENT_MAC), "the way back is this node's");
    let after = lab.dp.maps.endpoint_use(EP_IDX_ACCEPTED).unwrap();
    assert_eq!((after.open - before.open, after.flows - before.flows, after.half_open), (1, 1, before.half_open), "one slot, one place");
    assert_eq!(takeover.adopted().unwrap(), 1);

    // The backend answers the dead node's address: the client hears the endpoint.
    let answer = Packet::tcp((BACKEND, 8080), (DEAD_SNAT, PORT_41000), ACK | PSH).macs(BACKEND_MAC, GW_PROVIDER_MAC).seq_ack(6001, 2013).payload(b"yes");
    let out = lab.from_provider(&answer.build());
    let want = Packet::tcp((EP_ACCEPTED, 80), (CLIENT, 41000), ACK | PSH).ttl(63).macs(GW_CONSUMER_MAC, CLIENT_MAC).seq_ack(6001, 2013).payload(b"yes").build();
    expect(&out, XDP_REDIRECT, &want, "the backend's answer back to the client");

    // Its removal gives back exactly what adopting took: nothing leaks, nothing
    // underflows.
    std::thread::sleep(Duration::from_millis(5));
    let zero = Timeouts { tcp_syn: Duration::ZERO, tcp_established: Duration::ZERO, tcp_closing: Duration::ZERO, udp: Duration::ZERO };
    assert_eq!(lab.dp.sweep(Scope::Idle(zero)).unwrap().expired, 1);
    let end = lab.dp.maps.endpoint_use(EP_IDX_ACCEPTED).unwrap();
    assert_eq!((end.open, end.flows), (before.open, before.flows));
    assert_eq!(ep_stats(&lab, EP_IDX_ACCEPTED).slot_underflows, 0);
    assert_eq!(lab.dp.maps.backend_flows(0).unwrap().live(), 0, "the backend's flow count is back");
}

#[test]
fn copies_that_do_not_fit_are_never_adopted() {
    let mut lab = PacketLab::new(1024);
    let (_events, mut standby, mut takeover, _handoff) = lab.dp.replication().expect("replication maps");
    takeover.set(&slices(&[DEAD_SLICE])).unwrap();
    // Another slice's flow (slice 2: not taken over), a copy for another endpoint
    // than the packet's, a forward copy without its reverse entry, and one whose
    // reverse entry is another flow's (its answers would go to another client).
    let other_slice = copy(42000, Ipv4Addr::new(11, 163, 128, 5), EP_IDX_ACCEPTED);
    let other_endpoint = copy(42001, DEAD_SNAT, EP_IDX_PENDING);
    let lonely = copy(42002, DEAD_SNAT, EP_IDX_ACCEPTED);
    let mut crossed = copy(42004, DEAD_SNAT, EP_IDX_ACCEPTED);
    crossed.rev.nat_dst_port_be = 9u16.to_be();
    for c in [&other_slice, &other_endpoint, &lonely, &crossed] {
        standby.put(c).unwrap();
    }
    standby.remove(&CtKey::default(), &lonely.rev_key);
    for (sport, what) in [(42000, "another slice"), (42001, "another endpoint"), (42002, "no reverse entry"), (42004, "another flow's reverse entry")] {
        let input = data(sport).build();
        let out = lab.from_consumer(&input);
        if sport == 42000 {
            // A slice not taken over: held (its node may be dying), never adopted.
            expect(&out, XDP_DROP, &input, what);
        } else {
            expect(&out, XDP_TX, &rst_for(sport), what);
        }
        assert!(lab.dp.maps.ct_get(&fwd_key(EP_ACCEPTED, 80, sport, PROTO_TCP)).unwrap().is_none(), "{what}: adopted");
    }
    assert_eq!(takeover.adopted().unwrap(), 0);
    // The backend's packet of a taken-over flow does not adopt it (the way back to the
    // client is learned from the client): dropped, counted, the copy stays.
    let good = copy(42003, DEAD_SNAT, EP_IDX_ACCEPTED);
    standby.put(&good).unwrap();
    let drops = lab.dp.maps.vpc_stats(PROVIDER_VPC).unwrap().drop_count(DropReason::NoFlow);
    let answer = Packet::tcp((BACKEND, 8080), (DEAD_SNAT, DEAD_PORT + 3), ACK).macs(BACKEND_MAC, GW_PROVIDER_MAC).seq_ack(6001, 2001);
    assert_eq!(action_name(lab.from_provider(&answer.build()).action), "XDP_DROP");
    assert_eq!(lab.dp.maps.vpc_stats(PROVIDER_VPC).unwrap().drop_count(DropReason::NoFlow), drops + 1);
    assert!(standby.get(&good.key).is_some());
    // Given up (the node is back): nothing is adopted any more.
    takeover.set(&BTreeSet::new()).unwrap();
    let input = data(42003).build();
    expect(&lab.from_consumer(&input), XDP_DROP, &input, "given up: held");
    // A SYN on a copy's tuple opens a new flow (it is nobody's copy).
    takeover.set(&slices(&[DEAD_SLICE])).unwrap();
    let syn5 = syn(EP_ACCEPTED, 80, 42005).build();
    standby.put(&copy(42005, DEAD_SNAT, EP_IDX_ACCEPTED)).unwrap();
    assert_eq!(action_name(lab.from_consumer(&syn5).action), "XDP_REDIRECT");
    assert_eq!(lab.dp.maps.ct_get(&fwd_key(EP_ACCEPTED, 80, 42005, PROTO_TCP)).unwrap().unwrap().state, TCP_STATE_SYN, "a new flow, not the copy");
    assert_eq!(action_name(lab.from_consumer(&data(42003).build()).action), "XDP_REDIRECT", "taken again");
}
