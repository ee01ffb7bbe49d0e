//! One call, from INVITE to BYE: the task that joins the SIP dialog, the RTP stream
//! and the dialplan interpreter.
//!
//! This is the async edge. Everything it drives (pacer, RTP sender/receiver, jitter
//! buffer, DTMF detectors, playout, interpreter) is a plain state machine; this task
//! only moves packets, dialog events and time between them.

mod blind;
mod bridge;
mod end;
mod hearing;
pub mod leg;
pub mod record;
mod recorder;
mod reoffer;
pub mod transfer;

pub use end::EndReason;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rsipstack::dialog::dialog::{DialogState, DialogStateReceiver};
use rsipstack::dialog::dialog_layer::DialogLayer;
use rsipstack::dialog::invite_dialog::InviteDialog;
use rsipstack::sip::prelude::HeadersExt;
use rsipstack::sip::{Header, StatusCode};
use tokio_util::sync::CancellationToken;

use crate::channel::rtp::FRAME_MILLIS;
use crate::channel::rtp::clock::{ClockStream, MediaClock, Outgoing};
use crate::channel::rtp::inbound::Inbound;
use crate::channel::rtp::jitter::JitterBuffer;
use crate::channel::rtp::receiver::{Accepted, RtpReceiver};
use crate::channel::rtp::sender::RtpSender;
use crate::channel::rtp::socket::RtpSocket;
use crate::dialplan::{Dialplan, Input, Interpreter, Moment, Output};
use crate::media::dtmf::inband::ToneDetector;
use crate::media::dtmf::rfc4733::EventReceiver;
use crate::media::dtmf::{DtmfMode, relay};
use crate::media::sdp::{self, Direction, Negotiated};
use crate::media::{FRAME_SAMPLES, SAMPLE_RATE};
use record::CallRecord;

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
    pub dialog: InviteDialog,
    pub states: DialogStateReceiver,
    pub hangup_all: CancellationToken,
    pub speech: Option<Arc<crate::speech::SpeechRuntime>>,
    pub dialogue: Arc<CallDialogue>,
    pub dialog_layer: Arc<DialogLayer>,
    /// The queues and agents' phones, for `transfer` nodes.
    pub staff: Arc<transfer::Staff>,
}

/// An answer being spoken sentence by sentence: each sentence plays as soon as it is
/// rendered, while the next renders.
struct Rendering {
    sentences: tokio::sync::mpsc::Receiver<Result<Arc<crate::media::prompt::Prompt>, String>>,
    /// Sentences received so far.
    received: usize,
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
}

impl CallDialogue {
    fn identity(caller: &str) -> crate::dialogue::conversations::Identity {
        crate::dialogue::conversations::Identity::new(
            crate::dialogue::conversations::IdentityKind::Phone,
            caller,
        )
    }

    /// The customer `identity` is filed under: the one the live conversations
    /// know (linked in the store too), else the store's (created if new).
    async fn customer_of(
        store: &crate::store::Store,
        conversations: &crate::dialogue::conversations::Conversations,
        identity: &crate::dialogue::conversations::Identity,
    ) -> anyhow::Result<String> {
        Ok(match conversations.customer_if_known(identity) {
            Some(c) => {
                store.link(&c, identity).await?;
                c
            }
            None => store.customer_for(identity).await?,
        })
    }
}

impl CallSetup {
    /// Who the caller is to the store: their number. A caller without one who
    /// reaches a person (a ticket, a transcript, a message) is a customer of
    /// their own, for this call.
    fn caller_identity(&self) -> crate::dialogue::conversations::Identity {
        if self.caller.is_empty() {
            crate::dialogue::conversations::Identity::new(
                crate::dialogue::conversations::IdentityKind::Phone,
                format!("anonymous:{}", self.call_id),
            )
        } else {
            CallDialogue::identity(&self.caller)
        }
    }
}

/// Runs the call to its end and emits its record.
pub async fn run(mut s: CallSetup) {
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
    s.dialog_layer.remove_dialog(&s.dialog.id());
    if let Err(e) = store_call(&s, &record).await {
        tracing::error!(call_id = %s.call_id, error = format!("{e:#}"), "cannot store the call record");
    }
    // Logged once stored: a reader of the log finds the record in the store.
    record.emit();
}

