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

pub fn markdown(rows: &[Row], quick: bool) -> String {
    let cpu = cmd(&["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"]);
    let mut md = String::new();
    let _ = writeln!(md, "# Benchmarks\n");
    let _ = writeln!(md, "Written by `cargo xtask bench{}`; do not edit by hand.\n", if quick { " --quick" } else { "" });
    let _ = writeln!(md, "- date: {}", cmd(&["date", "-u", "+%Y-%m-%d %H:%M UTC"]));
    let _ = writeln!(md, "- machine: {} CPUs ({}), {} memory", cmd(&["nproc"]), cpu.trim(), cmd(&["sh", "-c", "free -h | awk '/Mem:/{print $2}'"]));
    let _ = writeln!(md, "- kernel: {}", cmd(&["uname", "-r"]));
    if quick {
        let _ = writeln!(md, "- **quick run**: few trials and small sizes; the numbers are a smoke test, not a measurement.");
    }
    let _ = writeln!(
        md,
        "\n## Method\n\
- Part 1: the real XDP object in a gateway namespace with neighbours prefilled, `ingress_ifindex` set through the context; every run is BPF_PROG_TEST_RUN with repeat=1 and a fresh frame (the kernel does not reset the packet between repeats, so repeat>1 would measure a NAT program on its own output); each value is the median of the trials' medians, with the trials' min-max. R0 (`XDP_PASS`) shows the timer's floor; R1 (parse + `bpf_fib_lookup` + redirect, no NAT) is the reference the data path is compared with. New-flow runs vary the source so each SYN really opens a flow.\n\
- Part 2: the same for the established path with many endpoints / live flows; `apply` through the real daemon and CLI (wall clock of the CLI, YAML to map writes); RSS from /proc, BPF map memory from the daemon's map fds (`memlock`). The fleet rows apply on node 1 of three daemons sharing a real etcd (in the fleet lab's namespaces) and time until nodes 2 and 3 report the new generation; the no-op re-apply is sent to node 2.\n\
- Part 3: client | gateway | server namespaces on veth, variants interleaved in every trial after a warm-up round, senders on CPU 0. The hosts' veth ends run XDP_PASS and have tx checksum offload off in every variant; D, N and H get XDP_PASS on the gateway's client-side veth too (the UDP generator's XDP_TX frames need NAPI there). G is the product attached in generic (skb) mode on both gateway veths (`vpcs[].xdp_mode: generic`); it has no UDP row, since the generator's XDP_TX frames reach only a native program. UDP: 64-byte frames from a live-frames BPF_PROG_TEST_RUN generator (XDP_TX on the client's veth), counted as received by the server's veth; CPU-ns/pkt is the whole machine's busy time per delivered packet. TCP throughput: iperf3, in two offload profiles: *matched* (TSO/GSO/GRO and tx checksum off on all four veths) and *default* (as the kernel sets them, tx checksum off on the hosts). Attaching XDP to a veth turns GSO/TSO off on its peer, so under the default profile XDP variants are packet-rate bound while D and N move 64 KB GSO packets. New connections: wrk (1 thread, 32 connections, `Connection: close`) against nginx. Round trips: a 1-byte TCP ping-pong of our own. The flood row: an established ping-pong (CPU 1) while a live-frames generator (CPU 0) sends SYNs to the same endpoint, whose limit (1) the ping-pong flow holds, so every SYN is refused with a RST.\n"
    );
    let mut part = "";
    for r in rows {
        if r.part != part {
            part = r.part;
            let _ = writeln!(md, "\n## {part}\n\n| measurement | median | min - max | unit | ratio / note |\n|---|---:|---|---|---|");
        }
        let _ = writeln!(md, "| {} | {} | {} - {} | {} | {} |", r.name, fmt(r.median), fmt(r.min), fmt(r.max), r.unit, r.note);
    }
    let _ = writeln!(
        md,
        "\n## Targets (from the benchmarks issue)\n\n| metric | target |\n|---|---|\n| established forward / reverse, test-run | <= 150 ns and <= 2x R1 |\n| new flow incl. limit check, test-run | <= 600 ns |\n| UDP small packets: X vs F, X vs N | >= 0.7x, >= 2.5x |\n| TCP throughput, matched offloads: X vs D, X vs N | >= 0.85x, >= 1.0x |\n| new connections/s: X vs D, X vs N, X vs H | >= 0.9x, >= 1.2x, >= 2x |\n| added p50 round trip, X - D | <= 3 us |\n| established round trip p99 during an over-limit SYN flood | <= 1.2x of the same without the flood |\n| established cost, 10,000 vs 1 endpoints; 1M vs 1k flows | <= 1.2x |\n| apply 10,000 endpoints; no-op re-apply | <= 2 s; <= 200 ms |\n\nWhere a number misses its target, the table above shows the gap as measured."
    );
    md
}
