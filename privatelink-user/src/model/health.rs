//! Backend health in the recorded state: what one node's checker's verdict on one
//! backend (up, or down with why) changes: that node's own view, and through the
//! fleet's decision (a strict majority of the live nodes see it down) the set of
//! backends down, the flows cut where a service resets on a backend's loss, and the
//! events. Nodes that disagree each keep their view; the decision flips only when the
//! majority does. Pure; the checker, its probes and its thresholds are the daemon's.

use super::{
    spec::OnRevoke,
    state::{Event, State},
};
use std::net::Ipv4Addr;

/// A backend whose checks changed their verdict.
pub struct Flip<'a> {
    pub ip: Ipv4Addr,
    pub up: bool,
    /// Why it is down (the last failed check).
    pub error: Option<&'a str>,
}

/// The nodes whose views count: those recorded up (alone or before any joined: every
/// node with a view).
fn voters(st: &State) -> Vec<&String> {
    let up: Vec<&String> = st.nodes.iter().filter(|(_, n)| n.up).map(|(name, _)| name).collect();
    if up.is_empty() { st.health_views.keys().collect() } else { up }
}

/// The nodes whose checks see `service`'s backend `ip` down, of those that count.
pub fn seen_down_by<'a>(st: &'a State, service: &str, ip: Ipv4Addr) -> Vec<&'a String> {
    let key = (service.to_string(), ip);
    voters(st).into_iter().filter(|n| st.health_views.get(*n).is_some_and(|v| v.contains(&key))).collect()
}

/// The fleet's decision: down when a strict majority of the live nodes see it down
/// (one node alone: its own view; two that disagree: up).
pub fn decided_down(st: &State, service: &str, ip: Ipv4Addr) -> bool {
    let n = voters(st).len();
    n > 0 && seen_down_by(st, service, ip).len() * 2 > n
}

