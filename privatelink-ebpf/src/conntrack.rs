//! Flows: creation under the connection limit (atomic add, check, roll back), SNAT port
//! choice, paired forward/reverse entries inserted with BPF_NOEXIST and rolled back on
//! failure (the shape of cilium's snat_v4_new_mapping), TCP state, and expiry.
//! Never evicts a live flow. A flow holds a connection slot while it is open: its slot
//! goes back when it closes (a RST, or FINs both ways) or expires, exactly once, decided
//! by an atomic fetch-or of `CT_FLAG_RELEASED` (nf_conncount likewise skips closed TCP
//! connections). The active count saturates at zero instead of wrapping.

use crate::{
    parse::{ptr_at, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN},
    stats::Drop,
    PL_CT, PL_EP_ACTIVE, PL_EP_SNAT, PL_SNAT_CURSOR,
};
use aya_ebpf::{bindings::BPF_NOEXIST, helpers::bpf_ktime_get_ns, programs::XdpContext};
use core::intrinsics::{atomic_and, atomic_cxchg, atomic_or, atomic_xadd, AtomicOrdering};
use privatelink_common::*;

const EEXIST: i32 = 17;

#[inline(always)]
pub fn now() -> u64 {
    unsafe { bpf_ktime_get_ns() }
}

#[inline(always)]
pub fn get(key: &CtKey) -> Option<&'static mut CtValue> {
    PL_CT.get_ptr_mut(key).map(|p| unsafe { &mut *p })
}

/// Add `delta` to the endpoint's live-flow count and return the previous value.
/// SeqCst on purpose: with Relaxed, LLVM 22 emits a plain BPF XADD whose "returned old
/// value" is garbage (seen on kernel 6.18: the limit never fired); SeqCst emits
/// atomic_fetch_add, which returns it.
#[inline(always)]
fn active_add(endpoint: u32, delta: u64) -> Option<u64> {
    let p = PL_EP_ACTIVE.get_ptr_mut(endpoint)?;
    Some(unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::SeqCst }>(p, delta) })
}

/// Take one connection slot of `endpoint`; `false` when its limit is reached.
#[inline(always)]
pub fn acquire_slot(endpoint: u32, limit: u32) -> bool {
    match active_add(endpoint, 1) {
        Some(old) if old < limit as u64 => true,
        Some(_) => {
            release_slot(endpoint);
            false
        }
        None => false,
    }
}

/// Give one connection slot of `endpoint` back, never below zero (a release that finds
/// zero is counted as an anomaly instead).
#[inline(always)]
pub fn release_slot(endpoint: u32) {
    let p = match PL_EP_ACTIVE.get_ptr_mut(endpoint) {
        Some(p) => p,
        None => return,
    };
    let mut tries = 0;
    while tries < 8 {
        let cur = unsafe { core::ptr::read_volatile(p) };
        if cur == 0 {
            if let Some(s) = crate::stats::slot(endpoint) {
                s.slot_underflows += 1;
            }
            return;
        }
        let (_, done) = unsafe { atomic_cxchg::<u64, { AtomicOrdering::SeqCst }, { AtomicOrdering::SeqCst }>(p, cur, cur - 1) };
        if done {
            return;
        }
        tries += 1;
    }
    // Eight CPUs raced this one: take the slot back with a plain atomic decrement.
    active_add(endpoint, u64::MAX);
}

/// The 32-bit word of a flow entry that holds `flags` (with `kind`, `state`, `route`).
#[inline(always)]
fn flags_word(v: *mut CtValue) -> *mut u32 {
    unsafe { (v as *mut u8).add(CT_FLAGS_WORD_OFFSET) as *mut u32 }
}

/// Set `bits` in a flow's flags atomically; returns the flags before.
#[inline(always)]
pub fn flags_set(v: *mut CtValue, bits: u8) -> u8 {
    let old = unsafe { atomic_or::<u32, u32, { AtomicOrdering::SeqCst }>(flags_word(v), (bits as u32) << CT_FLAGS_SHIFT) };
    (old >> CT_FLAGS_SHIFT) as u8
}

/// Clear `bits` in a flow's flags atomically.
#[inline(always)]
fn flags_clear(v: *mut CtValue, bits: u8) {
    unsafe { atomic_and::<u32, u32, { AtomicOrdering::SeqCst }>(flags_word(v), !((bits as u32) << CT_FLAGS_SHIFT)) };
}

/// Give the flow's slot back unless somebody already did: exactly once per opening.
#[inline(always)]
pub fn release_flow(v: *mut CtValue, endpoint: u32) {
    if flags_set(v, CT_FLAG_RELEASED) & CT_FLAG_RELEASED == 0 {
        release_slot(endpoint);
    }
}

/// Everything a new flow's two entries need.
pub struct NewFlow {
    pub key: CtKey,
    pub endpoint: u32,
    /// The endpoint's SNAT addresses in `PL_EP_SNAT` (at least 1).
    pub snat_count: u8,
    pub backend_ip: u32,
    /// The backend's slot in `PL_BACKENDS` (its flow counters).
    pub backend_slot: u32,
    pub service_port: u16,
    pub provider_vpc: u16,
    pub provider_ifindex: u32,
    pub consumer_ifindex: u32,
    /// MTU of the consumer's interface: the reverse entry's hop.
    pub consumer_mtu: u16,
    /// The frame's MACs: client (source) and gateway interface (destination).
    pub client_mac: [u8; 6],
    pub gateway_mac: [u8; 6],
}

