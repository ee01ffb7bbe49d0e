//! Reading and validating knowledge-base files.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::{Example, Intent, KnowledgeBase, Replies, Texts, Thresholds};
use crate::dialogue::slots::{Slot, SlotKind};
use crate::dialogue::text::{Lang, normalize};
use crate::source::{Diagnostic, Fields, Source};

const SMALL_TALK: &str = include_str!("smalltalk.toml");
pub(super) const SMALL_TALK_FILE: &str = "<built-in small talk>";

const TOP_FIELDS: &[&str] = &["kb", "synonyms", "intents"];
const KB_FIELDS: &[&str] = &["name", "default_queue", "timezone", "thresholds", "replies"];
const THRESHOLD_FIELDS: &[&str] = &["answer", "clarify", "margin", "misses_before_handover"];
const REPLY_FIELDS: &[&str] = &[
    "fallback", "clarify", "or", "handover", "give_up", "resume", "back_to",
];
const INTENT_FIELDS: &[&str] = &[
    "title", "examples", "answer", "chat", "after", "tags", "slots", "handover", "topic",
];
const SLOT_FIELDS: &[&str] = &[
    "name",
    "kind",
    "length",
    "min_length",
    "max_length",
    "options",
    "prompt",
    "retry",
];
const LANG_KEYS: &[&str] = &["zh", "en"];

/// Everything wrong with a knowledge base.
pub type KbError = crate::source::Diagnostics;

/// Loads every `*.toml` file of `dir`, sorted by name, on top of the built-in small talk.
pub fn load_dir(dir: &Path) -> Result<KnowledgeBase, KbError> {
    let files = crate::source::toml_files(dir, "knowledge-base")?;
    let mut texts = Vec::with_capacity(files.len());
    let mut diagnostics = Vec::new();
    for path in files {
        match std::fs::read_to_string(&path) {
            Ok(t) => texts.push((path, t)),
            Err(e) => diagnostics.push(Diagnostic {
                file: path,
                line: 1,
                col: 1,
                message: format!("cannot read file: {e}"),
            }),
        }
    }
    if !diagnostics.is_empty() {
        return Err(KbError { diagnostics });
    }
    load_files(&texts)
}

