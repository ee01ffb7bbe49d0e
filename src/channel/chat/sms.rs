//! SMS: an inbound webhook in the form-encoded style of common SMS gateways
//! (`From`, `To`, `Body`; `msisdn`/`text` also accepted), and replies POSTed to the
//! gateway's send URL (`sms_outbound_url`, form fields `To`, `From`, `Body`).
//!
//! Replies use the short (voice) answer, split into at most three message parts;
//! anything longer is cut at a sentence end and marked with "…".

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode};
use chrono::Duration;
use serde::Serialize;

use super::{ApiError, TextChannels, message_text};
use crate::auth::Permission::Public;
use crate::dialogue::conversations::{Channel, Identity, IdentityKind};
use crate::dialogue::text::Lang;
use crate::http::routes::{Routes, Verb::*};

/// An SMS conversation continues while messages come within this gap.
const SESSION_GAP_HOURS: i64 = 24;
const MAX_PARTS: usize = 3;

pub fn routes(r: Routes<'_, Arc<TextChannels>>) -> Routes<'_, Arc<TextChannels>> {
    r.add(Post, "/sms/inbound", Public, inbound)
}

#[derive(Serialize)]
pub struct SmsReply {
    pub conversation: String,
    pub to: String,
    /// The message parts, in order.
    pub parts: Vec<String>,
    /// Whether they were handed to the outbound gateway.
    pub sent: bool,
}

fn field<'a>(form: &'a HashMap<String, String>, names: &[&str]) -> Option<&'a str> {
    names
        .iter()
        .find_map(|n| form.get(*n))
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
}

/// The gateway's proof: `?token=` on the webhook URL (what gateways let you
/// configure) or an `X-Kefu-Token` header, matching `sms_inbound_token`. Without a
/// token configured the channel is off: anyone could otherwise write into any phone
/// number's conversation.
fn check_gateway(
    s: &TextChannels,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    let Some(expected) = &s.sms_inbound_token else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "the SMS channel is off: set sms_inbound_token in kefu.toml and give it to \
             the gateway (?token= on the webhook URL, or X-Kefu-Token)",
        ));
    };
    let given = query
        .get("token")
        .map(String::as_str)
        .or_else(|| headers.get("x-kefu-token").and_then(|v| v.to_str().ok()))
        .unwrap_or_default();
    if crate::auth::same_secret(given, expected) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "missing or wrong SMS gateway token (`?token=` or X-Kefu-Token)",
        ))
    }
}

async fn inbound(
    State(s): State<Arc<TextChannels>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Result<Json<SmsReply>, ApiError> {
    check_gateway(&s, &query, &headers)?;
    let Form(form) =
        form.map_err(|r| ApiError::new(r.status(), format!("bad form body: {}", r.body_text())))?;
    let from = field(&form, &["From", "from", "msisdn"])
        .ok_or_else(|| ApiError::bad_request("missing `From`"))?;
    if from.len() > 32 || !from.chars().all(|c| c.is_ascii_digit() || c == '+') {
        return Err(ApiError::bad_request(
            "`From` must be a phone number (digits, optional +)",
        ));
    }
    let to = field(&form, &["To", "to"]).unwrap_or("");
    let body = message_text(field(&form, &["Body", "body", "text"]).unwrap_or(""))?;
    let identity = Identity::new(IdentityKind::Sms, from);
    let recent = s
        .service
        .recent(Channel::Sms, &identity, Duration::hours(SESSION_GAP_HOURS))
        .await?;
    let id = match recent {
        Some(id) => id,
        None => {
            s.start(Channel::Sms, &identity, Lang::detect(body))
                .await?
                .0
        }
    };
    let reply = s.message(&id, body).await?;
    let parts = if reply.text.is_empty() {
        Vec::new()
    } else {
        sms_parts(&reply.text)
    };
    let sender = s.sms_number.clone().unwrap_or_else(|| to.to_string());
    let sent = match (&s.sms_out, parts.is_empty()) {
        (Some(out), false) => super::sms_cloud::send(&s.http, out, from, &sender, &parts)
            .await
            .is_ok(),
        _ => false,
    };
    Ok(Json(SmsReply {
        conversation: id,
        to: from.to_string(),
        parts,
        sent,
    }))
}

/// Sends each part to the gateway in order, stopping at the first failure (which is
/// logged; the customer's message and our reply stay in the history either way).
pub async fn send(
    http: &reqwest::Client,
    url: &str,
    to: &str,
    from: &str,
    parts: &[String],
) -> Result<(), String> {
    for part in parts {
        let result = http
            .post(url)
            .form(&[("To", to), ("From", from), ("Body", part.as_str())])
            .send()
            .await
            .and_then(|r| r.error_for_status());
        if let Err(e) = result {
            // The URL may carry the gateway's credentials: never in logs or replies.
            let e = e.without_url();
            tracing::error!(to, error = %e, "SMS gateway refused the message");
            return Err(match e.status() {
                Some(status) => format!("it answered {status}"),
                None if e.is_timeout() => "it did not answer in time".into(),
                None => "it could not be reached".into(),
            });
        }
    }
    Ok(())
}

/// Whether every character fits the GSM 7-bit default alphabet (160 per message),
/// else the message is UCS-2 (70 per message).
fn is_gsm(text: &str) -> bool {
    text.chars().all(|c| {
        c.is_ascii() && !c.is_ascii_control()
            || c == '\n'
            || "£¥èéùìòÇØøÅåΔΦΓΛΩΠΨΣΘΞÆæßÉÄÖÑÜ§¿äöñüà".contains(c)
    })
}

/// Splits an answer into SMS parts (153 or 67 characters each when concatenated),
/// at most three; a longer answer is cut at the last sentence end that fits.
pub fn sms_parts(text: &str) -> Vec<String> {
    let (single, multi) = if is_gsm(text) { (160, 153) } else { (70, 67) };
    let chars: Vec<char> = text.chars().collect();
    if chars.len() <= single {
        return vec![text.to_string()];
    }
    let budget = multi * MAX_PARTS;
    let kept: Vec<char> = if chars.len() <= budget {
        chars
    } else {
        let head = &chars[..budget - 1];
        let cut = head
            .iter()
            .rposition(|c| matches!(c, '.' | '!' | '?' | '。' | '！' | '？' | '；'))
            .map_or(budget - 1, |i| i + 1);
        let mut v = head[..cut].to_vec();
        v.push('…');
        v
    };
    kept.chunks(multi).map(|c| c.iter().collect()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_answers_are_one_message() {
        assert_eq!(sms_parts("We're open 9 to 6."), ["We're open 9 to 6."]);
        assert_eq!(sms_parts("营业时间是九点到六点。").len(), 1);
    }

    #[test]
    fn long_answers_are_split_and_cut_at_a_sentence() {
        let en = "This sentence is long enough to matter. ".repeat(8); // 320 chars
        let parts = sms_parts(&en);
        assert_eq!(parts.len(), 3);
        assert!(parts.iter().all(|p| p.chars().count() <= 153));
        let zh = "这是一句比较长的中文回答，用来测试短信拆分。".repeat(12);
        let parts = sms_parts(&zh);
        assert_eq!(parts.len(), 3);
        assert!(parts.iter().all(|p| p.chars().count() <= 67));
        assert!(parts.last().unwrap().ends_with('…'));
        assert!(parts.concat().trim_end_matches('…').ends_with('。'));
    }
}
