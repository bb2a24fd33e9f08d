//! How part 1 times a program: repeat=1 runs of BPF_PROG_TEST_RUN, trial medians, and
//! cases whose trials take turns (R1 with every row, a new flow with its floors).

use super::super::{summary, Effort};
use crate::packet_lab::{action_name, xdp_md, XDP_REDIRECT};
use aya::programs::{TestRun, TestRunOptions, Xdp};

/// One repeat=1 run; (return value, kernel-measured ns).
fn once(prog: &Xdp, ifindex: u32, frame: &[u8]) -> (u32, f64) {
    let c = xdp_md(ifindex, frame.len());
    let mut out = vec![0u8; frame.len() + 256];
    let r = prog
        .test_run(TestRunOptions { data_in: Some(frame), data_out: Some(&mut out), ctx_in: Some(&c), ..Default::default() })
        .expect("BPF_PROG_TEST_RUN");
    (r.return_value, r.duration.as_nanos() as f64)
}

/// Trial medians of `runs` runs each; `frame(i)` gives run i's frame.
pub(super) fn measure(prog: &Xdp, ifindex: u32, e: Effort, expect: u32, frame: impl FnMut(usize) -> Vec<u8>) -> Vec<f64> {
    let mut frame = frame;
    measure_together(&mut [Case { prog, ifindex, expect, frames: Frames::Each(&mut frame) }], e).remove(0)
}

/// One program's runs in [`measure_together`].
pub(super) struct Case<'a> {
    pub(super) prog: &'a Xdp,
    pub(super) ifindex: u32,
    pub(super) expect: u32,
    pub(super) frames: Frames<'a>,
}

pub(super) enum Frames<'a> {
    /// The same frame on every run.
    Same(&'a [u8]),
    /// Run i's frame.
    Each(&'a mut dyn FnMut(usize) -> Vec<u8>),
}

impl Case<'_> {
    fn run(&mut self, i: usize) -> (u32, f64) {
        match &mut self.frames {
            Frames::Same(f) => once(self.prog, self.ifindex, f),
            Frames::Each(f) => once(self.prog, self.ifindex, &f(i)),
        }
    }
}

/// Part 1's reference R1, measured in turn with every row: a row's ratio is to the R1
/// trials taken between its own, so that a host's noisy moments move both alike.
pub(super) struct Reference<'a> {
    pub(super) prog: &'a Xdp,
    pub(super) ifindex: u32,
    pub(super) frame: Vec<u8>,
    pub(super) e: Effort,
}

/// A row's trial medians, and R1's median over the same stretch of time.
pub(super) struct Timed {
    pub(super) t: Vec<f64>,
    pub(super) r1: f64,
}

impl Timed {
    pub(super) fn median(&self) -> f64 {
        summary(&self.t).0
    }

    pub(super) fn ratio(&self) -> String {
        format!("{:.2}x R1", self.median() / self.r1)
    }
}

impl Reference<'_> {
    /// R1 as a case of [`measure_together`].
    pub(super) fn case(&self) -> Case<'_> {
        Case { prog: self.prog, ifindex: self.ifindex, expect: XDP_REDIRECT, frames: Frames::Same(&self.frame) }
    }

    /// The cases' trials in turn with R1's (`cases` ends with [`Reference::case`]).
    pub(super) fn measure(&self, cases: &mut [Case]) -> Vec<Timed> {
        let mut m = measure_together(cases, self.e);
        let r1 = summary(&m.pop().expect("R1's trials")).0;
        m.into_iter().map(|t| Timed { t, r1 }).collect()
    }

    /// One program's trials in turn with R1's.
    pub(super) fn one(&self, prog: &Xdp, ifindex: u32, expect: u32, mut frame: impl FnMut(usize) -> Vec<u8>) -> Timed {
        self.measure(&mut [Case { prog, ifindex, expect, frames: Frames::Each(&mut frame) }, self.case()]).remove(0)
    }
}

/// Like [`measure`] for several cases whose trials take turns (case 1's trial 1, case 2's
/// trial 1, ...), so that rows compared with each other see the same moments of a
/// noisy machine. Each case numbers its own frames.
pub(super) fn measure_together(cases: &mut [Case], e: Effort) -> Vec<Vec<f64>> {
    let mut next = vec![0usize; cases.len()];
    for (c, i) in cases.iter_mut().zip(next.iter_mut()) {
        // Warm-up.
        for _ in 0..e.runs.min(200) {
            c.run(*i);
            *i += 1;
        }
    }
    let mut medians = vec![Vec::with_capacity(e.trials); cases.len()];
    for _ in 0..e.trials {
        for ((c, i), m) in cases.iter_mut().zip(next.iter_mut()).zip(medians.iter_mut()) {
            let mut ns: Vec<f64> = (0..e.runs)
                .map(|_| {
                    let (rc, t) = c.run(*i);
                    assert_eq!(rc, c.expect, "benchmark case returned {} instead of {}", action_name(rc), action_name(c.expect));
                    *i += 1;
                    t
                })
                .collect();
            ns.sort_by(|a, b| a.total_cmp(b));
            m.push(ns[ns.len() / 2]);
        }
    }
    medians
}
