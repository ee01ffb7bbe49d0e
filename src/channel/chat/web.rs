//! Web chat: REST to start a conversation, post messages and read the history; a
//! WebSocket that pushes every turn (the customer's, the bot's, an agent's) as JSON;
//! and the embeddable widget page at `/chat`, which greets as soon as it loads.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::{ApiError, TextChannels, message_text};
use crate::auth::Permission::Public;
use crate::dialogue::conversations::{Channel, Identity, IdentityKind};
use crate::dialogue::engine::{Reply, Turn};
use crate::dialogue::text::Lang;
use crate::http::rate::Spend;
use crate::http::routes::{Routes, Verb::*};

pub fn routes(r: Routes<'_, Arc<TextChannels>>) -> Routes<'_, Arc<TextChannels>> {
    // The customer's side: the key given with the conversation is the proof
    // (`proof`); the id alone reaches staff and integrators.
    r.add(Get, "/chat", Public, widget)
        .add(Get, "/widget.js", Public, embed_script)
        .add_spending(Post, "/api/chat/conversations", Spend::Conversation, start)
        .add(
            Get,
            "/api/chat/conversations/{id}/messages",
            Public,
            history,
        )
        .add_spending(
            Post,
            "/api/chat/conversations/{id}/messages",
            Spend::Message,
            post_message,
        )
        .add(Get, "/api/chat/conversations/{id}/ws", Public, socket)
        .add_spending(
            Post,
            "/api/chat/conversations/{id}/rating",
            Spend::Message,
            rate,
        )
}

async fn widget() -> Html<&'static str> {
    Html(include_str!("widget.html"))
}

/// The one-line embedding: `<script src="https://KEFU/widget.js" async></script>`
/// puts a help button on any page that opens the widget (chat and the call
/// button) in a frame.
async fn embed_script() -> Response {
    (
        [
            (
                axum::http::header::CONTENT_TYPE,
                "text/javascript; charset=utf-8",
            ),
            (axum::http::header::CACHE_CONTROL, "public, max-age=300"),
        ],
        include_str!("widget.js"),
    )
        .into_response()
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct StartRequest {
    /// The browser's visitor id (kept in localStorage); a new one is made if absent.
    pub visitor: Option<String>,
    /// zh or en: the greeting's language.
    pub lang: Option<String>,
}

#[derive(Serialize)]
pub struct Started {
    pub conversation: String,
    /// The customer's proof for the conversation's other routes (`X-Kefu-Key`).
    pub key: String,
    pub visitor: String,
    pub customer: String,
    pub reply: Reply,
}

pub fn lang_of(code: Option<&str>) -> Result<Lang, ApiError> {
    match code {
        None => Ok(Lang::Zh),
        Some(c) => Lang::from_code(c)
            .ok_or_else(|| ApiError::bad_request(format!("unknown language {c:?}; use zh or en"))),
    }
}

async fn start(
    State(s): State<Arc<TextChannels>>,
    body: Result<Json<StartRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(req) = body?;
    let lang = lang_of(req.lang.as_deref())?;
    let visitor = match req.visitor {
        Some(v) if valid_visitor(&v) => v,
        Some(_) => {
            return Err(ApiError::bad_request(
                "`visitor` must be 1 to 64 letters, digits, `-` or `_`",
            ));
        }
        None => hex::encode(rand::random::<[u8; 12]>()),
    };
    let identity = Identity::new(IdentityKind::Web, &visitor);
    let (conversation, customer, reply) = s.start(Channel::Web, &identity, lang).await?;
    Ok((
        StatusCode::CREATED,
        Json(Started {
            key: s.keys.key(&conversation),
            conversation,
            visitor,
            customer,
            reply,
        }),
    )
        .into_response())
}

fn valid_visitor(v: &str) -> bool {
    (1..=64).contains(&v.len())
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostMessage {
    pub text: String,
}

#[derive(Serialize)]
pub struct History {
    pub conversation: String,
    pub turns: Vec<Turn>,
}

async fn history(
    State(s): State<Arc<TextChannels>>,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
    uri: axum::http::Uri,
) -> Result<Json<History>, ApiError> {
    s.keys
        .check(&id, super::proof::given(&headers, uri.query()))?;
    super::read_history(&s, id).await
}

async fn post_message(
    State(s): State<Arc<TextChannels>>,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
    uri: axum::http::Uri,
    body: Result<Json<PostMessage>, JsonRejection>,
) -> Result<Json<Reply>, ApiError> {
    s.keys
        .check(&id, super::proof::given(&headers, uri.query()))?;
    super::post_message(&s, &id, body).await
}

/// The customer's rating of the conversation: 1 to 5 stars.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rating {
    pub score: u8,
}

#[derive(Serialize)]
pub struct Rated {
    pub conversation: String,
    pub score: u8,
}

/// Rates the conversation once (the widget's stars after the bot or an agent
/// answered); a second rating is a 409 and the first one stands.
async fn rate(
    State(s): State<Arc<TextChannels>>,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
    uri: axum::http::Uri,
    body: Result<Json<Rating>, JsonRejection>,
) -> Result<(StatusCode, Json<Rated>), ApiError> {
    s.keys
        .check(&id, super::proof::given(&headers, uri.query()))?;
    let Json(r) = body?;
    s.rate(&id, r.score).await?;
    Ok((
        StatusCode::CREATED,
        Json(Rated {
            conversation: id,
            score: r.score,
        }),
    ))
}

/// Pushes every new turn of the conversation; text frames `{"text": "…"}` from the
/// client are posted as the customer's messages.
async fn socket(
    State(s): State<Arc<TextChannels>>,
    Path(id): Path<String>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: axum::http::HeaderMap,
    uri: axum::http::Uri,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    s.keys
        .check(&id, super::proof::given(&headers, uri.query()))?;
    let entry = s.service.entry(&id).await?;
    let client = crate::http::routes::client_ip(&s.trusted_proxies, peer.ip(), &headers);
    let slot = s.sockets.open(client)?;
    let events = crate::lock(&entry).subscribe();
    Ok(ws
        .max_message_size(super::MAX_BODY)
        .max_frame_size(super::MAX_BODY)
        .on_upgrade(move |socket| async move {
            pump(socket, &s, id, client, events).await;
            s.sockets.close(slot);
        }))
}

/// WebSockets a client address may hold open, and the server in all.
const SOCKETS_PER_CLIENT: usize = 32;
const SOCKETS: usize = 20_000;

/// Chat WebSockets open, by client address.
#[derive(Debug, Default)]
pub struct Sockets(std::sync::Mutex<(usize, HashMap<std::net::IpAddr, usize>)>);

impl Sockets {
    /// Counts one more socket for `client`, or refuses it.
    fn open(&self, client: std::net::IpAddr) -> Result<std::net::IpAddr, ApiError> {
        let mut guard = crate::lock(&self.0);
        let (total, by_client) = &mut *guard;
        let mine = by_client.entry(client).or_default();
        if *mine >= SOCKETS_PER_CLIENT {
            return Err(ApiError::too_many(
                "too many chat connections from this address",
                std::time::Duration::from_secs(10),
            ));
        }
        if *total >= SOCKETS {
            return Err(ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "too many chat connections; use POST /api/chat/conversations/{id}/messages",
            ));
        }
        *mine += 1;
        *total += 1;
        Ok(client)
    }

    fn close(&self, client: std::net::IpAddr) {
        let mut guard = crate::lock(&self.0);
        let (total, by_client) = &mut *guard;
        *total = total.saturating_sub(1);
        if let Some(n) = by_client.get_mut(&client) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                by_client.remove(&client);
            }
        }
    }
}

