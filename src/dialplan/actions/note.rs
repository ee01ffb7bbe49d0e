//! `note`: adds a line to the call's ticket (opening one if the call has none),
//! such as "callback requested to ${caller}"; `${name}` uses call variables.

use super::Cx;
use crate::dialplan::NodeId;
use crate::dialplan::interpreter::{Flow, Output, Run};
use crate::source::Fields;

pub const FIELDS: &[&str] = &["type", "text", "queue", "next"];

#[derive(Debug)]
pub struct Note {
    pub text: String,
    /// The queue a ticket opened here belongs to ("" when none).
    pub queue: String,
    pub next: NodeId,
}

impl Note {
    pub fn parse(f: &mut Fields<'_, '_>, cx: &mut Cx<'_, '_>) -> Option<Self> {
        let text = f.required_string(cx.src, "text");
        let queue = f
            .string(cx.src, "queue")
            .map(|q| q.into_inner())
            .unwrap_or_default();
        let next = cx.required_target(f, "next");
        Some(Self {
            text: text?.into_inner(),
            queue,
            next: next?,
        })
    }

    pub fn enter(&self, run: &mut Run) -> Flow {
        let text = run.interpolate(&self.text);
        run.emit(Output::Note {
            text,
            queue: self.queue.clone(),
        });
        Flow::Next(self.next)
    }
}
