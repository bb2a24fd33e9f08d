//! Bounds-checked header access and the parsed view of an IPv4 packet.
//! Honours IHL; never reads past `data_end`; never writes.
//! Fragments: an IPv4 fragment (MF set or offset > 0) carries no usable ports; callers
//! drop it when it is addressed to an endpoint or a SNAT range and pass it otherwise.

use aya_ebpf::programs::XdpContext;
use core::mem::size_of;
use network_types::{eth::EthHdr, ip::Ipv4Hdr};
use privatelink_common::{PROTO_TCP, PROTO_UDP};

pub const ETH_LEN: usize = EthHdr::LEN;
pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_ARP: u16 = 0x0806;
pub const ETH_P_IPV6: u16 = 0x86dd;
/// 802.1Q and 802.1ad (QinQ) tags.
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88a8;

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

#[inline(always)]
pub fn ptr_at<T>(ctx: &XdpContext, off: usize) -> Option<*mut T> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + off + size_of::<T>() > end {
        return None;
    }
    Some((start + off) as *mut T)
}

/// What the data path needs of an IPv4 packet. Addresses and ports are raw (network
/// order as loaded from memory).
pub struct Packet {
    pub src_ip: u32,
    pub dst_ip: u32,
    pub proto: u8,
    /// Offset of the L4 header (14 + IHL * 4).
    pub l4_off: usize,
    pub ip_tot_len: u16,
    pub ihl_bytes: u16,
    pub ttl: u8,
    /// Don't Fragment.
    pub df: bool,
    /// L4 header present, complete and the packet is not a fragment.
    pub has_ports: bool,
    pub fragment: bool,
    pub src_port: u16,
    pub dst_port: u16,
    pub tcp_flags: u8,
    /// TCP header length in bytes (data offset * 4).
    pub tcp_hdr_len: u16,
    /// TCP sequence and acknowledgement numbers, host order.
    pub seq: u32,
    pub ack: u32,
    pub frame_len: u32,
}

impl Packet {
    /// TCP payload bytes.
    #[inline(always)]
    pub fn tcp_payload(&self) -> u32 {
        self.ip_tot_len.wrapping_sub(self.ihl_bytes).wrapping_sub(self.tcp_hdr_len) as u32
    }
}

pub enum Parsed {
    /// Shorter than an Ethernet header.
    Runt,
    /// Neither IPv4 nor ARP: the frame's EtherType.
    NotIp(u16),
    Arp,
    Ipv4(Packet),
    /// An IPv4 header that cannot be used (truncated, bad version or IHL, bad length).
    Malformed,
}

#[inline(always)]
pub fn parse(ctx: &XdpContext) -> Parsed {
    let eth: *const EthHdr = match ptr_at(ctx, 0) {
        Some(p) => p,
        None => return Parsed::Runt,
    };
    let ether_type = u16::from_be(unsafe { (*eth).ether_type });
    if ether_type == ETH_P_ARP {
        return Parsed::Arp;
    }
    if ether_type != ETH_P_IP {
        return Parsed::NotIp(ether_type);
    }
    let ip: *const Ipv4Hdr = match ptr_at(ctx, ETH_LEN) {
        Some(p) => p,
        None => return Parsed::Malformed,
    };
    let vihl = unsafe { (*ip).vihl };
    let ihl_bytes = ((vihl & 0x0f) as usize) << 2;
    if vihl >> 4 != 4 || ihl_bytes < Ipv4Hdr::LEN {
        return Parsed::Malformed;
    }
    let frame_len = (ctx.data_end() - ctx.data()) as u32;
    let tot_len = u16::from_be_bytes(unsafe { (*ip).tot_len });
    if (tot_len as usize) < ihl_bytes || ETH_LEN + tot_len as usize > frame_len as usize {
        return Parsed::Malformed;
    }
    let frags = u16::from_be_bytes(unsafe { (*ip).frags });
    let fragment = frags & 0x3fff != 0;
    let l4_off = ETH_LEN + ihl_bytes;
    let mut p = Packet {
        src_ip: u32::from_ne_bytes(unsafe { (*ip).src_addr }),
        dst_ip: u32::from_ne_bytes(unsafe { (*ip).dst_addr }),
        proto: unsafe { (*ip).proto },
        l4_off,
        ip_tot_len: tot_len,
        ihl_bytes: ihl_bytes as u16,
        ttl: unsafe { (*ip).ttl },
        df: frags & 0x4000 != 0,
        has_ports: false,
        fragment,
        src_port: 0,
        dst_port: 0,
        tcp_flags: 0,
        tcp_hdr_len: 0,
        seq: 0,
        ack: 0,
        frame_len,
    };
    if fragment {
        return Parsed::Ipv4(p);
    }
    if p.proto == PROTO_TCP {
        // TCP header: 20 bytes; ports at 0..4, data offset at 12, flags at 13.
        if let Some(tcp) = ptr_at::<[u8; 20]>(ctx, l4_off) {
            let t = unsafe { &*tcp };
            let doff = ((t[12] >> 4) as u16) << 2;
            if doff >= 20 && (ihl_bytes as u16 + doff) <= tot_len {
                p.src_port = u16::from_ne_bytes([t[0], t[1]]);
                p.dst_port = u16::from_ne_bytes([t[2], t[3]]);
                p.tcp_flags = t[13];
                p.tcp_hdr_len = doff;
                p.seq = u32::from_be_bytes([t[4], t[5], t[6], t[7]]);
                p.ack = u32::from_be_bytes([t[8], t[9], t[10], t[11]]);
                p.has_ports = true;
            }
        }
    } else if p.proto == PROTO_UDP {
        if let Some(udp) = ptr_at::<[u8; 8]>(ctx, l4_off) {
            let u = unsafe { &*udp };
            if ihl_bytes as u16 + 8 <= tot_len {
                p.src_port = u16::from_ne_bytes([u[0], u[1]]);
                p.dst_port = u16::from_ne_bytes([u[2], u[3]]);
                p.has_ports = true;
            }
        }
    }
    Parsed::Ipv4(p)
}

