//! The text channels over HTTP: web chat (`web`, with phone verification in
//! `verify`), WeChat Official Account (`wechat`), SMS gateways (`sms`) and the
//! app/integrator API (`app`). Each only translates its
//! wire format; every message goes to the same dialogue core through
//! `dialogue::conversations`, so a customer is one customer on every channel.
//!
//! Bad input never reaches the core: bodies over 64 KiB get 413, malformed JSON,
//! XML or forms 400, bad signatures 403, missing tokens 401, unknown conversations
//! 404, each with a reason.

pub mod app;
pub mod follow_up;
pub mod proof;
pub mod sms;
pub mod sms_cloud;
pub mod survey;
pub mod verify;
pub mod web;
pub mod wechat;
pub mod wechat_aes;
pub mod wechat_out;
pub mod wecom;

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;

use crate::config::Config;
use crate::dialogue::conversations::{Channel, Conversations, Identity};
use crate::dialogue::reload::LiveKb;
use crate::dialogue::service::Service;
use crate::dialogue::{Lang, Reply};
pub use crate::http::ApiError;
use crate::http::routes::Table;
use crate::store::Store;

/// The largest request body a text channel accepts.
pub const MAX_BODY: usize = 64 * 1024;
/// The longest message a customer may send, in characters.
pub const MAX_MESSAGE_CHARS: usize = 2000;

/// What the text channels share.
pub struct TextChannels {
    pub wechat_token: Option<String>,
    /// Safe mode's key, when `wechat_aes_key` is set.
    pub wechat_cipher: Option<wechat_aes::Cipher>,
    /// WeChat requests already received (replays are refused).
    pub wechat_seen: wechat::Seen,
    /// How SMS messages are sent (a gateway URL, or a Chinese cloud's SMS API).
    pub sms_out: Option<crate::config::sms::SmsOut>,
    pub sms_number: Option<String>,
    /// What the SMS gateway must send with inbound messages, if set.
    pub sms_inbound_token: Option<String>,
    pub http: reqwest::Client,
    pub verifications: verify::Verifications,
    pub store: Store,
    /// Where conversations handed to a person wait for an agent.
    pub center: Arc<crate::agents::center::Center>,
    /// Agents' answers to WeChat customers (customer-service messages), when the
    /// account's AppID and AppSecret are set.
    pub wechat_out: Option<wechat_out::WechatSender>,
    /// WeCom customer service, when `[wecom]` is set.
    pub wecom: Option<Arc<wecom::Wecom>>,
    /// What each client address may spend (the HTTP routes' budgets, shared).
    pub budgets: Arc<crate::http::rate::ClientBudgets>,
    /// Reverse proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Chat WebSockets open, by client address.
    pub sockets: web::Sockets,
    /// The web chat customer's keys to their conversations.
    pub keys: proof::ChatKeys,
    /// The conversation service every channel uses.
    pub service: Arc<crate::store::ConversationService>,
    /// Ratings asked for by reply (WeChat, SMS) and not yet given.
    pub surveys: survey::Surveys,
}

impl TextChannels {
    pub fn new(
        config: &Config,
        kb: LiveKb,
        conversations: Arc<Conversations>,
        store: Store,
        center: Arc<crate::agents::center::Center>,
        key_secret: [u8; 32],
    ) -> Self {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        let wechat_out = match (&config.wechat_appid, &config.wechat_secret) {
            (Some(appid), Some(secret)) => Some(wechat_out::WechatSender::new(
                http.clone(),
                &config.wechat_api,
                appid,
                secret,
            )),
            _ => None,
        };
        let wecom = config.wecom.as_ref().and_then(|c| {
            wecom::Wecom::new(http.clone(), c)
                .map_err(|e| tracing::error!(error = %e, "WeCom is off"))
                .ok()
                .map(Arc::new)
        });
        Self {
            wecom,
            wechat_out,
            wechat_token: config.wechat_token.clone(),
            wechat_cipher: config
                .wechat_aes_key
                .as_deref()
                .zip(config.wechat_appid.as_deref())
                .and_then(|(key, appid)| wechat_aes::Cipher::new(key, appid).ok()),
            wechat_seen: wechat::Seen::default(),
            sms_out: config.sms_out.clone(),
            sms_number: config.sms_number.clone(),
            sms_inbound_token: config.sms_inbound_token.clone(),
            http,
            verifications: verify::Verifications::new(config.sms_codes_per_hour),
            budgets: Arc::new(crate::http::rate::ClientBudgets::new(config.rates)),
            trusted_proxies: config.trusted_proxies.clone(),
            sockets: web::Sockets::default(),
            keys: proof::ChatKeys::new(store.sealer().clone(), key_secret),
            service: Arc::new(Service {
                kb,
                conversations,
                records: store.clone(),
                desk: center.clone(),
            }),
            store,
            center,
            surveys: survey::Surveys::default(),
        }
    }

