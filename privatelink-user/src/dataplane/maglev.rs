//! Maglev consistent hashing (Eisenbud et al., NSDI 2016, section 3.4) with weights:
//! the per-service lookup table the data path indexes with the flow hash. A backend
//! change moves few flows; weights share out slots in proportion. Pure: no maps here.

use privatelink_common::{hash::mix32, BACKEND_NONE, MAGLEV_SIZE};

/// A backend as the table sees it: its global index, a stable identity (its address)
/// that fixes its permutation, and its weight (0 takes no slot).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Member {
    pub index: u32,
    pub id: u32,
    pub weight: u32,
}

/// Build the table: `MAGLEV_SIZE` slots of backend indices; all `BACKEND_NONE` when no
/// member has a weight.
pub fn table(members: &[Member]) -> Vec<u32> {
    let m = MAGLEV_SIZE as u64;
    let mut table = vec![BACKEND_NONE; MAGLEV_SIZE as usize];
    let mut live: Vec<&Member> = members.iter().filter(|b| b.weight > 0).collect();
    // The table depends on the set of members, not on the order they are listed in.
    live.sort_by_key(|b| (b.id, b.index));
    let Some(max_weight) = live.iter().map(|b| b.weight as u64).max() else {
        return table;
    };
    let offset: Vec<u64> = live.iter().map(|b| mix32(b.id ^ 0x5bd1_e995) as u64 % m).collect();
    let skip: Vec<u64> = live.iter().map(|b| mix32(b.id ^ 0x27d4_eb2f) as u64 % (m - 1) + 1).collect();
    let mut next = vec![0u64; live.len()];
    let mut credit = vec![0u64; live.len()];
    let mut filled = 0usize;
    // Each round a member earns its weight; it takes a slot per `max_weight` earned.
    while filled < table.len() {
        for i in 0..live.len() {
            credit[i] += live[i].weight as u64;
            if credit[i] < max_weight {
                continue;
            }
            credit[i] -= max_weight;
            loop {
                let c = ((offset[i] + next[i] * skip[i]) % m) as usize;
                next[i] += 1;
                if table[c] == BACKEND_NONE {
                    table[c] = live[i].index;
                    filled += 1;
                    break;
                }
            }
            if filled == table.len() {
                break;
            }
        }
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(index: u32, weight: u32) -> Member {
        Member { index, id: 0x0a00_0000 + index * 7, weight }
    }

    fn share(t: &[u32], index: u32) -> usize {
        t.iter().filter(|&&b| b == index).count()
    }

    #[test]
    fn empty_or_all_zero_weight_means_no_backend() {
        assert!(table(&[]).iter().all(|&b| b == BACKEND_NONE));
        assert!(table(&[member(1, 0), member(2, 0)]).iter().all(|&b| b == BACKEND_NONE));
    }

    #[test]
    fn equal_weights_share_evenly_and_fill_every_slot() {
        let t = table(&[member(1, 100), member(2, 100), member(3, 100)]);
        assert_eq!(t.len(), MAGLEV_SIZE as usize);
        for i in 1..=3 {
            let s = share(&t, i);
            assert!((330..=350).contains(&s), "backend {i} got {s} slots");
        }
    }

    #[test]
    fn weights_share_in_proportion_and_zero_takes_nothing() {
        let t = table(&[member(1, 100), member(2, 50), member(3, 0)]);
        let (a, b) = (share(&t, 1), share(&t, 2));
        assert_eq!(share(&t, 3), 0);
        assert_eq!(a + b, MAGLEV_SIZE as usize);
        assert!((660..=700).contains(&a), "weight 100 got {a}");
    }

    #[test]
    fn removing_a_backend_moves_few_other_slots() {
        let before = table(&[member(1, 100), member(2, 100), member(3, 100), member(4, 100)]);
        let after = table(&[member(1, 100), member(2, 100), member(4, 100)]);
        let moved = before
            .iter()
            .zip(&after)
            .filter(|(b, a)| **b != 3 && b != a)
            .count();
        // Slots of surviving backends should mostly stay put (paper: a few percent).
        assert!(moved < MAGLEV_SIZE as usize / 10, "{moved} slots of surviving backends moved");
        assert!(after.iter().all(|&b| b != 3));
    }

    #[test]
    fn same_members_same_table_whatever_the_order() {
        let a = table(&[member(1, 100), member(2, 100)]);
        let b = table(&[member(2, 100), member(1, 100)]);
        assert_eq!(a, b);
    }
}
