//! The analytics export for a big-data platform: the store's contacts,
//! conversations, turns, calls and queue stays for a range of UTC days, as
//! Parquet files partitioned by day the way Apache Spark, DuckDB and Hive find
//! partitions (`TABLE/day=YYYY-MM-DD/part-0.parquet`), so
//! `spark.read.parquet("DIR/contacts")` has a `day` column.
//!
//! `contacts` is the report's own unit (`store::analytics`): a conversation, or
//! an answered call without one, with whether a person handled it, so the
//! automation rate over the export equals the report's (`docs/analytics.md` has
//! the Spark SQL). Personal data stays out: no numbers, names or words, unless
//! `with_text` asks for the customers' and agents' words (opened from their
//! sealed form: the files are then personal data and must be kept as such).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use arrow_array::{
    ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMillisecondArray,
};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use chrono::NaiveDate;
use sqlx::Row;

use super::Store;
use super::analytics::day_of;

/// A column's type.
#[derive(Clone, Copy)]
enum Kind {
    Text,
    Int,
    /// Unix milliseconds, written as a UTC timestamp.
    Time,
    Real,
    Flag,
}

/// One value of a row (None: SQL NULL).
enum Value {
    Text(Option<String>),
    Int(Option<i64>),
    Real(Option<f64>),
    Flag(bool),
}

/// A table being exported: its columns, and its rows by day.
struct Table {
    name: &'static str,
    columns: &'static [(&'static str, Kind)],
    days: BTreeMap<NaiveDate, Vec<Vec<Value>>>,
}

