//! `rate`: keeps the caller's satisfaction rating (1 to 5) from a variable a
//! `collect` node filled: the post-call survey is a `collect` of one digit
//! (`pattern = "^[1-5]$"`) followed by `rate`. A value that is not 1 to 5 goes
//! to `invalid` (else on to `next`) and is not kept.

use super::Cx;
use super::collect::is_identifier;
use crate::dialplan::NodeId;
use crate::dialplan::interpreter::{Flow, Output, Run};
use crate::source::Fields;

pub const FIELDS: &[&str] = &["type", "variable", "next", "invalid"];

#[derive(Debug)]
pub struct Rate {
    pub variable: String,
    pub next: NodeId,
    pub invalid: Option<NodeId>,
}

impl Rate {
    pub fn parse(f: &mut Fields<'_, '_>, cx: &mut Cx<'_, '_>) -> Option<Self> {
        let variable = f.required_string(cx.src, "variable");
        if let Some(v) = &variable
            && !is_identifier(v.get_ref())
        {
            cx.src.error(
                v.span(),
                "`variable` must be a name of letters, digits and `_`",
            );
        }
        let next = cx.required_target(f, "next");
        let invalid = cx.target(f, "invalid");
        Some(Self {
            variable: variable?.into_inner(),
            next: next?,
            invalid,
        })
    }

    pub fn enter(&self, run: &mut Run) -> Flow {
        let value = run.vars.get(&self.variable).map(|v| v.trim());
        match value.and_then(|v| v.parse::<u8>().ok()) {
            Some(score @ 1..=5) => {
                run.emit(Output::Rate { score });
                Flow::Next(self.next)
            }
            _ => Flow::Next(self.invalid.unwrap_or(self.next)),
        }
    }
}
