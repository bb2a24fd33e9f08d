//! Typed access to the maps of the data path, in the units the rest of the code thinks
//! in (`Ipv4Addr`, ports in host order). The flow table is also read and trimmed by
//! `sweep` (its own descriptors, on its own thread) and the slot counters repaired by
//! `audit`; nothing else touches a map. `read` reads whole tables back; `reader` is
//! the read-only second handle on the counters and the flow table that the daemon's
//! readers hold (descriptors of its own; `Maps` reads through one too). Must never
//! decide what to write; the reconciler and tests do.

mod read;
mod reader;

pub(crate) use reader::dup;
pub use reader::{EndpointCounters, Reader};

use super::{
    error::{Error, Result},
    sys::Mapped,
};
use aya::{
    maps::{
        lpm_trie::{Key, LpmTrie},
        Array, HashMap, IterableMap, Map, MapData, MapError, PerCpuArray, PerCpuValues,
    },
    Ebpf,
};
use privatelink_common::*;
use std::net::Ipv4Addr;

/// Raw network-order value of an address, as the data path loads it from a packet.
pub fn ip_raw(ip: Ipv4Addr) -> u32 {
    u32::from_ne_bytes(ip.octets())
}

pub fn ip_from_raw(raw: u32) -> Ipv4Addr {
    Ipv4Addr::from(raw.to_ne_bytes())
}

pub struct Maps {
    vpcs: HashMap<MapData, u32, VpcInfo>,
    ep_ips: HashMap<MapData, EpIpKey, u32>,
    /// Read through its memory view only; held so the map stays open beside it.
    _ep_use: Array<MapData, EpUse>,
    /// Likewise: each consumer VPC's flows (read and repaired by the audit).
    vpc_flows: Array<MapData, u64>,
    endpoints: Array<MapData, EndpointInfo>,
    ports: HashMap<MapData, PortKey, PortTarget>,
    services: Array<MapData, ServiceInfo>,
    backends: Array<MapData, BackendInfo>,
    maglev: Array<MapData, u32>,
    ct: HashMap<MapData, CtKey, CtValue>,
    snat_ranges: LpmTrie<MapData, SnatRangeKey, u32>,
    ep_stats: PerCpuArray<MapData, Stats>,
    ep_snat: Array<MapData, u32>,
    dns: LpmTrie<MapData, DnsName, DnsEntry>,
    sg_sets: HashMap<MapData, u32, SgSet>,
    rates: Array<MapData, Rate>,
    tats: Array<MapData, u64>,
    /// Memory views of the arrays read whole (drift repair).
    views: Views,
    /// The counters and the flow table, read-only (`Maps` reads through it).
    read: Reader,
}

impl std::ops::Deref for Maps {
    type Target = Reader;
    fn deref(&self) -> &Reader {
        &self.read
    }
}

/// The mmap-able arrays, mapped read-only.
struct Views {
    endpoints: Mapped,
    services: Mapped,
    backends: Mapped,
    maglev: Mapped,
    ep_snat: Mapped,
    rates: Mapped,
}

fn view<V: aya::Pod>(a: &Array<MapData, V>, map: &'static str, entries: u32) -> Result<Mapped> {
    use std::os::fd::AsFd;
    Mapped::new(a.map().fd().as_fd(), entries, std::mem::size_of::<V>()).map_err(|source| Error::Sys { what: map, source })
}

fn take<T: TryFrom<Map, Error = MapError>>(ebpf: &mut Ebpf, name: &'static str) -> Result<T> {
    let map = ebpf.take_map(name).ok_or(Error::Missing { kind: "map", name })?;
    T::try_from(map).map_err(|source| Error::Map { map: name, source })
}

fn err(map: &'static str) -> impl Fn(MapError) -> Error {
    move |source| Error::Map { map, source }
}

/// A lookup that found nothing is `None`; any other failure is an error.
fn absent_ok<V>(r: std::result::Result<V, MapError>, map: &'static str) -> Result<Option<V>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(MapError::KeyNotFound) => Ok(None),
        Err(source) => Err(Error::Map { map, source }),
    }
}

/// Removing what is already gone is success.
fn remove_ok(r: std::result::Result<(), MapError>, map: &'static str) -> Result<()> {
    absent_ok(r, map).map(|_| ())
}

fn check_index(map: &'static str, index: u32, capacity: u32) -> Result<()> {
    if index >= capacity {
        return Err(Error::OutOfRange { map, index, capacity });
    }
    Ok(())
}

