//! The data path's XDP links: one pinned per interface (`links/<ifname>` under the
//! bpffs directory `bpffs` prepares), attached in the mode each VPC's `xdp_mode` asks
//! for, or re-adopted from an earlier process. Also answers which interfaces exist
//! (ifindex and MAC, by ioctl: it works whatever /sys shows).

use super::{
    bpffs::{self, io},
    error::{Error, Result},
    loader::{self, Dataplane},
    netlink,
};
use aya::programs::{
    links::{FdLink, PinnedLink},
    XdpMode,
};
use crate::model::spec::XdpSetting;
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

/// What the data path needs of an interface: its index, MAC, MTU and the gateway's own
/// IPv4 addresses on it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Iface {
    pub ifindex: u32,
    pub mac: [u8; 6],
    pub mtu: u16,
    pub addrs: Vec<std::net::Ipv4Addr>,
}

/// An interface of this network namespace, asked by ioctl and getifaddrs (so it works
/// whatever /sys shows).
pub fn interface(name: &str) -> Option<Iface> {
    let ifindex = loader::ifindex(name).ok()?;
    if name.len() >= libc::IFNAMSIZ {
        return None;
    }
    let (mac, mtu) = mac_and_mtu(name)?;
    Some(Iface { ifindex, mac, mtu, addrs: addresses(name) })
}

fn mac_and_mtu(name: &str) -> Option<([u8; 6], u16)> {
    // SAFETY: a plain datagram socket used for two ioctls on a zeroed ifreq whose name
    // is NUL-terminated (the caller checked its length); closed before returning.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return None;
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        for (d, s) in req.ifr_name.iter_mut().zip(name.bytes()) {
            *d = s as libc::c_char;
        }
        let rc = libc::ioctl(fd, libc::SIOCGIFHWADDR, &mut req);
        let mut mac = [0u8; 6];
        for (m, b) in mac.iter_mut().zip(req.ifr_ifru.ifru_hwaddr.sa_data.iter()) {
            *m = *b as u8;
        }
        let rc_mtu = libc::ioctl(fd, libc::SIOCGIFMTU, &mut req);
        let mtu = req.ifr_ifru.ifru_mtu;
        libc::close(fd);
        if rc != 0 || rc_mtu != 0 {
            return None;
        }
        Some((mac, mtu.clamp(0, u16::MAX as i32) as u16))
    }
}

/// The IPv4 addresses assigned to interface `name`.
fn addresses(name: &str) -> Vec<std::net::Ipv4Addr> {
    let mut out = Vec::new();
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills a linked list that we walk read-only and free once.
    unsafe {
        if libc::getifaddrs(&mut list) != 0 {
            return out;
        }
        let mut cur = list;
        while !cur.is_null() {
            let a = &*cur;
            let same = !a.ifa_name.is_null() && std::ffi::CStr::from_ptr(a.ifa_name).to_bytes() == name.as_bytes();
            if same && !a.ifa_addr.is_null() && (*a.ifa_addr).sa_family as i32 == libc::AF_INET {
                let sin = &*(a.ifa_addr as *const libc::sockaddr_in);
                out.push(std::net::Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)));
            }
            cur = a.ifa_next;
        }
        libc::freeifaddrs(list);
    }
    out
}

/// The data path's pinned XDP links, by interface name.
pub struct Links {
    dir: PathBuf,
    links: BTreeMap<String, FdLink>,
    /// The mode each link is attached in.
    modes: BTreeMap<String, XdpMode>,
}

impl Links {
    /// Links pinned under `bpffs/links`.
    pub fn new(bpffs: &Path) -> Links {
        Links { dir: bpffs::links_dir(bpffs), links: BTreeMap::new(), modes: BTreeMap::new() }
    }

    pub fn pin_path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn get(&self, name: &str) -> Option<&FdLink> {
        self.links.get(name)
    }

    /// The interfaces with a link held now.
    pub fn attached(&self) -> Vec<String> {
        self.links.keys().cloned().collect()
    }

