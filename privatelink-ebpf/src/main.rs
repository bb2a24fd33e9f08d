//! privatelink's XDP data path: map declarations and the program entry shims only.
//! Every verdict is counted: `Ok(action)` is returned as is, `Err(drop)` is counted by
//! reason (per endpoint when one is known) and becomes XDP_DROP.
#![no_std]
#![no_main]
#![feature(core_intrinsics)]
#![allow(internal_features)]

mod backend_hop;
mod budget;
mod conntrack;
mod dns;
mod flow;
mod forward;
mod handoff;
mod icmp;
mod lookup;
mod nat;
mod parse;
mod newflow;
mod path;
mod police;
mod reply;
mod replicate;
mod send;
mod sg;
mod standby;
mod stats;
mod sum;
mod tcpstate;
mod turn;
mod verdict;

use aya_ebpf::{
    bindings::{xdp_action, xdp_md},
    macros::{map, xdp},
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, ProgramArray, RingBuf},
    programs::XdpContext,
};
use core::ffi::c_void;
use privatelink_common::*;

/// Arrays userspace reads whole (drift repair, scrapes) are mmap-able: it reads them
/// from memory instead of one syscall per entry. The data path's lookups are the same.
const MMAPABLE: u32 = aya_ebpf::bindings::BPF_F_MMAPABLE;

#[map]
static PL_VPCS: HashMap<u32, VpcInfo> = HashMap::with_max_entries(MAX_VPCS, 0);
#[map]
static PL_EP_IPS: HashMap<EpIpKey, u32> = HashMap::with_max_entries(MAX_ENDPOINTS, 0);
#[map]
static PL_ENDPOINTS: Array<EndpointInfo> = Array::with_max_entries(MAX_ENDPOINTS, MMAPABLE);
/// What each endpoint holds (`EpUse`), shared by all CPUs: changed only with atomic adds.
/// Slot `CLOSED_ANY` keeps only the cursors of the ring of every endpoint's closed flows.
#[map]
static PL_EP_USE: Array<EpUse> = Array::with_max_entries(MAX_ENDPOINTS + 1, MMAPABLE);
/// Flows each consumer VPC holds in the conntrack table, and at `TABLE_FLOWS` the whole
/// table's; atomic adds only.
#[map]
static PL_VPC_FLOWS: Array<u64> = Array::with_max_entries(MAX_VPCS + 1, MMAPABLE);
/// Each endpoint's recently closed flows (`budget::CLOSED_RING` forward keys), then
/// those of every endpoint (`CLOSED_ANY`). Never pinned: a ring that starts empty only
/// reclaims later.
#[map]
static PL_EP_CLOSED: Array<CtKey> = Array::with_max_entries((MAX_ENDPOINTS + 1) * budget::CLOSED_RING, 0);
#[map]
static PL_PORTS: HashMap<PortKey, PortTarget> =
    HashMap::with_max_entries(MAX_SERVICES * MAX_PORTS_PER_SERVICE, 0);