    /// The customer an identity belongs to: remembered, else found in the store
    /// (where a new one is created).
    pub async fn customer(&self, identity: &Identity) -> Result<String, ApiError> {
        Ok(self.service.customer(identity).await?)
    }

    /// Makes `identity` (and any customer it belonged to) part of `customer`, in the
    /// store and among the live conversations; returns the customer.
    pub async fn link(&self, customer: &str, identity: &Identity) -> Result<String, ApiError> {
        Ok(self.service.link(customer, identity).await?)
    }

    /// Starts a conversation and stores its greeting: (conversation, customer, greeting).
    pub async fn start(
        &self,
        channel: Channel,
        identity: &Identity,
        lang: Lang,
    ) -> Result<(String, String, Reply), ApiError> {
        let s = self.service.start(channel, identity, lang).await?;
        Ok((s.conversation, s.customer, s.greeting))
    }

    /// The customer's message: the reply, once both are committed to the store (and
    /// only then pushed to the conversation's subscribers).
    pub async fn message(&self, id: &str, text: &str) -> Result<Reply, ApiError> {
        if self.surveys.take(id, std::time::Instant::now())
            && let Some(score) = survey::score_of(text)
        {
            return self.rated(id, score).await;
        }
        Ok(self.service.message(id, text).await?)
    }

