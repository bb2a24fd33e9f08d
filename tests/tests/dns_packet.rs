//! Packet-level tests of the private DNS answered in XDP (BPF_PROG_TEST_RUN): each
//! answer kind and each class of malformed query. Queries are built and answers read
//! with hickory-proto, an independent DNS implementation; frames are checked by the
//! test decoder (addresses, MACs, IP and UDP checksums).

use hickory_proto::{
    op::{Edns, Message, MessageType, OpCode, Query, ResponseCode},
    rr::{DNSClass, Name, RData, RecordType},
};
use privatelink_common::*;
use privatelink_tests::{
    frame::{self, arp_request, decode, Packet},
    packet_lab::*,
};
use std::{net::Ipv4Addr, str::FromStr};

/// The consumer VPC's DNS address; the provider VPC (id 2) gets the same address, as
/// two overlapping VPCs would.
const DNS: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 53);
const EP_NAME: &str = "ep-0a1b2c3d4e5f60718.epsrv-1a2b3c4d5e6f70819.local.privatelink.internal";
const SVC_NAME: &str = "epsrv-1a2b3c4d5e6f70819.local.privatelink.internal";
const OWN: &str = "api.orders.example";
const ZONE: &str = "privatelink.internal";

/// The packet lab with a DNS address in both VPCs: VPC 1's names lead to
/// 10.0.0.100, VPC 2's same names to 10.0.0.200.
fn lab() -> PacketLab {
    let mut lab = PacketLab::new(1024);
    for (vpc, ip) in [(CONSUMER_VPC, Ipv4Addr::new(10, 0, 0, 100)), (PROVIDER_VPC, Ipv4Addr::new(10, 0, 0, 200))] {
        let m = &mut lab.dp.maps;
        m.bind_endpoint_ip(vpc, DNS, EP_DNS).unwrap();
        m.set_dns(vpc, ZONE, dns_entry(ZONE, ZONE, None)).unwrap();
        m.set_dns(vpc, "local.privatelink.internal", dns_entry("local.privatelink.internal", ZONE, None)).unwrap();
        m.set_dns(vpc, SVC_NAME, dns_entry(SVC_NAME, ZONE, Some(ip))).unwrap();
        m.set_dns(vpc, EP_NAME, dns_entry(EP_NAME, ZONE, Some(ip))).unwrap();
        m.set_dns(vpc, OWN, dns_entry(OWN, OWN, Some(ip))).unwrap();
    }
    lab
}

fn query(name: &str, rtype: RecordType) -> Message {
    let mut m = Message::new();
    m.set_id(0x4242).set_recursion_desired(true).set_message_type(MessageType::Query).set_op_code(OpCode::Query);
    m.add_query(Query::query(Name::from_str(name).unwrap(), rtype));
    m
}

fn udp(payload: &[u8]) -> Vec<u8> {
    Packet::udp((CLIENT, 33333), (DNS, 53)).macs(CLIENT_MAC, GW_CONSUMER_MAC).payload(payload).build()
}

/// Send `payload` from the client in VPC `ifindex`; the answer, checked as a frame.
fn ask_on(lab: &PacketLab, ifindex: u32, payload: &[u8], case: &str) -> Message {
    // Addressed to that interface's MAC: the data path drops frames for another.
    let gw_mac = if ifindex == lab.provider_if { GW_PROVIDER_MAC } else { GW_CONSUMER_MAC };
    let out = lab.run(ifindex, &Packet::udp((CLIENT, 33333), (DNS, 53)).macs(CLIENT_MAC, gw_mac).payload(payload).build());
    assert_eq!(action_name(out.action), "XDP_TX", "{case}");
    let d = decode(&out.frame).unwrap_or_else(|| panic!("{case}: undecodable answer"));
    assert_eq!((d.dst_mac, d.src_mac), (CLIENT_MAC, gw_mac), "{case}: back to the asker");
    let ip = d.ip.clone().unwrap_or_else(|| panic!("{case}: not IP"));
    assert_eq!((ip.src, ip.dst, ip.sport, ip.dport, ip.proto), (DNS, CLIENT, 53, 33333, PROTO_UDP), "{case}");
    assert!(ip.ip_checksum_ok && ip.l4_checksum_ok && ip.l4_checksum != 0, "{case}: checksums of {d}");
    assert_eq!(ip.tot_len, out.frame.len() - 14, "{case}: IP length is the frame's");
    let m = Message::from_vec(&ip.payload).unwrap_or_else(|e| panic!("{case}: hickory cannot read the answer: {e}"));
    assert_eq!((m.id(), m.message_type()), (0x4242, MessageType::Response), "{case}");
    m
}

