//! Security groups at packet level (BPF_PROG_TEST_RUN): rule order, ports, /0 and /32
//! sources, ICMP, the no-group default, and statefulness (a flow's later packets and
//! replies are never checked again). Rule sets are written through the library's
//! `maps` code, in the decision order userspace compiles them to.

use privatelink::dataplane::maps::ip_raw;
use privatelink_common::*;
use privatelink_tests::{
    frame::{Packet, ACK, FIN, SYN},
    packet_lab::*,
};
use std::net::Ipv4Addr;

fn rule(net: Ipv4Addr, prefix: u32, proto: u8, ports: (u16, u16), action: u8) -> SgRule {
    let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - prefix) };
    SgRule {
        net_be: ip_raw(Ipv4Addr::from(u32::from(net) & mask)),
        mask_be: ip_raw(Ipv4Addr::from(mask)),
        port_lo: ports.0,
        port_hi: ports.1,
        proto,
        action,
        _pad: [0; 2],
    }
}

/// Attach rule set `rules` (under `key`) to the accepted endpoint.
fn attach(lab: &mut PacketLab, key: u32, rules: &[SgRule]) {
    let m = &mut lab.dp.maps;
    m.set_sg_set(key, rules).unwrap();
    let mut info = m.endpoint(EP_IDX_ACCEPTED).unwrap();
    info.sg_set = key;
    m.set_endpoint(EP_IDX_ACCEPTED, info).unwrap();
}

fn syn_from(src: Ipv4Addr, sport: u16, dport: u16) -> Vec<u8> {
    Packet::tcp((src, sport), (EP_ACCEPTED, dport), SYN).macs(CLIENT_MAC, GW_CONSUMER_MAC).seq_ack(1000, 0).build()
}

fn sg_drops(lab: &PacketLab) -> u64 {
    ep_stats(lab, EP_IDX_ACCEPTED).drop_count(DropReason::SecurityGroup)
}

/// (action, frame) for a SYN from `src`; a refused one must be a silent drop.
fn verdict(lab: &PacketLab, src: Ipv4Addr, sport: u16, dport: u16) -> &'static str {
    let before = sg_drops(lab);
    let out = lab.from_consumer(&syn_from(src, sport, dport));
    let name = action_name(out.action);
    if name == "XDP_DROP" {
        assert_eq!(sg_drops(lab), before + 1, "a refused SYN is counted as security_group");
    }
    name
}

const NET: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 0);
const ANY: Ipv4Addr = Ipv4Addr::new(0, 0, 0, 0);

#[test]
fn no_group_allows_everything() {
    let lab = PacketLab::new(1024);
    assert_eq!(verdict(&lab, Ipv4Addr::new(10, 0, 0, 77), 40000, 80), "XDP_REDIRECT");
    assert_eq!(sg_drops(&lab), 0);
}

#[test]
fn the_first_matching_rule_decides_and_no_match_denies() {
    let mut lab = PacketLab::new(1024);
    attach(
        &mut lab,
        7,
        &[
            rule(Ipv4Addr::new(10, 0, 0, 9), 32, SG_PROTO_ALL, (1, 65535), SG_DENY),
            rule(NET, 28, PROTO_TCP, (80, 80), SG_ALLOW),
            rule(Ipv4Addr::new(10, 0, 0, 200), 32, PROTO_TCP, (70, 90), SG_ALLOW),
        ],
    );
    assert_eq!(verdict(&lab, Ipv4Addr::new(10, 0, 0, 2), 40000, 80), "XDP_REDIRECT", "in the /28, port 80");
    assert_eq!(verdict(&lab, Ipv4Addr::new(10, 0, 0, 9), 40001, 80), "XDP_DROP", "the /32 deny comes first");
    assert_eq!(verdict(&lab, Ipv4Addr::new(10, 0, 0, 20), 40002, 80), "XDP_DROP", "outside the /28: no rule matches");
    assert_eq!(verdict(&lab, Ipv4Addr::new(10, 0, 0, 200), 40003, 80), "XDP_REDIRECT", "inside 70-90");
    // Port 81 is not mapped either; the groups decide first (a silent drop, no reset).
    assert_eq!(verdict(&lab, Ipv4Addr::new(10, 0, 0, 2), 40004, 81), "XDP_DROP");
    assert_eq!(sg_drops(&lab), 3);
}

#[test]
fn a_zero_source_covers_everyone_and_udp_is_checked_too() {
    let mut lab = PacketLab::new(1024);
    attach(&mut lab, 9, &[rule(ANY, 0, PROTO_UDP, (53, 53), SG_ALLOW), rule(ANY, 0, PROTO_TCP, (1, 65535), SG_DENY)]);
    assert_eq!(verdict(&lab, Ipv4Addr::new(10, 0, 0, 99), 40000, 80), "XDP_DROP");
    let udp = Packet::udp((Ipv4Addr::new(10, 0, 0, 99), 5000), (EP_ACCEPTED, 53)).macs(CLIENT_MAC, GW_CONSUMER_MAC).payload(b"q").build();
    let out = lab.from_consumer(&udp);
    assert_eq!(action_name(out.action), "XDP_REDIRECT", "udp/53 allowed from /0");
}

