//! The agent leg of a warm transfer: kefu calls the agent's registered phone (UAC
//! INVITE), or rings the desk's softphone and waits for the browser to pick up
//! (`call::softphone`); then it speaks the summary of the waiting caller with the
//! TTS and waits for the agent's answer: key 1, the desk's accept (or staying on
//! the line after the summary) takes the call, key 2 or hanging up passes it on.
//! A leg that is taken hands its signalling, socket and media state to the
//! caller's task, which bridges the two.
//!
//! The caller's task runs one leg per agent offered (several with ring-all) and
//! hangs a leg up by sending `LegCommand::Hangup` or dropping its command channel.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rsipstack::dialog::dialog::DialogState;
use rsipstack::dialog::dialog_layer::DialogLayer;
use rsipstack::dialog::invitation::InviteOption;
use rsipstack::dialog::invite_dialog::InviteDialog;
use rsipstack::sip::StatusCode;
use rsipstack::sip::prelude::HeadersExt;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::signal::{FromPeer, Signal};
use super::softphone::Softphones;
use crate::agents::registrar::Binding;
use crate::channel::rtp::inbound::Inbound;
use crate::channel::rtp::pacer::Pacer;
use crate::channel::rtp::ports::PortPool;
use crate::channel::rtp::sender::RtpSender;
use crate::media::FRAME_SAMPLES;
use crate::media::dtmf::inband::ToneDetector;
use crate::media::dtmf::relay as info_relay;
use crate::media::dtmf::rfc4733::EventReceiver;
use crate::media::playout::{Frame, Playout};
use crate::media::prompt::{Prompt, PromptCache};
use crate::media::relay::Line;
use crate::media::sdp::{self, Negotiated};

/// How long an agent's phone may ring before the leg gives up by itself (the
/// queue's ring timeout normally withdraws the offer first).
pub const MAX_RING: Duration = Duration::from_secs(120);
/// After the summary, an agent who stays on the line this long takes the call.
pub const STAY_TO_ACCEPT: Duration = Duration::from_secs(5);

/// Where kefu's SIP and media live, to place calls from.
pub struct Dialer {
    pub dialog_layer: Arc<DialogLayer>,
    /// kefu's SIP address (bound).
    pub local: SocketAddr,
    pub ports: Arc<PortPool>,
    /// The address kefu's SIP and SDP name instead of the bound one (behind
    /// 1:1 NAT: `advertised_address`).
    pub advertised: Option<std::net::IpAddr>,
}

impl Dialer {
    /// kefu's SIP address as the far end must see it (the From host, the Contact).
    pub fn public(&self) -> SocketAddr {
        crate::media::sdp::public(self.local, self.advertised)
    }
}

impl std::fmt::Debug for Dialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dialer")
            .field("local", &self.local)
            .finish()
    }
}

/// Where an agent is reached.
#[derive(Clone, Debug)]
pub enum Reach {
    /// Their SIP phone (registered, or a fixed URI), or a dial-out's target.
    Phone(Binding),
    /// The desk's browser (the softphone), rung as this item.
    Desk {
        softphones: Arc<Softphones>,
        item: String,
    },
}

/// One agent to call.
#[derive(Clone, Debug)]
pub struct LegSpec {
    pub agent: String,
    pub reach: Reach,
    /// The caller's number, shown on the agent's phone as the From.
    pub caller: String,
    /// What the agent hears before taking the call; None for a blind transfer's
    /// dial-out, which is taken as soon as it answers.
    pub summary: Option<String>,
    pub language: String,
    pub voice: Option<String>,
    /// How long the phone may ring before the leg gives up by itself.
    pub ring_for: Duration,
}