fn ask(lab: &PacketLab, m: &Message, case: &str) -> Message {
    ask_on(lab, lab.consumer_if, &m.to_vec().unwrap(), case)
}

fn a_records(m: &Message) -> Vec<(String, Ipv4Addr, u32)> {
    m.answers()
        .iter()
        .filter_map(|r| match r.data() {
            RData::A(a) => Some((r.name().to_string(), a.0, r.ttl())),
            _ => None,
        })
        .collect()
}

/// The SOA in the authority section: (owner, mname, rname, minimum, ttl).
fn soa(m: &Message) -> (String, String, String, u32, u32) {
    assert_eq!(m.name_servers().len(), 1, "one SOA: {m:?}");
    let r = &m.name_servers()[0];
    match r.data() {
        RData::SOA(s) => (r.name().to_string(), s.mname().to_string(), s.rname().to_string(), s.minimum(), r.ttl()),
        other => panic!("not a SOA: {other:?}"),
    }
}

#[test]
fn a_names_resolve_with_the_question_echoed_as_asked() {
    let lab = lab();
    // Mixed case (DNS 0x20 randomisation): matched case-insensitively, echoed as sent.
    // Raw bytes: hickory's encoder lowercases names.
    let asked = "Ep-0A1B2C3D4E5F60718.EPSRV-1a2b3c4d5e6f70819.Local.PrivateLink.Internal.";
    let payload = raw([1, 0], [1, 0, 0, 0], &wire(asked.trim_end_matches('.')), &[0, 1, 0, 1]);
    let m = ask_on(&lab, lab.consumer_if, &payload, "endpoint name");
    assert_eq!(m.response_code(), ResponseCode::NoError);
    assert!(m.authoritative() && m.recursion_desired());
    assert_eq!(m.queries()[0].name().to_string(), asked);
    assert_eq!(a_records(&m), [(asked.to_string(), Ipv4Addr::new(10, 0, 0, 100), 60)]);
    assert!(m.name_servers().is_empty() && m.extensions().is_none());
    for (name, case) in [(SVC_NAME, "service name"), (OWN, "the provider's own name")] {
        let m = ask(&lab, &query(&format!("{name}."), RecordType::A), case);
        assert_eq!(a_records(&m), [(format!("{name}."), Ipv4Addr::new(10, 0, 0, 100), 60)], "{case}");
    }
    // ANY gets the A record (RFC 8482 allows a subset).
    let m = ask(&lab, &query(OWN, RecordType::ANY), "ANY");
    assert_eq!(a_records(&m).len(), 1);
    assert_eq!(lab.dp.maps.dns_stats(CONSUMER_VPC).unwrap().answers[DNS_NOERROR], 4);
}

#[test]
fn overlapping_vpcs_get_their_own_answers_from_the_same_address() {
    let lab = lab();
    let q = query(SVC_NAME, RecordType::A).to_vec().unwrap();
    let one = ask_on(&lab, lab.consumer_if, &q, "VPC 1");
    let two = ask_on(&lab, lab.provider_if, &q, "VPC 2");
    assert_eq!(a_records(&one)[0].1, Ipv4Addr::new(10, 0, 0, 100));
    assert_eq!(a_records(&two)[0].1, Ipv4Addr::new(10, 0, 0, 200));
    assert_eq!(lab.dp.maps.dns_stats(PROVIDER_VPC).unwrap().answers[DNS_NOERROR], 1);
}

