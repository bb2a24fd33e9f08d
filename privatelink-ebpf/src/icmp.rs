//! ICMP the gateway generates (RFC 792, RFC 1812 4.3.2: echo replies for endpoint
//! addresses, time-exceeded and fragmentation-needed to a sender, quoting its packet's
//! IP header and first 8 bytes) and ICMP errors it translates through the NAT
//! (RFC 5508 section 7: the quoted header is rewritten back to what its sender sent,
//! with the quoted IP and L4 checksums and the ICMP checksum kept right).
//! Only outer and quoted IP headers without options are handled; the rest is dropped
//! and counted by the caller. Every original field is read before the first write.

use crate::{
    parse::{ptr_at, Packet, ETH_LEN},
    sum, turn,
};
use aya_ebpf::{
    bindings::xdp_action,
    helpers::{bpf_xdp_adjust_head, bpf_xdp_adjust_tail},
    programs::XdpContext,
};
use privatelink_common::{csum, PROTO_TCP, PROTO_UDP};

pub const ECHO_REPLY: u8 = 0;
pub const DEST_UNREACH: u8 = 3;
pub const ECHO_REQUEST: u8 = 8;
pub const TIME_EXCEEDED: u8 = 11;
pub const PARAM_PROBLEM: u8 = 12;
/// Code of DEST_UNREACH: fragmentation needed and DF set (RFC 1191).
pub const FRAG_NEEDED: u8 = 4;

/// IP header (20) + ICMP header (8) in front of the quoted packet.
const PREPEND: i32 = 28;
/// The generated error: Ethernet, IP, ICMP, quoted IP header, 8 quoted bytes.
const ERROR_FRAME_LEN: usize = ETH_LEN + 20 + 8 + 20 + 8;
const NEW_TTL: u8 = turn::TTL;

/// Turn packet `p` into an ICMP error of `typ`/`code` to its sender, from `src_be`
/// (the gateway's address on the sender's side), with `mtu` in the header's second
/// word (fragmentation-needed; 0 otherwise). `None`: the packet cannot be quoted (IP
/// options, shorter than a header and 8 bytes) and is left untouched.
#[inline(always)]
pub fn send_error(ctx: &XdpContext, p: &Packet, typ: u8, code: u8, mtu: u16, src_be: u32) -> Option<u32> {
    if p.ihl_bytes != 20 || p.ip_tot_len < 28 {
        return None;
    }
    let dst = u32::from_be(p.src_ip);
    let src = u32::from_be(src_be);
    let old_len = p.frame_len as i32;
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -PREPEND) } != 0 {
        return None;
    }
    // Now: [28 new bytes][original Ethernet][original IP][original L4...]
    let f = match ptr_at::<[u8; ERROR_FRAME_LEN]>(ctx, 0) {
        Some(f) => unsafe { &mut *f },
        None => {
            // Give the head back: the frame is then dropped by the caller as it was.
            unsafe { bpf_xdp_adjust_head(ctx.ctx, PREPEND) };
            return None;
        }
    };
    // Turned around by hand, not with `turn::around`/`turn::ipv4`: with either, the
    // backend control program (which inlines this for time-exceeded) went from 33% to
    // 77% of its verifier budget on 6.18, though the bytes written are the same.
    let (p0, e) = (PREPEND as usize, ETH_LEN);
    let mut macs = [0u8; 12];
    macs.copy_from_slice(&f[p0..p0 + 12]);
    // Back to the sender: its MAC becomes the destination.
    f[0..6].copy_from_slice(&macs[6..12]);
    f[6..12].copy_from_slice(&macs[0..6]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    // IPv4, no options, not DF (RFC 1812 4.3.2.4 leaves it open), TTL 64, ICMP.
    let tot = (20 + 8 + 28) as u32;
    let sum = turn::add_be32(turn::add_be32(0x4500 + tot + ((NEW_TTL as u32) << 8 | 1), src), dst);
    f[e..e + 10].copy_from_slice(&[0x45, 0, 0, tot as u8, 0, 0, 0, 0, NEW_TTL, 1]);
    f[e + 10..e + 12].copy_from_slice(&(!csum::fold(sum)).to_be_bytes());
    f[e + 12..e + 16].copy_from_slice(&src.to_be_bytes());
    f[e + 16..e + 20].copy_from_slice(&dst.to_be_bytes());
    let m = mtu.to_be_bytes();
    f[34..42].copy_from_slice(&[typ, code, 0, 0, 0, 0, m[0], m[1]]);
    // The quote (original IP header and 8 bytes) is already at 42..70.
    let c = !csum::fold(turn::words(&f[34..ERROR_FRAME_LEN]));
    f[36..38].copy_from_slice(&c.to_be_bytes());
    let delta = ERROR_FRAME_LEN as i32 - (old_len + PREPEND);
    if delta != 0 && unsafe { bpf_xdp_adjust_tail(ctx.ctx, delta) } != 0 {
        return None;
    }
    Some(xdp_action::XDP_TX)
}

