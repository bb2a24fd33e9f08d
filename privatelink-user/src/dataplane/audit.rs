//! The accounting audit: what the data path's counters say each endpoint and consumer
//! VPC holds (`PL_EP_USE`: open slots, half-open places, flows; `PL_VPC_FLOWS`), against
//! what the conntrack table holds, counted by the sweeper's pass. The counters move by
//! atomic adds and every path gives back what it took, so they should never drift; the
//! audit is the evidence, and the repair should a path ever leak.
//!
//! The table is read a batch at a time while the data path runs, so a busy endpoint's
//! counter and its count in the pass differ for an instant. A counter is repaired only
//! when it is wrong by the same amount in two passes in a row and did not move during
//! either pass: a leak on an idle endpoint is found within two passes, a busy one's when
//! it pauses, and a flow opened mid-pass is never "repaired" away. A repair is an atomic
//! add of the difference, as the data path's own changes are.

use super::sys::Counters;
use privatelink_common::*;
use std::collections::HashMap;

/// Counters audited per endpoint, with their byte offsets in `EpUse`.
const EP_FIELDS: [usize; 3] = [EP_USE_OPEN, EP_USE_HALF_OPEN, EP_USE_FLOWS];
/// Every audited counter, as one index: endpoint e's field f at `e * 3 + f`, then one
/// per consumer VPC, then the whole table's (`TABLE_FLOWS`).
const EP_COUNTERS: usize = MAX_ENDPOINTS as usize * EP_FIELDS.len();
const ALL: usize = EP_COUNTERS + TABLE_FLOWS as usize + 1;

/// What a pass found in the table, by counter index.
pub struct Tally(Vec<u64>);

impl Default for Tally {
    fn default() -> Self {
        Tally(vec![0; ALL])
    }
}

impl Tally {
    /// Count a forward entry.
    pub fn count(&mut self, key: &CtKey, v: &CtValue) {
        let mut bump = |i: usize| {
            if let Some(c) = self.0.get_mut(i) {
                *c += 1;
            }
        };
        let ep = v.endpoint as usize;
        if ep < MAX_ENDPOINTS as usize {
            if v.flags & CT_FLAG_RELEASED == 0 {
                bump(ep * 3);
            }
            if v.holds & CT_HOLDS_HALF_OPEN != 0 {
                bump(ep * 3 + 1);
            }
            bump(ep * 3 + 2);
        }
        if (key.vpc_id as u32) < MAX_VPCS {
            bump(EP_COUNTERS + key.vpc_id as usize);
        }
        bump(EP_COUNTERS + TABLE_FLOWS as usize);
    }
}

/// The counters, writable, and the differences seen at the last pass.
pub struct Audit {
    ep_use: Counters,
    vpc_flows: Counters,
    /// Counter index -> (counter - table) at the last pass, for counters that differed.
    suspects: HashMap<usize, i64>,
}

/// A repair the audit made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Repair {
    /// The endpoint (`None`: a VPC's flow count, `vpc` set, or the table's, neither).
    pub endpoint: Option<u32>,
    pub vpc: Option<u16>,
    /// "open", "half_open", "flows".
    pub counter: &'static str,
    pub was: u64,
    pub now: u64,
}

impl Audit {
    pub fn new(ep_use: Counters, vpc_flows: Counters) -> Audit {
        Audit { ep_use, vpc_flows, suspects: HashMap::new() }
    }

    fn place(&self, i: usize) -> (&Counters, usize) {
        if i < EP_COUNTERS {
            (&self.ep_use, (i / 3) * std::mem::size_of::<EpUse>() + EP_FIELDS[i % 3])
        } else {
            (&self.vpc_flows, (i - EP_COUNTERS) * 8)
        }
    }

    /// Every audited counter now (taken before and after a pass), by counter index:
    /// the two arrays copied whole, then picked out.
    pub fn snapshot(&self) -> Vec<u64> {
        const EP_WORDS: usize = std::mem::size_of::<EpUse>() / 8;
        let eps = self.ep_use.copy(MAX_ENDPOINTS as usize * EP_WORDS);
        let vpcs = self.vpc_flows.copy(TABLE_FLOWS as usize + 1);
        let mut out = Vec::with_capacity(ALL);
        for e in 0..MAX_ENDPOINTS as usize {
            for at in EP_FIELDS {
                out.push(eps[e * EP_WORDS + at / 8]);
            }
        }
        out.extend(vpcs);
        out
    }

    /// Compare the counters with the pass's `tally`, given the snapshot taken when the
    /// pass began; repair what has been wrong by the same amount twice running.
    pub fn check(&mut self, before: &[u64], tally: &Tally) -> Vec<Repair> {
        let after = self.snapshot();
        let mut suspects = HashMap::new();
        let mut repairs = Vec::new();
        for i in 0..ALL {
            if before.get(i) != Some(&after[i]) {
                continue;
            }
            let diff = after[i].wrapping_sub(tally.0[i]) as i64;
            if diff == 0 {
                continue;
            }
            if self.suspects.get(&i) == Some(&diff) {
                let (c, at) = self.place(i);
                c.add(at, -diff);
                let (endpoint, vpc, counter) = if i < EP_COUNTERS {
                    (Some((i / 3) as u32), None, ["open", "half_open", "flows"][i % 3])
                } else {
                    let v = (i - EP_COUNTERS) as u32;
                    (None, (v < TABLE_FLOWS).then_some(v as u16), "flows")
                };
                repairs.push(Repair { endpoint, vpc, counter, was: after[i], now: tally.0[i] });
            } else {
                suspects.insert(i, diff);
            }
        }
        self.suspects = suspects;
        repairs
    }
}
