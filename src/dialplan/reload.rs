//! Hot reload: watches the dialplan and audio directories (by polling, see `watch`)
//! and swaps in a new registry only when the whole directory validates.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{AudioRoot, Registry, load_dir};
use crate::media::prompt::PromptCache;
use crate::watch::{Changes, Reloading};

/// The live registry, shared by the SIP edge and replaced on reload.
pub type LiveDialplans = crate::watch::Live<Registry>;

/// Polls for changes until `stop` is cancelled; `ignore` is a directory inside
/// `dir` that another watcher owns (the knowledge base).
pub async fn watch(
    live: LiveDialplans,
    dir: PathBuf,
    audio: AudioRoot,
    prompts: Arc<PromptCache>,
    every: Duration,
    ignore: PathBuf,
    stop: CancellationToken,
) {
    let changes = Changes::new(vec![dir.clone(), audio.0.clone()]).ignoring(ignore);
    let says = Reloading {
        reloaded: "dialplans reloaded",
        rejected: "dialplan change rejected; the previous version stays live",
    };
    let load = move || load_dir(&dir, &audio, &prompts);
    crate::watch::reload(
        live,
        changes,
        every,
        stop,
        says,
        load,
        |registry: &Registry| {
            let versions: Vec<String> = registry
                .plans
                .iter()
                .map(|p| format!("{}@{}", p.file.display(), p.version))
                .collect();
            versions.join(", ")
        },
    )
    .await;
}
