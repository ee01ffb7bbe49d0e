//! Routes with declared permissions. Every HTTP route is added through
//! `Routes::add`, which records (method, path, permission) in the `Table` and wraps
//! the handler in `guard`: a route cannot exist without saying who may use it, and
//! the table (`GET /api/admin/routes`) is exactly what the server enforces.
//!
//! `guard` identifies the caller (an `Authorization: Bearer` API token, or the
//! `kefu_session` cookie of a signed-in user), answers 401 when there is none and
//! the route is not public, 403 when the caller's role lacks the permission or a
//! cookie-authenticated request that changes something lacks its CSRF token, and
//! otherwise hands the `Caller` to the handler as a request extension.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::handler::Handler;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, on};
use serde::Serialize;

use super::ApiError;
use super::rate::{ClientBudgets, Spend};
use crate::auth::throttle::Throttle;
use crate::auth::{Permission, Role};
use crate::store::Store;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "kefu_session";
/// The header a signed-in browser sends its CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// What identifying callers needs.
pub struct Access {
    pub store: Store,
    pub throttle: Mutex<Throttle>,
    /// Mark the session cookie `Secure` (browsers then send it over HTTPS only,
    /// and to `localhost` over plain HTTP).
    pub secure_cookies: bool,
    pub session_ttl: Duration,
    /// Reverse proxies whose `X-Forwarded-For` is believed (for the sign-in
    /// throttle's per-address count and the budgets).
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// What each client address may spend on the public routes (shared with the
    /// text channels' WebSocket).
    pub budgets: Arc<ClientBudgets>,
    /// Which sites may embed the widget and call the chat API.
    pub widget: crate::config::widget::Widget,
}

impl Access {
    /// The client's address: the peer, or, behind a trusted proxy, the nearest
    /// address in `X-Forwarded-For` that is not one of the trusted proxies. A
    /// header from anyone else is ignored (it could say anything).
    pub fn client_ip(&self, peer: std::net::IpAddr, headers: &HeaderMap) -> std::net::IpAddr {
        client_ip(&self.trusted_proxies, peer, headers)
    }
}

/// The client's address given the proxies believed: see [`Access::client_ip`].
pub fn client_ip(
    trusted_proxies: &[std::net::IpAddr],
    peer: std::net::IpAddr,
    headers: &HeaderMap,
) -> std::net::IpAddr {
    if !trusted_proxies.contains(&peer) {
        return peer;
    }
    let forwarded: Vec<std::net::IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|a| a.trim().parse().ok())
        .collect();
    forwarded
        .into_iter()
        .rev()
        .find(|a| !trusted_proxies.contains(a))
        .unwrap_or(peer)
}

/// Who is calling: a signed-in user or an API token.
#[derive(Clone, Debug)]
pub struct Caller {
    pub role: Role,
    pub name: String,
    /// The user's id, for a signed-in user.
    pub user_id: Option<String>,
    /// The session cookie's value, for a signed-in user.
    pub session: Option<String>,
    pub csrf: Option<String>,
}

