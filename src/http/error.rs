//! The HTTP API's error: a status and a reason a client can act on, as JSON
//! `{"error": reason}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::dialogue::conversations::ConversationError;

/// An error a client can act on: a status and a reason, as JSON.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub reason: String,
    /// Seconds to wait before trying again (a `Retry-After` header), for 429 and 503.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, reason: impl Into<String>) -> Self {
        Self {
            status,
            reason: reason.into(),
            retry_after: None,
        }
    }

    /// 429: this client asked too often; it may again in `wait`.
    pub fn too_many(reason: impl Into<String>, wait: std::time::Duration) -> Self {
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        Self {
            status: StatusCode::TOO_MANY_REQUESTS,
            reason: format!("{}; try again in {seconds} s", reason.into()),
            retry_after: Some(seconds.max(1)),
        }
    }

    pub fn bad_request(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, reason)
    }

    /// 503: the store failed (logged here with its cause; the client is told to
    /// try again, not why).
    pub fn store_unavailable(e: anyhow::Error) -> Self {
        tracing::error!(error = format!("{e:#}"), "store request failed");
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            reason: "the store cannot answer right now; try again".into(),
            retry_after: Some(5),
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(ErrorBody {
                error: &self.reason,
            }),
        )
            .into_response();
        if let Some(s) = self.retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, s.into());
        }
        response
    }
}

impl From<ConversationError> for ApiError {
    fn from(e: ConversationError) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, e.to_string())
    }
}

impl From<crate::dialogue::service::ServiceError> for ApiError {
    fn from(e: crate::dialogue::service::ServiceError) -> Self {
        use crate::dialogue::service::ServiceError;
        match e {
            ServiceError::Conversation(e) => e.into(),
            // The customer gets no reply they could lose.
            ServiceError::NotRecorded(e) => {
                tracing::error!(error = format!("{e:#}"), "cannot record a message");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the message could not be recorded; please send it again",
                )
            }
            ServiceError::Contended => ApiError::new(StatusCode::CONFLICT, e.to_string()),
        }
    }
}

impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(r: axum::extract::rejection::JsonRejection) -> Self {
        ApiError::new(r.status(), format!("bad JSON body: {}", r.body_text()))
    }
}
