//! The data path's side of flow replication (`privatelink_common::replication`): the
//! ring of flow events and the switch that turns them on (`FlowEvents`), the standby
//! table other nodes' flows are written into (`Standby`), and a snapshot of this
//! node's flow table as events (`snapshot`). Knows nothing of buddies or the wire.

use super::{
    error::{Error, Result},
    maps::Reader,
};
use aya::maps::{
    lpm_trie::{Key, LpmTrie},
    Array, HashMap, IterableMap, Map, MapData, RingBuf,
};
use privatelink_common::*;
use std::{
    collections::{BTreeSet, HashMap as StdMap},
    net::Ipv4Addr,
};

/// The ring of flow events and the replication switch.
pub struct FlowEvents {
    pub ring: RingBuf<MapData>,
    flags: Array<MapData, u64>,
}

impl FlowEvents {
    pub fn new(ring: RingBuf<MapData>, flags: Array<MapData, u64>) -> FlowEvents {
        FlowEvents { ring, flags }
    }

    /// Start or stop writing events.
    pub fn switch(&mut self, on: bool) -> Result<()> {
        self.flags.set(REPL_ON, on as u64, 0).map_err(|source| Error::Map { map: MAP_REPLICATION, source })
    }

    /// Events the data path could not write (the ring was full).
    pub fn lost(&self) -> Result<u64> {
        self.flags.get(&REPL_LOST, 0).map_err(|source| Error::Map { map: MAP_REPLICATION, source })
    }

    /// The next event in the ring, if any (an item of another size is skipped).
    pub fn next_event(&mut self) -> Option<Option<FlowEvent>> {
        let item = self.ring.next()?;
        let bytes: Option<&[u8; 176]> = (*item).try_into().ok();
        Some(bytes.map(FlowEvent::from_bytes))
    }
}

/// The standby table: flows of other nodes, as they replicate them.
pub struct Standby {
    map: HashMap<MapData, CtKey, CtValue>,
}

impl Standby {
    pub fn new(map: HashMap<MapData, CtKey, CtValue>) -> Standby {
        Standby { map }
    }

    /// Write both entries of a flow (replacing what was there).
    pub fn put(&mut self, e: &FlowEvent) -> Result<()> {
        let err = |source| Error::Map { map: MAP_STANDBY, source };
        self.map.insert(e.rev_key, e.rev, 0).map_err(err)?;
        self.map.insert(e.key, e.fwd, 0).map_err(err)
    }

    /// Remove a flow's entries (those already gone are fine).
    pub fn remove(&mut self, key: &CtKey, rev_key: &CtKey) {
        let _ = self.map.remove(key);
        let _ = self.map.remove(rev_key);
    }

    /// The entry under `key`, if any.
    pub fn get(&self, key: &CtKey) -> Option<CtValue> {
        self.map.get(key, 0).ok()
    }

    /// A read-only handle of its own (for readers on other threads).
    pub fn reader(&self) -> Result<StandbyReader> {
        use std::os::fd::AsFd;
        Ok(StandbyReader(super::maps::dup(self.map.map().fd().as_fd(), MAP_STANDBY)?))
    }
}

/// The standby table, read whole.
pub struct StandbyReader(std::os::fd::OwnedFd);

impl StandbyReader {
    pub fn entries(&self) -> Result<Vec<(CtKey, CtValue)>> {
        use std::os::fd::AsFd;
        super::maps::read_conntrack(self.0.as_fd())
    }
}

/// The slices this node has taken over (`PL_TAKEN`), and what it adopted of them.
pub struct Takeover {
    taken: LpmTrie<MapData, SnatRangeKey, u32>,
    flags: Array<MapData, u64>,
    /// What the trie holds: (network, prefix length).
    held: BTreeSet<(Ipv4Addr, u8)>,
}

impl Takeover {
    pub fn new(taken: LpmTrie<MapData, SnatRangeKey, u32>, flags: Array<MapData, u64>) -> Takeover {
        Takeover { taken, flags, held: BTreeSet::new() }
    }

    /// Take over exactly `slices` (network, prefix length): the others are given up.
    pub fn set(&mut self, slices: &BTreeSet<(Ipv4Addr, u8)>) -> Result<()> {
        let err = |source| Error::Map { map: MAP_TAKEN, source };
        if slices.len() > MAX_TAKEN as usize {
            return Err(Error::OutOfRange { map: MAP_TAKEN, index: slices.len() as u32, capacity: MAX_TAKEN });
        }
        // Announced to the data path last when taking, first when giving up.
        if slices.is_empty() && !self.held.is_empty() {
            self.flags.set(REPL_TAKING, 0, 0).map_err(|source| Error::Map { map: MAP_REPLICATION, source })?;
        }
        for (net, prefix) in self.held.difference(slices).copied().collect::<Vec<_>>() {
            match self.taken.remove(&Key::new(prefix as u32, super::maps::ip_raw(net))) {
                Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
                Err(e) => return Err(err(e)),
            }
            self.held.remove(&(net, prefix));
        }
        for &(net, prefix) in slices.difference(&self.held.clone()) {
            self.taken.insert(&Key::new(prefix as u32, super::maps::ip_raw(net)), 1, 0).map_err(err)?;
            self.held.insert((net, prefix));
        }
        if !slices.is_empty() {
            self.flags.set(REPL_TAKING, 1, 0).map_err(|source| Error::Map { map: MAP_REPLICATION, source })?;
        }
        Ok(())
    }

