//! `set`: assigns call variables; values may use `${name}` of other variables.

use super::Cx;
use crate::dialplan::NodeId;
use crate::dialplan::interpreter::{Flow, Run};
use crate::source::Fields;
use toml::de::DeValue;

pub const FIELDS: &[&str] = &["type", "values", "next"];

#[derive(Debug)]
pub struct Set {
    pub values: Vec<(String, String)>,
    pub next: NodeId,
}

impl Set {
    pub fn parse(f: &mut Fields<'_, '_>, cx: &mut Cx<'_, '_>) -> Option<Self> {
        let mut values = Vec::new();
        match f.table(cx.src, "values") {
            Some((table, _)) => {
                for (k, v) in table.iter() {
                    match v.get_ref() {
                        DeValue::String(s) => values.push((k.get_ref().to_string(), s.to_string())),
                        _ => cx.src.error(
                            v.span(),
                            format!("value of `{}` must be a string", k.get_ref()),
                        ),
                    }
                }
            }
            None => cx
                .src
                .error(f.span.clone(), format!("{} needs a `values` table", f.what)),
        }
        let next = cx.required_target(f, "next")?;
        Some(Self { values, next })
    }

    pub fn enter(&self, run: &mut Run) -> Flow {
        for (name, value) in &self.values {
            let v = run.interpolate(value);
            run.vars.insert(name.clone(), v);
        }
        Flow::Next(self.next)
    }
}
