//! Part 1 and the data-path half of part 2: per-packet cost of the XDP programs with
//! BPF_PROG_TEST_RUN in the packet lab's gateway namespace (neighbours prefilled,
//! `ingress_ifindex` set through the context).
//!
//! The kernel does not reset the packet between repeats, so a NAT program would measure
//! its own rewritten packet from the second repeat on: every run here is repeat=1 with
//! a fresh copy of the frame, and the median of many runs is the cost. The same holds
//! for the references, so the timer's own overhead is in every number alike (R0 shows
//! it). New-flow runs vary the source address and port so each one is really new.

use super::{Effort, Row};
use crate::{
    frame::{Packet, ACK, SYN},
    packet_lab::*,
};
use aya::maps::{Map, MapData, PerCpuArray, PerCpuValues};
use privatelink::dataplane::maps::ip_raw;
use privatelink_common::*;
use std::net::Ipv4Addr;

mod timing;

use timing::{measure, measure_together, Case, Frames, Reference, Timed};

const PART: &str = "1. per packet (BPF_PROG_TEST_RUN)";
const SCALE: &str = "2. scale";
/// An accepted endpoint with no limit to speak of (new-flow runs), and one with a limit
/// of 0 (every SYN over the limit).
const EP_IDX_UNLIMITED: u32 = 5;
const EP_UNLIMITED: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 105);
const EP_IDX_ZERO: u32 = 6;
const EP_ZERO: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 106);
/// An accepted endpoint with a 100-rule security group.
const EP_IDX_SG: u32 = 7;
const EP_SG: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 107);
/// The SYN-flood rows: an endpoint whose half-open budget a flood holds, and its
/// neighbour in the same VPC (unlimited, as EP_UNLIMITED).
const EP_IDX_FLOODED: u32 = 8;
const EP_FLOODED: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 108);
const EP_IDX_NEIGHBOUR: u32 = 9;
const EP_NEIGHBOUR: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 109);

fn ack(src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), smac: [u8; 6], dmac: [u8; 6]) -> Vec<u8> {
    Packet::tcp(src, dst, ACK).macs(smac, dmac).seq_ack(2000, 3000).payload(&[0u8; 18]).build()
}

fn syn_from(sport: u16, src: Ipv4Addr, dst: (Ipv4Addr, u16)) -> Vec<u8> {
    Packet::tcp((src, sport), dst, SYN).macs(CLIENT_MAC, GW_CONSUMER_MAC).seq_ack(1000, 0).build()
}

/// Run i's SYN of a new flow to `dst`: from one of `hosts` addresses from 10.net.0.2
/// on, a port from 1024 on, a new (address, port) for each of 50,000 x `hosts` runs.
fn new_syn(i: usize, net: u8, hosts: u32, dst: (Ipv4Addr, u16)) -> Vec<u8> {
    let src = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, net, 0, 0)) + 2 + (i / 50_000) as u32 % hosts);
    syn_from(1024 + (i % 50_000) as u16, src, dst)
}

fn add_endpoint(lab: &mut PacketLab, idx: u32, ip: Ipv4Addr, limit: u32) {
    let m = &mut lab.dp.maps;
    let snat = Ipv4Addr::from(u32::from(SNAT_IP) + idx);
    m.set_ep_snat(idx * MAX_SNAT_PER_ENDPOINT, Some(snat)).unwrap();
    m.set_endpoint(idx, EndpointInfo { service: 0, conn_limit: limit, state: EP_STATE_ACCEPTED, half_open_limit: limit, flow_limit: 1 << 24, ..Default::default() })
        .unwrap();
    m.bind_endpoint_ip(CONSUMER_VPC, ip, idx).unwrap();
}

