//! Tickets through their life: opened at a hand-over, taken by the agent who
//! accepts it, wrapped up, noted (voicemail left, callback asked for), and changed
//! on the desk (status, priority, assignee) with every change in the audit log.
//!
//! Each ticket has a number people can say, a due date from its queue's SLA
//! ([`Slas`]) whose clock pauses while the ticket waits on the customer (status
//! pending), and a version: a change names the version it was made on, and a
//! change made on an older one is refused (two supervisors moving one ticket:
//! the second is told, nothing is lost). The words of its subject and of what the
//! customer wrote go into the keyed search index (`ticket_terms`, see
//! `store::terms`). Reading lists and searching is `store::ticket_list`.

use std::collections::{BTreeSet, HashMap};
use std::sync::RwLock;
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row};

use super::{Backend, Sealer, Store, ms, new_id, terms};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Nobody has it yet.
    New,
    /// An agent works on it.
    Open,
    /// Waiting on the customer: the SLA clock is paused.
    Pending,
    Solved,
    /// Final: it no longer changes.
    Closed,
}

impl Status {
    pub const ALL: [Status; 5] = [
        Status::New,
        Status::Open,
        Status::Pending,
        Status::Solved,
        Status::Closed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::New => "new",
            Status::Open => "open",
            Status::Pending => "pending",
            Status::Solved => "solved",
            Status::Closed => "closed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// New or open: someone at the business owes the customer something, so the
    /// ticket can be overdue.
    pub fn owed(self) -> bool {
        matches!(self, Status::New | Status::Open)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Low,
    Normal,
    High,
    Urgent,
}

impl Priority {
    pub const ALL: [Priority; 4] = [
        Priority::Low,
        Priority::Normal,
        Priority::High,
        Priority::Urgent,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Normal => "normal",
            Priority::High => "high",
            Priority::Urgent => "urgent",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// The time to solve at this priority, from the queue's (normal) SLA: urgent a
    /// sixth of it, high half, low three times.
    fn scale(self, sla_ms: i64) -> i64 {
        match self {
            Priority::Urgent => sla_ms / 6,
            Priority::High => sla_ms / 2,
            Priority::Normal => sla_ms,
            Priority::Low => sla_ms * 3,
        }
    }
}

/// Each queue's SLA: the time within which a ticket of normal priority is due
/// (`sla` in the queue's `[[queue]]`; a day when not set).
#[derive(Debug)]
pub struct Slas {
    by_queue: RwLock<HashMap<String, i64>>,
}

/// A queue's SLA when kefu.toml does not set one.
pub const DEFAULT_SLA: Duration = Duration::from_secs(24 * 3600);

impl Default for Slas {
    fn default() -> Self {
        Self {
            by_queue: RwLock::new(HashMap::new()),
        }
    }
}

impl Slas {
    pub fn set(&self, queues: impl IntoIterator<Item = (String, Duration)>) {
        let map = queues
            .into_iter()
            .map(|(q, d)| (q, i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)))
            .collect();
        *self.by_queue.write().unwrap_or_else(|e| e.into_inner()) = map;
    }

    /// Milliseconds from opening to due for a ticket of this queue and priority.
    pub fn due_in(&self, queue: Option<&str>, p: Priority) -> i64 {
        let default = DEFAULT_SLA.as_millis() as i64;
        let sla = queue
            .and_then(|q| {
                self.by_queue
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(q)
                    .copied()
            })
            .unwrap_or(default);
        p.scale(sla)
    }
}

/// A change to one ticket; `None` leaves a field as it is.
#[derive(Clone, Debug, Default)]
pub struct Change {
    pub status: Option<Status>,
    pub priority: Option<Priority>,
    /// Some(None) takes the ticket from whoever has it; user ids.
    pub assignee: Option<Option<String>>,
}

/// What became of a change.
#[derive(Debug, PartialEq, Eq)]
pub enum Changed {
    /// Made: the ticket's new version.
    Done {
        version: i64,
    },
    Missing,
    /// The ticket changed since the version the change was made on.
    Stale {
        version: i64,
    },
    /// A closed ticket no longer changes.
    Closed,
}

/// A ticket's fields that changes read.
struct Current {
    num: i64,
    status: Status,
    priority: Priority,
    assignee: Option<String>,
    queue: Option<String>,
    due_ms: i64,
    paused_ms: Option<i64>,
    version: i64,
}

const CURRENT: &str = "num, status, priority, assignee, queue, due_ms, paused_ms, version";

fn current_of(r: &sqlx::any::AnyRow) -> anyhow::Result<Current> {
    let status: String = r.try_get(1)?;
    let priority: String = r.try_get(2)?;
    Ok(Current {
        num: r.try_get(0)?,
        status: Status::parse(&status).unwrap_or(Status::Open),
        priority: Priority::parse(&priority).unwrap_or(Priority::Normal),
        assignee: r.try_get(3)?,
        queue: r.try_get(4)?,
        due_ms: r.try_get::<Option<i64>, _>(5)?.unwrap_or(0),
        paused_ms: r.try_get(6)?,
        version: r.try_get(7)?,
    })
}

/// How the audit log names a ticket.
pub fn target(num: i64) -> String {
    format!("ticket:{num}")
}

pub(super) async fn audit(
    c: &mut AnyConnection,
    now: i64,
    actor: &str,
    action: &str,
    num: i64,
    detail: &str,
) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO audit_log (at_ms, actor, action, target, detail) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(now)
    .bind(actor)
    .bind(action)
    .bind(target(num))
    .bind(detail)
    .execute(&mut *c)
    .await
    .context("cannot append to the audit log")?;
    Ok(())
}

async fn user_name(c: &mut AnyConnection, id: Option<&str>) -> anyhow::Result<String> {
    let Some(id) = id else {
        return Ok("nobody".into());
    };
    let name: Option<String> = sqlx::query_scalar("SELECT name FROM users WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *c)
        .await?;
    Ok(name.unwrap_or_else(|| id.to_string()))
}

/// Applies `change` to a ticket read in this transaction: the SLA clock, the new
/// version and one audit entry per field changed.
async fn apply(
    c: &mut AnyConnection,
    slas: &Slas,
    cur: &Current,
    change: &Change,
    actor: &str,
    now: i64,
) -> anyhow::Result<Option<i64>> {
    let mut status = cur.status;
    let mut assignee = cur.assignee.clone();
    if let Some(a) = &change.assignee
        && *a != cur.assignee
    {
        assignee = a.clone();
        // Taking a new ticket opens it; giving an open one back makes it new.
        match (a, cur.status) {
            (Some(_), Status::New) => status = Status::Open,
            (None, Status::Open) => status = Status::New,
            _ => {}
        }
    }
    if let Some(s) = change.status {
        status = s;
    }
    let mut due = cur.due_ms;
    let priority = change.priority.unwrap_or(cur.priority);
    if priority != cur.priority {
        let q = cur.queue.as_deref();
        due += slas.due_in(q, priority) - slas.due_in(q, cur.priority);
    }
    // The SLA clock stops while waiting on the customer.
    let mut paused = cur.paused_ms;
    match (cur.status == Status::Pending, status == Status::Pending) {
        (false, true) => paused = Some(now),
        (true, false) => {
            due += now - paused.unwrap_or(now);
            paused = None;
        }
        _ => {}
    }
    let version = cur.version + 1;
    let done = sqlx::query(
        "UPDATE tickets SET status = $1, priority = $2, assignee = $3, due_ms = $4, \
         paused_ms = $5, version = $6, updated_ms = $7 WHERE num = $8 AND version = $9",
    )
    .bind(status.as_str())
    .bind(priority.as_str())
    .bind(assignee.clone())
    .bind(due)
    .bind(paused)
    .bind(version)
    .bind(now)
    .bind(cur.num)
    .bind(cur.version)
    .execute(&mut *c)
    .await
    .context("cannot change the ticket")?;
    if done.rows_affected() != 1 {
        // Changed by another transaction since it was read.
        return Ok(None);
    }
    if status != cur.status {
        let d = format!("{} → {}", cur.status.as_str(), status.as_str());
        audit(c, now, actor, "ticket.status", cur.num, &d).await?;
    }
    if priority != cur.priority {
        let d = format!("{} → {}", cur.priority.as_str(), priority.as_str());
        audit(c, now, actor, "ticket.priority", cur.num, &d).await?;
    }
    if assignee != cur.assignee {
        let from = user_name(c, cur.assignee.as_deref()).await?;
        let to = user_name(c, assignee.as_deref()).await?;
        audit(
            c,
            now,
            actor,
            "ticket.assign",
            cur.num,
            &format!("{from} → {to}"),
        )
        .await?;
    }
    Ok(Some(version))
}

/// Locks the rows read for a change until the transaction ends (PostgreSQL; an
/// SQLite write transaction holds the whole database already).
fn lock(b: Backend) -> &'static str {
    match b {
        Backend::Sqlite => "",
        Backend::Postgres => " FOR UPDATE",
    }
}

/// Adds the terms of `texts` to ticket `num`'s search index (under the current
/// key; with encryption off, a plain hash).
pub(super) async fn index(
    c: &mut AnyConnection,
    sealer: &Sealer,
    num: i64,
    texts: &[&str],
) -> anyhow::Result<()> {
    let mut slots = BTreeSet::new();
    for t in texts {
        for term in terms::terms(t) {
            slots.insert(terms::slot(&sealer.lookup(terms::COLUMN, &term)));
        }
    }
    let slots: Vec<i64> = slots.into_iter().collect();
    for chunk in slots.chunks(200) {
        let values: Vec<String> = (0..chunk.len())
            .map(|i| format!("(${}, $1)", i + 2))
            .collect();
        let sql = format!(
            "INSERT INTO ticket_terms (term, ticket) VALUES {} ON CONFLICT DO NOTHING",
            values.join(", ")
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(num);
        for s in chunk {
            q = q.bind(*s);
        }
        q.execute(&mut *c)
            .await
            .context("cannot index the ticket")?;
    }
    Ok(())
}

/// What the customer wrote or said in a conversation (its first 500 turns).
pub(super) async fn customer_words(
    c: &mut AnyConnection,
    sealer: &Sealer,
    conversation: &str,
) -> anyhow::Result<Vec<String>> {
    let rows = sqlx::query(
        "SELECT text, key_id FROM turns WHERE conversation_id = $1 AND speaker = 'customer' \
         ORDER BY seq LIMIT 500",
    )
    .bind(conversation)
    .fetch_all(&mut *c)
    .await
    .context("cannot read the conversation")?;
    rows.iter()
        .map(|r| sealer.open(r.try_get(1)?, "turns.text", &r.try_get::<Vec<u8>, _>(0)?))
        .collect()
}

/// After a conversation's turns are written: what the customer said goes into its
/// tickets' index, and a ticket that was waiting on the customer is open again
/// (the SLA clock runs on).
pub(super) async fn customer_wrote(
    c: &mut AnyConnection,
    sealer: &Sealer,
    conversation: &str,
    texts: &[&str],
    now: i64,
) -> anyhow::Result<()> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {CURRENT} FROM tickets WHERE conversation_id = $1 \
         AND status NOT IN ('solved', 'closed')"
    )))
    .bind(conversation)
    .fetch_all(&mut *c)
    .await
    .context("cannot read the conversation's tickets")?;
    for r in &rows {
        let cur = current_of(r)?;
        index(c, sealer, cur.num, texts).await?;
        if cur.status == Status::Pending {
            let change = Change {
                status: Some(Status::Open),
                ..Change::default()
            };
            // The due date only moves by the wait: no SLA table is needed here.
            apply(c, &Slas::default(), &cur, &change, "customer", now).await?;
        }
    }
    Ok(())
}

