//! The bridged call (B2BUA): caller and agent each talk to kefu, which relays RTP
//! both ways (`media::relay`: transcoding between G.711 laws, RFC 4733 events
//! passed on), forwards SIP INFO keys, answers re-INVITEs on either leg, records
//! when the queue asks for it, and ends both legs when either hangs up.

use std::time::{Duration, Instant};

use rsipstack::dialog::dialog::DialogState;
use rsipstack::sip::prelude::HeadersExt;
use rsipstack::sip::{Header, StatusCode};

use super::leg::AnsweredLeg;
use super::pump::Pump;
use super::recorder::Recorder;
use super::session::Action;
use super::signal::FromPeer;
use super::{CallSetup, EndReason, reoffer};
use crate::channel::rtp::receiver::Accepted;
use crate::dialogue::engine::Speaker;
use crate::media::relay::LegMedia;
use crate::media::relay::{Line, MAX_PAYLOAD, Relay, Relayed};
use crate::media::sdp;

/// The longest bridged call a recording keeps (20 min of stereo 8 kHz PCM is
/// 38 MB in memory until the call ends).
pub const MAX_RECORDING: Duration = Duration::from_secs(20 * 60);

pub(super) fn leg_media(n: &sdp::Negotiated) -> LegMedia {
    LegMedia {
        law: n.law,
        payload_type: n.payload_type,
        telephone_event: n.telephone_event,
    }
}

/// The bridge's state the relay loop works on.
struct Bridged {
    leg: AnsweredLeg,
    to_agent: Relay,
    to_caller: Relay,
    recorder: Option<Recorder>,
    caller_ears: Option<super::hearing::Transcribing>,
    agent_ears: Option<super::hearing::Transcribing>,
    agent_media: crate::channel::rtp::inbound::Inbound,
    agent_heard: Instant,
    agent_local: Option<std::net::SocketAddr>,
    sent_to_caller: u64,
}

/// How the bridge ended, for the record.
enum Side {
    Caller,
    Agent,
}

