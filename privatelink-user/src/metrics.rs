//! Prometheus metrics: a `Snapshot` of the gateway taken under the daemon's lock at
//! scrape time, exposed through prometheus-client as const metrics (the counters live
//! in BPF maps; this module only reads them), and the `/metrics` HTTP server (hyper).

use crate::api::Counters;
use http_body_util::Full;
use hyper::{body::Bytes, Request, Response};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{counter::ConstCounter, gauge::ConstGauge},
    registry::Registry,
};
use std::{future::Future, net::SocketAddr, pin::Pin, sync::Arc};

pub type Labels = Vec<(String, String)>;

#[derive(Clone, Debug, Default)]
pub struct EndpointSample {
    /// endpoint, endpoint_id, service, account, vpc
    pub labels: Labels,
    pub counters: Counters,
    pub active: u64,
    pub snat_ports_in_use: u64,
    pub snat_ports_free: u64,
}

#[derive(Clone, Debug, Default)]
pub struct BackendSample {
    /// service, backend
    pub labels: Labels,
    pub up: bool,
    pub flows: u64,
}

#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub endpoints: Vec<EndpointSample>,
    pub backends: Vec<BackendSample>,
    /// service -> failing open
    pub services: Vec<(String, bool)>,
    pub gateway: Counters,
    pub conntrack_entries: u64,
    pub conntrack_capacity: u64,
    pub reconciles: u64,
    pub last_reconcile_seconds: f64,
    pub sweeps: u64,
    pub expired_flows: u64,
}

fn with(l: &Labels, k: &str, v: &str) -> Labels {
    let mut l = l.clone();
    l.push((k.to_string(), v.to_string()));
    l
}

/// Write one metric family: `samples` of (labels, value).
fn family<M: EncodeMetric>(enc: &mut DescriptorEncoder, name: &str, help: &str, samples: Vec<(Labels, M)>) -> std::fmt::Result {
    let Some(first) = samples.first() else { return Ok(()) };
    let mut m = enc.encode_descriptor(name, help, None, first.1.metric_type())?;
    if let [(labels, metric)] = &samples[..] {
        if labels.is_empty() {
            return metric.encode(m);
        }
    }
    for (labels, metric) in &samples {
        metric.encode(m.encode_family(labels)?)?;
    }
    Ok(())
}

fn counter(v: u64) -> ConstCounter<u64> {
    ConstCounter::new(v)
}

fn gauge(v: i64) -> ConstGauge<i64> {
    ConstGauge::new(v)
}

