//! `branch`: routes on call variables, such as the caller's number (`caller`), the
//! number dialled (`called`) or a collected value. Rules are tried in order; the first
//! that matches wins, else `else`.

use regex::Regex;
use toml::de::DeValue;

use super::Cx;
use super::collect::is_identifier;
use crate::dialplan::NodeId;
use crate::dialplan::interpreter::{Flow, Run};
use crate::source::Fields;

pub const FIELDS: &[&str] = &["type", "when", "else"];
const RULE_FIELDS: &[&str] = &["variable", "equals", "prefix", "matches", "goto"];

#[derive(Debug)]
pub enum Test {
    Equals(String),
    Prefix(String),
    Matches(Regex),
}

#[derive(Debug)]
pub struct Rule {
    pub variable: String,
    pub test: Test,
    pub target: NodeId,
}

#[derive(Debug)]
pub struct Branch {
    pub rules: Vec<Rule>,
    pub otherwise: NodeId,
}

impl Branch {
    pub fn parse(f: &mut Fields<'_, '_>, cx: &mut Cx<'_, '_>) -> Option<Self> {
        let mut rules = Vec::new();
        for item in f.array(cx.src, "when").unwrap_or_default() {
            let DeValue::Table(t) = item.get_ref() else {
                cx.src
                    .error(item.span(), "each `when` rule must be a table");
                continue;
            };
            let mut rf = Fields::new("a `when` rule", item.span(), t);
            if let Some(rule) = parse_rule(&mut rf, cx) {
                rules.push(rule);
            }
            rf.finish(cx.src, RULE_FIELDS);
        }
        let otherwise = cx.required_target(f, "else")?;
        Some(Self { rules, otherwise })
    }

    pub fn enter(&self, run: &mut Run) -> Flow {
        for rule in &self.rules {
            let value = run
                .vars
                .get(&rule.variable)
                .map(String::as_str)
                .unwrap_or("");
            let hit = match &rule.test {
                Test::Equals(s) => value == s,
                Test::Prefix(s) => value.starts_with(s.as_str()),
                Test::Matches(r) => r.is_match(value),
            };
            if hit {
                return Flow::Next(rule.target);
            }
        }
        Flow::Next(self.otherwise)
    }
}

fn parse_rule(f: &mut Fields<'_, '_>, cx: &mut Cx<'_, '_>) -> Option<Rule> {
    let variable = f.required_string(cx.src, "variable");
    if let Some(v) = &variable
        && !is_identifier(v.get_ref())
    {
        cx.src
            .error(v.span(), "`variable` must be letters, digits and _ only");
    }
    let equals = f.string(cx.src, "equals");
    let prefix = f.string(cx.src, "prefix");
    let matches = f.string(cx.src, "matches");
    let target = cx.required_target(f, "goto");
    let test = match (equals, prefix, matches) {
        (Some(e), None, None) => Test::Equals(e.into_inner()),
        (None, Some(p), None) => Test::Prefix(p.into_inner()),
        (None, None, Some(m)) => match Regex::new(m.get_ref()) {
            Ok(r) => Test::Matches(r),
            Err(e) => {
                cx.src.error(
                    m.span(),
                    format!("`matches` is not a valid regular expression: {e}"),
                );
                return None;
            }
        },
        _ => {
            cx.src.error(
                f.span.clone(),
                "a rule needs exactly one of `equals`, `prefix`, `matches`",
            );
            return None;
        }
    };
    Some(Rule {
        variable: variable?.into_inner(),
        test,
        target: target?,
    })
}
