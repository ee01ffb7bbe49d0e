//! One browser call: the peer connection, its media tasks and its call.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use webrtc::ice_transport::ice_server::RTCIceServer;
use webrtc::peer_connection::RTCPeerConnection;
use webrtc::peer_connection::configuration::RTCConfiguration;
use webrtc::peer_connection::peer_connection_state::RTCPeerConnectionState;
use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;
use webrtc::rtp_transceiver::rtp_codec::RTCRtpCodecCapability;
use webrtc::track::track_local::TrackLocalWriter;
use webrtc::track::track_local::track_local_static_rtp::TrackLocalStaticRTP;
use webrtc::track::track_remote::TrackRemote;
use webrtc::util::{Marshal, Unmarshal};

use super::gateway::{BrowserCodec, CALL_EVENT_PT, Offered, ToBrowser, ToCall};
use super::{Answered, CallError, Caller, ClientSlot, WebRtcEdge};
use crate::call::signal::{BrowserSignal, Signal};
use crate::call::{self, CallSetup, EndReason};
use crate::channel::sip::SipService;
use crate::media::sdp::{Direction, Negotiated};

/// Longest kefu gathers its own candidates before answering.
const GATHER_LIMIT: Duration = Duration::from_secs(5);

/// Answers the offer, then connects and runs the call on a task of its own.
pub(super) async fn start(
    edge: Arc<WebRtcEdge>,
    sip: Arc<SipService>,
    caller: Caller,
    offer: String,
    offered: Offered,
    client: ClientSlot,
) -> Result<Answered, CallError> {
    let number = &edge.settings.number;
    let plan = sip.dialplans.current().lookup(number).ok_or_else(|| {
        CallError::Unavailable(format!("no dialplan answers {number:?} ([webrtc] number)"))
    })?;
    let slot = sip
        .gate
        .try_enter(sip.config.max_calls)
        .ok_or_else(|| CallError::Unavailable("call limit reached or shutting down".into()))?;
    let (pc, media) = open(&edge, offered, offer).await?;
    // The call's own RTP port, and the gateway's socket that stands for the
    // browser on it.
    let ip = gateway_ip(&sip);
    let sockets = async {
        let call_socket = sip.ports.bind(ip).await.map_err(|e| e.to_string())?;
        let gateway = UdpSocket::bind(SocketAddr::new(ip, 0))
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>((call_socket, gateway))
    };
    let (call_socket, gateway) = match sockets.await {
        Ok(s) => s,
        Err(e) => {
            close(&pc).await;
            return Err(CallError::Unavailable(format!("no media port free: {e}")));
        }
    };
    let (call_id, hung_up) = edge.register("webrtc", caller.conversation.clone(), &pc);
    let answer = media.answer.clone();
    let live = Live {
        edge,
        sip,
        pc,
        call_id: call_id.clone(),
        hung_up,
        caller,
        _client: client,
    };
    tokio::spawn(live.run(media, slot, plan, call_socket, gateway));
    Ok(Answered {
        call_id,
        sdp: answer,
    })
}

/// Where the gateway's loopback socket lives: kefu's SIP address, or loopback
/// when that is unspecified.
pub(super) fn gateway_ip(sip: &SipService) -> IpAddr {
    match sip.local_addr().ip() {
        ip if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        ip => ip,
    }
}

/// A new peer connection with the offer answered (kefu's candidates gathered).
pub(super) async fn open(
    edge: &WebRtcEdge,
    offered: Offered,
    offer: String,
) -> Result<(Arc<RTCPeerConnection>, Media), CallError> {
    let codec = offered
        .preferred()
        .ok_or_else(|| CallError::Offer("no codec kefu speaks".into()))?;
    let ice_servers = edge
        .settings
        .ice_servers
        .iter()
        .map(|s| RTCIceServer {
            urls: s.urls.clone(),
            username: s.username.clone(),
            credential: s.credential.clone(),
        })
        .collect();
    let pc = Arc::new(
        edge.api
            .new_peer_connection(RTCConfiguration {
                ice_servers,
                ..Default::default()
            })
            .await
            .map_err(|e| CallError::Unavailable(format!("WebRTC: {e}")))?,
    );
    match connect_media(&pc, codec, offered, offer).await {
        Ok(m) => Ok((pc, m)),
        Err(e) => {
            close(&pc).await;
            Err(e)
        }
    }
}

/// The peer connection's media, once the offer is answered.
pub(super) struct Media {
    pub answer: String,
    track: Arc<TrackLocalStaticRTP>,
    codec: BrowserCodec,
    offered: Offered,
    pub states: watch::Receiver<RTCPeerConnectionState>,
    remote: mpsc::Receiver<Arc<TrackRemote>>,
}

