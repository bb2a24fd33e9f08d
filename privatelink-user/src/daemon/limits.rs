//! Limit episodes: an endpoint's connection-limit or SNAT-exhaustion refusals start an
//! episode when they grow and end it at the first quiet second, each edge an event.
//! Holds only the counts it last saw; reads counters it is given and changes nothing
//! else (the gateway records the events it returns).

use crate::{dataplane::maps::EndpointCounters, model::state::{Event, State}};
use privatelink_common::DropReason;
use std::collections::BTreeMap;

const WATCHED: [DropReason; 2] = [DropReason::OverLimit, DropReason::SnatExhausted];

#[derive(Default)]
pub struct Limits {
    /// (endpoint index, drop reason) -> refusals counted so far, and the count when
    /// the current episode began (None: no episode).
    episodes: BTreeMap<(u32, u32), (u64, Option<u64>)>,
}

impl Limits {
    /// The state moved from `before` to `now`: a new endpoint's counters start at zero,
    /// and so does its refusal baseline.
    pub fn follow(&mut self, before: &State, now: &State) {
        for e in now.endpoints.values() {
            if before.endpoints.get(&e.spec.name).is_none_or(|o| o.id != e.id) {
                for reason in WATCHED {
                    self.episodes.insert((e.index, reason as u32), (0, None));
                }
            }
        }
    }

    /// One look at the counters: the episodes that began or ended since the last.
    pub fn watch(&mut self, st: &State, counters: &EndpointCounters) -> Vec<Event> {
        let mut events = Vec::new();
        for e in st.endpoints.values() {
            let stats = counters.stats(e.index);
            for reason in WATCHED {
                let n = stats.drop_count(reason);
                let (last, start) = self.episodes.entry((e.index, reason as u32)).or_insert((n, None));
                let what = if reason == DropReason::OverLimit { "connection_limit" } else { "snat_exhausted" };
                match (*start, n > *last) {
                    (None, true) => {
                        events.push(Event::new(&format!("endpoint.{what}"), &e.spec.name, Some(&e.service), format!("{}: new connections refused ({what})", e.spec.name)).to(st.owners(Some(&e.spec.name), Some(&e.service))));
                        *start = Some(*last);
                    }
                    (Some(from), false) => {
                        events.push(Event::new(&format!("endpoint.{what}_ended"), &e.spec.name, Some(&e.service), format!("{}: {} connections refused in the episode ({what})", e.spec.name, n - from)).to(st.owners(Some(&e.spec.name), Some(&e.service))));
                        *start = None;
                    }
                    _ => {}
                }
                *last = n;
            }
        }
        events
    }
}
