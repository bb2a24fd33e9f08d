//! The only module that touches BPF maps: typed access to every map of the data path,
//! in the units the rest of the code thinks in (`Ipv4Addr`, ports in host order).
//! Must never decide what to write; the reconciler and tests do.

use crate::error::{Error, Result};
use aya::{
    maps::{
        lpm_trie::{Key, LpmTrie},
        Array, HashMap, Map, MapData, MapError, PerCpuArray,
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
    endpoints: Array<MapData, EndpointInfo>,
    ep_active: Array<MapData, u64>,
    ports: HashMap<MapData, PortKey, PortTarget>,
    services: Array<MapData, ServiceInfo>,
    backends: Array<MapData, BackendInfo>,
    maglev: Array<MapData, u32>,
    ct: HashMap<MapData, CtKey, CtValue>,
    snat_ranges: LpmTrie<MapData, SnatRangeKey, u32>,
    ep_stats: PerCpuArray<MapData, Stats>,
    global_stats: PerCpuArray<MapData, Stats>,
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
        Ok(Maps {
            vpcs: take(ebpf, MAP_VPCS)?,
            ep_ips: take(ebpf, MAP_EP_IPS)?,
            endpoints: take(ebpf, MAP_ENDPOINTS)?,
            ep_active: take(ebpf, MAP_EP_ACTIVE)?,
            ports: take(ebpf, MAP_PORTS)?,
            services: take(ebpf, MAP_SERVICES)?,
            backends: take(ebpf, MAP_BACKENDS)?,
            maglev: take(ebpf, MAP_MAGLEV)?,
            ct: take(ebpf, MAP_CT)?,
            snat_ranges: take(ebpf, MAP_SNAT_RANGES)?,
            ep_stats: take(ebpf, MAP_EP_STATS)?,
            global_stats: take(ebpf, MAP_GLOBAL_STATS)?,
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
    /// Live flows of endpoint `index`, as the limit check sees them.
    pub fn active_flows(&self, index: u32) -> Result<u64> {
        check_index(MAP_EP_ACTIVE, index, MAX_ENDPOINTS)?;
        self.ep_active.get(&index, 0).map_err(err(MAP_EP_ACTIVE))
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

    // ---- conntrack ----
    pub fn conntrack(&self) -> Result<Vec<(CtKey, CtValue)>> {
        self.ct.iter().collect::<std::result::Result<Vec<_>, _>>().map_err(err(MAP_CT))
    }
    pub fn ct_get(&self, key: &CtKey) -> Result<Option<CtValue>> {
        absent_ok(self.ct.get(key, 0), MAP_CT)
    }
    /// Remove an entry that holds no connection slot (an orphaned reverse entry).
    /// Forward entries go through the sweeper, which releases their slot.
    /// Returns whether this call removed it.
    pub(crate) fn ct_remove_orphan(&mut self, key: &CtKey) -> Result<bool> {
        absent_ok(self.ct.remove(key), MAP_CT).map(|r| r.is_some())
    }
    /// Seed a conntrack entry directly (tests and benchmarks only).
    pub fn ct_insert(&mut self, key: CtKey, value: CtValue) -> Result<()> {
        self.ct.insert(key, value, 0).map_err(err(MAP_CT))
    }

    // ---- counters ----
    /// Counters of endpoint `index`, summed over CPUs.
    pub fn endpoint_stats(&self, index: u32) -> Result<Stats> {
        check_index(MAP_EP_STATS, index, MAX_ENDPOINTS)?;
        let per_cpu = self.ep_stats.get(&index, 0).map_err(err(MAP_EP_STATS))?;
        Ok(sum(&per_cpu))
    }
    /// Counters no endpoint is charged with, summed over CPUs.
    pub fn global_stats(&self) -> Result<Stats> {
        let per_cpu = self.global_stats.get(&0, 0).map_err(err(MAP_GLOBAL_STATS))?;
        Ok(sum(&per_cpu))
    }
}

fn sum(values: &[Stats]) -> Stats {
    let mut total = Stats::default();
    for v in values {
        total.add(v);
    }
    total
}
