//! Connection accounting at packet level: a connection counts against its endpoint's
//! limit while it is open. Established only when the client's ACK completes the
//! handshake; the slot goes back at a RST inside the tracked window or FINs both ways,
//! each acknowledged, exactly once (expiry of the closed flow does not give it back
//! again); a new SYN on a closed tuple opens a new flow, which takes a slot again; the
//! count never wraps below zero.

use privatelink::dataplane::sweep::{Scope, Timeouts};
use privatelink_common::*;
use privatelink_tests::{
    frame::{Packet, ACK, FIN, RST, SYN},
    packet_lab::*,
};
use std::time::Duration;

fn synack(port: u16) -> Vec<u8> {
    Packet::tcp((BACKEND, 8080), (SNAT_IP, port), SYN | ACK).macs(BACKEND_MAC, GW_PROVIDER_MAC).seq_ack(5000, 1001).build()
}

fn from_client(sport: u16, flags: u8) -> Vec<u8> {
    Packet::tcp((CLIENT, sport), (EP_ACCEPTED, 80), flags).macs(CLIENT_MAC, GW_CONSUMER_MAC).seq_ack(1001, 5001).build()
}

fn from_backend(port: u16, flags: u8) -> Vec<u8> {
    Packet::tcp((BACKEND, 8080), (SNAT_IP, port), flags).macs(BACKEND_MAC, GW_PROVIDER_MAC).seq_ack(5001, 1002).build()
}

/// The client's last ACK, of the backend's FIN (at 5001).
fn last_ack(sport: u16) -> Vec<u8> {
    Packet::tcp((CLIENT, sport), (EP_ACCEPTED, 80), ACK).macs(CLIENT_MAC, GW_CONSUMER_MAC).seq_ack(1002, 5002).build()
}

/// SYN, SYN-ACK, ACK: an established connection; returns its SNAT port.
fn connect(lab: &PacketLab, sport: u16) -> u16 {
    assert_eq!(lab.from_consumer(&syn(EP_ACCEPTED, 80, sport).build()).action, XDP_REDIRECT);
    let port = snat_port(lab, &fwd_key(EP_ACCEPTED, 80, sport, PROTO_TCP));
    assert_eq!(lab.from_provider(&synack(port)).action, XDP_REDIRECT);
    assert_eq!(lab.from_consumer(&from_client(sport, ACK)).action, XDP_REDIRECT);
    port
}

fn state(lab: &PacketLab, sport: u16) -> CtValue {
    lab.dp.maps.ct_get(&fwd_key(EP_ACCEPTED, 80, sport, PROTO_TCP)).unwrap().expect("the flow")
}

fn active(lab: &PacketLab) -> u64 {
    lab.dp.maps.active_flows(EP_IDX_ACCEPTED).unwrap()
}

/// Slots and half-open places held.
fn held_now(lab: &PacketLab) -> u64 {
    held(&lab.dp.maps, EP_IDX_ACCEPTED)
}

#[test]
fn established_only_when_the_clients_ack_completes_the_handshake() {
    let lab = PacketLab::new(1024);
    assert_eq!(lab.from_consumer(&syn(EP_ACCEPTED, 80, 43000).build()).action, XDP_REDIRECT);
    let port = snat_port(&lab, &fwd_key(EP_ACCEPTED, 80, 43000, PROTO_TCP));
    // An ACK before any SYN-ACK does not establish (nothing was answered).
    assert_eq!(lab.from_consumer(&from_client(43000, ACK)).action, XDP_REDIRECT);
    assert_eq!(state(&lab, 43000).state, TCP_STATE_SYN);
    assert_eq!(lab.from_provider(&synack(port)).action, XDP_REDIRECT);
    let v = state(&lab, 43000);
    assert_eq!((v.state, v.flags & CT_FLAG_SYNACK), (TCP_STATE_SYN, CT_FLAG_SYNACK), "answered, not yet established");
    assert_eq!(lab.from_consumer(&from_client(43000, ACK)).action, XDP_REDIRECT);
    assert_eq!(state(&lab, 43000).state, TCP_STATE_ESTABLISHED);
}

