//! Private DNS answered in XDP: a query to a VPC's DNS address is parsed (RFC 1035
//! 4.1), its name looked up in `PL_DNS` with one LPM lookup keyed by VPC and name (so
//! overlapping VPCs get their own answers), and the frame itself becomes the answer,
//! sent back with XDP_TX. Never forwards a query and never recurses.
//! Answers: A records; the zone's SOA and NS at its apex (the name server is the apex
//! itself, as the SOA's MNAME); NODATA and NXDOMAIN with the zone's SOA (RFC 2308); REFUSED
//! outside the VPC's zones; FORMERR, NOTIMP, BADVERS (RFC 6891) for what it cannot
//! serve; a counted drop when there is nothing to answer (no header, a response).
//! `query` parses the question into the lookup key, `answer` decides and writes the
//! answer over the frame, `wire` holds the per-CPU scratch and the branch-free helpers
//! both are written with for the verifier. This file serves and counts.

mod answer;
mod query;
mod wire;

pub use wire::Scratch;

use crate::{
    lookup,
    parse::{self, Packet, Parsed, ETH_LEN, TCP_RST},
    reply,
    stats::{self, Drop},
    PL_DNS_STATS,
};
use answer::{decide, write, Answer};
use aya_ebpf::programs::XdpContext;
use privatelink_common::{tcp::answerable, *};
use query::{query, QUERY_BARE, QUERY_OK};

/// Only queries without IP options are served: the DNS header is at a fixed offset.
pub(super) const UDP_OFF: usize = ETH_LEN + 20;
pub(super) const DNS_OFF: usize = UDP_OFF + 8;
pub(super) const QNAME_OFF: usize = DNS_OFF + 12;
pub(super) const NAME_MAX: usize = DNS_KEY_MAX + 1;
pub(super) const PORT_BE: u16 = 53u16.to_be();
pub(super) const TYPE_A: u16 = 1;
pub(super) const TYPE_NS: u16 = 2;
pub(super) const TYPE_SOA: u16 = 6;
pub(super) const TYPE_OPT: u16 = 41;
pub(super) const TYPE_ANY: u16 = 255;
pub(super) const CLASS_IN: u16 = 1;
pub(super) const A_LEN: usize = 16;
pub(super) const SOA_LEN: usize = 47;
pub(super) const NS_LEN: usize = 14;
pub(super) const OPT_LEN: usize = 11;
/// The UDP payload size announced in our OPT record (the DNS flag day 2020 value).
pub(super) const EDNS_SIZE: u16 = 1232;
/// SOA timers (RFC 1912 2.2 ranges); the negative TTL is the entry's TTL.
pub(super) const SOA_REFRESH: u32 = 3600;
pub(super) const SOA_RETRY: u32 = 600;
pub(super) const SOA_EXPIRE: u32 = 86400;

/// The DNS program (tail-called by the data path for a packet to a DNS address, so
/// its loops are verified once, apart from the data path's own paths).
#[inline(always)]
pub fn run(ctx: &XdpContext) -> Result<u32, Drop> {
    let vpc = lookup::vpc(crate::handoff::ingress(ctx)).ok_or(Drop::global(DropReason::DnsDropped))?;
    match parse::parse(ctx) {
        Parsed::Ipv4(p) => serve(ctx, &vpc, &p),
        _ => Err(Drop::vpc(DropReason::DnsDropped, vpc.vpc_id)),
    }
}

/// Serve a packet sent to VPC `vpc`'s DNS address.
#[inline(always)]
fn serve(ctx: &XdpContext, vpc: &VpcInfo, p: &Packet) -> Result<u32, Drop> {
    let dropped = Drop::vpc(DropReason::DnsDropped, vpc.vpc_id);
    if p.fragment {
        return Err(Drop::vpc(DropReason::Fragment, vpc.vpc_id));
    }
    if !answerable(p.src_ip) {
        return Err(Drop::vpc(DropReason::BadSource, vpc.vpc_id));
    }
    // Every answer fits in 512 bytes, so nothing is ever truncated and TCP is not
    // served: a client that tries it anyway (RFC 7766 lets it) is refused at once with
    // a reset, never left to time out.
    if p.proto == PROTO_TCP && p.has_ports && p.dst_port == PORT_BE {
        if p.tcp_flags & TCP_RST != 0 {
            return Err(dropped);
        }
        // Charged to the VPC, within its reset budget.
        return reply::refuse(ctx, p, dropped);
    }
    if p.proto != PROTO_UDP || !p.has_ports || p.dst_port != PORT_BE || p.ihl_bytes != 20 {
        return Err(dropped);
    }
    if !reply::allowed(stats::vpc_slot(vpc.vpc_id), REPLY_DNS) {
        return Err(Drop::vpc(DropReason::DnsRateLimited, vpc.vpc_id));
    }
    let q = query(ctx, p);
    let answer = match q.status {
        QUERY_OK => decide(&q, vpc.vpc_id),
        QUERY_BARE => {
            // BADVERS needs the OPT record that carries its upper bits (RFC 6891 7).
            let mut a = Answer::bare(q.rcode);
            a.edns = q.rcode == DNS_BADVERS;
            a
        }
        _ => return Err(dropped),
    };
    let action = write(ctx, p, &answer).ok_or(dropped)?;
    count(vpc.vpc_id, answer.rcode);
    Ok(action)
}

#[inline(always)]
fn count(vpc_id: u16, slot: usize) {
    if let Some(s) = PL_DNS_STATS.get_ptr_mut(vpc_id as u32) {
        if let Some(c) = unsafe { &mut *s }.answers.get_mut(slot) {
            *c += 1;
        }
    }
}
