//! The call as a sans-I/O state machine: typed [`Event`]s in, each with the time,
//! and [`Action`]s out. The session decides everything a call decides (which
//! packets are the caller's, keys, what the listener noticed, the answer being
//! spoken and barge-in, the plan's timers, hold by re-INVITE, the media timeout,
//! waiting for an agent, a blind transfer's fallback, the end); the call task
//! (`call::pump`) only moves packets, dialog requests, rendered sentences,
//! transcripts and queue news in, and carries the actions out.
//!
//! Tests drive it in virtual time with no sockets, no models and no sleeps
//! (`tests/interpreter.rs` runs the scripted callers through it).

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::EndReason;
use super::recorder::Recorder;
use super::reoffer::{self, Reoffer};
use super::transfer::TransferLog;
use crate::channel::rtp::FRAME_MILLIS;
use crate::channel::rtp::inbound::Inbound;
use crate::channel::rtp::jitter::JitterBuffer;
use crate::channel::rtp::receiver::{Accepted, RtpReceiver};
use crate::dialplan::{Input, Interpreter, Moment, Output};
use crate::media::dtmf::DtmfMode;
use crate::media::dtmf::inband::ToneDetector;
use crate::media::dtmf::rfc4733::EventReceiver;
use crate::media::prompt::Prompt;
use crate::media::sdp::{Direction, Negotiated};
use crate::media::{FRAME_SAMPLES, SAMPLE_RATE};

/// How long the caller's side may take to report a blind transfer's outcome.
const NOTIFY_WAIT: Duration = Duration::from_secs(30);
/// A listener whose caller sends nothing for this long is fed silence for all of
/// that time (phones with silence suppression send no RTP while quiet; an
/// utterance must still end). A shorter gap is taken for packet loss, not for
/// quiet: the words on either side of it stay one utterance (a 200 ms burst of
/// loss mid-sentence once ended the turn early, on a "whole request" half-said).
const QUIET_FILL: Duration = Duration::from_millis(250);
const FRAME: Duration = Duration::from_millis(FRAME_MILLIS);

/// What a listener noticed in the caller's audio.
#[derive(Debug, PartialEq)]
pub enum Noticed {
    SpeechStarted,
    /// The caller has been quiet for `quiet` after speech: the utterance so far
    /// (8 kHz, −1..1), which is all of it unless they go on.
    Paused {
        audio: Vec<f32>,
        quiet: Duration,
    },
    /// The caller went on after a pause.
    Resumed,
    /// An utterance ended: its audio (8 kHz, −1..1), to be recognised.
    Utterance(Vec<f32>),
}

/// A call's ears while a `listen` or `ask` node is active: voice activity detection
/// and endpointing over the caller's 8 kHz audio (`call::hearing::Hearing`).
pub trait Ears: Send {
    /// Starts over for a new question in `language`.
    fn restart(&mut self, language: &str);
    /// Feeds decoded caller audio; pushes what it noticed (ears that wait for
    /// the voice detector notice it later, in [`Ears::detected`]).
    fn push(&mut self, pcm: &[i16], out: &mut Vec<Noticed>);
    /// Audio waiting for the voice detector, taken to be run ([`Action::Detect`]);
    /// None when none waits or a run is still out.
    fn detect(&mut self) -> Option<crate::speech::vad::Job> {
        None
    }
    /// The detector's answer for the audio [`Ears::detect`] gave; pushes what it
    /// noticed.
    fn detected(&mut self, _job: Result<crate::speech::vad::Job, String>, _out: &mut Vec<Noticed>) {
    }
    /// The turn was taken at a pause: the utterance being heard is over.
    fn end_turn(&mut self);
}

/// Makes the ears for a language the first time the plan listens; None when speech
/// recognition is not loaded (keys only).
pub type MakeEars = Box<dyn FnMut(&str) -> Box<dyn Ears> + Send>;

