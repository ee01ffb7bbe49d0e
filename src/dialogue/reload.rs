//! The live knowledge base: indexed once per version, swapped atomically when an edit
//! validates; a bad edit is logged with its `file:line:col` and the old version stays.

use std::path::PathBuf;
use std::sync::Arc;

use super::kb::load_dir;
use super::matcher::Matcher;
use super::semantic::Encoder;
use crate::source::{Diagnostic, Diagnostics};
use crate::watch::{Changes, Reloading, Schedule};

/// The live knowledge base, indexed.
pub type LiveKb = crate::watch::Live<Matcher>;

/// Polls `dir` for changes until `stop` is cancelled. With an encoder, a new version's
/// new example questions are embedded before it goes live.
pub async fn watch(live: LiveKb, dir: PathBuf, encoder: Option<Arc<Encoder>>, schedule: Schedule) {
    let Schedule {
        every,
        stop,
        report,
    } = schedule;
    let changes = Changes::new(vec![dir.clone()]);
    let says = Reloading {
        reloaded: "knowledge base reloaded",
        rejected: "knowledge-base change rejected; the previous version stays live",
        report: report.map(|tx| ("kb", tx)),
    };
    let load = move || {
        let kb = Arc::new(load_dir(&dir)?);
        Matcher::with_encoder(kb, encoder.clone()).map_err(|e| Diagnostics {
            diagnostics: vec![Diagnostic {
                file: dir.clone(),
                line: 1,
                col: 1,
                message: e.to_string(),
            }],
        })
    };
    crate::watch::reload(live, changes, every, stop, says, load, describe).await;
}

/// A knowledge base's version and summary, as the log and the store record them.
pub fn describe(m: &Matcher) -> (String, String) {
    (
        m.kb.version.clone(),
        format!("{} intents", m.kb.intents.len()),
    )
}
