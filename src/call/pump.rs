//! The call task's I/O pump for the IVR part of a call: it reads the caller's RTP
//! at the frame tick, waits on the dialog, rendered sentences, transcripts, the
//! queue and a blind transfer's REFER and dial-out, hands each to the
//! [`Session`] as an event with the time, and carries the session's actions out
//! (the shared clock's playout, SIP, recognition, synthesis, the queue, the store).
//! Nothing here decides what the call does.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rsipstack::dialog::dialog::DialogState;
use rsipstack::sip::StatusCode;
use rsipstack::sip::prelude::HeadersExt;
use tokio::sync::{mpsc, oneshot};

use super::blind::{self, Dialing, ReferAnswer};
use super::leg::{AnsweredLeg, LegEvent};
use super::recorder::Recorder;
use super::session::{Action, Event, Queued, Session};
use super::signal::FromPeer;
use super::{CallSetup, EndReason, hearing, reoffer, transfer};
use crate::channel::rtp::FRAME_MILLIS;
use crate::channel::rtp::clock::{ClockStream, MediaClock};
use crate::dialplan::Moment;
use crate::media::dtmf::relay;
use crate::media::prompt::Prompt;

/// How often a call in the IVR reads what its caller sent: three frames at a time,
/// so its task wakes about 17 times a second instead of 50 (the shared clock sends).
/// A key or the start of speech is seen at most 60 ms later; no caller hears that.
const FRAMES_PER_READ: u64 = 3;
const READ_EVERY: Duration = Duration::from_millis(FRAME_MILLIS * FRAMES_PER_READ);

/// Datagrams read from the caller's socket per read, at most (three are usual; a
/// key adds a few events): a flood waits in (and overflows) the kernel's buffer.
const MAX_READS: usize = 32;
/// Datagrams taken per system call, and the room for each (an Ethernet MTU).
const BATCH: usize = 4;
const SLOT: usize = 1500;

type Sentences = mpsc::Receiver<Result<Arc<Prompt>, String>>;

/// How the IVR part of a call ended.
pub(super) enum Ended {
    Reason(EndReason),
    Bridge(Box<AnsweredLeg>),
}

/// The call's session and the I/O it waits on.
pub(super) struct Pump {
    pub(super) session: Session,
    /// The outgoing stream, paced and sent by the shared clock.
    pub(super) out: ClockStream,
    /// An answer being rendered to speech, sentence by sentence.
    rendering: Option<Sentences>,
    /// The utterance being recognised.
    pending: Option<hearing::Pending>,
    /// The caller's audio with the voice detector.
    detecting: Option<hearing::Detecting>,
    /// Waiting for an agent (a `transfer` node).
    pub(super) waiting: Option<transfer::Waiting>,
    /// A blind transfer's REFER, and its dial-out leg.
    refer: Option<oneshot::Receiver<ReferAnswer>>,
    dialing: Option<Dialing>,
    /// The call's ticket, once a transfer or a note opened it.
    ticket: Option<transfer::Ticket>,
    /// The agent (or target) leg that answered, until the session bridges it.
    answered: Option<Box<AnsweredLeg>>,
    /// The call's conversation, made live for a bridged call's transcript.
    pub(super) live_conversation: Option<String>,
    /// RTCP with the caller.
    pub(super) reports: Option<super::reports::CallerReports>,
}

/// When a pinned timer is due.
fn due(sleep: &std::pin::Pin<&mut tokio::time::Sleep>) -> Instant {
    sleep.deadline().into_std()
}

impl Pump {
    pub(super) fn new(session: Session, out: ClockStream) -> Self {
        Self {
            session,
            out,
            rendering: None,
            pending: None,
            detecting: None,
            waiting: None,
            refer: None,
            dialing: None,
            ticket: None,
            answered: None,
            live_conversation: None,
            reports: None,
        }
    }

