//! Map keys, values, names and limits shared by the kernel and user side.
//! Layout rules: `#[repr(C)]`, fixed-width integers, explicit padding, a size assertion
//! beside each type, no enums/bool/Option inside map types. `_be` fields are network order.

use core::mem::size_of;

// ---- map names (BPF object names are limited to 15 characters) ----
pub const MAP_VPCS: &str = "PL_VPCS";
pub const MAP_EP_IPS: &str = "PL_EP_IPS";
pub const MAP_ENDPOINTS: &str = "PL_ENDPOINTS";
pub const MAP_PORTS: &str = "PL_PORTS";
pub const MAP_SERVICES: &str = "PL_SERVICES";
pub const MAP_BACKENDS: &str = "PL_BACKENDS";
pub const MAP_MAGLEV: &str = "PL_MAGLEV";
pub const MAP_CT: &str = "PL_CT";
pub const MAP_SNAT_RANGES: &str = "PL_SNAT_RANGES";
pub const MAP_EP_STATS: &str = "PL_EP_STATS";
pub const MAP_GLOBAL_STATS: &str = "PL_GSTATS";
/// Counters of what a VPC interface dropped that no endpoint can be charged with
/// (indexed by VPC id).
pub const MAP_VPC_STATS: &str = "PL_VPC_STATS";
/// Per endpoint and CPU: the ICMP the gateway generated in the current second.
pub const MAP_ICMP_RATE: &str = "PL_ICMP_RATE";
/// An endpoint's SNAT addresses: `u32` at `endpoint * MAX_SNAT_PER_ENDPOINT + i`.
pub const MAP_EP_SNAT: &str = "PL_EP_SNAT";
/// Per SNAT address of an endpoint (same index): the next port to try, a cursor that
/// rotates over the whole port range so a just-freed port is reused as late as possible.
pub const MAP_SNAT_CURSOR: &str = "PL_SNAT_CURSOR";
/// Per backend slot and CPU: the flows the data path opened to the backend and the ones
/// it removed ([`BackendFlows`]); a backend's live flows are the difference.
pub const MAP_BACKEND_FLOWS: &str = "PL_BACKEND_FLOWS";
/// What each endpoint holds of the shared data path ([`EpUse`], array by endpoint).
pub const MAP_EP_USE: &str = "PL_EP_USE";
/// Flows (every state) each consumer VPC holds in the conntrack table (`u64` by VPC id).
pub const MAP_VPC_FLOWS: &str = "PL_VPC_FLOWS";
/// Every map of the data path (what a pin directory holds).
pub const ALL_MAPS: [&str; 25] = [
    MAP_VPCS, MAP_EP_IPS, MAP_ENDPOINTS, MAP_PORTS, MAP_SERVICES, MAP_BACKENDS,
    MAP_MAGLEV, MAP_CT, MAP_SNAT_RANGES, MAP_EP_STATS, MAP_GLOBAL_STATS, MAP_VPC_STATS, MAP_ICMP_RATE,
    MAP_EP_SNAT, MAP_SNAT_CURSOR, crate::dns::MAP_DNS, crate::dns::MAP_DNS_STATS, crate::sg::MAP_SG_SETS, crate::police::MAP_EP_RATE, crate::police::MAP_EP_TAT, MAP_BACKEND_FLOWS,
    MAP_EP_USE, MAP_VPC_FLOWS, MAP_PROGS, MAP_LAYOUT,
];

/// Version of the maps' layout (keys, values, the set of maps), kept in `PL_LAYOUT`
/// (an array of one `u32`) beside the pinned maps; a daemon never reuses pins of another
/// layout. Pins without `PL_LAYOUT` are layout 1. Bumped whenever a map type or the map
/// set changes: 2 = per-VPC counters, ICMP rate, 32 drop reasons, MTUs; 3 = private DNS,
/// security groups, bandwidth limits; 4 = the flow's backend slot in `CtValue`,
/// per-backend flow counters, mmap-able arrays (`BPF_F_MMAPABLE`) for those userspace
/// reads whole; 5 = sequence tracking in `CtValue` (64 bytes), a budget per kind of
/// generated reply in `ReplyRate`, shares of the conntrack table (`EpUse`,
/// `PL_VPC_FLOWS`, limits in `EndpointInfo` and `VpcInfo`); 6 = the table's own flow
/// count and limit (`TABLE_FLOWS`, `VpcInfo::table_flow_limit`) and a ring of every
/// endpoint's closed flows (`CLOSED_ANY`).
pub const MAP_LAYOUT_VERSION: u32 = 6;
pub const MAP_LAYOUT: &str = "PL_LAYOUT";

