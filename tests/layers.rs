//! The module layering, kept true: every `crate::` path in src/ (outside unit
//! tests and comments) must follow an edge of the table below, and the table has
//! no cycle. A new module, or a new dependency between modules, fails this test
//! until it is added here on purpose (and to ARCHITECTURE.md's invariants), as
//! tests/access.rs does for routes.
//!
//! A module is a top-level file or directory of src/; `channel` counts as its
//! parts (`channel::sip`, `channel::chat`, `channel::rtp`). `crate::lock`,
//! `crate::log_id`, `crate::is_han` and `crate::jieba` (helpers in lib.rs) may be
//! used anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Who may use whom, lowest layers last.
const ALLOWED: &[(&str, &[&str])] = &[
    // The binary's commands and the server's start-up wire everything together.
    ("main", &[]),
    ("access_cli", &["store_cli"]),
    ("kb_cli", &[]),
    ("store_cli", &[]),
    (
        "server",
        &[
            "agents",
            "api",
            "auth",
            "call",
            "channel::chat",
            "channel::sip",
            "channel::webrtc",
            "cluster",
            "config",
            "dialogue",
            "dialplan",
            "http",
            "media",
            "speech",
            "store",
            "watch",
        ],
    ),
    // Several nodes as one contact center: the agents shared through the store.
    ("cluster", &["agents", "dialogue", "store"]),
    // Staff and integrators' HTTP API.
    (
        "api",
        &[
            "agents",
            "auth",
            "call",
            "channel::chat",
            "channel::sip",
            "channel::webrtc",
            "dialogue",
            "http",
            "media",
            "metrics",
            "source",
            "speech",
            "store",
        ],
    ),
    // The edges: SIP routes calls into `call`; chat channels into `dialogue`.
    (
        "channel::sip",
        &[
            "agents",
            "budget",
            "call",
            "channel::rtp",
            "config",
            "dialplan",
            "media",
            "metrics",
            "speech",
            "store",
        ],
    ),
    // Browsers' calls: answered over HTTP for a chat's customer, placed as calls
    // with the SIP edge's resources.
    (
        "channel::webrtc",
        &[
            "auth",
            "call",
            "channel::chat",
            "channel::rtp",
            "channel::sip",
            "config",
            "dialogue",
            "dialplan",
            "http",
            "media",
            "metrics",
        ],
    ),
    (
        "channel::chat",
        &[
            "agents", "auth", "budget", "config", "dialogue", "http", "metrics", "store",
        ],
    ),
    // A call: media, speech, the dialplan interpreter, the dialogue core, agents.
    (
        "call",
        &[
            "agents",
            "channel::rtp",
            "dialogue",
            "dialplan",
            "media",
            "metrics",
            "speech",
            "store",
        ],
    ),
    // HTTP plumbing below `api` and `channel::chat`.
    ("http", &["auth", "budget", "config", "dialogue", "store"]),
    ("config", &["agents", "media", "source", "store"]),
    // Persistence depends on the domain's types, never the reverse.
    ("store", &["agents", "dialogue", "metrics"]),
    ("agents", &["auth", "dialogue"]),
    ("auth", &[]),
    ("dialplan", &["dialogue", "media", "source", "watch"]),
    ("dialogue", &["metrics", "source", "watch"]),
    ("speech", &["media", "metrics"]),
    ("channel::rtp", &["media", "metrics"]),
    ("channel", &[]),
    ("media", &[]),
    ("budget", &[]),
    ("metrics", &[]),
    ("watch", &["source"]),
    ("source", &[]),
    ("lib", &[]),
];

/// The module a source file belongs to.
fn module_of(relative: &Path) -> String {
    let mut parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    match parts.as_slice() {
        [first, second, ..] if first == "channel" => format!("channel::{second}"),
        [first, ..] => first.clone(),
        [] => String::new(),
    }
}

/// The module a `crate::` path names (`None`: a helper allowed everywhere).
fn module_named(path: &str) -> Option<String> {
    let mut parts = path.split("::");
    let first = parts.next()?;
    match first {
        "lock" | "log_id" | "is_han" | "jieba" => None,
        "channel" => match parts.next() {
            Some(second) if !second.is_empty() => Some(format!("channel::{second}")),
            _ => Some("channel".into()),
        },
        _ => Some(first.to_string()),
    }
}

/// The `crate::` paths of one file's code, with their line numbers (unit tests and
/// comments left out).
fn crate_paths(text: &str) -> Vec<(usize, String)> {
    let code = text
        .find("#[cfg(test)]\nmod tests")
        .map_or(text, |end| &text[..end]);
    let mut out = Vec::new();
    for (n, line) in code.lines().enumerate() {
        if line.trim_start().starts_with("//") {
            continue;
        }
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            let after = &rest[at + "crate::".len()..];
            let len = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(after.len());
            out.push((n + 1, after[..len].to_string()));
            rest = &after[len..];
        }
    }
    out
}

fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_module_edge_is_allowed_and_there_is_no_cycle() {
    let allowed: BTreeMap<&str, BTreeSet<&str>> = ALLOWED
        .iter()
        .map(|(m, uses)| (*m, uses.iter().copied().collect()))
        .collect();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    files.sort();
    let mut wrong = Vec::new();
    let mut used: BTreeSet<(String, String)> = BTreeSet::new();
    for file in &files {
        let relative = file.strip_prefix(&src).unwrap();
        let from = module_of(relative);
        let Some(may) = allowed.get(from.as_str()) else {
            wrong.push(format!(
                "src/{}: module `{from}` is not in the table",
                relative.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap();
        for (line, path) in crate_paths(&text) {
            let Some(to) = module_named(&path) else {
                continue;
            };
            if to == from || may.contains(to.as_str()) {
                used.insert((from.clone(), to));
                continue;
            }
            wrong.push(format!(
                "src/{}:{line}: `{from}` uses `crate::{path}`, but may not use `{to}`",
                relative.display()
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert!(
        !used.is_empty(),
        "no crate:: path found: is the scan reading src/?"
    );

    // The table itself has no cycle (depth-first search, three colours).
    fn visit<'a>(
        m: &'a str,
        allowed: &BTreeMap<&'a str, BTreeSet<&'a str>>,
        state: &mut BTreeMap<&'a str, u8>,
        path: &mut Vec<&'a str>,
    ) {
        match state.get(m) {
            Some(2) => return,
            Some(1) => panic!("cycle: {} -> {m}", path.join(" -> ")),
            _ => {}
        }
        state.insert(m, 1);
        path.push(m);
        for next in allowed.get(m).into_iter().flatten() {
            visit(next, allowed, state, path);
        }
        path.pop();
        state.insert(m, 2);
    }
    let mut state = BTreeMap::new();
    for m in allowed.keys() {
        visit(m, &allowed, &mut state, &mut Vec::new());
    }
    // Every module named as used is in the table.
    for (m, uses) in &allowed {
        for u in uses {
            assert!(
                allowed.contains_key(u),
                "`{m}` may use `{u}`, which is not in the table"
            );
        }
    }
}

#[test]
fn the_scan_reads_paths_as_rust_does() {
    assert_eq!(module_of(Path::new("channel/sip/guard.rs")), "channel::sip");
    assert_eq!(module_of(Path::new("call/mod.rs")), "call");
    assert_eq!(module_of(Path::new("budget.rs")), "budget");
    assert_eq!(
        module_named("channel::chat::TextChannels").as_deref(),
        Some("channel::chat")
    );
    assert_eq!(module_named("lock"), None);
    let text = "use crate::store::Store;\n// crate::api in a comment\nlet x = crate::lock(&m); crate::media::g711::Law\n#[cfg(test)]\nmod tests {\n use crate::api;\n}";
    let paths: Vec<String> = crate_paths(text).into_iter().map(|(_, p)| p).collect();
    assert_eq!(paths, ["store::Store", "lock", "media::g711::Law"]);
}

/// The longest source file and function the code keeps (a file past these wants
/// splitting by concern; a function, named steps).
const MAX_FILE_LINES: usize = 800;
const MAX_FN_LINES: usize = 120;

/// Functions in `text` longer than `MAX_FN_LINES`: (first line, name, lines). A
/// function runs from its `fn` line to the first line after it that closes a block
/// at the `fn` line's indentation (rustfmt's layout).
fn long_functions(text: &str) -> Vec<(usize, String, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        let head = [
            "pub ",
            "pub(crate) ",
            "pub(super) ",
            "async ",
            "const ",
            "unsafe ",
        ]
        .iter()
        .fold(trimmed, |t, p| t.strip_prefix(p).unwrap_or(t));
        let head = head.strip_prefix("async ").unwrap_or(head);
        let Some(rest) = head.strip_prefix("fn ") else {
            continue;
        };
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        // A function on one line is short.
        if trimmed.ends_with('}') {
            continue;
        }
        // A declaration without a body (in a trait) ends in `;` before any `{`.
        let signature_end = lines[i..]
            .iter()
            .find(|l| l.trim_end().ends_with(';') || l.trim_end().ends_with('{'));
        if signature_end.is_some_and(|l| l.trim_end().ends_with(';')) {
            continue;
        }
        let close = " ".repeat(indent) + "}";
        let end = lines[i + 1..]
            .iter()
            .position(|l| l.starts_with(&close) && l.len() == close.len())
            .map_or(lines.len(), |p| i + 1 + p);
        let n = end - i + 1;
        if n > MAX_FN_LINES {
            out.push((i + 1, name, n));
        }
    }
    out
}

#[test]
fn no_source_file_or_function_is_too_long() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut problems = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let shown = file.strip_prefix(&src).unwrap().display().to_string();
        let n = text.lines().count();
        if n > MAX_FILE_LINES {
            problems.push(format!("src/{shown}: {n} lines (at most {MAX_FILE_LINES})"));
        }
        for (line, name, n) in long_functions(&text) {
            problems.push(format!(
                "src/{shown}:{line}: fn {name} is {n} lines (at most {MAX_FN_LINES})"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_length_scan_finds_a_long_function() {
    let body = "    let x = 1;\n".repeat(MAX_FN_LINES);
    let text =
        format!("fn short() {{\n}}\nfn one() -> u8 {{ 1 }}\n\npub async fn long() {{\n{body}}}\n");
    let found = long_functions(&text);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].1, "long");
    assert_eq!(found[0].2, MAX_FN_LINES + 2);
    let nested = format!("impl X {{\n    fn inner() {{\n{body}    }}\n}}\n");
    assert_eq!(long_functions(&nested).len(), 1);
    // A trait's declarations have no body to measure.
    let declared = format!("trait T {{\n    fn f(\n        &self,\n    ) -> u8;\n}}\n{nested}");
    assert_eq!(long_functions(&declared).len(), 1);
}
