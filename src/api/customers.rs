//! The customer on one screen, for the desk team:
//!
//! - `GET /api/customers/{id}?before=MS`: identities (masked), conversations and
//!   calls on every channel newest first (50 a page), topics, tickets.
//! - `GET /api/customers/{id}/interactions/{iid}`: one conversation's turns, and
//!   for a call its recordings' list (to those who may hear recordings:
//!   supervisors and admins, through `/api/recordings/{id}`).
//!
//! Each read is audited (`customer.view`), as every read of one person's data is.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};

use super::admin::unavailable;
use super::{ApiError, Ops};
use crate::auth::Permission::{CallRecords, Tickets};
use crate::http::routes::{Caller, Routes, Verb::*};
use crate::store::StoredTurn;
use crate::store::customers::CustomerView;
use crate::store::recordings::RecordingInfo;

pub fn routes(r: Routes<'_, Arc<Ops>>) -> Routes<'_, Arc<Ops>> {
    r.add(Get, "/api/customers/{id}", Tickets, customer).add(
        Get,
        "/api/customers/{id}/interactions/{iid}",
        Tickets,
        interaction,
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Page {
    before: Option<i64>,
}

fn unknown(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("there is no customer {id:?}"),
    )
}

async fn audit(ops: &Ops, c: &Caller, customer: &str, detail: &str) -> Result<(), ApiError> {
    ops.store
        .audit(&c.actor(), "customer.view", customer, detail)
        .await
        .map_err(unavailable)
}

async fn customer(
    State(ops): State<Arc<Ops>>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    q: Result<Query<Page>, QueryRejection>,
) -> Result<Json<CustomerView>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let view = ops
        .store
        .customer_view(&id, q.before)
        .await
        .map_err(unavailable)?
        .ok_or_else(|| unknown(&id))?;
    audit(&ops, &c, &id, "panel").await?;
    Ok(Json(view))
}

#[derive(Serialize)]
struct InteractionView {
    id: String,
    turns: Vec<StoredTurn>,
    /// Listed only to those who may hear recordings.
    recordings: Vec<RecordingInfo>,
}

async fn interaction(
    State(ops): State<Arc<Ops>>,
    Extension(c): Extension<Caller>,
    Path((id, iid)): Path<(String, String)>,
) -> Result<Json<InteractionView>, ApiError> {
    if !ops
        .store
        .interaction_of(&id, &iid)
        .await
        .map_err(unavailable)?
    {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("customer {id:?} has no conversation or call {iid:?}"),
        ));
    }
    let turns = ops.store.turns(&iid).await.map_err(unavailable)?;
    let recordings = if c.role.allows(CallRecords) {
        let call = ops
            .store
            .call_of_conversation(&iid)
            .await
            .map_err(unavailable)?
            .unwrap_or_else(|| iid.clone());
        ops.store.recordings_of(&call).await.map_err(unavailable)?
    } else {
        Vec::new()
    };
    audit(&ops, &c, &id, &format!("interaction {iid}")).await?;
    Ok(Json(InteractionView {
        id: iid,
        turns,
        recordings,
    }))
}
