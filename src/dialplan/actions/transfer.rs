//! `transfer`: hands the caller to a person.
//!
//! With `queue` (warm transfer) the node asks the call to queue the caller
//! (`Output::Transfer`) and plays its prompt ("please hold"); the call plays hold
//! music after it and rings agents. When an agent takes the call the two are
//! bridged and the plan is done. When nobody does within the queue's maximum wait
//! (`Input::NoAgent`) the plan goes on at `next` (voicemail, a callback), or hangs
//! up when there is none.
//!
//! With `to` (blind transfer: a SIP URI, or a number reached through the trunk the
//! call came in on) the call asks the caller's side to transfer itself (SIP REFER)
//! and, where that is refused, calls the number and bridges it. A transfer that
//! fails goes on at `next` the same way.
//!
//! With `after`, a caller whose agent (or dial-out target) hangs up first is not
//! hung up: the plan goes on at `after` (a post-call survey).

use super::{Cx, PromptItem};
use crate::dialplan::NodeId;
use crate::dialplan::interpreter::{Flow, Output, Run};
use crate::source::Fields;

pub const FIELDS: &[&str] = &["type", "queue", "to", "prompt", "next", "after"];

/// Where a transfer goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// An agent queue (warm transfer).
    Queue(String),
    /// A SIP URI or a number (blind transfer).
    External(String),
}

#[derive(Debug)]
pub struct Transfer {
    pub target: Target,
    pub prompt: Option<Vec<PromptItem>>,
    pub next: Option<NodeId>,
    /// Where the caller goes when the other side hangs up first.
    pub after: Option<NodeId>,
}

impl Transfer {
    pub fn parse(f: &mut Fields<'_, '_>, cx: &mut Cx<'_, '_>) -> Option<Self> {
        let queue = f.string(cx.src, "queue");
        let to = f.string(cx.src, "to");
        let target = match (queue, to) {
            (Some(q), None) => Target::Queue(q.into_inner()),
            (None, Some(t)) => {
                let value = t.get_ref().trim();
                let number = value
                    .strip_prefix('+')
                    .unwrap_or(value)
                    .chars()
                    .all(|c| c.is_ascii_digit() || c == '*' || c == '#');
                let uri = value.starts_with("sip:")
                    && value.len() > 4
                    && !value.contains(['<', '>', ' ']);
                if !(uri || (number && !value.is_empty())) {
                    cx.src.error(
                        t.span(),
                        "`to` must be a SIP URI (\"sip:desk@pbx.example\") or a phone number (\"+8610...\")",
                    );
                    return None;
                }
                Target::External(value.to_string())
            }
            _ => {
                cx.src.error(
                    f.span.clone(),
                    format!("{} needs exactly one of `queue` (an agent queue) or `to` (a number or SIP URI)", f.what),
                );
                return None;
            }
        };
        let prompt = cx.prompt(f, "prompt");
        let next = cx.target(f, "next");
        let after = cx.target(f, "after");
        Some(Self {
            target,
            prompt,
            next,
            after,
        })
    }

    pub fn enter(&self, run: &mut Run) -> Flow {
        run.emit(match &self.target {
            Target::Queue(queue) => Output::Transfer {
                queue: queue.clone(),
            },
            Target::External(to) => Output::BlindTransfer { to: to.clone() },
        });
        if let Some(p) = &self.prompt {
            run.play(p);
        }
        Flow::Stay
    }

    /// The agent (or target) hung up and the caller stayed: on at `after`.
    pub fn agent_left(&self) -> Flow {
        match self.after {
            Some(n) => Flow::Next(n),
            None => Flow::Hangup("agent-hangup".into()),
        }
    }

    pub fn no_agent(&self) -> Flow {
        match self.next {
            Some(n) => Flow::Next(n),
            None => Flow::Hangup("no-agent".into()),
        }
    }
}
