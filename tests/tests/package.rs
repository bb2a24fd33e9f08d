//! The Debian package `cargo xtask package` builds (`cargo xtask test` builds it with
//! `--dev --out target/package-test` first): what it holds, its systemd unit as
//! `systemd-analyze verify` sees it, the installed binary loading the data path with the
//! unit's capabilities only, and a gateway run by a daemon holding no others.

use privatelink_tests::{daemon_lab::*, lab::*};
use std::{
    path::{Path, PathBuf},
    process::Command,
};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The newest .deb of target/package-test.
fn deb() -> PathBuf {
    let dir = root().join("target/package-test");
    std::fs::read_dir(&dir)
        .ok()
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "deb"))
        .max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok())
        .unwrap_or_else(|| panic!("no package in {}: `cargo xtask test` builds it (or `cargo xtask package --dev --out target/package-test`)", dir.display()))
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {}\n{}", String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The package unpacked into a directory removed on drop.
struct Unpacked(PathBuf);

impl Unpacked {
    fn new() -> Unpacked {
        // One directory per call: the tests run in parallel.
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("pltest{}-deb-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        run(Command::new("dpkg-deb").arg("-x").arg(deb()).arg(&dir));
        Unpacked(dir)
    }
}

impl Drop for Unpacked {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The unit's `CapabilityBoundingSet`, as setpriv spells it (`+bpf,+perfmon`).
fn unit_capabilities(unit: &str) -> Vec<String> {
    let line = unit.lines().find_map(|l| l.strip_prefix("CapabilityBoundingSet=")).expect("the unit bounds its capabilities");
    line.split_whitespace().map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase())).collect()
}

#[test]
fn the_package_holds_the_binary_its_unit_an_example_spec_completions_and_man_pages() {
    let listing = run(Command::new("dpkg-deb").arg("-c").arg(deb()));
    let has = |mode: &str, path: &str| listing.lines().any(|l| l.starts_with(mode) && l.ends_with(path));
    assert!(has("-rwxr-xr-x", " ./usr/bin/privatelink"), "{listing}");
    for path in [
        "/systemd/system/privatelink.service",
        " ./etc/privatelink/spec.example.yaml",
        " ./usr/share/bash-completion/completions/privatelink",
        " ./usr/share/zsh/vendor-completions/_privatelink",
        " ./usr/share/fish/vendor_completions.d/privatelink.fish",
        " ./usr/share/man/man1/privatelink.1.gz",
        " ./usr/share/doc/privatelink/prometheus/alerts.yaml",
        " ./usr/share/doc/privatelink/grafana/privatelink.json",
        " ./usr/share/doc/privatelink/output-schema.json",
        " ./usr/share/doc/privatelink/docs/reference.md",
    ] {
        assert!(has("-rw-r--r--", path), "{path} missing:\n{listing}");
    }
    // A man page for every verb a user types.
    for verb in ["daemon", "apply", "get", "describe", "accept", "reject", "delete", "stats", "conntrack", "whois", "status", "events", "down", "check", "lab", "completion"] {
        assert!(has("-rw-r--r--", &format!("/man1/privatelink-{verb}.1.gz")), "no man page for {verb}:\n{listing}");
    }
    let info = run(Command::new("dpkg-deb").arg("-I").arg(deb()));
    assert!(info.contains("Package: privatelink\n"), "{info}");
    assert!(info.contains(&format!("Version: {}-1\n", env!("CARGO_PKG_VERSION"))), "{info}");
    assert!(info.contains("Depends:") && info.contains("libc6"), "{info}");
    assert_eq!(run(Command::new("dpkg-deb").arg("-f").arg(deb()).arg("Package")).trim(), "privatelink");
    let control = std::env::temp_dir().join(format!("pltest{}-deb-control", std::process::id()));
    run(Command::new("dpkg-deb").arg("-e").arg(deb()).arg(&control));
    let conf = std::fs::read_to_string(control.join("conffiles")).unwrap_or_default();
    let postinst = std::fs::read_to_string(control.join("postinst")).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&control);
    assert_eq!(conf.trim(), "/etc/privatelink/spec.example.yaml", "an edited example survives upgrades");
    assert!(postinst.contains("systemctl") && postinst.contains("daemon-reload"), "the unit is made known to systemd:\n{postinst}");

    let u = Unpacked::new();
    // The packaged pages render, with the verb's examples.
    let page = run(Command::new("man").arg("-l").arg(u.0.join("usr/share/man/man1/privatelink-apply.1.gz")).env("MANWIDTH", "200"));
    assert!(page.contains("privatelink apply -f /etc/privatelink/spec.yaml --dry-run"), "{page}");
    // bash loads the packaged completion and binds it to the command.
    let bound = run(Command::new("bash").arg("-c").arg(format!("source {}; complete -p privatelink", u.0.join("usr/share/bash-completion/completions/privatelink").display())));
    assert!(bound.contains("-F _privatelink") && bound.trim_end().ends_with(" privatelink"), "{bound}");
    // The example spec is one of the repository's, as shipped.
    let example = std::fs::read_to_string(u.0.join("etc/privatelink/spec.example.yaml")).unwrap();
    assert_eq!(example, std::fs::read_to_string(root().join("examples/quickstart.yaml")).unwrap());
}