/// The fixed facts of a call's media, from its set-up.
#[derive(Debug, Clone)]
pub struct Config {
    pub negotiated: Negotiated,
    pub dtmf: DtmfMode,
    /// A caller who sends no RTP for this long (and is not holding) has gone.
    pub rtp_timeout: Duration,
    /// Where kefu takes the caller's RTP (named in SDP answers).
    pub local_rtp: SocketAddr,
    /// Where the caller's signalling comes from: a new media address must be there.
    pub peer: IpAddr,
    pub session_id: u64,
    /// The SDP version of the last answer sent.
    pub sdp_version: u64,
    pub caller: String,
    /// The plan's language (the agent's summary is in it).
    pub language: String,
}

/// Something that happened to the call.
#[derive(Debug)]
pub enum Event<'a> {
    /// The caller's ACK arrived: the plan starts.
    Start,
    /// A datagram on the caller's media port, and when it arrived.
    Rtp {
        packet: &'a [u8],
        from: SocketAddr,
        at: Instant,
    },
    /// Time passed: the plan's timers, a silent listener, the media timeout.
    Tick,
    /// A key sent as SIP INFO (already parsed).
    InfoKey(char),
    /// The transcript of the utterance last sent to recognition (or why none came).
    Heard(Result<crate::speech::Transcript, String>),
    /// Recognition would not take the utterance (saturated, or it failed).
    RecognitionRefused,
    /// Recognition took the whole utterance but its transcript is expected late
    /// (a queue of other callers' words ahead of it).
    RecognitionDelayed,
    /// The voice detector's answer for [`Action::Detect`]'s audio (or why none).
    Detected(Result<Box<crate::speech::vad::Job>, String>),
    /// The next sentence of the answer being spoken is rendered.
    Sentence(Arc<Prompt>),
    /// The answer could not be rendered further.
    SentenceFailed(String),
    /// Every sentence of the answer has been rendered.
    AnswerRendered,
    /// What was playing ran out (once per playout).
    PlayoutEnded,
    /// A NOTIFY in the dialog (a blind transfer's progress, as message/sipfrag).
    Notify(&'a [u8]),
    /// The answer to the REFER of a blind transfer: its status, or why none came.
    ReferAnswered(Result<u16, String>),
    /// The blind transfer's dial-out leg: answered, or why not.
    DialOut(Result<(), String>),
    /// News of the caller waiting for an agent.
    Queue(Queued),
    /// The dialog ended (the caller hung up, the stack gave up, shutdown).
    Gone(EndReason),
    /// The bridged agent hung up first; the caller goes on in the plan (the
    /// transfer node's `after`).
    AgentLeft,
}

/// News of a caller waiting for an agent.
#[derive(Debug)]
pub enum Queued {
    /// The queues are full: the caller could not wait.
    Full,
    /// Say this (the caller's place), then the hold music.
    Announce(Arc<Prompt>),
    /// Nobody took the call in time (the hold music has stopped).
    TimedOut(TransferLog),
    /// An agent took the call.
    Answered(TransferLog),
}