type Events = tokio::sync::broadcast::Receiver<crate::dialogue::conversations::Event>;
type Pushed =
    Result<crate::dialogue::conversations::Event, tokio::sync::broadcast::error::RecvError>;

/// Sends one pushed turn to the client; false when the socket or the conversation
/// is gone. A client too slow for the push buffer misses turns (it can re-read the
/// history) and is told so in the log.
async fn forward(socket: &mut WebSocket, event: Pushed, id: &str) -> bool {
    use tokio::sync::broadcast::error::RecvError;
    match event {
        Ok(e) => match serde_json::to_string(&e) {
            Ok(json) => socket.send(Message::Text(json.into())).await.is_ok(),
            Err(_) => true,
        },
        Err(RecvError::Lagged(n)) => {
            tracing::warn!(conversation = %crate::log_id(id), missed = n, "WebSocket client too slow; it can re-read the history");
            true
        }
        Err(RecvError::Closed) => false,
    }
}

/// Pushes the conversation's turns to a client that only listens (the agent
/// desk); whatever the client sends is ignored.
pub async fn push_turns(mut socket: WebSocket, id: String, mut events: Events) {
    loop {
        tokio::select! {
            event = events.recv() => if !forward(&mut socket, event, &id).await {
                return;
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

async fn pump(
    mut socket: WebSocket,
    s: &TextChannels,
    id: String,
    client: std::net::IpAddr,
    mut events: Events,
) {
    loop {
        tokio::select! {
            event = events.recv() => if !forward(&mut socket, event, &id).await {
                return;
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Text(t))) => {
                    let text = serde_json::from_str::<PostMessage>(&t)
                        .map_err(|e| format!("expected {{\"text\": \"…\"}}: {e}"))
                        .and_then(|p| message_text(&p.text).map(str::to_string).map_err(|e| e.reason));
                    // Messages over a socket spend the same budget as posted ones.
                    let text = text.and_then(|t| {
                        s.budgets.spend(Spend::Message, client).map(|()| t).map_err(|e| e.reason)
                    });
                    let reply = match text {
                        Ok(text) => s.message(&id, &text).await.map_err(|e| e.reason),
                        Err(e) => Err(e),
                    };
                    if let Err(reason) = reply {
                        let body = serde_json::json!({ "error": reason }).to_string();
                        if socket.send(Message::Text(body.into())).await.is_err() {
                            return;
                        }
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}
