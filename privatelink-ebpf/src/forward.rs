//! Sending a rewritten frame on: `bpf_fib_lookup` towards backends (per provider VPC
//! routing table), learned interface and MACs back to consumers (and, once known, to
//! backends), then redirect (which hop a flow may take towards its backend is
//! `backend_hop`'s).
//! XDP has no neighbour resolution: an unresolved neighbour (`HOP_NO_NEIGHBOUR`) is
//! a drop for the caller, never a rewritten frame handed to the kernel's routing.

use crate::parse::ptr_at;
use aya_ebpf::{
    bindings::{
        bpf_fib_lookup, BPF_FIB_LKUP_RET_FRAG_NEEDED, BPF_FIB_LKUP_RET_NO_NEIGH,
        BPF_FIB_LKUP_RET_SUCCESS, BPF_FIB_LOOKUP_DIRECT, BPF_FIB_LOOKUP_TBID,
    },
    helpers::{bpf_fib_lookup as fib_lookup, bpf_redirect},
    programs::XdpContext,
};
use core::mem::{size_of, zeroed};

const AF_INET: u8 = 2;

pub enum Route {
    /// Frame sent on with XDP_REDIRECT / XDP_PASS.
    Action(u32),
    NoRoute,
}

pub const HOP_REDIRECT: u8 = 1;
/// No neighbour entry yet (the daemon keeps backends' next hops resolved).
pub const HOP_NO_NEIGHBOUR: u8 = 2;
/// The packet is larger than the route's MTU (`mtu`).
pub const HOP_TOO_BIG: u8 = 3;
pub const HOP_NO_ROUTE: u8 = 4;

/// Where a frame goes next (`HOP_*`): out of `ifindex` with these MACs, whose MTU is
/// `mtu` (0 = not checked). A plain struct whose every field is always written: an
/// enum with payloads, moved through several paths, left bytes undefined that the
/// verifier refused (6.18, LLVM 22: "R1 !read_ok" after a helper call).
#[derive(Clone, Copy)]
pub struct Hop {
    pub kind: u8,
    pub mtu: u16,
    pub ifindex: u32,
    pub smac: [u8; 6],
    pub dmac: [u8; 6],
}

impl Hop {
    #[inline(always)]
    pub const fn of(kind: u8, mtu: u16) -> Hop {
        Hop { kind, mtu, ifindex: 0, smac: [0; 6], dmac: [0; 6] }
    }

    /// The hop a flow entry has learned (reverse entries, and forward entries once
    /// their route is cached).
    #[inline(always)]
    pub fn cached(v: &privatelink_common::CtValue) -> Hop {
        Hop { kind: HOP_REDIRECT, mtu: v.mtu, ifindex: v.ifindex, smac: v.smac, dmac: v.dmac }
    }
}

/// Look `dst` up in the FIB: `table` 0 is the main table, anything else a provider
/// VPC's own table (BPF_FIB_LOOKUP_TBID, kernel >= 6.8). A `HOP_REDIRECT` answer
/// carries no MTU: the caller knows its interfaces'.
#[inline(always)]
pub fn fib(ctx: &XdpContext, ifindex: u32, table: u32, src: u32, dst: u32, proto: u8, tot_len: u16) -> Hop {
    let mut p: bpf_fib_lookup = unsafe { zeroed() };
    p.family = AF_INET;
    p.l4_protocol = proto;
    p.__bindgen_anon_1.tot_len = tot_len;
    p.ifindex = ifindex;
    p.__bindgen_anon_3.ipv4_src = src;
    p.__bindgen_anon_4.ipv4_dst = dst;
    let mut flags = 0u32;
    if table != 0 {
        p.__bindgen_anon_5.tbid = table;
        flags = BPF_FIB_LOOKUP_DIRECT | BPF_FIB_LOOKUP_TBID;
    }
    let rc = unsafe {
        fib_lookup(ctx.ctx as *mut _, &mut p, size_of::<bpf_fib_lookup>() as i32, flags)
    } as u32;
    if rc == BPF_FIB_LKUP_RET_SUCCESS {
        return Hop { kind: HOP_REDIRECT, mtu: 0, ifindex: p.ifindex, smac: p.smac, dmac: p.dmac };
    }
    if rc == BPF_FIB_LKUP_RET_NO_NEIGH {
        return Hop::of(HOP_NO_NEIGHBOUR, 0);
    }
    if rc == BPF_FIB_LKUP_RET_FRAG_NEEDED {
        return Hop::of(HOP_TOO_BIG, unsafe { p.__bindgen_anon_1.mtu_result });
    }
    Hop::of(HOP_NO_ROUTE, 0)
}

/// Send the frame out of `ifindex` with the given MACs (reverse path: learned from
/// the flow's first packet).
#[inline(always)]
pub fn set_macs_and_redirect(ctx: &XdpContext, ifindex: u32, smac: &[u8; 6], dmac: &[u8; 6]) -> Route {
    let eth = match ptr_at::<[u8; 12]>(ctx, 0) {
        Some(e) => unsafe { &mut *e },
        None => return Route::NoRoute,
    };
    eth[0..6].copy_from_slice(dmac);
    eth[6..12].copy_from_slice(smac);
    Route::Action(unsafe { bpf_redirect(ifindex, 0) } as u32)
}
