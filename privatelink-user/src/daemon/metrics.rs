//! Prometheus metrics: a `Snapshot` of the gateway taken under the daemon's lock at
//! scrape time, exposed through prometheus-client as const metrics (the counters live
//! in BPF maps; this module only reads them), and the `/metrics` HTTP server (hyper).

use super::{api::Counters, gateway::Gateway};
use crate::dataplane::maps;
use privatelink_common::*;
use http_body_util::Full;
use hyper::{body::Bytes, Request, Response};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{counter::ConstCounter, gauge::ConstGauge},
    registry::Registry,
};
use std::{future::Future, net::SocketAddr, pin::Pin, sync::{atomic::Ordering::Relaxed, Arc}};

pub type Labels = Vec<(String, String)>;

#[derive(Clone, Debug, Default)]
pub struct EndpointSample {
    /// endpoint, endpoint_id, service, account, vpc
    pub labels: Labels,
    pub counters: Counters,
    pub active: u64,
    pub snat_ports_in_use: u64,
    pub snat_ports_free: u64,
    /// The endpoint's bandwidth limit (bits/s in each direction), if it has one.
    pub bandwidth_bps: Option<u64>,
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
    /// (VPC name, its counters)
    pub vpcs: Vec<(String, Counters)>,
    pub conntrack_entries: u64,
    pub conntrack_capacity: u64,
    pub reconciles: u64,
    pub last_reconcile_seconds: f64,
    pub sweeps: u64,
    pub expired_flows: u64,
    pub last_sweep_seconds: f64,
    pub repaired_links: u64,
    pub repaired_map_ops: u64,
    /// The store answered last time (the data path forwards either way).
    pub store_reachable: bool,
    /// Nodes of the fleet recorded up (1 alone).
    pub nodes_up: u64,
    /// Routes published for the routing daemon.
    pub announced_routes: u64,
    /// (VPC name, answers per `DnsStats` slot) of VPCs with a DNS address.
    pub dns: Vec<(String, DnsStats)>,
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
        let limited = eps.iter().filter_map(|s| Some((s.labels.clone(), gauge(s.bandwidth_bps? as i64)))).collect();
        family(&mut e, "privatelink_endpoint_bandwidth_limit_bps", "The endpoint's bandwidth limit in each direction, bits per second (endpoints with one only); packets over it count as drops with reason over_bandwidth.", limited)?;
        family(&mut e, "privatelink_endpoint_resets_sent", "TCP resets the gateway sent for an endpoint.", eps.iter().map(|s| (s.labels.clone(), counter(s.counters.resets_sent))).collect())?;
        family(&mut e, "privatelink_endpoint_snat_ports_in_use", "SNAT source ports held by the endpoint's flows (open or closing), as the data path counts them.", eps.iter().map(|s| (s.labels.clone(), gauge(s.snat_ports_in_use as i64))).collect())?;
        family(&mut e, "privatelink_endpoint_snat_ports_free", "SNAT source ports left for new flows (per SNAT address, backend and protocol, summed).", eps.iter().map(|s| (s.labels.clone(), gauge(s.snat_ports_free as i64))).collect())?;
        family(&mut e, "privatelink_backend_up", "1 when the backend passes its health checks (or is unchecked).", self.backends.iter().map(|b| (b.labels.clone(), gauge(b.up as i64))).collect())?;
        family(&mut e, "privatelink_backend_flows", "Flows on a backend (open or closing), as of the sweeper's last pass.", self.backends.iter().map(|b| (b.labels.clone(), gauge(b.flows as i64))).collect())?;
        family(&mut e, "privatelink_service_failing_open", "1 when every backend of the service is down and it uses them all.", self.services.iter().map(|(s, f)| (vec![("service".to_string(), s.clone())], gauge(*f as i64))).collect())?;
        let gdrops: Vec<_> = privatelink_common::DropReason::ALL.iter().map(|r| (vec![("reason".to_string(), r.name().to_string())], counter(self.gateway.drops.get(r.name()).copied().unwrap_or(0)))).collect();
        family(&mut e, "privatelink_gateway_drops", "Packets dropped that no endpoint could be charged with, by reason.", gdrops)?;
        let vdrops: Vec<_> = self
            .vpcs
            .iter()
            .flat_map(|(v, c)| privatelink_common::DropReason::ALL.iter().map(move |r| (vec![("vpc".to_string(), v.clone()), ("reason".to_string(), r.name().to_string())], counter(c.drops.get(r.name()).copied().unwrap_or(0)))))
            .collect();
        family(&mut e, "privatelink_vpc_drops", "Packets a VPC interface dropped that no endpoint could be charged with (not_routed: the gateway never routes between VPCs), by reason.", vdrops)?;
        let dns: Vec<_> = self
            .dns
            .iter()
            .flat_map(|(v, s)| DnsStats::RCODES.iter().map(move |(rcode, slot)| (vec![("vpc".to_string(), v.clone()), ("rcode".to_string(), rcode.to_string())], counter(s.answers[*slot]))))
            .collect();
        family(&mut e, "privatelink_dns_queries", "DNS queries answered at a VPC's DNS address, by the RCODE sent (queries with nothing to answer are privatelink_vpc_drops{reason=\"dns_dropped\"}).", dns)?;
        family(&mut e, "privatelink_endpoint_slot_underflows", "Connection-slot releases that found the endpoint's active count at zero (an anomaly: the count saturates).", eps.iter().map(|s| (s.labels.clone(), counter(s.counters.slot_underflows))).collect())?;
        family(&mut e, "privatelink_endpoint_icmp_sent", "ICMP the gateway generated for an endpoint: echo replies, time-exceeded, fragmentation-needed.", eps.iter().map(|s| (s.labels.clone(), counter(s.counters.icmp_sent))).collect())?;
        family(&mut e, "privatelink_conntrack_entries", "Conntrack entries in use (two per flow), as of the sweeper's last pass.", vec![(vec![], gauge(self.conntrack_entries as i64))])?;
        family(&mut e, "privatelink_conntrack_capacity", "Conntrack entries the table holds.", vec![(vec![], gauge(self.conntrack_capacity as i64))])?;
        family(&mut e, "privatelink_reconciles", "Reconciles of the maps with the recorded state.", vec![(vec![], counter(self.reconciles))])?;
        family(&mut e, "privatelink_last_reconcile_duration_seconds", "How long the last reconcile took.", vec![(vec![], ConstGauge::new(self.last_reconcile_seconds))])?;
        family(&mut e, "privatelink_sweeper_runs", "Passes of the conntrack sweeper.", vec![(vec![], counter(self.sweeps))])?;
        family(&mut e, "privatelink_sweeper_expired_flows", "Flows the sweeper removed.", vec![(vec![], counter(self.expired_flows))])?;
        family(&mut e, "privatelink_sweeper_last_pass_seconds", "Wall time of the sweeper's last pass over the conntrack table (the next pass waits at least nine times as long).", vec![(vec![], ConstGauge::new(self.last_sweep_seconds))])?;
        let what = |w: &str| vec![("what".to_string(), w.to_string())];
        family(&mut e, "privatelink_store_reachable", "1 while the state store (embedded, or the fleet's etcd) answers; 0 while it does not (the data path keeps forwarding with the maps it has).", vec![(vec![], gauge(self.store_reachable as i64))])?;
        family(&mut e, "privatelink_announced_routes", "Endpoint addresses this node publishes as routes in its announce tables (0 while its lease is in doubt or its links are detached).", vec![(vec![], gauge(self.announced_routes as i64))])?;
        family(&mut e, "privatelink_fleet_nodes_up", "Nodes of the fleet recorded up (each enforces its share of every connection limit).", vec![(vec![], gauge(self.nodes_up as i64))])?;
        family(&mut e, "privatelink_drift_repairs", "Drift repaired: XDP links re-attached (links), map operations rewritten (map_ops).", vec![(what("links"), counter(self.repaired_links)), (what("map_ops"), counter(self.repaired_map_ops))])?;
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

impl Gateway {
    /// What `/metrics` shows.
    pub fn snapshot(&self) -> anyhow::Result<Snapshot> {
        let mut snap = Snapshot {
            reconciles: self.reconciles,
            last_reconcile_seconds: self.last_reconcile_seconds,
            sweeps: self.sweep.runs.load(Relaxed),
            expired_flows: self.sweep.expired.load(Relaxed),
            last_sweep_seconds: self.sweep.last_pass_ns.load(Relaxed) as f64 / 1e9,
            repaired_links: self.repaired_links,
            repaired_map_ops: self.repaired_map_ops,
            store_reachable: self.store.reachable(),
            nodes_up: self.state.nodes.values().filter(|n| n.up).count().max(1) as u64,
            announced_routes: self.routes.as_ref().map_or(0, |r| r.published().len() as u64),
            ..Default::default()
        };
        for s in self.state.services.values() {
            let checker = &self.checker;
            snap.services.push((s.spec.name.clone(), s.spec.failing_open(&|n, ip| checker.is_up(n, ip))));
        }
        let Some(dp) = &self.dp else { return Ok(snap) };
        // From the sweeper's last pass: a scrape never walks the table.
        snap.conntrack_entries = self.sweep.entries.load(Relaxed);
        snap.conntrack_capacity = dp.maps.ct_capacity() as u64;
        let (vpcs, gateway) = self.vpc_counters()?;
        snap.gateway = gateway;
        snap.vpcs = vpcs.into_iter().map(|v| (v.vpc, v.counters)).collect();
        if let Some(dp) = &self.dp {
            for v in self.state.vpcs.values().filter(|v| v.spec.dns.is_some()) {
                snap.dns.push((v.spec.name.clone(), dp.maps.dns_stats(v.vpc_id)?));
            }
        }
        for e in self.state.endpoints.values() {
            let Some(svc) = self.state.services.get(&e.service) else { continue };
            let active = dp.maps.active_flows(e.index)?;
            let protos = svc.spec.ports.iter().map(|p| p.protocol).collect::<std::collections::BTreeSet<_>>().len() as u64;
            let up = svc.spec.backends.iter().filter(|b| self.checker.is_up(&svc.spec.name, b.address)).count().max(1) as u64;
            // Each SNAT address has the port range towards each backend and protocol.
            let ports = (SNAT_PORT_MAX as u64 - SNAT_PORT_MIN as u64 + 1) * protos * up * e.snat_ips().count() as u64;
            let stats = dp.maps.endpoint_stats(e.index)?;
            let in_use = stats.snat_ports_in_use();
            snap.endpoints.push(EndpointSample {
                labels: vec![
                    ("endpoint".into(), e.spec.name.clone()),
                    ("endpoint_id".into(), e.id.clone()),
                    ("service".into(), e.service.clone()),
                    ("account".into(), e.spec.owner.0.clone()),
                    ("vpc".into(), e.spec.vpc.clone()),
                ],
                counters: stats.into(),
                active,
                snat_ports_in_use: in_use,
                snat_ports_free: ports.saturating_sub(in_use),
                bandwidth_bps: e.spec.bandwidth.map(|b| b.0),
            });
        }
        for s in self.state.services.values() {
            let vpc_id = self.state.vpcs.get(&s.spec.vpc).map_or(0, |v| v.vpc_id);
            for b in &s.spec.backends {
                snap.backends.push(BackendSample {
                    labels: vec![("service".into(), s.spec.name.clone()), ("backend".into(), b.address.to_string())],
                    up: self.checker.is_up(&s.spec.name, b.address),
                    flows: self.sweep.backend_flows((vpc_id, maps::ip_raw(b.address))),
                });
            }
        }
        Ok(snap)
    }
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
