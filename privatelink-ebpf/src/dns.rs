//! Private DNS answered in XDP: a query to a VPC's DNS address is parsed (RFC 1035
//! 4.1), its name looked up in `PL_DNS` with one LPM lookup keyed by VPC and name (so
//! overlapping VPCs get their own answers), and the frame itself becomes the answer,
//! sent back with XDP_TX. Never forwards a query and never recurses.
//! Answers: A records; the zone's SOA and NS at its apex (the name server is the apex
//! itself, as the SOA's MNAME); NODATA and NXDOMAIN with the zone's SOA (RFC 2308); REFUSED
//! outside the VPC's zones; FORMERR, NOTIMP, BADVERS (RFC 6891) for what it cannot
//! serve; a counted drop when there is nothing to answer (no header, a response).

use crate::{
    lookup,
    parse::{self, ptr_at, Packet, Parsed, ETH_LEN, TCP_RST},
    reply,
    stats::{self, Drop},
    PL_DNS, PL_DNS_SCRATCH, PL_DNS_STATS,
};
use aya_ebpf::{bindings::xdp_action, helpers::{bpf_xdp_adjust_head, bpf_xdp_adjust_tail, bpf_xdp_load_bytes, bpf_xdp_store_bytes}, maps::lpm_trie::Key, programs::XdpContext};
use core::ffi::c_void;
use privatelink_common::{tcp::answerable, *};

/// Only queries without IP options are served: the DNS header is at a fixed offset.
const UDP_OFF: usize = ETH_LEN + 20;
const DNS_OFF: usize = UDP_OFF + 8;
const QNAME_OFF: usize = DNS_OFF + 12;
const NAME_MAX: usize = DNS_KEY_MAX + 1;
const PORT_BE: u16 = 53u16.to_be();
const TYPE_A: u16 = 1;
const TYPE_NS: u16 = 2;
const TYPE_SOA: u16 = 6;
const TYPE_OPT: u16 = 41;
const TYPE_ANY: u16 = 255;
const CLASS_IN: u16 = 1;
const A_LEN: usize = 16;
const SOA_LEN: usize = 47;
const NS_LEN: usize = 14;
const OPT_LEN: usize = 11;
/// The UDP payload size announced in our OPT record (the DNS flag day 2020 value).
const EDNS_SIZE: u16 = 1232;
/// SOA timers (RFC 1912 2.2 ranges); the negative TTL is the entry's TTL.
const SOA_REFRESH: u32 = 3600;
const SOA_RETRY: u32 = 600;
const SOA_EXPIRE: u32 = 86400;

/// Per-CPU working space of one query.
#[repr(C)]
pub struct Scratch {
    /// The question name as it came (`bpf_xdp_load_bytes`).
    raw: [u8; 256],
    /// Bit i set: byte i of the wire name is a label's length byte.
    starts: [u64; 4],
    /// Values passed through memory between the loops, so the verifier does not carry
    /// a loop's bounds into what follows.
    cells: [u32; 4],
    key: LpmKey,
    /// The answer, built before it is stored over the frame.
    out: [u8; OUT_LEN],
}
/// Room for the longest answer (54 + 259 + 16 + 47 + 11 bytes); a power of two.
const OUT_LEN: usize = 512;
const CELL_WIRE: usize = 0;
const CELL_SUM: usize = 1;
const CELL_BAD: usize = 2;
const CELL_KEY_LEN: usize = 3;

/// Store `v` and load it back unknown to the verifier.
#[inline(always)]
fn launder(s: &mut Scratch, cell: usize, v: u32) -> u32 {
    match s.cells.get_mut(cell) {
        Some(c) => unsafe {
            core::ptr::write_volatile(c, v);
            core::ptr::read_volatile(c)
        },
        None => 0,
    }
}

/// `Key<DnsName>` (260 bytes: prefix, VPC, 254 key bytes) with 2 spare bytes, so key
/// writes can be masked to 0..=255 instead of bounds-checked: a masked write past the
/// key lands beyond the LPM prefix, where the trie never looks.
#[repr(C)]
struct LpmKey {
    prefix_len: u32,
    vpc_id_be: [u8; 2],
    key: [u8; 256],
}