impl Caller {
    /// How the audit log names this caller.
    pub fn actor(&self) -> String {
        match self.user_id {
            Some(_) => format!("user:{}", self.name),
            None => format!("token:{}", self.name),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Verb {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

impl Verb {
    fn filter(self) -> MethodFilter {
        match self {
            Verb::Get => MethodFilter::GET,
            Verb::Post => MethodFilter::POST,
            Verb::Put => MethodFilter::PUT,
            Verb::Patch => MethodFilter::PATCH,
            Verb::Delete => MethodFilter::DELETE,
        }
    }
}

/// One route and what it needs.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct RouteSpec {
    pub method: Verb,
    pub path: &'static str,
    pub permission: Permission,
}

/// Every route the server has, as it is built.
pub struct Table {
    access: Arc<Access>,
    specs: Vec<RouteSpec>,
}

impl Table {
    pub fn new(access: Arc<Access>) -> Self {
        Self {
            access,
            specs: Vec::new(),
        }
    }

    /// A router for one state type whose routes go into this table.
    pub fn routes<S: Clone + Send + Sync + 'static>(&mut self) -> Routes<'_, S> {
        Routes {
            table: self,
            router: Router::new(),
        }
    }

    pub fn into_specs(self) -> Vec<RouteSpec> {
        self.specs
    }
}

pub struct Routes<'a, S> {
    table: &'a mut Table,
    router: Router<S>,
}

impl<S: Clone + Send + Sync + 'static> Routes<'_, S> {
    /// Adds `handler` for `method` on `path`, open only to callers with `need`.
    pub fn add<H, T>(self, method: Verb, path: &'static str, need: Permission, handler: H) -> Self
    where
        H: Handler<T, S>,
        T: 'static,
    {
        let layer = axum::middleware::from_fn_with_state((self.table.access.clone(), need), guard);
        self.route(
            method,
            path,
            need,
            on(method.filter(), handler).route_layer(layer),
        )
    }

    /// Like [`Routes::add`] for a public route that costs something: each request
    /// spends from its client address's budget (429 when it is spent).
    pub fn add_spending<H, T>(
        self,
        method: Verb,
        path: &'static str,
        spend: Spend,
        handler: H,
    ) -> Self
    where
        H: Handler<T, S>,
        T: 'static,
    {
        let layer =
            axum::middleware::from_fn_with_state((self.table.access.clone(), spend), budget);
        let route = on(method.filter(), handler).route_layer(layer);
        self.route(method, path, Permission::Public, route)
    }

    /// Records the route in the table and adds it.
    fn route(
        mut self,
        method: Verb,
        path: &'static str,
        permission: Permission,
        route: axum::routing::MethodRouter<S>,
    ) -> Self {
        self.table.specs.push(RouteSpec {
            method,
            path,
            permission,
        });
        self.router = self.router.route(path, route);
        self
    }

    pub fn build(self) -> Router<S> {
        self.router
    }
}

/// Spends from the client address's budget before the handler runs.
async fn budget(
    State((access, spend)): State<(Arc<Access>, Spend)>,
    req: Request,
    next: Next,
) -> Response {
    if let Some(axum::extract::ConnectInfo(peer)) = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
    {
        let client = access.client_ip(peer.ip(), req.headers());
        if let Err(e) = access.budgets.spend(spend, client) {
            tracing::debug!(%client, ?spend, "over budget");
            return e.into_response();
        }
    }
    next.run(req).await
}

async fn guard(
    State((access, need)): State<(Arc<Access>, Permission)>,
    mut req: Request,
    next: Next,
) -> Response {
    if need == Permission::Public {
        return next.run(req).await;
    }
    let caller = match identify(&access, req.headers(), req.method()).await {
        Ok(Some(c)) => c,
        Ok(None) => {
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                "sign in (POST /api/login) or send `Authorization: Bearer <API token>`",
            )
            .into_response();
        }
        Err(e) => return e.into_response(),
    };
    if !caller.role.allows(need) {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "the {} role may not do this (it needs the `{}` permission)",
                caller.role,
                need.as_str()
            ),
        )
        .into_response();
    }
    req.extensions_mut().insert(caller);
    next.run(req).await
}

/// The caller a request's credentials name: None when it carries none; an error
/// when they are wrong, expired or (for a session changing something) lack CSRF.
pub async fn identify(
    access: &Access,
    headers: &HeaderMap,
    method: &Method,
) -> Result<Option<Caller>, ApiError> {
    let unavailable = |e: anyhow::Error| {
        tracing::error!(error = format!("{e:#}"), "cannot check credentials");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "cannot check credentials right now; try again",
        )
    };
    if let Some(auth) = headers.get(header::AUTHORIZATION) {
        let token = auth
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty() && t.len() <= 256)
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "the Authorization header must be `Bearer <API token>`",
                )
            })?;
        let found = access.store.token(token).await.map_err(unavailable)?;
        let Some(t) = found else {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unknown or revoked API token",
            ));
        };
        let role = t.role.parse::<Role>().map_err(|e| {
            ApiError::new(StatusCode::UNAUTHORIZED, format!("token {}: {e}", t.name))
        })?;
        return Ok(Some(Caller {
            role,
            name: t.name,
            user_id: None,
            session: None,
            csrf: None,
        }));
    }
    let Some(key) = session_cookie(headers) else {
        return Ok(None);
    };
    let Some(s) = access.store.session(&key).await.map_err(unavailable)? else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "the session has ended; sign in again",
        ));
    };
    let role = s.user.role.parse::<Role>().map_err(|e| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            format!("user {}: {e}", s.user.name),
        )
    })?;
    let safe = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    if !safe {
        let given = headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if !crate::auth::same_secret(given, &s.csrf) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "missing or wrong X-CSRF-Token header (GET /api/session gives it)",
            ));
        }
    }
    Ok(Some(Caller {
        role,
        name: s.user.name,
        user_id: Some(s.user.id),
        session: Some(key),
        csrf: Some(s.csrf),
    }))
}

/// The session cookie's value, if the request has one.
pub fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(cookie::Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == SESSION_COOKIE)
        .map(|c| c.value().to_string())
        .filter(|v| !v.is_empty() && v.len() <= 128)
}
