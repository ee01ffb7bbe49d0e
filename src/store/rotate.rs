//! `kefu keys rotate`: re-seals every stored value under the keyring's current key.
//!
//! It works table by table in batches, one transaction per batch, picking rows whose
//! `key_id` is not the current key; an interrupted rotation is resumed by running it
//! again (rows already done are not picked). Lookup hashes are recomputed with the
//! values, so lookups keep finding rows (they hash under every key meanwhile).

use anyhow::Context;
use sqlx::{AnyConnection, Row};

use super::{Sealer, Store};

#[derive(Clone, Copy)]
enum Kind {
    Text,
    Int,
    Bytes,
}

struct Table {
    name: &'static str,
    pk: &'static [(&'static str, Kind)],
    /// Sealed columns (nullable ones stay NULL).
    sealed: &'static [&'static str],
    /// (lookup column, the sealed column whose plaintext it hashes).
    lookups: &'static [(&'static str, &'static str)],
}

const TABLES: &[Table] = &[
    Table {
        name: "customers",
        pk: &[("id", Kind::Text)],
        sealed: &["name"],
        lookups: &[],
    },
    Table {
        name: "identities",
        pk: &[("kind", Kind::Text), ("lookup", Kind::Bytes)],
        sealed: &["value"],
        lookups: &[("lookup", "value")],
    },
    Table {
        name: "conversations",
        pk: &[("id", Kind::Text)],
        sealed: &["state"],
        lookups: &[],
    },
    Table {
        name: "turns",
        pk: &[("conversation_id", Kind::Text), ("seq", Kind::Int)],
        sealed: &["text"],
        lookups: &[],
    },
    Table {
        name: "calls",
        pk: &[("call_id", Kind::Text)],
        sealed: &["caller", "callee", "detail"],
        lookups: &[("caller_lookup", "caller")],
    },
    Table {
        name: "agents",
        pk: &[("id", Kind::Text)],
        sealed: &["ha1_sha256", "ha1_md5"],
        lookups: &[],
    },
    Table {
        name: "tickets",
        pk: &[("id", Kind::Text)],
        sealed: &["subject", "body"],
        lookups: &[],
    },
    Table {
        name: "ticket_notes",
        pk: &[("ticket", Kind::Int), ("seq", Kind::Int)],
        sealed: &["text"],
        lookups: &[],
    },
    Table {
        name: "callbacks",
        pk: &[("ticket", Kind::Int)],
        sealed: &["number"],
        lookups: &[],
    },
    Table {
        name: "recordings",
        pk: &[("id", Kind::Text)],
        sealed: &["audio"],
        lookups: &[],
    },
    Table {
        name: "kb_drafts",
        pk: &[("file", Kind::Text)],
        sealed: &["text"],
        lookups: &[],
    },
];

enum Val {
    Text(String),
    Int(i64),
    Bytes(Vec<u8>),
}