/// 1 when `x` (below 2^31) is 0, else 0; no branch.
#[inline(always)]
fn is_zero(x: u32) -> u32 {
    x.wrapping_sub(1) >> 31
}

/// 1 when `a < b` (both below 2^31), else 0; no branch.
#[inline(always)]
fn below(a: u32, b: u32) -> u32 {
    a.wrapping_sub(b) >> 31
}

/// What the query asked, once parsed: `status` says whether there is a question to
/// answer (`QUERY_OK`), a bare `rcode` to send, or nothing to answer.
struct Query {
    status: u32,
    rcode: usize,
    key_len: usize,
    /// Wire length of the question name, root label included.
    wire: usize,
    qtype: u16,
    qclass: u16,
    edns: bool,
    /// The question name's share of the UDP checksum.
    sum: u32,
}

/// The answer to write. Every field always set: no `Option`s, whose absent payloads
/// LLVM spills as undefined registers the verifier refuses to read ("R1 !read_ok").
struct Answer {
    rcode: usize,
    /// Authoritative (an answer from one of our zones).
    aa: bool,
    question: bool,
    /// The question name's wire length (echoed with the question) and its share of
    /// the UDP checksum.
    wire: usize,
    name_sum: u32,
    /// An A record of `entry`.
    has_a: bool,
    /// `entry`'s zone SOA, the zone at `zone_off` of the name: in the authority
    /// section, or in the answer (`soa_answer`: a SOA query at the apex).
    has_soa: bool,
    soa_answer: bool,
    /// The zone's NS record (an NS query at the apex).
    has_ns: bool,
    zone_off: usize,
    entry: DnsEntry,
    edns: bool,
}

impl Answer {
    const fn bare(rcode: usize) -> Answer {
        Answer { rcode, aa: false, question: false, wire: 0, name_sum: 0, has_a: false, has_soa: false, soa_answer: false, has_ns: false, zone_off: 0, entry: ZERO_ENTRY, edns: false }
    }
}

const ZERO_ENTRY: DnsEntry = DnsEntry { ip_be: 0, ttl: 0, serial: 0, key_len: 0, zone_key_len: 0, kind: 0, _pad: [0; 3] };
/// `Query::status`.
const QUERY_OK: u32 = 0;
const QUERY_BARE: u32 = 1;
const QUERY_DROP: u32 = 2;

/// The DNS program (tail-called by the data path for a packet to a DNS address, so
/// its loops are verified once, apart from the data path's own paths).
#[inline(always)]
pub fn run(ctx: &XdpContext) -> Result<u32, Drop> {
    let vpc = lookup::vpc(ctx.ingress_ifindex() as u32).ok_or(Drop::global(DropReason::DnsDropped))?;
    match parse::parse(ctx) {
        Parsed::Ipv4(p) => serve(ctx, &vpc, &p),
        _ => Err(Drop::vpc(DropReason::DnsDropped, vpc.vpc_id)),
    }
}

