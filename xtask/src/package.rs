//! `cargo xtask package`: the binary's own completions and man pages into
//! target/package/, then cargo-deb with privatelink-user's `[package.metadata.deb]`.

use super::{cargo, run};
use anyhow::{Context, Result};
use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

pub fn build(root: &Path, dev: bool, out: Option<PathBuf>) -> Result<()> {
    let (profile, dir) = if dev { ("dev", "debug") } else { ("release", "release") };
    run(Command::new(cargo()).current_dir(root).args(["build", "--profile", profile, "-p", "privatelink-user", "--bin", "privatelink"]))?;
    let bin = root.join("target").join(dir).join("privatelink");
    let staged = root.join("target/package");
    let completions = staged.join("completions");
    let _ = fs::remove_dir_all(&staged);
    fs::create_dir_all(&completions)?;
    // Names as each shell looks them up.
    for (shell, file) in [("bash", "privatelink"), ("zsh", "_privatelink"), ("fish", "privatelink.fish")] {
        let script = Command::new(&bin).args(["completion", shell]).output().context("running privatelink completion")?;
        anyhow::ensure!(script.status.success(), "privatelink completion {shell}: {}", String::from_utf8_lossy(&script.stderr));
        fs::write(completions.join(file), script.stdout)?;
    }
    run(Command::new(&bin).args(["man", "--out"]).arg(staged.join("man")))?;
    let out = out.unwrap_or_else(|| root.join("target/debian"));
    fs::create_dir_all(&out)?;
    run(Command::new(cargo())
        .current_dir(root)
        .args(["deb", "-p", "privatelink-user", "--no-build", "--profile", profile, "--no-dbgsym", "-o"])
        .arg(&out))?;
    let deb = fs::read_dir(&out)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "deb"))
        .max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok())
        .context("cargo deb wrote no .deb")?;
    println!("built {}", deb.display());
    Ok(())
}
