//! The operations dashboard for supervisors, admins and auditors: the page
//! (`/dashboard`, charts drawn with the bundled uPlot), the report it shows
//! (`GET /api/reports`, with unanswered questions clustered by meaning when the
//! semantic model is loaded), each table as CSV (`GET /api/reports/csv/{table}`),
//! and drafting a knowledge-base entry from an unanswered cluster in one click
//! (`POST /api/kb/drafts`): the draft is a knowledge-base file in the `drafts/`
//! folder of the knowledge base, which the live knowledge base does not load, so
//! nothing changes for customers until someone writes the answer and adds it.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::{Extension, Json};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::admin::unavailable;
use super::{ApiError, Ops};
use crate::auth::Permission::{KbDraft, KbRead, Public, Reports};
use crate::dialogue::text::Lang;
use crate::http::routes::{Caller, Routes, Verb::*};
use crate::store::analytics::{CHANNELS, Report, TABLES};

/// The longest range one report covers.
const MAX_DAYS: i64 = 366;
/// A draft's question and example phrasings, at most.
const MAX_QUESTION: usize = 200;
const MAX_EXAMPLES: usize = 20;
const MAX_EXAMPLE: usize = 500;
/// The folder a draft's name puts it in (`drafts/ID.toml`): where it goes if it is
/// saved into the knowledge-base directory. Drafts themselves are kept sealed in
/// the store.
pub const DRAFTS: &str = "drafts";

pub fn routes(r: Routes<'_, Arc<Ops>>) -> Routes<'_, Arc<Ops>> {
    r.add(Get, "/dashboard", Public, page)
        .add(Get, "/assets/uplot.js", Public, uplot_js)
        .add(Get, "/assets/uplot.css", Public, uplot_css)
        .add(Get, "/api/reports", Reports, report)
        .add(Get, "/api/reports/csv/{table}", Reports, table_csv)
        .add(Get, "/api/kb/drafts", KbRead, drafts)
        .add(Post, "/api/kb/drafts", KbDraft, draft)
}

/// The page holds no data; it signs in and reads the routes above.
async fn page() -> axum::response::Html<&'static str> {
    axum::response::Html(include_str!("dashboard.html"))
}

/// uPlot 1.6.32 (MIT, `assets/LICENSE-uPlot`), served by kefu itself: the
/// dashboard works without the internet.
async fn uplot_js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        include_str!("assets/uPlot.iife.min.js"),
    )
}

async fn uplot_css() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        include_str!("assets/uPlot.min.css"),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Range {
    from: Option<String>,
    to: Option<String>,
    channel: Option<String>,
}

/// The days and channel asked for: the last 7 days and every channel by default.
fn range(q: &Range) -> Result<(NaiveDate, NaiveDate, Option<String>), ApiError> {
    let day = |name: &str, v: &Option<String>| -> Result<Option<NaiveDate>, ApiError> {
        v.as_deref()
            .filter(|s| !s.is_empty())
            .map(|s| {
                NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| {
                    ApiError::bad_request(format!("`{name}` must be a date, YYYY-MM-DD: {s:?}"))
                })
            })
            .transpose()
    };
    let to = day("to", &q.to)?.unwrap_or_else(|| chrono::Utc::now().date_naive());
    let from = day("from", &q.from)?.unwrap_or(to - chrono::Duration::days(6));
    if from > to {
        return Err(ApiError::bad_request("`from` must not be after `to`"));
    }
    if (to - from).num_days() >= MAX_DAYS {
        return Err(ApiError::bad_request(format!(
            "a report covers at most {MAX_DAYS} days"
        )));
    }
    let channel = q.channel.clone().filter(|c| !c.is_empty() && c != "all");
    if let Some(c) = &channel
        && !CHANNELS.contains(&c.as_str())
    {
        return Err(ApiError::bad_request(format!(
            "unknown channel {c:?}: one of {}",
            CHANNELS.join(", ")
        )));
    }
    Ok((from, to, channel))
}

