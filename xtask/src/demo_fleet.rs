//! `cargo xtask demo --nodes N`: the quick start on a fleet behind BGP, narrated,
//! through the real `privatelink` binary and its `lab`: apply on node 1, accept on
//! node 2, connections spread over the nodes, one node killed while a session on
//! another goes on. Orchestration only: every step is a command a user could type.

use crate::demo::Demo;
use anyhow::{bail, Context, Result};
use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

const LAB: &str = "/run/privatelink-lab";
/// The BGP hold time of the lab's sessions (BFD detects sooner).
const HOLD: Duration = Duration::from_secs(3);

fn sock(k: usize) -> String {
    format!("{LAB}/gw{k}.sock")
}

/// The node (1-based) whose SNAT slice holds `peer` (`11.163.X.Y:port`, slices of 64).
fn node_of(answer: &str) -> Option<usize> {
    let peer = answer.split_whitespace().find_map(|w| w.strip_prefix("peer="))?;
    let third: usize = peer.split('.').nth(2)?.parse().ok()?;
    Some(third / 64 + 1)
}

fn backend_of(answer: &str) -> &str {
    answer.split_whitespace().find_map(|w| w.strip_prefix("backend=")).unwrap_or("?")
}

pub fn run(root: &Path, bin: PathBuf, keep: bool, nodes: usize) -> Result<()> {
    if !(2..=4).contains(&nodes) {
        bail!("--nodes: 2 to 4 for a fleet (1, the default, is the single-gateway demo)");
    }
    let mut d = Demo { bin, root: root.to_path_buf(), step: 0, socket: sock(1), api: "http://127.0.0.1:8443" };
    if Path::new(LAB).exists() {
        println!("A lab from an earlier run is still up; removing it first.");
        d.privatelink(&["lab", "down"])?;
    }
    let r = steps(&mut d, nodes);
    if r.is_err() || !keep {
        println!();
        let cleanup = d.privatelink(&["lab", "down"]);
        if r.is_ok() {
            cleanup?;
        }
    }
    r?;
    if keep {
        println!(
            "\nThe lab is still up (--keep). Try it by hand:\n  \
             sudo ip netns exec pl-vpc1 curl http://10.0.0.100/\n  \
             sudo ip -n pl-router route show 10.0.0.100             # the router's ECMP route, from BGP\n  \
             sudo PRIVATELINK_SOCKET={LAB}/gw2.sock privatelink get nodes\n\
             Remove it with: sudo privatelink lab down"
        );
    } else {
        println!("\nDone: the lab is removed (namespaces, etcd, BIRD, daemons, pins and mounts).");
    }
    Ok(())
}

/// The next hops the router forwards 10.0.0.100 to now (its main table, which its
/// forwarding plane keeps in step with what BGP gave it in table 200).
fn router_hops() -> Result<Vec<String>> {
    let out = Command::new("ip").args(["-n", "pl-router", "route", "show", "10.0.0.100"]).output()?;
    Ok(String::from_utf8_lossy(&out.stdout).split_whitespace().collect::<Vec<_>>().windows(2).filter(|w| w[0] == "via").map(|w| w[1].to_string()).collect())
}

/// `n` new connections from the client: each answer.
fn connections(d: &Demo, n: usize) -> Result<Vec<String>> {
    println!("$ for i in $(seq {n}); do ip netns exec pl-vpc1 privatelink lab get 10.0.0.100:80; done");
    let mut out = Vec::new();
    for i in 1..=n {
        let r = Command::new("ip").args(["netns", "exec", "pl-vpc1"]).arg(&d.bin).args(["lab", "get", "10.0.0.100:80", "--timeout-secs", "2"]).output()?;
        if !r.status.success() {
            bail!("connection {i} failed: {}", String::from_utf8_lossy(&r.stderr).trim());
        }
        out.push(String::from_utf8_lossy(&r.stdout).trim().to_string());
    }
    Ok(out)
}

/// Print how many connections each node and backend took.
fn tally(answers: &[String]) -> BTreeMap<usize, usize> {
    let mut per: BTreeMap<(usize, String), usize> = BTreeMap::new();
    for a in answers {
        *per.entry((node_of(a).unwrap_or(0), backend_of(a).to_string())).or_default() += 1;
    }
    let mut nodes = BTreeMap::new();
    for ((node, backend), count) in per {
        println!("  gw{node} -> {backend}: {count} connection(s)");
        *nodes.entry(node).or_default() += count;
    }
    nodes
}

