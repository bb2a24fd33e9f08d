//! privatelink's userspace library, in layers that the data flows through:
//! - `model`: pure; spec text -> validated spec -> plan -> the next recorded state.
//! - `dataplane`: the only code that touches BPF; a state in, map writes and
//!   observations (counters, flows) out.
//! - `store`: the recorded state and its events, persisted behind one trait.
//! - `daemon`: wires them into a running gateway and serves the API.
//! - `cli`: the `privatelink` command line; talks to the daemon through the API types.
//! - `lab`: the quick start's network-namespace lab.

pub mod cli;
pub mod daemon;
pub mod dataplane;
pub mod lab;
pub mod model;
pub mod store;
