//! Each finished UTC day's report, written to disk (counts only: the customers'
//! words stay behind the API).

use anyhow::Context;
use chrono::{NaiveDate, Utc};

use super::Embed;
use crate::store::Store;

/// Writes the report of each finished UTC day to `dir` (`DAY.md` and `DAY.json`):
/// yesterday's at start if it is missing, then each day shortly after midnight,
/// until `stop`.
pub async fn daily(
    store: Store,
    dir: std::path::PathBuf,
    embed: Option<Embed>,
    stop: tokio_util::sync::CancellationToken,
) {
    loop {
        let now = Utc::now();
        let yesterday = now.date_naive() - chrono::Duration::days(1);
        if let Err(e) = write_day(&store, &dir, yesterday, embed.as_ref()).await {
            tracing::warn!(error = format!("{e:#}"), day = %yesterday, "cannot write the daily report");
        }
        // Five minutes past the next UTC midnight.
        let next = (now.date_naive() + chrono::Duration::days(1))
            .and_hms_opt(0, 5, 0)
            .unwrap_or_default()
            .and_utc();
        let wait = (next - now)
            .to_std()
            .unwrap_or(std::time::Duration::from_secs(3600));
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// The report of `day`, unless it is already written (atomically: a temporary
/// file renamed into place).
async fn write_day(
    store: &Store,
    dir: &std::path::Path,
    day: NaiveDate,
    embed: Option<&Embed>,
) -> anyhow::Result<()> {
    let md = dir.join(format!("{day}.md"));
    if md.exists() {
        return Ok(());
    }
    let mut r = store.analytics(day, day, None).await?;
    if let Some(embed) = embed {
        let embed = embed.clone();
        r = tokio::task::spawn_blocking(move || {
            r.cluster_with(&embed);
            r
        })
        .await?;
    }
    // Files on disk are outside the store's sealing, erasure and retention: they
    // carry counts only (the unanswered questions' words stay behind the API).
    let r = r.without_customer_words();
    tokio::fs::create_dir_all(dir)
        .await
        .with_context(|| format!("cannot create {}", dir.display()))?;
    for (path, text) in [
        (
            dir.join(format!("{day}.json")),
            serde_json::to_string_pretty(&r)?,
        ),
        (md, r.markdown()),
    ] {
        let tmp = path.with_extension("tmp");
        tokio::fs::write(&tmp, text)
            .await
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        tokio::fs::rename(&tmp, &path)
            .await
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    tracing::info!(%day, dir = %dir.display(), "daily report written");
    Ok(())
}
