//! The health checker at work: due probes run (bounded) on the runtime, and each
//! verdict that flips a backend is recorded through the store (`model::health`), then
//! reconciled into the maps and, where a service says so, its flows cut.

use super::{
    gateway::Gateway,
    health::{probe, Target},
};
use crate::model::health;
use std::{sync::Arc, time::Duration};
use tokio::sync::Mutex;

impl Gateway {
    /// A health probe finished: on a flip, record it, rewrite the backend tables, and
    /// cut the backend's flows where the service says so.
    pub fn health_result(&mut self, target: &Target, result: Result<(), String>) -> anyhow::Result<()> {
        let Some(flip) = self.checker.record(target, result) else { return Ok(()) };
        let users = self.checker.users(target);
        // The flip, the flows it cuts and its events are recorded together; in a fleet
        // another node may have recorded the same flip already (then nothing is).
        let checker = &self.checker;
        let open: Vec<&String> = users.iter().filter(|svc| self.state.services.get(*svc).is_some_and(|s| s.spec.failing_open(&|n, ip| checker.is_up(n, ip)))).collect();
        let verdict = health::Flip { ip: target.ip, up: flip.up, error: flip.error.as_deref() };
        let changed = self.transact(|st| Ok(health::record(st, &users, &verdict, &open)))?;
        if self.dp.is_some() {
            self.sync()?;
            if changed {
                self.finish_cuts()?;
            }
        }
        Ok(())
    }

    /// Targets due for a health probe.
    pub fn due_probes(&mut self) -> Vec<Target> {
        self.checker.due(std::time::Instant::now())
    }
}

/// Most probes in flight at once, whatever the number of targets.
const MAX_PROBES: usize = 64;

/// Run due health probes (bounded) and feed their results back.
pub(super) async fn health_loop(gw: Arc<Mutex<Gateway>>) {
    let sem = Arc::new(tokio::sync::Semaphore::new(MAX_PROBES));
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tick.tick().await;
        let due = gw.lock().await.due_probes();
        for t in due {
            let (gw, sem) = (gw.clone(), sem.clone());
            tokio::spawn(async move {
                let Ok(_permit) = sem.acquire().await else { return };
                let r = probe(&t).await;
                if let Err(e) = gw.lock().await.health_result(&t, r) {
                    tracing::error!(error = %format!("{e:#}"), "applying a health result");
                }
            });
        }
    }
}