/// An established flow: SYN through the data path, then its SNAT port.
fn establish(lab: &PacketLab, sport: u16) -> u16 {
    let out = lab.from_consumer(&syn_from(sport, CLIENT, (EP_ACCEPTED, 80)));
    assert_eq!(out.action, XDP_REDIRECT, "the benchmark flow did not open");
    let key = CtKey {
        src_ip_be: ip_raw(CLIENT),
        dst_ip_be: ip_raw(EP_ACCEPTED),
        src_port_be: sport.to_be(),
        dst_port_be: 80u16.to_be(),
        vpc_id: CONSUMER_VPC,
        proto: PROTO_TCP,
        _pad: 0,
    };
    let v = lab.dp.maps.ct_get(&key).unwrap().expect("the flow's entry");
    u16::from_be(v.nat_src_port_be)
}

/// Established-forward cost in `lab` (a fresh flow on `sport`).
fn established_forward(lab: &PacketLab, e: Effort, sport: u16) -> Vec<f64> {
    establish(lab, sport);
    let prog = lab.dp.xdp().unwrap();
    let f = ack((CLIENT, sport), (EP_ACCEPTED, 80), CLIENT_MAC, GW_CONSUMER_MAC);
    measure(prog, lab.consumer_if, e, XDP_REDIRECT, |_| f.clone())
}

/// The reply budgets of the lab's data path (`PL_ICMP_RATE`, `PL_VPC_RATE`, found
/// through the programs' maps): rows whose answer is rate-limited (a reset, a DNS
/// answer) refill them before each run, outside the timed section, so that every run
/// takes the path of an answer within its budget, as a real client's does. The window
/// is set to now, so the run does not pay for opening a new one either.
struct ReplyBudgets {
    endpoints: PerCpuArray<MapData, ReplyRate>,
    vpcs: PerCpuArray<MapData, ReplyRate>,
    cpus: usize,
}

impl ReplyBudgets {
    fn of(lab: &PacketLab) -> ReplyBudgets {
        let mut found: Vec<(String, MapData)> = Vec::new();
        for name in [PROG_XDP, PROG_NEWFLOW, PROG_DNS] {
            let info = lab.dp.program(name).unwrap().info().expect("program info");
            for id in info.map_ids().expect("map ids").unwrap_or_default() {
                let m = MapData::from_id(id).expect("map by id");
                let n = m.info().expect("map info").name_as_str().unwrap_or_default().to_string();
                if !found.iter().any(|(f, _)| *f == n) {
                    found.push((n, m));
                }
            }
        }
        let mut take = |name: &str| {
            let i = found.iter().position(|(n, _)| n == name).unwrap_or_else(|| panic!("{name} among the programs' maps"));
            PerCpuArray::try_from(Map::PerCpuArray(found.remove(i).1)).expect("a per-CPU array")
        };
        let (endpoints, vpcs) = (take(MAP_ICMP_RATE), take("PL_VPC_RATE"));
        ReplyBudgets { endpoints, vpcs, cpus: aya::util::nr_cpus().expect("CPUs") }
    }

    fn fresh(&self) -> PerCpuValues<ReplyRate> {
        let now = ReplyRate { window_start_ns: privatelink::dataplane::monotonic_ns(), ..Default::default() };
        PerCpuValues::try_from(vec![now; self.cpus]).unwrap()
    }

    /// A full budget for endpoint `slot`.
    fn endpoint(&mut self, slot: u32) {
        let v = self.fresh();
        self.endpoints.set(slot, v, 0).expect("refill an endpoint's reply budget");
    }

    /// A full budget for VPC `vpc_id` (its DNS answers).
    fn vpc(&mut self, vpc_id: u16) {
        let v = self.fresh();
        self.vpcs.set(vpc_id as u32, v, 0).expect("refill a VPC's reply budget");
    }
}

/// The part's conntrack capacity, the product's and the floor row's.
const CT_CAPACITY: u32 = 2 << 20;