#[test]
fn negative_answers_carry_their_zones_soa() {
    let lab = lab();
    // A known name, another type: NODATA with the zone's SOA (RFC 2308).
    let m = ask(&lab, &query(EP_NAME, RecordType::AAAA), "AAAA");
    assert_eq!((m.response_code(), m.answers().len()), (ResponseCode::NoError, 0));
    let zone = format!("{ZONE}.");
    assert_eq!(soa(&m), (zone.clone(), zone.clone(), format!("hostmaster.{zone}"), 60, 60));
    // A name between the zone and a name (an empty non-terminal) and the apex: NODATA.
    for name in ["local.privatelink.internal", ZONE] {
        let m = ask(&lab, &query(name, RecordType::A), name);
        assert_eq!((m.response_code(), m.answers().len()), (ResponseCode::NoError, 0), "{name}");
        assert_eq!(soa(&m).0, zone, "{name}");
    }
    // Unknown inside our zones: NXDOMAIN with the SOA of the zone it falls in.
    let m = ask(&lab, &query("ep-ffff.epsrv-1a2b3c4d5e6f70819.local.privatelink.internal", RecordType::A), "unknown");
    assert_eq!(m.response_code(), ResponseCode::NXDomain);
    assert_eq!(soa(&m).0, zone);
    let payload = raw([1, 0], [1, 0, 0, 0], &wire("v2.API.orders.example"), &[0, 1, 0, 1]);
    let m = ask_on(&lab, lab.consumer_if, &payload, "below the own name");
    assert_eq!(m.response_code(), ResponseCode::NXDomain);
    assert_eq!(soa(&m).0, "API.orders.example.", "the zone, as the question spelled it");
    // Outside every zone of the VPC: REFUSED, not authoritative, nothing else.
    for name in ["example.com", "orders.example", "internal", "xprivatelink.internal"] {
        let m = ask(&lab, &query(name, RecordType::A), name);
        assert_eq!(m.response_code(), ResponseCode::Refused, "{name}");
        assert!(!m.authoritative() && m.answers().is_empty() && m.name_servers().is_empty(), "{name}");
    }
    // Another class: REFUSED.
    let mut chaos = query("version.bind", RecordType::TXT);
    chaos.queries_mut()[0].set_query_class(DNSClass::CH);
    assert_eq!(ask(&lab, &chaos, "CHAOS").response_code(), ResponseCode::Refused);
    let s = lab.dp.maps.dns_stats(CONSUMER_VPC).unwrap();
    assert_eq!((s.answers[DNS_NOERROR], s.answers[DNS_NXDOMAIN], s.answers[DNS_REFUSED]), (3, 2, 5));
}

