//! The knowledge base over HTTP, for integrators and staff: what it holds
//! (`GET /api/v1/kb`), what a question would match (`POST /api/v1/kb/match`), and
//! uploading a file (`PUT /api/v1/kb/files/{name}`): the upload is loaded together
//! with the other files first, so a broken file is refused with its
//! `file:line:col` errors and never reaches the live knowledge base; a good one is
//! written atomically and picked up by the reload watcher like any edit.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, body::Bytes};
use serde::{Deserialize, Serialize};

use super::{ApiError, Ops};
use crate::auth::Permission::{KbRead, KbWrite};
use crate::dialogue::kb::Texts;
use crate::dialogue::matcher::Outcome;
use crate::dialogue::text::Lang;
use crate::http::routes::{Caller, Routes, Verb::*};

pub fn routes(r: Routes<'_, Arc<Ops>>) -> Routes<'_, Arc<Ops>> {
    r.add(Get, "/api/v1/kb", KbRead, view)
        .add(Post, "/api/v1/kb/match", KbRead, try_match)
        .add(Put, "/api/v1/kb/files/{name}", KbWrite, upload)
}

fn texts(t: &Texts) -> BTreeMap<&'static str, String> {
    t.0.iter().map(|(l, s)| (l.code(), s.clone())).collect()
}

#[derive(Serialize)]
struct IntentView {
    id: String,
    title: BTreeMap<&'static str, String>,
    examples: usize,
    tags: Vec<String>,
    handover: Option<String>,
    file: String,
    line: usize,
}

#[derive(Serialize)]
struct KbView {
    version: String,
    intents: Vec<IntentView>,
}