pub fn run(e: Effort) -> Vec<Row> {
    let mut rows = Vec::new();
    let mut lab = PacketLab::new(CT_CAPACITY);
    add_endpoint(&mut lab, EP_IDX_UNLIMITED, EP_UNLIMITED, u32::MAX);
    add_endpoint(&mut lab, EP_IDX_ZERO, EP_ZERO, 0);
    let prog = lab.dp.xdp().unwrap();
    let r0 = lab.dp.program(PROG_PASS).unwrap();
    let bench = super::object::BenchObject::load();
    let r1 = bench.program(PROG_FWD);
    let cif = lab.consumer_if;

    let direct = ack((CLIENT, 40000), (BACKEND, 8080), CLIENT_MAC, GW_CONSUMER_MAC);
    let r = Reference { prog: r1, ifindex: cif, frame: direct.clone(), e };
    // R1's own row: its trials taken in turn with R0's.
    let mut m = measure_together(&mut [Case { prog: r0, ifindex: cif, expect: XDP_PASS, frames: Frames::Same(&direct) }, r.case()], e);
    let (r0_t, r1_t) = (m.remove(0), m.remove(0));
    let r0_t = Timed { t: r0_t, r1: super::summary(&r1_t).0 };
    rows.push(Row::new(PART, "R0: XDP_PASS only", &r0_t.t, "ns/pkt").note(r0_t.ratio()));
    rows.push(Row::new(PART, "R1: parse + bpf_fib_lookup + redirect, no NAT", &r1_t, "ns/pkt").note("in turn with R0; every row's ratio is to the R1 trials taken in turn with its own"));

    let other = ack((CLIENT, 40000), (Ipv4Addr::new(10, 0, 0, 50), 80), CLIENT_MAC, GW_CONSUMER_MAC);
    let t = r.one(prog, cif, XDP_DROP, |_| other.clone());
    rows.push(Row::new(PART, "traffic for no endpoint (dropped, not_routed)", &t.t, "ns/pkt").note(t.ratio()));
    let own = ack((CLIENT, 40000), (GW_CONSUMER, 22), CLIENT_MAC, GW_CONSUMER_MAC);
    let t = r.one(prog, cif, XDP_PASS, |_| own.clone());
    rows.push(Row::new(PART, "traffic for the gateway's own address (passes to the kernel)", &t.t, "ns/pkt").note(t.ratio()));

    let sport = 41000;
    let snat_port = establish(&lab, sport);
    let fwd = ack((CLIENT, sport), (EP_ACCEPTED, 80), CLIENT_MAC, GW_CONSUMER_MAC);
    let t = r.one(prog, cif, XDP_REDIRECT, |_| fwd.clone());
    rows.push(Row::new(PART, "established forward (DNAT+SNAT, TTL, MTU check, redirect)", &t.t, "ns/pkt").note(t.ratio()));
    // The same flow under a bandwidth limit high enough that nothing is over it: the
    // policer's cost (a rate lookup and a compare-and-swap on the shared bucket).
    let unpoliced = t.median();
    lab.dp.maps.set_rate(EP_IDX_ACCEPTED, Rate::of_bps(100_000_000_000)).unwrap();
    let prog = lab.dp.xdp().unwrap();
    let t = r.one(prog, cif, XDP_REDIRECT, |_| fwd.clone());
    let extra = t.median() - unpoliced;
    rows.push(Row::new(PART, "established forward with a bandwidth limit (policer, nothing over it)", &t.t, "ns/pkt").note(format!("{}; {extra:+.0} ns for the policer", t.ratio())));
    assert_eq!(ep_stats(&lab, EP_IDX_ACCEPTED).drop_count(DropReason::OverBandwidth), 0, "the benchmark policed its own packets");
    lab.dp.maps.set_rate(EP_IDX_ACCEPTED, Rate::default()).unwrap();
    let prog = lab.dp.xdp().unwrap();
    let rev = ack((BACKEND, 8080), (SNAT_IP, snat_port), BACKEND_MAC, GW_PROVIDER_MAC);
    let t = r.one(prog, lab.provider_if, XDP_REDIRECT, |_| rev.clone());
    rows.push(Row::new(PART, "established reverse", &t.t, "ns/pkt").note(t.ratio()));
    // An ICMP error from the backend about the flow's forward packet, translated back to
    // the client (RFC 5508: outer and quoted headers, three checksums).
    let quote = Packet::tcp((SNAT_IP, snat_port), (BACKEND, 8080), ACK).ttl(63).ip_bytes();
    let err = Packet::icmp_error(BACKEND, SNAT_IP, 3, 3, 0, &quote).macs(BACKEND_MAC, GW_PROVIDER_MAC).build();
    let t = r.one(prog, lab.provider_if, XDP_REDIRECT, |_| err.clone());
    rows.push(Row::new(PART, "ICMP error translated (backend's port unreachable to the client)", &t.t, "ns/pkt").note(t.ratio()));

    // New flows: source address and port vary, so every SYN opens a new flow. Beside
    // them, taking turns with their trials, the floors under them: R1 plus the miss and
    // the inserts a flow table of kernel hashes needs, in the bench object's hash sized
    // as the product's conntrack (the SYNs go to the backend, as R1's frame).
    // Both floors share one table; their sources (10.net.0.0/16) differ, so every SYN is
    // a new key there too. The object lives until the lab goes: freeing a large map
    // takes a kernel worker's time, which must not fall into a measurement.
    let floors = super::object::BenchObject::with_ct_capacity(CT_CAPACITY);
    let (mut f0, mut f1, mut f2) = (|i| new_syn(i, 0, 200, (EP_UNLIMITED, 80)), |i| new_syn(i, 1, 200, (BACKEND, 8080)), |i| new_syn(i, 2, 200, (BACKEND, 8080)));
    let mut m = r.measure(&mut [
        Case { prog, ifindex: cif, expect: XDP_REDIRECT, frames: Frames::Each(&mut f0) },
        Case { prog: floors.program(PROG_BENCH_FLOOR), ifindex: cif, expect: XDP_REDIRECT, frames: Frames::Each(&mut f1) },
        Case { prog: floors.program(PROG_BENCH_FLOOR_ONE), ifindex: cif, expect: XDP_REDIRECT, frames: Frames::Each(&mut f2) },
        r.case(),
    ]);
    let (t, two, one) = (m.remove(0), m.remove(0), m.remove(0));
    let new_flow = t.median();
    rows.push(
        Row::new(PART, "new TCP flow (SYN: limit check, conntrack insert, SNAT port)", &t.t, "ns/pkt")
            .note(format!("{}; {:.2} M new flows/s per core", t.ratio(), 1e3 / new_flow)),
    );
    for (floor, what) in [(&two, "two BPF_NOEXIST inserts (an entry per direction, as ours)"), (&one, "one BPF_NOEXIST insert (were the reverse direction free)")] {
        let above = new_flow - floor.median();
        rows.push(
            Row::new(PART, format!("floor of a new flow: R1 + conntrack miss + {what}; bench object, no NAT"), &floor.t, "ns/pkt")
                .note(format!("{}; the product's new flow is {above:.0} ns above it", floor.ratio())),
        );
    }
    // The same with a 100-rule security group whose last rule is the one that admits.
    let mut rules: Vec<SgRule> = (0..99u16)
        .map(|i| SgRule { net_be: ip_raw(Ipv4Addr::new(192, 0, 2, 0)), mask_be: ip_raw(Ipv4Addr::new(255, 255, 255, 0)), port_lo: 1000 + i, port_hi: 1000 + i, proto: PROTO_TCP, action: SG_DENY, _pad: [0; 2] })
        .collect();
    rules.push(SgRule { net_be: 0, mask_be: 0, port_lo: 1, port_hi: 65535, proto: SG_PROTO_ALL, action: SG_ALLOW, _pad: [0; 2] });
    // An endpoint of its own, so its SNAT ports are all free.
    add_endpoint(&mut lab, EP_IDX_SG, EP_SG, u32::MAX);
    lab.dp.maps.set_sg_set(1, &rules).unwrap();
    let mut info = lab.dp.maps.endpoint(EP_IDX_SG).unwrap();
    info.sg_set = 1;
    lab.dp.maps.set_endpoint(EP_IDX_SG, info).unwrap();
    let prog = lab.dp.xdp().unwrap();
    let base = t.median();
    let t = r.one(prog, cif, XDP_REDIRECT, |i| new_syn(i, 0, 100, (EP_SG, 80)));
    let extra = t.median() - base;
    rows.push(Row::new(PART, "new TCP flow through a 100-rule security group (the 100th rule admits)", &t.t, "ns/pkt").note(format!("{}; {extra:+.0} ns for the rules", t.ratio())));
    let mut budgets = ReplyBudgets::of(&lab);
    rows.extend(syn_flood(&mut lab, &r, &mut budgets, base));
    let prog = lab.dp.xdp().unwrap();
    let t = r.one(prog, cif, XDP_TX, |i| {
        budgets.endpoint(EP_IDX_ZERO);
        syn_from(2000 + (i % 1000) as u16, CLIENT, (EP_ZERO, 80))
    });
    rows.push(Row::new(PART, "SYN over the connection limit (RST sent)", &t.t, "ns/pkt").note(t.ratio()));
    let noflow = ack((CLIENT, 45000), (EP_ACCEPTED, 80), CLIENT_MAC, GW_CONSUMER_MAC);
    let t = r.one(prog, cif, XDP_TX, |_| {
        budgets.endpoint(EP_IDX_ACCEPTED);
        noflow.clone()
    });
    rows.push(Row::new(PART, "non-SYN of no flow (RST sent)", &t.t, "ns/pkt").note(t.ratio()));
    rows.extend(dns(&mut lab, &r, &mut budgets));
    drop((lab, floors));

    rows.extend(scale(e));
    rows
}

