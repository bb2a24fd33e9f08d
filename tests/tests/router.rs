//! The gateway as a router, at packet level (BPF_PROG_TEST_RUN on the real object):
//! TTL, time-exceeded, fragmentation-needed from each hop's MTU, ICMP errors
//! translated through the NAT both ways (RFC 5508), echo replies, MSS clamping. Every
//! expected frame is built independently, and every checksum of a generated or
//! translated ICMP message is verified on its own (outer IP, ICMP, quoted IP, quoted L4).

use privatelink_common::*;
use privatelink_tests::{
    frame::{assert_icmp_checksums, Packet, L4, ACK, SYN},
    packet_lab::*,
};
use std::net::Ipv4Addr;

const DEST_UNREACH: u8 = 3;
const TIME_EXCEEDED: u8 = 11;
const PORT_UNREACH: u8 = 3;
const FRAG_NEEDED: u8 = 4;

fn udp_query(ttl: u8) -> Packet {
    Packet::udp((CLIENT, 5555), (EP_ACCEPTED, 53)).macs(CLIENT_MAC, GW_CONSUMER_MAC).payload(b"query").ttl(ttl)
}

/// What the gateway answers a packet it does not forward: an ICMP error from `from`
/// back to the sender, quoting its IP header and first 8 bytes.
fn generated_error(from: Ipv4Addr, to: Ipv4Addr, macs: ([u8; 6], [u8; 6]), kind: u8, code: u8, mtu: u16, original: &Packet) -> Vec<u8> {
    let quote = &original.ip_bytes()[..28];
    Packet::icmp_error(from, to, kind, code, mtu as u32, quote).macs(macs.0, macs.1).build()
}

#[test]
fn a_packet_with_ttl_1_gets_time_exceeded_from_the_endpoint_and_no_flow() {
    let lab = PacketLab::new(1024);
    let input = udp_query(1);
    let out = lab.from_consumer(&input.build());
    let want = generated_error(EP_ACCEPTED, CLIENT, (GW_CONSUMER_MAC, CLIENT_MAC), TIME_EXCEEDED, 0, 0, &input);
    expect(&out, XDP_TX, &want, "TTL 1 to an endpoint");
    assert_icmp_checksums(&out.frame, "time exceeded");
    let s = ep_stats(&lab, EP_IDX_ACCEPTED);
    assert_eq!((s.drop_count(DropReason::TtlExceeded), s.icmp_sent, s.new_flows), (1, 1, 0));
    assert_eq!(held(&lab.dp.maps, EP_IDX_ACCEPTED), 0, "a packet not forwarded opens no flow");
    // With TTL 2 it goes on, one less.
    let out = lab.from_consumer(&udp_query(2).build());
    assert_eq!(action_name(out.action), "XDP_REDIRECT");
    assert_eq!(out.frame[14 + 8], 1, "TTL taken down by one");
}

#[test]
fn a_df_packet_larger_than_the_next_hop_gets_fragmentation_needed_with_its_mtu() {
    let mut lab = PacketLab::new(1024);
    let prov = lab.dp.maps.vpc(lab.provider_if).unwrap().unwrap();
    lab.dp.maps.set_vpc(lab.provider_if, VpcInfo { mtu: 1000, ..prov }).unwrap();
    // First packet (through the FIB): DF, 1028 bytes of IP.
    let big = udp_query(64).payload(&[7u8; 1000]);
    let out = lab.from_consumer(&big.build());
    let want = generated_error(EP_ACCEPTED, CLIENT, (GW_CONSUMER_MAC, CLIENT_MAC), DEST_UNREACH, FRAG_NEEDED, 1000, &big);
    expect(&out, XDP_TX, &want, "DF datagram over the provider side's MTU");
    assert_icmp_checksums(&out.frame, "fragmentation needed");
    assert_eq!(ep_stats(&lab, EP_IDX_ACCEPTED).drop_count(DropReason::FragNeeded), 1);
    // Not DF: the gateway does not fragment, and a rewritten frame never goes to the
    // kernel's routing (not the flow's: overlapping VPCs): dropped as it came, counted.
    let mut loose = udp_query(64).payload(&[7u8; 1000]);
    loose.frag = 0;
    let input = loose.build();
    let out = lab.from_consumer(&input);
    expect(&out, XDP_DROP, &input, "not DF, too big");
    assert_eq!(ep_stats(&lab, EP_IDX_ACCEPTED).drop_count(DropReason::TooBig), 1);
    // A fitting DF packet still goes.
    let out = lab.from_consumer(&udp_query(64).build());
    assert_eq!(action_name(out.action), "XDP_REDIRECT");
}