/// Insert the flow's reverse then forward entry. The reverse insert claims a SNAT port
/// (BPF_NOEXIST makes (snat ip, snat port, backend, service port, proto) unique).
/// Returns the forward entry.
pub enum CreateError {
    /// Another CPU created this very flow first: use its entry.
    Raced,
    Refused(Drop),
}

#[inline(always)]
pub fn create(f: &NewFlow) -> Result<CtValue, CreateError> {
    let t = now();
    let state = if f.key.proto == PROTO_TCP { TCP_STATE_SYN } else { UDP_STATE };
    let rev = CtValue {
        last_seen_ns: t,
        endpoint: f.endpoint,
        kind: CT_KIND_REVERSE,
        state,
        flags: 0,
        route: 0,
        nat_src_ip_be: f.key.dst_ip_be,
        nat_dst_ip_be: f.key.src_ip_be,
        nat_src_port_be: f.key.dst_port_be,
        nat_dst_port_be: f.key.src_port_be,
        egress_vpc: f.key.vpc_id,
        mtu: f.consumer_mtu,
        ifindex: f.consumer_ifindex,
        smac: f.gateway_mac,
        dmac: f.client_mac,
        backend: BACKEND_NONE,
        _reserved: 0,
    };
    let mut rev_key = CtKey {
        src_ip_be: f.backend_ip,
        dst_ip_be: 0,
        src_port_be: f.service_port,
        dst_port_be: 0,
        vpc_id: f.provider_vpc,
        proto: f.key.proto,
        _pad: 0,
    };
    if !claim_snat_port(f, &mut rev_key, &rev)? {
        return Err(CreateError::Refused(Drop::endpoint(DropReason::SnatExhausted, f.endpoint)));
    }
    let fwd = CtValue {
        last_seen_ns: t,
        endpoint: f.endpoint,
        kind: CT_KIND_FORWARD,
        state,
        flags: 0,
        route: 0,
        nat_src_ip_be: rev_key.dst_ip_be,
        nat_dst_ip_be: f.backend_ip,
        nat_src_port_be: rev_key.dst_port_be,
        nat_dst_port_be: f.service_port,
        egress_vpc: f.provider_vpc,
        mtu: 0,
        ifindex: f.provider_ifindex,
        smac: [0; 6],
        dmac: [0; 6],
        backend: f.backend_slot,
        _reserved: 0,
    };
    if let Err(e) = PL_CT.insert(&f.key, &fwd, BPF_NOEXIST as u64) {
        // Roll back the claimed port. Only this CPU knows the entry, so the delete cannot
        // race; should it fail anyway, the sweeper removes reverse entries with no peer.
        if PL_CT.remove(&rev_key).is_err() {
            crate::stats::count_drop(Drop::global(DropReason::ConntrackFull));
        } else {
            count_ports(f.endpoint, false);
        }
        if e == -EEXIST {
            return Err(CreateError::Raced);
        }
        return Err(CreateError::Refused(Drop::endpoint(DropReason::ConntrackFull, f.endpoint)));
    }
    crate::stats::count_backend_flow(f.backend_slot, false);
    Ok(fwd)
}

/// What a segment did to its flow.
#[derive(PartialEq, Eq)]
pub enum Tcp {
    Nothing,
    /// A SYN on a closed flow: the client opens the same tuple again; it needs a slot.
    Reopen,
}

/// Claim a SNAT port for the flow: the reverse entry `rev` is inserted under `key`
/// (BPF_NOEXIST: (backend, service port, SNAT address, SNAT port, proto) is unique).
/// Each of the endpoint's addresses in turn: `SNAT_PROBES_PER_ADDRESS` ports from its
/// cursor, which advances one port per new flow over the whole range (a just-freed
/// port comes back last); a full port space moves the flow to the next address.
/// `Ok(false)`: every address is full towards this backend port.
#[inline(always)]
fn claim_snat_port(f: &NewFlow, key: &mut CtKey, rev: &CtValue) -> Result<bool, CreateError> {
    let span = (SNAT_PORT_MAX - SNAT_PORT_MIN) as u64 + 1;
    let count = if f.snat_count == 0 { 1 } else { f.snat_count as u32 };
    let mut a = 0u32;
    while a < MAX_SNAT_PER_ENDPOINT && a < count {
        let slot = f.endpoint.wrapping_mul(MAX_SNAT_PER_ENDPOINT).wrapping_add(a);
        let (Some(ip), Some(cursor)) = (PL_EP_SNAT.get(slot), PL_SNAT_CURSOR.get_ptr_mut(slot)) else { break };
        key.dst_ip_be = *ip;
        let c = unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::SeqCst }>(cursor, 1) };
        let mut i = 0u64;
        while i < SNAT_PROBES_PER_ADDRESS as u64 {
            key.dst_port_be = ((SNAT_PORT_MIN as u64 + (c + i) % span) as u16).to_be();
            match PL_CT.insert(&*key, rev, BPF_NOEXIST as u64) {
                Ok(()) => {
                    count_ports(f.endpoint, true);
                    return Ok(true);
                }
                Err(e) if e == -EEXIST => {}
                Err(_) => return Err(CreateError::Refused(Drop::endpoint(DropReason::ConntrackFull, f.endpoint))),
            }
            i += 1;
        }
        a += 1;
    }
    Ok(false)
}

