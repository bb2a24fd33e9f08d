//! Backend health in the recorded state: what a checker's verdict on one backend
//! (up, or down with why) changes for the services that use it: the set of backends
//! down, the flows cut where a service resets on a backend's loss, and the events.
//! Pure; the checker, its probes and its thresholds are the daemon's.

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

/// `st` after `flip` for each of `services` (the services with this backend), with
/// its events; `failing_open`: those of them whose every backend is down once it is.
/// `None`: nothing changes (another node of a fleet recorded the same flip already).
pub fn record(st: &State, services: &[String], flip: &Flip, failing_open: &[&String]) -> Option<(State, Vec<Event>)> {
    let mut next = st.clone();
    let mut events = Vec::new();
    for svc in services {
        let key = (svc.clone(), flip.ip);
        if next.backends_down.contains(&key) != flip.up {
            continue;
        }
        let subject = format!("{svc}/{}", flip.ip);
        if flip.up {
            next.backends_down.remove(&key);
            events.push(Event::new("backend.up", &subject, Some(svc), format!("backend {} of service {svc} is healthy again", flip.ip)));
            continue;
        }
        next.backends_down.insert(key);
        events.push(Event::new("backend.down", &subject, Some(svc), format!("backend {} of service {svc} failed its checks: {}", flip.ip, flip.error.unwrap_or_default())));
        if failing_open.contains(&svc) {
            events.push(Event::new("service.fail_open", svc, Some(svc), format!("every backend of {svc} is down: failing open, new flows use them all")));
        }
        let Some(s) = st.services.get(svc) else { continue };
        let reset = s.spec.effective_check().is_some_and(|(hc, _)| hc.on_backend_down == OnRevoke::Reset);
        if let (true, Some(v)) = (reset, st.vpcs.get(&s.spec.vpc)) {
            next.cut([], [(flip.ip, v.vpc_id)]);
        }
    }
    (!events.is_empty()).then_some((next, events))
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
        let (next, events) = record(&st, &users, &down, &[&b]).unwrap();
        assert!(next.backends_down.contains(&("a".into(), ip)) && next.backends_down.contains(&("b".into(), ip)));
        assert_eq!(
            kinds(&events),
            [("backend.down".into(), "a/10.3.0.5".into()), ("backend.down".into(), "b/10.3.0.5".into()), ("service.fail_open".into(), "b".into())]
        );
        assert!(events[0].message.ends_with("failed its checks: connection refused"), "{}", events[0].message);
        assert!(next.cuts.is_empty(), "keep: no flow is cut");
        // The same verdict again (another node recorded it): nothing.
        assert!(record(&next, &users, &down, &[]).is_none());
        let (back, events) = record(&next, &users, &Flip { ip, up: true, error: None }, &[]).unwrap();
        assert!(back.backends_down.is_empty());
        assert_eq!(kinds(&events), [("backend.up".into(), "a/10.3.0.5".into()), ("backend.up".into(), "b/10.3.0.5".into())]);
    }

    #[test]
    fn a_service_that_resets_on_a_backends_loss_cuts_its_flows() {
        let st = state("reset");
        let ip: Ipv4Addr = "10.3.0.6".parse().unwrap();
        let (next, _) = record(&st, &["a".to_string()], &Flip { ip, up: false, error: None }, &[]).unwrap();
        let vpc = st.vpcs["p"].vpc_id;
        assert!(next.cuts.values().any(|c| c.backends.contains(&(ip, vpc))), "{:?}", next.cuts);
    }
}
