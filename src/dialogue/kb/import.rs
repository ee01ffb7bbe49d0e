//! `kefu kb import`: a spreadsheet (a workbook or exported text, read by
//! [`super::sheet`]) to a knowledge-base file.
//!
//! Columns, by header name: `id` (required), `title_en`, `title_zh`, `question_en`,
//! `question_zh`, `answer_en`, `answer_zh`, `chat_en`, `chat_zh`, `tags`, `handover`,
//! and `notes` (ignored). Headers are matched without regard to case, spaces,
//! `_`, `-` or brackets (`Question (EN)`), and the Chinese names a team writes
//! (编号, 标题, 问题, 答案, 英文问题, 英文答案, 标签, 备注, …) are taken too.
//! Questions may be several per cell (one per line, or separated by `|`); rows with
//! the same id add questions to the intent. An intent without a title in a language
//! is named by its first question in it.

use std::collections::BTreeMap;
use std::path::Path;

use super::sheet;
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
    "notes",
];

/// Other names for the columns, written as [`key`] leaves them.
const ALIASES: &[(&str, &str)] = &[
    ("intent", "id"),
    ("编号", "id"),
    ("意图", "id"),
    ("titleenglish", "title_en"),
    ("englishtitle", "title_en"),
    ("英文标题", "title_en"),
    ("titlechinese", "title_zh"),
    ("chinesetitle", "title_zh"),
    ("标题", "title_zh"),
    ("中文标题", "title_zh"),
    ("questionsen", "question_en"),
    ("englishquestion", "question_en"),
    ("englishquestions", "question_en"),
    ("examplesen", "question_en"),
    ("英文问题", "question_en"),
    ("英文问法", "question_en"),
    ("questionszh", "question_zh"),
    ("chinesequestion", "question_zh"),
    ("chinesequestions", "question_zh"),
    ("exampleszh", "question_zh"),
    ("问题", "question_zh"),
    ("问法", "question_zh"),
    ("中文问题", "question_zh"),
    ("中文问法", "question_zh"),
    ("相似问法", "question_zh"),
    ("englishanswer", "answer_en"),
    ("英文答案", "answer_en"),
    ("英文回答", "answer_en"),
    ("chineseanswer", "answer_zh"),
    ("答案", "answer_zh"),
    ("回答", "answer_zh"),
    ("中文答案", "answer_zh"),
    ("中文回答", "answer_zh"),
    ("标签", "tags"),
    ("转人工", "handover"),
    ("note", "notes"),
    ("comment", "notes"),
    ("comments", "notes"),
    ("备注", "notes"),
];

/// A header as it is compared: lower case, without spaces, `_`, `-` or brackets.
fn key(header: &str) -> String {
    header
        .chars()
        .filter(|c| !c.is_whitespace() && !"_-()（）[]【】".contains(*c))
        .flat_map(char::to_lowercase)
        .collect()
}

/// The column a header names, by its name or an alias.
fn column(header: &str) -> Option<&'static str> {
    let k = key(header);
    COLUMNS
        .iter()
        .find(|c| key(c) == k)
        .copied()
        .or_else(|| ALIASES.iter().find(|(a, _)| *a == k).map(|(_, c)| *c))
}

#[derive(Default)]
struct Entry {
    fields: BTreeMap<&'static str, String>,
    questions_en: Vec<String>,
    questions_zh: Vec<String>,
    line: usize,
}

