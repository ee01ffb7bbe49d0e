//! Follow-up calls on tickets: the number a caller asked to be called back on
//! (sealed, one row per ticket), the desk's list of callbacks still to make, and
//! how each try ended. Every request and outcome is written to the ticket's
//! history (the audit log) in the same transaction.

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;

use super::customers::mask;
use super::tickets::audit;
use super::{Store, from_ms, ms};

/// A ticket's callback as the desk shows it.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Callback {
    /// The number, masked.
    pub number: String,
    pub requested: DateTime<Utc>,
    pub tries: i64,
    /// How the last try ended (answered, busy, no-answer, failed, agent-…).
    pub outcome: Option<String>,
    pub tried: Option<DateTime<Utc>>,
    /// When a call back reached the customer; until then it is still to make.
    pub done: Option<DateTime<Utc>>,
}

/// Whom a call back dials, and for which customer.
#[derive(Clone, Debug)]
pub struct Callee {
    pub number: String,
    pub customer: String,
    pub subject: String,
}

/// How one try ended.
#[derive(Clone, Debug)]
pub struct Tried {
    /// answered, busy, no-answer, failed, agent-unreachable, agent-declined,
    /// cancelled.
    pub outcome: String,
    /// How long the customer's phone rang (or failed) before the outcome.
    pub ring_ms: u64,
    /// How long agent and customer talked (answered only).
    pub talk_ms: Option<u64>,
    /// How an answered call ended ("the customer hung up").
    pub ended: Option<String>,
}

impl Tried {
    pub fn reached(&self) -> bool {
        self.outcome == "answered"
    }

    /// The line in the ticket's history.
    fn describe(&self, number: &str) -> String {
        let secs = |ms: u64| format!("{}m {:02}s", ms / 60_000, ms / 1000 % 60);
        match self.talk_ms {
            Some(t) => {
                let mut d = format!("{} {}: talked {}", self.outcome, mask(number), secs(t));
                if let Some(e) = &self.ended {
                    d.push_str(", ");
                    d.push_str(e);
                }
                d
            }
            None => format!(
                "{} {} after {}",
                self.outcome,
                mask(number),
                secs(self.ring_ms)
            ),
        }
    }
}

/// The ticket changed now (its place in the newest-first list).
async fn touched(c: &mut sqlx::AnyConnection, num: i64, now: i64) -> anyhow::Result<()> {
    sqlx::query("UPDATE tickets SET updated_ms = $1 WHERE num = $2")
        .bind(now)
        .bind(num)
        .execute(&mut *c)
        .await
        .context("cannot update the ticket")?;
    Ok(())
}

impl Store {
    /// A caller asked to be called back on `number`: the open tickets of call
    /// `item` go on the desk's callback list (a request made again puts a done
    /// one back); how many tickets.
    pub async fn request_callback(&self, item: &str, number: &str) -> anyhow::Result<u64> {
        let mut tx = self.begin_write().await?;
        let nums: Vec<i64> = sqlx::query_scalar(
            "SELECT num FROM tickets WHERE (call_id = $1 OR conversation_id = $1) \
             AND status NOT IN ('solved', 'closed')",
        )
        .bind(item)
        .fetch_all(&mut *tx)
        .await
        .context("cannot read the call's tickets")?;
        let now = ms(Utc::now());
        let s = self.sealer();
        for &num in &nums {
            sqlx::query(
                "INSERT INTO callbacks (ticket, number, key_id, requested_ms) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (ticket) DO UPDATE SET number = $2, key_id = $3, requested_ms = $4, done_ms = NULL",
            )
            .bind(num)
            .bind(s.seal("callbacks.number", number))
            .bind(s.key_id())
            .bind(now)
            .execute(&mut *tx)
            .await
            .context("cannot record the callback")?;
            touched(&mut tx, num, now).await?;
            audit(
                &mut tx,
                now,
                "kefu",
                "ticket.callback-requested",
                num,
                &mask(number),
            )
            .await?;
        }
        tx.commit().await.context("cannot record the callback")?;
        Ok(nums.len() as u64)
    }

