//! `cargo xtask bench` runs this: every benchmark part, a table on stdout, and
//! BENCHMARKS.md. Usage: plbench [--quick] [--out FILE] [--only 1|2|3|fleet|failover|load|tenant|console [--merge]]
//! `--merge` keeps the report's other rows: the ones measured replace theirs (same part
//! and name) and the header says when and by which command.
use privatelink_tests::bench::{self, console, control, e2e, failover, fleet, report, tenant, testrun, Effort};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let out = args.windows(2).find(|w| w[0] == "--out").map(|w| w[1].clone()).unwrap_or_else(|| "BENCHMARKS.md".into());
    let only = args.windows(2).find(|w| w[0] == "--only").map(|w| w[1].clone());
    let e = Effort::new(quick);
    let want = |p: &str| only.as_deref().is_none_or(|o| o == p);
    let mut rows: Vec<bench::Row> = Vec::new();
    if want("1") || want("2") {
        eprintln!("part 1 and 2 (data path): BPF_PROG_TEST_RUN ...");
        rows.extend(testrun::run(e));
    }
    if want("2") {
        eprintln!("part 2 (control plane): apply through the daemon ...");
        rows.extend(control::run(e));
    }
    if want("2") || only.as_deref() == Some("load") {
        eprintln!("part 2 (control plane): the daemon under 1M live flows ...");
        rows.extend(control::under_load(e));
    }
    if want("2") || only.as_deref() == Some("tenant") {
        eprintln!("part 2 (control plane): the tenant API under load ...");
        rows.extend(tenant::run(e));
    }
    if want("2") || only.as_deref() == Some("console") {
        eprintln!("part 2 (control plane): the console in a browser at scale ...");
        rows.extend(console::run(e));
    }
    if want("2") || only.as_deref() == Some("fleet") {
        eprintln!("part 2 (control plane): a fleet of three on etcd ...");
        rows.extend(fleet::run(e));
    }
    if want("3") {
        eprintln!("part 3: end to end in network namespaces ...");
        rows.extend(e2e::run(e));
    }
    if want("3") || only.as_deref() == Some("failover") {
        eprintln!("part 3: flow replication and failover in the fleet lab ...");
        rows.extend(failover::run(e));
    }
    print!("{}", report::table(&rows));
    let merge = args.iter().any(|a| a == "--merge");
    let md = match (&only, merge) {
        (Some(o), true) => {
            let old = std::fs::read_to_string(&out).unwrap_or_else(|e| panic!("--merge needs {out} ({e})"));
            let mut parts: Vec<&str> = rows.iter().map(|r| r.part).collect();
            parts.dedup();
            let by = format!("by `plbench --only {o}{} --merge`", if quick { " --quick" } else { "" });
            let what = format!("{} rows of {} were measured again at {} {by} (the rows of that run replace theirs; ratios in them are to that run's references)", rows.len(), parts.join(" and "), report::now_utc());
            report::merge(&old, &rows, &what, &by)
        }
        (None, true) => panic!("--merge goes with --only"),
        _ => report::markdown(&rows, quick),
    };
    std::fs::write(&out, md).expect("write the report");
    eprintln!("wrote {out}");
}