// ---- program names ----
/// A VPC's DNS address (tail-called from the data path through `PL_PROGS`).
pub const PROG_DNS: &str = "privatelink_dns";
/// Program array of the tail calls; filled by the loader at every load. Pinned: the
/// kernel clears a program array's entries when its last user reference goes, so
/// without a pin every tail call (new flows, TCP control segments, DNS) would fail the
/// moment the daemon exits, although its pinned data path stays attached.
pub const MAP_PROGS: &str = "PL_PROGS";
pub const PROGS_DNS: u32 = 0;
/// A new flow's first packet (tail-called from the data path: a program of its own,
/// with a verifier budget of its own).
pub const PROG_NEWFLOW: &str = "privatelink_newflow";
pub const PROGS_NEWFLOW: u32 = 1;
/// TCP segments that may change a flow's state (handshake, FIN, RST, closing flows):
/// tail-called from the data path, whose fast path keeps data and ACKs.
pub const PROG_TCP: &str = "privatelink_tcp";
pub const PROGS_TCP: u32 = 2;
/// The same for the backends' segments (a program of its own: one program for both
/// directions passed the verifier's budget).
pub const PROG_TCP_REV: &str = "privatelink_tcp_rev";
pub const PROGS_TCP_REV: u32 = 3;
/// The data path itself: the new-flow program runs it again for a packet whose flow
/// it has just adopted from the standby table.
pub const PROGS_MAIN: u32 = 4;
pub const PROGS_LEN: u32 = 5;
/// The data path, attached to every VPC-facing interface.
pub const PROG_XDP: &str = "privatelink";
/// Deletes one expired flow and decrements its endpoint's active count exactly once.
/// Never attached: userspace runs it with BPF_PROG_TEST_RUN (see [`ExpireRequest`]).
pub const PROG_EXPIRE: &str = "privatelink_expire";
/// XDP_PASS only: gives a veth peer the NAPI it needs to receive redirected frames.
pub const PROG_PASS: &str = "privatelink_pass";
/// In the benchmarks' object (`privatelink-bench`, built by `cargo xtask bench`, never
/// loaded by the daemon): the reference R1, parse + `bpf_fib_lookup` + redirect, no NAT.
pub const PROG_FWD: &str = "privatelink_fwd";
/// In the benchmarks' object: the traffic generator, XDP_TX (run in live-frames mode, never attached).
pub const PROG_TX: &str = "privatelink_tx";
/// Its frame: a 60-byte Ethernet frame (64 on the wire), rewritten on every send.
pub const MAP_TX_FRAME: &str = "PL_TX_FRAME";
/// In the benchmarks' object: micro-benchmarks of the new-flow path's parts. Each parses
/// the frame into a conntrack key and then does nothing (`_PARSE`), inserts it with
/// BPF_NOEXIST into `PL_BENCH_CT` (`_CT_INSERT`), or looks it up (`_CT_LOOKUP`).
pub const PROG_BENCH_PARSE: &str = "privatelink_bench_parse";
pub const PROG_BENCH_CT_INSERT: &str = "privatelink_bench_ct_insert";
pub const PROG_BENCH_CT_LOOKUP: &str = "privatelink_bench_ct_lookup";
/// In the benchmarks' object: R1 plus a new flow's unavoidable map work in a
/// two-entry design (a miss, then two BPF_NOEXIST inserts into `PL_BENCH_CT`), and in
/// a one-entry design (`_ONE`: a miss and one insert).
pub const PROG_BENCH_FLOOR: &str = "privatelink_bench_floor";
pub const PROG_BENCH_FLOOR_ONE: &str = "privatelink_bench_floor_one";
/// A hash of conntrack entries sized like the product's (`max_entries` set at load).
pub const MAP_BENCH_CT: &str = "PL_BENCH_CT";
/// In the benchmarks' object: a new flow's cost in an open-addressing table of our own
/// (an array of `BENCH_SLOTS` slots): hash the key, claim an empty slot with a
/// compare-and-swap (probing up to `BENCH_SLOT_PROBES` slots), write key and value.
/// A design measured, not the product's.
pub const PROG_BENCH_SLOT_CLAIM: &str = "privatelink_bench_slot_claim";
pub const MAP_BENCH_SLOTS: &str = "PL_BENCH_SLOTS";
pub const BENCH_SLOTS: u32 = 1 << 21;
pub const BENCH_SLOT_PROBES: u32 = 8;
pub const TX_FRAME_LEN: usize = 60;

// ---- capacities ----
pub const MAX_VPCS: u32 = 256;
pub const MAX_ENDPOINTS: u32 = 16_384;
pub const MAX_SERVICES: u32 = 1_024;
/// Port mappings per service: the consoles allow at most 50.
pub const MAX_PORTS_PER_SERVICE: u32 = 50;
pub const MAX_BACKENDS: u32 = 16_384;
/// Maglev lookup table size per service; a prime well above the backend count
/// (Maglev paper: M >> N keeps the load imbalance small).
pub const MAGLEV_SIZE: u32 = 1_021;
pub const MAX_SNAT_RANGES: u32 = 1_024;
/// Default conntrack capacity; userspace may change it at load time.
pub const DEFAULT_CT_CAPACITY: u32 = 262_144;
/// SNAT source ports handed out per (snat ip, backend, proto).
pub const SNAT_PORT_MIN: u16 = 1_024;
pub const SNAT_PORT_MAX: u16 = 65_535;
/// SNAT addresses an endpoint may have (`services[].snat_addresses_per_endpoint`).
pub const MAX_SNAT_PER_ENDPOINT: u32 = 16;
/// Ports a new flow probes on each of its endpoint's SNAT addresses, from that
/// address's cursor, before it moves on to the next address.
pub const SNAT_PROBES_PER_ADDRESS: u32 = 8;
/// Index of "no backend" in the Maglev table.
pub const BACKEND_NONE: u32 = u32::MAX;

pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_ICMP: u8 = 1;

/// Why the data path dropped (or refused) a packet. `#[repr(u32)]`, never renumbered;
/// retired values stay reserved. Stored in maps as the `u32` index into `Stats::drops`.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// Truncated header, bad IHL, bad version or lengths.
    Malformed = 1,
    /// An IPv4 fragment addressed to an endpoint or the SNAT range.
    Fragment = 2,
    /// An endpoint IP, but no port mapping for that protocol and port.
    UnmappedPort = 3,
    /// The endpoint waits for the provider's approval.
    Pending = 4,
    /// The provider rejected the endpoint.
    Rejected = 5,
    /// The endpoint's concurrent connection limit is reached.
    OverLimit = 6,
    /// No backend of the service is up.
    NoBackend = 7,
    /// No free SNAT port towards the chosen backend.
    SnatExhausted = 8,
    /// The conntrack table is full.
    ConntrackFull = 9,
    /// A packet of no known flow: a non-SYN TCP segment, or traffic into the SNAT range.
    NoFlow = 10,
    /// The FIB has no usable route to the destination.
    NoRoute = 11,
    /// The endpoint is neither accepted, pending nor rejected (failed, deleting).
    Inactive = 12,
    /// For neither an endpoint, a flow nor the gateway itself: the gateway never routes
    /// between VPCs on its own.
    NotRouted = 13,
    /// An 802.1Q / 802.1ad tagged frame on a VPC interface.
    Vlan = 14,
    /// IPv6 on a VPC interface (not supported yet).
    Ipv6 = 15,
    /// Arrived with TTL <= 1: not forwarded; the sender gets a time-exceeded.
    TtlExceeded = 16,
    /// DF set and larger than the next hop's MTU: not forwarded; the sender gets a
    /// fragmentation-needed with that MTU.
    FragNeeded = 17,
    /// An ICMP answer (error or echo reply) was due, but its endpoint's rate was spent.
    IcmpRateLimited = 18,
    /// ICMP that cannot be translated safely (IP options in or around the quote, a
    /// quote too short) or is not answered (types other than echo request to an
    /// endpoint).
    IcmpUnsupported = 19,
    /// Sent to a VPC's DNS address but not answerable: too short for a DNS header, a
    /// response (QR set), IP options, or not UDP/TCP port 53.
    DnsDropped = 20,
    /// A new flow (or a ping) the endpoint's security groups do not allow: dropped
    /// silently, as cloud security groups do.
    SecurityGroup = 21,
    /// Over the endpoint's bandwidth limit in its direction (policed, not paced).
    OverBandwidth = 22,
    /// TCP that no connection sends and that would change a flow's state: SYN with FIN
    /// or RST, a RST outside the sequence window the gateway tracked or with a bad
    /// checksum, data after the flow was reset.
    InvalidTcp = 23,
    /// Larger than the next hop's MTU without DF: the gateway does not fragment, and
    /// never hands a rewritten frame to the kernel's routing.
    TooBig = 24,
    /// The next hop's MAC is not resolved yet (the daemon keeps backends' neighbours
    /// resolved; a rewritten frame is never handed to the kernel to resolve it).
    NoNeighbour = 25,
    /// The FIB sent a flow's packet out of an interface that is not its VPC's.
    ForeignEgress = 26,
    /// An IPv4 frame not addressed to the interface's MAC (the kernel would drop it too).
    ForeignMac = 27,
    /// A DNS answer was due, but the VPC's DNS budget for this second was spent.
    DnsRateLimited = 28,
    /// An ICMP answer or a DNS answer would go to an address no host has (0/8, 127/8,
    /// 224/4, 240/4, broadcast: RFC 1812 4.3.2.7, 5.3.7). (A reset that may not go out
    /// leaves its packet counted under the reason it was refused for.)
    BadSource = 29,
    /// A SYN over its endpoint's budget of half-open connections (a SYN flood against
    /// one endpoint takes that budget, not the endpoint's open connections nor anybody
    /// else's table).
    HalfOpenLimit = 30,
    /// A new flow over its endpoint's or its consumer VPC's share of the conntrack
    /// table, with no closed flow of the endpoint left to reclaim.
    FlowShare = 31,
}

pub const DROP_REASON_SLOTS: usize = 32;

