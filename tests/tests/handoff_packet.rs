//! The hand-off at the packet level (BPF_PROG_TEST_RUN on the real object). A
//! survivor that is not a dead node's buddy wraps a client's segment of no flow in
//! GRE (transparent Ethernet, the consumer VPC's id as key) towards the buddy; the
//! buddy, on its management interface, unwraps only what its peers send and runs the
//! frame as its VPC's: a copy is adopted, the way back to the client from its FIB.
//! Anything else on the management interface is the kernel's, untouched.

use privatelink::dataplane::maps::ip_raw;
use privatelink_common::*;
use privatelink_tests::{
    frame::{Packet, ACK, PSH, SYN},
    packet_lab::*,
};
use std::{collections::BTreeSet, net::Ipv4Addr};

const MGMT_IF: u32 = 1; // the lab namespace's loopback stands for the management interface
const ME: Ipv4Addr = Ipv4Addr::new(10, 255, 0, 2);
const PEER: Ipv4Addr = Ipv4Addr::new(10, 255, 0, 1);
const ME_MAC: [u8; 6] = [0x02, 0x4d, 0, 0, 0, 2];
const PEER_MAC: [u8; 6] = [0x02, 0x4d, 0, 0, 0, 1];
const DEAD_SNAT: Ipv4Addr = Ipv4Addr::new(11, 163, 64, 5);

fn gre(src: Ipv4Addr, flags: u16, key: u32, inner: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend(ME_MAC);
    f.extend(PEER_MAC);
    f.extend([0x08, 0x00]);
    let tot = (20 + 8 + inner.len()) as u16;
    let mut ip = vec![0x45, 0, (tot >> 8) as u8, tot as u8, 0, 0, 0x40, 0, 64, 47, 0, 0];
    ip.extend(src.octets());
    ip.extend(ME.octets());
    let sum = ip.chunks(2).map(|c| u16::from_be_bytes([c[0], c[1]]) as u32).sum::<u32>();
    let check = !csum::fold(sum);
    ip[10..12].copy_from_slice(&check.to_be_bytes());
    f.extend(ip);
    f.extend(flags.to_be_bytes());
    f.extend(0x6558u16.to_be_bytes());
    f.extend(key.to_be_bytes());
    f.extend(inner);
    f
}

fn segment(sport: u16) -> Packet {
    Packet::tcp((CLIENT, sport), (EP_ACCEPTED, 80), ACK | PSH).macs(PEER_MAC, [0x02, 0x99, 0, 0, 0, 1]).seq_ack(2001, 6001).payload(b"handed")
}

/// A copy of the established flow CLIENT:`sport` -> EP_ACCEPTED:80 of the dead node
/// (SNAT DEAD_SNAT:`port`).
fn copy(sport: u16, port: u16) -> FlowEvent {
    let key = fwd_key(EP_ACCEPTED, 80, sport, PROTO_TCP);
    let fwd = CtValue {
        kind: CT_KIND_FORWARD,
        state: TCP_STATE_ESTABLISHED,
        nat_src_ip_be: ip_raw(DEAD_SNAT),
        nat_dst_ip_be: ip_raw(BACKEND),
        nat_src_port_be: port.to_be(),
        nat_dst_port_be: 8080u16.to_be(),
        egress_vpc: PROVIDER_VPC,
        backend: 0,
        ..Default::default()
    };
    let rev_key = fwd.peer_key(PROTO_TCP);
    let rev = CtValue { kind: CT_KIND_REVERSE, nat_src_ip_be: ip_raw(EP_ACCEPTED), nat_dst_ip_be: ip_raw(CLIENT), nat_src_port_be: 80u16.to_be(), nat_dst_port_be: sport.to_be(), egress_vpc: CONSUMER_VPC, ..Default::default() };
    FlowEvent { at_ns: 1, op: FLOW_UPSERT, _pad: [0; 7], key, fwd, rev_key, rev }
}