#[test]
fn a_syn_the_client_never_completes_lives_on_the_syn_timeout() {
    let lab = PacketLab::new(1024);
    assert_eq!(lab.from_consumer(&syn(EP_ACCEPTED, 80, 43100).build()).action, XDP_REDIRECT);
    let port = snat_port(&lab, &fwd_key(EP_ACCEPTED, 80, 43100, PROTO_TCP));
    assert_eq!(lab.from_provider(&synack(port)).action, XDP_REDIRECT);
    // Half-open: a place in the half-open budget, no connection slot.
    let u = lab.dp.maps.endpoint_use(EP_IDX_ACCEPTED).unwrap();
    assert_eq!((u.open, u.half_open), (0, 1));
    // Established flows would live 350 s; this one is on the SYN timeout (here 100 ms).
    let t = Timeouts { tcp_syn: Duration::from_millis(100), ..Timeouts::default() };
    assert_eq!(lab.dp.sweep(Scope::Idle(t)).unwrap().expired, 0, "younger than the SYN timeout");
    std::thread::sleep(Duration::from_millis(150));
    assert_eq!(lab.dp.sweep(Scope::Idle(t)).unwrap().expired, 1);
    assert_eq!(lab.dp.maps.endpoint_use(EP_IDX_ACCEPTED).unwrap(), EpUse::default(), "everything back");
}

#[test]
fn fins_both_ways_or_a_rst_give_the_slot_back_once_and_expiry_does_not_again() {
    let lab = PacketLab::new(1024);
    let p1 = connect(&lab, 43200);
    let p2 = connect(&lab, 43201);
    assert_eq!(active(&lab), 2);
    // 43200: FIN from the client, then from the backend (acknowledging the client's),
    // then the client's ACK of it.
    assert_eq!(lab.from_consumer(&from_client(43200, FIN | ACK)).action, XDP_REDIRECT);
    assert_eq!(active(&lab), 2, "half closed still counts");
    assert_eq!(lab.from_provider(&from_backend(p1, FIN | ACK)).action, XDP_REDIRECT);
    assert_eq!(active(&lab), 2, "the backend's FIN is not acknowledged yet");
    assert_eq!(lab.from_consumer(&last_ack(43200)).action, XDP_REDIRECT);
    assert_eq!(active(&lab), 1, "closed both ways: back at once");
    // A retransmitted FIN changes nothing.
    assert_eq!(lab.from_provider(&from_backend(p1, FIN | ACK)).action, XDP_REDIRECT);
    assert_eq!(active(&lab), 1);
    // 43201: reset by the backend, then the client's own RST too.
    assert_eq!(lab.from_provider(&from_backend(p2, RST)).action, XDP_REDIRECT);
    assert_eq!(lab.from_consumer(&from_client(43201, RST)).action, XDP_REDIRECT);
    assert_eq!(active(&lab), 0);
    // Expiry of the closed flows removes their entries and gives nothing back again.
    let t = Timeouts { tcp_closing: Duration::ZERO, ..Timeouts::default() };
    std::thread::sleep(Duration::from_millis(5));
    assert_eq!(lab.dp.sweep(Scope::Idle(t)).unwrap().expired, 2);
    assert_eq!(active(&lab), 0);
    assert_eq!(lab.dp.maps.endpoint_stats(EP_IDX_ACCEPTED).unwrap().slot_underflows, 0);
    assert!(lab.dp.maps.ct_get(&fwd_key(EP_ACCEPTED, 80, 43200, PROTO_TCP)).unwrap().is_none());
}

#[test]
fn a_new_syn_on_a_closed_tuple_takes_a_slot_again_within_the_limit() {
    let mut lab = PacketLab::new(1024);
    let ep = lab.dp.maps.endpoint(EP_IDX_ACCEPTED).unwrap();
    lab.dp.maps.set_endpoint(EP_IDX_ACCEPTED, EndpointInfo { conn_limit: 1, ..ep }).unwrap();
    let port = connect(&lab, 43300);
    assert_eq!(lab.from_provider(&from_backend(port, RST)).action, XDP_REDIRECT);
    assert_eq!(active(&lab), 0);
    // The same tuple again, within the closing timeout: the closed flow goes, a new
    // one opens (through every check a new flow passes); its handshake takes the slot.
    assert_eq!(lab.from_consumer(&syn(EP_ACCEPTED, 80, 43300).build()).action, XDP_REDIRECT);
    let v = state(&lab, 43300);
    assert_eq!((v.state, v.flags), (TCP_STATE_SYN, CT_FLAG_RELEASED), "a new flow, no flag of the old one, no slot yet");
    assert_eq!(lab.dp.maps.endpoint_stats(EP_IDX_ACCEPTED).unwrap().new_flows, 2, "a new connection, counted");
    let port = snat_port(&lab, &fwd_key(EP_ACCEPTED, 80, 43300, PROTO_TCP));
    // A retransmitted SYN takes nothing more.
    assert_eq!(lab.from_consumer(&syn(EP_ACCEPTED, 80, 43300).build()).action, XDP_REDIRECT);
    assert_eq!(lab.dp.maps.endpoint_use(EP_IDX_ACCEPTED).unwrap().half_open, 1);
    assert_eq!(lab.from_provider(&synack(port)).action, XDP_REDIRECT);
    assert_eq!(lab.from_consumer(&from_client(43300, ACK)).action, XDP_REDIRECT);
    assert_eq!((active(&lab), lab.dp.maps.endpoint_use(EP_IDX_ACCEPTED).unwrap().half_open), (1, 0));
    // A new flow finds the limit (1) taken: a reset.
    let out = lab.from_consumer(&syn(EP_ACCEPTED, 80, 43301).build());
    assert_eq!(action_name(out.action), "XDP_TX", "reset, over the limit");
    // Close 43300 (its backend resets it); 43301 connects and closes; reopening 43300
    // takes the slot, and reopening 43301 then finds the limit taken.
    assert_eq!(lab.from_provider(&from_backend(port, RST)).action, XDP_REDIRECT);
    let other = connect(&lab, 43301);
    assert_eq!(lab.from_provider(&from_backend(other, RST)).action, XDP_REDIRECT);
    assert_eq!(active(&lab), 0);
    connect(&lab, 43300);
    let out = lab.from_consumer(&syn(EP_ACCEPTED, 80, 43301).build());
    assert_eq!(action_name(out.action), "XDP_TX", "reopening over the limit: a reset");
    assert!(lab.dp.maps.ct_get(&fwd_key(EP_ACCEPTED, 80, 43301, PROTO_TCP)).unwrap().is_none(), "the closed flow went, the new one was refused");
    assert_eq!(active(&lab), 1);
    assert_eq!(lab.dp.maps.endpoint_stats(EP_IDX_ACCEPTED).unwrap().drop_count(DropReason::OverLimit), 2);
}

