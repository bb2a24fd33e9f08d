//! The counters and the flow table, read-only: what status, `get`, `stats`, scrapes
//! and the tenant API show. A `Reader` holds descriptors of its own (`try_clone`), so
//! readers on other tasks never wait for whoever writes the maps, and it can write
//! nothing: it has no write method.

use super::{check_index, err, read_conntrack};
use crate::dataplane::{
    error::{Error, Result},
    sys::Mapped,
};
use aya::maps::{IterableMap, Map, MapData, PerCpuArray};
use privatelink_common::*;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

pub struct Reader {
    ep_stats: PerCpuArray<MapData, Stats>,
    global_stats: PerCpuArray<MapData, Stats>,
    vpc_stats: PerCpuArray<MapData, Stats>,
    backend_flows: PerCpuArray<MapData, BackendFlows>,
    dns_stats: PerCpuArray<MapData, DnsStats>,
    /// The endpoints' slot counters, through a read-only memory view (no syscall).
    ep_use: Mapped,
    /// Its own descriptors: held so `ep_use` stays valid, and the flow table's.
    ep_use_map: OwnedFd,
    ct: OwnedFd,
    ct_capacity: u32,
}

/// A descriptor of our own for the object behind `fd` (`what` names it in errors).
pub(crate) fn dup(fd: BorrowedFd<'_>, what: &'static str) -> Result<OwnedFd> {
    fd.try_clone_to_owned().map_err(|source| Error::Sys { what, source })
}

/// A second handle on per-CPU array `a`: the same kernel map, a descriptor of its own.
pub(super) fn again<V: aya::Pod>(a: &PerCpuArray<MapData, V>, name: &'static str) -> Result<PerCpuArray<MapData, V>> {
    let data = MapData::from_fd(dup(a.map().fd().as_fd(), name)?).map_err(err(name))?;
    PerCpuArray::try_from(Map::PerCpuArray(data)).map_err(err(name))
}

/// The maps a `Reader` reads, as the loader took them.
pub struct Sources {
    pub ep_stats: PerCpuArray<MapData, Stats>,
    pub global_stats: PerCpuArray<MapData, Stats>,
    pub vpc_stats: PerCpuArray<MapData, Stats>,
    pub backend_flows: PerCpuArray<MapData, BackendFlows>,
    pub dns_stats: PerCpuArray<MapData, DnsStats>,
    pub ep_use: OwnedFd,
    pub ct: OwnedFd,
    pub ct_capacity: u32,
}

impl Reader {
    pub fn new(s: Sources) -> Result<Reader> {
        let ep_use = Mapped::new(s.ep_use.as_fd(), MAX_ENDPOINTS, std::mem::size_of::<EpUse>()).map_err(|source| Error::Sys { what: MAP_EP_USE, source })?;
        Ok(Reader {
            ep_stats: s.ep_stats,
            global_stats: s.global_stats,
            vpc_stats: s.vpc_stats,
            backend_flows: s.backend_flows,
            dns_stats: s.dns_stats,
            ep_use,
            ep_use_map: s.ep_use,
            ct: s.ct,
            ct_capacity: s.ct_capacity,
        })
    }

    /// Another reader of the same maps, with descriptors of its own.
    pub fn try_clone(&self) -> Result<Reader> {
        Reader::new(Sources {
            ep_stats: again(&self.ep_stats, MAP_EP_STATS)?,
            global_stats: again(&self.global_stats, MAP_GLOBAL_STATS)?,
            vpc_stats: again(&self.vpc_stats, MAP_VPC_STATS)?,
            backend_flows: again(&self.backend_flows, MAP_BACKEND_FLOWS)?,
            dns_stats: again(&self.dns_stats, MAP_DNS_STATS)?,
            ep_use: dup(self.ep_use_map.as_fd(), MAP_EP_USE)?,
            ct: dup(self.ct.as_fd(), MAP_CT)?,
            ct_capacity: self.ct_capacity,
        })
    }

    /// Live flows holding a slot of endpoint `index`, as the limit check sees them (read
    /// from memory: no syscall).
    pub fn active_flows(&self, index: u32) -> Result<u64> {
        Ok(self.endpoint_use(index)?.open)
    }
    /// Live flows holding a slot of any of these endpoints (read from memory).
    pub fn active_flows_of(&self, indices: impl IntoIterator<Item = u32>) -> u64 {
        indices.into_iter().filter_map(|i| self.active_flows(i).ok()).sum()
    }
    /// What endpoint `index` holds: slots, half-open connections, flows in the table
    /// (read from memory: no syscall).
    pub fn endpoint_use(&self, index: u32) -> Result<EpUse> {
        check_index(MAP_EP_USE, index, MAX_ENDPOINTS)?;
        Ok(self.ep_use.get(index))
    }
    /// Counters of endpoint `index`, summed over CPUs.
    pub fn endpoint_stats(&self, index: u32) -> Result<Stats> {
        check_index(MAP_EP_STATS, index, MAX_ENDPOINTS)?;
        let per_cpu = self.ep_stats.get(&index, 0).map_err(err(MAP_EP_STATS))?;
        Ok(sum(&per_cpu))
    }
    /// The live-flow counts and counters of endpoints `0..upto` at once (a scrape reads
    /// thousands of endpoints: a few batch reads instead of two syscalls per endpoint).
    pub fn endpoint_counters(&self, upto: u32) -> Result<EndpointCounters> {
        let upto = upto.min(MAX_ENDPOINTS);
        let cpus = aya::util::nr_cpus().map_err(|(_, source)| Error::Sys { what: "the number of possible CPUs", source })?;
        let mut stats = vec![Stats::default(); upto as usize];
        crate::dataplane::sys::for_each_in_array::<Stats>(self.ep_stats.map().fd().as_fd(), 0..upto, cpus, |i, per_cpu| {
            if let Some(s) = stats.get_mut(i as usize) {
                *s = sum(per_cpu);
            }
        })
        .map_err(|source| Error::Sys { what: MAP_EP_STATS, source })?;
        Ok(EndpointCounters { uses: self.ep_use.read(0..upto), stats })
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
    /// Answers sent from VPC `vpc_id`'s DNS address, per `DnsStats` slot, summed over CPUs.
    pub fn dns_stats(&self, vpc_id: u16) -> Result<DnsStats> {
        let per_cpu = self.dns_stats.get(&(vpc_id as u32), 0).map_err(err(MAP_DNS_STATS))?;
        let mut total = DnsStats::default();
        for s in per_cpu.iter() {
            for (t, v) in total.answers.iter_mut().zip(s.answers) {
                *t += v;
            }
        }
        Ok(total)
    }
    /// The whole flow table (read in batches).
    pub fn conntrack(&self) -> Result<Vec<(CtKey, CtValue)>> {
        read_conntrack(self.ct.as_fd())
    }
    /// Entries the flow table holds at most.
    pub fn ct_capacity(&self) -> u32 {
        self.ct_capacity
    }
}

/// What [`Reader::endpoint_counters`] read, by endpoint index.
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
