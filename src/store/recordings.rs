//! Recordings (voicemail messages, bridged calls): one WAV per row, sealed like
//! every other piece of customer data (the WAV is base64 text inside the seal, so
//! key rotation re-seals it like any column).

use anyhow::Context;
use base64::Engine;
use chrono::Utc;
use serde::Serialize;
use sqlx::Row;

use super::{Store, from_ms, ms, new_id};

#[derive(Clone, Debug, Serialize)]
pub struct RecordingInfo {
    pub id: String,
    pub call_id: String,
    pub kind: String,
    pub duration_ms: i64,
    pub created: chrono::DateTime<Utc>,
}

fn info_of(r: &sqlx::any::AnyRow) -> anyhow::Result<RecordingInfo> {
    Ok(RecordingInfo {
        id: r.try_get("id")?,
        call_id: r.try_get("call_id")?,
        kind: r.try_get("kind")?,
        duration_ms: r.try_get("duration_ms")?,
        created: from_ms(r.try_get("created_ms")?),
    })
}

impl Store {
    /// Keeps a recording of `call_id`; returns its id.
    pub async fn save_recording(
        &self,
        call_id: &str,
        customer: Option<&str>,
        kind: &str,
        duration_ms: i64,
        wav: &[u8],
    ) -> anyhow::Result<String> {
        let id = new_id("r");
        let s = self.sealer();
        let text = base64::engine::general_purpose::STANDARD.encode(wav);
        sqlx::query(
            "INSERT INTO recordings (id, call_id, customer_id, kind, duration_ms, audio, key_id, created_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(id.as_str())
        .bind(call_id)
        .bind(customer)
        .bind(kind)
        .bind(duration_ms)
        .bind(s.seal("recordings.audio", &text))
        .bind(s.key_id())
        .bind(ms(Utc::now()))
        .execute(self.pool())
        .await
        .context("cannot store the recording")?;
        Ok(id)
    }

    /// A call's recordings, oldest first (without their audio).
    pub async fn recordings_of(&self, call_id: &str) -> anyhow::Result<Vec<RecordingInfo>> {
        let rows = sqlx::query(
            "SELECT id, call_id, kind, duration_ms, created_ms FROM recordings \
             WHERE call_id = $1 ORDER BY created_ms, id",
        )
        .bind(call_id)
        .fetch_all(self.pool())
        .await
        .context("cannot read recordings")?;
        rows.iter().map(info_of).collect()
    }

    /// One recording with its WAV audio.
    pub async fn recording(&self, id: &str) -> anyhow::Result<Option<(RecordingInfo, Vec<u8>)>> {
        let Some(r) = sqlx::query(
            "SELECT id, call_id, kind, duration_ms, created_ms, audio, key_id FROM recordings WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(self.pool())
        .await
        .context("cannot read the recording")?
        else {
            return Ok(None);
        };
        let sealed: Vec<u8> = r.try_get("audio")?;
        let text = self
            .sealer()
            .open(r.try_get("key_id")?, "recordings.audio", &sealed)?;
        let wav = base64::engine::general_purpose::STANDARD
            .decode(text)
            .context("a stored recording is not base64")?;
        Ok(Some((info_of(&r)?, wav)))
    }
}
