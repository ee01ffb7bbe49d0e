//! WeCom customer service (微信客服): WeChat users writing to a company's WeCom
//! customer-service account, answered by kefu through WeCom's API.
//!
//! - The callback (`GET /wecom`: the URL check, `POST /wecom`: events) is signed
//!   and encrypted as WeChat's safe mode is (`msg_signature`: SHA-1 over the
//!   sorted token, timestamp, nonce and ciphertext; AES-256-CBC with the
//!   EncodingAESKey, the CorpID as the receiver), so `wechat_aes` opens it.
//! - An event says only that messages wait (`kf_msg_or_event`, with a short-lived
//!   `Token` and the account's `OpenKfId`); kefu pulls them with
//!   `/cgi-bin/kf/sync_msg` from its cursor, answers each customer's text through
//!   the dialogue core, and sends the reply with `/cgi-bin/kf/send_msg`. The
//!   access token comes from `/cgi-bin/gettoken` (CorpID and the app's Secret),
//!   kept until shortly before it expires, or until WeCom says it is stale.
//! - Messages already seen (by `msgid`) are skipped: WeCom may send the same
//!   event twice, and a cursor lost with a restart starts from WeCom's last days.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use super::wechat_aes::{Cipher, msg_signature};
use super::{ApiError, TextChannels};
use crate::auth::Permission::Public;
use crate::dialogue::conversations::{Channel, Identity, IdentityKind};
use crate::dialogue::text::Lang;
use crate::http::routes::{Routes, Verb::*};

/// A conversation continues while messages come within this gap.
const SESSION_GAP_MINUTES: i64 = 30;
/// WeCom's error codes for an access token that is invalid or expired.
const TOKEN_ERRORS: [i64; 3] = [40001, 40014, 42001];
/// Message ids remembered, to skip a message pulled twice.
const SEEN: usize = 20_000;

pub fn routes(r: Routes<'_, Arc<TextChannels>>) -> Routes<'_, Arc<TextChannels>> {
    r.add(Get, "/wecom", Public, verify)
        .add(Post, "/wecom", Public, event)
}

/// The WeCom account kefu answers for.
pub struct Wecom {
    http: reqwest::Client,
    api: String,
    corp_id: String,
    secret: String,
    token: String,
    cipher: Cipher,
    access: Mutex<Option<(String, Instant)>>,
    /// Each customer-service account's cursor in its message stream.
    cursors: Mutex<HashMap<String, String>>,
    seen: std::sync::Mutex<(HashSet<String>, std::collections::VecDeque<String>)>,
}

impl std::fmt::Debug for Wecom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wecom")
            .field("api", &self.api)
            .field("corp_id", &self.corp_id)
            .finish_non_exhaustive()
    }
}

impl Wecom {
    pub fn new(http: reqwest::Client, c: &crate::config::wecom::Wecom) -> Result<Self, String> {
        Ok(Self {
            http,
            api: c.api.trim_end_matches('/').to_string(),
            corp_id: c.corp_id.clone(),
            secret: c.secret.clone(),
            token: c.token.clone(),
            cipher: Cipher::new(&c.aes_key, &c.corp_id)?,
            access: Mutex::new(None),
            cursors: Mutex::new(HashMap::new()),
            seen: std::sync::Mutex::default(),
        })
    }