/// A SYN flood against one endpoint, whose half-open budget (100) it holds, and its
/// neighbour's new flows in the same VPC, their trials taken in turn: every flood SYN
/// is refused with a RST (`half_open_limit`), every one of the neighbour's opens its
/// flow, and the neighbour's cost is set beside `new_flow` (the new-flow row's median).
fn syn_flood(lab: &mut PacketLab, r: &Reference, budgets: &mut ReplyBudgets, new_flow: f64) -> Vec<Row> {
    add_endpoint(lab, EP_IDX_FLOODED, EP_FLOODED, 100);
    add_endpoint(lab, EP_IDX_NEIGHBOUR, EP_NEIGHBOUR, u32::MAX);
    let prog = lab.dp.xdp().unwrap();
    let cif = lab.consumer_if;
    for i in 0..100 {
        let out = lab.from_consumer(&new_syn(i, 5, 1, (EP_FLOODED, 80)));
        assert_eq!(out.action, XDP_REDIRECT, "the flood's first 100 SYNs take the half-open budget");
    }
    let (mut flood, mut neighbour) = (
        |i| {
            budgets.endpoint(EP_IDX_FLOODED);
            new_syn(i, 4, 200, (EP_FLOODED, 80))
        },
        |i| new_syn(i, 3, 200, (EP_NEIGHBOUR, 80)),
    );
    let mut m = r.measure(&mut [
        Case { prog, ifindex: cif, expect: XDP_TX, frames: Frames::Each(&mut flood) },
        Case { prog, ifindex: cif, expect: XDP_REDIRECT, frames: Frames::Each(&mut neighbour) },
        r.case(),
    ]);
    let (f, n) = (m.remove(0), m.remove(0));
    let refused = ep_stats(lab, EP_IDX_FLOODED).drop_count(DropReason::HalfOpenLimit);
    let u = lab.dp.maps.endpoint_use(EP_IDX_FLOODED).unwrap();
    assert_eq!((u.open, u.half_open), (0, 100), "the flood holds the half-open budget and no slot");
    vec![
        Row::new(PART, "SYN flood against an endpoint at its half-open budget (refused, RST sent)", &f.t, "ns/pkt")
            .note(format!("{}; {refused} refused as half_open_limit, no connection slot taken", f.ratio())),
        Row::new(PART, "new TCP flow of the flooded endpoint's neighbour, in turn with the flood", &n.t, "ns/pkt")
            .note(format!("{}; {:.2}x the new-flow row; every one opened", n.ratio(), n.median() / new_flow)),
    ]
}

