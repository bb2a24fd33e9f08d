//! `stats [--watch]`, `conntrack list`, `whois`: what the data path is doing.

use super::{client, output::{self, Format}};
use crate::model::spec::Bandwidth;
use crate::daemon::api::{Counters, EndpointStats, FlowView, Request, StatsView, WhoisView};
use anyhow::Result;
use std::{collections::BTreeMap, net::Ipv4Addr, time::Duration};

fn drops(c: &Counters) -> String {
    if c.drops.is_empty() {
        "-".into()
    } else {
        c.drops.iter().map(|(r, n)| format!("{r}={n}")).collect::<Vec<_>>().join(",")
    }
}

fn bandwidth(e: &EndpointStats) -> String {
    e.bandwidth_bps.map_or("-".into(), |b| Bandwidth(b).to_string())
}

fn stats_table(v: &StatsView) -> String {
    let columns: [output::Column<EndpointStats>; 11] = [
        ("ENDPOINT", &|e| e.endpoint.clone()),
        ("STATE", &|e| e.state.clone()),
        ("ACTIVE/LIMIT", &|e| format!("{}/{}", e.active_connections, e.connection_limit)),
        ("BANDWIDTH", &bandwidth),
        ("NEW", &|e| e.counters.new_connections.to_string()),
        ("PKTS IN", &|e| e.counters.fwd_packets.to_string()),
        ("BYTES IN", &|e| output::bytes(e.counters.fwd_bytes)),
        ("PKTS OUT", &|e| e.counters.rev_packets.to_string()),
        ("BYTES OUT", &|e| output::bytes(e.counters.rev_bytes)),
        ("RESETS", &|e| e.counters.resets_sent.to_string()),
        ("DROPS", &|e| drops(&e.counters)),
    ];
    let mut rows = output::cells(&v.endpoints, &columns);
    // What no endpoint is charged with: per VPC interface, and in all.
    let own = |name: String, c: &Counters| {
        let mut row = vec!["-".to_string(); columns.len()];
        let n = row.len();
        row[0] = name;
        row[n - 2] = c.resets_sent.to_string();
        row[n - 1] = drops(c);
        row
    };
    rows.extend(v.vpcs.iter().map(|x| own(format!("(vpc {})", x.vpc), &x.counters)));
    rows.push(own("(gateway)".into(), &v.gateway));
    output::table(&output::headers(&columns), &rows)
}

/// Per-second rates between two snapshots.
fn rates_table(now: &StatsView, before: &BTreeMap<String, Counters>, secs: f64) -> String {
    let rate = |a: u64, b: u64| format!("{:.0}", a.saturating_sub(b) as f64 / secs);
    let bytes = |a: u64, b: u64| output::bytes((a.saturating_sub(b) as f64 / secs) as u64) + "/s";
    let zero = Counters::default();
    let was = |e: &EndpointStats| before.get(&e.endpoint).unwrap_or(&zero).clone();
    output::table_of(
        &now.endpoints,
        &[
            ("ENDPOINT", &|e| e.endpoint.clone()),
            ("STATE", &|e| e.state.clone()),
            ("ACTIVE/LIMIT", &|e| format!("{}/{}", e.active_connections, e.connection_limit)),
            ("BANDWIDTH", &bandwidth),
            ("NEW/S", &|e| rate(e.counters.new_connections, was(e).new_connections)),
            ("PKTS IN/S", &|e| rate(e.counters.fwd_packets, was(e).fwd_packets)),
            ("IN", &|e| bytes(e.counters.fwd_bytes, was(e).fwd_bytes)),
            ("PKTS OUT/S", &|e| rate(e.counters.rev_packets, was(e).rev_packets)),
            ("OUT", &|e| bytes(e.counters.rev_bytes, was(e).rev_bytes)),
            ("DROPS/S", &|e| rate(e.counters.drops.values().sum(), was(e).drops.values().sum())),
        ],
    )
}