fn steps(d: &mut Demo, n: usize) -> Result<()> {
    d.say(&format!("Build a fleet: etcd (netns pl-ctl), {n} gateway nodes pl-gw1..pl-gw{n} in zones z1 (odd) and z2 (even), each running the daemon and BIRD, a consumer router (pl-router) with BIRD and layer-4 ECMP in front of the client in VPC1, and the provider's backends 192.168.2.10 (z1) and .11 (z2). Node K's SNAT slice (11.163.(K-1)*64.0/18) is routed back to node K."));
    d.privatelink(&["lab", "up", "--nodes", &n.to_string()])?;
    d.privatelink(&["get", "nodes"])?;

    d.say("On node 1, the provider and the consumer apply examples/fleet.yaml: service `web` with same-zone priority, and the endpoint 10.0.0.100 with a zonal address per zone. The endpoint waits for approval.");
    d.socket = sock(1);
    d.privatelink(&["apply", "-f", "examples/fleet.yaml"])?;

    d.say("On node 2, the provider accepts: the decision is recorded in etcd, and every node follows.");
    d.socket = sock(2);
    d.privatelink(&["accept", "web-from-vpc1"])?;

    d.say("Each node publishes the addresses it serves in routing table 100 (zonal ones by the nodes of their zone); BIRD announces them and the router merges the paths into one ECMP route. Nobody wrote a route by hand.");
    let start = Instant::now();
    while router_hops()?.len() < n {
        if start.elapsed() > Duration::from_secs(20) {
            bail!("the router did not learn the endpoint from all {n} nodes: {:?}", router_hops()?);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    d.run("ip -n pl-gw1 route show table 100", Command::new("ip").args(["-n", "pl-gw1", "route", "show", "table", "100"]))?;
    d.run("ip -n pl-router route show table 200    # what BGP gave the router", Command::new("ip").args(["-n", "pl-router", "route", "show", "table", "200"]))?;
    d.run("ip -n pl-router route show 10.0.0.100   # how it forwards: a resilient next-hop group", Command::new("ip").args(["-n", "pl-router", "route", "show", "10.0.0.100"]))?;

    d.say("30 new connections from the client: the router spreads them over the nodes; each backend answers with the source it saw, an address of the slice of the node the flow took. With zone_affinity each node uses its own zone's backend.");
    let before = connections(d, 30)?;
    let per_node = tally(&before);
    if per_node.len() < 2 {
        bail!("30 connections all took one node: {per_node:?}");
    }
    let peer = before[0].split_whitespace().find_map(|w| w.strip_prefix("peer=")).and_then(|p| p.split(':').next()).unwrap_or_default().to_string();
    d.privatelink(&["whois", &peer])?;

    d.say("A long session: 24 requests on one connection, 250 ms apart, running while a node dies.");
    println!("$ ip netns exec pl-vpc1 privatelink lab session 10.0.0.100:80 --requests 24 --interval-ms 250 &");
    let mut session = Command::new("ip")
        .args(["netns", "exec", "pl-vpc1"])
        .arg(&d.bin)
        .args(["lab", "session", "10.0.0.100:80", "--requests", "24", "--interval-ms", "250"])
        .stdout(Stdio::piped())
        .spawn()?;
    let mut lines = BufReader::new(session.stdout.take().context("session output")?).lines();
    let first = lines.next().context("the session printed nothing")??;
    println!("  {first}");
    let held = node_of(&first).context("no peer in the session's answer")?;
    let victim = (1..=n).find(|k| *k != held).unwrap_or(1);

    d.say(&format!("Node {victim} dies: its daemon and its BIRD are killed (SIGKILL). The session runs through node {held}."));
    let pids = Command::new("ip").args(["netns", "pids", &format!("pl-gw{victim}")]).output()?;
    let pids = String::from_utf8_lossy(&pids.stdout).split_whitespace().map(str::to_string).collect::<Vec<_>>();
    println!("$ ip netns pids pl-gw{victim} | xargs kill -9");
    let killed = Instant::now();
    Command::new("kill").arg("-9").args(&pids).status()?;
    let gone = format!("172.16.{victim}.2");
    while router_hops()?.contains(&gone) {
        if killed.elapsed() > Duration::from_secs(15) {
            bail!("the router still routes to the dead node");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = killed.elapsed();
    println!("The router withdrew node {victim} after {took:.2?} (BGP hold time {HOLD:?}; the dead BIRD's closed session and BFD are faster).");
    if took > HOLD {
        bail!("withdrawn after {took:?}, beyond the hold time");
    }
    d.run("ip -n pl-router route show 10.0.0.100", Command::new("ip").args(["-n", "pl-router", "route", "show", "10.0.0.100"]))?;

    d.say("30 new connections right away: all answered, by the surviving nodes.");
    let after = connections(d, 30)?;
    let per_node = tally(&after);
    if per_node.contains_key(&victim) {
        bail!("a new connection went through the dead node: {per_node:?}");
    }

    d.say(&format!("The session through node {held} went on: every answer came, from the same backend and source."));
    let mut answers = vec![first.clone()];
    for l in lines {
        let l = l?;
        println!("  {l}");
        answers.push(l);
    }
    let ok = session.wait()?.success();
    let same = answers.iter().all(|a| a.split_once(": ").map(|x| x.1) == first.split_once(": ").map(|x| x.1));
    if !ok || answers.len() != 24 || !same {
        bail!("the session was interrupted: {} answer(s), exit ok: {ok}", answers.len());
    }

    d.say(&format!("After its lease ran out, the others record node {victim} down; its share of each connection limit went to them."));
    d.socket = sock(held);
    std::thread::sleep(HOLD + Duration::from_secs(3));
    d.privatelink(&["get", "nodes"])?;
    Ok(())
}
