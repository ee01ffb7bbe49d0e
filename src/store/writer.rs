//! The store's one writer: group commit.
//!
//! Jobs queue on a channel; the writer takes the first and whatever else is already
//! waiting (up to `BATCH`), applies them in one transaction and commits once, then
//! answers each. A job that fails spoils only its own answer: when a batch fails, its
//! jobs are applied again one transaction each. One writer per process also means
//! SQLite never sees two of our transactions compete for its write lock.

use anyhow::Context;
use chrono::{DateTime, Utc};
use sqlx::{AnyConnection, AnyPool};
use tokio::sync::{mpsc, oneshot};

use super::{Sealer, TurnsWrite, find_identity, identity_kind_name, ms, new_id, speaker_name};
use crate::dialogue::conversations::Identity;

/// Jobs committed together at most.
const BATCH: usize = 256;
/// Jobs waiting before senders wait.
const QUEUE: usize = 4096;

#[derive(Debug)]
pub enum Write {
    /// Finds or creates the identity's customer; with `customer`, moves the identity
    /// (and every identity of its old customer) to that customer.
    Identity {
        identity: Identity,
        customer: Option<String>,
        at: DateTime<Utc>,
    },
    Turns(TurnsWrite),
    Call(Box<CallWrite>),
    Audit {
        at: DateTime<Utc>,
        actor: String,
        action: String,
        target: String,
        detail: String,
    },
    /// A knowledge base or dialplan set loaded.
    Version {
        kind: VersionKind,
        version: String,
        summary: String,
        at: DateTime<Utc>,
    },
    /// Nothing: answered once everything queued before it is committed.
    Flush,
}

#[derive(Clone, Copy, Debug)]
pub enum VersionKind {
    Kb,
    Dialplans,
}

/// A finished call: its record and, for calls that talked with the dialogue core,
/// their conversation.
#[derive(Debug)]
pub struct CallWrite {
    pub call_id: String,
    pub caller: String,
    pub callee: String,
    pub customer: Option<String>,
    pub trunk: Option<String>,
    pub transport: String,
    pub dialplan: String,
    pub dialplan_version: String,
    pub invite: Option<DateTime<Utc>>,
    pub answer: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
    pub path: Vec<String>,
    pub end_reason: String,
    /// Keys the caller pressed, and utterances recognised (how they used the menu).
    pub keys: i64,
    pub utterances: i64,
    /// The recognizer's confidence per utterance, as a JSON array.
    pub asr_confidence: String,
    pub transfer: Option<String>,
    /// The whole call record as JSON (sealed: it holds numbers, keys and words).
    pub detail: String,
    pub conversation: Option<TurnsWrite>,
}

#[derive(Debug)]
pub enum Done {
    Ok,
    /// Turns made from a stale copy of their conversation (another node, or the
    /// store, has turns this copy lacks): nothing was written.
    Stale,
    Customer(String),
}

pub struct Job {
    pub write: Write,
    pub done: oneshot::Sender<Result<Done, String>>,
}

pub fn spawn(pool: AnyPool, backend: super::Backend, sealer: Sealer) -> mpsc::Sender<Job> {
    let (tx, rx) = mpsc::channel(QUEUE);
    tokio::spawn(run(pool, backend, sealer, rx));
    tx
}

async fn run(pool: AnyPool, backend: super::Backend, sealer: Sealer, mut rx: mpsc::Receiver<Job>) {
    let mut batch: Vec<Job> = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        let started = std::time::Instant::now();
        let committed = commit_batch(&pool, backend, &sealer, &batch).await;
        crate::metrics::Metrics::observe(
            &crate::metrics::metrics().db_commit_seconds,
            started.elapsed(),
        );
        match committed {
            Ok(dones) => {
                for (job, done) in batch.drain(..).zip(dones) {
                    let _ = job.done.send(Ok(done));
                }
            }
            Err(e) => {
                tracing::warn!(
                    error = format!("{e:#}"),
                    jobs = batch.len(),
                    "store batch failed; committing its jobs one by one"
                );
                for job in batch.drain(..) {
                    let r = commit_batch(&pool, backend, &sealer, std::slice::from_ref(&job))
                        .await
                        .map(|mut d| d.pop().unwrap_or(Done::Ok))
                        .map_err(|e| format!("{e:#}"));
                    if let Err(e) = &r {
                        tracing::error!(error = %e, "store write failed");
                    }
                    let _ = job.done.send(r);
                }
            }
        }
    }
}

