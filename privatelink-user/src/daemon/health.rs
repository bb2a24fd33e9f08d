//! Backend health checks: which probes to run (one per distinct target, however many
//! services share a backend), running one (TCP connect, or an HTTP GET and its
//! status, from the provider VPC's interface), and the up/down state machine with
//! healthy/unhealthy thresholds. Knows nothing of the gateway: `health_loop` runs the
//! probes and turns a verdict into a recorded change (`model::health`) and a
//! reconcile. Backends start up; an unchecked backend is always up.

use crate::model::{
    spec::{CheckKind, HealthCheck},
    state::State,
};
use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, SocketAddr},
    time::{Duration, Instant},
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One probe: where, how, how often, and how many results change its state.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Target {
    /// The provider VPC's interface: probes leave through it (SO_BINDTODEVICE), so a
    /// backend is checked inside its own VPC even when VPC ranges overlap.
    pub interface: String,
    pub ip: Ipv4Addr,
    pub port: u16,
    pub kind: CheckKind,
    pub path: String,
    pub expected_status: u16,
    pub interval: Duration,
    pub timeout: Duration,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
}

#[derive(Clone, Debug)]
struct Track {
    up: bool,
    /// Consecutive results against the current state.
    against: u32,
    next: Instant,
    in_flight: bool,
    last_error: Option<String>,
}

/// What a service's backends look like to the checker.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BackendHealth {
    pub address: Ipv4Addr,
    /// false only when checks say so
    pub up: bool,
    pub checked: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

#[derive(Clone, Default)]
pub struct Checker {
    tracks: BTreeMap<Target, Track>,
    /// (service, backend) -> its target
    by_backend: BTreeMap<(String, Ipv4Addr), Target>,
}

/// A state change of one target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Flip {
    pub target: Target,
    pub up: bool,
    pub error: Option<String>,
}

impl Checker {
    /// Follow the services of `st`: targets no longer used go; a new one starts as node
    /// `me` last saw it (its own view; without one, the fleet's decision).
    pub fn sync(&mut self, st: &State, me: &str) {
        self.by_backend.clear();
        for s in st.services.values() {
            let Some((hc, port)) = s.spec.effective_check() else { continue };
            let Some(vpc) = st.vpcs.get(&s.spec.vpc) else { continue };
            for b in &s.spec.backends {
                let t = target(&vpc.spec.interface, b.address, port, &hc);
                self.by_backend.insert((s.spec.name.clone(), b.address), t);
            }
        }
        let used: std::collections::BTreeSet<&Target> = self.by_backend.values().collect();
        self.tracks.retain(|t, _| used.contains(t));
        let now = Instant::now();
        for ((svc, ip), t) in &self.by_backend {
            let key = (svc.clone(), *ip);
            let down = st.health_views.get(me).map_or_else(|| st.backends_down.contains(&key), |v| v.contains(&key));
            let last_error = down.then(|| "down when the daemon last checked".to_string());
            self.tracks.entry(t.clone()).or_insert(Track { up: !down, against: 0, next: now, in_flight: false, last_error });
        }
    }

    /// Whether a service's backend may take new flows by its checks.
    pub fn is_up(&self, service: &str, ip: Ipv4Addr) -> bool {
        self.by_backend
            .get(&(service.to_string(), ip))
            .and_then(|t| self.tracks.get(t))
            .is_none_or(|tr| tr.up)
    }

    pub fn backend(&self, service: &str, ip: Ipv4Addr) -> BackendHealth {
        let tr = self.by_backend.get(&(service.to_string(), ip)).and_then(|t| self.tracks.get(t));
        BackendHealth { address: ip, up: tr.is_none_or(|t| t.up), checked: tr.is_some(), last_error: tr.and_then(|t| t.last_error.clone()) }
    }

    /// Services that use `target`.
    pub fn users(&self, target: &Target) -> Vec<String> {
        self.by_backend.iter().filter(|(_, t)| *t == target).map(|((s, _), _)| s.clone()).collect()
    }

    /// Targets due for a probe now; they are marked in flight.
    pub fn due(&mut self, now: Instant) -> Vec<Target> {
        let mut out = Vec::new();
        for (t, tr) in self.tracks.iter_mut() {
            if !tr.in_flight && tr.next <= now {
                tr.in_flight = true;
                tr.next = now + t.interval;
                out.push(t.clone());
            }
        }
        out
    }

