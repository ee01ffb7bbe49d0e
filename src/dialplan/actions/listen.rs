//! `listen`: plays a prompt and routes on what the caller says or presses.
//!
//! Speech is recognised (Whisper) and matched against `keywords`: each key is one or
//! more phrases separated by `|`, matched case-insensitively anywhere in the
//! transcript; the first entry that matches wins. Keys work at the same time through
//! `options`, as in a menu ("say 'opening hours' or press 2"). Talking or pressing a
//! key stops the prompt unless `interruptible = false`. What was heard is kept in the
//! variable `variable` (default `heard`). No match, silence and failures work as in
//! a menu. When recognition is saturated the node keeps waiting for keys.

use std::time::Duration;

use toml::de::DeValue;

use super::menu::{Asking, Miss, parse_keys};
use super::{Cx, PromptItem};
use crate::dialplan::NodeId;
use crate::dialplan::interpreter::{Flow, Phase, Run};
use crate::source::Fields;

pub const FIELDS: &[&str] = &[
    "type",
    "prompt",
    "language",
    "keywords",
    "options",
    "variable",
    "timeout",
    "max_failures",
    "no_match_prompt",
    "timeout_prompt",
    "on_failure",
    "interruptible",
];

/// How long to wait for a transcript once the caller has started talking: the longest
/// utterance plus recognition, so a lost answer cannot hold the call forever.
const HEARING_LIMIT: Duration = Duration::from_secs(25);

#[derive(Debug)]
pub struct Listen {
    pub prompt: Vec<PromptItem>,
    pub language: String,
    /// (lower-cased phrases, target), in file order.
    pub keywords: Vec<(Vec<String>, NodeId)>,
    pub options: Vec<(char, NodeId)>,
    pub variable: String,
    pub timeout: Duration,
    pub max_failures: u32,
    pub no_match_prompt: Option<Vec<PromptItem>>,
    pub timeout_prompt: Option<Vec<PromptItem>>,
    pub on_failure: Option<NodeId>,
    pub interruptible: bool,
}

impl Listen {
    pub fn parse(f: &mut Fields<'_, '_>, cx: &mut Cx<'_, '_>) -> Option<Self> {
        let prompt = cx.required_prompt(f, "prompt");
        let language = cx.language(f, &["zh", "en", "auto"]);
        let mut keywords = Vec::new();
        let mut routes_given = false;
        if let Some((table, span)) = f.table(cx.src, "keywords") {
            routes_given = true;
            for (key, value) in table.iter() {
                let phrases: Vec<String> = key
                    .get_ref()
                    .split('|')
                    .map(|p| p.trim().to_lowercase())
                    .filter(|p| !p.is_empty())
                    .collect();
                if phrases.is_empty() {
                    cx.src
                        .error(key.span(), "a keyword entry needs at least one phrase");
                }
                let target = match value.get_ref() {
                    DeValue::String(s) => cx
                        .target_value(&toml::Spanned::new(value.span(), s.to_string()), "keywords"),
                    _ => {
                        cx.src
                            .error(value.span(), "a keyword entry must name a node");
                        None
                    }
                };
                if let Some(t) = target
                    && !phrases.is_empty()
                {
                    keywords.push((phrases, t));
                }
            }
            if table.is_empty() {
                cx.src.error(span, "`keywords` needs at least one entry");
            }
        }
        let mut options = Vec::new();
        if let Some((table, _)) = f.table(cx.src, "options") {
            routes_given = true;
            options = parse_keys(table, cx);
        }
        if !routes_given {
            cx.src.error(
                f.span.clone(),
                format!("{} needs `keywords` (and may have `options`)", f.what),
            );
        }
        let variable = f
            .string(cx.src, "variable")
            .map_or_else(|| "heard".to_string(), |v| v.into_inner());
        let timeout = f
            .duration(cx.src, "timeout")
            .unwrap_or(Duration::from_secs(6));
        let max_failures = f.count(cx.src, "max_failures", 20).unwrap_or(3).max(1);
        let no_match_prompt = cx.prompt(f, "no_match_prompt");
        let timeout_prompt = cx.prompt(f, "timeout_prompt");
        let on_failure = cx.target(f, "on_failure");
        let interruptible = f.bool(cx.src, "interruptible").unwrap_or(true);
        Some(Self {
            prompt: prompt?,
            language,
            keywords,
            options,
            variable,
            timeout,
            max_failures,
            no_match_prompt,
            timeout_prompt,
            on_failure,
            interruptible,
        })
    }

    fn asking(&self) -> Asking<'_> {
        Asking {
            prompt: &self.prompt,
            timeout: self.timeout,
            max_failures: self.max_failures,
            invalid_prompt: &self.no_match_prompt,
            timeout_prompt: &self.timeout_prompt,
            on_failure: self.on_failure,
            failed: "listen-failed",
        }
    }

    fn ask(&self, run: &mut Run) -> Flow {
        self.asking().ask(run)
    }

    pub fn enter(&self, run: &mut Run) -> Flow {
        run.listen(&self.language);
        self.ask(run)
    }

    pub fn digit(&self, run: &mut Run, digit: char) -> Flow {
        if !self.interruptible && run.is_playing() {
            return Flow::Stay;
        }
        run.stop_playback();
        run.clear_timer();
        match self.options.iter().find(|(d, _)| *d == digit) {
            Some((_, target)) => Flow::Next(*target),
            None => self.miss(run, Miss::Invalid),
        }
    }

    pub fn speech_started(&self, run: &mut Run) -> Flow {
        if self.interruptible {
            run.stop_playback();
            run.local.phase = Phase::Wait;
        }
        // Hearing: the no-input timer stops; a transcript (or the limit) will come.
        run.set_timer(HEARING_LIMIT);
        Flow::Stay
    }

    /// Where the caller's words lead, if one of the keywords was said.
    pub fn route(&self, text: &str) -> Option<NodeId> {
        let said = text.to_lowercase();
        if said.trim().is_empty() {
            return None;
        }
        self.keywords
            .iter()
            .find(|(phrases, _)| phrases.iter().any(|p| said.contains(p.as_str())))
            .map(|(_, target)| *target)
    }

    pub fn heard(&self, run: &mut Run, text: &str, confidence: f32) -> Flow {
        run.vars.insert(self.variable.clone(), text.to_string());
        run.vars.insert(
            format!("{}_confidence", self.variable),
            format!("{confidence:.2}"),
        );
        if let Some(target) = self.route(text) {
            run.stop_playback();
            run.clear_timer();
            return Flow::Next(target);
        }
        if run.is_playing() {
            // Noise or chatter while a prompt that cannot be interrupted plays.
            return Flow::Stay;
        }
        run.clear_timer();
        self.miss(run, Miss::Invalid)
    }

    pub fn asr_unavailable(&self, run: &mut Run) -> Flow {
        // Say so (keys still work), then keep waiting for the usual time; the
        // wait starts when the notice has been played.
        if !super::tell_busy(run, &self.language, false) && !run.is_playing() {
            run.local.phase = Phase::Wait;
            run.set_timer(self.timeout);
        }
        Flow::Stay
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
