//! What only the recorded state and the host can tell: the live conntrack size, the
//! interfaces that exist, and the fields a service or endpoint keeps for life.

use super::{Check, Env};
use std::{collections::BTreeMap, net::Ipv4Addr};
use crate::model::{
    spec::Spec,
    state::{EndpointState, ServiceState, State},
};

impl Check<'_> {
    /// `reserved`: the gateway's own addresses, per VPC name.
    pub(super) fn host(&mut self, spec: &Spec, old: &State, env: &Env, reserved: &BTreeMap<String, Vec<Ipv4Addr>>) {
        if let Some(cap) = env.ct_capacity {
            if spec.gateway.conntrack_capacity != cap as i64 && !old.vpcs.is_empty() {
                self.err(
                    "gateway.conntrack_capacity",
                    format!("the live conntrack table holds {cap} entries; resizing it needs `privatelink down` (which drops every flow) and a new apply"),
                );
            }
        }
        for (i, v) in spec.vpcs.iter().enumerate() {
            if !(env.interface_exists)(&v.interface) {
                self.err(format!("vpcs[{i}].interface"), format!("interface `{}` does not exist on this gateway", v.interface));
            }
        }
        for (i, e) in spec.endpoints.iter().enumerate() {
            let Some(own) = reserved.get(&e.vpc) else { continue };
            let zonal = e.zone_ips.iter().map(|(z, ip)| (format!("endpoints[{i}].zone_ips.{z}"), *ip));
            for (path, ip) in e.ip.map(|ip| (format!("endpoints[{i}].ip"), ip)).into_iter().chain(zonal) {
                if own.contains(&ip) {
                    self.err(path, format!("{ip} is the gateway's own address in VPC {}", e.vpc));
                }
            }
        }
    }

    /// The fleet's nodes keep their SNAT slices: `gateway.snat_slices` holds every
    /// recorded node's slice, and is fixed while endpoints exist (every node's address
    /// of every endpoint would move).
    pub(super) fn fleet(&mut self, spec: &Spec, old: &State) {
        let want = spec.gateway.snat_slices;
        if let Some(top) = old.nodes.values().map(|n| n.slice as i64 + 1).max() {
            if want < top {
                let names: Vec<&str> = old.nodes.keys().map(String::as_str).collect();
                self.err("gateway.snat_slices", format!("the fleet's nodes ({}) hold SNAT slices up to {}: it needs at least {}", names.join(", "), top - 1, (top as u64).next_power_of_two()));
            }
        }
        let live = old.endpoints.values().any(|e| e.state != EndpointState::Deleting);
        if live && want != old.gateway.snat_slices && !old.vpcs.is_empty() {
            self.err("gateway.snat_slices", format!("is {} while endpoints exist; changing it would move every node's SNAT address of every endpoint (delete the endpoints first)", old.gateway.snat_slices));
        }
    }

    /// A service's owner and VPC never change.
    pub(super) fn immutable_services(&mut self, spec: &Spec, old: &State) {
        for (i, s) in spec.services.iter().enumerate() {
            let Some(r) = old.services.get(&s.name).filter(|r| r.state != ServiceState::Deleting) else { continue };
            if r.spec.owner != s.owner {
                self.err(format!("services[{i}].owner"), format!("service `{}` belongs to account {}; an owner cannot change (delete the service and create it anew)", s.name, r.spec.owner));
            }
            if r.spec.vpc != s.vpc {
                self.err(format!("services[{i}].vpc"), format!("service `{}` lives in VPC {}; a VPC cannot change (delete the service and create it anew)", s.name, r.spec.vpc));
            }
        }
    }

    /// An endpoint's owner, VPC and service never change (`service_of`: what each
    /// endpoint of the spec resolved to).
    pub(super) fn immutable_endpoints(&mut self, spec: &Spec, old: &State, service_of: &[Option<usize>]) {
        for (i, e) in spec.endpoints.iter().enumerate() {
            let Some(r) = old.endpoints.get(&e.name).filter(|r| r.state != EndpointState::Deleting) else { continue };
            for (field, was, now) in [("owner", &r.spec.owner.0, &e.owner.0), ("vpc", &r.spec.vpc, &e.vpc)] {
                if was != now {
                    self.err(format!("endpoints[{i}].{field}"), format!("endpoint `{}` has {field} {was}; it cannot change (delete the endpoint and create it anew)", e.name));
                }
            }
            if let Some(si) = service_of.get(i).copied().flatten() {
                if spec.services[si].name != r.service {
                    self.err(format!("endpoints[{i}].service"), format!("endpoint `{}` connects to service {}; an endpoint connects to one service for life (delete it and create it anew)", e.name, r.service));
                }
            }
        }
    }
}
