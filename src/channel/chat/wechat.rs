//! WeChat Official Account, server mode: URL verification and passive replies.
//!
//! WeChat signs every request with SHA-1 over the sorted token, timestamp and nonce;
//! a wrong signature gets 403. A text message gets the answer as a passive XML reply
//! at once (the engine answers in milliseconds, well inside WeChat's 5 s window);
//! images, voice and other types get a polite text; following the account gets the
//! greeting.
//!
//! With `wechat_aes_key` set the account runs in safe mode (see `wechat_aes`):
//! requests must be encrypted and carry `msg_signature`, which covers the
//! ciphertext, and replies are encrypted. In either mode a request's timestamp and
//! nonce are accepted once: a captured request sent again is refused.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{Duration, Utc};
use serde::Deserialize;
use sha1::{Digest, Sha1};

use super::{ApiError, TextChannels};
use crate::auth::Permission::Public;
use crate::dialogue::conversations::{Channel, Identity, IdentityKind};
use crate::dialogue::text::Lang;
use crate::http::routes::{Routes, Verb::*};

/// A WeChat conversation continues while messages come within this gap.
const SESSION_GAP_MINUTES: i64 = 30;
/// Requests signed further from now than this are refused (replays).
const MAX_CLOCK_SKEW_SECS: i64 = 300;

pub fn routes(r: Routes<'_, Arc<TextChannels>>) -> Routes<'_, Arc<TextChannels>> {
    // WeChat signs every request with the shared token: the signature is the proof.
    r.add(Get, "/wechat", Public, verify)
        .add(Post, "/wechat", Public, receive)
}

#[derive(Deserialize)]
pub struct Signed {
    signature: Option<String>,
    timestamp: Option<String>,
    nonce: Option<String>,
    echostr: Option<String>,
    /// Safe mode: "aes", and the signature over the ciphertext.
    encrypt_type: Option<String>,
    msg_signature: Option<String>,
}

/// Requests seen within the clock-skew window, by timestamp and nonce: one seen
/// again is a replay.
#[derive(Debug, Default)]
pub struct Seen(Mutex<HashMap<String, i64>>);

impl Seen {
    /// Keys remembered before old ones are dropped.
    const TIDY_ABOVE: usize = 100_000;

    /// Whether this request is new (and remembers it).
    pub fn first_time(&self, timestamp: i64, nonce: &str, now: i64) -> bool {
        let mut seen = crate::lock(&self.0);
        if seen.len() > Self::TIDY_ABOVE {
            seen.retain(|_, t| (now - *t).abs() <= MAX_CLOCK_SKEW_SECS);
        }
        seen.insert(format!("{timestamp}:{nonce}"), timestamp)
            .is_none()
    }
}

/// SHA-1 over the sorted, concatenated token, timestamp and nonce, as lower-case hex.
pub fn signature(token: &str, timestamp: &str, nonce: &str) -> String {
    let mut parts = [token, timestamp, nonce];
    parts.sort_unstable();
    hex::encode(Sha1::digest(parts.concat().as_bytes()))
}

/// Checks a request's signature and timestamp: `signature` over the token,
/// timestamp and nonce, or in safe mode `msg_signature`, which also covers the
/// ciphertext `encrypted`. Returns the timestamp.
fn check(s: &TextChannels, q: &Signed, encrypted: Option<&str>) -> Result<i64, ApiError> {
    let Some(token) = &s.wechat_token else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "WeChat is not configured (set `wechat_token`)",
        ));
    };
    let given = match encrypted {
        Some(_) => &q.msg_signature,
        None => &q.signature,
    };
    let (Some(sig), Some(ts), Some(nonce)) = (given, &q.timestamp, &q.nonce) else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "missing signature, timestamp or nonce",
        ));
    };
    let expected = match encrypted {
        Some(e) => super::wechat_aes::msg_signature(token, ts, nonce, e),
        None => signature(token, ts, nonce),
    };
    signed_at(&expected, sig, ts)
}

/// Whether `given` is the `expected` signature and `ts` is near now (WeChat's and
/// WeCom's callbacks alike): the timestamp.
pub(super) fn signed_at(expected: &str, given: &str, ts: &str) -> Result<i64, ApiError> {
    if !crate::auth::same_secret(expected, &given.to_ascii_lowercase()) {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "bad signature"));
    }
    let ts: i64 = ts
        .parse()
        .map_err(|_| ApiError::new(StatusCode::FORBIDDEN, "timestamp is not a number"))?;
    if (Utc::now().timestamp() - ts).abs() > MAX_CLOCK_SKEW_SECS {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "timestamp too far from now",
        ));
    }
    Ok(ts)
}

/// The URL check WeChat makes when the server address is configured: echo `echostr`.
async fn verify(
    State(s): State<Arc<TextChannels>>,
    Query(q): Query<Signed>,
) -> Result<String, ApiError> {
    check(&s, &q, None)?;
    q.echostr
        .ok_or_else(|| ApiError::bad_request("missing echostr"))
}

/// A safe-mode request: the message, encrypted.
#[derive(Deserialize, Debug)]
#[serde(rename_all = "PascalCase")]
struct Sealed {
    encrypt: String,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "PascalCase")]
