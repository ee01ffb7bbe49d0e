//! The HTTP port: liveness and readiness, and the text channels (`channel::chat`:
//! web chat, WeChat, SMS, the app API).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;

use crate::channel::sip::CallGate;

/// What readiness depends on.
#[derive(Debug, Default)]
pub struct Health {
    /// SIP transports bound and dialplans loaded.
    pub sip_ready: AtomicBool,
    pub gate: Arc<CallGate>,
}

pub fn router(health: Arc<Health>, text: Arc<crate::channel::chat::TextChannels>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(health)
        .merge(crate::channel::chat::router(text))
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
