//! Knowledge-base drafts: entries a supervisor drafted on the dashboard from
//! customers' unanswered questions. Their example phrasings are customers' own
//! words, so they are kept sealed in the store like turns, not as files: key
//! rotation re-seals them and retention deletes old ones.

use anyhow::Context;
use chrono::Utc;
use sqlx::Row;

use super::{Store, ms};

impl Store {
    /// Keeps a draft under `file` (the name to upload it as); false when there is
    /// already one by that name (two clicks never overwrite a draft).
    pub async fn add_draft(&self, file: &str, text: &str) -> anyhow::Result<bool> {
        let s = self.sealer();
        let n = sqlx::query(
            "INSERT INTO kb_drafts (file, text, key_id, created_ms) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (file) DO NOTHING",
        )
        .bind(file)
        .bind(s.seal("kb_drafts.text", text))
        .bind(s.key_id())
        .bind(ms(Utc::now()))
        .execute(self.pool())
        .await
        .context("cannot store the draft")?
        .rows_affected();
        Ok(n == 1)
    }

    /// Every draft as (file, text), by name.
    pub async fn drafts(&self) -> anyhow::Result<Vec<(String, String)>> {
        let rows = sqlx::query("SELECT file, text, key_id FROM kb_drafts ORDER BY file")
            .fetch_all(self.pool())
            .await
            .context("cannot read drafts")?;
        rows.iter()
            .map(|r| {
                let sealed: Vec<u8> = r.try_get(1)?;
                let text = self
                    .sealer()
                    .open(r.try_get(2)?, "kb_drafts.text", &sealed)?;
                Ok((r.try_get(0)?, text))
            })
            .collect()
    }
}
