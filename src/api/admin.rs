//! Operators' routes: users and API tokens (admin), the audit log and the route
//! permission table (admin, auditor), reports (admin, supervisor, auditor), call
//! records (admin, supervisor), one customer's data (admin), and an agent's own
//! tickets. Every change, and every read of one person's data, is audited.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::Utc;
use serde::{Deserialize, Serialize};

use super::{ApiError, Ops};
use crate::auth::Permission::{AuditLog, CallRecords, CustomerData, OwnWork, Reports, Users};
use crate::auth::{Role, check_name, new_token, password};
use crate::http::routes::{Caller, RouteSpec, Routes, Verb::*};
use crate::store::access::{Audit, Token, User, UserChange};
use crate::store::reports::{AuditRow, Summary, TicketView};

pub fn routes(r: Routes<'_, Arc<Ops>>) -> Routes<'_, Arc<Ops>> {
    r.add(Get, "/api/admin/users", Users, list_users)
        .add(Post, "/api/admin/users", Users, add_user)
        .add(Patch, "/api/admin/users/{name}", Users, change_user)
        .add(Get, "/api/admin/tokens", Users, list_tokens)
        .add(Post, "/api/admin/tokens", Users, add_token)
        .add(Delete, "/api/admin/tokens/{id}", Users, revoke_token)
        .add(Get, "/api/admin/routes", AuditLog, route_table)
        .add(Get, "/api/audit", AuditLog, audit_log)
        .add(Get, "/api/reports/summary", Reports, summary)
        .add(Get, "/api/calls/{id}", CallRecords, call_record)
        .add(
            Get,
            "/api/calls/{id}/recordings",
            CallRecords,
            call_recordings,
        )
        .add(Get, "/api/recordings/{id}", CallRecords, recording)
        .add(
            Get,
            "/api/admin/customers/{id}",
            CustomerData,
            export_customer,
        )
        .add(
            Delete,
            "/api/admin/customers/{id}",
            CustomerData,
            erase_customer,
        )
        .add(Get, "/api/agent/tickets", OwnWork, my_tickets)
}

pub(super) fn unavailable(e: anyhow::Error) -> ApiError {
    ApiError::store_unavailable(e)
}

async fn list_users(State(ops): State<Arc<Ops>>) -> Result<Json<Vec<User>>, ApiError> {
    Ok(Json(ops.store.users().await.map_err(unavailable)?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    name: String,
    role: String,
    /// Generated (and returned once) when absent.
    password: Option<String>,
}

#[derive(Serialize)]
struct Created {
    user: User,
    /// Only when kefu generated it: shown this once.
    #[serde(skip_serializing_if = "Option::is_none")]
    password: Option<String>,
}

async fn hash_off_thread(p: String) -> Result<String, ApiError> {
    tokio::task::spawn_blocking(move || password::hash(&p))
        .await
        .map_err(|e| unavailable(e.into()))?
        .map_err(unavailable)
}

async fn add_user(
    State(ops): State<Arc<Ops>>,
    Extension(c): Extension<Caller>,
    body: Result<Json<NewUser>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(req) = body?;
    check_name(&req.name).map_err(ApiError::bad_request)?;
    let role = req.role.parse::<Role>().map_err(ApiError::bad_request)?;
    let generated = req.password.is_none();
    let pw = req.password.unwrap_or_else(password::generate);
    password::check(&pw).map_err(ApiError::bad_request)?;
    let hash = hash_off_thread(pw.clone()).await?;
    let audit = Audit {
        actor: c.actor(),
        action: "user.add",
        target: req.name.clone(),
        detail: format!("role {role}"),
    };
    let Some(user) = ops
        .store
        .add_user(&req.name, role.as_str(), &hash, audit)
        .await
        .map_err(unavailable)?
    else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("a user named {:?} already exists", req.name),
        ));
    };
    Ok((
        StatusCode::CREATED,
        Json(Created {
            user,
            password: generated.then_some(pw),
        }),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangeUser {
    role: Option<String>,
    password: Option<String>,
    disabled: Option<bool>,
}

async fn change_user(
    State(ops): State<Arc<Ops>>,
    Extension(c): Extension<Caller>,
    Path(name): Path<String>,
    body: Result<Json<ChangeUser>, JsonRejection>,
) -> Result<Json<User>, ApiError> {
    let Json(req) = body?;
    let role = req
        .role
        .as_deref()
        .map(str::parse::<Role>)
        .transpose()
        .map_err(ApiError::bad_request)?;
    let mut detail = Vec::new();
    if let Some(r) = role {
        detail.push(format!("role {r}"));
    }
    if req.password.is_some() {
        detail.push("password reset".to_string());
    }
    if let Some(d) = req.disabled {
        detail.push(if d { "disabled" } else { "enabled" }.to_string());
    }
    if detail.is_empty() {
        return Err(ApiError::bad_request(
            "nothing to change: give `role`, `password` or `disabled`",
        ));
    }
    // Never lock every admin out.
    let users = ops.store.users().await.map_err(unavailable)?;
    let Some(current) = users.iter().find(|u| u.name == name) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no user {name:?}"),
        ));
    };
    let stops_being_admin = current.role == "admin"
        && !current.disabled
        && (role.is_some_and(|r| r != Role::Admin) || req.disabled == Some(true));
    let active_admins = users
        .iter()
        .filter(|u| u.role == "admin" && !u.disabled)
        .count();
    if stops_being_admin && active_admins <= 1 {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "this is the last active admin; make another admin first",
        ));
    }
    let password_hash = match req.password {
        Some(p) => {
            password::check(&p).map_err(ApiError::bad_request)?;
            Some(hash_off_thread(p).await?)
        }
        None => None,
    };
    let change = UserChange {
        role: role.map(|r| r.as_str().to_string()),
        password_hash,
        disabled: req.disabled,
    };
    let audit = Audit {
        actor: c.actor(),
        action: "user.change",
        target: name.clone(),
        detail: detail.join(", "),
    };
    match ops
        .store
        .change_user(&name, &change, audit)
        .await
        .map_err(unavailable)?
    {
        Some(u) => Ok(Json(u)),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no user {name:?}"),
        )),
    }
}

