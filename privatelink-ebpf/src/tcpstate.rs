//! A TCP flow's state from the segments the gateway forwards, judged in two steps: a
//! segment is first judged (`judge_*`: forward it, reopen the tuple, answer it with a
//! reset, or drop it as invalid) and only once it has been sent on does it change the
//! flow (`forwarded_*`). A frame the gateway drops changes nothing.
//! A flow leaves the open state, and gives its connection slot back, only on evidence
//! that the connection ended: a RST inside the window the gateway tracked (RFC 5961
//! 3.2, both ends seen) with a valid checksum, or FINs both ways each acknowledged by
//! the other side (RFC 793 3.5). Expiry is the sweeper's.
//! Runs in the control program (`flow::control`), never on the fast path (inlined:
//! as BPF subprograms its four entry points cost the verifier more, not less, on 6.18).

use crate::{
    budget,
    conntrack::{self, flags_clear, flags_set},
    parse::{Packet, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN},
    sum,
};
use aya_ebpf::programs::XdpContext;
use privatelink_common::{
    csum,
    tcp::{advance, rst_in_window, seg_end, seq_le},
    *,
};

/// Forward the segment.
pub const PASS: u8 = 0;
/// A client's SYN on a closed flow: the tuple is opened again as a new flow.
pub const REOPEN: u8 = 1;
/// A segment of a reset flow: answered with a reset, not forwarded.
pub const ANSWER_RESET: u8 = 2;
/// Flags or numbers no connection sends in this state: dropped (`InvalidTcp`).
pub const INVALID: u8 = 3;
/// The client's ACK completing the handshake: the flow takes its connection slot
/// (`conntrack::establish`) before the ACK is sent on.
pub const ESTABLISH: u8 = 4;


/// A client segment on its flow's forward entry.
#[inline(always)]
pub fn judge_forward(ctx: &XdpContext, p: &Packet, fwd: &CtValue) -> u8 {
    let f = p.tcp_flags;
    if f & TCP_SYN != 0 && f & (TCP_FIN | TCP_RST) != 0 {
        return INVALID;
    }
    if fwd.state == TCP_STATE_CLOSING {
        if f & TCP_SYN != 0 && f & TCP_ACK == 0 {
            return REOPEN;
        }
        if f & TCP_RST != 0 {
            return PASS;
        }
        return if fwd.flags & CT_FLAG_RESET != 0 { ANSWER_RESET } else { PASS };
    }
    if f & TCP_RST != 0 {
        let Some(rev) = conntrack::get(&fwd.peer_key(PROTO_TCP)) else { return INVALID };
        if !rst_in_window(p.seq, rev.ack, fwd.seq_end) || !checksum_ok(ctx, p) {
            return INVALID;
        }
        return PASS;
    }
    if fwd.state == TCP_STATE_SYN && f & (TCP_ACK | TCP_SYN | TCP_FIN) == TCP_ACK && fwd.flags & CT_FLAG_SYNACK != 0 {
        return ESTABLISH;
    }
    PASS
}

/// A backend segment on its flow's reverse entry.
#[inline(always)]
pub fn judge_reverse(ctx: &XdpContext, p: &Packet, rev: &CtValue, fwd: Option<&CtValue>) -> u8 {
    let f = p.tcp_flags;
    if f & TCP_SYN != 0 && f & (TCP_FIN | TCP_RST) != 0 {
        return INVALID;
    }
    if rev.flags & CT_FLAG_RESET != 0 {
        return if f & TCP_RST != 0 { PASS } else { ANSWER_RESET };
    }
    if f & TCP_RST != 0 {
        let Some(fwd) = fwd else { return INVALID };
        if fwd.state == TCP_STATE_CLOSING {
            return PASS;
        }
        let ok = if rev.flags & CT_FLAG_REV_KNOWN != 0 {
            rst_in_window(p.seq, fwd.ack, rev.seq_end)
        } else {
            // Refusing the SYN (RFC 793 p. 65: SYN-SENT accepts a reset that
            // acknowledges the SYN).
            f & TCP_ACK != 0 && p.ack == fwd.seq_end
        };
        if !ok || !checksum_ok(ctx, p) {
            return INVALID;
        }
    }
    PASS
}

