//! Prometheus metrics: a `Snapshot` of the picture of the moment taken at scrape time
//! (no lock: the counters are read through the data path's read-only handles, and the
//! conntrack table is never walked), written as OpenMetrics text, and the `/metrics`
//! HTTP server (hyper).

use super::{api::Counters, picture::{Picture, Shown}};
use privatelink_common::*;
use http_body_util::Full;
use hyper::{body::Bytes, Request, Response};
use std::{net::SocketAddr, sync::atomic::Ordering::Relaxed};

pub type Labels = Vec<(String, String)>;

#[derive(Clone, Debug, Default)]
pub struct EndpointSample {
    /// endpoint, endpoint_id, service, account, vpc
    pub labels: Labels,
    pub counters: Counters,
    pub active: u64,
    /// Half-open TCP connections and flows in the table (every state) it holds.
    pub half_open: u64,
    pub flows: u64,
    /// The connection limit this node enforces (its share of the service's limit).
    pub limit: u64,
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
    pub repaired_accounting: u64,
    /// The store answered last time (the data path forwards either way).
    pub store_reachable: bool,
    /// Nodes of the fleet recorded up (1 alone).
    pub nodes_up: u64,
    /// Of them, stopped with their data path attached, within their restart grace.
    pub nodes_restarting: u64,
    /// Routes published for the routing daemon.
    pub announced_routes: u64,
    /// (VPC name, answers per `DnsStats` slot) of VPCs with a DNS address.
    pub dns: Vec<(String, DnsStats)>,
    pub replication: ReplicationSample,
}

/// Replication's side of a scrape (`daemon::replication`).
#[derive(Clone, Debug, Default)]
pub struct ReplicationSample {
    pub connected: bool,
    pub lag_p50: Option<f64>,
    pub lag_p99: Option<f64>,
    pub batches_sent: u64,
    pub frames_resent: u64,
    pub events_sent: u64,
    pub events_lost: u64,
    pub snapshots: u64,
    pub bytes_sent: u64,
    pub unacked: u64,
    /// (origin node, flows held for it)
    pub held: Vec<(String, u64)>,
    pub events_refused: u64,
    pub peers_refused: u64,
    pub slices_taken: u64,
    pub adopted: u64,
    pub held_packets: u64,
    pub handing: bool,
}

/// A sample's value: a counter, an integer gauge or a float gauge.
#[derive(Clone, Copy)]
enum Val {
    C(u64),
    G(i64),
    F(f64),
}

fn counter(v: u64) -> Val {
    Val::C(v)
}

fn gauge(v: i64) -> Val {
    Val::G(v)
}

/// `k="v",...` with OpenMetrics escaping: computed once per endpoint, not per sample.
fn label_text(l: &[(String, String)]) -> String {
    let mut out = String::new();
    for (k, v) in l {
        push_label(&mut out, k, v);
    }
    out
}

/// Append `k="v"` (escaped) to a label list, after a comma unless it is empty.
fn push_label(out: &mut String, k: &str, v: &str) {
    if !out.is_empty() {
        out.push(',');
    }
    out.push_str(k);
    out.push_str("=\"");
    escape_into(out, v);
    out.push('"');
}

