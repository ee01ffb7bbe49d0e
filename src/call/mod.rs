//! One call, from INVITE to BYE: the task that joins the SIP dialog, the RTP stream
//! and the dialplan interpreter.
//!
//! This is the async edge. Everything it drives (pacer, RTP sender/receiver, jitter
//! buffer, DTMF detectors, playout, interpreter) is a plain state machine; this task
//! only moves packets, dialog events and time between them.

pub mod ahead;
mod blind;
mod bridge;
pub mod callback;
mod end;
mod hearing;
mod join;
pub mod leg;
mod pump;
pub mod record;
pub mod recorder;
pub mod reoffer;
mod reports;
pub mod session;
pub mod session_timer;
pub mod signal;
pub mod softphone;
pub mod transfer;

pub use end::EndReason;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rsipstack::dialog::dialog::DialogState;
use rsipstack::dialog::dialog_layer::DialogLayer;
use rsipstack::sip::Header;
use tokio_util::sync::CancellationToken;

use crate::channel::rtp::clock::{ClockStream, MediaClock, Outgoing};
use crate::channel::rtp::sender::RtpSender;
use crate::channel::rtp::socket::RtpSocket;
use crate::dialplan::{Dialplan, Interpreter, Moment};
use crate::media::SAMPLE_RATE;
use crate::media::dtmf::DtmfMode;
use crate::media::sdp::{self, Negotiated};
use pump::{Ended, Pump};
use record::CallRecord;
use session::{Ears, MakeEars, Session};

/// Everything a call needs, gathered by the SIP edge when the INVITE is accepted.
pub struct CallSetup {
    pub call_id: String,
    pub caller: String,
    pub called: String,
    pub trunk: Option<String>,
    /// SIP transport the call came in on ("udp" or "tcp").
    pub transport: &'static str,
    /// Where the INVITE came from (the trunk: numbers are dialled out there).
    pub source: SocketAddr,
    pub invite_at: chrono::DateTime<chrono::Utc>,
    pub plan: Arc<Dialplan>,
    pub negotiated: Negotiated,
    /// Polled at the frame tick in the IVR, on the reactor while bridged.
    pub socket: RtpSocket,
    pub dtmf: DtmfMode,
    pub rtp_timeout: Duration,
    pub audio_root: PathBuf,
    /// The caller's signalling: a SIP dialog or a browser's peer connection.
    pub signal: signal::Signal,
    pub hangup_all: CancellationToken,
    pub speech: Option<Arc<crate::speech::SpeechRuntime>>,
    pub dialogue: Arc<CallDialogue>,
    pub dialog_layer: Arc<DialogLayer>,
    /// The queues and agents' phones, for `transfer` nodes.
    pub staff: Arc<transfer::Staff>,
    /// Who the caller is when not their number: a browser's call comes from the
    /// chat's customer (their web identity).
    pub customer: Option<crate::dialogue::conversations::Identity>,
    /// RFC 4028: the timer agreed in the INVITE, and where the SIP edge notes
    /// the caller's refreshes.
    pub session_timer: Option<(session_timer::SessionTimer, Arc<session_timer::Refreshed>)>,
}

/// What `ask` nodes need: the live knowledge base (a call keeps the version it
/// started with) and the prompt cache whose TTS speaks the answers.
#[derive(Debug)]
pub struct CallDialogue {
    pub kb: crate::dialogue::reload::LiveKb,
    pub prompts: Arc<crate::media::prompt::PromptCache>,
    /// Shared with the text channels: a caller is the customer their number belongs to.
    pub conversations: Arc<crate::dialogue::conversations::Conversations>,
    /// Where the call record and the call's conversation are kept.
    pub store: crate::store::Store,
    /// The conversation service the text channels use too: who the caller is.
    pub service: Arc<crate::store::ConversationService>,
}

impl CallDialogue {
    fn identity(caller: &str) -> crate::dialogue::conversations::Identity {
        crate::dialogue::conversations::Identity::new(
            crate::dialogue::conversations::IdentityKind::Phone,
            caller,
        )
    }
}

impl CallSetup {
    /// Who the caller is to the store: their number. A caller without one who
    /// reaches a person (a ticket, a transcript, a message) is a customer of
    /// their own, for this call.
    fn caller_identity(&self) -> crate::dialogue::conversations::Identity {
        self.known_identity().unwrap_or_else(|| {
            crate::dialogue::conversations::Identity::new(
                crate::dialogue::conversations::IdentityKind::Phone,
                format!("anonymous:{}", self.call_id),
            )
        })
    }

