//! Browser calls over HTTP: the ICE servers to gather with, the offer answered
//! for a chat conversation (the chat's key is the proof, as for its messages),
//! and hanging up.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::{CallError, Caller, WebRtcEdge};
use crate::auth::Permission::Public;
use crate::channel::chat::TextChannels;
use crate::config::webrtc::IceServer;
use crate::dialogue::conversations::IdentityKind;
use crate::http::ApiError;
use crate::http::rate::Spend;
use crate::http::routes::{Table, Verb::*};

/// Longest offer taken: a browser's audio offer with its candidates is a few KiB.
const MAX_OFFER: usize = 16 * 1024;

/// What the routes share.
pub struct Calls {
    pub edge: Arc<WebRtcEdge>,
    pub text: Arc<TextChannels>,
}

pub fn router(table: &mut Table, state: Arc<Calls>) -> Router {
    table
        .routes()
        .add(Get, "/api/chat/call", Public, settings)
        .add_spending(
            Post,
            "/api/chat/conversations/{id}/calls",
            Spend::Conversation,
            call,
        )
        .add(
            Delete,
            "/api/chat/conversations/{id}/calls/{call}",
            Public,
            hang_up,
        )
        .add_spending(
            Post,
            "/api/chat/conversations/{id}/calls/{call}/candidates",
            Spend::Message,
            candidate,
        )
        .build()
        .with_state(state)
}

#[derive(Serialize)]
struct Settings<'a> {
    enabled: bool,
    ice_servers: &'a [IceServer],
}

async fn settings(State(s): State<Arc<Calls>>) -> Response {
    Json(Settings {
        enabled: s.edge.settings.enabled,
        ice_servers: &s.edge.settings.ice_servers,
    })
    .into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Offer {
    /// "offer" (what `RTCSessionDescription` serialises to).
    #[serde(rename = "type")]
    kind: String,
    sdp: String,
}

#[derive(Serialize)]
struct Answer {
    call: String,
    #[serde(rename = "type")]
    kind: &'static str,
    sdp: String,
}

async fn call(
    State(s): State<Arc<Calls>>,
    Path(id): Path<String>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    uri: Uri,
    body: Result<Json<Offer>, JsonRejection>,
) -> Result<Response, ApiError> {
    s.text.keys.check(
        &id,
        crate::channel::chat::proof::given(&headers, uri.query()),
    )?;
    let Json(offer) = body?;
    if offer.kind != "offer" {
        return Err(ApiError::bad_request("`type` must be \"offer\""));
    }
    if offer.sdp.len() > MAX_OFFER {
        return Err(ApiError::bad_request(format!(
            "the offer is over {MAX_OFFER} bytes"
        )));
    }
    // The call comes from the conversation's customer: their web identity.
    let conversations = &s.text.service.conversations;
    let entry = conversations.get(&id)?;
    let customer = crate::lock(&entry).customer.clone();
    let identity = conversations
        .identities_of(&customer)
        .into_iter()
        .find(|i| i.kind == IdentityKind::Web)
        .ok_or_else(|| ApiError::bad_request("only a web chat's customer can call from it"))?;
    let client = crate::http::routes::client_ip(&s.text.trusted_proxies, peer.ip(), &headers);
    let caller = Caller {
        identity,
        client,
        conversation: id,
    };
    let answered = s.edge.call(caller, offer.sdp).await.map_err(api_error)?;
    Ok((
        StatusCode::CREATED,
        Json(Answer {
            call: answered.call_id,
            kind: "answer",
            sdp: answered.sdp,
        }),
    )
        .into_response())
}

fn api_error(e: CallError) -> ApiError {
    match e {
        CallError::Offer(why) => ApiError::bad_request(why),
        CallError::NoSuchCall => ApiError::new(StatusCode::NOT_FOUND, e.to_string()),
        CallError::TooMany(_) => ApiError::new(StatusCode::TOO_MANY_REQUESTS, e.to_string()),
        CallError::Unavailable(why) => {
            let mut e = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, why);
            e.retry_after = Some(5);
            e
        }
    }
}

/// A trickled candidate, as the browser's `RTCIceCandidate.toJSON()` gives it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Candidate {
    candidate: String,
    sdp_mid: Option<String>,
    #[serde(rename = "sdpMLineIndex")]
    sdp_m_line_index: Option<u16>,
    username_fragment: Option<String>,
}

async fn candidate(
    State(s): State<Arc<Calls>>,
    Path((id, call)): Path<(String, String)>,
    headers: HeaderMap,
    uri: Uri,
    body: Result<Json<Candidate>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    s.text.keys.check(
        &id,
        crate::channel::chat::proof::given(&headers, uri.query()),
    )?;
    let Json(c) = body?;
    let init = webrtc::ice_transport::ice_candidate::RTCIceCandidateInit {
        candidate: c.candidate,
        sdp_mid: c.sdp_mid,
        sdp_mline_index: c.sdp_m_line_index,
        username_fragment: c.username_fragment,
    };
    s.edge
        .candidate(&id, &call, init)
        .await
        .map_err(api_error)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn hang_up(
    State(s): State<Arc<Calls>>,
    Path((id, call)): Path<(String, String)>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<StatusCode, ApiError> {
    s.text.keys.check(
        &id,
        crate::channel::chat::proof::given(&headers, uri.query()),
    )?;
    if s.edge.hang_up(&id, &call) {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no such call in this conversation",
        ))
    }
}