struct Incoming {
    to_user_name: String,
    from_user_name: String,
    msg_type: String,
    content: Option<String>,
    event: Option<String>,
}

async fn receive(
    State(s): State<Arc<TextChannels>>,
    Query(q): Query<Signed>,
    body: String,
) -> Result<Response, ApiError> {
    let (ts, body) = match &s.wechat_cipher {
        Some(cipher) => {
            if q.encrypt_type.as_deref() != Some("aes") {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "this account runs in safe mode: messages must be encrypted (encrypt_type=aes)",
                ));
            }
            let sealed: Sealed = quick_xml::de::from_str(&body)
                .map_err(|e| ApiError::bad_request(format!("malformed WeChat XML: {e}")))?;
            let ts = check(&s, &q, Some(&sealed.encrypt))?;
            let opened = cipher
                .decrypt(&sealed.encrypt)
                .map_err(|e| ApiError::new(StatusCode::FORBIDDEN, e))?;
            (ts, opened)
        }
        None => (check(&s, &q, None)?, body),
    };
    let nonce = q.nonce.as_deref().unwrap_or_default();
    if !s.wechat_seen.first_time(ts, nonce, Utc::now().timestamp()) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "this request was already received (same timestamp and nonce): a replay",
        ));
    }
    let msg: Incoming = quick_xml::de::from_str(&body)
        .map_err(|e| ApiError::bad_request(format!("malformed WeChat XML: {e}")))?;
    if msg.from_user_name.is_empty() || msg.from_user_name.len() > 128 {
        return Err(ApiError::bad_request(
            "FromUserName must be 1 to 128 characters",
        ));
    }
    let identity = Identity::new(IdentityKind::Wechat, &msg.from_user_name);
    let now = Utc::now();
    let recent = s
        .service
        .recent(
            Channel::Wechat,
            &identity,
            Duration::minutes(SESSION_GAP_MINUTES),
        )
        .await?;
    let text = match (msg.msg_type.as_str(), msg.event.as_deref()) {
        ("event", Some("subscribe")) => {
            let (_, _, greeting) = s.start(Channel::Wechat, &identity, Lang::Zh).await?;
            greeting.text
        }
        ("event", _) => return Ok("success".into_response()),
        ("text", _) => {
            let content = msg.content.as_deref().unwrap_or("");
            let content = super::message_text(content)?;
            let id = match recent {
                Some(id) => id,
                None => s.start(Channel::Wechat, &identity, Lang::detect(content)).await?.0,
            };
            s.message(&id, content).await?.text
        }
        _ => "抱歉，我暂时只能看懂文字消息，请用文字描述您的问题。Sorry, I can only read text messages for now.".to_string(),
    };
    if text.is_empty() {
        // Already with a person: nothing to say now ("success" tells WeChat so).
        return Ok("success".into_response());
    }
    let xml = format!(
        "<xml><ToUserName>{}</ToUserName><FromUserName>{}</FromUserName><CreateTime>{}</CreateTime><MsgType>{}</MsgType><Content>{}</Content></xml>",
        cdata(&msg.from_user_name),
        cdata(&msg.to_user_name),
        now.timestamp(),
        cdata("text"),
        cdata(&text)
    );
    let xml = match &s.wechat_cipher {
        Some(cipher) => seal(&s, cipher, &xml, now.timestamp()),
        None => xml,
    };
    Ok((
        [(header::CONTENT_TYPE, "application/xml; charset=utf-8")],
        xml,
    )
        .into_response())
}

/// A reply in safe mode: encrypted, with its own timestamp, nonce and signature.
fn seal(s: &TextChannels, cipher: &super::wechat_aes::Cipher, xml: &str, now: i64) -> String {
    let encrypted = cipher.encrypt(xml, rand::random());
    let nonce = rand::random_range(1_000_000_000u64..10_000_000_000).to_string();
    let ts = now.to_string();
    let token = s.wechat_token.as_deref().unwrap_or_default();
    let sig = super::wechat_aes::msg_signature(token, &ts, &nonce, &encrypted);
    format!(
        "<xml><Encrypt>{}</Encrypt><MsgSignature>{}</MsgSignature><TimeStamp>{ts}</TimeStamp><Nonce>{}</Nonce></xml>",
        cdata(&encrypted),
        cdata(&sig),
        cdata(&nonce)
    )
}

/// Text as CDATA; a `]]>` inside is split across two sections.
fn cdata(s: &str) -> String {
    format!("<![CDATA[{}]]>", s.replace("]]>", "]]]]><![CDATA[>"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_sorts_the_parts() {
        // The three parts sorted: "1409304348" < "kefu" < "xxxxxx".
        let expected = hex::encode(Sha1::digest(b"1409304348kefuxxxxxx"));
        assert_eq!(signature("kefu", "1409304348", "xxxxxx"), expected);
        assert_eq!(signature("kefu", "xxxxxx", "1409304348"), expected);
    }

    #[test]
    fn cdata_cannot_be_broken_out_of() {
        assert_eq!(cdata("a]]>b"), "<![CDATA[a]]]]><![CDATA[>b]]>");
    }
}