pub fn stats(to: &client::Target, watch: bool, fmt: Format) -> Result<()> {
    let v: StatsView = to.call_as(&Request::Stats)?;
    if !watch {
        match fmt {
            Format::Table => print!("{}", stats_table(&v)),
            data => print!("{}", output::structured(data, &v).unwrap_or_default()),
        }
        return Ok(());
    }
    let mut before: BTreeMap<String, Counters> = v.endpoints.iter().map(|e| (e.endpoint.clone(), e.counters.clone())).collect();
    let mut at = std::time::Instant::now();
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let now: StatsView = to.call_as(&Request::Stats)?;
        let secs = at.elapsed().as_secs_f64();
        at = std::time::Instant::now();
        // Clear the screen and home the cursor, like top.
        print!("\x1b[2J\x1b[H{}", rates_table(&now, &before, secs));
        use std::io::Write;
        std::io::stdout().flush()?;
        before = now.endpoints.iter().map(|e| (e.endpoint.clone(), e.counters.clone())).collect();
    }
}

fn flows_table(flows: &[FlowView]) -> String {
    output::table_of(
        flows,
        &[
            ("ENDPOINT", &|f| f.endpoint.clone()),
            ("PROTO", &|f| f.protocol.clone()),
            ("CLIENT", &|f| f.client.to_string()),
            ("ENDPOINT ADDRESS", &|f| f.endpoint_address.to_string()),
            ("SNAT", &|f| f.snat.to_string()),
            ("BACKEND", &|f| f.backend.to_string()),
            ("STATE", &|f| f.state.clone()),
            ("IDLE", &|f| format!("{:.0}s", f.idle_seconds)),
        ],
    )
}

pub fn conntrack(to: &client::Target, endpoint: Option<String>, standby: bool, fmt: Format) -> Result<()> {
    let flows: Vec<FlowView> = to.call_as(&Request::Conntrack { endpoint, standby })?;
    match fmt {
        Format::Table => print!("{}", flows_table(&flows)),
        data => print!("{}", output::structured(data, &flows).unwrap_or_default()),
    }
    Ok(())
}

pub fn whois(to: &client::Target, ip: Ipv4Addr, port: Option<u16>, fmt: Format) -> Result<()> {
    let w: WhoisView = to.call_as(&Request::Whois { ip, port })?;
    if let Some(text) = output::structured(fmt, &w) {
        print!("{text}");
        return Ok(());
    }
    let mut fields = vec![
        ("snat ip", w.snat_ip.to_string()),
        ("endpoint", format!("{} ({})", w.endpoint, w.endpoint_id)),
        ("account", w.account),
        ("vpc", w.vpc),
        ("endpoint ip", w.endpoint_ip.to_string()),
        ("service", w.service),
    ];
    // In a fleet: the node whose SNAT slice holds the address (its flows are there).
    if let Some(node) = w.node {
        fields.push(("node", node));
    }
    print!("{}", output::fields(&fields));
    if !w.flows.is_empty() {
        print!("\n{}", flows_table(&w.flows));
    }
    Ok(())
}

pub fn events(to: &client::Target, follow: bool, fmt: Format) -> Result<()> {
    let mut after = 0u64;
    loop {
        let events: Vec<crate::daemon::api::Event> = to.call_as(&Request::Events { after })?;
        if fmt != Format::Table && !follow {
            // One array for scripts; --follow prints one JSON object per line (one YAML
            // document each).
            print!("{}", output::structured(fmt, &events).unwrap_or_default());
            return Ok(());
        }
        for e in &events {
            match fmt {
                Format::Json => println!("{}", serde_json::to_string(e)?),
                Format::Yaml => print!("---\n{}", output::structured(fmt, e).unwrap_or_default()),
                Format::Table => {
                    // The time of day of `2026-11-22T21:30:00.123Z`.
                    let at = e.at.to_string();
                    let time = at.split_once('T').map_or(at.as_str(), |(_, t)| t);
                    println!("{:>5}  {time}  {:<28} {:<24} {}", e.seq, e.kind, e.subject, e.message);
                }
            }
            after = e.seq;
        }
        if !follow {
            return Ok(());
        }
        use std::io::Write;
        std::io::stdout().flush()?;
        std::thread::sleep(Duration::from_millis(500));
    }
}
