//! The benchmarks' XDP object, built by `cargo xtask bench` beside the product's and
//! never loaded by the daemon: the reference forwarder R1 and the traffic generator.
//! It shares the product's parser and forwarder source, so R1 measures exactly the
//! parse + FIB + redirect the data path does.
#![no_std]
#![no_main]

// Only `parse` and `forward` are used here; the rest of each module serves the product.
#[allow(dead_code)]
#[path = "parse.rs"]
mod parse;
#[allow(dead_code)]
#[path = "forward.rs"]
mod forward;

use aya_ebpf::{
    bindings::xdp_action,
    macros::{map, xdp},
    maps::Array,
    programs::XdpContext,
};
use privatelink_common::TX_FRAME_LEN;

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

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