/// Builds a knowledge base from file texts (path, text), after the built-in small talk.
pub fn load_files(files: &[(PathBuf, String)]) -> Result<KnowledgeBase, KbError> {
    let mut kb = KnowledgeBase {
        name: "kefu".into(),
        intents: Vec::new(),
        synonyms: Vec::new(),
        replies: Replies::default(),
        thresholds: Thresholds::default(),
        default_queue: "general".into(),
        timezone: chrono_tz::Asia::Shanghai,
        version: String::new(),
    };
    let mut diagnostics = Vec::new();
    // Where each intent came from, to report a second definition.
    let mut defined: HashMap<String, (PathBuf, usize)> = HashMap::new();
    // Example text → intent, to report one question taught as two intents.
    let mut taught: HashMap<(Lang, String), String> = HashMap::new();
    // `after` references, checked once every file is read.
    let mut follow_ups: Vec<(PathBuf, usize, usize, String)> = Vec::new();
    let mut header_seen: Option<PathBuf> = None;

    let small_talk = (PathBuf::from(SMALL_TALK_FILE), SMALL_TALK.to_string());
    for (path, text) in std::iter::once(&small_talk).chain(files.iter()) {
        let built_in = path.as_os_str() == SMALL_TALK_FILE;
        let mut src = Source::new(path, text);
        let Some(file) = parse_file(&mut src) else {
            diagnostics.append(&mut src.diagnostics);
            continue;
        };
        if let Some((span, header)) = file.header {
            if let Some(other) = &header_seen {
                src.error(
                    span,
                    format!(
                        "[kb] is already set in {}; keep one [kb] section",
                        other.display()
                    ),
                );
            } else {
                if !built_in {
                    header_seen = Some(path.clone());
                }
                header.apply(&mut kb);
            }
        }
        kb.synonyms.extend(file.synonyms);
        for (intent, span) in file.intents {
            if let Some((other, line)) = defined.get(&intent.id)
                && other.as_os_str() != SMALL_TALK_FILE
            {
                src.error(
                    span.clone(),
                    format!(
                        "intent `{}` is already defined at {}:{line}",
                        intent.id,
                        other.display()
                    ),
                );
                continue;
            }
            // A file's intent replaces a built-in small-talk intent of the same id.
            if let Some(pos) = kb.intents.iter().position(|i| i.id == intent.id) {
                let old = kb.intents.remove(pos);
                taught.retain(|_, id| *id != old.id);
            }
            for e in &intent.examples {
                let key = (e.lang, normalize(&e.text));
                if let Some(other) = taught.get(&key)
                    && *other != intent.id
                {
                    let at = example_span(text, &e.text).unwrap_or(span.clone());
                    src.error(
                        at,
                        format!("example {:?} is also taught to intent `{other}`; one question must mean one intent", e.text),
                    );
                } else {
                    taught.insert(key, intent.id.clone());
                }
            }
            let (line, col) = src.position(span.start);
            for a in &intent.after {
                follow_ups.push((path.clone(), line, col, a.clone()));
            }
            defined.insert(intent.id.clone(), (path.clone(), intent.line));
            kb.intents.push(intent);
        }
        diagnostics.append(&mut src.diagnostics);
    }
    for (file, line, col, target) in follow_ups {
        if !defined.contains_key(&target) {
            diagnostics.push(Diagnostic {
                file,
                line,
                col,
                message: format!("`after` names intent `{target}`, which no file defines"),
            });
        }
    }
    if !diagnostics.is_empty() {
        return Err(KbError { diagnostics });
    }
    let texts: Vec<&str> = std::iter::once(SMALL_TALK)
        .chain(files.iter().map(|(_, t)| t.as_str()))
        .collect();
    kb.version = crate::source::version_of(&texts);
    Ok(kb)
}

fn example_span(text: &str, example: &str) -> Option<Range<usize>> {
    let quoted = format!("\"{example}\"");
    text.find(&quoted).map(|i| i..i + quoted.len())
}

