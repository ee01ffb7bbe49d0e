//! The HTTP port: liveness and readiness now; the admin and integration API later.

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

pub fn router(health: Arc<Health>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(health)
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
