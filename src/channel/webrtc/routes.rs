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

/// A browser's offer, as `RTCSessionDescription` serialises it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Offer {
    /// "offer".
    #[serde(rename = "type")]
    kind: String,
    sdp: String,
}

impl Offer {
    /// The offer's SDP, if it is an offer of a sane size.
    pub fn sdp(self) -> Result<String, ApiError> {
        if self.kind != "offer" {
            return Err(ApiError::bad_request("`type` must be \"offer\""));
        }
        if self.sdp.len() > MAX_OFFER {
            return Err(ApiError::bad_request(format!(
                "the offer is over {MAX_OFFER} bytes"
            )));
        }
        Ok(self.sdp)
    }
}

/// kefu's answer, with the call's id for candidates and hanging up.
#[derive(Serialize)]
pub struct Answer {
    call: String,
    #[serde(rename = "type")]
    kind: &'static str,
    sdp: String,
}

impl From<super::Answered> for Answer {
    fn from(a: super::Answered) -> Self {
        Self {
            call: a.call_id,
            kind: "answer",
            sdp: a.sdp,
        }
    }
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
    let sdp = offer.sdp()?;
    // The call comes from the conversation's customer: their web identity.
    let conversations = &s.text.service.conversations;
    let entry = s.text.service.entry(&id).await?;
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
    let answered = s.edge.call(caller, sdp).await?;
    Ok((StatusCode::CREATED, Json(Answer::from(answered))).into_response())
}

impl From<CallError> for ApiError {
    fn from(e: CallError) -> Self {
        match e {
            CallError::Offer(why) => ApiError::bad_request(why),
            CallError::NoSuchCall | CallError::NotRinging => {
                ApiError::new(StatusCode::NOT_FOUND, e.to_string())
            }
            CallError::TooMany(_) => ApiError::new(StatusCode::TOO_MANY_REQUESTS, e.to_string()),
            CallError::Unavailable(why) => {
                let mut e = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, why);
                e.retry_after = Some(5);
                e
            }
        }
    }
}

/// A trickled candidate, as the browser's `RTCIceCandidate.toJSON()` gives it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Candidate {
    candidate: String,
    sdp_mid: Option<String>,
    #[serde(rename = "sdpMLineIndex")]
    sdp_m_line_index: Option<u16>,
    username_fragment: Option<String>,
}

impl From<Candidate> for webrtc::ice_transport::ice_candidate::RTCIceCandidateInit {
    fn from(c: Candidate) -> Self {
        Self {
            candidate: c.candidate,
            sdp_mid: c.sdp_mid,
            sdp_mline_index: c.sdp_m_line_index,
            username_fragment: c.username_fragment,
        }
    }
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
    s.edge.candidate(&id, &call, c.into()).await?;
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
