//! Headers every answer carries, and what lets other sites embed the chat widget:
//! no MIME sniffing, no referrer, the content policy (no framing, except the
//! widget by the allowed origins), and CORS on the chat API for the allowed
//! origins (preflights answered here).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::routes::Access;

/// What the pages may load and do: only this server's own scripts, styles, images
/// and connections (the pages' own inline scripts included), no plugins; framing
/// as `frame-ancestors` says.
const CSP: &str = "default-src 'self'; script-src 'self' 'unsafe-inline'; \
    style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; \
    object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors";

/// The routes a page on another site may call (the widget's own API).
const CROSS_ORIGIN: &str = "/api/chat/";

pub async fn headers(State(access): State<Arc<Access>>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let widget = path == "/chat";
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .filter(|_| path.starts_with(CROSS_ORIGIN))
        .map(str::to_string);
    let allowed = origin
        .as_deref()
        .filter(|o| access.widget.allows(o))
        .and_then(|o| HeaderValue::from_str(o).ok());
    let mut r = if req.method() == Method::OPTIONS && origin.is_some() {
        // A preflight: answered for allowed origins, refused for the rest.
        match &allowed {
            Some(_) => StatusCode::NO_CONTENT.into_response(),
            None => super::ApiError::new(
                StatusCode::FORBIDDEN,
                "this origin may not use the chat API ([widget] allowed_origins)",
            )
            .into_response(),
        }
    } else {
        next.run(req).await
    };
    let h = r.headers_mut();
    if let Some(origin) = allowed {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, DELETE"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("content-type, x-kefu-key"),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
    }
    if h.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN) {
        // Answers that depend on the caller's Origin say so to caches.
        h.append(header::VARY, HeaderValue::from_static("Origin"));
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    let ancestors = if widget {
        access.widget.frame_ancestors()
    } else {
        "'none'".into()
    };
    if let Ok(csp) = HeaderValue::from_str(&format!("{CSP} {ancestors}")) {
        h.insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    if !widget {
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    r
}
