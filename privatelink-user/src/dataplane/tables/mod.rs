//! The tables of the data path as the control plane keeps them: `Tables` holds the
//! contents of each (wanted, or read back), `desired` computes what a state calls for,
//! `each` describes every table once (its key and value, where its contents live, how
//! an entry is written, removed and read back), and `ORDER` states the write order
//! once. `diff` turns one set of contents into another as ordered writes (`Op`);
//! `reconcile` carries them out. Pure but for the descriptors' map calls.
//!
//! Order of writes: everything an endpoint depends on (SNAT ranges, VPC interfaces,
//! backends, services, ports, Maglev tables) is written before the endpoint itself,
//! and an endpoint's address is bound last; removals go the other way round. So an
//! unchanged endpoint never loses a piece it uses, and a new one is reachable only
//! once it is complete.
//!
//! Adding a table: its ABI types and map name (`privatelink-common`), its declaration
//! in the ebpf crate, its handle in `maps`, its field here, one descriptor in `each`
//! and its row in `ORDER`, and what `desired` puts in it.

mod desired;
pub mod each;

pub use desired::desired;

use super::{error::Result, links::Iface, maps::Maps};
use each::*;
use privatelink_common::*;
use std::{
    any::Any,
    collections::{BTreeMap, BTreeSet},
    fmt::Debug,
    net::Ipv4Addr,
};

pub type IpKey = (u16, Ipv4Addr);
pub type PortK = (u32, u8, u16);
pub type DnsK = (u16, String);

/// The contents of every table (see `each` for what each holds).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tables {
    pub snat_ranges: BTreeMap<(Ipv4Addr, u8), ()>,
    pub vpcs: BTreeMap<u32, VpcInfo>,
    pub backends: BTreeMap<u32, (Ipv4Addr, bool)>,
    pub services: BTreeMap<u32, ServiceInfo>,
    pub ports: BTreeMap<PortK, u16>,
    pub maglev: BTreeMap<u32, Vec<u32>>,
    pub ep_snat: BTreeMap<u32, Ipv4Addr>,
    pub sg_sets: BTreeMap<u32, Vec<SgRule>>,
    pub rates: BTreeMap<u32, Rate>,
    pub endpoints: BTreeMap<u32, EndpointInfo>,
    pub ep_ips: BTreeMap<IpKey, u32>,
    pub dns: BTreeMap<DnsK, DnsEntry>,
}

/// What the host tells about an interface: its ifindex, MAC, MTU and addresses.
pub type Resolve<'a> = &'a dyn Fn(&str) -> Option<Iface>;

/// Whether a service's backend passes its health checks.
pub type Up<'a> = &'a dyn Fn(&str, Ipv4Addr) -> bool;

/// One BPF table, described once.
pub trait Table: 'static {
    type K: Ord + Clone + Debug + Send + Sync;
    type V: Clone + PartialEq + Debug + Send + Sync;
    /// The map's name in the ABI.
    const MAP: &'static str;
    /// Where its contents live in `Tables`.
    fn of(t: &Tables) -> &BTreeMap<Self::K, Self::V>;
    fn of_mut(t: &mut Tables) -> &mut BTreeMap<Self::K, Self::V>;
    /// Write one entry (`new`: its key held nothing); the map elements written.
    fn set(maps: &mut Maps, k: &Self::K, v: &Self::V, new: bool) -> Result<usize>;
    /// Remove (or clear) one entry; the map elements written.
    fn remove(maps: &mut Maps, k: &Self::K) -> Result<usize>;
    /// What the map holds.
    fn read(maps: &Maps) -> Result<BTreeMap<Self::K, Self::V>>;
}

/// One step of the write order: the writes of one table, or of part of one.
type Step = fn(&Tables, &Tables, &mut Vec<Op>);
type Read = fn(&Maps, &mut Tables) -> Result<()>;

/// A table's place in the write order: what it sets on the way down, what it removes
/// on the way back up, and how it is read back.
struct Row {
    set: Step,
    remove: Step,
    read: Read,
}

const fn row<T: Table>() -> Row {
    Row { set: set::<T>, remove: remove::<T>, read: read::<T> }
}

/// The write order, stated once: sets go down it, removals up it.
const ORDER: [Row; 13] = [
    row::<SnatRanges>(),
    row::<Vpcs>(),
    // A backend coming up (or new) is marked before Maglev slots point at it; one
    // going down is marked after the slots moved away from it (the row after Maglev).
    Row { set: backends_coming_up, remove: remove::<Backends>, read: read::<Backends> },
    row::<Services>(),
    row::<Ports>(),
    row::<Maglev>(),
    Row { set: backends_going_down, remove: nothing, read: none },
    // An endpoint's SNAT addresses, rule set and rate are written before the endpoint
    // that uses them.
    row::<EpSnat>(),
    row::<SgSets>(),
    row::<Rates>(),
    row::<Endpoints>(),
    row::<EpIps>(),
    // Names appear once their addresses answer, and go before them.
    row::<Dns>(),
];

/// Writes that turn `have` into `want`, in the order of `ORDER`.
pub fn diff(want: &Tables, have: &Tables) -> Vec<Op> {
    let mut ops = Vec::new();
    for r in &ORDER {
        (r.set)(want, have, &mut ops);
    }
    for r in ORDER.iter().rev() {
        (r.remove)(want, have, &mut ops);
    }
    ops
}