    /// Record a probe's result; returns the flip if the target changed state.
    pub fn record(&mut self, t: &Target, result: Result<(), String>) -> Option<Flip> {
        let tr = self.tracks.get_mut(t)?;
        tr.in_flight = false;
        let ok = result.is_ok();
        if let Err(e) = &result {
            tr.last_error = Some(e.clone());
        }
        if ok == tr.up {
            tr.against = 0;
            return None;
        }
        tr.against += 1;
        let need = if tr.up { t.unhealthy_threshold } else { t.healthy_threshold };
        if tr.against < need {
            return None;
        }
        tr.up = ok;
        tr.against = 0;
        if ok {
            tr.last_error = None;
        }
        Some(Flip { target: t.clone(), up: ok, error: result.err() })
    }
}

fn target(interface: &str, ip: Ipv4Addr, port: u16, hc: &HealthCheck) -> Target {
    Target {
        interface: interface.to_string(),
        ip,
        port,
        kind: hc.kind,
        path: if hc.kind == CheckKind::Http { hc.path.clone() } else { String::new() },
        expected_status: if hc.kind == CheckKind::Http { hc.expected_status as u16 } else { 0 },
        interval: hc.interval.0,
        timeout: hc.timeout.0,
        healthy_threshold: hc.healthy_threshold as u32,
        unhealthy_threshold: hc.unhealthy_threshold as u32,
    }
}

/// Run one probe within the target's timeout.
pub async fn probe(t: &Target) -> Result<(), String> {
    match tokio::time::timeout(t.timeout, probe_inner(t)).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {:?}", t.timeout)),
    }
}

async fn probe_inner(t: &Target) -> Result<(), String> {
    let sock = tokio::net::TcpSocket::new_v4().map_err(|e| e.to_string())?;
    sock.bind_device(Some(t.interface.as_bytes())).map_err(|e| format!("binding to {}: {e}", t.interface))?;
    let mut s = sock.connect(SocketAddr::from((t.ip, t.port))).await.map_err(|e| format!("connect: {e}"))?;
    if t.kind != CheckKind::Http {
        return Ok(());
    }
    let req = format!("GET {} HTTP/1.0\r\nHost: {}\r\nUser-Agent: privatelink-health\r\n\r\n", t.path, t.ip);
    s.write_all(req.as_bytes()).await.map_err(|e| format!("sending the request: {e}"))?;
    let mut head = [0u8; 64];
    let mut n = 0;
    while n < 12 {
        match s.read(&mut head[n..]).await {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) => return Err(format!("reading the answer: {e}")),
        }
    }
    let line = String::from_utf8_lossy(&head[..n]);
    let status: u16 = line.split_whitespace().nth(1).and_then(|c| c.parse().ok()).ok_or_else(|| format!("not an HTTP answer: {line:?}"))?;
    if status != t.expected_status {
        return Err(format!("HTTP status {status}, expected {}", t.expected_status));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t() -> Target {
        Target {
            interface: "eth0".into(),
            ip: Ipv4Addr::new(10, 0, 0, 5),
            port: 80,
            kind: CheckKind::Tcp,
            path: String::new(),
            expected_status: 0,
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(2),
            healthy_threshold: 2,
            unhealthy_threshold: 3,
        }
    }

    #[test]
    fn thresholds_decide_flips() {
        let mut c = Checker::default();
        let t = t();
        c.tracks.insert(t.clone(), Track { up: true, against: 0, next: Instant::now(), in_flight: false, last_error: None });
        assert_eq!(c.record(&t, Err("x".into())), None);
        assert_eq!(c.record(&t, Ok(())), None, "a success resets the count");
        assert_eq!(c.record(&t, Err("x".into())), None);
        assert_eq!(c.record(&t, Err("x".into())), None);
        let f = c.record(&t, Err("refused".into())).expect("third failure in a row: down");
        assert!(!f.up);
        assert_eq!(f.error.as_deref(), Some("refused"));
        assert_eq!(c.record(&t, Ok(())), None);
        assert!(c.record(&t, Ok(())).expect("second success: up").up);
    }

    #[test]
    fn due_targets_are_handed_out_once_per_interval() {
        let mut c = Checker::default();
        let t = t();
        let now = Instant::now();
        c.tracks.insert(t.clone(), Track { up: true, against: 0, next: now, in_flight: false, last_error: None });
        assert_eq!(c.due(now), vec![t.clone()]);
        assert_eq!(c.due(now), vec![], "in flight");
        c.record(&t, Ok(()));
        assert_eq!(c.due(now), vec![], "not due before the interval");
        assert_eq!(c.due(now + Duration::from_secs(5)), vec![t]);
    }
}