/// Serve a packet sent to VPC `vpc`'s DNS address.
#[inline(always)]
fn serve(ctx: &XdpContext, vpc: &VpcInfo, p: &Packet) -> Result<u32, Drop> {
    let dropped = Drop::vpc(DropReason::DnsDropped, vpc.vpc_id);
    if p.fragment {
        return Err(Drop::vpc(DropReason::Fragment, vpc.vpc_id));
    }
    if !answerable(p.src_ip) {
        return Err(Drop::vpc(DropReason::BadSource, vpc.vpc_id));
    }
    // Every answer fits in 512 bytes, so nothing is ever truncated and TCP is not
    // served: a client that tries it anyway (RFC 7766 lets it) is refused at once with
    // a reset, never left to time out.
    if p.proto == PROTO_TCP && p.has_ports && p.dst_port == PORT_BE {
        if p.tcp_flags & TCP_RST != 0 {
            return Err(dropped);
        }
        // Charged to the VPC, within its reset budget.
        return reply::refuse(ctx, p, dropped);
    }
    if p.proto != PROTO_UDP || !p.has_ports || p.dst_port != PORT_BE || p.ihl_bytes != 20 {
        return Err(dropped);
    }
    if !reply::allowed(stats::vpc_slot(vpc.vpc_id), REPLY_DNS) {
        return Err(Drop::vpc(DropReason::DnsRateLimited, vpc.vpc_id));
    }
    let q = query(ctx, p);
    let answer = match q.status {
        QUERY_OK => decide(&q, vpc.vpc_id),
        QUERY_BARE => {
            // BADVERS needs the OPT record that carries its upper bits (RFC 6891 7).
            let mut a = Answer::bare(q.rcode);
            a.edns = q.rcode == DNS_BADVERS;
            a
        }
        _ => return Err(dropped),
    };
    let action = write(ctx, p, &answer).ok_or(dropped)?;
    count(vpc.vpc_id, answer.rcode);
    Ok(action)
}

#[inline(always)]
fn scratch() -> Option<&'static mut Scratch> {
    // Per-CPU: no other writer while this program runs on this CPU.
    PL_DNS_SCRATCH.get_ptr_mut(0).map(|s| unsafe { &mut *s })
}

#[inline(always)]
fn count(vpc_id: u16, slot: usize) {
    if let Some(s) = PL_DNS_STATS.get_ptr_mut(vpc_id as u32) {
        if let Some(c) = unsafe { &mut *s }.answers.get_mut(slot) {
            *c += 1;
        }
    }
}

#[inline(always)]
fn be16(b: &[u8], i: usize) -> u16 {
    match (b.get(i), b.get(i + 1)) {
        (Some(h), Some(l)) => u16::from_be_bytes([*h, *l]),
        _ => 0,
    }
}

