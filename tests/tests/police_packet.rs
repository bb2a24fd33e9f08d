//! Bandwidth limits at packet level (BPF_PROG_TEST_RUN): each direction's bucket lets
//! its burst through, then drops and counts `over_bandwidth`; a flow's first packet
//! pays too; a rate change applies at once and leaves the flow alone.
//!
//! The rates here are tiny so that timing cannot matter: every test frame costs one
//! second of its bucket and the burst is 2.5 s, so exactly three frames pass in a row
//! (the fourth would need the test to stall for 0.7 s between packets to pass).

use privatelink_common::*;
use privatelink_tests::{
    frame::{Packet, ACK},
    packet_lab::*,
};

const BURST_NS: u64 = 2_500_000_000;

/// A rate at which a frame of `len` bytes costs one second.
fn one_second_per(len: usize) -> Rate {
    Rate { ps_per_byte: 1_000_000_000_000 / len as u64, burst_ns: BURST_NS }
}

fn over(lab: &PacketLab) -> u64 {
    ep_stats(lab, EP_IDX_ACCEPTED).drop_count(DropReason::OverBandwidth)
}

fn ack(seq: u32) -> Vec<u8> {
    Packet::tcp((CLIENT, SPORT), (EP_ACCEPTED, 80), ACK).macs(CLIENT_MAC, GW_CONSUMER_MAC).seq_ack(seq, 1).build()
}

fn reply(port: u16, seq: u32) -> Vec<u8> {
    Packet::tcp((BACKEND, 8080), (SNAT_IP, port), ACK).macs(BACKEND_MAC, GW_PROVIDER_MAC).seq_ack(seq, 1001).build()
}

fn verdicts(lab: &PacketLab, frames: impl Iterator<Item = (u32, Vec<u8>)>) -> Vec<&'static str> {
    frames.map(|(ifindex, f)| action_name(lab.run(ifindex, &f).action)).collect()
}

#[test]
fn each_direction_passes_its_burst_then_drops_and_counts() {
    let mut lab = PacketLab::new(1024);
    let syn = syn(EP_ACCEPTED, 80, SPORT).build();
    assert_eq!(syn.len(), ack(1).len(), "the test frames are all the same size");
    lab.dp.maps.set_rate(EP_IDX_ACCEPTED, one_second_per(syn.len())).unwrap();
    // Forward: the SYN and two segments fill the burst; the third segment is over.
    let c = lab.consumer_if;
    let got = verdicts(&lab, [(c, syn), (c, ack(1001)), (c, ack(1001)), (c, ack(1001))].into_iter());
    assert_eq!(got, ["XDP_REDIRECT", "XDP_REDIRECT", "XDP_REDIRECT", "XDP_DROP"]);
    assert_eq!(over(&lab), 1);
    // The drop left the flow as it was: still open, same SNAT port.
    let key = fwd_key(EP_ACCEPTED, 80, SPORT, PROTO_TCP);
    let port = snat_port(&lab, &key);
    // Reverse has a bucket of its own, still full.
    let p = lab.provider_if;
    let got = verdicts(&lab, (0..4).map(|i| (p, reply(port, 1 + i))));
    assert_eq!(got, ["XDP_REDIRECT", "XDP_REDIRECT", "XDP_REDIRECT", "XDP_DROP"]);
    assert_eq!(over(&lab), 2);
    let s = ep_stats(&lab, EP_IDX_ACCEPTED);
    assert_eq!((s.fwd_packets, s.rev_packets), (3, 3), "what was dropped was not counted as passed");
    assert_eq!(snat_port(&lab, &key), port);
}