impl DropReason {
    pub const ALL: [DropReason; 31] = [
        DropReason::Malformed,
        DropReason::Fragment,
        DropReason::UnmappedPort,
        DropReason::Pending,
        DropReason::Rejected,
        DropReason::OverLimit,
        DropReason::NoBackend,
        DropReason::SnatExhausted,
        DropReason::ConntrackFull,
        DropReason::NoFlow,
        DropReason::NoRoute,
        DropReason::Inactive,
        DropReason::NotRouted,
        DropReason::Vlan,
        DropReason::Ipv6,
        DropReason::TtlExceeded,
        DropReason::FragNeeded,
        DropReason::IcmpRateLimited,
        DropReason::IcmpUnsupported,
        DropReason::DnsDropped,
        DropReason::SecurityGroup,
        DropReason::OverBandwidth,
        DropReason::InvalidTcp,
        DropReason::TooBig,
        DropReason::NoNeighbour,
        DropReason::ForeignEgress,
        DropReason::ForeignMac,
        DropReason::DnsRateLimited,
        DropReason::BadSource,
        DropReason::HalfOpenLimit,
        DropReason::FlowShare,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::Fragment => "fragment",
            DropReason::UnmappedPort => "unmapped_port",
            DropReason::Pending => "pending",
            DropReason::Rejected => "rejected",
            DropReason::OverLimit => "over_limit",
            DropReason::NoBackend => "no_backend",
            DropReason::SnatExhausted => "snat_exhausted",
            DropReason::ConntrackFull => "conntrack_full",
            DropReason::NoFlow => "no_flow",
            DropReason::NoRoute => "no_route",
            DropReason::Inactive => "inactive",
            DropReason::NotRouted => "not_routed",
            DropReason::Vlan => "vlan",
            DropReason::Ipv6 => "ipv6",
            DropReason::TtlExceeded => "ttl_exceeded",
            DropReason::FragNeeded => "frag_needed",
            DropReason::IcmpRateLimited => "icmp_rate_limited",
            DropReason::IcmpUnsupported => "icmp_unsupported",
            DropReason::DnsDropped => "dns_dropped",
            DropReason::SecurityGroup => "security_group",
            DropReason::OverBandwidth => "over_bandwidth",
            DropReason::InvalidTcp => "invalid_tcp",
            DropReason::TooBig => "too_big",
            DropReason::NoNeighbour => "no_neighbour",
            DropReason::ForeignEgress => "foreign_egress",
            DropReason::ForeignMac => "foreign_mac",
            DropReason::DnsRateLimited => "dns_rate_limited",
            DropReason::BadSource => "bad_source",
            DropReason::HalfOpenLimit => "half_open_limit",
            DropReason::FlowShare => "flow_share",
        }
    }
}

impl TryFrom<u32> for DropReason {
    type Error = u32;
    fn try_from(v: u32) -> Result<Self, u32> {
        DropReason::ALL.into_iter().find(|r| *r as u32 == v).ok_or(v)
    }
}

/// Key of `PL_VPCS`: the ifindex of a VPC-facing interface.
/// Value: what the data path knows of that VPC.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VpcInfo {
    /// Small id of the VPC, part of every conntrack key (VPC ranges may overlap).
    pub vpc_id: u16,
    /// The interface's MTU (what fits towards this VPC's hosts).
    pub mtu: u16,
    /// Routing table used for FIB lookups towards this VPC's hosts; 0 = main table.
    pub fib_table: u32,
    /// MAC of the gateway's interface, used for ARP answers.
    pub mac: [u8; 6],
    pub _pad2: [u8; 2],
    /// Flows (every state) this VPC's consumers may hold in the conntrack table: its
    /// share; 0 = no share of its own (a provider-only VPC opens no flows).
    pub flow_limit: u32,
    /// Flows the whole table holds (the same in every VPC's row): past it, a new flow
    /// first reclaims a closed flow of any tenant (`CLOSED_ANY`), then is refused.
    pub table_flow_limit: u32,
}
const _: () = assert!(size_of::<VpcInfo>() == 24);
/// Slot of `PL_VPC_FLOWS` (one past the VPCs') that counts every flow of the table.
pub const TABLE_FLOWS: u32 = MAX_VPCS;
/// Slot of `PL_EP_USE` (one past the endpoints') whose ring (`PL_EP_CLOSED`) holds the
/// most recently closed flows of every endpoint.
pub const CLOSED_ANY: u32 = MAX_ENDPOINTS;

/// Key of `PL_EP_IPS`: an endpoint address inside a VPC. Value: `u32` endpoint index,
/// or `EP_GATEWAY_OWN` for an address of the gateway itself on that VPC's interface
/// (traffic to it goes up to the kernel).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct EpIpKey {
    pub ip_be: u32,
    pub vpc_id: u16,
    pub _pad: u16,
}
const _: () = assert!(size_of::<EpIpKey>() == 8);

/// `PL_EP_IPS` value of the gateway's own addresses.
pub const EP_GATEWAY_OWN: u32 = u32::MAX;

pub const EP_STATE_ACCEPTED: u8 = 1;
pub const EP_STATE_PENDING: u8 = 2;
pub const EP_STATE_REJECTED: u8 = 3;
/// failed, creating, deleting: passes nothing.
pub const EP_STATE_INACTIVE: u8 = 4;