    /// Runs the IVR part until it ends or bridges; `first`: the call starts
    /// here (else it goes on after a bridge, the stream already sending).
    pub(super) async fn run(&mut self, s: &mut CallSetup, first: bool) -> Ended {
        if first {
            self.begin(s);
        }
        let mut buf = vec![0u8; BATCH * SLOT];
        let ends = self.out.ends();
        let mut sending = !first;
        // The read timer and the session's timer are two timers reset in place, and
        // the shutdown signal one registration, for the whole call: creating them
        // anew each turn of the loop was a measurable share of a call's CPU.
        let mut next_read = Instant::now() + READ_EVERY;
        let reads = tokio::time::sleep_until(next_read.into());
        tokio::pin!(reads);
        let timer = tokio::time::sleep_until((Instant::now() + Duration::from_secs(3600)).into());
        tokio::pin!(timer);
        let hangup = s.hangup_all.clone();
        let shutdown = hangup.cancelled();
        tokio::pin!(shutdown);
        loop {
            if let Some(ended) = self.apply(s).await {
                return ended;
            }
            // The clock starts sending once the plan has said what to play first.
            if !sending {
                self.out.start(MediaClock::shared());
                sending = true;
            }
            let deadline = self.session.poll_timeout();
            if let Some(t) = deadline
                && due(&timer) != t
            {
                timer.as_mut().reset(t.into());
            }
            if due(&reads) != next_read {
                reads.as_mut().reset(next_read.into());
            }
            let mut pending = self.pending.take();
            let mut detecting = self.detecting.take();
            let mut rendering = self.rendering.take();
            let mut waiting = self.waiting.take();
            let mut refer = self.refer.take();
            let mut dialing = self.dialing.take();
            // Biased: the end of a playout first (the next prompt is due in the
            // next frame), then the reads (most of the loop's turns: no other
            // branch is polled then). Neither can starve the others.
            tokio::select! {
                biased;
                () = ends.next() => {
                    let ended = std::mem::take(&mut self.out.lock().finished);
                    for _ in 0..ended {
                        self.session.handle(Event::PlayoutEnded, Moment::now());
                    }
                }
                () = &mut reads => {
                    let now = Instant::now();
                    next_read = (next_read + READ_EVERY).max(now + READ_EVERY / 2);
                    self.read_tick(s, &mut buf).await;
                }
                answer = hearing::awaited(refer.as_mut()), if refer.is_some() => {
                    refer = None;
                    let answer = answer.unwrap_or_else(|_| Err("REFER task ended".into()));
                    self.session.handle(Event::ReferAnswered(answer), Moment::now());
                }
                leg = async {
                    match dialing.as_mut() {
                        Some(d) => d.events.recv().await,
                        None => std::future::pending().await,
                    }
                }, if dialing.is_some() => {
                    dialing = None;
                    self.dialled(leg);
                }
                happened = async {
                    match waiting.as_mut() {
                        Some(w) => w.next().await,
                        None => std::future::pending().await,
                    }
                }, if waiting.is_some() => self.waited(happened, &mut waiting),
                sentence = async {
                    match rendering.as_mut() {
                        Some(r) => r.recv().await,
                        None => std::future::pending().await,
                    }
                }, if rendering.is_some() => {
                    if !self.rendered(sentence) {
                        rendering = None;
                    }
                }
                job = hearing::awaited(detecting.as_mut()), if detecting.is_some() => {
                    detecting = None;
                    let job = hearing::detection(job).map(Box::new);
                    self.session.handle(Event::Detected(job), Moment::now());
                }
                heard = hearing::awaited(pending.as_mut()), if pending.is_some() => {
                    pending = None;
                    let heard = hearing::transcript(heard);
                    self.session.handle(Event::Heard(heard), Moment::now());
                }
                from = s.signal.next() => match from {
                    FromPeer::Dialog(state) => self.dialog_event(state).await,
                    FromPeer::Left(reason) => self.session.handle(Event::Gone(reason), Moment::now()),
                },
                () = &mut timer, if deadline.is_some() => {
                    self.session.handle(Event::Tick, Moment::now());
                }
                () = &mut shutdown => self.session.handle(Event::Gone(EndReason::Shutdown), Moment::now()),
            }
            // Still waited on: kept for next time round (actions that replace them
            // are applied at the top of the loop).
            self.pending = pending;
            self.detecting = detecting;
            self.rendering = rendering;
            self.waiting = waiting;
            self.refer = refer;
            self.dialing = dialing;
        }
    }