impl Pump {
    /// Relays between the caller and the agent until either hangs up; returns the
    /// call's end reason, or None when the agent hung up first and the caller
    /// goes on in the plan (the transfer node's `after`: a survey).
    pub(super) async fn bridge(
        &mut self,
        s: &mut CallSetup,
        leg: AnsweredLeg,
    ) -> Option<EndReason> {
        let agent = leg.agent.clone();
        tracing::info!(%agent, caller_codec = self.session.negotiated().law.encoding_name(), agent_codec = leg.negotiated.law.encoding_name(), "caller and agent bridged");
        // The bridge continues the caller's stream from where the clock left it.
        self.out.stop();
        let queue = self
            .session
            .transfer_log()
            .map(|t| t.queue.clone())
            .unwrap_or_default();
        let recorder = s
            .staff
            .center
            .queue_config(&queue)
            .record
            .then(|| Recorder::new(2, MAX_RECORDING, Instant::now()));
        let caller_line = {
            let out = self.out.lock();
            Line {
                ssrc: out.sender.ssrc(),
                seq: out.sender.next_seq(),
                timestamp: out.sender.timestamp_for_slot(out.pacer.next_slot()),
            }
        };
        // The live transcript: the call's conversation (the one its `ask` nodes
        // held, or a new one) is made live for the desk, and each leg gets ears
        // when recognition is loaded.
        let conversation = self.go_live(s);
        s.staff.center.attach(&s.call_id, &conversation);
        let ears = || {
            s.speech
                .as_ref()
                .map(|runtime| super::hearing::Transcribing::new(runtime.clone(), &s.plan.language))
        };
        let mut b = Bridged {
            to_agent: Relay::new(
                leg_media(self.session.negotiated()),
                leg_media(&leg.negotiated),
                leg.line,
            ),
            to_caller: Relay::new(
                leg_media(&leg.negotiated),
                leg_media(self.session.negotiated()),
                caller_line,
            ),
            recorder,
            caller_ears: ears(),
            agent_ears: ears(),
            agent_media: leg.inbound.clone(),
            agent_heard: Instant::now(),
            agent_local: Some(leg.local_sdp),
            sent_to_caller: 0,
            leg,
        };
        let metrics = crate::metrics::metrics();
        metrics.bridged_active.inc();
        // Relaying forwards each packet as it arrives: the caller's socket goes back
        // on the reactor (the IVR polled it at its frame tick).
        let (ended_by, reason) = match s.socket.reactor_mode() {
            Err(e) => (Side::Caller, EndReason::RtpSocket(e.to_string())),
            Ok(()) => self.relay(s, &mut b, &conversation).await,
        };
        // The side that did not hang up is hung up, unless the caller goes on.
        let goes_on = matches!(ended_by, Side::Agent)
            && reason == EndReason::AgentHangup
            && self.session.goes_on_after_agent();
        let caller_gone = matches!(ended_by, Side::Caller) && reason.caller_left();
        if !goes_on
            && !caller_gone
            && let Err(e) = s.signal.bye().await
        {
            tracing::debug!(error = %e, "BYE to the caller failed");
        }
        b.leg
            .signal
            .close(&s.dialog_layer, matches!(ended_by, Side::Agent))
            .await;
        metrics.bridged_active.dec();
        self.out.lock().sender.packets += b.sent_to_caller;
        s.staff.center.finish(&s.call_id, &agent);
        let talked = b.leg.answered_at.elapsed();
        tracing::info!(%agent, talk_s = talked.as_secs(), to_agent = b.to_agent.relayed, to_caller = b.to_caller.relayed, dropped = b.to_agent.dropped + b.to_caller.dropped, %reason, "bridged call ended");
        if let Some(log) = self.session.transfer_log() {
            log.talk_ms = Some(talked.as_millis() as u64);
            log.relayed_to_agent = b.to_agent.relayed;
            log.relayed_to_caller = b.to_caller.relayed;
        }
        if let Some(r) = b.recorder.take()
            && !r.is_empty()
        {
            self.keep_recording(s, r, "call");
        }
        if !goes_on {
            return Some(reason);
        }
        // Back to the IVR: the socket read at the frame tick, the clock sending
        // on from where the bridge's stream to the caller stands.
        if let Err(e) = s.socket.poll_mode() {
            return Some(EndReason::RtpSocket(e.to_string()));
        }
        let line = b.to_caller.line();
        self.out.resume(
            crate::channel::rtp::clock::MediaClock::shared(),
            line.seq,
            line.timestamp,
        );
        tracing::info!(%agent, "the agent hung up; the caller goes on in the plan");
        None
    }