#[test]
fn icmp_rules_govern_pings_to_the_endpoint() {
    let mut lab = PacketLab::new(1024);
    let ping = Packet::icmp_echo(CLIENT, EP_ACCEPTED).macs(CLIENT_MAC, GW_CONSUMER_MAC).build();
    attach(&mut lab, 11, &[rule(NET, 24, PROTO_TCP, (1, 65535), SG_ALLOW)]);
    assert_eq!(action_name(lab.from_consumer(&ping).action), "XDP_DROP", "a TCP-only group denies pings");
    assert_eq!(sg_drops(&lab), 1);
    attach(&mut lab, 12, &[rule(NET, 24, PROTO_ICMP, (1, 65535), SG_ALLOW)]);
    assert_eq!(action_name(lab.from_consumer(&ping).action), "XDP_TX", "an echo reply");
}

#[test]
fn a_flow_let_in_is_never_checked_again_nor_its_replies() {
    let mut lab = PacketLab::new(1024);
    attach(&mut lab, 21, &[rule(CLIENT, 32, PROTO_TCP, (80, 80), SG_ALLOW)]);
    assert_eq!(verdict(&lab, CLIENT, 41000, 80), "XDP_REDIRECT");
    let port = snat_port(&lab, &fwd_key(EP_ACCEPTED, 80, 41000, PROTO_TCP));
    // The rules change to deny everything: the live flow goes on both ways.
    attach(&mut lab, 22, &[rule(ANY, 0, SG_PROTO_ALL, (1, 65535), SG_DENY)]);
    let fwd = Packet::tcp((CLIENT, 41000), (EP_ACCEPTED, 80), ACK).macs(CLIENT_MAC, GW_CONSUMER_MAC).seq_ack(1001, 1).build();
    assert_eq!(action_name(lab.from_consumer(&fwd).action), "XDP_REDIRECT", "the flow's next segment");
    let rev = Packet::tcp((BACKEND, 8080), (SNAT_IP, port), ACK).macs(BACKEND_MAC, GW_PROVIDER_MAC).seq_ack(1, 1001).build();
    assert_eq!(action_name(lab.from_provider(&rev).action), "XDP_REDIRECT", "the backend's reply");
    // A new connection from the same client is refused at once.
    assert_eq!(verdict(&lab, CLIENT, 41001, 80), "XDP_DROP");
}

#[test]
fn a_new_connection_on_a_closed_flows_tuple_is_checked_again() {
    let mut lab = PacketLab::new(1024);
    attach(&mut lab, 31, &[rule(CLIENT, 32, PROTO_TCP, (80, 80), SG_ALLOW)]);
    assert_eq!(verdict(&lab, CLIENT, 42000, 80), "XDP_REDIRECT");
    let port = snat_port(&lab, &fwd_key(EP_ACCEPTED, 80, 42000, PROTO_TCP));
    // Both sides close, each FIN acknowledged: the flow entry stays (closing) for the
    // tuple's late segments.
    let synack = Packet::tcp((BACKEND, 8080), (SNAT_IP, port), SYN | ACK).macs(BACKEND_MAC, GW_PROVIDER_MAC).seq_ack(0, 1001).build();
    assert_eq!(action_name(lab.from_provider(&synack).action), "XDP_REDIRECT");
    let fin = Packet::tcp((CLIENT, 42000), (EP_ACCEPTED, 80), FIN | ACK).macs(CLIENT_MAC, GW_CONSUMER_MAC).seq_ack(1001, 1).build();
    assert_eq!(action_name(lab.from_consumer(&fin).action), "XDP_REDIRECT");
    let fin_back = Packet::tcp((BACKEND, 8080), (SNAT_IP, port), FIN | ACK).macs(BACKEND_MAC, GW_PROVIDER_MAC).seq_ack(1, 1002).build();
    assert_eq!(action_name(lab.from_provider(&fin_back).action), "XDP_REDIRECT");
    let last = Packet::tcp((CLIENT, 42000), (EP_ACCEPTED, 80), ACK).macs(CLIENT_MAC, GW_CONSUMER_MAC).seq_ack(1002, 2).build();
    assert_eq!(action_name(lab.from_consumer(&last).action), "XDP_REDIRECT");
    assert_eq!(held(&lab.dp.maps, EP_IDX_ACCEPTED), 0, "the closed flow holds no slot");
    // The client opens the same tuple again after the rules changed: refused.
    attach(&mut lab, 32, &[rule(ANY, 0, SG_PROTO_ALL, (1, 65535), SG_DENY)]);
    assert_eq!(verdict(&lab, CLIENT, 42000, 80), "XDP_DROP");
    assert_eq!(sg_drops(&lab), 1);
    assert_eq!(held(&lab.dp.maps, EP_IDX_ACCEPTED), 0);
    // Allowed again: the same tuple opens a new connection.
    attach(&mut lab, 33, &[rule(CLIENT, 32, PROTO_TCP, (80, 80), SG_ALLOW)]);
    assert_eq!(verdict(&lab, CLIENT, 42000, 80), "XDP_REDIRECT");
    assert_eq!(held(&lab.dp.maps, EP_IDX_ACCEPTED), 1);
    assert_eq!(ep_stats(&lab, EP_IDX_ACCEPTED).new_flows, 2);
}