#[test]
fn the_zone_apex_answers_soa_and_ns() {
    let lab = lab();
    let zone = format!("{ZONE}.");
    // SOA at the apex: in the answer section, as every authoritative server answers it.
    let m = ask(&lab, &query(ZONE, RecordType::SOA), "SOA at the apex");
    assert_eq!(m.response_code(), ResponseCode::NoError);
    assert!(m.authoritative() && m.name_servers().is_empty(), "{m:?}");
    assert_eq!(m.answers().len(), 1, "{m:?}");
    match m.answers()[0].data() {
        RData::SOA(s) => {
            assert_eq!((m.answers()[0].name().to_string(), s.mname().to_string(), s.rname().to_string()), (zone.clone(), zone.clone(), format!("hostmaster.{zone}")));
            assert_eq!((s.serial(), s.minimum(), m.answers()[0].ttl()), (1, 60, 60));
        }
        other => panic!("not a SOA: {other:?}"),
    }
    // NS at the apex: the zone's server is the name the SOA gives as its primary; with
    // EDNS too (the OPT record after a 14-byte NS record).
    let mut q = query(ZONE, RecordType::NS);
    q.set_edns(Edns::new());
    let m = ask(&lab, &q, "NS at the apex");
    assert_eq!(m.response_code(), ResponseCode::NoError);
    let ns: Vec<(String, String, u32)> = m
        .answers()
        .iter()
        .map(|r| match r.data() {
            RData::NS(n) => (r.name().to_string(), n.0.to_string(), r.ttl()),
            other => panic!("not an NS: {other:?}"),
        })
        .collect();
    assert_eq!(ns, [(zone.clone(), zone.clone(), 60)]);
    assert!(m.name_servers().is_empty() && m.extensions().is_some());
    // The provider's own name is a zone of its own: its apex too.
    let m = ask(&lab, &query(OWN, RecordType::SOA), "SOA of the own name");
    assert_eq!(m.answers().len(), 1);
    // Below the apex, SOA and NS are NODATA with the SOA in the authority section.
    for t in [RecordType::SOA, RecordType::NS] {
        let m = ask(&lab, &query(EP_NAME, t), "below the apex");
        assert_eq!((m.response_code(), m.answers().len()), (ResponseCode::NoError, 0), "{t}");
        assert_eq!(soa(&m).0, zone, "{t}");
    }
}

#[test]
fn edns_is_answered_with_edns_and_unknown_versions_with_badvers() {
    let lab = lab();
    let mut q = query(EP_NAME, RecordType::A);
    let mut edns = Edns::new();
    edns.set_max_payload(4096);
    q.set_edns(edns.clone());
    let m = ask(&lab, &q, "EDNS 0");
    assert_eq!(a_records(&m).len(), 1);
    let e = m.extensions().as_ref().expect("an OPT record in the answer");
    assert_eq!((e.version(), e.max_payload()), (0, 1232));
    // With a SOA before the OPT record (47 bytes: the OPT starts at the other parity).
    for name in [OWN, EP_NAME, "x.API.orders.example"] {
        let mut q = query(name, RecordType::AAAA);
        q.set_edns(edns.clone());
        let m = ask(&lab, &q, "EDNS AAAA");
        assert_eq!((m.answers().len(), m.name_servers().len()), (0, 1), "{name}");
        assert!(m.extensions().is_some(), "{name}");
    }
    edns.set_version(1);
    q.set_edns(edns);
    let m = ask(&lab, &q, "EDNS 1");
    // RCODE 16, BADVERS (hickory names 16 BADSIG, TSIG's use of the same number).
    assert_eq!(u16::from(m.response_code()), 16);
    assert!(m.extensions().is_some(), "BADVERS comes with an OPT record");
    assert!(m.answers().is_empty());
    assert_eq!(lab.dp.maps.dns_stats(CONSUMER_VPC).unwrap().answers[DNS_BADVERS], 1);
}

/// The raw bytes of a query for `name` (A, IN), header fields as given.
fn raw(flags: [u8; 2], counts: [u16; 4], name_wire: &[u8], tail: &[u8]) -> Vec<u8> {
    let mut v = vec![0x42, 0x42, flags[0], flags[1]];
    for c in counts {
        v.extend(c.to_be_bytes());
    }
    v.extend(name_wire);
    v.extend(tail);
    v
}

fn wire(name: &str) -> Vec<u8> {
    let mut v = Vec::new();
    for l in name.split('.') {
        v.push(l.len() as u8);
        v.extend(l.as_bytes());
    }
    v.push(0);
    v
}