/// Private DNS answered in XDP: a dig-like query (EDNS with a cookie) for an endpoint's
/// 70-byte name, answered with an A record, and one for an unknown name (NXDOMAIN and
/// the zone's SOA). Per core: 1e9 / ns answers a second.
fn dns(lab: &mut PacketLab, r: &Reference, budgets: &mut ReplyBudgets) -> Vec<Row> {
    const DNS: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 53);
    let zone = "privatelink.internal";
    let name = "ep-0a1b2c3d4e5f60718.epsrv-1a2b3c4d5e6f70819.local.privatelink.internal";
    let m = &mut lab.dp.maps;
    m.bind_endpoint_ip(CONSUMER_VPC, DNS, EP_DNS).unwrap();
    m.set_dns(CONSUMER_VPC, zone, dns_entry(zone, zone, None)).unwrap();
    m.set_dns(CONSUMER_VPC, name, dns_entry(name, zone, Some(EP_ACCEPTED))).unwrap();
    let query = |n: &str| {
        let mut q = vec![0x42, 0x42, 0x01, 0x20, 0, 1, 0, 0, 0, 0, 0, 1];
        for l in n.split('.') {
            q.push(l.len() as u8);
            q.extend(l.as_bytes());
        }
        q.extend([0, 0, 1, 0, 1, 0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 12, 0, 10, 0, 8]);
        q.extend([0x5a; 8]);
        Packet::udp((CLIENT, 33333), (DNS, 53)).macs(CLIENT_MAC, GW_CONSUMER_MAC).payload(&q).build()
    };
    let prog = lab.dp.xdp().unwrap();
    let mut rows = Vec::new();
    for (what, n) in [("A record", name.to_string()), ("NXDOMAIN with SOA", format!("nope.{name}"))] {
        let f = query(&n);
        let t = r.one(prog, lab.consumer_if, XDP_TX, |_| {
            budgets.vpc(CONSUMER_VPC);
            f.clone()
        });
        let per_s = 1e9 / t.median();
        rows.push(
            Row::new(PART, format!("DNS query answered in XDP ({what}, 70-byte name, EDNS)"), &t.t, "ns/pkt")
                .note(format!("{}; {:.1} M answers/s per core", t.ratio(), per_s / 1e6)),
        );
    }
    rows
}