    /// The blind transfer's dial-out leg reported (None: it ended unheard).
    fn dialled(&mut self, leg: Option<(String, LegEvent)>) {
        let outcome = match leg {
            Some((_, LegEvent::Accept(leg))) => {
                self.answered = Some(leg);
                Ok(())
            }
            Some((_, LegEvent::Declined(why))) => Err(why),
            None => Err("dial-out ended".into()),
        };
        self.session.handle(Event::DialOut(outcome), Moment::now());
    }

    /// The next sentence of the answer (None: all were rendered); whether more may
    /// come.
    fn rendered(&mut self, sentence: Option<Result<Arc<Prompt>, String>>) -> bool {
        let (event, more) = match sentence {
            Some(Ok(prompt)) => (Event::Sentence(prompt), true),
            Some(Err(e)) => (Event::SentenceFailed(e), false),
            None => (Event::AnswerRendered, false),
        };
        self.session.handle(event, Moment::now());
        more
    }

    /// Carries out the session's actions; Some once the IVR part is over.
    async fn apply(&mut self, s: &mut CallSetup) -> Option<Ended> {
        while let Some(action) = self.session.poll_action() {
            match action {
                Action::Play(prompts) => {
                    self.rendering = None;
                    self.out.lock().play(prompts);
                }
                Action::Append(prompt) => self.out.lock().append(prompt),
                Action::StopPlayback => {
                    self.rendering = None;
                    self.out.lock().stop();
                }
                Action::Speak { text, language } => {
                    self.out.lock().stop();
                    self.rendering = Some(speak(s, text, language));
                }
                Action::Announce(prompt) => {
                    let mut out = self.out.lock();
                    let mut prompts = vec![prompt];
                    prompts.extend(out.hold.clone());
                    out.play(prompts);
                }
                // A new question: a transcript still coming answers the old one.
                Action::Listen { .. } | Action::StopListening | Action::Forget => {
                    self.pending = None
                }
                Action::Recognise {
                    audio,
                    language,
                    draft,
                } => {
                    self.pending = None;
                    let matcher = self.session.interpreter().matcher();
                    let submitted = match &s.speech {
                        Some(runtime) => {
                            hearing::recognise(runtime, &audio, &language, matcher, draft)
                        }
                        None => Err("speech recognition is not loaded".into()),
                    };
                    match submitted {
                        Ok(rx) => {
                            self.pending = Some(rx);
                            let late = !draft
                                && s.speech.as_ref().is_some_and(|r| {
                                    r.asr.expected_wait() > crate::speech::HOLD_ON_AFTER
                                });
                            if late {
                                self.session
                                    .handle(Event::RecognitionDelayed, Moment::now());
                            }
                        }
                        Err(e) => {
                            // A draft waits for spare capacity: its refusal is routine.
                            if draft {
                                tracing::debug!(error = %e, "no recognition for the draft");
                            } else {
                                tracing::warn!(error = %e, "no recognition for the utterance");
                            }
                            self.session
                                .handle(Event::RecognitionRefused, Moment::now());
                        }
                    }
                }
                Action::Detect(job) => match &s.speech {
                    Some(runtime) => self.detecting = Some(runtime.detector.submit(*job)),
                    None => self.session.handle(
                        Event::Detected(Err("speech recognition is not loaded".into())),
                        Moment::now(),
                    ),
                },
                Action::Remote(remote) => self.out.lock().remote = remote,
                Action::Media(n) => {
                    let mut out = self.out.lock();
                    let was_sending = out.sends;
                    out.remote = n.remote;
                    out.law = n.law;
                    out.payload_type = n.payload_type;
                    out.sends = n.direction.sends();
                    if !was_sending && out.sends {
                        out.sender.mark_talkspurt();
                    }
                }
                Action::Queue {
                    queue,
                    summary,
                    subject,
                    reason,
                } => self.queue(s, &queue, [summary, subject], reason),
                Action::Refer { to } => self.refer = Some(blind::refer(s, &to)),
                Action::DialOut { to } => self.dialing = Some(blind::dial_out(s, &to)),
                Action::Bridge => match self.answered.take() {
                    Some(leg) => return Some(Ended::Bridge(leg)),
                    None => tracing::error!("the session bridged a call without an answered leg"),
                },
                Action::Note { text, queue } => {
                    let ticket = self.ticket.get_or_insert_with(|| {
                        transfer::Ticket::open(s, s.caller_identity(), &queue, &text)
                    });
                    ticket.note(text);
                }
                Action::Callback { to, queue } => self.callback(s, &to, &queue),
                Action::Rate { score } => keep_rating(s, score),
                Action::Record => tracing::debug!("recording the caller"),
                Action::Keep(r) => self.keep_recording(s, r, "voicemail"),
                Action::End(reason) => {
                    if !reason.caller_left()
                        && let Err(e) = s.signal.bye().await
                    {
                        tracing::debug!(error = %e, "BYE failed");
                    }
                    return Some(Ended::Reason(reason));
                }
            }
        }
        None
    }

