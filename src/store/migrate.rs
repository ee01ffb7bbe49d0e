//! Schema migrations, embedded in the binary: `migrations/sqlite` and
//! `migrations/postgres` hold the same versions in each dialect. sqlx's migrator
//! runs them (and records them in `_sqlx_migrations`); the files are compiled in with
//! `include_str!` rather than sqlx's `migrate!` macro, which would build a second
//! copy of the database drivers for the host.

use std::borrow::Cow;

use anyhow::Context;
use sqlx::AnyPool;
use sqlx::error::BoxDynError;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};

use super::Backend;

type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

const SQLITE: &[(i64, &str, &str)] = &[
    (1, "init", include_str!("migrations/sqlite/0001_init.sql")),
    (
        2,
        "sessions",
        include_str!("migrations/sqlite/0002_sessions.sql"),
    ),
    (
        3,
        "agent_phones",
        include_str!("migrations/sqlite/0003_agent_phones.sql"),
    ),
    (
        4,
        "transfers",
        include_str!("migrations/sqlite/0004_transfers.sql"),
    ),
    (
        5,
        "analytics",
        include_str!("migrations/sqlite/0005_analytics.sql"),
    ),
    (
        6,
        "token_expiry",
        include_str!("migrations/sqlite/0006_token_expiry.sql"),
    ),
    (
        7,
        "kb_drafts",
        include_str!("migrations/sqlite/0007_kb_drafts.sql"),
    ),
    (
        8,
        "ratings",
        include_str!("migrations/sqlite/0008_ratings.sql"),
    ),
    (
        9,
        "ticket_desk",
        include_str!("migrations/sqlite/0009_ticket_desk.sql"),
    ),
    (
        10,
        "ticket_lists",
        include_str!("migrations/sqlite/0010_ticket_lists.sql"),
    ),
    (
        11,
        "callbacks",
        include_str!("migrations/sqlite/0011_callbacks.sql"),
    ),
    (
        12,
        "cluster",
        include_str!("migrations/sqlite/0012_cluster.sql"),
    ),
    (
        13,
        "chat_state",
        include_str!("migrations/sqlite/0013_chat_state.sql"),
    ),
];
const POSTGRES: &[(i64, &str, &str)] = &[
    (1, "init", include_str!("migrations/postgres/0001_init.sql")),
    (
        2,
        "sessions",
        include_str!("migrations/postgres/0002_sessions.sql"),
    ),
    (
        3,
        "agent_phones",
        include_str!("migrations/postgres/0003_agent_phones.sql"),
    ),
    (
        4,
        "transfers",
        include_str!("migrations/postgres/0004_transfers.sql"),
    ),
    (
        5,
        "analytics",
        include_str!("migrations/postgres/0005_analytics.sql"),
    ),
    (
        6,
        "token_expiry",
        include_str!("migrations/postgres/0006_token_expiry.sql"),
    ),
    (
        7,
        "kb_drafts",
        include_str!("migrations/postgres/0007_kb_drafts.sql"),
    ),
    (
        8,
        "ratings",
        include_str!("migrations/postgres/0008_ratings.sql"),
    ),
    (
        9,
        "ticket_desk",
        include_str!("migrations/postgres/0009_ticket_desk.sql"),
    ),
    (
        10,
        "ticket_lists",
        include_str!("migrations/postgres/0010_ticket_lists.sql"),
    ),
    (
        11,
        "callbacks",
        include_str!("migrations/postgres/0011_callbacks.sql"),
    ),
    (
        12,
        "cluster",
        include_str!("migrations/postgres/0012_cluster.sql"),
    ),
    (
        13,
        "chat_state",
        include_str!("migrations/postgres/0013_chat_state.sql"),
    ),
];

#[derive(Debug)]
struct Embedded(&'static [(i64, &'static str, &'static str)]);

impl MigrationSource<'static> for Embedded {
    fn resolve(self) -> BoxFuture<'static, Result<Vec<Migration>, BoxDynError>> {
        Box::pin(async move {
            Ok(self
                .0
                .iter()
                .map(|&(version, name, sql)| {
                    Migration::new(
                        version,
                        Cow::Borrowed(name),
                        MigrationType::Simple,
                        sqlx::SqlSafeStr::into_sql_str(sql),
                        false,
                    )
                })
                .collect())
        })
    }
}

/// The newest schema version this binary knows.
pub fn latest() -> i64 {
    SQLITE.len() as i64
}

pub async fn run(pool: &AnyPool, backend: Backend) -> anyhow::Result<()> {
    let source = match backend {
        Backend::Sqlite => Embedded(SQLITE),
        Backend::Postgres => Embedded(POSTGRES),
    };
    let migrator = Migrator::new(source)
        .await
        .context("cannot read the migrations")?;
    migrator
        .run(pool)
        .await
        .context("cannot migrate the database schema")
}
