//! BIRD 2 configurations of the fleet lab (the node's is the recipe docs/operator.md
//! gives for real hosts, `examples/bird/gateway-node.conf`):
//! each gateway node announces what its announce table holds to the consumer-side
//! router over eBGP with BFD; the router merges equal paths into one ECMP route.

use std::net::Ipv4Addr;

/// The AS every gateway node speaks from, and the consumer router's.
pub const NODE_AS: u32 = 65001;
pub const ROUTER_AS: u32 = 65000;
/// BFD: a hello every 100 ms, a session down after 3 missed (300 ms).
const BFD: &str = "min rx interval 100 ms; min tx interval 100 ms; multiplier 3;";
/// BGP's own timers, the floor of failure detection without BFD (RFC 4271's least).
const TIMERS: &str = "hold time 3; keepalive time 1; connect retry time 1;";

/// The recipe the operator's guide gives (`examples/bird/gateway-node.conf`), written
/// for a first node at 172.16.1.2 whose router is 172.16.1.1 over eth0, table 100.
const NODE: &str = include_str!("../../../examples/bird/gateway-node.conf");

/// A gateway node: learn the routes privatelink publishes in `table` and announce
/// them (next hop: this node) to the router at `peer`, over `iface`: the recipe with
/// this node's values put in.
pub fn node(local: Ipv4Addr, peer: Ipv4Addr, iface: &str, table: u32) -> String {
    NODE.replace("172.16.1.2", &local.to_string())
        .replace("172.16.1.1", &peer.to_string())
        .replace("interface \"eth0\"", &format!("interface \"{iface}\""))
        .replace("kernel table 100;", &format!("kernel table {table};"))
}

/// The provider side's recipe (`examples/bird/gateway-node-provider.conf`), for a
/// first node at 192.168.2.1 whose provider router is 192.168.2.201 over eth1, table 101.
const NODE_PROVIDER: &str = include_str!("../../../examples/bird/gateway-node-provider.conf");
/// The provider-side router's AS.
pub const PROVIDER_AS: u32 = 65100;

/// A gateway node's provider side (appended to `node`'s): learn the SNAT slices
/// privatelink publishes in `table` and announce them to the provider router at
/// `peer` over `iface`.
pub fn node_provider(local: Ipv4Addr, peer: Ipv4Addr, iface: &str, table: u32) -> String {
    NODE_PROVIDER
        .replace("192.168.2.201", &peer.to_string())
        .replace("192.168.2.1", &local.to_string())
        .replace("interface \"eth1\"", &format!("interface \"{iface}\""))
        .replace("kernel table 101;", &format!("kernel table {table};"))
}

/// The provider-side router: a session with every node (`peers`: the node's address,
/// this router's address towards it and the interface), what they announce (their
/// SNAT slices) into the kernel's main table. Every link is on the provider VPC's
/// subnet (the lab's), so a next hop is resolved through a host route of its link
/// (`gateway recursive`), not through whichever link BIRD finds the subnet on first.
pub fn provider_router(id: Ipv4Addr, peers: &[(Ipv4Addr, Ipv4Addr, String)]) -> String {
    let hosts: String = peers.iter().map(|(addr, _, iface)| format!("    route {addr}/32 via \"{iface}\";\n")).collect();
    let mut out = format!(
        r#"log stderr all;
router id {id};
protocol device {{ scan time 1; }}
protocol static links {{
    ipv4;
{hosts}}}
protocol kernel {{
    ipv4 {{ import none; export where source = RTS_BGP; }};
}}
template bgp gateway_node {{
    local as {PROVIDER_AS};
    {TIMERS}
    ipv4 {{ import all; export none; gateway recursive; }};
}}
"#
    );
    for (i, (addr, local, iface)) in peers.iter().enumerate() {
        out.push_str(&format!("protocol bgp node{} from gateway_node {{ local {local}; neighbor {addr} as {NODE_AS}; interface \"{iface}\"; }}\n", i + 1));
    }
    out
}

/// The consumer-side router: a session with every node (`peers`: address and the
/// interface it is reached on), equal paths merged into one ECMP route in the kernel
/// `table`.
pub fn router(id: Ipv4Addr, peers: &[(Ipv4Addr, String)], table: u32) -> String {
    let mut out = format!(
        r#"log stderr all;
router id {id};
protocol device {{ scan time 1; }}
protocol kernel {{
    kernel table {table};
    merge paths on;
    ipv4 {{ import none; export all; }};
}}
protocol bfd {{ interface "*" {{ {BFD} }}; }}
template bgp gateway_node {{
    local as {ROUTER_AS};
    {TIMERS}
    bfd on;
    ipv4 {{ import all; export none; }};
}}
"#
    );
    for (i, (addr, iface)) in peers.iter().enumerate() {
        out.push_str(&format!("protocol bgp node{} from gateway_node {{ neighbor {addr} as {NODE_AS}; interface \"{iface}\"; }}\n", i + 1));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// BIRD itself parses both (`bird -p`; `cargo xtask setup` installs bird2).
    #[test]
    fn bird_accepts_both_configurations() {
        let dir = std::env::temp_dir().join(format!("pl-bird-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let peers = [(Ipv4Addr::new(172, 16, 1, 2), "r-g1".to_string()), (Ipv4Addr::new(172, 16, 2, 2), "r-g2".to_string())];
        let node_both = node(Ipv4Addr::new(172, 16, 1, 2), Ipv4Addr::new(172, 16, 1, 1), "gw-c0", 100) + &node_provider(Ipv4Addr::new(192, 168, 2, 1), Ipv4Addr::new(192, 168, 2, 201), "gw-prov", 101);
        let provider = provider_router(Ipv4Addr::new(192, 168, 2, 200), &[(Ipv4Addr::new(192, 168, 2, 1), Ipv4Addr::new(192, 168, 2, 201), "p1".to_string())]);
        for (name, conf) in [("node", node(Ipv4Addr::new(172, 16, 1, 2), Ipv4Addr::new(172, 16, 1, 1), "gw-c0", 100)), ("router", router(Ipv4Addr::new(10, 0, 0, 1), &peers, 200)), ("node-both", node_both), ("provider", provider)] {
            let path = dir.join(format!("{name}.conf"));
            std::fs::write(&path, &conf).unwrap();
            let out = std::process::Command::new("bird").arg("-p").arg("-c").arg(&path).output().expect("run bird (apt install bird2: cargo xtask setup)");
            assert!(out.status.success(), "{name}: {}\n{conf}", String::from_utf8_lossy(&out.stderr));
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