impl Store {
    /// Opens a ticket for a hand-over: (ticket id). The subject is what the customer
    /// said last, or the call's summary (sealed). A chat's ticket names its
    /// conversation, a call's its call; it is due by the queue's SLA.
    pub async fn open_ticket(
        &self,
        customer: &str,
        conversation: Option<&str>,
        call: Option<&str>,
        queue: &str,
        subject: &str,
    ) -> anyhow::Result<String> {
        let now = ms(Utc::now());
        let id = new_id("k");
        let s = self.sealer();
        let due = now + self.slas().due_in(Some(queue), Priority::Normal);
        let mut tx = self.begin_write().await?;
        let num: i64 = match self.backend() {
            Backend::Sqlite => sqlx::query_scalar("SELECT COALESCE(MAX(num), 0) + 1 FROM tickets"),
            Backend::Postgres => sqlx::query_scalar("SELECT nextval('tickets_num_seq')"),
        }
        .fetch_one(&mut *tx)
        .await
        .context("cannot number the ticket")?;
        let channel: Option<String> = match conversation {
            Some(c) => {
                sqlx::query_scalar("SELECT channel FROM conversations WHERE id = $1")
                    .bind(c)
                    .fetch_optional(&mut *tx)
                    .await?
            }
            None => Some("phone".into()),
        };
        sqlx::query(
            "INSERT INTO tickets (id, num, customer_id, conversation_id, call_id, queue, channel, \
             status, priority, assignee, subject, body, key_id, created_ms, updated_ms, due_ms, version) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'new', 'normal', NULL, $8, $9, $10, $11, $11, $12, 0)",
        )
        .bind(id.as_str())
        .bind(num)
        .bind(customer)
        .bind(conversation)
        .bind(call)
        .bind(queue)
        .bind(channel.clone())
        .bind(s.seal("tickets.subject", subject))
        .bind(s.seal("tickets.body", ""))
        .bind(s.key_id())
        .bind(now)
        .bind(due)
        .execute(&mut *tx)
        .await
        .context("cannot open a ticket")?;
        let mut words = match conversation {
            Some(c) => customer_words(&mut tx, s, c).await?,
            None => Vec::new(),
        };
        words.push(subject.to_string());
        let texts: Vec<&str> = words.iter().map(String::as_str).collect();
        index(&mut tx, s, num, &texts).await?;
        let detail = format!(
            "queue {queue}, channel {}",
            channel.as_deref().unwrap_or("?")
        );
        audit(&mut tx, now, "kefu", "ticket.open", num, &detail).await?;
        tx.commit().await.context("cannot open a ticket")?;
        Ok(id)
    }

