//! Backups while serving, restore, and the scheduled backups with retention.
//!
//! SQLite: `VACUUM INTO` writes a consistent, compacted copy from one read
//! transaction, so writers carry on meanwhile (WAL). PostgreSQL: `pg_dump` in its
//! custom format (consistent by its own snapshot) and `pg_restore`; both programs
//! come with the PostgreSQL client package. Backups hold sealed values only: keep the
//! keyring elsewhere, or the backup cannot be read.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use sqlx::Row;

use super::{Backend, Store, redact};

/// Writes a backup of the live database to `out` (which must not exist).
pub async fn backup(store: &Store, url: &str, out: &Path) -> anyhow::Result<()> {
    if out.exists() {
        bail!("{} exists; a backup never overwrites a file", out.display());
    }
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    match store.backend() {
        Backend::Sqlite => {
            sqlx::query("VACUUM INTO $1")
                .bind(path_str(out)?)
                .execute(store.pool())
                .await
                .with_context(|| format!("cannot write the backup {}", out.display()))?;
            check_sqlite(out).await?;
        }
        Backend::Postgres => {
            pg_tool(
                "pg_dump",
                &[
                    "--format=custom",
                    "--no-owner",
                    "--file",
                    path_str(out)?,
                    url,
                ],
                url,
            )
            .await?;
        }
    }
    Ok(())
}

/// Checks that an SQLite file is intact and carries kefu's schema.
pub async fn check_sqlite(file: &Path) -> anyhow::Result<()> {
    use sqlx::Connection;
    super::drivers();
    let mut c = sqlx::AnyConnection::connect(&format!("sqlite://{}?mode=ro", file.display()))
        .await
        .with_context(|| format!("cannot open {}", file.display()))?;
    let ok: String = sqlx::query("PRAGMA integrity_check")
        .fetch_one(&mut c)
        .await?
        .try_get(0)?;
    if ok != "ok" {
        bail!("{} is damaged: {ok}", file.display());
    }
    let version: i64 = sqlx::query("SELECT COALESCE(MAX(version), 0) FROM _sqlx_migrations")
        .fetch_one(&mut c)
        .await
        .with_context(|| format!("{} is not a kefu database", file.display()))?
        .try_get(0)?;
    if version > super::migrate::latest() {
        bail!(
            "{} has schema version {version}, newer than this kefu ({}); restore it with a newer kefu",
            file.display(),
            super::migrate::latest()
        );
    }
    c.close().await?;
    Ok(())
}

/// Restores a backup into the database `url` names. SQLite: the file must not exist
/// (or `force`), and the server must be stopped. PostgreSQL: `pg_restore --clean`.
pub async fn restore(backup: &Path, url: &str, force: bool) -> anyhow::Result<()> {
    if !backup.is_file() {
        bail!("no backup file {}", backup.display());
    }
    match Backend::of(url)? {
        Backend::Sqlite => {
            check_sqlite(backup).await?;
            let target = sqlite_path(url)?;
            if target.exists() && !force {
                bail!(
                    "{} exists; stop kefu and restore with --force to replace it",
                    target.display()
                );
            }
            if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            // Copy beside, then rename: a crash never leaves half a database.
            let tmp = target.with_extension("restoring");
            std::fs::copy(backup, &tmp).with_context(|| {
                format!("cannot copy {} to {}", backup.display(), tmp.display())
            })?;
            for ext in ["db-wal", "db-shm"] {
                let _ = std::fs::remove_file(target.with_extension(ext));
            }
            std::fs::rename(&tmp, &target)?;
        }
        Backend::Postgres => {
            pg_tool(
                "pg_restore",
                &[
                    "--clean",
                    "--if-exists",
                    "--no-owner",
                    "--dbname",
                    url,
                    path_str(backup)?,
                ],
                url,
            )
            .await?;
        }
    }
    Ok(())
}

fn path_str(p: &Path) -> anyhow::Result<&str> {
    p.to_str()
        .with_context(|| format!("{} is not a UTF-8 path", p.display()))
}

/// Runs a PostgreSQL client program (the arguments hold `url`, which error messages
/// show without its password).
async fn pg_tool(program: &str, args: &[&str], url: &str) -> anyhow::Result<()> {
    let status = tokio::process::Command::new(program)
        .args(args)
        .status()
        .await
        .with_context(|| {
            format!("cannot run {program} (install the PostgreSQL client: apt-get install postgresql-client)")
        })?;
    if !status.success() {
        bail!("{program} on {} failed ({status})", redact(url));
    }
    Ok(())
}

/// The file an `sqlite://PATH?...` URL names.
pub fn sqlite_path(url: &str) -> anyhow::Result<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .context("not an sqlite URL")?;
    let path = rest.split('?').next().unwrap_or(rest);
    if path.is_empty() || path == ":memory:" {
        bail!("{url} names no file");
    }
    Ok(PathBuf::from(path))
}

/// Scheduled backups: one every `every` into `dir`, keeping the newest `keep`.
pub async fn schedule(
    store: Store,
    url: String,
    dir: PathBuf,
    every: Duration,
    keep: usize,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let ext = match store.backend() {
            Backend::Sqlite => "db",
            Backend::Postgres => "dump",
        };
        let name = format!("kefu-{}.{ext}", chrono::Utc::now().format("%Y%m%dT%H%M%SZ"));
        let out = dir.join(&name);
        match backup(&store, &url, &out).await {
            Ok(()) => {
                tracing::info!(file = %out.display(), "scheduled backup written");
                let _ = store.audit("kefu", "backup", &name, "scheduled").await;
                prune(&dir, keep);
            }
            Err(e) => tracing::error!(error = format!("{e:#}"), "scheduled backup failed"),
        }
    }
}

/// Deletes the oldest `kefu-*` backups beyond `keep`.
fn prune(dir: &Path, keep: usize) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.starts_with("kefu-") && (n.ends_with(".db") || n.ends_with(".dump"))
            })
        })
        .collect();
    // Names carry the UTC time, so they sort by age.
    files.sort();
    let excess = files.len().saturating_sub(keep.max(1));
    for old in &files[..excess] {
        match std::fs::remove_file(old) {
            Ok(()) => tracing::info!(file = %old.display(), "old backup removed"),
            Err(e) => {
                tracing::warn!(file = %old.display(), error = %e, "cannot remove an old backup")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_name_their_file() {
        assert_eq!(
            sqlite_path("sqlite://data/kefu.db?mode=rwc").unwrap(),
            PathBuf::from("data/kefu.db")
        );
        assert!(sqlite_path("sqlite::memory:").is_err());
    }

    #[test]
    fn pruning_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        for d in ["20260101", "20260102", "20260103"] {
            std::fs::write(dir.path().join(format!("kefu-{d}T000000Z.db")), "x").unwrap();
        }
        std::fs::write(dir.path().join("other.db"), "x").unwrap();
        prune(dir.path(), 2);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "kefu-20260102T000000Z.db",
                "kefu-20260103T000000Z.db",
                "other.db"
            ]
        );
    }
}
