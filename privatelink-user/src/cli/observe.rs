//! `stats [--watch]`, `conntrack list`, `whois`: what the data path is doing.

use super::{client, output::{self, Format}};
use crate::daemon::api::{Counters, FlowView, Request, StatsView, WhoisView};
use anyhow::Result;
use std::{collections::BTreeMap, net::Ipv4Addr, path::Path, time::Duration};

fn drops(c: &Counters) -> String {
    if c.drops.is_empty() {
        "-".into()
    } else {
        c.drops.iter().map(|(r, n)| format!("{r}={n}")).collect::<Vec<_>>().join(",")
    }
}

fn stats_table(v: &StatsView) -> String {
    let mut rows: Vec<Vec<String>> = v
        .endpoints
        .iter()
        .map(|e| {
            let c = &e.counters;
            vec![
                e.endpoint.clone(),
                e.state.clone(),
                format!("{}/{}", e.active_connections, e.connection_limit),
                c.new_connections.to_string(),
                c.fwd_packets.to_string(),
                output::bytes(c.fwd_bytes),
                c.rev_packets.to_string(),
                output::bytes(c.rev_bytes),
                c.resets_sent.to_string(),
                drops(c),
            ]
        })
        .collect();
    let g = &v.gateway;
    rows.push(vec!["(gateway)".into(), "-".into(), "-".into(), "-".into(), "-".into(), "-".into(), "-".into(), "-".into(), g.resets_sent.to_string(), drops(g)]);
    output::table(&["ENDPOINT", "STATE", "ACTIVE/LIMIT", "NEW", "PKTS IN", "BYTES IN", "PKTS OUT", "BYTES OUT", "RESETS", "DROPS"], &rows)
}

/// Per-second rates between two snapshots.
fn rates_table(now: &StatsView, before: &BTreeMap<String, Counters>, secs: f64) -> String {
    let rate = |a: u64, b: u64| format!("{:.0}", a.saturating_sub(b) as f64 / secs);
    let rows: Vec<Vec<String>> = now
        .endpoints
        .iter()
        .map(|e| {
            let c = &e.counters;
            let p = before.get(&e.endpoint).cloned().unwrap_or_default();
            let dropped: u64 = c.drops.values().sum::<u64>().saturating_sub(p.drops.values().sum());
            vec![
                e.endpoint.clone(),
                e.state.clone(),
                format!("{}/{}", e.active_connections, e.connection_limit),
                rate(c.new_connections, p.new_connections),
                rate(c.fwd_packets, p.fwd_packets),
                output::bytes((c.fwd_bytes.saturating_sub(p.fwd_bytes) as f64 / secs) as u64) + "/s",
                rate(c.rev_packets, p.rev_packets),
                output::bytes((c.rev_bytes.saturating_sub(p.rev_bytes) as f64 / secs) as u64) + "/s",
                format!("{:.0}", dropped as f64 / secs),
            ]
        })
        .collect();
    output::table(&["ENDPOINT", "STATE", "ACTIVE/LIMIT", "NEW/S", "PKTS IN/S", "IN", "PKTS OUT/S", "OUT", "DROPS/S"], &rows)
}

pub fn stats(socket: &Path, watch: bool, fmt: Format) -> Result<()> {
    let v: StatsView = client::call_as(socket, &Request::Stats)?;
    if !watch {
        match fmt {
            Format::Json => print!("{}", output::json(&v)),
            Format::Table => print!("{}", stats_table(&v)),
        }
        return Ok(());
    }
    let mut before: BTreeMap<String, Counters> = v.endpoints.iter().map(|e| (e.endpoint.clone(), e.counters.clone())).collect();
    let mut at = std::time::Instant::now();
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let now: StatsView = client::call_as(socket, &Request::Stats)?;
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
    output::table(
        &["ENDPOINT", "PROTO", "CLIENT", "ENDPOINT ADDRESS", "SNAT", "BACKEND", "STATE", "IDLE"],
        &flows
            .iter()
            .map(|f| {
                vec![
                    f.endpoint.clone(),
                    f.protocol.clone(),
                    f.client.clone(),
                    f.endpoint_address.clone(),
                    f.snat.clone(),
                    f.backend.clone(),
                    f.state.clone(),
                    format!("{:.0}s", f.idle_seconds),
                ]
            })
            .collect::<Vec<_>>(),
    )
}

pub fn conntrack(socket: &Path, endpoint: Option<String>, fmt: Format) -> Result<()> {
    let flows: Vec<FlowView> = client::call_as(socket, &Request::Conntrack { endpoint })?;
    match fmt {
        Format::Json => print!("{}", output::json(&flows)),
        Format::Table => print!("{}", flows_table(&flows)),
    }
    Ok(())
}

pub fn whois(socket: &Path, ip: Ipv4Addr, port: Option<u16>, fmt: Format) -> Result<()> {
    let w: WhoisView = client::call_as(socket, &Request::Whois { ip, port })?;
    if fmt == Format::Json {
        print!("{}", output::json(&w));
        return Ok(());
    }
    print!(
        "{}",
        output::fields(&[
            ("snat ip", w.snat_ip.to_string()),
            ("endpoint", format!("{} ({})", w.endpoint, w.endpoint_id)),
            ("account", w.account),
            ("vpc", w.vpc),
            ("endpoint ip", w.endpoint_ip.to_string()),
            ("service", w.service),
        ])
    );
    if !w.flows.is_empty() {
        print!("\n{}", flows_table(&w.flows));
    }
    Ok(())
}

pub fn events(socket: &Path, follow: bool, fmt: Format) -> Result<()> {
    let mut after = 0u64;
    loop {
        let events: Vec<crate::daemon::api::Event> = client::call_as(socket, &Request::Events { after })?;
        if fmt == Format::Json && !follow {
            // One JSON array for scripts; --follow prints one object per line.
            print!("{}", output::json(&events));
            return Ok(());
        }
        for e in &events {
            match fmt {
                Format::Json => println!("{}", serde_json::to_string(e)?),
                Format::Table => {
                    let secs = e.at_ms / 1000;
                    let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
                    println!("{:>5}  {h:02}:{m:02}:{s:02}.{:03}Z  {:<28} {:<24} {}", e.seq, e.at_ms % 1000, e.kind, e.subject, e.message);
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