fn query_error(r: axum::extract::rejection::QueryRejection) -> ApiError {
    ApiError::bad_request(format!("bad query: {}", r.body_text()))
}

/// The report, with unanswered questions clustered by meaning when the model is
/// loaded (off the async runtime: embedding is CPU work).
///
/// Only callers who may read call records (admins, supervisors) see customers'
/// own words, and each such read is in the audit log; others (auditors) get the
/// counts with the words withheld.
async fn build(ops: &Ops, q: &Range, c: &Caller) -> Result<Report, ApiError> {
    let (from, to, channel) = range(q)?;
    let mut report = ops
        .store
        .analytics(from, to, channel.as_deref())
        .await
        .map_err(unavailable)?;
    if let Some(embed) = ops.embed.clone() {
        report = tokio::task::spawn_blocking(move || {
            report.cluster_with(&embed);
            report
        })
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    }
    if !c.role.allows(crate::auth::Permission::CallRecords) {
        return Ok(report.without_customer_words());
    }
    if !report.unanswered.is_empty() {
        let detail = format!("{} to {}", report.from, report.to);
        ops.store
            .audit(&c.actor(), "report.customer_words", "unanswered", &detail)
            .await
            .map_err(unavailable)?;
    }
    Ok(report)
}

async fn report(
    State(ops): State<Arc<Ops>>,
    Extension(c): Extension<Caller>,
    q: Result<Query<Range>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Report>, ApiError> {
    let Query(q) = q.map_err(query_error)?;
    Ok(Json(build(&ops, &q, &c).await?))
}

async fn table_csv(
    State(ops): State<Arc<Ops>>,
    Extension(c): Extension<Caller>,
    Path(table): Path<String>,
    q: Result<Query<Range>, axum::extract::rejection::QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Query(q) = q.map_err(query_error)?;
    if !TABLES.contains(&table.as_str()) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no table {table:?}: one of {}", TABLES.join(", ")),
        ));
    }
    let r = build(&ops, &q, &c).await?;
    let csv = r
        .csv(&table)
        .unwrap_or_else(|| Err(anyhow::anyhow!("no table {table}")))
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")))?;
    let name = format!(
        "kefu-{table}-{}-{}{}.csv",
        r.from,
        r.to,
        r.channel
            .as_deref()
            .map_or(String::new(), |c| format!("-{c}"))
    );
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        csv,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DraftRequest {
    /// The cluster's question.
    question: String,
    /// How customers asked it.
    #[serde(default)]
    examples: Vec<String>,
}

#[derive(Serialize)]
struct Draft {
    /// The intent id the draft defines.
    intent: String,
    /// Its file, relative to the knowledge-base directory.
    file: String,
    examples: usize,
}

/// The intent id for a question: its ASCII words, or a hash for other scripts.
fn draft_id(question: &str) -> String {
    let words: Vec<String> = question
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .take(6)
        .map(str::to_ascii_lowercase)
        .collect();
    if words.is_empty() || !question.is_ascii() {
        use sha2::{Digest, Sha256};
        let h = Sha256::digest(question.as_bytes());
        format!("draft_{}", hex::encode(&h[..4]))
    } else {
        format!("draft_{}", words.join("_"))
    }
}

/// The draft's text: a knowledge-base file with the intent's title and example
/// questions, and no answer yet (so it cannot be loaded by mistake before one is
/// written: the loader requires it).
fn draft_text(id: &str, question: &str, examples: &[String], by: &str) -> anyhow::Result<String> {
    let mut by_lang: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    for e in examples {
        by_lang
            .entry(Lang::detect(e).code())
            .or_default()
            .push(e.clone());
    }
    let mut title = toml::Table::new();
    title.insert(
        Lang::detect(question).code().into(),
        toml::Value::String(question.to_string()),
    );
    let mut ex = toml::Table::new();
    for (lang, list) in by_lang {
        ex.insert(
            lang.into(),
            toml::Value::Array(list.into_iter().map(toml::Value::String).collect()),
        );
    }
    let mut intent = toml::Table::new();
    intent.insert("title".into(), toml::Value::Table(title));
    intent.insert("examples".into(), toml::Value::Table(ex));
    let mut intents = toml::Table::new();
    intents.insert(id.into(), toml::Value::Table(intent));
    let mut doc = toml::Table::new();
    doc.insert("intents".into(), toml::Value::Table(intents));
    Ok(format!(
        "# Draft knowledge-base entry, made on the dashboard by {by} on {} from\n\
         # questions customers asked that nothing answered. To put it live: write\n\
         # the answer (answer.zh / answer.en under the intent), check it with\n\
         # `kefu kb check`, and upload it (PUT /api/v1/kb/files/NAME.toml) or put\n\
         # it in the knowledge-base directory.\n\n{}",
        chrono::Utc::now().date_naive(),
        toml::to_string(&doc)?
    ))
}

