//! What a buddy holds of the nodes that replicate to it: per origin node, the run of
//! its daemon, the last frame applied, and the flows it has in the standby table
//! (forward key -> reverse key), so that a removal or a snapshot touches that node's
//! flows only. Every event is checked before it is written: an origin writes flows of
//! its own SNAT slice only, both entries consistent with each other; an event that
//! is not is skipped and counted, never written.

use super::wire::Frame;
use crate::{dataplane::replica::Standby, model::spec::Cidr};
use privatelink_common::*;
use std::{
    collections::{HashMap, HashSet},
    net::Ipv4Addr,
};

/// Where copies are written (the standby table; a map in tests).
pub trait Table {
    fn put(&mut self, e: &FlowEvent) -> anyhow::Result<()>;
    fn remove(&mut self, key: &CtKey, rev_key: &CtKey);
}

impl Table for Standby {
    fn put(&mut self, e: &FlowEvent) -> anyhow::Result<()> {
        Ok(Standby::put(self, e)?)
    }
    fn remove(&mut self, key: &CtKey, rev_key: &CtKey) {
        Standby::remove(self, key, rev_key)
    }
}

#[derive(Default)]
struct Origin {
    run: u64,
    applied: u64,
    /// Forward key -> reverse key of every flow copied.
    flows: HashMap<CtKey, CtKey>,
    /// Forward keys a snapshot in progress carried.
    snapshot: Option<HashSet<CtKey>>,
}

#[derive(Default)]
pub struct Copies {
    origins: HashMap<String, Origin>,
    /// Flows one origin may hold at most (the standby table's size, in flows).
    pub limit: usize,
}

/// What applying a frame did.
#[derive(Debug, Default, PartialEq)]
pub struct Applied {
    /// The frame to acknowledge (the highest applied).
    pub ack: u64,
    /// Events skipped: inconsistent, outside the origin's slice, over the limit.
    pub refused: u64,
}

#[derive(Debug, PartialEq, thiserror::Error)]
pub enum StreamError {
    #[error("frame {got} after frame {applied}: frames were lost")]
    Gap { applied: u64, got: u64 },
    #[error("a {0} frame in a replication stream")]
    Unexpected(&'static str),
    #[error("writing the standby table: {0}")]
    Table(String),
}

impl Copies {
    pub fn new(limit: usize) -> Copies {
        Copies { origins: HashMap::new(), limit }
    }

    /// An origin says hello: the last frame applied of its run `run` (0: a run this
    /// node has not seen, which starts with a snapshot). Its flows stay until then.
    pub fn welcome(&mut self, node: &str, run: u64) -> u64 {
        let o = self.origins.entry(node.to_string()).or_default();
        if o.run != run {
            o.run = run;
            o.applied = 0;
            o.snapshot = None;
        }
        o.applied
    }

    /// Apply one numbered frame from `node`, whose SNAT slice is `ranges`.
    pub fn apply(&mut self, node: &str, frame: Frame, ranges: &[Cidr], table: &mut dyn Table) -> Result<Applied, StreamError> {
        let limit = self.limit;
        let o = self.origins.entry(node.to_string()).or_default();
        let seq = match &frame {
            Frame::Begin { seq } => {
                // A snapshot may start the stream over at any number.
                o.applied = *seq;
                o.snapshot = Some(HashSet::new());
                return Ok(Applied { ack: *seq, refused: 0 });
            }
            Frame::Batch { seq, .. } | Frame::End { seq } => *seq,
            Frame::Hello { .. } => return Err(StreamError::Unexpected("hello")),
            Frame::Welcome { .. } => return Err(StreamError::Unexpected("welcome")),
            Frame::Ack { .. } => return Err(StreamError::Unexpected("ack")),
        };
        if seq <= o.applied {
            // Sent again after a reconnect: applied already.
            return Ok(Applied { ack: o.applied, refused: 0 });
        }
        if seq != o.applied + 1 {
            return Err(StreamError::Gap { applied: o.applied, got: seq });
        }
        let mut refused = 0;
        match frame {
            Frame::End { .. } => {
                if let Some(seen) = o.snapshot.take() {
                    let gone: Vec<(CtKey, CtKey)> = o.flows.iter().filter(|(k, _)| !seen.contains(k)).map(|(k, r)| (*k, *r)).collect();
                    for (k, r) in gone {
                        table.remove(&k, &r);
                        o.flows.remove(&k);
                    }
                }
            }
            Frame::Batch { events, .. } => {
                for e in &events {
                    if e.op == FLOW_REMOVED {
                        if let Some(r) = o.flows.remove(&e.key) {
                            table.remove(&e.key, &r);
                        }
                        continue;
                    }
                    let known = o.flows.get(&e.key).copied();
                    if check(e, ranges).is_err() || (known.is_none() && o.flows.len() >= limit) {
                        refused += 1;
                        continue;
                    }
                    if let Some(old) = known.filter(|r| *r != e.rev_key) {
                        table.remove(&e.key, &old);
                    }
                    table.put(e).map_err(|err| StreamError::Table(format!("{err:#}")))?;
                    o.flows.insert(e.key, e.rev_key);
                    if let Some(seen) = &mut o.snapshot {
                        seen.insert(e.key);
                    }
                }
            }
            _ => unreachable!("numbered frames only"),
        }
        o.applied = seq;
        Ok(Applied { ack: seq, refused })
    }

