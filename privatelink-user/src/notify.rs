//! Webhooks: a service's events POSTed as JSON to its `notify_url` (the analogue of
//! AWS endpoint connection notifications). Plain HTTP/1.1 through hyper; a delivery
//! that fails is logged and dropped, never retried, never blocks the daemon.

use crate::state::Event;
use http_body_util::Full;
use hyper::{body::Bytes, Request};
use std::time::Duration;

/// (host:port, path) of an `http://` URL.
pub fn parse_url(url: &str) -> Option<(String, String)> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains(['@', ' ']) {
        return None;
    }
    let authority = if authority.contains(':') { authority.to_string() } else { format!("{authority}:80") };
    Some((authority, path.to_string()))
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
    let (authority, path) = parse_url(url).ok_or_else(|| anyhow::anyhow!("not an http:// URL"))?;
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

#[cfg(test)]
mod tests {
    #[test]
    fn urls() {
        assert_eq!(super::parse_url("http://10.0.0.1:8080/hook"), Some(("10.0.0.1:8080".into(), "/hook".into())));
        assert_eq!(super::parse_url("http://example"), Some(("example:80".into(), "/".into())));
        assert_eq!(super::parse_url("https://x/"), None);
        assert_eq!(super::parse_url("http:///x"), None);
    }
}