impl Maps {
    /// Take every map out of a freshly loaded object.
    pub fn take(ebpf: &mut Ebpf) -> Result<Maps> {
        let endpoints = take(ebpf, MAP_ENDPOINTS)?;
        let ep_use: Array<MapData, EpUse> = take(ebpf, MAP_EP_USE)?;
        let services = take(ebpf, MAP_SERVICES)?;
        let backends = take(ebpf, MAP_BACKENDS)?;
        let maglev = take(ebpf, MAP_MAGLEV)?;
        let ep_snat = take(ebpf, MAP_EP_SNAT)?;
        let rates = take(ebpf, MAP_EP_RATE)?;
        let views = Views {
            endpoints: view(&endpoints, MAP_ENDPOINTS, MAX_ENDPOINTS)?,
            services: view(&services, MAP_SERVICES, MAX_SERVICES)?,
            backends: view(&backends, MAP_BACKENDS, MAX_BACKENDS)?,
            maglev: view(&maglev, MAP_MAGLEV, MAX_SERVICES * MAGLEV_SIZE)?,
            ep_snat: view(&ep_snat, MAP_EP_SNAT, MAX_ENDPOINTS * MAX_SNAT_PER_ENDPOINT)?,
            rates: view(&rates, MAP_EP_RATE, MAX_ENDPOINTS)?,
        };
        let ct: HashMap<MapData, CtKey, CtValue> = take(ebpf, MAP_CT)?;
        let ep_stats: PerCpuArray<MapData, Stats> = take(ebpf, MAP_EP_STATS)?;
        use std::os::fd::AsFd;
        let read = Reader::new(reader::Sources {
            ep_stats: reader::again(&ep_stats, MAP_EP_STATS)?,
            global_stats: take(ebpf, MAP_GLOBAL_STATS)?,
            vpc_stats: take(ebpf, MAP_VPC_STATS)?,
            backend_flows: take(ebpf, MAP_BACKEND_FLOWS)?,
            dns_stats: take(ebpf, MAP_DNS_STATS)?,
            ep_use: dup(ep_use.map().fd().as_fd(), MAP_EP_USE)?,
            ct: dup(ct.map().fd().as_fd(), MAP_CT)?,
            ct_capacity: ct.map().info().map(|i| i.max_entries()).unwrap_or(0),
        })?;
        Ok(Maps {
            vpcs: take(ebpf, MAP_VPCS)?,
            ep_ips: take(ebpf, MAP_EP_IPS)?,
            endpoints,
            _ep_use: ep_use,
            vpc_flows: take(ebpf, MAP_VPC_FLOWS)?,
            ports: take(ebpf, MAP_PORTS)?,
            services,
            backends,
            maglev,
            ct,
            snat_ranges: take(ebpf, MAP_SNAT_RANGES)?,
            ep_stats,
            ep_snat,
            dns: take(ebpf, MAP_DNS)?,
            sg_sets: take(ebpf, MAP_SG_SETS)?,
            rates,
            tats: take(ebpf, MAP_EP_TAT)?,
            views,
            read,
        })
    }

    // ---- VPC interfaces ----
    pub fn set_vpc(&mut self, ifindex: u32, info: VpcInfo) -> Result<()> {
        self.vpcs.insert(ifindex, info, 0).map_err(err(MAP_VPCS))
    }
    pub fn vpc(&self, ifindex: u32) -> Result<Option<VpcInfo>> {
        absent_ok(self.vpcs.get(&ifindex, 0), MAP_VPCS)
    }
    pub fn remove_vpc(&mut self, ifindex: u32) -> Result<()> {
        remove_ok(self.vpcs.remove(&ifindex), MAP_VPCS)
    }

