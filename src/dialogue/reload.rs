//! The live knowledge base: indexed once per version, swapped atomically when an edit
//! validates; a bad edit is logged with its `file:line:col` and the old version stays.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::kb::load_dir;
use super::matcher::Matcher;

/// The live knowledge base, indexed.
pub type LiveKb = crate::watch::Live<Matcher>;

/// Polls `dir` for changes until `stop` is cancelled.
pub async fn watch(live: LiveKb, dir: PathBuf, every: Duration, stop: CancellationToken) {
    let mut changes = crate::watch::Changes::new(vec![dir.clone()]);
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        if !changes.changed() {
            continue;
        }
        let d = dir.clone();
        let loaded =
            tokio::task::spawn_blocking(move || load_dir(&d).map(|kb| Matcher::new(Arc::new(kb))))
                .await;
        match loaded {
            Ok(Ok(m)) => {
                let (version, intents) = (m.kb.version.clone(), m.kb.intents.len());
                live.replace(m);
                tracing::info!(dir = %dir.display(), version, intents, "knowledge base reloaded");
            }
            Ok(Err(e)) => {
                for d in &e.diagnostics {
                    tracing::error!(file = %d.file.display(), line = d.line, col = d.col, "{d}");
                }
                tracing::error!(dir = %dir.display(), "knowledge-base change rejected; the previous version stays live");
            }
            Err(e) => tracing::error!(error = %e, "knowledge-base reload task failed"),
        }
    }
}
