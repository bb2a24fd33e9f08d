//! `apply -f FILE [--dry-run]`

use super::{client, output::{self, Format}};
use crate::daemon::api::{ApplyResult, Request};
use anyhow::{Context, Result};
use std::path::Path;

pub fn run(to: &client::Target, file: &Path, dry_run: bool, fmt: Format) -> Result<()> {
    let spec = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let r: ApplyResult = match to.call_as(&Request::Apply { spec, dry_run }) {
        Ok(r) => r,
        Err(e) => {
            // Spec errors point into the file: prefix them with its name.
            if let Some(client::CallError::Spec { error, errors }) = e.downcast_ref::<client::CallError>() {
                for se in errors {
                    eprintln!("{}:{se}", file.display());
                }
                anyhow::bail!("{error}");
            }
            return Err(e);
        }
    };
    if let Some(text) = output::structured(fmt, &r) {
        print!("{text}");
        return Ok(());
    }
    for c in &r.changes {
        println!("{c}");
    }
    match (r.dry_run, r.changes.len()) {
        (true, 0) => println!("dry run: no changes"),
        (true, n) => println!("dry run: {n} change(s) planned, nothing applied"),
        (false, 0) => println!("no changes ({} map writes)", r.reconcile.writes),
        (false, n) => println!("applied {n} change(s) ({} map writes)", r.reconcile.writes),
    }
    Ok(())
}
