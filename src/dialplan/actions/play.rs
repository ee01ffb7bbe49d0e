//! `play`: plays one or more prompts, then moves on. A key press cuts it short and
//! is kept for the next menu (type-ahead), unless `interruptible = false`.

use super::{Cx, PromptItem};
use crate::dialplan::NodeId;
use crate::dialplan::interpreter::{Flow, Run};
use crate::source::Fields;

pub const FIELDS: &[&str] = &["type", "prompt", "next", "interruptible"];

#[derive(Debug)]
pub struct Play {
    pub prompt: Vec<PromptItem>,
    pub next: NodeId,
    pub interruptible: bool,
}

impl Play {
    pub fn parse(f: &mut Fields<'_, '_>, cx: &mut Cx<'_, '_>) -> Option<Self> {
        let prompt = cx.required_prompt(f, "prompt");
        let next = cx.required_target(f, "next");
        let interruptible = f.bool(cx.src, "interruptible").unwrap_or(true);
        Some(Self {
            prompt: prompt?,
            next: next?,
            interruptible,
        })
    }

    pub fn enter(&self, run: &mut Run) -> Flow {
        if run.play(&self.prompt) {
            Flow::Stay
        } else {
            Flow::Next(self.next)
        }
    }

    pub fn digit(&self, run: &mut Run, digit: char) -> Flow {
        if !self.interruptible {
            return Flow::Stay;
        }
        run.stop_playback();
        run.typeahead.push_back(digit);
        Flow::Next(self.next)
    }
}
