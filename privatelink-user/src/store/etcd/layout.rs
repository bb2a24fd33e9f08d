//! How the state lies in etcd: sections (spec, the rest, endpoints in buckets), each
//! deflated JSON, and the root that says which blob holds each section.

use super::super::{decode, encode, StoreError};
use crate::model::{
    fleet::NodeRecord,
    spec::{Gateway, Spec},
    state::{Cuts, EndpointRecord, ServiceRecord, State, VpcRecord},
    tenancy::{KeyRecord, Managed},
    tokens::TokenRecord,
};
use serde::{Deserialize, Serialize};
use std::{
    collections::{BTreeMap, BTreeSet},
    io::{Read, Write},
    net::Ipv4Addr,
    sync::Arc,
};

pub(super) const PREFIX: &str = "/privatelink/";
const BUCKETS: u64 = 32;
/// Largest part of a blob (etcd refuses requests over 1.5 MiB).
pub(super) const PART: usize = 512 << 10;

/// The state but its spec and endpoints (small: read and written whole).
#[derive(Serialize, Deserialize)]
struct Meta {
    gateway: Gateway,
    vpcs: BTreeMap<String, VpcRecord>,
    services: BTreeMap<String, ServiceRecord>,
    #[serde(default)]
    cuts: BTreeMap<String, Cuts>,
    #[serde(default)]
    backends_down: BTreeSet<(String, Ipv4Addr)>,
    #[serde(default)]
    nodes: BTreeMap<String, NodeRecord>,
    #[serde(default)]
    tokens: BTreeMap<String, TokenRecord>,
    #[serde(default)]
    health_views: BTreeMap<String, BTreeSet<(String, Ipv4Addr)>>,
    #[serde(default)]
    managed: Managed,
    #[serde(default)]
    idempotency: BTreeMap<String, KeyRecord>,
}

#[derive(Clone, Default, Serialize, Deserialize)]
pub(super) struct Root {
    pub(super) schema: u64,
    pub(super) generation: u64,
    /// section -> the keys of its parts.
    pub(super) sections: BTreeMap<String, Vec<String>>,
}

/// A section of the state as it was last read or written: its parts' keys and its
/// JSON (before deflating), to tell whether it changed.
pub(super) struct Known {
    pub(super) keys: Vec<String>,
    pub(super) json: Arc<Vec<u8>>,
}

pub(super) fn key(rest: &str) -> String {
    format!("{PREFIX}{rest}")
}

fn bucket(name: &str) -> u64 {
    // FNV-1a: the same bucket on every node and every build.
    name.bytes().fold(0xcbf29ce484222325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100000001b3)) % BUCKETS
}

pub(super) fn deflate(json: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
    // Writing into a Vec cannot fail.
    e.write_all(json).ok();
    e.finish().unwrap_or_default()
}

pub(super) fn inflate(what: &str, bytes: &[u8]) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::new();
    flate2::read::DeflateDecoder::new(bytes).read_to_end(&mut out).map_err(|e| StoreError::Db(format!("{what}: {e}")))?;
    Ok(out)
}


/// The state cut into sections, each as JSON.
pub(super) fn sections(st: &State) -> Result<BTreeMap<String, Vec<u8>>, StoreError> {
    let mut out = BTreeMap::new();
    out.insert("spec".to_string(), encode("spec", &st.spec)?);
    let meta = Meta {
        gateway: st.gateway.clone(),
        vpcs: st.vpcs.clone(),
        services: st.services.clone(),
        cuts: st.cuts.clone(),
        backends_down: st.backends_down.clone(),
        nodes: st.nodes.clone(),
        tokens: st.tokens.clone(),
        health_views: st.health_views.clone(),
        managed: st.managed.clone(),
        idempotency: st.idempotency.clone(),
    };
    out.insert("meta".to_string(), encode("meta", &meta)?);
    let mut buckets: BTreeMap<u64, BTreeMap<&String, &EndpointRecord>> = BTreeMap::new();
    for (n, e) in &st.endpoints {
        buckets.entry(bucket(n)).or_default().insert(n, e);
    }
    for (b, eps) in buckets {
        out.insert(format!("endpoints{b:02}"), encode("endpoints", &eps)?);
    }
    Ok(out)
}

pub(super) fn assemble(generation: u64, parts: &BTreeMap<String, Arc<Vec<u8>>>) -> Result<State, StoreError> {
    let mut st = State { generation, ..State::default() };
    for (name, json) in parts {
        match name.as_str() {
            "spec" => st.spec = decode::<Spec>("spec", json)?,
            "meta" => {
                let m: Meta = decode("meta", json)?;
                (st.gateway, st.vpcs, st.services, st.cuts, st.backends_down, st.nodes, st.tokens) = (m.gateway, m.vpcs, m.services, m.cuts, m.backends_down, m.nodes, m.tokens);
                (st.health_views, st.managed, st.idempotency) = (m.health_views, m.managed, m.idempotency);
            }
            _ => st.endpoints.extend(decode::<BTreeMap<String, EndpointRecord>>(name, json)?),
        }
    }
    Ok(st)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_part_of_the_state_lies_in_etcd_and_comes_back() {
        let st = crate::store::tests::full_state();
        let parts: BTreeMap<String, Arc<Vec<u8>>> = sections(&st).unwrap().into_iter().map(|(k, v)| (k, Arc::new(v))).collect();
        assert_eq!(assemble(st.generation, &parts).unwrap(), st);
    }
}
