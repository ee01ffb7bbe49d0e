//! Reads for the operators' API: a summary report (counts only, no personal data),
//! the audit log page by page, and an agent's own tickets.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;

use super::{AuditEntry, Store, from_ms, ms};

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Summary {
    pub since: DateTime<Utc>,
    /// Conversations started, by channel.
    pub conversations: Vec<(String, i64)>,
    /// Turns, by speaker (customer, bot, agent).
    pub turns: Vec<(String, i64)>,
    /// Mean time to reply to a customer's message, in milliseconds.
    pub mean_reply_ms: Option<f64>,
    /// Calls, by how they ended.
    pub calls: Vec<(String, i64)>,
    pub calls_transferred: i64,
    /// The most asked intents.
    pub top_intents: Vec<(String, i64)>,
}

/// An audit entry with its position, for paging.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct AuditRow {
    pub id: i64,
    #[serde(flatten)]
    pub entry: AuditEntry,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct TicketView {
    /// The number people say.
    pub num: i64,
    pub id: String,
    pub customer: String,
    pub conversation: Option<String>,
    /// The call a phone hand-over's ticket belongs to.
    pub call: Option<String>,
    pub queue: Option<String>,
    pub status: String,
    pub subject: String,
    /// Notes: the agent's wrap-up, voicemail left, callback asked for.
    pub notes: String,
    pub created: DateTime<Utc>,
    pub updated: DateTime<Utc>,
}

fn counts(rows: &[sqlx::any::AnyRow]) -> anyhow::Result<Vec<(String, i64)>> {
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
}

impl Store {
    pub async fn summary(&self, since: DateTime<Utc>) -> anyhow::Result<Summary> {
        let t = ms(since);
        let p = self.pool();
        let conversations = sqlx::query(
            "SELECT channel, COUNT(*) FROM conversations WHERE started_ms >= $1 \
             GROUP BY channel ORDER BY channel",
        )
        .bind(t)
        .fetch_all(p)
        .await?;
        let turns = sqlx::query(
            "SELECT speaker, COUNT(*) FROM turns WHERE at_ms >= $1 GROUP BY speaker ORDER BY speaker",
        )
        .bind(t)
        .fetch_all(p)
        .await?;
        let mean: Option<f64> = sqlx::query(
            "SELECT CAST(AVG(latency_us) AS DOUBLE PRECISION) FROM turns \
             WHERE at_ms >= $1 AND latency_us IS NOT NULL",
        )
        .bind(t)
        .fetch_one(p)
        .await?
        .try_get(0)?;
        let calls = sqlx::query(
            "SELECT end_reason, COUNT(*) FROM calls WHERE invite_ms >= $1 \
             AND transport <> 'callback' GROUP BY end_reason ORDER BY end_reason",
        )
        .bind(t)
        .fetch_all(p)
        .await?;
        let transferred: i64 = sqlx::query(
            "SELECT COUNT(*) FROM calls WHERE invite_ms >= $1 AND transfer IS NOT NULL \
             AND transport <> 'callback'",
        )
        .bind(t)
        .fetch_one(p)
        .await?
        .try_get(0)?;
        let intents = sqlx::query(
            "SELECT intent, COUNT(*) FROM turns WHERE at_ms >= $1 AND intent IS NOT NULL \
             GROUP BY intent ORDER BY COUNT(*) DESC, intent LIMIT 10",
        )
        .bind(t)
        .fetch_all(p)
        .await?;
        Ok(Summary {
            since,
            conversations: counts(&conversations)?,
            turns: counts(&turns)?,
            mean_reply_ms: mean.map(|us| us / 1000.0),
            calls: counts(&calls)?,
            calls_transferred: transferred,
            top_intents: counts(&intents)?,
        })
    }

    /// Up to `limit` audit entries after entry `after`, oldest first.
    pub async fn audit_page(&self, after: i64, limit: i64) -> anyhow::Result<Vec<AuditRow>> {
        let rows = sqlx::query(
            "SELECT id, at_ms, actor, action, target, detail FROM audit_log \
             WHERE id > $1 ORDER BY id LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AuditRow {
                    id: r.try_get(0)?,
                    entry: AuditEntry {
                        at: from_ms(r.try_get(1)?),
                        actor: r.try_get(2)?,
                        action: r.try_get(3)?,
                        target: r.try_get(4)?,
                        detail: r.try_get(5)?,
                    },
                })
            })
            .collect()
    }

    /// Tickets assigned to a user (their id), newest first.
    pub async fn tickets_of(&self, user_id: &str) -> anyhow::Result<Vec<TicketView>> {
        let rows = sqlx::query(
            "SELECT id, customer_id, conversation_id, queue, status, subject, key_id, \
             created_ms, updated_ms, call_id, body, num FROM tickets WHERE assignee = $1 \
             ORDER BY updated_ms DESC LIMIT 500",
        )
        .bind(user_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                let subject: Vec<u8> = r.try_get(5)?;
                let body: Vec<u8> = r.try_get(10)?;
                let key = r.try_get(6)?;
                Ok(TicketView {
                    num: r.try_get(11)?,
                    id: r.try_get(0)?,
                    customer: r.try_get(1)?,
                    conversation: r.try_get(2)?,
                    call: r.try_get(9)?,
                    queue: r.try_get(3)?,
                    status: r.try_get(4)?,
                    subject: self.sealer().open(key, "tickets.subject", &subject)?,
                    notes: self.sealer().open(key, "tickets.body", &body)?,
                    created: from_ms(r.try_get(7)?),
                    updated: from_ms(r.try_get(8)?),
                })
            })
            .collect()
    }
}
