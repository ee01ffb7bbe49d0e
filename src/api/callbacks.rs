//! Calling a customer back from a ticket (`call::callback`):
//!
//! - `POST /api/tickets/{num}/call`: kefu rings the signed-in agent's phone (or
//!   the desk's softphone), then dials the customer through the trunk and joins
//!   them: 202 with the stage. The number is the one the caller asked to be
//!   called back on, else the customer's phone number.
//! - `GET /api/tickets/{num}/call`: the stage of the call in progress (404 once
//!   it ended: the ticket then shows how, in its callback and history).
//! - `DELETE /api/tickets/{num}/call`: hangs it up.
//! - `GET /api/agent/callback`: the callback the signed-in agent is on (null
//!   when none); the desk answers it on its softphone while it rings there.
//!
//! An agent calls back on their own tickets and takes an unassigned one by
//! calling; supervisors and admins who are agents too call on any ticket.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Serialize;

use super::admin::unavailable;
use super::agent::me;
use super::{ApiError, Ops};
use crate::auth::Permission::{OwnWork, Tickets};
use crate::auth::Role;
use crate::call::callback::{Order, Progress, Refused};
use crate::http::routes::{Caller, Routes, Verb::*};
use crate::store::tickets::{Change, Changed, Status};

pub fn routes(r: Routes<'_, Arc<Ops>>) -> Routes<'_, Arc<Ops>> {
    r.add(Get, "/api/agent/callback", OwnWork, mine)
        .add(Post, "/api/tickets/{num}/call", Tickets, call)
        .add(Get, "/api/tickets/{num}/call", Tickets, progress)
        .add(Delete, "/api/tickets/{num}/call", Tickets, hang_up)
}

/// The callback the signed-in agent is on, for the desk: `ringing` when it
/// rings on the desk's softphone now (the desk answers it: the agent asked for
/// the call).
#[derive(Serialize)]
struct Mine {
    ticket: i64,
    item: String,
    ringing: bool,
    #[serde(flatten)]
    progress: Progress,
}

async fn mine(
    State(ops): State<Arc<Ops>>,
    Extension(c): Extension<Caller>,
) -> Result<Json<Option<Mine>>, ApiError> {
    let agent = me(&ops, &c).await?;
    Ok(Json(ops.callbacks.of_agent(&agent.id).map(
        |(ticket, item, progress)| Mine {
            ticket,
            ringing: ops.webrtc.desk_rings(&agent.id).contains(&item),
            item,
            progress,
        },
    )))
}

fn none_now(num: i64) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("ticket {num} has no call in progress"),
    )
}

fn refused(r: Refused) -> ApiError {
    let status = match r {
        Refused::Starting | Refused::NoTrunk => StatusCode::SERVICE_UNAVAILABLE,
        Refused::TicketBusy | Refused::AgentBusy | Refused::NoPhone | Refused::BadNumber => {
            StatusCode::CONFLICT
        }
    };
    ApiError::new(status, r.to_string())
}

async fn call(
    State(ops): State<Arc<Ops>>,
    Extension(c): Extension<Caller>,
    Path(num): Path<String>,
) -> Result<(StatusCode, Json<Progress>), ApiError> {
    let num = super::tickets::number(&num)?;
    let ticket = super::tickets::detail(&ops, num).await?.ticket;
    let agent = me(&ops, &c).await?;
    let mine = ticket.assignee.as_deref() == Some(c.name.as_str());
    if ticket.status == Status::Closed {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("ticket {num} is closed"),
        ));
    }
    if c.role == Role::Agent && !mine && ticket.assignee.is_some() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "an agent calls back on their own tickets and unassigned ones; ask a supervisor to reassign",
        ));
    }
    ops.callbacks.can_place().map_err(refused)?;
    let Some(callee) = ops.store.callee(num).await.map_err(unavailable)? else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "there is no number to call: the caller left none and the customer has no phone number",
        ));
    };
    let order = Order {
        ticket: num,
        agent: agent.id.clone(),
        actor: c.actor(),
        callee,
        queue: ticket.queue.clone().unwrap_or_default(),
    };
    let stage = ops.callbacks.place(order).await.map_err(refused)?;
    // Calling an unassigned ticket back takes it.
    if ticket.assignee.is_none()
        && let Some(me) = &c.user_id
    {
        let take = Change {
            assignee: Some(Some(me.clone())),
            ..Change::default()
        };
        let taken = ops
            .store
            .change_ticket(num, ticket.version, &take, &c.actor())
            .await
            .map_err(unavailable)?;
        if !matches!(taken, Changed::Done { .. }) {
            tracing::info!(
                ticket = num,
                "a ticket being called back changed meanwhile; left as it is"
            );
        }
    }
    Ok((StatusCode::ACCEPTED, Json(Progress { stage, seconds: 0 })))
}

async fn progress(
    State(ops): State<Arc<Ops>>,
    Path(num): Path<String>,
) -> Result<Json<Progress>, ApiError> {
    let num = super::tickets::number(&num)?;
    ops.callbacks
        .progress(num)
        .map(Json)
        .ok_or_else(|| none_now(num))
}

async fn hang_up(
    State(ops): State<Arc<Ops>>,
    Extension(c): Extension<Caller>,
    Path(num): Path<String>,
) -> Result<StatusCode, ApiError> {
    let num = super::tickets::number(&num)?;
    let calling = ops.callbacks.agent_of(num).ok_or_else(|| none_now(num))?;
    if c.role == Role::Agent && me(&ops, &c).await?.id != calling {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "an agent hangs up only their own callbacks",
        ));
    }
    if ops.callbacks.hang_up(num) {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(none_now(num))
    }
}