    async fn access_token(&self, fresh: bool) -> Result<String, String> {
        let mut held = self.access.lock().await;
        if !fresh
            && let Some((t, until)) = held.as_ref()
            && Instant::now() < *until
        {
            return Ok(t.clone());
        }
        let url = reqwest::Url::parse_with_params(
            &format!("{}/cgi-bin/gettoken", self.api),
            &[
                ("corpid", self.corp_id.as_str()),
                ("corpsecret", self.secret.as_str()),
            ],
        )
        .map_err(|e| format!("bad [wecom] `api`: {e}"))?;
        let r: Value = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| format!("WeCom token request failed: {}", e.without_url()))?
            .json()
            .await
            .map_err(|e| format!("WeCom token reply: {}", e.without_url()))?;
        match r["access_token"].as_str() {
            Some(t) if r["errcode"].as_i64().unwrap_or(0) == 0 => {
                let life = Duration::from_secs(r["expires_in"].as_u64().unwrap_or(7200));
                *held = Some((
                    t.to_string(),
                    Instant::now() + life.saturating_sub(Duration::from_secs(300)),
                ));
                Ok(t.to_string())
            }
            _ => Err(format!(
                "WeCom refused the access token: {} {}",
                r["errcode"],
                r["errmsg"].as_str().unwrap_or("")
            )),
        }
    }

    /// POSTs `body` to `/cgi-bin/kf/{call}`; one retry with a new token when WeCom
    /// says the token went stale.
    async fn call(&self, call: &str, body: &Value) -> Result<Value, String> {
        for attempt in 0..2 {
            let token = self.access_token(attempt > 0).await?;
            let url = reqwest::Url::parse_with_params(
                &format!("{}/cgi-bin/kf/{call}", self.api),
                &[("access_token", token.as_str())],
            )
            .map_err(|e| format!("bad [wecom] `api`: {e}"))?;
            let r: Value = self
                .http
                .post(url)
                .json(body)
                .send()
                .await
                .map_err(|e| format!("WeCom {call} failed: {}", e.without_url()))?
                .json()
                .await
                .map_err(|e| format!("WeCom {call} reply: {}", e.without_url()))?;
            match r["errcode"].as_i64().unwrap_or(0) {
                0 => return Ok(r),
                code if TOKEN_ERRORS.contains(&code) && attempt == 0 => continue,
                code => {
                    return Err(format!(
                        "WeCom refused {call}: {code} {}",
                        r["errmsg"].as_str().unwrap_or("")
                    ));
                }
            }
        }
        Err("WeCom kept refusing the access token".into())
    }

    /// Sends `text` to the customer known as `to` (`OPEN_KFID:EXTERNAL_USERID`:
    /// the account they wrote to and who they are).
    pub async fn send_text(&self, to: &str, text: &str) -> Result<(), String> {
        let (account, user) = to
            .split_once(':')
            .ok_or("not a WeCom customer's identity (account:user)")?;
        self.call(
            "send_msg",
            &json!({
                "touser": user,
                "open_kfid": account,
                "msgtype": "text",
                "text": { "content": text },
            }),
        )
        .await
        .map(|_| ())
    }

    /// Whether message `id` is new (and remembers it).
    fn first_time(&self, id: &str) -> bool {
        let mut seen = crate::lock(&self.seen);
        if !seen.0.insert(id.to_string()) {
            return false;
        }
        seen.1.push_back(id.to_string());
        if seen.1.len() > SEEN
            && let Some(old) = seen.1.pop_front()
        {
            seen.0.remove(&old);
        }
        true
    }
}

#[derive(Deserialize, Debug)]
struct Signed {
    msg_signature: Option<String>,
    timestamp: Option<String>,
    nonce: Option<String>,
    echostr: Option<String>,
}

fn wecom(s: &TextChannels) -> Result<&Wecom, ApiError> {
    s.wecom.as_deref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "WeCom customer service is not configured ([wecom])",
        )
    })
}

/// Checks `msg_signature` over `encrypted` and the timestamp's freshness.
fn check(w: &Wecom, q: &Signed, encrypted: &str) -> Result<(), ApiError> {
    let (Some(sig), Some(ts), Some(nonce)) = (&q.msg_signature, &q.timestamp, &q.nonce) else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "missing msg_signature, timestamp or nonce",
        ));
    };
    let expected = msg_signature(&w.token, ts, nonce, encrypted);
    super::wechat::signed_at(&expected, sig, ts).map(|_| ())
}

/// The URL check WeCom makes when the callback is set: decrypt `echostr`.
async fn verify(
    State(s): State<Arc<TextChannels>>,
    Query(q): Query<Signed>,
) -> Result<String, ApiError> {
    let w = wecom(&s)?;
    let echo = q
        .echostr
        .as_deref()
        .ok_or_else(|| ApiError::bad_request("missing echostr"))?;
    check(w, &q, echo)?;
    w.cipher
        .decrypt(echo)
        .map_err(|e| ApiError::new(StatusCode::FORBIDDEN, e))
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "PascalCase")]
struct Sealed {
    encrypt: String,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "PascalCase")]
