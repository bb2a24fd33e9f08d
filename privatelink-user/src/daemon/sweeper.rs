//! The conntrack sweeper's thread. Idle flows are expired on a thread of their own,
//! with the sweeper's own map and program handles: no API request, health check or
//! scrape waits for a pass, and a pass never waits for them. Each pass also counts the
//! table's entries, which scrapes read instead of walking the table (flows per backend
//! are the data path's own counters).

use crate::dataplane::sweep::{Scope, SweepReport, Sweeper, Timeouts};
use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

/// What the gateway and the sweeper thread share.
#[derive(Default)]
pub struct SweepShared {
    sweeper: Mutex<Option<Arc<Sweeper>>>,
    timeouts: Mutex<Timeouts>,
    /// Passes, flows expired (by the passes and by cuts), entries at the last pass, and
    /// the last pass's wall time.
    pub runs: AtomicU64,
    pub expired: AtomicU64,
    pub entries: AtomicU64,
    pub last_pass_ns: AtomicU64,
    stop: AtomicBool,
}

impl SweepShared {
    /// The data path is loaded: passes can begin.
    pub fn install(&self, s: Sweeper) {
        *self.sweeper.lock().unwrap() = Some(Arc::new(s));
    }
    pub fn set_timeouts(&self, t: Timeouts) {
        *self.timeouts.lock().unwrap() = t;
    }
    pub fn count_expired(&self, n: u64) {
        self.expired.fetch_add(n, Relaxed);
    }
    pub fn stop(&self) {
        self.stop.store(true, Relaxed);
    }

    /// One idle pass now (None: no data path yet).
    pub fn pass(&self) -> Option<anyhow::Result<SweepReport>> {
        let sweeper = self.sweeper.lock().unwrap().clone()?;
        let t = *self.timeouts.lock().unwrap();
        let started = Instant::now();
        let r = sweeper.sweep(Scope::Idle(t));
        self.last_pass_ns.store(started.elapsed().as_nanos() as u64, Relaxed);
        Some(r.inspect(|r| {
            self.runs.fetch_add(1, Relaxed);
            self.expired.fetch_add(r.expired, Relaxed);
            self.entries.store(r.entries, Relaxed);
        }).map_err(anyhow::Error::from))
    }
}

/// After a pass the sweeper rests at least this many times as long as the pass took.
pub const REST_PER_PASS: u32 = 12;

/// Sweep every `interval`, or less often when a pass is long: the thread sleeps at
/// least `REST_PER_PASS` times as long as its last pass took, so it never uses more
/// than 1/13 of a core (7.7%) however large the table.
pub fn spawn(shared: Arc<SweepShared>, interval: Duration) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("pl-sweeper".into())
        .spawn(move || {
            while !shared.stop.load(Relaxed) {
                let began = Instant::now();
                if let Some(Err(e)) = shared.pass() {
                    tracing::error!(error = %format!("{e:#}"), "sweeper");
                }
                let wait = interval.max(began.elapsed() * REST_PER_PASS);
                // Short naps, so a stop is seen within 100 ms.
                let until = Instant::now() + wait;
                while !shared.stop.load(Relaxed) && Instant::now() < until {
                    std::thread::sleep(Duration::from_millis(100).min(until.saturating_duration_since(Instant::now())));
                }
            }
        })
        .expect("spawning the sweeper thread")
}
