//! The service desk's tickets: the list with its filters and search, one ticket,
//! changes (status, priority, assignee) and internal notes.
//!
//! - `GET /tickets`: the page (it signs in like the desk).
//! - `GET /api/tickets?status=new,open&queue=&channel=&assignee=me|none|<user>&priority=
//!   &due=overdue|<RFC 3339 time>&callback=waiting&customer=<customer id or phone, WeChat id…>&q=<words>
//!   &sort=newest|due&after=<cursor>&limit=50`
//! - `GET /api/tickets/{num}`: the ticket, its log, notes and history.
//! - `PATCH /api/tickets/{num}` `{"version":3,"status":"pending","priority":"high",
//!   "assignee":"li.na"}` (`null` takes it from its assignee). A change names the
//!   version it was made on; a ticket changed since answers 409 with the reason.
//! - `POST /api/tickets/{num}/notes` `{"text":"…"}`: an internal note.
//! - `POST /api/tickets/{num}/reply` `{"text":"…"}`: an answer to the customer on
//!   the channel they used (`channel::chat::follow_up`); a ticket owed an answer
//!   then waits on the customer.
//!
//! Supervisors and admins change any ticket. An agent changes the tickets they
//! have, and takes an unassigned one for themselves; giving a ticket to someone
//! else is a supervisor's.

use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};

use super::admin::unavailable;
use super::{ApiError, Ops};
use crate::auth::Permission::{Public, Tickets};
use crate::auth::Role;
use crate::dialogue::conversations::{Identity, IdentityKind};
use crate::http::routes::{Caller, Routes, Verb::*};
use crate::store::ticket_list::{Cursor, Detail, Due, Filter, MAX_PAGE, Page, Sort, Who};
use crate::store::tickets::{Change, Changed, Priority, Status};

pub fn routes(r: Routes<'_, Arc<Ops>>) -> Routes<'_, Arc<Ops>> {
    r.add(Get, "/tickets", Public, page)
        .add(Get, "/api/tickets", Tickets, list)
        .add(Get, "/api/tickets/{num}", Tickets, one)
        .add(Patch, "/api/tickets/{num}", Tickets, change)
        .add(Post, "/api/tickets/{num}/notes", Tickets, note)
        .add(Post, "/api/tickets/{num}/reply", Tickets, reply)
}

/// The desk team's page: the list, one ticket, its changes and notes.
async fn page() -> axum::response::Html<&'static str> {
    axum::response::Html(include_str!("tickets.html"))
}

/// Longest search, in characters.
const MAX_SEARCH: usize = 200;
/// Longest note, in characters.
const MAX_NOTE: usize = 4000;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    status: Option<String>,
    queue: Option<String>,
    channel: Option<String>,
    assignee: Option<String>,
    priority: Option<String>,
    due: Option<String>,
    callback: Option<String>,
    customer: Option<String>,
    q: Option<String>,
    sort: Option<String>,
    after: Option<String>,
    limit: Option<String>,
}

fn bad(reason: impl Into<String>) -> ApiError {
    ApiError::bad_request(reason)
}

/// A filter value: trimmed, empty means none, at most 200 characters.
fn value(name: &str, v: Option<String>) -> Result<Option<String>, ApiError> {
    let Some(v) = v else { return Ok(None) };
    let v = v.trim().to_string();
    if v.chars().count() > MAX_SEARCH {
        return Err(bad(format!(
            "`{name}` may be at most {MAX_SEARCH} characters"
        )));
    }
    Ok((!v.is_empty()).then_some(v))
}

async fn user_id(ops: &Ops, name: &str) -> Result<String, ApiError> {
    match ops.store.user_with_hash(name).await.map_err(unavailable)? {
        Some((u, _)) if !u.disabled => Ok(u.id),
        _ => Err(bad(format!("there is no user named {name:?}"))),
    }
}

