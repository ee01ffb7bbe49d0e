//! The live knowledge base: indexed once per version, swapped atomically when an edit
//! validates; a bad edit is logged with its `file:line:col` and the old version stays.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::kb::load_dir;
use super::matcher::Matcher;
use crate::watch::{Changes, Reloading};

/// The live knowledge base, indexed.
pub type LiveKb = crate::watch::Live<Matcher>;

/// Polls `dir` for changes until `stop` is cancelled.
pub async fn watch(live: LiveKb, dir: PathBuf, every: Duration, stop: CancellationToken) {
    let changes = Changes::new(vec![dir.clone()]);
    let says = Reloading {
        reloaded: "knowledge base reloaded",
        rejected: "knowledge-base change rejected; the previous version stays live",
    };
    let load = move || load_dir(&dir).map(|kb| Matcher::new(Arc::new(kb)));
    crate::watch::reload(live, changes, every, stop, says, load, |m| {
        format!("{} ({} intents)", m.kb.version, m.kb.intents.len())
    })
    .await;
}
