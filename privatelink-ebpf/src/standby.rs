//! Takeover: the flows of a node that died, copied here by replication
//! (`PL_STANDBY`), are adopted when a packet of theirs reaches this node and their
//! SNAT address is in a slice this node has taken over (`PL_TAKEN`). Adopting moves
//! both entries into the flow table with this node's hops (the provider VPC's
//! interface here, a FIB lookup at the flow's first established packet; the
//! consumer side learned from this packet, as a new flow's), takes what the flow
//! holds of its endpoint's budgets here (its slot if open, its place in the shares:
//! never refused, the flow exists), and removes the copy: the rest of the path is
//! the path of any flow. Only a client's packet adopts (the reverse entry's hop is
//! learned from it); a backend's packet waits for it (dropped, `NoFlow`). A client's
//! packet of a copy whose slice is not taken over is dropped without the reset a
//! segment of no flow gets: its retransmission finds the takeover done.

use crate::{
    budget, conntrack,
    parse::{ptr_at, Packet},
    replicate, stats, PL_CT, PL_FLOW_SCRATCH, PL_REPLICATION, PL_STANDBY, PL_TAKEN,
};
use aya_ebpf::{bindings::BPF_NOEXIST, maps::lpm_trie::Key, programs::XdpContext};
use core::intrinsics::{atomic_xadd, AtomicOrdering};
use privatelink_common::*;

#[inline(always)]
fn taking() -> bool {
    matches!(PL_REPLICATION.get(REPL_TAKING), Some(v) if *v != 0)
}

/// Whether `ip` (raw) is in a slice this node has taken over.
#[inline(always)]
pub fn taken(ip: u32) -> bool {
    PL_TAKEN.get(Key::new(32, ip)).is_some()
}

/// Not a flow of the standby table's: the packet is a new flow's (or of none).
pub const NONE: u8 = 0;
/// Adopted: the flow is in the flow table now.
pub const ADOPTED: u8 = 1;
/// The copy is here but its slice is not taken over (yet: the node is dying, or it
/// lives and the consumer's router moved the flow): dropped without a reset, so the
/// client's retransmission finds the flow once the takeover is done.
pub const HELD: u8 = 2;

#[inline(always)]
fn count(slot: u32) {
    if let Some(c) = PL_REPLICATION.get_ptr_mut(slot) {
        unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::SeqCst }>(c, 1) };
    }
}

/// Adopt the flow of the client's packet `p` (arrived on `ifindex`, VPC `vpc`, for
/// endpoint `ep`, which `info` describes) from the standby table, if it is there and
/// its slice is taken. A SYN is never a copy's (it opens a flow).
#[inline(always)]
pub fn adopt(ctx: &XdpContext, p: &Packet, vpc: &VpcInfo, ifindex: u32, ep: u32, info: &EndpointInfo) -> u8 {
    if p.proto == PROTO_TCP && p.tcp_flags & crate::parse::TCP_SYN != 0 {
        return NONE;
    }
    let key = conntrack::flow_key(p, vpc.vpc_id);
    let Some(copy) = (unsafe { PL_STANDBY.get(&key) }) else { return NONE };
    if copy.kind != CT_KIND_FORWARD || copy.endpoint != ep {
        return NONE;
    }
    if !taking() || !taken(copy.nat_src_ip_be) {
        count(REPL_HELD);
        return HELD;
    }
    let rev_key = copy.peer_key(p.proto);
    let (Some(rev_copy), Some(rev), Some(fwd)) = (unsafe { PL_STANDBY.get(&rev_key) }, PL_FLOW_SCRATCH.get_ptr_mut(0), PL_FLOW_SCRATCH.get_ptr_mut(1)) else { return NONE };
    // The reverse copy must be this flow's (a copy of another flow under the same
    // key would send the answers elsewhere).
    let back = rev_copy.peer_key(p.proto);
    if rev_copy.kind != CT_KIND_REVERSE || rev_copy.endpoint != ep || back.src_ip_be != key.src_ip_be || back.src_port_be != key.src_port_be || back.dst_ip_be != key.dst_ip_be || back.dst_port_be != key.dst_port_be || back.vpc_id != key.vpc_id {
        return NONE;
    }
    let Some(svc) = crate::lookup::service(info.service) else { return NONE };
    let Some(eth) = ptr_at::<[u8; 12]>(ctx, 0) else { return NONE };
    let eth = unsafe { *eth };
    let (fwd, rev) = unsafe { (&mut *fwd, &mut *rev) };
    let t = conntrack::now();
    *fwd = *copy;
    *rev = *rev_copy;
    fwd.last_seen_ns = t;
    fwd.route = 0;
    fwd.ifindex = svc.ifindex;
    fwd.mtu = 0;
    fwd.smac = [0; 6];
    fwd.dmac = [0; 6];
    // A half-open flow's place in the budget stays with the dead node's count.
    fwd.holds = 0;
    fwd.flags &= !CT_FLAG_DYING;
    rev.last_seen_ns = t;
    rev.ifindex = ifindex;
    rev.mtu = vpc.mtu;
    if crate::handoff::handed(ctx) {
        // Handed over by a peer: its MACs are the peer's link's. The way back to the
        // client is this node's route towards it, in the consumer VPC's table.
        let hop = crate::forward::fib(ctx, ifindex, vpc.fib_table, key.dst_ip_be, key.src_ip_be, p.proto, p.ip_tot_len);
        if hop.kind != crate::forward::HOP_REDIRECT || hop.ifindex != ifindex {
            return HELD;
        }
        rev.smac = hop.smac;
        rev.dmac = hop.dmac;
    } else {
        rev.smac = [eth[0], eth[1], eth[2], eth[3], eth[4], eth[5]];
        rev.dmac = [eth[6], eth[7], eth[8], eth[9], eth[10], eth[11]];
    }
    let open = fwd.flags & CT_FLAG_RELEASED == 0;
    // Not inserted (the table is full, or the tuple was taken meanwhile): held, the
    // client tries again.
    if PL_CT.insert(&rev_key, &*rev, BPF_NOEXIST as u64).is_err() {
        return HELD;
    }
    if PL_CT.insert(&key, &*fwd, BPF_NOEXIST as u64).is_err() {
        let _ = PL_CT.remove(&rev_key);
        return HELD;
    }
    // What the flow holds here: never refused (it exists), counted as any flow's so
    // that its removal gives back exactly what it took.
    if open {
        budget::acquire_slot(ep, u32::MAX);
    }
    budget::take_share(ep, u32::MAX, key.vpc_id, u32::MAX, u32::MAX);
    stats::count_backend_flow(fwd.backend, false);
    conntrack::count_ports(ep, true);
    let _ = PL_STANDBY.remove(&key);
    let _ = PL_STANDBY.remove(&rev_key);
    count(REPL_ADOPTED);
    replicate::upsert(&key, fwd, &rev_key, rev);
    ADOPTED
}
