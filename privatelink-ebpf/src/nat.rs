//! Address and port rewrites, the TTL decrement of a forwarded packet (RFC 1812
//! 5.3.1) and TCP MSS clamping, with incremental checksum updates (RFC 1624). No map
//! lookups here. All header pointers are checked before the first byte is written, so a
//! packet is rewritten completely or not at all.

use crate::parse::{ptr_at, Packet, ETH_LEN};
use aya_ebpf::programs::XdpContext;
use privatelink_common::{csum, PROTO_TCP};

/// Rewrite `p` to `src:sport -> dst:dport` (raw network-order values), and take one
/// from its TTL when `ttl_dec` (the gateway forwards it itself; the kernel does that
/// for frames it forwards).
#[inline(always)]
pub fn rewrite(ctx: &XdpContext, p: &Packet, src: u32, dst: u32, sport: u16, dport: u16, ttl_dec: bool) -> bool {
    let Some(ip) = ptr_at::<[u8; 20]>(ctx, ETH_LEN) else { return false };
    // TCP's checksum at offset 16, UDP's at 6; both headers start with the two ports.
    // Each protocol takes its own branch with its own checked header: one pointer for
    // both, checked for 8 or 20 bytes, was refused inside a BPF subprogram (6.18: the
    // verifier re-reads the protocol from the stack and loses which check it passed).
    if p.proto == PROTO_TCP {
        let Some(t) = ptr_at::<[u8; 20]>(ctx, p.l4_off) else { return false };
        let t = unsafe { &mut *t };
        rewrite_ip(unsafe { &mut *ip }, p, src, dst, ttl_dec);
        let c = l4_csum(u16::from_ne_bytes([t[16], t[17]]), p, src, dst, sport, dport).to_ne_bytes();
        t[16] = c[0];
        t[17] = c[1];
        set_ports(&mut t[0..4], sport, dport);
    } else {
        let Some(u) = ptr_at::<[u8; 8]>(ctx, p.l4_off) else { return false };
        let u = unsafe { &mut *u };
        rewrite_ip(unsafe { &mut *ip }, p, src, dst, ttl_dec);
        let old = u16::from_ne_bytes([u[6], u[7]]);
        let c = csum::udp_fixup(old, l4_csum(old, p, src, dst, sport, dport)).to_ne_bytes();
        u[6] = c[0];
        u[7] = c[1];
        set_ports(&mut u[0..4], sport, dport);
    }
    true
}

#[inline(always)]
fn rewrite_ip(ip: &mut [u8; 20], p: &Packet, src: u32, dst: u32, ttl_dec: bool) {
    let ipc = u16::from_ne_bytes([ip[10], ip[11]]);
    let mut ipc = csum::replace_u32(csum::replace_u32(ipc, p.src_ip, src), p.dst_ip, dst);
    if ttl_dec {
        let (ttl, proto) = (ip[8], ip[9]);
        let ttl_new = ttl.wrapping_sub(1);
        ipc = csum::replace_u16(ipc, u16::from_ne_bytes([ttl, proto]), u16::from_ne_bytes([ttl_new, proto]));
        ip[8] = ttl_new;
    }
    ip[10..12].copy_from_slice(&ipc.to_ne_bytes());
    ip[12..16].copy_from_slice(&src.to_ne_bytes());
    ip[16..20].copy_from_slice(&dst.to_ne_bytes());
}

/// The L4 checksum `old` after the address and port rewrite (pseudo header included).
#[inline(always)]
fn l4_csum(old: u16, p: &Packet, src: u32, dst: u32, sport: u16, dport: u16) -> u16 {
    let mut c = csum::replace_u32(old, p.src_ip, src);
    c = csum::replace_u32(c, p.dst_ip, dst);
    c = csum::replace_u16(c, p.src_port, sport);
    csum::replace_u16(c, p.dst_port, dport)
}

#[inline(always)]
fn set_ports(ports: &mut [u8], sport: u16, dport: u16) {
    if ports.len() == 4 {
        ports[0..2].copy_from_slice(&sport.to_ne_bytes());
        ports[2..4].copy_from_slice(&dport.to_ne_bytes());
    }
}

/// Lower the MSS option of a SYN (or SYN-ACK) to `mss` when it is above (RFC 879 /
/// RFC 6691: the MSS a side may receive; routers clamp it to what the path carries).
/// A segment without the option, or with options that do not parse, is left alone.
#[inline(always)]
pub fn clamp_mss(ctx: &XdpContext, p: &Packet, mss: u16) {
    if p.tcp_hdr_len <= 20 {
        return;
    }
    // The fixed header first: taken after the options' checks, its own check would be
    // dropped by LLVM as implied, and the verifier (6.18) cannot see that.
    let tcp = match ptr_at::<[u8; 20]>(ctx, p.l4_off) {
        Some(t) => t,
        None => return,
    };
    let opts_len = (p.tcp_hdr_len - 20) as usize;
    let base = p.l4_off + 20;
    let mut i = 0usize;
    // Each option takes at least one byte of at most 40: 40 rounds reach the end.
    for _ in 0..40 {
        if i >= opts_len || i >= 40 {
            return;
        }
        // Kind and length read together: a one-byte read at a variable offset gets a
        // bounds check LLVM turns into `ptr >= end`, which the verifier (6.18) cannot
        // use ("invalid access to packet, off=0 size=1 ... r=0").
        let (kind, len) = match ptr_at::<[u8; 2]>(ctx, base + i) {
            Some(o) => unsafe { ((*o)[0], (*o)[1] as usize) },
            None => return,
        };
        match kind {
            0 => return,
            1 => i += 1,
            2 => {
                if i + 4 > opts_len {
                    return;
                }
                if let Some(o) = ptr_at::<[u8; 4]>(ctx, base + i) {
                    let o = unsafe { &mut *o };
                    if o[1] == 4 && u16::from_be_bytes([o[2], o[3]]) > mss {
                        set_mss(unsafe { &mut *tcp }, o, mss, i & 1 == 1);
                    }
                }
                return;
            }
            _ if len < 2 => return,
            _ => i += len,
        }
    }
}

/// Write the MSS value of option `o` and fix the TCP checksum. `odd`: the option
/// starts at an odd offset in the TCP header, so its value straddles two checksum
/// words and counts byte-swapped (one's-complement sums commute with byte swaps).
#[inline(always)]
fn set_mss(tcp: &mut [u8; 20], o: &mut [u8; 4], mss: u16, odd: bool) {
    let (old, new) = (u16::from_ne_bytes([o[2], o[3]]), mss.to_be());
    let (old_w, new_w) = if odd { (old.swap_bytes(), new.swap_bytes()) } else { (old, new) };
    let c = csum::replace_u16(u16::from_ne_bytes([tcp[16], tcp[17]]), old_w, new_w);
    tcp[16..18].copy_from_slice(&c.to_ne_bytes());
    o[2..4].copy_from_slice(&new.to_ne_bytes());
}