    /// Forget `node`'s flows and remove them from the table.
    pub fn drop_origin(&mut self, node: &str, table: &mut dyn Table) -> usize {
        let Some(o) = self.origins.remove(node) else { return 0 };
        for (k, r) in &o.flows {
            table.remove(k, r);
        }
        o.flows.len()
    }

    /// Flows held per origin.
    pub fn held(&self) -> Vec<(String, u64)> {
        let mut v: Vec<(String, u64)> = self.origins.iter().map(|(n, o)| (n.clone(), o.flows.len() as u64)).collect();
        v.sort();
        v
    }

    pub fn origins(&self) -> Vec<String> {
        self.origins.keys().cloned().collect()
    }
}

/// Why an event may not be written: its entries must be a flow as the data path makes
/// them (a forward and a reverse entry pointing at each other, one endpoint), and its
/// SNAT address must be in the origin's slice.
pub fn check(e: &FlowEvent, ranges: &[Cidr]) -> Result<(), &'static str> {
    let proto = e.key.proto;
    if proto != PROTO_TCP && proto != PROTO_UDP {
        return Err("not TCP or UDP");
    }
    if e.fwd.kind != CT_KIND_FORWARD || e.rev.kind != CT_KIND_REVERSE {
        return Err("entries of the wrong kind");
    }
    if e.fwd.peer_key(proto) != e.rev_key || e.rev.peer_key(proto) != e.key {
        return Err("entries that do not point at each other");
    }
    if e.fwd.endpoint >= MAX_ENDPOINTS || e.rev.endpoint != e.fwd.endpoint {
        return Err("no such endpoint");
    }
    let snat = Ipv4Addr::from(e.fwd.nat_src_ip_be.to_ne_bytes());
    if !ranges.iter().any(|r| r.contains(snat)) {
        return Err("a SNAT address outside the origin's slice");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[derive(Default)]
    struct Mem(BTreeMap<[u8; 16], CtValue>);

    fn raw(k: &CtKey) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..4].copy_from_slice(&k.src_ip_be.to_ne_bytes());
        b[4..8].copy_from_slice(&k.dst_ip_be.to_ne_bytes());
        b[8..10].copy_from_slice(&k.src_port_be.to_ne_bytes());
        b[10..12].copy_from_slice(&k.dst_port_be.to_ne_bytes());
        b[12..14].copy_from_slice(&k.vpc_id.to_ne_bytes());
        b[14] = k.proto;
        b
    }

    impl Table for Mem {
        fn put(&mut self, e: &FlowEvent) -> anyhow::Result<()> {
            self.0.insert(raw(&e.key), e.fwd);
            self.0.insert(raw(&e.rev_key), e.rev);
            Ok(())
        }
        fn remove(&mut self, key: &CtKey, rev_key: &CtKey) {
            self.0.remove(&raw(key));
            self.0.remove(&raw(rev_key));
        }
    }

    fn ip(a: [u8; 4]) -> u32 {
        u32::from_ne_bytes(a)
    }

    /// Client 10.0.0.2:`port` -> endpoint 10.0.0.100:80 in VPC 1, SNAT `snat`:`port`
    /// -> backend 192.168.2.10:8080 in VPC 2.
    fn flow(port: u16, snat: [u8; 4]) -> FlowEvent {
        let key = CtKey { src_ip_be: ip([10, 0, 0, 2]), dst_ip_be: ip([10, 0, 0, 100]), src_port_be: port.to_be(), dst_port_be: 80u16.to_be(), vpc_id: 1, proto: PROTO_TCP, _pad: 0 };
        let fwd = CtValue {
            endpoint: 3,
            kind: CT_KIND_FORWARD,
            nat_src_ip_be: ip(snat),
            nat_dst_ip_be: ip([192, 168, 2, 10]),
            nat_src_port_be: port.to_be(),
            nat_dst_port_be: 8080u16.to_be(),
            egress_vpc: 2,
            ..Default::default()
        };
        let rev_key = fwd.peer_key(PROTO_TCP);
        let rev = CtValue {
            endpoint: 3,
            kind: CT_KIND_REVERSE,
            nat_src_ip_be: key.dst_ip_be,
            nat_dst_ip_be: key.src_ip_be,
            nat_src_port_be: key.dst_port_be,
            nat_dst_port_be: key.src_port_be,
            egress_vpc: 1,
            ..Default::default()
        };
        FlowEvent { at_ns: 1, op: FLOW_UPSERT, _pad: [0; 7], key, fwd, rev_key, rev }
    }

    fn slice1() -> Vec<Cidr> {
        vec!["11.163.64.0/18".parse().unwrap()]
    }

    fn batch(seq: u64, events: Vec<FlowEvent>) -> Frame {
        Frame::Batch { seq, events }
    }

    #[test]
    fn flows_are_copied_changed_and_removed_in_order() {
        let (mut c, mut t) = (Copies::new(100), Mem::default());
        assert_eq!(c.welcome("gw2", 7), 0);
        let a = flow(1000, [11, 163, 64, 1]);
        let mut b = flow(1001, [11, 163, 64, 1]);
        assert_eq!(c.apply("gw2", Frame::Begin { seq: 1 }, &slice1(), &mut t), Ok(Applied { ack: 1, refused: 0 }));
        assert_eq!(c.apply("gw2", batch(2, vec![a, b]), &slice1(), &mut t), Ok(Applied { ack: 2, refused: 0 }));
        assert_eq!(c.apply("gw2", Frame::End { seq: 3 }, &slice1(), &mut t).unwrap().ack, 3);
        assert_eq!(t.0.len(), 4);
        b.fwd.state = TCP_STATE_ESTABLISHED;
        let removed = FlowEvent { op: FLOW_REMOVED, key: a.key, ..Default::default() };
        c.apply("gw2", batch(4, vec![b, removed]), &slice1(), &mut t).unwrap();
        assert_eq!(t.0.len(), 2);
        assert_eq!(t.0[&raw(&b.key)].state, TCP_STATE_ESTABLISHED);
        assert_eq!(c.held(), vec![("gw2".to_string(), 1)]);
        // Sent again after a reconnect: acknowledged, not applied twice; a frame
        // after a gap is refused (the sender starts over).
        assert_eq!(c.welcome("gw2", 7), 4);
        assert_eq!(c.apply("gw2", batch(4, vec![a]), &slice1(), &mut t), Ok(Applied { ack: 4, refused: 0 }));
        assert_eq!(t.0.len(), 2);
        assert_eq!(c.apply("gw2", batch(6, vec![a]), &slice1(), &mut t), Err(StreamError::Gap { applied: 4, got: 6 }));
        // A new run starts with a snapshot: flows it does not carry are gone.
        assert_eq!(c.welcome("gw2", 8), 0);
        let d = flow(2000, [11, 163, 64, 2]);
        c.apply("gw2", Frame::Begin { seq: 1 }, &slice1(), &mut t).unwrap();
        c.apply("gw2", batch(2, vec![d]), &slice1(), &mut t).unwrap();
        assert_eq!(t.0.len(), 4, "the old flows stay until the snapshot ends");
        c.apply("gw2", Frame::End { seq: 3 }, &slice1(), &mut t).unwrap();
        assert_eq!(t.0.len(), 2);
        assert!(t.0.contains_key(&raw(&d.key)));
    }

    #[test]
    fn hostile_events_are_counted_and_never_written() {
        let (mut c, mut t) = (Copies::new(3), Mem::default());
        c.welcome("gw2", 1);
        c.apply("gw2", Frame::Begin { seq: 1 }, &slice1(), &mut t).unwrap();
        let good = flow(1000, [11, 163, 64, 1]);
        // Another node's slice (11.163.0.0/18 is slice 0), a reverse entry that is not
        // the forward one's, the wrong kinds, another protocol, an endpoint past the
        // table, two endpoints.
        let other_slice = flow(1001, [11, 163, 0, 1]);
        let mut crossed = flow(1002, [11, 163, 64, 1]);
        crossed.rev_key.src_port_be = 1;
        let mut kinds = flow(1003, [11, 163, 64, 1]);
        kinds.rev.kind = CT_KIND_FORWARD;
        let mut icmp = flow(1004, [11, 163, 64, 1]);
        icmp.key.proto = 1;
        let mut far = flow(1005, [11, 163, 64, 1]);
        far.fwd.endpoint = MAX_ENDPOINTS;
        far.rev.endpoint = MAX_ENDPOINTS;
        let mut two = flow(1006, [11, 163, 64, 1]);
        two.rev.endpoint = 4;
        let got = c.apply("gw2", batch(2, vec![other_slice, crossed, kinds, icmp, far, two, good]), &slice1(), &mut t).unwrap();
        assert_eq!(got, Applied { ack: 2, refused: 6 });
        assert_eq!(t.0.len(), 2);
        // Over its limit of flows an origin's new flows are refused (changes are not).
        let more: Vec<FlowEvent> = (0..4).map(|i| flow(3000 + i, [11, 163, 64, 1])).collect();
        assert_eq!(c.apply("gw2", batch(3, more), &slice1(), &mut t).unwrap().refused, 2);
        assert_eq!(c.held(), vec![("gw2".to_string(), 3)]);
        // A removal names only the origin's own flows.
        c.welcome("gw3", 1);
        let removed = FlowEvent { op: FLOW_REMOVED, key: good.key, ..Default::default() };
        c.apply("gw3", batch(1, vec![removed]), &slice1(), &mut t).unwrap();
        assert!(t.0.contains_key(&raw(&good.key)));
        assert_eq!(c.drop_origin("gw2", &mut t), 3);
        assert!(t.0.is_empty());
    }
}
