//! Private DNS names, pure: which names each VPC resolves, to what, in which zone.
//! Names exist while their endpoint is accepted and wants them (`private_dns`); a VPC
//! serves them only when it has a DNS address (`vpcs[].dns`).
//!
//! Per accepted endpoint, under `gateway.dns_zone` (Z) and region R:
//! `{endpoint_id}.{service_id}.R.Z` -> the endpoint's address; `{zone}.{endpoint_id}.
//! {service_id}.R.Z` -> its zonal address; `{service_id}.R.Z` and the service's own
//! `private_dns_name` -> the address of the VPC's endpoint of that service (the oldest,
//! when it has several). Every name between a zone's apex and a name exists too.

use crate::model::state::{EndpointState, State};
use std::{
    collections::BTreeMap,
    net::Ipv4Addr,
};

/// `name`, lowercase and without a trailing dot: how names are compared.
pub fn normal(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

/// Whether `name` is `zone` or lies below it.
pub fn under(name: &str, zone: &str) -> bool {
    name == zone || name.ends_with(&format!(".{zone}"))
}

/// One name of one VPC: its address (`None`: it exists without one, a zone apex or a
/// name with names below) and the zone it lies in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub ip: Option<Ipv4Addr>,
    pub zone: String,
}

/// The names of an endpoint (accepted or not), with their addresses: what `describe`
/// shows. Empty when the endpoint asked for none.
pub fn endpoint_names(st: &State, name: &str) -> Vec<(String, Ipv4Addr)> {
    let holder = st.endpoints.get(name).and_then(|e| svc_holder(st, &e.spec.vpc, &e.service));
    endpoint_names_given(st, name, holder.as_deref())
}

/// The endpoint (name) whose address each VPC's service names resolve to, by (VPC,
/// service): `svc_holder` for all of them in one pass.
pub fn holders(st: &State) -> BTreeMap<(&str, &str), &str> {
    let mut best: BTreeMap<(&str, &str), &crate::model::state::EndpointRecord> = BTreeMap::new();
    for e in st.endpoints.values().filter(|e| e.state == EndpointState::Accepted && e.spec.private_dns) {
        let slot = best.entry((e.spec.vpc.as_str(), e.service.as_str())).or_insert(e);
        if (e.created_at, &e.id) < (slot.created_at, &slot.id) {
            *slot = e;
        }
    }
    best.into_iter().map(|(k, e)| (k, e.spec.name.as_str())).collect()
}

/// `endpoint_names`, given the holder of its VPC's service names (see `holders`).
pub fn endpoint_names_given(st: &State, name: &str, holder: Option<&str>) -> Vec<(String, Ipv4Addr)> {
    let (Some(e), zone) = (st.endpoints.get(name), normal(&st.gateway.dns_zone)) else { return Vec::new() };
    let Some(svc) = st.services.get(&e.service) else { return Vec::new() };
    if !e.spec.private_dns {
        return Vec::new();
    }
    let base = format!("{}.{}.{}.{zone}", e.id, svc.id, st.gateway.region);
    let mut out = vec![(base.clone(), e.ip)];
    out.extend(e.spec.zone_ips.iter().map(|(z, ip)| (format!("{}.{base}", z.to_ascii_lowercase()), *ip)));
    if holder == Some(name) {
        out.push((format!("{}.{}.{zone}", svc.id, st.gateway.region), e.ip));
        if let Some(own) = &svc.spec.private_dns_name {
            out.push((normal(own), e.ip));
        }
    }
    out
}

/// The names of a service, in general form: `{service_id}.R.Z` and its own name.
pub fn service_names(st: &State, service: &str) -> Vec<String> {
    let Some(svc) = st.services.get(service) else { return Vec::new() };
    let mut out = vec![format!("{}.{}.{}", svc.id, st.gateway.region, normal(&st.gateway.dns_zone))];
    out.extend(svc.spec.private_dns_name.as_deref().map(normal));
    out
}

/// The endpoint (name) whose address a VPC's service names resolve to: its oldest
/// accepted endpoint of the service that wants names.
fn svc_holder(st: &State, vpc: &str, service: &str) -> Option<String> {
    st.endpoints
        .values()
        .filter(|e| e.spec.vpc == vpc && e.service == service && e.state == EndpointState::Accepted && e.spec.private_dns)
        .min_by_key(|e| (e.created_at, e.id.clone()))
        .map(|e| e.spec.name.clone())
}

/// Every name of every VPC that has a DNS address: (VPC name, name) -> record.
pub fn records(st: &State) -> BTreeMap<(String, String), Record> {
    let zone = normal(&st.gateway.dns_zone);
    let mut out = BTreeMap::new();
    let held = holders(st);
    for v in st.vpcs.values().filter(|v| v.spec.dns.is_some()) {
        let vpc = v.spec.name.clone();
        let mut names: BTreeMap<String, Record> = BTreeMap::new();
        names.insert(zone.clone(), Record { ip: None, zone: zone.clone() });
        for e in st.endpoints.values().filter(|e| e.spec.vpc == vpc && e.state == EndpointState::Accepted) {
            let holder = held.get(&(e.spec.vpc.as_str(), e.service.as_str())).copied();
            for (name, ip) in endpoint_names_given(st, &e.spec.name, holder) {
                let own = st.services.get(&e.service).and_then(|s| s.spec.private_dns_name.as_deref()).map(normal);
                let z = if own.as_deref() == Some(name.as_str()) { name.clone() } else { zone.clone() };
                names.insert(name, Record { ip: Some(ip), zone: z });
            }
        }
        // The names between each name and its zone's apex exist (RFC 8020: NODATA, not
        // NXDOMAIN, for them).
        let between: Vec<(String, String)> = names
            .iter()
            .flat_map(|(name, r)| {
                let mut up = Vec::new();
                let mut n = name.as_str();
                while let Some((_, parent)) = n.split_once('.') {
                    if !under(parent, &r.zone) || parent == r.zone {
                        break;
                    }
                    up.push((parent.to_string(), r.zone.clone()));
                    n = parent;
                }
                up
            })
            .collect();
        for (name, z) in between {
            names.entry(name).or_insert(Record { ip: None, zone: z });
        }
        out.extend(names.into_iter().map(|(n, r)| ((vpc.clone(), n), r)));
    }
    out
}

#[cfg(test)]
mod tests;
