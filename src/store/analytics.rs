//! What supervisors read every day, computed from the store for a date range:
//! the automation (self-service) rate by channel and day, how fast the machine
//! replied, the hot topics, and the questions the knowledge base could not
//! answer, grouped so staff can add them.
//!
//! Days are UTC calendar days of a conversation's start. A conversation is
//! *handed over* when an agent spoke in it or a ticket was opened for it;
//! every other one was resolved by the machine alone. A customer's message is
//! *unanswered* when the dialogue core matched no intent to it, or matched one
//! with confidence under [`UNANSWERED_BELOW`].

use std::collections::{BTreeMap, HashMap};

use anyhow::Context;
use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use sqlx::Row;

use super::{Store, ms};

/// Matches below this confidence count as unanswered.
pub const UNANSWERED_BELOW: f32 = 0.5;
/// Unanswered groups reported at most, and example phrasings per group.
const MAX_GROUPS: usize = 50;
const EXAMPLES: usize = 3;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DayRow {
    pub day: NaiveDate,
    pub channel: String,
    pub conversations: i64,
    /// Resolved without a person.
    pub automated: i64,
    pub handed_over: i64,
    /// automated / conversations.
    pub automation_rate: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Percentiles {
    pub count: usize,
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Unanswered {
    /// The question as grouped (lower case, punctuation and spacing folded).
    pub question: String,
    pub count: usize,
    /// How customers put it, as they wrote or said it.
    pub examples: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub days: Vec<DayRow>,
    /// All channels together.
    pub conversations: i64,
    pub automated: i64,
    pub automation_rate: Option<f64>,
    /// The machine's reply time (customer message in → reply committed).
    pub bot_reply: Percentiles,
    pub top_intents: Vec<(String, i64)>,
    pub unanswered: Vec<Unanswered>,
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted.get(rank.min(sorted.len()) - 1).copied()
}

/// How unanswered questions are grouped: lower case, letters and digits only,
/// single spaces.
pub fn question_key(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars().flat_map(char::to_lowercase) {
        if c.is_alphanumeric() {
            out.push(c);
        } else if !out.ends_with(' ') && !out.is_empty() {
            out.push(' ');
        }
    }
    out.trim_end().to_string()
}

fn day_start(d: NaiveDate) -> i64 {
    ms(d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc())
}

impl Store {
    /// The report for the UTC days `from` to `to`, both included.
    pub async fn analytics(&self, from: NaiveDate, to: NaiveDate) -> anyhow::Result<Report> {
        let (start, end) = (day_start(from), day_start(to.succ_opt().unwrap_or(to)));
        let p = self.pool();
        let rows = sqlx::query(
            "SELECT c.id, c.channel, c.started_ms, \
             (SELECT COUNT(*) FROM turns t WHERE t.conversation_id = c.id AND t.speaker = 'agent') \
             + (SELECT COUNT(*) FROM tickets k WHERE k.conversation_id = c.id) AS people \
             FROM conversations c WHERE c.started_ms >= $1 AND c.started_ms < $2",
        )
        .bind(start)
        .bind(end)
        .fetch_all(p)
        .await
        .context("cannot read conversations")?;
        let mut days: BTreeMap<(NaiveDate, String), (i64, i64)> = BTreeMap::new();
        for r in &rows {
            let channel: String = r.try_get(1)?;
            let started: i64 = r.try_get(2)?;
            let people: i64 = r.try_get(3)?;
            let day = DateTime::<Utc>::from_timestamp_millis(started)
                .map(|t| t.date_naive())
                .unwrap_or(from);
            let e = days.entry((day, channel)).or_default();
            e.0 += 1;
            if people == 0 {
                e.1 += 1;
            }
        }
        let days: Vec<DayRow> = days
            .into_iter()
            .map(|((day, channel), (n, automated))| DayRow {
                day,
                channel,
                conversations: n,
                automated,
                handed_over: n - automated,
                automation_rate: automated as f64 / n as f64,
            })
            .collect();
        let conversations: i64 = days.iter().map(|d| d.conversations).sum();
        let automated: i64 = days.iter().map(|d| d.automated).sum();

        let mut reply: Vec<f64> = sqlx::query(
            "SELECT latency_us FROM turns WHERE speaker = 'bot' AND latency_us IS NOT NULL \
             AND at_ms >= $1 AND at_ms < $2",
        )
        .bind(start)
        .bind(end)
        .fetch_all(p)
        .await?
        .iter()
        .map(|r| r.try_get::<i64, _>(0).map(|us| us as f64 / 1000.0))
        .collect::<Result<_, _>>()?;
        reply.sort_by(f64::total_cmp);

        let intents = sqlx::query(
            "SELECT intent, COUNT(*) FROM turns WHERE speaker = 'customer' AND intent IS NOT NULL \
             AND at_ms >= $1 AND at_ms < $2 GROUP BY intent ORDER BY COUNT(*) DESC, intent LIMIT 20",
        )
        .bind(start)
        .bind(end)
        .fetch_all(p)
        .await?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<anyhow::Result<Vec<(String, i64)>>>()?;

        // Unanswered questions: their text is sealed, so they are opened here
        // and grouped in memory.
        let rows = sqlx::query(
            "SELECT text, key_id FROM turns WHERE speaker = 'customer' \
             AND (intent IS NULL OR confidence < $3) AND at_ms >= $1 AND at_ms < $2",
        )
        .bind(start)
        .bind(end)
        .bind(f64::from(UNANSWERED_BELOW))
        .fetch_all(p)
        .await?;
        let mut groups: HashMap<String, Unanswered> = HashMap::new();
        for r in &rows {
            let sealed: Vec<u8> = r.try_get(0)?;
            let text = self.sealer().open(r.try_get(1)?, "turns.text", &sealed)?;
            let key = question_key(&text);
            if key.is_empty() {
                continue;
            }
            let g = groups.entry(key.clone()).or_insert_with(|| Unanswered {
                question: key,
                count: 0,
                examples: Vec::new(),
            });
            g.count += 1;
            let example = text.trim().to_string();
            if g.examples.len() < EXAMPLES && !g.examples.contains(&example) {
                g.examples.push(example);
            }
        }
        let mut unanswered: Vec<Unanswered> = groups.into_values().collect();
        unanswered.sort_by(|a, b| b.count.cmp(&a.count).then(a.question.cmp(&b.question)));
        unanswered.truncate(MAX_GROUPS);

        Ok(Report {
            from,
            to,
            automation_rate: (conversations > 0).then(|| automated as f64 / conversations as f64),
            days,
            conversations,
            automated,
            bot_reply: Percentiles {
                count: reply.len(),
                p50_ms: percentile(&reply, 0.5),
                p90_ms: percentile(&reply, 0.9),
            },
            top_intents: intents,
            unanswered,
        })
    }
}

impl Report {
    /// The daily table as CSV.
    pub fn days_csv(&self) -> String {
        let mut out =
            String::from("day,channel,conversations,automated,handed_over,automation_rate\n");
        for d in &self.days {
            out.push_str(&format!(
                "{},{},{},{},{},{:.4}\n",
                d.day, d.channel, d.conversations, d.automated, d.handed_over, d.automation_rate
            ));
        }
        out
    }

    /// The whole report as Markdown.
    pub fn markdown(&self) -> String {
        let pct = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.1} %", v * 100.0));
        let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1} ms"));
        let mut out = format!(
            "# kefu report {} to {}\n\nConversations: {}, resolved without a person: {} ({}).\n\
             Machine reply time: p50 {}, p90 {} ({} replies).\n\n\
             | day | channel | conversations | automated | handed over | automation |\n|---|---|---|---|---|---|\n",
            self.from,
            self.to,
            self.conversations,
            self.automated,
            pct(self.automation_rate),
            ms(self.bot_reply.p50_ms),
            ms(self.bot_reply.p90_ms),
            self.bot_reply.count
        );
        for d in &self.days {
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} |\n",
                d.day,
                d.channel,
                d.conversations,
                d.automated,
                d.handed_over,
                pct(Some(d.automation_rate))
            ));
        }
        out.push_str("\n## Hot topics\n\n| intent | questions |\n|---|---|\n");
        for (intent, n) in &self.top_intents {
            out.push_str(&format!("| {intent} | {n} |\n"));
        }
        out.push_str(
            "\n## Unanswered questions\n\n| question | times | as asked |\n|---|---|---|\n",
        );
        for u in &self.unanswered {
            out.push_str(&format!(
                "| {} | {} | {} |\n",
                u.question.replace('|', "/"),
                u.count,
                u.examples.join(" / ").replace('|', "/")
            ));
        }
        out
    }
}