#[test]
fn cached_hops_and_the_reverse_path_check_their_mtu_too() {
    let mut lab = PacketLab::new(1024);
    let cons = lab.dp.maps.vpc(lab.consumer_if).unwrap().unwrap();
    lab.dp.maps.set_vpc(lab.consumer_if, VpcInfo { mtu: 900, ..cons }).unwrap();
    let sport = 41000;
    let out = lab.from_consumer(&syn(EP_ACCEPTED, 80, sport).build());
    assert_eq!(action_name(out.action), "XDP_REDIRECT");
    let port = snat_port(&lab, &fwd_key(EP_ACCEPTED, 80, sport, PROTO_TCP));
    let synack = Packet::tcp((BACKEND, 8080), (SNAT_IP, port), SYN | ACK).macs(BACKEND_MAC, GW_PROVIDER_MAC).seq_ack(5000, 1001);
    assert_eq!(action_name(lab.from_provider(&synack.build()).action), "XDP_REDIRECT");
    // The provider side is 1200 when the route gets cached (at the first ACK).
    let prov = lab.dp.maps.vpc(lab.provider_if).unwrap().unwrap();
    lab.dp.maps.set_vpc(lab.provider_if, VpcInfo { mtu: 1200, ..prov }).unwrap();
    let ack = Packet::tcp((CLIENT, sport), (EP_ACCEPTED, 80), ACK).macs(CLIENT_MAC, GW_CONSUMER_MAC).seq_ack(1001, 5001);
    assert_eq!(action_name(lab.from_consumer(&ack.build()).action), "XDP_REDIRECT");
    let v = lab.dp.maps.ct_get(&fwd_key(EP_ACCEPTED, 80, sport, PROTO_TCP)).unwrap().unwrap();
    assert_eq!((v.route, v.mtu), (CT_ROUTE_CACHED, 1200), "the hop is cached with its MTU");
    let big = Packet::tcp((CLIENT, sport), (EP_ACCEPTED, 80), ACK).macs(CLIENT_MAC, GW_CONSUMER_MAC).seq_ack(1001, 5001).payload(&[1u8; 1400]);
    let out = lab.from_consumer(&big.build());
    let want = generated_error(EP_ACCEPTED, CLIENT, (GW_CONSUMER_MAC, CLIENT_MAC), DEST_UNREACH, FRAG_NEEDED, 1200, &big);
    expect(&out, XDP_TX, &want, "DF segment over the cached hop's MTU");
    // Back towards the consumer, whose side is 900: the backend learns it.
    let reply = Packet::tcp((BACKEND, 8080), (SNAT_IP, port), ACK).macs(BACKEND_MAC, GW_PROVIDER_MAC).seq_ack(5001, 2401).payload(&[2u8; 1000]);
    let out = lab.from_provider(&reply.build());
    let want = generated_error(SNAT_IP, BACKEND, (GW_PROVIDER_MAC, BACKEND_MAC), DEST_UNREACH, FRAG_NEEDED, 900, &reply);
    expect(&out, XDP_TX, &want, "DF reply over the consumer side's MTU");
    assert_icmp_checksums(&out.frame, "fragmentation needed to the backend");
}

#[test]
fn an_accepted_endpoint_answers_ping_and_others_do_not() {
    let lab = PacketLab::new(1024);
    let req = Packet::icmp_echo(CLIENT, EP_ACCEPTED).macs(CLIENT_MAC, GW_CONSUMER_MAC).payload(b"ping!").ttl(50);
    let out = lab.from_consumer(&req.build());
    let reply = Packet { l4: L4::Icmp { kind: 0, code: 0 }, ..Packet::icmp_echo(EP_ACCEPTED, CLIENT) }
        .macs(GW_CONSUMER_MAC, CLIENT_MAC)
        .payload(b"ping!");
    expect(&out, XDP_TX, &reply.build(), "echo reply from the endpoint");
    assert_eq!(ep_stats(&lab, EP_IDX_ACCEPTED).icmp_sent, 1);
    for (ep, idx, reason) in [(EP_PENDING, EP_IDX_PENDING, DropReason::Pending), (EP_REJECTED, EP_IDX_REJECTED, DropReason::Rejected)] {
        let req = Packet::icmp_echo(CLIENT, ep).macs(CLIENT_MAC, GW_CONSUMER_MAC).build();
        expect(&lab.from_consumer(&req), XDP_DROP, &req, "ping to an endpoint not accepted");
        assert_eq!(ep_stats(&lab, idx).drop_count(reason), 1);
    }
}