impl Table {
    fn new(name: &'static str, columns: &'static [(&'static str, Kind)]) -> Self {
        Self {
            name,
            columns,
            days: BTreeMap::new(),
        }
    }

    fn push(&mut self, day: NaiveDate, row: Vec<Value>) {
        debug_assert_eq!(row.len(), self.columns.len());
        self.days.entry(day).or_default().push(row);
    }

    fn schema(&self) -> Arc<Schema> {
        Arc::new(Schema::new(
            self.columns
                .iter()
                .map(|(name, kind)| {
                    let t = match kind {
                        Kind::Text => DataType::Utf8,
                        Kind::Int => DataType::Int64,
                        Kind::Time => {
                            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
                        }
                        Kind::Real => DataType::Float64,
                        Kind::Flag => DataType::Boolean,
                    };
                    Field::new(*name, t, !matches!(kind, Kind::Flag))
                })
                .collect::<Vec<_>>(),
        ))
    }

    /// Writes one Parquet file per day; returns the files and rows written.
    fn write(&self, dir: &Path) -> anyhow::Result<(Vec<PathBuf>, usize)> {
        let schema = self.schema();
        let mut files = Vec::new();
        let mut total = 0;
        for (day, rows) in &self.days {
            let columns: Vec<ArrayRef> = self
                .columns
                .iter()
                .enumerate()
                .map(|(i, (_, kind))| column(*kind, rows.iter().map(|r| &r[i])))
                .collect();
            let batch = RecordBatch::try_new(schema.clone(), columns)
                .with_context(|| format!("cannot build the {} batch", self.name))?;
            let part = dir.join(self.name).join(format!("day={day}"));
            std::fs::create_dir_all(&part)
                .with_context(|| format!("cannot create {}", part.display()))?;
            let path = part.join("part-0.parquet");
            let tmp = part.join(".part-0.parquet.tmp");
            let file = std::fs::File::create(&tmp)
                .with_context(|| format!("cannot create {}", tmp.display()))?;
            let props = parquet::file::properties::WriterProperties::builder()
                .set_compression(parquet::basic::Compression::SNAPPY)
                .build();
            let mut w = parquet::arrow::ArrowWriter::try_new(file, schema.clone(), Some(props))?;
            w.write(&batch)?;
            w.close()?;
            std::fs::rename(&tmp, &path)
                .with_context(|| format!("cannot write {}", path.display()))?;
            total += rows.len();
            files.push(path);
        }
        Ok((files, total))
    }
}

/// One column's values as an Arrow array.
fn column<'a>(kind: Kind, values: impl Iterator<Item = &'a Value>) -> ArrayRef {
    let int = |v: &Value| match v {
        Value::Int(i) => *i,
        _ => None,
    };
    match kind {
        Kind::Text => Arc::new(
            values
                .map(|v| match v {
                    Value::Text(t) => t.as_deref(),
                    _ => None,
                })
                .collect::<StringArray>(),
        ),
        Kind::Int => Arc::new(values.map(int).collect::<Int64Array>()),
        Kind::Time => Arc::new(
            values
                .map(int)
                .collect::<TimestampMillisecondArray>()
                .with_timezone("UTC"),
        ),
        Kind::Real => Arc::new(
            values
                .map(|v| match v {
                    Value::Real(r) => *r,
                    _ => None,
                })
                .collect::<Float64Array>(),
        ),
        Kind::Flag => Arc::new(BooleanArray::from(
            values
                .map(|v| matches!(v, Value::Flag(true)))
                .collect::<Vec<bool>>(),
        )),
    }
}

const CONTACTS: &[(&str, Kind)] = &[
    ("contact_id", Kind::Text),
    ("kind", Kind::Text),
    ("channel", Kind::Text),
    ("started_at", Kind::Time),
    ("handed_over", Kind::Flag),
];
const CONVERSATIONS: &[(&str, Kind)] = &[
    ("conversation_id", Kind::Text),
    ("channel", Kind::Text),
    ("customer_id", Kind::Text),
    ("call_id", Kind::Text),
    ("started_at", Kind::Time),
    ("updated_at", Kind::Time),
];
const TURNS: &[(&str, Kind)] = &[
    ("conversation_id", Kind::Text),
    ("seq", Kind::Int),
    ("at", Kind::Time),
    ("speaker", Kind::Text),
    ("channel", Kind::Text),
    ("intent", Kind::Text),
    ("confidence", Kind::Real),
    ("latency_us", Kind::Int),
    ("text", Kind::Text),
];
const CALLS: &[(&str, Kind)] = &[
    ("call_id", Kind::Text),
    ("customer_id", Kind::Text),
    ("trunk", Kind::Text),
    ("transport", Kind::Text),
    ("dialplan", Kind::Text),
    ("invite_at", Kind::Time),
    ("answer_at", Kind::Time),
    ("end_at", Kind::Time),
    ("end_reason", Kind::Text),
    ("transfer", Kind::Text),
    ("keys", Kind::Int),
    ("utterances", Kind::Int),
];
const STAYS: &[(&str, Kind)] = &[
    ("item", Kind::Text),
    ("queue", Kind::Text),
    ("channel", Kind::Text),
    ("reason", Kind::Text),
    ("agent", Kind::Text),
    ("enqueued_at", Kind::Time),
    ("answered_at", Kind::Time),
    ("ended_at", Kind::Time),
    ("outcome", Kind::Text),
];

/// What an export wrote.
#[derive(Debug, serde::Serialize)]
pub struct Exported {
    /// Rows per table.
    pub rows: BTreeMap<&'static str, usize>,
    pub files: Vec<PathBuf>,
}

/// A row read column by column as `columns` say (text, or integers and times).
fn row(r: &sqlx::any::AnyRow, columns: &[(&str, Kind)]) -> anyhow::Result<Vec<Value>> {
    (0..columns.len())
        .map(|i| match columns[i].1 {
            Kind::Int | Kind::Time => int(r, i),
            _ => text(r, i),
        })
        .collect()
}

fn text(r: &sqlx::any::AnyRow, i: usize) -> anyhow::Result<Value> {
    Ok(Value::Text(r.try_get::<Option<String>, _>(i)?))
}

fn int(r: &sqlx::any::AnyRow, i: usize) -> anyhow::Result<Value> {
    Ok(Value::Int(r.try_get::<Option<i64>, _>(i)?))
}

impl Store {
    /// The turns of the period, with their words opened when `with_text`.
    async fn turns_table(
        &self,
        start: i64,
        end: i64,
        from: NaiveDate,
        with_text: bool,
    ) -> anyhow::Result<Table> {
        let p = self.pool();
        let mut turns = Table::new("turns", TURNS);
        for r in sqlx::query(
            "SELECT conversation_id, seq, at_ms, speaker, channel, intent, confidence, latency_us, \
             text, key_id FROM turns WHERE at_ms >= $1 AND at_ms < $2 \
             ORDER BY conversation_id, seq",
        )
        .bind(start)
        .bind(end)
        .fetch_all(p)
        .await
        .context("cannot read turns")?
        {
            let at: i64 = r.try_get(2)?;
            let words = if with_text {
                let sealed: Vec<u8> = r.try_get(8)?;
                Some(self.sealer().open(r.try_get(9)?, "turns.text", &sealed)?)
            } else {
                None
            };
            turns.push(
                day_of(at, from),
                vec![
                    text(&r, 0)?,
                    int(&r, 1)?,
                    int(&r, 2)?,
                    text(&r, 3)?,
                    text(&r, 4)?,
                    text(&r, 5)?,
                    Value::Real(r.try_get::<Option<f64>, _>(6)?),
                    int(&r, 7)?,
                    Value::Text(words),
                ],
            );
        }
        Ok(turns)
    }

