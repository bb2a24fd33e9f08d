//! Address and port rewrites with incremental checksum updates (RFC 1624). No map
//! lookups here. All header pointers are checked before the first byte is written, so a
//! packet is rewritten completely or not at all.

use crate::parse::{ptr_at, Packet, ETH_LEN};
use aya_ebpf::programs::XdpContext;
use privatelink_common::{csum, PROTO_TCP};

/// Rewrite `p` to `src:sport -> dst:dport` (raw network-order values).
#[inline(always)]
pub fn rewrite(ctx: &XdpContext, p: &Packet, src: u32, dst: u32, sport: u16, dport: u16) -> bool {
    let ip = match ptr_at::<[u8; 20]>(ctx, ETH_LEN) {
        Some(ip) => ip,
        None => return false,
    };
    let is_tcp = p.proto == PROTO_TCP;
    // TCP checksum at offset 16, UDP at 6; both headers start with the two ports.
    let l4 = match ptr_at::<[u8; 20]>(ctx, p.l4_off) {
        Some(l4) => Some(l4 as *mut u8),
        None if !is_tcp => ptr_at::<[u8; 8]>(ctx, p.l4_off).map(|u| u as *mut u8),
        None => None,
    };
    let l4 = match l4 {
        Some(l4) => l4,
        None => return false,
    };
    let ip = unsafe { &mut *ip };

    let ipc = u16::from_ne_bytes([ip[10], ip[11]]);
    let ipc = csum::replace_u32(csum::replace_u32(ipc, p.src_ip, src), p.dst_ip, dst);
    ip[10..12].copy_from_slice(&ipc.to_ne_bytes());
    ip[12..16].copy_from_slice(&src.to_ne_bytes());
    ip[16..20].copy_from_slice(&dst.to_ne_bytes());

    let coff = if is_tcp { 16 } else { 6 };
    unsafe {
        let old = u16::from_ne_bytes([*l4.add(coff), *l4.add(coff + 1)]);
        let mut c = csum::replace_u32(old, p.src_ip, src);
        c = csum::replace_u32(c, p.dst_ip, dst);
        c = csum::replace_u16(c, p.src_port, sport);
        c = csum::replace_u16(c, p.dst_port, dport);
        if !is_tcp {
            c = csum::udp_fixup(old, c);
        }
        let c = c.to_ne_bytes();
        *l4.add(coff) = c[0];
        *l4.add(coff + 1) = c[1];
        let s = sport.to_ne_bytes();
        let d = dport.to_ne_bytes();
        *l4 = s[0];
        *l4.add(1) = s[1];
        *l4.add(2) = d[0];
        *l4.add(3) = d[1];
    }
    true
}
