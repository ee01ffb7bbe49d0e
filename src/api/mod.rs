//! The HTTP port: liveness and readiness, the text channels (`channel::chat`: web
//! chat, WeChat, SMS, the app API), signing in (`session`), the knowledge base
//! (`kb`) and the operators' routes (`admin`). Every route is added through
//! `routes::Routes`, which makes it declare the permission it needs.

pub mod admin;
pub mod agent;
pub mod callbacks;
pub mod customers;
pub mod dashboard;
pub mod kb;
pub mod session;
pub mod softphone;
pub mod speech;
pub mod tickets;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;

pub use crate::http::ApiError;
use crate::http::MAX_BODY;
use crate::http::routes::{Access, RouteSpec, Table, Verb::*};

use crate::auth::Permission::Public;
use crate::channel::sip::CallGate;
use crate::dialogue::conversations::Conversations;
use crate::dialogue::reload::LiveKb;
use crate::store::Store;

/// What readiness depends on.
#[derive(Debug, Default)]
pub struct Health {
    /// SIP transports bound and dialplans loaded.
    pub sip_ready: AtomicBool,
    pub gate: Arc<CallGate>,
}

/// What the operators' and knowledge-base routes share.
pub struct Ops {
    pub store: Store,
    pub access: Arc<Access>,
    pub kb: LiveKb,
    pub kb_dir: PathBuf,
    pub conversations: Arc<Conversations>,
    /// The text channels (an agent's reply goes out through them).
    pub text: Arc<crate::channel::chat::TextChannels>,
    pub center: Arc<crate::agents::center::Center>,
    /// Calling customers back from tickets.
    pub callbacks: Arc<crate::call::callback::Callbacks>,
    /// Browser calls: the desk's softphone.
    pub webrtc: Arc<crate::channel::webrtc::WebRtcEdge>,
    /// Sentence embeddings for clustering unanswered questions (with the
    /// semantic re-ranker's model; None without it).
    pub embed: Option<crate::store::analytics::Embed>,
    /// Recognition and synthesis for the speech API (`speech`).
    pub speech: speech::Engines,
    /// This node's name in a cluster (`cluster_node`).
    pub node: Option<String>,
    /// The route table, filled once every route is added.
    pub routes: OnceLock<Vec<RouteSpec>>,
}

/// Every route; also returns the table of what each needs.
pub fn router(
    health: Arc<Health>,
    text: Arc<crate::channel::chat::TextChannels>,
    calls: Arc<crate::channel::webrtc::routes::Calls>,
    ops: Arc<Ops>,
) -> (Router, Vec<RouteSpec>) {
    let mut table = Table::new(ops.access.clone());
    let health_routes = table
        .routes()
        .add(Get, "/healthz", Public, healthz)
        .add(Get, "/readyz", Public, readyz)
        // Prometheus scrapes with an auditor's token (or a supervisor's session).
        .add(
            Get,
            "/metrics",
            crate::auth::Permission::Reports,
            prometheus,
        )
        .build()
        .with_state(health);
    let chat = crate::channel::chat::router(&mut table, text);
    let browser_calls = crate::channel::webrtc::routes::router(&mut table, calls);
    let r = table.routes();
    let r = session::routes(r);
    let r = kb::routes(r);
    let r = admin::routes(r);
    let r = agent::routes(r);
    let r = softphone::routes(r);
    let r = tickets::routes(r);
    let r = callbacks::routes(r);
    let r = customers::routes(r);
    let r = dashboard::routes(r);
    let r = speech::routes(r);
    let ops_routes = r.build().with_state(ops.clone());
    let specs = table.into_specs();
    let _ = ops.routes.set(specs.clone());
    let router = Router::new()
        .merge(health_routes)
        .merge(chat)
        .merge(browser_calls.layer(DefaultBodyLimit::max(MAX_BODY)))
        .merge(ops_routes.layer(DefaultBodyLimit::max(MAX_BODY)))
        .layer(axum::middleware::from_fn(count_status))
        .layer(axum::middleware::from_fn_with_state(
            ops.access.clone(),
            crate::http::embed::headers,
        ));
    (router, specs)
}

/// Counts every HTTP answer by status code (for `/metrics`).
async fn count_status(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let r = next.run(req).await;
    crate::metrics::metrics()
        .http_responses
        .get_or_create(&crate::metrics::StatusLabel {
            code: r.status().as_u16(),
        })
        .inc();
    r
}

async fn prometheus() -> impl axum::response::IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        crate::metrics::metrics().encode(),
    )
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(h): State<Arc<Health>>) -> (StatusCode, String) {
    if h.gate.is_draining() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "draining: not taking new calls\n".into(),
        )
    } else if !h.sip_ready.load(Ordering::Acquire) {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "starting: SIP not ready\n".into(),
        )
    } else {
        (
            StatusCode::OK,
            format!("ready: {} active calls\n", h.gate.active()),
        )
    }
}