/// Established-forward cost with 1 vs 10,000 endpoints and 1,000 vs 1,000,000 flows.
fn scale(e: Effort) -> Vec<Row> {
    let mut rows = Vec::new();
    let (n_eps, n_flows) = if e.quick { (1_000, 100_000) } else { (10_000, 1_000_000) };
    let mut lab = PacketLab::new(2 * n_flows + 262_144);
    let prog = lab.dp.xdp().unwrap();
    // A path that looks the endpoint up: ARP for the endpoint's address.
    let arp = crate::frame::arp_request(CLIENT_MAC, CLIENT, EP_ACCEPTED);
    let one = measure(prog, lab.consumer_if, e, XDP_TX, |_| arp.clone());
    for i in 0..n_eps {
        let idx = 100 + i;
        let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 0, 100, 0)) + i);
        add_endpoint(&mut lab, idx, ip, 3000);
    }
    let prog = lab.dp.xdp().unwrap();
    let many = measure(prog, lab.consumer_if, e, XDP_TX, |_| arp.clone());
    let base = super::summary(&one).0;
    rows.push(Row::new(SCALE, "ARP answer for an endpoint address, 5 endpoints", &one, "ns/pkt"));
    rows.push(
        Row::new(SCALE, format!("ARP answer for an endpoint address, {} endpoints", n_eps + 5), &many, "ns/pkt")
            .note(format!("{:.2}x of 5 endpoints", super::summary(&many).0 / base)),
    );
    // Live flows: synthetic flows of other clients, both entries each (the reverse one
    // keyed by a distinct SNAT address and port, as the data path would make them).
    let fill = |lab: &mut PacketLab, from: u32, to: u32| {
        for i in from..to {
            let src = ip_raw(Ipv4Addr::from(0x0a_40_00_00 + i));
            let key = CtKey { src_ip_be: src, dst_ip_be: ip_raw(EP_ACCEPTED), src_port_be: 5000u16.to_be(), dst_port_be: 80u16.to_be(), vpc_id: CONSUMER_VPC, proto: PROTO_TCP, _pad: 0 };
            let snat = ip_raw(Ipv4Addr::from(u32::from(SNAT_NET) + 256 + i / 60_000));
            let fwd = CtValue {
                kind: CT_KIND_FORWARD,
                state: TCP_STATE_ESTABLISHED,
                last_seen_ns: u64::MAX / 2,
                nat_src_ip_be: snat,
                nat_src_port_be: (1024 + (i % 60_000) as u16).to_be(),
                nat_dst_ip_be: ip_raw(BACKEND),
                nat_dst_port_be: 8080u16.to_be(),
                egress_vpc: PROVIDER_VPC,
                ..Default::default()
            };
            let rev = CtValue { kind: CT_KIND_REVERSE, last_seen_ns: u64::MAX / 2, nat_src_ip_be: key.dst_ip_be, nat_dst_ip_be: src, nat_src_port_be: key.dst_port_be, nat_dst_port_be: key.src_port_be, egress_vpc: CONSUMER_VPC, ..Default::default() };
            lab.dp.maps.ct_insert(fwd.peer_key(PROTO_TCP), rev).unwrap();
            lab.dp.maps.ct_insert(key, fwd).unwrap();
        }
    };
    // New flows with 1,000 and with n_flows live (each on an endpoint of its own, so
    // its SNAT ports are all free).
    let new_flows = |lab: &mut PacketLab, idx: u32, ip: Ipv4Addr| {
        add_endpoint(lab, idx, ip, u32::MAX);
        let prog = lab.dp.xdp().unwrap();
        measure(prog, lab.consumer_if, e, XDP_REDIRECT, |i| new_syn(i, 0, 200, (ip, 80)))
    };
    fill(&mut lab, 0, 1_000);
    let n1 = new_flows(&mut lab, 16_000, Ipv4Addr::new(10, 0, 200, 1));
    let k1 = established_forward(&lab, e, 41002);
    fill(&mut lab, 1_000, n_flows);
    let kmany = established_forward(&lab, e, 41003);
    let nmany = new_flows(&mut lab, 16_001, Ipv4Addr::new(10, 0, 200, 2));
    let base = super::summary(&k1).0;
    rows.push(Row::new(SCALE, "established forward, 1,000 live flows", &k1, "ns/pkt"));
    rows.push(
        Row::new(SCALE, format!("established forward, {n_flows} live flows (both entries each)"), &kmany, "ns/pkt")
            .note(format!("{:.2}x of 1,000 flows", super::summary(&kmany).0 / base)),
    );
    let base = super::summary(&n1).0;
    rows.push(Row::new(SCALE, "new TCP flow, 1,000 live flows", &n1, "ns/pkt"));
    rows.push(
        Row::new(SCALE, format!("new TCP flow, {n_flows} live flows (both entries each)"), &nmany, "ns/pkt")
            .note(format!("{:.2}x of 1,000 flows", super::summary(&nmany).0 / base)),
    );
    rows.extend(sweep_rows(&lab, e, n_flows));
    rows.extend(micro(&lab, e, n_flows));
    rows
}