impl Collector for Snapshot {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        let eps = &self.endpoints;
        let dir = |f: &dyn Fn(&Counters) -> (u64, u64)| -> Vec<(Labels, ConstCounter<u64>)> {
            eps.iter()
                .flat_map(|s| {
                    let (fwd, rev) = f(&s.counters);
                    [(with(&s.labels, "direction", "forward"), counter(fwd)), (with(&s.labels, "direction", "reverse"), counter(rev))]
                })
                .collect()
        };
        family(&mut e, "privatelink_endpoint_packets", "Packets through an endpoint (forward: consumer to provider).", dir(&|c| (c.fwd_packets, c.rev_packets)))?;
        family(&mut e, "privatelink_endpoint_bytes", "Bytes through an endpoint.", dir(&|c| (c.fwd_bytes, c.rev_bytes)))?;
        family(&mut e, "privatelink_endpoint_new_flows", "Connections (flows) opened through an endpoint.", eps.iter().map(|s| (s.labels.clone(), counter(s.counters.new_connections))).collect())?;
        family(&mut e, "privatelink_endpoint_active_flows", "Live connections counted against the endpoint's limit.", eps.iter().map(|s| (s.labels.clone(), gauge(s.active as i64))).collect())?;
        let drops: Vec<_> = eps
            .iter()
            .flat_map(|s| privatelink_common::DropReason::ALL.iter().map(move |r| (with(&s.labels, "reason", r.name()), counter(s.counters.drops.get(r.name()).copied().unwrap_or(0)))))
            .collect();
        family(&mut e, "privatelink_endpoint_drops", "Packets to an endpoint dropped, by reason.", drops)?;
        family(&mut e, "privatelink_endpoint_connection_limit_hits", "New connections refused by the endpoint's connection limit.", eps.iter().map(|s| (s.labels.clone(), counter(s.counters.drops.get("over_limit").copied().unwrap_or(0)))).collect())?;
        family(&mut e, "privatelink_endpoint_resets_sent", "TCP resets the gateway sent for an endpoint.", eps.iter().map(|s| (s.labels.clone(), counter(s.counters.resets_sent))).collect())?;
        family(&mut e, "privatelink_endpoint_snat_ports_in_use", "SNAT source ports held by the endpoint's flows.", eps.iter().map(|s| (s.labels.clone(), gauge(s.snat_ports_in_use as i64))).collect())?;
        family(&mut e, "privatelink_endpoint_snat_ports_free", "SNAT source ports left for new flows (per backend and protocol, summed).", eps.iter().map(|s| (s.labels.clone(), gauge(s.snat_ports_free as i64))).collect())?;
        family(&mut e, "privatelink_backend_up", "1 when the backend passes its health checks (or is unchecked).", self.backends.iter().map(|b| (b.labels.clone(), gauge(b.up as i64))).collect())?;
        family(&mut e, "privatelink_backend_flows", "Live flows on a backend.", self.backends.iter().map(|b| (b.labels.clone(), gauge(b.flows as i64))).collect())?;
        family(&mut e, "privatelink_service_failing_open", "1 when every backend of the service is down and it uses them all.", self.services.iter().map(|(s, f)| (vec![("service".to_string(), s.clone())], gauge(*f as i64))).collect())?;
        let gdrops: Vec<_> = privatelink_common::DropReason::ALL.iter().map(|r| (vec![("reason".to_string(), r.name().to_string())], counter(self.gateway.drops.get(r.name()).copied().unwrap_or(0)))).collect();
        family(&mut e, "privatelink_gateway_drops", "Packets dropped that no endpoint could be charged with, by reason.", gdrops)?;
        family(&mut e, "privatelink_conntrack_entries", "Conntrack entries in use (two per flow).", vec![(vec![], gauge(self.conntrack_entries as i64))])?;
        family(&mut e, "privatelink_conntrack_capacity", "Conntrack entries the table holds.", vec![(vec![], gauge(self.conntrack_capacity as i64))])?;
        family(&mut e, "privatelink_reconciles", "Reconciles of the maps with the recorded state.", vec![(vec![], counter(self.reconciles))])?;
        family(&mut e, "privatelink_last_reconcile_duration_seconds", "How long the last reconcile took.", vec![(vec![], ConstGauge::new(self.last_reconcile_seconds))])?;
        family(&mut e, "privatelink_sweeper_runs", "Passes of the conntrack sweeper.", vec![(vec![], counter(self.sweeps))])?;
        family(&mut e, "privatelink_sweeper_expired_flows", "Flows the sweeper removed.", vec![(vec![], counter(self.expired_flows))])?;
        Ok(())
    }
}

/// The text exposition of a snapshot.
pub fn render(s: Snapshot) -> String {
    let mut reg = Registry::default();
    reg.register_collector(Box::new(s));
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &reg) {
        return format!("# encoding failed: {e}\n");
    }
    out
}

pub type Snap = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Snapshot> + Send>> + Send + Sync>;

/// Serve `GET /metrics` on `addr` until the task is dropped.
pub async fn serve(addr: SocketAddr, snap: Snap) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "serving /metrics");
    loop {
        let (stream, _) = listener.accept().await?;
        let snap = snap.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let snap = snap.clone();
                async move {
                    let resp = if req.uri().path() == "/metrics" {
                        let body = render(snap().await);
                        Response::builder()
                            .header("content-type", "application/openmetrics-text; version=1.0.0; charset=utf-8")
                            .body(Full::new(Bytes::from(body)))
                    } else {
                        Response::builder().status(404).body(Full::new(Bytes::from_static(b"see /metrics\n")))
                    };
                    resp
                }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new().serve_connection(hyper_util::rt::TokioIo::new(stream), svc).await {
                tracing::debug!(error = %e, "metrics connection");
            }
        });
    }
}
