//! privatelink's userspace library. Pure core: `spec` (read YAML) -> `validate` ->
//! `plan` (next state) -> `tables` (map contents and the ordered diff). Edges: `store`
//! (state on disk), `maps` (the only code touching BPF maps), `reconcile`, `loader`,
//! `sweep`, the daemon and the CLI, which only wire these together.

pub mod api;
pub mod cli;
pub mod daemon;
pub mod error;
pub mod health;
pub mod lab;
pub mod loader;
pub mod maglev;
pub mod maps;
pub mod metrics;
pub mod notify;
pub mod plan;
pub mod reconcile;
pub mod spec;
pub mod state;
pub mod store;
pub mod sweep;
pub mod tables;
pub mod validate;
pub mod yaml;

pub use error::Error;
pub use spec::SpecError;

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
