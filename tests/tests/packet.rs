//! Packet-level tests of the real XDP object (BPF_PROG_TEST_RUN): one per path and per
//! drop reason, asserting the returned action, the whole output frame (checksums
//! verified independently by the decoder) and the counters.

use privatelink::dataplane::{
    maps::ip_raw,
    sweep::{Scope, Timeouts},
};
use privatelink_common::*;
use privatelink_tests::{
    frame::{self, arp_request, decode, Packet, ACK, FIN, PSH, RST, SYN},
    packet_lab::*,
};
use std::{net::Ipv4Addr, time::Duration};

/// SYN in, the rewritten SYN out towards the backend.
fn open_tcp(lab: &PacketLab, sport: u16) -> u16 {
    let out = lab.from_consumer(&syn(EP_ACCEPTED, 80, sport).build());
    assert_eq!(action_name(out.action), "XDP_REDIRECT");
    snat_port(lab, &fwd_key(EP_ACCEPTED, 80, sport, PROTO_TCP))
}

#[test]
fn new_tcp_flow_is_translated_and_redirected_to_the_backend() {
    let lab = PacketLab::new(1024);
    let input = syn(EP_ACCEPTED, 80, SPORT).payload(b"").build();
    let out = lab.from_consumer(&input);
    let port = snat_port(&lab, &fwd_key(EP_ACCEPTED, 80, SPORT, PROTO_TCP));
    assert!(port >= SNAT_PORT_MIN, "SNAT port {port} below the range");
    let want = Packet::tcp((SNAT_IP, port), (BACKEND, 8080), SYN)
        .ttl(63).macs(GW_PROVIDER_MAC, BACKEND_MAC)
        .seq_ack(1000, 0)
        .build();
    expect(&out, XDP_REDIRECT, &want, "SYN to endpoint");
    let s = ep_stats(&lab, EP_IDX_ACCEPTED);
    assert_eq!((s.new_flows, s.fwd_packets, s.fwd_bytes), (1, 1, input.len() as u64));
    // A SYN holds a place in the half-open budget; its slot comes with the handshake.
    let u = lab.dp.maps.endpoint_use(EP_IDX_ACCEPTED).unwrap();
    assert_eq!((u.open, u.half_open, u.flows), (0, 1, 1));
    // The reverse entry is keyed by what the backend will send back.
    let r = lab.dp.maps.ct_get(&rev_key(SNAT_IP, port)).unwrap().expect("reverse entry");
    assert_eq!((r.kind, r.ifindex, r.dmac, r.smac), (CT_KIND_REVERSE, lab.consumer_if, CLIENT_MAC, GW_CONSUMER_MAC));
}

#[test]
fn full_tcp_exchange_forward_reverse_and_state() {
    let lab = PacketLab::new(1024);
    let port = open_tcp(&lab, SPORT);
    let key = fwd_key(EP_ACCEPTED, 80, SPORT, PROTO_TCP);

    // SYN-ACK from the backend goes back to the client as the endpoint.
    let synack = Packet::tcp((BACKEND, 8080), (SNAT_IP, port), SYN | ACK)
        .macs(BACKEND_MAC, GW_PROVIDER_MAC)
        .seq_ack(5000, 1001);
    let out = lab.from_provider(&synack.build());
    let want = Packet::tcp((EP_ACCEPTED, 80), (CLIENT, SPORT), SYN | ACK)
        .ttl(63).macs(GW_CONSUMER_MAC, CLIENT_MAC)
        .seq_ack(5000, 1001)
        .build();
    expect(&out, XDP_REDIRECT, &want, "SYN-ACK back to the client");
    assert_eq!(lab.dp.maps.ct_get(&key).unwrap().unwrap().state, TCP_STATE_SYN, "not established before the client's ACK");

    // Data from the client (its ACK completes the handshake), established path.
    let data = Packet::tcp((CLIENT, SPORT), (EP_ACCEPTED, 80), ACK | PSH)
        .macs(CLIENT_MAC, GW_CONSUMER_MAC)
        .seq_ack(1001, 5001)
        .payload(b"GET / HTTP/1.0\r\n\r\n");
    let out = lab.from_consumer(&data.build());
    let want = Packet::tcp((SNAT_IP, port), (BACKEND, 8080), ACK | PSH)
        .ttl(63).macs(GW_PROVIDER_MAC, BACKEND_MAC)
        .seq_ack(1001, 5001)
        .payload(b"GET / HTTP/1.0\r\n\r\n")
        .build();
    expect(&out, XDP_REDIRECT, &want, "client data");
    assert_eq!(lab.dp.maps.ct_get(&key).unwrap().unwrap().state, TCP_STATE_ESTABLISHED);
    assert_eq!(held(&lab.dp.maps, EP_IDX_ACCEPTED), 1);

    // FINs from both sides, each acknowledged by the other: closing, and the connection
    // no longer counts. Before the last acknowledgement it still does.
    let fin = Packet::tcp((CLIENT, SPORT), (EP_ACCEPTED, 80), FIN | ACK).macs(CLIENT_MAC, GW_CONSUMER_MAC).seq_ack(1019, 5001);
    assert_eq!(lab.from_consumer(&fin.build()).action, XDP_REDIRECT);
    assert_eq!(lab.dp.maps.ct_get(&key).unwrap().unwrap().state, TCP_STATE_ESTABLISHED);
    let fin2 = Packet::tcp((BACKEND, 8080), (SNAT_IP, port), FIN | ACK).macs(BACKEND_MAC, GW_PROVIDER_MAC).seq_ack(5001, 1020);
    assert_eq!(lab.from_provider(&fin2.build()).action, XDP_REDIRECT);
    assert_eq!(lab.dp.maps.ct_get(&key).unwrap().unwrap().state, TCP_STATE_ESTABLISHED, "the backend's FIN is not acknowledged yet");
    assert_eq!(held(&lab.dp.maps, EP_IDX_ACCEPTED), 1);
    let last = Packet::tcp((CLIENT, SPORT), (EP_ACCEPTED, 80), ACK).macs(CLIENT_MAC, GW_CONSUMER_MAC).seq_ack(1020, 5002);
    assert_eq!(lab.from_consumer(&last.build()).action, XDP_REDIRECT);
    assert_eq!(lab.dp.maps.ct_get(&key).unwrap().unwrap().state, TCP_STATE_CLOSING);
    assert_eq!(held(&lab.dp.maps, EP_IDX_ACCEPTED), 0, "closed: the slot is back at once");

    let s = ep_stats(&lab, EP_IDX_ACCEPTED);
    assert_eq!((s.fwd_packets, s.rev_packets, s.new_flows), (4, 2, 1));
}

