//! Flow replication to the buddy (issue #33, `docs/failover.md`): this node streams
//! its flow events to its buddy (`sender`), and holds the flows of the nodes whose
//! buddy it is in its standby table (`receiver`, through `copies`), over the
//! management network (`wire`). The data path's side is `dataplane::replica`; the
//! buddy rule is `model::buddy`. Each side's counters live here, read by views,
//! metrics and the node's registration.

mod copies;
mod receiver;
mod sender;
pub mod wire;

pub use receiver::serve;
pub use sender::send;

use crate::dataplane::{
    maps::Reader,
    replica::{FlowEvents, Standby, StandbyReader},
};
use std::{
    collections::VecDeque,
    sync::{
        atomic::{AtomicBool, AtomicU64},
        Arc, Mutex,
    },
};

/// Lags kept for the quantiles (the last ones acknowledged).
const LAGS: usize = 4096;


/// Replication's handles and counters, shared by the data path (which installs the
/// maps), the sender and receiver tasks and the readers.
#[derive(Default)]
pub struct Replication {
    /// What the loaded data path hands over, once each: the flow events with a reader
    /// of the flow table (snapshots), and the standby table with the flows it holds.
    events: Mutex<Option<(FlowEvents, Reader)>>,
    standby: Mutex<Option<(Standby, usize)>>,
    /// A second handle on the standby table, for readers.
    pub standby_reader: Mutex<Option<Arc<StandbyReader>>>,
    /// The sender's side.
    pub buddy: Mutex<Option<String>>,
    pub connected: AtomicBool,
    pub batches_sent: AtomicU64,
    pub frames_resent: AtomicU64,
    pub events_sent: AtomicU64,
    pub snapshots: AtomicU64,
    pub bytes_sent: AtomicU64,
    /// Events the data path could not write (ring full), as last read.
    pub events_lost: AtomicU64,
    /// Frames sent and not yet acknowledged.
    pub unacked: AtomicU64,
    /// From an event's writing to its acknowledgement by the buddy, nanoseconds.
    lags: Mutex<VecDeque<u64>>,
    /// The receiver's side: flows held per origin, events refused, connections refused.
    pub held: Mutex<Vec<(String, u64)>>,
    pub events_refused: AtomicU64,
    pub peers_refused: AtomicU64,
    pub batches_applied: AtomicU64,
    /// Takeover: slices taken now, flows adopted from the standby table so far.
    pub taken: AtomicU64,
    pub adopted: AtomicU64,
    /// Client packets of copies whose slice was not taken over, dropped without reset.
    pub held_packets: AtomicU64,
    /// A dead node's client segments are handed to its buddy now.
    pub handing: AtomicBool,
}

impl Replication {
    /// The data path is loaded: `standby_flows` is what its standby table holds.
    pub fn install(&self, events: FlowEvents, standby: Standby, reader: Reader, standby_flows: usize) {
        match standby.reader() {
            Ok(r) => *self.standby_reader.lock().unwrap() = Some(Arc::new(r)),
            Err(e) => tracing::warn!(error = %e, "a reader of the standby table (conntrack list --standby shows nothing)"),
        }
        *self.events.lock().unwrap() = Some((events, reader));
        *self.standby.lock().unwrap() = Some((standby, standby_flows));
    }

    fn take_events(&self) -> Option<(FlowEvents, Reader)> {
        self.events.lock().unwrap().take()
    }

    fn take_standby(&self) -> Option<(Standby, usize)> {
        self.standby.lock().unwrap().take()
    }

    fn lag(&self, ns: u64) {
        let mut l = self.lags.lock().unwrap();
        if l.len() == LAGS {
            l.pop_front();
        }
        l.push_back(ns);
    }

    /// The lag's quantile `q` (0..1) over the last acknowledged batches, seconds.
    pub fn lag_quantile(&self, q: f64) -> Option<f64> {
        let mut v: Vec<u64> = self.lags.lock().unwrap().iter().copied().collect();
        if v.is_empty() {
            return None;
        }
        v.sort_unstable();
        let i = ((v.len() as f64 - 1.0) * q).round() as usize;
        Some(v[i] as f64 / 1e9)
    }

    /// Forget the lags (a bench between runs).
    pub fn clear_lags(&self) {
        self.lags.lock().unwrap().clear();
    }

    /// Flows held for other nodes.
    pub fn standby_flows(&self) -> u64 {
        self.held.lock().unwrap().iter().map(|(_, n)| n).sum()
    }

    pub fn buddy(&self) -> Option<String> {
        self.buddy.lock().unwrap().clone()
    }
}

pub type Shared = Arc<Replication>;
