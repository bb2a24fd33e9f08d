//! The reconciler: reads what the live maps hold, diffs it against what the state
//! calls for (`tables`), and writes only the difference, in `tables::diff`'s safe
//! order; `step` writes the difference between two wanted sets when the first is known
//! to be in the maps. Decides nothing itself.

use super::{
    error::Result,
    maps::Maps,
    tables::{self, Tables},
};

/// What the live maps hold (one read per table).
pub use super::tables::observe;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Report {
    /// Table operations carried out.
    pub ops: usize,
    /// Map elements written or deleted (Maglev slots counted one by one).
    pub writes: usize,
}

/// Bring the live maps to `want`. A failed write stops the run: the maps then hold a
/// prefix of the ordered writes, which is safe, and the next reconcile finishes it.
pub fn reconcile(maps: &mut Maps, want: &Tables) -> Result<Report> {
    let have = tables::observe(maps)?;
    step(maps, want, &have)
}

/// Write what turns `have` (known to be what the maps hold: the last `want` written in
/// full) into `want`, without reading the maps back.
pub fn step(maps: &mut Maps, want: &Tables, have: &Tables) -> Result<Report> {
    let ops = tables::diff(want, have);
    let mut report = Report { ops: ops.len(), writes: 0 };
    for op in &ops {
        report.writes += op.write(maps)?;
    }
    Ok(report)
}