    /// Writes the UTC days `from` to `to` (both included) under `dir`; a day's
    /// files are replaced if they exist (each is written to a temporary name and
    /// renamed).
    pub async fn export_parquet(
        &self,
        from: NaiveDate,
        to: NaiveDate,
        dir: &Path,
        with_text: bool,
    ) -> anyhow::Result<Exported> {
        let start = super::analytics::day_start(from);
        let end = super::analytics::day_start(to.succ_opt().unwrap_or(to));
        let p = self.pool();
        let mut tables = Vec::new();

        let mut contacts = Table::new("contacts", CONTACTS);
        for c in self.contacts(start, end, "", from).await?.0 {
            contacts.push(
                c.day,
                vec![
                    Value::Text(Some(c.id)),
                    Value::Text(Some(c.kind.into())),
                    Value::Text(Some(c.channel)),
                    Value::Int(Some(c.started_ms)),
                    Value::Flag(c.handed_over),
                ],
            );
        }
        tables.push(contacts);

        let mut conversations = Table::new("conversations", CONVERSATIONS);
        for r in sqlx::query(
            "SELECT id, channel, customer_id, call_id, started_ms, updated_ms FROM conversations \
             WHERE started_ms >= $1 AND started_ms < $2 ORDER BY started_ms, id",
        )
        .bind(start)
        .bind(end)
        .fetch_all(p)
        .await
        .context("cannot read conversations")?
        {
            let started: i64 = r.try_get(4)?;
            conversations.push(day_of(started, from), row(&r, CONVERSATIONS)?);
        }
        tables.push(conversations);

        tables.push(self.turns_table(start, end, from, with_text).await?);

        let mut calls = Table::new("calls", CALLS);
        for r in sqlx::query(
            "SELECT call_id, customer_id, trunk, transport, dialplan, invite_ms, answer_ms, end_ms, \
             end_reason, transfer, keys, utterances FROM calls \
             WHERE invite_ms >= $1 AND invite_ms < $2 ORDER BY invite_ms, call_id",
        )
        .bind(start)
        .bind(end)
        .fetch_all(p)
        .await
        .context("cannot read calls")?
        {
            let invite: i64 = r.try_get(5)?;
            calls.push(day_of(invite, from), row(&r, CALLS)?);
        }
        tables.push(calls);

        let mut stays = Table::new("queue_stays", STAYS);
        for r in sqlx::query(
            "SELECT item, queue, channel, reason, agent, enqueued_ms, answered_ms, ended_ms, outcome \
             FROM queue_stays WHERE enqueued_ms >= $1 AND enqueued_ms < $2 ORDER BY enqueued_ms, item",
        )
        .bind(start)
        .bind(end)
        .fetch_all(p)
        .await
        .context("cannot read queue stays")?
        {
            let enqueued: i64 = r.try_get(5)?;
            stays.push(day_of(enqueued, from), row(&r, STAYS)?);
        }
        tables.push(stays);

        let dir = dir.to_path_buf();
        tokio::task::spawn_blocking(move || {
            let mut out = Exported {
                rows: BTreeMap::new(),
                files: Vec::new(),
            };
            for t in &tables {
                let (files, rows) = t.write(&dir)?;
                out.rows.insert(t.name, rows);
                out.files.extend(files);
            }
            Ok(out)
        })
        .await?
    }
}
