//! Security groups on endpoints: the compiled rule set the data path checks a new flow
//! against. Userspace merges an endpoint's groups into one list in decision order
//! (priority, deny before allow at equal priority), so the first rule that matches
//! decides. Sets are content-addressed: a set's key names its rules for good, so an
//! endpoint never sees a set change under it.

/// `PL_SG_SETS`: hash map, key `u32` (nonzero, from the rules' content), value [`SgSet`].
pub const MAP_SG_SETS: &str = "PL_SG_SETS";
/// Distinct rule sets in use at once.
pub const MAX_SG_SETS: u32 = 1_024;
/// 5 groups of 100 rules.
pub const MAX_SG_RULES: usize = 500;

pub const SG_ALLOW: u8 = 1;
pub const SG_DENY: u8 = 2;
/// `SgRule::proto` for every protocol.
pub const SG_PROTO_ALL: u8 = 0;

/// One rule: source `net_be`/`mask_be` (raw network order, as loaded from a packet),
/// protocol (`PROTO_*` or `SG_PROTO_ALL`), endpoint ports `port_lo..=port_hi` (host
/// order; ignored for ICMP), `SG_ALLOW` or `SG_DENY`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SgRule {
    pub net_be: u32,
    pub mask_be: u32,
    pub port_lo: u16,
    pub port_hi: u16,
    pub proto: u8,
    pub action: u8,
    pub _pad: [u8; 2],
}
const _: () = assert!(size_of::<SgRule>() == 16);

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SgSet {
    /// Rules in use, in decision order.
    pub count: u32,
    pub _pad: u32,
    pub rules: [SgRule; MAX_SG_RULES],
}
const _: () = assert!(size_of::<SgSet>() == 8 + 16 * MAX_SG_RULES);

impl SgRule {
    /// Whether the rule covers a packet from `src_be` (raw) of `proto` to endpoint port
    /// `port` (host order; 0 for ICMP).
    #[inline(always)]
    pub fn matches(&self, src_be: u32, proto: u8, port: u16) -> bool {
        src_be & self.mask_be == self.net_be
            && (self.proto == SG_PROTO_ALL || self.proto == proto)
            && (proto == crate::PROTO_ICMP || (self.port_lo <= port && port <= self.port_hi))
    }
}

/// The verdict of a set on a new flow: the first matching rule's action; no rule
/// matching denies (a group is attached).
pub fn decide(rules: &[SgRule], src_be: u32, proto: u8, port: u16) -> u8 {
    rules.iter().find(|r| r.matches(src_be, proto, port)).map_or(SG_DENY, |r| r.action)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{PROTO_ICMP, PROTO_TCP, PROTO_UDP};

    fn rule(net: [u8; 4], prefix: u32, proto: u8, ports: (u16, u16), action: u8) -> SgRule {
        let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - prefix) };
        SgRule {
            net_be: u32::from_ne_bytes((u32::from_be_bytes(net) & mask).to_be_bytes()),
            mask_be: u32::from_ne_bytes(mask.to_be_bytes()),
            port_lo: ports.0,
            port_hi: ports.1,
            proto,
            action,
            _pad: [0; 2],
        }
    }

    #[test]
    fn first_match_decides_and_no_match_denies() {
        let src = |a: [u8; 4]| u32::from_ne_bytes(a);
        let rules = [
            rule([10, 0, 0, 0], 28, PROTO_TCP, (80, 80), SG_ALLOW),
            rule([10, 0, 0, 7], 32, SG_PROTO_ALL, (0, 65535), SG_DENY),
            rule([0, 0, 0, 0], 0, PROTO_UDP, (5000, 5100), SG_ALLOW),
        ];
        assert_eq!(decide(&rules, src([10, 0, 0, 7]), PROTO_TCP, 80), SG_ALLOW, "the first rule comes first");
        assert_eq!(decide(&rules, src([10, 0, 0, 7]), PROTO_TCP, 81), SG_DENY);
        assert_eq!(decide(&rules, src([10, 0, 0, 20]), PROTO_TCP, 80), SG_DENY, "outside /28, no rule");
        assert_eq!(decide(&rules, src([192, 0, 2, 1]), PROTO_UDP, 5100), SG_ALLOW);
        assert_eq!(decide(&rules, src([192, 0, 2, 1]), PROTO_UDP, 5101), SG_DENY);
        assert_eq!(decide(&rules, src([10, 0, 0, 7]), PROTO_ICMP, 0), SG_DENY, "all protocols, ICMP has no port");
        assert_eq!(decide(&[], src([10, 0, 0, 7]), PROTO_TCP, 80), SG_DENY);
    }
}
