//! What rtnetlink says of an interface (RTM_GETLINK, also for a veth's peer in another
//! namespace via IFLA_TARGET_NETNSID): its kind, its veth peer, and the XDP program
//! attached to it. Enough to choose an XDP mode and to warn about a veth whose frames
//! would vanish; nothing here changes an interface.

use std::io;

const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const IFLA_LINK: u16 = 5;
const IFLA_LINKINFO: u16 = 18;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_LINK_NETNSID: u16 = 37;
const IFLA_XDP: u16 = 43;
const IFLA_XDP_ATTACHED: u16 = 2;
const IFLA_TARGET_NETNSID: u16 = 46;
const NLA_F_MASK: u16 = 0x3fff;

/// How an XDP program is attached to an interface (`IFLA_XDP_ATTACHED`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attached {
    None,
    Native,
    Generic,
    /// Offloaded, or several programs in different modes.
    Other,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    /// `veth`, `bridge`, ... (none for a physical NIC).
    pub kind: Option<String>,
    /// The peer's ifindex (in the namespace `peer_nsid` names, or this one).
    pub peer: Option<u32>,
    pub peer_nsid: Option<i32>,
    pub xdp: Attached,
}

/// The attributes of one netlink message part, as (type, payload).
fn attrs(mut b: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while b.len() >= 4 {
        let len = u16::from_ne_bytes([b[0], b[1]]) as usize;
        let kind = u16::from_ne_bytes([b[2], b[3]]) & NLA_F_MASK;
        if len < 4 || len > b.len() {
            break;
        }
        out.push((kind, &b[4..len]));
        // Attributes are padded to 4 bytes.
        b = &b[((len + 3) & !3).min(b.len())..];
    }
    out
}

fn u32_of(p: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(p.get(..4)?.try_into().ok()?))
}

/// RTM_GETLINK for `ifindex` in this namespace, or in the one `nsid` names (as this
/// namespace numbers it).
pub fn link(ifindex: u32, nsid: Option<i32>) -> io::Result<Link> {
    // nlmsghdr (16) + ifinfomsg (16) + IFLA_TARGET_NETNSID (8).
    let mut req = Vec::with_capacity(40);
    let len = if nsid.is_some() { 40u32 } else { 32 };
    req.extend_from_slice(&len.to_ne_bytes());
    req.extend_from_slice(&RTM_GETLINK.to_ne_bytes());
    req.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    req.extend_from_slice(&1u32.to_ne_bytes()); // seq
    req.extend_from_slice(&0u32.to_ne_bytes()); // pid: the kernel's
    req.extend_from_slice(&[libc::AF_UNSPEC as u8, 0, 0, 0]); // family, pad, type
    req.extend_from_slice(&(ifindex as i32).to_ne_bytes());
    req.extend_from_slice(&[0u8; 8]); // flags, change
    if let Some(id) = nsid {
        req.extend_from_slice(&8u16.to_ne_bytes());
        req.extend_from_slice(&IFLA_TARGET_NETNSID.to_ne_bytes());
        req.extend_from_slice(&id.to_ne_bytes());
    }
    let reply = exchange(&req)?;
    parse(&reply)
}

/// Send one request on a fresh NETLINK_ROUTE socket and read its one answer.
fn exchange(req: &[u8]) -> io::Result<Vec<u8>> {
    // SAFETY: a socket we own, closed below; buffers outlive the calls.
    unsafe {
        let fd = libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_ROUTE);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut addr: libc::sockaddr_nl = std::mem::zeroed();
        addr.nl_family = libc::AF_NETLINK as u16;
        let sent = libc::sendto(fd, req.as_ptr().cast(), req.len(), 0, (&addr as *const libc::sockaddr_nl).cast(), std::mem::size_of::<libc::sockaddr_nl>() as u32);
        let mut buf = vec![0u8; 64 * 1024];
        let got = if sent < 0 { -1 } else { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
        let err = io::Error::last_os_error();
        libc::close(fd);
        if got < 0 {
            return Err(err);
        }
        buf.truncate(got as usize);
        Ok(buf)
    }
}

fn parse(reply: &[u8]) -> io::Result<Link> {
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "short netlink answer");
    let len = u32_of(reply).ok_or_else(bad)? as usize;
    let kind = u16::from_ne_bytes([*reply.get(4).ok_or_else(bad)?, *reply.get(5).ok_or_else(bad)?]);
    let msg = reply.get(..len).ok_or_else(bad)?;
    if kind == NLMSG_ERROR {
        let errno = u32_of(msg.get(16..).ok_or_else(bad)?).ok_or_else(bad)? as i32;
        return Err(io::Error::from_raw_os_error(-errno));
    }
    if kind != RTM_NEWLINK {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("netlink answered type {kind}")));
    }
    let mut link = Link { kind: None, peer: None, peer_nsid: None, xdp: Attached::None };
    for (t, p) in attrs(msg.get(32..).ok_or_else(bad)?) {
        match t {
            IFLA_LINK => link.peer = u32_of(p),
            IFLA_LINK_NETNSID => link.peer_nsid = u32_of(p).map(|v| v as i32),
            IFLA_LINKINFO => {
                if let Some((_, k)) = attrs(p).into_iter().find(|(t, _)| *t == IFLA_INFO_KIND) {
                    link.kind = Some(String::from_utf8_lossy(k).trim_end_matches('\0').to_string());
                }
            }
            IFLA_XDP => {
                if let Some((_, a)) = attrs(p).into_iter().find(|(t, _)| *t == IFLA_XDP_ATTACHED) {
                    link.xdp = match a.first() {
                        None | Some(0) => Attached::None,
                        Some(1) => Attached::Native,
                        Some(2) => Attached::Generic,
                        Some(_) => Attached::Other,
                    };
                }
            }
            _ => {}
        }
    }
    Ok(link)
}

/// For a veth: whether its peer runs an XDP program (`None`: not a veth, or the peer
/// cannot be looked at).
pub fn veth_peer_runs_xdp(ifindex: u32) -> Option<bool> {
    let me = link(ifindex, None).ok()?;
    if me.kind.as_deref() != Some("veth") {
        return None;
    }
    let peer = link(me.peer?, me.peer_nsid).ok()?;
    Some(peer.xdp != Attached::None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_no_veth_and_runs_no_xdp() {
        let lo = link(1, None).expect("RTM_GETLINK lo");
        assert_eq!((lo.kind, lo.xdp), (None, Attached::None));
        assert_eq!(veth_peer_runs_xdp(1), None);
        assert!(link(999_999, None).is_err(), "no such interface is an error");
    }
}