    /// The caller asks to be called back on `to`: the call's ticket (opened in
    /// `queue` if the call has none) goes on the desk's callback list.
    fn callback(&mut self, s: &CallSetup, to: &str, queue: &str) {
        let ticket = self.ticket.get_or_insert_with(|| {
            let subject = if s.plan.language.starts_with("zh") {
                "请求回电"
            } else {
                "Callback requested"
            };
            transfer::Ticket::open(s, s.caller_identity(), queue, subject)
        });
        ticket.callback(to);
    }

    /// Queues the caller for an agent, with the queue's hold music.
    /// `told`: what the agent hears, and what the desk and the ticket say.
    fn queue(&mut self, s: &CallSetup, queue: &str, told: [String; 2], reason: String) {
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
        match transfer::Waiting::start(s, queue, told, reason) {
            Some(w) => {
                // The clock loops it after whatever plays, while the caller waits.
                self.out.lock().hold = hold;
                self.ticket = Some(w.ticket());
                self.waiting = Some(w);
            }
            None => self
                .session
                .handle(Event::Queue(Queued::Full), Moment::now()),
        }
    }

    /// Something happened to the waiting caller.
    fn waited(&mut self, happened: transfer::Happened, waiting: &mut Option<transfer::Waiting>) {
        let news = match happened {
            transfer::Happened::Nothing => return,
            transfer::Happened::Announce(p) => Queued::Announce(p),
            transfer::Happened::TimedOut => {
                let log = waiting.take().map(|w| w.log.clone()).unwrap_or_default();
                let mut out = self.out.lock();
                out.hold = None;
                out.stop();
                Queued::TimedOut(log)
            }
            transfer::Happened::Bridge(leg) => {
                let log = waiting.take().map(|w| w.log.clone()).unwrap_or_default();
                self.answered = Some(leg);
                Queued::Answered(log)
            }
        };
        self.session.handle(Event::Queue(news), Moment::now());
    }

    /// The call starts: the plan's first node, and RTCP with the caller.
    fn begin(&mut self, s: &CallSetup) {
        self.session.handle(Event::Start, Moment::now());
        let ssrc = self.out.lock().sender.ssrc();
        self.reports = super::reports::CallerReports::open(s, ssrc);
    }

    /// The frame tick's read: the caller's packets, the session's timers, and
    /// RTCP (the caller's reports read, ours sent when due).
    async fn read_tick(&mut self, s: &CallSetup, buf: &mut [u8]) {
        self.receive_queued(s, buf);
        self.session.handle(Event::Tick, Moment::now());
        if let Some(r) = self.reports.as_mut() {
            r.read(self.session.remote());
            r.report(s, Some(&self.out), &mut self.session).await;
        }
    }

