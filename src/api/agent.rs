//! The agent's side of hand-overs (the desk uses these): set yourself available or
//! away, see what you are offered, accept or decline, answer the customer, finish.
//! Supervisors see the queues. A signed-in user works as the agent linked to them
//! (`kefu agents add --user`).

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};

use super::admin::unavailable;
use super::{ApiError, Ops};
use crate::agents::queue::{AgentState, AgentView, Answer, WaitingView};
use crate::auth::Permission::{OwnWork, Public, Queues};
use crate::http::routes::{Caller, Routes, Verb::*};
use crate::store::agents::Agent;
use crate::store::tickets::Status;

pub fn routes(r: Routes<'_, Arc<Ops>>) -> Routes<'_, Arc<Ops>> {
    r.add(Get, "/desk", Public, desk)
        .add(Post, "/api/agent/state", OwnWork, set_state)
        .add(Get, "/api/agent/offers", OwnWork, offers)
        .add(Get, "/api/agent/calls", OwnWork, calls)
        .add(Post, "/api/agent/offers/{id}/accept", OwnWork, accept)
        .add(Post, "/api/agent/offers/{id}/decline", OwnWork, decline)
        .add(
            Post,
            "/api/agent/conversations/{id}/messages",
            OwnWork,
            reply,
        )
        .add(Post, "/api/agent/conversations/{id}/done", OwnWork, done)
        .add(Get, "/api/agent/conversations/{id}/ws", OwnWork, follow)
        .add(Get, "/api/queues", Queues, queues)
}

/// The desk page: sign-in, state, offers, the conversation, tickets. It holds no
/// data itself; everything comes from the routes above with the agent's session.
async fn desk() -> axum::response::Html<&'static str> {
    axum::response::Html(include_str!("desk.html"))
}

/// The agent the caller works as; made known to the queues (with their current
/// queues and skills).
pub(super) async fn me(ops: &Ops, c: &Caller) -> Result<Agent, ApiError> {
    let not_agent = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("{} is not an agent (kefu agents add --user)", c.name),
        )
    };
    let user = c.user_id.as_deref().ok_or_else(not_agent)?;
    let agent = ops
        .store
        .agent_of_user(user)
        .await
        .map_err(unavailable)?
        .ok_or_else(not_agent)?;
    ops.center
        .add_agent(&agent.id, &agent.queues, &agent.skills);
    // In a cluster, chats wait for an agent where their desk is.
    ops.center.desk_seen(&agent.id);
    Ok(agent)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetState {
    available: bool,
}

#[derive(Serialize)]
struct StateView {
    agent: String,
    name: String,
    state: Option<AgentState>,
}

async fn set_state(
    State(ops): State<Arc<Ops>>,
    Extension(c): Extension<Caller>,
    body: Result<Json<SetState>, JsonRejection>,
) -> Result<Json<StateView>, ApiError> {
    let Json(req) = body?;
    let agent = me(&ops, &c).await?;
    ops.center.set_available(&agent.id, req.available);
    Ok(Json(StateView {
        state: ops.center.state(&agent.id),
        agent: agent.id,
        name: agent.name,
    }))
}

/// An offer as the desk shows it: ringing when the call rings on the desk's
/// softphone (answer it there).
#[derive(Serialize)]
struct OfferView {
    #[serde(flatten)]
    offer: crate::agents::center::Offer,
    ringing: bool,
}

/// What the agent is offered. Polling this also keeps the desk's softphone
/// taking calls.
async fn offers(
    State(ops): State<Arc<Ops>>,
    Extension(c): Extension<Caller>,
) -> Result<Json<Vec<OfferView>>, ApiError> {
    let agent = me(&ops, &c).await?;
    let ringing = ops.webrtc.desk_rings(&agent.id);
    Ok(Json(
        ops.center
            .offers(&agent.id)
            .into_iter()
            .map(|offer| OfferView {
                ringing: ringing.contains(&offer.item),
                offer,
            })
            .collect(),
    ))
}

/// The calls the agent is on now, with the conversation their live transcript
/// is pushed to (`/api/agent/conversations/ID/ws`).
async fn calls(
    State(ops): State<Arc<Ops>>,
    Extension(c): Extension<Caller>,
) -> Result<Json<Vec<crate::agents::center::LiveCall>>, ApiError> {
    let agent = me(&ops, &c).await?;
    Ok(Json(ops.center.calls_of(&agent.id)))
}

#[derive(Serialize)]
struct Taken {
    conversation: String,
    history: Vec<crate::dialogue::engine::Turn>,
    /// The conversation's ticket (its page shows the customer behind it).
    ticket: Option<i64>,
}