/// What the call task must do.
#[derive(Debug)]
pub enum Action {
    /// Replace what plays (and any answer still rendering) with these.
    Play(Vec<Arc<Prompt>>),
    /// Play this after what is queued (a sentence of the answer being spoken;
    /// the answer keeps rendering).
    Append(Arc<Prompt>),
    /// Stop what plays (and any answer still rendering) at once.
    StopPlayback,
    /// Stop what plays and render `text`, sentence by sentence ([`Event::Sentence`]).
    Speak { text: String, language: String },
    /// Play this, then the hold music.
    Announce(Arc<Prompt>),
    /// The listener is on (`language`), for a new question: a transcript still
    /// coming for an earlier one is not wanted.
    Listen { language: String },
    /// The listener is off: a transcript still to come is not wanted.
    StopListening,
    /// Recognise this utterance (8 kHz) and report it as [`Event::Heard`]; any
    /// recognition still in flight is not wanted any more. A `draft` (the words
    /// up to a pause) is recognised only with spare capacity.
    Recognise {
        audio: Vec<f32>,
        language: String,
        draft: bool,
    },
    /// The recognition in flight is not wanted any more (the caller went on).
    Forget,
    /// Run the voice detector on the caller's audio and report it as
    /// [`Event::Detected`] (batched with other calls' audio).
    Detect(Box<crate::speech::vad::Job>),
    /// Send to the caller here from now on (symmetric RTP: where they send from).
    Remote(SocketAddr),
    /// The media were renegotiated (hold, resume, codec): send accordingly.
    Media(Negotiated),
    /// Queue the caller for an agent of `queue`, with the agent's summary.
    Queue {
        queue: String,
        /// What the agent hears before taking the call.
        summary: String,
        /// What the desk's offer and the ticket's subject say (written).
        subject: String,
        reason: String,
    },
    /// Ask the caller's side to call `to` itself (SIP REFER).
    Refer { to: String },
    /// Call `to` and bridge it once answered.
    DialOut { to: String },
    /// An agent (or a blind transfer's target) answered: bridge the call.
    Bridge,
    /// Add a line to the call's ticket (opened for `queue` if the call has none).
    Note { text: String, queue: String },
    /// The caller asks to be called back on `to` (the ticket's callback).
    Callback { to: String, queue: String },
    /// Keep the caller's rating of the call (a `rate` node).
    Rate { score: u8 },
    /// A `record` node started recording the caller.
    Record,
    /// Store this recording (a `record` node's voicemail; nothing when empty).
    Keep(Recorder),
    /// The call is over: hang up (unless the caller did) and record `EndReason`.
    End(EndReason),
}

/// An answer being spoken: sentences arrive while earlier ones play.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Answer {
    None,
    Rendering {
        received: usize,
        /// Its audio ran out before the next sentence arrived: the answer's end
        /// is reported when the last sentence has played.
        starved: bool,
    },
}

/// A blind transfer in progress.
#[derive(Debug)]
struct Blind {
    target: String,
    /// Until when the caller's side may report (after the REFER was accepted).
    deadline: Option<Instant>,
    dialing: bool,
}

/// The call's state, between the caller's ACK and the bridge or the end.
pub struct Session {
    config: Config,
    negotiated: Negotiated,
    remote: SocketAddr,
    /// Which of the caller's packets are taken; `remote` follows its source.
    inbound: Inbound,
    receiver: RtpReceiver,
    jitter: JitterBuffer<Vec<u8>>,
    /// The receiver's restart count the jitter buffer was filled under.
    restarts: u32,
    events: EventReceiver,
    tones: ToneDetector,
    interpreter: Interpreter,
    make_ears: Option<MakeEars>,
    ears: Option<Box<dyn Ears>>,
    listening: bool,
    /// The language the listener hears in.
    hearing_in: String,
    /// The caller's utterance and recognition ([`turn`]).
    turn: Turn,
    answer: Answer,
    /// Something plays (as far as the actions sent say).
    playing: bool,
    media_start: Instant,
    /// Last time the caller was heard from (RTP or a renegotiation).
    last_heard: Instant,
    /// Silence fed to the listener up to here (see [`QUIET_FILL`]).
    quiet_fed: Instant,
    recording: Option<Recorder>,
    waiting: bool,
    blind: Option<Blind>,
    transfer: Option<TransferLog>,
    ended: bool,
    actions: VecDeque<Action>,
    /// Keys pressed, and how each came.
    pub digits: String,
    pub digit_sources: Vec<&'static str>,
    /// What the caller said, with recognition's confidence.
    pub utterances: Vec<String>,
    pub asr_confidence: Vec<f32>,
}