#[test]
fn malformed_queries_get_formerr_or_notimp_and_never_an_answer() {
    let lab = lab();
    let a_in = [0, 1, 0, 1];
    let q1 = [1, 0, 0, 0];
    let long_name: Vec<u8> = std::iter::repeat_n([63u8].into_iter().chain([b'a'; 63]), 4).flatten().chain([0]).collect();
    let cases: Vec<(&str, Vec<u8>, ResponseCode)> = vec![
        ("two questions", raw([1, 0], [2, 0, 0, 0], &[wire(OWN), a_in.to_vec(), wire(OWN), a_in.to_vec()].concat(), &[]), ResponseCode::FormErr),
        ("an answer section in a query", raw([1, 0], [1, 1, 0, 0], &wire(OWN), &a_in), ResponseCode::FormErr),
        ("a compression pointer", raw([1, 0], q1, &[3, b'a', b'p', b'i', 0xc0, 12], &a_in), ResponseCode::FormErr),
        ("a label of 64", raw([1, 0], q1, &[&[64u8][..], &[b'a'; 64], &[0]].concat(), &a_in), ResponseCode::FormErr),
        ("a name over 255 bytes", raw([1, 0], q1, &long_name, &a_in), ResponseCode::FormErr),
        ("no type and class", raw([1, 0], q1, &wire(OWN), &[0, 1]), ResponseCode::FormErr),
        ("a name running off the end", raw([1, 0], q1, &[3, b'a', b'p'], &[]), ResponseCode::FormErr),
        ("bytes after the question", raw([1, 0], q1, &wire(OWN), &[0, 1, 0, 1, 0xde, 0xad]), ResponseCode::FormErr),
        ("an additional record that is not OPT", raw([1, 0], [1, 0, 0, 1], &wire(OWN), &[&a_in[..], &[0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0]].concat()), ResponseCode::FormErr),
        ("an OPT whose length runs past the end", raw([1, 0], [1, 0, 0, 1], &wire(OWN), &[&a_in[..], &[0, 0, 41, 16, 0, 0, 0, 0, 0, 0, 9]].concat()), ResponseCode::FormErr),
        ("opcode STATUS", raw([0x10, 0], q1, &wire(OWN), &a_in), ResponseCode::NotImp),
    ];
    for (case, payload, rcode) in &cases {
        let m = ask_on(&lab, lab.consumer_if, payload, case);
        assert_eq!(m.response_code(), *rcode, "{case}");
        assert!(m.answers().is_empty() && m.queries().is_empty() && !m.authoritative(), "{case}: {m:?}");
    }
    let s = lab.dp.maps.dns_stats(CONSUMER_VPC).unwrap();
    assert_eq!((s.answers[DNS_FORMERR], s.answers[DNS_NOTIMP]), (cases.len() as u64 - 1, 1));
    // An OPT with options (a cookie) is fine: options are ignored (RFC 6891 6.1.2).
    let cookie = [&a_in[..], &[0, 0, 41, 16, 0, 0, 0, 0, 0, 0, 12, 0, 10, 0, 8], &[7u8; 8]].concat();
    let m = ask_on(&lab, lab.consumer_if, &raw([1, 0], [1, 0, 0, 1], &wire(OWN), &cookie), "a cookie");
    assert_eq!(a_records(&m).len(), 1);
}