    /// Who the caller is known as: a browser's customer, or a caller's number.
    fn known_identity(&self) -> Option<crate::dialogue::conversations::Identity> {
        match (&self.customer, self.caller.is_empty()) {
            (Some(customer), _) => Some(customer.clone()),
            (None, false) => Some(CallDialogue::identity(&self.caller)),
            (None, true) => None,
        }
    }
}

/// Runs the call to its end, stores and emits its record; the record.
pub async fn run(mut s: CallSetup) -> CallRecord {
    let mut record = CallRecord {
        call_id: s.call_id.clone(),
        from: s.caller.clone(),
        to: s.called.clone(),
        trunk: s.trunk.clone(),
        transport: s.transport,
        dialplan: s.plan.file.display().to_string(),
        dialplan_version: s.plan.version.clone(),
        codec: s.negotiated.law.encoding_name().to_string(),
        dtmf_mode: format!("{:?}", s.dtmf).to_lowercase(),
        invite_at: Some(s.invite_at),
        ..CallRecord::default()
    };
    let span = tracing::info_span!("call", call_id = %s.call_id);
    // No numbers in the log (logs are not encrypted); the stored record has them.
    span.in_scope(
        || tracing::info!(trunk = ?s.trunk, dialplan = %record.dialplan, "incoming call"),
    );
    let m = crate::metrics::metrics();
    m.calls_started.inc();
    m.calls_active.inc();
    let reason = tracing::Instrument::instrument(drive(&mut s, &mut record), span).await;
    m.calls_active.dec();
    m.rtp_lost.inc_by(record.rtp_lost);
    record.end_reason = reason;
    record.end_at = Some(chrono::Utc::now());
    if let Some(dialog) = s.signal.dialog() {
        s.dialog_layer.remove_dialog(&dialog.id());
    }
    if let Err(e) = store_call(&s, &record).await {
        tracing::error!(call_id = %s.call_id, error = format!("{e:#}"), "cannot store the call record");
    }
    // Logged once stored: a reader of the log finds the record in the store.
    record.emit();
    record
}

/// Stores the call record and the call's conversation (sealed, see `store`).
async fn store_call(s: &CallSetup, record: &CallRecord) -> anyhow::Result<()> {
    let store = &s.dialogue.store;
    // An anonymous call is filed under a customer only when it reached a person
    // (its ticket and transcript are under that customer).
    let customer = if s.known_identity().is_none() && record.transfer.is_none() {
        None
    } else {
        Some(s.dialogue.service.file_under(&s.caller_identity()).await?)
    };
    let conversation = match (&record.conversation, &customer) {
        (Some(id), Some(customer)) => Some(crate::store::TurnsWrite {
            conversation: id.clone(),
            channel: crate::dialogue::conversations::Channel::Phone,
            customer: customer.clone(),
            call_id: Some(record.call_id.clone()),
            started: s.invite_at,
            updated: record.end_at.unwrap_or(s.invite_at),
            first_seq: record.dialogue_first_seq,
            turns: record.dialogue.clone(),
            latency_us: None,
            state: None,
        }),
        _ => None,
    };
    let write = crate::store::writer::CallWrite {
        call_id: record.call_id.clone(),
        caller: record.from.clone(),
        callee: record.to.clone(),
        customer,
        trunk: record.trunk.clone(),
        transport: record.transport.to_string(),
        dialplan: record.dialplan.clone(),
        dialplan_version: record.dialplan_version.clone(),
        invite: record.invite_at,
        answer: record.answer_at,
        end: record.end_at,
        path: record.path.clone(),
        end_reason: record.end_reason.to_string(),
        // "queue:agent" once an agent took the call; "refer:TARGET" or
        // "dial-out:TARGET" for a blind transfer that reached its target.
        keys: record.digits.chars().count() as i64,
        utterances: record.utterances.len() as i64,
        asr_confidence: serde_json::to_string(
            &record
                .asr_confidence
                .iter()
                .map(|c| (c * 100.0).round() / 100.0)
                .collect::<Vec<f32>>(),
        )?,
        transfer: record
            .transfer
            .as_ref()
            .and_then(|t| match (t.method, &t.target, &t.agent) {
                (Some(m), Some(target), _) if record.end_reason.referred() || t.agent.is_some() => {
                    Some(format!("{m}:{target}"))
                }
                (None, _, Some(agent)) => Some(format!("{}:{agent}", t.queue)),
                _ => None,
            }),
        detail: serde_json::to_string(record)?,
        conversation,
    };
    store
        .write(crate::store::Write::Call(Box::new(write)))
        .await?;
    // The call's ticket (a transfer opened it) names the call's conversation.
    if let (Some(_), Some(conversation)) = (&record.transfer, &record.conversation) {
        store
            .link_call_ticket(&record.call_id, conversation)
            .await?;
    }
    Ok(())
}