#[test]
fn a_rate_change_applies_at_once_without_touching_the_flow() {
    let mut lab = PacketLab::new(1024);
    let syn = syn(EP_ACCEPTED, 80, SPORT).build();
    lab.dp.maps.set_rate(EP_IDX_ACCEPTED, one_second_per(syn.len())).unwrap();
    let c = lab.consumer_if;
    verdicts(&lab, [(c, syn), (c, ack(1001)), (c, ack(1001))].into_iter());
    assert_eq!(action_name(lab.from_consumer(&ack(1001)).action), "XDP_DROP");
    let key = fwd_key(EP_ACCEPTED, 80, SPORT, PROTO_TCP);
    let before = lab.dp.maps.ct_get(&key).unwrap().expect("the flow");
    // 10 Gbit/s: the bucket that ran seconds ahead at the old rate does not hold the
    // new one back; a hundred segments in a row pass.
    lab.dp.maps.set_rate(EP_IDX_ACCEPTED, Rate::of_bps(10_000_000_000)).unwrap();
    let got = verdicts(&lab, (0..100).map(|_| (c, ack(1001))));
    assert!(got.iter().all(|v| *v == "XDP_REDIRECT"), "{got:?}");
    // Back to the tiny rate: a full burst again, then drops.
    lab.dp.maps.set_rate(EP_IDX_ACCEPTED, one_second_per(ack(1).len())).unwrap();
    let got = verdicts(&lab, (0..4).map(|_| (c, ack(1001))));
    assert_eq!(got, ["XDP_REDIRECT", "XDP_REDIRECT", "XDP_REDIRECT", "XDP_DROP"]);
    // No limit at all.
    lab.dp.maps.set_rate(EP_IDX_ACCEPTED, Rate::default()).unwrap();
    let got = verdicts(&lab, (0..100).map(|_| (c, ack(1001))));
    assert!(got.iter().all(|v| *v == "XDP_REDIRECT"), "{got:?}");
    assert_eq!(over(&lab), 2);
    let after = lab.dp.maps.ct_get(&key).unwrap().expect("the flow lives on");
    assert_eq!((after.nat_src_ip_be, after.nat_src_port_be, after.nat_dst_ip_be), (before.nat_src_ip_be, before.nat_src_port_be, before.nat_dst_ip_be));
    assert_eq!(held(&lab.dp.maps, EP_IDX_ACCEPTED), 1);
}

#[test]
fn new_flows_pay_too_and_a_dropped_one_holds_nothing() {
    let mut lab = PacketLab::new(1024);
    let udp = |sport: u16| Packet::udp((CLIENT, sport), (EP_ACCEPTED, 53)).macs(CLIENT_MAC, GW_CONSUMER_MAC).payload(b"query").build();
    lab.dp.maps.set_rate(EP_IDX_ACCEPTED, one_second_per(udp(1).len())).unwrap();
    // Six datagrams, each from a new source port (each a new flow).
    let got = verdicts(&lab, (0..6).map(|i| (lab.consumer_if, udp(5000 + i))));
    assert_eq!(got, ["XDP_REDIRECT", "XDP_REDIRECT", "XDP_REDIRECT", "XDP_DROP", "XDP_DROP", "XDP_DROP"]);
    assert_eq!(over(&lab), 3);
    assert_eq!(held(&lab.dp.maps, EP_IDX_ACCEPTED), 3, "the refused datagrams opened no flow");
    assert!(lab.dp.maps.ct_get(&fwd_key(EP_ACCEPTED, 53, 5003, PROTO_UDP)).unwrap().is_none());
    assert_eq!(ep_stats(&lab, EP_IDX_ACCEPTED).new_flows, 3);
}

#[test]
fn an_endpoint_without_a_limit_is_never_policed() {
    let lab = PacketLab::new(1024);
    let c = lab.consumer_if;
    let mut frames = vec![(c, syn(EP_ACCEPTED, 80, SPORT).build())];
    frames.extend((0..500).map(|_| (c, ack(1001))));
    let got = verdicts(&lab, frames.into_iter());
    assert!(got.iter().all(|v| *v == "XDP_REDIRECT"));
    assert_eq!(over(&lab), 0);
    // Reading the (absent) limit back.
    assert!(lab.dp.maps.all_rates().unwrap().is_empty());
}
