//! The answer to a parsed question: decided from one LPM lookup, then written over
//! the frame (Ethernet, IPv4 and UDP turned around, the DNS header, the question
//! echoed, the records) and sent back.

use super::{
    query::Query,
    wire::{launder, piece_sum, put, put_all, scratch, LpmKey, Scratch, CELL_SUM, CELL_WIRE, OUT_LEN},
    A_LEN, CLASS_IN, DNS_OFF, EDNS_SIZE, NAME_MAX, NS_LEN, OPT_LEN, QNAME_OFF, SOA_EXPIRE, SOA_LEN, SOA_REFRESH, SOA_RETRY, TYPE_A, TYPE_ANY, TYPE_NS, TYPE_OPT, TYPE_SOA, UDP_OFF,
};
use crate::{
    parse::{ptr_at, Packet},
    turn, PL_DNS,
};
use aya_ebpf::{bindings::xdp_action, helpers::{bpf_xdp_adjust_head, bpf_xdp_adjust_tail, bpf_xdp_store_bytes}, maps::lpm_trie::Key, programs::XdpContext};
use core::ffi::c_void;
use privatelink_common::*;

/// The answer to write. Every field always set: no `Option`s, whose absent payloads
/// LLVM spills as undefined registers the verifier refuses to read ("R1 !read_ok").
pub(super) struct Answer {
    pub(super) rcode: usize,
    /// Authoritative (an answer from one of our zones).
    pub(super) aa: bool,
    pub(super) question: bool,
    /// The question name's wire length (echoed with the question) and its share of
    /// the UDP checksum.
    pub(super) wire: usize,
    pub(super) name_sum: u32,
    /// An A record of `entry`.
    pub(super) has_a: bool,
    /// `entry`'s zone SOA, the zone at `zone_off` of the name: in the authority
    /// section, or in the answer (`soa_answer`: a SOA query at the apex).
    pub(super) has_soa: bool,
    pub(super) soa_answer: bool,
    /// The zone's NS record (an NS query at the apex).
    pub(super) has_ns: bool,
    pub(super) zone_off: usize,
    pub(super) entry: DnsEntry,
    pub(super) edns: bool,
}

impl Answer {
    pub(super) const fn bare(rcode: usize) -> Answer {
        Answer { rcode, aa: false, question: false, wire: 0, name_sum: 0, has_a: false, has_soa: false, soa_answer: false, has_ns: false, zone_off: 0, entry: ZERO_ENTRY, edns: false }
    }
}

pub(super) const ZERO_ENTRY: DnsEntry = DnsEntry { ip_be: 0, ttl: 0, serial: 0, key_len: 0, zone_key_len: 0, kind: 0, _pad: [0; 3] };
/// The answer to a parsed query whose key is in the scratch space.
#[inline(always)]
pub(super) fn decide(q: &Query, vpc_id: u16) -> Answer {
    let mut answer = Answer {
        rcode: DNS_REFUSED,
        aa: false,
        question: true,
        wire: q.wire,
        name_sum: q.sum,
        has_a: false,
        has_soa: false,
        soa_answer: false,
        has_ns: false,
        zone_off: 0,
        entry: ZERO_ENTRY,
        edns: q.edns,
    };
    if q.qclass != CLASS_IN && q.qclass != TYPE_ANY {
        return answer;
    }
    let Some(s) = scratch() else { return answer };
    s.key.vpc_id_be = vpc_id.to_be_bytes();
    let key = unsafe { &*(&s.key as *const LpmKey as *const Key<DnsName>) };
    let Some(e) = PL_DNS.get(key) else { return answer };
    answer.entry = *e;
    answer.aa = true;
    answer.zone_off = q.key_len.wrapping_sub(e.zone_key_len as usize);
    if e.key_len as usize != q.key_len {
        answer.rcode = DNS_NXDOMAIN;
        answer.has_soa = true;
    } else if e.kind == DNS_KIND_A && (q.qtype == TYPE_A || q.qtype == TYPE_ANY) {
        answer.rcode = DNS_NOERROR;
        answer.has_a = true;
    } else if e.key_len == e.zone_key_len && q.qtype == TYPE_SOA {
        answer.rcode = DNS_NOERROR;
        answer.has_soa = true;
        answer.soa_answer = true;
    } else if e.key_len == e.zone_key_len && q.qtype == TYPE_NS {
        answer.rcode = DNS_NOERROR;
        answer.has_ns = true;
    } else {
        answer.rcode = DNS_NOERROR;
        answer.has_soa = true;
    }
    answer
}

