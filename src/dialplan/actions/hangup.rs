//! `hangup`: optionally says goodbye, then ends the call.

use super::{Cx, PromptItem};
use crate::dialplan::interpreter::{Flow, Run};
use crate::source::Fields;

pub const FIELDS: &[&str] = &["type", "prompt"];

/// End reason recorded when a dialplan hangs up.
pub const REASON: &str = "dialplan-hangup";

#[derive(Debug)]
pub struct Hangup {
    pub prompt: Option<Vec<PromptItem>>,
}

impl Hangup {
    pub fn parse(f: &mut Fields<'_, '_>, cx: &mut Cx<'_, '_>) -> Option<Self> {
        Some(Self {
            prompt: cx.prompt(f, "prompt"),
        })
    }

    pub fn enter(&self, run: &mut Run) -> Flow {
        match &self.prompt {
            Some(p) if run.play(p) => Flow::Stay,
            _ => Flow::Hangup(REASON.into()),
        }
    }
}