/// What a forwarded client segment did to its flow.
#[inline(always)]
pub fn forwarded_from_client(p: &Packet, fwd: &mut CtValue) {
    let f = p.tcp_flags;
    if f & TCP_RST != 0 {
        if fwd.state != TCP_STATE_CLOSING {
            reset(fwd);
        }
        return;
    }
    let prev = fwd.seq_end;
    let end = seg_end(p.seq, p.tcp_payload(), f & TCP_SYN != 0, f & TCP_FIN != 0);
    fwd.seq_end = advance(prev, end);
    if f & TCP_ACK != 0 {
        fwd.ack = advance(fwd.ack, p.ack);
        // Established by the ACK judged `ESTABLISH` (its slot taken then).
        if fwd.state == TCP_STATE_SYN && fwd.flags & (CT_FLAG_SYNACK | CT_FLAG_RELEASED) == CT_FLAG_SYNACK {
            fwd.state = TCP_STATE_ESTABLISHED;
            crate::replicate::tcp_changed(fwd);
        }
    }
    if fwd.state == TCP_STATE_CLOSING {
        return;
    }
    let v = fwd as *mut CtValue;
    if f & TCP_FIN != 0 && seq_le(prev, end) && fwd.seq_end == end {
        // The client's FIN ends its stream: the backend's ACK of it is watched for on
        // the reverse path.
        flags_set(v, CT_FLAG_FIN_FWD);
        if let Some(rev) = conntrack::get(&fwd.peer_key(PROTO_TCP)) {
            flags_set(rev, CT_FLAG_PEER_FIN);
        }
    }
    if f & TCP_ACK != 0 && fwd.flags & (CT_FLAG_FIN_REV | CT_FLAG_FIN_REV_ACKED) == CT_FLAG_FIN_REV {
        if let Some(rev) = conntrack::get(&fwd.peer_key(PROTO_TCP)) {
            if seq_le(rev.seq_end, p.ack) {
                fin_acked(fwd, CT_FLAG_FIN_REV_ACKED);
            }
        }
    }
}

/// What a forwarded backend segment did to its flow.
#[inline(always)]
pub fn forwarded_from_backend(p: &Packet, rev: &mut CtValue, fwd: Option<&mut CtValue>) {
    let f = p.tcp_flags;
    let Some(fwd) = fwd else { return };
    if f & TCP_RST != 0 {
        if fwd.state != TCP_STATE_CLOSING {
            reset(fwd);
        }
        return;
    }
    let end = seg_end(p.seq, p.tcp_payload(), f & TCP_SYN != 0, f & TCP_FIN != 0);
    let r = rev as *mut CtValue;
    if f & TCP_SYN != 0 && f & TCP_ACK != 0 && rev.flags & CT_FLAG_REV_KNOWN == 0 {
        // The first SYN-ACK: the backend's stream starts here, and the client can only
        // acknowledge it.
        rev.seq_end = end;
        rev.ack = p.ack;
        fwd.ack = end;
        flags_set(r, CT_FLAG_REV_KNOWN);
        if fwd.state == TCP_STATE_SYN {
            flags_set(fwd, CT_FLAG_SYNACK);
        }
        return;
    }
    let prev = rev.seq_end;
    rev.seq_end = advance(prev, end);
    if f & TCP_ACK != 0 {
        rev.ack = advance(rev.ack, p.ack);
    }
    if fwd.state == TCP_STATE_CLOSING {
        return;
    }
    if f & TCP_FIN != 0 && seq_le(prev, end) && rev.seq_end == end {
        flags_set(fwd, CT_FLAG_FIN_REV);
    }
    if f & TCP_ACK != 0 && rev.flags & CT_FLAG_PEER_FIN != 0 && seq_le(fwd.seq_end, p.ack) {
        flags_clear(r, CT_FLAG_PEER_FIN);
        fin_acked(fwd, CT_FLAG_FIN_FWD_ACKED);
    }
}

/// One side's FIN was acknowledged; both: the connection ended.
#[inline(always)]
fn fin_acked(fwd: &mut CtValue, bit: u8) {
    let both = CT_FLAG_FIN_FWD_ACKED | CT_FLAG_FIN_REV_ACKED;
    if (flags_set(fwd, bit) | bit) & both == both {
        close(fwd, 0);
    }
}

/// A reset the gateway forwarded: the flow is closed at both ends from now on.
#[inline(always)]
pub fn reset(fwd: &mut CtValue) {
    close(fwd, CT_FLAG_RESET);
}

/// The connection ended: the flow gives back its slot (or its half-open place) and
/// is remembered among its endpoint's closed flows, which a new flow over a share may
/// reclaim. `mark` (`CT_FLAG_RESET` or 0) is set on both entries.
#[inline(always)]
fn close(fwd: &mut CtValue, mark: u8) {
    let v = fwd as *mut CtValue;
    let ep = fwd.endpoint;
    if mark != 0 {
        flags_set(v, mark);
    }
    if let Some(rev) = conntrack::get(&fwd.peer_key(PROTO_TCP)) {
        if mark != 0 {
            flags_set(rev, mark);
        }
        budget::closed(ep, &rev.peer_key(PROTO_TCP));
    }
    fwd.state = TCP_STATE_CLOSING;
    conntrack::release_flow(v, ep);
    conntrack::no_longer_half_open(v, ep);
    crate::replicate::tcp_changed(v);
}

/// Whether a short segment's TCP checksum is right (RFC 793 3.1), checked before it
/// may close a flow: a RST the receiver would discard must not.
#[inline(always)]
fn checksum_ok(ctx: &XdpContext, p: &Packet) -> bool {
    let len = p.ip_tot_len.wrapping_sub(p.ihl_bytes) as u32;
    if len < 20 || len > sum::CHUNK {
        return false;
    }
    let Some(segment) = sum::bytes(ctx, p.l4_off as u32, len) else { return false };
    let src = u32::from_be(p.src_ip);
    let dst = u32::from_be(p.dst_ip);
    let pseudo = (src >> 16) + (src & 0xffff) + (dst >> 16) + (dst & 0xffff) + PROTO_TCP as u32 + len;
    csum::fold(pseudo + segment) == 0xffff
}
