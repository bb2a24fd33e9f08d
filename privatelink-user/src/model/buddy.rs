//! Each node's buddy: the node that would receive its flows and take its SNAT slice
//! over when it dies. Chosen by rendezvous (highest random weight) hashing over the
//! nodes recorded up: every node computes the same pairing from the recorded state,
//! and a node coming or going changes only the pairings it wins or held (about 1/N of
//! them), never reshuffles the rest. Pure; the hash is fixed here, the same on every
//! node and version (a changed hash would re-pair a whole fleet during an upgrade).

use super::state::State;
use std::collections::BTreeMap;

/// The weight of `candidate` as `node`'s buddy: FNV-1a 64 over both names (a 0 byte
/// between), then SplitMix64's finalizer so that names differing in one character
/// spread over the whole range.
pub fn weight(node: &str, candidate: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in node.bytes().chain([0u8]).chain(candidate.bytes()) {
        h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// The buddy of `node` (up or not) among the nodes recorded up other than itself; None
/// when it is alone. Ties (never seen in practice) go to the smaller name.
pub fn buddy_of(st: &State, node: &str) -> Option<String> {
    st.nodes
        .iter()
        .filter(|(name, r)| r.up && name.as_str() != node)
        .max_by(|(a, _), (b, _)| weight(node, a).cmp(&weight(node, b)).then_with(|| b.cmp(a)))
        .map(|(name, _)| name.clone())
}

/// The nodes whose flows and SNAT slices `me` takes over: recorded down (a restarting
/// node is kept up within its grace, so down means gone) with `me` as their buddy.
pub fn taken_over_by(st: &State, me: &str) -> Vec<String> {
    st.nodes.iter().filter(|(name, r)| !r.up && name.as_str() != me && buddy_of(st, name).as_deref() == Some(me)).map(|(n, _)| n.clone()).collect()
}

/// Every recorded node's buddy.
pub fn buddies(st: &State) -> BTreeMap<String, Option<String>> {
    st.nodes.keys().map(|n| (n.clone(), buddy_of(st, n))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::slices::NodeRecord;

    fn fleet(up: &[&str], down: &[&str]) -> State {
        let mut st = State::default();
        for (k, (name, up)) in up.iter().map(|n| (n, true)).chain(down.iter().map(|n| (n, false))).enumerate() {
            st.nodes.insert(name.to_string(), NodeRecord { slice: k as u32, zone: None, up, since_ms: 0, restarting_until_ms: None });
        }
        st
    }

    #[test]
    fn a_buddy_is_another_node_that_is_up() {
        assert_eq!(buddy_of(&fleet(&["gw1"], &[]), "gw1"), None, "alone: none");
        assert_eq!(buddy_of(&fleet(&["gw1", "gw2"], &[]), "gw1").as_deref(), Some("gw2"));
        assert_eq!(buddy_of(&fleet(&["gw1"], &["gw2"]), "gw1"), None, "a down node is nobody's buddy");
        // A down node still has one: who holds its flows.
        assert_eq!(buddy_of(&fleet(&["gw1"], &["gw2"]), "gw2").as_deref(), Some("gw1"));
        let st = fleet(&["gw1", "gw2", "gw3", "gw4"], &["gw5"]);
        for (node, buddy) in buddies(&st) {
            let b = buddy.expect("four nodes up");
            assert!(b != node && st.nodes[&b].up, "{node} -> {b}");
        }
        // The hash is part of the wire: fixed values.
        assert_eq!(weight("gw1", "gw2"), weight("gw1", "gw2"));
        assert_ne!(weight("gw1", "gw2"), weight("gw2", "gw1"));
        // (Computed apart, in Python, from the definition above.)
        assert_eq!(weight("", ""), 0x25fc_6dd3_6ce0_4b20, "weight changed: every fleet would re-pair during an upgrade");
        assert_eq!(weight("gw1", "gw2"), 0x4c7a_47cf_5ad5_11cb);
    }

    #[test]
    fn a_dead_nodes_buddy_takes_it_over_and_nobody_else() {
        let up = fleet(&["gw1", "gw2", "gw3"], &[]);
        for n in ["gw1", "gw2", "gw3"] {
            assert!(taken_over_by(&up, n).is_empty(), "nobody is down");
        }
        let names = ["gw1", "gw2", "gw3"];
        for gone in names {
            let rest: Vec<&str> = names.iter().copied().filter(|n| *n != gone).collect();
            let st = fleet(&rest, &[gone]);
            // Its buddy before it died takes it over: the flows it holds are that node's.
            let holder = buddy_of(&up, gone).unwrap();
            for n in &rest {
                assert_eq!(taken_over_by(&st, n), if *n == holder { vec![gone.to_string()] } else { vec![] }, "{gone} died; {n}");
            }
        }
    }

    /// Rendezvous' promise, over fleets of 2-12 nodes: a node leaving re-pairs only the
    /// nodes it was buddy of; a node joining re-pairs nodes only to itself.
    #[test]
    fn a_node_coming_or_going_re_pairs_only_what_it_wins_or_held() {
        let (mut checked, mut moved) = (0, 0);
        for n in 2..=12usize {
            let names: Vec<String> = (1..=n).map(|k| format!("node-{k}.zone-{}", k % 3)).collect();
            let all: Vec<&str> = names.iter().map(String::as_str).collect();
            let before = buddies(&fleet(&all, &[]));
            for gone in &all {
                let rest: Vec<&str> = all.iter().copied().filter(|x| x != gone).collect();
                let after = buddies(&fleet(&rest, &[gone]));
                for node in &rest {
                    checked += 1;
                    if before[*node].as_deref() == Some(*gone) {
                        moved += 1;
                    } else {
                        assert_eq!(before[*node], after[*node], "{gone} left and {node} changed buddy");
                    }
                }
                // Joining is the same change read backwards.
                for node in &rest {
                    if before[*node] != after[*node] {
                        assert_eq!(before[*node].as_deref(), Some(*gone), "{gone} joined and {node} moved to another node");
                    }
                }
            }
        }
        eprintln!("{checked} pairings checked, {moved} re-paired (each to a new buddy because theirs left)");
        assert!(moved > 0 && moved < checked / 2, "{moved} of {checked}");
    }
}
