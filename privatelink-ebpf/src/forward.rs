//! Sending a rewritten frame on: `bpf_fib_lookup` towards backends (per provider VPC
//! routing table), learned interface and MACs back to consumers (and, once known, to
//! backends), then redirect.
//! XDP has no neighbour resolution: an unresolved neighbour hands the already
//! rewritten frame to the kernel (XDP_PASS), which resolves ARP and forwards it.

use crate::parse::ptr_at;
use aya_ebpf::{
    bindings::{
        bpf_fib_lookup, xdp_action, BPF_FIB_LKUP_RET_FRAG_NEEDED, BPF_FIB_LKUP_RET_NO_NEIGH,
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

/// What the FIB says about a destination.
pub enum Fib {
    Next { ifindex: u32, smac: [u8; 6], dmac: [u8; 6] },
    /// No neighbour entry yet (or fragmentation needed): the kernel must handle it.
    Kernel,
    NoRoute,
}

/// Look `dst` up in the FIB: `table` 0 is the main table, anything else a provider
/// VPC's own table (BPF_FIB_LOOKUP_TBID, kernel >= 6.8).
#[inline(always)]
pub fn fib(ctx: &XdpContext, ifindex: u32, table: u32, src: u32, dst: u32, proto: u8, tot_len: u16) -> Fib {
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
        return Fib::Next { ifindex: p.ifindex, smac: p.smac, dmac: p.dmac };
    }
    if rc == BPF_FIB_LKUP_RET_NO_NEIGH || rc == BPF_FIB_LKUP_RET_FRAG_NEEDED {
        return Fib::Kernel;
    }
    Fib::NoRoute
}

/// What to do with a frame whose FIB answer gave no next hop: the kernel resolves a
/// missing neighbour (the frame passes up), no route is no route.
#[inline(always)]
pub fn uncached(f: Fib) -> Route {
    match f {
        Fib::Kernel => Route::Action(xdp_action::XDP_PASS),
        Fib::NoRoute | Fib::Next { .. } => Route::NoRoute,
    }
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