    /// Flows adopted from the standby table so far.
    pub fn adopted(&self) -> Result<u64> {
        self.flags.get(&REPL_ADOPTED, 0).map_err(|source| Error::Map { map: MAP_REPLICATION, source })
    }

    /// Packets of copies whose slice is not taken over, dropped without a reset.
    pub fn held_packets(&self) -> Result<u64> {
        self.flags.get(&REPL_HELD, 0).map_err(|source| Error::Map { map: MAP_REPLICATION, source })
    }
}

/// The hand-off's maps (`privatelink_common::replication::Handoff`).
pub struct HandoffMaps {
    cfg: Array<MapData, Handoff>,
    peers: HashMap<MapData, u32, u32>,
    vpc_ifindex: Array<MapData, u32>,
}

impl HandoffMaps {
    pub fn new(cfg: Array<MapData, Handoff>, peers: HashMap<MapData, u32, u32>, vpc_ifindex: Array<MapData, u32>) -> HandoffMaps {
        HandoffMaps { cfg, peers, vpc_ifindex }
    }

    pub fn set(&mut self, h: Handoff) -> Result<()> {
        self.cfg.set(0, h, 0).map_err(|source| Error::Map { map: MAP_HANDOFF, source })
    }

    /// The peers a hand-off is taken from: exactly `peers`.
    pub fn set_peers(&mut self, peers: &BTreeSet<Ipv4Addr>) -> Result<()> {
        let err = |source| Error::Map { map: MAP_PEERS, source };
        let have: Vec<u32> = self.peers.keys().filter_map(|k| k.ok()).collect();
        for k in have {
            if !peers.contains(&super::maps::ip_from_raw(k)) {
                let _ = self.peers.remove(&k);
            }
        }
        for p in peers.iter().take(MAX_PEERS as usize) {
            self.peers.insert(super::maps::ip_raw(*p), 1, 0).map_err(err)?;
        }
        Ok(())
    }

    /// Each VPC's interface by VPC id (0: none).
    pub fn set_vpc(&mut self, vpc_id: u16, ifindex: u32) -> Result<()> {
        self.vpc_ifindex.set(vpc_id as u32, ifindex, 0).map_err(|source| Error::Map { map: MAP_VPC_IFINDEX, source })
    }
}

/// A second handle on `PL_REPLICATION`.
pub(super) fn again(flags: &Array<MapData, u64>) -> Result<Array<MapData, u64>> {
    use std::os::fd::AsFd;
    let err = |source| Error::Map { map: MAP_REPLICATION, source };
    let data = MapData::from_fd(super::maps::dup(flags.map().fd().as_fd(), MAP_REPLICATION)?).map_err(err)?;
    Array::try_from(Map::Array(data)).map_err(err)
}

/// Every flow of this node's table whose two entries are both there, as events
/// (`FLOW_UPSERT`), for a buddy that needs the whole table.
pub fn snapshot(reader: &Reader, at_ns: u64) -> Result<Vec<FlowEvent>> {
    let all = reader.conntrack()?;
    let by_key: StdMap<CtKey, CtValue> = all.iter().copied().collect();
    let mut out = Vec::new();
    for (key, fwd) in &all {
        if fwd.kind != CT_KIND_FORWARD {
            continue;
        }
        let rev_key = fwd.peer_key(key.proto);
        let Some(rev) = by_key.get(&rev_key) else { continue };
        out.push(FlowEvent { at_ns, op: FLOW_UPSERT, _pad: [0; 7], key: *key, fwd: *fwd, rev_key, rev: *rev });
    }
    Ok(out)
}

/// The interface holding `ip` (its name, and what `links::interface` tells of it).
pub fn interface_of(ip: Ipv4Addr) -> Result<(String, super::links::Iface)> {
    let rows = super::kernel::ip_json(&["-4", "-j", "addr", "show", "to", &format!("{ip}/32")])?;
    let name = rows.as_array().and_then(|a| a.first()).and_then(|r| r["ifname"].as_str()).ok_or_else(|| Error::Invalid(format!("no interface holds {ip}")))?;
    let iface = super::links::interface(name).ok_or_else(|| Error::NoInterface(name.to_string()))?;
    Ok((name.to_string(), iface))
}

/// The MAC the kernel has resolved for `ip` on `dev`, if any.
pub fn neighbour(ip: Ipv4Addr, dev: &str) -> Option<[u8; 6]> {
    let v = super::kernel::ip_json(&["-4", "-j", "neigh", "show", "to", &ip.to_string(), "dev", dev]).ok()?;
    let n = v.as_array()?.first()?;
    let state = n["state"].as_array().map(|s| s.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>()).unwrap_or_default();
    if state.iter().any(|s| *s == "FAILED" || *s == "INCOMPLETE") {
        return None;
    }
    parse_mac(n["lladdr"].as_str()?)
}

fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let b: Vec<u8> = s.split(':').filter_map(|x| u8::from_str_radix(x, 16).ok()).collect();
    b.try_into().ok()
}

