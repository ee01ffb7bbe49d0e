//! Retention: conversation turns older than `retention_days` are deleted, and old
//! calls keep their times, path and outcome but lose what was said and keyed (their
//! detail is replaced). Checked hourly; each pass is noted in the audit log.

use std::time::Duration;

use anyhow::Context;
use chrono::Utc;

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
    let calls = sqlx::query(
        "UPDATE calls SET detail = $1, key_id = $2, purged_ms = $3 \
         WHERE invite_ms < $4 AND purged_ms IS NULL",
    )
    .bind(sealer.seal("calls.detail", r#"{"purged":true}"#))
    .bind(sealer.key_id())
    .bind(ms(Utc::now()))
    .bind(cutoff)
    .execute(store.pool())
    .await
    .context("cannot purge old calls")?
    .rows_affected();
    if turns + calls > 0 {
        store
            .audit(
                "kefu",
                "retention",
                "turns,calls",
                &format!("older than {days} days: {turns} turns deleted, {calls} calls purged"),
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