/// Stores the call record and the call's conversation (sealed, see `store`).
async fn store_call(s: &CallSetup, record: &CallRecord) -> anyhow::Result<()> {
    let store = &s.dialogue.store;
    // An anonymous call is filed under a customer only when it reached a person
    // (its ticket and transcript are under that customer).
    let customer = if s.caller.is_empty() && record.transfer.is_none() {
        None
    } else {
        Some(
            CallDialogue::customer_of(store, &s.dialogue.conversations, &s.caller_identity())
                .await?,
        )
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

/// When a pinned timer is due.
fn due(sleep: &std::pin::Pin<&mut tokio::time::Sleep>) -> Instant {
    sleep.deadline().into_std()
}

async fn drive(s: &mut CallSetup, record: &mut CallRecord) -> EndReason {
    let local_rtp = match s.socket.local_addr() {
        Ok(a) => a,
        Err(e) => return EndReason::RtpSocket(e.to_string()),
    };
    // Ring first when the dialplan asks for it; the caller may give up (CANCEL).
    if !s.plan.answer_after.is_zero() {
        if let Err(e) = s.dialog.ringing(None, None) {
            return EndReason::SipError(e.to_string());
        }
        let until = tokio::time::Instant::now() + s.plan.answer_after;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(until) => break,
                state = s.states.recv() => match state {
                    Some(DialogState::Terminated(_, r)) => return EndReason::from(&r),
                    None => return EndReason::DialogGone,
                    Some(_) => {}
                },
                _ = s.hangup_all.cancelled() => return EndReason::Shutdown,
            }
        }
    }
    let session_id: u64 = rand::random::<u32>().into();
    let mut sdp_version = 1;
    let answer = sdp::answer(local_rtp, &s.negotiated, session_id, sdp_version);
    let sdp_header = || {
        vec![Header::Other(
            "Content-Type".into(),
            "application/sdp".into(),
        )]
    };
    if let Err(e) = s
        .dialog
        .accept(Some(sdp_header()), Some(answer.into_bytes()))
    {
        return EndReason::SipError(e.to_string());
    }
    record.answer_at = Some(chrono::Utc::now());
    // Media starts when the caller's ACK confirms the dialog.
    let ack_deadline = tokio::time::Instant::now() + Duration::from_secs(32);
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(ack_deadline) => return EndReason::NoAck,
            state = s.states.recv() => match state {
                Some(DialogState::Confirmed(..)) => break,
                Some(DialogState::Terminated(_, r)) => return EndReason::from(&r),
                None => return EndReason::DialogGone,
                Some(_) => {}
            },
        }
    }

    if s.plan.asks() && !s.caller.is_empty() {
        // A caller the store knows resumes their open topic: remember who they are.
        let id = CallDialogue::identity(&s.caller);
        let c = &s.dialogue.conversations;
        if c.customer_if_known(&id).is_none() {
            match s.dialogue.store.find_customer(&id).await {
                Ok(Some(customer)) => c.adopt(&id, &customer),
                Ok(None) => {}
                Err(e) => tracing::warn!(error = format!("{e:#}"), "cannot look the caller up"),
            }
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
    let mut media = Media::new(s, clock_socket);
    let reason = match media.run(s, record, session_id, &mut sdp_version).await {
        Ended::Reason(r) => r,
        Ended::Bridge(leg) => {
            media
                .bridge(s, *leg, record, session_id, &mut sdp_version)
                .await
        }
    };
    // A message being recorded when the caller hung up is kept.
    media.stop_recording(s);
    media.waiting = None;
    record.transfer = media.transfer_log.take();
    record.rtp_sent = media.out.lock().sender.packets;
    record.rtp_received = media.receiver.received();
    record.rtp_lost = media.receiver.lost();
    record.rtp_jitter_ms = media.receiver.jitter() as f64 * 1000.0 / f64::from(SAMPLE_RATE);
    record.prompts = media
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
    record.path = media.interpreter.path().to_vec();
    record.vars = media.interpreter.vars().clone();
    let live = media
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
    } else if let Some(c) = media.interpreter.conversation()
        && !c.history.is_empty()
    {
        record.dialogue = c.history.clone();
        record.dialogue_first_seq = (c.said as usize).saturating_sub(c.history.len());
        if !s.caller.is_empty() {
            record.conversation = Some(s.dialogue.conversations.record(
                crate::dialogue::conversations::Channel::Phone,
                &CallDialogue::identity(&s.caller),
                c.clone(),
                s.invite_at,
                chrono::Utc::now(),
            ));
        }
    }
    reason
}

/// How often a call in the IVR reads what its caller sent: three frames at a time,
/// so its task wakes about 17 times a second instead of 50 (the shared clock sends).
/// A key or the start of speech is seen at most 60 ms later; no caller hears that.
const FRAMES_PER_READ: u32 = 3;
const READ_EVERY: Duration = Duration::from_millis(FRAME_MILLIS * FRAMES_PER_READ as u64);

/// Datagrams read from the caller's socket per read, at most (three are usual; a
/// key adds a few events): a flood waits in (and overflows) the kernel's buffer.
const MAX_READS: usize = 32;
/// Datagrams taken per system call, and the room for each (an Ethernet MTU).
const BATCH: usize = 4;
const SLOT: usize = 1500;