async fn draft(
    State(ops): State<Arc<Ops>>,
    Extension(c): Extension<Caller>,
    body: Result<Json<DraftRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<Draft>), ApiError> {
    let Json(req) = body?;
    let question = req.question.trim().to_string();
    if question.is_empty() || question.chars().count() > MAX_QUESTION {
        return Err(ApiError::bad_request(format!(
            "`question` needs 1 to {MAX_QUESTION} characters"
        )));
    }
    if req.examples.len() > MAX_EXAMPLES
        || req.examples.iter().any(|e| e.chars().count() > MAX_EXAMPLE)
    {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_EXAMPLES} `examples` of at most {MAX_EXAMPLE} characters"
        )));
    }
    let mut examples: Vec<String> = Vec::new();
    for e in std::iter::once(&question).chain(&req.examples) {
        let e = e.trim().to_string();
        if !e.is_empty() && !examples.contains(&e) {
            examples.push(e);
        }
    }
    let id = draft_id(&question);
    let text = draft_text(&id, &question, &examples, &c.actor())
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")))?;
    let file = format!("{DRAFTS}/{id}.toml");
    ops.store
        .audit(
            &c.actor(),
            "kb.draft",
            &file,
            &format!("{} examples", examples.len()),
        )
        .await
        .map_err(unavailable)?;
    // Sealed in the store, not a file: the phrasings are customers' words.
    let written = ops
        .store
        .add_draft(&file, &text)
        .await
        .map_err(unavailable)?;
    if !written {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("a draft for this question already exists: {file}"),
        ));
    }
    tracing::info!(%file, by = %c.actor(), "knowledge-base draft written");
    Ok((
        StatusCode::CREATED,
        Json(Draft {
            intent: id,
            file,
            examples: examples.len(),
        }),
    ))
}

#[derive(Serialize)]
struct DraftView {
    file: String,
    text: String,
}

/// The drafts waiting for an answer, oldest name first.
async fn drafts(State(ops): State<Arc<Ops>>) -> Result<Json<Vec<DraftView>>, ApiError> {
    let list = ops.store.drafts().await.map_err(unavailable)?;
    Ok(Json(
        list.into_iter()
            .map(|(file, text)| DraftView { file, text })
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draft_ids_and_files() {
        assert_eq!(draft_id("do you sell kayaks"), "draft_do_you_sell_kayaks");
        assert!(draft_id("你们卖皮划艇吗").starts_with("draft_"));
        assert_eq!(draft_id("你们卖皮划艇吗").len(), "draft_".len() + 8);
        let text = draft_text(
            "draft_x",
            "do you sell \"kayaks\"",
            &["do you sell \"kayaks\"".into(), "你们卖皮划艇吗".into()],
            "user:li",
        )
        .unwrap();
        let body: String = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n");
        let v: toml::Table = toml::from_str(&body).unwrap();
        assert_eq!(
            v["intents"]["draft_x"]["examples"]["zh"][0].as_str(),
            Some("你们卖皮划艇吗")
        );
        assert_eq!(
            v["intents"]["draft_x"]["title"]["en"].as_str(),
            Some("do you sell \"kayaks\"")
        );
        assert!(v["intents"]["draft_x"].get("answer").is_none());
    }
}