    /// Reads what the caller sent since the last read (the socket is off the
    /// reactor while the call is with the IVR, see `channel::rtp::socket`).
    fn receive_queued(&mut self, s: &CallSetup, buf: &mut [u8]) {
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
            let moment = Moment::now();
            for (d, slot) in got.iter().zip(buf.chunks(SLOT)) {
                // When it arrived, not when it was read (reads come in batches).
                let at =
                    d.at.and_then(|at| wall.duration_since(at).ok())
                        .and_then(|ago| now.checked_sub(ago))
                        .unwrap_or(now);
                let packet = &slot[..d.len];
                let remote = self.session.remote();
                if let Some(r) = self.reports.as_mut()
                    && r.multiplexed(packet, d.from, remote)
                {
                    continue;
                }
                self.session.handle(
                    Event::Rtp {
                        packet,
                        from: d.from,
                        at,
                    },
                    moment,
                );
            }
            if got.len() < BATCH {
                return;
            }
        }
    }

    /// A request or change in the caller's dialog.
    pub(super) async fn dialog_event(&mut self, state: Option<DialogState>) {
        let now = Moment::now();
        let Some(state) = state else {
            return self.session.handle(Event::Gone(EndReason::DialogGone), now);
        };
        match state {
            DialogState::Terminated(_, r) => {
                self.session.handle(Event::Gone(EndReason::from(&r)), now)
            }
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
                    self.session.handle(Event::InfoKey(d), now);
                }
            }
            DialogState::Updated(_, req, handle) => {
                // re-INVITE or UPDATE: hold/unhold, codec or address change.
                let decision = self.session.reoffer(&req.body, now);
                reoffer::respond(&handle, &decision, &req).await;
            }
            DialogState::Options(_, _, handle) => {
                if let Err(e) = handle.reply(StatusCode::OK).await {
                    tracing::debug!(error = %e, "cannot answer OPTIONS");
                }
            }
            DialogState::Notify(_, req, handle) if self.session.expects_notify() => {
                // The progress of the transfer kefu asked for (RFC 3515 §2.4.5).
                if let Err(e) = handle.reply(StatusCode::OK).await {
                    tracing::debug!(error = %e, "cannot answer NOTIFY");
                }
                self.session.handle(Event::Notify(&req.body), now);
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
    }

    /// Stores a recording off the media loop and notes it on the call's ticket.
    pub(super) fn keep_recording(&mut self, s: &CallSetup, r: Recorder, kind: &'static str) {
        if r.is_empty() {
            return;
        }
        let seconds = r.duration().as_secs_f32();
        let ticket = self.ticket.clone();
        let (store, service, identity, call_id) = (
            s.dialogue.store.clone(),
            s.dialogue.service.clone(),
            s.caller_identity(),
            s.call_id.clone(),
        );
        tokio::spawn(async move {
            let wav = match tokio::task::spawn_blocking(move || r.wav()).await {
                Ok(Ok(w)) => w,
                Ok(Err(e)) => return tracing::error!(error = %e, "cannot encode the recording"),
                Err(e) => return tracing::error!(error = %e, "recording task failed"),
            };
            let customer = service
                .file_under(&identity)
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

    /// Keeps what the session still has to hand over once the call is over (a
    /// message being recorded when the caller hung up).
    pub(super) fn finish(&mut self, s: &CallSetup) {
        self.session.stop_recording();
        while let Some(action) = self.session.poll_action() {
            if let Action::Keep(r) = action {
                self.keep_recording(s, r, "voicemail");
            }
        }
    }
}

/// Renders `text` in the plan's voice on a blocking thread, sentence by sentence,
/// each sent as soon as it is ready.
fn speak(s: &CallSetup, text: String, language: String) -> Sentences {
    let (prompts, voice) = (s.dialogue.prompts.clone(), s.plan.voice.clone());
    let (tx, rx) = mpsc::channel(4);
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        // What was rendered ahead is said whole; the rest (a customer's values in
        // it) in pieces that come sooner.
        let pieces = crate::speech::tts::sentences(&text)
            .into_iter()
            .flat_map(|sentence| {
                if prompts.rendered(voice.as_deref(), &language, &sentence) {
                    vec![sentence]
                } else {
                    crate::speech::tts::clauses(&sentence)
                }
            });
        for (n, sentence) in pieces.enumerate() {
            let spoken = prompts.say_private(voice.as_deref(), &language, &sentence);
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
    rx
}

/// Stores the caller's rating of the call (a `rate` node), off the media loop; a
/// call is rated once, like a chat.
fn keep_rating(s: &CallSetup, score: u8) {
    let (store, call_id) = (s.dialogue.store.clone(), s.call_id.clone());
    tokio::spawn(async move {
        match store
            .rate(&call_id, "phone", score, chrono::Utc::now())
            .await
        {
            Ok(true) => tracing::info!(score, "caller rated the call"),
            Ok(false) => tracing::info!("the call was rated already; the first rating stands"),
            Err(e) => tracing::error!(error = format!("{e:#}"), "cannot store the call's rating"),
        }
    });
}