impl Session {
    /// A confirmed call about to run `interpreter`; `make_ears` gives it ears when
    /// the plan first listens (None: speech recognition is not loaded).
    pub fn new(
        config: Config,
        interpreter: Interpreter,
        make_ears: Option<MakeEars>,
        now: Instant,
    ) -> Self {
        Self {
            negotiated: config.negotiated.clone(),
            remote: config.negotiated.remote,
            inbound: Inbound::new(&config.negotiated),
            receiver: RtpReceiver::default(),
            jitter: JitterBuffer::new(3),
            restarts: 0,
            events: EventReceiver::default(),
            tones: ToneDetector::default(),
            interpreter,
            make_ears,
            ears: None,
            listening: false,
            hearing_in: config.language.clone(),
            turn: Turn::Idle,
            answer: Answer::None,
            playing: false,
            media_start: now,
            last_heard: now,
            quiet_fed: now,
            recording: None,
            waiting: false,
            blind: None,
            transfer: None,
            ended: false,
            actions: VecDeque::new(),
            digits: String::new(),
            digit_sources: Vec::new(),
            utterances: Vec::new(),
            asr_confidence: Vec::new(),
            config,
        }
    }

    /// The next thing to do, in order.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When the session next needs an [`Event::Tick`] (besides the pump's regular
    /// reads): the plan's timer, a blind transfer's deadline, or when a whole
    /// request's turn may be taken.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let blind = self.blind.as_ref().and_then(|b| b.deadline);
        [self.interpreter.poll_timeout(), blind, self.turn.deadline()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Whether the caller goes on in the plan when the bridged agent hangs up
    /// first.
    pub fn goes_on_after_agent(&self) -> bool {
        self.interpreter.goes_on_after_agent()
    }

    /// Handles one event at `now`.
    pub fn handle(&mut self, event: Event<'_>, now: Moment) {
        if self.ended {
            return;
        }
        match event {
            Event::Start => self.interpreter.start(now),
            Event::Rtp { packet, from, at } => self.rtp(packet, from, at, now),
            Event::Tick => self.tick(now),
            Event::InfoKey(d) => {
                if self.config.dtmf.accepts_info() {
                    self.digit(d, "info", now);
                } else {
                    tracing::info!(mode = ?self.config.dtmf, "SIP INFO key ignored by this trunk's DTMF mode");
                }
            }
            Event::Heard(result) => self.recognised(result, now),
            Event::RecognitionRefused => self.refused(now),
            Event::RecognitionDelayed => {
                if self.listening {
                    self.interpreter.handle(Input::RecognitionDelayed, now);
                }
            }
            Event::Detected(job) => {
                let mut noticed = Vec::new();
                if self.listening
                    && let Some(ears) = self.ears.as_mut()
                {
                    ears.detected(job.map(|j| *j), &mut noticed);
                }
                self.notice(noticed, now);
                self.detect();
            }
            Event::Sentence(prompt) => self.sentence(prompt),
            Event::SentenceFailed(e) => {
                tracing::error!(error = %e, "cannot speak the answer");
                self.answer_rendered(now);
            }
            Event::AnswerRendered => self.answer_rendered(now),
            Event::PlayoutEnded => {
                self.playing = false;
                match &mut self.answer {
                    Answer::Rendering { starved, .. } => *starved = true,
                    Answer::None => self.interpreter.handle(Input::PlaybackDone, now),
                }
            }
            Event::Notify(body) => self.notified(body),
            Event::ReferAnswered(answer) => self.refer_answered(answer, now),
            Event::DialOut(outcome) => self.dial_out_ended(outcome, now),
            Event::Queue(q) => self.queued(q, now),
            Event::Gone(reason) => self.end(reason),
            Event::AgentLeft => {
                // The bridge played nothing of the plan's; it starts afresh.
                self.playing = false;
                self.interpreter.handle(Input::AgentLeft, now);
            }
        }
        self.take_if_complete(now);
        self.apply_outputs(now);
    }

    /// A re-INVITE or UPDATE (hold, resume, a new codec or address): the decision,
    /// to send on its transaction; accepted media follow as [`Action::Media`].
    pub fn reoffer(&mut self, offer: &[u8], now: Moment) -> Reoffer {
        let decision = reoffer::reoffer(
            &self.negotiated,
            offer,
            self.config.peer,
            self.config.local_rtp,
            self.config.session_id,
            &mut self.config.sdp_version,
        );
        if let Reoffer::Accepted { negotiated: n, .. } = &decision {
            // New payload types at once; a new address is learned afresh.
            self.inbound.renegotiated(n);
            self.remote = self.inbound.target();
            tracing::info!(codec = n.law.encoding_name(), direction = ?n.direction, "media renegotiated");
            self.negotiated = n.clone();
            let mut media = n.clone();
            media.remote = self.remote;
            self.actions.push_back(Action::Media(media));
            self.last_heard = now.mono;
        }
        decision
    }

    /// Whether a NOTIFY in the dialog is expected (a blind transfer is under way).
    pub fn expects_notify(&self) -> bool {
        self.blind.is_some()
    }

    /// Ends a `record` node's message early (the call is ending): kept as
    /// [`Action::Keep`].
    pub fn stop_recording(&mut self) {
        if let Some(r) = self.recording.take() {
            self.actions.push_back(Action::Keep(r));
        }
    }

    /// A packet from the caller's port: None unless it is the caller's media (the
    /// codec or telephone-event, from the source [`Inbound`] believes); otherwise
    /// follows the believed source (symmetric RTP), keeps the stream statistics,
    /// and says whether the packet is new and whether it is an event.
    pub fn track_caller<'a>(
        &mut self,
        packet: &'a [u8],
        from: SocketAddr,
        at: Instant,
    ) -> Option<(rtp_rs::RtpReader<'a>, Accepted, bool)> {
        let admitted = self.inbound.admit(packet, from)?;
        let (rtp, is_event) = (admitted.rtp, admitted.event);
        let target = self.inbound.target();
        if target != self.remote {
            tracing::debug!(sdp = %self.negotiated.remote, actual = %target, "RTP source latched");
            self.remote = target;
            self.actions.push_back(Action::Remote(target));
        }
        self.last_heard = at;
        let arrival = at.saturating_duration_since(self.media_start).as_micros() as u64
            * u64::from(SAMPLE_RATE)
            / 1_000_000;
        let accepted = self.receiver.receive(
            rtp.ssrc(),
            rtp.sequence_number().into(),
            rtp.timestamp(),
            arrival,
            at,
        );
        Some((rtp, accepted, is_event))
    }

