//! `transfer`: hands the caller to a human agent queue (warm transfer).
//!
//! The node asks the call to queue the caller (`Output::Transfer`) and plays its
//! prompt ("please hold"); the call plays hold music after it and rings agents.
//! When an agent takes the call the two are bridged and the plan is done. When
//! nobody does within the queue's maximum wait (`Input::NoAgent`) the plan goes
//! on at `next` (voicemail, a callback), or hangs up when there is none.

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
        if let Some(p) = &self.prompt {
            run.play(p);
        }
        Flow::Stay
    }

    pub fn no_agent(&self) -> Flow {
        match self.next {
            Some(n) => Flow::Next(n),
            None => Flow::Hangup("no-agent".into()),
        }
    }
}