#[test]
fn headers_say_what_was_done_and_tcp_is_refused_at_once() {
    let lab = lab();
    // Recursion is never available (RFC 1035 4.1.1): RA clear although RD was asked.
    let m = ask(&lab, &query(OWN, RecordType::A), "an A query with RD");
    assert!(m.recursion_desired() && !m.recursion_available(), "{m:?}");
    // A NOTIMP names the opcode it does not implement.
    let a_in = [0, 1, 0, 1];
    let m = ask_on(&lab, lab.consumer_if, &raw([0x10, 0], [1, 0, 0, 0], &wire(OWN), &a_in), "opcode STATUS");
    assert_eq!((m.response_code(), m.op_code()), (ResponseCode::NotImp, OpCode::Status));
    // A client falling back to TCP (RFC 7766) gets a reset at once, from the DNS address
    // and the interface's MAC, and never hangs.
    let seg = syn(DNS, 53, 40000);
    let out = lab.from_consumer(&seg.build());
    assert_eq!(action_name(out.action), "XDP_TX", "TCP/53");
    let d = decode(&out.frame).expect("a reset");
    let ip = d.ip.clone().expect("IP");
    assert_eq!((d.src_mac, d.dst_mac, ip.src, ip.dst, ip.sport, ip.dport), (GW_CONSUMER_MAC, CLIENT_MAC, DNS, CLIENT, 53, 40000), "{d}");
    assert!(ip.ip_checksum_ok && ip.l4_checksum_ok, "{d}");
    assert_eq!(ip.tcp_flags & (frame::RST | frame::ACK), frame::RST | frame::ACK, "{d}");
    assert_eq!(lab.dp.maps.vpc_stats(CONSUMER_VPC).unwrap().drop_count(DropReason::DnsDropped), 1, "counted as not answered");
    // A query from an address no host has is not answered (RFC 1812 5.3.7).
    let q = query(OWN, RecordType::A).to_vec().unwrap();
    let forged = Packet::udp((Ipv4Addr::new(127, 0, 0, 1), 33333), (DNS, 53)).macs(CLIENT_MAC, GW_CONSUMER_MAC).payload(&q).build();
    assert_eq!(action_name(lab.from_consumer(&forged).action), "XDP_DROP");
    assert_eq!(lab.dp.maps.vpc_stats(CONSUMER_VPC).unwrap().drop_count(DropReason::BadSource), 1);
}

#[test]
fn what_has_nothing_to_answer_is_dropped_and_counted() {
    let lab = lab();
    let drops = |lab: &PacketLab| lab.dp.maps.vpc_stats(CONSUMER_VPC).unwrap().drop_count(DropReason::DnsDropped);
    let q = query(OWN, RecordType::A).to_vec().unwrap();
    let mut response = q.clone();
    response[2] |= 0x80;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("shorter than a header", udp(&q[..11])),
        ("a response sent to us", udp(&response)),
        ("another port", Packet::udp((CLIENT, 33333), (DNS, 5353)).macs(CLIENT_MAC, GW_CONSUMER_MAC).payload(&q).build()),
        ("IP options", Packet::udp((CLIENT, 33333), (DNS, 53)).macs(CLIENT_MAC, GW_CONSUMER_MAC).options(&[1, 1, 1, 0]).payload(&q).build()),
        ("a ping", Packet::icmp_echo(CLIENT, DNS).macs(CLIENT_MAC, GW_CONSUMER_MAC).build()),
    ];
    for (i, (case, frame)) in cases.iter().enumerate() {
        let out = lab.from_consumer(frame);
        assert_eq!(action_name(out.action), "XDP_DROP", "{case}");
        assert_eq!(drops(&lab), i as u64 + 1, "{case}: counted");
    }
    assert_eq!(lab.dp.maps.dns_stats(CONSUMER_VPC).unwrap(), DnsStats::default(), "nothing answered");
}

#[test]
fn the_gateway_answers_arp_for_the_dns_address() {
    let lab = lab();
    let out = lab.from_consumer(&arp_request(CLIENT_MAC, CLIENT, DNS));
    assert_eq!(action_name(out.action), "XDP_TX");
    let arp = decode(&out.frame).and_then(|d| d.arp).expect("an ARP reply");
    assert_eq!((arp.oper, arp.sha, arp.spa, arp.tpa), (2, GW_CONSUMER_MAC, DNS, CLIENT));
}

#[test]
fn digs_own_queries_are_answered() {
    let lab = lab();
    // What dig 9.18 sends: RD and AD set, EDNS 1232 with an 8-byte client cookie.
    let opt = [&[0u8, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 12, 0, 10, 0, 8][..], &[0x5au8; 8]].concat();
    for (name, rtype) in [(OWN, 28u8), (OWN, 1), (EP_NAME, 28), ("nope.privatelink.internal", 1)] {
        let payload = raw([0x01, 0x20], [1, 0, 0, 1], &wire(name), &[&[0, rtype, 0, 1][..], &opt].concat());
        let m = ask_on(&lab, lab.consumer_if, &payload, name);
        assert!(m.extensions().is_some(), "{name}");
    }
}