fn escape_into(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn with(l: &str, k: &str, v: &str) -> String {
    let mut out = String::with_capacity(l.len() + k.len() + v.len() + 4);
    out.push_str(l);
    push_label(&mut out, k, v);
    out
}

/// The OpenMetrics text being written: HELP and TYPE per family, `_total` on counter
/// samples, `# EOF` at the end. Written by hand: prometheus-client's encoder took half a
/// second for 10,000 endpoints (a label vector cloned per sample).
struct Out(String);

impl Out {
    fn family(&mut self, name: &str, help: &str, samples: Vec<(String, Val)>) {
        use std::fmt::Write;
        let Some((_, first)) = samples.first() else { return };
        let (kind, suffix) = match first {
            Val::C(_) => ("counter", "_total"),
            Val::G(_) | Val::F(_) => ("gauge", ""),
        };
        let o = &mut self.0;
        o.push_str("# HELP ");
        o.push_str(name);
        o.push(' ');
        escape_into(o, help);
        let _ = write!(o, "\n# TYPE {name} {kind}\n");
        for (labels, v) in &samples {
            o.push_str(name);
            o.push_str(suffix);
            if !labels.is_empty() {
                o.push('{');
                o.push_str(labels);
                o.push('}');
            }
            let _ = match v {
                Val::C(x) => writeln!(o, " {x}"),
                Val::G(x) => writeln!(o, " {x}"),
                Val::F(x) => writeln!(o, " {x}"),
            };
        }
    }
}

impl Snapshot {
    fn write(&self, e: &mut Out) {
        let eps: Vec<(&EndpointSample, String)> = self.endpoints.iter().map(|s| (s, label_text(&s.labels))).collect();
        let bks: Vec<(&BackendSample, String)> = self.backends.iter().map(|b| (b, label_text(&b.labels))).collect();
        let dir = |f: &dyn Fn(&Counters) -> (u64, u64)| -> Vec<(String, Val)> {
            eps.iter()
                .flat_map(|(s, l)| {
                    let (fwd, rev) = f(&s.counters);
                    [(with(l, "direction", "forward"), counter(fwd)), (with(l, "direction", "reverse"), counter(rev))]
                })
                .collect()
        };
        e.family("privatelink_endpoint_packets", "Packets through an endpoint (forward: consumer to provider).", dir(&|c| (c.fwd_packets, c.rev_packets)));
        e.family("privatelink_endpoint_bytes", "Bytes through an endpoint.", dir(&|c| (c.fwd_bytes, c.rev_bytes)));
        e.family("privatelink_endpoint_new_flows", "Connections (flows) opened through an endpoint.", eps.iter().map(|(s, l)| (l.clone(), counter(s.counters.new_connections))).collect());
        e.family("privatelink_endpoint_active_flows", "Live connections counted against the endpoint's limit.", eps.iter().map(|(s, l)| (l.clone(), gauge(s.active as i64))).collect());
        e.family("privatelink_endpoint_half_open", "TCP connections through the endpoint whose handshake has not completed (its half-open budget; over it: drops with reason half_open_limit).", eps.iter().map(|(s, l)| (l.clone(), gauge(s.half_open as i64))).collect());
        e.family("privatelink_endpoint_table_flows", "Flows of every state the endpoint holds in the conntrack table (its share; over it: drops with reason flow_share).", eps.iter().map(|(s, l)| (l.clone(), gauge(s.flows as i64))).collect());
        // Only the reasons an endpoint has seen (absent: 0): 22 zero series per endpoint
        // were two thirds of a scrape at 10,000 endpoints.
        let drops: Vec<_> = eps
            .iter()
            .flat_map(|(s, l)| {
                privatelink_common::DropReason::ALL.iter().filter_map(move |r| {
                    let n = s.counters.drops.get(r.name()).copied().filter(|n| *n > 0)?;
                    Some((with(l, "reason", r.name()), counter(n)))
                })
            })
            .collect();
        e.family("privatelink_endpoint_drops", "Packets to an endpoint dropped, by reason (a reason appears once it has happened: absent means 0).", drops);
        e.family("privatelink_endpoint_connection_limit", "The connection limit this node enforces for the endpoint (its share of the service's limit in a fleet).", eps.iter().map(|(s, l)| (l.clone(), gauge(s.limit as i64))).collect());
        e.family("privatelink_endpoint_connection_limit_hits", "New connections refused by the endpoint's connection limit.", eps.iter().map(|(s, l)| (l.clone(), counter(s.counters.drops.get("over_limit").copied().unwrap_or(0)))).collect());
        let limited = eps.iter().filter_map(|(s, l)| Some((l.clone(), gauge(s.bandwidth_bps? as i64)))).collect();
        e.family("privatelink_endpoint_bandwidth_limit_bps", "The endpoint's bandwidth limit in each direction, bits per second (endpoints with one only); packets over it count as drops with reason over_bandwidth.", limited);
        e.family("privatelink_endpoint_resets_sent", "TCP resets the gateway sent for an endpoint.", eps.iter().map(|(s, l)| (l.clone(), counter(s.counters.resets_sent))).collect());
        e.family("privatelink_endpoint_snat_ports_in_use", "SNAT source ports held by the endpoint's flows (open or closing), as the data path counts them.", eps.iter().map(|(s, l)| (l.clone(), gauge(s.snat_ports_in_use as i64))).collect());
        e.family("privatelink_endpoint_snat_ports_free", "SNAT source ports left for new flows (per SNAT address, backend and protocol, summed).", eps.iter().map(|(s, l)| (l.clone(), gauge(s.snat_ports_free as i64))).collect());
        e.family("privatelink_backend_up", "1 when the backend passes its health checks (or is unchecked).", bks.iter().map(|(b, l)| (l.clone(), gauge(b.up as i64))).collect());
        e.family("privatelink_backend_flows", "Flows on a backend (open or closing), counted by the data path as it opens and removes them.", bks.iter().map(|(b, l)| (l.clone(), gauge(b.flows as i64))).collect());
        e.family("privatelink_service_failing_open", "1 when every backend of the service is down and it uses them all.", self.services.iter().map(|(s, f)| (label_text(&[("service".to_string(), s.clone())]), gauge(*f as i64))).collect());
        let gdrops: Vec<_> = privatelink_common::DropReason::ALL.iter().map(|r| (label_text(&[("reason".to_string(), r.name().to_string())]), counter(self.gateway.drops.get(r.name()).copied().unwrap_or(0)))).collect();
        e.family("privatelink_gateway_drops", "Packets dropped that no endpoint could be charged with, by reason.", gdrops);
        let vdrops: Vec<_> = self
            .vpcs
            .iter()
            .flat_map(|(v, c)| privatelink_common::DropReason::ALL.iter().map(move |r| (label_text(&[("vpc".to_string(), v.clone()), ("reason".to_string(), r.name().to_string())]), counter(c.drops.get(r.name()).copied().unwrap_or(0)))))
            .collect();
        e.family("privatelink_vpc_drops", "Packets a VPC interface dropped that no endpoint could be charged with (not_routed: the gateway never routes between VPCs), by reason.", vdrops);
        let dns: Vec<_> = self
            .dns
            .iter()
            .flat_map(|(v, s)| DnsStats::RCODES.iter().map(move |(rcode, slot)| (label_text(&[("vpc".to_string(), v.clone()), ("rcode".to_string(), rcode.to_string())]), counter(s.answers[*slot]))))
            .collect();
        e.family("privatelink_dns_queries", "DNS queries answered at a VPC's DNS address, by the RCODE sent (queries with nothing to answer are privatelink_vpc_drops{reason=\"dns_dropped\"}).", dns);
        e.family("privatelink_endpoint_slot_underflows", "Connection-slot releases that found the endpoint's active count at zero (an anomaly: the count saturates).", eps.iter().map(|(s, l)| (l.clone(), counter(s.counters.slot_underflows))).collect());
        e.family("privatelink_endpoint_icmp_sent", "ICMP the gateway generated for an endpoint: echo replies, time-exceeded, fragmentation-needed.", eps.iter().map(|(s, l)| (l.clone(), counter(s.counters.icmp_sent))).collect());
        e.family("privatelink_conntrack_entries", "Conntrack entries in use (two per flow), as of the sweeper's last pass.", vec![(String::new(), gauge(self.conntrack_entries as i64))]);
        e.family("privatelink_conntrack_capacity", "Conntrack entries the table holds.", vec![(String::new(), gauge(self.conntrack_capacity as i64))]);
        e.family("privatelink_reconciles", "Reconciles of the maps with the recorded state.", vec![(String::new(), counter(self.reconciles))]);
        e.family("privatelink_last_reconcile_duration_seconds", "How long the last reconcile took.", vec![(String::new(), Val::F(self.last_reconcile_seconds))]);
        e.family("privatelink_sweeper_runs", "Passes of the conntrack sweeper.", vec![(String::new(), counter(self.sweeps))]);
        e.family("privatelink_sweeper_expired_flows", "Flows the sweeper removed.", vec![(String::new(), counter(self.expired_flows))]);
        e.family("privatelink_sweeper_last_pass_seconds", "Wall time of the sweeper's last pass over the conntrack table (the next pass waits at least twelve times as long).", vec![(String::new(), Val::F(self.last_sweep_seconds))]);
        let what = |w: &str| label_text(&[("what".to_string(), w.to_string())]);
        e.family("privatelink_store_reachable", "1 while the state store (embedded, or the fleet's etcd) answers; 0 while it does not (the data path keeps forwarding with the maps it has).", vec![(String::new(), gauge(self.store_reachable as i64))]);
        e.family("privatelink_announced_routes", "Endpoint addresses this node publishes as routes in its announce tables (0 while its lease is in doubt or its links are detached).", vec![(String::new(), gauge(self.announced_routes as i64))]);
        e.family("privatelink_fleet_nodes_up", "Nodes of the fleet recorded up (each enforces its share of every connection limit).", vec![(String::new(), gauge(self.nodes_up as i64))]);
        e.family("privatelink_fleet_nodes_restarting", "Nodes up whose daemon stopped with its data path attached, within its restart grace (its flows go on).", vec![(String::new(), gauge(self.nodes_restarting as i64))]);
        let r = &self.replication;
        e.family("privatelink_replication_connected", "1 while this node streams its flows to its buddy.", vec![(String::new(), gauge(r.connected as i64))]);
        let q = |v: &str| label_text(&[("quantile".to_string(), v.to_string())]);
        let lags: Vec<_> = [("0.5", r.lag_p50), ("0.99", r.lag_p99)].into_iter().filter_map(|(l, v)| Some((q(l), Val::F(v?)))).collect();
        e.family("privatelink_replication_lag_seconds", "From a flow event's writing by the data path to the buddy's acknowledgement, over the last 4096 batches acknowledged.", lags);
        e.family("privatelink_replication_batches_sent", "Batches of flow events written to the buddy (snapshots' included).", vec![(String::new(), counter(r.batches_sent))]);
        e.family("privatelink_replication_frames_resent", "Frames sent again after a reconnect because the buddy had not applied them.", vec![(String::new(), counter(r.frames_resent))]);
        e.family("privatelink_replication_events_sent", "Flow events sent to the buddy (snapshots not counted).", vec![(String::new(), counter(r.events_sent))]);
        e.family("privatelink_replication_events_lost", "Flow events the data path could not write (its ring was full); the next snapshot repairs the buddy's copy.", vec![(String::new(), counter(r.events_lost))]);
        e.family("privatelink_replication_snapshots", "Snapshots of the flow table sent to a buddy (a new buddy, a new run, a stream that could not resume).", vec![(String::new(), counter(r.snapshots))]);
        e.family("privatelink_replication_bytes_sent", "Bytes written to the buddy on the management network.", vec![(String::new(), counter(r.bytes_sent))]);
        e.family("privatelink_replication_unacked_frames", "Frames sent or queued that the buddy has not acknowledged.", vec![(String::new(), gauge(r.unacked as i64))]);
        let held: Vec<_> = r.held.iter().map(|(n, c)| (label_text(&[("node".to_string(), n.clone())]), gauge(*c as i64))).collect();
        e.family("privatelink_standby_flows", "Flows this node holds in its standby table for another node, by node.", held);
        e.family("privatelink_replication_events_refused", "Flow events from another node not written to the standby table: inconsistent, outside that node's SNAT slice, or over the table's size.", vec![(String::new(), counter(r.events_refused))]);
        e.family("privatelink_replication_peers_refused", "Replication connections refused: not a node of the fleet, not from its registered address, or not speaking the protocol.", vec![(String::new(), counter(r.peers_refused))]);
        e.family("privatelink_takeover_slices", "SNAT slices this node has taken over from nodes recorded down whose buddy it is.", vec![(String::new(), gauge(r.slices_taken as i64))]);
        e.family("privatelink_takeover_adopted_flows", "Flows moved from the standby table into the flow table (a packet of a taken-over flow reached this node).", vec![(String::new(), counter(r.adopted))]);
        e.family("privatelink_takeover_held_packets", "Client packets of a flow held in the standby table whose slice was not taken over (yet), dropped without a reset so the client retransmits into the takeover.", vec![(String::new(), counter(r.held_packets))]);
        e.family("privatelink_handoff_active", "1 while this node hands a dead node's client segments to that node's buddy over the management network (it is not the buddy).", vec![(String::new(), gauge(r.handing as i64))]);
        e.family("privatelink_drift_repairs", "Drift repaired: XDP links re-attached (links), map operations rewritten (map_ops), slot-accounting counters that disagreed with the flow table (accounting: each one a leak, should stay 0).", vec![(what("links"), counter(self.repaired_links)), (what("map_ops"), counter(self.repaired_map_ops)), (what("accounting"), counter(self.repaired_accounting))]);
    }
}

/// The text exposition of a snapshot (OpenMetrics).
pub fn render(s: Snapshot) -> String {
    let mut out = Out(String::with_capacity(64 * 1024));
    s.write(&mut out);
    out.0.push_str("# EOF\n");
    out.0
}


impl Picture {
    fn replication_sample(&self) -> ReplicationSample {
        let r = &self.replication;
        ReplicationSample {
            connected: r.connected.load(Relaxed),
            lag_p50: r.lag_quantile(0.5),
            lag_p99: r.lag_quantile(0.99),
            batches_sent: r.batches_sent.load(Relaxed),
            frames_resent: r.frames_resent.load(Relaxed),
            events_sent: r.events_sent.load(Relaxed),
            events_lost: r.events_lost.load(Relaxed),
            snapshots: r.snapshots.load(Relaxed),
            bytes_sent: r.bytes_sent.load(Relaxed),
            unacked: r.unacked.load(Relaxed),
            held: r.held.lock().unwrap().clone(),
            events_refused: r.events_refused.load(Relaxed),
            peers_refused: r.peers_refused.load(Relaxed),
            slices_taken: r.taken.load(Relaxed),
            adopted: r.adopted.load(Relaxed),
            held_packets: r.held_packets.load(Relaxed),
            handing: r.handing.load(Relaxed),
        }
    }

    /// What `/metrics` shows.
    pub fn snapshot(&self) -> anyhow::Result<Snapshot> {
        let mut snap = Snapshot {
            reconciles: self.path.counts.reconciles,
            last_reconcile_seconds: self.path.counts.last_reconcile_seconds,
            sweeps: self.sweeper.runs.load(Relaxed),
            expired_flows: self.sweeper.expired.load(Relaxed),
            last_sweep_seconds: self.sweeper.last_pass_ns.load(Relaxed) as f64 / 1e9,
            repaired_links: self.path.counts.repaired_links,
            repaired_map_ops: self.path.counts.repaired_map_ops,
            repaired_accounting: self.sweeper.repairs.load(Relaxed),
            store_reachable: self.store.reachable(),
            nodes_up: self.state.nodes.values().filter(|n| n.up).count().max(1) as u64,
            nodes_restarting: {
                let now = crate::model::time::unix_now_ms();
                self.state.nodes.values().filter(|n| n.up && crate::model::fleet::still_restarting(n, now)).count() as u64
            },
            announced_routes: self.routes.len() as u64,
            replication: self.replication_sample(),
            ..Default::default()
        };
        for s in self.state.services.values() {
            let checker = &self.health;
            snap.services.push((s.spec.name.clone(), s.spec.failing_open(&|n, ip| checker.is_up(n, ip))));
        }
        let Some(c) = &self.counters else { return Ok(snap) };
        // From the sweeper's last pass: a scrape never walks the table.
        snap.conntrack_entries = self.sweeper.entries.load(Relaxed);
        snap.conntrack_capacity = c.ct_capacity() as u64;
        let (vpcs, gateway) = self.vpc_counters()?;
        snap.gateway = gateway;
        snap.vpcs = vpcs.into_iter().map(|v| (v.vpc, v.counters)).collect();
        for v in self.state.vpcs.values().filter(|v| v.spec.dns.is_some()) {
            snap.dns.push((v.spec.name.clone(), c.dns_stats(v.vpc_id)?));
        }
        let seat = self.seat();
        let counters = c.endpoint_counters(self.state.endpoint_slots_used())?;
        for e in self.state.endpoints.values() {
            let Some(svc) = self.state.services.get(&e.service) else { continue };
            let active = counters.active(e.index);
            let uses = counters.uses(e.index);
            let protos = svc.spec.ports.iter().map(|p| p.protocol).collect::<std::collections::BTreeSet<_>>().len() as u64;
            let up = svc.spec.backends.iter().filter(|b| self.health.is_up(&svc.spec.name, b.address)).count().max(1) as u64;
            // Each SNAT address has the port range towards each backend and protocol.
            let ports = (SNAT_PORT_MAX as u64 - SNAT_PORT_MIN as u64 + 1) * protos * up * e.snat_ips().count() as u64;
            let stats = counters.stats(e.index);
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
                half_open: uses.half_open,
                flows: uses.flows,
                limit: seat.share(svc.spec.connection_limit as u32) as u64,
                snat_ports_in_use: in_use,
                snat_ports_free: ports.saturating_sub(in_use),
                bandwidth_bps: e.spec.bandwidth.map(|b| b.0),
            });
        }
        for s in self.state.services.values() {
            for b in &s.spec.backends {
                let flows = match s.backend_slots.get(&b.address) {
                    Some(slot) => c.backend_flows(*slot)?.live(),
                    None => 0,
                };
                snap.backends.push(BackendSample {
                    labels: vec![("service".into(), s.spec.name.clone()), ("backend".into(), b.address.to_string())],
                    up: self.health.is_up(&s.spec.name, b.address),
                    flows,
                });
            }
        }
        Ok(snap)
    }
}