/// Value of `PL_ENDPOINTS` (array, index = endpoint index).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EndpointInfo {
    pub service: u32,
    /// Key of its security groups' rule set in `PL_SG_SETS`; 0: no group (all allowed).
    /// (Layout 2 kept a retired SNAT address here, always 0.)
    pub sg_set: u32,
    /// Concurrent connections allowed; 0 refuses every new flow.
    pub conn_limit: u32,
    /// One of `EP_STATE_*`; 0 = slot unused.
    pub state: u8,
    /// SNAT addresses of the endpoint in `PL_EP_SNAT` (0 counts as 1).
    pub snat_count: u8,
    /// MSS that TCP SYNs and SYN-ACKs of this endpoint's flows are clamped to; 0 = off.
    pub mss_clamp: u16,
    /// Half-open TCP connections (SYN seen, handshake not completed) allowed at once.
    pub half_open_limit: u32,
    /// Flows of every state (open, half-open, closing, UDP) this endpoint may hold in
    /// the conntrack table: its share.
    pub flow_limit: u32,
}
const _: () = assert!(size_of::<EndpointInfo>() == 24);

/// Value of `PL_EP_USE` (array, index = endpoint): what the endpoint holds, each
/// changed only with atomic adds and never below zero. `open`: connection slots (TCP
/// from the completed handshake until it closes, UDP while the flow lives); `half_open`:
/// TCP flows whose handshake has not completed; `flows`: its flows in the table, every
/// state; `closed` and `reclaimed`: how many of its closed flows went into its ring and
/// how many were taken out of it (a FIFO: the oldest goes first).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EpUse {
    pub open: u64,
    pub half_open: u64,
    pub flows: u64,
    pub closed: u64,
    pub reclaimed: u64,
}
const _: () = assert!(size_of::<EpUse>() == 40);
/// Byte offsets of `EpUse`'s counters (the data path adds to them atomically).
pub const EP_USE_OPEN: usize = 0;
pub const EP_USE_HALF_OPEN: usize = 8;
pub const EP_USE_FLOWS: usize = 16;
pub const EP_USE_CLOSED: usize = 24;
pub const EP_USE_RECLAIMED: usize = 32;

/// Key of `PL_PORTS`: a port mapping of a service. Value: [`PortTarget`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PortKey {
    pub service: u32,
    pub endpoint_port_be: u16,
    pub proto: u8,
    pub _pad: u8,
}
const _: () = assert!(size_of::<PortKey>() == 8);

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortTarget {
    pub service_port_be: u16,
    pub _pad: u16,
}
const _: () = assert!(size_of::<PortTarget>() == 4);

/// Value of `PL_SERVICES` (array, index = service index).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServiceInfo {
    /// The provider VPC's interface on the gateway.
    pub ifindex: u32,
    /// Retired (was a routing table the data path never read: it takes the provider
    /// VPC's table from `VpcInfo`). Kept zero so pinned maps keep their layout.
    pub _reserved: u32,
    pub vpc_id: u16,
    /// 1 when the slot is in use.
    pub active: u8,
    pub _pad: [u8; 5],
}
const _: () = assert!(size_of::<ServiceInfo>() == 16);

/// Value of `PL_BACKENDS` (array, index = global backend index).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BackendInfo {
    pub ip_be: u32,
    /// `BACKEND_FLAG_UP` when it may take new flows.
    pub flags: u32,
}
const _: () = assert!(size_of::<BackendInfo>() == 8);
pub const BACKEND_FLAG_UP: u32 = 1;

pub const CT_KIND_FORWARD: u8 = 1;
pub const CT_KIND_REVERSE: u8 = 2;

pub const TCP_STATE_SYN: u8 = 1;
pub const TCP_STATE_ESTABLISHED: u8 = 2;
pub const TCP_STATE_CLOSING: u8 = 3;
/// UDP flows carry this state.
pub const UDP_STATE: u8 = 4;

/// `CtValue::route` of a forward entry whose next hop is known.
pub const CT_ROUTE_CACHED: u8 = 1;

/// Forward entries: the client's (`_FWD`) or the backend's (`_REV`) FIN was forwarded.
pub const CT_FLAG_FIN_FWD: u8 = 1;
pub const CT_FLAG_FIN_REV: u8 = 2;
/// The backend answered the SYN; the client's ACK then establishes the flow.
pub const CT_FLAG_SYNACK: u8 = 4;
/// The flow's connection slot has been given back (it closed, or expired). Set with an
/// atomic fetch-or by whoever releases first, so a slot is released exactly once; every
/// write to `flags` is atomic for that reason.
pub const CT_FLAG_RELEASED: u8 = 8;
/// Forward entries: the other side acknowledged the client's (`_FWD`) or the backend's
/// (`_REV`) FIN. Both: the connection ended (RFC 793 3.5), the slot goes back.
pub const CT_FLAG_FIN_FWD_ACKED: u8 = 16;
pub const CT_FLAG_FIN_REV_ACKED: u8 = 32;
/// Forward entries: closed by a reset the gateway accepted and forwarded; from then on
/// either side's segments other than a RST (and the client's new SYN) are answered with
/// a reset and dropped, so the connection ends at both ends as it did at the gateway.
/// On reverse entries too (set with the forward entry's).
pub const CT_FLAG_RESET: u8 = 64;
/// Forward entries: being removed (expiry, or a SYN reopening the tuple); nothing
/// reopens or re-releases it. Whoever sets it first removes the flow.
pub const CT_FLAG_DYING: u8 = 128;
/// Reverse entries (the bit is `CT_FLAG_FIN_FWD`'s, unused there): the client's FIN is
/// waiting for the backend's acknowledgement, so the backend's ACKs are compared with
/// the forward entry's `seq_end`.
pub const CT_FLAG_PEER_FIN: u8 = 1;
/// Reverse entries (`CT_FLAG_SYNACK`'s bit): the backend's SYN-ACK passed, so its
/// `seq_end` and `ack` are known.
pub const CT_FLAG_REV_KNOWN: u8 = 4;
/// `CtValue::holds`: the flow is half-open and counts in its endpoint's `half_open`.
pub const CT_HOLDS_HALF_OPEN: u32 = 1;
/// Byte offset of `CtValue::holds`.
pub const CT_HOLDS_OFFSET: usize = 52;
/// Byte offset of the 32-bit word holding `kind`, `state`, `flags`, `route`, and the
/// shift of `flags` in it (little endian): what atomic flag updates operate on.
pub const CT_FLAGS_WORD_OFFSET: usize = 12;
pub const CT_FLAGS_SHIFT: u32 = 16;

