//! The benchmarks' XDP object, built by `cargo xtask bench` beside the product's and
//! never loaded by the daemon: the reference forwarder R1, the traffic generator, and
//! micro-benchmarks of the conntrack map's operations (and of a table design of our own).
//! It shares the product's parser and forwarder source, so R1 measures exactly the
//! parse + FIB + redirect the data path does.
#![no_std]
#![no_main]
#![feature(core_intrinsics)]
#![allow(internal_features)]

// Only `parse` and `forward` are used here; the rest of each module serves the product.
#[allow(dead_code)]
#[path = "parse.rs"]
mod parse;
#[allow(dead_code)]
#[path = "forward.rs"]
mod forward;

use aya_ebpf::{
    bindings::{xdp_action, BPF_NOEXIST},
    macros::{map, xdp},
    maps::{Array, HashMap},
    programs::XdpContext,
};
use core::intrinsics::{atomic_cxchg, AtomicOrdering};
use privatelink_common::{CtKey, CtValue, BENCH_SLOTS, BENCH_SLOT_PROBES, TX_FRAME_LEN};

/// Reference forwarder (R1): parse, `bpf_fib_lookup`, MAC rewrite and redirect, no NAT
/// and no maps. What the data path costs is measured against it.
#[xdp]
pub fn privatelink_fwd(ctx: XdpContext) -> u32 {
    match parse::parse(&ctx) {
        parse::Parsed::Ipv4(p) if !p.fragment => {
            let ifindex = ctx.ingress_ifindex() as u32;
            let hop = forward::fib(&ctx, ifindex, 0, p.src_ip, p.dst_ip, p.proto, p.ip_tot_len);
            if hop.kind != forward::HOP_REDIRECT {
                return xdp_action::XDP_PASS;
            }
            match forward::set_macs_and_redirect(&ctx, hop.ifindex, &hop.smac, &hop.dmac) {
                forward::Route::Action(a) => a,
                forward::Route::NoRoute => xdp_action::XDP_PASS,
            }
        }
        _ => xdp_action::XDP_PASS,
    }
}

/// The generator's frame (`TX_FRAME_LEN` bytes).
#[map]
static PL_TX_FRAME: Array<[u8; TX_FRAME_LEN]> = Array::with_max_entries(1, 0);

/// Traffic generator: writes the frame of `PL_TX_FRAME` and sends it with XDP_TX. Run
/// with BPF_PROG_TEST_RUN in live-frames mode on a client's veth, it sends that frame
/// out of the veth at line rate. The frame is written on every run because live-frames
/// pages come back from the receiver as it left them (kernel 6.18: a forwarded or
/// NATed frame returns rewritten, and the next send would repeat that).
#[xdp]
pub fn privatelink_tx(ctx: XdpContext) -> u32 {
    if let (Some(dst), Some(src)) = (parse::ptr_at::<[u8; TX_FRAME_LEN]>(&ctx, 0), PL_TX_FRAME.get(0)) {
        unsafe { *dst = *src };
    }
    xdp_action::XDP_TX
}

/// A conntrack-sized hash for the micro-benchmarks (userspace sets its capacity).
#[map]
static PL_BENCH_CT: HashMap<CtKey, CtValue> = HashMap::with_max_entries(1024, 0);

/// The frame's flow as a conntrack key; `proto` 0: not a TCP/UDP IPv4 packet. (A
/// plain struct, not an `Option`: LLVM read the payload of a `None` and the verifier
/// refused the program, "R5 !read_ok".)
#[inline(always)]
fn bench_key(ctx: &XdpContext) -> CtKey {
    match parse::parse(ctx) {
        parse::Parsed::Ipv4(p) if p.has_ports => key_of(&p),
        _ => CtKey { src_ip_be: 0, dst_ip_be: 0, src_port_be: 0, dst_port_be: 0, vpc_id: 1, proto: 0, _pad: 0 },
    }
}

/// A parsed packet's flow as a conntrack key of VPC 1.
#[inline(always)]
fn key_of(p: &parse::Packet) -> CtKey {
    CtKey { src_ip_be: p.src_ip, dst_ip_be: p.dst_ip, src_port_be: p.src_port, dst_port_be: p.dst_port, vpc_id: 1, proto: p.proto, _pad: 0 }
}

/// Parse only: the baseline the two below are read against.
#[xdp]
pub fn privatelink_bench_parse(ctx: XdpContext) -> u32 {
    if bench_key(&ctx).proto != 0 {
        xdp_action::XDP_DROP
    } else {
        xdp_action::XDP_ABORTED
    }
}

/// One insert with BPF_NOEXIST, as a new flow does twice: XDP_DROP when it went in.
#[xdp]
pub fn privatelink_bench_ct_insert(ctx: XdpContext) -> u32 {
    let k = bench_key(&ctx);
    if k.proto == 0 {
        return xdp_action::XDP_ABORTED;
    }
    let v = CtValue { endpoint: 1, kind: 1, ..CtValue::default() };
    match PL_BENCH_CT.insert(&k, &v, BPF_NOEXIST as u64) {
        Ok(()) => xdp_action::XDP_DROP,
        Err(_) => xdp_action::XDP_ABORTED,
    }
}