#[test]
fn rst_from_backend_moves_flow_to_closing() {
    let lab = PacketLab::new(1024);
    let port = open_tcp(&lab, SPORT);
    // A closed port's answer to the SYN: RST|ACK acknowledging it (RFC 793 p. 36).
    let rst = Packet::tcp((BACKEND, 8080), (SNAT_IP, port), RST | ACK).macs(BACKEND_MAC, GW_PROVIDER_MAC).seq_ack(0, 1001);
    let out = lab.from_provider(&rst.build());
    let want = Packet::tcp((EP_ACCEPTED, 80), (CLIENT, SPORT), RST | ACK)
        .ttl(63).macs(GW_CONSUMER_MAC, CLIENT_MAC)
        .seq_ack(0, 1001)
        .build();
    expect(&out, XDP_REDIRECT, &want, "RST back to client");
    let key = fwd_key(EP_ACCEPTED, 80, SPORT, PROTO_TCP);
    assert_eq!(lab.dp.maps.ct_get(&key).unwrap().unwrap().state, TCP_STATE_CLOSING);
    assert_eq!(held(&lab.dp.maps, EP_IDX_ACCEPTED), 0, "reset: the slot is back at once");
}

#[test]
fn udp_flow_both_ways_and_zero_checksum_stays_zero() {
    let lab = PacketLab::new(1024);
    let q = Packet::udp((CLIENT, 5555), (EP_ACCEPTED, 53)).macs(CLIENT_MAC, GW_CONSUMER_MAC).payload(b"query");
    let out = lab.from_consumer(&q.build());
    let port = snat_port(&lab, &fwd_key(EP_ACCEPTED, 53, 5555, PROTO_UDP));
    let want = Packet::udp((SNAT_IP, port), (BACKEND, 5353)).ttl(63).macs(GW_PROVIDER_MAC, BACKEND_MAC).payload(b"query").build();
    expect(&out, XDP_REDIRECT, &want, "UDP query");

    let a = Packet::udp((BACKEND, 5353), (SNAT_IP, port)).macs(BACKEND_MAC, GW_PROVIDER_MAC).payload(b"answer!");
    let out = lab.from_provider(&a.build());
    let want = Packet::udp((EP_ACCEPTED, 53), (CLIENT, 5555)).ttl(63).macs(GW_CONSUMER_MAC, CLIENT_MAC).payload(b"answer!").build();
    expect(&out, XDP_REDIRECT, &want, "UDP answer");

    let z = q.clone().udp_no_checksum();
    let out = lab.from_consumer(&z.build());
    let want = Packet::udp((SNAT_IP, port), (BACKEND, 5353))
        .ttl(63).macs(GW_PROVIDER_MAC, BACKEND_MAC)
        .payload(b"query")
        .udp_no_checksum()
        .build();
    expect(&out, XDP_REDIRECT, &want, "UDP without checksum keeps zero");
}