/// Turn the frame into `a`, sent back to the asker.
#[inline(always)]
pub(super) fn write(ctx: &XdpContext, p: &Packet, a: &Answer) -> Option<u32> {
    // Read back from memory and checked here, where it is used as a packet offset:
    // the verifier loses the bound of a value LLVM spilled and refilled at another
    // width ("invalid access to packet ... var_off=(0x0; 0xffffffff)").
    let wire = launder(scratch()?, CELL_WIRE, a.wire as u32) as usize;
    if wire > NAME_MAX {
        return None;
    }
    let q_len = if a.question { wire + 4 } else { 0 };
    let odd = q_len & 1 != 0;
    let mut rr_a = [0u8; A_LEN];
    let mut soa = [0u8; SOA_LEN];
    let mut ns = [0u8; NS_LEN];
    let mut opt = [0u8; OPT_LEN];
    let mut sum = if a.question { a.name_sum } else { 0 };
    let mut tail = 0;
    // Owner, MNAME, NSDNAME and RNAME's tail point at the zone inside the question
    // name (RFC 1035 4.1.4): hostmaster.<zone>.
    let z = (0xc000 | (12 + (a.zone_off & 0xff))) as u16;
    if a.has_a {
        sum += a_record(&mut rr_a, &a.entry, odd);
        tail += A_LEN;
    }
    if a.has_ns {
        sum += ns_record(&mut ns, &a.entry, z, odd);
        tail += NS_LEN;
    }
    if a.has_soa {
        // After the answer, if any: A_LEN and NS_LEN are even, so the parity holds.
        sum += soa_record(&mut soa, &a.entry, z, odd);
        tail += SOA_LEN;
    }
    if a.edns {
        let ext = (a.rcode == DNS_BADVERS) as u8; // BADVERS = 16: its upper bits in OPT
        opt.copy_from_slice(&[0, 0, TYPE_OPT as u8, (EDNS_SIZE >> 8) as u8, EDNS_SIZE as u8, ext, 0, 0, 0, 0, 0]);
        sum += piece_sum(&opt, odd != (tail & 1 != 0));
    }
    let tail_len = tail + if a.edns { OPT_LEN } else { 0 };
    let udp_len = 8 + 12 + q_len + tail_len;
    // The question's type and class, read before the tail moves.
    if a.question {
        let qt = unsafe { &*ptr_at::<[u8; 4]>(ctx, QNAME_OFF + wire)? };
        sum += piece_sum(qt, wire & 1 != 0);
    }
    // The answer is built in the scratch space and stored over the frame in one go.
    let sc = scratch()?;
    let head = unsafe { &*ptr_at::<[u8; QNAME_OFF]>(ctx, 0)? };
    for (i, b) in head.iter().enumerate() {
        put(sc, i, *b);
    }
    for j in 0..NAME_MAX {
        put(sc, QNAME_OFF + j, sc.raw[j]);
    }
    if a.question {
        let qt = unsafe { &*ptr_at::<[u8; 4]>(ctx, QNAME_OFF + wire)? };
        put_all(sc, QNAME_OFF + wire, qt);
    }
    header(&mut sc.out, a, udp_len, sum);
    let mut at = QNAME_OFF + q_len;
    if a.has_a {
        put_all(sc, at, &rr_a);
        at += A_LEN;
    }
    if a.has_ns {
        put_all(sc, at, &ns);
        at += NS_LEN;
    }
    if a.has_soa {
        put_all(sc, at, &soa);
        at += SOA_LEN;
    }
    if a.edns {
        put_all(sc, at, &opt);
    }
    store(ctx, sc, UDP_OFF + udp_len, p.frame_len as usize)
}

/// The A record of `e` (its name: a pointer to the question's); its checksum share.
#[inline(always)]
fn a_record(rr: &mut [u8; A_LEN], e: &DnsEntry, odd: bool) -> u32 {
    rr[0..6].copy_from_slice(&[0xc0, 12, 0, TYPE_A as u8, 0, CLASS_IN as u8]);
    rr[6..10].copy_from_slice(&e.ttl.to_be_bytes());
    rr[10..12].copy_from_slice(&[0, 4]);
    rr[12..16].copy_from_slice(&e.ip_be.to_ne_bytes());
    piece_sum(rr, odd)
}

/// The zone's NS record: the apex (`zone`, a name pointer) serves itself.
#[inline(always)]
fn ns_record(ns: &mut [u8; NS_LEN], e: &DnsEntry, zone: u16, odd: bool) -> u32 {
    let (zh, zl) = ((zone >> 8) as u8, zone as u8);
    ns[0..6].copy_from_slice(&[zh, zl, 0, TYPE_NS as u8, 0, CLASS_IN as u8]);
    ns[6..10].copy_from_slice(&e.ttl.to_be_bytes());
    ns[10..14].copy_from_slice(&[0, 2, zh, zl]);
    piece_sum(ns, odd)
}