/// Joins a connected browser's audio to `peer`, a UDP socket on loopback (a
/// call's RTP port, or an agent leg's) through the `gateway` socket, until
/// `ended`; the receiver hears when the browser leaves (`hung_up`, or its
/// connection failed).
pub(super) fn join(
    media: Media,
    gateway: UdpSocket,
    peer: SocketAddr,
    hung_up: CancellationToken,
    ended: CancellationToken,
) -> Result<oneshot::Receiver<EndReason>, String> {
    let gateway = Arc::new(gateway);
    let to_call = ToCall::new(media.offered.clone());
    let to_browser = ToBrowser::new(media.codec).map_err(|e| format!("no Opus encoder: {e}"))?;
    tokio::spawn(inbound(
        media.remote,
        to_call,
        gateway.clone(),
        peer,
        ended.clone(),
    ));
    tokio::spawn(outbound(
        media.track.clone(),
        to_browser,
        (gateway, peer),
        ended.clone(),
    ));
    let (gone_tx, gone_rx) = oneshot::channel();
    tokio::spawn(departure(media.states.clone(), hung_up, ended, gone_tx));
    Ok(gone_rx)
}

/// How the gateway's side looks to a call or agent leg: G.711 with RFC 4733
/// events, from `gateway`.
pub(super) fn gateway_media(gateway: SocketAddr) -> Negotiated {
    Negotiated {
        remote: gateway,
        law: ToCall::LAW,
        payload_type: ToCall::LAW.payload_type(),
        telephone_event: Some(CALL_EVENT_PT),
        direction: Direction::SendRecv,
        ptime: 20,
        // The browser's RTCP is the peer connection's; the gateway takes none.
        rtcp_mux: false,
        rtcp_port: None,
    }
}

/// Sets the offer, adds kefu's track, and gathers the answer.
async fn connect_media(
    pc: &Arc<RTCPeerConnection>,
    codec: BrowserCodec,
    offered: Offered,
    offer: String,
) -> Result<Media, CallError> {
    let bad = |e: webrtc::Error| CallError::Offer(format!("the offer cannot be answered: {e}"));
    let failed = |e: webrtc::Error| CallError::Unavailable(format!("WebRTC: {e}"));
    let (mime, clock, channels) = match codec {
        BrowserCodec::Opus { .. } => ("audio/opus", 48_000, 2),
        BrowserCodec::G711 { law, .. } => match law {
            crate::media::g711::Law::Pcmu => ("audio/PCMU", 8_000, 0),
            crate::media::g711::Law::Pcma => ("audio/PCMA", 8_000, 0),
        },
    };
    let track = Arc::new(TrackLocalStaticRTP::new(
        RTCRtpCodecCapability {
            mime_type: mime.into(),
            clock_rate: clock,
            channels,
            ..Default::default()
        },
        "kefu-audio".into(),
        "kefu".into(),
    ));
    let (state_tx, states) = watch::channel(RTCPeerConnectionState::New);
    pc.on_peer_connection_state_change(Box::new(move |state| {
        let _ = state_tx.send(state);
        Box::pin(async {})
    }));
    let (track_tx, remote) = mpsc::channel(2);
    pc.on_track(Box::new(move |track, _, _| {
        let track_tx = track_tx.clone();
        Box::pin(async move {
            let _ = track_tx.send(track).await;
        })
    }));
    // kefu's track first: the offer's audio section then sends as well as receives.
    let sender = pc
        .add_track(track.clone() as Arc<dyn webrtc::track::track_local::TrackLocal + Send + Sync>)
        .await
        .map_err(failed)?;
    // RTCP from the browser must be read for the interceptors (reports, NACKs).
    tokio::spawn(async move {
        let mut buf = vec![0u8; 1500];
        while sender.read(&mut buf).await.is_ok() {}
    });
    let offer = RTCSessionDescription::offer(offer).map_err(bad)?;
    pc.set_remote_description(offer).await.map_err(bad)?;
    let answer = pc.create_answer(None).await.map_err(bad)?;
    let mut gathered = pc.gathering_complete_promise().await;
    pc.set_local_description(answer).await.map_err(failed)?;
    let _ = tokio::time::timeout(GATHER_LIMIT, gathered.recv()).await;
    let answer = pc
        .local_description()
        .await
        .ok_or_else(|| CallError::Unavailable("no local description".into()))?
        .sdp;
    Ok(Media {
        answer,
        track,
        codec,
        offered,
        states,
        remote,
    })
}

pub(super) async fn close(pc: &RTCPeerConnection) {
    if let Err(e) = pc.close().await {
        tracing::debug!(error = %e, "closing a peer connection failed");
    }
}