/// The customers a `customer=` value names: a customer id, or an identity of any
/// kind (a phone number, a WeChat OpenID…), each kind looked up by its hash.
async fn customers(ops: &Ops, v: &str) -> Result<Vec<String>, ApiError> {
    if ops.store.customer_exists(v).await.map_err(unavailable)? {
        return Ok(vec![v.to_string()]);
    }
    let mut found = Vec::new();
    for kind in IdentityKind::ALL {
        let id = Identity::new(kind, v);
        if let Some(c) = ops.store.find_customer(&id).await.map_err(unavailable)?
            && !found.contains(&c)
        {
            found.push(c);
        }
    }
    Ok(found)
}

async fn filter(ops: &Ops, c: &Caller, q: ListQuery) -> Result<Filter, ApiError> {
    let mut f = Filter {
        limit: 50,
        ..Filter::default()
    };
    if let Some(s) = value("status", q.status)? {
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            f.status.push(Status::parse(part).ok_or_else(|| {
                bad(format!(
                    "`status` {part:?} is not one of new, open, pending, solved, closed"
                ))
            })?);
        }
    }
    f.queue = value("queue", q.queue)?;
    f.channel = value("channel", q.channel)?;
    f.assignee = match value("assignee", q.assignee)?.as_deref() {
        None => Who::Anyone,
        Some("none") => Who::Nobody,
        Some("me") => Who::User(
            c.user_id
                .clone()
                .ok_or_else(|| bad("`assignee=me` needs a signed-in user"))?,
        ),
        Some(name) => Who::User(user_id(ops, name).await?),
    };
    if let Some(p) = value("priority", q.priority)? {
        f.priority = Some(Priority::parse(&p).ok_or_else(|| {
            bad(format!(
                "`priority` {p:?} is not one of low, normal, high, urgent"
            ))
        })?);
    }
    f.due = match value("due", q.due)?.as_deref() {
        None => Due::Any,
        Some("overdue") => Due::Overdue,
        Some(t) => Due::Before(
            chrono::DateTime::parse_from_rfc3339(t)
                .map_err(|_| {
                    bad(format!(
                        "`due` {t:?} is neither \"overdue\" nor a time like 2026-12-05T18:00:00Z"
                    ))
                })?
                .timestamp_millis(),
        ),
    };
    f.callbacks = match value("callback", q.callback)?.as_deref() {
        None => false,
        Some("waiting") => true,
        Some(v) => return Err(bad(format!("`callback` {v:?} is not \"waiting\""))),
    };
    if let Some(v) = value("customer", q.customer)? {
        f.customers = Some(customers(ops, &v).await?);
    }
    f.text = value("q", q.q)?.unwrap_or_default();
    f.sort = match value("sort", q.sort)?.as_deref() {
        None | Some("newest") => Sort::Newest,
        Some("due") => Sort::Due,
        Some(s) => return Err(bad(format!("`sort` {s:?} is not newest or due"))),
    };
    if let Some(a) = value("after", q.after)? {
        f.after =
            Some(Cursor::parse(&a).ok_or_else(|| bad("`after` is not a cursor this list gave"))?);
    }
    if let Some(l) = value("limit", q.limit)? {
        f.limit = l
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_PAGE).contains(n))
            .ok_or_else(|| bad(format!("`limit` must be a number from 1 to {MAX_PAGE}")))?;
    }
    Ok(f)
}

async fn list(
    State(ops): State<Arc<Ops>>,
    Extension(c): Extension<Caller>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Page>, ApiError> {
    let Query(q) = q.map_err(|e| bad(e.body_text()))?;
    let f = filter(&ops, &c, q).await?;
    Ok(Json(ops.store.tickets(&f).await.map_err(unavailable)?))
}

pub(super) fn number(num: &str) -> Result<i64, ApiError> {
    num.trim_start_matches('#')
        .parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!("{num:?} is not a ticket number"),
            )
        })
}

pub(super) async fn detail(ops: &Ops, num: i64) -> Result<Detail, ApiError> {
    ops.store
        .ticket(num)
        .await
        .map_err(unavailable)?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("there is no ticket {num}")))
}

