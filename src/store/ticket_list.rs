//! Reading tickets as a desk team does: a page of a filtered list (status,
//! queue, channel, assignee, priority, due, customer) and a search over subjects
//! and the customers' words, newest first or soonest due first; one ticket with
//! its notes and history.
//!
//! Subjects and words are sealed at rest, so the search goes through the keyed
//! index (`ticket_terms`): a search's terms are hashed under every key of the
//! keyring, and a ticket matches when it holds every term. Searching decrypted
//! pages instead would cost a decryption per ticket scanned, unbounded on a
//! million tickets; the index costs one row per distinct term of a ticket and
//! shows an attacker with the database which tickets share a word, never the word.
//!
//! How a search runs: each term's postings are counted up to [`RARE`]. A rare term
//! drives the query (its tickets are read first, then looked up by number with
//! the other terms checked per ticket); when every term is common, the list's own order drives it
//! and each ticket is checked against the terms, which finds a page quickly since
//! common terms match often.

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;

use super::tickets::{Priority, Status, target};
use super::{Store, from_ms, ms, terms};

/// Postings counted per term before it is called common.
pub const RARE: i64 = 5000;
/// Most tickets on one page.
pub const MAX_PAGE: usize = 200;
/// Most terms in one search.
pub const MAX_SEARCH_TERMS: usize = 8;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Who {
    #[default]
    Anyone,
    Nobody,
    User(String),
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Due {
    #[default]
    Any,
    /// New or open, and past due.
    Overdue,
    /// Due before this time (ms).
    Before(i64),
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Sort {
    /// Newest first (by number).
    #[default]
    Newest,
    /// Soonest due first.
    Due,
}

/// Where a page starts: after this ticket in the list's order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub due_ms: i64,
    pub num: i64,
}

impl Cursor {
    pub fn parse(s: &str) -> Option<Self> {
        let (d, n) = s.split_once('.')?;
        Some(Self {
            due_ms: d.parse().ok()?,
            num: n.parse().ok()?,
        })
    }

    pub fn text(self) -> String {
        format!("{}.{}", self.due_ms, self.num)
    }
}

#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub status: Vec<Status>,
    pub queue: Option<String>,
    pub channel: Option<String>,
    pub assignee: Who,
    pub priority: Option<Priority>,
    pub due: Due,
    /// Customer ids (one person may be several, under several identities).
    pub customers: Option<Vec<String>>,
    /// Only tickets with a callback still to make.
    pub callbacks: bool,
    /// Search words (each must match).
    pub text: String,
    pub sort: Sort,
    pub after: Option<Cursor>,
    pub limit: usize,
}

