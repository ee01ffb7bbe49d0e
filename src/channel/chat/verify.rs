//! Linking a chat customer to their phone number by proving they hold it: kefu texts
//! a 6-digit code through the SMS gateway, the customer types it back, and the chat
//! customer and the phone number become one customer, so calls from that number
//! and this chat share topics. Codes expire after 10 minutes, allow 5 tries, and
//! can be re-sent once a minute.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::{ApiError, TextChannels};
use crate::auth::Permission::{Channels, Public};
use crate::budget::Budget;
use crate::dialogue::conversations::{Identity, IdentityKind};
use crate::dialogue::slots::SlotKind;
use crate::http::rate::Spend;
use crate::http::routes::{Routes, Verb::*};

const CODE_LIFETIME_MINUTES: i64 = 10;
const MAX_TRIES: u32 = 5;
const RESEND_AFTER_SECS: i64 = 60;
/// Verifications in progress at once (expired ones are dropped first).
const MAX_PENDING: usize = 10_000;

#[derive(Debug)]
pub struct Pending {
    phone: String,
    code: String,
    sent: DateTime<Utc>,
    tries: u32,
}

/// Verifications in progress, by conversation, and what may still be texted.
pub struct Verifications {
    pending: Mutex<HashMap<String, Pending>>,
    pub budgets: CodeBudgets,
}

impl Verifications {
    /// At most `per_hour` codes texted per hour in all.
    pub fn new(per_hour: u32) -> Self {
        Self {
            pending: Mutex::default(),
            budgets: CodeBudgets::new(per_hour),
        }
    }
}

/// How many codes may go out: to one number, to one number range (all but the last
/// four digits: SMS bombing walks a range), and in all, per hour. Each client
/// address has its own budget too (the route's). Without these, one script asking
/// for codes to many numbers costs the owner one paid text message each.
pub struct CodeBudgets {
    number: Budget<String>,
    range: Budget<String>,
    all: Budget<()>,
}

/// Codes per hour to one number, and to one range of numbers.
const CODES_PER_NUMBER: u32 = 3;
const CODES_PER_RANGE: u32 = 10;

impl CodeBudgets {
    pub fn new(per_hour: u32) -> Self {
        Self {
            number: Budget::per_hour(CODES_PER_NUMBER, "codes sent to this number"),
            range: Budget::per_hour(CODES_PER_RANGE, "codes sent to numbers like this one"),
            all: Budget::per_hour(per_hour, "verification codes sent this hour"),
        }
    }

    /// Spends one code to `phone` (digits, optional +) from every budget.
    pub fn spend(&self, phone: &str) -> Result<(), ApiError> {
        let digits: String = phone.chars().filter(char::is_ascii_digit).collect();
        let range = digits[..digits.len().saturating_sub(4)].to_string();
        self.number.spend(&digits)?;
        self.range.spend(&range)?;
        self.all.spend(&())?;
        Ok(())
    }
}

impl std::fmt::Debug for Verifications {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Verifications")
    }
}

