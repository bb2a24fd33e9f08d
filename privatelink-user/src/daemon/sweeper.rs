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
    /// Slot-accounting counters the audit repaired (should stay 0: each is a leak).
    pub repairs: AtomicU64,
    /// Entries the table holds at most.
    capacity: AtomicU64,
    stop: AtomicBool,
}

impl SweepShared {
    /// The data path is loaded: passes can begin.
    pub fn install(&self, s: Sweeper) {
        self.capacity.store(s.capacity(), Relaxed);
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
            self.repairs.fetch_add(r.repairs.len() as u64, Relaxed);
            for fix in &r.repairs {
                tracing::warn!(endpoint = ?fix.endpoint, vpc = ?fix.vpc, counter = fix.counter, was = fix.was, now = fix.now, "accounting audit repaired a counter that disagreed with the flow table");
            }
        }).map_err(anyhow::Error::from))
    }
}

/// After a pass the sweeper rests at least this many times as long as the pass took.
pub const REST_PER_PASS: u32 = 12;
/// The shortest rest between passes.
pub const MIN_REST: Duration = Duration::from_millis(100);

/// The rest before the next pass: `interval`, shorter when a timeout is (an idle flow
/// outlives its timeout by at most half of it), and shorter again as the table fills
/// (past half full a quarter of that, past three quarters `MIN_REST`), so expired
/// entries go before new flows need their room. Never under `MIN_REST`.
pub fn pace(interval: Duration, t: &Timeouts, entries: u64, capacity: u64) -> Duration {
    let shortest = [t.tcp_syn, t.tcp_established, t.tcp_closing, t.udp].into_iter().min().unwrap_or(interval);
    let rest = interval.min(shortest / 2);
    let rest = match (entries.saturating_mul(4)).checked_div(capacity) {
        Some(q) if q >= 3 => MIN_REST,
        Some(2) => rest / 4,
        _ => rest,
    };
    rest.max(MIN_REST)
}

/// Sweep at the pace `pace` gives, or less often when a pass is long: the thread
/// sleeps at least `REST_PER_PASS` times as long as its last pass took, so it never
/// uses more than 1/13 of a core (7.7%) however large the table.
pub fn spawn(shared: Arc<SweepShared>, interval: Duration) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("pl-sweeper".into())
        .spawn(move || {
            while !shared.stop.load(Relaxed) {
                let began = Instant::now();
                if let Some(Err(e)) = shared.pass() {
                    tracing::error!(error = %format!("{e:#}"), "sweeper");
                }
                let rest = pace(interval, &shared.timeouts.lock().unwrap(), shared.entries.load(Relaxed), shared.capacity.load(Relaxed));
                let wait = rest.max(began.elapsed() * REST_PER_PASS);
                // Short naps, so a stop is seen within 100 ms.
                let until = Instant::now() + wait;
                while !shared.stop.load(Relaxed) && Instant::now() < until {
                    std::thread::sleep(Duration::from_millis(100).min(until.saturating_duration_since(Instant::now())));
                }
            }
        })
        .expect("spawning the sweeper thread")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(syn: u64, est: u64, closing: u64, udp: u64) -> Timeouts {
        let s = Duration::from_secs;
        Timeouts { tcp_syn: s(syn), tcp_established: s(est), tcp_closing: s(closing), udp: s(udp) }
    }

    #[test]
    fn pace_follows_the_shortest_timeout_and_the_fill() {
        let second = Duration::from_secs(1);
        let defaults = t(60, 7200, 10, 60);
        assert_eq!(pace(second, &defaults, 0, 1000), second, "defaults: the interval");
        assert_eq!(pace(second, &t(60, 7200, 1, 60), 0, 1000), Duration::from_millis(500), "a 1 s timeout: half of it");
        assert_eq!(pace(second, &defaults, 499, 1000), second, "under half full");
        assert_eq!(pace(second, &defaults, 500, 1000), Duration::from_millis(250), "half full: a quarter");
        assert_eq!(pace(second, &defaults, 750, 1000), MIN_REST, "three quarters: the minimum");
        assert_eq!(pace(second, &t(0, 0, 0, 0), 0, 1000), MIN_REST, "never under the minimum");
        assert_eq!(pace(second, &defaults, 10, 0), second, "no capacity known yet");
    }
}