#[test]
fn ip_options_are_honoured_and_kept() {
    let lab = PacketLab::new(1024);
    let opts = [0x94, 0x04, 0, 0, 1, 1, 1, 0]; // router alert + NOPs + EOL
    let input = syn(EP_ACCEPTED, 80, SPORT).options(&opts).build();
    let out = lab.from_consumer(&input);
    let port = snat_port(&lab, &fwd_key(EP_ACCEPTED, 80, SPORT, PROTO_TCP));
    let want = Packet::tcp((SNAT_IP, port), (BACKEND, 8080), SYN)
        .ttl(63).macs(GW_PROVIDER_MAC, BACKEND_MAC)
        .seq_ack(1000, 0)
        .options(&opts)
        .build();
    expect(&out, XDP_REDIRECT, &want, "SYN with IPv4 options");
}

#[test]
fn traffic_for_no_endpoint_flow_or_the_gateway_is_dropped_per_vpc() {
    let lab = PacketLab::new(1024);
    let mut ipv6 = syn(EP_ACCEPTED, 80, SPORT).build();
    ipv6[12] = 0x86;
    ipv6[13] = 0xdd;
    let vlan = {
        let mut f = syn(EP_ACCEPTED, 80, SPORT).build();
        f.splice(12..12, [0x81, 0x00, 0x00, 0x0a]);
        f
    };
    let mut lldp = syn(EP_ACCEPTED, 80, SPORT).build();
    lldp[12..14].copy_from_slice(&[0x88, 0xcc]);
    let other = Ipv4Addr::new(192, 168, 2, 10);
    // Nothing for an endpoint, a flow or the gateway: dropped, charged to the VPC.
    let dropped: Vec<(&str, Vec<u8>, DropReason)> = vec![
        ("TCP routed at a provider host", syn(other, 8080, SPORT).build(), DropReason::NotRouted),
        ("UDP to another consumer host", Packet::udp((CLIENT, 1), (Ipv4Addr::new(10, 0, 0, 50), 53)).macs(CLIENT_MAC, GW_CONSUMER_MAC).build(), DropReason::NotRouted),
        ("ICMP to another host", Packet::icmp_echo(CLIENT, other).macs(CLIENT_MAC, GW_CONSUMER_MAC).build(), DropReason::NotRouted),
        ("fragment to another host", syn(other, 80, SPORT).frag(0x2000).build(), DropReason::NotRouted),
        ("IPv6", ipv6, DropReason::Ipv6),
        ("802.1Q tagged", vlan, DropReason::Vlan),
        ("LLDP", lldp, DropReason::NotRouted),
    ];
    for (name, input, reason) in dropped {
        let before = lab.dp.maps.vpc_stats(CONSUMER_VPC).unwrap().drop_count(reason);
        let out = lab.from_consumer(&input);
        expect(&out, XDP_DROP, &input, name);
        assert_eq!(lab.dp.maps.vpc_stats(CONSUMER_VPC).unwrap().drop_count(reason), before + 1, "{name}: counted per VPC");
    }
    // The gateway's own: up to the kernel untouched.
    let passed: Vec<(&str, Vec<u8>)> = vec![
        ("UDP to the gateway", Packet::udp((CLIENT, 1), (GW_CONSUMER, 53)).macs(CLIENT_MAC, GW_CONSUMER_MAC).build()),
        ("ping to the gateway", Packet::icmp_echo(CLIENT, GW_CONSUMER).macs(CLIENT_MAC, GW_CONSUMER_MAC).build()),
        ("broadcast", Packet::udp((CLIENT, 68), (Ipv4Addr::BROADCAST, 67)).macs(CLIENT_MAC, [0xff; 6]).build()),
        ("multicast", Packet::udp((CLIENT, 5000), (Ipv4Addr::new(224, 0, 0, 251), 5353)).macs(CLIENT_MAC, [0x01, 0x00, 0x5e, 0, 0, 0xfb]).build()),
        ("ARP for another host", arp_request(CLIENT_MAC, CLIENT, GW_CONSUMER)),
    ];
    for (name, input) in passed {
        let out = lab.from_consumer(&input);
        expect(&out, XDP_PASS, &input, name);
    }
    // Not a VPC interface of ours: passed whatever it is.
    let out = lab.run(1, &syn(EP_ACCEPTED, 80, SPORT).build());
    assert_eq!(action_name(out.action), "XDP_PASS");
    assert_eq!(ep_stats(&lab, EP_IDX_ACCEPTED), Stats::default());
}