/// What the live maps hold, in `Tables` form.
pub fn observe(maps: &Maps) -> Result<Tables> {
    let mut t = Tables::default();
    for r in &ORDER {
        (r.read)(maps, &mut t)?;
    }
    Ok(t)
}

fn set_where<T: Table>(want: &Tables, have: &Tables, ops: &mut Vec<Op>, keep: impl Fn(&T::K, &T::V) -> bool) {
    let have = T::of(have);
    for (k, v) in T::of(want) {
        let was = have.get(k);
        if was != Some(v) && keep(k, v) {
            ops.push(Op(Box::new(Set::<T> { k: k.clone(), v: v.clone(), new: was.is_none() })));
        }
    }
}

fn set<T: Table>(want: &Tables, have: &Tables, ops: &mut Vec<Op>) {
    set_where::<T>(want, have, ops, |_, _| true);
}

fn remove<T: Table>(want: &Tables, have: &Tables, ops: &mut Vec<Op>) {
    let want = T::of(want);
    for k in T::of(have).keys().filter(|k| !want.contains_key(k)) {
        ops.push(Op(Box::new(Remove::<T> { k: k.clone() })));
    }
}

fn read<T: Table>(maps: &Maps, t: &mut Tables) -> Result<()> {
    *T::of_mut(t) = T::read(maps)?;
    Ok(())
}

fn nothing(_: &Tables, _: &Tables, _: &mut Vec<Op>) {}

fn none(_: &Maps, _: &mut Tables) -> Result<()> {
    Ok(())
}

/// Whether backend `k` was up and goes down.
fn goes_down(have: &Tables, k: &u32, v: &(Ipv4Addr, bool)) -> bool {
    !v.1 && have.backends.get(k).is_some_and(|h| h.1)
}

fn backends_coming_up(want: &Tables, have: &Tables, ops: &mut Vec<Op>) {
    set_where::<Backends>(want, have, ops, |k, v| !goes_down(have, k, v));
}

fn backends_going_down(want: &Tables, have: &Tables, ops: &mut Vec<Op>) {
    set_where::<Backends>(want, have, ops, |k, v| goes_down(have, k, v));
}

/// One write to one table.
pub struct Op(Box<dyn Write>);

trait Write: Debug + Send + Sync {
    fn to_maps(&self, maps: &mut Maps) -> Result<usize>;
    fn to_tables(&self, t: &mut Tables);
    fn as_any(&self) -> &dyn Any;
}

struct Set<T: Table> {
    k: T::K,
    v: T::V,
    new: bool,
}

struct Remove<T: Table> {
    k: T::K,
}

impl<T: Table> Debug for Set<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "set {} {:?} = {:?}{}", T::MAP, self.k, self.v, if self.new { " (new)" } else { "" })
    }
}

impl<T: Table> Debug for Remove<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "remove {} {:?}", T::MAP, self.k)
    }
}

impl<T: Table> Write for Set<T> {
    fn to_maps(&self, maps: &mut Maps) -> Result<usize> {
        T::set(maps, &self.k, &self.v, self.new)
    }
    fn to_tables(&self, t: &mut Tables) {
        T::of_mut(t).insert(self.k.clone(), self.v.clone());
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl<T: Table> Write for Remove<T> {
    fn to_maps(&self, maps: &mut Maps) -> Result<usize> {
        T::remove(maps, &self.k)
    }
    fn to_tables(&self, t: &mut Tables) {
        T::of_mut(t).remove(&self.k);
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl Op {
    /// Carry the write out on the live maps; the map elements written.
    pub fn write(&self, maps: &mut Maps) -> Result<usize> {
        self.0.to_maps(maps)
    }
    /// The same write on contents held in memory (what the maps would then hold).
    pub fn apply(&self, t: &mut Tables) {
        self.0.to_tables(t)
    }
    /// The entry this op sets in table `T`, if it is one.
    pub fn sets<T: Table>(&self) -> Option<(&T::K, &T::V)> {
        self.0.as_any().downcast_ref::<Set<T>>().map(|s| (&s.k, &s.v))
    }
    /// The key this op removes from table `T`, if it is one.
    pub fn removes<T: Table>(&self) -> Option<&T::K> {
        self.0.as_any().downcast_ref::<Remove<T>>().map(|r| &r.k)
    }
}

impl Debug for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl Tables {
    /// (provider interface index, routing table, address) of every backend of an
    /// active service: the next hops the kernel must keep resolved.
    pub fn backend_hops(&self) -> BTreeSet<(u32, u32, Ipv4Addr)> {
        let mut out = BTreeSet::new();
        for (svc, info) in &self.services {
            let Some(vpc) = self.vpcs.get(&info.ifindex) else { continue };
            let slots: BTreeSet<u32> = self.maglev.get(svc).into_iter().flatten().copied().filter(|s| *s != BACKEND_NONE).collect();
            for slot in slots {
                if let Some((ip, _)) = self.backends.get(&slot) {
                    out.insert((info.ifindex, vpc.fib_table, *ip));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;
