//! The daemon's options: what it is started with (paths, intervals, the fleet's
//! store, the tenant API's address and TLS files) and their defaults. Plain data; every
//! part of the daemon reads it, none changes it.

use anyhow::{bail, Result};
use std::{net::SocketAddr, path::PathBuf, time::Duration};

/// Defaults of the daemon's paths (a systemd unit would use the same).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/privatelink";
pub const DEFAULT_BPFFS: &str = "/sys/fs/bpf/privatelink";
pub const DEFAULT_SOCKET: &str = "/run/privatelink.sock";
/// How often the sweeper looks for idle flows (less often when a pass is long).
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(1);
/// How often routes, drift and limit episodes are looked at.
pub const TICK_INTERVAL: Duration = Duration::from_secs(1);
/// How often links and maps are compared with the recorded state and repaired.
pub const DEFAULT_REPAIR_INTERVAL_SECS: u64 = 10;

#[derive(Clone, Debug)]
pub struct Options {
    pub state_dir: PathBuf,
    pub bpffs: PathBuf,
    pub socket: PathBuf,
    /// Serve Prometheus metrics on `/metrics` here.
    pub metrics: Option<std::net::SocketAddr>,
    /// Drift repair: links re-attached and maps rewritten to the state this often.
    pub repair_interval: Duration,
    /// The fleet's shared store (None: the embedded one under `state_dir`).
    pub store: Option<crate::store::StoreUrl>,
    /// This gateway's name in the fleet, and its zone.
    pub node: String,
    pub zone: Option<String>,
    /// Serve the tenant API (HTTPS, or HTTP on loopback).
    pub api: Option<ApiOptions>,
    /// How long the announced routes outlive a daemon that stopped beating.
    pub restart_grace: Duration,
    /// Replicate flows to the buddy and hold other nodes' flows, on this address.
    pub replication_listen: Option<SocketAddr>,
}

/// The host's name: a node's default name.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).ok().filter(|h| !h.is_empty()).unwrap_or_else(|| "gateway".into())
}

/// Where and how the tenant API listens.
#[derive(Clone, Debug)]
pub struct ApiOptions {
    pub listen: SocketAddr,
    /// (certificate chain, private key), PEM. None: plain HTTP, loopback only.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Requests a second each token may make on this node (bursts of as many).
    pub rate: u32,
    /// Serve the console at `/` beside the API.
    pub console: bool,
    /// The Grafana dashboard the console links to.
    pub grafana: Option<String>,
}

impl ApiOptions {
    /// Plain HTTP would send tokens in the clear: only on loopback.
    pub fn check(&self) -> Result<()> {
        if self.tls.is_none() && !self.listen.ip().is_loopback() {
            bail!("--api-listen {} without --api-tls-cert/--api-tls-key: plain HTTP is allowed on a loopback address only (tokens would cross the network in the clear)", self.listen);
        }
        Ok(())
    }
}

