//! An endpoint's security groups compiled into the rule set the data path checks:
//! every rule of every group, in decision order (priority, deny before allow at equal
//! priority, then the spec's order), and the content key it is stored under. Pure.

use crate::model::{
    spec::{SgAction, Spec},
    state::EndpointRecord,
};
use privatelink_common::*;

/// The rules of `e`'s groups in decision order; empty when it has no group.
pub fn compile(spec: &Spec, e: &EndpointRecord) -> Vec<SgRule> {
    let mut rules: Vec<(i64, bool, usize, SgRule)> = Vec::new();
    for name in &e.spec.security_groups {
        let Some(g) = spec.security_groups.iter().find(|g| &g.name == name) else { continue };
        for r in &g.rules {
            let (lo, hi) = r.ports.bounds().unwrap_or((1, 65535));
            let mask = r.source.mask();
            let net = u32::from(r.source.net) & mask;
            let rule = SgRule {
                net_be: u32::from_ne_bytes(net.to_be_bytes()),
                mask_be: u32::from_ne_bytes(mask.to_be_bytes()),
                port_lo: lo,
                port_hi: hi,
                proto: r.protocol.number(),
                action: if r.action == SgAction::Deny { SG_DENY } else { SG_ALLOW },
                _pad: [0; 2],
            };
            rules.push((r.priority, r.action != SgAction::Deny, rules.len(), rule));
        }
    }
    rules.sort();
    rules.into_iter().map(|(.., r)| r).collect()
}

/// The key a rule set is stored under: FNV-1a of its rules, never 0 (0 is "no group").
pub fn key_of(rules: &[SgRule]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for r in rules {
        let bytes = [r.net_be.to_ne_bytes(), r.mask_be.to_ne_bytes(), [(r.port_lo >> 8) as u8, r.port_lo as u8, (r.port_hi >> 8) as u8, r.port_hi as u8], [r.proto, r.action, 0, 0]];
        for b in bytes.iter().flatten() {
            h = (h ^ *b as u32).wrapping_mul(0x0100_0193);
        }
    }
    h.max(1)
}
