//! One reader of the event log for every watcher: a task reads what was recorded after
//! the last event it saw, twice a second, on a blocking thread, and hands each new
//! event to every stream (`/v1/events?watch=true`), which keeps the caller's. A
//! hundred consoles watching cost one store read per half second, not a hundred, and
//! never block the threads that answer requests.

use crate::{daemon::picture::Shown, model::state::Event};
use std::sync::Arc;
use tokio::sync::broadcast;

/// How often the log is read for new events.
pub const EVERY: std::time::Duration = std::time::Duration::from_millis(500);
/// Events a slow stream may fall behind by before it reads the log itself.
const BACKLOG: usize = 4096;

pub struct Feed {
    tx: broadcast::Sender<Arc<Event>>,
    /// The last event read from the log (0: none yet).
    last: std::sync::atomic::AtomicU64,
}

impl Feed {
    /// The feed, and its task (which ends with the returned handle's abort).
    pub fn start(shown: Shown) -> (Arc<Feed>, tokio::task::JoinHandle<()>) {
        let (tx, _) = broadcast::channel(BACKLOG);
        let feed = Arc::new(Feed { tx: tx.clone(), last: Default::default() });
        let me = feed.clone();
        let task = tokio::spawn(async move {
            // The log as it is now is every stream's own first read; what comes after
            // it is sent.
            let (mut last, mut caught_up) = (0, false);
            loop {
                let store = shown.now().store.clone();
                let from = last;
                match tokio::task::spawn_blocking(move || store.events(from, 10_000)).await {
                    Ok(Ok(new)) => {
                        let full = new.len() == 10_000;
                        for e in new {
                            last = e.seq;
                            me.last.store(last, std::sync::atomic::Ordering::Relaxed);
                            if caught_up {
                                // None subscribed: nobody to tell.
                                let _unheard = tx.send(Arc::new(e));
                            }
                        }
                        if full {
                            continue;
                        }
                        caught_up = true;
                    }
                    Ok(Err(e)) => tracing::warn!(error = %e, "reading the event log for the watchers"),
                    Err(e) => tracing::warn!(error = %e, "the event log's reader"),
                }
                tokio::time::sleep(EVERY).await;
            }
        });
        (feed, task)
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.tx.subscribe()
    }

    /// The sequence number of the last event the feed has read from the log: a stream
    /// subscribed now and starting after it misses nothing.
    pub fn last(&self) -> u64 {
        self.last.load(std::sync::atomic::Ordering::Relaxed)
    }
}