#[test]
fn concurrent_expiry_and_new_flows_release_each_slot_exactly_once() {
    let lab = PacketLab::new(1 << 14);
    let sweeper = lab.dp.sweeper().unwrap();
    let zero = Timeouts { tcp_syn: Duration::ZERO, tcp_established: Duration::ZERO, tcp_closing: Duration::ZERO, udp: Duration::ZERO };
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (passes, raced) = (std::sync::atomic::AtomicU64::new(0), std::sync::atomic::AtomicU64::new(0));
    let (expired, passed) = std::thread::scope(|s| {
        // Another thread sweeps with every timeout at zero while flows open, reopen on
        // closed tuples and close, so expiries race the data path at every step.
        let sweeps = s.spawn(|| {
            let mut n = 0;
            for _ in 0..2000 {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let r = sweeper.sweep(Scope::Idle(zero)).unwrap();
                n += r.expired;
                passes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                raced.fetch_add(r.expired, std::sync::atomic::Ordering::Relaxed);
            }
            n
        });
        // The flows start once the sweeper runs, and go on (3000 SYNs at least, 30000
        // at most) until its passes have expired flows while they opened: on a loaded
        // machine its thread may start late and its passes take long. 1000 tuples, so
        // a flow stays idle longer than a pass takes.
        let began = std::time::Instant::now();
        while passes.load(std::sync::atomic::Ordering::Relaxed) == 0 && began.elapsed() < Duration::from_secs(10) {
            std::thread::yield_now();
        }
        let first = passes.load(std::sync::atomic::Ordering::Relaxed);
        let mut passed = 0u64;
        let mut i = 0u32;
        while i < 3000 || (raced.load(std::sync::atomic::Ordering::Relaxed) == 0 && i < 30_000) {
            let sport = 30000 + (i % 1000) as u16;
            i += 1;
            if lab.from_consumer(&syn(EP_ACCEPTED, 80, sport).build()).action == XDP_REDIRECT {
                passed += 1;
            }
            if i.is_multiple_of(3) {
                lab.from_consumer(&from_client(sport, RST));
            }
            assert!(held_now(&lab) <= 3000, "the count wrapped: {}", held_now(&lab));
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        eprintln!("{i} SYNs while the sweeper made passes {first} to {}", passes.load(std::sync::atomic::Ordering::Relaxed));
        (sweeps.join().unwrap(), passed)
    });
    // Five more flows with no sweep racing, so some are surely open: the backend's
    // flow counters (the data path's) agree with the table they raced.
    for sport in 31000..31005 {
        assert_eq!(lab.from_consumer(&syn(EP_ACCEPTED, 80, sport).build()).action, XDP_REDIRECT);
    }
    let passed = passed + 5;
    let on_backend = |lab: &PacketLab| lab.dp.maps.conntrack().unwrap().iter().filter(|(_, v)| v.kind == CT_KIND_FORWARD && v.backend == 0).count() as u64;
    let counted = lab.dp.maps.backend_flows(0).unwrap();
    assert_eq!(counted.live(), on_backend(&lab), "counters {counted:?}");
    assert!(counted.live() >= 5, "{counted:?}");
    // The scrape's batch read of every endpoint's counters says what one lookup says.
    let all = lab.dp.maps.endpoint_counters(MAX_ENDPOINTS).unwrap();
    for ep in [EP_IDX_ACCEPTED, EP_IDX_PENDING, MAX_ENDPOINTS - 1] {
        assert_eq!(all.active(ep), lab.dp.maps.active_flows(ep).unwrap(), "endpoint {ep}");
        assert_eq!(all.stats(ep), lab.dp.maps.endpoint_stats(ep).unwrap(), "endpoint {ep}");
    }
    assert!(all.uses(EP_IDX_ACCEPTED).half_open >= 5 && all.stats(EP_IDX_ACCEPTED).new_flows > 0);
    // What is left expires now; then every slot has come back, none twice.
    std::thread::sleep(Duration::from_millis(2));
    let last = sweeper.sweep(Scope::Idle(zero)).unwrap();
    eprintln!("{passed} SYNs passed, {expired} expired while they did, {} at the end", last.expired);
    assert!(expired > 0, "the sweeps never raced the new flows");
    assert_eq!(held_now(&lab), 0, "a slot or half-open place was never given back");
    assert_eq!(lab.dp.maps.endpoint_use(EP_IDX_ACCEPTED).unwrap().flows, 0, "a share place was never given back");
    let s = lab.dp.maps.endpoint_stats(EP_IDX_ACCEPTED).unwrap();
    assert_eq!(s.slot_underflows, 0, "a slot was given back twice");
    // A SYN on a tuple whose flow is still open is a retransmission, not a new flow.
    assert!((200..=passed).contains(&s.new_flows), "{} new flows of {passed} SYNs passed", s.new_flows);
    assert!(lab.dp.maps.conntrack().unwrap().is_empty(), "entries left behind");
    // Every flow the data path opened to the backend was removed once: no more, no less
    // (`new_flows` also counts SYNs that reopened a closed tuple's entry).
    let counted = lab.dp.maps.backend_flows(0).unwrap();
    assert!(counted.opened >= 200 && counted.opened <= s.new_flows, "{counted:?}, {} new flows", s.new_flows);
    assert_eq!(counted.removed, counted.opened, "{counted:?}");
}

#[test]
fn the_sweeper_removes_a_reverse_entry_left_alone_and_keeps_the_others() {
    let mut lab = PacketLab::new(1024);
    let port = connect(&lab, 43300);
    let now = privatelink::dataplane::monotonic_ns();
    // A reverse entry with no forward entry, quiet for 2 s (a creation that failed
    // half way), and one quiet for only 100 ms (a creation that may still finish).
    let orphan = |dport: u16, age_ns: u64| {
        let key = CtKey { src_ip_be: u32::from(BACKEND).to_be(), dst_ip_be: u32::from(SNAT_IP).to_be(), src_port_be: 8080u16.to_be(), dst_port_be: dport.to_be(), vpc_id: PROVIDER_VPC, proto: PROTO_TCP, _pad: 0 };
        let v = CtValue { kind: CT_KIND_REVERSE, last_seen_ns: now - age_ns, nat_src_ip_be: u32::from(EP_ACCEPTED).to_be(), nat_dst_ip_be: u32::from(CLIENT).to_be(), nat_src_port_be: 80u16.to_be(), nat_dst_port_be: 50000u16.to_be(), egress_vpc: CONSUMER_VPC, ..Default::default() };
        (key, v)
    };
    let (old_key, old) = orphan(61000, 2_000_000_000);
    let (new_key, new) = orphan(61001, 100_000_000);
    lab.dp.maps.ct_insert(old_key, old).unwrap();
    lab.dp.maps.ct_insert(new_key, new).unwrap();
    // The live flow's own reverse entry is quiet too (the backend never sent): kept.
    let live_rev = rev_key(SNAT_IP, port);
    let mut quiet = lab.dp.maps.ct_get(&live_rev).unwrap().unwrap();
    quiet.last_seen_ns = now - 2_000_000_000;
    lab.dp.maps.ct_insert(live_rev, quiet).unwrap();
    let r = lab.dp.sweep(Scope::Idle(Timeouts::default())).unwrap();
    assert_eq!((r.orphans, r.expired, r.alive, r.entries), (1, 0, 1, 4));
    assert!(lab.dp.maps.ct_get(&old_key).unwrap().is_none(), "the orphan is gone");
    assert!(lab.dp.maps.ct_get(&new_key).unwrap().is_some(), "a young one is kept");
    assert!(lab.dp.maps.ct_get(&live_rev).unwrap().is_some(), "a flow's own reverse entry is kept");
    assert_eq!(active(&lab), 1);
}