#[test]
fn generated_icmp_is_rate_limited_per_endpoint() {
    let lab = PacketLab::new(1024);
    let req = Packet::icmp_echo(CLIENT, EP_ACCEPTED).macs(CLIENT_MAC, GW_CONSUMER_MAC).build();
    let answered = (0..ICMP_RATE_PER_SEC + 20).filter(|_| lab.from_consumer(&req).action == XDP_TX).count() as u64;
    // BPF_PROG_TEST_RUN runs on one CPU: one bucket.
    assert_eq!(answered, ICMP_RATE_PER_SEC as u64);
    let s = ep_stats(&lab, EP_IDX_ACCEPTED);
    assert_eq!((s.icmp_sent, s.drop_count(DropReason::IcmpRateLimited)), (ICMP_RATE_PER_SEC as u64, 20));
}

/// A UDP flow client:5555 -> endpoint:53 and the datagram the backend received.
fn udp_flow(lab: &PacketLab) -> (u16, Vec<u8>) {
    let out = lab.from_consumer(&udp_query(64).build());
    assert_eq!(action_name(out.action), "XDP_REDIRECT");
    let port = snat_port(lab, &fwd_key(EP_ACCEPTED, 53, 5555, PROTO_UDP));
    (port, out.frame[14..].to_vec())
}

#[test]
fn a_backends_port_unreachable_reaches_the_client_translated() {
    let lab = PacketLab::new(1024);
    let (_, at_backend) = udp_flow(&lab);
    // The backend's kernel answers with the datagram it got (whole, as Linux does).
    let err = Packet::icmp_error(BACKEND, SNAT_IP, DEST_UNREACH, PORT_UNREACH, 0, &at_backend).macs(BACKEND_MAC, GW_PROVIDER_MAC);
    let out = lab.from_provider(&err.build());
    // The client sees it from the endpoint, quoting what it sent (with the TTL the
    // datagram had when the backend got it).
    let as_sent = udp_query(63).ip_bytes();
    let want = Packet::icmp_error(EP_ACCEPTED, CLIENT, DEST_UNREACH, PORT_UNREACH, 0, &as_sent).macs(GW_CONSUMER_MAC, CLIENT_MAC).ttl(63).build();
    expect(&out, XDP_REDIRECT, &want, "port unreachable, translated");
    assert_icmp_checksums(&out.frame, "translated port unreachable");
    assert_eq!(ep_stats(&lab, EP_IDX_ACCEPTED).rev_packets, 1);
}

#[test]
fn errors_quoting_8_bytes_of_tcp_and_fragmentation_needed_translate_too() {
    let lab = PacketLab::new(1024);
    let out = lab.from_consumer(&syn(EP_ACCEPTED, 80, SPORT).build());
    let port = snat_port(&lab, &fwd_key(EP_ACCEPTED, 80, SPORT, PROTO_TCP));
    // A router on the provider side: fragmentation needed (MTU 1280), quoting the
    // header and 8 bytes (RFC 792), addressed to the SNAT address it came from.
    let router = Ipv4Addr::new(192, 168, 2, 254);
    let err = Packet::icmp_error(router, SNAT_IP, DEST_UNREACH, FRAG_NEEDED, 1280, &out.frame[14..14 + 28]).macs(BACKEND_MAC, GW_PROVIDER_MAC);
    let got = lab.from_provider(&err.build());
    let quote = &syn(EP_ACCEPTED, 80, SPORT).ttl(63).ip_bytes()[..28];
    let want = Packet::icmp_error(EP_ACCEPTED, CLIENT, DEST_UNREACH, FRAG_NEEDED, 1280, quote).macs(GW_CONSUMER_MAC, CLIENT_MAC).ttl(63).build();
    expect(&got, XDP_REDIRECT, &want, "fragmentation needed quoting 8 bytes of TCP");
    assert_icmp_checksums(&got.frame, "fragmentation needed, translated");
    assert_eq!(snat_port(&lab, &fwd_key(EP_ACCEPTED, 80, SPORT, PROTO_TCP)), port, "the flow is untouched");
}

#[test]
fn a_clients_error_about_a_reply_reaches_the_backend_translated() {
    let lab = PacketLab::new(1024);
    let (port, _) = udp_flow(&lab);
    let answer = Packet::udp((BACKEND, 5353), (SNAT_IP, port)).macs(BACKEND_MAC, GW_PROVIDER_MAC).payload(b"answer!");
    let out = lab.from_provider(&answer.build());
    assert_eq!(action_name(out.action), "XDP_REDIRECT");
    let at_client = out.frame[14..].to_vec();
    let err = Packet::icmp_error(CLIENT, EP_ACCEPTED, DEST_UNREACH, PORT_UNREACH, 0, &at_client).macs(CLIENT_MAC, GW_CONSUMER_MAC);
    let got = lab.from_consumer(&err.build());
    let as_sent = answer.clone().ttl(63).ip_bytes();
    let want = Packet::icmp_error(SNAT_IP, BACKEND, DEST_UNREACH, PORT_UNREACH, 0, &as_sent).macs(GW_PROVIDER_MAC, BACKEND_MAC).ttl(63).build();
    expect(&got, XDP_REDIRECT, &want, "the client's port unreachable, translated for the backend");
    assert_icmp_checksums(&got.frame, "translated towards the backend");
}