async fn commit_batch(
    pool: &AnyPool,
    backend: super::Backend,
    sealer: &Sealer,
    jobs: &[Job],
) -> anyhow::Result<Vec<Done>> {
    let mut tx = super::begin_write(pool, backend).await?;
    let mut dones = Vec::with_capacity(jobs.len());
    for job in jobs {
        dones.push(apply(&mut tx, sealer, &job.write).await?);
    }
    tx.commit().await.context("cannot commit")?;
    Ok(dones)
}

async fn apply(c: &mut AnyConnection, sealer: &Sealer, w: &Write) -> anyhow::Result<Done> {
    match w {
        Write::Identity {
            identity,
            customer,
            at,
        } => identity_write(c, sealer, identity, customer.as_deref(), *at).await,
        Write::Turns(t) => {
            if turns(c, sealer, t).await? {
                Ok(Done::Ok)
            } else {
                Ok(Done::Stale)
            }
        }
        Write::Call(call) => {
            call_write(c, sealer, call).await?;
            Ok(Done::Ok)
        }
        Write::Audit {
            at,
            actor,
            action,
            target,
            detail,
        } => {
            sqlx::query(
                "INSERT INTO audit_log (at_ms, actor, action, target, detail) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(ms(*at))
            .bind(actor.as_str())
            .bind(action.as_str())
            .bind(target.as_str())
            .bind(detail.as_str())
            .execute(&mut *c)
            .await
            .context("cannot append to the audit log")?;
            Ok(Done::Ok)
        }
        Write::Version {
            kind,
            version,
            summary,
            at,
        } => {
            let sql = match kind {
                VersionKind::Kb => {
                    "INSERT INTO kb_versions (version, loaded_ms, summary) VALUES ($1, $2, $3)"
                }
                VersionKind::Dialplans => {
                    "INSERT INTO dialplan_versions (version, loaded_ms, summary) VALUES ($1, $2, $3)"
                }
            };
            sqlx::query(sql)
                .bind(version.as_str())
                .bind(ms(*at))
                .bind(summary.as_str())
                .execute(&mut *c)
                .await
                .context("cannot record a version")?;
            Ok(Done::Ok)
        }
        Write::Flush => Ok(Done::Ok),
    }
}

async fn ensure_customer(
    c: &mut AnyConnection,
    sealer: &Sealer,
    id: &str,
    at: i64,
) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO customers (id, key_id, created_ms) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING",
    )
    .bind(id)
    .bind(sealer.key_id())
    .bind(at)
    .execute(&mut *c)
    .await
    .context("cannot store a customer")?;
    Ok(())
}