/// The media side of a confirmed call.
struct Media {
    negotiated: Negotiated,
    remote: SocketAddr,
    /// Which of the caller's packets are taken ([`Inbound`]); `remote` follows its
    /// believed source.
    inbound: Inbound,
    /// The outgoing stream, paced and sent by the shared clock.
    out: ClockStream,
    receiver: RtpReceiver,
    jitter: JitterBuffer<Vec<u8>>,
    /// The receiver's restart count the jitter buffer was filled under.
    restarts: u32,
    events: EventReceiver,
    tones: ToneDetector,
    interpreter: Interpreter,
    /// Speech detection and recognition while a `listen` node is active.
    hearing: Option<hearing::Hearing>,
    /// An answer being rendered to speech (`ask` nodes), played when ready.
    rendering: Option<Rendering>,
    /// An answer is still rendering (`rendering` is taken out while the loop waits).
    answer_in_flight: bool,
    /// Its audio ran out before the next sentence arrived: the end is reported when
    /// the last sentence has played.
    answer_starved: bool,
    listening: bool,
    media_start: Instant,
    /// Last time we heard from the caller (RTP or a dialog request).
    last_heard: Instant,
    /// Waiting for an agent (a `transfer` node).
    waiting: Option<transfer::Waiting>,
    /// The call's ticket, once a transfer or a note opened it.
    ticket: Option<transfer::Ticket>,
    /// The transfer's story, for the record.
    transfer_log: Option<transfer::TransferLog>,
    /// Recording the caller (a `record` node).
    recording: Option<recorder::Recorder>,
    /// A blind transfer in progress.
    blind: Option<blind::Blind>,
    /// The call's conversation, made live for a bridged call's transcript.
    live_conversation: Option<String>,
}

enum Step {
    Continue,
    End(EndReason),
    /// An agent took the call: bridge it.
    Bridge(Box<leg::AnsweredLeg>),
}

/// How the IVR part of a call ended.
enum Ended {
    Reason(EndReason),
    Bridge(Box<leg::AnsweredLeg>),
}

impl Media {
    fn new(s: &CallSetup, clock_socket: std::net::UdpSocket) -> Self {
        let now = Instant::now();
        let mut outgoing = Outgoing::new(
            s.negotiated.remote,
            s.negotiated.law,
            s.negotiated.payload_type,
            RtpSender::new(rand::random(), rand::random(), rand::random()),
        );
        outgoing.sends = s.negotiated.direction.sends();
        let vars = BTreeMap::from([
            ("caller".to_string(), s.caller.clone()),
            ("called".to_string(), s.called.clone()),
        ]);
        Self {
            negotiated: s.negotiated.clone(),
            remote: s.negotiated.remote,
            inbound: Inbound::new(&s.negotiated),
            out: MediaClock::shared().stream(outgoing, clock_socket),
            receiver: RtpReceiver::default(),
            jitter: JitterBuffer::new(3),
            restarts: 0,
            events: EventReceiver::default(),
            tones: ToneDetector::default(),
            interpreter: {
                let interpreter = Interpreter::new(s.plan.clone(), vars, Moment::now());
                // Only plans with `ask` nodes talk with the dialogue core.
                if s.plan.asks() {
                    let c = &s.dialogue.conversations;
                    let topic = c
                        .customer_if_known(&CallDialogue::identity(&s.caller))
                        .and_then(|customer| c.open_topic(&customer, chrono::Utc::now()));
                    interpreter.with_dialogue(s.dialogue.kb.current(), topic)
                } else {
                    interpreter
                }
            },
            rendering: None,
            answer_in_flight: false,
            answer_starved: false,
            hearing: None,
            listening: false,
            media_start: now,
            last_heard: now,
            waiting: None,
            ticket: None,
            transfer_log: None,
            recording: None,
            blind: None,
            live_conversation: None,
        }
    }