/// The TOML text of a knowledge-base file holding the spreadsheet's intents.
pub fn import(path: &Path, data: &[u8]) -> Result<String, Vec<Diagnostic>> {
    let err = |line: usize, message: String| Diagnostic {
        file: path.to_path_buf(),
        line,
        col: 1,
        message,
    };
    let has_id = |cells: &[String]| cells.iter().any(|c| column(c) == Some("id"));
    let rows = sheet::rows(path, data, &has_id).map_err(|d| vec![d])?;
    let mut rows = rows
        .into_iter()
        .filter(|r| r.cells.iter().any(|c| !c.trim().is_empty()));
    let Some(header) = rows.next() else {
        return Err(vec![err(
            1,
            "the sheet is empty: it needs a header row".into(),
        )]);
    };
    let index = columns(path, &header)?;
    let mut problems = Vec::new();
    let mut entries: Vec<(String, Entry)> = Vec::new();
    for row in rows {
        let line = row.line;
        let get = |c: &str| {
            index
                .get(c)
                .and_then(|&i| row.cells.get(i))
                .map(|s| s.trim())
                .unwrap_or("")
        };
        let id = get("id").to_lowercase();
        if id.is_empty() {
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
            .filter(|c| !matches!(**c, "id" | "question_en" | "question_zh" | "notes"))
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
            s.split(['\n', '|', '｜'])
                .map(str::trim)
                .filter(|q| !q.is_empty())
                .map(str::to_string)
                .collect()
        };
        entry.questions_en.extend(split(get("question_en")));
        entry.questions_zh.extend(split(get("question_zh")));
    }
    if entries.is_empty() && problems.is_empty() {
        problems.push(err(
            header.line,
            "the sheet has a header row but no intents".into(),
        ));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(to_toml(path, &entries))
}

/// Which column each known header is in; the header row's problems otherwise.
fn columns(
    path: &Path,
    header: &sheet::Row,
) -> Result<BTreeMap<&'static str, usize>, Vec<Diagnostic>> {
    let mut index = BTreeMap::new();
    let mut problems = Vec::new();
    let problem = |col: usize, message: String| Diagnostic {
        file: path.to_path_buf(),
        line: header.line,
        col,
        message,
    };
    for (i, h) in header.cells.iter().enumerate() {
        if key(h).is_empty() {
            continue;
        }
        match column(h) {
            Some(c) if index.contains_key(c) => {
                problems.push(problem(i + 1, format!("a second {c} column ({h:?})")))
            }
            Some(c) => {
                index.insert(c, i);
            }
            None => problems.push(problem(
                i + 1,
                format!("unknown column {h:?}; expected: {}", COLUMNS.join(", ")),
            )),
        }
    }
    if !index.contains_key("id") {
        problems.push(problem(1, "the header row needs an `id` column".into()));
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
        // A sheet without titles: an intent is named by its first question in
        // each language ("Do you mean …?" needs a name).
        for (key, col, questions) in [
            ("title.en", "title_en", &e.questions_en),
            ("title.zh", "title_zh", &e.questions_zh),
        ] {
            if let (None, Some(first)) = (e.fields.get(col), questions.first()) {
                let name = first.trim_end_matches(['?', '？', '.', '。', '!', '！']);
                out.push_str(&format!("{key} = {}\n", q(name)));
            }
        }
        if let Some(tags) = e.fields.get("tags") {
            let list: Vec<String> = tags
                .split([',', '|', '，', '、'])
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
    fn a_teams_own_headers_and_no_titles() {
        let csv = "\u{feff}编号,问题,答案,Question (EN),英文答案,备注,\n\
                   refund,退款多久到账？｜钱什么时候退回来,3到5个工作日。,When will I get my refund?,Within 3 to 5 working days.,checked,\n\
                   ,,,,,,\n";
        let toml = import(Path::new("faq.csv"), csv.as_bytes()).unwrap();
        let kb = load_files(&[(PathBuf::from("faq.toml"), toml.clone())]).unwrap();
        let i = kb.intent("refund").unwrap();
        assert_eq!(i.examples.len(), 3, "{toml}");
        assert_eq!(i.title.get(crate::dialogue::Lang::Zh), Some("退款多久到账"));
        assert_eq!(
            i.title.get(crate::dialogue::Lang::En),
            Some("When will I get my refund")
        );
        let e = refused("id,问题,question_zh\n".as_bytes());
        assert!(
            e.starts_with("f.csv:1:3: a second question_zh column"),
            "{e}"
        );
        let e = refused(b"id,answer_en\n");
        assert!(e.contains("no intents"), "{e}");
    }

    /// The first problem `import` finds in `f.csv` holding `data`.
    fn refused(data: &[u8]) -> String {
        import(Path::new("f.csv"), data).unwrap_err()[0].to_string()
    }

    #[test]
    fn bad_sheets_are_reported_by_line() {
        let e = refused(b"id,question,answer_en\n");
        assert!(
            e.starts_with("f.csv:1:2: unknown column \"question\""),
            "{e}"
        );
        let e = refused(b"id,answer_en\na,one\na,two\n");
        assert!(
            e.contains("f.csv:3:1: intent `a` already has a different answer_en"),
            "{e}"
        );
    }
}