    // ---- endpoints ----
    pub fn set_endpoint(&mut self, index: u32, info: EndpointInfo) -> Result<()> {
        check_index(MAP_ENDPOINTS, index, MAX_ENDPOINTS)?;
        self.endpoints.set(index, info, 0).map_err(err(MAP_ENDPOINTS))
    }
    pub fn endpoint(&self, index: u32) -> Result<EndpointInfo> {
        check_index(MAP_ENDPOINTS, index, MAX_ENDPOINTS)?;
        self.endpoints.get(&index, 0).map_err(err(MAP_ENDPOINTS))
    }
    /// Make `ip` in VPC `vpc_id` an address of endpoint `index`.
    pub fn bind_endpoint_ip(&mut self, vpc_id: u16, ip: Ipv4Addr, index: u32) -> Result<()> {
        let key = EpIpKey { ip_be: ip_raw(ip), vpc_id, _pad: 0 };
        self.ep_ips.insert(key, index, 0).map_err(err(MAP_EP_IPS))
    }
    pub fn unbind_endpoint_ip(&mut self, vpc_id: u16, ip: Ipv4Addr) -> Result<()> {
        let key = EpIpKey { ip_be: ip_raw(ip), vpc_id, _pad: 0 };
        remove_ok(self.ep_ips.remove(&key), MAP_EP_IPS)
    }
    // ---- services ----
    pub fn set_service(&mut self, index: u32, info: ServiceInfo) -> Result<()> {
        check_index(MAP_SERVICES, index, MAX_SERVICES)?;
        self.services.set(index, info, 0).map_err(err(MAP_SERVICES))
    }
    pub fn set_port(&mut self, service: u32, proto: u8, endpoint_port: u16, service_port: u16) -> Result<()> {
        let key = PortKey { service, endpoint_port_be: endpoint_port.to_be(), proto, _pad: 0 };
        let target = PortTarget { service_port_be: service_port.to_be(), _pad: 0 };
        self.ports.insert(key, target, 0).map_err(err(MAP_PORTS))
    }
    pub fn remove_port(&mut self, service: u32, proto: u8, endpoint_port: u16) -> Result<()> {
        let key = PortKey { service, endpoint_port_be: endpoint_port.to_be(), proto, _pad: 0 };
        remove_ok(self.ports.remove(&key), MAP_PORTS)
    }
    pub fn set_backend(&mut self, index: u32, ip: Ipv4Addr, up: bool) -> Result<()> {
        check_index(MAP_BACKENDS, index, MAX_BACKENDS)?;
        let info = BackendInfo { ip_be: ip_raw(ip), flags: if up { BACKEND_FLAG_UP } else { 0 } };
        self.backends.set(index, info, 0).map_err(err(MAP_BACKENDS))
    }
    /// Write a service's Maglev table (global backend indices, `BACKEND_NONE` for none).
    /// Only slots that differ are written; every slot is valid at every moment, so a
    /// flow being created meanwhile lands on either the old or the new backend.
    pub fn set_maglev(&mut self, service: u32, table: &[u32]) -> Result<usize> {
        check_index(MAP_SERVICES, service, MAX_SERVICES)?;
        assert_eq!(table.len(), MAGLEV_SIZE as usize, "Maglev table of wrong size");
        let base = service * MAGLEV_SIZE;
        let mut written = 0;
        for (i, want) in table.iter().enumerate() {
            let slot = base + i as u32;
            if self.maglev.get(&slot, 0).map_err(err(MAP_MAGLEV))? != *want {
                self.maglev.set(slot, *want, 0).map_err(err(MAP_MAGLEV))?;
                written += 1;
            }
        }
        Ok(written)
    }

    // ---- SNAT ranges ----
    pub fn add_snat_range(&mut self, net: Ipv4Addr, prefix: u8) -> Result<()> {
        self.snat_ranges
            .insert(&Key::new(prefix as u32, ip_raw(net)), 1, 0)
            .map_err(err(MAP_SNAT_RANGES))
    }
    pub fn remove_snat_range(&mut self, net: Ipv4Addr, prefix: u8) -> Result<()> {
        remove_ok(self.snat_ranges.remove(&Key::new(prefix as u32, ip_raw(net))), MAP_SNAT_RANGES)
    }

    // ---- security groups ----
    pub fn set_sg_set(&mut self, key: u32, rules: &[SgRule]) -> Result<()> {
        if rules.len() > MAX_SG_RULES {
            return Err(Error::OutOfRange { map: MAP_SG_SETS, index: rules.len() as u32, capacity: MAX_SG_RULES as u32 });
        }
        let mut set = SgSet { count: rules.len() as u32, _pad: 0, rules: [SgRule::default(); MAX_SG_RULES] };
        set.rules[..rules.len()].copy_from_slice(rules);
        self.sg_sets.insert(key, set, 0).map_err(err(MAP_SG_SETS))
    }
    pub fn remove_sg_set(&mut self, key: u32) -> Result<()> {
        remove_ok(self.sg_sets.remove(&key), MAP_SG_SETS)
    }

    // ---- bandwidth limits ----
    /// Live: the endpoint's flows are left alone; its buckets start again full, so a
    /// bucket that ran ahead at the old rate does not hold back the new one.
    pub fn set_rate(&mut self, index: u32, rate: Rate) -> Result<()> {
        check_index(MAP_EP_RATE, index, MAX_ENDPOINTS)?;
        self.rates.set(index, rate, 0).map_err(err(MAP_EP_RATE))?;
        for dir in [DIR_FORWARD, DIR_REVERSE] {
            self.tats.set(index * 2 + dir, 0, 0).map_err(err(MAP_EP_TAT))?;
        }
        Ok(())
    }