async fn view(State(ops): State<Arc<Ops>>) -> Json<KbView> {
    let m = ops.kb.current();
    Json(KbView {
        version: m.kb.version.clone(),
        intents: m
            .kb
            .intents
            .iter()
            .map(|i| IntentView {
                id: i.id.clone(),
                title: texts(&i.title),
                examples: i.examples.len(),
                tags: i.tags.clone(),
                handover: i.handover.clone(),
                file: i
                    .file
                    .file_name()
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                line: i.line,
            })
            .collect(),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MatchRequest {
    text: String,
    lang: Option<String>,
}

#[derive(Serialize)]
struct Candidate {
    intent: String,
    score: f32,
}

#[derive(Serialize)]
struct MatchView {
    version: String,
    /// "answer", "clarify" or "out_of_scope".
    outcome: &'static str,
    ranked: Vec<Candidate>,
}

async fn try_match(
    State(ops): State<Arc<Ops>>,
    body: Result<Json<MatchRequest>, JsonRejection>,
) -> Result<Json<MatchView>, ApiError> {
    let Json(req) = body?;
    let text = crate::channel::chat::message_text(&req.text)?.to_string();
    let lang = match req.lang.as_deref() {
        None => Lang::detect(&text),
        Some(code) => Lang::from_code(code)
            .ok_or_else(|| ApiError::bad_request(format!("unknown language {code:?}")))?,
    };
    let m = ops.kb.current();
    // Embedding the question is CPU work: off the async runtime.
    let (ranked, outcome) = tokio::task::spawn_blocking(move || {
        let ranked = m.rank(&text, lang, None, 5);
        let outcome = m.decide(&ranked);
        let named: Vec<Candidate> = ranked
            .iter()
            .map(|s| Candidate {
                intent: m.kb.intents[s.intent].id.clone(),
                score: s.score,
            })
            .collect();
        (named, outcome)
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(Json(MatchView {
        version: ops.kb.current().kb.version.clone(),
        outcome: match outcome {
            Outcome::Answer(_) => "answer",
            Outcome::Clarify(..) => "clarify",
            Outcome::OutOfScope(_) => "out_of_scope",
        },
        ranked,
    }))
}

/// The largest knowledge-base file accepted.
const MAX_FILE: usize = 1024 * 1024;

/// Spreadsheets an upload may be, besides a knowledge-base file: imported as by
/// `kefu kb import` and kept as the TOML file of the same name.
const SHEETS: &[&str] = &["csv", "tsv", "txt", "xlsx", "xls", "xlsb", "ods"];

/// The stem of an acceptable upload name and whether it is a spreadsheet.
fn file_name_ok(name: &str) -> Option<(&str, bool)> {
    let (stem, ext) = name.rsplit_once('.')?;
    let sheet = SHEETS.contains(&ext);
    let ok = name.len() <= 69
        && (ext == "toml" || sheet)
        && !stem.is_empty()
        && stem
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    ok.then_some((stem, sheet))
}

#[derive(Serialize)]
struct Uploaded {
    file: String,
    /// The version the knowledge base will have once the watcher reloads it.
    version: String,
    intents: usize,
}

async fn upload(
    State(ops): State<Arc<Ops>>,
    Extension(c): Extension<Caller>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<Uploaded>, ApiError> {
    let Some((stem, sheet)) = file_name_ok(&name) else {
        return Err(ApiError::bad_request(
            "the file name must be letters, digits, '_' or '-', ending in .toml \
             (or a spreadsheet's .csv, .tsv, .txt, .xlsx, .xls, .xlsb, .ods)",
        ));
    };
    if body.len() > MAX_FILE {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "a knowledge-base file may be at most 1 MiB",
        ));
    }
    let (name, text) = if sheet {
        let sheet_name = name.clone();
        let text = tokio::task::spawn_blocking(move || {
            crate::dialogue::kb::import::import(std::path::Path::new(&sheet_name), &body)
        })
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|problems| {
            let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, lines.join("\n"))
        })?;
        (format!("{stem}.toml"), text)
    } else {
        let text = String::from_utf8(body.to_vec())
            .map_err(|_| ApiError::bad_request("the file is not UTF-8 text"))?;
        (name, text)
    };
    let dir = ops.kb_dir.clone();
    let target = dir.join(&name);
    // Load it with every other file, as the watcher will.
    let candidate = target.clone();
    let upload_text = text.clone();
    let kb = tokio::task::spawn_blocking(move || {
        let mut files: Vec<(PathBuf, String)> = Vec::new();
        if dir.is_dir() {
            let paths = crate::source::toml_files(&dir, "knowledge-base")
                .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))?;
            for p in paths.into_iter().filter(|p| *p != candidate) {
                let t = std::fs::read_to_string(&p).map_err(|e| {
                    ApiError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("cannot read {}: {e}", p.display()),
                    )
                })?;
                files.push((p, t));
            }
        }
        files.push((candidate, upload_text));
        files.sort();
        // Positions name the file, not where the server keeps it.
        let prefix = format!("{}/", dir.display());
        crate::dialogue::kb::load_files(&files).map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                e.to_string().replace(&prefix, ""),
            )
        })
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    // Audited before it is written: no change without its entry.
    ops.store
        .audit(
            &c.actor(),
            "kb.upload",
            &name,
            &format!("version {}, {} intents", kb.version, kb.intents.len()),
        )
        .await
        .map_err(|e| {
            tracing::error!(
                error = format!("{e:#}"),
                "cannot audit a knowledge-base upload"
            );
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "could not be recorded")
        })?;
    let dir = ops.kb_dir.clone();
    let file = name.clone();
    tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&dir)?;
        let tmp = dir.join(format!(".{file}.upload"));
        std::fs::write(&tmp, text.as_bytes())?;
        std::fs::rename(&tmp, dir.join(&file))
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    .map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot write {name}: {e}"),
        )
    })?;
    tracing::info!(file = %target.display(), by = %c.actor(), version = %kb.version, "knowledge-base file uploaded");
    Ok(Json(Uploaded {
        file: name,
        version: kb.version,
        intents: kb.intents.len(),
    }))
}

#[cfg(test)]
mod tests {
    #[test]
    fn file_names() {
        for (ok, stem, sheet) in [
            ("faq.toml", "faq", false),
            ("orders_2026-11.toml", "orders_2026-11", false),
            ("faq.xlsx", "faq", true),
            ("faq.csv", "faq", true),
        ] {
            assert_eq!(super::file_name_ok(ok), Some((stem, sheet)), "{ok}");
        }
        for bad in [
            ".toml",
            "../x.toml",
            "a/b.toml",
            "faq.docx",
            "faq",
            ".hidden.toml",
        ] {
            assert_eq!(super::file_name_ok(bad), None, "{bad}");
        }
    }
}
