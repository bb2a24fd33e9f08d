//! Answers the gateway builds itself and sends back with XDP_TX: TCP resets (RFC 793
//! "Reset Generation"), the refusal of a new flow, and ARP replies for endpoint
//! addresses (RFC 826); and the budget every generated answer is sent within (ICMP
//! and DNS answers too). Every original field is read before the first write.

use crate::{
    conntrack,
    parse::{ptr_at, Packet, ETH_LEN, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN},
    stats::{self, Drop},
    turn, PL_ICMP_RATE, PL_VPC_RATE,
};
use aya_ebpf::{bindings::xdp_action, helpers::bpf_xdp_adjust_tail, programs::XdpContext};
use network_types::arp::ArpHdr;
use privatelink_common::{csum, reply_budget, tcp::answerable, PROTO_TCP, REPLY_KINDS, REPLY_RESET};

const RST_FRAME_LEN: usize = ETH_LEN + 20 + 20;

/// Whether `slot` (an endpoint, or a VPC's slot for DNS) may send one more generated
/// answer of `kind` (`REPLY_*`) this second (per CPU). Each kind has its own budget.
#[inline(always)]
pub fn allowed(slot: u32, kind: usize) -> bool {
    let at = match crate::stats::vpc_of(slot) {
        Some(vpc) => PL_VPC_RATE.get_ptr_mut(vpc),
        None => PL_ICMP_RATE.get_ptr_mut(slot),
    };
    let r = match at {
        Some(r) => unsafe { &mut *r },
        None => return false,
    };
    let now = conntrack::now();
    if now.wrapping_sub(r.window_start_ns) >= 1_000_000_000 {
        r.window_start_ns = now;
        r.sent = [0; REPLY_KINDS];
    }
    let Some(sent) = r.sent.get_mut(kind) else { return false };
    if *sent >= reply_budget(kind) {
        return false;
    }
    *sent += 1;
    true
}

/// Refuse a new flow: a TCP SYN is answered with a RST so the client fails fast, a UDP
/// datagram is dropped. Counted under `d` either way. No reset goes to a source that
/// names no host (RFC 1812 5.3.7) nor over the endpoint's reset budget for this second.
#[inline(always)]
pub fn refuse(ctx: &XdpContext, p: &Packet, d: Drop) -> Result<u32, Drop> {
    if p.proto != PROTO_TCP || !answerable(p.src_ip) || !allowed(d.endpoint, REPLY_RESET) {
        return Err(d);
    }
    match tcp_reset(ctx, p) {
        Some(action) => {
            stats::count_drop(d);
            stats::count_reset(d.endpoint);
            Ok(action)
        }
        None => Err(d),
    }
}


/// Turn the TCP segment `p` into a RST to its sender, trimmed to 54 bytes.
/// If the segment had ACK: `seq = its ack`, flags RST; else `seq = 0`,
/// `ack = its seq + its length`, flags RST|ACK.
#[inline(always)]
pub fn tcp_reset(ctx: &XdpContext, p: &Packet) -> Option<u32> {
    // Fixed-offset check first: LLVM drops it as implied by the variable-offset one when
    // it comes second, and the verifier (6.18) cannot make that inference
    // ("invalid access to packet, off=0 size=1, R1 ... r=0").
    let frame = ptr_at::<[u8; RST_FRAME_LEN]>(ctx, 0)?;
    let tcp = ptr_at::<[u8; 20]>(ctx, p.l4_off)?;
    let (seq, ack, flags) = unsafe {
        let t = &*tcp;
        (
            u32::from_be_bytes([t[4], t[5], t[6], t[7]]),
            u32::from_be_bytes([t[8], t[9], t[10], t[11]]),
            t[13],
        )
    };
    let payload = p.ip_tot_len.wrapping_sub(p.ihl_bytes).wrapping_sub(p.tcp_hdr_len) as u32;
    let seg_len = payload + (flags & TCP_SYN != 0) as u32 + (flags & TCP_FIN != 0) as u32;
    let (r_seq, r_ack, r_flags) = if flags & TCP_ACK != 0 {
        (ack, 0u32, TCP_RST)
    } else {
        (0u32, seq.wrapping_add(seg_len), TCP_RST | TCP_ACK)
    };
    let src = u32::from_be(p.dst_ip);
    let dst = u32::from_be(p.src_ip);
    let sport = u16::from_be(p.dst_port);
    let dport = u16::from_be(p.src_port);

    let f = unsafe { &mut *frame };
    turn::around(f, src.to_be_bytes(), dst.to_be_bytes(), 40, PROTO_TCP, true);

    // TCP: ports, seq, ack, doff 5, flags, window 0, csum, urg 0.
    let mut s = turn::add_be32(turn::add_be32(0, src), dst) + 6 + 20; // pseudo header
    s += sport as u32 + dport as u32;
    s = turn::add_be32(turn::add_be32(s, r_seq), r_ack);
    s += (5u32 << 12) | r_flags as u32;
    let tc = !csum::fold(s);
    f[34..36].copy_from_slice(&sport.to_be_bytes());
    f[36..38].copy_from_slice(&dport.to_be_bytes());
    f[38..42].copy_from_slice(&r_seq.to_be_bytes());
    f[42..46].copy_from_slice(&r_ack.to_be_bytes());
    f[46] = 5 << 4;
    f[47] = r_flags;
    f[48..50].copy_from_slice(&[0, 0]);
    f[50..52].copy_from_slice(&tc.to_be_bytes());
    f[52..54].copy_from_slice(&[0, 0]);

    let delta = RST_FRAME_LEN as i32 - p.frame_len as i32;
    if delta != 0 && unsafe { bpf_xdp_adjust_tail(ctx.ctx, delta) } != 0 {
        return None;
    }
    Some(xdp_action::XDP_TX)
}

/// The ARP request this frame carries, if it asks for an IPv4 address over Ethernet:
/// its target protocol address (raw).
#[inline(always)]
pub fn arp_request_target(ctx: &XdpContext) -> Option<u32> {
    let arp = ptr_at::<ArpHdr>(ctx, ETH_LEN)?;
    let a = unsafe { &*arp };
    if a.htype != [0, 1] || a.ptype != [0x08, 0x00] || a.hlen != 6 || a.plen != 4 || a.oper != [0, 1] {
        return None;
    }
    Some(u32::from_ne_bytes(a.tpa))
}

/// Answer the ARP request in this frame: `target` is at `mac`.
#[inline(always)]
pub fn arp_reply(ctx: &XdpContext, mac: &[u8; 6]) -> Option<u32> {
    let eth = ptr_at::<[u8; 12]>(ctx, 0)?;
    let arp = ptr_at::<ArpHdr>(ctx, ETH_LEN)?;
    let (e, a) = unsafe { (&mut *eth, &mut *arp) };
    let asker_mac = a.sha;
    let asker_ip = a.spa;
    let target_ip = a.tpa;
    a.oper = [0, 2];
    a.tha = asker_mac;
    a.tpa = asker_ip;
    a.sha = *mac;
    a.spa = target_ip;
    e[0..6].copy_from_slice(&asker_mac);
    e[6..12].copy_from_slice(mac);
    Some(xdp_action::XDP_TX)
}
