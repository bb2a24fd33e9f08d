//! The daemon: wires the model, the data plane and the store into a running gateway.
//! `gateway` holds the state and the loaded data path, `apply` makes changes (two
//! phases), `views` answers what the CLI shows, `health` checks backends and
//! `health_loop` runs its probes and records their verdicts, `fleet` joins the fleet
//! and keeps this node's liveness and routes, `metrics` serves Prometheus, `events`
//! records and delivers events (logs and webhooks), `sweeper` expires idle flows and
//! audits the slot accounting on its own thread, `handler` maps each API request to
//! one of them, and `api` is the wire protocol the CLI speaks.
//! Uses every other layer; the CLI reaches it only through `api`'s types on a socket.

pub mod api;
mod apply;
mod events;
mod fleet;
mod gateway;
mod handler;
pub mod health;
mod health_loop;
pub mod metrics;
mod sweeper;
pub use sweeper::REST_PER_PASS;
mod views;

pub use gateway::Gateway;

use anyhow::{bail, Context, Result};
use api::{Request, Response};
use std::{path::PathBuf, sync::Arc, time::Duration};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::{UnixListener, UnixStream},
    sync::{Mutex, Notify},
};

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
}

/// The host's name: a node's default name.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).ok().filter(|h| !h.is_empty()).unwrap_or_else(|| "gateway".into())
}

fn is_root() -> bool {
    // SAFETY: trivial libc call.
    unsafe { libc::geteuid() == 0 }
}

/// Run the daemon in the foreground until SIGTERM/SIGINT or `down`.
pub async fn run(opts: Options) -> Result<()> {
    if !is_root() {
        bail!("the daemon must run as root (it loads XDP programs and pins BPF objects)");
    }
    let gw = Gateway::open(opts.clone())?;
    let listener = listen_socket(&opts.socket).await?;
    tracing::info!(socket = %opts.socket.display(), node = %opts.node, store = %gw.store_description(), bpffs = %opts.bpffs.display(), "privatelink daemon listening");
    let socket = opts.socket.clone();
    let sweep = gw.sweep.clone();
    sweep.set_timeouts(gw.state.gateway.timeouts.into());
    let sweep_thread = sweeper::spawn(sweep.clone(), SWEEP_INTERVAL);
    let gw = Arc::new(Mutex::new(gw));
    let stop = Arc::new(Notify::new());

    let checks = tokio::spawn(health_loop::health_loop(gw.clone()));
    let follow = tokio::spawn(fleet::fleet_loop(gw.clone()));
    let metrics_server = opts.metrics.map(|addr| spawn_metrics(addr, gw.clone()));

    let ticker = spawn_ticker(gw.clone());

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = accepted?;
                let (gw, stop) = (gw.clone(), stop.clone());
                tokio::spawn(async move {
                    if let Err(e) = serve(stream, gw, stop).await {
                        tracing::warn!(error = %format!("{e:#}"), "API client");
                    }
                });
            }
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
            _ = stop.notified() => break,
        }
    }
    ticker.abort();
    sweep.stop();
    let _ = sweep_thread.join();
    checks.abort();
    follow.abort();
    if let Some(m) = metrics_server {
        m.abort();
    }
    std::fs::remove_file(&socket).ok();
    // Pinned links and maps stay: the data path keeps running without the daemon.
    tracing::info!("privatelink daemon stopped (the data path stays attached)");
    Ok(())
}

/// The API socket, owner-only; a stale one (no daemon answers on it) is replaced.
async fn listen_socket(socket: &std::path::Path) -> Result<UnixListener> {
    if socket.exists() {
        if UnixStream::connect(socket).await.is_ok() {
            bail!("another daemon is already listening on {}", socket.display());
        }
        std::fs::remove_file(socket).with_context(|| format!("removing the stale socket {}", socket.display()))?;
    }
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let listener = UnixListener::bind(socket).with_context(|| format!("listening on {}", socket.display()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// The Prometheus endpoint on `addr`, each scrape a snapshot taken under the lock.
fn spawn_metrics(addr: std::net::SocketAddr, gw: Arc<Mutex<Gateway>>) -> tokio::task::JoinHandle<()> {
    let snap: metrics::Snap = Arc::new(move || {
        let g = gw.clone();
        Box::pin(async move {
            g.lock().await.snapshot().unwrap_or_else(|e| {
                tracing::error!(error = %format!("{e:#}"), "metrics snapshot");
                metrics::Snapshot::default()
            })
        })
    });
    tokio::spawn(async move {
        if let Err(e) = metrics::serve(addr, snap).await {
            tracing::error!(error = %format!("{e:#}"), "the metrics server stopped");
        }
    })
}

/// Routes, drift repair and limit episodes, each second (the sweeper has its thread).
fn spawn_ticker(gw: Arc<Mutex<Gateway>>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(TICK_INTERVAL);
        loop {
            tick.tick().await;
            if let Err(e) = gw.lock().await.tick() {
                tracing::error!(error = %format!("{e:#}"), "periodic work");
            }
        }
    })
}

async fn serve(stream: UnixStream, gw: Arc<Mutex<Gateway>>, stop: Arc<Notify>) -> Result<()> {
    let uid = stream.peer_cred()?.uid();
    let (r, mut w) = stream.into_split();
    let mut lines = BufReader::new(r).lines();
    while let Some(line) = lines.next_line().await? {
        let (resp, down) = if uid != 0 {
            (Response::Err { error: "only root may use the privatelink API".into(), spec_errors: vec![] }, false)
        } else {
            match serde_json::from_str::<Request>(&line) {
                Ok(req) => {
                    let down = req == Request::Down;
                    (gw.lock().await.handle(req), down)
                }
                Err(e) => (Response::Err { error: format!("bad request: {e}"), spec_errors: vec![] }, false),
            }
        };
        let mut out = serde_json::to_vec(&resp)?;
        out.push(b'\n');
        w.write_all(&out).await?;
        if down && matches!(resp, Response::Ok { .. }) {
            stop.notify_one();
        }
    }
    Ok(())
}
