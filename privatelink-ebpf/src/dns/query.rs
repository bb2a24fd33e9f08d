//! A DNS question parsed (RFC 1035 4.1): the header's checks, the name's labels
//! walked, the lookup key built from them (labels reversed, lowercased), the name's
//! share of the UDP checksum, the type, class and an OPT record.

use super::{
    wire::{be16, below, is_zero, launder, scratch, Scratch, CELL_BAD, CELL_KEY_LEN, CELL_SUM, CELL_WIRE},
    DNS_OFF, NAME_MAX, OPT_LEN, QNAME_OFF, TYPE_OPT, UDP_OFF,
};
use crate::parse::{ptr_at, Packet};
use aya_ebpf::{helpers::bpf_xdp_load_bytes, programs::XdpContext};
use core::ffi::c_void;
use privatelink_common::*;

/// What the query asked, once parsed: `status` says whether there is a question to
/// answer (`QUERY_OK`), a bare `rcode` to send, or nothing to answer.
pub(super) struct Query {
    pub(super) status: u32,
    pub(super) rcode: usize,
    pub(super) key_len: usize,
    /// Wire length of the question name, root label included.
    pub(super) wire: usize,
    pub(super) qtype: u16,
    pub(super) qclass: u16,
    pub(super) edns: bool,
    /// The question name's share of the UDP checksum.
    pub(super) sum: u32,
}

/// `Query::status`.
pub(super) const QUERY_OK: u32 = 0;
pub(super) const QUERY_BARE: u32 = 1;
pub(super) const QUERY_DROP: u32 = 2;

/// Parse the query; when it is one to answer, its key is in the scratch space.
#[inline(always)]
pub(super) fn query(ctx: &XdpContext, p: &Packet) -> Query {
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
    let (wire, bad, done) = walk_labels(s, len);
    let wire = launder(s, CELL_WIRE, wire);
    let sum = build_key(s, wire);
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

/// Walk the question name's labels in `s.raw` (`len` bytes were loaded): their starts
/// marked in `s.starts`; returns the name's wire length (0: no end found), whether
/// it is malformed, and whether the walk ended.
#[inline(always)]
fn walk_labels(s: &mut Scratch, len: u32) -> (u32, u32, u32) {
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
    (wire, bad, done)
}

/// Build the lookup key of the name walked (`wire` bytes) in `s.key`, and return the
/// name's share of the UDP checksum.
#[inline(always)]
fn build_key(s: &mut Scratch, wire: u32) -> u32 {
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
    sum
}
