//! The packet-level harness: the real XDP object loaded, its maps seeded through the
//! library's `maps` module (the daemon's own code path), frames run through it with
//! BPF_PROG_TEST_RUN. The program runs in a namespace of its own, with two VPC-facing
//! veths, routes and neighbours, so `bpf_fib_lookup` gives deterministic answers.

use crate::{
    frame::{assert_frame_eq, decode, Packet, SYN},
    netns::{veth, Netns},
};
use aya::programs::{TestRun, TestRunOptions};
use privatelink::dataplane::{
    loader::{Dataplane, LoadOptions},
    maglev::{self, Member},
    maps::ip_raw,
};
use privatelink_common::*;
use std::net::Ipv4Addr;

pub const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
pub const CLIENT_MAC: [u8; 6] = [0x02, 0xc1, 0, 0, 0, 0x02];
pub const GW_CONSUMER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
pub const GW_CONSUMER_MAC: [u8; 6] = [0x02, 0x90, 0, 0, 1, 0x01];
pub const GW_PROVIDER: Ipv4Addr = Ipv4Addr::new(192, 168, 2, 1);
pub const GW_PROVIDER_MAC: [u8; 6] = [0x02, 0x90, 0, 0, 2, 0x01];
pub const BACKEND: Ipv4Addr = Ipv4Addr::new(192, 168, 2, 10);
pub const BACKEND_MAC: [u8; 6] = [0x02, 0xb0, 0, 0, 2, 0x0a];
/// A backend with no neighbour entry: the FIB answers NO_NEIGH.
pub const BACKEND_UNRESOLVED: Ipv4Addr = Ipv4Addr::new(192, 168, 2, 99);
pub const EP_ACCEPTED: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 100);
pub const EP_PENDING: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 101);
pub const EP_REJECTED: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 102);
pub const EP_NO_BACKEND: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 103);
pub const EP_UNRESOLVED: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 104);
pub const SNAT_IP: Ipv4Addr = Ipv4Addr::new(11, 163, 0, 5);
pub const SNAT_NET: Ipv4Addr = Ipv4Addr::new(11, 163, 0, 0);
pub const CONSUMER_VPC: u16 = 1;
pub const PROVIDER_VPC: u16 = 2;

/// Endpoint indices seeded by [`PacketLab::new`].
pub const EP_IDX_ACCEPTED: u32 = 0;
pub const EP_IDX_PENDING: u32 = 1;
pub const EP_IDX_REJECTED: u32 = 2;
pub const EP_IDX_NO_BACKEND: u32 = 3;
pub const EP_IDX_UNRESOLVED: u32 = 4;

pub struct PacketLab {
    pub dp: Dataplane,
    pub consumer_if: u32,
    pub provider_if: u32,
    // Dropped last: the dataplane goes before its namespaces. `peer` holds the other
    // ends of the veths (deleting it would delete them).
    pub peer: Netns,
    pub ns: Netns,
}

pub struct Outcome {
    pub action: u32,
    pub frame: Vec<u8>,
}

pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
pub const XDP_TX: u32 = 3;
pub const XDP_REDIRECT: u32 = 4;

pub fn action_name(a: u32) -> &'static str {
    match a {
        0 => "XDP_ABORTED",
        XDP_DROP => "XDP_DROP",
        XDP_PASS => "XDP_PASS",
        XDP_TX => "XDP_TX",
        XDP_REDIRECT => "XDP_REDIRECT",
        _ => "?",
    }
}

/// The `struct xdp_md` context of a test run: a frame of `len` bytes arriving on
/// `ingress_ifindex` { data, data_end, data_meta, ingress_ifindex, rx_queue_index,
/// egress_ifindex }.
pub fn xdp_md(ingress_ifindex: u32, len: usize) -> [u8; 24] {
    let mut ctx = [0u8; 24];
    ctx[4..8].copy_from_slice(&(len as u32).to_ne_bytes());
    ctx[12..16].copy_from_slice(&ingress_ifindex.to_ne_bytes());
    ctx
}