#[map]
static PL_SERVICES: Array<ServiceInfo> = Array::with_max_entries(MAX_SERVICES, MMAPABLE);
#[map]
static PL_BACKENDS: Array<BackendInfo> = Array::with_max_entries(MAX_BACKENDS, MMAPABLE);
#[map]
static PL_MAGLEV: Array<u32> = Array::with_max_entries(MAX_SERVICES * MAGLEV_SIZE, MMAPABLE);
/// Not an LRU: an established flow is never evicted to make room (capacity is set by
/// userspace at load time).
#[map]
static PL_CT: HashMap<CtKey, CtValue> = HashMap::with_max_entries(DEFAULT_CT_CAPACITY, 0);
#[map]
static PL_SNAT_RANGES: LpmTrie<SnatRangeKey, u32> = LpmTrie::with_max_entries(MAX_SNAT_RANGES, 0);
#[map]
static PL_EP_STATS: PerCpuArray<Stats> = PerCpuArray::with_max_entries(MAX_ENDPOINTS, 0);
#[map]
static PL_GSTATS: PerCpuArray<Stats> = PerCpuArray::with_max_entries(1, 0);
#[map]
static PL_VPC_STATS: PerCpuArray<Stats> = PerCpuArray::with_max_entries(MAX_VPCS, 0);
#[map]
static PL_EP_SNAT: Array<u32> = Array::with_max_entries(MAX_ENDPOINTS * MAX_SNAT_PER_ENDPOINT, MMAPABLE);
/// Changed only with atomic adds.
#[map]
static PL_SNAT_CURSOR: Array<u64> = Array::with_max_entries(MAX_ENDPOINTS * MAX_SNAT_PER_ENDPOINT, 0);
/// `MAP_LAYOUT_VERSION`, written by userspace: the data path never reads it.
#[map]
static PL_LAYOUT: Array<u32> = Array::with_max_entries(1, 0);
#[map]
static PL_DNS: LpmTrie<DnsName, DnsEntry> = LpmTrie::with_max_entries(MAX_DNS_NAMES, 0);
#[map]
static PL_DNS_STATS: PerCpuArray<DnsStats> = PerCpuArray::with_max_entries(MAX_VPCS, 0);
/// Per-CPU scratch bytes are summed in (`sum`). Never pinned.
#[map]
static PL_SEGMENT: PerCpuArray<[u32; sum::SCRATCH_WORDS]> = PerCpuArray::with_max_entries(1, 0);
/// Per-CPU scratch a new flow's two entries are built in (`conntrack::create`).
#[map]
static PL_FLOW_SCRATCH: PerCpuArray<CtValue> = PerCpuArray::with_max_entries(2, 0);
#[map]
static PL_DNS_SCRATCH: PerCpuArray<dns::Scratch> = PerCpuArray::with_max_entries(1, 0);
/// Programs the data path tail-calls (`PROGS_*`), filled by the loader; pinned (see
/// `MAP_PROGS`).
#[map]
static PL_PROGS: ProgramArray = ProgramArray::with_max_entries(PROGS_LEN, 0);
#[map]
static PL_SG_SETS: HashMap<u32, SgSet> = HashMap::with_max_entries(MAX_SG_SETS, 0);
#[map]
static PL_EP_RATE: Array<Rate> = Array::with_max_entries(MAX_ENDPOINTS, MMAPABLE);
/// Changed only with compare-and-swap.
#[map]
static PL_EP_TAT: Array<u64> = Array::with_max_entries(MAX_ENDPOINTS * 2, 0);
#[map]
static PL_BACKEND_FLOWS: PerCpuArray<BackendFlows> = PerCpuArray::with_max_entries(MAX_BACKENDS, 0);
#[map]
static PL_ICMP_RATE: PerCpuArray<ReplyRate> = PerCpuArray::with_max_entries(MAX_ENDPOINTS, 0);
/// What the gateway generated per VPC (DNS answers, resets on TCP/53), per CPU. Never
/// pinned: a budget starts anew with the program.
#[map]
static PL_VPC_RATE: PerCpuArray<ReplyRate> = PerCpuArray::with_max_entries(MAX_VPCS, 0);

/// Flow events for the buddy's standby copy (`replicate`). Never pinned.
#[map]
static PL_FLOW_EVENTS: RingBuf = RingBuf::with_byte_size(FLOW_EVENTS_BYTES, 0);
/// `REPL_ON` (set by the daemon) and `REPL_LOST` (atomic adds only). Never pinned.
#[map]
static PL_REPLICATION: Array<u64> = Array::with_max_entries(REPL_SLOTS, 0);
/// The hand-off's settings, the peers it is taken from, and each VPC's interface by
/// id (`handoff`). Written by the daemon; never pinned.
#[map]
static PL_HANDOFF: Array<Handoff> = Array::with_max_entries(1, 0);
#[map]
static PL_PEERS: HashMap<u32, u32> = HashMap::with_max_entries(MAX_PEERS, 0);
#[map]
static PL_VPC_IFINDEX: Array<u32> = Array::with_max_entries(MAX_VPCS, 0);
/// Slices taken over from a dead node (`standby`). Written whole by the daemon.
#[map]
static PL_TAKEN: LpmTrie<SnatRangeKey, u32> = LpmTrie::with_max_entries(MAX_TAKEN, 0);
/// Other nodes' flows, written by the daemon (sized like `PL_CT` at load time).
#[map]
static PL_STANDBY: LruHashMap<CtKey, CtValue> = LruHashMap::with_max_entries(DEFAULT_CT_CAPACITY, 0);

