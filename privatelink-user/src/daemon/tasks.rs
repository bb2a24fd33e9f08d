//! The daemon's periodic work, each a task that borrows the writer for one step at a
//! time: the once-a-second tick (routes, drift repair, limit episodes), following the
//! fleet's store, and the health probes (run outside the lock, their verdicts fed
//! back). The sweeper has a thread of its own (`sweeper`).

use super::{
    gateway::Writer,
    health::probe,
    options::TICK_INTERVAL,
};
use std::{sync::Arc, time::Duration};

/// Routes, drift repair and limit episodes, each second.
pub fn ticker(writer: Arc<Writer>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(TICK_INTERVAL);
        loop {
            tick.tick().await;
            if let Err(e) = writer.run(|g| g.tick()).await {
                tracing::error!(error = %format!("{e:#}"), "periodic work");
            }
        }
    })
}

/// Follow the store: catch up whenever it says the state changed, and beat every
/// second (with a catch-up too, so nothing waits on a missed notification).
pub fn follow_fleet(writer: Arc<Writer>, changes: Option<tokio::sync::watch::Receiver<u64>>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let Some(mut changes) = changes else { return };
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                r = changes.changed() => if r.is_err() { return },
                _ = tick.tick() => {
                    if let Err(e) = writer.run(|g| g.fleet_tick()).await {
                        tracing::warn!(error = %format!("{e:#}"), "fleet liveness");
                    }
                }
            }
            if let Err(e) = writer.run(|g| g.catch_up()).await {
                tracing::warn!(error = %format!("{e:#}"), "following the shared state");
            }
        }
    })
}

/// Most probes in flight at once, whatever the number of targets.
const MAX_PROBES: usize = 64;

/// Run due health probes (bounded) and feed their results back.
pub fn health_checks(writer: Arc<Writer>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let sem = Arc::new(tokio::sync::Semaphore::new(MAX_PROBES));
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tick.tick().await;
            let due = writer.quietly(|g| g.due_probes()).await;
            for t in due {
                let (writer, sem) = (writer.clone(), sem.clone());
                tokio::spawn(async move {
                    let Ok(_permit) = sem.acquire().await else { return };
                    let r = probe(&t).await;
                    if let Err(e) = writer.quietly(|g| g.health_result(&t, r)).await {
                        tracing::error!(error = %format!("{e:#}"), "applying a health result");
                    }
                });
            }
        }
    })
}

/// The console's graphs: every endpoint's counters each `history::STEP`, read from the
/// picture of the moment (never waits for the writer).
pub fn sample_history(shown: super::picture::Shown, history: Arc<super::history::History>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(super::history::STEP);
        loop {
            tick.tick().await;
            let pic = shown.now();
            if let Err(e) = history.sample(&pic, crate::model::time::unix_now_ms()) {
                tracing::warn!(error = %format!("{e:#}"), "sampling the counters for the graphs");
            }
        }
    })
}
