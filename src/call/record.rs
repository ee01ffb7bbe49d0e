//! The call record: one structured log event per call, for billing, analytics and
//! troubleshooting (the store issue persists it).

use chrono::{DateTime, Utc};
use serde::Serialize;

#[derive(Debug, Default, Serialize)]
pub struct CallRecord {
    pub call_id: String,
    pub from: String,
    pub to: String,
    pub trunk: Option<String>,
    pub transport: &'static str,
    pub dialplan: String,
    pub dialplan_version: String,
    pub codec: String,
    pub dtmf_mode: String,
    pub invite_at: Option<DateTime<Utc>>,
    pub answer_at: Option<DateTime<Utc>>,
    pub end_at: Option<DateTime<Utc>>,
    /// Nodes visited, in order.
    pub path: Vec<String>,
    /// Prompt files that were played (started sounding), in order.
    pub prompts: Vec<String>,
    /// Keys received, in order, with how each arrived.
    pub digits: String,
    pub digit_sources: Vec<&'static str>,
    /// What the caller said at `listen` nodes, in order.
    pub utterances: Vec<String>,
    /// The conversation with the dialogue core at `ask` nodes: the caller's words and
    /// the answers spoken, with intents and confidence.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dialogue: Vec<crate::dialogue::engine::Turn>,
    /// Variables the dialplan collected or set.
    pub vars: std::collections::BTreeMap<String, String>,
    pub end_reason: String,
    pub rtp_sent: u64,
    pub rtp_received: u64,
    pub rtp_lost: u64,
    /// Interarrival jitter of the caller's stream, in milliseconds.
    pub rtp_jitter_ms: f64,
    /// The conversation the call's `ask` nodes held, as the store knows it.
    pub conversation: Option<String>,
    /// The sequence number of `dialogue`'s first turn (earlier ones were dropped from
    /// a very long conversation's history).
    #[serde(skip)]
    pub dialogue_first_seq: usize,
}

impl CallRecord {
    /// Writes the record as one log event (target `kefu::call_record`).
    pub fn emit(&self) {
        match serde_json::to_string(self) {
            Ok(json) => tracing::info!(target: "kefu::call_record", record = %json, "call ended"),
            Err(e) => {
                tracing::error!(error = %e, call_id = %self.call_id, "cannot serialise call record")
            }
        }
    }
}