/// Largest ICMP message whose checksum `message_checksum_ok` verifies (24 chunks: an
/// echo request filling a 1500-byte MTU fits).
const CHECKED_MAX: u32 = 24 * sum::CHUNK;

/// Whether ICMP message `p`'s checksum is right (RFC 792), verified before it is
/// answered, as a host does: a corrupt echo request gets no (corrupt) reply.
#[inline(always)]
pub fn message_checksum_ok(ctx: &XdpContext, p: &Packet) -> bool {
    let len = p.ip_tot_len.wrapping_sub(p.ihl_bytes) as u32;
    if len < 8 || len > CHECKED_MAX {
        return false;
    }
    let mut total = 0u32;
    let mut off = 0u32;
    for _ in 0..CHECKED_MAX / sum::CHUNK {
        if off >= len {
            break;
        }
        let rem = len - off;
        match sum::bytes(ctx, p.l4_off as u32 + off, if rem >= sum::CHUNK { sum::CHUNK } else { rem }) {
            Some(s) => total += s,
            None => return false,
        }
        off += sum::CHUNK;
    }
    csum::fold(total) == 0xffff
}

/// Answer the echo request `p` (to an endpoint address) in place: addresses and MACs
/// swapped, type 0, TTL 64.
#[inline(always)]
pub fn echo_reply(ctx: &XdpContext, p: &Packet) -> Option<u32> {
    if p.ihl_bytes != 20 {
        return None;
    }
    let f = ptr_at::<[u8; ETH_LEN + 20 + 8]>(ctx, 0)?;
    let f = unsafe { &mut *f };
    if f[34] != ECHO_REQUEST || f[35] != 0 {
        return None;
    }
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&f[0..6]);
    f.copy_within(6..12, 0);
    f[6..12].copy_from_slice(&mac);
    // Swapping the addresses leaves the IP checksum as it is; the TTL does not.
    let (ttl, proto) = (f[22], f[23]);
    let ipc = csum::replace_u16(u16::from_ne_bytes([f[24], f[25]]), u16::from_ne_bytes([ttl, proto]), u16::from_ne_bytes([NEW_TTL, proto]));
    f[22] = NEW_TTL;
    f[24..26].copy_from_slice(&ipc.to_ne_bytes());
    let mut a = [0u8; 4];
    a.copy_from_slice(&f[26..30]);
    f.copy_within(30..34, 26);
    f[30..34].copy_from_slice(&a);
    let c = csum::replace_u16(u16::from_ne_bytes([f[36], f[37]]), u16::from_ne_bytes([ECHO_REQUEST, 0]), u16::from_ne_bytes([ECHO_REPLY, 0]));
    f[34] = ECHO_REPLY;
    f[36..38].copy_from_slice(&c.to_ne_bytes());
    Some(xdp_action::XDP_TX)
}

/// The packet an ICMP error quotes: its addresses and ports as its sender wrote them.
pub struct Quote {
    pub proto: u8,
    pub src_ip: u32,
    pub dst_ip: u32,
    pub src_port: u16,
    pub dst_port: u16,
}

/// Offsets in an error frame with no IP options on the outside or in the quote.
const ICMP_OFF: usize = ETH_LEN + 20;
const Q_IP: usize = ICMP_OFF + 8;
const Q_L4: usize = Q_IP + 20;
/// Enough to hold the quoted ports and the UDP checksum.
const QUOTE_MIN: usize = Q_L4 + 8;
/// Enough to hold the quoted TCP checksum too.
const QUOTE_TCP: usize = Q_L4 + 18;

/// Whether ICMP `p` is an error this gateway translates, and what it quotes. `Err`:
/// an error whose quote cannot be translated safely (options, too short, not TCP/UDP).
#[inline(always)]
pub fn quote(ctx: &XdpContext, p: &Packet) -> Result<Option<Quote>, ()> {
    let f = match ptr_at::<[u8; ICMP_OFF + 8]>(ctx, 0) {
        Some(f) => unsafe { &*f },
        None => return Err(()),
    };
    let typ = f[ICMP_OFF];
    if typ != DEST_UNREACH && typ != TIME_EXCEEDED && typ != PARAM_PROBLEM {
        return Ok(None);
    }
    if p.ihl_bytes != 20 {
        return Err(());
    }
    let q = match ptr_at::<[u8; QUOTE_MIN]>(ctx, 0) {
        Some(q) => unsafe { &*q },
        None => return Err(()),
    };
    let proto = q[Q_IP + 9];
    if q[Q_IP] != 0x45 || (proto != PROTO_TCP && proto != PROTO_UDP) {
        return Err(());
    }
    let w = |o: usize| u32::from_ne_bytes([q[o], q[o + 1], q[o + 2], q[o + 3]]);
    let h = |o: usize| u16::from_ne_bytes([q[o], q[o + 1]]);
    Ok(Some(Quote { proto, src_ip: w(Q_IP + 12), dst_ip: w(Q_IP + 16), src_port: h(Q_L4), dst_port: h(Q_L4 + 2) }))
}

