//! The call record: stored whole (sealed) when the call ends, and logged as a
//! summary without personal data (no numbers, keys, words or rendered prompts: logs
//! are not encrypted), for troubleshooting and log-based metrics.

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
    /// The recognizer's confidence in each utterance, 0–1.
    pub asr_confidence: Vec<f32>,
    /// The conversation with the dialogue core at `ask` nodes: the caller's words and
    /// the answers spoken, with intents and confidence.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dialogue: Vec<crate::dialogue::engine::Turn>,
    /// Variables the dialplan collected or set.
    pub vars: std::collections::BTreeMap<String, String>,
    pub end_reason: super::EndReason,
    pub rtp_sent: u64,
    pub rtp_received: u64,
    pub rtp_lost: u64,
    /// Interarrival jitter of the caller's stream, in milliseconds.
    pub rtp_jitter_ms: f64,
    /// RTCP with the caller while the call was with the IVR: reports sent, and
    /// what the caller reported about kefu's stream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtcp: Option<Rtcp>,
    /// The warm transfer, when the plan asked for one: agents rung, who took the
    /// call, how long the caller waited and talked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transfer: Option<super::transfer::TransferLog>,
    /// The conversation the call's `ask` nodes held, as the store knows it.
    pub conversation: Option<String>,
    /// The sequence number of `dialogue`'s first turn (earlier ones were dropped from
    /// a very long conversation's history).
    #[serde(skip)]
    pub dialogue_first_seq: usize,
}

/// RTCP with the caller (see `call::reports`).
#[derive(Debug, Default, Serialize)]
pub struct Rtcp {
    pub sent: u32,
    pub far_end: crate::channel::rtp::rtcp::FarEnd,
}

/// What the log keeps of a call record.
#[derive(Debug, Serialize)]
pub struct CallSummary<'a> {
    pub call_id: &'a str,
    pub trunk: Option<&'a str>,
    pub transport: &'static str,
    pub dialplan: &'a str,
    pub dialplan_version: &'a str,
    pub codec: &'a str,
    pub dtmf_mode: &'a str,
    pub invite_at: Option<DateTime<Utc>>,
    pub answer_at: Option<DateTime<Utc>>,
    pub end_at: Option<DateTime<Utc>>,
    pub path: &'a [String],
    pub prompts_played: usize,
    pub digits: usize,
    pub utterances: usize,
    pub turns: usize,
    pub end_reason: &'a super::EndReason,
    pub transferred: bool,
    /// Milliseconds from the request for a person to an agent on the line.
    pub transfer_wait_ms: Option<u64>,
    pub rtp_sent: u64,
    pub rtp_received: u64,
    pub rtp_lost: u64,
    pub rtp_jitter_ms: f64,
}

impl CallRecord {
    pub fn summary(&self) -> CallSummary<'_> {
        CallSummary {
            call_id: &self.call_id,
            trunk: self.trunk.as_deref(),
            transport: self.transport,
            dialplan: &self.dialplan,
            dialplan_version: &self.dialplan_version,
            codec: &self.codec,
            dtmf_mode: &self.dtmf_mode,
            invite_at: self.invite_at,
            answer_at: self.answer_at,
            end_at: self.end_at,
            path: &self.path,
            prompts_played: self.prompts.len(),
            digits: self.digits.chars().count(),
            utterances: self.utterances.len(),
            turns: self.dialogue.len(),
            end_reason: &self.end_reason,
            transferred: self.end_reason.referred()
                || self.transfer.as_ref().is_some_and(|t| t.agent.is_some()),
            transfer_wait_ms: self.transfer.as_ref().and_then(|t| t.wait_ms),
            rtp_sent: self.rtp_sent,
            rtp_received: self.rtp_received,
            rtp_lost: self.rtp_lost,
            rtp_jitter_ms: self.rtp_jitter_ms,
        }
    }

    /// Logs the summary as one event (target `kefu::call_record`).
    pub fn emit(&self) {
        match serde_json::to_string(&self.summary()) {
            Ok(json) => tracing::info!(target: "kefu::call_record", record = %json, "call ended"),
            Err(e) => {
                tracing::error!(error = %e, call_id = %self.call_id, "cannot serialise call record")
            }
        }
    }
}
