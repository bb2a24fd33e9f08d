//! Delivering events once recorded (`record` commits them): logged, and POSTed as JSON
//! to their service's `notify_url` (the analogue of AWS endpoint connection notifications).
//! Webhooks are plain HTTP/1.1 through hyper; a delivery that fails is logged and
//! dropped, never retried, never blocks the daemon.

use crate::model::state::{Event, State};
use http_body_util::Full;
use hyper::{body::Bytes, Request};
use std::time::Duration;

/// Log events and POST each to its service's webhook (the word "announce" is kept for
/// routes: `dataplane::announce`).
pub fn deliver(st: &State, events: &[Event]) {
    for e in events {
        tracing::info!(kind = %e.kind, subject = %e.subject, seq = e.seq, "{}", e.message);
        let url = e.service.as_ref().and_then(|s| st.services.get(s)).and_then(|s| s.spec.notify_url.clone());
        if let Some(url) = url {
            send(url, e.clone());
        }
    }
}

/// POST `event` to `url` (fire and forget, 3 s budget).
pub fn send(url: String, event: Event) {
    tokio::spawn(async move {
        let r = tokio::time::timeout(Duration::from_secs(3), post(&url, &event)).await;
        match r {
            Ok(Ok(status)) if (200..300).contains(&status) => {}
            Ok(Ok(status)) => tracing::warn!(%url, status, "webhook answered with an error status"),
            Ok(Err(e)) => tracing::warn!(%url, error = %e, "webhook delivery failed"),
            Err(_) => tracing::warn!(%url, "webhook delivery timed out"),
        }
    });
}

async fn post(url: &str, event: &Event) -> anyhow::Result<u16> {
    let (authority, path) = crate::model::spec::parse_http_url(url).ok_or_else(|| anyhow::anyhow!("not an http:// URL"))?;
    let stream = tokio::net::TcpStream::connect(&authority).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let body = serde_json::to_vec(event)?;
    let req = Request::post(path)
        .header("host", authority)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))?;
    Ok(sender.send_request(req).await?.status().as_u16())
}