struct Notice {
    event: Option<String>,
    token: Option<String>,
    open_kf_id: Option<String>,
}

/// An event: messages wait. Answered at once; they are pulled and answered in
/// the background (WeCom wants its callback answered within seconds).
async fn event(
    State(s): State<Arc<TextChannels>>,
    Query(q): Query<Signed>,
    body: String,
) -> Result<&'static str, ApiError> {
    let w = wecom(&s)?;
    let sealed: Sealed = quick_xml::de::from_str(&body)
        .map_err(|e| ApiError::bad_request(format!("malformed WeCom XML: {e}")))?;
    check(w, &q, &sealed.encrypt)?;
    let opened = w
        .cipher
        .decrypt(&sealed.encrypt)
        .map_err(|e| ApiError::new(StatusCode::FORBIDDEN, e))?;
    let notice: Notice = quick_xml::de::from_str(&opened)
        .map_err(|e| ApiError::bad_request(format!("malformed WeCom event: {e}")))?;
    if let (Some("kf_msg_or_event"), Some(token), Some(account)) =
        (notice.event.as_deref(), notice.token, notice.open_kf_id)
    {
        if token.len() > 256 || account.len() > 128 {
            return Err(ApiError::bad_request("Token or OpenKfId too long"));
        }
        let s = s.clone();
        tokio::spawn(async move {
            if let Err(e) = pull(&s, &token, &account).await {
                tracing::error!(error = %e, "cannot pull WeCom messages");
            }
        });
    }
    Ok("success")
}

/// Pulls the account's waiting messages and answers each customer's text.
async fn pull(s: &TextChannels, token: &str, account: &str) -> Result<(), String> {
    let Some(w) = s.wecom.as_deref() else {
        return Ok(());
    };
    // One pull at a time per account: the cursor moves in order.
    let mut cursors = w.cursors.lock().await;
    for _ in 0..50 {
        let cursor = cursors.get(account).cloned().unwrap_or_default();
        let r = w
            .call(
                "sync_msg",
                &json!({ "cursor": cursor, "token": token, "limit": 1000, "open_kfid": account }),
            )
            .await?;
        for m in r["msg_list"].as_array().into_iter().flatten() {
            let id = m["msgid"].as_str().unwrap_or_default();
            // origin 3: the customer wrote (4: system events, 5: an agent in WeCom).
            if id.is_empty() || !w.first_time(id) || m["origin"].as_i64() != Some(3) {
                continue;
            }
            let Some(user) = m["external_userid"]
                .as_str()
                .filter(|u| !u.is_empty() && u.len() <= 128)
            else {
                continue;
            };
            let text = match m["msgtype"].as_str() {
                Some("text") => m["text"]["content"].as_str().unwrap_or_default(),
                _ => "",
            };
            // A customer is known per account they write to: replies go back there.
            let who = format!("{account}:{user}");
            let answer = match answer(s, &who, text).await {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e.reason, "a WeCom message was not answered");
                    continue;
                }
            };
            if !answer.is_empty()
                && let Err(e) = w.send_text(&who, &answer).await
            {
                tracing::error!(error = %e, "WeCom refused kefu's answer");
            }
        }
        if let Some(next) = r["next_cursor"].as_str() {
            cursors.insert(account.to_string(), next.to_string());
        }
        if r["has_more"].as_i64() != Some(1) {
            break;
        }
    }
    Ok(())
}

/// The dialogue's answer to a customer's text (empty while a person has them).
async fn answer(s: &TextChannels, who: &str, text: &str) -> Result<String, ApiError> {
    if text.trim().is_empty() {
        return Ok("抱歉，我暂时只能看懂文字消息，请用文字描述您的问题。Sorry, I can only read text messages for now.".into());
    }
    let text = super::message_text(text)?;
    let identity = Identity::new(IdentityKind::Wecom, who);
    let recent = s
        .service
        .recent(
            Channel::Wecom,
            &identity,
            chrono::Duration::minutes(SESSION_GAP_MINUTES),
        )
        .await?;
    let id = match recent {
        Some(id) => id,
        None => {
            s.start(Channel::Wecom, &identity, Lang::detect(text))
                .await?
                .0
        }
    };
    Ok(s.message(&id, text).await?.text)
}
