//! `transfer`: hands the caller to a human agent queue.
//!
//! Until an agent system is configured the interpreter announces the transfer (the
//! call logs that no agent system is configured), plays the node's message and
//! continues at `next`, or hangs up when there is none.

use super::{Cx, PromptItem};
use crate::dialplan::NodeId;
use crate::dialplan::interpreter::{Flow, Output, Run};
use crate::source::Fields;

pub const FIELDS: &[&str] = &["type", "queue", "prompt", "next"];

#[derive(Debug)]
pub struct Transfer {
    pub queue: String,
    pub prompt: Option<Vec<PromptItem>>,
    pub next: Option<NodeId>,
}

impl Transfer {
    pub fn parse(f: &mut Fields<'_, '_>, cx: &mut Cx<'_, '_>) -> Option<Self> {
        let queue = f.required_string(cx.src, "queue");
        let prompt = cx.prompt(f, "prompt");
        let next = cx.target(f, "next");
        Some(Self {
            queue: queue?.into_inner(),
            prompt,
            next,
        })
    }

    pub fn enter(&self, run: &mut Run) -> Flow {
        run.emit(Output::Transfer {
            queue: self.queue.clone(),
        });
        match &self.prompt {
            Some(p) if run.play(p) => Flow::Stay,
            _ => self.after_message(),
        }
    }

    pub fn after_message(&self) -> Flow {
        match self.next {
            Some(n) => Flow::Next(n),
            None => Flow::Hangup("no-agent-system".into()),
        }
    }
}
