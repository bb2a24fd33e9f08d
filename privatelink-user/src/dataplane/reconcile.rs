//! The reconciler: reads what the live maps hold, diffs it against what the state
//! calls for (`tables`), and writes only the difference, in `tables::diff`'s safe
//! order; `step` writes the difference between two wanted sets when the first is known
//! to be in the maps. Decides nothing itself.

use super::{
    error::Result,
    maps::Maps,
    tables::{self, Op, Tables},
};

/// What the live maps hold, in `Tables` form. Maglev tables are read for active
/// services only.
pub fn observe(maps: &Maps) -> Result<Tables> {
    let services = maps.all_services()?;
    let mut maglev = std::collections::BTreeMap::new();
    for s in services.keys() {
        maglev.insert(*s, maps.maglev_table(*s)?);
    }
    let endpoints = maps.all_endpoints()?;
    Ok(Tables {
        vpcs: maps.all_vpcs()?,
        ep_ips: maps.all_endpoint_ips()?,
        ep_snat: maps.all_ep_snat(&endpoints)?,
        endpoints,
        services,
        ports: maps.all_ports()?,
        backends: maps.all_backends()?,
        maglev,
        snat_ranges: maps.all_snat_ranges()?,
        dns: maps.all_dns()?,
        sg_sets: maps.all_sg_sets()?,
        rates: maps.all_rates()?,
    })
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Report {
    /// Table operations carried out.
    pub ops: usize,
    /// Map elements written or deleted (Maglev slots counted one by one).
    pub writes: usize,
}

/// Bring the live maps to `want`. A failed write stops the run: the maps then hold a
/// prefix of the ordered writes, which is safe, and the next reconcile finishes it.
pub fn reconcile(maps: &mut Maps, want: &Tables) -> Result<Report> {
    let have = observe(maps)?;
    step(maps, want, &have)
}

/// Write what turns `have` (known to be what the maps hold: the last `want` written in
/// full) into `want`, without reading the maps back.
pub fn step(maps: &mut Maps, want: &Tables, have: &Tables) -> Result<Report> {
    let ops = tables::diff(want, have);
    let mut report = Report { ops: ops.len(), writes: 0 };
    for op in &ops {
        report.writes += write(maps, op)?;
    }
    Ok(report)
}

fn write(maps: &mut Maps, op: &Op) -> Result<usize> {
    match op {
        Op::AddSnatRange(net, p) => maps.add_snat_range(*net, *p)?,
        Op::SetVpc(k, v) => maps.set_vpc(*k, *v)?,
        Op::SetBackend(k, ip, up) => maps.set_backend(*k, *ip, *up)?,
        Op::SetService(k, v) => maps.set_service(*k, *v)?,
        Op::SetPort((s, proto, port), target) => maps.set_port(*s, *proto, *port, *target)?,
        Op::SetMaglev(s, table) => return maps.set_maglev(*s, table),
        Op::ResetCounters(k) => maps.reset_endpoint_stats(*k)?,
        Op::SetEndpoint(k, v) => maps.set_endpoint(*k, *v)?,
        Op::SetEpSnat(k, ip) => maps.set_ep_snat(*k, Some(*ip))?,
        Op::ClearEpSnat(k) => maps.set_ep_snat(*k, None)?,
        Op::SetSgSet(k, rules) => maps.set_sg_set(*k, rules)?,
        Op::RemoveSgSet(k) => maps.remove_sg_set(*k)?,
        Op::SetRate(k, r) => maps.set_rate(*k, *r)?,
        Op::ClearRate(k) => maps.set_rate(*k, privatelink_common::Rate::default())?,
        Op::BindIp((vpc, ip), idx) => maps.bind_endpoint_ip(*vpc, *ip, *idx)?,
        Op::UnbindIp((vpc, ip)) => maps.unbind_endpoint_ip(*vpc, *ip)?,
        Op::SetDns((vpc, name), entry) => maps.set_dns(*vpc, name, *entry)?,
        Op::RemoveDns((vpc, name)) => maps.remove_dns(*vpc, name)?,
        Op::ClearEndpoint(k) => maps.clear_endpoint(*k)?,
        Op::RemovePort((s, proto, port)) => maps.remove_port(*s, *proto, *port)?,
        Op::ClearService(k) => maps.clear_service(*k)?,
        Op::ClearBackend(k) => maps.clear_backend(*k)?,
        Op::RemoveSnatRange(net, p) => maps.remove_snat_range(*net, *p)?,
        Op::RemoveVpc(k) => maps.remove_vpc(*k)?,
    }
    Ok(1)
}