/// Answers the call (after ringing, when the plan asks for it) and waits for the
/// caller's ACK: where kefu takes the caller's RTP and the SDP session id, or why
/// the call ended first.
async fn answer(
    s: &mut CallSetup,
    record: &mut CallRecord,
) -> Result<(SocketAddr, u64), EndReason> {
    let local_rtp = match s.socket.local_addr() {
        Ok(a) => a,
        Err(e) => return Err(EndReason::RtpSocket(e.to_string())),
    };
    let session_id: u64 = rand::random::<u32>().into();
    let signal::Signal::Sip { dialog, states } = &mut s.signal else {
        // A browser's call was answered (its peer connection connected) before
        // the call started.
        record.answer_at = Some(chrono::Utc::now());
        return Ok((local_rtp, session_id));
    };
    // The address the caller sends media to (behind 1:1 NAT, the public one).
    let local_rtp = sdp::public(local_rtp, s.staff.dialer.advertised);
    // Ring first when the dialplan asks for it; the caller may give up (CANCEL).
    if !s.plan.answer_after.is_zero() {
        if let Err(e) = dialog.ringing(None, None) {
            return Err(EndReason::SipError(e.to_string()));
        }
        let until = tokio::time::Instant::now() + s.plan.answer_after;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(until) => break,
                state = states.recv() => match state {
                    Some(DialogState::Terminated(_, r)) => return Err(EndReason::from(&r)),
                    None => return Err(EndReason::DialogGone),
                    Some(_) => {}
                },
                _ = s.hangup_all.cancelled() => return Err(EndReason::Shutdown),
            }
        }
    }
    let answer = sdp::answer(local_rtp, &s.negotiated, session_id, 1);
    let sdp_header = || {
        vec![Header::Other(
            "Content-Type".into(),
            "application/sdp".into(),
        )]
    };
    let mut headers = sdp_header();
    if let Some((timer, _)) = &s.session_timer {
        headers.push(Header::Other("Session-Expires".into(), timer.header()));
        if timer.caller_supports {
            headers.push(Header::Other("Require".into(), "timer".into()));
        }
    }
    if let Err(e) = dialog.accept(Some(headers), Some(answer.into_bytes())) {
        return Err(EndReason::SipError(e.to_string()));
    }
    record.answer_at = Some(chrono::Utc::now());
    // Media starts when the caller's ACK confirms the dialog.
    let ack_deadline = tokio::time::Instant::now() + Duration::from_secs(32);
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(ack_deadline) => return Err(EndReason::NoAck),
            state = states.recv() => match state {
                Some(DialogState::Confirmed(..)) => {
                    if let Some((timer, refreshed)) = s.session_timer.take() {
                        tokio::spawn(session_timer::keep(timer, dialog.clone(), refreshed));
                    }
                    return Ok((local_rtp, session_id));
                }
                Some(DialogState::Terminated(_, r)) => return Err(EndReason::from(&r)),
                None => return Err(EndReason::DialogGone),
                Some(_) => {}
            },
        }
    }
}

async fn drive(s: &mut CallSetup, record: &mut CallRecord) -> EndReason {
    let (local_rtp, session_id) = match answer(s, record).await {
        Ok(answered) => answered,
        Err(reason) => return reason,
    };
    if s.plan.asks()
        && let Some(id) = s.known_identity()
    {
        // A caller the store knows resumes their open topic: remember who they are.
        if let Err(e) = s.dialogue.service.recognise(&id).await {
            tracing::warn!(error = %e, "cannot look the caller up");
        }
    }
    // The IVR reads the socket at its own pace and the shared clock sends from it.
    let clock_socket = match s
        .socket
        .poll_mode()
        .and_then(|()| s.socket.try_clone_polled())
    {
        Ok(socket) => socket,
        Err(e) => return EndReason::RtpSocket(e.to_string()),
    };
    let mut pump = Pump::new(session(s, local_rtp, session_id), outgoing(s, clock_socket));
    let mut ended = pump.run(s, true).await;
    let reason = loop {
        match ended {
            Ended::Reason(r) => break r,
            Ended::Bridge(leg) => match pump.bridge(s, *leg).await {
                Some(r) => break r,
                // The agent hung up first and the plan goes on (a survey).
                None => {
                    pump.session.handle(
                        session::Event::AgentLeft,
                        crate::dialplan::interpreter::Moment::now(),
                    );
                    ended = pump.run(s, false).await;
                }
            },
        }
    };
    // A message being recorded when the caller hung up is kept.
    pump.finish(s);
    if let Some(mut r) = pump.reports.take() {
        r.bye(s, &mut pump.session).await;
        let (far_end, sent) = r.far_end();
        record.rtcp = Some(record::Rtcp { sent, far_end });
    }
    fill_record(&mut pump, s, record);
    reason
}