    async fn run(
        &mut self,
        s: &mut CallSetup,
        record: &mut CallRecord,
        session_id: u64,
        sdp_version: &mut u64,
    ) -> Ended {
        self.interpreter.start(Moment::now());
        let mut buf = vec![0u8; BATCH * SLOT];
        let ends = self.out.ends();
        let mut sending = false;
        // The read timer and the plan's timer are two timers reset in place, and
        // the shutdown signal one registration, for the whole call: creating them
        // anew each turn of the loop was a measurable share of a call's CPU.
        let mut next_read = Instant::now() + READ_EVERY;
        let reads = tokio::time::sleep_until(next_read.into());
        tokio::pin!(reads);
        let plan_timer =
            tokio::time::sleep_until((Instant::now() + Duration::from_secs(3600)).into());
        tokio::pin!(plan_timer);
        let hangup = s.hangup_all.clone();
        let shutdown = hangup.cancelled();
        tokio::pin!(shutdown);
        loop {
            match self.apply_outputs(s, record).await {
                Step::End(reason) => return Ended::Reason(reason),
                Step::Bridge(leg) => return Ended::Bridge(leg),
                Step::Continue => {}
            }
            // The clock starts sending once the plan has said what to play first.
            if !sending {
                self.out.start(MediaClock::shared());
                sending = true;
            }
            let timer = self.interpreter.poll_timeout();
            if let Some(t) = timer
                && due(&plan_timer) != t
            {
                plan_timer.as_mut().reset(t.into());
            }
            if due(&reads) != next_read {
                reads.as_mut().reset(next_read.into());
            }
            let mut pending = self.hearing.as_mut().and_then(|h| h.pending.take());
            let mut rendering = self.rendering.take();
            let mut waiting = self.waiting.take();
            let blind = &mut self.blind;
            // Biased: the end of a playout first (the next prompt is due in the
            // next frame), then the reads (most of the loop's turns: no other
            // branch is polled then). Neither can starve the others.
            let step = tokio::select! {
                biased;
                () = ends.next() => {
                    self.ran_out();
                    Step::Continue
                }
                () = &mut reads => {
                    let now = Instant::now();
                    next_read = (next_read + READ_EVERY).max(now + READ_EVERY / 2);
                    self.receive_queued(s, &mut buf, record);
                    self.housekeeping(s, now)
                }
                h = async {
                    match blind.as_mut() {
                        Some(b) => b.next().await,
                        None => std::future::pending().await,
                    }
                }, if blind.is_some() => self.blind_happened(s, h),
                happened = async {
                    match waiting.as_mut() {
                        Some(w) => w.next().await,
                        None => std::future::pending().await,
                    }
                }, if waiting.is_some() => self.waited(happened, &mut waiting),
                sentence = async {
                    match rendering.as_mut() {
                        Some(r) => r.sentences.recv().await,
                        None => std::future::pending().await,
                    }
                }, if rendering.is_some() => {
                    if let Some(r) = rendering.as_mut()
                        && !self.spoken(sentence, r, record)
                    {
                        rendering = None;
                    }
                    Step::Continue
                }
                transcript = async {
                    match pending.as_mut() {
                        Some(rx) => rx.await,
                        None => std::future::pending().await,
                    }
                }, if pending.is_some() => {
                    pending = None;
                    self.transcript(transcript, record);
                    Step::Continue
                }
                state = s.states.recv() => self.dialog_event(state, s, record, session_id, sdp_version).await,
                () = &mut plan_timer, if timer.is_some() => {
                    self.interpreter.handle(Input::Timer, Moment::now());
                    Step::Continue
                }
                () = &mut shutdown => Step::End(EndReason::Shutdown),
            };
            // Still rendering: keep waiting for it next time round (outputs that
            // replace it are applied at the top of the loop).
            if rendering.is_some() {
                self.rendering = rendering;
            }
            if waiting.is_some() {
                self.waiting = waiting;
            }
            // Not answered yet: keep waiting for it next time round.
            if let (Some(p), Some(h)) = (pending, self.hearing.as_mut())
                && self.listening
            {
                h.pending = Some(p);
            }
            match step {
                Step::End(reason) => {
                    if !reason.caller_left()
                        && let Err(e) = s.dialog.bye().await
                    {
                        tracing::debug!(error = %e, "BYE failed");
                    }
                    return Ended::Reason(reason);
                }
                Step::Bridge(leg) => return Ended::Bridge(leg),
                Step::Continue => {}
            }
        }
    }

    async fn apply_outputs(&mut self, s: &mut CallSetup, record: &CallRecord) -> Step {
        while let Some(out) = self.interpreter.poll_output() {
            match out {
                Output::Play(prompts) => {
                    self.drop_rendering();
                    self.out.lock().play(prompts);
                }
                Output::StopPlayback => {
                    self.drop_rendering();
                    self.out.lock().stop();
                }
                Output::Say { text, language } => {
                    self.drop_rendering();
                    self.out.lock().stop();
                    let (prompts, voice) = (s.dialogue.prompts.clone(), s.plan.voice.clone());
                    let (tx, rx) = tokio::sync::mpsc::channel(4);
                    tokio::task::spawn_blocking(move || {
                        let started = Instant::now();
                        for (n, sentence) in crate::speech::tts::sentences(&text).iter().enumerate()
                        {
                            let spoken = prompts.say_private(voice.as_deref(), &language, sentence);
                            if n == 0 {
                                tracing::info!(
                                    first_sentence_ms = started.elapsed().as_millis() as u64,
                                    chars = text.chars().count(),
                                    "answer speaking"
                                );
                            }
                            // The call moved on (barge-in, hang-up): stop rendering.
                            if tx.blocking_send(spoken).is_err() {
                                return;
                            }
                        }
                    });
                    self.rendering = Some(Rendering {
                        sentences: rx,
                        received: 0,
                    });
                    self.answer_in_flight = true;
                    self.answer_starved = false;
                }
                Output::Listen { language } => self.start_listening(s, &language),
                Output::StopListening => {
                    self.listening = false;
                    if let Some(h) = self.hearing.as_mut() {
                        h.pending = None;
                    }
                }
                Output::Transfer { queue } => self.start_transfer(s, &queue, record),
                Output::BlindTransfer { to } => self.start_blind(s, &to),
                Output::Record => {
                    self.recording = Some(recorder::Recorder::new(
                        1,
                        crate::dialplan::actions::record::MAX_LENGTH,
                        Instant::now(),
                    ));
                }
                Output::StopRecording => self.stop_recording(s),
                Output::Note { text, queue } => self.note(s, &text, &queue),
                Output::Hangup { reason } => {
                    if let Err(e) = s.dialog.bye().await {
                        tracing::debug!(error = %e, "BYE failed");
                    }
                    return Step::End(EndReason::Plan(reason));
                }
            }
        }
        Step::Continue
    }

