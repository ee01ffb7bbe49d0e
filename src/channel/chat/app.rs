//! The app/integrator JSON API under `/api/v1` (API tokens with the integrator role,
//! `kefu tokens create`), described by the OpenAPI document at `/api/openapi.json`.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};

use super::web::{History, PostMessage, lang_of};
use super::{ApiError, TextChannels};
use crate::auth::Permission::{Channels, Public};
use crate::dialogue::conversations::{Channel, Identity, IdentityKind};
use crate::dialogue::engine::Reply;
use crate::http::routes::{Routes, Verb::*};

pub fn routes(r: Routes<'_, Arc<TextChannels>>) -> Routes<'_, Arc<TextChannels>> {
    r.add(Get, "/api/openapi.json", Public, openapi)
        .add(Post, "/api/v1/conversations", Channels, start)
        .add(
            Get,
            "/api/v1/conversations/{id}/messages",
            Channels,
            history,
        )
        .add(
            Post,
            "/api/v1/conversations/{id}/messages",
            Channels,
            message,
        )
        .add(Post, "/api/v1/conversations/{id}/rating", Channels, rate)
        .add(Post, "/api/v1/customers/link", Channels, link)
        .add(Get, "/api/v1/customers/{id}", Channels, customer)
}

async fn openapi() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("openapi.json"),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StartRequest {
    /// The app's id for its user.
    user: String,
    lang: Option<String>,
}

#[derive(Serialize)]
struct Started {
    conversation: String,
    customer: String,
    reply: Reply,
}

async fn start(
    State(s): State<Arc<TextChannels>>,
    body: Result<Json<StartRequest>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Json(req) = body?;
    if req.user.trim().is_empty() || req.user.len() > 128 {
        return Err(ApiError::bad_request("`user` must be 1 to 128 characters"));
    }
    let lang = lang_of(req.lang.as_deref())?;
    let identity = Identity::new(IdentityKind::App, req.user.trim());
    let (conversation, customer, reply) = s.start(Channel::App, &identity, lang).await?;
    Ok((
        StatusCode::CREATED,
        Json(Started {
            conversation,
            customer,
            reply,
        }),
    ))
}

async fn history(
    State(s): State<Arc<TextChannels>>,
    Path(id): Path<String>,
) -> Result<Json<History>, ApiError> {
    super::read_history(&s, id).await
}

async fn message(
    State(s): State<Arc<TextChannels>>,
    Path(id): Path<String>,
    body: Result<Json<PostMessage>, JsonRejection>,
) -> Result<Json<Reply>, ApiError> {
    super::post_message(&s, &id, body).await
}

/// The app's user rates their conversation (1 to 5), once.
async fn rate(
    State(s): State<Arc<TextChannels>>,
    Path(id): Path<String>,
    body: Result<Json<super::web::Rating>, JsonRejection>,
) -> Result<(StatusCode, Json<super::web::Rated>), ApiError> {
    let Json(r) = body?;
    s.rate(&id, r.score).await?;
    Ok((
        StatusCode::CREATED,
        Json(super::web::Rated {
            conversation: id,
            score: r.score,
        }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LinkRequest {
    identities: Vec<Identity>,
}

#[derive(Serialize)]
struct CustomerView {
    customer: String,
    identities: Vec<Identity>,
}

/// Makes several identities one customer (the app's user and the web visitor it
/// signed in, say), so a conversation on one channel sees the others' topics.
///
/// Only identities the integrator itself vouches for (`app`, `web`) are linked
/// here. A phone number is the identity of every call and text from it, so linking
/// one without proof would hand its callers' topics to whoever asked: numbers are
/// linked by the code the number receives (`/api/v1/conversations/{id}/phone`,
/// then `/phone/confirm`), and WeChat ids only by WeChat's signed callbacks.
async fn link(
    State(s): State<Arc<TextChannels>>,
    body: Result<Json<LinkRequest>, JsonRejection>,
) -> Result<Json<CustomerView>, ApiError> {
    let Json(req) = body?;
    if !(2..=10).contains(&req.identities.len()) {
        return Err(ApiError::bad_request(
            "`identities` must list 2 to 10 identities",
        ));
    }
    if let Some(bad) = req
        .identities
        .iter()
        .find(|i| i.value.trim().is_empty() || i.value.len() > 128)
    {
        return Err(ApiError::bad_request(format!(
            "identity value {:?} must be 1 to 128 characters",
            bad.value
        )));
    }
    if let Some(bad) = req
        .identities
        .iter()
        .find(|i| !matches!(i.kind, IdentityKind::App | IdentityKind::Web))
    {
        let kind = serde_json::to_value(bad.kind).unwrap_or_default();
        let how = if bad.kind == IdentityKind::Wechat {
            "WeChat ids are linked only by WeChat's own signed messages"
        } else {
            "a number is linked only by proof: POST /api/v1/conversations/{id}/phone, \
             then /phone/confirm with the code texted to it"
        };
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "cannot link a {} identity here: {how}",
                kind.as_str().unwrap_or_default()
            ),
        ));
    }
    let first = &req.identities[0];
    let customer = s.customer(first).await?;
    for other in &req.identities[1..] {
        s.link(&customer, other).await?;
    }
    let identities = s.service.conversations.identities_of(&customer);
    Ok(Json(CustomerView {
        customer,
        identities,
    }))
}

async fn customer(
    State(s): State<Arc<TextChannels>>,
    Path(id): Path<String>,
) -> Result<Json<CustomerView>, ApiError> {
    let identities = s.service.conversations.identities_of(&id);
    if identities.is_empty() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no customer {id:?}"),
        ));
    }
    Ok(Json(CustomerView {
        customer: id,
        identities,
    }))
}
