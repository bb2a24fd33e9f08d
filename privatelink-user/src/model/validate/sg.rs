//! The security-group rules: the groups themselves (names, owners, the consoles'
//! quotas, each rule's fields) and their attachment to endpoints; endpoints'
//! bandwidth limits.

use super::{account_ok, simple_name, Check};
use crate::model::spec::{SgProtocol, Spec};
use std::collections::{BTreeMap, HashMap};

/// The consoles' quotas: rules per group, groups per endpoint, groups per account.
pub const MAX_RULES_PER_GROUP: usize = 100;
pub const MAX_GROUPS_PER_ENDPOINT: usize = 5;
pub const MAX_GROUPS_PER_ACCOUNT: usize = 50;

impl Check<'_> {
    pub(super) fn security_groups(&mut self, spec: &Spec) {
        let mut names: HashMap<&str, usize> = HashMap::new();
        let mut per_account: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, g) in spec.security_groups.iter().enumerate() {
            let p = format!("security_groups[{i}]");
            if !simple_name(&g.name, 64) {
                self.err(format!("{p}.name"), "must be 1-64 characters: letters, digits, '-' and '_'");
            } else if let Some(j) = names.insert(&g.name, i) {
                self.err(format!("{p}.name"), format!("security group `{}` is already defined at security_groups[{j}]", g.name));
            }
            if !account_ok(&g.owner) {
                self.err(format!("{p}.owner"), "an account id is 1-64 characters: letters, digits, '-' and '_'");
            }
            let n = per_account.entry(&g.owner.0).or_default();
            *n += 1;
            if *n == MAX_GROUPS_PER_ACCOUNT + 1 {
                self.err(p.clone(), format!("account {} exceeds its quota of {MAX_GROUPS_PER_ACCOUNT} security groups", g.owner));
            }
            if g.rules.len() > MAX_RULES_PER_GROUP {
                self.err(format!("{p}.rules"), format!("at most {MAX_RULES_PER_GROUP} rules per security group, not {}", g.rules.len()));
            }
            for (k, r) in g.rules.iter().enumerate() {
                let rp = format!("{p}.rules[{k}]");
                self.range(format!("{rp}.priority"), r.priority, 1, 100, "a priority");
                match r.ports.bounds() {
                    Err(e) => self.err(format!("{rp}.ports"), e),
                    Ok(b) if r.protocol == SgProtocol::Icmp && b != (1, 65535) => {
                        self.err(format!("{rp}.ports"), "ICMP has no ports: leave ports out (or all)");
                    }
                    Ok(_) => {}
                }
            }
        }
        for (i, e) in spec.endpoints.iter().enumerate() {
            if let Some(b) = e.bandwidth {
                // 1 Kbit/s to 100 Gbit/s: what a bucket of ps-per-byte can express.
                if !(1_000..=100_000_000_000).contains(&b.0) {
                    self.err(format!("endpoints[{i}].bandwidth"), format!("must be 1Kbps-100Gbps, not {b}"));
                }
            }
            let p = format!("endpoints[{i}].security_groups");
            if e.security_groups.len() > MAX_GROUPS_PER_ENDPOINT {
                self.err(p.clone(), format!("at most {MAX_GROUPS_PER_ENDPOINT} security groups per endpoint, not {}", e.security_groups.len()));
            }
            for (k, name) in e.security_groups.iter().enumerate() {
                if e.security_groups[..k].contains(name) {
                    self.err(format!("{p}[{k}]"), format!("security group `{name}` is listed twice"));
                    continue;
                }
                match spec.security_groups.iter().find(|g| &g.name == name) {
                    None if self.missing("security_groups", name) => {}
                    None => self.err(format!("{p}[{k}]"), format!("security group `{name}` is not defined under security_groups")),
                    Some(g) if g.owner != e.owner => self.err(
                        format!("{p}[{k}]"),
                        format!("security group `{name}` belongs to account {}, the endpoint to {}: an endpoint takes its own account's groups", g.owner, e.owner),
                    ),
                    Some(_) => {}
                }
            }
        }
    }
}