/// Writes the report of each finished UTC day to `dir` (`DAY.md` and `DAY.json`):
/// yesterday's at start if it is missing, then each day shortly after midnight,
/// until `stop`.
pub async fn daily(
    store: Store,
    dir: std::path::PathBuf,
    stop: tokio_util::sync::CancellationToken,
) {
    loop {
        let now = Utc::now();
        let yesterday = now.date_naive() - chrono::Duration::days(1);
        if let Err(e) = write_day(&store, &dir, yesterday).await {
            tracing::warn!(error = format!("{e:#}"), day = %yesterday, "cannot write the daily report");
        }
        // Five minutes past the next UTC midnight.
        let next = (now.date_naive() + chrono::Duration::days(1))
            .and_hms_opt(0, 5, 0)
            .unwrap_or_default()
            .and_utc();
        let wait = (next - now)
            .to_std()
            .unwrap_or(std::time::Duration::from_secs(3600));
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// The report of `day`, unless it is already written (atomically: a temporary
/// file renamed into place).
async fn write_day(store: &Store, dir: &std::path::Path, day: NaiveDate) -> anyhow::Result<()> {
    let md = dir.join(format!("{day}.md"));
    if md.exists() {
        return Ok(());
    }
    let r = store.analytics(day, day).await?;
    tokio::fs::create_dir_all(dir)
        .await
        .with_context(|| format!("cannot create {}", dir.display()))?;
    for (path, text) in [
        (
            dir.join(format!("{day}.json")),
            serde_json::to_string_pretty(&r)?,
        ),
        (md, r.markdown()),
    ] {
        let tmp = path.with_extension("tmp");
        tokio::fs::write(&tmp, text)
            .await
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        tokio::fs::rename(&tmp, &path)
            .await
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    tracing::info!(%day, dir = %dir.display(), "daily report written");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_question_keys() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0];
        assert_eq!(percentile(&v, 0.5), Some(5.0));
        assert_eq!(percentile(&v, 0.9), Some(9.0));
        assert_eq!(percentile(&[], 0.5), None);
        assert_eq!(percentile(&[7.0], 0.9), Some(7.0));
        assert_eq!(
            question_key("  Do you sell KAYAKS?? "),
            "do you sell kayaks"
        );
        assert_eq!(question_key("你们卖皮划艇吗？"), "你们卖皮划艇吗");
    }
}
