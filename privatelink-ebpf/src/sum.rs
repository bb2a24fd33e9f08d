//! Sums of packet bytes at a variable offset and length, for checksums the data path
//! verifies (a RST's TCP checksum, an IPv4 header with options, an echo request). The
//! bytes go through per-CPU scratch, zero-padded (zeros add nothing), and are summed
//! with no branch per word: loops over the packet with a bound check per word
//! multiplied the verifier's states past its 1M-instruction budget (6.18).

use crate::PL_SEGMENT;
use aya_ebpf::{helpers::bpf_xdp_load_bytes, programs::XdpContext};
use core::ffi::c_void;

/// 32-bit words of the per-CPU scratch (`PL_SEGMENT`).
pub const SCRATCH_WORDS: usize = 16;
/// Bytes one call sums at most.
pub const CHUNK: u32 = (SCRATCH_WORDS * 4) as u32;

/// The one's-complement sum (unfolded) of the `n` bytes at `off` of the frame, as
/// big-endian 16-bit words; `n` is 1..=`CHUNK` (other values are taken modulo it, in a
/// form the verifier sees is never zero). `None`: the bytes are not in the frame.
#[inline(always)]
pub fn bytes(ctx: &XdpContext, off: u32, n: u32) -> Option<u32> {
    let buf = unsafe { &mut *PL_SEGMENT.get_ptr_mut(0)? };
    // Word by word: an array assignment becomes a stack temporary and a memcpy.
    for w in buf.iter_mut() {
        unsafe { core::ptr::write_volatile(w, 0) };
    }
    let n = (n.wrapping_sub(1) & (CHUNK - 1)) + 1;
    if unsafe { bpf_xdp_load_bytes(ctx.ctx, off, buf.as_mut_ptr() as *mut c_void, n) } != 0 {
        return None;
    }
    let mut sum = 0u32;
    for w in buf.iter() {
        // Each 4-byte word as loaded is two big-endian 16-bit words.
        let b = w.to_ne_bytes();
        sum += u16::from_be_bytes([b[0], b[1]]) as u32 + u16::from_be_bytes([b[2], b[3]]) as u32;
    }
    Some(sum)
}
