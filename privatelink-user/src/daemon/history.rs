//! The last hour of every endpoint's counters on this node, at 10 s steps, kept in
//! memory for the console's graphs (`GET /v1/endpoints/{e}/history`, a service's
//! summed). Sampled by its own task from one batch read of the counters; an endpoint
//! gets a ring the first time it carries traffic and loses it after an idle hour, so
//! idle endpoints cost nothing and a busy one about 7 KB. Never touches the writer.

use super::{api::{HistoryPoint, HistoryView}, picture::Picture};
use crate::model::state::EndpointRecord;
use privatelink_common::{DropReason, Stats};
use std::{
    collections::{HashMap, VecDeque},
    sync::Mutex,
    time::Duration,
};

/// Resolution of the graphs.
pub const STEP: Duration = Duration::from_secs(10);
/// Samples kept: one hour.
pub const KEEP: usize = 360;

/// An endpoint's cumulative counters at a sample.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Totals {
    new: u64,
    bytes_in: u64,
    bytes_out: u64,
    drops: u64,
}

impl Totals {
    fn of(s: &Stats) -> Totals {
        Totals { new: s.new_flows, bytes_in: s.fwd_bytes, bytes_out: s.rev_bytes, drops: DropReason::ALL.into_iter().map(|r| s.drop_count(r)).sum() }
    }
}

/// One step of one endpoint: the live connections at its end and the rates over it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Point {
    active: u32,
    new: f32,
    bytes_in: f32,
    bytes_out: f32,
    drops: f32,
}

impl Point {
    fn between(active: u64, before: Totals, now: Totals, secs: f64) -> Point {
        // A counter that went back (the slot was reused by a new endpoint) counts as 0.
        let rate = |a: u64, b: u64| (b.saturating_sub(a) as f64 / secs.max(0.001)) as f32;
        Point {
            active: active.min(u32::MAX as u64) as u32,
            new: rate(before.new, now.new),
            bytes_in: rate(before.bytes_in, now.bytes_in),
            bytes_out: rate(before.bytes_out, now.bytes_out),
            drops: rate(before.drops, now.drops),
        }
    }
    fn idle(&self) -> bool {
        *self == Point::default()
    }
}

/// One endpoint's points, aligned at the back with `Rings::times`.
type Ring = VecDeque<Point>;

#[derive(Default)]
struct Rings {
    /// When each kept sample was taken (unix ms), oldest first.
    times: VecDeque<u64>,
    /// By endpoint id: a re-created endpoint of the same name starts afresh.
    rings: HashMap<String, Ring>,
    /// Every endpoint's totals at the last sample (to start a ring from).
    last: HashMap<String, Totals>,
}

#[derive(Default)]
pub struct History(Mutex<Rings>);

impl History {
    /// Take one sample of every endpoint of the picture (`now`: unix ms).
    pub fn sample(&self, pic: &Picture, now: u64) -> anyhow::Result<()> {
        let Some(reader) = &pic.counters else { return Ok(()) };
        let counters = reader.endpoint_counters(pic.state.endpoint_slots_used())?;
        let mut r = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let secs = r.times.back().map_or(STEP.as_secs_f64(), |t| now.saturating_sub(*t) as f64 / 1000.0);
        r.times.push_back(now);
        if r.times.len() > KEEP {
            r.times.pop_front();
        }
        let kept = r.times.len();
        let mut last = HashMap::with_capacity(pic.state.endpoints.len());
        for e in pic.state.endpoints.values() {
            let totals = Totals::of(&counters.stats(e.index));
            let before = r.last.get(&e.id).copied().unwrap_or(totals);
            let point = Point::between(counters.active(e.index), before, totals, secs);
            last.insert(e.id.clone(), totals);
            match r.rings.get_mut(&e.id) {
                Some(ring) => {
                    ring.push_back(point);
                    while ring.len() > kept {
                        ring.pop_front();
                    }
                }
                None if !point.idle() => {
                    r.rings.insert(e.id.clone(), VecDeque::from([point]));
                }
                None => {}
            }
        }
        // Endpoints gone, and rings idle for the whole hour, go.
        r.rings.retain(|id, ring| last.contains_key(id) && !(ring.len() == KEEP && ring.iter().all(Point::idle)));
        r.last = last;
        Ok(())
    }

    /// The hour of `endpoints` summed (one endpoint's, or a service's), ending with a
    /// point for this moment (`now`: unix ms) so a new connection shows at once.
    pub fn of(&self, pic: &Picture, endpoints: &[&EndpointRecord], limit: i64, now: u64) -> anyhow::Result<HistoryView> {
        let live = match &pic.counters {
            Some(reader) => Some(reader.endpoint_counters(pic.state.endpoint_slots_used())?),
            None => None,
        };
        let r = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let mut sums = vec![Point::default(); r.times.len()];
        let mut current = Point::default();
        let secs = r.times.back().map_or(0.0, |t| now.saturating_sub(*t) as f64 / 1000.0);
        for e in endpoints {
            let ring = r.rings.get(&e.id);
            if let Some(ring) = ring {
                let skip = sums.len() - ring.len().min(sums.len());
                for (sum, p) in sums.iter_mut().skip(skip).zip(ring) {
                    add(sum, p);
                }
            }
            if let Some(c) = &live {
                let totals = Totals::of(&c.stats(e.index));
                let before = r.last.get(&e.id).copied().unwrap_or(totals);
                // Rates since the last sample; under a second after it, the last step's.
                let p = match (secs >= 1.0, ring.and_then(|g| g.back())) {
                    (false, Some(last)) => Point { active: c.active(e.index) as u32, ..*last },
                    _ => Point::between(c.active(e.index), before, totals, secs.max(1.0)),
                };
                add(&mut current, &p);
            }
        }
        let mut points: Vec<HistoryPoint> = r.times.iter().zip(&sums).map(|(t, p)| point_view(*t, p)).collect();
        points.push(point_view(now, &current));
        Ok(HistoryView { step_seconds: STEP.as_secs() as u32, connection_limit: limit, points })
    }

    /// Endpoints with a ring and samples kept (for `status` and the memory note).
    pub fn size(&self) -> (usize, usize) {
        let r = self.0.lock().unwrap_or_else(|p| p.into_inner());
        (r.rings.len(), r.times.len())
    }
}

fn add(sum: &mut Point, p: &Point) {
    sum.active = sum.active.saturating_add(p.active);
    sum.new += p.new;
    sum.bytes_in += p.bytes_in;
    sum.bytes_out += p.bytes_out;
    sum.drops += p.drops;
}

fn point_view(t: u64, p: &Point) -> HistoryPoint {
    HistoryPoint {
        t: t / 1000,
        active_connections: p.active,
        new_connections_per_s: p.new as f64,
        bytes_in_per_s: p.bytes_in as f64,
        bytes_out_per_s: p.bytes_out as f64,
        drops_per_s: p.drops as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_per_second_and_a_reset_counter_is_not_negative() {
        let a = Totals { new: 10, bytes_in: 1000, bytes_out: 0, drops: 5 };
        let b = Totals { new: 30, bytes_in: 6000, bytes_out: 100, drops: 2 };
        let p = Point::between(7, a, b, 10.0);
        assert_eq!(p, Point { active: 7, new: 2.0, bytes_in: 500.0, bytes_out: 10.0, drops: 0.0 });
        assert!(Point::between(0, a, a, 10.0).idle());
    }
}
