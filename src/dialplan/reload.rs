//! Hot reload: watches the dialplan and audio directories (by polling, see `watch`)
//! and swaps in a new registry only when the whole directory validates.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{AudioRoot, Registry, load_dir};
use crate::media::prompt::PromptCache;

/// The live registry, shared by the SIP edge and replaced on reload.
pub type LiveDialplans = crate::watch::Live<Registry>;

/// Polls for changes until `stop` is cancelled.
pub async fn watch(
    live: LiveDialplans,
    dir: PathBuf,
    audio: AudioRoot,
    prompts: Arc<PromptCache>,
    every: Duration,
    ignore: PathBuf,
    stop: CancellationToken,
) {
    let mut changes =
        crate::watch::Changes::new(vec![dir.clone(), audio.0.clone()]).ignoring(ignore);
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
        let (d, a, p) = (dir.clone(), audio.clone(), prompts.clone());
        match tokio::task::spawn_blocking(move || load_dir(&d, &a, &p)).await {
            Ok(Ok(registry)) => {
                let versions: Vec<String> = registry
                    .plans
                    .iter()
                    .map(|p| format!("{}@{}", p.file.display(), p.version))
                    .collect();
                live.replace(registry);
                tracing::info!(dir = %dir.display(), plans = ?versions, "dialplans reloaded");
            }
            Ok(Err(e)) => {
                for d in &e.diagnostics {
                    tracing::error!(file = %d.file.display(), line = d.line, col = d.col, "{d}");
                }
                tracing::error!(dir = %dir.display(), "dialplan change rejected; the previous version stays live");
            }
            Err(e) => tracing::error!(error = %e, "dialplan reload task failed"),
        }
    }
}
