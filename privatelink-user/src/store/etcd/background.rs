//! What the store does on its own runtime while the daemon works: watching the root
//! for other nodes' commits, and keeping this node's registration under its lease.

use super::{layout::key, OP_TIMEOUT};
use crate::{model::time::unix_now_ms, store::Beat};
use etcd_client::{Client, PutOptions, WatchOptions};
use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

/// A node's lease: it is alive while it beats (every second) within this many seconds.
const LEASE_TTL_SECS: i64 = 3;

/// How long after its last renewal a node still surely holds its lease: the TTL less
/// a second of margin (etcd counts the TTL from when the renewal reached it).
pub(super) const LEASE_SURE_MS: u64 = LEASE_TTL_SECS as u64 * 1000 - 1000;

/// Publish the root's revision whenever it changes; reconnect after a failure (and
/// publish then too: anything may have changed meanwhile).
pub(super) async fn watch(mut client: Client, tx: tokio::sync::watch::Sender<u64>, reachable: Arc<AtomicBool>) {
    loop {
        match client.watch(key("root"), Some(WatchOptions::new())).await {
            Ok((_watcher, mut stream)) => {
                tx.send_modify(|v| *v += 1);
                while let Ok(Some(resp)) = stream.message().await {
                    if resp.canceled() {
                        break;
                    }
                    if !resp.events().is_empty() {
                        tx.send_modify(|v| *v += 1);
                    }
                }
            }
            Err(e) => {
                reachable.store(false, Ordering::Relaxed);
                tracing::debug!(error = %e, "etcd watch");
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Keep this node registered: a lease of `LEASE_TTL_SECS`, kept alive and the
/// registration written every second; a new lease when the old one is lost.
pub(super) async fn keep_lease(mut client: Client, node: String, beat: Arc<Mutex<Option<Beat>>>, reachable: Arc<AtomicBool>, renewed_ms: Arc<AtomicU64>) {
    let mut lease: Option<i64> = None;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let Some(mut b) = beat.lock().ok().and_then(|b| b.clone()) else { continue };
        b.at_ms = unix_now_ms();
        let started = unix_now_ms();
        let step = async {
            let id = match lease {
                Some(id) => {
                    let (mut keeper, mut stream) = client.lease_keep_alive(id).await?;
                    keeper.keep_alive().await?;
                    match stream.message().await? {
                        Some(r) if r.ttl() > 0 => id,
                        _ => client.lease_grant(LEASE_TTL_SECS, None).await?.id(),
                    }
                }
                None => client.lease_grant(LEASE_TTL_SECS, None).await?.id(),
            };
            let value = serde_json::to_vec(&b).unwrap_or_default();
            client.put(key(&format!("nodes/{node}")), value, Some(PutOptions::new().with_lease(id))).await?;
            Ok::<i64, etcd_client::Error>(id)
        };
        match tokio::time::timeout(OP_TIMEOUT, step).await {
            Ok(Ok(id)) => {
                lease = Some(id);
                reachable.store(true, Ordering::Relaxed);
                // Counted from before the renewal was sent: never later than etcd's.
                renewed_ms.store(started, Ordering::Relaxed);
            }
            // The lease may be gone meanwhile (etcd answers "lease not found" to its
            // renewal): the next try takes a new one.
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "etcd lease");
                reachable.store(false, Ordering::Relaxed);
                lease = None;
            }
            Err(_) => {
                reachable.store(false, Ordering::Relaxed);
                lease = None;
            }
        }
    }
}