    /// Queues the caller for an agent: hold music from the queue's settings, the
    /// agent's summary from what the call has learnt so far.
    fn start_transfer(&mut self, s: &CallSetup, queue: &str, record: &CallRecord) {
        let language = s.plan.language.clone();
        let lang = crate::dialogue::Lang::from_code(&language);
        let conversation = self.interpreter.conversation();
        let customer_turns = || {
            conversation
                .into_iter()
                .flat_map(|c| c.history.iter().rev())
                .filter(|t| t.speaker == crate::dialogue::engine::Speaker::Customer)
        };
        let topic = customer_turns().find_map(|t| t.intent.clone()).map(|id| {
            self.interpreter
                .matcher()
                .and_then(|m| m.kb.intent(&id))
                .zip(lang)
                .map(|(i, l)| i.title.best(l).to_string())
                .unwrap_or_else(|| id.replace(['_', '-'], " "))
        });
        let said = record
            .utterances
            .last()
            .cloned()
            .or_else(|| customer_turns().next().map(|t| t.text.clone()));
        let collected: Vec<(String, String)> = self
            .interpreter
            .vars()
            .iter()
            .filter(|(k, v)| {
                !matches!(
                    k.as_str(),
                    "caller" | "called" | "queue" | "handover_reason"
                ) && !v.is_empty()
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let summary = leg::summary_text(
            &language,
            &s.caller,
            topic.as_deref(),
            said.as_deref(),
            &collected,
        );
        let config = s.staff.center.queue_config(queue);
        let hold = match s
            .dialogue
            .prompts
            .get(&s.audio_root.join(&config.hold_music))
        {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::error!(error = %e, %queue, "cannot load the queue's hold music; callers wait in silence");
                None
            }
        };
        // The ask node's hand-over says why; otherwise the caller chose it in a menu.
        let reason = self
            .interpreter
            .vars()
            .get("handover_reason")
            .cloned()
            .unwrap_or_else(|| "menu".into());
        match transfer::Waiting::start(s, queue, summary, reason) {
            Some(w) => {
                // The clock loops it after whatever plays, while the caller waits.
                self.out.lock().hold = hold;
                self.ticket = Some(w.ticket());
                self.transfer_log = Some(w.log.clone());
                self.waiting = Some(w);
            }
            None => {
                tracing::warn!(%queue, "cannot queue the caller (the queues are full)");
                self.interpreter.handle(Input::NoAgent, Moment::now());
            }
        }
    }

    /// Something happened to the waiting caller.
    fn waited(
        &mut self,
        happened: transfer::Happened,
        waiting: &mut Option<transfer::Waiting>,
    ) -> Step {
        match happened {
            transfer::Happened::Nothing => Step::Continue,
            transfer::Happened::Announce(p) => {
                let mut out = self.out.lock();
                let mut prompts = vec![p];
                prompts.extend(out.hold.clone());
                out.play(prompts);
                Step::Continue
            }
            transfer::Happened::TimedOut => {
                if let Some(w) = waiting.take() {
                    self.transfer_log = Some(w.log.clone());
                }
                let mut out = self.out.lock();
                out.hold = None;
                out.stop();
                self.interpreter.handle(Input::NoAgent, Moment::now());
                Step::Continue
            }
            transfer::Happened::Bridge(leg) => {
                if let Some(w) = waiting.take() {
                    self.transfer_log = Some(w.log.clone());
                }
                Step::Bridge(leg)
            }
        }
    }

    /// Adds a line to the call's ticket, opening one if the call has none.
    fn note(&mut self, s: &CallSetup, text: &str, queue: &str) {
        let ticket = self
            .ticket
            .get_or_insert_with(|| transfer::Ticket::open(s, s.caller_identity(), queue, text));
        ticket.note(text.to_string());
    }

    /// Ends a `record` node's message: stored sealed, noted on the ticket.
    fn stop_recording(&mut self, s: &CallSetup) {
        if let Some(r) = self.recording.take() {
            if r.is_empty() {
                return;
            }
            self.keep_recording(s, r, "voicemail");
        }
    }

    /// Stores a recording off the media loop and notes it on the call's ticket.
    fn keep_recording(&mut self, s: &CallSetup, r: recorder::Recorder, kind: &'static str) {
        let seconds = r.duration().as_secs_f32();
        let ticket = self.ticket.clone();
        let (store, conversations, identity, call_id) = (
            s.dialogue.store.clone(),
            s.dialogue.conversations.clone(),
            s.caller_identity(),
            s.call_id.clone(),
        );
        tokio::spawn(async move {
            let wav = match tokio::task::spawn_blocking(move || r.wav()).await {
                Ok(Ok(w)) => w,
                Ok(Err(e)) => return tracing::error!(error = %e, "cannot encode the recording"),
                Err(e) => return tracing::error!(error = %e, "recording task failed"),
            };
            let customer = CallDialogue::customer_of(&store, &conversations, &identity)
                .await
                .map_err(|e| {
                    tracing::warn!(
                        error = format!("{e:#}"),
                        "cannot file the recording under the caller"
                    )
                })
                .ok();
            match store
                .save_recording(
                    &call_id,
                    customer.as_deref(),
                    kind,
                    (seconds * 1000.0) as i64,
                    &wav,
                )
                .await
            {
                Ok(id) => {
                    tracing::info!(recording = %id, kind, seconds, "recording stored");
                    if let Some(t) = ticket {
                        let what = if kind == "voicemail" {
                            "Voicemail message"
                        } else {
                            "Call recording"
                        };
                        t.note(format!("{what}: recording {id} ({seconds:.0} s)."));
                    }
                }
                Err(e) => tracing::error!(error = format!("{e:#}"), "cannot store the recording"),
            }
        });
    }

    /// Forgets an answer still being rendered: something newer replaces it.
    fn drop_rendering(&mut self) {
        self.rendering = None;
        self.answer_in_flight = false;
        self.answer_starved = false;
    }

    /// A sentence of an answer is ready (or all are, on `None`): play it after what is
    /// playing. Returns whether more may come.
    fn spoken(
        &mut self,
        sentence: Option<Result<Arc<crate::media::prompt::Prompt>, String>>,
        r: &mut Rendering,
        record: &mut CallRecord,
    ) -> bool {
        match sentence {
            Some(Ok(prompt)) => {
                record.prompts.push(prompt.path().display().to_string());
                if r.received == 0 {
                    self.out.lock().play(vec![prompt]);
                } else {
                    self.out.lock().append(prompt);
                }
                r.received += 1;
                self.answer_starved = false;
                true
            }
            Some(Err(e)) => {
                tracing::error!(error = %e, "cannot speak the answer");
                self.answer_ended(r);
                false
            }
            None => {
                self.answer_ended(r);
                false
            }
        }
    }

    /// No more sentences: if their audio already ran out, the answer is over.
    fn answer_ended(&mut self, r: &Rendering) {
        self.answer_in_flight = false;
        if self.answer_starved || (r.received == 0 && !self.out.lock().is_playing()) {
            self.interpreter.handle(Input::PlaybackDone, Moment::now());
        }
        self.answer_starved = false;
    }

    /// Reads what the caller sent since the last read (the socket is off the
    /// reactor while the call is with the IVR, see `channel::rtp::socket`).
    fn receive_queued(&mut self, s: &CallSetup, buf: &mut [u8], record: &mut CallRecord) {
        let mut got = Vec::with_capacity(BATCH);
        // Batches until the queue is empty (one batch is usual), MAX_READS at most.
        for _ in 0..MAX_READS / BATCH {
            got.clear();
            match s.socket.try_recv_batch(buf, SLOT, &mut got) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    tracing::debug!(error = %e, "RTP receive error");
                    return;
                }
            }
            let (now, wall) = (Instant::now(), std::time::SystemTime::now());
            for (d, slot) in got.iter().zip(buf.chunks(SLOT)) {
                // When it arrived, not when it was read (reads come in batches).
                let arrived =
                    d.at.and_then(|at| wall.duration_since(at).ok())
                        .and_then(|ago| now.checked_sub(ago))
                        .unwrap_or(now);
                self.receive_rtp(&slot[..d.len], d.from, arrived, s.dtmf, record);
            }
            if got.len() < BATCH {
                return;
            }
        }
    }

    /// The clock says a playout ran out: the interpreter hears of it (a sentence of
    /// an answer that ran out before the next one arrived is not the answer's end).
    fn ran_out(&mut self) {
        let ended = std::mem::take(&mut self.out.lock().finished);
        for _ in 0..ended {
            if self.answer_in_flight {
                self.answer_starved = true;
            } else {
                self.interpreter.handle(Input::PlaybackDone, Moment::now());
            }
        }
    }

    /// After each read: silence for a listener whose caller sends none, and the
    /// media timeout.
    fn housekeeping(&mut self, s: &CallSetup, now: Instant) -> Step {
        // Phones with silence suppression (and callers whose stream just ended) send
        // no RTP while quiet: feed the listener silence for the missing time, or an
        // utterance would never be seen to end.
        if self.listening
            && now.duration_since(self.last_heard) > Duration::from_millis(60)
            && let Some(h) = self.hearing.as_mut()
        {
            let mut heard = Vec::new();
            for _ in 0..FRAMES_PER_READ {
                h.push(&[0i16; FRAME_SAMPLES], &mut heard);
            }
            self.hear(heard);
        }
        // A caller whose media has stopped (and who is not on hold) has gone.
        let receives = matches!(
            self.negotiated.direction,
            Direction::SendRecv | Direction::RecvOnly
        );
        if receives && now.duration_since(self.last_heard) > s.rtp_timeout {
            tracing::warn!(timeout = ?s.rtp_timeout, "no RTP from the caller; hanging up");
            return Step::End(EndReason::RtpTimeout);
        }
        Step::Continue
    }

    fn receive_rtp(
        &mut self,
        packet: &[u8],
        from: SocketAddr,
        arrived: Instant,
        mode: DtmfMode,
        record: &mut CallRecord,
    ) {
        // Not RTP (or RTCP on a shared port), not the caller's media: dropped.
        let Some((rtp, accepted, is_event)) = self.track_caller(packet, from, arrived) else {
            return;
        };
        let now = self.last_heard;
        let mut digits = Vec::new();
        if is_event {
            // Events bypass the reorder buffer: their timestamp identifies the press.
            if mode.accepts_rfc4733(true)
                && let Some(d) = self.events.receive(rtp.timestamp(), rtp.payload())
            {
                digits.push((d, "rfc4733"));
            }
        } else if let Accepted::Packet(seq) = accepted
            && (self.listening
                || self.recording.is_some()
                || mode.accepts_inband(self.negotiated.telephone_event.is_some()))
        {
            let inband = mode.accepts_inband(self.negotiated.telephone_event.is_some());
            let mut heard = Vec::new();
            // Voice is only ordered and decoded when something listens to it.
            if self.receiver.restarts != self.restarts {
                self.restarts = self.receiver.restarts;
                self.jitter = JitterBuffer::new(3);
            }
            self.jitter.push(seq, rtp.payload().to_vec());
            while let Some((_, payload)) = self.jitter.pop() {
                let mut pcm = [0i16; 480];
                let n = payload.len().min(pcm.len());
                self.negotiated.law.decode(&payload[..n], &mut pcm[..n]);
                if inband {
                    self.tones.push(&pcm[..n], |d| digits.push((d, "inband")));
                }
                if self.listening
                    && let Some(h) = self.hearing.as_mut()
                {
                    h.push(&pcm[..n], &mut heard);
                }
                if let Some(r) = self.recording.as_mut() {
                    r.push(0, &pcm[..n], now);
                }
            }
            self.hear(heard);
        }
        for (d, source) in digits {
            self.digit(d, source, record);
        }
    }

    /// A packet from the caller's socket: None unless it is the caller's media (the
    /// codec or telephone-event, from the source [`Inbound`] believes); otherwise
    /// follows the believed source (symmetric RTP: answer where the media really
    /// comes from, behind NAT), keeps the stream statistics, and says whether the
    /// packet is new and whether it is an event.
    fn track_caller<'a>(
        &mut self,
        packet: &'a [u8],
        from: SocketAddr,
        arrived: Instant,
    ) -> Option<(rtp_rs::RtpReader<'a>, Accepted, bool)> {
        let admitted = self.inbound.admit(packet, from)?;
        let (rtp, is_event) = (admitted.rtp, admitted.event);
        let target = self.inbound.target();
        if target != self.remote {
            tracing::debug!(sdp = %self.negotiated.remote, actual = %target, "RTP source latched");
            self.remote = target;
            self.out.lock().remote = target;
        }
        let now = arrived;
        self.last_heard = now;
        let arrival = now.saturating_duration_since(self.media_start).as_micros() as u64
            * u64::from(SAMPLE_RATE)
            / 1_000_000;
        let accepted = self.receiver.receive(
            rtp.ssrc(),
            rtp.sequence_number().into(),
            rtp.timestamp(),
            arrival,
            now,
        );
        Some((rtp, accepted, is_event))
    }

    /// Passes what the listener noticed to the interpreter.
    fn hear(&mut self, heard: Vec<hearing::Heard>) {
        for h in heard {
            let input = match h {
                hearing::Heard::SpeechStarted => Input::SpeechStarted,
                hearing::Heard::Unavailable => Input::AsrUnavailable,
            };
            self.interpreter.handle(input, Moment::now());
        }
    }

    fn start_listening(&mut self, s: &CallSetup, language: &str) {
        let Some(runtime) = &s.speech else {
            tracing::warn!(
                "a listen node was reached but speech recognition is not loaded (it loads at start when a plan listens); keys only"
            );
            self.interpreter
                .handle(Input::AsrUnavailable, Moment::now());
            return;
        };
        match self.hearing.as_mut() {
            Some(h) => h.restart(language),
            None => {
                self.hearing = Some(
                    hearing::Hearing::new(runtime.clone(), language)
                        .with_matcher(self.interpreter.matcher().cloned()),
                )
            }
        }
        self.listening = true;
    }

    fn transcript(
        &mut self,
        result: Result<
            Result<crate::speech::Transcript, crate::speech::AsrError>,
            tokio::sync::oneshot::error::RecvError,
        >,
        record: &mut CallRecord,
    ) {
        if !self.listening {
            return;
        }
        let latency = self
            .hearing
            .as_ref()
            .and_then(|h| h.utterance_end)
            .map(|t| t.elapsed().as_millis() as u64);
        match result {
            Ok(Ok(t)) => {
                tracing::info!(
                    chars = t.text.chars().count(),
                    confidence = t.confidence,
                    audio_ms = t.audio_ms,
                    decode_ms = t.decode_ms,
                    latency_ms = latency,
                    "caller said"
                );
                record.utterances.push(t.text.clone());
                record.asr_confidence.push(t.confidence);
                self.interpreter.handle(
                    Input::Heard {
                        text: t.text,
                        confidence: t.confidence,
                    },
                    Moment::now(),
                );
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "speech recognition failed");
                self.interpreter
                    .handle(Input::AsrUnavailable, Moment::now());
            }
            Err(_) => self
                .interpreter
                .handle(Input::AsrUnavailable, Moment::now()),
        }
    }

    fn digit(&mut self, d: char, source: &'static str, record: &mut CallRecord) {
        tracing::debug!(source, "key pressed");
        record.digits.push(d);
        record.digit_sources.push(source);
        self.interpreter.handle(Input::Digit(d), Moment::now());
    }

    async fn dialog_event(
        &mut self,
        state: Option<DialogState>,
        s: &mut CallSetup,
        record: &mut CallRecord,
        session_id: u64,
        sdp_version: &mut u64,
    ) -> Step {
        let Some(state) = state else {
            return Step::End(EndReason::DialogGone);
        };
        match state {
            DialogState::Terminated(_, r) => return Step::End(EndReason::from(&r)),
            DialogState::Info(_, req, handle) => {
                let content_type = req.header_value("Content-Type").unwrap_or_default();
                let (status, digit) = match relay::parse_info(&content_type, &req.body) {
                    Ok(d) => (StatusCode::OK, Some(d)),
                    Err(relay::RelayError::ContentType(_)) => {
                        (StatusCode::UnsupportedMediaType, None)
                    }
                    Err(e) => {
                        tracing::info!(error = %e, "INFO body rejected");
                        (StatusCode::BadRequest, None)
                    }
                };
                if let Err(e) = handle.reply(status).await {
                    tracing::debug!(error = %e, "cannot answer INFO");
                }
                if let Some(d) = digit {
                    if s.dtmf.accepts_info() {
                        self.digit(d, "info", record);
                    } else {
                        tracing::info!(mode = ?s.dtmf, "SIP INFO key ignored by this trunk's DTMF mode");
                    }
                }
            }
            DialogState::Updated(_, req, handle) => {
                // re-INVITE or UPDATE: hold/unhold, codec or address change.
                let local = s.socket.local_addr().unwrap_or(self.remote);
                let decision = reoffer::reoffer(
                    &self.negotiated,
                    &req.body,
                    s.source.ip(),
                    local,
                    session_id,
                    sdp_version,
                );
                if let reoffer::Reoffer::Accepted { negotiated: n, .. } = &decision {
                    let was_sending = self.negotiated.direction.sends();
                    // New payload types at once; a new address is learned afresh.
                    self.inbound.renegotiated(n);
                    self.remote = self.inbound.target();
                    tracing::info!(codec = n.law.encoding_name(), direction = ?n.direction, "media renegotiated");
                    self.negotiated = n.clone();
                    let mut out = self.out.lock();
                    out.remote = self.remote;
                    out.law = self.negotiated.law;
                    out.payload_type = self.negotiated.payload_type;
                    out.sends = self.negotiated.direction.sends();
                    if !was_sending && out.sends {
                        out.sender.mark_talkspurt();
                    }
                    drop(out);
                    self.last_heard = Instant::now();
                }
                reoffer::respond(&handle, &decision).await;
            }
            DialogState::Options(_, _, handle) => {
                if let Err(e) = handle.reply(StatusCode::OK).await {
                    tracing::debug!(error = %e, "cannot answer OPTIONS");
                }
            }
            DialogState::Notify(_, req, handle) if self.blind.is_some() => {
                // The progress of the transfer kefu asked for (RFC 3515 §2.4.5).
                if let Err(e) = handle.reply(StatusCode::OK).await {
                    tracing::debug!(error = %e, "cannot answer NOTIFY");
                }
                return self.blind_notified(s, &req.body);
            }
            DialogState::Notify(_, _, handle)
            | DialogState::Message(_, _, handle)
            | DialogState::Refer(_, _, handle)
            | DialogState::Publish(_, _, handle) => {
                if let Err(e) = handle.reply(StatusCode::NotImplemented).await {
                    tracing::debug!(error = %e, "cannot answer in-dialog request");
                }
            }
            _ => {}
        }
        Step::Continue
    }
}
