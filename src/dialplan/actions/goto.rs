//! `goto`: continues at another node.

use super::Cx;
use crate::dialplan::NodeId;
use crate::source::Fields;

pub const FIELDS: &[&str] = &["type", "target"];

#[derive(Debug)]
pub struct Goto {
    pub target: NodeId,
}

impl Goto {
    pub fn parse(f: &mut Fields<'_, '_>, cx: &mut Cx<'_, '_>) -> Option<Self> {
        Some(Self {
            target: cx.required_target(f, "target")?,
        })
    }
}