/// A browser call from its answer to its end.
struct Live {
    edge: Arc<WebRtcEdge>,
    sip: Arc<SipService>,
    pc: Arc<RTCPeerConnection>,
    call_id: String,
    /// Cancelled when the browser hangs up (DELETE).
    hung_up: CancellationToken,
    caller: Caller,
    _client: ClientSlot,
}

impl Live {
    async fn run(
        self,
        mut media: Media,
        slot: crate::channel::sip::CallSlot,
        plan: Arc<crate::dialplan::Dialplan>,
        call_socket: UdpSocket,
        gateway: UdpSocket,
    ) {
        let span = tracing::info_span!("webrtc", call_id = %self.call_id);
        let timeout = self.edge.settings.connect_timeout;
        let connected = tracing::Instrument::instrument(
            connected(&mut media.states, &self.hung_up, timeout),
            span.clone(),
        )
        .await;
        count_connection(connected.is_ok());
        if let Err(why) = connected {
            span.in_scope(|| tracing::info!(%why, "browser call not connected"));
            return self.finish().await;
        }
        let (Ok(call_addr), Ok(gateway_addr)) = (call_socket.local_addr(), gateway.local_addr())
        else {
            return self.finish().await;
        };
        let call_addr = SocketAddr::new(gateway_addr.ip(), call_addr.port());
        let ended = CancellationToken::new();
        let gone_rx = match join(
            media,
            gateway,
            call_addr,
            self.hung_up.clone(),
            ended.clone(),
        ) {
            Ok(gone) => gone,
            Err(e) => {
                span.in_scope(|| tracing::error!(error = %e, "browser call not joined"));
                return self.finish().await;
            }
        };
        let setup = self.setup(plan, call_socket, gateway_addr, gone_rx, ended.clone());
        let call = self.sip.gate.tracker.spawn(async move {
            let _slot = slot;
            call::run(setup).await
        });
        let record = call.await;
        ended.cancel();
        if let Ok(record) = record {
            self.leave_transcript(&record).await;
        }
        self.finish().await;
    }

    /// The call in the chat it was made from: its length and what was said, as a
    /// notice the widget shows and the conversation's history keeps.
    async fn leave_transcript(&self, record: &call::record::CallRecord) {
        let seconds = match (record.answer_at, record.end_at) {
            (Some(a), Some(e)) => (e - a).num_seconds().max(0),
            _ => 0,
        };
        let turns = record.dialogue.clone();
        let text = move |lang: crate::dialogue::text::Lang| {
            use crate::dialogue::engine::Speaker;
            let zh = lang == crate::dialogue::text::Lang::Zh;
            let mut text = if zh {
                format!("📞 通话结束 · {} 分 {} 秒", seconds / 60, seconds % 60)
            } else {
                format!("📞 Call ended · {} min {} s", seconds / 60, seconds % 60)
            };
            for t in &turns {
                let who = match (t.speaker, zh) {
                    (Speaker::Customer, true) => "您",
                    (Speaker::Customer, false) => "You",
                    (Speaker::Agent, true) => "客服",
                    (Speaker::Agent, false) => "Agent",
                    (Speaker::Bot, _) => "kefu",
                };
                text.push_str(&format!("\n{who}: {}", t.text));
            }
            text
        };
        let service = &self.sip.dialogue.service;
        if let Err(e) = service.notice(&self.caller.conversation, text).await {
            tracing::warn!(call_id = %self.call_id, error = %e, "the call's transcript was not left in its chat");
        }
    }

    /// The call as the SIP edge would set it up, with the browser's customer as
    /// the caller and the gateway as their media address.
    fn setup(
        &self,
        plan: Arc<crate::dialplan::Dialplan>,
        call_socket: UdpSocket,
        gateway: SocketAddr,
        gone: oneshot::Receiver<EndReason>,
        ended: CancellationToken,
    ) -> CallSetup {
        let sip = &self.sip;
        // A number a blind transfer dials out goes to the first trunk, if any.
        let trunk = sip
            .config
            .trunks
            .first()
            .and_then(|t| t.addresses.first())
            .map_or(gateway, |ip| SocketAddr::new(*ip, 5060));
        CallSetup {
            call_id: self.call_id.clone(),
            caller: String::new(),
            called: self.edge.settings.number.clone(),
            trunk: None,
            transport: "webrtc",
            source: trunk,
            invite_at: chrono::Utc::now(),
            plan,
            negotiated: gateway_media(gateway),
            socket: crate::channel::rtp::socket::RtpSocket::new(call_socket),
            dtmf: crate::media::dtmf::DtmfMode::Rfc4733,
            rtp_timeout: sip.config.rtp_timeout,
            audio_root: sip.config.audio.clone(),
            signal: Signal::Browser(BrowserSignal::new(gone, ended)),
            hangup_all: sip.hangup_all.clone(),
            speech: sip.speech.clone(),
            dialogue: sip.dialogue.clone(),
            dialog_layer: sip.dialog_layer(),
            staff: sip.staff.clone(),
            customer: Some(self.caller.identity.clone()),
            session_timer: None,
        }
    }