/// Rows re-sealed, per table.
#[derive(Debug, Default)]
pub struct Rotated {
    pub tables: Vec<(&'static str, u64)>,
    /// Tickets whose search index was hashed again under the current key.
    pub reindexed: u64,
}

impl Rotated {
    pub fn total(&self) -> u64 {
        self.tables.iter().map(|(_, n)| n).sum()
    }
}

/// Re-seals every row not under the current key, `batch` rows per transaction;
/// `progress` hears (table, rows done so far in it).
pub async fn rotate(
    store: &Store,
    batch: usize,
    mut progress: impl FnMut(&str, u64),
) -> anyhow::Result<Rotated> {
    let sealer = store.sealer();
    anyhow::ensure!(
        sealer.encrypted(),
        "encryption is off (`encryption = false`): there is no key to rotate to"
    );
    let current = sealer.key_id();
    let mut out = Rotated::default();
    for t in TABLES {
        let mut done = 0u64;
        loop {
            let mut tx = store.begin_write().await?;
            let n = rotate_batch(&mut tx, sealer, t, current, batch.max(1)).await?;
            tx.commit()
                .await
                .context("cannot commit a rotation batch")?;
            if n == 0 {
                break;
            }
            done += n;
            progress(t.name, done);
        }
        out.tables.push((t.name, done));
    }
    // The tickets' search index is keyed: hash every ticket's words again under
    // the current key, so searches keep finding them once the old key is retired.
    let mut done = 0u64;
    let mut after = 0i64;
    loop {
        let mut tx = store.begin_write().await?;
        let (n, last) = reindex_batch(&mut tx, sealer, after, batch.max(1)).await?;
        tx.commit()
            .await
            .context("cannot commit a re-indexing batch")?;
        if n == 0 {
            break;
        }
        after = last;
        done += n;
        progress("tickets' search index", done);
    }
    out.reindexed = done;
    Ok(out)
}

async fn rotate_batch(
    c: &mut AnyConnection,
    sealer: &Sealer,
    t: &Table,
    current: i64,
    batch: usize,
) -> anyhow::Result<u64> {
    let pk_cols: Vec<&str> = t.pk.iter().map(|(c, _)| *c).collect();
    let select = format!(
        "SELECT {}, {}, key_id FROM {} WHERE key_id <> $1 LIMIT $2",
        pk_cols.join(", "),
        t.sealed.join(", "),
        t.name
    );
    // Table and column names come from the fixed table list above, never from input.
    let rows = sqlx::query(sqlx::AssertSqlSafe(select))
        .bind(current)
        .bind(batch as i64)
        .fetch_all(&mut *c)
        .await
        .with_context(|| format!("cannot read {} for rotation", t.name))?;
    let mut sets: Vec<String> = Vec::new();
    for col in t.sealed.iter().chain(t.lookups.iter().map(|(l, _)| l)) {
        sets.push(format!("{col} = ${}", sets.len() + 1));
    }
    sets.push(format!("key_id = ${}", sets.len() + 1));
    let mut wheres: Vec<String> = Vec::new();
    for col in &pk_cols {
        wheres.push(format!("{col} = ${}", sets.len() + wheres.len() + 1));
    }
    let update = sqlx::SqlSafeStr::into_sql_str(sqlx::AssertSqlSafe(format!(
        "UPDATE {} SET {} WHERE {}",
        t.name,
        sets.join(", "),
        wheres.join(" AND ")
    )));
    for row in &rows {
        let npk = t.pk.len();
        let key_id: i64 = row.try_get(npk + t.sealed.len())?;
        let mut pk = Vec::with_capacity(npk);
        for (i, (_, kind)) in t.pk.iter().enumerate() {
            pk.push(match kind {
                Kind::Text => Val::Text(row.try_get(i)?),
                Kind::Int => Val::Int(row.try_get(i)?),
                Kind::Bytes => Val::Bytes(row.try_get(i)?),
            });
        }
        let mut plain: Vec<Option<String>> = Vec::with_capacity(t.sealed.len());
        for (j, col) in t.sealed.iter().enumerate() {
            let v: Option<Vec<u8>> = row.try_get(npk + j)?;
            let column = format!("{}.{col}", t.name);
            plain.push(match v {
                Some(v) => Some(sealer.open(key_id, &column, &v)?),
                None => None,
            });
        }
        let mut q = sqlx::query(update.clone());
        for (col, p) in t.sealed.iter().zip(&plain) {
            let column = format!("{}.{col}", t.name);
            q = q.bind(p.as_ref().map(|p| sealer.seal(&column, p)));
        }
        for (_, from) in t.lookups {
            let j = t.sealed.iter().position(|c| c == from).unwrap_or(0);
            let column = format!("{}.{from}", t.name);
            q = q.bind(plain[j].as_ref().map(|p| sealer.lookup(&column, p)));
        }
        q = q.bind(current);
        for v in pk {
            q = match v {
                Val::Text(s) => q.bind(s),
                Val::Int(i) => q.bind(i),
                Val::Bytes(b) => q.bind(b),
            };
        }
        q.execute(&mut *c)
            .await
            .with_context(|| format!("cannot re-seal a row of {}", t.name))?;
    }
    Ok(rows.len() as u64)
}

/// Indexes again, under the current key, the tickets numbered after `after` (at
/// most `batch`): (tickets done, the last number).
async fn reindex_batch(
    c: &mut AnyConnection,
    sealer: &Sealer,
    after: i64,
    batch: usize,
) -> anyhow::Result<(u64, i64)> {
    let rows = sqlx::query(
        "SELECT num, subject, key_id, conversation_id FROM tickets WHERE num > $1 ORDER BY num LIMIT $2",
    )
    .bind(after)
    .bind(batch as i64)
    .fetch_all(&mut *c)
    .await
    .context("cannot read tickets to index")?;
    let mut last = after;
    for r in &rows {
        let num: i64 = r.try_get(0)?;
        let subject = sealer.open(
            r.try_get(2)?,
            "tickets.subject",
            &r.try_get::<Vec<u8>, _>(1)?,
        )?;
        let mut words = match r.try_get::<Option<String>, _>(3)? {
            Some(conv) => super::tickets::customer_words(c, sealer, &conv).await?,
            None => Vec::new(),
        };
        words.push(subject);
        sqlx::query("DELETE FROM ticket_terms WHERE ticket = $1")
            .bind(num)
            .execute(&mut *c)
            .await?;
        let texts: Vec<&str> = words.iter().map(String::as_str).collect();
        super::tickets::index(c, sealer, num, &texts).await?;
        last = num;
    }
    Ok((rows.len() as u64, last))
}
