//! A customer's right to their data: export everything kept about them (opened), or
//! erase it. Erasing deletes their identities, conversations and turns, calls and
//! tickets in one transaction; the audit log keeps that it happened (the customer
//! id, never their data).

use anyhow::Context;
use serde_json::{Value, json};
use sqlx::Row;

use super::{Store, from_ms};

impl Store {
    /// Everything stored about a customer, opened, as JSON.
    pub async fn export_customer(&self, customer: &str) -> anyhow::Result<Value> {
        let identities: Vec<Value> = self
            .identities_of(customer)
            .await?
            .into_iter()
            .map(|(kind, value)| json!({ "kind": kind, "value": value }))
            .collect();
        let mut conversations = Vec::new();
        for id in self.conversations_of(customer).await? {
            let r = sqlx::query(
                "SELECT channel, call_id, started_ms, updated_ms FROM conversations WHERE id = $1",
            )
            .bind(id.as_str())
            .fetch_one(self.pool())
            .await?;
            conversations.push(json!({
                "id": id,
                "channel": r.try_get::<String, _>(0)?,
                "call_id": r.try_get::<Option<String>, _>(1)?,
                "started": from_ms(r.try_get(2)?),
                "updated": from_ms(r.try_get(3)?),
                "turns": self.turns(&id).await?,
            }));
        }
        let mut calls = Vec::new();
        let rows =
            sqlx::query("SELECT call_id FROM calls WHERE customer_id = $1 ORDER BY invite_ms")
                .bind(customer)
                .fetch_all(self.pool())
                .await?;
        for r in rows {
            let id: String = r.try_get(0)?;
            if let Some(record) = self.call(&id).await? {
                calls.push(record);
            }
        }
        let mut tickets = Vec::new();
        let rows = sqlx::query(
            "SELECT id, status, subject, body, key_id, created_ms, num, priority FROM tickets WHERE customer_id = $1 ORDER BY created_ms",
        )
        .bind(customer)
        .fetch_all(self.pool())
        .await?;
        for r in rows {
            let key: i64 = r.try_get(4)?;
            let subject: Vec<u8> = r.try_get(2)?;
            let body: Vec<u8> = r.try_get(3)?;
            let num: i64 = r.try_get(6)?;
            let notes = sqlx::query(
                "SELECT text, key_id, at_ms, author FROM ticket_notes WHERE ticket = $1 ORDER BY seq",
            )
            .bind(num)
            .fetch_all(self.pool())
            .await?
            .iter()
            .map(|n| {
                Ok(json!({
                    "at": from_ms(n.try_get(2)?),
                    "author": n.try_get::<String, _>(3)?,
                    "text": self.sealer().open(n.try_get(1)?, "ticket_notes.text", &n.try_get::<Vec<u8>, _>(0)?)?,
                }))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
            let callback = self.callback(num).await?;
            tickets.push(json!({
                "num": num,
                "callback": callback,
                "priority": r.try_get::<String, _>(7)?,
                "notes": notes,
                "id": r.try_get::<String, _>(0)?,
                "status": r.try_get::<String, _>(1)?,
                "subject": self.sealer().open(key, "tickets.subject", &subject)?,
                "body": self.sealer().open(key, "tickets.body", &body)?,
                "created": from_ms(r.try_get(5)?),
            }));
        }
        // Recordings are listed; their audio is fetched one by one (audited).
        let rows = sqlx::query(
            "SELECT id, call_id, kind, duration_ms, created_ms FROM recordings WHERE customer_id = $1 ORDER BY created_ms",
        )
        .bind(customer)
        .fetch_all(self.pool())
        .await?;
        let mut recordings = Vec::new();
        for r in rows {
            recordings.push(json!({
                "id": r.try_get::<String, _>(0)?,
                "call_id": r.try_get::<String, _>(1)?,
                "kind": r.try_get::<String, _>(2)?,
                "duration_ms": r.try_get::<i64, _>(3)?,
                "created": from_ms(r.try_get(4)?),
            }));
        }
        Ok(json!({
            "customer": customer,
            "identities": identities,
            "conversations": conversations,
            "calls": calls,
            "tickets": tickets,
            "recordings": recordings,
        }))
    }

    /// Deletes everything stored about a customer; returns the rows deleted.
    pub async fn erase_customer(&self, customer: &str, actor: &str) -> anyhow::Result<u64> {
        let mut tx = self.begin_write().await?;
        let mut deleted = 0;
        for sql in [
            "DELETE FROM turns WHERE conversation_id IN (SELECT id FROM conversations WHERE customer_id = $1)",
            "DELETE FROM ticket_notes WHERE ticket IN (SELECT num FROM tickets WHERE customer_id = $1)",
            "DELETE FROM ticket_terms WHERE ticket IN (SELECT num FROM tickets WHERE customer_id = $1)",
            "DELETE FROM callbacks WHERE ticket IN (SELECT num FROM tickets WHERE customer_id = $1)",
            "DELETE FROM tickets WHERE customer_id = $1",
            "DELETE FROM recordings WHERE customer_id = $1",
            // Recordings of the customer's calls made before the caller was known.
            "DELETE FROM recordings WHERE call_id IN (SELECT call_id FROM calls WHERE customer_id = $1)",
            "DELETE FROM conversations WHERE customer_id = $1",
            "DELETE FROM calls WHERE customer_id = $1",
            "DELETE FROM identities WHERE customer_id = $1",
            "DELETE FROM customers WHERE id = $1",
        ] {
            deleted += sqlx::query(sql)
                .bind(customer)
                .execute(&mut *tx)
                .await
                .with_context(|| format!("cannot erase customer {customer}"))?
                .rows_affected();
        }
        tx.commit().await?;
        self.audit(
            actor,
            "customer.erase",
            customer,
            &format!("{deleted} rows"),
        )
        .await?;
        Ok(deleted)
    }
}
