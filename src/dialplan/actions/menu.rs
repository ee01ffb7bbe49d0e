//! `menu`: plays a prompt and routes on one key. A key press cuts the prompt short;
//! a wrong key or silence plays the invalid/timeout prompt and asks again, and after
//! `max_failures` the caller goes to `on_failure` (or is hung up on).

use std::time::Duration;

use super::{Cx, PromptItem};
use crate::dialplan::NodeId;
use crate::dialplan::interpreter::{Flow, Phase, Run};
use crate::media::dtmf::normalise_digit;
use crate::source::Fields;
use toml::de::{DeTable, DeValue};

pub const FIELDS: &[&str] = &[
    "type",
    "prompt",
    "options",
    "timeout",
    "max_failures",
    "invalid_prompt",
    "timeout_prompt",
    "on_failure",
];

#[derive(Debug)]
pub struct Menu {
    pub prompt: Vec<PromptItem>,
    pub options: Vec<(char, NodeId)>,
    pub timeout: Duration,
    pub max_failures: u32,
    pub invalid_prompt: Option<Vec<PromptItem>>,
    pub timeout_prompt: Option<Vec<PromptItem>>,
    pub on_failure: Option<NodeId>,
}

/// The ask → wait → reprompt cycle that menus and listen nodes share: play the
/// question, wait `timeout` for an answer, on a miss play the invalid or no-input
/// prompt and ask again, and after `max_failures` go to `on_failure` (or hang up with
/// `failed` as the reason).
pub struct Asking<'a> {
    pub prompt: &'a [PromptItem],
    pub timeout: Duration,
    pub max_failures: u32,
    pub invalid_prompt: &'a Option<Vec<PromptItem>>,
    pub timeout_prompt: &'a Option<Vec<PromptItem>>,
    pub on_failure: Option<NodeId>,
    pub failed: &'static str,
}

impl Asking<'_> {
    pub fn ask(&self, run: &mut Run) -> Flow {
        if run.play(self.prompt) {
            run.local.phase = Phase::Prompt;
        } else {
            run.local.phase = Phase::Wait;
            run.set_timer(self.timeout);
        }
        Flow::Stay
    }

    pub fn playback_done(&self, run: &mut Run) -> Flow {
        match run.local.phase {
            Phase::Prompt => {
                run.local.phase = Phase::Wait;
                run.set_timer(self.timeout);
                Flow::Stay
            }
            Phase::Reprompt => self.ask(run),
            Phase::Wait => Flow::Stay,
        }
    }

    pub fn miss(&self, run: &mut Run, miss: Miss) -> Flow {
        run.local.failures += 1;
        if run.local.failures >= self.max_failures {
            return match self.on_failure {
                Some(n) => Flow::Next(n),
                None => Flow::Hangup(self.failed.into()),
            };
        }
        let reprompt = match miss {
            Miss::Invalid => self.invalid_prompt,
            Miss::Timeout => self.timeout_prompt,
        };
        match reprompt {
            Some(p) if run.play(p) => {
                run.local.phase = Phase::Reprompt;
                Flow::Stay
            }
            _ => self.ask(run),
        }
    }
}

/// Parses a table of keys → node names (`options` of menus and listen nodes),
/// reporting bad keys, keys used twice and targets that are not nodes.
pub fn parse_keys(table: &DeTable<'_>, cx: &mut Cx<'_, '_>) -> Vec<(char, NodeId)> {
    let mut options: Vec<(char, NodeId)> = Vec::new();
    for (key, value) in table.iter() {
        let mut chars = key.get_ref().chars();
        let digit = match (chars.next().and_then(normalise_digit), chars.next()) {
            (Some(d), None) if options.iter().any(|(o, _)| *o == d) => {
                cx.src
                    .error(key.span(), format!("key `{d}` is used twice in this node"));
                continue;
            }
            (Some(d), None) => Some(d),
            _ => {
                cx.src.error(
                    key.span(),
                    format!("menu key `{}` must be one of 0-9, *, #, A-D", key.get_ref()),
                );
                None
            }
        };
        let target = match value.get_ref() {
            DeValue::String(s) => {
                cx.target_value(&toml::Spanned::new(value.span(), s.to_string()), "options")
            }
            _ => {
                cx.src.error(value.span(), "a menu option must name a node");
                None
            }
        };
        if let (Some(d), Some(t)) = (digit, target) {
            options.push((d, t));
        }
    }
    options
}

/// Why the caller failed a menu or collect attempt.
#[derive(Clone, Copy, Debug)]
pub enum Miss {
    Invalid,
    Timeout,
}

impl Menu {
    pub fn parse(f: &mut Fields<'_, '_>, cx: &mut Cx<'_, '_>) -> Option<Self> {
        let prompt = cx.required_prompt(f, "prompt");
        let options = match f.table(cx.src, "options") {
            Some((table, span)) => {
                if table.is_empty() {
                    cx.src.error(span, "a menu needs at least one option");
                }
                parse_keys(table, cx)
            }
            None => {
                cx.src.error(
                    f.span.clone(),
                    format!("{} needs an `options` table", f.what),
                );
                Vec::new()
            }
        };
        let timeout = f
            .duration(cx.src, "timeout")
            .unwrap_or(Duration::from_secs(5));
        let max_failures = f.count(cx.src, "max_failures", 20).unwrap_or(3).max(1);
        let invalid_prompt = cx.prompt(f, "invalid_prompt");
        let timeout_prompt = cx.prompt(f, "timeout_prompt");
        let on_failure = cx.target(f, "on_failure");
        Some(Self {
            prompt: prompt?,
            options,
            timeout,
            max_failures,
            invalid_prompt,
            timeout_prompt,
            on_failure,
        })
    }

    fn asking(&self) -> Asking<'_> {
        Asking {
            prompt: &self.prompt,
            timeout: self.timeout,
            max_failures: self.max_failures,
            invalid_prompt: &self.invalid_prompt,
            timeout_prompt: &self.timeout_prompt,
            on_failure: self.on_failure,
            failed: "menu-failed",
        }
    }

    fn ask(&self, run: &mut Run) -> Flow {
        self.asking().ask(run)
    }

    pub fn enter(&self, run: &mut Run) -> Flow {
        self.ask(run)
    }

    pub fn digit(&self, run: &mut Run, digit: char) -> Flow {
        run.stop_playback();
        run.clear_timer();
        match self.options.iter().find(|(d, _)| *d == digit) {
            Some((_, target)) => Flow::Next(*target),
            None => self.miss(run, Miss::Invalid),
        }
    }

    pub fn playback_done(&self, run: &mut Run) -> Flow {
        self.asking().playback_done(run)
    }

    pub fn timer(&self, run: &mut Run) -> Flow {
        self.miss(run, Miss::Timeout)
    }

    fn miss(&self, run: &mut Run, miss: Miss) -> Flow {
        self.asking().miss(run, miss)
    }
}