/// An answered agent leg, handed to the caller's task to bridge.
pub struct AnsweredLeg {
    pub agent: String,
    /// The agent's phone's dialog, or the desk browser's line.
    pub signal: Signal,
    pub socket: UdpSocket,
    pub negotiated: Negotiated,
    /// Where the agent's phone signals from (its media offers are checked against
    /// it); the gateway's address for a desk's browser.
    pub source: std::net::IpAddr,
    /// Which of the agent's packets are taken, and where its media goes.
    pub inbound: Inbound,
    /// Where kefu's stream to the agent stands.
    pub line: Line,
    pub answered_at: Instant,
    /// The media address kefu's SDP names on this leg (re-offers answer with it).
    pub local_sdp: SocketAddr,
}

pub enum LegEvent {
    /// The agent takes the call (key 1, staying on, or the desk's accept).
    Accept(Box<AnsweredLeg>),
    /// The agent passed (key 2, hung up, busy, unreachable, no answer).
    Declined(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LegCommand {
    /// The agent accepted on the desk: take the call as soon as they answer.
    Take,
    /// Stop ringing, or hang up.
    Hangup,
}

/// Calls one agent and reports on `events` (tagged with the agent) until the leg is
/// taken, declined or hung up.
pub async fn run(
    spec: LegSpec,
    dialer: Arc<Dialer>,
    prompts: Arc<PromptCache>,
    events: mpsc::Sender<(String, LegEvent)>,
    mut commands: mpsc::Receiver<LegCommand>,
) {
    let agent = spec.agent.clone();
    let outcome = ring(&spec, &dialer, &prompts, &mut commands).await;
    match outcome {
        Ok(Some(leg)) => {
            let _ = events.send((agent, LegEvent::Accept(Box::new(leg)))).await;
        }
        Ok(None) => {}
        Err(reason) => {
            tracing::info!(%agent, %reason, "agent leg ended without taking the call");
            let _ = events.send((agent, LegEvent::Declined(reason))).await;
        }
    }
}

/// The INVITE to the agent's phone (or a dial-out's target): from the caller's
/// number, to where its REGISTER came from (phones behind NAT too).
fn invite_option(
    spec: &LegSpec,
    contact: &Binding,
    dialer: &Dialer,
    offer: String,
) -> Result<InviteOption, String> {
    let callee = rsipstack::sip::Uri::try_from(contact.contact.as_str())
        .map_err(|e| format!("bad contact: {e}"))?;
    let from_user = if spec.caller.is_empty() {
        "kefu"
    } else {
        spec.caller.as_str()
    };
    let uri = |user: &str| {
        rsipstack::sip::Uri::try_from(format!("sip:{user}@{}", dialer.public()).as_str())
            .map_err(|e| format!("bad local URI: {e}"))
    };
    let transport = if contact.transport == "tcp" {
        rsipstack::sip::transport::Transport::Tcp
    } else {
        rsipstack::sip::transport::Transport::Udp
    };
    Ok(InviteOption {
        caller: uri(from_user).or_else(|_| uri("kefu"))?,
        callee,
        // Where the REGISTER came from: reaches phones behind NAT too.
        destination: Some(rsipstack::transport::SipAddr {
            r#type: Some(transport),
            addr: contact.source.into(),
        }),
        content_type: Some("application/sdp".into()),
        offer: Some(offer.into_bytes()),
        contact: uri("kefu")?,
        ..InviteOption::default()
    })
}

/// An agent's side once answered, before the decision: its signalling and media.
struct Reached {
    signal: Signal,
    negotiated: Negotiated,
    /// Where the agent's media offers may come from.
    source: std::net::IpAddr,
}

/// The leg up to the agent's decision: Some(leg) when taken, None when the caller's
/// task hung it up, Err(why) when the agent passed.
async fn ring(
    spec: &LegSpec,
    dialer: &Dialer,
    prompts: &Arc<PromptCache>,
    commands: &mut mpsc::Receiver<LegCommand>,
) -> Result<Option<AnsweredLeg>, String> {
    let socket = dialer
        .ports
        .bind(dialer.local.ip())
        .await
        .map_err(|e| format!("no-rtp-port: {e}"))?;
    let local_rtp = socket
        .local_addr()
        .map_err(|e| format!("rtp-socket: {e}"))?;
    let mut take = false;
    let reached = match &spec.reach {
        Reach::Phone(contact) => {
            call_phone(spec, contact, dialer, local_rtp, commands, &mut take).await?
        }
        Reach::Desk { softphones, item } => {
            ring_desk(spec, softphones, item, local_rtp, commands, &mut take).await?
        }
    };
    let Some(Reached {
        mut signal,
        negotiated,
        source,
    }) = reached
    else {
        return Ok(None);
    };
    let mut media = Briefing {
        negotiated: negotiated.clone(),
        inbound: Inbound::new(&negotiated),
        pacer: Pacer::new(Instant::now()),
        sender: RtpSender::new(rand::random(), rand::random(), rand::random()),
        playout: Playout::default(),
        events: EventReceiver::default(),
        tones: ToneDetector::default(),
    };
    // Taken at once when the desk accepted, or for a blind transfer's dial-out;
    // otherwise the agent hears the summary and decides.
    if !take && spec.summary.is_some() {
        match media
            .brief(spec, &socket, &mut signal, commands, prompts)
            .await
        {
            Decision::Take => {}
            Decision::Pass(why) => {
                signal
                    .close(&dialer.dialog_layer, why == "agent-hangup")
                    .await;
                return Err(why);
            }
            Decision::Withdrawn => {
                signal.close(&dialer.dialog_layer, false).await;
                return Ok(None);
            }
        }
    }
    let line = Line {
        ssrc: media.sender.ssrc(),
        seq: media.sender.next_seq(),
        timestamp: media.sender.timestamp_for_slot(media.pacer.next_slot()),
    };
    Ok(Some(AnsweredLeg {
        agent: spec.agent.clone(),
        signal,
        socket,
        negotiated,
        source,
        inbound: media.inbound,
        line,
        answered_at: Instant::now(),
        local_sdp: crate::media::sdp::public(local_rtp, dialer.advertised),
    }))
}

/// Calls the agent's SIP phone until it answers: its dialog and media, None when
/// the caller's task hung the leg up first.
async fn call_phone(
    spec: &LegSpec,
    contact: &Binding,
    dialer: &Dialer,
    local_rtp: SocketAddr,
    commands: &mut mpsc::Receiver<LegCommand>,
    take: &mut bool,
) -> Result<Option<Reached>, String> {
    let session_id: u64 = rand::random::<u32>().into();
    let offer = sdp::offer(sdp::public(local_rtp, dialer.advertised), session_id, 1);
    let option = invite_option(spec, contact, dialer, offer)?;
    let (state_tx, mut states) = dialer.dialog_layer.new_dialog_state_channel();
    let (dialog, mut invite) = dialer
        .dialog_layer
        .do_invite_async(option, state_tx)
        .map_err(|e| format!("cannot place the call: {e}"))?;
    let ring_deadline = tokio::time::Instant::now() + spec.ring_for;
    let answer = loop {
        tokio::select! {
            r = &mut invite => match r {
                Ok(Ok((_, Some(resp)))) if resp.status_code.kind() == rsipstack::sip::StatusCodeKind::Successful => break resp,
                Ok(Ok((_, Some(resp)))) => return Err(format!("agent phone answered {}", resp.status_code)),
                Ok(Ok((_, None))) => return Err("no answer from the agent's phone".into()),
                Ok(Err(e)) => return Err(format!("INVITE failed: {e}")),
                Err(e) => return Err(format!("INVITE task: {e}")),
            },
            // Provisional answers (ringing) need nothing from us.
            _ = states.recv() => {}
            cmd = commands.recv() => match cmd {
                Some(LegCommand::Take) => *take = true,
                Some(LegCommand::Hangup) | None => {
                    cancel(&dialog, &mut invite, &dialer.dialog_layer).await;
                    return Ok(None);
                }
            },
            _ = tokio::time::sleep_until(ring_deadline) => {
                cancel(&dialog, &mut invite, &dialer.dialog_layer).await;
                return Err("no answer".into());
            }
        }
    };
    let signal = Signal::Sip { dialog, states };
    match sdp::negotiate(&answer.body)
        .and_then(|n| sdp::check_target(n.remote, contact.source.ip()).map(|()| n))
    {
        Ok(negotiated) => Ok(Some(Reached {
            signal,
            negotiated,
            source: contact.source.ip(),
        })),
        Err(e) => {
            signal.close(&dialer.dialog_layer, false).await;
            Err(format!("agent phone's SDP answer: {e}"))
        }
    }
}

/// Rings the agent's desk until its browser has picked up and connected: the
/// browser's line, None when the caller's task hung the leg up first.
async fn ring_desk(
    spec: &LegSpec,
    softphones: &Softphones,
    item: &str,
    local_rtp: SocketAddr,
    commands: &mut mpsc::Receiver<LegCommand>,
    take: &mut bool,
) -> Result<Option<Reached>, String> {
    let mut picked = softphones
        .ring(&spec.agent, item, local_rtp, Instant::now())
        .ok_or("the desk stopped taking calls")?;
    let ring_deadline = tokio::time::Instant::now() + spec.ring_for;
    let stop = || softphones.stop_ringing(&spec.agent, item);
    let line = loop {
        tokio::select! {
            p = &mut picked => match p {
                Ok(line) => break line,
                Err(_) => return Err("the desk's browser did not connect".into()),
            },
            cmd = commands.recv() => match cmd {
                Some(LegCommand::Take) => *take = true,
                Some(LegCommand::Hangup) | None => {
                    stop();
                    return Ok(None);
                }
            },
            _ = tokio::time::sleep_until(ring_deadline) => {
                stop();
                return Err("no answer".into());
            }
        }
    };
    Ok(Some(Reached {
        source: line.negotiated.remote.ip(),
        negotiated: line.negotiated,
        signal: Signal::Browser(line.signal),
    }))
}

async fn cancel(
    dialog: &InviteDialog,
    invite: &mut rsipstack::platform::JoinHandle<rsipstack::dialog::invitation::InviteAsyncResult>,
    layer: &DialogLayer,
) {
    if let Err(e) = dialog.cancel().await {
        tracing::debug!(error = %e, "CANCEL failed");
    }
    // The INVITE transaction ends with 487 (or a 2xx the stack ends with a BYE).
    let _ = tokio::time::timeout(Duration::from_secs(5), invite).await;
    layer.remove_dialog(&dialog.id());
}

enum Decision {
    Take,
    Pass(String),
    Withdrawn,
}

/// The answered agent leg while the agent hears the summary.
struct Briefing {
    negotiated: Negotiated,
    inbound: Inbound,
    pacer: Pacer,
    sender: RtpSender,
    playout: Playout,
    events: EventReceiver,
    tones: ToneDetector,
}

impl Briefing {
    async fn brief(
        &mut self,
        spec: &LegSpec,
        socket: &UdpSocket,
        signal: &mut Signal,
        commands: &mut mpsc::Receiver<LegCommand>,
        prompts: &Arc<PromptCache>,
    ) -> Decision {
        // The summary is rendered sentence by sentence off the runtime and played
        // as each is ready.
        let (tx, mut sentences) = mpsc::channel::<Result<Arc<Prompt>, String>>(4);
        {
            let (prompts, voice, language, text) = (
                prompts.clone(),
                spec.voice.clone(),
                spec.language.clone(),
                spec.summary.clone().unwrap_or_default(),
            );
            tokio::task::spawn_blocking(move || {
                for sentence in crate::speech::tts::sentences(&text) {
                    if tx
                        .blocking_send(prompts.say_private(voice.as_deref(), &language, &sentence))
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
        let mut rendering = true;
        let mut stay_until: Option<tokio::time::Instant> = None;
        let mut buf = vec![0u8; 2048];
        let mut last_heard = Instant::now();
        loop {
            let far = tokio::time::Instant::now() + Duration::from_secs(3600);
            let mut digits = Vec::new();
            tokio::select! {
                sentence = sentences.recv(), if rendering => match sentence {
                    Some(Ok(p)) => {
                        if self.playout.is_playing() {
                            self.playout.append(p);
                        } else {
                            self.playout.play(vec![p]);
                        }
                    }
                    Some(Err(e)) => {
                        tracing::error!(error = %e, "cannot speak the summary to the agent");
                        rendering = false;
                    }
                    None => rendering = false,
                },
                _ = tokio::time::sleep_until(self.pacer.deadline().into()) => {
                    let finished = self.send_frame(socket).await;
                    if finished && !rendering && stay_until.is_none() {
                        stay_until = Some(tokio::time::Instant::now() + STAY_TO_ACCEPT);
                    }
                    if last_heard.elapsed() > Duration::from_secs(30) {
                        return Decision::Pass("no RTP from the agent's phone".into());
                    }
                }
                _ = tokio::time::sleep_until(stay_until.unwrap_or(far)), if stay_until.is_some() => {
                    tracing::info!(agent = %spec.agent, "agent stayed on the line: taking the call");
                    return Decision::Take;
                }
                received = socket.recv_from(&mut buf) => {
                    if let Ok((len, from)) = received {
                        last_heard = Instant::now();
                        self.receive(&buf[..len], from, &mut digits);
                    }
                }
                state = signal.next() => match state {
                    FromPeer::Left(_)
                    | FromPeer::Dialog(Some(DialogState::Terminated(..)) | None) => {
                        return Decision::Pass("agent-hangup".into());
                    }
                    FromPeer::Dialog(Some(DialogState::Info(_, req, handle))) => {
                        let content_type = req.header_value("Content-Type").unwrap_or_default();
                        let parsed = info_relay::parse_info(&content_type, &req.body);
                        let status = if parsed.is_ok() { StatusCode::OK } else { StatusCode::BadRequest };
                        if let Err(e) = handle.reply(status).await {
                            tracing::debug!(error = %e, "cannot answer INFO");
                        }
                        if let Ok(d) = parsed {
                            digits.push(d);
                        }
                    }
                    FromPeer::Dialog(Some(DialogState::Options(_, _, handle))) => {
                        let _ = handle.reply(StatusCode::OK).await;
                    }
                    FromPeer::Dialog(Some(DialogState::Updated(_, _, handle))) => {
                        // Nothing is renegotiated during the briefing.
                        let _ = handle.reply(StatusCode::NotAcceptableHere).await;
                    }
                    FromPeer::Dialog(Some(_)) => {}
                },
                cmd = commands.recv() => match cmd {
                    Some(LegCommand::Take) => return Decision::Take,
                    Some(LegCommand::Hangup) | None => return Decision::Withdrawn,
                },
            }
            for d in digits {
                match d {
                    '1' => return Decision::Take,
                    '2' => return Decision::Pass("declined".into()),
                    _ => {}
                }
            }
        }
    }

    /// Sends one frame of the summary (or silence); true when the summary's audio
    /// has just run out.
    async fn send_frame(&mut self, socket: &UdpSocket) -> bool {
        let Some(slot) = self.pacer.tick(Instant::now()) else {
            return false;
        };
        let mut pcm = [0i16; FRAME_SAMPLES];
        let frame = self.playout.next_frame(&mut pcm);
        let mut payload = [0u8; FRAME_SAMPLES];
        self.negotiated.law.encode(&pcm, &mut payload);
        let mut packet = [0u8; 12 + FRAME_SAMPLES];
        if let Ok(n) = self
            .sender
            .build(self.negotiated.payload_type, slot, &payload, &mut packet)
            && let Err(e) = socket.send_to(&packet[..n], self.inbound.target()).await
        {
            tracing::debug!(error = %e, "RTP to the agent failed");
        }
        frame == Frame::Finished
    }

    fn receive(&mut self, packet: &[u8], from: SocketAddr, digits: &mut Vec<char>) {
        // Only the agent's phone may speak or press keys on this leg.
        let Some(admitted) = self.inbound.admit(packet, from) else {
            return;
        };
        let rtp = admitted.rtp;
        if admitted.event {
            if let Some(d) = self.events.receive(rtp.timestamp(), rtp.payload()) {
                digits.push(d);
            }
        } else if self.negotiated.telephone_event.is_none() {
            let mut pcm = [0i16; 480];
            let n = rtp.payload().len().min(pcm.len());
            self.negotiated
                .law
                .decode(&rtp.payload()[..n], &mut pcm[..n]);
            self.tones.push(&pcm[..n], |d| digits.push(d));
        }
    }
}

/// What a leg's failure means to the person waiting for it: busy (486, 600),
/// declined (603), no-answer (nobody picked up: the ring time ran out, 408,
/// 480, 487), else failed (unreachable, refused, broken SDP).
pub fn outcome_of(reason: &str) -> &'static str {
    let code = reason
        .split_once("answered ")
        .and_then(|(_, rest)| rest.get(..3))
        .and_then(|c| c.parse::<u16>().ok());
    match code {
        Some(486 | 600) => "busy",
        Some(603) => "declined",
        Some(408 | 480 | 487) => "no-answer",
        Some(_) => "failed",
        None if reason.starts_with("no answer") => "no-answer",
        None if reason == "declined" => "declined",
        None => "failed",
    }
}

/// Whether `text` is a SIP URI kefu can call (an agent's fixed address).
pub fn check_uri(text: &str) -> Result<(), String> {
    if !text.starts_with("sip:") || text.len() > 200 {
        return Err("must be a SIP URI like sip:1001@pbx.example".into());
    }
    rsipstack::sip::Uri::try_from(text)
        .map(|_| ())
        .map_err(|e| format!("not a SIP URI: {e}"))
}

/// A contact that did not come from a registration (an agent's fixed URI, a
/// blind transfer's target), sent where its host resolves, else to `fallback`
/// (the trunk a number is dialled through).
pub async fn fixed_contact(uri: &str, fallback: Option<SocketAddr>) -> Option<Binding> {
    let source = resolve(uri).await.or(fallback)?;
    Some(Binding {
        contact: uri.to_string(),
        source,
        transport: "udp",
        expires_at: Instant::now(),
    })
}

/// Where a SIP URI's host points (port 5060 by default); None when it does not
/// parse or resolve.
async fn resolve(uri: &str) -> Option<SocketAddr> {
    let parsed = rsipstack::sip::Uri::try_from(uri).ok()?;
    let host = parsed.host_with_port.host.to_string();
    let port = parsed.host_with_port.port.map(u16::from).unwrap_or(5060);
    tokio::net::lookup_host((host.as_str(), port))
        .await
        .ok()?
        .next()
}

/// The written line for the desk's offer and the call's ticket: who, why,
/// what they said and what the IVR collected, as the summary has it, but with
/// numbers as digits and no keys to press.
pub fn subject_text(
    language: &str,
    caller: &str,
    topic: Option<&str>,
    said: Option<&str>,
    collected: &[(String, String)],
) -> String {
    let zh = language.starts_with("zh");
    let mut s = match (zh, caller.is_empty()) {
        (true, false) => format!("来电 {caller}"),
        (true, true) => "来电（号码未知）".to_string(),
        (false, false) => format!("Call from {caller}"),
        (false, true) => "Call from an unknown number".to_string(),
    };
    if let Some(t) = topic {
        s.push_str(&if zh {
            format!("，咨询{t}")
        } else {
            format!(" about {t}")
        });
    }
    if let Some(said) = said.filter(|x| !x.trim().is_empty()) {
        let said: String = said.trim().chars().take(120).collect();
        s.push_str(&if zh {
            format!("：“{said}”")
        } else {
            format!(": \"{said}\"")
        });
    }
    for (name, value) in collected.iter().take(5) {
        let value: String = value.chars().take(40).collect();
        s.push_str(&format!(" · {}: {value}", name.replace('_', " ")));
    }
    s
}

/// What the agent hears about the caller before taking the call: who, why, what
/// they said last and what the IVR collected, then the keys.
pub fn summary_text(
    language: &str,
    caller: &str,
    topic: Option<&str>,
    said: Option<&str>,
    collected: &[(String, String)],
) -> String {
    let zh = language.starts_with("zh");
    let spaced = |s: &str| {
        s.chars()
            .filter(|c| !c.is_whitespace())
            .map(String::from)
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut parts = Vec::new();
    match (zh, caller.is_empty()) {
        (true, false) => parts.push(format!("来电号码 {}。", spaced(caller))),
        (true, true) => parts.push("来电号码未知。".to_string()),
        (false, false) => parts.push(format!("Call from {}.", spaced(caller))),
        (false, true) => parts.push("Call from an unknown number.".to_string()),
    }
    if let Some(t) = topic {
        parts.push(if zh {
            format!("咨询：{t}。")
        } else {
            format!("About: {t}.")
        });
    }
    if let Some(s) = said.filter(|s| !s.trim().is_empty()) {
        let s: String = s.chars().take(200).collect();
        parts.push(if zh {
            format!("客户说：{s}。")
        } else {
            format!("They said: {s}.")
        });
    }
    for (name, value) in collected.iter().take(5) {
        let name = name.replace('_', " ");
        let value: String = value.chars().take(40).collect();
        let value = if value.chars().all(|c| c.is_ascii_digit()) {
            spaced(&value)
        } else {
            value
        };
        parts.push(if zh {
            format!("{name}：{value}。")
        } else {
            format!("{name}: {value}.")
        });
    }
    parts.push(if zh {
        "接听请按1，转给其他同事请按2。".to_string()
    } else {
        "Press 1 to take the call, or 2 to pass it on.".to_string()
    });
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_named_as_the_waiting_side_hears_them() {
        assert_eq!(outcome_of("agent phone answered 486 Busy Here"), "busy");
        assert_eq!(outcome_of("agent phone answered 603 Decline"), "declined");
        assert_eq!(
            outcome_of("agent phone answered 480 Temporarily Unavailable"),
            "no-answer"
        );
        assert_eq!(outcome_of("agent phone answered 404 Not Found"), "failed");
        assert_eq!(outcome_of("no answer"), "no-answer");
        assert_eq!(outcome_of("no answer from the agent's phone"), "no-answer");
        assert_eq!(outcome_of("INVITE failed: timeout"), "failed");
    }

    #[test]
    fn summaries_say_who_why_and_what_was_collected() {
        let s = summary_text(
            "en",
            "10086",
            Some("refund status"),
            Some("where is my refund"),
            &[("order_number".into(), "234567".into())],
        );
        assert_eq!(
            s,
            "Call from 1 0 0 8 6. About: refund status. They said: where is my refund. \
             order number: 2 3 4 5 6 7. Press 1 to take the call, or 2 to pass it on."
        );
        assert_eq!(
            subject_text(
                "en",
                "10086",
                Some("refund status"),
                Some("where is my refund"),
                &[("order_number".into(), "234567".into())],
            ),
            "Call from 10086 about refund status: \"where is my refund\" · order number: 234567"
        );
        assert_eq!(
            subject_text("zh", "", Some("退款"), Some("我的退款呢"), &[]),
            "来电（号码未知），咨询退款：“我的退款呢”"
        );
        let zh = summary_text("zh", "", None, None, &[]);
        assert!(
            zh.starts_with("来电号码未知。") && zh.contains("按1"),
            "{zh}"
        );
    }
}
