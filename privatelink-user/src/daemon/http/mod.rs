//! The tenant API: JSON under `/v1`, over HTTPS (rustls) or, on a loopback address
//! only, plain HTTP. `auth` turns the bearer token into a caller, `routes` maps each
//! path to one function of `tenant` (reads, from the picture of the moment) or of the
//! writer (decisions), `error` maps every refusal to its status and JSON body, `tls`
//! does the handshakes, `openapi` describes it all from the types, `rate` holds each
//! token to its rate. Tenants reach the daemon only here; root keeps its socket.

mod auth;
mod error;
pub mod feed;
pub mod openapi;
pub mod rate;
mod routes;
mod tls;

pub use super::options::ApiOptions;
use super::{gateway::Writer, picture::Shown};
use anyhow::{Context, Result};
use axum::extract::connect_info::Connected;
use std::{net::SocketAddr, sync::Arc};

/// What every handler gets.
#[derive(Clone)]
pub struct App {
    pub shown: Shown,
    pub writer: Arc<Writer>,
    pub limiter: Arc<rate::Limiter>,
    /// The last hour of counters, for the graphs.
    pub history: Arc<super::history::History>,
    /// New events, for every watching stream.
    pub feed: Arc<feed::Feed>,
}

/// The client's address, for the audit trail.
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub SocketAddr);

impl Connected<axum::serve::IncomingStream<'_, tokio::net::TcpListener>> for Peer {
    fn connect_info(s: axum::serve::IncomingStream<'_, tokio::net::TcpListener>) -> Peer {
        Peer(*s.remote_addr())
    }
}

impl Connected<axum::serve::IncomingStream<'_, tls::Listener>> for Peer {
    fn connect_info(s: axum::serve::IncomingStream<'_, tls::Listener>) -> Peer {
        Peer(*s.remote_addr())
    }
}

/// Serve the tenant API until the task is dropped. The listener is bound (and the TLS
/// identity read) before this returns the serving future, so a bad address or
/// certificate stops the daemon at start.
pub async fn bind(opts: ApiOptions, app: App) -> Result<impl std::future::Future<Output = Result<()>>> {
    opts.check()?;
    let api = routes::router(app);
    let router = if opts.console { api.clone().merge(super::console::router(api, opts.grafana.clone())) } else { api };
    let router = router.into_make_service_with_connect_info::<Peer>();
    let acceptor = opts.tls.as_ref().map(|(cert, key)| tls::acceptor(cert, key)).transpose()?;
    let tcp = tokio::net::TcpListener::bind(opts.listen).await.with_context(|| format!("tenant API: listening on {}", opts.listen))?;
    Ok(async move {
        match acceptor {
            Some(acceptor) => {
                let listener = tls::Listener::new(tcp, acceptor)?;
                tracing::info!(addr = %opts.listen, "serving the tenant API over HTTPS");
                axum::serve(listener, router).await?;
            }
            None => {
                tracing::warn!(addr = %opts.listen, "serving the tenant API over plain HTTP on loopback: tokens are not encrypted");
                axum::serve(tcp, router).await?;
            }
        }
        Ok(())
    })
}