    /// The SDP session id, and the version counter every answer (on either leg)
    /// counts up.
    pub fn sdp_session(&mut self) -> (u64, &mut u64) {
        (self.config.session_id, &mut self.config.sdp_version)
    }

    pub fn negotiated(&self) -> &Negotiated {
        &self.negotiated
    }

    pub fn remote(&self) -> SocketAddr {
        self.remote
    }

    pub fn last_heard(&self) -> Instant {
        self.last_heard
    }

    /// The caller's stream as an RTCP report block gives it now.
    pub fn reception(&mut self) -> Option<crate::channel::rtp::receiver::Reception> {
        self.receiver.reception()
    }

    pub fn receiver(&self) -> &RtpReceiver {
        &self.receiver
    }

    pub fn interpreter(&self) -> &Interpreter {
        &self.interpreter
    }

    /// The transfer's story so far (a queue or a blind transfer), for the record.
    pub fn transfer_log(&mut self) -> Option<&mut TransferLog> {
        self.transfer.as_mut()
    }

    pub fn take_transfer_log(&mut self) -> Option<TransferLog> {
        self.transfer.take()
    }

    fn rtp(&mut self, packet: &[u8], from: SocketAddr, at: Instant, now: Moment) {
        // Not RTP (or RTCP on a shared port), not the caller's media: dropped.
        let Some((rtp, accepted, is_event)) = self.track_caller(packet, from, at) else {
            return;
        };
        let mode = self.config.dtmf;
        let mut digits: Vec<(char, &'static str)> = Vec::new();
        if is_event {
            // Events bypass the reorder buffer: their timestamp identifies the press.
            if mode.accepts_rfc4733(true)
                && let Some(d) = self.events.receive(rtp.timestamp(), rtp.payload())
            {
                digits.push((d, "rfc4733"));
            }
        } else if let Accepted::Packet(seq) = accepted {
            let inband = mode.accepts_inband(self.negotiated.telephone_event.is_some());
            // Voice is only ordered and decoded when something listens to it.
            if !(self.listening || self.recording.is_some() || inband) {
                return;
            }
            if self.receiver.restarts != self.restarts {
                self.restarts = self.receiver.restarts;
                self.jitter = JitterBuffer::new(3);
            }
            self.jitter.push(seq, rtp.payload().to_vec());
            let mut noticed = Vec::new();
            while let Some((_, payload)) = self.jitter.pop() {
                let mut pcm = [0i16; 480];
                let n = payload.len().min(pcm.len());
                self.negotiated.law.decode(&payload[..n], &mut pcm[..n]);
                if inband {
                    self.tones.push(&pcm[..n], |d| digits.push((d, "inband")));
                }
                if self.listening
                    && let Some(ears) = self.ears.as_mut()
                {
                    ears.push(&pcm[..n], &mut noticed);
                }
                if let Some(r) = self.recording.as_mut() {
                    r.push(0, &pcm[..n], at);
                }
            }
            self.notice(noticed, now);
            self.detect();
        }
        for (d, source) in digits {
            self.digit(d, source, now);
        }
    }

    fn tick(&mut self, now: Moment) {
        if self
            .interpreter
            .poll_timeout()
            .is_some_and(|t| t <= now.mono)
        {
            self.interpreter.handle(Input::Timer, now);
        }
        if let Some(b) = self.blind.as_mut()
            && b.deadline.is_some_and(|t| t <= now.mono)
        {
            b.deadline = None;
            tracing::info!("no outcome of the REFER in time; dialling out");
            self.dial_out();
        }
        self.feed_quiet(now);
        // A caller whose media has stopped (and who is not holding) has gone.
        let receives = matches!(
            self.negotiated.direction,
            Direction::SendRecv | Direction::RecvOnly
        );
        if receives && now.mono.saturating_duration_since(self.last_heard) > self.config.rtp_timeout
        {
            tracing::warn!(timeout = ?self.config.rtp_timeout, "no RTP from the caller; hanging up");
            self.end(EndReason::RtpTimeout);
        }
    }

    /// Silence for a listener whose caller sends none, for the time that passed.
    fn feed_quiet(&mut self, now: Moment) {
        if !self.listening || now.mono.saturating_duration_since(self.last_heard) <= QUIET_FILL {
            return;
        }
        let quiet_since = self.last_heard.max(self.quiet_fed);
        let Some(ears) = self.ears.as_mut() else {
            return;
        };
        let frames =
            now.mono.saturating_duration_since(quiet_since).as_millis() / FRAME.as_millis();
        let mut noticed = Vec::new();
        for _ in 0..frames {
            ears.push(&[0i16; FRAME_SAMPLES], &mut noticed);
        }
        self.quiet_fed = quiet_since + FRAME * frames as u32;
        self.notice(noticed, now);
        self.detect();
    }

    /// Sends the audio the ears hold for the voice detector, if a run is due.
    fn detect(&mut self) {
        if self.listening
            && let Some(job) = self.ears.as_mut().and_then(|e| e.detect())
        {
            self.actions.push_back(Action::Detect(Box::new(job)));
        }
    }

    /// Passes what the listener noticed on: speech starting to the plan (barge-in),
    /// pauses and utterances to the turn ([`turn`]).
    fn notice(&mut self, noticed: Vec<Noticed>, now: Moment) {
        for n in noticed {
            match n {
                Noticed::SpeechStarted => self.interpreter.handle(Input::SpeechStarted, now),
                Noticed::Paused { audio, quiet } => self.paused(audio, quiet, now),
                Noticed::Resumed => self.resumed(),
                Noticed::Utterance(audio) => self.utterance_ended(audio, now),
            }
        }
    }

    fn digit(&mut self, d: char, source: &'static str, now: Moment) {
        tracing::debug!(source, "key pressed");
        self.digits.push(d);
        self.digit_sources.push(source);
        self.interpreter.handle(Input::Digit(d), now);
    }

    fn sentence(&mut self, prompt: Arc<Prompt>) {
        let Answer::Rendering { received, starved } = &mut self.answer else {
            return; // replaced meanwhile
        };
        // `Speak` stopped what played: the first sentence starts the playout.
        self.actions.push_back(Action::Append(prompt));
        *received += 1;
        *starved = false;
        self.playing = true;
    }

    /// No more sentences: if their audio already ran out, the answer is over.
    fn answer_rendered(&mut self, now: Moment) {
        let Answer::Rendering { received, starved } = self.answer else {
            return;
        };
        self.answer = Answer::None;
        if starved || (received == 0 && !self.playing) {
            self.interpreter.handle(Input::PlaybackDone, now);
        }
    }

    fn apply_outputs(&mut self, now: Moment) {
        while !self.ended
            && let Some(out) = self.interpreter.poll_output()
        {
            match out {
                Output::Play(prompts) => {
                    self.answer = Answer::None;
                    self.playing = !prompts.is_empty();
                    self.actions.push_back(Action::Play(prompts));
                }
                Output::StopPlayback => {
                    self.answer = Answer::None;
                    self.playing = false;
                    self.actions.push_back(Action::StopPlayback);
                }
                Output::Say { text, language } => {
                    self.playing = false;
                    self.answer = Answer::Rendering {
                        received: 0,
                        starved: false,
                    };
                    self.actions.push_back(Action::Speak { text, language });
                }
                Output::Listen { language } => self.listen(language, now),
                Output::StopListening => {
                    self.listening = false;
                    self.turn = Turn::Idle;
                    self.actions.push_back(Action::StopListening);
                }
                Output::Transfer { queue } => self.start_transfer(queue),
                Output::BlindTransfer { to } => self.start_blind(to),
                Output::Record => {
                    self.recording = Some(Recorder::new(
                        1,
                        crate::dialplan::actions::record::MAX_LENGTH,
                        now.mono,
                    ));
                    self.actions.push_back(Action::Record);
                }
                Output::StopRecording => self.stop_recording(),
                Output::Note { text, queue } => {
                    self.actions.push_back(Action::Note { text, queue })
                }
                Output::Callback { to, queue } => {
                    self.actions.push_back(Action::Callback { to, queue })
                }
                Output::Rate { score } => self.actions.push_back(Action::Rate { score }),
                Output::Hangup { reason } => self.end(EndReason::Plan(reason)),
            }
        }
    }

    fn listen(&mut self, language: String, now: Moment) {
        match (self.ears.as_mut(), self.make_ears.as_mut()) {
            (Some(ears), _) => ears.restart(&language),
            (None, Some(make)) => self.ears = Some(make(&language)),
            (None, None) => {
                tracing::warn!(
                    "a listen node was reached but speech recognition is not loaded (it loads at start when a plan listens); keys only"
                );
                self.interpreter.handle(Input::AsrUnavailable, now);
                return;
            }
        }
        self.turn = Turn::Idle;
        self.listening = true;
        self.quiet_fed = now.mono;
        self.hearing_in.clone_from(&language);
        self.actions.push_back(Action::Listen { language });
    }

    fn end(&mut self, reason: EndReason) {
        if self.ended {
            return;
        }
        self.ended = true;
        self.listening = false;
        self.answer = Answer::None;
        // A message being recorded when the call ended is kept.
        self.stop_recording();
        self.actions.push_back(Action::End(reason));
    }
}

mod transfer;
mod turn;

use turn::Turn;

#[cfg(test)]
mod tests;
