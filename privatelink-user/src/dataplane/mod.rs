//! The data plane: the only code that touches BPF. `loader` loads the XDP object and
//! attaches its programs, `bpffs` keeps the pins' directory, `links` pins the
//! attachments there in each interface's XDP mode (`netlink` tells a veth's peer), `maps`
//! reads and writes the maps the control plane owns, `tables` computes the map contents
//! a state calls for (`shares` sizes tenants' budgets, `sg` compiles security groups,
//! `maglev` builds backend tables) and the ordered writes that reach them, `reconcile`
//! carries those writes out, `replica` holds the flow events and the standby table of replication, `sweep` expires flows (its own handles on the flow table
//! and the expiry program) and `audit` checks the data path's slot counters against
//! the table in the same pass, `sys` holds the bpf(2) calls aya does not make,
//! `announce` publishes the endpoint addresses this node serves as routes for a
//! routing daemon, `kernel` keeps the kernel's ARP answers to each interface's own
//! addresses and backends' next hops resolved, `error` is the one error type.
//! Uses the model's types (a state in; map contents, counters and flows out); never
//! decides what the state should be, and knows nothing of the store or the daemon.

pub mod announce;
pub mod audit;
pub mod bpffs;
pub mod error;
pub mod kernel;
pub mod links;
pub mod loader;
pub mod maglev;
pub mod maps;
pub mod netlink;
pub mod reconcile;
pub mod replica;
pub mod sg;
pub mod shares;
pub mod sweep;
mod sys;
pub mod tables;

pub use error::{Error, Result};

/// The XDP object built by `cargo xtask build-ebpf`, embedded at compile time.
pub static BPF_OBJECT: &[u8] = aya::include_bytes_aligned!(env!("PRIVATELINK_BPF_OBJECT"));

/// CLOCK_MONOTONIC in nanoseconds: the clock of `bpf_ktime_get_ns()`, which stamps flows.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid pointer to a timespec; CLOCK_MONOTONIC always exists on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_MONOTONIC) failed");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