/// CPU time of the calling thread (its syscalls included), ns.
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid timespec pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The sweeper over a table of `n_flows` live flows (nothing to expire: the pass reads
/// and judges every entry): its wall time, and the share of one core it takes when it
/// paces itself as the daemon's thread does (a pass, then at least `REST_PER_PASS`
/// times as long asleep, at least 1 s between passes).
fn sweep_rows(lab: &PacketLab, e: Effort, n_flows: u32) -> Vec<Row> {
    let sweeper = lab.dp.sweeper().unwrap();
    let t = privatelink::dataplane::sweep::Timeouts::default();
    let (mut wall, mut cpu) = (Vec::new(), Vec::new());
    for _ in 0..e.trials.min(5) {
        let (w0, c0) = (std::time::Instant::now(), thread_cpu_ns());
        let r = sweeper.sweep(privatelink::dataplane::sweep::Scope::Idle(t)).unwrap();
        assert_eq!(r.expired, 0, "the benchmark's flows are live");
        assert!(r.entries >= 2 * n_flows as u64, "the pass read {} entries", r.entries);
        wall.push(w0.elapsed().as_secs_f64() * 1e3);
        cpu.push((thread_cpu_ns() - c0) as f64 / 1e6);
    }
    let pass_ms = super::summary(&wall).0;
    let cycle_ms = (1000.0f64).max((1 + privatelink::daemon::REST_PER_PASS) as f64 * pass_ms);
    let share: Vec<f64> = cpu.iter().map(|c| 100.0 * c / cycle_ms).collect();
    vec![
        Row::new(SCALE, format!("sweeper pass over {n_flows} live flows ({} entries), wall time", 2 * n_flows), &wall, "ms"),
        Row::new(SCALE, format!("sweeper CPU at {n_flows} live flows, paced as the daemon paces it"), &share, "% of a core")
            .note(format!("pass CPU {:.0} ms; passes every {:.1} s", super::summary(&cpu).0, cycle_ms / 1e3)),
    ]
}

/// The conntrack map's operations alone, in the benchmarks' object (a hash sized as the
/// product's at `n_flows`): what a new flow's two inserts and its miss lookup cost,
/// read against a parse-only run of the same frames. Every frame is a new key.
fn micro(lab: &PacketLab, e: Effort, n_flows: u32) -> Vec<Row> {
    let mut obj = super::object::BenchObject::with_ct_capacity(2 * n_flows + 262_144);
    // Frames from source network `net` (10.net.0.0/16), a new (address, port) each run.
    let frames = |net: u8| {
        move |i: usize| {
            let src = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, net, 0, 0)) + (i / 50_000) as u32);
            syn_from(1024 + (i % 50_000) as u16, src, (EP_ACCEPTED, 80))
        }
    };
    let cif = lab.consumer_if;
    let parse = measure(obj.program(PROG_BENCH_PARSE), cif, e, XDP_DROP, frames(1));
    let empty = measure(obj.program(PROG_BENCH_CT_INSERT), cif, e, XDP_DROP, frames(2));
    // The table as full as the product's at n_flows (two entries per flow).
    {
        let mut ct = obj.ct();
        for i in 0..2 * n_flows {
            let key = CtKey { src_ip_be: ip_raw(Ipv4Addr::from(0x0b_00_00_00 + i)), dst_ip_be: ip_raw(EP_ACCEPTED), src_port_be: 5000u16.to_be(), dst_port_be: 80u16.to_be(), vpc_id: 1, proto: PROTO_TCP, _pad: 0 };
            ct.insert(key, CtValue::default(), 0).expect("fill the bench table");
        }
    }
    let full = measure(obj.program(PROG_BENCH_CT_INSERT), cif, e, XDP_DROP, frames(3));
    let miss = measure(obj.program(PROG_BENCH_CT_LOOKUP), cif, e, XDP_DROP, frames(4));
    // The same new keys into a table of our own (an array, probed and claimed with a
    // compare-and-swap): what the kernel's hash insert would cost in a design without it.
    let claim = measure(obj.program(PROG_BENCH_SLOT_CLAIM), cif, e, XDP_DROP, frames(5));
    let base = super::summary(&parse).0;
    let less = |t: &[f64]| format!("{:+.0} ns over parse only", super::summary(t).0 - base);
    vec![
        Row::new(SCALE, "micro: parse the frame into a conntrack key only", &parse, "ns/pkt"),
        Row::new(SCALE, "micro: conntrack insert (BPF_NOEXIST), nearly empty table", &empty, "ns/pkt").note(less(&empty)),
        Row::new(SCALE, format!("micro: conntrack insert (BPF_NOEXIST), {} entries present", 2 * n_flows), &full, "ns/pkt").note(less(&full)),
        Row::new(SCALE, format!("micro: conntrack lookup that misses, {} entries present", 2 * n_flows), &miss, "ns/pkt").note(less(&miss)),
        Row::new(SCALE, format!("micro: new entry in an open-addressing array table of {BENCH_SLOTS} slots (hash, compare-and-swap, 80-byte slot), not the product's"), &claim, "ns/pkt")
            .note(less(&claim)),
    ]
}