fn mac_str(m: [u8; 6]) -> String {
    m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

impl PacketLab {
    /// A gateway namespace with a consumer VPC (10.0.0.0/24) and a provider VPC
    /// (192.168.2.0/24), and endpoints in every state. Enters the calling thread into it.
    pub fn new(ct_capacity: u32) -> PacketLab {
        let ns = Netns::new("pkt");
        let peer = Netns::new("pktpeer");
        veth(&ns, "vpc1", &peer, "c0");
        veth(&ns, "vpc2", &peer, "b0");
        ns.ip(&["link", "set", "vpc1", "address", &mac_str(GW_CONSUMER_MAC)]);
        ns.ip(&["link", "set", "vpc2", "address", &mac_str(GW_PROVIDER_MAC)]);
        ns.ip(&["addr", "add", "10.0.0.1/24", "dev", "vpc1"]);
        ns.ip(&["addr", "add", "192.168.2.1/24", "dev", "vpc2"]);
        ns.ip(&["neigh", "replace", &BACKEND.to_string(), "lladdr", &mac_str(BACKEND_MAC), "dev", "vpc2", "nud", "permanent"]);
        ns.sysctl("net.ipv4.ip_forward", "1");
        let consumer_if = ns.ifindex("vpc1");
        let provider_if = ns.ifindex("vpc2");
        ns.enter();
        let mut dp = Dataplane::load(&LoadOptions { ct_capacity, pin_dir: None }).expect("load the XDP object");
        seed(&mut dp, consumer_if, provider_if, ct_capacity / 2);
        PacketLab { dp, consumer_if, provider_if, peer, ns }
    }

    /// Run `frame` through the data path as if it arrived on `ingress_ifindex`.
    pub fn run(&self, ingress_ifindex: u32, frame: &[u8]) -> Outcome {
        let prog = self.dp.xdp().expect("xdp program");
        let ctx = xdp_md(ingress_ifindex, frame.len());
        let mut out = vec![0u8; frame.len() + 256];
        let r = prog
            .test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                ctx_in: Some(&ctx),
                ..Default::default()
            })
            .expect("BPF_PROG_TEST_RUN");
        out.truncate(r.data_size_out as usize);
        Outcome { action: r.return_value, frame: out }
    }

    pub fn from_consumer(&self, frame: &[u8]) -> Outcome {
        self.run(self.consumer_if, frame)
    }

    pub fn from_provider(&self, frame: &[u8]) -> Outcome {
        self.run(self.provider_if, frame)
    }
}

/// `flows`: what the table holds, two entries per flow.
fn seed(dp: &mut Dataplane, consumer_if: u32, provider_if: u32, flows: u32) {
    let m = &mut dp.maps;
    m.set_vpc(consumer_if, VpcInfo { vpc_id: CONSUMER_VPC, mtu: 1500, mac: GW_CONSUMER_MAC, flow_limit: 1 << 24, table_flow_limit: flows, ..Default::default() }).unwrap();
    m.set_vpc(provider_if, VpcInfo { vpc_id: PROVIDER_VPC, mtu: 1500, mac: GW_PROVIDER_MAC, flow_limit: 1 << 24, table_flow_limit: flows, ..Default::default() }).unwrap();
    // The gateway's own addresses: traffic to them is the kernel's.
    m.bind_endpoint_ip(CONSUMER_VPC, GW_CONSUMER, EP_GATEWAY_OWN).unwrap();
    m.bind_endpoint_ip(PROVIDER_VPC, GW_PROVIDER, EP_GATEWAY_OWN).unwrap();
    m.add_snat_range(SNAT_NET, 16).unwrap();
    // service 0: backend 0; service 1: no backend up; service 2: a backend with no neighbour.
    for (svc, backend) in [(0u32, Some((0u32, BACKEND))), (1, None), (2, Some((1, BACKEND_UNRESOLVED)))] {
        m.set_service(svc, ServiceInfo { ifindex: provider_if, vpc_id: PROVIDER_VPC, active: 1, ..Default::default() })
            .unwrap();
        m.set_port(svc, PROTO_TCP, 80, 8080).unwrap();
        m.set_port(svc, PROTO_UDP, 53, 5353).unwrap();
        let members: Vec<Member> = backend
            .iter()
            .map(|(idx, ip)| {
                m.set_backend(*idx, *ip, true).unwrap();
                Member { index: *idx, id: ip_raw(*ip), weight: 100 }
            })
            .collect();
        m.set_maglev(svc, &maglev::table(&members)).unwrap();
    }
    let eps = [
        (EP_IDX_ACCEPTED, EP_ACCEPTED, 0, EP_STATE_ACCEPTED),
        (EP_IDX_PENDING, EP_PENDING, 0, EP_STATE_PENDING),
        (EP_IDX_REJECTED, EP_REJECTED, 0, EP_STATE_REJECTED),
        (EP_IDX_NO_BACKEND, EP_NO_BACKEND, 1, EP_STATE_ACCEPTED),
        (EP_IDX_UNRESOLVED, EP_UNRESOLVED, 2, EP_STATE_ACCEPTED),
    ];
    for (idx, ip, svc, state) in eps {
        let snat = Ipv4Addr::from(u32::from(SNAT_IP) + idx);
        m.set_ep_snat(idx * MAX_SNAT_PER_ENDPOINT, Some(snat)).unwrap();
        m.set_endpoint(idx, EndpointInfo { service: svc, conn_limit: 3000, state, half_open_limit: 3000, flow_limit: 1 << 24, ..Default::default() })
            .unwrap();
        m.bind_endpoint_ip(CONSUMER_VPC, ip, idx).unwrap();
    }
}

// ---- what the packet tests share ----

pub const SPORT: u16 = 40000;