async fn list_tokens(State(ops): State<Arc<Ops>>) -> Result<Json<Vec<Token>>, ApiError> {
    Ok(Json(ops.store.tokens().await.map_err(unavailable)?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewToken {
    name: String,
    role: String,
    /// How many days it works (default 90, at most 366).
    #[serde(default)]
    days: Option<u32>,
}

#[derive(Serialize)]
struct TokenCreated {
    #[serde(flatten)]
    info: Token,
    /// The bearer token: shown this once, only its hash is kept.
    token: String,
}

async fn add_token(
    State(ops): State<Arc<Ops>>,
    Extension(c): Extension<Caller>,
    body: Result<Json<NewToken>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(req) = body?;
    check_name(&req.name).map_err(ApiError::bad_request)?;
    let role = req.role.parse::<Role>().map_err(ApiError::bad_request)?;
    if !role.token_may_have() {
        return Err(ApiError::bad_request(format!(
            "an API token may be an integrator or an auditor, not {role}: people sign in"
        )));
    }
    let expires = crate::auth::token_expiry(req.days).map_err(ApiError::bad_request)?;
    let token = new_token();
    let audit = Audit {
        actor: c.actor(),
        action: "token.add",
        target: req.name.clone(),
        detail: format!("role {role}, until {}", expires.to_rfc3339()),
    };
    let info = ops
        .store
        .add_token(&token, &req.name, role.as_str(), expires, audit)
        .await
        .map_err(unavailable)?;
    Ok((StatusCode::CREATED, Json(TokenCreated { info, token })).into_response())
}

async fn revoke_token(
    State(ops): State<Arc<Ops>>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let audit = Audit {
        actor: c.actor(),
        action: "token.revoke",
        target: id.clone(),
        detail: String::new(),
    };
    if ops
        .store
        .revoke_token(&id, audit)
        .await
        .map_err(unavailable)?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no live token {id:?}"),
        ))
    }
}

