//! Flow events: what the data path tells the daemon about its flows so that a buddy
//! node can hold a standby copy of them (issue #33). The XDP programs write one
//! [`FlowEvent`] to the ring buffer `PL_FLOW_EVENTS` when a flow is opened, when its
//! state changes (a TCP handshake completes, a flow closes) and when it is removed;
//! never per packet. Nothing is written unless the daemon switched replication on
//! (`PL_REPLICATION[REPL_ON]`). None of these maps is pinned: a new program starts
//! with an empty ring and replication off, and the daemon that loads it resyncs its
//! buddy with a snapshot of the flow table.

use crate::abi::{CtKey, CtValue};

/// Ring buffer of [`FlowEvent`]s (BPF_MAP_TYPE_RINGBUF).
pub const MAP_FLOW_EVENTS: &str = "PL_FLOW_EVENTS";
/// Bytes of the ring: 4 MiB, about 23,800 events (an event takes its size plus the
/// ring's 8-byte header): 2.4 s of 10,000 new flows a second if the daemon stalls.
pub const FLOW_EVENTS_BYTES: u32 = 4 << 20;
/// Array of `u64`: `REPL_ON` (non-zero: write events), `REPL_LOST` (events the data
/// path could not write, the ring being full), `REPL_TAKING` (non-zero: some slice is
/// taken over, `PL_TAKEN` is not empty), `REPL_ADOPTED` (flows moved from the standby
/// table into the flow table) and `REPL_HELD`. Counters change by atomic adds only.
pub const MAP_REPLICATION: &str = "PL_REPLICATION";
pub const REPL_ON: u32 = 0;
pub const REPL_LOST: u32 = 1;
pub const REPL_TAKING: u32 = 2;
pub const REPL_ADOPTED: u32 = 3;
/// Packets of a flow held in the standby table whose slice is not taken over (yet):
/// dropped without a reset, so that the client retransmits into the takeover.
pub const REPL_HELD: u32 = 4;
pub const REPL_SLOTS: u32 = 5;
/// The SNAT slices this node has taken over from a node that died (LPM trie of
/// `SnatRangeKey`, value unused): a packet of no flow whose flow is in the standby
/// table, with its SNAT address in one of them, adopts that flow. Never pinned: the
/// daemon writes it whole.
pub const MAP_TAKEN: &str = "PL_TAKEN";
/// Slices taken at most (the SNAT ranges of a node, and a few nodes at once).
pub const MAX_TAKEN: u32 = 256;
/// The standby table: other nodes' flows, replicated here, keyed and valued like
/// `PL_CT` (an LRU hash the size of the flow table). Written by the daemon only.
pub const MAP_STANDBY: &str = "PL_STANDBY";

/// The flow was opened or its state changed: both entries as they are now.
pub const FLOW_UPSERT: u8 = 1;
/// The flow was removed (`key` is its forward key; the entries are zero).
pub const FLOW_REMOVED: u8 = 2;

/// One flow event: the forward entry under `key` and the reverse entry under
/// `rev_key`, as the data path holds them.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowEvent {
    /// `bpf_ktime_get_ns()` when the event was written (CLOCK_MONOTONIC).
    pub at_ns: u64,
    /// `FLOW_*`
    pub op: u8,
    pub _pad: [u8; 7],
    pub key: CtKey,
    pub fwd: CtValue,
    pub rev_key: CtKey,
    pub rev: CtValue,
}
const _: () = assert!(size_of::<FlowEvent>() == 176);

impl FlowEvent {
    /// Its bytes as they travel (the struct's own, little endian: fleets are one
    /// architecture; the wire format says so in its version).
    pub fn as_bytes(&self) -> &[u8; 176] {
        // SAFETY: repr(C) of plain integers and byte arrays, no padding left implicit.
        unsafe { &*(self as *const FlowEvent as *const [u8; 176]) }
    }

    /// An event from its bytes (any bytes make some event: validation is the reader's).
    pub fn from_bytes(b: &[u8; 176]) -> FlowEvent {
        // SAFETY: every bit pattern is a valid FlowEvent; read unaligned.
        unsafe { core::ptr::read_unaligned(b.as_ptr() as *const FlowEvent) }
    }
}

/// The hand-off (`PL_HANDOFF`, an array of one): a survivor that is not a dead node's
/// buddy sends the dead node's client packets (TCP segments of no flow here, no copy
/// either) to that buddy, over the management network: the frame whole, behind an
/// outer Ethernet and IPv4 header and a GRE header (transparent Ethernet, the consumer
/// VPC's id as key). The buddy's data path, attached to its management interface,
/// takes them only from its peers (`PL_PEERS`), strips the outer headers and runs the
/// frame as if it had arrived on that VPC's interface (`PL_VPC_IFINDEX`,
/// `PL_INGRESS`). Written by the daemon; none of these maps is pinned.
pub const MAP_HANDOFF: &str = "PL_HANDOFF";
pub const MAP_PEERS: &str = "PL_PEERS";
pub const MAP_VPC_IFINDEX: &str = "PL_VPC_IFINDEX";
/// Peers (management addresses) at most.
pub const MAX_PEERS: u32 = 64;
/// Outer Ethernet, IPv4 and GRE with a key.
pub const HANDOFF_OVERHEAD: u32 = 14 + 20 + 8;
pub const GRE_FLAG_KEY: u16 = 0x2000;
pub const ETH_P_TEB: u16 = 0x6558;
pub const PROTO_GRE: u8 = 47;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Handoff {
    /// This node's management interface (0: no hand-off either way).
    pub mgmt_ifindex: u32,
    /// Non-zero: send the packets described above to `daddr_be`.
    pub active: u32,
    /// This node's management address and MAC; the buddy's, and the MAC of the next
    /// hop towards it.
    pub saddr_be: u32,
    pub daddr_be: u32,
    pub smac: [u8; 6],
    pub dmac: [u8; 6],
    /// The management interface's MTU (a frame that would not fit is dropped).
    pub mtu: u32,
}
const _: () = assert!(size_of::<Handoff>() == 32);
