//! Dialplans: the TOML files admins write to shape the hotline.
//!
//! A directory of `*.toml` files is read into a [`Registry`] (called number → plan).
//! Loading validates everything a call could trip over (targets, reachability,
//! prompts, durations, patterns) and reports it as `file:line:col: message`. The
//! registry is swapped atomically on reload; a call keeps the `Arc<Dialplan>` it
//! started with, so an edit never changes a call in progress.

pub mod actions;
pub mod interpreter;
mod load;
pub mod reload;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use crate::source::Diagnostic;
pub use interpreter::{Input, Interpreter, Moment, Output};
pub use load::{LoadError, load_dir, load_text};

use crate::media::prompt::Prompt;

/// Index of a node in its dialplan.
pub type NodeId = usize;

/// One validated dialplan, ready to run calls.
#[derive(Debug)]
pub struct Dialplan {
    pub name: String,
    pub file: PathBuf,
    /// Called numbers (DIDs) this plan answers.
    pub numbers: Vec<String>,
    /// Answers calls to numbers no plan claims.
    pub is_default: bool,
    pub language: String,
    /// The TTS voice for text prompts and spoken answers (`None`: the language's default).
    pub voice: Option<String>,
    pub start: NodeId,
    /// Ring time before answering (180 Ringing is sent meanwhile).
    pub answer_after: Duration,
    pub nodes: Vec<Node>,
    /// Prompts for the digits 0–9, for reading numbers back.
    pub digit_prompts: Option<Vec<Arc<Prompt>>>,
    /// Hash of the file's text, to tell versions apart in logs and call records.
    pub version: String,
}

#[derive(Debug)]
pub struct Node {
    pub name: String,
    pub action: actions::Action,
}

impl Dialplan {
    /// Whether any node listens for speech (the server then needs the speech models).
    pub fn listens(&self) -> bool {
        self.nodes.iter().any(|n| {
            matches!(
                n.action,
                actions::Action::Listen(_) | actions::Action::Ask(_)
            )
        })
    }

    /// Whether any node speaks the dialogue core's answers (`ask`).
    pub fn asks(&self) -> bool {
        self.nodes
            .iter()
            .any(|n| matches!(n.action, actions::Action::Ask(_)))
    }

    pub fn node_id(&self, name: &str) -> Option<NodeId> {
        self.nodes.iter().position(|n| n.name == name)
    }
}

/// All live dialplans, keyed by the numbers they answer.
#[derive(Debug, Default)]
pub struct Registry {
    pub plans: Vec<Arc<Dialplan>>,
    by_number: HashMap<String, usize>,
    default: Option<usize>,
}

impl Registry {
    pub fn new(plans: Vec<Arc<Dialplan>>) -> Self {
        let mut by_number = HashMap::new();
        let mut default = None;
        for (i, plan) in plans.iter().enumerate() {
            for n in &plan.numbers {
                by_number.insert(n.clone(), i);
            }
            if plan.is_default {
                default = Some(i);
            }
        }
        Self {
            plans,
            by_number,
            default,
        }
    }

    /// The plan for a called number (the Request-URI user part), else the default.
    pub fn lookup(&self, called: &str) -> Option<Arc<Dialplan>> {
        self.by_number
            .get(called)
            .or(self.default.as_ref())
            .map(|&i| self.plans[i].clone())
    }

    pub fn len(&self) -> usize {
        self.plans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.plans.is_empty()
    }
}

/// Where prompts live, shared by every plan of a directory.
#[derive(Clone, Debug)]
pub struct AudioRoot(pub PathBuf);

impl AudioRoot {
    pub fn resolve(&self, relative: &str) -> PathBuf {
        let p = Path::new(relative);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.0.join(p)
        }
    }
}