/// Parse the query; when it is one to answer, its key is in the scratch space.
#[inline(always)]
fn query(ctx: &XdpContext, p: &Packet) -> Query {
    let none = |status: u32, rcode: usize| Query { status, rcode, key_len: 0, wire: 0, qtype: 0, qclass: 0, edns: false, sum: 0 };
    let drop = none(QUERY_DROP, 0);
    let bare = |rcode| none(QUERY_BARE, rcode);
    let Some(head) = ptr_at::<[u8; QNAME_OFF]>(ctx, 0) else { return drop };
    let h = unsafe { &*head };
    let udp_len = be16(h, UDP_OFF + 4) as usize;
    if udp_len < 8 + 12 || 20 + udp_len > p.ip_tot_len as usize {
        return drop;
    }
    let dns_end = UDP_OFF + udp_len;
    let flags = h[DNS_OFF + 2];
    if flags & 0x80 != 0 {
        return drop; // a response: never answered (no loops between resolvers)
    }
    if (flags >> 3) & 0x0f != 0 {
        return bare(DNS_NOTIMP);
    }
    let (qd, an, ns, ar) = (be16(h, DNS_OFF + 4), be16(h, DNS_OFF + 6), be16(h, DNS_OFF + 8), be16(h, DNS_OFF + 10));
    if qd != 1 || an != 0 || ns != 0 || ar > 1 {
        return bare(DNS_FORMERR);
    }
    let Some(s) = scratch() else { return drop };
    let avail = (dns_end - QNAME_OFF) as u32;
    let len = launder(s, CELL_SUM, if avail > NAME_MAX as u32 { NAME_MAX as u32 } else { avail });
    if len == 0 || len > NAME_MAX as u32 || unsafe { bpf_xdp_load_bytes(ctx.ctx, QNAME_OFF as u32, s.raw.as_mut_ptr() as *mut c_void, len) } != 0 {
        return bare(DNS_FORMERR);
    }
    // The labels (RFC 1035 3.1), walked with a fixed trip count and no branch that
    // leaves the loop: the verifier walks each iteration once instead of once per way
    // out. Compression pointers have nothing to point at in a question, other label
    // types are unused, and a name ends within 255 bytes: else FORMERR.
    // Word by word: a 32-byte assignment becomes a memset call whose clobbered
    // registers the caller then read (6.18 verifier: "R4 !read_ok").
    for w in s.starts.iter_mut() {
        unsafe { core::ptr::write_volatile(w, 0) };
    }
    let (mut off, mut done, mut bad, mut wire) = (0u32, 0u32, 0u32, 0u32);
    for _ in 0..128 {
        let live = 1 - done;
        let n = s.raw[(off & 0xff) as usize] as u32;
        let past = 1 - below(off, len);
        let end = live & (1 - past) & is_zero(n);
        bad |= live & (past | below(63, n));
        wire |= end * (off + 1);
        let label = live & (1 - end) & (1 - bad);
        s.starts[((off >> 6) & 3) as usize] |= (label as u64) << (off & 63);
        done |= end | bad;
        off = (off + label * (n + 1)) & 0x1ff;
        bad |= label & (1 - below(off, NAME_MAX as u32));
    }
    let wire = launder(s, CELL_WIRE, wire);
    // The key (see `privatelink_common::dns`), all 254 positions every time: a
    // position past the name writes beyond the key's prefix. The name's share of the
    // UDP checksum is summed here too: it starts at an even offset of the UDP header,
    // so byte j is a high byte when j is even.
    launder(s, CELL_KEY_LEN, wire.wrapping_sub(1) & 0xff);
    let mut sum = 0u32;
    for j in 0..DNS_KEY_MAX as u32 {
        // Read afresh each time: LLVM turns `below` into a branch, and a key length
        // kept in a register would come out of it known exactly on one side (254
        // states, each walking the rest of the program).
        let key_len = unsafe { core::ptr::read_volatile(&s.cells[CELL_KEY_LEN]) };
        let b = s.raw[j as usize] as u32;
        let in_name = below(j, key_len);
        sum += in_name * (b << (8 * (1 - (j & 1))));
        let start = ((s.starts[((j >> 6) & 3) as usize] >> (j & 63)) & 1) as u32;
        // Lowercase: 'A'..='Z' gets bit 5.
        let x = b.wrapping_sub(b'A' as u32);
        let v = b | ((1 - ((x | 25u32.wrapping_sub(x)) >> 31)) << 5);
        // A length byte is the separator 0; a 0 inside a label becomes 1 (no name of
        // ours has either, and no separator may appear where none is).
        let v = (v | is_zero(v)) * (1 - start);
        s.key.key[(key_len.wrapping_sub(1).wrapping_sub(j) & 0xff) as usize] = v as u8;
    }
    // Checked only now: no branch between the loops, so one state enters each.
    let bad = launder(s, CELL_BAD, bad | (1 - done));
    let sum = launder(s, CELL_SUM, sum);
    let wire = launder(s, CELL_WIRE, wire) as usize;
    if bad != 0 || wire == 0 || wire > NAME_MAX {
        return bare(DNS_FORMERR);
    }
    let q_end = QNAME_OFF + wire + 4;
    if q_end > dns_end {
        return bare(DNS_FORMERR);
    }
    let Some(qt) = ptr_at::<[u8; 4]>(ctx, QNAME_OFF + wire) else { return drop };
    let qt = unsafe { &*qt };
    let (qtype, qclass) = (be16(qt, 0), be16(qt, 2));
    let mut edns = false;
    if ar == 1 {
        // Only an OPT record (RFC 6891 6.1.1): root owner, type 41, its RDATA to the end.
        let Some(opt) = ptr_at::<[u8; OPT_LEN]>(ctx, q_end) else { return bare(DNS_FORMERR) };
        let o = unsafe { &*opt };
        if o[0] != 0 || be16(o, 1) != TYPE_OPT || q_end + OPT_LEN + be16(o, 9) as usize != dns_end {
            return bare(DNS_FORMERR);
        }
        if o[6] != 0 {
            return bare(DNS_BADVERS);
        }
        edns = true;
    } else if q_end != dns_end {
        return bare(DNS_FORMERR);
    }
    let key_len = launder(s, CELL_WIRE, wire as u32) as usize - 1;
    if key_len >= DNS_KEY_MAX {
        return drop;
    }
    s.key.prefix_len = dns_prefix_bits(key_len);
    Query { status: QUERY_OK, rcode: DNS_NOERROR, key_len, wire: key_len + 1, qtype, qclass, edns, sum }
}