async fn one(
    State(ops): State<Arc<Ops>>,
    Path(num): Path<String>,
) -> Result<Json<Detail>, ApiError> {
    Ok(Json(detail(&ops, number(&num)?).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangeBody {
    version: i64,
    status: Option<Status>,
    priority: Option<Priority>,
    /// Absent: unchanged; null: nobody; a user's name.
    #[serde(default, deserialize_with = "present")]
    assignee: Option<Option<String>>,
}

/// Tells an absent field (None) from a null one (Some(None)).
fn present<'de, D>(d: D) -> Result<Option<Option<String>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    Option::<String>::deserialize(d).map(Some)
}

async fn change(
    State(ops): State<Arc<Ops>>,
    Extension(c): Extension<Caller>,
    Path(num): Path<String>,
    body: Result<Json<ChangeBody>, JsonRejection>,
) -> Result<Json<Detail>, ApiError> {
    let num = number(&num)?;
    let Json(b) = body?;
    if b.status.is_none() && b.priority.is_none() && b.assignee.is_none() {
        return Err(bad("nothing to change: give status, priority or assignee"));
    }
    let assignee = match &b.assignee {
        None => None,
        Some(None) => Some(None),
        Some(Some(name)) => Some(Some(user_id(&ops, name).await?)),
    };
    let current = detail(&ops, num).await?;
    if c.role == Role::Agent {
        let me = c.user_id.clone();
        let mine = current.ticket.assignee.as_deref() == Some(c.name.as_str());
        let taking = current.ticket.assignee.is_none() && assignee == Some(me.clone());
        // An agent may give their ticket back (null), never to someone else.
        let to_another = matches!(&assignee, Some(Some(_))) && assignee != Some(me);
        if to_another || !(mine || taking) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "an agent changes only their own tickets and takes unassigned ones; ask a supervisor to reassign",
            ));
        }
    }
    let ch = Change {
        status: b.status,
        priority: b.priority,
        assignee,
    };
    match ops
        .store
        .change_ticket(num, b.version, &ch, &c.actor())
        .await
        .map_err(unavailable)?
    {
        Changed::Done { .. } => Ok(Json(detail(&ops, num).await?)),
        Changed::Missing => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("there is no ticket {num}"),
        )),
        Changed::Stale { version } => Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "ticket {num} was changed by someone else (version {version}, you sent {}): reload it and try again",
                b.version
            ),
        )),
        Changed::Closed => Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("ticket {num} is closed and no longer changes"),
        )),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoteBody {
    text: String,
}

async fn note(
    State(ops): State<Arc<Ops>>,
    Extension(c): Extension<Caller>,
    Path(num): Path<String>,
    body: Result<Json<NoteBody>, JsonRejection>,
) -> Result<(StatusCode, Json<Detail>), ApiError> {
    let num = number(&num)?;
    let Json(b) = body?;
    let text = b.text.trim();
    if text.is_empty() || text.chars().count() > MAX_NOTE {
        return Err(bad(format!("`text` must be 1 to {MAX_NOTE} characters")));
    }
    match ops
        .store
        .add_note(num, &c.actor(), text)
        .await
        .map_err(unavailable)?
    {
        Some(_) => Ok((StatusCode::CREATED, Json(detail(&ops, num).await?))),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("there is no ticket {num}"),
        )),
    }
}

#[derive(Serialize)]
struct Replied {
    /// live, sent or stored (see `channel::chat::follow_up::Reach`).
    reach: crate::channel::chat::follow_up::Reach,
    ticket: Detail,
}

async fn reply(
    State(ops): State<Arc<Ops>>,
    Extension(c): Extension<Caller>,
    Path(num): Path<String>,
    body: Result<Json<NoteBody>, JsonRejection>,
) -> Result<Json<Replied>, ApiError> {
    let num = number(&num)?;
    let Json(b) = body?;
    let text = crate::channel::chat::message_text(&b.text)?;
    let current = detail(&ops, num).await?;
    if c.role == Role::Agent && current.ticket.assignee.as_deref() != Some(c.name.as_str()) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "an agent replies on their own tickets; take it first",
        ));
    }
    let Some(conversation) = &current.conversation else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "this ticket is a call's with nothing said: follow it up by calling back",
        ));
    };
    let reach = ops.text.reply_later(conversation, text).await?;
    ops.store
        .ticket_replied(num, &c.actor(), reach.as_str())
        .await
        .map_err(unavailable)?;
    Ok(Json(Replied {
        reach,
        ticket: detail(&ops, num).await?,
    }))
}
