//! The private DNS rules: the zone and TTL, each VPC's DNS address, each service's own
//! name. Names must be ones the data path can hold (`privatelink_common::dns_key`).

use super::Check;
use crate::model::{
    dns::{normal, under},
    spec::Spec,
};
use privatelink_common::dns_key;
use std::collections::HashMap;

/// Longest TTL: a day (what the consoles allow for private zone records).
const MAX_TTL_S: u64 = 86_400;

impl Check<'_> {
    pub(super) fn dns(&mut self, spec: &Spec) {
        let g = &spec.gateway;
        let zone = normal(&g.dns_zone);
        let zone_ok = dns_key(0, &zone).is_some() && zone.contains('.');
        if !zone_ok {
            self.err("gateway.dns_zone", "must be a DNS name of at least two labels (letters, digits, '-', '_'; labels of 1-63, 253 in all), like privatelink.internal");
        }
        let ttl = g.dns_ttl.0.as_secs();
        if g.dns_ttl.0.subsec_nanos() != 0 || !(1..=MAX_TTL_S).contains(&ttl) {
            self.err("gateway.dns_ttl", format!("must be whole seconds from 1s to {MAX_TTL_S}s"));
        }
        for (i, v) in spec.vpcs.iter().enumerate() {
            let Some(ip) = v.dns else { continue };
            if !v.cidr.contains(ip) || ip == v.cidr.net || ip == v.cidr.broadcast() {
                self.err(format!("vpcs[{i}].dns"), format!("{ip} is not a host address of the VPC's {}", v.cidr));
            }
            for (j, e) in spec.endpoints.iter().enumerate().filter(|(_, e)| e.vpc == v.name) {
                let zonal = e.zone_ips.iter().map(|(z, a)| (format!("endpoints[{j}].zone_ips.{z}"), *a));
                for (path, a) in e.ip.map(|a| (format!("endpoints[{j}].ip"), a)).into_iter().chain(zonal) {
                    if a == ip {
                        self.err(path, format!("{ip} is VPC {}'s DNS address (vpcs[{i}].dns)", v.name));
                    }
                }
            }
        }
        let mut names: HashMap<String, usize> = HashMap::new();
        for (i, s) in spec.services.iter().enumerate() {
            let Some(name) = &s.private_dns_name else { continue };
            let p = format!("services[{i}].private_dns_name");
            let n = normal(name);
            // The longest name of the zone must fit: the name is itself a zone apex.
            if dns_key(0, &n).is_none() || !n.contains('.') {
                self.err(p, "must be a DNS name of at least two labels (letters, digits, '-', '_'; labels of 1-63, 253 in all)");
            } else if zone_ok && (under(&n, &zone) || under(&zone, &n)) {
                self.err(p, format!("{name} overlaps the gateway's zone {zone}: choose a name outside it"));
            } else if let Some(j) = names.insert(n.clone(), i) {
                self.err(p, format!("{name} is already services[{j}]'s private DNS name"));
            }
        }
    }
}