#[test]
fn errors_about_no_flow_or_with_quoted_options_are_dropped_and_counted() {
    let lab = PacketLab::new(1024);
    let stranger = Packet::udp((SNAT_IP, 4242), (BACKEND, 5353)).payload(b"x").ip_bytes();
    let err = Packet::icmp_error(BACKEND, SNAT_IP, DEST_UNREACH, PORT_UNREACH, 0, &stranger).macs(BACKEND_MAC, GW_PROVIDER_MAC).build();
    expect(&lab.from_provider(&err), XDP_DROP, &err, "error about no flow");
    assert_eq!(lab.dp.maps.vpc_stats(PROVIDER_VPC).unwrap().drop_count(DropReason::NoFlow), 1);
    let (_, mut at_backend) = udp_flow(&lab);
    // The same quote with an IP option inserted: not translated, never half-translated.
    at_backend[0] = 0x46;
    at_backend.splice(20..20, [1, 1, 1, 0]);
    let err = Packet::icmp_error(BACKEND, SNAT_IP, DEST_UNREACH, PORT_UNREACH, 0, &at_backend).macs(BACKEND_MAC, GW_PROVIDER_MAC).build();
    expect(&lab.from_provider(&err), XDP_DROP, &err, "quoted header with options");
    assert_eq!(lab.dp.maps.vpc_stats(PROVIDER_VPC).unwrap().drop_count(DropReason::IcmpUnsupported), 1);
}

/// A SYN carrying MSS 1460 at `at` bytes into its options (padded with NOPs).
fn syn_with_mss(sport: u16, mss: u16, at: usize) -> Packet {
    let mut o = vec![1u8; at];
    o.extend([2, 4]);
    o.extend(mss.to_be_bytes());
    while !o.len().is_multiple_of(4) {
        o.push(1);
    }
    syn(EP_ACCEPTED, 80, sport).tcp_options(&o)
}

#[test]
fn syns_are_clamped_to_the_endpoints_mss_both_ways() {
    let mut lab = PacketLab::new(1024);
    let ep = lab.dp.maps.endpoint(EP_IDX_ACCEPTED).unwrap();
    lab.dp.maps.set_endpoint(EP_IDX_ACCEPTED, EndpointInfo { mss_clamp: 1360, ..ep }).unwrap();
    for (at, sport) in [(0usize, 42000u16), (1, 42001), (3, 42002)] {
        let out = lab.from_consumer(&syn_with_mss(sport, 1460, at).build());
        let port = snat_port(&lab, &fwd_key(EP_ACCEPTED, 80, sport, PROTO_TCP));
        let want = Packet { src: SNAT_IP, dst: BACKEND, ..syn_with_mss(sport, 1360, at) }.ttl(63).macs(GW_PROVIDER_MAC, BACKEND_MAC);
        let want = match want.l4 {
            L4::Tcp { flags, seq, ack, window, .. } => Packet { l4: L4::Tcp { sport: port, dport: 8080, flags, seq, ack, window }, ..want },
            _ => unreachable!(),
        };
        expect(&out, XDP_REDIRECT, &want.build(), &format!("SYN with MSS at option offset {at}, clamped"));
    }
    // Lower than the clamp: left alone.
    let out = lab.from_consumer(&syn_with_mss(42003, 1200, 0).build());
    assert_eq!(&out.frame[54..58], &[2, 4, 0x04, 0xb0], "MSS 1200 kept");
    // The backend's SYN-ACK is clamped on its way back.
    let port = snat_port(&lab, &fwd_key(EP_ACCEPTED, 80, 42000, PROTO_TCP));
    let synack = Packet::tcp((BACKEND, 8080), (SNAT_IP, port), SYN | ACK).macs(BACKEND_MAC, GW_PROVIDER_MAC).seq_ack(5000, 1001).tcp_options(&[2, 4, 0x23, 0x28]);
    let out = lab.from_provider(&synack.build());
    let want = Packet::tcp((EP_ACCEPTED, 80), (CLIENT, 42000), SYN | ACK).macs(GW_CONSUMER_MAC, CLIENT_MAC).seq_ack(5000, 1001).tcp_options(&[2, 4, 0x05, 0x50]).ttl(63);
    expect(&out, XDP_REDIRECT, &want.build(), "SYN-ACK with MSS 9000, clamped to 1360");
}