/// A ticket as the list shows it.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Ticket {
    pub num: i64,
    pub id: String,
    pub status: Status,
    pub priority: Priority,
    pub queue: Option<String>,
    pub channel: Option<String>,
    /// The assignee's user name.
    pub assignee: Option<String>,
    pub customer: String,
    pub subject: String,
    pub created: DateTime<Utc>,
    pub updated: DateTime<Utc>,
    /// When it is due; for a ticket waiting on the customer, as if the wait ended now.
    pub due: DateTime<Utc>,
    pub overdue: bool,
    /// Waiting on the customer (the SLA clock is paused).
    pub waiting: bool,
    pub version: i64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Page {
    pub tickets: Vec<Ticket>,
    /// The cursor of the next page, if there is one.
    pub next: Option<String>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Note {
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub author: String,
    pub text: String,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Event {
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub detail: String,
}

/// One ticket with everything on it.
#[derive(Clone, Debug, Serialize)]
pub struct Detail {
    #[serde(flatten)]
    pub ticket: Ticket,
    pub conversation: Option<String>,
    pub call: Option<String>,
    /// Lines kefu and wrap-ups added (voicemail left, callback asked for, the
    /// agent's wrap-up notes).
    pub log: String,
    pub notes: Vec<Note>,
    pub history: Vec<Event>,
    /// A callback asked for or made (the number masked).
    pub callback: Option<super::callbacks::Callback>,
}

/// What a list row shows (`ticket_of` reads them by position).
const COLUMNS: &str = "t.num, t.id, t.status, t.priority, t.queue, t.channel, u.name, \
     t.customer_id, t.subject, t.key_id, t.created_ms, t.updated_ms, t.due_ms, t.paused_ms, \
     t.version";
/// What only one ticket's page adds (after `COLUMNS`).
const DETAIL: &str = "t.conversation_id, t.call_id, t.body";

enum Arg {
    I(i64),
    S(String),
}

/// A WHERE clause being built, with its arguments numbered in order.
#[derive(Default)]
struct Sql {
    conds: Vec<String>,
    args: Vec<Arg>,
}

impl Sql {
    fn arg(&mut self, a: Arg) -> String {
        self.args.push(a);
        format!("${}", self.args.len())
    }

    fn list(&mut self, values: impl IntoIterator<Item = Arg>) -> String {
        let v: Vec<String> = values.into_iter().map(|a| self.arg(a)).collect();
        v.join(", ")
    }
}

impl Store {
    /// One page of tickets.
    pub async fn tickets(&self, f: &Filter) -> anyhow::Result<Page> {
        let now = ms(Utc::now());
        let limit = f.limit.clamp(1, MAX_PAGE);
        let mut q = Sql::default();
        if !filter_into(f, now, &mut q) {
            return Ok(Page {
                tickets: Vec::new(),
                next: None,
            });
        }
        let order = match f.sort {
            Sort::Newest => "t.num DESC",
            Sort::Due => "t.due_ms ASC, t.num ASC",
        };
        match self.search_terms(&f.text).await? {
            Search::None => {}
            Search::Nothing => {
                return Ok(Page {
                    tickets: Vec::new(),
                    next: None,
                });
            }
            Search::Terms { driver, rest } => {
                if let Some(nums) = driver {
                    if nums.is_empty() {
                        return Ok(Page {
                            tickets: Vec::new(),
                            next: None,
                        });
                    }
                    let l = q.list(nums.into_iter().map(Arg::I));
                    q.conds.push(format!("t.num IN ({l})"));
                }
                for slots in rest {
                    let l = q.list(slots.into_iter().map(Arg::I));
                    q.conds.push(format!(
                        "EXISTS (SELECT 1 FROM ticket_terms x WHERE x.term IN ({l}) AND x.ticket = t.num)"
                    ));
                }
            }
        }
        let wh = if q.conds.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", q.conds.join(" AND "))
        };
        let sql = format!(
            "SELECT {COLUMNS} FROM tickets t LEFT JOIN users u ON u.id = t.assignee \
             {wh} ORDER BY {order} LIMIT {}",
            limit + 1
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for a in q.args {
            query = match a {
                Arg::I(v) => query.bind(v),
                Arg::S(v) => query.bind(v),
            };
        }
        let rows = query
            .fetch_all(self.pool())
            .await
            .context("cannot list tickets")?;
        let mut tickets = rows
            .iter()
            .map(|r| self.ticket_of(r, now))
            .collect::<anyhow::Result<Vec<_>>>()?;
        // The cursor keeps the stored due date (the list's order), not the shown one.
        let next = if tickets.len() > limit {
            tickets.truncate(limit);
            let last = &rows[limit - 1];
            Some(
                Cursor {
                    due_ms: last.try_get::<Option<i64>, _>(12)?.unwrap_or(0),
                    num: last.try_get(0)?,
                }
                .text(),
            )
        } else {
            None
        };
        Ok(Page { tickets, next })
    }

    /// One ticket with its notes and history.
    pub async fn ticket(&self, num: i64) -> anyhow::Result<Option<Detail>> {
        let now = ms(Utc::now());
        // The parts are read one query after another, not from one snapshot. The
        // callback goes first: its try is committed with its history entry, so a
        // reader who sees a try also sees its entry (read later).
        let callback = self.callback(num).await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS}, {DETAIL} FROM tickets t LEFT JOIN users u ON u.id = t.assignee WHERE t.num = $1"
        )))
        .bind(num)
        .fetch_optional(self.pool())
        .await
        .context("cannot read the ticket")?;
        let Some(r) = row else {
            return Ok(None);
        };
        let ticket = self.ticket_of(&r, now)?;
        let key: i64 = r.try_get(9)?;
        let log = self
            .sealer()
            .open(key, "tickets.body", &r.try_get::<Vec<u8>, _>(17)?)?;
        let notes = sqlx::query(
            "SELECT seq, at_ms, author, text, key_id FROM ticket_notes WHERE ticket = $1 ORDER BY seq",
        )
        .bind(num)
        .fetch_all(self.pool())
        .await
        .context("cannot read the ticket's notes")?
        .iter()
        .map(|n| {
            Ok(Note {
                seq: n.try_get(0)?,
                at: from_ms(n.try_get(1)?),
                author: n.try_get(2)?,
                text: self.sealer().open(
                    n.try_get(4)?,
                    "ticket_notes.text",
                    &n.try_get::<Vec<u8>, _>(3)?,
                )?,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
        let history = sqlx::query(
            "SELECT at_ms, actor, action, detail FROM audit_log WHERE target = $1 ORDER BY id LIMIT 1000",
        )
        .bind(target(num))
        .fetch_all(self.pool())
        .await
        .context("cannot read the ticket's history")?
        .iter()
        .map(|e| {
            Ok(Event {
                at: from_ms(e.try_get(0)?),
                actor: e.try_get(1)?,
                action: e.try_get(2)?,
                detail: e.try_get(3)?,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Some(Detail {
            ticket,
            conversation: r.try_get(15)?,
            call: r.try_get(16)?,
            log,
            notes,
            history,
            callback,
        }))
    }

    fn ticket_of(&self, r: &sqlx::any::AnyRow, now: i64) -> anyhow::Result<Ticket> {
        let status: String = r.try_get(2)?;
        let status = Status::parse(&status).unwrap_or(Status::Open);
        let priority: String = r.try_get(3)?;
        let key: i64 = r.try_get(9)?;
        let due: i64 = r.try_get::<Option<i64>, _>(12)?.unwrap_or(0);
        let paused: Option<i64> = r.try_get(13)?;
        let shown = due + paused.map_or(0, |p| (now - p).max(0));
        Ok(Ticket {
            num: r.try_get(0)?,
            id: r.try_get(1)?,
            status,
            priority: Priority::parse(&priority).unwrap_or(Priority::Normal),
            queue: r.try_get(4)?,
            channel: r.try_get(5)?,
            assignee: r.try_get(6)?,
            customer: r.try_get(7)?,
            subject: self
                .sealer()
                .open(key, "tickets.subject", &r.try_get::<Vec<u8>, _>(8)?)?,
            created: from_ms(r.try_get(10)?),
            updated: from_ms(r.try_get(11)?),
            due: from_ms(shown),
            overdue: status.owed() && due < now,
            waiting: paused.is_some(),
            version: r.try_get(14)?,
        })
    }

    /// A search's terms as index slots (under every key), the rarest first.
    async fn search_terms(&self, text: &str) -> anyhow::Result<Search> {
        let words = terms::terms(text);
        if words.is_empty() {
            return Ok(Search::None);
        }
        let mut counted = Vec::new();
        for w in words.iter().take(MAX_SEARCH_TERMS) {
            let slots: Vec<i64> = self
                .sealer()
                .lookups(terms::COLUMN, w)
                .iter()
                .map(|h| terms::slot(h))
                .collect();
            let l: Vec<String> = (1..=slots.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT COUNT(*) FROM (SELECT 1 FROM ticket_terms WHERE term IN ({}) LIMIT {RARE}) c",
                l.join(", ")
            );
            let mut q = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql));
            for s in &slots {
                q = q.bind(*s);
            }
            let n = q
                .fetch_one(self.pool())
                .await
                .context("cannot search tickets")?;
            if n == 0 {
                return Ok(Search::Nothing);
            }
            counted.push((n, slots));
        }
        counted.sort_by_key(|(n, _)| *n);
        let lead = counted[0].0 < RARE;
        let mut rest: Vec<Vec<i64>> = counted.into_iter().map(|(_, s)| s).collect();
        let mut driver = None;
        if lead {
            // The rare term's tickets, read first: the list then looks them up by
            // number (a join left to the planner may walk the whole list instead).
            let slots = rest.remove(0);
            let l: Vec<String> = (1..=slots.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT ticket FROM ticket_terms WHERE term IN ({}) LIMIT {RARE}",
                l.join(", ")
            );
            let mut q = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql));
            for s in &slots {
                q = q.bind(*s);
            }
            driver = Some(
                q.fetch_all(self.pool())
                    .await
                    .context("cannot search tickets")?,
            );
        }
        Ok(Search::Terms { driver, rest })
    }
}

/// The filter's conditions (and the page's start) into `q`; false when nothing
/// can match.
fn filter_into(f: &Filter, now: i64, q: &mut Sql) -> bool {
    if !f.status.is_empty() {
        let l = q.list(f.status.iter().map(|s| Arg::S(s.as_str().into())));
        q.conds.push(format!("t.status IN ({l})"));
    }
    if let Some(v) = &f.queue {
        let a = q.arg(Arg::S(v.clone()));
        q.conds.push(format!("t.queue = {a}"));
    }
    if let Some(v) = &f.channel {
        let a = q.arg(Arg::S(v.clone()));
        q.conds.push(format!("t.channel = {a}"));
    }
    match &f.assignee {
        Who::Anyone => {}
        Who::Nobody => q.conds.push("t.assignee IS NULL".into()),
        Who::User(id) => {
            let a = q.arg(Arg::S(id.clone()));
            q.conds.push(format!("t.assignee = {a}"));
        }
    }
    if f.callbacks {
        q.conds.push(
            // Led by the few callbacks waiting (a partial index), not the tickets.
            "t.num IN (SELECT cb.ticket FROM callbacks cb WHERE cb.done_ms IS NULL)".into(),
        );
    }
    if let Some(p) = f.priority {
        let a = q.arg(Arg::S(p.as_str().into()));
        q.conds.push(format!("t.priority = {a}"));
    }
    match f.due {
        Due::Any => {}
        Due::Overdue => {
            let a = q.arg(Arg::I(now));
            q.conds
                .push(format!("t.status IN ('new', 'open') AND t.due_ms < {a}"));
        }
        Due::Before(t) => {
            let a = q.arg(Arg::I(t));
            q.conds.push(format!("t.due_ms < {a}"));
        }
    }
    if let Some(cs) = &f.customers {
        if cs.is_empty() {
            return false;
        }
        let l = q.list(cs.iter().map(|c| Arg::S(c.clone())));
        q.conds.push(format!("t.customer_id IN ({l})"));
    }
    if let Some(c) = f.after {
        match f.sort {
            Sort::Newest => {
                let a = q.arg(Arg::I(c.num));
                q.conds.push(format!("t.num < {a}"));
            }
            Sort::Due => {
                let d = q.arg(Arg::I(c.due_ms));
                let n = q.arg(Arg::I(c.num));
                q.conds.push(format!(
                    "(t.due_ms > {d} OR (t.due_ms = {d} AND t.num > {n}))"
                ));
            }
        }
    }
    true
}

enum Search {
    /// No search words.
    None,
    /// A word no ticket holds.
    Nothing,
    /// `driver`: the tickets holding the rarest term, when it is rare enough
    /// to lead; `rest`: the other terms' slots.
    Terms {
        driver: Option<Vec<i64>>,
        rest: Vec<Vec<i64>>,
    },
}
