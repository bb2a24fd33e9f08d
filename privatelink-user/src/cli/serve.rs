//! `privatelink daemon`'s arguments, and the options they make. The daemon's own
//! options are `daemon::Options`; this file only parses.

use crate::daemon;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct DaemonArgs {
    #[arg(long, default_value = daemon::DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
    /// A directory on a bpffs (mounted if missing) for pinned maps and links. Pins
    /// must outlive the daemon for flows to survive a restart.
    #[arg(long, default_value = daemon::DEFAULT_BPFFS)]
    pub bpffs: PathBuf,
    /// Serve Prometheus metrics on http://ADDR/metrics (e.g. 127.0.0.1:9469).
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<std::net::SocketAddr>,
    /// Every SECS seconds, re-attach XDP links detached by hand and rewrite map
    /// entries that differ from the recorded state (logged and counted).
    #[arg(long, value_name = "SECS", default_value_t = daemon::DEFAULT_REPAIR_INTERVAL_SECS, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub repair_interval: u64,
    /// Log lines as text or JSON (to stderr).
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Least level logged (error, warn, info, debug, trace); RUST_LOG overrides.
    #[arg(long, default_value = "info")]
    pub log_level: String,
    /// Keep the state in etcd, shared by a fleet of gateways:
    /// etcd://HOST:PORT[,HOST:PORT...] (default: the embedded store in --state-dir).
    #[arg(long, value_name = "URL")]
    pub store: Option<crate::store::StoreUrl>,
    /// This gateway's name in the fleet (default: the host name).
    #[arg(long, value_name = "NAME", value_parser = node_name)]
    pub node: Option<String>,
    /// The zone this gateway is in.
    #[arg(long, value_name = "ZONE", value_parser = node_name)]
    pub zone: Option<String>,
    /// Serve the tenant API on ADDR (HTTPS with --api-tls-cert/--api-tls-key; plain
    /// HTTP on a loopback address only).
    #[arg(long, value_name = "ADDR")]
    pub api_listen: Option<std::net::SocketAddr>,
    /// The tenant API's certificate chain (PEM).
    #[arg(long, value_name = "FILE", requires = "api_tls_key")]
    pub api_tls_cert: Option<PathBuf>,
    /// The tenant API's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "api_tls_cert")]
    pub api_tls_key: Option<PathBuf>,
    /// Requests a second each token may make on this node (bursts of as many);
    /// over it: 429 with Retry-After.
    #[arg(long, value_name = "N", default_value_t = daemon::http::rate::DEFAULT_RATE, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub api_rate: u32,
    /// Do not serve the console (served at / beside the tenant API by default).
    #[arg(long, requires = "api_listen")]
    pub no_console: bool,
    /// The operator's Grafana dashboard, linked from the console's node screen.
    #[arg(long, value_name = "URL", requires = "api_listen", value_parser = grafana_url)]
    pub grafana_url: Option<String>,
    /// How long the routes this node announces outlive a daemon that stopped (or
    /// stopped answering) without `privatelink down`: a restart within it withdraws
    /// nothing and resets no flow (e.g. 10s, 1m; at least 1s).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = restart_grace)]
    pub restart_grace: std::time::Duration,
    /// Stream this node's flows to its buddy, and hold the flows of the nodes whose
    /// buddy it is, on this address of the management network (e.g. 10.255.0.1:7946;
    /// needs --store: a gateway alone has no buddy). Registered with the node: its
    /// peers connect to it and it connects to theirs from its address.
    #[arg(long, value_name = "ADDR", requires = "store", value_parser = replication_listen)]
    pub replication_listen: Option<std::net::SocketAddr>,
}

impl DaemonArgs {
    /// The daemon's options, serving its API on `socket`.
    pub fn options(self, socket: PathBuf) -> daemon::Options {
        let api = self.api_listen.map(|listen| daemon::http::ApiOptions {
            listen,
            tls: self.api_tls_cert.zip(self.api_tls_key),
            rate: self.api_rate,
            console: !self.no_console,
            grafana: self.grafana_url,
        });
        daemon::Options {
            state_dir: self.state_dir,
            bpffs: self.bpffs,
            socket,
            metrics: self.metrics,
            repair_interval: std::time::Duration::from_secs(self.repair_interval),
            store: self.store,
            node: self.node.unwrap_or_else(daemon::hostname),
            zone: self.zone,
            api,
            restart_grace: self.restart_grace,
            replication_listen: self.replication_listen,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// A node or zone name: 1-63 letters, digits, '-', '_' and '.'.
fn node_name(s: &str) -> Result<String, String> {
    if (1..=63).contains(&s.len()) && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
        Ok(s.to_string())
    } else {
        Err(format!("`{s}`: 1-63 letters, digits, '-', '_' or '.'"))
    }
}

/// An http(s) address without quotes or spaces (it becomes a link).
fn grafana_url(s: &str) -> Result<String, String> {
    let ok = (s.starts_with("https://") || s.starts_with("http://")) && s.len() <= 2048 && s.chars().all(|c| c.is_ascii_graphic() && !matches!(c, '"' | '\'' | '<' | '>' | '`'));
    if ok { Ok(s.to_string()) } else { Err(format!("`{s}` is not an http:// or https:// address")) }
}

/// An IPv4 address and port that a peer can reach (not 0.0.0.0: it is registered).
fn replication_listen(s: &str) -> Result<std::net::SocketAddr, String> {
    let a: std::net::SocketAddr = s.parse().map_err(|e| format!("`{s}`: {e} (an address and port, e.g. 10.255.0.1:7946)"))?;
    match a {
        std::net::SocketAddr::V4(v4) if v4.ip().is_unspecified() || v4.ip().is_broadcast() || v4.ip().is_multicast() => Err(format!("`{s}`: the buddy connects to this address: give the node's own address on the management network")),
        std::net::SocketAddr::V4(v4) if v4.port() == 0 => Err(format!("`{s}`: a port is needed")),
        std::net::SocketAddr::V4(_) => Ok(a),
        std::net::SocketAddr::V6(_) => Err(format!("`{s}`: IPv4 only")),
    }
}

/// 1 s to 1 h.
fn restart_grace(s: &str) -> Result<std::time::Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("`{s}`: {e}"))?;
    if (std::time::Duration::from_secs(1)..=std::time::Duration::from_secs(3600)).contains(&d) {
        Ok(d)
    } else {
        Err(format!("`{s}`: between 1s and 1h"))
    }
}