/// What the call did, for its record: keys, words, media statistics, prompts, the
/// plan's path and variables, the transfer, and the conversation (kept live for a
/// bridged call, recorded now otherwise).
fn fill_record(pump: &mut Pump, s: &CallSetup, record: &mut CallRecord) {
    let waited = pump.waiting.take().map(|w| w.log.clone());
    let session = &mut pump.session;
    record.transfer = session.take_transfer_log().or(waited);
    record.digits = std::mem::take(&mut session.digits);
    record.digit_sources = std::mem::take(&mut session.digit_sources);
    record.utterances = std::mem::take(&mut session.utterances);
    record.asr_confidence = std::mem::take(&mut session.asr_confidence);
    record.rtp_sent = pump.out.lock().sender.packets;
    let receiver = pump.session.receiver();
    record.rtp_received = receiver.received();
    record.rtp_lost = receiver.lost();
    record.rtp_jitter_ms = receiver.jitter() as f64 * 1000.0 / f64::from(SAMPLE_RATE);
    record.prompts = pump
        .out
        .lock()
        .started()
        .iter()
        .map(|p| {
            p.path()
                .strip_prefix(&s.audio_root)
                .unwrap_or(p.path())
                .display()
                .to_string()
        })
        .collect();
    let interpreter = pump.session.interpreter();
    record.path = interpreter.path().to_vec();
    record.vars = interpreter.vars().clone();
    let live = pump
        .live_conversation
        .as_ref()
        .and_then(|id| Some((id.clone(), s.dialogue.conversations.conversation(id).ok()?)));
    if let Some((id, c)) = live {
        // A bridged call: its conversation (with the transcript) is already kept.
        if !c.history.is_empty() {
            record.dialogue = c.history.clone();
            record.dialogue_first_seq = (c.said as usize).saturating_sub(c.history.len());
            record.conversation = Some(id);
        }
    } else if let Some(c) = interpreter.conversation()
        && !c.history.is_empty()
    {
        record.dialogue = c.history.clone();
        record.dialogue_first_seq = (c.said as usize).saturating_sub(c.history.len());
        if let Some(id) = s.known_identity() {
            record.conversation = Some(s.dialogue.conversations.record(
                crate::dialogue::conversations::Channel::Phone,
                &id,
                c.clone(),
                s.invite_at,
                chrono::Utc::now(),
            ));
        }
    }
}

/// The call's session: the plan's interpreter (talking with the dialogue core when
/// the plan has `ask` nodes, resuming the caller's open topic) and its ears.
fn session(s: &CallSetup, local_rtp: SocketAddr, session_id: u64) -> Session {
    let vars = BTreeMap::from([
        ("caller".to_string(), s.caller.clone()),
        ("called".to_string(), s.called.clone()),
    ]);
    let mut interpreter = Interpreter::new(s.plan.clone(), vars, Moment::now());
    // Only plans with `ask` nodes talk with the dialogue core.
    if s.plan.asks() {
        let c = &s.dialogue.conversations;
        let topic = s
            .known_identity()
            .and_then(|id| c.customer_if_known(&id))
            .and_then(|customer| c.open_topic(&customer, chrono::Utc::now()));
        interpreter = interpreter.with_dialogue(s.dialogue.kb.current(), topic);
    }
    let ears = s.speech.is_some().then(|| -> MakeEars {
        Box::new(move |_language: &str| -> Box<dyn Ears> { Box::new(hearing::Hearing::default()) })
    });
    let config = session::Config {
        negotiated: s.negotiated.clone(),
        dtmf: s.dtmf,
        rtp_timeout: s.rtp_timeout,
        local_rtp,
        peer: s.source.ip(),
        session_id,
        // The version of the first answer (`answer`).
        sdp_version: 1,
        caller: s.caller.clone(),
        language: s.plan.language.clone(),
    };
    Session::new(config, interpreter, ears, Instant::now())
}

/// The caller's outgoing stream on the shared clock (it sends nothing until a
/// prompt plays).
fn outgoing(s: &CallSetup, clock_socket: std::net::UdpSocket) -> ClockStream {
    let mut outgoing = Outgoing::new(
        s.negotiated.remote,
        s.negotiated.law,
        s.negotiated.payload_type,
        RtpSender::new(rand::random(), rand::random(), rand::random()),
    );
    outgoing.sends = s.negotiated.direction.sends();
    MediaClock::shared().stream(outgoing, clock_socket)
}
