//! Signing in and out: `POST /api/login` (name and password → a session cookie and
//! its CSRF token), `GET /api/session` (who am I, my permissions, my CSRF token),
//! `POST /api/logout`, `POST /api/session/password`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::http::rate::Spend;
use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::Utc;
use serde::{Deserialize, Serialize};

use super::admin::unavailable;
use super::{ApiError, Ops};
use crate::auth::Permission::{self, SignedIn};
use crate::auth::{Role, password, secret};
use crate::http::routes::{Access, Caller, Routes, SESSION_COOKIE, Verb::*};
use crate::store::access::{Audit, User, UserChange};

pub fn routes(r: Routes<'_, Arc<Ops>>) -> Routes<'_, Arc<Ops>> {
    r.add_spending(Post, "/api/login", Spend::SignIn, login)
        .add(Get, "/api/session", SignedIn, whoami)
        .add(Post, "/api/logout", SignedIn, logout)
        .add(Post, "/api/session/password", SignedIn, change_password)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Login {
    name: String,
    password: String,
}

#[derive(Serialize)]
struct SessionView {
    name: String,
    role: Role,
    /// "session" (signed in) or "token".
    via: &'static str,
    /// Send it back in `X-CSRF-Token` with every request that changes something.
    #[serde(skip_serializing_if = "Option::is_none")]
    csrf: Option<String>,
    permissions: Vec<Permission>,
}

fn view(role: Role, name: String, csrf: Option<String>) -> SessionView {
    SessionView {
        name,
        role,
        via: if csrf.is_some() { "session" } else { "token" },
        csrf,
        permissions: Permission::ALL
            .into_iter()
            .filter(|p| role.allows(*p))
            .collect(),
    }
}

fn too_many(wait: std::time::Duration) -> Response {
    let secs = wait.as_secs().max(1);
    let mut r = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        format!("too many failed sign-ins; try again in {secs} s"),
    )
    .into_response();
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

/// The throttle keys of a sign-in as `name` from `ip`: the pair and the address
/// always; the name alone too, unless this address has signed in as this name
/// before (so failures from strangers cannot lock a user out of their usual
/// address, and guesses spread over many addresses still meet the name's lock).
fn sign_in_keys(access: &Access, name: &str, ip: std::net::IpAddr) -> Vec<String> {
    let pair = format!("user:{name}@{ip}");
    let mut keys = vec![pair.clone(), format!("ip:{ip}")];
    if !crate::lock(&access.throttle).knows(&pair) {
        keys.push(format!("user:{name}"));
    }
    keys
}

/// Checks `password` against the user's stored hash (on a blocking thread: argon2
/// is slow on purpose), under the throttle for `keys` (see [`sign_in_keys`]; the
/// first is the name and address pair). The user if it matches.
async fn check_password(
    access: &Access,
    keys: &[String],
    name: &str,
    password: &str,
) -> Result<User, Response> {
    crate::lock(&access.throttle)
        .attempt(keys, Instant::now())
        .map_err(too_many)?;
    let found = access.store.user_with_hash(name).await.map_err(|e| {
        crate::lock(&access.throttle).abandon(keys);
        tracing::error!(error = format!("{e:#}"), "cannot read users");
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "cannot sign in right now").into_response()
    })?;
    let (user, hash) = match found {
        Some((u, h)) => (Some(u), h),
        None => (None, String::new()),
    };
    let given = password.to_string();
    let ok = tokio::task::spawn_blocking(move || password::verify(&given, &hash))
        .await
        .unwrap_or(false);
    let proven = (ok && user.is_some()).then_some(keys[0].as_str());
    crate::lock(&access.throttle).finish(keys, proven, Instant::now());
    match user {
        Some(u) if ok => {
            if u.disabled {
                return Err(
                    ApiError::new(StatusCode::FORBIDDEN, "this account is disabled")
                        .into_response(),
                );
            }
            Ok(u)
        }
        _ => {
            tracing::warn!(user = %name, "failed sign-in");
            Err(ApiError::new(StatusCode::UNAUTHORIZED, "wrong name or password").into_response())
        }
    }
}

async fn login(
    State(ops): State<Arc<Ops>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: axum::http::HeaderMap,
    body: Result<Json<Login>, JsonRejection>,
) -> Result<Response, Response> {
    let Json(req) = body.map_err(|e| ApiError::from(e).into_response())?;
    let name = req.name.trim();
    if name.is_empty() || name.len() > 64 || req.password.len() > 1024 {
        return Err(
            ApiError::new(StatusCode::UNAUTHORIZED, "wrong name or password").into_response(),
        );
    }
    let access = &ops.access;
    let ip = access.client_ip(peer.ip(), &headers);
    let keys = sign_in_keys(access, name, ip);
    let user = check_password(access, &keys, name, &req.password).await?;
    let role = user
        .role
        .parse::<Role>()
        .map_err(|e| ApiError::new(StatusCode::FORBIDDEN, e).into_response())?;
    let key = secret();
    let csrf = secret();
    let ttl = access.session_ttl;
    let expires = Utc::now() + chrono::Duration::from_std(ttl).unwrap_or_default();
    access
        .store
        .add_session(
            &key,
            &user,
            &csrf,
            expires,
            Audit {
                actor: format!("user:{}", user.name),
                action: "session.login",
                target: user.name.clone(),
                detail: format!("from {ip}"),
            },
        )
        .await
        .map_err(|e| unavailable(e).into_response())?;
    let cookie = cookie::Cookie::build((SESSION_COOKIE, key))
        .http_only(true)
        .secure(access.secure_cookies)
        .same_site(cookie::SameSite::Strict)
        .path("/")
        .max_age(cookie::time::Duration::seconds(ttl.as_secs() as i64))
        .build();
    let mut r = Json(view(role, user.name, Some(csrf))).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie.to_string()) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(r)
}

