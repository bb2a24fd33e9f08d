//! The default sizes of what protects tenants from each other in the shared tables
//! (the spec's `half_open_limit` and `flow_share` fields override them): written once,
//! here, and unit-tested with the tables.

/// A consumer VPC's share of the table's `flows` when `consumers` VPCs have endpoints:
/// the whole table for one, half for two, and at most a quarter from four on, so that
/// no VPC can fill what the others need while a few tenants still use it all.
pub fn vpc_flow_limit(flows: u32, consumers: usize) -> u32 {
    flows / consumers.clamp(1, 4) as u32
}

/// An endpoint's budget of half-open TCP connections: as many as it may hold open, so
/// a SYN flood against it takes this budget, never its open connections.
pub fn half_open_limit(conn_limit: u32) -> u32 {
    conn_limit
}

/// An endpoint's share of the table's `flows`: its open and half-open connections and
/// as many again closing or UDP (its own closed flows give way to its new ones when it
/// is full), never more than the table.
pub fn endpoint_flow_limit(conn_limit: u32, flows: u32) -> u32 {
    conn_limit.saturating_mul(4).min(flows)
}