#[test]
fn the_buddy_unwraps_its_peers_hand_offs_and_adopts_and_nothing_else() {
    let mut lab = PacketLab::new(1024);
    lab.ns.ip(&["neigh", "replace", &CLIENT.to_string(), "lladdr", "02:c1:00:00:00:02", "dev", "vpc1", "nud", "permanent"]);
    let (_events, mut standby, mut takeover, mut handoff) = lab.dp.replication().expect("replication maps");
    handoff.set(Handoff { mgmt_ifindex: MGMT_IF, active: 0, saddr_be: ip_raw(ME), daddr_be: 0, smac: ME_MAC, dmac: [0; 6], mtu: 1600 }).unwrap();
    handoff.set_peers(&[PEER].into()).unwrap();
    handoff.set_vpc(CONSUMER_VPC, lab.consumer_if).unwrap();
    let c = copy(43000, 34000);
    standby.put(&c).unwrap();
    takeover.set(&BTreeSet::from([(Ipv4Addr::new(11, 163, 64, 0), 18)])).unwrap();
    let inner = segment(43000).build();

    // Not a peer's, a key no VPC has, GRE with more than a key, cut short: the
    // kernel's, untouched, and nothing adopted.
    for (what, frame) in [
        ("from a host that is no peer", gre(Ipv4Addr::new(10, 255, 0, 9), 0x2000, CONSUMER_VPC as u32, &inner)),
        ("an unknown VPC id", gre(PEER, 0x2000, 77, &inner)),
        ("a checksum flag besides the key", gre(PEER, 0xa000, CONSUMER_VPC as u32, &inner)),
        ("cut short", gre(PEER, 0x2000, CONSUMER_VPC as u32, &inner)[..40].to_vec()),
        ("plain traffic of the management network", Packet::tcp((PEER, 40000), (ME, 7946), ACK).macs(PEER_MAC, ME_MAC).build()),
    ] {
        let out = lab.run(MGMT_IF, &frame);
        assert_eq!((action_name(out.action), &out.frame), ("XDP_PASS", &frame), "{what}");
        assert!(lab.dp.maps.ct_get(&c.key).unwrap().is_none(), "{what}: adopted");
    }

    // The peer's hand-off: unwrapped, adopted, on to the backend from the dead node's
    // SNAT address and port; the way back to the client is this node's own.
    let mut out = lab.run(MGMT_IF, &gre(PEER, 0x2000, CONSUMER_VPC as u32, &inner));
    // BPF_PROG_TEST_RUN hands back the XDP metadata before the frame (4 bytes: the
    // VPC interface the frame counts as arrived on); a device never sends it.
    assert_eq!(out.frame.get(..4), Some(&lab.consumer_if.to_ne_bytes()[..]), "the metadata names the VPC's interface");
    out.frame.drain(..4);
    let want = Packet::tcp((DEAD_SNAT, 34000), (BACKEND, 8080), ACK | PSH).ttl(63).macs(GW_PROVIDER_MAC, BACKEND_MAC).seq_ack(2001, 6001).payload(b"handed").build();
    expect(&out, XDP_REDIRECT, &want, "a handed segment, adopted");
    let rev = lab.dp.maps.ct_get(&c.rev_key).unwrap().expect("reverse entry");
    assert_eq!((rev.ifindex, rev.smac, rev.dmac), (lab.consumer_if, GW_CONSUMER_MAC, CLIENT_MAC), "the way back from the FIB, not the peer's link");
    let answer = Packet::tcp((BACKEND, 8080), (DEAD_SNAT, 34000), ACK).macs(BACKEND_MAC, GW_PROVIDER_MAC).seq_ack(6001, 2007);
    let back = Packet::tcp((EP_ACCEPTED, 80), (CLIENT, 43000), ACK).ttl(63).macs(GW_CONSUMER_MAC, CLIENT_MAC).seq_ack(6001, 2007).build();
    expect(&lab.from_provider(&answer.build()), XDP_REDIRECT, &back, "the answer, to the client");
    // A handed segment of no flow and no copy is dropped, never answered into the
    // management network.
    let stray = segment(43001).build();
    assert_eq!(action_name(lab.run(MGMT_IF, &gre(PEER, 0x2000, CONSUMER_VPC as u32, &stray)).action), "XDP_DROP");
}

#[test]
fn a_survivor_wraps_a_segment_of_no_flow_for_the_buddy_only_while_handing_off() {
    let mut lab = PacketLab::new(1024);
    let (_events, _standby, _takeover, mut handoff) = lab.dp.replication().expect("replication maps");
    let seg = segment(44000).macs(CLIENT_MAC, GW_CONSUMER_MAC).build();
    // Not handing off: the segment of no flow gets its reset, as ever.
    handoff.set(Handoff { mgmt_ifindex: MGMT_IF, active: 0, saddr_be: ip_raw(ME), daddr_be: ip_raw(PEER), smac: ME_MAC, dmac: PEER_MAC, mtu: 1600 }).unwrap();
    assert_eq!(action_name(lab.from_consumer(&seg).action), "XDP_TX");
    // Handing off: the whole frame, behind Ethernet, IPv4 and GRE to the buddy.
    handoff.set(Handoff { active: 1, ..Handoff { mgmt_ifindex: MGMT_IF, active: 0, saddr_be: ip_raw(ME), daddr_be: ip_raw(PEER), smac: ME_MAC, dmac: PEER_MAC, mtu: 1600 } }).unwrap();
    let out = lab.from_consumer(&seg);
    assert_eq!(action_name(out.action), "XDP_REDIRECT");
    let f = &out.frame;
    assert_eq!((&f[0..6], &f[6..12], &f[12..14]), (&PEER_MAC[..], &ME_MAC[..], &[0x08, 0x00][..]));
    let ip = &f[14..34];
    assert_eq!((ip[0], ip[9], &ip[12..16], &ip[16..20]), (0x45, 47, &ME.octets()[..], &PEER.octets()[..]));
    assert_eq!(u16::from_be_bytes([ip[2], ip[3]]) as usize, f.len() - 14, "total length");
    let sum = ip.chunks(2).map(|c| u16::from_be_bytes([c[0], c[1]]) as u32).sum::<u32>();
    assert_eq!(csum::fold(sum), 0xffff, "outer header checksum");
    assert_eq!(&f[34..42], &[0x20, 0x00, 0x65, 0x58, 0, 0, 0, CONSUMER_VPC as u8][..], "GRE: key flag, Ethernet, the VPC's id");
    assert_eq!(&f[42..], &seg[..], "the client's frame whole");
    // A SYN opens a flow here, handed off or not; a frame that would not fit the
    // management network's MTU with the GRE is not handed (reset, as ever).
    let syn = Packet::tcp((CLIENT, 44001), (EP_ACCEPTED, 80), SYN).macs(CLIENT_MAC, GW_CONSUMER_MAC).seq_ack(1000, 0).build();
    assert_eq!(action_name(lab.from_consumer(&syn).action), "XDP_REDIRECT");
    assert!(lab.dp.maps.ct_get(&fwd_key(EP_ACCEPTED, 80, 44001, PROTO_TCP)).unwrap().is_some());
    handoff.set(Handoff { mgmt_ifindex: MGMT_IF, active: 1, saddr_be: ip_raw(ME), daddr_be: ip_raw(PEER), smac: ME_MAC, dmac: PEER_MAC, mtu: (seg.len() - 14 + 41) as u32 }).unwrap();
    assert_eq!(action_name(lab.from_consumer(&seg).action), "XDP_TX", "too big for the management network");
}
