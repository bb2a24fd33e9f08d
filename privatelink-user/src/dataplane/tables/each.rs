//! Every table of the data path, described once (see `Table`): its key and value as
//! the control plane holds them, where its contents live in `Tables`, and the map
//! calls that write, remove and read it back. Its place in the write order is `ORDER`'s.

use super::{DnsK, IpKey, PortK, Table, Tables};
use crate::dataplane::{error::Result, maps::Maps};
use privatelink_common::*;
use std::{collections::BTreeMap, net::Ipv4Addr};

/// A descriptor: its name, map, key and value, its field in `Tables`, and the map calls
/// that write (`set`), remove and read it.
macro_rules! table {
    ($(#[$doc:meta])* $name:ident: $map:expr, $field:ident: $k:ty => $v:ty, { $($calls:tt)* }) => {
        $(#[$doc])*
        pub struct $name;
        impl Table for $name {
            type K = $k;
            type V = $v;
            const MAP: &'static str = $map;
            fn of(t: &Tables) -> &BTreeMap<$k, $v> {
                &t.$field
            }
            fn of_mut(t: &mut Tables) -> &mut BTreeMap<$k, $v> {
                &mut t.$field
            }
            $($calls)*
        }
    };
}

table! {
    /// The SNAT ranges (the gateway's and the services' own): what comes back to them
    /// is the gateway's, never the kernel's.
    SnatRanges: MAP_SNAT_RANGES, snat_ranges: (Ipv4Addr, u8) => (), {
        fn set(maps: &mut Maps, k: &(Ipv4Addr, u8), _: &(), _: bool) -> Result<usize> {
            maps.add_snat_range(k.0, k.1).map(|()| 1)
        }
        fn remove(maps: &mut Maps, k: &(Ipv4Addr, u8)) -> Result<usize> {
            maps.remove_snat_range(k.0, k.1).map(|()| 1)
        }
        fn read(maps: &Maps) -> Result<BTreeMap<(Ipv4Addr, u8), ()>> {
            Ok(maps.all_snat_ranges()?.into_iter().map(|k| (k, ())).collect())
        }
    }
}

table! {
    /// ifindex -> the VPC on that interface.
    Vpcs: MAP_VPCS, vpcs: u32 => VpcInfo, {
        fn set(maps: &mut Maps, k: &u32, v: &VpcInfo, _: bool) -> Result<usize> {
            maps.set_vpc(*k, *v).map(|()| 1)
        }
        fn remove(maps: &mut Maps, k: &u32) -> Result<usize> {
            maps.remove_vpc(*k).map(|()| 1)
        }
        fn read(maps: &Maps) -> Result<BTreeMap<u32, VpcInfo>> {
            maps.all_vpcs()
        }
    }
}

table! {
    /// Backend slot -> (address, up).
    Backends: MAP_BACKENDS, backends: u32 => (Ipv4Addr, bool), {
        fn set(maps: &mut Maps, k: &u32, v: &(Ipv4Addr, bool), _: bool) -> Result<usize> {
            maps.set_backend(*k, v.0, v.1).map(|()| 1)
        }
        fn remove(maps: &mut Maps, k: &u32) -> Result<usize> {
            maps.clear_backend(*k).map(|()| 1)
        }
        fn read(maps: &Maps) -> Result<BTreeMap<u32, (Ipv4Addr, bool)>> {
            maps.all_backends()
        }
    }
}

table! {
    /// Service slot -> the service (active ones).
    Services: MAP_SERVICES, services: u32 => ServiceInfo, {
        fn set(maps: &mut Maps, k: &u32, v: &ServiceInfo, _: bool) -> Result<usize> {
            maps.set_service(*k, *v).map(|()| 1)
        }
        fn remove(maps: &mut Maps, k: &u32) -> Result<usize> {
            maps.clear_service(*k).map(|()| 1)
        }
        fn read(maps: &Maps) -> Result<BTreeMap<u32, ServiceInfo>> {
            maps.all_services()
        }
    }
}

table! {
    /// (service, protocol, endpoint port) -> service port, ports in host order.
    Ports: MAP_PORTS, ports: PortK => u16, {
        fn set(maps: &mut Maps, k: &PortK, v: &u16, _: bool) -> Result<usize> {
            maps.set_port(k.0, k.1, k.2, *v).map(|()| 1)
        }
        fn remove(maps: &mut Maps, k: &PortK) -> Result<usize> {
            maps.remove_port(k.0, k.1, k.2).map(|()| 1)
        }
        fn read(maps: &Maps) -> Result<BTreeMap<PortK, u16>> {
            maps.all_ports()
        }
    }
}

table! {
    /// Service slot -> its Maglev table of backend slots (active services only).
    Maglev: MAP_MAGLEV, maglev: u32 => Vec<u32>, {
        fn set(maps: &mut Maps, k: &u32, v: &Vec<u32>, _: bool) -> Result<usize> {
            maps.set_maglev(*k, v)
        }
        /// Left as it is: nothing reads it once the service slot is clear, and it is
        /// written whole when the slot is taken again.
        fn remove(_: &mut Maps, _: &u32) -> Result<usize> {
            Ok(0)
        }
        fn read(maps: &Maps) -> Result<BTreeMap<u32, Vec<u32>>> {
            maps.all_services()?.into_keys().map(|s| Ok((s, maps.maglev_table(s)?))).collect()
        }
    }
}

table! {
    /// `endpoint * MAX_SNAT_PER_ENDPOINT + i` -> the endpoint's i-th SNAT address.
    EpSnat: MAP_EP_SNAT, ep_snat: u32 => Ipv4Addr, {
        fn set(maps: &mut Maps, k: &u32, v: &Ipv4Addr, _: bool) -> Result<usize> {
            maps.set_ep_snat(*k, Some(*v)).map(|()| 1)
        }
        fn remove(maps: &mut Maps, k: &u32) -> Result<usize> {
            maps.set_ep_snat(*k, None).map(|()| 1)
        }
        fn read(maps: &Maps) -> Result<BTreeMap<u32, Ipv4Addr>> {
            maps.all_ep_snat(&maps.all_endpoints()?)
        }
    }
}

table! {
    /// Security-group rule sets by content key (see `sg`).
    SgSets: MAP_SG_SETS, sg_sets: u32 => Vec<SgRule>, {
        fn set(maps: &mut Maps, k: &u32, v: &Vec<SgRule>, _: bool) -> Result<usize> {
            maps.set_sg_set(*k, v).map(|()| 1)
        }
        fn remove(maps: &mut Maps, k: &u32) -> Result<usize> {
            maps.remove_sg_set(*k).map(|()| 1)
        }
        fn read(maps: &Maps) -> Result<BTreeMap<u32, Vec<SgRule>>> {
            maps.all_sg_sets()
        }
    }
}

table! {
    /// Endpoint -> its bandwidth limit (endpoints with one only). A rate changes live:
    /// the buckets (and flows) are left as they are.
    Rates: MAP_EP_RATE, rates: u32 => Rate, {
        fn set(maps: &mut Maps, k: &u32, v: &Rate, _: bool) -> Result<usize> {
            maps.set_rate(*k, *v).map(|()| 1)
        }
        fn remove(maps: &mut Maps, k: &u32) -> Result<usize> {
            maps.set_rate(*k, Rate::default()).map(|()| 1)
        }
        fn read(maps: &Maps) -> Result<BTreeMap<u32, Rate>> {
            maps.all_rates()
        }
    }
}

table! {
    /// Endpoint slot -> the endpoint (slots in use).
    Endpoints: MAP_ENDPOINTS, endpoints: u32 => EndpointInfo, {
        /// A slot taken by a new endpoint starts with zero counters.
        fn set(maps: &mut Maps, k: &u32, v: &EndpointInfo, new: bool) -> Result<usize> {
            if new {
                maps.reset_endpoint_stats(*k)?;
            }
            maps.set_endpoint(*k, *v)?;
            Ok(1 + new as usize)
        }
        fn remove(maps: &mut Maps, k: &u32) -> Result<usize> {
            maps.clear_endpoint(*k).map(|()| 1)
        }
        fn read(maps: &Maps) -> Result<BTreeMap<u32, EndpointInfo>> {
            maps.all_endpoints()
        }
    }
}

table! {
    /// (VPC id, address) -> endpoint slot (or `EP_GATEWAY_OWN`, `EP_DNS`).
    EpIps: MAP_EP_IPS, ep_ips: IpKey => u32, {
        fn set(maps: &mut Maps, k: &IpKey, v: &u32, _: bool) -> Result<usize> {
            maps.bind_endpoint_ip(k.0, k.1, *v).map(|()| 1)
        }
        fn remove(maps: &mut Maps, k: &IpKey) -> Result<usize> {
            maps.unbind_endpoint_ip(k.0, k.1).map(|()| 1)
        }
        fn read(maps: &Maps) -> Result<BTreeMap<IpKey, u32>> {
            maps.all_endpoint_ips()
        }
    }
}

table! {
    /// (VPC id, name) -> its private DNS entry.
    Dns: MAP_DNS, dns: DnsK => DnsEntry, {
        fn set(maps: &mut Maps, k: &DnsK, v: &DnsEntry, _: bool) -> Result<usize> {
            maps.set_dns(k.0, &k.1, *v).map(|()| 1)
        }
        fn remove(maps: &mut Maps, k: &DnsK) -> Result<usize> {
            maps.remove_dns(k.0, &k.1).map(|()| 1)
        }
        fn read(maps: &Maps) -> Result<BTreeMap<DnsK, DnsEntry>> {
            maps.all_dns()
        }
    }
}
