//! Retention: conversation turns, recordings (voicemail, bridged calls) and
//! knowledge-base drafts older than `retention_days` are deleted, and old calls keep
//! their times, path and outcome but lose what was said and keyed (their detail is
//! replaced). Checked hourly; each pass is noted in the audit log.

use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use sqlx::Row;

use super::{Store, ms};

/// Deletes what is older than `days`; returns (turns deleted, calls purged).
pub async fn purge(store: &Store, days: u32) -> anyhow::Result<(u64, u64)> {
    let cutoff = ms(Utc::now() - chrono::Duration::days(i64::from(days)));
    let turns = sqlx::query("DELETE FROM turns WHERE at_ms < $1")
        .bind(cutoff)
        .execute(store.pool())
        .await
        .context("cannot delete old turns")?
        .rows_affected();
    let sealer = store.sealer();
    // Row by row: the purged detail is sealed with the current key, so the row's
    // other sealed columns (and its lookup hash) are re-sealed with it too, or they
    // would stay under a key that rotation no longer looks for.
    let rows = sqlx::query(
        "SELECT call_id, caller, callee, key_id FROM calls \
         WHERE invite_ms < $1 AND purged_ms IS NULL",
    )
    .bind(cutoff)
    .fetch_all(store.pool())
    .await
    .context("cannot read old calls")?;
    let mut calls = 0;
    for r in &rows {
        let call_id: String = r.try_get(0)?;
        let key_id: i64 = r.try_get(3)?;
        let caller = sealer.open(key_id, "calls.caller", &r.try_get::<Vec<u8>, _>(1)?)?;
        let callee = sealer.open(key_id, "calls.callee", &r.try_get::<Vec<u8>, _>(2)?)?;
        calls += sqlx::query(
            "UPDATE calls SET detail = $1, key_id = $2, purged_ms = $3, caller = $4, \
             callee = $5, caller_lookup = $6 WHERE call_id = $7 AND purged_ms IS NULL",
        )
        .bind(sealer.seal("calls.detail", r#"{"purged":true}"#))
        .bind(sealer.key_id())
        .bind(ms(Utc::now()))
        .bind(sealer.seal("calls.caller", &caller))
        .bind(sealer.seal("calls.callee", &callee))
        .bind(sealer.lookup("calls.caller", &caller))
        .bind(call_id.as_str())
        .execute(store.pool())
        .await
        .context("cannot purge old calls")?
        .rows_affected();
    }
    let mut recordings = 0;
    // Recordings, and knowledge-base drafts (customers' phrasings).
    for table in ["recordings", "kb_drafts"] {
        recordings += sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM {table} WHERE created_ms < $1"
        )))
        .bind(cutoff)
        .execute(store.pool())
        .await
        .with_context(|| format!("cannot delete old {table}"))?
        .rows_affected();
    }
    if turns + calls + recordings > 0 {
        store
            .audit(
                "kefu",
                "retention",
                "turns,calls,recordings,kb_drafts",
                &format!(
                    "older than {days} days: {turns} turns deleted, {calls} calls purged, \
                     {recordings} recordings and drafts deleted"
                ),
            )
            .await?;
    }
    Ok((turns, calls))
}

pub async fn run(store: Store, days: u32, stop: tokio_util::sync::CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        match purge(&store, days).await {
            Ok((t, c)) if t + c > 0 => {
                tracing::info!(turns = t, calls = c, days, "retention: old records removed")
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = format!("{e:#}"), "retention pass failed"),
        }
    }
}