/// The data path (written without `#[xdp]`: the tail call must sit in the program's
/// own body, not in a subprogram, since the object carries no BTF; 6.18 refuses
/// "tail_call is not allowed in subprogs without BTF").
#[unsafe(no_mangle)]
#[unsafe(link_section = "xdp")]
pub extern "C" fn privatelink(raw: *mut xdp_md) -> u32 {
    let ctx = XdpContext::new(raw);
    match path::run(&ctx) {
        Ok(verdict::TO_DNS) => {
            jump(raw, PROGS_DNS, DropReason::DnsDropped)
        }
        Ok(verdict::TO_NEWFLOW) => {
            jump(raw, PROGS_NEWFLOW, DropReason::Inactive)
        }
        Ok(verdict::TO_TCP) => {
            jump(raw, PROGS_TCP, DropReason::NoFlow)
        }
        Ok(verdict::TO_TCP_REV) => {
            jump(raw, PROGS_TCP_REV, DropReason::NoFlow)
        }
        Ok(action) => not_back_to_a_peer(&ctx, action),
        Err(drop) => {
            stats::count_drop(drop);
            xdp_action::XDP_DROP
        }
    }
}

/// A frame a peer handed over is never answered on the spot (XDP_TX would send the
/// answer into the management network with the consumer side's MACs): dropped.
#[inline(always)]
fn not_back_to_a_peer(ctx: &XdpContext, action: u32) -> u32 {
    if action == xdp_action::XDP_TX && handoff::handed(ctx) {
        stats::count_drop(stats::Drop::global(DropReason::NoFlow));
        return xdp_action::XDP_DROP;
    }
    action
}

/// Tail-call the program in `slot` of `PL_PROGS`: bpf_tail_call (helper 12), called
/// directly and inlined into each program's own body (the tail call must not sit in a
/// subprogram, see above). It returns only when the slot is empty: the frame is then
/// dropped and counted under `reason`.
#[inline(always)]
fn jump(raw: *mut xdp_md, slot: u32, reason: DropReason) -> u32 {
    unsafe {
        let call: unsafe extern "C" fn(*mut c_void, *mut c_void, u32) -> i64 = core::mem::transmute(12usize);
        call(raw as *mut c_void, &raw const PL_PROGS as *mut c_void, slot);
    }
    stats::count_drop(stats::Drop::global(reason));
    xdp_action::XDP_DROP
}

/// Clients' TCP segments that may change their flow's state (see `flow`). Reached by
/// tail call only; a SYN reopening a closed flow goes on to the new-flow program.
#[unsafe(no_mangle)]
#[unsafe(link_section = "xdp")]
pub extern "C" fn privatelink_tcp(raw: *mut xdp_md) -> u32 {
    let ctx = XdpContext::new(raw);
    match flow::control(&ctx, true) {
        Ok(verdict::TO_NEWFLOW) => {
            jump(raw, PROGS_NEWFLOW, DropReason::Inactive)
        }
        Ok(action) => not_back_to_a_peer(&ctx, action),
        Err(drop) => {
            stats::count_drop(drop);
            xdp_action::XDP_DROP
        }
    }
}

/// Backends' TCP segments that may change their flow's state. Tail call only.
#[xdp]
pub fn privatelink_tcp_rev(ctx: XdpContext) -> u32 {
    match flow::control(&ctx, false) {
        Ok(action) => action,
        Err(drop) => {
            stats::count_drop(drop);
            xdp_action::XDP_DROP
        }
    }
}

/// A VPC's DNS address: queries answered (see `dns`). Reached by tail call only.
#[xdp]
pub fn privatelink_dns(ctx: XdpContext) -> u32 {
    match dns::run(&ctx) {
        Ok(action) => action,
        Err(drop) => {
            stats::count_drop(drop);
            xdp_action::XDP_DROP
        }
    }
}

/// A new flow's first packet (see `newflow`). Reached by tail call only; a packet
/// whose flow it adopted from the standby table goes through the data path again.
#[unsafe(no_mangle)]
#[unsafe(link_section = "xdp")]
pub extern "C" fn privatelink_newflow(raw: *mut xdp_md) -> u32 {
    let ctx = XdpContext::new(raw);
    match newflow::run(&ctx) {
        Ok(verdict::TO_MAIN) => {
            jump(raw, PROGS_MAIN, DropReason::NoFlow)
        }
        Ok(action) => not_back_to_a_peer(&ctx, action),
        Err(drop) => {
            stats::count_drop(drop);
            xdp_action::XDP_DROP
        }
    }
}

/// Run by the userspace sweeper with BPF_PROG_TEST_RUN, never attached.
#[xdp]
pub fn privatelink_expire(ctx: XdpContext) -> u32 {
    conntrack::expire(&ctx)
}

/// XDP_PASS and nothing else. Attached to the far end of a veth that the data path
/// redirects into: a veth only delivers redirected (and XDP_TX) frames when its peer
/// runs NAPI, which an XDP program guarantees (on 6.18, `ethtool -K PEER gro on` alone
/// did not deliver them).
#[xdp]
pub fn privatelink_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
