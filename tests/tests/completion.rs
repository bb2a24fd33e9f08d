//! `privatelink completion SHELL`: a script each shell accepts, naming every verb, and
//! printed for any user (it needs no root and no daemon); every verb's `--help` ends
//! with examples.

use privatelink_tests::daemon_lab::{path_str, privatelink_bin};
use std::process::Command;

/// The script for `shell`, generated as an unprivileged user (nobody), from a copy of
/// the binary nobody may run wherever the checkout lives.
fn script(shell: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("pltest{}-completion-{shell}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = dir.join("privatelink");
    std::fs::copy(privatelink_bin(), &bin).expect("copy the binary");
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", path_str(&bin), "completion", shell])
        .output()
        .expect("run setpriv");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(out.status.success(), "{shell}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("UTF-8")
}

#[test]
fn every_shell_gets_a_script_naming_every_verb() {
    let verbs = ["daemon", "apply", "get", "describe", "accept", "reject", "delete", "stats", "conntrack", "whois", "status", "events", "down", "check", "lab", "completion"];
    let bash = script("bash");
    // bash parses it without running it.
    let mut check = Command::new("bash").args(["-n"]).stdin(std::process::Stdio::piped()).spawn().expect("bash");
    std::io::Write::write_all(check.stdin.as_mut().unwrap(), bash.as_bytes()).unwrap();
    assert!(check.wait().unwrap().success(), "bash -n refused the script");
    assert!(bash.contains("complete -F _privatelink"), "{bash}");
    let zsh = script("zsh");
    assert!(zsh.starts_with("#compdef privatelink"), "{zsh}");
    let fish = script("fish");
    for v in verbs {
        assert!(bash.contains(v) && zsh.contains(v), "{v} missing");
        assert!(fish.contains(&format!("-a \"{v}\"")), "{v} missing from fish:\n{fish}");
    }
    // An unknown shell is a clear error, not a script.
    let bad = Command::new(privatelink_bin()).args(["completion", "tcsh"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("invalid value 'tcsh'"), "{}", String::from_utf8_lossy(&bad.stderr));
}

#[test]
fn every_verb_has_examples_in_its_help() {
    let verbs = ["daemon", "apply", "get", "describe", "accept", "reject", "delete", "stats", "conntrack", "whois", "status", "events", "down", "check", "lab", "completion"];
    for v in verbs {
        let out = Command::new(privatelink_bin()).args([v, "--help"]).output().unwrap();
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{v} --help: {}", String::from_utf8_lossy(&out.stderr));
        let examples = help.split_once("\nExamples:\n").map(|(_, e)| e).unwrap_or_else(|| panic!("{v} --help has no examples:\n{help}"));
        let first = examples.lines().next().unwrap_or_default().trim();
        // An example runs the verb it documents (possibly after a pipe or `&&`).
        assert!(first.contains("privatelink ") || first.starts_with("systemctl"), "{v}: {first}");
        assert!(examples.lines().any(|l| l.contains(&format!("privatelink {v}"))), "{v}: no example of it:\n{examples}");
    }
}
