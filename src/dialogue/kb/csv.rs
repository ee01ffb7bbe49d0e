//! `kefu kb import`: a spreadsheet (CSV, UTF-8, header row) to a knowledge-base file.
//!
//! Columns, by header name: `id` (required), `title_en`, `title_zh`, `question_en`,
//! `question_zh`, `answer_en`, `answer_zh`, `chat_en`, `chat_zh`, `tags`, `handover`.
//! Questions may be several per cell (one per line, or separated by `|`); rows with
//! the same id add questions to the intent.

use std::collections::BTreeMap;
use std::path::Path;

use crate::source::Diagnostic;

const COLUMNS: &[&str] = &[
    "id",
    "title_en",
    "title_zh",
    "question_en",
    "question_zh",
    "answer_en",
    "answer_zh",
    "chat_en",
    "chat_zh",
    "tags",
    "handover",
];

#[derive(Default)]
struct Entry {
    fields: BTreeMap<&'static str, String>,
    questions_en: Vec<String>,
    questions_zh: Vec<String>,
    line: u64,
}

/// The TOML text of a knowledge-base file holding the spreadsheet's intents.
pub fn import(path: &Path, data: &[u8]) -> Result<String, Vec<Diagnostic>> {
    let err = |line: u64, message: String| Diagnostic {
        file: path.to_path_buf(),
        line: line as usize,
        col: 1,
        message,
    };
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(data);
    let headers = reader
        .headers()
        .map_err(|e| vec![err(1, format!("cannot read the header row: {e}"))])?
        .clone();
    let index = columns(path, &headers)?;
    let mut problems = Vec::new();
    let mut entries: Vec<(String, Entry)> = Vec::new();
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                problems.push(err(line, format!("unreadable row: {e}")));
                continue;
            }
        };
        let line = record.position().map_or(0, |p| p.line());
        let get = |c: &str| {
            index
                .get(c)
                .and_then(|&i| record.get(i))
                .map(str::trim)
                .unwrap_or("")
        };
        let id = get("id").to_lowercase();
        if id.is_empty() {
            if record.iter().all(|f| f.trim().is_empty()) {
                continue;
            }
            problems.push(err(line, "row without an id".into()));
            continue;
        }
        let pos = match entries.iter().position(|(i, _)| *i == id) {
            Some(p) => p,
            None => {
                entries.push((
                    id.clone(),
                    Entry {
                        line,
                        ..Entry::default()
                    },
                ));
                entries.len() - 1
            }
        };
        let entry = &mut entries[pos].1;
        for &c in COLUMNS
            .iter()
            .filter(|c| !matches!(**c, "id" | "question_en" | "question_zh"))
        {
            let v = get(c);
            if v.is_empty() {
                continue;
            }
            if let Some(old) = entry.fields.get(c)
                && old != v
            {
                problems.push(err(
                    line,
                    format!(
                        "intent `{id}` already has a different {c} (row {})",
                        entry.line
                    ),
                ));
                continue;
            }
            entry.fields.insert(c, v.to_string());
        }
        let split = |s: &str| -> Vec<String> {
            s.split(['\n', '|'])
                .map(str::trim)
                .filter(|q| !q.is_empty())
                .map(str::to_string)
                .collect()
        };
        entry.questions_en.extend(split(get("question_en")));
        entry.questions_zh.extend(split(get("question_zh")));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(to_toml(path, &entries))
}

/// Which column each known header is in; the header row's problems otherwise.
fn columns(
    path: &Path,
    headers: &csv::StringRecord,
) -> Result<BTreeMap<&'static str, usize>, Vec<Diagnostic>> {
    let mut index = BTreeMap::new();
    let mut problems = Vec::new();
    for (i, h) in headers.iter().enumerate() {
        match COLUMNS.iter().find(|c| c.eq_ignore_ascii_case(h.trim())) {
            Some(c) => {
                index.insert(*c, i);
            }
            None => problems.push(Diagnostic {
                file: path.to_path_buf(),
                line: 1,
                col: i + 1,
                message: format!("unknown column {h:?}; expected: {}", COLUMNS.join(", ")),
            }),
        }
    }
    if !index.contains_key("id") {
        problems.push(Diagnostic {
            file: path.to_path_buf(),
            line: 1,
            col: 1,
            message: "the header row needs an `id` column".into(),
        });
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(index)
}

/// The knowledge-base file (TOML) of the imported intents.
fn to_toml(path: &Path, entries: &[(String, Entry)]) -> String {
    let q = |s: &str| toml::Value::String(s.to_string()).to_string();
    let mut out = format!("# Imported from {} by `kefu kb import`.\n", path.display());
    for (id, e) in entries {
        out.push_str(&format!("\n[intents.{}]\n", q(id)));
        for (key, col) in [
            ("title.en", "title_en"),
            ("title.zh", "title_zh"),
            ("answer.en", "answer_en"),
            ("answer.zh", "answer_zh"),
            ("chat.en", "chat_en"),
            ("chat.zh", "chat_zh"),
            ("handover", "handover"),
        ] {
            if let Some(v) = e.fields.get(col) {
                out.push_str(&format!("{key} = {}\n", q(v)));
            }
        }
        if let Some(tags) = e.fields.get("tags") {
            let list: Vec<String> = tags
                .split([',', '|'])
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(q)
                .collect();
            out.push_str(&format!("tags = [{}]\n", list.join(", ")));
        }
        for (key, qs) in [
            ("examples.en", &e.questions_en),
            ("examples.zh", &e.questions_zh),
        ] {
            if qs.is_empty() {
                continue;
            }
            out.push_str(&format!("{key} = [\n"));
            for question in qs {
                out.push_str(&format!("  {},\n", q(question)));
            }
            out.push_str("]\n");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialogue::kb::load_files;
    use std::path::PathBuf;

    #[test]
    fn rows_become_intents_that_load() {
        let csv = "id,title_en,question_en,answer_en,question_zh,answer_zh,title_zh,tags\n\
                   returns,returns,\"how do I return an item|can I send it back\",\"Return within 30 days, \"\"free\"\".\",怎么退货,30天内可退货。,退货,\"policy, returns\"\n\
                   returns,,what is your return policy,,退货政策是什么,,,\n";
        let toml = import(Path::new("faq.csv"), csv.as_bytes()).unwrap();
        let kb = load_files(&[(PathBuf::from("faq.toml"), toml.clone())]).unwrap();
        let i = kb.intent("returns").unwrap();
        assert_eq!(i.examples.len(), 5, "{toml}");
        assert_eq!(i.answer.0.values().next().unwrap(), "30天内可退货。");
        assert_eq!(
            i.answer.get(crate::dialogue::Lang::En),
            Some("Return within 30 days, \"free\".")
        );
        assert_eq!(i.tags, ["policy", "returns"]);
    }

    #[test]
    fn bad_sheets_are_reported_by_line() {
        let e = import(Path::new("f.csv"), b"id,question,answer_en\n").unwrap_err();
        assert!(
            e[0].to_string()
                .starts_with("f.csv:1:2: unknown column \"question\""),
            "{}",
            e[0]
        );
        let e = import(Path::new("f.csv"), b"id,answer_en\na,one\na,two\n").unwrap_err();
        assert!(
            e[0].to_string()
                .contains("f.csv:3:1: intent `a` already has a different answer_en"),
            "{}",
            e[0]
        );
    }
}