/// Serve `GET /metrics` on `addr` until the task is dropped.
pub async fn serve(addr: SocketAddr, shown: Shown) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "serving /metrics");
    loop {
        let (stream, _) = listener.accept().await?;
        let shown = shown.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let shown = shown.clone();
                async move {
                    let resp = if req.uri().path() == "/metrics" {
                        let body = render(shown.now().snapshot().unwrap_or_else(|e| {
                            tracing::error!(error = %format!("{e:#}"), "metrics snapshot");
                            Snapshot::default()
                        }));
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


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openmetrics_text_with_escaped_labels_and_help() {
        let mut s = Snapshot::default();
        s.endpoints.push(EndpointSample { labels: vec![("endpoint".into(), "a\"b\\c\nd".into())], active: 3, ..Default::default() });
        s.conntrack_entries = 7;
        s.last_sweep_seconds = 0.25;
        s.dns.push(("vpc0".into(), DnsStats::default()));
        let out = render(s);
        assert!(out.contains("# TYPE privatelink_endpoint_active_flows gauge\nprivatelink_endpoint_active_flows{endpoint=\"a\\\"b\\\\c\\nd\"} 3\n"), "{out}");
        assert!(out.contains("# TYPE privatelink_endpoint_packets counter\nprivatelink_endpoint_packets_total{endpoint=\"a\\\"b\\\\c\\nd\",direction=\"forward\"} 0\n"), "{out}");
        assert!(out.contains("\nprivatelink_conntrack_entries 7\n") && out.contains("\nprivatelink_sweeper_last_pass_seconds 0.25\n"), "{out}");
        // Quotes in a HELP text are escaped; the text ends with # EOF.
        assert!(out.contains("# HELP privatelink_dns_queries ") && out.contains("privatelink_vpc_drops{reason=\\\"dns_dropped\\\"}"), "{out}");
        assert!(out.ends_with("# EOF\n"));
        // Every sample line is NAME[{LABELS}] VALUE.
        for l in out.lines().filter(|l| !l.starts_with('#')) {
            let (_, v) = l.rsplit_once(' ').unwrap_or_else(|| panic!("{l}"));
            assert!(v.parse::<f64>().is_ok(), "{l}");
        }
    }

    #[test]
    fn ten_thousand_endpoints_render() {
        let mut s = Snapshot::default();
        for i in 0..10_000 {
            let labels = vec![("endpoint".into(), format!("ep{i}")), ("endpoint_id".into(), format!("ep-0a1b2c3d4e5f6{i:04}")), ("service".into(), "web".into()), ("account".into(), "100001".into()), ("vpc".into(), "vpc0".into())];
            s.endpoints.push(EndpointSample { labels, ..Default::default() });
        }
        let out = render(s);
        // Drop reasons only where they happened: none here, one for the endpoint below.
        assert_eq!(out.lines().filter(|l| l.starts_with("privatelink_endpoint_drops_total{")).count(), 0);
        let mut one = Snapshot::default();
        let mut c = Counters::default();
        c.drops.insert("over_limit".into(), 4);
        one.endpoints.push(EndpointSample { labels: vec![("endpoint".into(), "e".into())], counters: c, ..Default::default() });
        assert!(render(one).contains("\nprivatelink_endpoint_drops_total{endpoint=\"e\",reason=\"over_limit\"} 4\n"));
    }
}