async fn accept(
    State(ops): State<Arc<Ops>>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<Taken>, ApiError> {
    let agent = me(&ops, &c).await?;
    if !ops.center.answer(&id, &agent.id, Answer::Accept) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "this conversation is not offered to you (taken, withdrawn or expired)",
        ));
    }
    if let Some(user) = &c.user_id
        && let Err(e) = ops.store.assign_tickets(&id, user, &c.actor()).await
    {
        tracing::error!(error = format!("{e:#}"), "cannot assign the ticket");
    }
    let history = match ops.text.service.entry(&id).await {
        Ok(entry) => crate::lock(&entry).conversation.history.clone(),
        Err(_) => Vec::new(),
    };
    let ticket = ops.store.ticket_of_item(&id).await.unwrap_or_else(|e| {
        tracing::warn!(
            error = format!("{e:#}"),
            "cannot read the conversation's ticket"
        );
        None
    });
    Ok(Json(Taken {
        conversation: id,
        history,
        ticket,
    }))
}

async fn decline(
    State(ops): State<Arc<Ops>>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let agent = me(&ops, &c).await?;
    ops.center.answer(&id, &agent.id, Answer::Decline);
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentMessage {
    text: String,
}

async fn reply(
    State(ops): State<Arc<Ops>>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    body: Result<Json<AgentMessage>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let Json(req) = body?;
    let text = crate::channel::chat::message_text(&req.text)?;
    let agent = me(&ops, &c).await?;
    if !ops.center.holds(&id, &agent.id) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "you are not handling this conversation",
        ));
    }
    ops.text.agent_message(&id, text).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Pushes every turn of a conversation the agent handles (a chat they accepted,
/// or the call they are on) as it happens. Read-only: the agent answers through
/// `/api/agent/conversations/{id}/messages`.
async fn follow(
    State(ops): State<Arc<Ops>>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    ws: axum::extract::ws::WebSocketUpgrade,
) -> Result<axum::response::Response, ApiError> {
    let agent = me(&ops, &c).await?;
    if !ops.center.follows(&id, &agent.id) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "you are not handling this conversation",
        ));
    }
    let entry = ops.text.service.entry(&id).await?;
    let events = crate::lock(&entry).subscribe();
    Ok(ws
        .max_message_size(4096)
        .on_upgrade(move |socket| crate::channel::chat::web::push_turns(socket, id, events)))
}

/// How the agent closes a conversation: its ticket's outcome and their notes.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct WrapUp {
    /// "solved" (default) or "pending" (the ticket stays open for follow-up).
    disposition: Option<String>,
    notes: Option<String>,
}

async fn done(
    State(ops): State<Arc<Ops>>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    body: Result<Json<WrapUp>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let wrap = match body {
        Ok(Json(w)) => w,
        Err(JsonRejection::MissingJsonContentType(_)) => WrapUp::default(),
        Err(e) => return Err(e.into()),
    };
    let status = match wrap.disposition.as_deref().unwrap_or("solved") {
        "solved" => Status::Solved,
        "pending" => Status::Pending,
        _ => {
            return Err(ApiError::bad_request(
                "`disposition` must be \"solved\" or \"pending\"",
            ));
        }
    };
    let notes = wrap.notes.unwrap_or_default();
    if notes.chars().count() > 4000 {
        return Err(ApiError::bad_request(
            "`notes` may be at most 4000 characters",
        ));
    }
    let agent = me(&ops, &c).await?;
    let holds = ops.center.holds(&id, &agent.id);
    // A call that has ended (the center let the agent go when it did) is wrapped
    // up through its ticket, which is the agent's.
    let own_ticket = match (&c.user_id, holds) {
        (Some(user), false) => ops
            .store
            .has_open_ticket(&id, user)
            .await
            .map_err(unavailable)?,
        _ => false,
    };
    if !holds && !own_ticket {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "you are not handling this conversation",
        ));
    }
    ops.store
        .wrap_up_tickets(&id, status, notes.trim(), &c.actor())
        .await
        .map_err(unavailable)?;
    if holds {
        ops.center.finish(&id, &agent.id);
        // A WeChat or SMS customer is asked to rate the conversation by reply.
        if let Err(e) = ops.text.ask_rating(&id).await {
            tracing::warn!(error = %e.reason, "the rating question was not sent");
        }
    }
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize)]
struct QueuesView {
    agents: Vec<AgentView>,
    waiting: Vec<WaitingView>,
}

/// The queues: this node's agents and waiting items and, in a cluster, what
/// waits on the other nodes (each item says its node).
async fn queues(State(ops): State<Arc<Ops>>) -> Result<Json<QueuesView>, ApiError> {
    let (agents, mut waiting) = ops.center.snapshot();
    if let Some(node) = &ops.node {
        for w in &mut waiting {
            w.node = Some(node.clone());
        }
        let now = crate::store::cluster::now_ms();
        let others = ops
            .store
            .waiting_elsewhere(node)
            .await
            .map_err(unavailable)?;
        waiting.extend(others.into_iter().map(|r| WaitingView {
            waited_secs: u64::try_from(now - r.enqueued_ms).unwrap_or(0) / 1000,
            item: r.item,
            queue: r.queue,
            offered_to: Vec::new(),
            node: Some(r.node),
        }));
    }
    Ok(Json(QueuesView { agents, waiting }))
}