/// The zone's SOA record (RFC 1912 2.2 timers; the negative TTL is the entry's).
#[inline(always)]
fn soa_record(soa: &mut [u8; SOA_LEN], e: &DnsEntry, zone: u16, odd: bool) -> u32 {
    let (zh, zl) = ((zone >> 8) as u8, zone as u8);
    soa[0..6].copy_from_slice(&[zh, zl, 0, TYPE_SOA as u8, 0, CLASS_IN as u8]);
    soa[6..10].copy_from_slice(&e.ttl.to_be_bytes());
    soa[10..14].copy_from_slice(&[0, 35, zh, zl]);
    soa[14..25].copy_from_slice(b"\x0ahostmaster");
    soa[25..27].copy_from_slice(&[zh, zl]);
    soa[27..31].copy_from_slice(&e.serial.to_be_bytes());
    soa[31..35].copy_from_slice(&SOA_REFRESH.to_be_bytes());
    soa[35..39].copy_from_slice(&SOA_RETRY.to_be_bytes());
    soa[39..43].copy_from_slice(&SOA_EXPIRE.to_be_bytes());
    soa[43..47].copy_from_slice(&e.ttl.to_be_bytes());
    piece_sum(soa, odd)
}

/// The answer's headers in `f` (a copy of the query's): Ethernet and IPv4 turned
/// around, UDP ports swapped with the new length and the checksum (`sum`: the
/// question's and the records' shares), and the DNS header (RFC 1035 4.1.1): QR, the
/// opcode as asked (a NOTIMP names the one it does not implement), AA, RD as asked,
/// RA clear (nothing is ever recursed: "recursion available" would promise what we do
/// not do), the RCODE's low 4 bits, the sections' counts.
#[inline(always)]
fn header(f: &mut [u8; OUT_LEN], a: &Answer, udp_len: usize, sum: u32) {
    let (src, dst) = ([f[30], f[31], f[32], f[33]], [f[26], f[27], f[28], f[29]]);
    turn::around(f, src, dst, (20 + udp_len) as u16, PROTO_UDP, true);
    let sport = [f[34], f[35]];
    f.copy_within(36..38, 34);
    f[36..38].copy_from_slice(&sport);
    f[38..40].copy_from_slice(&(udp_len as u16).to_be_bytes());
    f[40..42].copy_from_slice(&[0, 0]);
    let asked = f[DNS_OFF + 2];
    let rd = asked & 0x01;
    f[DNS_OFF + 2] = 0x80 | (asked & 0x78) | ((a.aa as u8) << 2) | rd;
    // BADVERS (16) has its low bits 0 in the header and the rest in the OPT record.
    let low = if a.rcode == DNS_BADVERS { 0 } else { a.rcode as u8 & 0x0f };
    f[DNS_OFF + 3] = low;
    let in_answer = a.has_a as u8 + a.has_ns as u8 + a.soa_answer as u8;
    let counts = [a.question as u8, in_answer, (a.has_soa && !a.soa_answer) as u8, a.edns as u8];
    for (i, c) in counts.iter().enumerate() {
        f[DNS_OFF + 4 + 2 * i] = 0;
        f[DNS_OFF + 5 + 2 * i] = *c;
    }
    // Pseudo header (RFC 768): addresses, protocol, UDP length.
    let mut sum = sum + turn::words(&src) + turn::words(&dst) + PROTO_UDP as u32 + udp_len as u32;
    sum += turn::words(&f[UDP_OFF..QNAME_OFF]);
    let c = !csum::fold(sum);
    f[40..42].copy_from_slice(&(if c == 0 { 0xffff } else { c }).to_be_bytes());
}

/// Store the answer built in `sc` (`len` bytes) over the frame (`was` bytes): the frame
/// grows at its head (XDP guarantees 256 bytes of headroom; a veth frame may have too
/// little tailroom for a SOA and an OPT record) or shrinks at its tail.
#[inline(always)]
fn store(ctx: &XdpContext, sc: &mut Scratch, len: usize, was: usize) -> Option<u32> {
    let delta = len as i32 - was as i32;
    let moved = match delta {
        0 => 0,
        d if d > 0 => unsafe { bpf_xdp_adjust_head(ctx.ctx, -d) },
        d => unsafe { bpf_xdp_adjust_tail(ctx.ctx, d) },
    };
    let len = launder(sc, CELL_SUM, len as u32);
    if moved != 0 || len as usize > OUT_LEN || len < QNAME_OFF as u32 {
        return None;
    }
    if unsafe { bpf_xdp_store_bytes(ctx.ctx, 0, sc.out.as_mut_ptr() as *mut c_void, len) } != 0 {
        return None;
    }
    Some(xdp_action::XDP_TX)
}
