//! Noticing edits to admin files (dialplans, prompts, knowledge bases).
//!
//! Polling (a fingerprint of names, sizes and modification times) is used instead of
//! inotify: it behaves the same on every filesystem, including network mounts and
//! editors that replace files by renaming, and costs a few `stat` calls per poll.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

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