/// Key of `PL_CT`: a packet's 5-tuple as it arrives, plus the VPC it arrives from.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CtKey {
    pub src_ip_be: u32,
    pub dst_ip_be: u32,
    pub src_port_be: u16,
    pub dst_port_be: u16,
    pub vpc_id: u16,
    pub proto: u8,
    pub _pad: u8,
}
const _: () = assert!(size_of::<CtKey>() == 16);

impl CtKey {
    /// The key of the packets that answer this one (same VPC, swapped ends).
    pub const fn reverse(&self) -> CtKey {
        CtKey {
            src_ip_be: self.dst_ip_be,
            dst_ip_be: self.src_ip_be,
            src_port_be: self.dst_port_be,
            dst_port_be: self.src_port_be,
            vpc_id: self.vpc_id,
            proto: self.proto,
            _pad: 0,
        }
    }
}

/// Value of `PL_CT`. A flow has two entries: the forward one (consumer -> endpoint)
/// holds the flow's TCP state; the reverse one (backend -> SNAT address) points back.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CtValue {
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) of the last packet in this direction.
    pub last_seen_ns: u64,
    pub endpoint: u32,
    /// `CT_KIND_*`
    pub kind: u8,
    /// `TCP_STATE_*` or `UDP_STATE` (kept on the forward entry)
    pub state: u8,
    /// `CT_FLAG_*` (the flow's on the forward entry; a few of its own on the reverse one)
    pub flags: u8,
    /// Forward entries: `CT_ROUTE_CACHED` once `ifindex`/`smac`/`dmac` hold the next
    /// hop towards the backend (written after them).
    pub route: u8,
    /// The packet after NAT: its new source and destination.
    pub nat_src_ip_be: u32,
    pub nat_dst_ip_be: u32,
    pub nat_src_port_be: u16,
    pub nat_dst_port_be: u16,
    /// The VPC the rewritten packet goes to.
    pub egress_vpc: u16,
    /// MTU of `ifindex` once the hop is known (reverse entries: from the start; forward
    /// entries: with `route`); 0 = unknown, not checked.
    pub mtu: u16,
    /// Egress interface. Reverse entries learn it (and the MACs) from the flow's first
    /// packet: overlapping consumer VPCs cannot be told apart by a route lookup. Forward
    /// entries start with the provider VPC's interface (the FIB lookup's input) and
    /// cache the FIB's answer at their first established packet (see `route`).
    pub ifindex: u32,
    pub smac: [u8; 6],
    pub dmac: [u8; 6],
    /// Forward entries: the backend's slot in `PL_BACKENDS` (its flow counters in
    /// `PL_BACKEND_FLOWS`); `BACKEND_NONE` on reverse entries and on entries the data
    /// path did not open.
    pub backend: u32,
    /// Forward entries: what the flow holds of its endpoint's budgets besides its slot
    /// (`CT_HOLDS_*`), each given back once by whoever clears its bit (atomic and).
    pub holds: u32,
    /// TCP, host order: one past the highest sequence number this entry's sender (the
    /// client for forward entries, the backend for reverse ones) has sent, SYN and FIN
    /// included (see `tcp::rst_in_window`); reverse entries: known once
    /// `CT_FLAG_REV_KNOWN` is set.
    pub seq_end: u32,
    /// TCP, host order: the highest acknowledgement this entry's sender has sent of the
    /// other side's stream (set at creation on reverse entries to the client's SYN + 1).
    pub ack: u32,
}
const _: () = assert!(size_of::<CtValue>() == 64);
const _: () = assert!(core::mem::offset_of!(CtValue, holds) == CT_HOLDS_OFFSET);
const _: () = assert!(core::mem::offset_of!(CtValue, flags) == CT_FLAGS_WORD_OFFSET + (CT_FLAGS_SHIFT / 8) as usize);