async fn identity_write(
    c: &mut AnyConnection,
    sealer: &Sealer,
    identity: &Identity,
    target: Option<&str>,
    at: DateTime<Utc>,
) -> anyhow::Result<Done> {
    let kind = identity_kind_name(identity.kind);
    let existing = find_identity(c, sealer, identity).await?;
    let at = ms(at);
    match (existing, target) {
        (Some(old), None) => Ok(Done::Customer(old)),
        (Some(old), Some(new)) if old == new => Ok(Done::Customer(old)),
        (Some(old), Some(new)) => {
            ensure_customer(c, sealer, new, at).await?;
            for sql in [
                "UPDATE identities SET customer_id = $1 WHERE customer_id = $2",
                "UPDATE conversations SET customer_id = $1 WHERE customer_id = $2",
                "UPDATE calls SET customer_id = $1 WHERE customer_id = $2",
                "UPDATE tickets SET customer_id = $1 WHERE customer_id = $2",
            ] {
                sqlx::query(sql)
                    .bind(new)
                    .bind(old.as_str())
                    .execute(&mut *c)
                    .await
                    .context("cannot merge customers")?;
            }
            sqlx::query("DELETE FROM customers WHERE id = $1")
                .bind(old.as_str())
                .execute(&mut *c)
                .await
                .context("cannot merge customers")?;
            Ok(Done::Customer(new.to_string()))
        }
        (None, target) => {
            let customer = target.map_or_else(|| new_id("c"), str::to_string);
            ensure_customer(c, sealer, &customer, at).await?;
            sqlx::query(
                "INSERT INTO identities (kind, lookup, value, customer_id, key_id, created_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(kind)
            .bind(sealer.lookup("identities.value", &identity.value))
            .bind(sealer.seal("identities.value", &identity.value))
            .bind(customer.as_str())
            .bind(sealer.key_id())
            .bind(at)
            .execute(&mut *c)
            .await
            .context("cannot store an identity")?;
            Ok(Done::Customer(customer))
        }
    }
}

/// Writes a conversation's new turns; false (and nothing written) when they
/// come with the engine's state and were made from a stale copy: the stored
/// conversation has more turns than the copy had when it made them.
async fn turns(c: &mut AnyConnection, sealer: &Sealer, t: &TurnsWrite) -> anyhow::Result<bool> {
    ensure_customer(c, sealer, &t.customer, ms(t.started)).await?;
    let said = (t.first_seq + t.turns.len()) as i64;
    // A write with a state is checked against the turns stored; one without
    // (a call's, a late reply to a closed chat) only adds its turns.
    let check = if t.state.is_some() {
        " WHERE conversations.said = $10"
    } else {
        ""
    };
    let upsert = format!(
        "INSERT INTO conversations (id, channel, customer_id, call_id, started_ms, updated_ms, said, state, key_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
         ON CONFLICT (id) DO UPDATE SET updated_ms = excluded.updated_ms, customer_id = excluded.customer_id, \
         said = CASE WHEN conversations.said > excluded.said THEN conversations.said ELSE excluded.said END, \
         state = COALESCE(excluded.state, conversations.state), key_id = COALESCE(excluded.key_id, conversations.key_id){check}"
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(upsert))
        .bind(t.conversation.as_str())
        .bind(t.channel.name())
        .bind(t.customer.as_str())
        .bind(t.call_id.clone())
        .bind(ms(t.started))
        .bind(ms(t.updated))
        .bind(said)
        .bind(
            t.state
                .as_deref()
                .map(|s| sealer.seal("conversations.state", s)),
        )
        .bind(t.state.as_ref().map(|_| sealer.key_id()));
    if t.state.is_some() {
        q = q.bind(t.first_seq as i64);
    }
    let written = q
        .execute(&mut *c)
        .await
        .context("cannot store a conversation")?;
    if written.rows_affected() == 0 {
        return Ok(false);
    }
    let last = t.turns.len().saturating_sub(1);
    for (i, turn) in t.turns.iter().enumerate() {
        sqlx::query(
            "INSERT INTO turns (conversation_id, seq, at_ms, speaker, channel, text, intent, confidence, latency_us, key_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (conversation_id, seq) DO NOTHING",
        )
        .bind(t.conversation.as_str())
        .bind((t.first_seq + i) as i64)
        .bind(ms(turn.at))
        .bind(speaker_name(turn.speaker))
        .bind(t.channel.name())
        .bind(sealer.seal("turns.text", &turn.text))
        .bind(turn.intent.clone())
        .bind(turn.confidence.map(f64::from))
        .bind(if i == last { t.latency_us } else { None })
        .bind(sealer.key_id())
        .execute(&mut *c)
        .await
        .context("cannot store a turn")?;
    }
    let said: Vec<&str> = t
        .turns
        .iter()
        .filter(|turn| turn.speaker == crate::dialogue::engine::Speaker::Customer)
        .map(|turn| turn.text.as_str())
        .collect();
    if !said.is_empty() {
        super::tickets::customer_wrote(c, sealer, &t.conversation, &said, ms(t.updated)).await?;
    }
    Ok(true)
}

async fn call_write(c: &mut AnyConnection, sealer: &Sealer, w: &CallWrite) -> anyhow::Result<()> {
    if let Some(customer) = &w.customer {
        ensure_customer(c, sealer, customer, w.invite.map_or(0, ms)).await?;
    }
    sqlx::query(
        "INSERT INTO calls (call_id, caller, caller_lookup, callee, customer_id, trunk, transport, dialplan, \
         dialplan_version, invite_ms, answer_ms, end_ms, path, end_reason, transfer, detail, key_id, \
         keys, utterances, asr_confidence) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20) \
         ON CONFLICT (call_id) DO NOTHING",
    )
    .bind(w.call_id.as_str())
    .bind(sealer.seal("calls.caller", &w.caller))
    .bind(sealer.lookup("calls.caller", &w.caller))
    .bind(sealer.seal("calls.callee", &w.callee))
    .bind(w.customer.clone())
    .bind(w.trunk.clone())
    .bind(w.transport.as_str())
    .bind(w.dialplan.as_str())
    .bind(w.dialplan_version.as_str())
    .bind(w.invite.map(ms))
    .bind(w.answer.map(ms))
    .bind(w.end.map(ms))
    .bind(serde_json::to_string(&w.path).unwrap_or_default())
    .bind(w.end_reason.as_str())
    .bind(w.transfer.clone())
    .bind(sealer.seal("calls.detail", &w.detail))
    .bind(sealer.key_id())
    .bind(w.keys)
    .bind(w.utterances)
    .bind(w.asr_confidence.as_str())
    .execute(&mut *c)
    .await
    .context("cannot store a call")?;
    if let Some(t) = &w.conversation {
        turns(c, sealer, t).await?;
    }
    Ok(())
}
