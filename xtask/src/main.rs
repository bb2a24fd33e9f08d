//! Orchestration only: install what is missing, build the XDP object with a toolchain
//! that has `rust-src`, build the binary, run the tests. No product logic here.

mod demo;
mod demo_fleet;
mod package;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use std::{
    path::{Path, PathBuf},
    process::Command,
};

#[derive(Parser)]
#[command(name = "xtask")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what is missing (apt packages, bpf-linker, test tools). Idempotent.
    Setup,
    /// Build the XDP object (target/ebpf/bpfel-unknown-none/release/privatelink).
    BuildEbpf,
    /// Build the XDP object, then the `privatelink` binary (release) that embeds it.
    Build,
    /// Run every test: unit, packet-level (BPF_PROG_TEST_RUN) and network namespaces.
    Test {
        /// Extra arguments for `cargo test` (after `--`).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Measure the data path against its references and baselines; writes BENCHMARKS.md.
    Bench {
        /// Few trials and small sizes: a smoke run, not a measurement.
        #[arg(long)]
        quick: bool,
        /// Only this part: 1 (per packet), 2 (scale), 3 (end to end), fleet, load or
        /// tenant (groups of part 2's rows).
        #[arg(long)]
        only: Option<String>,
        /// With --only: keep BENCHMARKS.md's other rows and replace only the ones measured.
        #[arg(long, requires = "only")]
        merge: bool,
    },
    /// Build the Debian package (cargo-deb) into target/debian/: the binary with its XDP
    /// object, the systemd unit, an example spec, completions and man pages.
    Package {
        /// Package the debug build (what the tests check; quicker to build).
        #[arg(long)]
        dev: bool,
        /// Write the .deb into this directory instead.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Build, then run the seeds' quick start end to end in network namespaces.
    Demo {
        /// Leave the lab up afterwards to try it by hand.
        #[arg(long)]
        keep: bool,
        /// A fleet of this many nodes (3 is the story: two zones, BGP, one node
        /// killed); 1, the default, is the single-gateway quick start.
        #[arg(long, default_value = "1")]
        nodes: usize,
        /// Leave the lab up with the console on https://127.0.0.1:8443/ (a self-signed
        /// certificate) and a token per account printed; implies --keep.
        #[arg(long, conflicts_with = "nodes")]
        console: bool,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let root = workspace_root();
    match cli.command {
        Cmd::Setup => {
            setup()?;
        }
        Cmd::BuildEbpf => {
            let tc = setup()?;
            build_ebpf(&root, &tc, EBPF_PRODUCT)?;
        }
        Cmd::Build => {
            let tc = setup()?;
            build_ebpf(&root, &tc, EBPF_PRODUCT)?;
            run(Command::new(cargo()).current_dir(&root).args(["build", "--release", "-p", "privatelink-user"]))?;
            println!("built {}", root.join("target/release/privatelink").display());
        }
        Cmd::Bench { quick, only, merge } => {
            let tc = setup()?;
            let missing = apt_missing_bins(APT_BENCH_TOOLS);
            if !missing.is_empty() {
                apt_install(&missing)?;
            }
            build_ebpf(&root, &tc, EBPF_BENCH)?;
            check_root()?;
            run(Command::new(cargo()).current_dir(&root).args(["build", "--release", "-p", "privatelink-user", "--bin", "privatelink"]))?;
            run(Command::new(cargo()).current_dir(&root).args(["build", "--release", "-p", "privatelink-tests", "--bin", "plbench"]))?;
            let mut c = Command::new(root.join("target/release/plbench"));
            c.current_dir(&root)
                .env("PRIVATELINK_BIN", root.join("target/release/privatelink"))
                .env("PRIVATELINK_BENCH_OBJECT", root.join("target/ebpf/bpfel-unknown-none/release/privatelink-bench"))
                .args(["--out", "BENCHMARKS.md"]);
            if quick {
                c.arg("--quick");
            }
            if let Some(p) = only {
                c.args(["--only", &p]);
            }
            if merge {
                c.arg("--merge");
            }
            run(&mut c)?;
        }
        Cmd::Package { dev, out } => {
            let tc = setup()?;
            build_ebpf(&root, &tc, EBPF_PRODUCT)?;
            package::build(&root, dev, out)?;
        }
        Cmd::Demo { keep, nodes, console } => {
            let tc = setup()?;
            build_ebpf(&root, &tc, EBPF_PRODUCT)?;
            check_root()?;
            run(Command::new(cargo()).current_dir(&root).args(["build", "--release", "-p", "privatelink-user"]))?;
            let bin = root.join("target/release/privatelink");
            if nodes == 1 {
                demo::run(&root, bin, keep || console, console)?;
            } else {
                demo_fleet::run(&root, bin, keep, nodes)?;
            }
        }
        Cmd::Test { args } => {
            let tc = setup()?;
            // The benchmarks' object too: it shares the product's parser and forwarder
            // source, and a change there must not break `bench` unnoticed.
            build_ebpf(&root, &tc, EBPF_BENCH)?;
            check_root()?;
            // The netns tests drive the real binary (target/debug/privatelink); the
            // package tests read the package of it.
            run(Command::new(cargo()).current_dir(&root).args(["build", "-p", "privatelink-user", "--bin", "privatelink"]))?;
            package::build(&root, true, Some(root.join("target/package-test")))?;
            let mut c = Command::new(cargo());
            // --no-fail-fast: every test binary runs, so the summary counts every failure.
            c.current_dir(&root).args(["test", "--no-fail-fast"]).args(["--", "--test-threads", "4"]).args(&args);
            run_tests(&mut c)?;
        }
    }
    Ok(())
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

fn run(c: &mut Command) -> Result<()> {
    let status = c.status().with_context(|| format!("running {c:?}"))?;
    if !status.success() {
        bail!("{c:?} failed: {status}");
    }
    Ok(())
}

/// Run `cargo test`, echo its output, and close with one summary line over every test
/// binary ("N passed, N failed").
fn run_tests(c: &mut Command) -> Result<()> {
    use std::io::{BufRead, BufReader};
    let mut child = c
        .stdout(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("running {c:?}"))?;
    let (mut passed, mut failed) = (0u64, 0u64);
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line?;
        println!("{line}");
        if let Some(rest) = line.strip_prefix("test result: ") {
            for part in rest.split(['.', ';']) {
                let mut w = part.split_whitespace();
                if let (Some(n), Some(kind)) = (w.next().and_then(|n| n.parse::<u64>().ok()), w.next()) {
                    match kind {
                        "passed" => passed += n,
                        "failed" => failed += n,
                        _ => {}
                    }
                }
            }
        }
    }
    let status = child.wait()?;
    println!("{passed} passed, {failed} failed");
    if !status.success() || failed > 0 {
        bail!("tests failed ({status})");
    }
    if passed == 0 {
        bail!("no test ran");
    }
    Ok(())
}

fn succeeds(c: &mut Command) -> bool {
    c.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn output(c: &mut Command) -> Option<String> {
    let o = c.output().ok()?;
    o.status.success().then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

fn check_root() -> Result<()> {
    let uid = output(Command::new("id").arg("-u")).unwrap_or_default();
    if uid != "0" {
        bail!("the tests load XDP programs and create network namespaces: run them as root");
    }
    Ok(())
}

/// How the eBPF crate gets built: which cargo, which rustc, and with which environment.
struct Toolchain {
    cargo: PathBuf,
    rustc: Option<PathBuf>,
    /// `cargo +nightly` (rustup) vs. a stable rustc unlocked with RUSTC_BOOTSTRAP.
    rustup_nightly: bool,
    describe: String,
}

const DEBIAN_RUSTC: &str = "/usr/bin/rustc";
const DEBIAN_CARGO: &str = "/usr/bin/cargo";
const LLVM_BIN: &str = "/usr/lib/llvm-22/bin";
/// Debian bookworm-security ships rustc 1.96 with its library source and LLVM 22, which
/// is rustc's own LLVM: enough to build the object offline when rustup has no rust-src.
const APT_TOOLCHAIN: &[&str] = &[
    "rustc-web", "rust-web-src", "cargo-web", "llvm-22-dev", "libpolly-22-dev", "libzstd-dev",
    "zlib1g-dev", "libxml2-dev",
];
/// Used by the build (protoc generates etcd-client's gRPC code) and the
/// network-namespace tests (etcd: the fleet tests' shared store).
/// `systemd` and `prometheus` give `systemd-analyze` and `promtool`, which check the
/// packaged unit and the alert rules; `frr` runs README's FRR recipes (its own service
/// is stopped: the tests start its daemons in their namespaces); `chromium` and
/// `chromium-driver` run the console's browser tests (WebDriver), with a CJK font for
/// its Chinese screens.
const APT_TEST_TOOLS: &[&str] = &[
    "iproute2", "ethtool", "iputils-ping", "protobuf-compiler", "etcd-server", "etcd-client", "bird2", "dnsutils", "curl", "iperf3",
    "systemd", "prometheus", "frr", "chromium", "chromium-driver", "fonts-wqy-microhei",
];
/// What `bench` compares against (part 3): nftables, HAProxy, iperf3, wrk, nginx.
const APT_BENCH_TOOLS: &[(&str, &str)] = &[
    ("nft", "nftables"),
    ("haproxy", "haproxy"),
    ("iperf3", "iperf3"),
    ("wrk", "wrk"),
    ("nginx", "nginx-light"),
];

fn has_rust_src(sysroot: &str) -> bool {
    Path::new(sysroot).join("lib/rustlib/src/rust/library/core/src/lib.rs").is_file()
}

fn find_toolchain() -> Option<Toolchain> {
    // A rustup nightly with rust-src: the normal case on a developer's machine.
    if let Some(sysroot) = output(Command::new("rustup").args(["run", "nightly", "rustc", "--print", "sysroot"])) {
        if has_rust_src(&sysroot) {
            return Some(Toolchain {
                cargo: "cargo".into(),
                rustc: None,
                rustup_nightly: true,
                describe: "rustup nightly (rust-src present)".into(),
            });
        }
    }
    // Debian's rustc-web with rust-web-src.
    if let Some(sysroot) = output(Command::new(DEBIAN_RUSTC).args(["--print", "sysroot"])) {
        if has_rust_src(&sysroot) && Path::new(DEBIAN_CARGO).is_file() {
            let version = output(Command::new(DEBIAN_RUSTC).arg("--version")).unwrap_or_default();
            return Some(Toolchain {
                cargo: DEBIAN_CARGO.into(),
                rustc: Some(DEBIAN_RUSTC.into()),
                rustup_nightly: false,
                describe: format!("{version} from Debian with RUSTC_BOOTSTRAP=1"),
            });
        }
    }
    None
}

fn apt_missing(pkgs: &[&str]) -> Vec<String> {
    pkgs.iter()
        .filter(|p| {
            let st = output(Command::new("dpkg-query").args(["-W", "-f=${Status}", p])).unwrap_or_default();
            !st.contains("install ok installed")
        })
        .map(|p| p.to_string())
        .collect()
}

/// Packages of the binaries not on PATH.
fn apt_missing_bins(bins: &[(&str, &str)]) -> Vec<String> {
    bins.iter()
        .filter(|(bin, _)| !succeeds(Command::new("sh").args(["-c", &format!("command -v {bin}")])))
        .map(|(_, pkg)| pkg.to_string())
        .collect()
}

fn apt_install(pkgs: &[String]) -> Result<()> {
    if pkgs.is_empty() {
        return Ok(());
    }
    println!("xtask setup: installing {}", pkgs.join(" "));
    run(Command::new("apt-get").arg("update").arg("-q"))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(pkgs)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

fn bpf_linker_path() -> Option<PathBuf> {
    if succeeds(Command::new("bpf-linker").arg("--version")) {
        return Some("bpf-linker".into());
    }
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))?;
    let p = home.join("bin/bpf-linker");
    succeeds(Command::new(&p).arg("--version")).then_some(p)
}

fn setup() -> Result<Toolchain> {
    let has_apt = Path::new("/usr/bin/apt-get").exists();
    let mut missing = apt_missing(APT_TEST_TOOLS);
    let tc = find_toolchain();
    if tc.as_ref().is_none_or(|t| !t.rustup_nightly) || bpf_linker_path().is_none() {
        // The Debian toolchain doubles as the LLVM that bpf-linker links against.
        missing.extend(apt_missing(APT_TOOLCHAIN));
    }
    if !missing.is_empty() {
        if !has_apt {
            bail!(
                "missing {}: install them, or a rustup nightly with rust-src plus bpf-linker",
                missing.join(" ")
            );
        }
        apt_install(&missing)?;
        if missing.iter().any(|p| p == "frr") {
            // The package starts FRR on the host where systemd runs: the tests start
            // its daemons themselves, in their namespaces, and need none here.
            let _stopped = succeeds(Command::new("systemctl").args(["disable", "--now", "frr"]));
        }
    }
    let tc = find_toolchain().context(
        "no toolchain can build the eBPF object: need a rustup nightly with rust-src \
         (`rustup component add rust-src --toolchain nightly`) or Debian's rustc-web + rust-web-src",
    )?;
    if !succeeds(Command::new(cargo()).args(["deb", "--version"])) {
        println!("xtask setup: installing cargo-deb (about a minute)");
        run(Command::new(cargo()).args(["install", "cargo-deb", "--locked", "--version", "^3"]))?;
    }
    if bpf_linker_path().is_none() {
        println!("xtask setup: installing bpf-linker (about 2 minutes)");
        let path = format!("{LLVM_BIN}:{}", std::env::var("PATH").unwrap_or_default());
        run(Command::new(cargo())
            .args(["install", "bpf-linker", "--version", "^0.13", "--no-default-features", "--features", "llvm-22"])
            .env("PATH", path))?;
    }
    Ok(tc)
}

/// The product's XDP object (embedded in the binary).
const EBPF_PRODUCT: &[&str] = &["privatelink"];
/// The product's and the benchmarks' (R1 forwarder, traffic generator).
const EBPF_BENCH: &[&str] = &["privatelink", "privatelink-bench"];

fn build_ebpf(root: &Path, tc: &Toolchain, objects: &[&str]) -> Result<()> {
    println!("xtask: building the XDP object(s) {} with {}", objects.join(", "), tc.describe);
    let mut c = Command::new(&tc.cargo);
    if tc.rustup_nightly {
        c.arg("+nightly");
    }
    c.current_dir(root.join("privatelink-ebpf"))
        .args(["build", "--release", "-Z", "build-std=core", "--target", "bpfel-unknown-none"])
        .args(["-p", "privatelink-ebpf", "--ignore-rust-version"])
        .args(objects.iter().flat_map(|o| ["--bin", o]))
        .env("CARGO_TARGET_DIR", root.join("target/ebpf"))
        // v3: 32-bit jumps and atomic fetch-and-add (the connection limit needs the
        // returned old value).
        .env("RUSTFLAGS", "-C target-cpu=v3")
        .env_remove("RUSTC")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("CARGO");
    if let Some(rustc) = &tc.rustc {
        c.env("RUSTC", rustc).env("RUSTC_BOOTSTRAP", "1");
    }
    if let Some(linker) = bpf_linker_path() {
        if let Some(dir) = linker.parent().filter(|d| !d.as_os_str().is_empty()) {
            let path = format!("{}:{}", dir.display(), std::env::var("PATH").unwrap_or_default());
            c.env("PATH", path);
        }
    }
    run(&mut c)
}