pub fn syn(dst: Ipv4Addr, dport: u16, sport: u16) -> Packet {
    Packet::tcp((CLIENT, sport), (dst, dport), SYN)
        .macs(CLIENT_MAC, GW_CONSUMER_MAC)
        .seq_ack(1000, 0)
}

pub fn fwd_key(dst: Ipv4Addr, dport: u16, sport: u16, proto: u8) -> CtKey {
    CtKey {
        src_ip_be: ip_raw(CLIENT),
        dst_ip_be: ip_raw(dst),
        src_port_be: sport.to_be(),
        dst_port_be: dport.to_be(),
        vpc_id: CONSUMER_VPC,
        proto,
        _pad: 0,
    }
}

#[track_caller]
pub fn expect(out: &Outcome, action: u32, want: &[u8], case: &str) {
    assert_eq!(
        action_name(out.action),
        action_name(action),
        "{case}: action; frame out: {}",
        decode(&out.frame).map(|d| d.to_string()).unwrap_or_default()
    );
    assert_frame_eq(&out.frame, want, case);
}

/// What endpoint `idx` holds of its budgets: connection slots and half-open places (a
/// TCP flow holds a half-open place from its SYN, its slot from its completed handshake).
pub fn held(maps: &privatelink::dataplane::maps::Maps, idx: u32) -> u64 {
    let u = maps.endpoint_use(idx).unwrap();
    u.open + u.half_open
}

/// SYN, SYN-ACK, ACK through the lab: an established connection from `sport` to
/// EP_ACCEPTED:80 (`Some(SNAT port)`), or `None` when the gateway refused it (a reset
/// for the SYN or the handshake's last ACK).
pub fn connect(lab: &PacketLab, sport: u16) -> Option<u16> {
    if lab.from_consumer(&syn(EP_ACCEPTED, 80, sport).build()).action != XDP_REDIRECT {
        return None;
    }
    let port = snat_port(lab, &fwd_key(EP_ACCEPTED, 80, sport, PROTO_TCP));
    let synack = Packet::tcp((BACKEND, 8080), (SNAT_IP, port), crate::frame::SYN | crate::frame::ACK).macs(BACKEND_MAC, GW_PROVIDER_MAC).seq_ack(5000, 1001);
    assert_eq!(lab.from_provider(&synack.build()).action, XDP_REDIRECT, "SYN-ACK from port {sport}");
    let ack = Packet::tcp((CLIENT, sport), (EP_ACCEPTED, 80), crate::frame::ACK).macs(CLIENT_MAC, GW_CONSUMER_MAC).seq_ack(1001, 5001);
    (lab.from_consumer(&ack.build()).action == XDP_REDIRECT).then_some(port)
}

pub fn ep_stats(lab: &PacketLab, idx: u32) -> Stats {
    lab.dp.maps.endpoint_stats(idx).unwrap()
}

/// The SNAT port the data path picked for a flow, from its conntrack entry.
pub fn snat_port(lab: &PacketLab, key: &CtKey) -> u16 {
    let v = lab.dp.maps.ct_get(key).unwrap().expect("forward conntrack entry");
    assert_eq!(v.kind, CT_KIND_FORWARD);
    u16::from_be(v.nat_src_port_be)
}

/// The reverse key of a TCP flow to BACKEND:8080 from `snat:port`: what the backend
/// sends back.
pub fn rev_key(snat: Ipv4Addr, port: u16) -> CtKey {
    CtKey {
        src_ip_be: ip_raw(BACKEND),
        dst_ip_be: ip_raw(snat),
        src_port_be: 8080u16.to_be(),
        dst_port_be: port.to_be(),
        vpc_id: PROVIDER_VPC,
        proto: PROTO_TCP,
        _pad: 0,
    }
}

/// Hold SNAT port `port` of `snat` towards BACKEND:8080/tcp, as a live flow's reverse
/// entry would.
pub fn hold_snat_port(lab: &mut PacketLab, snat: Ipv4Addr, port: u16) {
    let v = CtValue { kind: CT_KIND_REVERSE, last_seen_ns: u64::MAX / 2, ..Default::default() };
    lab.dp.maps.ct_insert(rev_key(snat, port), v).unwrap();
}

/// A `PL_DNS` entry for `name` in `zone` (TTL 60 s, serial 1): an A record when `ip` is
/// given, else a name that exists without one.
pub fn dns_entry(name: &str, zone: &str, ip: Option<Ipv4Addr>) -> DnsEntry {
    DnsEntry {
        ip_be: ip.map_or(0, ip_raw),
        ttl: 60,
        serial: 1,
        key_len: dns_key(0, name).expect("a DNS name").1 as u16,
        zone_key_len: dns_key(0, zone).expect("a DNS zone").1 as u16,
        kind: if ip.is_some() { DNS_KIND_A } else { DNS_KIND_EXISTS },
        _pad: [0; 3],
    }
}
