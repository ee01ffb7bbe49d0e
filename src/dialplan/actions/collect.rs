//! `collect`: gathers a number (an order number, a PIN) into a variable. Ends on the
//! terminator key, at `max_digits`, or after the inter-digit timeout; the result must
//! have `min_digits`..=`max_digits` digits and match `pattern` when one is given.

use std::time::Duration;

use regex::Regex;

use super::menu::{Asking, Miss};
use super::{Cx, PromptItem};
use crate::dialplan::NodeId;
use crate::dialplan::interpreter::{Flow, Phase, Run};
use crate::media::dtmf::normalise_digit;
use crate::source::Fields;

pub const FIELDS: &[&str] = &[
    "type",
    "prompt",
    "variable",
    "min_digits",
    "max_digits",
    "terminator",
    "first_digit_timeout",
    "inter_digit_timeout",
    "pattern",
    "max_failures",
    "invalid_prompt",
    "timeout_prompt",
    "next",
    "on_failure",
];

/// Longest number a caller may key in.
const MAX_DIGITS: u32 = 32;

#[derive(Debug)]
pub struct Collect {
    pub prompt: Vec<PromptItem>,
    pub variable: String,
    pub min_digits: u32,
    pub max_digits: u32,
    pub terminator: Option<char>,
    pub first_digit_timeout: Duration,
    pub inter_digit_timeout: Duration,
    pub pattern: Option<Regex>,
    pub max_failures: u32,
    pub invalid_prompt: Option<Vec<PromptItem>>,
    pub timeout_prompt: Option<Vec<PromptItem>>,
    pub next: NodeId,
    pub on_failure: Option<NodeId>,
}

impl Collect {
    pub fn parse(f: &mut Fields<'_, '_>, cx: &mut Cx<'_, '_>) -> Option<Self> {
        let prompt = cx.required_prompt(f, "prompt");
        let variable = f.required_string(cx.src, "variable");
        if let Some(v) = &variable
            && !is_identifier(v.get_ref())
        {
            cx.src
                .error(v.span(), "`variable` must be letters, digits and _ only");
        }
        let min_digits = f.count(cx.src, "min_digits", MAX_DIGITS).unwrap_or(1);
        let max_digits = f
            .count(cx.src, "max_digits", MAX_DIGITS)
            .unwrap_or(MAX_DIGITS);
        if min_digits > max_digits || max_digits == 0 {
            cx.src.error(
                f.span.clone(),
                format!("min_digits ({min_digits}) must be at most max_digits ({max_digits}), and max_digits above 0"),
            );
        }
        let terminator = match f.string(cx.src, "terminator") {
            None => Some('#'),
            Some(t) if t.get_ref().is_empty() => None,
            Some(t) => {
                let mut chars = t.get_ref().chars();
                match (chars.next().and_then(normalise_digit), chars.next()) {
                    (Some(c), None) => Some(c),
                    _ => {
                        cx.src.error(
                            t.span(),
                            "`terminator` must be one key (usually \"#\") or \"\" for none",
                        );
                        None
                    }
                }
            }
        };
        let first_digit_timeout = f
            .duration(cx.src, "first_digit_timeout")
            .unwrap_or(Duration::from_secs(8));
        let inter_digit_timeout = f
            .duration(cx.src, "inter_digit_timeout")
            .unwrap_or(Duration::from_secs(3));
        let pattern = f
            .string(cx.src, "pattern")
            .and_then(|p| match Regex::new(p.get_ref()) {
                Ok(r) => Some(r),
                Err(e) => {
                    cx.src.error(
                        p.span(),
                        format!("`pattern` is not a valid regular expression: {e}"),
                    );
                    None
                }
            });
        let max_failures = f.count(cx.src, "max_failures", 20).unwrap_or(3).max(1);
        let invalid_prompt = cx.prompt(f, "invalid_prompt");
        let timeout_prompt = cx.prompt(f, "timeout_prompt");
        let next = cx.required_target(f, "next");
        let on_failure = cx.target(f, "on_failure");
        Some(Self {
            prompt: prompt?,
            variable: variable?.into_inner(),
            min_digits,
            max_digits,
            terminator,
            first_digit_timeout,
            inter_digit_timeout,
            pattern,
            max_failures,
            invalid_prompt,
            timeout_prompt,
            next: next?,
            on_failure,
        })
    }

    /// The shared ask/wait/reprompt cycle; the wait for the first key is
    /// `first_digit_timeout` (later keys use `inter_digit_timeout`, see `digit`).
    fn asking(&self) -> Asking<'_> {
        Asking {
            prompt: &self.prompt,
            timeout: self.first_digit_timeout,
            max_failures: self.max_failures,
            invalid_prompt: &self.invalid_prompt,
            timeout_prompt: &self.timeout_prompt,
            on_failure: self.on_failure,
            failed: "collect-failed",
        }
    }

    fn ask(&self, run: &mut Run) -> Flow {
        run.local.buffer.clear();
        self.asking().ask(run)
    }

    pub fn enter(&self, run: &mut Run) -> Flow {
        self.ask(run)
    }

    pub fn digit(&self, run: &mut Run, digit: char) -> Flow {
        run.stop_playback();
        run.clear_timer();
        if run.local.phase == Phase::Reprompt {
            // Typing over the "try again" prompt starts the new attempt.
            run.local.buffer.clear();
        }
        run.local.phase = Phase::Wait;
        if Some(digit) == self.terminator {
            return self.finish(run);
        }
        run.local.buffer.push(digit);
        if run.local.buffer.len() as u32 >= self.max_digits {
            return self.finish(run);
        }
        run.set_timer(self.inter_digit_timeout);
        Flow::Stay
    }

    pub fn playback_done(&self, run: &mut Run) -> Flow {
        // A reprompt only ends with the phase still `Reprompt` when no key was typed
        // over it, so the buffer (cleared by the miss) is empty: asking again as the
        // shared cycle does is the same as `ask`.
        self.asking().playback_done(run)
    }

    pub fn timer(&self, run: &mut Run) -> Flow {
        if run.local.buffer.is_empty() {
            self.miss(run, Miss::Timeout)
        } else {
            self.finish(run)
        }
    }

    fn finish(&self, run: &mut Run) -> Flow {
        let value = std::mem::take(&mut run.local.buffer);
        let len = value.chars().count() as u32;
        let ok = (self.min_digits..=self.max_digits).contains(&len)
            && self.pattern.as_ref().is_none_or(|p| p.is_match(&value));
        if !ok {
            return self.miss(run, Miss::Invalid);
        }
        run.vars.insert(self.variable.clone(), value);
        Flow::Next(self.next)
    }

    fn miss(&self, run: &mut Run, miss: Miss) -> Flow {
        run.local.buffer.clear();
        self.asking().miss(run, miss)
    }
}

pub fn is_identifier(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}
