//! A property test of the whole XDP object through BPF_PROG_TEST_RUN: random and
//! mutated frames from both sides, seeded from real flows, and after every frame the
//! invariants a hostile tenant must not break:
//! - nothing emitted goes towards a VPC other than the one its flow belongs to (a frame
//!   for a backend leaves from the provider side's MAC with a SNAT source; one for the
//!   client from the consumer side's MAC with an endpoint's address as source);
//! - every emitted frame's IP checksum is valid (a header that arrives broken is
//!   dropped, RFC 1812 5.2.2); every frame the gateway generates (resets, ICMP, echo
//!   replies) has valid L4 and ICMP checksums, and so does every frame it forwards
//!   from a valid one (a forwarded frame whose L4 checksum arrived broken stays
//!   broken: the NAT updates it incrementally, the receiver drops it; counted);
//! - a frame handed to the kernel (XDP_PASS) is the frame that came in, unrewritten;
//! - each endpoint's counters of what it holds equal what the table holds;
//! - no counter ever goes down.
//!
//! The seed and the number of cases are printed (`PL_FUZZ_SEED`, `PL_FUZZ_CASES` to
//! replay or lengthen a run). No case is skipped.

use privatelink_common::*;
use privatelink_tests::{
    frame::{assert_icmp_checksums, decode, Packet, ACK, FIN, PSH, RST, SYN},
    packet_lab::*,
};
use std::net::Ipv4Addr;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

const ENDPOINTS: [u32; 5] = [EP_IDX_ACCEPTED, EP_IDX_PENDING, EP_IDX_REJECTED, EP_IDX_NO_BACKEND, EP_IDX_UNRESOLVED];

/// A frame from the client side or the provider side, built from what real flows send:
/// (from the client, the frame, whether a byte was flipped or the frame cut).
fn frame(r: &mut Rng, ports: &[u16]) -> (bool, Vec<u8>, bool) {
    let flags = [SYN, SYN | ACK, ACK, ACK | PSH, FIN | ACK, RST, RST | ACK, SYN | FIN, SYN | RST, 0, 0xff][r.below(11) as usize];
    let sport = 40_000 + r.below(6) as u16;
    let seq = [1000u32, 1001, 1002, 1101, 5000, 5001, r.next() as u32][r.below(7) as usize];
    let ack = [0u32, 1001, 5001, 5002, r.next() as u32][r.below(5) as usize];
    let payload: Vec<u8> = vec![b'x'; [0usize, 1, 100, 1400][r.below(4) as usize]];
    let from_client = r.chance(60);
    let mut p = if from_client {
        let dst = [EP_ACCEPTED, EP_PENDING, EP_REJECTED, EP_NO_BACKEND, EP_UNRESOLVED, GW_CONSUMER, Ipv4Addr::new(10, 0, 0, 77), SNAT_IP][r.below(8) as usize];
        let src = if r.chance(90) { CLIENT } else { [Ipv4Addr::new(127, 0, 0, 1), Ipv4Addr::new(224, 0, 0, 1), Ipv4Addr::BROADCAST][r.below(3) as usize] };
        match r.below(10) {
            0..=5 => Packet::tcp((src, sport), (dst, 80), flags).seq_ack(seq, ack),
            6..=7 => Packet::udp((src, sport), (dst, 53)),
            _ => Packet::icmp_echo(src, dst),
        }
        .macs(CLIENT_MAC, GW_CONSUMER_MAC)
    } else {
        let port = ports.get(r.below(ports.len() as u64) as usize).copied().unwrap_or(SNAT_PORT_MIN);
        match r.below(10) {
            0..=6 => Packet::tcp((BACKEND, 8080), (SNAT_IP, port), flags).seq_ack(seq, ack),
            7..=8 => Packet::udp((BACKEND, 5353), (SNAT_IP, port)),
            _ => {
                let quote = Packet::udp((SNAT_IP, port), (BACKEND, 5353)).payload(b"q").ip_bytes();
                Packet::icmp_error(BACKEND, SNAT_IP, 3, 3, 0, &quote)
            }
        }
        .macs(BACKEND_MAC, GW_PROVIDER_MAC)
    };
    p = p.payload(&payload).ttl([64u8, 2, 1, 0][r.below(4) as usize]);
    if r.chance(5) {
        p.frag = 0;
    }
    if r.chance(5) {
        let src = p.src_mac;
        p = p.macs(src, [[0x02, 0xaa, 0, 0, 0, 1], [0xff; 6]][r.below(2) as usize]);
    }
    let mut f = p.build();
    // Mutations: a flipped byte anywhere past the Ethernet header, or a cut frame.
    let mut mutated = false;
    if r.chance(15) && f.len() > 14 {
        let at = 14 + r.below((f.len() - 14) as u64) as usize;
        f[at] ^= 1 << r.below(8);
        mutated = true;
    }
    if r.chance(5) && f.len() > 15 {
        f.truncate(14 + r.below((f.len() - 14) as u64) as usize);
        mutated = true;
    }
    (from_client, f, mutated)
}

