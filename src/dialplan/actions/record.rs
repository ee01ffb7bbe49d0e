//! `record`: takes a message from the caller (voicemail). The prompt plays
//! ("leave your message after the tone"), then the call records the caller until
//! the terminator key, `max_length`, or the caller hangs up (the message is kept
//! then too), and the plan goes on at `next`. The call stores the recording
//! sealed and notes it on the call's ticket.

use std::time::Duration;

use super::{Cx, PromptItem};
use crate::dialplan::NodeId;
use crate::dialplan::interpreter::{Flow, Output, Phase, Run};
use crate::media::dtmf::normalise_digit;
use crate::source::Fields;

pub const FIELDS: &[&str] = &["type", "prompt", "max_length", "terminator", "next"];

/// The longest message a plan may ask for (memory per call is bounded by it).
pub const MAX_LENGTH: Duration = Duration::from_secs(300);

#[derive(Debug)]
pub struct Record {
    pub prompt: Option<Vec<PromptItem>>,
    pub max_length: Duration,
    pub terminator: char,
    pub next: NodeId,
}

impl Record {
    pub fn parse(f: &mut Fields<'_, '_>, cx: &mut Cx<'_, '_>) -> Option<Self> {
        let prompt = cx.prompt(f, "prompt");
        let max_length = match f.duration(cx.src, "max_length") {
            None => Duration::from_secs(120),
            Some(d) if d >= Duration::from_secs(1) && d <= MAX_LENGTH => d,
            Some(_) => {
                cx.src.error(
                    f.span.clone(),
                    format!(
                        "{}: `max_length` must be between 1s and {}s",
                        f.what,
                        MAX_LENGTH.as_secs()
                    ),
                );
                MAX_LENGTH
            }
        };
        let terminator = match f.string(cx.src, "terminator") {
            None => '#',
            Some(t) => {
                let mut chars = t.get_ref().chars();
                match (chars.next().and_then(normalise_digit), chars.next()) {
                    (Some(c), None) => c,
                    _ => {
                        cx.src
                            .error(t.span(), "`terminator` must be one key (usually \"#\")");
                        '#'
                    }
                }
            }
        };
        let next = cx.required_target(f, "next");
        Some(Self {
            prompt,
            max_length,
            terminator,
            next: next?,
        })
    }

    pub fn enter(&self, run: &mut Run) -> Flow {
        match &self.prompt {
            Some(p) if run.play(p) => Flow::Stay,
            _ => self.start(run),
        }
    }

    fn start(&self, run: &mut Run) -> Flow {
        run.local.phase = Phase::Wait;
        run.emit(Output::Record);
        run.set_timer(self.max_length);
        Flow::Stay
    }

    pub fn playback_done(&self, run: &mut Run) -> Flow {
        if run.local.phase == Phase::Prompt {
            self.start(run)
        } else {
            Flow::Stay
        }
    }

    pub fn digit(&self, run: &mut Run, digit: char) -> Flow {
        match run.local.phase {
            // A key over the prompt skips to the tone's end: recording starts.
            Phase::Prompt => {
                run.stop_playback();
                self.start(run)
            }
            _ if digit == self.terminator => self.stop(run),
            _ => Flow::Stay,
        }
    }

    pub fn timer(&self, run: &mut Run) -> Flow {
        self.stop(run)
    }

    fn stop(&self, run: &mut Run) -> Flow {
        run.clear_timer();
        run.emit(Output::StopRecording);
        Flow::Next(self.next)
    }
}
