//! `ask`: a conversation with the dialogue core on the phone.
//!
//! Plays its prompt, listens, and hands every utterance to the same engine web chat,
//! WeChat and SMS use; the answer (the knowledge base's short, speakable text) is
//! spoken back with the plan's voice and the node listens again, so a caller can ask
//! several questions, be asked for an order number, or be asked "do you mean A or B?".
//! When the engine hands over to a person the node goes to `on_handover` (the queue
//! is in `${queue}`); after a goodbye it goes to `on_goodbye` (or hangs up). Keys in
//! `options` leave at any time ("or press 0 for a person"). Silence: `timeout_prompt`
//! and `max_failures` as in a menu, then `on_failure`. A caller with an open topic
//! from another channel (linked to their number) is first asked about it.

use std::time::Duration;

use super::menu::{Asking, Miss, parse_keys};
use super::{Cx, PromptItem};
use crate::dialplan::NodeId;
use crate::dialplan::interpreter::{Flow, Phase, Run};
use crate::source::Fields;

pub const FIELDS: &[&str] = &[
    "type",
    "prompt",
    "language",
    "options",
    "timeout",
    "max_failures",
    "timeout_prompt",
    "on_failure",
    "on_handover",
    "on_goodbye",
    "interruptible",
];

/// How long to wait for a transcript once the caller has started talking.
const HEARING_LIMIT: Duration = Duration::from_secs(25);

#[derive(Debug)]
pub struct Ask {
    pub prompt: Vec<PromptItem>,
    pub language: String,
    pub options: Vec<(char, NodeId)>,
    pub timeout: Duration,
    pub max_failures: u32,
    pub timeout_prompt: Option<Vec<PromptItem>>,
    pub on_failure: Option<NodeId>,
    pub on_handover: NodeId,
    pub on_goodbye: Option<NodeId>,
    pub interruptible: bool,
}

impl Ask {
    pub fn parse(f: &mut Fields<'_, '_>, cx: &mut Cx<'_, '_>) -> Option<Self> {
        let prompt = cx.required_prompt(f, "prompt");
        let language = cx.language(f, &["zh", "en"]);
        let options = f
            .table(cx.src, "options")
            .map(|(t, _)| parse_keys(t, cx))
            .unwrap_or_default();
        let timeout = f
            .duration(cx.src, "timeout")
            .unwrap_or(Duration::from_secs(8));
        let max_failures = f.count(cx.src, "max_failures", 20).unwrap_or(3).max(1);
        let timeout_prompt = cx.prompt(f, "timeout_prompt");
        let on_failure = cx.target(f, "on_failure");
        let on_handover = cx.required_target(f, "on_handover");
        let on_goodbye = cx.target(f, "on_goodbye");
        let interruptible = f.bool(cx.src, "interruptible").unwrap_or(true);
        Some(Self {
            prompt: prompt?,
            language,
            options,
            timeout,
            max_failures,
            timeout_prompt,
            on_failure,
            on_handover: on_handover?,
            on_goodbye,
            interruptible,
        })
    }

    /// Silence works as in a menu: the no-input prompt, the question again, and
    /// `on_failure` after `max_failures`.
    fn asking(&self) -> Asking<'_> {
        Asking {
            prompt: &self.prompt,
            timeout: self.timeout,
            max_failures: self.max_failures,
            invalid_prompt: &None,
            timeout_prompt: &self.timeout_prompt,
            on_failure: self.on_failure,
            failed: "ask-failed",
        }
    }

    pub fn enter(&self, run: &mut Run) -> Flow {
        run.listen(&self.language);
        match run.resume_question() {
            Some(question) if run.say(&question, &self.language) => {
                run.local.phase = Phase::Prompt;
                Flow::Stay
            }
            _ => self.asking().ask(run),
        }
    }

    fn wait(&self, run: &mut Run) {
        run.local.phase = Phase::Wait;
        run.set_timer(self.timeout);
    }

    pub fn digit(&self, run: &mut Run, digit: char) -> Flow {
        if run.local.after_speech.is_some() || (!self.interruptible && run.is_playing()) {
            return Flow::Stay;
        }
        match self.options.iter().find(|(d, _)| *d == digit) {
            Some((_, target)) => Flow::Next(*target),
            None => Flow::Stay,
        }
    }

    pub fn speech_started(&self, run: &mut Run) -> Flow {
        // A closing answer ("I'll pass you to a colleague") is heard out.
        if run.local.after_speech.is_some() {
            return Flow::Stay;
        }
        if self.interruptible {
            run.stop_playback();
            run.local.phase = Phase::Wait;
        }
        run.set_timer(HEARING_LIMIT);
        Flow::Stay
    }

    pub fn heard(&self, run: &mut Run, text: &str, confidence: f32) -> Flow {
        if run.local.after_speech.is_some() {
            return Flow::Stay;
        }
        run.vars.insert("heard".into(), text.to_string());
        run.vars
            .insert("heard_confidence".into(), format!("{confidence:.2}"));
        if text.trim().is_empty() {
            if !run.is_playing() {
                self.wait(run);
            }
            return Flow::Stay;
        }
        let Some(reply) = run.converse(text) else {
            // No dialogue engine on this call: a person can help.
            return Flow::Next(self.on_handover);
        };
        run.stop_playback();
        run.clear_timer();
        run.local.failures = 0;
        if let Some(intent) = &reply.intent {
            run.vars.insert("intent".into(), intent.clone());
        }
        let after = if let Some(queue) = &reply.handover {
            run.vars.insert("queue".into(), queue.clone());
            if let Some(reason) = &reply.reason {
                run.vars.insert("handover_reason".into(), reason.clone());
            }
            Some(Flow::Next(self.on_handover))
        } else if reply.intent.as_deref() == Some("goodbye") {
            Some(
                self.on_goodbye
                    .map_or(Flow::Hangup("goodbye".into()), Flow::Next),
            )
        } else {
            None
        };
        run.local.phase = Phase::Prompt;
        let spoke = run.say(&reply.text, &self.language);
        match after {
            Some(flow) if !spoke => flow,
            Some(flow) => {
                run.local.after_speech = Some(flow);
                Flow::Stay
            }
            None => {
                if !spoke {
                    self.wait(run);
                }
                Flow::Stay
            }
        }
    }

    pub fn asr_unavailable(&self, run: &mut Run) -> Flow {
        if !super::tell_busy(run, &self.language, true) && !run.is_playing() {
            self.wait(run);
        }
        Flow::Stay
    }

    pub fn playback_done(&self, run: &mut Run) -> Flow {
        if let Some(flow) = run.local.after_speech.take() {
            return flow;
        }
        self.asking().playback_done(run)
    }

    /// Silence after the prompt or an answer.
    pub fn timer(&self, run: &mut Run) -> Flow {
        self.asking().miss(run, Miss::Timeout)
    }
}