#[test]
fn the_unit_verifies_and_the_installed_binary_loads_the_data_path_with_its_capabilities_only() {
    let u = Unpacked::new();
    let unit_path = ["usr/lib/systemd/system/privatelink.service", "lib/systemd/system/privatelink.service"]
        .map(|p| u.0.join(p))
        .into_iter()
        .find(|p| p.exists())
        .expect("the unit is in the package");
    let unit = std::fs::read_to_string(&unit_path).unwrap();
    assert_eq!(unit, std::fs::read_to_string(root().join("deploy/systemd/privatelink.service")).unwrap());
    assert!(unit.contains("\nRestart=on-failure\n"), "{unit}");
    // systemd-analyze checks ExecStart's binary exists: point it at the unpacked one.
    let bin = u.0.join("usr/bin/privatelink");
    let dir = u.0.join("verify");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("privatelink.service"), unit.replace("/usr/bin/privatelink", path_str(&bin))).unwrap();
    let v = Command::new("systemd-analyze").args(["verify", "--man=no"]).arg(dir.join("privatelink.service")).output().unwrap();
    let said = String::from_utf8_lossy(&v.stderr);
    // Unknown keys and bad values are only warnings to systemd: any word is a failure.
    assert!(v.status.success() && said.trim().is_empty(), "systemd-analyze verify: {said}");
    let caps = unit_capabilities(&unit);
    assert!(!caps.iter().any(|c| c == "+sys_admin"), "the unit should not need CAP_SYS_ADMIN: {caps:?}");

    let with = |caps: &[String]| {
        Command::new("setpriv")
            .arg("--inh-caps=-all")
            .arg(format!("--bounding-set=-all,{}", caps.join(",")))
            .arg("--")
            .arg(&bin)
            .arg("check")
            .output()
            .unwrap()
    };
    let ok = with(&caps);
    assert!(ok.status.success(), "privatelink check with {caps:?}: {}", String::from_utf8_lossy(&ok.stderr));
    assert!(String::from_utf8_lossy(&ok.stdout).contains("verified by the kernel"), "{}", String::from_utf8_lossy(&ok.stdout));
    // The bound is real: without CAP_BPF the same check fails.
    let fewer: Vec<String> = caps.iter().filter(|c| *c != "+bpf").cloned().collect();
    let refused = with(&fewer);
    assert!(!refused.status.success(), "check passed without CAP_BPF: the test proves nothing");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("Operation not permitted"), "{}", String::from_utf8_lossy(&refused.stderr));
}

/// The effective capability mask of `pid`.
fn cap_eff(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:")).unwrap().trim();
    u64::from_str_radix(hex, 16).unwrap()
}

#[test]
fn a_daemon_holding_only_the_units_capabilities_runs_the_gateway() {
    let unit = std::fs::read_to_string(root().join("deploy/systemd/privatelink.service")).unwrap();
    let caps = unit_capabilities(&unit);
    let bounding = format!("--bounding-set=-all,{}", caps.join(","));
    let lab = DaemonLab::with_wrapper(1, &[], &["setpriv", "--inh-caps=-all", &bounding, "--"]);
    // CAP_NET_ADMIN (12), CAP_PERFMON (38), CAP_BPF (39): nothing else.
    assert_eq!(cap_eff(lab.daemon_pid()), 1 << 12 | 1 << 38 | 1 << 39, "{caps:?}");
    let spec = spec(1, &service("web", "100001", &[]), &endpoint("web-from-vpc1", "100001", 0, "web"));
    let r = lab.apply(&spec, &[]);
    assert_eq!(r.code, 0, "{r:#?}\n{}", lab.log());
    let body = lab.in_client(0, || http_get(std::net::SocketAddr::from((ENDPOINT, ENDPOINT_TCP_PORT)))).expect("HTTP through the gateway");
    assert!(body.starts_with("backend=backend-"), "{body}");
    let status = lab.json(&["status"]);
    assert_eq!(status["interfaces"].as_array().map(Vec::len), Some(2), "{status:#}");
}