    /// The customer's rating of a live conversation (1 to 5 stars), given once:
    /// 400 outside 1 to 5, 404 for a conversation kefu does not have, 409 for a
    /// second rating (the first stands).
    pub async fn rate(&self, id: &str, score: u8) -> Result<(), ApiError> {
        if !(1..=5).contains(&score) {
            return Err(ApiError::bad_request("`score` is 1 to 5"));
        }
        let entry = self.service.entry(id).await?;
        let channel = crate::lock(&entry).channel;
        let stored = self
            .store
            .rate(id, channel.name(), score, chrono::Utc::now())
            .await
            .map_err(ApiError::store_unavailable)?;
        if !stored {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "this conversation is rated already",
            ));
        }
        Ok(())
    }

    /// An agent finished the conversation: a WeChat or SMS customer is asked to
    /// rate it by reply (a web chat's widget shows its stars instead).
    pub async fn ask_rating(&self, id: &str) -> Result<(), ApiError> {
        let (channel, customer, lang) = {
            // A call's wrap-up has no chat to ask in.
            let Ok(entry) = self.service.entry(id).await else {
                return Ok(());
            };
            let e = crate::lock(&entry);
            (e.channel, e.customer.clone(), e.conversation.lang)
        };
        if !matches!(channel, Channel::Sms | Channel::Wechat | Channel::Wecom) {
            return Ok(());
        }
        self.service.notice(id, survey::question).await?;
        self.deliver(channel, &customer, &survey::question(lang))
            .await?;
        self.surveys.asked(id, std::time::Instant::now());
        Ok(())
    }

    /// The customer's reply to the rating question: stored (once), thanked in
    /// the conversation and as the channel's reply.
    async fn rated(&self, id: &str, score: u8) -> Result<Reply, ApiError> {
        let (channel, lang) = {
            let entry = self.service.entry(id).await?;
            let e = crate::lock(&entry);
            (e.channel, e.conversation.lang)
        };
        match self
            .store
            .rate(id, channel.name(), score, chrono::Utc::now())
            .await
        {
            Ok(true) => tracing::info!(
                score,
                channel = channel.name(),
                "customer rated a conversation"
            ),
            Ok(false) => {
                tracing::info!("the conversation was rated already; the first rating stands")
            }
            Err(e) => tracing::error!(error = format!("{e:#}"), "cannot store a rating"),
        }
        self.service
            .notice(id, |lang| survey::thanks(lang, score))
            .await?;
        Ok(Reply {
            text: survey::thanks(lang, score),
            kind: crate::dialogue::ReplyKind::Rated,
            intent: None,
            confidence: 1.0,
            handover: None,
            reason: None,
            candidates: Vec::new(),
        })
    }

    /// Tells the customer nobody was free within the queue's maximum wait: their
    /// ticket stays open for an agent to answer later, here.
    pub async fn queue_gave_up(&self, id: &str) -> Result<(), ApiError> {
        Ok(self.service.queue_gave_up(id).await?)
    }

    /// An agent's message: stored, then pushed to the customer (web chat and app
    /// subscribers), and texted to an SMS customer through the gateway.
    pub async fn agent_message(&self, id: &str, text: &str) -> Result<(), ApiError> {
        let appended = self.service.agent_reply(id, text).await?;
        self.deliver(appended.channel, &appended.customer, text)
            .await
    }

    /// Sends `text` to `customer` where a push does not reach: by SMS through the
    /// gateway, or as a WeChat customer-service message.
    async fn deliver(&self, channel: Channel, customer: &str, text: &str) -> Result<(), ApiError> {
        let to = self.service.conversations.identities_of(customer);
        self.deliver_to(channel, &to, text).await
    }

    /// Sends `text` by SMS or WeChat to the first of `to` of that kind.
    async fn deliver_to(
        &self,
        channel: Channel,
        to: &[Identity],
        text: &str,
    ) -> Result<(), ApiError> {
        if channel == Channel::Sms
            && let Some(out) = &self.sms_out
            && let Some(to) = to
                .iter()
                .find(|i| i.kind == crate::dialogue::conversations::IdentityKind::Sms)
        {
            let from = self.sms_number.clone().unwrap_or_default();
            let parts = sms::sms_parts(text);
            if let Err(e) = sms_cloud::send(&self.http, out, &to.value, &from, &parts).await {
                return Err(ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    format!("recorded, but the SMS gateway refused it: {e}"),
                ));
            }
        }
        if channel == Channel::Wecom
            && let Some(w) = &self.wecom
            && let Some(to) = to
                .iter()
                .find(|i| i.kind == crate::dialogue::conversations::IdentityKind::Wecom)
            && let Err(e) = w.send_text(&to.value, text).await
        {
            tracing::error!(error = %e, "WeCom refused an agent's answer");
            return Err(ApiError::new(
                StatusCode::BAD_GATEWAY,
                format!("recorded, but WeCom refused it: {e}"),
            ));
        }
        if channel == Channel::Wechat {
            let Some(sender) = &self.wechat_out else {
                return Err(ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "recorded, but WeChat answers need `wechat_appid` and `wechat_secret`",
                ));
            };
            if let Some(to) = to
                .iter()
                .find(|i| i.kind == crate::dialogue::conversations::IdentityKind::Wechat)
                && let Err(e) = sender.send_text(&to.value, text).await
            {
                tracing::error!(error = %e, "WeChat refused an agent's answer");
                return Err(ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    format!("recorded, but WeChat refused it: {e}"),
                ));
            }
        }
        Ok(())
    }

    /// Runs what matching `text` needs from the sentence-embedding model on a
    /// blocking thread (see `dialogue::service::Service::warm`).
    pub async fn warm(&self, text: &str) {
        self.service.warm(text).await;
    }
}

pub fn router(table: &mut Table, state: Arc<TextChannels>) -> Router {
    let r = table.routes();
    let r = web::routes(r);
    let r = wechat::routes(r);
    let r = wecom::routes(r);
    let r = sms::routes(r);
    let r = app::routes(r);
    let r = verify::routes(r);
    r.build()
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// The history of a conversation (web chat and the app API).
pub async fn read_history(s: &TextChannels, id: String) -> Result<Json<web::History>, ApiError> {
    let entry = s.service.entry(&id).await?;
    let turns = crate::lock(&entry).conversation.history.clone();
    Ok(Json(web::History {
        conversation: id,
        turns,
    }))
}

/// The customer's message in a conversation (web chat and the app API): the reply.
pub async fn post_message(
    s: &TextChannels,
    id: &str,
    body: Result<Json<web::PostMessage>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<crate::dialogue::Reply>, ApiError> {
    let Json(msg) = body?;
    let text = message_text(&msg.text)?;
    Ok(Json(s.message(id, text).await?))
}

/// The customer's text, checked: not empty, not too long.
pub fn message_text(text: &str) -> Result<&str, ApiError> {
    let t = text.trim();
    if t.is_empty() {
        return Err(ApiError::bad_request("`text` is empty"));
    }
    if t.chars().count() > MAX_MESSAGE_CHARS {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("`text` is longer than {MAX_MESSAGE_CHARS} characters"),
        ));
    }
    Ok(t)
}