async fn route_table(State(ops): State<Arc<Ops>>) -> Json<Vec<RouteSpec>> {
    Json(ops.routes.get().cloned().unwrap_or_default())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Page {
    /// Entries after this id (0: from the start).
    after: Option<i64>,
    limit: Option<i64>,
}

async fn audit_log(
    State(ops): State<Arc<Ops>>,
    Query(p): Query<Page>,
) -> Result<Json<Vec<AuditRow>>, ApiError> {
    let limit = p.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("`limit` must be 1 to 1000"));
    }
    Ok(Json(
        ops.store
            .audit_page(p.after.unwrap_or(0).max(0), limit)
            .await
            .map_err(unavailable)?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Days {
    days: Option<u32>,
}

async fn summary(
    State(ops): State<Arc<Ops>>,
    Query(q): Query<Days>,
) -> Result<Json<Summary>, ApiError> {
    let days = q.days.unwrap_or(7);
    if !(1..=3650).contains(&days) {
        return Err(ApiError::bad_request("`days` must be 1 to 3650"));
    }
    let since = Utc::now() - chrono::Duration::days(i64::from(days));
    Ok(Json(ops.store.summary(since).await.map_err(unavailable)?))
}

/// Reads one person's data: the read itself goes into the audit log first.
async fn audited_read(
    ops: &Ops,
    c: &Caller,
    action: &'static str,
    target: &str,
) -> Result<(), ApiError> {
    ops.store
        .audit(&c.actor(), action, target, "")
        .await
        .map_err(unavailable)
}

async fn call_record(
    State(ops): State<Arc<Ops>>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Some(record) = ops.store.call(&id).await.map_err(unavailable)? else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no call {id:?}"),
        ));
    };
    audited_read(&ops, &c, "call.view", &id).await?;
    Ok(Json(record))
}

/// A call's recordings (voicemail, the bridged call), without their audio.
async fn call_recordings(
    State(ops): State<Arc<Ops>>,
    Path(id): Path<String>,
) -> Result<Json<Vec<crate::store::recordings::RecordingInfo>>, ApiError> {
    Ok(Json(
        ops.store.recordings_of(&id).await.map_err(unavailable)?,
    ))
}

/// One recording as a WAV file; every listen is audited first.
async fn recording(
    State(ops): State<Arc<Ops>>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let Some((_, wav)) = ops.store.recording(&id).await.map_err(unavailable)? else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no recording {id:?}"),
        ));
    };
    audited_read(&ops, &c, "recording.listen", &id).await?;
    Ok(([(axum::http::header::CONTENT_TYPE, "audio/wav")], wav).into_response())
}

/// 404 unless the store knows the customer (by any identity).
async fn known_customer(ops: &Ops, id: &str) -> Result<(), ApiError> {
    if !ops.store.customer_exists(id).await.map_err(unavailable)? {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no customer {id:?}"),
        ));
    }
    Ok(())
}

async fn export_customer(
    State(ops): State<Arc<Ops>>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    known_customer(&ops, &id).await?;
    audited_read(&ops, &c, "customer.export", &id).await?;
    Ok(Json(
        ops.store.export_customer(&id).await.map_err(unavailable)?,
    ))
}

#[derive(Serialize)]
struct Erased {
    customer: String,
    rows: u64,
}

async fn erase_customer(
    State(ops): State<Arc<Ops>>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<Erased>, ApiError> {
    known_customer(&ops, &id).await?;
    let rows = ops
        .store
        .erase_customer(&id, &c.actor())
        .await
        .map_err(unavailable)?;
    // Forget them among the live conversations too.
    ops.conversations.forget_customer(&id);
    Ok(Json(Erased { customer: id, rows }))
}

async fn my_tickets(
    State(ops): State<Arc<Ops>>,
    Extension(c): Extension<Caller>,
) -> Result<Json<Vec<TicketView>>, ApiError> {
    let Some(user) = &c.user_id else {
        return Ok(Json(Vec::new()));
    };
    Ok(Json(ops.store.tickets_of(user).await.map_err(unavailable)?))
}
