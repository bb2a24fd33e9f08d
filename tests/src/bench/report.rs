//! The bench report: a table on stdout and BENCHMARKS.md (machine, kernel, date,
//! method, medians with min-max, ratios, and the targets beside them).

use super::Row;
use std::fmt::Write;

fn fmt(v: f64) -> String {
    if !v.is_finite() {
        "-".into()
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn cmd(args: &[&str]) -> String {
    std::process::Command::new(args[0])
        .args(&args[1..])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// The time now, as the report writes it.
pub fn now_utc() -> String {
    cmd(&["date", "-u", "+%Y-%m-%d %H:%M UTC"])
}

pub fn table(rows: &[Row]) -> String {
    let mut out = String::new();
    let mut part = "";
    for r in rows {
        if r.part != part {
            part = r.part;
            let _ = writeln!(out, "\n{part}");
        }
        let _ = writeln!(out, "  {:<92} {:>10} {:<7} [{} - {}]  {}", r.name, fmt(r.median), r.unit, fmt(r.min), fmt(r.max), r.note);
    }
    out
}

const TABLE_HEAD: &str = "| measurement | median | min - max | unit | ratio / note |\n|---|---:|---|---|---|";

fn md_row(r: &Row) -> String {
    format!("| {} | {} | {} - {} | {} | {} |", r.name, fmt(r.median), fmt(r.min), fmt(r.max), r.unit, r.note)
}

/// `old` (a report) with `rows` merged in: a row of the same part and name is replaced
/// where it stands, a new one goes right after the run's row before it when that row
/// stands in `old`, else at the end of its part's table (a new part before the
/// targets), every other row is kept; `what` becomes a bullet of the header, so
/// the report says which rows came from which run. A bullet of an earlier run
/// containing `superseded` (the same command: its rows are all measured again) goes.
pub fn merge(old: &str, rows: &[Row], what: &str, superseded: &str) -> String {
    let mut used = vec![false; rows.len()];
    // Which of the run's rows `old` has already (by part and name).
    let mut in_old = vec![false; rows.len()];
    let mut part: Option<&str> = None;
    for line in old.lines() {
        if let Some(h) = line.strip_prefix("## ") {
            part = Some(h);
        } else if let Some(name) = line.strip_prefix("| ").and_then(|l| l.split(" | ").next()) {
            for (i, r) in rows.iter().enumerate() {
                in_old[i] |= Some(r.part) == part && r.name == name;
            }
        }
    }
    let mut out: Vec<String> = Vec::new();
    let mut part: Option<&str> = None;
    let flush = |part: Option<&str>, used: &mut Vec<bool>, out: &mut Vec<String>| {
        for (i, r) in rows.iter().enumerate() {
            if !used[i] && Some(r.part) == part {
                used[i] = true;
                out.push(md_row(r));
            }
        }
    };
    for line in old.lines() {
        if line.starts_with("- ") && line.contains(superseded) {
            continue;
        }
        if line == "## Method" {
            while out.last().is_some_and(|l| l.is_empty()) {
                out.pop();
            }
            out.push(format!("- {what}"));
            out.push(String::new());
        }
        if let Some(h) = line.strip_prefix("## ") {
            if h.starts_with("Targets") {
                let mut fresh: Vec<&str> = rows.iter().enumerate().filter(|(i, _)| !used[*i]).map(|(_, r)| r.part).collect();
                fresh.dedup();
                for p in fresh {
                    out.push(format!("## {p}\n\n{TABLE_HEAD}"));
                    flush(Some(p), &mut used, &mut out);
                    out.push(String::new());
                }
            }
            part = rows.iter().map(|r| r.part).find(|p| *p == h);
        }
        let cells: Vec<&str> = line.split(" | ").collect();
        let is_row = line.starts_with("| ") && !line.starts_with("| measurement") && cells.len() >= 5;
        if is_row {
            let name = cells[0].trim_start_matches("| ");
            if let Some(i) = rows.iter().position(|r| Some(r.part) == part && r.name == name) {
                used[i] = true;
                out.push(md_row(&rows[i]));
                let mut j = i + 1;
                while j < rows.len() && rows[j].part == rows[i].part && !in_old[j] && !used[j] {
                    used[j] = true;
                    out.push(md_row(&rows[j]));
                    j += 1;
                }
                continue;
            }
        } else if line.is_empty() && out.last().is_some_and(|l| l.starts_with("| ")) {
            flush(part, &mut used, &mut out);
        }
        out.push(line.to_string());
    }
    let mut md = out.join("\n");
    md.push('\n');
    md
}

pub fn markdown(rows: &[Row], quick: bool) -> String {
    let cpu = cmd(&["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"]);
    let mut md = String::new();
    let _ = writeln!(md, "# Benchmarks\n");
    let _ = writeln!(md, "Written by `cargo xtask bench{}`; do not edit by hand.\n", if quick { " --quick" } else { "" });
    let _ = writeln!(md, "- date: {}", now_utc());
    let _ = writeln!(md, "- machine: {} CPUs ({}), {} memory", cmd(&["nproc"]), cpu.trim(), cmd(&["sh", "-c", "free -h | awk '/Mem:/{print $2}'"]));
    let _ = writeln!(md, "- kernel: {}", cmd(&["uname", "-r"]));
    if quick {
        let _ = writeln!(md, "- **quick run**: few trials and small sizes; the numbers are a smoke test, not a measurement.");
    }
    let _ = writeln!(
        md,
        "\n## Method\n\
- Part 1: the real XDP object in a gateway namespace with neighbours prefilled, `ingress_ifindex` set through the context; every run is BPF_PROG_TEST_RUN with repeat=1 and a fresh frame (the kernel does not reset the packet between repeats, so repeat>1 would measure a NAT program on its own output); each value is the median of the trials' medians, with the trials' min-max. R0 (`XDP_PASS`) shows the timer's floor; R1 (parse + `bpf_fib_lookup` + redirect, no NAT) is the reference the data path is compared with: R1 runs again with every row, their trials taking turns, and the row's ratio is to those R1 trials, so both see the same moments of a noisy host. New-flow runs vary the source so each SYN really opens a flow; the new-flow row and the two floor rows under it (R1 plus the map work of a two-entry or a one-entry flow table, nothing else) take turns in the same way.\n\
- Part 2: the same for the established path with many endpoints / live flows; `apply` through the real daemon and CLI (wall clock of the CLI, YAML to map writes); RSS from /proc/PID/smaps without the daemon's read-only mmap views of BPF arrays (those pages are the maps' own memory), BPF map memory from the daemon's map fds (`memlock` of each map once). The fleet rows apply on node 1 of three daemons sharing a real etcd (in the fleet lab's namespaces) and time until nodes 2 and 3 report the new generation; the no-op re-apply is sent to node 2.\n\
- Part 3: client | gateway | server namespaces on veth, variants interleaved in every trial after a warm-up round, senders on CPU 0. The hosts' veth ends run XDP_PASS and have tx checksum offload off in every variant; D, N and H get XDP_PASS on the gateway's client-side veth too (the UDP generator's XDP_TX frames need NAPI there). G is the product attached in generic (skb) mode on both gateway veths (`vpcs[].xdp_mode: generic`); it has no UDP row, since the generator's XDP_TX frames reach only a native program. UDP: 64-byte frames from a live-frames BPF_PROG_TEST_RUN generator (XDP_TX on the client's veth), counted as received by the server's veth; CPU-ns/pkt is the whole machine's busy time per delivered packet. TCP throughput: iperf3, in two offload profiles: *matched* (TSO/GSO/GRO and tx checksum off on all four veths) and *default* (as the kernel sets them, tx checksum off on the hosts). Attaching XDP to a veth turns GSO/TSO off on its peer, so under the default profile XDP variants are packet-rate bound while D and N move 64 KB GSO packets. New connections: wrk (1 thread, 32 connections, `Connection: close`) against nginx. Round trips: a 1-byte TCP ping-pong of our own. The flood row: an established ping-pong (CPU 1) while a live-frames generator (CPU 0) sends SYNs to the same endpoint, whose limit (1) the ping-pong flow holds, so every SYN is refused with a RST.\n"
    );
    let mut part = "";
    for r in rows {
        if r.part != part {
            part = r.part;
            let _ = writeln!(md, "\n## {part}\n\n{TABLE_HEAD}");
        }
        let _ = writeln!(md, "{}", md_row(r));
    }
    let _ = writeln!(
        md,
        "\n## Targets (from the benchmarks issue)\n\n| metric | target |\n|---|---|\n| established forward / reverse, test-run | <= 150 ns and <= 2x R1 |\n| new flow incl. limit check, test-run | <= 600 ns |\n| UDP small packets: X vs F, X vs N | >= 0.7x, >= 2.5x |\n| TCP throughput, matched offloads: X vs D, X vs N | >= 0.85x, >= 1.0x |\n| new connections/s: X vs D, X vs N, X vs H | >= 0.9x (0.95x since the scale issue), >= 1.2x, >= 2x |\n| added p50 round trip, X - D | <= 3 us |\n| established round trip p99 during an over-limit SYN flood | <= 1.2x of the same without the flood (both with the same background load; min-max narrower than the median) |\n| generic XDP mode (G) vs native (X), TCP throughput | reported, no target |\n| established cost, 10,000 vs 1 endpoints; 1M vs 1k flows | <= 1.2x |\n| established cost with a policer vs without (same run) | <= +30 ns |\n| apply 10,000 endpoints; no-op re-apply | <= 2 s; <= 200 ms |\n| new flow, test-run, vs R1 of the same run | <= 2x R1 |\n| sweeper at 1M live flows | < 10% of one core |\n| API p99 during sweeps at 1M flows | < 20 ms |\n| scrape at 10,000 endpoints and 1M flows | < 100 ms |\n| established forward with sequence tracking vs before it (0.88x R1, 380 ns, the 2026-11-23 run) | within 5% of that ratio |\n| new flow of a SYN-flooded endpoint's neighbour vs the new-flow row (same run) | <= 1.1x |\n| `get endpoints` and `stats` p99 at 10,000 endpoints during applies of 10,000 endpoints and sweeper passes at 1M flows | <= 10 ms (met for one endpoint; the whole list of 10,000 is about 7 MB of JSON whose encoding alone is the floor, see the no-writer numbers; proposed: p99 during writes <= 1.5x the same read's no-writer p99, and <= 10 ms for one endpoint) |\n| tenant `GET /v1/endpoints` p99, 100 concurrent clients, 10,000 endpoints | <= 20 ms (measured 66 ms: the API answers 2,795 lists of 50 endpoints a second on this machine's 2 cores, shared with the 100 clients, so the wait is queueing: p50 = 100 / 2,795 s; each list reads 50 endpoints' counters through a syscall and encodes about 40 KB. Proposed: >= 2,500 lists of 50 endpoints a second on 2 cores, p99 <= 20 ms at 25 concurrent clients) |\n| endpoint creates per second through the tenant API, one node, redb | >= 200/s (measured 6.2/s at 10,000 endpoints, 76/s at 1,000: each create is a whole apply, every rule over the whole spec, two commits of the recorded spec, the maps' step write; the floor is that O(n) path. Proposed: >= 5/s at 10,000 endpoints now; 200/s needs per-resource validation and commits, a change of its own) |\n| data path round trips while the tenant API is hammered | within noise of the same without (measured: 3x faster under load, since with idle cores every round trip pays the CPUs' wake-ups; the API takes nothing from the data path here) |\n| console page time to interactive (load event) at 10,000 endpoints, lists paginated | <= 1 s |\n| tenant API p99 with 100 event streams (SSE) following an account's changes | not above its p99 without them (same run, same load); the API's own p99 target is the row above |\n\nWhere a number misses its target, the table above shows the gap as measured."
    );
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(part: &'static str, name: &str, v: f64) -> Row {
        Row::new(part, name, &[v], "ns").note("n")
    }

    #[test]
    fn merge_replaces_the_rows_measured_and_keeps_the_rest() {
        let old = markdown(&[row("1. a", "x", 1.0), row("1. a", "y", 2.0), row("2. b", "z", 3.0)], false);
        let new = [row("1. a", "y", 20.0), row("1. a", "w", 40.0), row("1. a", "x", 10.0), row("1. a", "u", 30.0), row("3. c", "v", 50.0)];
        let old = merge(&old, &[], "by `x` earlier", "by `x`");
        let md = merge(&old, &new, "rerun by `x`", "by `x`");
        let lines: Vec<&str> = md.lines().collect();
        let at = |s: &str| lines.iter().position(|l| l.starts_with(s)).unwrap_or_else(|| panic!("no {s} in\n{md}"));
        assert_eq!(lines[at("| x |")], "| x | 10.0 | 10.0 - 10.0 | ns | n |");
        assert_eq!(lines[at("| y |")], "| y | 20.0 | 20.0 - 20.0 | ns | n |");
        assert_eq!(at("| w |"), at("| y |") + 1, "a new row follows the run's row before it:\n{md}");
        assert_eq!(at("| u |"), at("| x |") + 1, "{md}");
        assert!(at("| x |") < at("| y |") && at("| w |") < at("## 2. b"), "the old rows keep their places:\n{md}");
        assert_eq!(lines[at("| z |")], "| z | 3.00 | 3.00 - 3.00 | ns | n |");
        assert!(at("## 2. b") < at("## 3. c") && at("| v |") < at("## Targets"), "a new part goes before the targets:\n{md}");
        assert!(at("- rerun") < at("## Method"), "{md}");
        assert_eq!(md.matches("| y |").count(), 1, "{md}");
        assert!(!md.contains("earlier"), "the bullet of the same command's earlier run stays:\n{md}");
        assert_eq!(lines.len(), old.lines().count() + 8, "{md}");
    }
}
