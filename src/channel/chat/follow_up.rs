//! An agent's reply on a ticket, later, on the channel the customer used.
//!
//! While the conversation is live (kefu remembers it) the reply goes as any
//! agent's message: stored, pushed to the web chat or app, texted, or sent to
//! WeChat. Once kefu has forgotten it (a restart, the conversation limit), the
//! reply is stored as the conversation's next turn and sent by SMS or as a WeChat
//! customer-service message to the identity the store holds; a web chat or app
//! customer finds it when they are back (the reply says so, as `Reach::Stored`).

use chrono::Utc;
use serde::Serialize;

use super::TextChannels;
use crate::dialogue::conversations::{Channel, Identity};
use crate::dialogue::engine::{Speaker, Turn};
use crate::http::ApiError;
use crate::store::TurnsWrite;

/// How a reply reached the customer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reach {
    /// Into the live conversation (pushed, texted or sent to WeChat).
    Live,
    /// Sent by SMS or WeChat to the customer's stored identity.
    Sent,
    /// Stored in the conversation; the customer sees it when they are back.
    Stored,
}

impl Reach {
    /// As the API and the audit log name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Reach::Live => "live",
            Reach::Sent => "sent",
            Reach::Stored => "stored",
        }
    }
}

fn unavailable(e: anyhow::Error) -> ApiError {
    ApiError::store_unavailable(e)
}

impl TextChannels {
    /// Replies `text` in conversation `id` (a ticket's), live or later.
    pub async fn reply_later(&self, id: &str, text: &str) -> Result<Reach, ApiError> {
        // Live here: pushed. Otherwise stored as the conversation's next turn
        // (a node or restart that takes the conversation up reads it back), not
        // brought back into memory for a reply nobody may be reading.
        if self.service.conversations.get(id).is_ok() {
            self.agent_message(id, text).await?;
            return Ok(Reach::Live);
        }
        let Some((channel, customer, next)) =
            self.store.conversation_end(id).await.map_err(unavailable)?
        else {
            return Err(ApiError::new(
                axum::http::StatusCode::NOT_FOUND,
                format!("there is no conversation {id:?}"),
            ));
        };
        let channel = Channel::named(&channel).ok_or_else(|| {
            ApiError::new(
                axum::http::StatusCode::CONFLICT,
                format!("conversation {id:?} is on an unknown channel {channel:?}"),
            )
        })?;
        if channel == Channel::Phone {
            return Err(ApiError::new(
                axum::http::StatusCode::CONFLICT,
                "this was a phone call: follow it up by calling back",
            ));
        }
        let now = Utc::now();
        self.store
            .record_turns(TurnsWrite {
                conversation: id.to_string(),
                channel,
                customer: customer.clone(),
                call_id: None,
                started: now,
                updated: now,
                first_seq: next,
                turns: vec![Turn {
                    at: now,
                    speaker: Speaker::Agent,
                    text: text.to_string(),
                    intent: None,
                    confidence: None,
                }],
                latency_us: None,
                state: None,
            })
            .await
            .map_err(unavailable)?;
        if !matches!(channel, Channel::Sms | Channel::Wechat | Channel::Wecom) {
            return Ok(Reach::Stored);
        }
        let to: Vec<Identity> = self
            .store
            .identities_of(&customer)
            .await
            .map_err(unavailable)?
            .into_iter()
            .filter_map(|(kind, value)| {
                Some(Identity::new(
                    crate::store::identity_kind_named(&kind)?,
                    value,
                ))
            })
            .collect();
        self.deliver_to(channel, &to, text).await?;
        Ok(Reach::Sent)
    }
}
