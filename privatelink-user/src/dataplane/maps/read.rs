//! Reading whole tables back (what drift repair compares with the recorded state) and
//! the counters (what status and scrapes show): arrays through their read-only memory
//! views, hash maps and per-CPU arrays in batches, a few syscalls for thousands of
//! entries.

use super::{check_index, err, ip_from_raw, name_of_key, Maps};
use crate::dataplane::{
    error::{Error, Result},
    sys::Mapped,
};
use aya::maps::{HashMap, IterableMap, MapData};
use privatelink_common::*;
use std::{collections::BTreeMap, net::Ipv4Addr};

/// The slots of an array map that `in_use` says are taken.
fn slots_in_use<V: aya::Pod + Default>(view: &Mapped, capacity: u32, in_use: impl Fn(&V) -> bool) -> BTreeMap<u32, V> {
    (0..capacity).zip(view.read::<V>(0..capacity)).filter(|(_, v)| in_use(v)).collect()
}

/// Every entry of a hash map, read in batches.
fn read_hash<K: aya::Pod + Default, V: aya::Pod + Default>(h: &HashMap<MapData, K, V>, map: &'static str) -> Result<Vec<(K, V)>> {
    use std::os::fd::AsFd;
    let mut out = Vec::new();
    crate::dataplane::sys::for_each_batch::<K, V>(h.map().fd().as_fd(), 1024, |keys, values| out.extend(keys.iter().copied().zip(values.iter().copied())))
        .map_err(|source| Error::Sys { what: map, source })?;
    Ok(out)
}

impl Maps {
    // ---- whole tables (what the reconciler observes) ----
    /// Endpoints with a limit.
    pub fn all_rates(&self) -> Result<BTreeMap<u32, Rate>> {
        Ok(slots_in_use(&self.views.rates, MAX_ENDPOINTS, |r: &Rate| r.ps_per_byte != 0))
    }
    pub fn all_sg_sets(&self) -> Result<BTreeMap<u32, Vec<SgRule>>> {
        let mut out = BTreeMap::new();
        for item in self.sg_sets.iter() {
            let (k, v) = item.map_err(err(MAP_SG_SETS))?;
            out.insert(k, v.rules[..(v.count as usize).min(MAX_SG_RULES)].to_vec());
        }
        Ok(out)
    }
    /// Every entry: (VPC id, name) -> entry.
    pub fn all_dns(&self) -> Result<BTreeMap<(u16, String), DnsEntry>> {
        let mut out = BTreeMap::new();
        for item in self.dns.iter() {
            let (k, v) = item.map_err(err(MAP_DNS))?;
            let len = (k.prefix_len() as usize / 8).saturating_sub(2).min(DNS_KEY_MAX);
            let data = k.data();
            out.insert((u16::from_be_bytes(data.vpc_id_be), name_of_key(&data.key[..len])), v);
        }
        Ok(out)
    }
    pub fn all_vpcs(&self) -> Result<BTreeMap<u32, VpcInfo>> {
        Ok(read_hash(&self.vpcs, MAP_VPCS)?.into_iter().collect())
    }
    /// (vpc id, address) -> endpoint index
    pub fn all_endpoint_ips(&self) -> Result<BTreeMap<(u16, Ipv4Addr), u32>> {
        Ok(read_hash(&self.ep_ips, MAP_EP_IPS)?.into_iter().map(|(k, v)| ((k.vpc_id, ip_from_raw(k.ip_be)), v)).collect())
    }
    /// Endpoint slots in use (state != 0).
    pub fn all_endpoints(&self) -> Result<BTreeMap<u32, EndpointInfo>> {
        Ok(slots_in_use(&self.views.endpoints, MAX_ENDPOINTS, |e: &EndpointInfo| e.state != 0))
    }
    /// The SNAT addresses the endpoints count (`snat_count` slots each; 0 = cleared).
    pub fn all_ep_snat(&self, endpoints: &BTreeMap<u32, EndpointInfo>) -> Result<BTreeMap<u32, Ipv4Addr>> {
        let mut out = BTreeMap::new();
        for (idx, e) in endpoints {
            let base = idx * MAX_SNAT_PER_ENDPOINT;
            let count = (e.snat_count.max(1) as u32).min(MAX_SNAT_PER_ENDPOINT);
            for (slot, ip) in (base..).zip(self.views.ep_snat.read::<u32>(base..base + count)) {
                if ip != 0 {
                    out.insert(slot, ip_from_raw(ip));
                }
            }
        }
        Ok(out)
    }
    /// Service slots in use (active).
    pub fn all_services(&self) -> Result<BTreeMap<u32, ServiceInfo>> {
        Ok(slots_in_use(&self.views.services, MAX_SERVICES, |s: &ServiceInfo| s.active != 0))
    }
    /// (service, proto, endpoint port) -> service port, ports in host order.
    pub fn all_ports(&self) -> Result<BTreeMap<(u32, u8, u16), u16>> {
        Ok(read_hash(&self.ports, MAP_PORTS)?.into_iter().map(|(k, v)| ((k.service, k.proto, u16::from_be(k.endpoint_port_be)), u16::from_be(v.service_port_be))).collect())
    }
    /// Backend slots in use: slot -> (address, up).
    pub fn all_backends(&self) -> Result<BTreeMap<u32, (Ipv4Addr, bool)>> {
        let used = slots_in_use(&self.views.backends, MAX_BACKENDS, |b: &BackendInfo| b.ip_be != 0 || b.flags != 0);
        Ok(used.into_iter().map(|(i, b)| (i, (ip_from_raw(b.ip_be), b.flags & BACKEND_FLAG_UP != 0))).collect())
    }
    pub fn maglev_table(&self, service: u32) -> Result<Vec<u32>> {
        check_index(MAP_SERVICES, service, MAX_SERVICES)?;
        let base = service * MAGLEV_SIZE;
        Ok(self.views.maglev.read(base..base + MAGLEV_SIZE))
    }
    pub fn all_snat_ranges(&self) -> Result<std::collections::BTreeSet<(Ipv4Addr, u8)>> {
        let mut out = std::collections::BTreeSet::new();
        for k in self.snat_ranges.keys() {
            let k = k.map_err(err(MAP_SNAT_RANGES))?;
            out.insert((ip_from_raw(k.data()), k.prefix_len() as u8));
        }
        Ok(out)
    }
}
