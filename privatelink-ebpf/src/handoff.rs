//! The hand-off (`privatelink_common::replication::Handoff`): a dead node's client
//! packets that reach a survivor other than its buddy go to the buddy in GRE over
//! the management network; the buddy strips the GRE and runs the frame as if it had
//! arrived on the consumer VPC's interface. `ingress` is the interface every program
//! takes a packet to have arrived on: an unwrapped frame carries that VPC's interface
//! in its XDP metadata (4 bytes before the frame), which travels with it through
//! tail calls and nothing else has.

use crate::{parse::ptr_at, PL_HANDOFF, PL_PEERS, PL_VPC_IFINDEX};
use aya_ebpf::{
    bindings::xdp_action,
    helpers::{bpf_redirect, bpf_xdp_adjust_head, bpf_xdp_adjust_meta},
    programs::XdpContext,
};
use privatelink_common::*;

const ETH_LEN: usize = 14;
const IP_LEN: usize = 20;

/// The VPC interface an unwrapped frame's metadata names (0: none).
#[inline(always)]
fn meta(ctx: &XdpContext) -> u32 {
    let (meta, data) = unsafe { ((*ctx.ctx).data_meta as usize, (*ctx.ctx).data as usize) };
    if meta + 4 > data {
        return 0;
    }
    unsafe { core::ptr::read_unaligned(meta as *const u32) }
}

/// The interface the packet counts as arrived on: a frame a peer handed over, the
/// consumer VPC's interface; any other, its own.
#[inline(always)]
pub fn ingress(ctx: &XdpContext) -> u32 {
    let i = ctx.ingress_ifindex() as u32;
    match PL_HANDOFF.get(0) {
        Some(h) if h.mgmt_ifindex != 0 && h.mgmt_ifindex == i => meta(ctx),
        _ => i,
    }
}

/// Whether the packet was handed over by a peer.
#[inline(always)]
pub fn handed(ctx: &XdpContext) -> bool {
    ingress(ctx) != ctx.ingress_ifindex() as u32
}

/// A frame on the management interface: a peer's hand-off is unwrapped (the ingress
/// becomes its VPC's interface, the inner frame addressed to that interface's MAC);
/// anything else is the kernel's. `false`: not a hand-off (the ingress is none).
#[inline(always)]
pub fn unwrap(ctx: &XdpContext) -> bool {
    let Some(h) = PL_HANDOFF.get(0) else { return false };
    if h.mgmt_ifindex == 0 || h.mgmt_ifindex != ctx.ingress_ifindex() as u32 {
        return false;
    }
    let Some(hdr) = ptr_at::<[u8; ETH_LEN + IP_LEN + 8]>(ctx, 0) else { return false };
    let b = unsafe { &*hdr };
    // IPv4 without options, GRE with a key and nothing else, carrying Ethernet.
    if b[12] != 0x08 || b[13] != 0x00 || b[14] != 0x45 || b[23] != PROTO_GRE {
        return false;
    }
    let g = ETH_LEN + IP_LEN;
    if u16::from_be_bytes([b[g], b[g + 1]]) != GRE_FLAG_KEY || u16::from_be_bytes([b[g + 2], b[g + 3]]) != ETH_P_TEB {
        return false;
    }
    let src = u32::from_ne_bytes([b[26], b[27], b[28], b[29]]);
    if unsafe { PL_PEERS.get(&src) }.is_none() {
        return false;
    }
    let vpc_id = u32::from_be_bytes([b[g + 4], b[g + 5], b[g + 6], b[g + 7]]);
    let Some(&vpc_if) = PL_VPC_IFINDEX.get(vpc_id) else { return false };
    let Some(vpc) = crate::lookup::vpc(vpc_if) else { return false };
    if vpc.vpc_id as u32 != vpc_id {
        return false;
    }
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, HANDOFF_OVERHEAD as i32) } != 0 {
        return false;
    }
    if unsafe { bpf_xdp_adjust_meta(ctx.ctx, -4) } != 0 {
        return false;
    }
    let (meta, data) = unsafe { ((*ctx.ctx).data_meta as usize, (*ctx.ctx).data as usize) };
    if meta + 4 > data {
        return false;
    }
    unsafe { core::ptr::write_unaligned(meta as *mut u32, vpc_if) };
    let Some(eth) = ptr_at::<[u8; 6]>(ctx, 0) else { return false };
    unsafe { *eth = vpc.mac };
    true
}

/// Send the frame (a client's packet for VPC `vpc_id`) to the buddy in GRE, from the
/// management interface. `None`: no hand-off, or the frame cannot go.
#[inline(always)]
pub fn send(ctx: &XdpContext, vpc_id: u16) -> Option<u32> {
    let h = *PL_HANDOFF.get(0)?;
    if h.active == 0 || h.mgmt_ifindex == 0 {
        return None;
    }
    let inner = (ctx.data_end() - ctx.data()) as u32;
    if inner - ETH_LEN as u32 + HANDOFF_OVERHEAD > h.mtu {
        return None;
    }
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -(HANDOFF_OVERHEAD as i32)) } != 0 {
        return None;
    }
    let hdr = ptr_at::<[u8; ETH_LEN + IP_LEN + 8]>(ctx, 0)?;
    let b = unsafe { &mut *hdr };
    b[0..6].copy_from_slice(&h.dmac);
    b[6..12].copy_from_slice(&h.smac);
    b[12] = 0x08;
    b[13] = 0x00;
    let tot = (inner + IP_LEN as u32 + 8) as u16;
    let ip: [u8; 20] = {
        let s = h.saddr_be.to_ne_bytes();
        let d = h.daddr_be.to_ne_bytes();
        let t = tot.to_be_bytes();
        [0x45, 0, t[0], t[1], 0, 0, 0x40, 0, 64, PROTO_GRE, 0, 0, s[0], s[1], s[2], s[3], d[0], d[1], d[2], d[3]]
    };
    let mut sum = 0u32;
    let mut i = 0;
    while i < 20 {
        sum += u16::from_be_bytes([ip[i], ip[i + 1]]) as u32;
        i += 2;
    }
    let check = !csum::fold(sum);
    b[ETH_LEN..ETH_LEN + IP_LEN].copy_from_slice(&ip);
    b[ETH_LEN + 10] = (check >> 8) as u8;
    b[ETH_LEN + 11] = check as u8;
    let g = ETH_LEN + IP_LEN;
    b[g] = (GRE_FLAG_KEY >> 8) as u8;
    b[g + 1] = GRE_FLAG_KEY as u8;
    b[g + 2] = (ETH_P_TEB >> 8) as u8;
    b[g + 3] = ETH_P_TEB as u8;
    b[g + 4..g + 8].copy_from_slice(&(vpc_id as u32).to_be_bytes());
    let r = unsafe { bpf_redirect(h.mgmt_ifindex, 0) } as u32;
    Some(if r == xdp_action::XDP_REDIRECT { r } else { xdp_action::XDP_DROP })
}