    /// The relay loop: until either side hangs up (or goes quiet); who ended it,
    /// and why.
    async fn relay(
        &mut self,
        s: &mut CallSetup,
        b: &mut Bridged,
        conversation: &str,
    ) -> (Side, EndReason) {
        let Bridged {
            leg,
            to_agent,
            to_caller,
            recorder,
            caller_ears,
            agent_ears,
            agent_media,
            agent_heard,
            agent_local,
            sent_to_caller,
        } = b;
        let metrics = crate::metrics::metrics();
        let mut caller_buf = vec![0u8; 2048];
        let mut agent_buf = vec![0u8; 2048];
        let mut out = vec![0u8; 12 + MAX_PAYLOAD];
        let mut pcm = Vec::with_capacity(MAX_PAYLOAD);
        let mut check = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                t = async {
                    match caller_ears.as_mut() {
                        Some(h) => h.next().await,
                        None => std::future::pending().await,
                    }
                }, if caller_ears.as_ref().is_some_and(|h| h.busy()) => {
                    if let Some(t) = t {
                        transcribed(s, conversation, Speaker::Customer, t);
                    }
                }
                t = async {
                    match agent_ears.as_mut() {
                        Some(h) => h.next().await,
                        None => std::future::pending().await,
                    }
                }, if agent_ears.as_ref().is_some_and(|h| h.busy()) => {
                    if let Some(t) = t {
                        transcribed(s, conversation, Speaker::Agent, t);
                    }
                }
                received = s.socket.recv_from(&mut caller_buf) => {
                    let Ok((len, from)) = received else { continue };
                    let packet = &caller_buf[..len];
                    if !self.caller_packet(packet, from) {
                        continue;
                    }
                    let want_pcm = recorder.is_some() || caller_ears.is_some();
                    if let Relayed::Audio(n) | Relayed::Event(n) =
                        to_agent.relay(packet, &mut out, want_pcm.then_some(&mut pcm))
                    {
                        tap(&mut pcm, recorder.as_mut(), 0, caller_ears.as_mut());
                        match leg.socket.send_to(&out[..n], agent_media.target()).await {
                            Ok(_) => {
                                metrics.rtp_out.inc();
                            }
                            Err(e) => tracing::debug!(error = %e, "RTP to the agent failed"),
                        }
                    }
                }
                received = leg.socket.recv_from(&mut agent_buf) => {
                    let Ok((len, from)) = received else { continue };
                    let packet = &agent_buf[..len];
                    // Only the agent's phone: answered where it sends from.
                    if agent_media.admit(packet, from).is_none() {
                        continue;
                    }
                    *agent_heard = Instant::now();
                    let want_pcm = recorder.is_some() || agent_ears.is_some();
                    if let Relayed::Audio(n) | Relayed::Event(n) =
                        to_caller.relay(packet, &mut out, want_pcm.then_some(&mut pcm))
                    {
                        tap(&mut pcm, recorder.as_mut(), 1, agent_ears.as_mut());
                        if self.session.negotiated().direction.sends() {
                            match s.socket.send_to(&out[..n], self.session.remote()).await {
                                Ok(_) => {
                                    metrics.rtp_out.inc();
                                    *sent_to_caller += 1;
                                }
                                Err(e) => tracing::debug!(error = %e, "RTP to the caller failed"),
                            }
                        }
                    }
                }
                from = s.signal.next() => match from {
                    FromPeer::Left(reason) => return (Side::Caller, reason),
                    FromPeer::Dialog(Some(DialogState::Info(_, req, handle))) => {
                        // A key sent as SIP INFO goes on to the agent the same way.
                        let _ = handle.reply(StatusCode::OK).await;
                        forward_info(leg.signal.dialog(), &req);
                    }
                    FromPeer::Dialog(Some(DialogState::Terminated(_, r))) => return (Side::Caller, EndReason::from(&r)),
                    FromPeer::Dialog(None) => return (Side::Caller, EndReason::DialogGone),
                    FromPeer::Dialog(other) => {
                        if let Some(r) = self.caller_dialog(other, leg, to_agent, to_caller).await {
                            return (Side::Caller, r);
                        }
                    }
                },
                state = leg.signal.next() => {
                    if let Some(ended) = self.agent_dialog(s, state, leg, to_agent, to_caller, agent_media, *agent_local).await {
                        return ended;
                    }
                }
                _ = check.tick() => {
                    if let Some(ended) = self.quiet_leg(s, *agent_heard, leg) {
                        return ended;
                    }
                    self.report_bridged(s).await;
                }
                _ = s.hangup_all.cancelled() => return (Side::Caller, EndReason::Shutdown),
            }
        }
    }

    /// A leg that went quiet (not on hold) while bridged: who, and why it ends.
    fn quiet_leg(
        &self,
        s: &CallSetup,
        agent_heard: Instant,
        leg: &AnsweredLeg,
    ) -> Option<(Side, EndReason)> {
        let quiet = |since: Instant| since.elapsed() > s.rtp_timeout;
        let direction = self.session.negotiated().direction;
        let caller_listens =
            direction != sdp::Direction::Inactive && direction != sdp::Direction::SendOnly;
        if caller_listens && quiet(self.session.last_heard()) {
            tracing::warn!("no RTP from the caller while bridged; hanging up");
            return Some((Side::Caller, EndReason::RtpTimeout));
        }
        if quiet(agent_heard) && leg.negotiated.direction != sdp::Direction::Inactive {
            tracing::warn!(agent = %leg.agent, "no RTP from the agent while bridged; hanging up");
            return Some((Side::Agent, EndReason::AgentRtpTimeout));
        }
        None
    }

    /// Another request in the caller's dialog (a re-INVITE: the relays follow the
    /// caller's new media); Some when it ended the call.
    async fn caller_dialog(
        &mut self,
        state: Option<DialogState>,
        leg: &AnsweredLeg,
        to_agent: &mut Relay,
        to_caller: &mut Relay,
    ) -> Option<EndReason> {
        let before = leg_media(self.session.negotiated());
        self.dialog_event(state).await;
        if let Some(r) = self.bridged_actions() {
            return Some(r);
        }
        let now = leg_media(self.session.negotiated());
        if now != before {
            to_agent.renegotiated(now, leg_media(&leg.negotiated));
            to_caller.renegotiated(leg_media(&leg.negotiated), now);
        }
        None
    }

    /// A request or change in the agent's dialog; Some when the bridge is over.
    #[allow(clippy::too_many_arguments)]
    async fn agent_dialog(
        &mut self,
        s: &CallSetup,
        state: FromPeer,
        leg: &mut AnsweredLeg,
        to_agent: &mut Relay,
        to_caller: &mut Relay,
        agent_media: &mut crate::channel::rtp::inbound::Inbound,
        agent_local: Option<std::net::SocketAddr>,
    ) -> Option<(Side, EndReason)> {
        let state = match state {
            FromPeer::Dialog(state) => state,
            // The desk's browser hung up, or its connection failed.
            FromPeer::Left(_) => return Some((Side::Agent, EndReason::AgentHangup)),
        };
        match state {
            Some(DialogState::Info(_, req, handle)) => {
                let _ = handle.reply(StatusCode::OK).await;
                forward_info(s.signal.dialog(), &req);
            }
            Some(DialogState::Updated(_, req, handle)) => {
                // The agent's phone holds, resumes or changes codec:
                // answered as the caller's re-INVITE is.
                let (session_id, sdp_version) = self.session.sdp_session();
                let decision = match agent_local {
                    Some(local) => reoffer::reoffer(
                        &leg.negotiated,
                        &req.body,
                        leg.source,
                        local,
                        session_id,
                        sdp_version,
                    ),
                    None => {
                        reoffer::Reoffer::Refused("the agent's media socket has no address".into())
                    }
                };
                if let reoffer::Reoffer::Accepted { negotiated: n, .. } = &decision {
                    agent_media.renegotiated(n);
                    leg.negotiated = n.clone();
                    let me = leg_media(self.session.negotiated());
                    to_agent.renegotiated(me, leg_media(&leg.negotiated));
                    to_caller.renegotiated(leg_media(&leg.negotiated), me);
                }
                reoffer::respond(&handle, &decision, &req).await;
            }
            Some(DialogState::Options(_, _, handle)) => {
                let _ = handle.reply(StatusCode::OK).await;
            }
            Some(DialogState::Terminated(..)) | None => {
                return Some((Side::Agent, EndReason::AgentHangup));
            }
            Some(_) => {}
        }
        None
    }

    /// Makes the call's conversation live (pushed to subscribers) for the bridge's
    /// transcript; returns its id, which the call record then keeps.
    fn go_live(&mut self, s: &CallSetup) -> String {
        let conversations = &s.dialogue.conversations;
        let conversation = self
            .session
            .interpreter()
            .conversation()
            .cloned()
            .unwrap_or_else(|| {
                let lang = crate::dialogue::Lang::from_code(&s.plan.language)
                    .unwrap_or(crate::dialogue::Lang::En);
                crate::dialogue::Conversation::new(crate::dialogue::Medium::Voice, lang)
            });
        let id = conversations.live(
            crate::dialogue::conversations::Channel::Phone,
            &s.caller_identity(),
            conversation,
            s.invite_at,
            chrono::Utc::now(),
        );
        self.live_conversation = Some(id.clone());
        id
    }

    /// Takes a packet from the caller's socket during the bridge: true if it is
    /// new caller media to relay (the address is latched and the statistics kept
    /// as before the bridge).
    fn caller_packet(&mut self, packet: &[u8], from: std::net::SocketAddr) -> bool {
        // The caller's RTCP, when multiplexed, is the reports' (not relayed).
        let remote = self.session.remote();
        if let Some(r) = self.reports.as_mut()
            && r.multiplexed(packet, from, remote)
        {
            return false;
        }
        let fresh = self
            .session
            .track_caller(packet, from, Instant::now())
            .is_some_and(|(_, accepted, _)| !matches!(accepted, Accepted::Stale));
        // A new source is used as it is (`session.remote()`); nothing else to do.
        while self.session.poll_action().is_some() {}
        fresh
    }

    /// RTCP with the caller while bridged: their reports read, receiver
    /// reports sent when due (see `call::reports`).
    async fn report_bridged(&mut self, s: &CallSetup) {
        if let Some(r) = self.reports.as_mut() {
            r.read(self.session.remote());
            r.report(s, None, &mut self.session).await;
        }
    }

    /// What the session asks for after a dialog request in the bridge: the media
    /// it renegotiated are read from it; Some when the call is over.
    fn bridged_actions(&mut self) -> Option<EndReason> {
        let mut ended = None;
        while let Some(action) = self.session.poll_action() {
            if let Action::End(reason) = action {
                ended = Some(reason);
            }
        }
        ended
    }
}

