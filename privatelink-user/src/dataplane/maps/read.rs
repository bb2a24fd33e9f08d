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

    // ---- counters ----
    /// Counters of endpoint `index`, summed over CPUs.
    pub fn endpoint_stats(&self, index: u32) -> Result<Stats> {
        check_index(MAP_EP_STATS, index, MAX_ENDPOINTS)?;
        let per_cpu = self.ep_stats.get(&index, 0).map_err(err(MAP_EP_STATS))?;
        Ok(sum(&per_cpu))
    }
    /// The live-flow counts and counters of endpoints `0..upto` at once (a scrape reads
    /// thousands of endpoints: a few batch reads instead of two syscalls per endpoint).
    pub fn endpoint_counters(&self, upto: u32) -> Result<EndpointCounters> {
        use std::os::fd::AsFd;
        let upto = upto.min(MAX_ENDPOINTS);
        let cpus = aya::util::nr_cpus().map_err(|(_, source)| Error::Sys { what: "the number of possible CPUs", source })?;
        let mut stats = vec![Stats::default(); upto as usize];
        crate::dataplane::sys::for_each_in_array::<Stats>(self.ep_stats.map().fd().as_fd(), 0..upto, cpus, |i, per_cpu| {
            if let Some(s) = stats.get_mut(i as usize) {
                *s = sum(per_cpu);
            }
        })
        .map_err(|source| Error::Sys { what: MAP_EP_STATS, source })?;
        Ok(EndpointCounters { uses: self.views.ep_use.read(0..upto), stats })
    }
    /// Counters no endpoint or VPC is charged with, summed over CPUs.
    pub fn global_stats(&self) -> Result<Stats> {
        let per_cpu = self.global_stats.get(&0, 0).map_err(err(MAP_GLOBAL_STATS))?;
        Ok(sum(&per_cpu))
    }
    /// Flows the data path opened to the backend in `slot` and removed, summed over
    /// CPUs (one lookup, whatever the table holds); `.live()` is what is open now.
    pub fn backend_flows(&self, slot: u32) -> Result<BackendFlows> {
        check_index(MAP_BACKEND_FLOWS, slot, MAX_BACKENDS)?;
        let per_cpu = self.backend_flows.get(&slot, 0).map_err(err(MAP_BACKEND_FLOWS))?;
        let mut total = BackendFlows::default();
        for c in per_cpu.iter() {
            total.add(c);
        }
        Ok(total)
    }
    /// What a VPC interface dropped that no endpoint is charged with, summed over CPUs.
    pub fn vpc_stats(&self, vpc_id: u16) -> Result<Stats> {
        let per_cpu = self.vpc_stats.get(&(vpc_id as u32), 0).map_err(err(MAP_VPC_STATS))?;
        Ok(sum(&per_cpu))
    }
}

/// What [`Maps::endpoint_counters`] read, by endpoint index.
pub struct EndpointCounters {
    uses: Vec<EpUse>,
    /// Summed over CPUs.
    stats: Vec<Stats>,
}

impl EndpointCounters {
    /// Live flows holding a slot of endpoint `index`.
    pub fn active(&self, index: u32) -> u64 {
        self.uses(index).open
    }
    /// What endpoint `index` holds (slots, half-open connections, flows).
    pub fn uses(&self, index: u32) -> EpUse {
        self.uses.get(index as usize).copied().unwrap_or_default()
    }
    /// Counters of endpoint `index`, summed over CPUs.
    pub fn stats(&self, index: u32) -> Stats {
        self.stats.get(index as usize).copied().unwrap_or_default()
    }
}

fn sum(values: &[Stats]) -> Stats {
    let mut total = Stats::default();
    for v in values {
        total.add(v);
    }
    total
}
