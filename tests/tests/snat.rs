//! SNAT ports at packet level: a cursor per SNAT address hands ports out in turn (a
//! just-freed port comes back last), ports in use are counted by the data path, and an
//! endpoint with several SNAT addresses moves new flows to the next one when a port
//! space is full; when all are full the SYN is reset and counted.

use privatelink::dataplane::sweep::{Scope, Timeouts};
use privatelink_common::*;
use privatelink_tests::{frame::RST, packet_lab::*, frame::Packet};
use std::{net::Ipv4Addr, time::Duration};

const SECOND_SNAT: Ipv4Addr = Ipv4Addr::new(11, 163, 0, 200);

fn in_use(lab: &PacketLab) -> u64 {
    lab.dp.maps.endpoint_stats(EP_IDX_ACCEPTED).unwrap().snat_ports_in_use()
}

/// The SNAT address and port a flow from `sport` got.
fn snat_of(lab: &PacketLab, sport: u16) -> (Ipv4Addr, u16) {
    let v = lab.dp.maps.ct_get(&fwd_key(EP_ACCEPTED, 80, sport, PROTO_TCP)).unwrap().expect("the flow");
    (privatelink::dataplane::maps::ip_from_raw(v.nat_src_ip_be), u16::from_be(v.nat_src_port_be))
}

#[test]
fn ports_are_handed_out_in_turn_and_a_freed_one_comes_back_last() {
    let lab = PacketLab::new(1024);
    assert_eq!(lab.from_consumer(&syn(EP_ACCEPTED, 80, 44000).build()).action, XDP_REDIRECT);
    assert_eq!(snat_of(&lab, 44000), (SNAT_IP, SNAT_PORT_MIN));
    assert_eq!(in_use(&lab), 1);
    // The flow resets and expires: its port is free again, but the next flow gets the
    // next port, not that one.
    let rst = Packet::tcp((CLIENT, 44000), (EP_ACCEPTED, 80), RST).macs(CLIENT_MAC, GW_CONSUMER_MAC).seq_ack(1001, 0).build();
    assert_eq!(lab.from_consumer(&rst).action, XDP_REDIRECT);
    std::thread::sleep(Duration::from_millis(5));
    let t = Timeouts { tcp_closing: Duration::ZERO, ..Timeouts::default() };
    assert_eq!(lab.dp.sweep(Scope::Idle(t)).unwrap().expired, 1);
    assert_eq!(in_use(&lab), 0, "the expired flow's port is counted free");
    assert_eq!(lab.from_consumer(&syn(EP_ACCEPTED, 80, 44001).build()).action, XDP_REDIRECT);
    assert_eq!(snat_of(&lab, 44001), (SNAT_IP, SNAT_PORT_MIN + 1), "a just-freed port is not reused first");
    assert_eq!(lab.from_consumer(&syn(EP_ACCEPTED, 80, 44002).build()).action, XDP_REDIRECT);
    assert_eq!(snat_of(&lab, 44002), (SNAT_IP, SNAT_PORT_MIN + 2));
    assert_eq!(in_use(&lab), 2);
}

#[test]
fn a_full_port_space_moves_new_flows_to_the_next_snat_address() {
    let mut lab = PacketLab::new(1 << 18);
    // The endpoint gets a second SNAT address.
    let ep = lab.dp.maps.endpoint(EP_IDX_ACCEPTED).unwrap();
    lab.dp.maps.set_ep_snat(EP_IDX_ACCEPTED * MAX_SNAT_PER_ENDPOINT + 1, Some(SECOND_SNAT)).unwrap();
    lab.dp.maps.set_endpoint(EP_IDX_ACCEPTED, EndpointInfo { snat_count: 2, ..ep }).unwrap();
    // Every port of the first address towards backend:8080/tcp is held, as 64512 live
    // flows would hold them.
    for port in SNAT_PORT_MIN..=SNAT_PORT_MAX {
        hold_snat_port(&mut lab, SNAT_IP, port);
    }
    for (i, sport) in (45000..45003).enumerate() {
        assert_eq!(action_name(lab.from_consumer(&syn(EP_ACCEPTED, 80, sport).build()).action), "XDP_REDIRECT");
        assert_eq!(snat_of(&lab, sport), (SECOND_SNAT, SNAT_PORT_MIN + i as u16), "on the second address, in turn");
    }
    assert_eq!(in_use(&lab), 3, "the data path counts the ports it claimed");
    let s = lab.dp.maps.endpoint_stats(EP_IDX_ACCEPTED).unwrap();
    assert_eq!(s.drop_count(DropReason::SnatExhausted), 0);
    // UDP towards the same backend has a port space of its own on the first address.
    let q = Packet::udp((CLIENT, 5555), (EP_ACCEPTED, 53)).macs(CLIENT_MAC, GW_CONSUMER_MAC).build();
    assert_eq!(lab.from_consumer(&q).action, XDP_REDIRECT);
    let v = lab.dp.maps.ct_get(&fwd_key(EP_ACCEPTED, 53, 5555, PROTO_UDP)).unwrap().unwrap();
    assert_eq!(privatelink::dataplane::maps::ip_from_raw(v.nat_src_ip_be), SNAT_IP);
}
