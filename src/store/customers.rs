//! The customer on one screen: their identities (masked), their earlier
//! conversations and calls on every channel (newest first, a page at a time),
//! the topics they asked about, their tickets; and one interaction's turns with
//! its recordings listed.

use std::collections::HashMap;

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;

use super::{Store, from_ms};

/// Interactions on one page of the panel.
pub const PAGE: i64 = 50;

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Masked {
    pub kind: String,
    /// Enough to recognise it, not to use it: "+86138****5678".
    pub value: String,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Interaction {
    /// A conversation's id, or a call's (for a call nothing was said in).
    pub id: String,
    pub channel: String,
    /// The call it was, for a phone conversation.
    pub call: Option<String>,
    pub started: DateTime<Utc>,
    pub updated: DateTime<Utc>,
    pub turns: i64,
    /// What the customer asked about (intents), most asked first.
    pub topics: Vec<String>,
    /// Recordings kept of it (voicemail, the bridged call).
    pub recordings: i64,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct TicketBrief {
    pub num: i64,
    pub status: String,
    pub subject: String,
    pub created: DateTime<Utc>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct CustomerView {
    pub customer: String,
    pub identities: Vec<Masked>,
    /// Conversations and calls in all.
    pub total: i64,
    pub interactions: Vec<Interaction>,
    /// The next page's start (`before` = this time in ms), when there is one.
    pub next: Option<i64>,
    pub tickets: Vec<TicketBrief>,
    /// The customer's topics over every conversation: (intent, times asked).
    pub topics: Vec<(String, i64)>,
}

/// Masks an identity's value: the first and last few characters stay.
pub fn mask(value: &str) -> String {
    let chars: Vec<char> = value.chars().collect();
    let n = chars.len();
    let (head, tail) = match n {
        0..=4 => (0, 0),
        5..=8 => (1, 2),
        9..=12 => (3, 3),
        _ => (6, 4),
    };
    let mut s: String = chars[..head].iter().collect();
    s.push_str("****");
    s.extend(&chars[n - tail..]);
    s
}

impl Store {
    /// The customer's panel; `before` (ms) pages back through the interactions.
    pub async fn customer_view(
        &self,
        customer: &str,
        before: Option<i64>,
    ) -> anyhow::Result<Option<CustomerView>> {
        if !self.customer_exists(customer).await? {
            return Ok(None);
        }
        let p = self.pool();
        let identities = self
            .identities_of(customer)
            .await?
            .into_iter()
            .map(|(kind, value)| Masked {
                kind,
                value: mask(&value),
            })
            .collect();
        let before = before.unwrap_or(i64::MAX);
        // Conversations, and calls that have none (a call that talked is its
        // conversation), merged newest first.
        let total: i64 = sqlx::query_scalar(
            "SELECT (SELECT COUNT(*) FROM conversations WHERE customer_id = $1) + \
             (SELECT COUNT(*) FROM calls l WHERE l.customer_id = $1 AND NOT EXISTS \
              (SELECT 1 FROM conversations c WHERE c.call_id = l.call_id))",
        )
        .bind(customer)
        .fetch_one(p)
        .await
        .context("cannot count the customer's interactions")?;
        let rows = sqlx::query(
            "SELECT id, channel, call_id, started_ms, updated_ms FROM ( \
               SELECT id, channel, call_id, started_ms, updated_ms FROM conversations \
                WHERE customer_id = $1 AND started_ms < $2 \
               UNION ALL \
               SELECT l.call_id, CASE WHEN l.transport = 'callback' THEN 'callback' ELSE 'phone' END, l.call_id, COALESCE(l.invite_ms, 0), COALESCE(l.end_ms, l.invite_ms, 0) \
                 FROM calls l WHERE l.customer_id = $1 AND COALESCE(l.invite_ms, 0) < $2 \
                 AND NOT EXISTS (SELECT 1 FROM conversations c WHERE c.call_id = l.call_id) \
             ) i ORDER BY started_ms DESC LIMIT $3",
        )
        .bind(customer)
        .bind(before)
        .bind(PAGE + 1)
        .fetch_all(p)
        .await
        .context("cannot read the customer's interactions")?;
        let mut interactions = Vec::new();
        for r in &rows {
            interactions.push(Interaction {
                id: r.try_get(0)?,
                channel: r.try_get(1)?,
                call: r.try_get(2)?,
                started: from_ms(r.try_get(3)?),
                updated: from_ms(r.try_get(4)?),
                turns: 0,
                topics: Vec::new(),
                recordings: 0,
            });
        }
        let next = if interactions.len() as i64 > PAGE {
            interactions.truncate(PAGE as usize);
            interactions.last().map(|i| i.started.timestamp_millis())
        } else {
            None
        };
        self.fill_page(customer, &mut interactions).await?;
        let topics = sqlx::query(
            "SELECT t.intent, COUNT(*) FROM turns t JOIN conversations c ON c.id = t.conversation_id \
             WHERE c.customer_id = $1 AND t.speaker = 'customer' AND t.intent IS NOT NULL \
             GROUP BY t.intent ORDER BY COUNT(*) DESC, t.intent LIMIT 8",
        )
        .bind(customer)
        .fetch_all(p)
        .await
        .context("cannot read the customer's topics")?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<anyhow::Result<Vec<_>>>()?;
        let tickets = sqlx::query(
            "SELECT num, status, subject, key_id, created_ms FROM tickets WHERE customer_id = $1 \
             ORDER BY num DESC LIMIT 50",
        )
        .bind(customer)
        .fetch_all(p)
        .await
        .context("cannot read the customer's tickets")?
        .iter()
        .map(|r| {
            Ok(TicketBrief {
                num: r.try_get(0)?,
                status: r.try_get(1)?,
                subject: self.sealer().open(
                    r.try_get(3)?,
                    "tickets.subject",
                    &r.try_get::<Vec<u8>, _>(2)?,
                )?,
                created: from_ms(r.try_get(4)?),
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Some(CustomerView {
            customer: customer.to_string(),
            identities,
            total,
            interactions,
            next,
            tickets,
            topics,
        }))
    }

    /// Each interaction's turn count, topics and recordings (one query each for
    /// the whole page).
    async fn fill_page(&self, customer: &str, page: &mut [Interaction]) -> anyhow::Result<()> {
        if page.is_empty() {
            return Ok(());
        }
        let p = self.pool();
        let list: Vec<String> = (0..page.len()).map(|i| format!("${}", i + 1)).collect();
        let list = list.join(", ");
        let mut q = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT conversation_id, intent, COUNT(*) FROM turns WHERE conversation_id IN ({list}) \
             GROUP BY conversation_id, intent"
        )));
        for i in page.iter() {
            q = q.bind(i.id.clone());
        }
        let mut counts: HashMap<String, (i64, Vec<(i64, String)>)> = HashMap::new();
        for r in q.fetch_all(p).await.context("cannot count turns")? {
            let id: String = r.try_get(0)?;
            let intent: Option<String> = r.try_get(1)?;
            let n: i64 = r.try_get(2)?;
            let e = counts.entry(id).or_default();
            e.0 += n;
            if let Some(i) = intent {
                e.1.push((n, i));
            }
        }
        let recordings: HashMap<String, i64> = sqlx::query(
            "SELECT call_id, COUNT(*) FROM recordings WHERE customer_id = $1 GROUP BY call_id",
        )
        .bind(customer)
        .fetch_all(p)
        .await
        .context("cannot count recordings")?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<anyhow::Result<_>>()?;
        for i in page.iter_mut() {
            if let Some((n, mut topics)) = counts.remove(&i.id) {
                i.turns = n;
                topics.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
                i.topics = topics.into_iter().take(3).map(|(_, t)| t).collect();
            }
            if let Some(call) = &i.call {
                i.recordings = recordings.get(call).copied().unwrap_or(0);
            }
        }
        Ok(())
    }

    /// A stored conversation's channel, customer and next turn's number.
    pub async fn conversation_end(
        &self,
        id: &str,
    ) -> anyhow::Result<Option<(String, String, usize)>> {
        let Some(r) = sqlx::query(
            "SELECT c.channel, c.customer_id, (SELECT COALESCE(MAX(seq) + 1, 0) FROM turns t \
             WHERE t.conversation_id = c.id) FROM conversations c WHERE c.id = $1",
        )
        .bind(id)
        .fetch_optional(self.pool())
        .await
        .context("cannot read the conversation")?
        else {
            return Ok(None);
        };
        let next: i64 = r.try_get(2)?;
        Ok(Some((
            r.try_get(0)?,
            r.try_get(1)?,
            usize::try_from(next).unwrap_or(0),
        )))
    }

    /// The newest ticket of a conversation or call.
    pub async fn ticket_of_item(&self, item: &str) -> anyhow::Result<Option<i64>> {
        sqlx::query_scalar(
            "SELECT MAX(num) FROM tickets WHERE conversation_id = $1 OR call_id = $1",
        )
        .bind(item)
        .fetch_one(self.pool())
        .await
        .context("cannot read the ticket")
    }

    /// The call a conversation was, if it was one.
    pub async fn call_of_conversation(&self, id: &str) -> anyhow::Result<Option<String>> {
        let call: Option<Option<String>> =
            sqlx::query_scalar("SELECT call_id FROM conversations WHERE id = $1")
                .bind(id)
                .fetch_optional(self.pool())
                .await
                .context("cannot read the conversation")?;
        Ok(call.flatten())
    }

    /// Whether a conversation (or a call with none) is this customer's.
    pub async fn interaction_of(&self, customer: &str, id: &str) -> anyhow::Result<bool> {
        let n: i64 = sqlx::query_scalar(
            "SELECT (SELECT COUNT(*) FROM conversations WHERE id = $1 AND customer_id = $2) + \
             (SELECT COUNT(*) FROM calls WHERE call_id = $1 AND customer_id = $2)",
        )
        .bind(id)
        .bind(customer)
        .fetch_one(self.pool())
        .await
        .context("cannot read the interaction")?;
        Ok(n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::mask;

    #[test]
    fn masks_keep_a_little_of_each_end() {
        assert_eq!(mask("+8613812345678"), "+86138****5678");
        assert_eq!(mask("oAbCdEfGhIjKlMnOpQ"), "oAbCdE****nOpQ");
        assert_eq!(mask("visitor-1"), "vis****r-1");
        assert_eq!(mask("abc"), "****");
        assert_eq!(mask("张三丰先生"), "张****先生");
    }
}