/// What a relayed packet's audio feeds besides the other leg: the recording
/// (this side's channel) and this side's ears for the live transcript.
fn tap(
    pcm: &mut Vec<i16>,
    recorder: Option<&mut Recorder>,
    channel: usize,
    ears: Option<&mut super::hearing::Transcribing>,
) {
    if pcm.is_empty() {
        return;
    }
    if let Some(r) = recorder {
        r.push(channel, pcm, Instant::now());
    }
    if let Some(h) = ears {
        h.push(pcm);
    }
    pcm.clear();
}

/// A line of the live transcript: added to the call's conversation and pushed to
/// the desk (stored with the call record when the call ends).
fn transcribed(
    s: &CallSetup,
    conversation: &str,
    speaker: Speaker,
    t: Result<crate::speech::Transcript, String>,
) {
    match t {
        Ok(t) if !t.text.trim().is_empty() => {
            tracing::info!(
                ?speaker,
                chars = t.text.chars().count(),
                "bridged call transcribed"
            );
            let c = &s.dialogue.conversations;
            match c.transcribed(conversation, speaker, t.text.trim(), chrono::Utc::now()) {
                Ok(appended) => c.publish(&appended),
                Err(e) => tracing::debug!(error = %e, "transcript line dropped"),
            }
        }
        Ok(_) => {}
        Err(e) => tracing::debug!(error = %e, "no transcript for an utterance"),
    }
}

/// Sends an INFO key on the other leg (off the media loop); a browser on the
/// other side (no dialog) hears keys in the audio only.
pub(super) fn forward_info(
    dialog: Option<&rsipstack::dialog::invite_dialog::InviteDialog>,
    req: &rsipstack::sip::Request,
) {
    let Some(dialog) = dialog else {
        tracing::debug!("a SIP INFO key is not sent to a browser");
        return;
    };
    let content_type = req.header_value("Content-Type").unwrap_or_default();
    let body = req.body.clone();
    let dialog = dialog.clone();
    tokio::spawn(async move {
        let headers = vec![Header::Other("Content-Type".into(), content_type)];
        if let Err(e) = dialog.info(Some(headers), Some(body)).await {
            tracing::debug!(error = %e, "cannot pass a SIP INFO key on");
        }
    });
}