async fn whoami(Extension(c): Extension<Caller>) -> Json<SessionView> {
    Json(view(c.role, c.name, c.csrf))
}

fn clear_cookie(mut r: Response) -> Response {
    let cookie = cookie::Cookie::build((SESSION_COOKIE, ""))
        .http_only(true)
        .path("/")
        .max_age(cookie::time::Duration::ZERO)
        .build();
    if let Ok(v) = HeaderValue::from_str(&cookie.to_string()) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

async fn logout(
    State(ops): State<Arc<Ops>>,
    Extension(c): Extension<Caller>,
) -> Result<Response, ApiError> {
    let Some(key) = &c.session else {
        return Err(ApiError::bad_request(
            "API tokens do not sign out; an admin revokes them",
        ));
    };
    ops.access
        .store
        .end_session(
            key,
            Audit {
                actor: c.actor(),
                action: "session.logout",
                target: c.name.clone(),
                detail: String::new(),
            },
        )
        .await
        .map_err(unavailable)?;
    Ok(clear_cookie(StatusCode::NO_CONTENT.into_response()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewPassword {
    current: String,
    new: String,
}

/// Changes the signed-in user's password; every session of theirs ends, this one
/// included.
async fn change_password(
    State(ops): State<Arc<Ops>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: axum::http::HeaderMap,
    Extension(c): Extension<Caller>,
    body: Result<Json<NewPassword>, JsonRejection>,
) -> Result<Response, Response> {
    if c.session.is_none() {
        return Err(ApiError::bad_request("API tokens have no password").into_response());
    }
    let Json(req) = body.map_err(|e| ApiError::from(e).into_response())?;
    password::check(&req.new).map_err(|e| ApiError::bad_request(e).into_response())?;
    let ip = ops.access.client_ip(peer.ip(), &headers);
    let keys = sign_in_keys(&ops.access, &c.name, ip);
    check_password(&ops.access, &keys, &c.name, &req.current).await?;
    let new = req.new;
    let hash = tokio::task::spawn_blocking(move || password::hash(&new))
        .await
        .map_err(|e| unavailable(e.into()).into_response())?
        .map_err(|e| unavailable(e).into_response())?;
    ops.access
        .store
        .change_user(
            &c.name,
            &UserChange {
                password_hash: Some(hash),
                ..UserChange::default()
            },
            Audit {
                actor: c.actor(),
                action: "user.password",
                target: c.name.clone(),
                detail: "changed own password".into(),
            },
        )
        .await
        .map_err(|e| unavailable(e).into_response())?;
    Ok(clear_cookie(StatusCode::NO_CONTENT.into_response()))
}