    /// The mode `name`'s link is attached in.
    pub fn mode(&self, name: &str) -> Option<XdpMode> {
        self.modes.get(name).copied()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.links.contains_key(name)
    }

    /// Attach (or re-adopt) the data path on every `wanted` interface, with its ARP
    /// settings (`kernel::harden_arp`); drop the links of the others. An interface that does not exist is logged and left unattached:
    /// the other VPCs keep working, and `status` shows it until it is back.
    /// A link attached in another mode than its setting asks for is attached anew (the
    /// interface runs no program for that moment).
    pub fn ensure(&mut self, dp: &mut Dataplane, wanted: &[(String, XdpSetting)]) -> Result<()> {
        std::fs::create_dir_all(&self.dir).map_err(io(&self.dir))?;
        for name in self.links.keys().filter(|n| !wanted.iter().any(|(w, _)| w == *n)).cloned().collect::<Vec<_>>() {
            self.detach(&name)?;
        }
        for (name, setting) in wanted {
            let Ok(ifindex) = loader::ifindex(name) else {
                if !self.links.contains_key(name) {
                    tracing::error!(interface = %name, "the interface does not exist; its VPC is not attached");
                }
                continue;
            };
            if let Err(e) = super::kernel::harden_arp(name) {
                tracing::error!(interface = %name, error = %e, "the kernel may answer ARP for the gateway's addresses in other VPCs");
            }
            let want = wanted_mode(*setting, ifindex);
            if let Some(have) = self.modes.get(name).copied() {
                if want.accepts(have) {
                    continue;
                }
                tracing::info!(interface = %name, from = ?have, setting = ?setting, "attaching the data path anew in another XDP mode");
                self.detach(name)?;
            }
            if let Some(l) = self.adopt(dp, name)? {
                let mode = match netlink::link(ifindex, None).map(|l| l.xdp) {
                    Ok(netlink::Attached::Generic) => XdpMode::Skb,
                    _ => XdpMode::Driver,
                };
                if want.accepts(mode) {
                    self.links.insert(name.clone(), l);
                    self.modes.insert(name.clone(), mode);
                    continue;
                }
                drop(l);
                self.detach(name)?;
            }
            let (link, mode) = self.attach(dp, name, ifindex, want)?;
            self.links.insert(name.clone(), link);
            self.modes.insert(name.clone(), mode);
        }
        Ok(())
    }

    /// The link pinned for `name` by an earlier process, pointed at `dp`'s program (the
    /// kernel swaps programs atomically, so the interface never runs without one).
    fn adopt(&self, dp: &mut Dataplane, name: &str) -> Result<Option<FdLink>> {
        let pin = self.pin_path(name);
        let Ok(p) = PinnedLink::from_pin(&pin) else { return Ok(None) };
        match dp.adopt_link(FdLink::from(p)) {
            Ok(l) => Ok(Some(l)),
            Err(e) => {
                tracing::warn!(interface = %name, error = %e, "the pinned link is stale; attaching anew");
                std::fs::remove_file(&pin).map_err(io(&self.dir))?;
                Ok(None)
            }
        }
    }

    fn attach(&self, dp: &mut Dataplane, name: &str, ifindex: u32, want: Want) -> Result<(FdLink, XdpMode)> {
        let failed = |e| Error::Link(format!("attaching XDP to {name} ({want:?}): {e}"));
        let (l, mode) = match want {
            Want::NativeOrGeneric => {
                let (l, mode) = dp.attach_link(ifindex).map_err(failed)?;
                if mode != XdpMode::Driver {
                    tracing::warn!(interface = %name, "no native XDP; attached in generic (skb) mode");
                }
                (l, mode)
            }
            Want::Exactly(mode) => {
                let id = dp.attach(ifindex, mode).map_err(failed)?;
                if mode == XdpMode::Skb {
                    tracing::info!(interface = %name, "attached in generic (skb) mode");
                }
                (dp.take_link(id).map_err(failed)?, mode)
            }
        };
        let pinned = l.pin(self.pin_path(name)).map_err(|e| Error::Link(format!("pinning the XDP link of {name}: {e}")))?;
        Ok((FdLink::from(pinned), mode))
    }