/// The same proof on the public chat routes (the widget) and on the integrator's
/// (an app linking its user's number: `/api/v1/customers/link` refuses numbers).
pub fn routes(r: Routes<'_, Arc<TextChannels>>) -> Routes<'_, Arc<TextChannels>> {
    r.add_spending(
        Post,
        "/api/chat/conversations/{id}/phone",
        Spend::Code,
        send_code_with_key,
    )
    .add(
        Post,
        "/api/chat/conversations/{id}/phone/confirm",
        Public,
        confirm_with_key,
    )
    .add(
        Post,
        "/api/v1/conversations/{id}/phone",
        Channels,
        send_code,
    )
    .add(
        Post,
        "/api/v1/conversations/{id}/phone/confirm",
        Channels,
        confirm,
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PhoneRequest {
    phone: String,
}

#[derive(Serialize)]
struct CodeSent {
    /// The number, with all but the last four digits hidden.
    sent_to: String,
    expires_in_seconds: i64,
}

/// The public route: the customer proves the conversation is theirs first.
async fn send_code_with_key(
    State(s): State<Arc<TextChannels>>,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
    uri: axum::http::Uri,
    body: Result<Json<PhoneRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<CodeSent>), ApiError> {
    s.keys
        .check(&id, super::proof::given(&headers, uri.query()))?;
    send_code(State(s), Path(id), body).await
}

async fn send_code(
    State(s): State<Arc<TextChannels>>,
    Path(id): Path<String>,
    body: Result<Json<PhoneRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<CodeSent>), ApiError> {
    let Json(req) = body?;
    s.service.entry(&id).await?;
    let now = Utc::now();
    let phone = SlotKind::Phone
        .extract(&req.phone, now.date_naive())
        .ok_or_else(|| ApiError::bad_request("`phone` is not a phone number"))?;
    let Some(out) = &s.sms_out else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "phone verification needs a way to send SMS (`sms_outbound_url`, [sms_aliyun] or [sms_tencent])",
        ));
    };
    let code = format!("{:06}", rand::random_range(0..1_000_000u32));
    {
        let mut pending = crate::lock(&s.verifications.pending);
        if let Some(p) = pending.get(&id)
            && now - p.sent < Duration::seconds(RESEND_AFTER_SECS)
        {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "a code was sent less than a minute ago",
            ));
        }
        pending.retain(|_, p| now - p.sent < Duration::minutes(CODE_LIFETIME_MINUTES));
        if pending.len() >= MAX_PENDING {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many verifications in progress; try again later",
            ));
        }
        pending.insert(
            id.clone(),
            Pending {
                phone: phone.clone(),
                code: code.clone(),
                sent: now,
                tries: 0,
            },
        );
    }
    if let Err(e) = s.verifications.budgets.spend(&phone) {
        crate::lock(&s.verifications.pending).remove(&id);
        return Err(e);
    }
    let name = s.service.kb.current().kb.name.clone();
    let text = format!(
        "{name}: your verification code is {code}. It expires in {CODE_LIFETIME_MINUTES} minutes."
    );
    let from = s.sms_number.clone().unwrap_or_default();
    if let Err(e) = super::sms_cloud::send(&s.http, out, &phone, &from, &[text]).await {
        crate::lock(&s.verifications.pending).remove(&id);
        return Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            format!("the SMS gateway did not take the code: {e}"),
        ));
    }
    let shown = phone.len().saturating_sub(4);
    Ok((
        StatusCode::ACCEPTED,
        Json(CodeSent {
            sent_to: format!("{}{}", "*".repeat(shown), &phone[shown..]),
            expires_in_seconds: CODE_LIFETIME_MINUTES * 60,
        }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfirmRequest {
    code: String,
}

#[derive(Serialize)]
struct Linked {
    customer: String,
    identities: Vec<Identity>,
}

/// The public route: the customer proves the conversation is theirs first.
async fn confirm_with_key(
    State(s): State<Arc<TextChannels>>,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
    uri: axum::http::Uri,
    body: Result<Json<ConfirmRequest>, JsonRejection>,
) -> Result<Json<Linked>, ApiError> {
    s.keys
        .check(&id, super::proof::given(&headers, uri.query()))?;
    confirm(State(s), Path(id), body).await
}

async fn confirm(
    State(s): State<Arc<TextChannels>>,
    Path(id): Path<String>,
    body: Result<Json<ConfirmRequest>, JsonRejection>,
) -> Result<Json<Linked>, ApiError> {
    let Json(req) = body?;
    let entry = s.service.entry(&id).await?;
    let customer = crate::lock(&entry).customer.clone();
    let now = Utc::now();
    let phone = {
        let mut pending = crate::lock(&s.verifications.pending);
        let Some(p) = pending.get_mut(&id) else {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "no verification in progress for this conversation",
            ));
        };
        if now - p.sent >= Duration::minutes(CODE_LIFETIME_MINUTES) {
            pending.remove(&id);
            return Err(ApiError::new(
                StatusCode::GONE,
                "the code has expired; ask for a new one",
            ));
        }
        let given = req.code.trim();
        if !crate::auth::same_secret(given, &p.code) {
            p.tries += 1;
            if p.tries >= MAX_TRIES {
                pending.remove(&id);
                return Err(ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too many wrong codes; ask for a new one",
                ));
            }
            return Err(ApiError::bad_request("wrong code"));
        }
        let phone = p.phone.clone();
        pending.remove(&id);
        phone
    };
    let customer = s
        .link(&customer, &Identity::new(IdentityKind::Phone, phone))
        .await?;
    let identities = s.service.conversations.identities_of(&customer);
    tracing::info!(conversation = %crate::log_id(&id), customer = %customer, "phone number verified and linked");
    Ok(Json(Linked {
        customer,
        identities,
    }))
}