/// Rewrite an ICMP error in place: outer `src -> dst` (TTL less one when `ttl_dec`),
/// the quoted packet to `q_src:q_sport -> q_dst:q_dport`, every checksum kept right.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub fn translate(ctx: &XdpContext, p: &Packet, q: &Quote, src: u32, dst: u32, q_src: u32, q_dst: u32, q_sport: u16, q_dport: u16, ttl_dec: bool) -> bool {
    let has_tcp_csum = q.proto == PROTO_TCP && ETH_LEN + p.ip_tot_len as usize >= QUOTE_TCP;
    let tcp_csum = if has_tcp_csum { ptr_at::<[u8; 2]>(ctx, Q_L4 + 16) } else { None };
    let f = match ptr_at::<[u8; QUOTE_MIN]>(ctx, 0) {
        Some(f) => unsafe { &mut *f },
        None => return false,
    };
    let rd = |b: &[u8]| u16::from_ne_bytes([b[0], b[1]]);
    let mut icmp_c = rd(&f[ICMP_OFF + 2..]);
    // The quoted L4 checksum covers the quoted addresses (pseudo header) and ports.
    let l4 = |old: u16| {
        let mut n = csum::replace_u32(old, q.src_ip, q_src);
        n = csum::replace_u32(n, q.dst_ip, q_dst);
        n = csum::replace_u16(n, q.src_port, q_sport);
        csum::replace_u16(n, q.dst_port, q_dport)
    };
    if q.proto == PROTO_UDP {
        // At 6, inside the 8 quoted bytes; 0 means none and stays 0.
        let old = rd(&f[Q_L4 + 6..]);
        let n = csum::udp_fixup(old, l4(old));
        icmp_c = csum::replace_u16(icmp_c, old, n);
        f[Q_L4 + 6..Q_L4 + 8].copy_from_slice(&n.to_ne_bytes());
    } else if let Some(c) = tcp_csum {
        // At 16: only when the quote holds it (RFC 792 quotes 8 bytes; Linux more).
        let c = unsafe { &mut *c };
        let old = u16::from_ne_bytes(*c);
        let n = l4(old);
        icmp_c = csum::replace_u16(icmp_c, old, n);
        *c = n.to_ne_bytes();
    }
    let old_qc = rd(&f[Q_IP + 10..]);
    let qc = csum::replace_u32(csum::replace_u32(old_qc, q.src_ip, q_src), q.dst_ip, q_dst);
    icmp_c = csum::replace_u16(icmp_c, old_qc, qc);
    icmp_c = csum::replace_u32(icmp_c, q.src_ip, q_src);
    icmp_c = csum::replace_u32(icmp_c, q.dst_ip, q_dst);
    icmp_c = csum::replace_u16(icmp_c, q.src_port, q_sport);
    icmp_c = csum::replace_u16(icmp_c, q.dst_port, q_dport);
    f[Q_IP + 10..Q_IP + 12].copy_from_slice(&qc.to_ne_bytes());
    f[Q_IP + 12..Q_IP + 16].copy_from_slice(&q_src.to_ne_bytes());
    f[Q_IP + 16..Q_IP + 20].copy_from_slice(&q_dst.to_ne_bytes());
    f[Q_L4..Q_L4 + 2].copy_from_slice(&q_sport.to_ne_bytes());
    f[Q_L4 + 2..Q_L4 + 4].copy_from_slice(&q_dport.to_ne_bytes());
    f[ICMP_OFF + 2..ICMP_OFF + 4].copy_from_slice(&icmp_c.to_ne_bytes());

    let e = ETH_LEN;
    let (ttl, proto) = (f[e + 8], f[e + 9]);
    let new_ttl = if ttl_dec { ttl.wrapping_sub(1) } else { ttl };
    let mut ipc = csum::replace_u32(csum::replace_u32(rd(&f[e + 10..]), p.src_ip, src), p.dst_ip, dst);
    ipc = csum::replace_u16(ipc, u16::from_ne_bytes([ttl, proto]), u16::from_ne_bytes([new_ttl, proto]));
    f[e + 8] = new_ttl;
    f[e + 10..e + 12].copy_from_slice(&ipc.to_ne_bytes());
    f[e + 12..e + 16].copy_from_slice(&src.to_ne_bytes());
    f[e + 16..e + 20].copy_from_slice(&dst.to_ne_bytes());
    true
}