/// `st` after node `node`'s `flip` for each of `services` (the services with this
/// backend), with its events; `failing_open`: those of them whose every backend is
/// down once it is. `None`: nothing changes (the node's view says so already).
pub fn record(st: &State, node: &str, services: &[String], flip: &Flip, failing_open: &[&String]) -> Option<(State, Vec<Event>)> {
    let mut next = st.clone();
    let view = next.health_views.entry(node.to_string()).or_default();
    let mut changed = false;
    for svc in services {
        let key = (svc.clone(), flip.ip);
        changed |= if flip.up { view.remove(&key) } else { view.insert(key) };
    }
    next.health_views.retain(|_, v| !v.is_empty());
    let mut events = Vec::new();
    for svc in services {
        let key = (svc.clone(), flip.ip);
        let down = decided_down(&next, svc, flip.ip);
        if next.backends_down.contains(&key) == down {
            continue;
        }
        let subject = format!("{svc}/{}", flip.ip);
        let (seen, of) = (seen_down_by(&next, svc, flip.ip).len(), voters(&next).len().max(1));
        if !down {
            next.backends_down.remove(&key);
            events.push(Event::new("backend.up", &subject, Some(svc), format!("backend {} of service {svc} is healthy again ({seen} of {of} nodes see it down)", flip.ip)).to(st.owners(None, Some(svc))));
            continue;
        }
        next.backends_down.insert(key);
        let why = flip.error.unwrap_or_default();
        events.push(Event::new("backend.down", &subject, Some(svc), format!("backend {} of service {svc} failed its checks: {why} ({seen} of {of} nodes see it down)", flip.ip)).to(st.owners(None, Some(svc))));
        if failing_open.contains(&svc) {
            events.push(Event::new("service.fail_open", svc, Some(svc), format!("every backend of {svc} is down: failing open, new flows use them all")).to(st.owners(None, Some(svc))));
        }
        let Some(s) = st.services.get(svc) else { continue };
        let reset = s.spec.effective_check().is_some_and(|(hc, _)| hc.on_backend_down == OnRevoke::Reset);
        if let (true, Some(v)) = (reset, st.vpcs.get(&s.spec.vpc)) {
            next.cut([], [(flip.ip, v.vpc_id)]);
        }
    }
    (changed || !events.is_empty()).then_some((next, events))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{plan, plan_spec, spec, validate::Env};

    fn state(on_down: &str) -> State {
        let text = format!(
            r#"gateway: {{region: local}}
vpcs:
  - {{name: c, interface: gw-c, cidr: 10.1.0.0/24}}
  - {{name: p, interface: gw-p, cidr: 10.3.0.0/24}}
services:
  - {{name: a, owner: "1", vpc: p, backends: [{{address: 10.3.0.5}}, {{address: 10.3.0.6}}], ports: [{{protocol: tcp, endpoint_port: 80, service_port: 8080}}], health_check: {{on_backend_down: {on_down}}}}}
  - {{name: b, owner: "1", vpc: p, backends: [{{address: 10.3.0.5}}], ports: [{{protocol: tcp, endpoint_port: 80, service_port: 8080}}]}}
endpoints: []
"#
        );
        let (s, _) = spec::parse(&text).unwrap();
        plan::finish(plan_spec(&s, None, &State::default(), &Env::offline()).unwrap().state)
    }

    fn kinds(events: &[Event]) -> Vec<(String, String)> {
        events.iter().map(|e| (e.kind.clone(), e.subject.clone())).collect()
    }

    #[test]
    fn a_backend_going_down_and_up_is_recorded_once_per_service() {
        let st = state("keep");
        let users = vec!["a".to_string(), "b".to_string()];
        let ip = "10.3.0.5".parse().unwrap();
        let b = "b".to_string();
        let down = Flip { ip, up: false, error: Some("connection refused") };
        let (next, events) = record(&st, "gw1", &users, &down, &[&b]).unwrap();
        assert!(next.backends_down.contains(&("a".into(), ip)) && next.backends_down.contains(&("b".into(), ip)));
        assert_eq!(
            kinds(&events),
            [("backend.down".into(), "a/10.3.0.5".into()), ("backend.down".into(), "b/10.3.0.5".into()), ("service.fail_open".into(), "b".into())]
        );
        assert!(events[0].message.ends_with("failed its checks: connection refused (1 of 1 nodes see it down)"), "{}", events[0].message);
        assert!(next.cuts.is_empty(), "keep: no flow is cut");
        // The same verdict again: nothing.
        assert!(record(&next, "gw1", &users, &down, &[]).is_none());
        let (back, events) = record(&next, "gw1", &users, &Flip { ip, up: true, error: None }, &[]).unwrap();
        assert!(back.backends_down.is_empty());
        assert_eq!(kinds(&events), [("backend.up".into(), "a/10.3.0.5".into()), ("backend.up".into(), "b/10.3.0.5".into())]);
    }

    /// Three nodes up; `views`: which of them see 10.3.0.5 of `a` down.
    fn fleet(st: &State) -> State {
        let mut st = st.clone();
        for (i, n) in ["gw1", "gw2", "gw3"].iter().enumerate() {
            st.nodes.insert(n.to_string(), crate::model::slices::NodeRecord { slice: i as u32, zone: None, up: true, since_ms: 0, restarting_until_ms: None });
        }
        st
    }

    /// `node`'s verdicts `pair` five times over, recorded into `st`: the events' kinds.
    fn flap(st: &mut State, node: &str, users: &[String], pair: [&Flip; 2]) -> Vec<String> {
        let mut kinds = Vec::new();
        for _ in 0..5 {
            for f in pair {
                if let Some((next, events)) = record(st, node, users, f, &[]) {
                    kinds.extend(events.into_iter().map(|e| e.kind));
                    *st = next;
                }
            }
        }
        kinds
    }

    #[test]
    fn the_fleet_decides_by_majority_and_disagreeing_nodes_flip_nothing() {
        let mut st = fleet(&state("keep"));
        let users = vec!["a".to_string()];
        let ip: Ipv4Addr = "10.3.0.5".parse().unwrap();
        let down = Flip { ip, up: false, error: Some("timed out") };
        let up = Flip { ip, up: true, error: None };
        // gw1 sees it down: its view, no decision yet (1 of 3).
        let (next, events) = record(&st, "gw1", &users, &down, &[]).unwrap();
        assert!(events.is_empty() && next.backends_down.is_empty(), "{events:?}");
        assert_eq!(seen_down_by(&next, "a", ip), [&"gw1".to_string()]);
        st = next;
        // gw2 agrees, then disagrees, five times: with gw1 down, gw2 makes the majority
        // each time it agrees.
        let flips = flap(&mut st, "gw2", &users, [&up, &down]);
        let alternating: Vec<&str> = (0..9).map(|i| if i % 2 == 0 { "backend.down" } else { "backend.up" }).collect();
        assert_eq!(flips, alternating, "gw2 is the swing vote while gw1 sees it down: each of its flips is the majority's");
        // With gw1 and gw3 seeing it up, gw2 flapping is recorded as its view only.
        let mut st = fleet(&state("keep"));
        let flips = flap(&mut st, "gw2", &users, [&down, &up]);
        assert!(flips.is_empty(), "one node's flapping is not the fleet's: {flips:?}");
        // A strict majority decides: two of three.
        let (st, _) = record(&st, "gw1", &users, &down, &[]).unwrap();
        let (st, events) = record(&st, "gw3", &users, &down, &[]).unwrap();
        assert_eq!(events.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(), ["backend.down"]);
        assert!(events[0].message.contains("(2 of 3 nodes see it down)"), "{}", events[0].message);
        assert!(decided_down(&st, "a", ip));
        // A node that leaves no longer counts.
        let mut gone = st.clone();
        gone.nodes.get_mut("gw3").unwrap().up = false;
        assert!(!decided_down(&gone, "a", ip), "1 of the 2 live nodes");
    }

    #[test]
    fn a_service_that_resets_on_a_backends_loss_cuts_its_flows() {
        let st = state("reset");
        let ip: Ipv4Addr = "10.3.0.6".parse().unwrap();
        let (next, _) = record(&st, "gw1", &["a".to_string()], &Flip { ip, up: false, error: None }, &[]).unwrap();
        let vpc = st.vpcs["p"].vpc_id;
        assert!(next.cuts.values().any(|c| c.backends.contains(&(ip, vpc))), "{:?}", next.cuts);
    }
}
