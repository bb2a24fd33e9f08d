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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{plan::finish, plan_spec, spec, state::State, validate::Env};

    const SPEC: &str = r#"
vpcs:
  - {name: c, interface: gw-c, cidr: 10.0.0.0/24}
  - {name: p, interface: gw-p, cidr: 10.3.0.0/24}
services:
  - {name: s, owner: "1", vpc: p, backends: [{address: 10.3.0.5}], ports: [{protocol: tcp, endpoint_port: 80, service_port: 80}]}
security_groups:
  - name: a
    owner: "1"
    rules:
      - {priority: 5, action: allow, protocol: tcp, ports: "80", source: 10.0.0.0/24}
      - {priority: 1, action: allow, protocol: udp, ports: 53-54, source: 10.0.0.7/32}
  - name: b
    owner: "1"
    rules:
      - {priority: 5, action: deny, protocol: all, source: 10.0.0.9/32}
endpoints:
  - {name: ep-e, owner: "1", vpc: c, service: s, security_groups: [a, b]}
  - {name: ep-f, owner: "1", vpc: c, service: s}
"#;

    #[test]
    fn groups_merge_in_priority_order_with_deny_first_at_equal_priority() {
        let p = plan_spec(&spec::parse(SPEC).unwrap().0, None, &State::default(), &Env::offline()).unwrap();
        let st = finish(p.state);
        let rules = compile(&st.spec, &st.endpoints["ep-e"]);
        let shape: Vec<(u8, u8, u16, u16)> = rules.iter().map(|r| (r.action, r.proto, r.port_lo, r.port_hi)).collect();
        assert_eq!(shape, [(SG_ALLOW, PROTO_UDP, 53, 54), (SG_DENY, SG_PROTO_ALL, 1, 65535), (SG_ALLOW, PROTO_TCP, 80, 80)]);
        let src = |a: [u8; 4]| u32::from_ne_bytes(a);
        assert_eq!(decide(&rules, src([10, 0, 0, 9]), PROTO_TCP, 80), SG_DENY, "deny wins at priority 5");
        assert_eq!(decide(&rules, src([10, 0, 0, 8]), PROTO_TCP, 80), SG_ALLOW);
        assert!(compile(&st.spec, &st.endpoints["ep-f"]).is_empty(), "no group: no set");
        assert_ne!(key_of(&rules), 0);
    }
}
