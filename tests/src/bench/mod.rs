//! `cargo xtask bench`: measurements, never pass/fail tests. Each part returns rows;
//! `report` prints them and writes BENCHMARKS.md. Nothing here asserts a speed.

pub mod control;
pub mod e2e;
pub mod failover;
pub mod fleet;
pub mod object;
pub mod report;
pub mod console;
pub mod tenant;
pub mod testrun;

/// One measured quantity: the median over trials, with the trials' min and max.
#[derive(Clone, Debug)]
pub struct Row {
    pub part: &'static str,
    pub name: String,
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub unit: &'static str,
    /// Ratio or remark, already formatted.
    pub note: String,
}

impl Row {
    pub fn new(part: &'static str, name: impl Into<String>, trials: &[f64], unit: &'static str) -> Row {
        let (median, min, max) = summary(trials);
        Row { part, name: name.into(), median, min, max, unit, note: String::new() }
    }

    pub fn note(mut self, n: impl Into<String>) -> Row {
        self.note = n.into();
        self
    }
}

/// (median, min, max) of `v` (NaN for an empty slice).
pub fn summary(v: &[f64]) -> (f64, f64, f64) {
    if v.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let median = if s.len() % 2 == 1 { s[s.len() / 2] } else { (s[s.len() / 2 - 1] + s[s.len() / 2]) / 2.0 };
    (median, s[0], s[s.len() - 1])
}

/// How much to measure.
#[derive(Clone, Copy, Debug)]
pub struct Effort {
    /// Trials per measurement (each gives one median).
    pub trials: usize,
    /// Test runs per trial (part 1).
    pub runs: usize,
    pub quick: bool,
}

impl Effort {
    pub fn new(quick: bool) -> Effort {
        if quick {
            Effort { trials: 3, runs: 300, quick }
        } else {
            Effort { trials: 7, runs: 5000, quick }
        }
    }
}