#[test]
fn gateway_answers_arp_for_endpoint_addresses() {
    let lab = PacketLab::new(1024);
    let out = lab.from_consumer(&arp_request(CLIENT_MAC, CLIENT, EP_ACCEPTED));
    let mut want = Vec::new();
    want.extend(CLIENT_MAC);
    want.extend(GW_CONSUMER_MAC);
    want.extend([0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 2]);
    want.extend(GW_CONSUMER_MAC);
    want.extend(EP_ACCEPTED.octets());
    want.extend(CLIENT_MAC);
    want.extend(CLIENT.octets());
    expect(&out, XDP_TX, &want, "ARP reply for the endpoint");
    assert_eq!(ep_stats(&lab, EP_IDX_ACCEPTED).arp_replies, 1);
    // An ARP reply (not a request) is left to the kernel.
    let mut reply = arp_request(CLIENT_MAC, CLIENT, EP_ACCEPTED);
    reply[21] = 2;
    expect(&lab.from_consumer(&reply), XDP_PASS, &reply, "ARP reply passes");
}

#[test]
fn drops_are_counted_by_reason_and_endpoint() {
    let lab = PacketLab::new(1024);
    let cases: Vec<(&str, Vec<u8>, u32, DropReason)> = vec![
        ("unmapped TCP port", syn(EP_ACCEPTED, 81, SPORT).build(), EP_IDX_ACCEPTED, DropReason::UnmappedPort),
        (
            "UDP on a TCP-only port",
            Packet::udp((CLIENT, 1), (EP_ACCEPTED, 80)).macs(CLIENT_MAC, GW_CONSUMER_MAC).build(),
            EP_IDX_ACCEPTED,
            DropReason::UnmappedPort,
        ),
        (
            "ICMP timestamp request to an endpoint",
            Packet { l4: frame::L4::Icmp { kind: 13, code: 0 }, ..Packet::icmp_echo(CLIENT, EP_ACCEPTED).macs(CLIENT_MAC, GW_CONSUMER_MAC) }.build(),
            EP_IDX_ACCEPTED,
            DropReason::IcmpUnsupported,
        ),
        ("pending endpoint", syn(EP_PENDING, 80, SPORT).build(), EP_IDX_PENDING, DropReason::Pending),
        ("rejected endpoint", syn(EP_REJECTED, 80, SPORT).build(), EP_IDX_REJECTED, DropReason::Rejected),
        ("fragment to an endpoint", syn(EP_ACCEPTED, 80, SPORT).frag(0x2000).build(), EP_IDX_ACCEPTED, DropReason::Fragment),
        (
            "non-first fragment to an endpoint",
            syn(EP_ACCEPTED, 80, SPORT).frag(0x0010).build(),
            EP_IDX_ACCEPTED,
            DropReason::Fragment,
        ),
        ("RST of no flow", Packet::tcp((CLIENT, 1), (EP_ACCEPTED, 80), RST).macs(CLIENT_MAC, GW_CONSUMER_MAC).build(), EP_IDX_ACCEPTED, DropReason::NoFlow),
        (
            "UDP with no backend up",
            Packet::udp((CLIENT, 1), (EP_NO_BACKEND, 53)).macs(CLIENT_MAC, GW_CONSUMER_MAC).build(),
            EP_IDX_NO_BACKEND,
            DropReason::NoBackend,
        ),
    ];
    for (name, input, ep, reason) in cases {
        let before = ep_stats(&lab, ep).drop_count(reason);
        let out = lab.from_consumer(&input);
        expect(&out, XDP_DROP, &input, name);
        assert_eq!(ep_stats(&lab, ep).drop_count(reason), before + 1, "{name}: {} counter", reason.name());
    }
    assert_eq!(held(&lab.dp.maps, EP_IDX_ACCEPTED), 0, "no drop may hold a connection slot");
}

#[test]
fn provider_cannot_open_flows_into_the_snat_range() {
    let lab = PacketLab::new(1024);
    let input = Packet::tcp((BACKEND, 8080), (SNAT_IP, 3333), SYN).macs(BACKEND_MAC, GW_PROVIDER_MAC).build();
    let before = lab.dp.maps.vpc_stats(PROVIDER_VPC).unwrap().drop_count(DropReason::NoFlow);
    expect(&lab.from_provider(&input), XDP_DROP, &input, "SYN into SNAT range");
    let udp = Packet::udp((BACKEND, 1), (Ipv4Addr::new(11, 163, 9, 9), 2)).macs(BACKEND_MAC, GW_PROVIDER_MAC).build();
    expect(&lab.from_provider(&udp), XDP_DROP, &udp, "UDP into SNAT range");
    assert_eq!(lab.dp.maps.vpc_stats(PROVIDER_VPC).unwrap().drop_count(DropReason::NoFlow), before + 2);
}

