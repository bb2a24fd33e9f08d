//! The daemon: wires the model, the data plane and the store into a running gateway,
//! as owners that each hold their own state. Writers serialize through `gateway` (the
//! writer, composed of `record`: store, recorded state, retries; `datapath`: maps,
//! links, drift repair; `fleet`: membership and routes; `health`: the checker;
//! `limits`: limit episodes); after each change it publishes a `picture`, from which
//! `views` and `metrics` answer readers without waiting. `events` delivers what the
//! recorder committed (logs, webhooks), `sweeper` expires idle flows and audits the
//! slot accounting on its own thread, `tasks` runs the periodic work, `handler` maps
//! each socket request to a read or a change, `api` is the wire protocol the CLI
//! speaks, `tenant` what an account may see and ask (through `model::authz`),
//! `http` the tenant API that serves it, `console` the screens on that API and
//! `history` the last hour of counters they draw; `options` is what the daemon is started with. Uses every other layer; the CLI reaches it
//! only through `api`'s types on a socket (root) or the tenant API (accounts).

pub mod api;
mod console;
mod datapath;
mod events;
mod fleet;
mod gateway;
mod handler;
pub mod health;
mod history;
pub mod http;
mod limits;
mod options;
pub mod metrics;
mod picture;
mod record;
pub mod replication;
mod sweeper;
mod tasks;
mod tenant;
pub use sweeper::REST_PER_PASS;
mod views;

pub use gateway::{Gateway, Writer};
pub use options::*;
pub use picture::{Picture, Shown};

use anyhow::{bail, Context, Result};
use api::{Request, Response};
use std::sync::Arc;
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::{UnixListener, UnixStream},
    sync::Notify,
};

fn is_root() -> bool {
    // SAFETY: trivial libc call.
    unsafe { libc::geteuid() == 0 }
}

/// Run the daemon in the foreground until SIGTERM/SIGINT or `down`.
pub async fn run(opts: Options) -> Result<()> {
    if !is_root() {
        bail!("the daemon must run as root (it loads XDP programs and pins BPF objects)");
    }
    if let Some(api) = &opts.api {
        api.check()?;
    }
    let gw = Gateway::open(opts.clone())?;
    let listener = listen_socket(&opts.socket).await?;
    tracing::info!(socket = %opts.socket.display(), node = %opts.node, store = %gw.shown().now().store.describe(), bpffs = %opts.bpffs.display(), "privatelink daemon listening");
    let socket = opts.socket.clone();
    let shown = gw.shown();
    let sweep = gw.sweeper();
    let repl = gw.replication();
    let sweep_thread = sweeper::spawn(sweep.clone(), SWEEP_INTERVAL);
    let changes = shown.now().store.changes();
    let writer = Arc::new(Writer::new(gw));
    let stop = Arc::new(Notify::new());

    let checks = tasks::health_checks(writer.clone());
    let follow = tasks::follow_fleet(writer.clone(), changes);
    let ticker = tasks::ticker(writer.clone());
    let replicating = opts.replication_listen.map(|listen| {
        let (a, b) = (repl.clone(), repl);
        let sending = tokio::spawn(replication::send(a, shown.clone(), opts.node.clone(), listen));
        let serving = tokio::spawn(replication::serve(b, shown.clone(), opts.node.clone(), listen));
        [sending, serving]
    });
    let metrics_server = opts.metrics.map(|addr| spawn_metrics(addr, shown.clone()));
    let api_server = match opts.api.clone() {
        Some(api) => {
            let limiter = Arc::new(http::rate::Limiter::new(api.rate));
            let history = Arc::new(history::History::default());
            let (feed, feeding) = http::feed::Feed::start(shown.clone());
            let serving = http::bind(api, http::App { shown: shown.clone(), writer: writer.clone(), limiter, history: history.clone(), feed }).await?;
            let sampling = tasks::sample_history(shown.clone(), history);
            Some(tokio::spawn(async move {
                let _sampling = AbortOnDrop(sampling);
                let _feeding = AbortOnDrop(feeding);
                if let Err(e) = serving.await {
                    tracing::error!(error = %format!("{e:#}"), "the tenant API stopped");
                }
            }))
        }
        None => None,
    };

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    // Stopped by a signal (the data path stays: a restart) or by `down`.
    let signalled = loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = accepted?;
                let (writer, shown, stop) = (writer.clone(), shown.clone(), stop.clone());
                tokio::spawn(async move {
                    if let Err(e) = serve(stream, writer, shown, stop).await {
                        tracing::warn!(error = %format!("{e:#}"), "API client");
                    }
                });
            }
            _ = term.recv() => break true,
            _ = tokio::signal::ctrl_c() => break true,
            _ = stop.notified() => break false,
        }
    };
    if signalled {
        if let Err(e) = writer.run(|g| g.leaving()).await {
            tracing::warn!(error = %format!("{e:#}"), "telling the fleet this node restarts (its lease runs out meanwhile: the others record it down)");
        }
    }
    sweep.stop();
    let _ = sweep_thread.join();
    // Aborted and awaited: none of them is polled again while the runtime shuts down
    // (a timer polled then panics).
    for task in [ticker, checks, follow].into_iter().chain([metrics_server, api_server].into_iter().flatten()).chain(replicating.into_iter().flatten()) {
        task.abort();
        let _ = task.await;
    }
    std::fs::remove_file(&socket).ok();
    // Pinned links and maps stay: the data path keeps running without the daemon.
    tracing::info!("privatelink daemon stopped (the data path stays attached)");
    Ok(())
}

/// A task that ends with its holder.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
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

/// The Prometheus endpoint on `addr`, each scrape from the picture of the moment.
fn spawn_metrics(addr: std::net::SocketAddr, shown: Shown) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if let Err(e) = metrics::serve(addr, shown).await {
            tracing::error!(error = %format!("{e:#}"), "the metrics server stopped");
        }
    })
}

async fn serve(stream: UnixStream, writer: Arc<Writer>, shown: Shown, stop: Arc<Notify>) -> Result<()> {
    let uid = stream.peer_cred()?.uid();
    let (r, mut w) = stream.into_split();
    let mut lines = BufReader::new(r).lines();
    while let Some(line) = lines.next_line().await? {
        let (resp, down) = if uid != 0 {
            (Response::error("only root may use the privatelink API".into()), false)
        } else {
            match serde_json::from_str::<Request>(&line) {
                Ok(req) => {
                    let down = req == Request::Down;
                    (handler::handle(req, &writer, &shown).await, down)
                }
                Err(e) => (Response::error(format!("bad request: {e}")), false),
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