/// Count a SNAT port claimed or given back (ports in use = claimed - released).
#[inline(always)]
fn count_ports(endpoint: u32, claimed: bool) {
    if let Some(s) = crate::stats::slot(endpoint) {
        if claimed {
            s.snat_ports_claimed += 1;
        } else {
            s.snat_ports_released += 1;
        }
    }
}

/// Track TCP state on the forward entry from a segment's flags (`from_backend`: it came
/// on the reverse path): established when the client's ACK completes the handshake,
/// closed on a RST or FINs both ways (the slot goes back then).
#[inline(always)]
pub fn track_tcp(fwd: &mut CtValue, flags: u8, from_backend: bool) -> Tcp {
    let v = fwd as *mut CtValue;
    if flags & TCP_RST != 0 {
        fwd.state = TCP_STATE_CLOSING;
        release_flow(v, fwd.endpoint);
        return Tcp::Nothing;
    }
    if flags & TCP_SYN != 0 {
        if from_backend {
            if flags & TCP_ACK != 0 && fwd.state == TCP_STATE_SYN {
                flags_set(v, CT_FLAG_SYNACK);
            }
        } else if flags & TCP_ACK == 0 && fwd.state == TCP_STATE_CLOSING {
            return Tcp::Reopen;
        }
        return Tcp::Nothing;
    }
    if !from_backend && fwd.state == TCP_STATE_SYN && flags & TCP_ACK != 0 && fwd.flags & CT_FLAG_SYNACK != 0 {
        fwd.state = TCP_STATE_ESTABLISHED;
    }
    if flags & TCP_FIN != 0 {
        let bit = if from_backend { CT_FLAG_FIN_REV } else { CT_FLAG_FIN_FWD };
        let both = CT_FLAG_FIN_FWD | CT_FLAG_FIN_REV;
        if (flags_set(v, bit) | bit) & both == both {
            fwd.state = TCP_STATE_CLOSING;
            release_flow(v, fwd.endpoint);
        }
    }
    Tcp::Nothing
}

/// A closed flow opened again by a new SYN: it takes a slot again (`false`: the limit
/// is reached, the SYN is refused) and starts over.
#[inline(always)]
pub fn reopen(fwd: &mut CtValue, limit: u32) -> bool {
    let v = fwd as *mut CtValue;
    if fwd.flags & CT_FLAG_RELEASED != 0 {
        if !acquire_slot(fwd.endpoint, limit) {
            return false;
        }
        flags_clear(v, CT_FLAG_RELEASED | CT_FLAG_FIN_FWD | CT_FLAG_FIN_REV | CT_FLAG_SYNACK);
    } else {
        flags_clear(v, CT_FLAG_FIN_FWD | CT_FLAG_FIN_REV | CT_FLAG_SYNACK);
    }
    fwd.state = TCP_STATE_SYN;
    true
}

/// `privatelink_expire`: delete one flow if it is older than the cutoff, and release its
/// connection slot. Input: `EXPIRE_PAD` bytes, then an [`ExpireRequest`].
#[inline(always)]
pub fn expire(ctx: &XdpContext) -> u32 {
    let req = match ptr_at::<ExpireRequest>(ctx, EXPIRE_PAD) {
        Some(r) => unsafe { *r },
        None => return EXPIRE_BAD_INPUT,
    };
    let key = req.key;
    let fwd = match get(&key) {
        Some(v) => *v,
        None => return EXPIRE_KEPT,
    };
    if fwd.kind != CT_KIND_FORWARD {
        return EXPIRE_BAD_INPUT;
    }
    let peer = fwd.peer_key(key.proto);
    let rev_seen = get(&peer).map(|v| v.last_seen_ns).unwrap_or(0);
    if req.cutoff_ns != u64::MAX && (fwd.last_seen_ns > req.cutoff_ns || rev_seen > req.cutoff_ns) {
        return EXPIRE_KEPT;
    }
    // The slot goes back unless the flow gave it back when it closed (or a concurrent
    // expiry did): claimed before the delete, while the entry is still ours to touch.
    if let Some(v) = get(&key) {
        release_flow(v as *mut CtValue, fwd.endpoint);
    }
    if PL_CT.remove(&key).is_err() {
        return EXPIRE_KEPT;
    }
    // Only the call whose delete succeeded gets here: the flow leaves its backend's
    // count exactly once.
    crate::stats::count_backend_flow(fwd.backend, true);
    if PL_CT.remove(&peer).is_ok() {
        count_ports(fwd.endpoint, false);
        EXPIRE_DELETED
    } else {
        EXPIRE_DELETED_NO_PEER
    }
}
