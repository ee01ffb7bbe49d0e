//! Noticing edits to admin files (dialplans, prompts, knowledge bases).
//!
//! Polling (a fingerprint of names, sizes and modification times) is used instead of
//! inotify: it behaves the same on every filesystem, including network mounts and
//! editors that replace files by renaming, and costs a few `stat` calls per poll.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use crate::source::Diagnostics;

/// The live version of something admins edit (dialplans, the knowledge base): readers
/// take an `Arc` of the current version and keep it as long as they need; a reload
/// swaps in the next version atomically.
#[derive(Debug, Default)]
pub struct Live<T> {
    inner: Arc<RwLock<Arc<T>>>,
}

impl<T> Clone for Live<T> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<T> Live<T> {
    pub fn new(value: T) -> Self {
        Self {
            inner: Arc::new(RwLock::new(Arc::new(value))),
        }
    }

    pub fn current(&self) -> Arc<T> {
        match self.inner.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Swaps in `value` only while the current version passes `still`; whether it did.
    pub fn replace_if(&self, still: impl FnOnce(&T) -> bool, value: T) -> bool {
        let mut g = match self.inner.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if !still(&g) {
            return false;
        }
        *g = Arc::new(value);
        true
    }

    pub fn replace(&self, value: T) {
        let value = Arc::new(value);
        match self.inner.write() {
            Ok(mut g) => *g = value,
            Err(poisoned) => *poisoned.into_inner() = value,
        }
    }
}

/// Names, sizes and modification times of every file under the given roots.
pub fn fingerprint(roots: &[&Path]) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
    let mut out = Vec::new();
    let mut stack: Vec<PathBuf> = roots.iter().map(|p| p.to_path_buf()).collect();
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                stack.push(path);
            } else {
                out.push((path, meta.len(), meta.modified().ok()));
            }
        }
    }
    out.sort();
    out
}

/// Remembers the last fingerprint of some roots and says when it changes.
pub struct Changes {
    roots: Vec<PathBuf>,
    ignore: Vec<PathBuf>,
    last: Vec<(PathBuf, u64, Option<SystemTime>)>,
}

impl Changes {
    pub fn new(roots: Vec<PathBuf>) -> Self {
        let mut c = Self {
            roots,
            ignore: Vec::new(),
            last: Vec::new(),
        };
        c.last = c.snapshot();
        c
    }

    /// Leaves out files under `dir` (another watcher's, such as the knowledge base
    /// inside the dialplan directory).
    pub fn ignoring(mut self, dir: PathBuf) -> Self {
        self.ignore.push(dir);
        self.last = self.snapshot();
        self
    }

    fn snapshot(&self) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
        let mut f = fingerprint(&self.roots.iter().map(PathBuf::as_path).collect::<Vec<_>>());
        f.retain(|(p, _, _)| !self.ignore.iter().any(|i| p.starts_with(i)));
        f
    }

    /// Whether anything changed since the last call (or since `new`).
    pub fn changed(&mut self) -> bool {
        let now = self.snapshot();
        if now == self.last {
            return false;
        }
        self.last = now;
        true
    }
}

/// What a reload loop says in its log lines.
pub struct Reloading {
    /// "dialplans reloaded", "knowledge base reloaded".
    pub reloaded: &'static str,
    /// "dialplan change rejected; ...".
    pub rejected: &'static str,
    /// Where each reload is reported (the server records it in the store's audit
    /// log); a full queue drops the report, never the reload.
    pub report: Option<(&'static str, tokio::sync::mpsc::Sender<Reloaded>)>,
}

/// How a watcher runs: how often it polls, when it stops, where it reports.
#[derive(Clone, Debug)]
pub struct Schedule {
    pub every: Duration,
    pub stop: CancellationToken,
    pub report: Option<tokio::sync::mpsc::Sender<Reloaded>>,
}

/// A reload, reported: what was reloaded ("kb", "dialplans"), and either the
/// version and summary that went live, or why the change was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reloaded {
    pub what: &'static str,
    pub outcome: Result<(String, String), String>,
}

fn report(says: &Reloading, outcome: Result<(String, String), String>) {
    if let Some((what, tx)) = &says.report
        && tx.try_send(Reloaded { what, outcome }).is_err()
    {
        tracing::warn!(what, "reload report dropped: the recorder is behind");
    }
}

/// Polls `changes` every `every` until `stop`; on a change builds the next version
/// with `load` on a blocking thread and swaps it into `live` only if it validated.
/// `describe` says what went live: (version, summary).
pub async fn reload<T, L>(
    live: Live<T>,
    mut changes: Changes,
    every: Duration,
    stop: CancellationToken,
    says: Reloading,
    load: L,
    describe: fn(&T) -> (String, String),
) where
    T: Send + Sync + 'static,
    L: Fn() -> Result<T, Diagnostics> + Clone + Send + 'static,
{
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
        match tokio::task::spawn_blocking(load.clone()).await {
            Ok(Ok(next)) => {
                let (version, summary) = describe(&next);
                live.replace(next);
                tracing::info!(version = %version, summary = %summary, "{}", says.reloaded);
                report(&says, Ok((version, summary)));
            }
            Ok(Err(e)) => {
                for d in &e.diagnostics {
                    tracing::error!(file = %d.file.display(), line = d.line, col = d.col, "{d}");
                }
                tracing::error!("{}", says.rejected);
                report(&says, Err(e.to_string()));
            }
            Err(e) => tracing::error!(error = %e, "reload task failed"),
        }
    }
}
