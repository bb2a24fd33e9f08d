//! Events: recorded in the store (with the state change that caused them, or on their
//! own for health flips and limit episodes), logged, and POSTed as JSON to their
//! service's `notify_url` (the analogue of AWS endpoint connection notifications).
//! Webhooks are plain HTTP/1.1 through hyper; a delivery that fails is logged and
//! dropped, never retried, never blocks the daemon.

use super::gateway::Gateway;
use crate::model::state::Event;
use anyhow::Result;
use http_body_util::Full;
use hyper::{body::Bytes, Request};
use privatelink_common::DropReason;
use std::time::Duration;

impl Gateway {
    /// Record events (and send them to their service's webhook).
    pub(super) fn record(&mut self, mut events: Vec<Event>) -> Result<()> {
        self.store.record(&mut events)?;
        self.deliver(&events);
        Ok(())
    }

    /// Log events and POST each to its service's webhook (the word "announce" is kept
    /// for routes: `dataplane::announce`).
    pub(super) fn deliver(&self, events: &[Event]) {
        for e in events {
            tracing::info!(kind = %e.kind, subject = %e.subject, seq = e.seq, "{}", e.message);
            let url = e.service.as_ref().and_then(|s| self.state.services.get(s)).and_then(|s| s.spec.notify_url.clone());
            if let Some(url) = url {
                send(url, e.clone());
            }
        }
    }


    /// Connection-limit and SNAT-exhaustion episodes: an episode starts when refusals
    /// grow and ends at the first quiet second.
    pub(super) fn watch_limits(&mut self) -> Result<()> {
        let Some(dp) = &self.dp else { return Ok(()) };
        let mut events = Vec::new();
        let counters = dp.maps.endpoint_counters(self.state.endpoint_slots_used())?;
        for e in self.state.endpoints.values() {
            let stats = counters.stats(e.index);
            for reason in [DropReason::OverLimit, DropReason::SnatExhausted] {
                let n = stats.drop_count(reason);
                let (last, start) = self.episodes.entry((e.index, reason as u32)).or_insert((n, None));
                let what = if reason == DropReason::OverLimit { "connection_limit" } else { "snat_exhausted" };
                match (*start, n > *last) {
                    (None, true) => {
                        events.push(Event::new(&format!("endpoint.{what}"), &e.spec.name, Some(&e.service), format!("{}: new connections refused ({what})", e.spec.name)));
                        *start = Some(*last);
                    }
                    (Some(from), false) => {
                        events.push(Event::new(&format!("endpoint.{what}_ended"), &e.spec.name, Some(&e.service), format!("{}: {} connections refused in the episode ({what})", e.spec.name, n - from)));
                        *start = None;
                    }
                    _ => {}
                }
                *last = n;
            }
        }
        if !events.is_empty() {
            self.record(events)?;
        }
        Ok(())
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
