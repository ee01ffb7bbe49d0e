//! What supervisors read every day, computed from the store for a date range
//! (and, optionally, one channel): the automation (self-service) rate by channel
//! and day, first-response and resolution times for the machine and for people,
//! why customers were handed over, how the agent queues did (abandonment, wait
//! and handle times per queue and agent), how callers used the menu (keys or
//! speech) and how sure the recognizer was, the hot topics and their trend, and
//! the questions the knowledge base could not answer, grouped so staff can add
//! them.
//!
//! Here: the report's types and the per-contact SQL; `report` builds the report
//! (stays, topics, unanswered questions), `cluster` groups unanswered questions by
//! meaning, `export` writes the tables as CSV and the report as Markdown, `daily`
//! writes each finished day's report to disk.
//!
//! Definitions (the dashboard and `kefu report` show exactly these):
//! - A *contact* is a conversation (any channel) or an answered call without one
//!   (a call that only used the keypad); its day is the UTC day it started. It is
//!   *handed over* when an agent spoke in it, a ticket was opened for it (or its
//!   call), or its call was transferred; every other contact was resolved by the
//!   machine alone.
//! - First response: the machine's is each reply's time (customer message in →
//!   reply committed); a person's is from the hand-over to the agent's first
//!   message (chat) or to the agent on the line (calls).
//! - Resolution: the machine's is from the contact's start to its last turn (a
//!   call: to its end), for contacts it resolved; a person's is from the
//!   contact's start to the agent finishing it.
//! - A queue stay is *abandoned* when the customer left before an agent took it;
//!   wait is from joining the queue to being taken (or leaving), handle time from
//!   being taken to the agent finishing.
//! - A customer's message is *unanswered* when the dialogue core matched no
//!   intent to it, or matched one with confidence under [`UNANSWERED_BELOW`].

use std::collections::{BTreeMap, HashMap};

use anyhow::Context;
use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use sqlx::Row;

use super::{Store, ms};
use crate::agents::center::Stay;

mod cluster;
mod daily;
mod export;
mod report;

pub use cluster::{CLUSTER_THRESHOLD, Embed, cluster};
pub use daily::daily;
pub use export::{CHANNELS, TABLES};

/// Matches below this confidence count as unanswered.
pub const UNANSWERED_BELOW: f32 = 0.5;
/// Unanswered groups reported at most, and example phrasings per group.
const MAX_GROUPS: usize = 50;
const EXAMPLES: usize = 3;
/// Hot topics reported, and how many of them the trend follows.
const TOP_INTENTS: usize = 20;
const TREND_INTENTS: usize = 5;

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

impl Percentiles {
    fn of(mut v: Vec<f64>) -> Self {
        v.sort_by(f64::total_cmp);
        Self {
            count: v.len(),
            p50_ms: percentile(&v, 0.5),
            p90_ms: percentile(&v, 0.9),
        }
    }
}

/// The machine's and people's figures side by side.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Times {
    pub bot: Percentiles,
    pub human: Percentiles,
}

/// A name and how often it happened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Count {
    pub key: String,
    pub count: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct QueueRow {
    pub queue: String,
    /// Customers who joined the queue.
    pub stays: i64,
    pub answered: i64,
    pub abandoned: i64,
    pub timed_out: i64,
    /// abandoned / stays.
    pub abandonment_rate: f64,
    pub avg_wait_ms: Option<f64>,
    pub avg_handle_ms: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AgentRow {
    pub agent: String,
    /// Conversations and calls the agent took.
    pub answered: i64,
    /// How long those customers had waited.
    pub avg_wait_ms: Option<f64>,
    pub avg_handle_ms: Option<f64>,
}

/// How answered calls used the menu.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct InputUse {
    pub calls: i64,
    pub keys_only: i64,
    pub speech_only: i64,
    pub both: i64,
    pub neither: i64,
}

