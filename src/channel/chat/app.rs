//! The app/integrator JSON API under `/api/v1`, with bearer tokens (`api_tokens`),
//! described by the OpenAPI document at `/api/openapi.json`.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::web::{History, PostMessage, lang_of};
use super::{ApiError, TextChannels};
use crate::dialogue::conversations::{Channel, Identity, IdentityKind};
use crate::dialogue::engine::Reply;

pub fn routes() -> Router<Arc<TextChannels>> {
    Router::new()
        .route("/api/openapi.json", get(openapi))
        .route("/api/v1/conversations", post(start))
        .route(
            "/api/v1/conversations/{id}/messages",
            get(history).post(message),
        )
        .route("/api/v1/customers/link", post(link))
        .route("/api/v1/customers/{id}", get(customer))
}

async fn openapi() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("openapi.json"),
    )
}

/// A request that carried one of the configured bearer tokens.
pub struct Authorized;

impl FromRequestParts<Arc<TextChannels>> for Authorized {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        s: &Arc<TextChannels>,
    ) -> Result<Self, ApiError> {
        let unauthorized = |reason: &str| ApiError::new(StatusCode::UNAUTHORIZED, reason);
        if s.api_tokens.is_empty() {
            return Err(unauthorized(
                "the API is off: no `api_tokens` are configured",
            ));
        }
        let given = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| unauthorized("missing `Authorization: Bearer <token>` header"))?;
        let known = s.api_tokens.iter().any(|t| {
            t.len() == given.len()
                && t.bytes()
                    .zip(given.bytes())
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                    == 0
        });
        if known {
            Ok(Authorized)
        } else {
            Err(unauthorized("unknown API token"))
        }
    }
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
    _: Authorized,
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
    _: Authorized,
    State(s): State<Arc<TextChannels>>,
    Path(id): Path<String>,
) -> Result<Json<History>, ApiError> {
    super::read_history(&s, id).await
}

async fn message(
    _: Authorized,
    State(s): State<Arc<TextChannels>>,
    Path(id): Path<String>,
    body: Result<Json<PostMessage>, JsonRejection>,
) -> Result<Json<Reply>, ApiError> {
    super::post_message(&s, &id, body).await
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

/// Makes several identities one customer (for example after the app verified the
/// user's phone number), so a conversation on one channel sees the others' topics.
async fn link(
    _: Authorized,
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
    let first = &req.identities[0];
    let customer = s.customer(first).await?;
    for other in &req.identities[1..] {
        s.link(&customer, other).await?;
    }
    let identities = s.conversations.identities_of(&customer);
    Ok(Json(CustomerView {
        customer,
        identities,
    }))
}

async fn customer(
    _: Authorized,
    State(s): State<Arc<TextChannels>>,
    Path(id): Path<String>,
) -> Result<Json<CustomerView>, ApiError> {
    let identities = s.conversations.identities_of(&id);
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