    /// Ticket `num` as this write transaction reads it (locked on PostgreSQL).
    async fn locked(&self, c: &mut AnyConnection, num: i64) -> anyhow::Result<Option<Current>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {CURRENT} FROM tickets WHERE num = $1{}",
            lock(self.backend())
        )))
        .bind(num)
        .fetch_optional(&mut *c)
        .await
        .context("cannot read the ticket")?;
        row.as_ref().map(current_of).transpose()
    }

    /// Changes ticket `num` as its reader saw it at `version`.
    pub async fn change_ticket(
        &self,
        num: i64,
        version: i64,
        change: &Change,
        actor: &str,
    ) -> anyhow::Result<Changed> {
        let mut tx = self.begin_write().await?;
        let Some(cur) = self.locked(&mut tx, num).await? else {
            return Ok(Changed::Missing);
        };
        if cur.version != version {
            return Ok(Changed::Stale {
                version: cur.version,
            });
        }
        if cur.status == Status::Closed {
            return Ok(Changed::Closed);
        }
        let now = ms(Utc::now());
        let Some(version) = apply(&mut tx, self.slas(), &cur, change, actor, now).await? else {
            return Ok(Changed::Stale {
                version: cur.version + 1,
            });
        };
        tx.commit().await.context("cannot change the ticket")?;
        Ok(Changed::Done { version })
    }

    /// An agent replied to the customer on ticket `num` (`how`: live, sent,
    /// stored): audited, and a ticket owed an answer now waits on the customer.
    pub async fn ticket_replied(&self, num: i64, actor: &str, how: &str) -> anyhow::Result<()> {
        let mut tx = self.begin_write().await?;
        let Some(cur) = self.locked(&mut tx, num).await? else {
            return Ok(());
        };
        let now = ms(Utc::now());
        audit(&mut tx, now, actor, "ticket.reply", num, how).await?;
        if cur.status.owed() {
            let change = Change {
                status: Some(Status::Pending),
                ..Change::default()
            };
            apply(&mut tx, self.slas(), &cur, &change, actor, now).await?;
        }
        tx.commit().await.context("cannot record the reply")?;
        Ok(())
    }

    /// Adds an internal note (sealed) to ticket `num`: its number among the
    /// ticket's notes, or None when there is no such ticket.
    pub async fn add_note(&self, num: i64, actor: &str, text: &str) -> anyhow::Result<Option<i64>> {
        let mut tx = self.begin_write().await?;
        let exists: Option<i64> = sqlx::query_scalar("SELECT num FROM tickets WHERE num = $1")
            .bind(num)
            .fetch_optional(&mut *tx)
            .await
            .context("cannot read the ticket")?;
        if exists.is_none() {
            return Ok(None);
        }
        let seq: i64 = sqlx::query_scalar(
            "SELECT COALESCE(MAX(seq), 0) + 1 FROM ticket_notes WHERE ticket = $1",
        )
        .bind(num)
        .fetch_one(&mut *tx)
        .await?;
        let now = ms(Utc::now());
        let s = self.sealer();
        sqlx::query(
            "INSERT INTO ticket_notes (ticket, seq, at_ms, author, text, key_id) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(num)
        .bind(seq)
        .bind(now)
        .bind(actor)
        .bind(s.seal("ticket_notes.text", text))
        .bind(s.key_id())
        .execute(&mut *tx)
        .await
        .context("cannot add the note")?;
        sqlx::query("UPDATE tickets SET updated_ms = $1 WHERE num = $2")
            .bind(now)
            .bind(num)
            .execute(&mut *tx)
            .await?;
        audit(
            &mut tx,
            now,
            actor,
            "ticket.note",
            num,
            &format!("note {seq}"),
        )
        .await?;
        tx.commit().await.context("cannot add the note")?;
        Ok(Some(seq))
    }

    /// The tickets of a conversation or call still being worked on.
    async fn active_of(&self, c: &mut AnyConnection, item: &str) -> anyhow::Result<Vec<Current>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {CURRENT} FROM tickets WHERE (conversation_id = $1 OR call_id = $1) \
             AND status NOT IN ('solved', 'closed'){}",
            lock(self.backend())
        )))
        .bind(item)
        .fetch_all(&mut *c)
        .await
        .context("cannot read tickets")?;
        rows.iter().map(current_of).collect()
    }

    /// Gives the tickets of a conversation (or call) to the user who took it.
    pub async fn assign_tickets(
        &self,
        item: &str,
        user_id: &str,
        actor: &str,
    ) -> anyhow::Result<()> {
        let mut tx = self.begin_write().await?;
        let now = ms(Utc::now());
        for cur in self.active_of(&mut tx, item).await? {
            let change = Change {
                assignee: Some(Some(user_id.to_string())),
                status: Some(Status::Open),
                ..Change::default()
            };
            if apply(&mut tx, self.slas(), &cur, &change, actor, now)
                .await?
                .is_none()
            {
                anyhow::bail!("ticket {} changed while it was being assigned", cur.num);
            }
        }
        tx.commit().await.context("cannot assign the ticket")?;
        Ok(())
    }

    /// Whether `user_id` has an open ticket for this conversation or call (an
    /// agent may wrap up their own tickets after the call ended).
    pub async fn has_open_ticket(&self, item: &str, user_id: &str) -> anyhow::Result<bool> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM tickets WHERE (conversation_id = $1 OR call_id = $1) \
             AND assignee = $2 AND status NOT IN ('solved', 'closed')",
        )
        .bind(item)
        .bind(user_id)
        .fetch_one(self.pool())
        .await
        .context("cannot read tickets")?;
        Ok(n > 0)
    }

    /// A call's ticket names the call's conversation once it is stored (the
    /// bridged call's transcript, what the caller said to the IVR), and what the
    /// caller said goes into its search index.
    pub async fn link_call_ticket(&self, call: &str, conversation: &str) -> anyhow::Result<()> {
        let mut tx = self.begin_write().await?;
        let nums: Vec<i64> = sqlx::query_scalar(
            "SELECT num FROM tickets WHERE call_id = $1 AND conversation_id IS NULL",
        )
        .bind(call)
        .fetch_all(&mut *tx)
        .await?;
        if !nums.is_empty() {
            sqlx::query(
                "UPDATE tickets SET conversation_id = $1 WHERE call_id = $2 AND conversation_id IS NULL",
            )
            .bind(conversation)
            .bind(call)
            .execute(&mut *tx)
            .await?;
            let words = customer_words(&mut tx, self.sealer(), conversation).await?;
            let texts: Vec<&str> = words.iter().map(String::as_str).collect();
            for num in nums {
                index(&mut tx, self.sealer(), num, &texts).await?;
            }
        }
        tx.commit().await.context("cannot link the call's ticket")?;
        Ok(())
    }

    /// Wraps up a conversation's tickets: a status (solved or pending) and the
    /// agent's notes (sealed) appended to the body.
    pub async fn wrap_up_tickets(
        &self,
        item: &str,
        status: Status,
        notes: &str,
        actor: &str,
    ) -> anyhow::Result<u64> {
        self.update_tickets(item, Some(status), notes, actor).await
    }

    /// Adds a line to the open tickets of a conversation or call (voicemail left,
    /// callback asked for), keeping their status.
    pub async fn note_tickets(&self, item: &str, note: &str) -> anyhow::Result<u64> {
        self.update_tickets(item, None, note, "kefu").await
    }

    async fn update_tickets(
        &self,
        item: &str,
        status: Option<Status>,
        notes: &str,
        actor: &str,
    ) -> anyhow::Result<u64> {
        let mut tx = self.begin_write().await?;
        let now = ms(Utc::now());
        let active = self.active_of(&mut tx, item).await?;
        let s = self.sealer();
        for cur in &active {
            let r = sqlx::query("SELECT body, key_id, subject FROM tickets WHERE num = $1")
                .bind(cur.num)
                .fetch_one(&mut *tx)
                .await?;
            let key: i64 = r.try_get(1)?;
            let mut text = s.open(key, "tickets.body", &r.try_get::<Vec<u8>, _>(0)?)?;
            // The row's key changes: every sealed column is re-sealed with it, or
            // the subject would stay under a key rotation no longer looks for.
            let subject = s.open(key, "tickets.subject", &r.try_get::<Vec<u8>, _>(2)?)?;
            if !notes.is_empty() {
                if !text.is_empty() {
                    text.push('\n');
                }
                text.push_str(notes);
            }
            sqlx::query("UPDATE tickets SET body = $1, key_id = $2, subject = $3 WHERE num = $4")
                .bind(s.seal("tickets.body", &text))
                .bind(s.key_id())
                .bind(s.seal("tickets.subject", &subject))
                .bind(cur.num)
                .execute(&mut *tx)
                .await?;
            let change = Change {
                status,
                ..Change::default()
            };
            if apply(&mut tx, self.slas(), cur, &change, actor, now)
                .await?
                .is_none()
            {
                anyhow::bail!("ticket {} changed while it was being updated", cur.num);
            }
        }
        tx.commit().await.context("cannot update the ticket")?;
        Ok(active.len() as u64)
    }
}
