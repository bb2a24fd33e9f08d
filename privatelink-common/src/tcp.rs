//! TCP sequence arithmetic the data path decides a flow's state with (RFC 793 3.3,
//! compared modulo 2^32 as RFC 1982 does), and where a generated answer may go
//! (RFC 1812). Pure: no maps, no packets.

/// `a` comes before `b` in sequence space.
#[inline(always)]
pub const fn seq_lt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// `a` comes before `b` or is `b`.
#[inline(always)]
pub const fn seq_le(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) <= 0
}

/// How far one segment may move a side's tracked end forward: more than any window a
/// sender may have in flight (65535 << 14, RFC 7323 2.3). A segment beyond it is
/// forwarded (the receiver judges it) but does not widen the reset window.
pub const MAX_ADVANCE: u32 = 1 << 30;

/// One past the last sequence number a segment occupies: its payload, and one each for
/// SYN and FIN.
#[inline(always)]
pub const fn seg_end(seq: u32, payload: u32, syn: bool, fin: bool) -> u32 {
    seq.wrapping_add(payload).wrapping_add(syn as u32).wrapping_add(fin as u32)
}

/// A side's tracked end after one more of its segments ending at `end`: the later of
/// the two, unless the segment jumps further than any sender may.
#[inline(always)]
pub const fn advance(tracked: u32, end: u32) -> u32 {
    if seq_lt(tracked, end) && end.wrapping_sub(tracked) <= MAX_ADVANCE {
        end
    } else {
        tracked
    }
}

/// Whether a RST with sequence number `seq` may close a connection, as a gateway that
/// saw both directions judges it (RFC 5961 3.2 for a middlebox): it lies between what
/// the receiver has acknowledged (`receiver_ack`) and one past what the sender has
/// sent (`sender_end`). Both ends included; an acknowledgement ahead of the sender's
/// end (nothing sent can be acknowledged) narrows the window to `sender_end` alone.
#[inline(always)]
pub const fn rst_in_window(seq: u32, receiver_ack: u32, sender_end: u32) -> bool {
    let lo = if seq_le(receiver_ack, sender_end) { receiver_ack } else { sender_end };
    seq_le(lo, seq) && seq_le(seq, sender_end)
}

/// Whether the gateway may send an answer it generates (a reset, an ICMP message, a DNS
/// answer) to `ip_be` (network order): never to 0/8 ("this network"), 127/8, 224/4
/// (multicast) or 240/4 (reserved, limited broadcast included) (RFC 1812 4.3.2.7 and
/// 5.3.7: no ICMP error to a source that does not name one host).
#[inline(always)]
pub const fn answerable(ip_be: u32) -> bool {
    let first = u32::from_be(ip_be) >> 24;
    first != 0 && first != 127 && first < 224
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_order_wraps() {
        assert!(seq_lt(1, 2) && !seq_lt(2, 1) && !seq_lt(5, 5) && seq_le(5, 5));
        assert!(seq_lt(u32::MAX - 10, 5), "5 follows 2^32 - 11 across the wrap");
        assert!(!seq_lt(5, u32::MAX - 10));
    }

    #[test]
    fn segment_end_counts_syn_and_fin() {
        assert_eq!(seg_end(1000, 0, true, false), 1001);
        assert_eq!(seg_end(1001, 18, false, true), 1020);
        assert_eq!(seg_end(u32::MAX, 1, false, false), 0);
    }

    #[test]
    fn advance_keeps_the_later_end_within_reach() {
        assert_eq!(advance(1000, 2000), 2000);
        assert_eq!(advance(2000, 1000), 2000, "an old segment moves nothing");
        assert_eq!(advance(1000, 1000 + MAX_ADVANCE), 1000 + MAX_ADVANCE);
        assert_eq!(advance(1000, 1001 + MAX_ADVANCE), 1000, "a forged jump moves nothing");
        assert_eq!(advance(u32::MAX - 1, 3), 3);
    }

    #[test]
    fn reset_window() {
        // Receiver acknowledged 1000, sender sent up to 1500.
        for (seq, ok) in [(999, false), (1000, true), (1200, true), (1500, true), (1501, false), (0x8000_0000, false)] {
            assert_eq!(rst_in_window(seq, 1000, 1500), ok, "seq {seq}");
        }
        // Across the wrap.
        assert!(rst_in_window(2, u32::MAX - 2, 10));
        assert!(!rst_in_window(11, u32::MAX - 2, 10));
        // An acknowledgement ahead of what was sent: only the sender's end.
        assert!(rst_in_window(1500, 1600, 1500));
        assert!(!rst_in_window(1550, 1600, 1500));
        assert!(!rst_in_window(1499, 1600, 1500));
    }

    #[test]
    fn answerable_sources() {
        let be = |a: u8, b: u8, c: u8, d: u8| u32::from_be_bytes([a, b, c, d]).to_be();
        for (ip, ok) in [
            (be(10, 0, 0, 2), true),
            (be(11, 163, 0, 1), true),
            (be(223, 255, 255, 254), true),
            (be(0, 0, 0, 0), false),
            (be(0, 1, 2, 3), false),
            (be(127, 0, 0, 1), false),
            (be(224, 0, 0, 1), false),
            (be(239, 1, 1, 1), false),
            (be(240, 0, 0, 1), false),
            (be(255, 255, 255, 255), false),
        ] {
            assert_eq!(answerable(ip), ok, "{:?}", u32::from_be(ip).to_be_bytes());
        }
    }
}
