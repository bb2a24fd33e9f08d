//! What the DNS program's parts share: the per-CPU scratch a query is parsed and its
//! answer built in, and the helpers written so the verifier walks each loop once
//! (values laundered through memory, comparisons without branches, byte writes that
//! cannot leave their buffer).

use crate::{turn::words, PL_DNS_SCRATCH};
use privatelink_common::csum;

/// Per-CPU working space of one query.
#[repr(C)]
pub struct Scratch {
    /// The question name as it came (`bpf_xdp_load_bytes`).
    pub(super) raw: [u8; 256],
    /// Bit i set: byte i of the wire name is a label's length byte.
    pub(super) starts: [u64; 4],
    /// Values passed through memory between the loops, so the verifier does not carry
    /// a loop's bounds into what follows.
    pub(super) cells: [u32; 4],
    pub(super) key: LpmKey,
    /// The answer, built before it is stored over the frame.
    pub(super) out: [u8; OUT_LEN],
}
/// Room for the longest answer (54 + 259 + 16 + 47 + 11 bytes); a power of two.
pub(super) const OUT_LEN: usize = 512;
pub(super) const CELL_WIRE: usize = 0;
pub(super) const CELL_SUM: usize = 1;
pub(super) const CELL_BAD: usize = 2;
pub(super) const CELL_KEY_LEN: usize = 3;

/// Store `v` and load it back unknown to the verifier.
#[inline(always)]
pub(super) fn launder(s: &mut Scratch, cell: usize, v: u32) -> u32 {
    match s.cells.get_mut(cell) {
        Some(c) => unsafe {
            core::ptr::write_volatile(c, v);
            core::ptr::read_volatile(c)
        },
        None => 0,
    }
}

/// `Key<DnsName>` (260 bytes: prefix, VPC, 254 key bytes) with 2 spare bytes, so key
/// writes can be masked to 0..=255 instead of bounds-checked: a masked write past the
/// key lands beyond the LPM prefix, where the trie never looks.
#[repr(C)]
pub(super) struct LpmKey {
    pub(super) prefix_len: u32,
    pub(super) vpc_id_be: [u8; 2],
    pub(super) key: [u8; 256],
}

/// 1 when `x` (below 2^31) is 0, else 0; no branch.
#[inline(always)]
pub(super) fn is_zero(x: u32) -> u32 {
    x.wrapping_sub(1) >> 31
}

/// 1 when `a < b` (both below 2^31), else 0; no branch.
#[inline(always)]
pub(super) fn below(a: u32, b: u32) -> u32 {
    a.wrapping_sub(b) >> 31
}

#[inline(always)]
pub(super) fn scratch() -> Option<&'static mut Scratch> {
    // Per-CPU: no other writer while this program runs on this CPU.
    PL_DNS_SCRATCH.get_ptr_mut(0).map(|s| unsafe { &mut *s })
}

#[inline(always)]
pub(super) fn be16(b: &[u8], i: usize) -> u16 {
    match (b.get(i), b.get(i + 1)) {
        (Some(h), Some(l)) => u16::from_be_bytes([*h, *l]),
        _ => 0,
    }
}

/// One's-complement sum of a piece written at UDP offset parity `odd` (RFC 1071: a
/// piece at an odd offset adds its aligned sum byte-swapped).
#[inline(always)]
pub(super) fn piece_sum(bytes: &[u8], odd: bool) -> u32 {
    let x = csum::fold(words(bytes));
    (if odd { x.swap_bytes() } else { x }) as u32
}

/// Byte `b` at `off` of the answer being built (offsets wrap inside the buffer, so no
/// write can leave it; volatile, so LLVM makes no memcpy call of the loops).
#[inline(always)]
pub(super) fn put(s: &mut Scratch, off: usize, b: u8) {
    unsafe { core::ptr::write_volatile(&mut s.out[off & (OUT_LEN - 1)], b) };
}

#[inline(always)]
pub(super) fn put_all(s: &mut Scratch, off: usize, bytes: &[u8]) {
    for (i, b) in bytes.iter().enumerate() {
        put(s, off + i, *b);
    }
}
