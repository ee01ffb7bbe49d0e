//! Text conversations read back from the store, state and last turns, so any
//! node (or this one after a restart) goes on with them (`dialogue::snapshot`).

use anyhow::Context;
use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{Store, from_ms, ms};
use crate::dialogue::conversations::{Channel, Identity};
use crate::dialogue::engine::{Conversation, HISTORY_LIMIT, Speaker, Turn};
use crate::dialogue::snapshot::Loaded;

fn speaker_named(name: &str) -> Option<Speaker> {
    [Speaker::Customer, Speaker::Bot, Speaker::Agent]
        .into_iter()
        .find(|s| super::speaker_name(*s) == name)
}

impl Store {
    /// A text conversation with its state, if the store has one by that id.
    pub async fn load_conversation(&self, id: &str) -> anyhow::Result<Option<Loaded>> {
        let Some(row) = sqlx::query(
            "SELECT channel, customer_id, started_ms, updated_ms, said, state, key_id \
             FROM conversations WHERE id = $1 AND state IS NOT NULL",
        )
        .bind(id)
        .fetch_optional(self.pool())
        .await
        .context("cannot read a conversation")?
        else {
            return Ok(None);
        };
        let channel: String = row.try_get(0)?;
        let Some(channel) = Channel::named(&channel) else {
            anyhow::bail!("conversation {id:?} is on an unknown channel {channel:?}");
        };
        let said: i64 = row.try_get(4)?;
        let sealed: Vec<u8> = row.try_get(5)?;
        let key_id: i64 = row.try_get(6)?;
        let state = self.sealer.open(key_id, "conversations.state", &sealed)?;
        let history = self
            .last_turns(id, said)
            .await?
            .into_iter()
            .filter_map(|t| {
                Some(Turn {
                    at: t.at,
                    speaker: speaker_named(&t.speaker)?,
                    text: t.text,
                    intent: t.intent,
                    confidence: t.confidence.map(|c| c as f32),
                })
            })
            .collect();
        let conversation = Conversation::resume(&state, history, said.max(0) as u64)
            .with_context(|| format!("conversation {}", crate::log_id(id)))?;
        let customer: String = row.try_get(1)?;
        let identities = self
            .identities_of(&customer)
            .await?
            .into_iter()
            .filter_map(|(kind, value)| {
                Some(Identity::new(super::identity_kind_named(&kind)?, value))
            })
            .collect();
        Ok(Some(Loaded {
            channel,
            identities,
            customer,
            created: from_ms(row.try_get(2)?),
            updated: from_ms(row.try_get(3)?),
            conversation,
        }))
    }

    /// The last [`HISTORY_LIMIT`] turns of a conversation that has `said` in all.
    async fn last_turns(&self, id: &str, said: i64) -> anyhow::Result<Vec<super::StoredTurn>> {
        let rows = sqlx::query(
            "SELECT seq, at_ms, speaker, channel, text, intent, confidence, latency_us, key_id \
             FROM turns WHERE conversation_id = $1 AND seq >= $2 ORDER BY seq",
        )
        .bind(id)
        .bind(said - HISTORY_LIMIT as i64)
        .fetch_all(self.pool())
        .await
        .context("cannot read turns")?;
        rows.iter().map(|r| self.turn_of(r)).collect()
    }

    /// The customer's conversation on `channel` active since `since`, the most
    /// recent, for channels without a conversation id of their own (WeChat, SMS).
    pub async fn recent_conversation(
        &self,
        channel: Channel,
        customer: &str,
        since: DateTime<Utc>,
    ) -> anyhow::Result<Option<String>> {
        let row = sqlx::query(
            "SELECT id FROM conversations WHERE customer_id = $1 AND channel = $2 \
             AND updated_ms >= $3 AND state IS NOT NULL ORDER BY updated_ms DESC LIMIT 1",
        )
        .bind(customer)
        .bind(channel.name())
        .bind(ms(since))
        .fetch_optional(self.pool())
        .await
        .context("cannot look for a recent conversation")?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    }
}

impl Store {
    /// The secret `name`: one every node on this database shares, kept across
    /// restarts, made at random on first use.
    pub async fn secret(&self, name: &str) -> anyhow::Result<[u8; 32]> {
        let made = hex::encode(rand::random::<[u8; 32]>());
        sqlx::query(
            "INSERT INTO secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(made)
        .execute(self.pool())
        .await
        .context("cannot store a secret")?;
        let value: String = sqlx::query("SELECT value FROM secrets WHERE name = $1")
            .bind(name)
            .fetch_one(self.pool())
            .await
            .context("cannot read a secret")?
            .try_get(0)?;
        let bytes = hex::decode(value.trim()).context("the stored secret is not hex")?;
        bytes
            .try_into()
            .map_err(|_| anyhow::anyhow!("the stored secret {name:?} is not 32 bytes"))
    }
}
