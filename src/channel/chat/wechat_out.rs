//! Messages to WeChat customers outside the 5 s passive-reply window (an agent's
//! answer): the Official Account's customer-service message API. kefu fetches an
//! access token with the account's AppID and AppSecret, keeps it until shortly
//! before it expires (or WeChat says it is invalid), and posts each text to
//! `/cgi-bin/message/custom/send`. `wechat_api` points elsewhere (a proxy).

use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::sync::Mutex;

/// A token is renewed this long before WeChat says it expires.
const RENEW_BEFORE: Duration = Duration::from_secs(300);
/// WeChat's error codes for an access token that is invalid or expired.
const TOKEN_ERRORS: [i64; 3] = [40001, 40014, 42001];

pub struct WechatSender {
    http: reqwest::Client,
    api: String,
    appid: String,
    secret: String,
    token: Mutex<Option<(String, Instant)>>,
}

impl std::fmt::Debug for WechatSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WechatSender")
            .field("api", &self.api)
            .field("appid", &self.appid)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct TokenReply {
    access_token: Option<String>,
    expires_in: Option<u64>,
    errcode: Option<i64>,
    errmsg: Option<String>,
}

#[derive(Deserialize)]
struct SendReply {
    errcode: Option<i64>,
    errmsg: Option<String>,
}

impl WechatSender {
    pub fn new(http: reqwest::Client, api: &str, appid: &str, secret: &str) -> Self {
        Self {
            http,
            api: api.trim_end_matches('/').to_string(),
            appid: appid.to_string(),
            secret: secret.to_string(),
            token: Mutex::new(None),
        }
    }

    async fn token(&self, fresh: bool) -> Result<String, String> {
        let mut held = self.token.lock().await;
        if !fresh
            && let Some((t, until)) = held.as_ref()
            && Instant::now() < *until
        {
            return Ok(t.clone());
        }
        let url = reqwest::Url::parse_with_params(
            &format!("{}/cgi-bin/token", self.api),
            &[
                ("grant_type", "client_credential"),
                ("appid", self.appid.as_str()),
                ("secret", self.secret.as_str()),
            ],
        )
        .map_err(|e| format!("bad `wechat_api`: {e}"))?;
        let reply: TokenReply = self
            .http
            .get(url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| format!("WeChat token request failed: {e}"))?
            .json()
            .await
            .map_err(|e| format!("WeChat token reply: {e}"))?;
        match reply.access_token {
            Some(t) if reply.errcode.unwrap_or(0) == 0 => {
                let life = Duration::from_secs(reply.expires_in.unwrap_or(7200));
                *held = Some((
                    t.clone(),
                    Instant::now() + life.saturating_sub(RENEW_BEFORE),
                ));
                Ok(t)
            }
            _ => Err(format!(
                "WeChat refused the access token: {} {}",
                reply.errcode.unwrap_or(-1),
                reply.errmsg.unwrap_or_default()
            )),
        }
    }

    /// Sends `text` to the customer with this OpenID; one retry with a new token
    /// when WeChat says the token went stale.
    pub async fn send_text(&self, openid: &str, text: &str) -> Result<(), String> {
        let body = serde_json::json!({
            "touser": openid,
            "msgtype": "text",
            "text": { "content": text },
        });
        for attempt in 0..2 {
            let token = self.token(attempt > 0).await?;
            let url = reqwest::Url::parse_with_params(
                &format!("{}/cgi-bin/message/custom/send", self.api),
                &[("access_token", token.as_str())],
            )
            .map_err(|e| format!("bad `wechat_api`: {e}"))?;
            let reply: SendReply = self
                .http
                .post(url)
                .json(&body)
                .send()
                .await
                .and_then(|r| r.error_for_status())
                .map_err(|e| format!("WeChat send failed: {e}"))?
                .json()
                .await
                .map_err(|e| format!("WeChat send reply: {e}"))?;
            match reply.errcode.unwrap_or(0) {
                0 => return Ok(()),
                code if TOKEN_ERRORS.contains(&code) && attempt == 0 => continue,
                code => {
                    return Err(format!(
                        "WeChat refused the message: {code} {}",
                        reply.errmsg.unwrap_or_default()
                    ));
                }
            }
        }
        Err("WeChat kept refusing the access token".into())
    }
}