    // ---- private DNS ----
    pub fn set_dns(&mut self, vpc_id: u16, name: &str, entry: DnsEntry) -> Result<()> {
        let (key, len) = dns_key(vpc_id, name).ok_or(Error::DnsName(name.to_string()))?;
        self.dns.insert(&Key::new(dns_prefix_bits(len), key), entry, 0).map_err(err(MAP_DNS))
    }
    pub fn remove_dns(&mut self, vpc_id: u16, name: &str) -> Result<()> {
        let (key, len) = dns_key(vpc_id, name).ok_or(Error::DnsName(name.to_string()))?;
        remove_ok(self.dns.remove(&Key::new(dns_prefix_bits(len), key)), MAP_DNS)
    }
    // ---- conntrack ----
    pub fn ct_get(&self, key: &CtKey) -> Result<Option<CtValue>> {
        absent_ok(self.ct.get(key, 0), MAP_CT)
    }
    /// Seed a conntrack entry directly: tests and benchmarks only (feature
    /// `test-support`); the data path alone creates flows.
    #[cfg(feature = "test-support")]
    pub fn ct_insert(&mut self, key: CtKey, value: CtValue) -> Result<()> {
        self.ct.insert(key, value, 0).map_err(err(MAP_CT))
    }

    // ---- SNAT slots ----
    /// An endpoint's SNAT address slot (`None`: cleared).
    pub fn set_ep_snat(&mut self, slot: u32, ip: Option<Ipv4Addr>) -> Result<()> {
        self.ep_snat.set(slot, ip.map_or(0, ip_raw), 0).map_err(err(MAP_EP_SNAT))
    }

    // ---- clearing slots ----
    pub fn clear_endpoint(&mut self, index: u32) -> Result<()> {
        self.set_endpoint(index, EndpointInfo::default())
    }
    pub fn clear_service(&mut self, index: u32) -> Result<()> {
        self.set_service(index, ServiceInfo::default())
    }
    pub fn clear_backend(&mut self, index: u32) -> Result<()> {
        check_index(MAP_BACKENDS, index, MAX_BACKENDS)?;
        self.backends.set(index, BackendInfo::default(), 0).map_err(err(MAP_BACKENDS))
    }
    /// Zero a slot's counters (a new endpoint in a reused slot starts from zero).
    pub fn reset_endpoint_stats(&mut self, index: u32) -> Result<()> {
        check_index(MAP_EP_STATS, index, MAX_ENDPOINTS)?;
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| Error::Map { map: MAP_EP_STATS, source: MapError::IoError(e) })?;
        let zero = PerCpuValues::try_from(vec![Stats::default(); cpus])
            .map_err(|e| Error::Map { map: MAP_EP_STATS, source: MapError::IoError(e) })?;
        self.ep_stats.set(index, zero, 0).map_err(err(MAP_EP_STATS))
    }

    /// The conntrack map's descriptor (the sweeper takes its own copy).
    pub fn ct_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.ct.map().fd().as_fd()
    }
    /// A writable view of counter array `map` (`PL_EP_USE` or `PL_VPC_FLOWS`), for the
    /// accounting audit's repairs.
    pub fn counters(&self, map: &'static str) -> Result<super::sys::Counters> {
        use std::os::fd::AsFd;
        let (fd, bytes) = match map {
            MAP_EP_USE => (self._ep_use.map().fd().as_fd(), MAX_ENDPOINTS as usize * std::mem::size_of::<EpUse>()),
            MAP_VPC_FLOWS => (self.vpc_flows.map().fd().as_fd(), (TABLE_FLOWS as usize + 1) * 8),
            _ => return Err(Error::Missing { kind: "counter map", name: map }),
        };
        super::sys::Counters::new(fd, bytes).map_err(|source| Error::Sys { what: map, source })
    }

}

/// Entries read per `BPF_MAP_LOOKUP_BATCH` (a hash bucket never holds more).
pub const CT_BATCH: usize = 4096;

/// Every entry of conntrack map `ct`, a batch per syscall.
pub fn read_conntrack(ct: std::os::fd::BorrowedFd<'_>) -> Result<Vec<(CtKey, CtValue)>> {
    let mut out = Vec::new();
    super::sys::for_each_batch::<CtKey, CtValue>(ct, CT_BATCH, |k, v| out.extend(k.iter().copied().zip(v.iter().copied())))
        .map_err(|source| Error::Sys { what: MAP_CT, source })?;
    Ok(out)
}

/// The name a `PL_DNS` key holds (the inverse of `dns_key`): labels reversed back.
pub fn name_of_key(key: &[u8]) -> String {
    let mut labels: Vec<String> = key
        .split(|b| *b == 0)
        .filter(|l| !l.is_empty())
        .map(|l| l.iter().rev().map(|b| *b as char).collect())
        .collect();
    labels.reverse();
    labels.join(".")
}