/// One lookup: XDP_DROP when the key is absent (a new flow's miss), XDP_PASS when found.
#[xdp]
pub fn privatelink_bench_ct_lookup(ctx: XdpContext) -> u32 {
    let k = bench_key(&ctx);
    if k.proto == 0 {
        return xdp_action::XDP_ABORTED;
    }
    match unsafe { PL_BENCH_CT.get(&k) } {
        Some(_) => xdp_action::XDP_PASS,
        None => xdp_action::XDP_DROP,
    }
}

/// R1 plus the map work every new flow needs in a design with two kernel-hash entries
/// (one per direction, as ours and cilium's): the forward key's miss, then the reverse
/// and the forward entry inserted with BPF_NOEXIST, then parse + FIB + redirect as R1
/// does. No endpoint, limit, port choice or rewrite: a floor for the product's new flow.
#[xdp]
pub fn privatelink_bench_floor(ctx: XdpContext) -> u32 {
    floor(&ctx, true)
}

/// The same with one entry per flow (the miss and one insert): the floor of any design
/// whose flow table is a kernel hash, were the reverse direction free.
#[xdp]
pub fn privatelink_bench_floor_one(ctx: XdpContext) -> u32 {
    floor(&ctx, false)
}

#[inline(always)]
fn floor(ctx: &XdpContext, reverse: bool) -> u32 {
    let p = match parse::parse(ctx) {
        parse::Parsed::Ipv4(p) if !p.fragment && p.has_ports => p,
        _ => return xdp_action::XDP_ABORTED,
    };
    let k = key_of(&p);
    if unsafe { PL_BENCH_CT.get(&k) }.is_some() {
        return xdp_action::XDP_ABORTED;
    }
    if reverse {
        let rk = CtKey { src_ip_be: p.dst_ip, dst_ip_be: p.src_ip, src_port_be: p.dst_port, dst_port_be: p.src_port, vpc_id: 2, proto: p.proto, _pad: 0 };
        let rv = CtValue { endpoint: 1, kind: 2, ..CtValue::default() };
        if PL_BENCH_CT.insert(&rk, &rv, BPF_NOEXIST as u64).is_err() {
            return xdp_action::XDP_ABORTED;
        }
    }
    let fv = CtValue { endpoint: 1, kind: 1, ..CtValue::default() };
    if PL_BENCH_CT.insert(&k, &fv, BPF_NOEXIST as u64).is_err() {
        return xdp_action::XDP_ABORTED;
    }
    let ifindex = ctx.ingress_ifindex() as u32;
    let hop = forward::fib(ctx, ifindex, 0, p.src_ip, p.dst_ip, p.proto, p.ip_tot_len);
    if hop.kind != forward::HOP_REDIRECT {
        return xdp_action::XDP_PASS;
    }
    match forward::set_macs_and_redirect(ctx, hop.ifindex, &hop.smac, &hop.dmac) {
        forward::Route::Action(a) => a,
        forward::Route::NoRoute => xdp_action::XDP_PASS,
    }
}

/// An open-addressing table's slots: word 0 is the slot's state (0 = empty, else the
/// key's hash | 1), then the key (2 words) and a value as large as `CtValue` (7 words).
#[map]
static PL_BENCH_SLOTS: Array<[u64; 10]> = Array::with_max_entries(BENCH_SLOTS, 0);

/// A new flow in a table of our own: hash the key, claim the first empty slot of its
/// probe sequence with a compare-and-swap, write key and value. XDP_DROP when it went in.
#[xdp]
pub fn privatelink_bench_slot_claim(ctx: XdpContext) -> u32 {
    let k = bench_key(&ctx);
    if k.proto == 0 {
        return xdp_action::XDP_ABORTED;
    }
    let a = (k.src_ip_be as u64) << 32 | k.dst_ip_be as u64;
    let b = (k.src_port_be as u64) << 48 | (k.dst_port_be as u64) << 32 | (k.vpc_id as u64) << 16 | k.proto as u64;
    let h = (a ^ b.rotate_left(29)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let tag = h | 1;
    let mut i = 0u32;
    while i < BENCH_SLOT_PROBES {
        let idx = ((h >> 32) as u32).wrapping_add(i) & (BENCH_SLOTS - 1);
        let Some(slot) = PL_BENCH_SLOTS.get_ptr_mut(idx) else { return xdp_action::XDP_ABORTED };
        let state = slot as *mut u64;
        let (_, won) = unsafe { atomic_cxchg::<u64, { AtomicOrdering::SeqCst }, { AtomicOrdering::SeqCst }>(state, 0, tag) };
        if won {
            let s = unsafe { &mut *slot };
            s[1] = a;
            s[2] = b;
            s[3] = 1;
            let mut w = 4;
            while w < 10 {
                s[w] = h;
                w += 1;
            }
            return xdp_action::XDP_DROP;
        }
        i += 1;
    }
    xdp_action::XDP_ABORTED
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