/// RST the gateway must send for `seg` (RFC 793): to the sender, from the endpoint.
fn expected_rst(seg: &Packet) -> Vec<u8> {
    let d = decode(&seg.build()).unwrap();
    let ip = d.ip.unwrap();
    let (flags, seq, ack) = if ip.tcp_flags & ACK != 0 {
        (RST, ip.ack, 0)
    } else {
        let len = ip.payload.len() as u32 + (ip.tcp_flags & SYN != 0) as u32 + (ip.tcp_flags & FIN != 0) as u32;
        (RST | ACK, 0, ip.seq.wrapping_add(len))
    };
    let mut p = Packet::tcp((ip.dst, ip.dport), (ip.src, ip.sport), flags).macs(d.dst_mac, d.src_mac).seq_ack(seq, ack);
    p.id = 0;
    if let frame::L4::Tcp { window, .. } = &mut p.l4 {
        *window = 0;
    }
    p.build()
}

#[test]
fn segment_of_no_flow_gets_a_reset() {
    let lab = PacketLab::new(1024);
    let seg = Packet::tcp((CLIENT, SPORT), (EP_ACCEPTED, 80), ACK | PSH)
        .macs(CLIENT_MAC, GW_CONSUMER_MAC)
        .seq_ack(777, 424242)
        .payload(b"late data")
        .options(&[1, 1, 1, 1]);
    let out = lab.from_consumer(&seg.build());
    expect(&out, XDP_TX, &expected_rst(&seg), "RST for a segment of no flow");
    let s = ep_stats(&lab, EP_IDX_ACCEPTED);
    assert_eq!((s.drop_count(DropReason::NoFlow), s.resets_sent), (1, 1));
}

#[test]
fn connection_limit_resets_tcp_drops_udp_and_frees_on_expiry() {
    let mut lab = PacketLab::new(1024);
    let mut info = lab.dp.maps.endpoint(EP_IDX_ACCEPTED).unwrap();
    info.conn_limit = 2;
    lab.dp.maps.set_endpoint(EP_IDX_ACCEPTED, info).unwrap();
    assert!(connect(&lab, 1001).is_some() && connect(&lab, 1002).is_some());
    // A retransmitted SYN of an existing flow is not a new connection.
    assert_eq!(lab.from_consumer(&syn(EP_ACCEPTED, 80, 1002).build()).action, XDP_REDIRECT);

    let third = syn(EP_ACCEPTED, 80, 1003);
    let out = lab.from_consumer(&third.build());
    expect(&out, XDP_TX, &expected_rst(&third), "SYN over the limit");
    let udp = Packet::udp((CLIENT, 1004), (EP_ACCEPTED, 53)).macs(CLIENT_MAC, GW_CONSUMER_MAC).build();
    expect(&lab.from_consumer(&udp), XDP_DROP, &udp, "UDP over the limit");
    let s = ep_stats(&lab, EP_IDX_ACCEPTED);
    assert_eq!((s.drop_count(DropReason::OverLimit), s.resets_sent, s.new_flows), (2, 1, 2));
    assert_eq!(lab.dp.maps.active_flows(EP_IDX_ACCEPTED).unwrap(), 2);

    // Expire one flow: exactly one slot comes back, and only once.
    let sweeper = lab.dp.sweeper().unwrap();
    let key = fwd_key(EP_ACCEPTED, 80, 1001, PROTO_TCP);
    assert!(sweeper.expire_flow(key, u64::MAX).unwrap());
    assert!(!sweeper.expire_flow(key, u64::MAX).unwrap(), "a flow expires once");
    assert_eq!(lab.dp.maps.active_flows(EP_IDX_ACCEPTED).unwrap(), 1);
    assert!(connect(&lab, 1003).is_some(), "a freed slot admits a new connection");
    assert_eq!(lab.dp.maps.active_flows(EP_IDX_ACCEPTED).unwrap(), 2);
}