    /// Unpin and close the link of `name`: closing the last reference detaches it.
    pub fn detach(&mut self, name: &str) -> Result<()> {
        match std::fs::remove_file(self.pin_path(name)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&self.dir)(e)),
        }
        self.links.remove(name);
        self.modes.remove(name);
        Ok(())
    }

    /// Interfaces whose link no longer holds an attachment (detached by hand, e.g.
    /// `bpftool link detach`): dropped here, so `ensure` attaches them anew.
    pub fn drop_detached(&mut self) -> Vec<String> {
        let gone: Vec<String> = self
            .links
            .iter()
            .filter(|(name, l)| attached_ifindex(l).is_some_and(|i| Some(i) != loader::ifindex(name).ok()))
            .map(|(n, _)| n.clone())
            .collect();
        for name in &gone {
            if let Err(e) = self.detach(name) {
                tracing::warn!(interface = %name, error = %e, "removing a detached link's pin");
            }
        }
        gone
    }

    pub fn detach_all(&mut self) -> Result<()> {
        for name in self.links.keys().cloned().collect::<Vec<_>>() {
            self.detach(&name)?;
        }
        Ok(())
    }
}

/// The mode(s) a setting accepts on an interface.
#[derive(Clone, Copy, Debug)]
enum Want {
    Exactly(XdpMode),
    /// Native where the driver has it, else generic.
    NativeOrGeneric,
}

impl Want {
    fn accepts(self, have: XdpMode) -> bool {
        match self {
            Want::Exactly(m) => m == have,
            Want::NativeOrGeneric => true,
        }
    }
}

/// `auto` is native, except generic on a veth whose peer runs no XDP program: a veth
/// delivers the frames an XDP program redirects or sends back only to a peer running
/// one, while generic mode sends them through the normal transmit path.
fn wanted_mode(setting: XdpSetting, ifindex: u32) -> Want {
    match setting {
        XdpSetting::Native => Want::Exactly(XdpMode::Driver),
        XdpSetting::Generic => Want::Exactly(XdpMode::Skb),
        XdpSetting::Auto if netlink::veth_peer_runs_xdp(ifindex) == Some(false) => Want::Exactly(XdpMode::Skb),
        XdpSetting::Auto => Want::NativeOrGeneric,
    }
}

/// The interface an XDP link is attached to (0 once it was detached), from the
/// kernel's `bpf_link_info`; `None` when the kernel cannot tell.
fn attached_ifindex(link: &FdLink) -> Option<u32> {
    const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
    const BPF_LINK_GET_FD_BY_ID: libc::c_long = 30;
    /// `bpf_link_info` up to its XDP part: type, id, prog_id, then the union at 16.
    #[repr(C)]
    struct Info {
        kind: u32,
        id: u32,
        prog_id: u32,
        _pad: u32,
        xdp_ifindex: u32,
        _rest: [u32; 11],
    }
    #[repr(C)]
    struct InfoAttr {
        fd: u32,
        len: u32,
        info: u64,
    }
    let id = link.info().ok()?.id();
    let mut by_id = [0u32; 4];
    by_id[0] = id;
    // SAFETY: the bpf(2) syscall with attrs laid out as the kernel's `union bpf_attr`
    // members for these commands; the fd it returns is closed below.
    unsafe {
        let fd = libc::syscall(libc::SYS_bpf, BPF_LINK_GET_FD_BY_ID, by_id.as_ptr(), std::mem::size_of_val(&by_id));
        if fd < 0 {
            return None;
        }
        let mut info: Info = std::mem::zeroed();
        let attr = InfoAttr { fd: fd as u32, len: std::mem::size_of::<Info>() as u32, info: &mut info as *mut Info as u64 };
        let rc = libc::syscall(libc::SYS_bpf, BPF_OBJ_GET_INFO_BY_FD, &attr, std::mem::size_of::<InfoAttr>());
        libc::close(fd as i32);
        (rc == 0).then_some(info.xdp_ifindex)
    }
}
