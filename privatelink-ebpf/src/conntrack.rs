//! Flows: creation under the connection limit (atomic add, check, roll back), SNAT port
//! choice, paired forward/reverse entries inserted with BPF_NOEXIST and rolled back on
//! failure (the shape of cilium's snat_v4_new_mapping), TCP state, and expiry.
//! Never evicts a live flow. A flow holds a connection slot while it is open: its slot
//! goes back when it closes (`tcpstate` decides when) or is removed, exactly once,
//! decided by an atomic fetch-or of `CT_FLAG_RELEASED` (nf_conncount likewise skips
//! closed TCP connections); a released flow never takes a slot again (a SYN on its
//! tuple removes it and opens a new flow). The active count saturates at zero.

use crate::{
    parse::{ptr_at, Packet},
    stats::Drop,
    budget, PL_CT, PL_EP_SNAT, PL_FLOW_SCRATCH, PL_SNAT_CURSOR,
};
use aya_ebpf::{bindings::BPF_NOEXIST, helpers::bpf_ktime_get_ns, programs::XdpContext};
use core::intrinsics::{atomic_and, atomic_cxchg, atomic_or, atomic_xadd, AtomicOrdering};
use privatelink_common::*;

const EEXIST: i32 = 17;

#[inline(always)]
pub fn now() -> u64 {
    unsafe { bpf_ktime_get_ns() }
}

/// The conntrack key of a packet as it arrives.
#[inline(always)]
pub fn flow_key(p: &Packet, vpc_id: u16) -> CtKey {
    CtKey {
        src_ip_be: p.src_ip,
        dst_ip_be: p.dst_ip,
        src_port_be: p.src_port,
        dst_port_be: p.dst_port,
        vpc_id,
        proto: p.proto,
        _pad: 0,
    }
}

#[inline(always)]
pub fn get(key: &CtKey) -> Option<&'static mut CtValue> {
    PL_CT.get_ptr_mut(key).map(|p| unsafe { &mut *p })
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
pub fn flags_clear(v: *mut CtValue, bits: u8) {
    unsafe { atomic_and::<u32, u32, { AtomicOrdering::SeqCst }>(flags_word(v), !((bits as u32) << CT_FLAGS_SHIFT)) };
}

/// Give the flow's slot back unless somebody already did: exactly once per opening.
#[inline(always)]
pub fn release_flow(v: *mut CtValue, endpoint: u32) {
    if flags_set(v, CT_FLAG_RELEASED) & CT_FLAG_RELEASED == 0 {
        budget::release_slot(endpoint);
    }
}

/// The flow is no longer half-open: its place in the endpoint's half-open budget goes
/// back, once, by whoever clears the bit.
#[inline(always)]
pub fn no_longer_half_open(v: *mut CtValue, endpoint: u32) {
    let holds = unsafe { (v as *mut u8).add(CT_HOLDS_OFFSET) as *mut u32 };
    let old = unsafe { atomic_and::<u32, u32, { AtomicOrdering::SeqCst }>(holds, !CT_HOLDS_HALF_OPEN) };
    if old & CT_HOLDS_HALF_OPEN != 0 {
        budget::give(budget::ep(endpoint, EP_USE_HALF_OPEN), endpoint);
    }
}

/// A half-open flow's handshake completed: it takes its connection slot (the SYN took
/// only a place in the half-open budget). `false`: the limit is reached, or the flow is
/// being removed; nothing is held then.
#[inline(always)]
pub fn establish(v: *mut CtValue, endpoint: u32, limit: u32) -> bool {
    if !budget::acquire_slot(endpoint, limit) {
        return false;
    }
    // Clear RELEASED only if the flow is not dying: its remover must see the slot.
    let w = flags_word(v);
    let mut tries = 0;
    while tries < 8 {
        let cur = unsafe { core::ptr::read_volatile(w) };
        let flags = (cur >> CT_FLAGS_SHIFT) as u8;
        if flags & CT_FLAG_DYING != 0 || flags & CT_FLAG_RELEASED == 0 {
            break;
        }
        let next = cur & !((CT_FLAG_RELEASED as u32) << CT_FLAGS_SHIFT);
        let (_, done) = unsafe { atomic_cxchg::<u32, { AtomicOrdering::SeqCst }, { AtomicOrdering::SeqCst }>(w, cur, next) };
        if done {
            no_longer_half_open(v, endpoint);
            return true;
        }
        tries += 1;
    }
    budget::release_slot(endpoint);
    false
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
    /// TCP: the client's SYN's sequence number (host order).
    pub syn_seq: u32,
}

/// Insert the flow's reverse then forward entry. The reverse insert claims a SNAT port
/// (BPF_NOEXIST makes (snat ip, snat port, backend, service port, proto) unique).
/// Returns the forward entry.
pub enum CreateError {
    /// Another CPU created this very flow first: use its entry.
    Raced,
    Refused(Drop),
}

/// Per-CPU scratch the two entries of a new flow are built in (index 0: reverse, 1:
/// forward): on the stack they pushed the program past its 512 bytes (6.18, LLVM 22).
#[inline(always)]
fn scratch(i: u32) -> Option<&'static mut CtValue> {
    PL_FLOW_SCRATCH.get_ptr_mut(i).map(|p| unsafe { &mut *p })
}