struct Header {
    name: Option<String>,
    default_queue: Option<String>,
    timezone: Option<chrono_tz::Tz>,
    thresholds: Option<Thresholds>,
    replies: Vec<(&'static str, Texts)>,
}

impl Header {
    fn apply(self, kb: &mut KnowledgeBase) {
        if let Some(n) = self.name {
            kb.name = n;
        }
        if let Some(q) = self.default_queue {
            kb.default_queue = q;
        }
        if let Some(tz) = self.timezone {
            kb.timezone = tz;
        }
        if let Some(t) = self.thresholds {
            kb.thresholds = t;
        }
        for (field, texts) in self.replies {
            let slot = match field {
                "fallback" => &mut kb.replies.fallback,
                "clarify" => &mut kb.replies.clarify,
                "or" => &mut kb.replies.or,
                "handover" => &mut kb.replies.handover,
                "give_up" => &mut kb.replies.give_up,
                "back_to" => &mut kb.replies.back_to,
                _ => &mut kb.replies.resume,
            };
            // A file that rewords one language keeps the built-in text of the other.
            slot.0.extend(texts.0);
        }
    }
}

struct File {
    header: Option<(Range<usize>, Header)>,
    synonyms: Vec<Vec<String>>,
    intents: Vec<(Intent, Range<usize>)>,
}

fn parse_file(src: &mut Source<'_>) -> Option<File> {
    let text = src.text;
    let doc = match DeTable::parse(text) {
        Ok(doc) => doc,
        Err(e) => {
            src.error(
                e.span().unwrap_or(0..0),
                format!("invalid TOML: {}", e.message()),
            );
            return None;
        }
    };
    let mut top = Fields::new("the file", doc.span(), doc.get_ref());
    let header = top.table(src, "kb");
    let synonyms = top.table(src, "synonyms");
    let intents = top.table(src, "intents");
    top.finish(src, TOP_FIELDS);

    let header = header.map(|(t, span)| (span.clone(), parse_header(src, t, span)));
    let synonyms = synonyms
        .map(|(t, span)| parse_synonyms(src, t, span))
        .unwrap_or_default();
    let mut out = Vec::new();
    match intents {
        Some((table, _)) => {
            for (key, value) in table.iter() {
                let id = key.get_ref().to_string();
                if !valid_id(&id) {
                    src.error(
                        key.span(),
                        format!("intent id `{id}` may hold only a-z, 0-9, `_`, `-` and `.`"),
                    );
                    continue;
                }
                match value.get_ref() {
                    DeValue::Table(t) => {
                        if let Some(intent) = parse_intent(src, &id, t, key.span()) {
                            out.push((intent, key.span()));
                        }
                    }
                    _ => src.error(
                        value.span(),
                        format!("intent `{id}` must be a table ([intents.{id}])"),
                    ),
                }
            }
        }
        None if header.is_none() && synonyms.is_empty() => {
            src.error(0..0, "no intents: add at least one [intents.ID] table");
        }
        None => {}
    }
    Some(File {
        header,
        synonyms,
        intents: out,
    })
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-' | '.'))
}

fn parse_header(src: &mut Source<'_>, t: &DeTable<'_>, span: Range<usize>) -> Header {
    let mut h = Fields::new("[kb]", span, t);
    let name = h.string(src, "name").map(Spanned::into_inner);
    let default_queue = h.string(src, "default_queue").map(Spanned::into_inner);
    let timezone = h
        .string(src, "timezone")
        .and_then(|z| match z.get_ref().parse() {
            Ok(tz) => Some(tz),
            Err(_) => {
                src.error(
                    z.span(),
                    format!(
                        "unknown time zone {:?}; write it like \"Asia/Shanghai\"",
                        z.get_ref()
                    ),
                );
                None
            }
        });
    let thresholds = h.table(src, "thresholds").map(|(t, span)| {
        let mut f = Fields::new("[kb.thresholds]", span, t);
        let d = Thresholds::default();
        let answer = fraction(&mut f, src, "answer").unwrap_or(d.answer);
        let clarify = fraction(&mut f, src, "clarify").unwrap_or(d.clarify);
        let margin = fraction(&mut f, src, "margin").unwrap_or(d.margin);
        let misses = f
            .count(src, "misses_before_handover", 10)
            .unwrap_or(d.misses_before_handover);
        if clarify > answer {
            src.error(f.span.clone(), "`clarify` must not be above `answer`");
        }
        f.finish(src, THRESHOLD_FIELDS);
        Thresholds {
            answer,
            clarify,
            margin,
            misses_before_handover: misses,
        }
    });
    let mut replies = Vec::new();
    if let Some((t, span)) = h.table(src, "replies") {
        let mut f = Fields::new("[kb.replies]", span, t);
        for &field in REPLY_FIELDS {
            if let Some(texts) = texts(&mut f, src, field) {
                replies.push((field, texts));
            }
        }
        f.finish(src, REPLY_FIELDS);
    }
    h.finish(src, KB_FIELDS);
    Header {
        name,
        default_queue,
        timezone,
        thresholds,
        replies,
    }
}

fn fraction(f: &mut Fields<'_, '_>, src: &mut Source<'_>, name: &str) -> Option<f32> {
    let v = f.take(name)?;
    let n = match v.get_ref() {
        DeValue::Float(x) => x.as_str().parse::<f32>().ok(),
        DeValue::Integer(i) => i.as_str().parse::<f32>().ok(),
        _ => None,
    };
    match n {
        Some(x) if (0.0..=1.0).contains(&x) => Some(x),
        _ => {
            src.error(v.span(), format!("`{name}` must be a number from 0 to 1"));
            None
        }
    }
}

fn parse_synonyms(src: &mut Source<'_>, t: &DeTable<'_>, span: Range<usize>) -> Vec<Vec<String>> {
    let mut f = Fields::new("[synonyms]", span, t);
    let mut out = Vec::new();
    for lang in LANG_KEYS {
        let Some(groups) = f.array(src, lang) else {
            continue;
        };
        for g in groups {
            match g.get_ref() {
                DeValue::Array(items) => {
                    let words: Vec<String> = items
                        .iter()
                        .filter_map(|i| match i.get_ref() {
                            DeValue::String(s) => Some(s.to_string()),
                            _ => None,
                        })
                        .collect();
                    if words.len() < 2 || words.len() != items.len() {
                        src.error(g.span(), "a synonym group is an array of at least two strings, the preferred form first");
                    } else {
                        out.push(words);
                    }
                }
                _ => src.error(
                    g.span(),
                    "a synonym group is an array of strings, e.g. [\"refund\", \"money back\"]",
                ),
            }
        }
    }
    f.finish(src, LANG_KEYS);
    out
}

/// A table of language → string (`answer.en = "…"`).
fn texts(f: &mut Fields<'_, '_>, src: &mut Source<'_>, name: &str) -> Option<Texts> {
    let (t, span) = f.table(src, name)?;
    let mut lf = Fields::new(format!("`{name}`"), span, t);
    let mut out = BTreeMap::new();
    for key in LANG_KEYS {
        if let Some(s) = lf.string(src, key) {
            let lang = Lang::from_code(key).unwrap_or(Lang::En);
            if s.get_ref().trim().is_empty() {
                src.error(s.span(), format!("`{name}.{key}` is empty"));
            } else {
                out.insert(lang, s.into_inner());
            }
        }
    }
    lf.finish(src, LANG_KEYS);
    Some(Texts(out))
}

fn parse_intent(
    src: &mut Source<'_>,
    id: &str,
    t: &DeTable<'_>,
    span: Range<usize>,
) -> Option<Intent> {
    let (line, _) = src.position(span.start);
    let before = src.diagnostics.len();
    let mut f = Fields::new(format!("intent `{id}`"), span.clone(), t);
    let title = texts(&mut f, src, "title").unwrap_or_default();
    let mut examples = Vec::new();
    if let Some((et, espan)) = f.table(src, "examples") {
        let mut ef = Fields::new(format!("`intents.{id}.examples`"), espan, et);
        for key in LANG_KEYS {
            let lang = Lang::from_code(key).unwrap_or(Lang::En);
            for s in ef.strings(src, key).unwrap_or_default() {
                if normalize(s.get_ref()).is_empty() {
                    src.error(s.span(), "an example question needs words");
                } else {
                    examples.push(Example {
                        lang,
                        text: s.into_inner(),
                    });
                }
            }
        }
        ef.finish(src, LANG_KEYS);
    }
    let answer = texts(&mut f, src, "answer").unwrap_or_default();
    let chat = texts(&mut f, src, "chat").unwrap_or_default();
    let after = f
        .strings(src, "after")
        .unwrap_or_default()
        .into_iter()
        .map(Spanned::into_inner)
        .collect();
    let tags = f
        .strings(src, "tags")
        .unwrap_or_default()
        .into_iter()
        .map(Spanned::into_inner)
        .collect();
    let handover = f.string(src, "handover").map(Spanned::into_inner);
    let topic = f.bool(src, "topic").unwrap_or(false);
    let mut slots = Vec::new();
    if let Some(items) = f.array(src, "slots") {
        for item in items {
            match item.get_ref() {
                DeValue::Table(st) => {
                    if let Some(slot) = parse_slot(src, id, st, item.span()) {
                        if slots.iter().any(|s: &Slot| s.name == slot.name) {
                            src.error(item.span(), format!("slot `{}` is listed twice", slot.name));
                        }
                        slots.push(slot);
                    }
                }
                _ => src.error(item.span(), "each slot is a table ([[intents.ID.slots]])"),
            }
        }
    }
    f.finish(src, INTENT_FIELDS);

    let mut langs: Vec<Lang> = examples.iter().map(|e: &Example| e.lang).collect();
    langs.sort();
    langs.dedup();
    if examples.is_empty() {
        src.error(
            span.clone(),
            format!("intent `{id}` needs example questions (examples.zh, examples.en)"),
        );
    }
    for lang in &langs {
        if answer.get(*lang).is_none() {
            src.error(
                span.clone(),
                format!("intent `{id}` has {lang} examples but no answer.{lang}"),
            );
        }
        if title.get(*lang).is_none() {
            src.error(span.clone(), format!("intent `{id}` has {lang} examples but no title.{lang} (used to ask \"do you mean…?\")"));
        }
        for slot in &slots {
            if slot.prompt.get(*lang).is_none() {
                src.error(
                    span.clone(),
                    format!("slot `{}` of intent `{id}` needs prompt.{lang}", slot.name),
                );
            }
        }
    }
    for (field, texts) in [("answer", &answer), ("chat", &chat)] {
        for (lang, text) in &texts.0 {
            for name in placeholders(text) {
                if !slots.iter().any(|s| s.name == name) {
                    src.error(
                        span.clone(),
                        format!("{field}.{lang} uses ${{{name}}}, but intent `{id}` has no slot `{name}`"),
                    );
                }
            }
        }
    }
    if src.diagnostics.len() > before {
        return None;
    }
    Some(Intent {
        id: id.to_string(),
        title,
        examples,
        answer,
        chat,
        after,
        tags,
        slots,
        handover,
        topic,
        file: src.path.to_path_buf(),
        line,
    })
}

/// `${name}` placeholders in a template.
pub fn placeholders(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("${") {
        let after = &rest[i + 2..];
        match after.find('}') {
            Some(j) => {
                out.push(after[..j].to_string());
                rest = &after[j + 1..];
            }
            None => break,
        }
    }
    out
}

fn parse_slot(src: &mut Source<'_>, id: &str, t: &DeTable<'_>, span: Range<usize>) -> Option<Slot> {
    let mut f = Fields::new(format!("a slot of intent `{id}`"), span.clone(), t);
    let name = f.required_string(src, "name");
    let kind = f.required_string(src, "kind");
    let length = f.count(src, "length", 64);
    let min = f.count(src, "min_length", 64);
    let max = f.count(src, "max_length", 64);
    let options = f.strings(src, "options");
    let prompt = texts(&mut f, src, "prompt").unwrap_or_default();
    let retry = texts(&mut f, src, "retry").unwrap_or_default();
    f.finish(src, SLOT_FIELDS);
    let name = name?;
    if !valid_id(name.get_ref()) || name.get_ref().contains('.') {
        src.error(
            name.span(),
            "a slot name may hold only a-z, 0-9, `_` and `-`",
        );
        return None;
    }
    let kind_s = kind?;
    let kind = match kind_s.get_ref().as_str() {
        "digits" => {
            let (lo, hi) = match (length, min, max) {
                (Some(n), None, None) => (n, n),
                (None, lo, hi) => (lo.unwrap_or(1), hi.unwrap_or(32)),
                _ => {
                    src.error(
                        span,
                        "give `length`, or `min_length`/`max_length`, not both",
                    );
                    return None;
                }
            };
            if lo == 0 || lo > hi {
                src.error(
                    span,
                    "digit lengths must satisfy 1 <= min_length <= max_length",
                );
                return None;
            }
            SlotKind::Digits {
                min: lo as usize,
                max: hi as usize,
            }
        }
        "phone" => SlotKind::Phone,
        "date" => SlotKind::Date,
        "email" => SlotKind::Email,
        "text" => SlotKind::Text,
        "choice" => match options {
            Some(o) if !o.is_empty() => {
                SlotKind::Choice(o.into_iter().map(Spanned::into_inner).collect())
            }
            _ => {
                src.error(span, "a choice slot needs `options = [\"…\", …]`");
                return None;
            }
        },
        other => {
            src.error(
                kind_s.span(),
                format!(
                    "unknown slot kind `{other}`; expected one of: {}",
                    SlotKind::NAMES.join(", ")
                ),
            );
            return None;
        }
    };
    Some(Slot {
        name: name.into_inner(),
        kind,
        prompt,
        retry,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<KnowledgeBase, KbError> {
        load_files(&[(PathBuf::from("kb/test.toml"), text.to_string())])
    }

    #[test]
    fn small_talk_is_built_in() {
        let kb = load("[intents.hours]\ntitle.en = \"hours\"\nexamples.en = [\"when are you open\"]\nanswer.en = \"9 to 6\"\n")
            .unwrap();
        for id in ["greeting", "thanks", "goodbye", "bot", "human", "hours"] {
            assert!(kb.intent(id).is_some(), "{id}");
        }
    }

    #[test]
    fn errors_name_file_line_and_column() {
        let text = "[intents.hours]\ntitle.en = \"hours\"\nexamples.en = [\"when are you open\"]\nanswr.en = \"9 to 6\"\n";
        let e = load(text).unwrap_err().to_string();
        assert!(e.contains("kb/test.toml:4:1: unknown field `answr`"), "{e}");
        let e = load(
            "[intents.x]\nexamples.zh = [\"几点开门\"]\nanswer.en = \"9\"\ntitle.en = \"x\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("kb/test.toml:1:10: intent `x` has zh examples but no answer.zh"),
            "{e}"
        );
        let e = load("[intents.o]\ntitle.en = \"o\"\nexamples.en = [\"order\"]\nanswer.en = \"Order ${order}\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("uses ${order}, but intent `o` has no slot `order`"),
            "{e}"
        );
        let e =
            load("[intents.a]\ntitle.en = \"a\"\nexamples.en = [\"hello\"]\nanswer.en = \"a\"\n")
                .unwrap_err()
                .to_string();
        assert!(e.contains("also taught to intent `greeting`"), "{e}");
        let e = load("[intents.a\n").unwrap_err().to_string();
        assert!(
            e.contains("kb/test.toml:1:") && e.contains("invalid TOML"),
            "{e}"
        );
    }

    #[test]
    fn slots_and_follow_ups_are_checked() {
        let text = r#"
[intents.order]
title.en = "order status"
examples.en = ["where is my order"]
answer.en = "Order ${order} is on its way."
[[intents.order.slots]]
name = "order"
kind = "digits"
length = 6
prompt.en = "What is the order number?"

[intents.weekend]
title.en = "weekend hours"
after = ["hours"]
examples.en = ["and at weekends"]
answer.en = "Closed."
"#;
        let e = load(text).unwrap_err().to_string();
        assert!(e.contains("`after` names intent `hours`"), "{e}");
        let ok = text.replace("after = [\"hours\"]", "after = [\"order\"]");
        let kb = load(&ok).unwrap();
        let order = kb.intent("order").unwrap();
        assert_eq!(order.slots[0].kind, SlotKind::Digits { min: 6, max: 6 });
        let bad = ok.replace("kind = \"digits\"", "kind = \"digit\"");
        let e = load(&bad).unwrap_err().to_string();
        assert!(e.contains("unknown slot kind `digit`"), "{e}");
    }

    #[test]
    fn a_file_may_replace_small_talk_and_reword_replies() {
        let kb = load(
            "[kb]\nname = \"Shop\"\nreplies.fallback.en = \"Hmm?\"\n[intents.greeting]\ntitle.en = \"hi\"\nexamples.en = [\"hello there\"]\nanswer.en = \"Welcome to Shop!\"\n",
        )
        .unwrap();
        assert_eq!(
            kb.intent("greeting").unwrap().answer.best(Lang::En),
            "Welcome to Shop!"
        );
        assert_eq!(kb.replies.fallback.best(Lang::En), "Hmm?");
        assert!(kb.replies.fallback.get(Lang::Zh).is_some());
        assert_eq!(kb.name, "Shop");
    }
}