#[test]
fn limit_is_exact_under_concurrency() {
    let mut lab = PacketLab::new(65536);
    let limit = 50u32;
    let mut info = lab.dp.maps.endpoint(EP_IDX_ACCEPTED).unwrap();
    info.conn_limit = limit;
    lab.dp.maps.set_endpoint(EP_IDX_ACCEPTED, info).unwrap();
    let lab = &lab;
    // Four threads complete handshakes at once: refused at the SYN while the limit is
    // full, or at the handshake's last ACK when others filled it meanwhile.
    let admitted: u32 = std::thread::scope(|s| {
        let workers: Vec<_> = (0..4u16)
            .map(|w| {
                s.spawn(move || {
                    lab.ns.enter();
                    (0..100u16).filter(|i| connect(lab, 10_000 + w * 1000 + i).is_some()).count() as u32
                })
            })
            .collect();
        workers.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(admitted, limit);
    assert_eq!(lab.dp.maps.active_flows(EP_IDX_ACCEPTED).unwrap(), limit as u64);
    let s = ep_stats(lab, EP_IDX_ACCEPTED);
    assert_eq!(s.drop_count(DropReason::OverLimit), 400 - limit as u64, "every refusal counted once");
    assert_eq!(lab.dp.maps.endpoint_use(EP_IDX_ACCEPTED).unwrap().half_open, 0, "refused handshakes hold nothing");
}

#[test]
fn no_backend_up_resets_tcp() {
    let lab = PacketLab::new(1024);
    let seg = syn(EP_NO_BACKEND, 80, SPORT);
    expect(&lab.from_consumer(&seg.build()), XDP_TX, &expected_rst(&seg), "SYN with no backend");
    assert_eq!(ep_stats(&lab, EP_IDX_NO_BACKEND).drop_count(DropReason::NoBackend), 1);
    assert_eq!(held(&lab.dp.maps, EP_IDX_NO_BACKEND), 0);
}

#[test]
fn unresolved_neighbour_is_a_counted_drop_never_the_kernels() {
    let lab = PacketLab::new(1024);
    let input = syn(EP_UNRESOLVED, 80, SPORT).build();
    let out = lab.from_consumer(&input);
    // Dropped as it came: a rewritten frame never goes to the kernel's routing.
    expect(&out, XDP_DROP, &input, "neighbour unresolved");
    let s = ep_stats(&lab, EP_IDX_UNRESOLVED);
    assert_eq!((s.drop_count(DropReason::NoNeighbour), s.fwd_packets), (1, 0));
    assert!(lab.dp.maps.ct_get(&fwd_key(EP_UNRESOLVED, 80, SPORT, PROTO_TCP)).unwrap().is_none(), "the flow it opened went with it");
    assert_eq!(held(&lab.dp.maps, EP_IDX_UNRESOLVED), 0);
}

#[test]
fn conntrack_full_refuses_new_flows_and_keeps_old_ones() {
    let lab = PacketLab::new(4); // two flows
    open_tcp(&lab, 1);
    open_tcp(&lab, 2);
    let third = syn(EP_ACCEPTED, 80, 3);
    expect(&lab.from_consumer(&third.build()), XDP_TX, &expected_rst(&third), "SYN with conntrack full");
    assert_eq!(ep_stats(&lab, EP_IDX_ACCEPTED).drop_count(DropReason::ConntrackFull), 1);
    assert_eq!(held(&lab.dp.maps, EP_IDX_ACCEPTED), 2);
    let data = Packet::tcp((CLIENT, 1), (EP_ACCEPTED, 80), ACK).macs(CLIENT_MAC, GW_CONSUMER_MAC);
    assert_eq!(lab.from_consumer(&data.build()).action, XDP_REDIRECT, "established flows survive");
}

#[test]
fn snat_exhaustion_never_reuses_a_live_tuple() {
    let mut lab = PacketLab::new(1024);
    let sport = 4242u16;
    // Occupy every port the new flow will probe (from the fresh cursor of the
    // endpoint's only SNAT address), as live flows would.
    for i in 0..SNAT_PROBES_PER_ADDRESS as u16 {
        hold_snat_port(&mut lab, SNAT_IP, SNAT_PORT_MIN + i);
    }
    let seg = syn(EP_ACCEPTED, 80, sport);
    expect(&lab.from_consumer(&seg.build()), XDP_TX, &expected_rst(&seg), "SYN with SNAT ports exhausted");
    assert_eq!(ep_stats(&lab, EP_IDX_ACCEPTED).drop_count(DropReason::SnatExhausted), 1);
    assert_eq!(held(&lab.dp.maps, EP_IDX_ACCEPTED), 0);
}

#[test]
fn truncated_and_malformed_frames_never_leave_half_rewritten() {
    let lab = PacketLab::new(1024);
    let full = syn(EP_ACCEPTED, 80, SPORT).payload(b"abc").build();
    // BPF_PROG_TEST_RUN refuses frames shorter than an Ethernet header (so does every
    // driver); from there on, every cut is malformed: the IPv4 total length no longer fits.
    for len in 14..full.len() {
        let input = &full[..len];
        let out = lab.from_consumer(input);
        expect(&out, XDP_DROP, input, &format!("truncated to {len} bytes"));
    }
    let g = lab.dp.maps.vpc_stats(CONSUMER_VPC).unwrap().drop_count(DropReason::Malformed);
    assert_eq!(g, (full.len() - 14) as u64);

    let mut bad_ihl = full.clone();
    bad_ihl[14] = 0x44;
    expect(&lab.from_consumer(&bad_ihl), XDP_DROP, &bad_ihl, "IHL 4");
    let mut bad_version = full.clone();
    bad_version[14] = 0x65;
    expect(&lab.from_consumer(&bad_version), XDP_DROP, &bad_version, "version 6 in an IPv4 frame");
    let mut bad_doff = full.clone();
    bad_doff[14 + 20 + 12] = 0x40; // TCP data offset 4 words
    expect(&lab.from_consumer(&bad_doff), XDP_DROP, &bad_doff, "TCP data offset 4");
    let mut long_len = full.clone();
    long_len[16] = 0x05; // total length 1280+ > frame
    expect(&lab.from_consumer(&long_len), XDP_DROP, &long_len, "total length beyond the frame");
    assert_eq!(lab.dp.maps.vpc_stats(CONSUMER_VPC).unwrap().drop_count(DropReason::Malformed), g + 3);
    assert_eq!(ep_stats(&lab, EP_IDX_ACCEPTED).drop_count(DropReason::Malformed), 1, "bad data offset, to an endpoint");
    assert_eq!(held(&lab.dp.maps, EP_IDX_ACCEPTED), 0);
}

#[test]
fn sweeper_expires_idle_flows_and_keeps_fresh_ones() {
    let mut lab = PacketLab::new(1024);
    open_tcp(&lab, 1);
    let q = Packet::udp((CLIENT, 2), (EP_ACCEPTED, 53)).macs(CLIENT_MAC, GW_CONSUMER_MAC).build();
    assert_eq!(lab.from_consumer(&q).action, XDP_REDIRECT);
    assert_eq!(held(&lab.dp.maps, EP_IDX_ACCEPTED), 2);

    let dp = &mut lab.dp;
    let report = dp.sweep(Scope::Idle(Timeouts::default())).unwrap();
    assert_eq!((report.expired, report.alive), (0, 2), "fresh flows stay");

    let zero = Timeouts {
        udp: Duration::ZERO,
        ..Timeouts::default()
    };
    let report = dp.sweep(Scope::Idle(zero)).unwrap();
    assert_eq!((report.expired, report.alive), (1, 1), "the idle UDP flow goes");
    assert_eq!(held(&dp.maps, EP_IDX_ACCEPTED), 1);
    assert!(dp.maps.ct_get(&fwd_key(EP_ACCEPTED, 53, 2, PROTO_UDP)).unwrap().is_none());

    let report = dp.sweep(Scope::Endpoints(&[EP_IDX_ACCEPTED].into())).unwrap();
    assert_eq!(report.expired, 1);
    assert_eq!(held(&dp.maps, EP_IDX_ACCEPTED), 0);
    assert!(dp.maps.conntrack().unwrap().is_empty(), "both entries of every flow are gone");
}

#[test]
fn backend_marked_down_takes_no_new_flows() {
    let mut lab = PacketLab::new(1024);
    lab.dp.maps.set_backend(0, BACKEND, false).unwrap();
    let seg = syn(EP_ACCEPTED, 80, SPORT);
    expect(&lab.from_consumer(&seg.build()), XDP_TX, &expected_rst(&seg), "SYN while the only backend is down");
    assert_eq!(ep_stats(&lab, EP_IDX_ACCEPTED).drop_count(DropReason::NoBackend), 1);
    assert_eq!(held(&lab.dp.maps, EP_IDX_ACCEPTED), 0);
}

#[test]
fn provider_vpc_with_its_own_routing_table() {
    let mut lab = PacketLab::new(1024);
    // Table 100 reaches the backend through another next hop than the main table does:
    // the frame's destination MAC tells which table the data path used.
    let hop_mac = "02:77:00:00:00:77";
    lab.ns.ip(&["neigh", "replace", "192.168.2.77", "lladdr", hop_mac, "dev", "vpc2", "nud", "permanent"]);
    lab.ns.ip(&["route", "add", "192.168.2.10/32", "via", "192.168.2.77", "dev", "vpc2", "table", "100"]);
    let info = VpcInfo { vpc_id: PROVIDER_VPC, fib_table: 100, mac: GW_PROVIDER_MAC, ..Default::default() };
    lab.dp.maps.set_vpc(lab.provider_if, info).unwrap();
    let out = lab.from_consumer(&syn(EP_ACCEPTED, 80, SPORT).build());
    let port = snat_port(&lab, &fwd_key(EP_ACCEPTED, 80, SPORT, PROTO_TCP));
    let want = Packet::tcp((SNAT_IP, port), (BACKEND, 8080), SYN)
        .ttl(63).macs(GW_PROVIDER_MAC, [0x02, 0x77, 0, 0, 0, 0x77])
        .seq_ack(1000, 0)
        .build();
    expect(&out, XDP_REDIRECT, &want, "routed by the provider VPC's table");
}

#[test]
fn inactive_endpoint_and_unroutable_backend_are_counted_drops() {
    let mut lab = PacketLab::new(1024);
    // A failed/deleting endpoint passes nothing.
    let mut info = lab.dp.maps.endpoint(EP_IDX_PENDING).unwrap();
    info.state = EP_STATE_INACTIVE;
    lab.dp.maps.set_endpoint(EP_IDX_PENDING, info).unwrap();
    let input = syn(EP_PENDING, 80, SPORT).build();
    expect(&lab.from_consumer(&input), XDP_DROP, &input, "inactive endpoint");
    assert_eq!(ep_stats(&lab, EP_IDX_PENDING).drop_count(DropReason::Inactive), 1);

    // A backend the FIB has no route to (no default route in the gateway namespace).
    lab.dp.maps.set_backend(0, Ipv4Addr::new(172, 31, 0, 1), true).unwrap();
    let out = lab.from_consumer(&syn(EP_ACCEPTED, 80, SPORT).build());
    assert_eq!(action_name(out.action), "XDP_DROP");
    assert_eq!(ep_stats(&lab, EP_IDX_ACCEPTED).drop_count(DropReason::NoRoute), 1);
}

#[test]
fn backend_choice_follows_the_maglev_table_per_flow() {
    use privatelink::dataplane::maglev::{self, Member};
    let mut lab = PacketLab::new(1024);
    let second = Ipv4Addr::new(192, 168, 2, 11);
    let second_mac = [0x02, 0xb0, 0, 0, 2, 0x0b];
    lab.ns.ip(&["neigh", "replace", "192.168.2.11", "lladdr", "02:b0:00:00:02:0b", "dev", "vpc2", "nud", "permanent"]);
    lab.dp.maps.set_backend(7, second, true).unwrap();
    let members = [
        Member { index: 0, id: ip_raw(BACKEND), weight: 100 },
        Member { index: 7, id: ip_raw(second), weight: 50 },
    ];
    let table = maglev::table(&members);
    lab.dp.maps.set_maglev(0, &table).unwrap();
    let mut seen = [0u32; 2];
    for sport in 20_000..20_060u16 {
        let out = lab.from_consumer(&syn(EP_ACCEPTED, 80, sport).build());
        let d = decode(&out.frame).unwrap();
        let ip = d.ip.unwrap();
        let h = hash::flow_hash(ip_raw(CLIENT), ip_raw(EP_ACCEPTED), sport.to_be(), 80u16.to_be(), PROTO_TCP);
        let want = if table[(h % MAGLEV_SIZE) as usize] == 0 { (BACKEND, BACKEND_MAC) } else { (second, second_mac) };
        assert_eq!((ip.dst, d.dst_mac), want, "flow from port {sport}");
        seen[(ip.dst == second) as usize] += 1;
    }
    assert!(seen[0] > 0 && seen[1] > 0, "both backends take flows: {seen:?}");
}

#[test]
fn an_established_flow_keeps_its_next_hop_while_new_flows_ask_the_fib() {
    let lab = PacketLab::new(1024);
    let port = open_tcp(&lab, SPORT);
    let key = fwd_key(EP_ACCEPTED, 80, SPORT, PROTO_TCP);
    assert_eq!(lab.dp.maps.ct_get(&key).unwrap().unwrap().route, 0, "the first packet does not cache");
    let data = Packet::tcp((CLIENT, SPORT), (EP_ACCEPTED, 80), ACK).macs(CLIENT_MAC, GW_CONSUMER_MAC).seq_ack(1001, 5001);
    let want = Packet::tcp((SNAT_IP, port), (BACKEND, 8080), ACK).ttl(63).macs(GW_PROVIDER_MAC, BACKEND_MAC).seq_ack(1001, 5001).build();
    expect(&lab.from_consumer(&data.build()), XDP_REDIRECT, &want, "first established packet");
    let v = lab.dp.maps.ct_get(&key).unwrap().unwrap();
    assert_eq!((v.route, v.ifindex, v.smac, v.dmac), (CT_ROUTE_CACHED, lab.provider_if, GW_PROVIDER_MAC, BACKEND_MAC));
    // The backend's neighbour entry goes: the flow still goes out with its known hop,
    // a new flow to the same backend asks the FIB and is dropped, never handed to the
    // kernel.
    lab.ns.ip(&["neigh", "del", &BACKEND.to_string(), "dev", "vpc2"]);
    expect(&lab.from_consumer(&data.build()), XDP_REDIRECT, &want, "established packet after the neighbour went");
    assert_eq!(lab.from_consumer(&syn(EP_ACCEPTED, 80, SPORT + 1).build()).action, XDP_DROP, "a new flow asks the FIB");
    assert_eq!(ep_stats(&lab, EP_IDX_ACCEPTED).drop_count(DropReason::NoNeighbour), 1);
}