impl Default for CtValue {
    fn default() -> CtValue {
        CtValue {
            last_seen_ns: 0,
            endpoint: 0,
            kind: 0,
            state: 0,
            flags: 0,
            route: 0,
            nat_src_ip_be: 0,
            nat_dst_ip_be: 0,
            nat_src_port_be: 0,
            nat_dst_port_be: 0,
            egress_vpc: 0,
            mtu: 0,
            ifindex: 0,
            smac: [0; 6],
            dmac: [0; 6],
            backend: BACKEND_NONE,
            holds: 0,
            seq_end: 0,
            ack: 0,
        }
    }
}

/// Value of `PL_BACKEND_FLOWS` (per CPU, per backend slot): counted by the data path
/// when it opens a flow to the backend and when it removes the flow's entries, so a
/// backend's live flows are read in O(1), never by walking the table.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BackendFlows {
    pub opened: u64,
    pub removed: u64,
}

impl BackendFlows {
    /// Sum over CPUs.
    pub fn add(&mut self, o: &BackendFlows) {
        self.opened = self.opened.wrapping_add(o.opened);
        self.removed = self.removed.wrapping_add(o.removed);
    }
    /// Flows open now (a sum read while CPUs count may be a flow off for an instant:
    /// never below zero).
    pub fn live(&self) -> u64 {
        self.opened.saturating_sub(self.removed)
    }
}

impl CtValue {
    /// The key of this flow's other entry: the rewritten packet, answered.
    pub const fn peer_key(&self, proto: u8) -> CtKey {
        CtKey {
            src_ip_be: self.nat_dst_ip_be,
            dst_ip_be: self.nat_src_ip_be,
            src_port_be: self.nat_dst_port_be,
            dst_port_be: self.nat_src_port_be,
            vpc_id: self.egress_vpc,
            proto,
            _pad: 0,
        }
    }
}

/// Key of `PL_SNAT_RANGES` (LPM trie, data part): a SNAT range's network address.
/// Traffic into a range with no flow is dropped: access is one-way.
pub type SnatRangeKey = u32;

/// Per-CPU counters, per endpoint (`PL_EP_STATS`) and global (`PL_GSTATS`, index 0,
/// for packets no endpoint can be charged with).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub fwd_packets: u64,
    pub fwd_bytes: u64,
    pub rev_packets: u64,
    pub rev_bytes: u64,
    pub new_flows: u64,
    /// TCP resets the gateway sent on its own (over limit, no backend, no flow...).
    pub resets_sent: u64,
    /// ARP requests answered.
    pub arp_replies: u64,
    /// ICMP the gateway generated: echo replies, time-exceeded, fragmentation-needed.
    pub icmp_sent: u64,
    /// Releases of a connection slot found the active count at zero (never expected:
    /// the count saturates instead of wrapping).
    pub slot_underflows: u64,
    /// SNAT ports claimed by new flows, and given back when their flows went: ports in
    /// use = claimed - released (each a sum over CPUs).
    pub snat_ports_claimed: u64,
    pub snat_ports_released: u64,
    /// Indexed by `DropReason as usize`.
    pub drops: [u64; DROP_REASON_SLOTS],
}
const _: () = assert!(size_of::<Stats>() == 11 * 8 + 8 * DROP_REASON_SLOTS);

impl Stats {
    pub fn drop_count(&self, r: DropReason) -> u64 {
        self.drops.get(r as usize).copied().unwrap_or(0)
    }

    /// SNAT ports held, as the data path counts them (claimed less released).
    pub fn snat_ports_in_use(&self) -> u64 {
        self.snat_ports_claimed.wrapping_sub(self.snat_ports_released)
    }

    pub fn add(&mut self, o: &Stats) {
        self.fwd_packets += o.fwd_packets;
        self.fwd_bytes += o.fwd_bytes;
        self.rev_packets += o.rev_packets;
        self.rev_bytes += o.rev_bytes;
        self.new_flows += o.new_flows;
        self.resets_sent += o.resets_sent;
        self.arp_replies += o.arp_replies;
        self.icmp_sent += o.icmp_sent;
        self.slot_underflows += o.slot_underflows;
        self.snat_ports_claimed = self.snat_ports_claimed.wrapping_add(o.snat_ports_claimed);
        self.snat_ports_released = self.snat_ports_released.wrapping_add(o.snat_ports_released);
        for (a, b) in self.drops.iter_mut().zip(o.drops.iter()) {
            *a += *b;
        }
    }
}

