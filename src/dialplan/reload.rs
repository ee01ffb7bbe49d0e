//! Hot reload: watches the dialplan and audio directories (by polling, see `watch`)
//! and swaps in a new registry only when the whole directory validates.

use std::path::PathBuf;
use std::sync::Arc;

use super::{AudioRoot, Registry, load_dir};
use crate::media::prompt::PromptCache;
use crate::watch::{Changes, Reloading, Schedule};

/// The live registry, shared by the SIP edge and replaced on reload.
pub type LiveDialplans = crate::watch::Live<Registry>;

/// Polls for changes until `stop` is cancelled; `ignore` is a directory inside
/// `dir` that another watcher owns (the knowledge base).
pub async fn watch(
    live: LiveDialplans,
    dir: PathBuf,
    audio: AudioRoot,
    prompts: Arc<PromptCache>,
    ignore: PathBuf,
    schedule: Schedule,
) {
    let Schedule {
        every,
        stop,
        report,
    } = schedule;
    let changes = Changes::new(vec![dir.clone(), audio.0.clone()]).ignoring(ignore);
    let says = Reloading {
        reloaded: "dialplans reloaded",
        rejected: "dialplan change rejected; the previous version stays live",
        report: report.map(|tx| ("dialplans", tx)),
    };
    let load = move || load_dir(&dir, &audio, &prompts);
    crate::watch::reload(live, changes, every, stop, says, load, describe).await;
}

/// The dialplans' versions and a summary, as the log and the store record them.
pub fn describe(registry: &Registry) -> (String, String) {
    let versions: Vec<&str> = registry.plans.iter().map(|p| p.version.as_str()).collect();
    let files: Vec<String> = registry
        .plans
        .iter()
        .filter_map(|p| p.file.file_name())
        .map(|f| f.to_string_lossy().into_owned())
        .collect();
    (
        versions.join(","),
        format!("{} plans: {}", registry.len(), files.join(", ")),
    )
}