/// The answer to a parsed query whose key is in the scratch space.
#[inline(always)]
fn decide(q: &Query, vpc_id: u16) -> Answer {
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

/// Sum of `bytes` as big-endian 16-bit words, unfolded (fine below 64 KiB of data).
/// Not `csum::sum_be`: its fold loop has no bound the verifier can see (it walked it
/// ~2000 times per state on 6.18 and gave up at 1M instructions).
#[inline(always)]
fn words(bytes: &[u8]) -> u32 {
    let mut sum = 0u32;
    let mut i = 0;
    while i + 1 < bytes.len() {
        sum += u16::from_be_bytes([bytes[i], bytes[i + 1]]) as u32;
        i += 2;
    }
    if i < bytes.len() {
        sum += (bytes[i] as u32) << 8;
    }
    sum
}

/// One's-complement sum of a piece written at UDP offset parity `odd` (RFC 1071: a
/// piece at an odd offset adds its aligned sum byte-swapped).
#[inline(always)]
fn piece_sum(bytes: &[u8], odd: bool) -> u32 {
    let x = csum::fold(words(bytes));
    (if odd { x.swap_bytes() } else { x }) as u32
}

/// Turn the frame into `a`, sent back to the asker.
#[inline(always)]
fn write(ctx: &XdpContext, p: &Packet, a: &Answer) -> Option<u32> {
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
    let e = &a.entry;
    if a.has_a {
        rr_a[0..6].copy_from_slice(&[0xc0, 12, 0, TYPE_A as u8, 0, CLASS_IN as u8]);
        rr_a[6..10].copy_from_slice(&e.ttl.to_be_bytes());
        rr_a[10..12].copy_from_slice(&[0, 4]);
        rr_a[12..16].copy_from_slice(&e.ip_be.to_ne_bytes());
        sum += piece_sum(&rr_a, odd);
        tail += A_LEN;
    }
    // Owner, MNAME, NSDNAME and RNAME's tail point at the zone inside the question
    // name (RFC 1035 4.1.4): hostmaster.<zone>.
    let z = (0xc000 | (12 + (a.zone_off & 0xff))) as u16;
    let (zh, zl) = ((z >> 8) as u8, z as u8);
    if a.has_ns {
        ns[0..6].copy_from_slice(&[zh, zl, 0, TYPE_NS as u8, 0, CLASS_IN as u8]);
        ns[6..10].copy_from_slice(&e.ttl.to_be_bytes());
        ns[10..14].copy_from_slice(&[0, 2, zh, zl]);
        sum += piece_sum(&ns, odd);
        tail += NS_LEN;
    }
    if a.has_soa {
        soa[0..6].copy_from_slice(&[zh, zl, 0, 6, 0, CLASS_IN as u8]);
        soa[6..10].copy_from_slice(&e.ttl.to_be_bytes());
        soa[10..14].copy_from_slice(&[0, 35, zh, zl]);
        soa[14..25].copy_from_slice(b"\x0ahostmaster");
        soa[25..27].copy_from_slice(&[zh, zl]);
        soa[27..31].copy_from_slice(&e.serial.to_be_bytes());
        soa[31..35].copy_from_slice(&SOA_REFRESH.to_be_bytes());
        soa[35..39].copy_from_slice(&SOA_RETRY.to_be_bytes());
        soa[39..43].copy_from_slice(&SOA_EXPIRE.to_be_bytes());
        soa[43..47].copy_from_slice(&e.ttl.to_be_bytes());
        // After the answer, if any: A_LEN and NS_LEN are even, so the parity holds.
        sum += piece_sum(&soa, odd);
        tail += SOA_LEN;
    }
    if a.edns {
        let ext = (a.rcode == DNS_BADVERS) as u8; // BADVERS = 16: its upper bits in OPT
        opt.copy_from_slice(&[0, 0, TYPE_OPT as u8, (EDNS_SIZE >> 8) as u8, EDNS_SIZE as u8, ext, 0, 0, 0, 0, 0]);
        sum += piece_sum(&opt, odd != (tail & 1 != 0));
    }
    let tail_len = tail + if a.edns { OPT_LEN } else { 0 };
    let udp_len = 8 + 12 + q_len + tail_len;
    let frame_len = UDP_OFF + udp_len;
    // The question's type and class, read before the tail moves.
    if a.question {
        let qt = unsafe { &*ptr_at::<[u8; 4]>(ctx, QNAME_OFF + wire)? };
        sum += piece_sum(qt, wire & 1 != 0);
    }
    // The answer is built in the scratch space and stored over the frame in one go:
    // the frame grows at its head (XDP guarantees 256 bytes of headroom; a veth frame
    // may have too little tailroom for a SOA and an OPT record) or shrinks at its tail.
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
    let f = &mut sc.out;
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&f[0..6]);
    f.copy_within(6..12, 0);
    f[6..12].copy_from_slice(&mac);
    let (src, dst) = ([f[30], f[31], f[32], f[33]], [f[26], f[27], f[28], f[29]]);
    let ip_len = (20 + udp_len) as u16;
    let ip = [0x45, 0, (ip_len >> 8) as u8, ip_len as u8, 0, 0, 0x40, 0, 64, PROTO_UDP];
    f[14..24].copy_from_slice(&ip);
    f[24..26].copy_from_slice(&[0, 0]);
    f[26..30].copy_from_slice(&src);
    f[30..34].copy_from_slice(&dst);
    let ipc = !csum::fold(words(&f[14..34]));
    f[24..26].copy_from_slice(&ipc.to_be_bytes());
    let sport = [f[34], f[35]];
    f.copy_within(36..38, 34);
    f[36..38].copy_from_slice(&sport);
    f[38..40].copy_from_slice(&(udp_len as u16).to_be_bytes());
    f[40..42].copy_from_slice(&[0, 0]);
    // Header (RFC 1035 4.1.1): QR, the opcode as asked (a NOTIMP names the one it does
    // not implement), AA, RD as asked, RA clear (nothing is ever recursed: RFC 1035
    // 4.1.1 "recursion available" would promise what we do not do), the RCODE's low 4
    // bits.
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
    sum += words(&src) + words(&dst) + PROTO_UDP as u32 + udp_len as u32;
    sum += words(&f[UDP_OFF..QNAME_OFF]);
    let c = !csum::fold(sum);
    f[40..42].copy_from_slice(&(if c == 0 { 0xffff } else { c }).to_be_bytes());
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
    let delta = frame_len as i32 - p.frame_len as i32;
    let moved = match delta {
        0 => 0,
        d if d > 0 => unsafe { bpf_xdp_adjust_head(ctx.ctx, -d) },
        d => unsafe { bpf_xdp_adjust_tail(ctx.ctx, d) },
    };
    let len = launder(sc, CELL_SUM, frame_len as u32);
    if moved != 0 || len as usize > OUT_LEN || len < QNAME_OFF as u32 {
        return None;
    }
    if unsafe { bpf_xdp_store_bytes(ctx.ctx, 0, sc.out.as_mut_ptr() as *mut c_void, len) } != 0 {
        return None;
    }
    Some(xdp_action::XDP_TX)
}

/// Byte `b` at `off` of the answer being built (offsets wrap inside the buffer, so no
/// write can leave it; volatile, so LLVM makes no memcpy call of the loops).
#[inline(always)]
fn put(s: &mut Scratch, off: usize, b: u8) {
    unsafe { core::ptr::write_volatile(&mut s.out[off & (OUT_LEN - 1)], b) };
}

#[inline(always)]
fn put_all(s: &mut Scratch, off: usize, bytes: &[u8]) {
    for (i, b) in bytes.iter().enumerate() {
        put(s, off + i, *b);
    }
}
