//! `privatelink lab ecmp`: the lab router's forwarding plane. BIRD writes its merged
//! ECMP routes into a kernel table no lookup uses (FRR: its BGP routes in the main
//! table); this loop mirrors each of them into the main table (FRR: a table an `ip
//! rule` looks up first) as a route through a *resilient* next-hop group (Linux 5.13+),
//! what a datacenter switch's "resilient hashing" does. A plain Linux multipath
//! route is hash-threshold: when one of n next hops goes, flows of the others move
//! too (and meet a node without their state, which resets them). A resilient group
//! moves only the buckets of the next hop that went.

use anyhow::{bail, Context, Result};
use std::{
    collections::{BTreeMap, BTreeSet},
    io::Write,
    process::{Command, Stdio},
    time::Duration,
};

/// Buckets per group: flows hash into these; a leaving next hop's buckets are spread
/// over the others, every other bucket stays where it is.
const BUCKETS: u32 = 64;
/// A bucket idle this long may move to a next hop that has too few (a node back).
const IDLE_SECS: u32 = 10;
/// Ids of next-hop objects (gateways) and of groups (one per prefix).
const FIRST_NH: u32 = 1;
const FIRST_GROUP: u32 = 10_000;

type Hop = (String, String);

/// The main table: routes read from it are BGP's only.
const MAIN: u32 = 254;

/// Mirror `from_table` into `into_table` every 100 ms, for ever.
pub fn run(from_table: u32, into_table: u32) -> Result<()> {
    if from_table == into_table {
        bail!("--table and --into are the same table ({from_table})");
    }
    let mut groups: BTreeMap<String, u32> = BTreeMap::new();
    loop {
        if let Err(e) = pass(from_table, into_table, &mut groups) {
            eprintln!("ecmp: {e:#}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn json(args: &[&str]) -> Result<serde_json::Value> {
    let out = Command::new("ip").args(args).output().context("running ip")?;
    if !out.status.success() {
        bail!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    if out.stdout.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::Value::Array(Vec::new()));
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

fn hop(v: &serde_json::Value) -> Option<Hop> {
    Some((v["gateway"].as_str()?.to_string(), v["dev"].as_str()?.to_string()))
}

/// One reconciliation: BIRD's routes in, next-hop objects, groups and main-table
/// routes out. `groups` remembers each prefix's group id.
fn pass(from_table: u32, into_table: u32, groups: &mut BTreeMap<String, u32>) -> Result<()> {
    let mut want: BTreeMap<String, BTreeSet<Hop>> = BTreeMap::new();
    for r in json(&["-j", "-4", "route", "show", "table", &from_table.to_string()])?.as_array().cloned().unwrap_or_default() {
        let Some(dst) = r["dst"].as_str() else { continue };
        if from_table == MAIN && r["protocol"].as_str() != Some("bgp") {
            continue;
        }
        let hops: BTreeSet<Hop> = match r["nexthops"].as_array() {
            Some(n) => n.iter().filter_map(hop).collect(),
            None => hop(&r).into_iter().collect(),
        };
        if !hops.is_empty() {
            want.insert(dst.to_string(), hops);
        }
    }
    let mut nh: BTreeMap<Hop, u32> = BTreeMap::new();
    let mut have: BTreeMap<u32, BTreeSet<u32>> = BTreeMap::new();
    for o in json(&["-j", "nexthop", "show"])?.as_array().cloned().unwrap_or_default() {
        let Some(id) = o["id"].as_u64().map(|i| i as u32) else { continue };
        match o["group"].as_array() {
            Some(g) => {
                have.insert(id, g.iter().filter_map(|m| m["id"].as_u64().map(|i| i as u32)).collect());
            }
            None => {
                if let Some(h) = hop(&o) {
                    nh.insert(h, id);
                }
            }
        }
    }
    let mut batch = String::new();
    let mut next_nh = nh.values().max().map_or(FIRST_NH, |m| m + 1);
    for h in want.values().flatten() {
        if !nh.contains_key(h) {
            batch.push_str(&format!("nexthop replace id {next_nh} via {} dev {}\n", h.0, h.1));
            nh.insert(h.clone(), next_nh);
            next_nh += 1;
        }
    }
    for (dst, hops) in &want {
        let next_group = groups.values().max().map_or(FIRST_GROUP, |m| m + 1);
        let gid = *groups.entry(dst.clone()).or_insert(next_group);
        let members: BTreeSet<u32> = hops.iter().map(|h| nh[h]).collect();
        match have.get(&gid) {
            Some(m) if *m == members => continue,
            // Replacing a resilient group keeps the buckets of the members that stay.
            Some(_) => {}
            None => eprintln!("ecmp: {dst} via {} next hop(s)", members.len()),
        }
        let list: Vec<String> = members.iter().map(u32::to_string).collect();
        batch.push_str(&format!("nexthop replace id {gid} group {} type resilient buckets {BUCKETS} idle_timer {IDLE_SECS}\n", list.join("/")));
        batch.push_str(&format!("route replace {dst} nhid {gid} table {into_table}\n"));
    }
    groups.retain(|dst, gid| {
        let keep = want.contains_key(dst);
        if !keep && have.contains_key(gid) {
            batch.push_str(&format!("route del {dst} nhid {gid} table {into_table}\nnexthop del id {gid}\n"));
        }
        keep
    });
    if batch.is_empty() {
        return Ok(());
    }
    let mut child = Command::new("ip").args(["-force", "-batch", "-"]).stdin(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    child.stdin.take().context("ip's stdin")?.write_all(batch.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("{}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}
