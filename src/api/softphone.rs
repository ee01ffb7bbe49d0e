//! The desk's softphone (`channel::webrtc::desk`): an agent takes calls in the
//! browser. The desk says so (and keeps saying so while it polls its offers),
//! answers a ringing call with its WebRTC offer, trickles its candidates and
//! hangs up; everything is the signed-in agent's own.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};

use super::agent::me;
use super::{ApiError, Ops};
use crate::auth::Permission::OwnWork;
use crate::channel::webrtc::desk::owner;
use crate::channel::webrtc::routes::{Answer, Candidate, Offer};
use crate::http::routes::{Caller, Routes, Verb::*};

pub fn routes(r: Routes<'_, Arc<Ops>>) -> Routes<'_, Arc<Ops>> {
    r.add(Post, "/api/agent/softphone", OwnWork, switch)
        .add(Post, "/api/agent/softphone/calls", OwnWork, pick_up)
        .add(
            Post,
            "/api/agent/softphone/calls/{call}/candidates",
            OwnWork,
            candidate,
        )
        .add(
            Delete,
            "/api/agent/softphone/calls/{call}",
            OwnWork,
            hang_up,
        )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Switch {
    on: bool,
}

#[derive(Serialize)]
struct Switched {
    on: bool,
}

/// Takes calls in this browser (`on`), or stops: calls go to the agent's phone.
async fn switch(
    State(ops): State<Arc<Ops>>,
    Extension(c): Extension<Caller>,
    body: Result<Json<Switch>, JsonRejection>,
) -> Result<Json<Switched>, ApiError> {
    let Json(req) = body?;
    let agent = me(&ops, &c).await?;
    ops.webrtc.set_softphone(&agent.id, req.on)?;
    Ok(Json(Switched { on: req.on }))
}

/// The browser's offer for a call ringing on the desk (`item`, the offer's id).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PickUp {
    item: String,
    #[serde(flatten)]
    offer: Offer,
}

async fn pick_up(
    State(ops): State<Arc<Ops>>,
    Extension(c): Extension<Caller>,
    body: Result<Json<PickUp>, JsonRejection>,
) -> Result<(StatusCode, Json<Answer>), ApiError> {
    let Json(req) = body?;
    let sdp = req.offer.sdp()?;
    let agent = me(&ops, &c).await?;
    let answered = ops.webrtc.pick_up(&agent.id, &req.item, sdp).await?;
    Ok((StatusCode::CREATED, Json(Answer::from(answered))))
}

async fn candidate(
    State(ops): State<Arc<Ops>>,
    Extension(c): Extension<Caller>,
    Path(call): Path<String>,
    body: Result<Json<Candidate>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let Json(candidate) = body?;
    let agent = me(&ops, &c).await?;
    ops.webrtc
        .candidate(&owner(&agent.id), &call, candidate.into())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn hang_up(
    State(ops): State<Arc<Ops>>,
    Extension(c): Extension<Caller>,
    Path(call): Path<String>,
) -> Result<StatusCode, ApiError> {
    let agent = me(&ops, &c).await?;
    if ops.webrtc.hang_up(&owner(&agent.id), &call) {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no such call on your softphone",
        ))
    }
}