    async fn finish(self) {
        crate::metrics::metrics().webrtc_active.dec();
        close(&self.pc).await;
        crate::lock(&self.edge.calls).remove(&self.call_id);
    }
}

/// Counts a peer connection that connected, or did not.
pub(super) fn count_connection(connected: bool) {
    let outcome = if connected {
        "connected"
    } else {
        "not-connected"
    };
    crate::metrics::metrics()
        .webrtc_calls
        .get_or_create(&crate::metrics::OutcomeLabel { outcome })
        .inc();
}

/// Waits until ICE and DTLS are up, the browser gives up, or `limit` passes.
pub(super) async fn connected(
    states: &mut watch::Receiver<RTCPeerConnectionState>,
    hung_up: &CancellationToken,
    limit: Duration,
) -> Result<(), String> {
    let wait = async {
        loop {
            let state = *states.borrow_and_update();
            match state {
                RTCPeerConnectionState::Connected => return Ok(()),
                RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed => {
                    return Err(format!("the connection {state}"));
                }
                _ => {}
            }
            if states.changed().await.is_err() {
                return Err("the peer connection went away".to_string());
            }
        }
    };
    tokio::select! {
        r = tokio::time::timeout(limit, wait) => r.unwrap_or_else(|_| Err(format!("ICE and DTLS did not connect within {limit:?}"))),
        () = hung_up.cancelled() => Err("the browser hung up first".into()),
    }
}

/// Reports the browser's departure to the call: hung up, or its connection
/// failed or closed.
async fn departure(
    mut states: watch::Receiver<RTCPeerConnectionState>,
    hung_up: CancellationToken,
    ended: CancellationToken,
    gone: oneshot::Sender<EndReason>,
) {
    let failed = async {
        loop {
            if states.changed().await.is_err() {
                return "closed".to_string();
            }
            let state = *states.borrow_and_update();
            if matches!(
                state,
                RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed
            ) {
                return state.to_string().to_lowercase();
            }
        }
    };
    let reason = tokio::select! {
        state = failed => EndReason::BrowserGone(state),
        () = hung_up.cancelled() => EndReason::CallerHangup,
        () = ended.cancelled() => return,
    };
    let _ = gone.send(reason);
}

/// Browser → call: each packet the browser sends, as the call's RTP.
async fn inbound(
    mut remote: mpsc::Receiver<Arc<TrackRemote>>,
    mut to_call: ToCall,
    gateway: Arc<UdpSocket>,
    call: SocketAddr,
    ended: CancellationToken,
) {
    let track = tokio::select! {
        t = remote.recv() => t,
        () = ended.cancelled() => None,
    };
    let Some(track) = track else { return };
    loop {
        let packet = tokio::select! {
            p = track.read_rtp() => p,
            () = ended.cancelled() => break,
        };
        let Ok((packet, _)) = packet else { break };
        if let Some(out) = to_call.translate(&packet)
            && let Ok(bytes) = out.marshal()
            && let Err(e) = gateway.send_to(&bytes, call).await
        {
            tracing::debug!(error = %e, "RTP to the call failed");
        }
    }
    tracing::debug!(dropped = to_call.dropped, "browser audio ended");
}

/// Call → browser: each packet the call sends, in the browser's codec.
async fn outbound(
    track: Arc<TrackLocalStaticRTP>,
    mut to_browser: ToBrowser,
    (gateway, call): (Arc<UdpSocket>, SocketAddr),
    ended: CancellationToken,
) {
    let mut buf = vec![0u8; 2048];
    loop {
        let n = tokio::select! {
            r = gateway.recv_from(&mut buf) => match r {
                // Only the call's own socket speaks to the gateway.
                Ok((n, from)) if from == call => n,
                Ok(_) => continue,
                Err(_) => break,
            },
            () = ended.cancelled() => break,
        };
        let Ok(packet) = webrtc::rtp::packet::Packet::unmarshal(&mut &buf[..n]) else {
            continue;
        };
        if let Some(out) = to_browser.translate(&packet)
            && let Err(e) = track.write_rtp(&out).await
        {
            tracing::debug!(error = %e, "RTP to the browser failed");
        }
    }
}