/// Fill a new flow's entry field by field (a struct literal went through the stack).
#[inline(always)]
fn fill(v: &mut CtValue, f: &NewFlow, t: u64, kind: u8) {
    v.last_seen_ns = t;
    v.endpoint = f.endpoint;
    v.kind = kind;
    v.state = if f.key.proto == PROTO_TCP { TCP_STATE_SYN } else { UDP_STATE };
    // A TCP flow holds no slot until its handshake completes, only a place in the
    // half-open budget; a UDP flow took its slot already.
    let tcp = f.key.proto == PROTO_TCP;
    v.flags = if tcp && kind == CT_KIND_FORWARD { CT_FLAG_RELEASED } else { 0 };
    v.route = 0;
    v.holds = if tcp && kind == CT_KIND_FORWARD { CT_HOLDS_HALF_OPEN } else { 0 };
    // The SYN occupies one sequence number: the client's stream continues after it,
    // and the backend can only acknowledge that far.
    let after_syn = f.syn_seq.wrapping_add(1);
    if kind == CT_KIND_REVERSE {
        v.nat_src_ip_be = f.key.dst_ip_be;
        v.nat_dst_ip_be = f.key.src_ip_be;
        v.nat_src_port_be = f.key.dst_port_be;
        v.nat_dst_port_be = f.key.src_port_be;
        v.egress_vpc = f.key.vpc_id;
        v.mtu = f.consumer_mtu;
        v.ifindex = f.consumer_ifindex;
        v.smac = f.gateway_mac;
        v.dmac = f.client_mac;
        v.backend = BACKEND_NONE;
        v.seq_end = 0;
        v.ack = after_syn;
    } else {
        v.nat_dst_ip_be = f.backend_ip;
        v.nat_dst_port_be = f.service_port;
        v.egress_vpc = f.provider_vpc;
        v.mtu = 0;
        v.ifindex = f.provider_ifindex;
        v.smac = [0; 6];
        v.dmac = [0; 6];
        v.backend = f.backend_slot;
        v.seq_end = after_syn;
        v.ack = 0;
    }
}

#[inline(always)]
pub fn create(f: &NewFlow) -> Result<&'static CtValue, CreateError> {
    let t = now();
    let (Some(rev), Some(fwd)) = (scratch(0), scratch(1)) else {
        return Err(CreateError::Refused(Drop::endpoint(DropReason::ConntrackFull, f.endpoint)));
    };
    fill(rev, f, t, CT_KIND_REVERSE);
    let mut rev_key = CtKey {
        src_ip_be: f.backend_ip,
        dst_ip_be: 0,
        src_port_be: f.service_port,
        dst_port_be: 0,
        vpc_id: f.provider_vpc,
        proto: f.key.proto,
        _pad: 0,
    };
    if !claim_snat_port(f, &mut rev_key, rev)? {
        return Err(CreateError::Refused(Drop::endpoint(DropReason::SnatExhausted, f.endpoint)));
    }
    fill(fwd, f, t, CT_KIND_FORWARD);
    fwd.nat_src_ip_be = rev_key.dst_ip_be;
    fwd.nat_src_port_be = rev_key.dst_port_be;
    if let Err(e) = PL_CT.insert(&f.key, &*fwd, BPF_NOEXIST as u64) {
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
    crate::replicate::upsert(&f.key, fwd, &rev_key, rev);
    Ok(fwd)
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
pub fn count_ports(endpoint: u32, claimed: bool) {
    if let Some(s) = crate::stats::slot(endpoint) {
        if claimed {
            s.snat_ports_claimed += 1;
        } else {
            s.snat_ports_released += 1;
        }
    }
}

/// `privatelink_expire`: remove one flow if it is older than the cutoff. Input:
/// `EXPIRE_PAD` bytes, then an [`ExpireRequest`].
#[inline(always)]
pub fn expire(ctx: &XdpContext) -> u32 {
    match ptr_at::<ExpireRequest>(ctx, EXPIRE_PAD) {
        Some(r) => {
            let req = unsafe { *r };
            retire(&req.key, req.cutoff_ns)
        }
        None => EXPIRE_BAD_INPUT,
    }
}

/// Remove the flow whose forward entry is under `key` if both its entries were last
/// seen at or before `cutoff_ns` (`u64::MAX`: whatever their age). `CT_FLAG_DYING`,
/// set atomically first, makes one caller the remover: nothing reopens a dying flow,
/// so its slot is released exactly once (here, unless it closed before) and the
/// entry deleted is the one marked. The backend's count and the SNAT port go back
/// with the deletes. Returns `EXPIRE_*`.
#[inline(always)]
pub fn retire(key: &CtKey, cutoff_ns: u64) -> u32 {
    let Some(v) = get(key) else { return EXPIRE_KEPT };
    if v.kind != CT_KIND_FORWARD {
        return EXPIRE_BAD_INPUT;
    }
    let (endpoint, backend) = (v.endpoint, v.backend);
    let vp = v as *mut CtValue;
    let peer = v.peer_key(key.proto);
    let rev_seen = get(&peer).map(|r| r.last_seen_ns).unwrap_or(0);
    if cutoff_ns != u64::MAX && (v.last_seen_ns > cutoff_ns || rev_seen > cutoff_ns) {
        return EXPIRE_KEPT;
    }
    let old = flags_set(v, CT_FLAG_DYING | CT_FLAG_RELEASED);
    if old & CT_FLAG_DYING != 0 {
        return EXPIRE_KEPT;
    }
    if old & CT_FLAG_RELEASED == 0 {
        budget::release_slot(endpoint);
    }
    no_longer_half_open(vp, endpoint);
    if PL_CT.remove(key).is_err() {
        return EXPIRE_KEPT;
    }
    budget::give_share(endpoint, key.vpc_id);
    crate::stats::count_backend_flow(backend, true);
    crate::replicate::removed(key);
    if PL_CT.remove(&peer).is_ok() {
        count_ports(endpoint, false);
        EXPIRE_DELETED
    } else {
        EXPIRE_DELETED_NO_PEER
    }
}