/// Recognised utterances whose confidence was in `[from, to)` (the last bucket
/// includes 1.0).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Bucket {
    pub from: f64,
    pub to: f64,
    pub count: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TrendRow {
    pub day: NaiveDate,
    pub intent: String,
    pub count: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Unanswered {
    /// The question as grouped (lower case, punctuation and spacing folded); for
    /// a cluster, its most asked member.
    pub question: String,
    pub count: usize,
    /// How customers put it, as they wrote or said it.
    pub examples: Vec<String>,
    /// Differently worded questions merged into this group (1 unless clustered
    /// by meaning).
    pub phrasings: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    pub from: NaiveDate,
    pub to: NaiveDate,
    /// The one channel reported, or all.
    pub channel: Option<String>,
    pub days: Vec<DayRow>,
    /// All channels together.
    pub conversations: i64,
    pub automated: i64,
    pub handed_over: i64,
    pub automation_rate: Option<f64>,
    /// handed_over / conversations.
    pub transfer_rate: Option<f64>,
    pub first_response: Times,
    pub resolution: Times,
    /// Why customers were handed to a person (queue stays by reason, and blind
    /// transfers).
    pub transfer_reasons: Vec<Count>,
    pub queues: Vec<QueueRow>,
    pub agents: Vec<AgentRow>,
    pub input: InputUse,
    /// Ten buckets, 0.0–0.1 to 0.9–1.0.
    pub asr_confidence: Vec<Bucket>,
    pub top_intents: Vec<Count>,
    /// The top intents' questions per day.
    pub intent_trend: Vec<TrendRow>,
    pub unanswered: Vec<Unanswered>,
    /// Customers' ratings (`store::ratings`).
    pub satisfaction: crate::store::ratings::Satisfaction,
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

pub(crate) fn day_start(d: NaiveDate) -> i64 {
    ms(d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc())
}

pub(crate) fn day_of(t: i64, fallback: NaiveDate) -> NaiveDate {
    DateTime::<Utc>::from_timestamp_millis(t).map_or(fallback, |t| t.date_naive())
}

fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// What stands for a customer's words in a report for someone who may only see
/// aggregates (an auditor).
pub const WITHHELD: &str = "(customer's words withheld)";

impl Report {
    /// The report with the customers' own words (unanswered questions and their
    /// examples) taken out: counts only.
    pub fn without_customer_words(mut self) -> Self {
        for u in &mut self.unanswered {
            u.question = WITHHELD.to_string();
            u.examples.clear();
        }
        self
    }
}

/// A contact: a conversation, or an answered call without one.
pub(crate) struct Contact {
    /// The conversation or call id.
    pub id: String,
    /// "conversation" or "call".
    pub kind: &'static str,
    pub day: NaiveDate,
    pub started_ms: i64,
    pub channel: String,
    pub handed_over: bool,
    /// How long the machine took to resolve it (if it did).
    pub bot_resolution_ms: f64,
}

/// What answered calls did.
pub(crate) struct CallStats {
    input: InputUse,
    /// Utterances per tenth of recognizer confidence.
    confidence: [i64; 10],
    /// Blind transfers.
    blind: i64,
}

impl Store {
    /// Writes a finished queue stay (a repeated one is ignored).
    pub async fn record_stay(&self, s: &Stay) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO queue_stays (item, queue, channel, reason, agent, enqueued_ms, \
             answered_ms, ended_ms, outcome) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (item, enqueued_ms) DO NOTHING",
        )
        .bind(s.item.as_str())
        .bind(s.queue.as_str())
        .bind(s.channel.as_str())
        .bind(s.reason.as_str())
        .bind(s.agent.as_deref())
        .bind(ms(s.enqueued))
        .bind(s.answered.map(ms))
        .bind(ms(s.ended))
        .bind(s.outcome)
        .execute(self.pool())
        .await
        .context("cannot record a queue stay")?;
        Ok(())
    }

    /// The contacts that started in `[start, end)` (ms), of one channel or all
    /// (""), and what the answered calls among them did.
    pub(crate) async fn contacts(
        &self,
        start: i64,
        end: i64,
        only: &str,
        from: NaiveDate,
    ) -> anyhow::Result<(Vec<Contact>, CallStats)> {
        let p = self.pool();
        let rows = sqlx::query(
            "SELECT c.id, c.channel, c.started_ms, c.updated_ms, c.call_id, \
             (SELECT COUNT(*) FROM turns t WHERE t.conversation_id = c.id AND t.speaker = 'agent') \
             + (SELECT COUNT(*) FROM tickets k WHERE k.conversation_id = c.id) AS people \
             FROM conversations c WHERE c.started_ms >= $1 AND c.started_ms < $2 \
             AND ($3 = '' OR c.channel = $3)",
        )
        .bind(start)
        .bind(end)
        .bind(only)
        .fetch_all(p)
        .await
        .context("cannot read conversations")?;
        let mut contacts = Vec::with_capacity(rows.len());
        let mut by_call: HashMap<String, usize> = HashMap::new();
        for r in &rows {
            let started: i64 = r.try_get(2)?;
            let updated: i64 = r.try_get(3)?;
            if let Some(call) = r.try_get::<Option<String>, _>(4)? {
                by_call.insert(call, contacts.len());
            }
            contacts.push(Contact {
                id: r.try_get(0)?,
                kind: "conversation",
                day: day_of(started, from),
                started_ms: started,
                channel: r.try_get(1)?,
                handed_over: r.try_get::<i64, _>(5)? > 0,
                bot_resolution_ms: (updated - started) as f64,
            });
        }
        let mut input = InputUse::default();
        let mut confidence = [0i64; 10];
        let mut blind = 0i64;
        if only.is_empty() || only == "phone" {
            let rows = sqlx::query(
                "SELECT k.call_id, k.invite_ms, k.answer_ms, k.end_ms, k.transfer, \
                 (SELECT COUNT(*) FROM tickets t WHERE t.call_id = k.call_id), \
                 k.keys, k.utterances, k.asr_confidence \
                 FROM calls k WHERE k.invite_ms >= $1 AND k.invite_ms < $2 AND k.answer_ms IS NOT NULL \
                 AND k.transport <> 'callback'",
            )
            .bind(start)
            .bind(end)
            .fetch_all(p)
            .await
            .context("cannot read calls")?;
            for r in &rows {
                let call: String = r.try_get(0)?;
                let invite: i64 = r.try_get(1)?;
                let answer: i64 = r.try_get(2)?;
                let ended: Option<i64> = r.try_get(3)?;
                let transfer: Option<String> = r.try_get(4)?;
                if transfer
                    .as_deref()
                    .is_some_and(|t| t.starts_with("refer:") || t.starts_with("dial-out:"))
                {
                    blind += 1;
                }
                let handed_over = transfer.is_some() || r.try_get::<i64, _>(5)? > 0;
                let resolution = (ended.unwrap_or(answer) - answer) as f64;
                match by_call.get(&call) {
                    Some(&i) => {
                        contacts[i].handed_over |= handed_over;
                        contacts[i].bot_resolution_ms = resolution;
                    }
                    None => contacts.push(Contact {
                        id: call.clone(),
                        kind: "call",
                        day: day_of(invite, from),
                        started_ms: invite,
                        channel: "phone".into(),
                        handed_over,
                        bot_resolution_ms: resolution,
                    }),
                }
                let keys: i64 = r.try_get(6)?;
                let utterances: i64 = r.try_get(7)?;
                input.calls += 1;
                match (keys > 0, utterances > 0) {
                    (true, true) => input.both += 1,
                    (true, false) => input.keys_only += 1,
                    (false, true) => input.speech_only += 1,
                    (false, false) => input.neither += 1,
                }
                let heard: String = r.try_get(8)?;
                for c in serde_json::from_str::<Vec<f64>>(&heard).unwrap_or_default() {
                    confidence[((c * 10.0).floor().max(0.0) as usize).min(9)] += 1;
                }
            }
        }
        Ok((
            contacts,
            CallStats {
                input,
                confidence,
                blind,
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::export::inert;
    use super::*;

    #[test]
    fn a_report_without_customer_words_keeps_the_counts() {
        let r = report_of(vec![Unanswered {
            question: "do you ship to 13800138000".into(),
            count: 3,
            examples: vec!["Do you ship to 13800138000?".into()],
            phrasings: 2,
        }])
        .without_customer_words();
        assert_eq!(r.unanswered[0].question, WITHHELD);
        assert!(r.unanswered[0].examples.is_empty());
        assert_eq!((r.unanswered[0].count, r.unanswered[0].phrasings), (3, 2));
        assert!(!r.markdown().contains("13800138000"));
    }

    #[test]
    fn customers_words_cannot_be_spreadsheet_formulas() {
        assert_eq!(
            inert("=HYPERLINK(\"http://x\")"),
            "'=HYPERLINK(\"http://x\")"
        );
        assert_eq!(inert("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(inert("-1+1"), "'-1+1");
        assert_eq!(inert("where is my order"), "where is my order");
        assert!(matches!(inert("退款"), std::borrow::Cow::Borrowed(_)));
    }

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

    fn group(q: &str, count: usize) -> Unanswered {
        Unanswered {
            question: q.into(),
            count,
            examples: vec![q.into()],
            phrasings: 1,
        }
    }

    fn report_of(unanswered: Vec<Unanswered>) -> Report {
        Report {
            from: NaiveDate::default(),
            to: NaiveDate::default(),
            channel: None,
            days: Vec::new(),
            conversations: 0,
            automated: 0,
            handed_over: 0,
            automation_rate: None,
            transfer_rate: None,
            first_response: Times {
                bot: Percentiles::of(Vec::new()),
                human: Percentiles::of(Vec::new()),
            },
            resolution: Times {
                bot: Percentiles::of(Vec::new()),
                human: Percentiles::of(Vec::new()),
            },
            transfer_reasons: Vec::new(),
            queues: Vec::new(),
            agents: Vec::new(),
            input: InputUse::default(),
            asr_confidence: Vec::new(),
            top_intents: Vec::new(),
            intent_trend: Vec::new(),
            unanswered,
            satisfaction: Default::default(),
        }
    }

    #[test]
    fn clusters_follow_their_most_asked_question() {
        let mut r = report_of(vec![
            group("a", 5),
            group("b", 3),
            group("c", 2),
            group("d", 1),
        ]);
        // a and c are alike, b is alone, d is like c but not like a (the leader).
        let v = |x: f32, y: f32| {
            let n = (x * x + y * y).sqrt();
            vec![x / n, y / n]
        };
        let vectors = [v(1.0, 0.0), v(0.0, 1.0), v(0.95, 0.2), v(0.8, 0.6)];
        r.cluster_unanswered(&vectors, 0.9);
        let got: Vec<(&str, usize, usize, Vec<&str>)> = r
            .unanswered
            .iter()
            .map(|u| {
                (
                    u.question.as_str(),
                    u.count,
                    u.phrasings,
                    u.examples.iter().map(String::as_str).collect(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("a", 7, 2, vec!["a", "c"]),
                ("b", 3, 1, vec!["b"]),
                ("d", 1, 1, vec!["d"])
            ]
        );
        // Vectors that do not fit leave the groups as they are.
        r.cluster_unanswered(&vectors[..1], 0.0);
        assert_eq!(r.unanswered.len(), 3);
    }
}
