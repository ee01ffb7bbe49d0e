//! Reading and validating a directory of dialplan files.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use toml::de::{DeTable, DeValue};

use super::actions::{self, Action, Cx};
use super::{AudioRoot, Dialplan, Node, Registry};
use crate::media::prompt::PromptCache;
use crate::source::{Diagnostic, Fields, Source};

const TOP_FIELDS: &[&str] = &["dialplan", "nodes"];
const PLAN_FIELDS: &[&str] = &[
    "name",
    "numbers",
    "default",
    "language",
    "start",
    "answer_after",
    "digits",
    "voice",
];

/// Everything wrong with a directory of dialplans.
pub type LoadError = crate::source::Diagnostics;

/// Loads every `*.toml` file of `dir`, sorted by name.
pub fn load_dir(
    dir: &Path,
    audio: &AudioRoot,
    prompts: &PromptCache,
) -> Result<Registry, LoadError> {
    let files = crate::source::toml_files(dir, "dialplan")?;
    let mut diagnostics = Vec::new();
    let mut plans: Vec<Arc<Dialplan>> = Vec::new();
    // Where each number was claimed, to report a second claim.
    let mut claimed: HashMap<String, PathBuf> = HashMap::new();
    let mut default_plan: Option<PathBuf> = None;
    for path in files {
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                diagnostics.push(Diagnostic {
                    file: path.clone(),
                    line: 1,
                    col: 1,
                    message: format!("cannot read file: {e}"),
                });
                continue;
            }
        };
        let mut src = Source::new(&path, &text);
        let plan = parse_plan(&mut src, audio, prompts);
        if let Some(plan) = &plan {
            for n in &plan.numbers {
                if let Some(other) = claimed.insert(n.clone(), path.clone()) {
                    src.error(
                        number_span(&text, n),
                        format!("number {n:?} is already answered by {}", other.display()),
                    );
                }
            }
            if plan.is_default {
                if let Some(other) = &default_plan {
                    src.error(
                        text.find("default").map_or(0..0, |i| i..i),
                        format!("{} is already the default dialplan", other.display()),
                    );
                }
                default_plan = Some(path.clone());
            }
        }
        diagnostics.append(&mut src.diagnostics);
        if let Some(plan) = plan {
            plans.push(Arc::new(plan));
        }
    }
    if diagnostics.is_empty() {
        Ok(Registry::new(plans))
    } else {
        Err(LoadError { diagnostics })
    }
}

/// Loads one plan kefu itself ships (the agents' feature codes), from text;
/// `label` names it in messages.
pub fn load_text(
    label: &Path,
    text: &str,
    audio: &AudioRoot,
    prompts: &PromptCache,
) -> Result<Arc<Dialplan>, LoadError> {
    let mut src = Source::new(label, text);
    match parse_plan(&mut src, audio, prompts) {
        Some(plan) if src.diagnostics.is_empty() => Ok(Arc::new(plan)),
        _ => Err(LoadError {
            diagnostics: src.diagnostics,
        }),
    }
}

fn number_span(text: &str, number: &str) -> std::ops::Range<usize> {
    let quoted = format!("\"{number}\"");
    text.find(&quoted).map_or(0..0, |i| i..i + quoted.len())
}

/// One `[nodes.NAME]` table; None when it has errors (reported to `cx.src`).
fn parse_node(
    cx: &mut Cx<'_, '_>,
    key: &toml::Spanned<std::borrow::Cow<'_, str>>,
    value: &toml::Spanned<DeValue<'_>>,
) -> Option<Node> {
    let node_name = key.get_ref();
    let DeValue::Table(table) = value.get_ref() else {
        cx.src.error(
            value.span(),
            format!("node `{node_name}` must be a table: [nodes.{node_name}]"),
        );
        return None;
    };
    let what = format!("node `{node_name}`");
    let mut f = Fields::new(what, key.span(), table);
    let Some(kind) = f.required_string(cx.src, "type") else {
        f.finish(cx.src, &["type"]);
        return None;
    };
    if !actions::TYPES.contains(&kind.get_ref().as_str()) {
        cx.src.error(
            kind.span(),
            format!(
                "unknown node type `{}`; expected one of: {}",
                kind.get_ref(),
                actions::TYPES.join(", ")
            ),
        );
        return None;
    }
    let action = Action::parse(kind.get_ref(), &mut f, cx);
    f.finish(cx.src, Action::fields(kind.get_ref()));
    Some(Node {
        name: node_name.to_string(),
        action: action?,
    })
}

