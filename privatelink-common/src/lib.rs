//! The ABI between privatelink's XDP program and its userspace.
//! Owns every map key/value layout, map name, drop reason and the pure math both sides
//! need (RFC 1624 checksum updates, the flow hash). Must never hold logic that needs a map.
#![no_std]

pub mod abi;
pub mod csum;
pub mod dns;
pub mod hash;
pub mod police;
pub mod replication;
pub mod sg;
pub mod tcp;

pub use abi::*;
pub use dns::*;
pub use sg::*;
pub use police::*;
pub use replication::*;