/// Value of `PL_ICMP_RATE` (per CPU, per endpoint; a VPC's DNS answers at its VPC
/// slot): what the gateway generated in the current one-second window, one budget per
/// kind (`REPLY_*`) so that pinging an endpoint cannot starve its clients' path-MTU
/// discovery.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplyRate {
    pub window_start_ns: u64,
    /// Indexed by `REPLY_*`.
    pub sent: [u32; REPLY_KINDS],
    pub _pad: u32,
}
const _: () = assert!(size_of::<ReplyRate>() == 32);
/// Echo replies.
pub const REPLY_ECHO: usize = 0;
/// Time-exceeded errors.
pub const REPLY_ERROR: usize = 1;
/// Fragmentation-needed errors (path-MTU discovery: a budget of its own).
pub const REPLY_FRAG_NEEDED: usize = 2;
/// TCP resets the gateway sends on its own.
pub const REPLY_RESET: usize = 3;
/// DNS answers (at the VPC's slot).
pub const REPLY_DNS: usize = 4;
pub const REPLY_KINDS: usize = 5;
/// ICMP messages (each kind) and resets the gateway generates per endpoint, per CPU and
/// per second at most (Linux's own default, net.ipv4.icmp_msgs_per_sec, is 1000 for
/// the whole host).
pub const ICMP_RATE_PER_SEC: u32 = 100;
/// DNS answers per VPC, per CPU and per second at most: far above what a VPC's hosts
/// ask, low enough that a flood costs one CPU's budget, not the gateway.
pub const DNS_RATE_PER_SEC: u32 = 20_000;

/// The budget of each `REPLY_*` kind per second.
pub const fn reply_budget(kind: usize) -> u32 {
    if kind == REPLY_DNS {
        DNS_RATE_PER_SEC
    } else {
        ICMP_RATE_PER_SEC
    }
}

/// Input of `privatelink_expire`, passed as the test-run packet after a 14-byte
/// zero pad (XDP test runs need at least an Ethernet header's worth of data).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExpireRequest {
    /// The flow's forward key.
    pub key: CtKey,
    /// Expire only if both entries were last seen at or before this time (ktime ns);
    /// `u64::MAX` removes the flow whatever its age (reset, endpoint deleted).
    pub cutoff_ns: u64,
}
const _: () = assert!(size_of::<ExpireRequest>() == 24);
pub const EXPIRE_PAD: usize = 14;
/// `privatelink_expire` return values.
pub const EXPIRE_DELETED: u32 = 1;
pub const EXPIRE_KEPT: u32 = 2;
pub const EXPIRE_BAD_INPUT: u32 = 3;
/// The forward entry was deleted but its reverse entry was already gone.
pub const EXPIRE_DELETED_NO_PEER: u32 = 4;

#[cfg(feature = "user")]
mod pod {
    use super::*;
    unsafe impl aya::Pod for VpcInfo {}
    unsafe impl aya::Pod for crate::replication::Handoff {}
    unsafe impl aya::Pod for EpIpKey {}
    unsafe impl aya::Pod for EndpointInfo {}
    unsafe impl aya::Pod for PortKey {}
    unsafe impl aya::Pod for PortTarget {}
    unsafe impl aya::Pod for ServiceInfo {}
    unsafe impl aya::Pod for BackendInfo {}
    unsafe impl aya::Pod for CtKey {}
    unsafe impl aya::Pod for CtValue {}
    unsafe impl aya::Pod for BackendFlows {}
    unsafe impl aya::Pod for Stats {}
    unsafe impl aya::Pod for ExpireRequest {}
    unsafe impl aya::Pod for ReplyRate {}
    unsafe impl aya::Pod for EpUse {}
    unsafe impl aya::Pod for crate::dns::DnsName {}
    unsafe impl aya::Pod for crate::dns::DnsEntry {}
    unsafe impl aya::Pod for crate::dns::DnsStats {}
    unsafe impl aya::Pod for crate::sg::SgRule {}
    unsafe impl aya::Pod for crate::sg::SgSet {}
    unsafe impl aya::Pod for crate::police::Rate {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reverse_twice_is_identity() {
        let k = CtKey {
            src_ip_be: 1,
            dst_ip_be: 2,
            src_port_be: 3,
            dst_port_be: 4,
            vpc_id: 5,
            proto: 6,
            _pad: 0,
        };
        assert_eq!(k.reverse().reverse(), k);
        assert_eq!(k.reverse().src_ip_be, 2);
        assert_eq!(k.reverse().dst_port_be, 3);
    }

    #[test]
    fn peer_key_of_forward_entry_is_the_backends_reply() {
        let v = CtValue {
            nat_src_ip_be: 0x0b_a3_00_01, // SNAT address
            nat_dst_ip_be: 0xc0_a8_02_0a, // backend
            nat_src_port_be: 1111,
            nat_dst_port_be: 8080,
            egress_vpc: 7,
            ..Default::default()
        };
        let k = v.peer_key(PROTO_TCP);
        assert_eq!(k.src_ip_be, 0xc0_a8_02_0a);
        assert_eq!(k.dst_ip_be, 0x0b_a3_00_01);
        assert_eq!(k.src_port_be, 8080);
        assert_eq!(k.dst_port_be, 1111);
        assert_eq!(k.vpc_id, 7);
        assert_eq!(k.proto, PROTO_TCP);
    }

    #[test]
    fn drop_reasons_round_trip_and_fit() {
        for r in DropReason::ALL {
            assert_eq!(DropReason::try_from(r as u32), Ok(r));
            assert!((r as usize) < DROP_REASON_SLOTS);
        }
        assert_eq!(DropReason::try_from(0), Err(0));
        assert_eq!(DropReason::try_from(99), Err(99));
    }
}