/// Every node must be reachable from `start`: an orphan is almost always a typo.
/// `names` and `spans` are the nodes' in file order, as `nodes` are.
fn check_reachable(
    src: &mut Source<'_>,
    nodes: &[Node],
    names: &[String],
    spans: &[std::ops::Range<usize>],
    start: usize,
) {
    let mut seen = vec![false; nodes.len()];
    let mut queue = VecDeque::from([start]);
    while let Some(id) = queue.pop_front() {
        if std::mem::replace(&mut seen[id], true) {
            continue;
        }
        queue.extend(nodes[id].action.targets());
    }
    for ((name, span), seen) in names.iter().zip(spans).zip(seen) {
        if !seen {
            src.error(
                span.clone(),
                format!(
                    "node `{name}` is unreachable from start node `{}`",
                    names[start]
                ),
            );
        }
    }
}

/// The plan's spoken digits 0 to 9 (`digits`: a directory of 0.wav … 9.wav).
fn load_digits(
    src: &mut Source<'_>,
    prompts: &PromptCache,
    dir: &std::path::Path,
    span: std::ops::Range<usize>,
) -> Option<Vec<std::sync::Arc<crate::media::prompt::Prompt>>> {
    let mut out = Vec::with_capacity(10);
    for n in 0..10 {
        let path = dir.join(format!("{n}.wav"));
        match prompts.get(&path) {
            Ok(p) => out.push(p),
            Err(e) => src.error(
                span.clone(),
                format!("digit prompt {}: {e}", path.display()),
            ),
        }
    }
    (out.len() == 10).then_some(out)
}

/// Parses and validates one file; `None` when it has errors (reported to `src`).
fn parse_plan(src: &mut Source<'_>, audio: &AudioRoot, prompts: &PromptCache) -> Option<Dialplan> {
    let text = src.text;
    let doc = match DeTable::parse(text) {
        Ok(doc) => doc,
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            src.error(span, format!("invalid TOML: {}", e.message()));
            return None;
        }
    };
    let mut top = Fields::new("the file", doc.span(), doc.get_ref());
    let header = top.table(src, "dialplan");
    let nodes_table = top.table(src, "nodes");
    top.finish(src, TOP_FIELDS);
    let Some((header, header_span)) = header else {
        src.error(0..0, "missing [dialplan] section (name, numbers, start)");
        return None;
    };
    let Some((nodes_table, _)) = nodes_table else {
        src.error(header_span, "no nodes: add at least one [nodes.NAME] table");
        return None;
    };

    let node_names: Vec<String> = nodes_table
        .iter()
        .map(|(k, _)| k.get_ref().to_string())
        .collect();
    let mut h = Fields::new("[dialplan]", header_span, header);
    let name = h.required_string(src, "name");
    let numbers = h.strings(src, "numbers").unwrap_or_default();
    let is_default = h.bool(src, "default").unwrap_or(false);
    if numbers.is_empty() && !is_default {
        src.error(
            h.span.clone(),
            "[dialplan] needs `numbers` (the called numbers it answers) or `default = true`",
        );
    }
    let language = h
        .string(src, "language")
        .map_or_else(|| "en".to_string(), |l| l.into_inner());
    let answer_after = h.duration(src, "answer_after").unwrap_or(Duration::ZERO);
    let digits_dir = h.string(src, "digits");
    let voice = h.string(src, "voice").map(|v| v.into_inner());
    let start_name = h.required_string(src, "start");
    h.finish(src, PLAN_FIELDS);

    let digit_prompts = digits_dir.and_then(|d| {
        let dir = audio.resolve(d.get_ref());
        load_digits(src, prompts, &dir, d.span())
    });

    let mut nodes = Vec::with_capacity(node_names.len());
    let mut cx = Cx {
        src,
        node_names: &node_names,
        audio,
        prompts,
        has_digit_prompts: digit_prompts.is_some(),
        language: &language,
        voice: voice.as_deref(),
    };
    let start = start_name
        .as_ref()
        .and_then(|s| cx.target_value(s, "start"));
    for (key, value) in nodes_table.iter() {
        if let Some(node) = parse_node(&mut cx, key, value) {
            nodes.push(node);
        }
    }
    let src = cx.src;
    if !src.diagnostics.is_empty() || nodes.len() != node_names.len() {
        return None;
    }
    let start = start?;

    let spans: Vec<_> = nodes_table.iter().map(|(key, _)| key.span()).collect();
    check_reachable(src, &nodes, &node_names, &spans, start);
    if !src.diagnostics.is_empty() {
        return None;
    }
    Some(Dialplan {
        name: name?.into_inner(),
        file: src.path.to_path_buf(),
        numbers: numbers.into_iter().map(|n| n.into_inner()).collect(),
        is_default,
        language,
        voice: voice.clone(),
        start,
        answer_after,
        nodes,
        digit_prompts,
        version: crate::source::version_of(&[text]),
    })
}