/// What each endpoint holds, as the table says.
fn held_by_table(lab: &PacketLab) -> Vec<(u64, u64, u64)> {
    let table = lab.dp.maps.conntrack().unwrap();
    ENDPOINTS
        .iter()
        .map(|ep| {
            let fwd: Vec<&CtValue> = table.iter().map(|(_, v)| v).filter(|v| v.kind == CT_KIND_FORWARD && v.endpoint == *ep).collect();
            let open = fwd.iter().filter(|v| v.flags & CT_FLAG_RELEASED == 0).count() as u64;
            let half = fwd.iter().filter(|v| v.holds & CT_HOLDS_HALF_OPEN != 0).count() as u64;
            (open, half, fwd.len() as u64)
        })
        .collect()
}

fn totals(lab: &PacketLab) -> Vec<u64> {
    let mut t = Vec::new();
    for ep in ENDPOINTS {
        let s = ep_stats(lab, ep);
        t.extend([s.fwd_packets, s.rev_packets, s.new_flows, s.resets_sent, s.icmp_sent, s.snat_ports_claimed, s.snat_ports_released]);
        t.extend(s.drops);
    }
    for vpc in [CONSUMER_VPC, PROVIDER_VPC] {
        t.extend(lab.dp.maps.vpc_stats(vpc).unwrap().drops);
    }
    t
}

#[test]
fn random_and_mutated_frames_never_break_the_invariants() {
    let seed = std::env::var("PL_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1);
    let cases: u64 = std::env::var("PL_FUZZ_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(5000);
    eprintln!("fuzz: seed {seed}, {cases} cases (PL_FUZZ_SEED={seed} replays this run)");
    let mut r = Rng(seed);
    let lab = PacketLab::new(1 << 12);
    // Real flows first: their SNAT ports seed the provider side's frames.
    let mut ports = Vec::new();
    for sport in 40_000..40_003u16 {
        if let Some(p) = connect(&lab, sport) {
            ports.push(p);
        }
    }
    let mut before = totals(&lab);
    let (mut emitted, mut passed, mut kept_broken) = (0u64, 0u64, 0u64);
    for case in 0..cases {
        let (from_client, input, mutated) = frame(&mut r, &ports);
        let out = if from_client { lab.from_consumer(&input) } else { lab.from_provider(&input) };
        let what = || format!("case {case} (seed {seed}): in {}", decode(&input).map(|d| d.to_string()).unwrap_or_else(|| format!("{input:02x?}")));
        match out.action {
            XDP_TX | XDP_REDIRECT => {
                emitted += 1;
                let d = decode(&out.frame).unwrap_or_else(|| panic!("{}: undecodable output", what()));
                if let Some(ip) = &d.ip {
                    assert!(ip.ip_checksum_ok, "{}: out {d}", what());
                    let generated = out.action == XDP_TX;
                    if generated || !mutated {
                        assert!(ip.l4_checksum_ok, "{}: out {d}", what());
                        // ICMP errors: their quoted headers' checksums too (a quote is
                        // what the sender sent: only a valid frame's quote must be).
                        if !mutated && ip.proto == PROTO_ICMP && [3u8, 11, 12].contains(&out.frame[14 + ip.ihl]) {
                            assert_icmp_checksums(&out.frame, &what());
                        }
                    } else if !ip.l4_checksum_ok {
                        kept_broken += 1;
                    }
                    if d.dst_mac == BACKEND_MAC {
                        assert!(d.src_mac == GW_PROVIDER_MAC && ip.dst == BACKEND && u32::from(ip.src) >> 16 == u32::from(SNAT_NET) >> 16, "{}: towards the provider {d}", what());
                    } else if d.dst_mac == CLIENT_MAC {
                        assert_eq!(d.src_mac, GW_CONSUMER_MAC, "{}: {d}", what());
                        assert!(ip.dst != BACKEND && u32::from(ip.src) >> 16 != u32::from(SNAT_NET) >> 16, "{}: a provider-side address towards the consumer {d}", what());
                    } else {
                        panic!("{}: emitted towards an unknown MAC: {d}", what());
                    }
                }
            }
            XDP_PASS => {
                passed += 1;
                assert_eq!(out.frame, input, "{}: a frame handed to the kernel was changed", what());
            }
            XDP_DROP => {}
            a => panic!("{}: action {}", what(), action_name(a)),
        }
        for (ep, (open, half, flows)) in ENDPOINTS.iter().zip(held_by_table(&lab)) {
            let u = lab.dp.maps.endpoint_use(*ep).unwrap();
            assert_eq!((u.open, u.half_open, u.flows), (open, half, flows), "{}: endpoint {ep}'s counts against its table", what());
        }
        let now = totals(&lab);
        for (i, (a, b)) in before.iter().zip(&now).enumerate() {
            assert!(b >= a, "{}: counter {i} went down ({a} -> {b})", what());
        }
        before = now;
    }
    let s = ep_stats(&lab, EP_IDX_ACCEPTED);
    eprintln!("fuzz: {cases} cases, {emitted} emitted ({kept_broken} forwarded with the L4 checksum they arrived with, broken), {passed} to the kernel, {} new flows, {} drops on the endpoint; 0 skipped", s.new_flows, s.drops.iter().sum::<u64>());
    assert!(emitted > 0 && s.new_flows > 3, "the cases reached the flow paths");
}
