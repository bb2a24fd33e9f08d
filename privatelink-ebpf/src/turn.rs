//! Turning a frame around: what every answer the gateway builds in place starts with
//! (a TCP reset, an ICMP error, a DNS answer): the MACs swapped, back to the sender,
//! and a fresh IPv4 header with its checksum. Also the checksum arithmetic they share.
//! Rewrites only; decides nothing.

use privatelink_common::csum;

/// Ethernet and a 20-byte IPv4 header.
pub const HEAD_LEN: usize = 34;
/// TTL of every packet the gateway generates.
pub const TTL: u8 = 64;

/// `f` (a frame of at least `HEAD_LEN` bytes) turned around: its MACs swapped, so it
/// goes back to its sender, and a fresh IPv4 header (`ipv4`).
#[inline(always)]
pub fn around<const N: usize>(f: &mut [u8; N], src: [u8; 4], dst: [u8; 4], tot_len: u16, proto: u8, df: bool) {
    const { assert!(N >= HEAD_LEN) };
    let head = unsafe { &mut *(f.as_mut_ptr() as *mut [u8; HEAD_LEN]) };
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&head[0..6]);
    head.copy_within(6..12, 0);
    head[6..12].copy_from_slice(&mac);
    ipv4(head, src, dst, tot_len, proto, df);
}

/// A fresh IPv4 header after `head`'s Ethernet header, from `src` to `dst` (as on the
/// wire) of `tot_len` bytes carrying `proto`: no options, id 0, TTL 64, DF when `df`
/// (RFC 1812 4.3.2.4 leaves it open for errors), with its checksum.
#[inline(always)]
pub fn ipv4(head: &mut [u8; HEAD_LEN], src: [u8; 4], dst: [u8; 4], tot_len: u16, proto: u8, df: bool) {
    let l = tot_len.to_be_bytes();
    head[14..24].copy_from_slice(&[0x45, 0, l[0], l[1], 0, 0, if df { 0x40 } else { 0 }, 0, TTL, proto]);
    head[26..30].copy_from_slice(&src);
    head[30..34].copy_from_slice(&dst);
    // Summed from the values, not the bytes: a loop over the header costs the verifier
    // a walk per state.
    let fixed = 0x4500 + tot_len as u32 + if df { 0x4000 } else { 0 } + ((TTL as u32) << 8 | proto as u32);
    let sum = add_be32(add_be32(fixed, u32::from_be_bytes(src)), u32::from_be_bytes(dst));
    head[24..26].copy_from_slice(&(!csum::fold(sum)).to_be_bytes());
}

/// Sum of `bytes` as big-endian 16-bit words, unfolded (fine below 64 KiB of data).
/// Not `csum::sum_be`: its fold loop has no bound the verifier can see (it walked it
/// ~2000 times per state on 6.18 and gave up at 1M instructions).
#[inline(always)]
pub fn words(bytes: &[u8]) -> u32 {
    let mut sum = 0u32;
    let mut i = 0;
    while i + 1 < bytes.len() {
        sum += u16::from_be_bytes([bytes[i], bytes[i + 1]]) as u32;
        i += 2;
    }
    if i < bytes.len() {
        sum += (bytes[i] as u32) << 8;
    }
    sum
}

/// `sum` plus the two 16-bit halves of `v` (host order).
#[inline(always)]
pub fn add_be32(sum: u32, v: u32) -> u32 {
    sum + (v >> 16) + (v & 0xffff)
}