    /// The ticket's callback, if one was asked for or made.
    pub async fn callback(&self, num: i64) -> anyhow::Result<Option<Callback>> {
        let row = sqlx::query(
            "SELECT number, key_id, requested_ms, tries, outcome, tried_ms, done_ms \
             FROM callbacks WHERE ticket = $1",
        )
        .bind(num)
        .fetch_optional(self.pool())
        .await
        .context("cannot read the callback")?;
        let Some(r) = row else { return Ok(None) };
        let number = self.sealer().open(
            r.try_get(1)?,
            "callbacks.number",
            &r.try_get::<Vec<u8>, _>(0)?,
        )?;
        Ok(Some(Callback {
            number: mask(&number),
            requested: from_ms(r.try_get(2)?),
            tries: r.try_get(3)?,
            outcome: r.try_get(4)?,
            tried: r.try_get::<Option<i64>, _>(5)?.map(from_ms),
            done: r.try_get::<Option<i64>, _>(6)?.map(from_ms),
        }))
    }

    /// Whom a call back on ticket `num` dials: the number asked for, else the
    /// customer's phone number; None when the ticket has neither (or no ticket).
    pub async fn callee(&self, num: i64) -> anyhow::Result<Option<Callee>> {
        let row = sqlx::query(
            "SELECT t.customer_id, t.subject, t.key_id, cb.number, cb.key_id \
             FROM tickets t LEFT JOIN callbacks cb ON cb.ticket = t.num WHERE t.num = $1",
        )
        .bind(num)
        .fetch_optional(self.pool())
        .await
        .context("cannot read the ticket")?;
        let Some(r) = row else { return Ok(None) };
        let customer: String = r.try_get(0)?;
        let s = self.sealer();
        let subject = s.open(
            r.try_get(2)?,
            "tickets.subject",
            &r.try_get::<Vec<u8>, _>(1)?,
        )?;
        let asked = match r.try_get::<Option<Vec<u8>>, _>(3)? {
            Some(sealed) => Some(s.open(r.try_get(4)?, "callbacks.number", &sealed)?),
            None => None,
        };
        let number = match asked.filter(|n| !n.is_empty()) {
            Some(n) => Some(n),
            None => self
                .identities_of(&customer)
                .await?
                .into_iter()
                .find(|(kind, _)| kind == "phone" || kind == "sms")
                .map(|(_, value)| value),
        };
        Ok(number.map(|number| Callee {
            number,
            customer,
            subject,
        }))
    }

    /// One try at calling back on ticket `num`, by `actor`, ended so: the
    /// callback's row (made for a call the desk placed without a request), and
    /// the ticket's history.
    pub async fn callback_tried(
        &self,
        num: i64,
        number: &str,
        actor: &str,
        tried: &Tried,
    ) -> anyhow::Result<()> {
        let mut tx = self.begin_write().await?;
        let now = ms(Utc::now());
        let s = self.sealer();
        let done = tried.reached().then_some(now);
        sqlx::query(
            "INSERT INTO callbacks (ticket, number, key_id, requested_ms, tries, outcome, tried_ms, done_ms) \
             VALUES ($1, $2, $3, $4, 1, $5, $4, $6) \
             ON CONFLICT (ticket) DO UPDATE SET tries = callbacks.tries + 1, outcome = $5, \
             tried_ms = $4, done_ms = COALESCE($6, callbacks.done_ms)",
        )
        .bind(num)
        .bind(s.seal("callbacks.number", number))
        .bind(s.key_id())
        .bind(now)
        .bind(tried.outcome.as_str())
        .bind(done)
        .execute(&mut *tx)
        .await
        .context("cannot record the callback")?;
        touched(&mut tx, num, now).await?;
        let detail = tried.describe(number);
        audit(&mut tx, now, actor, "ticket.callback", num, &detail).await?;
        tx.commit().await.context("cannot record the callback")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tries_are_described_with_the_number_masked() {
        let t = Tried {
            outcome: "answered".into(),
            ring_ms: 4_000,
            talk_ms: Some(125_000),
            ended: Some("the customer hung up".into()),
        };
        assert_eq!(
            t.describe("+8613812345678"),
            "answered +86138****5678: talked 2m 05s, the customer hung up"
        );
        let t = Tried {
            outcome: "busy".into(),
            ring_ms: 3_200,
            talk_ms: None,
            ended: None,
        };
        assert!(!t.reached());
        assert_eq!(t.describe("10086"), "busy 1****86 after 0m 03s");
    }
}
