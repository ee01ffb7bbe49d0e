//! The WebRTC edge: a browser calls the hotline from the chat widget.
//!
//! Signalling is one HTTP exchange (`routes`): the browser posts its offer with
//! every candidate gathered, kefu answers with its own. The peer connection
//! (webrtc-rs: ICE, DTLS-SRTP) ends at this edge; its audio goes through the
//! `gateway` (Opus or G.711 in, G.711 out to the call) and a pair of loopback UDP
//! sockets into an ordinary call: the same session, dialplan, speech and dialogue
//! as a SIP caller's, with the chat's customer as the caller. The call starts once
//! ICE and DTLS have connected; a browser that never gets there is dropped after
//! `connect_timeout`, and every peer connection is closed when its call ends.
//!
//! The agent desk's softphone (`desk`) is the same peer connection and gateway
//! on the other side of a warm transfer: the browser answers a call ringing on
//! its desk, and its audio joins the agent leg instead of a call.

pub mod desk;
pub mod gateway;
mod peer;
pub mod routes;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use webrtc::api::API;
use webrtc::api::APIBuilder;
use webrtc::api::interceptor_registry::register_default_interceptors;
use webrtc::api::media_engine::{
    MIME_TYPE_OPUS, MIME_TYPE_PCMA, MIME_TYPE_PCMU, MIME_TYPE_TELEPHONE_EVENT, MediaEngine,
};
use webrtc::api::setting_engine::SettingEngine;
use webrtc::ice::udp_network::{EphemeralUDP, UDPNetwork};
use webrtc::ice_transport::ice_candidate_type::RTCIceCandidateType;
use webrtc::interceptor::registry::Registry;
use webrtc::rtp_transceiver::rtp_codec::{
    RTCRtpCodecCapability, RTCRtpCodecParameters, RTPCodecType,
};

use crate::channel::sip::SipService;
use crate::config::webrtc::WebRtc;
use crate::dialogue::conversations::Identity;
use gateway::{BrowserCodec, Offered};

/// Why a browser's call was not taken.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The offer cannot be used (a 400).
    #[error("{0}")]
    Offer(String),
    /// No such call in this conversation (a 404).
    #[error("no such call in this conversation")]
    NoSuchCall,
    /// The call the desk answers does not ring there (a 404): taken by someone
    /// else, withdrawn, or the caller left.
    #[error("this call is not ringing on your desk (taken, withdrawn or ended)")]
    NotRinging,
    /// Too many calls from this client (a 429).
    #[error("this client already has {0} calls; hang one up first")]
    TooMany(usize),
    /// Browser calls are off, the server is starting or full (a 503).
    #[error("{0}")]
    Unavailable(String),
}

/// Who is calling: the chat's customer and where their browser is.
pub struct Caller {
    pub identity: Identity,
    pub client: IpAddr,
    pub conversation: String,
}

/// The answer for the browser.
pub struct Answered {
    pub call_id: String,
    pub sdp: String,
}

/// A browser's peer connection as its routes reach it.
struct LiveCall {
    /// Only its owner may hang it up or add candidates: the chat conversation it
    /// was made from, or the desk of the agent who answered (`desk::owner`).
    owner: String,
    /// Cancelled when the browser hangs up.
    hung_up: tokio_util::sync::CancellationToken,
    pc: Arc<webrtc::peer_connection::RTCPeerConnection>,
}

/// Longest candidate line taken (a real one is under 200 bytes).
const MAX_CANDIDATE: usize = 512;

/// The WebRTC edge.
pub struct WebRtcEdge {
    pub settings: WebRtc,
    api: API,
    /// Set once the SIP edge is bound: calls are made with its resources.
    sip: OnceLock<Arc<SipService>>,
    /// Live browser calls by client address (the per-client limit).
    per_client: Mutex<HashMap<IpAddr, usize>>,
    /// Live browser calls by id.
    calls: Mutex<HashMap<String, LiveCall>>,
}

impl WebRtcEdge {
    pub fn new(settings: WebRtc) -> anyhow::Result<Arc<Self>> {
        // DTLS verifies with rustls, whose process default must be named when two
        // back ends are linked; another part may have named it already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut media = MediaEngine::default();
        for (mime, clock, channels, fmtp, pt) in [
            (MIME_TYPE_OPUS, 48_000, 2, "minptime=10;useinbandfec=1", 111),
            (MIME_TYPE_PCMU, 8_000, 0, "", 0),
            (MIME_TYPE_PCMA, 8_000, 0, "", 8),
            (MIME_TYPE_TELEPHONE_EVENT, 48_000, 0, "0-16", 110),
            (MIME_TYPE_TELEPHONE_EVENT, 8_000, 0, "0-16", 126),
        ] {
            media.register_codec(
                RTCRtpCodecParameters {
                    capability: RTCRtpCodecCapability {
                        mime_type: mime.to_owned(),
                        clock_rate: clock,
                        channels,
                        sdp_fmtp_line: fmtp.to_owned(),
                        rtcp_feedback: vec![],
                    },
                    payload_type: pt,
                    ..Default::default()
                },
                RTPCodecType::Audio,
            )?;
        }
        let registry = register_default_interceptors(Registry::new(), &mut media)?;
        let mut engine = SettingEngine::default();
        let (low, high) = settings.udp_ports;
        engine.set_udp_network(UDPNetwork::Ephemeral(EphemeralUDP::new(low, high)?));
        // A browser that vanishes (a closed tab, a lost network) ends its call
        // within 15 s: 5 s without a packet is "disconnected", 10 s more "failed".
        engine.set_ice_timeouts(
            Some(Duration::from_secs(5)),
            Some(Duration::from_secs(10)),
            Some(Duration::from_secs(2)),
        );
        // A browser on this machine (and the tests) reaches kefu over loopback.
        engine.set_include_loopback_candidate(true);
        if !settings.public_ips.is_empty() {
            let ips = settings
                .public_ips
                .iter()
                .map(ToString::to_string)
                .collect();
            engine.set_nat_1to1_ips(ips, RTCIceCandidateType::Host);
        }
        let api = APIBuilder::new()
            .with_media_engine(media)
            .with_interceptor_registry(registry)
            .with_setting_engine(engine)
            .build();
        Ok(Arc::new(Self {
            settings,
            api,
            sip: OnceLock::new(),
            per_client: Mutex::new(HashMap::new()),
            calls: Mutex::new(HashMap::new()),
        }))
    }

    /// Joins the SIP edge, whose call slots, ports and call resources browser
    /// calls share.
    pub fn attach(&self, sip: Arc<SipService>) {
        let _ = self.sip.set(sip);
    }

    /// Answers a browser's offer and starts its call once connected.
    pub async fn call(
        self: &Arc<Self>,
        caller: Caller,
        offer: String,
    ) -> Result<Answered, CallError> {
        let sip = self.ready()?.clone();
        let offered = offered(&offer)?;
        let client = ClientSlot::take(self, caller.client)?;
        peer::start(self.clone(), sip, caller, offer, offered, client).await
    }

    /// Registers a new peer connection for its owner's routes: its id (`prefix`
    /// and random hex) and the token cancelled when the owner hangs up. The
    /// connection's task removes it when done.
    fn register(
        &self,
        prefix: &str,
        owner: String,
        pc: &Arc<webrtc::peer_connection::RTCPeerConnection>,
    ) -> (String, tokio_util::sync::CancellationToken) {
        let id = format!("{prefix}-{}", hex::encode(rand::random::<[u8; 10]>()));
        let hung_up = tokio_util::sync::CancellationToken::new();
        crate::lock(&self.calls).insert(
            id.clone(),
            LiveCall {
                owner,
                hung_up: hung_up.clone(),
                pc: pc.clone(),
            },
        );
        crate::metrics::metrics().webrtc_active.inc();
        (id, hung_up)
    }

    /// The SIP edge browser calls are placed with, when browser calls are on and
    /// the edge is bound.
    fn ready(&self) -> Result<&Arc<SipService>, CallError> {
        if !self.settings.enabled {
            return Err(CallError::Unavailable("browser calls are off".into()));
        }
        self.sip
            .get()
            .ok_or_else(|| CallError::Unavailable("starting; try again shortly".into()))
    }

    /// Hangs up a browser's call; false when `owner` has no such call.
    pub fn hang_up(&self, owner: &str, call_id: &str) -> bool {
        let calls = crate::lock(&self.calls);
        match calls.get(call_id) {
            Some(call) if call.owner == owner => {
                call.hung_up.cancel();
                true
            }
            _ => false,
        }
    }

    /// A candidate the browser gathered after its offer (trickle ICE); an empty
    /// one says it has no more.
    pub async fn candidate(
        &self,
        owner: &str,
        call_id: &str,
        candidate: webrtc::ice_transport::ice_candidate::RTCIceCandidateInit,
    ) -> Result<(), CallError> {
        let line = &candidate.candidate;
        if line.len() > MAX_CANDIDATE
            || !(line.is_empty() || line.starts_with("candidate:"))
            || line.chars().any(char::is_control)
        {
            return Err(CallError::Offer(format!(
                "a candidate is `candidate:...` (at most {MAX_CANDIDATE} bytes), or empty for the end"
            )));
        }
        let pc = {
            let calls = crate::lock(&self.calls);
            match calls.get(call_id) {
                Some(call) if call.owner == owner => call.pc.clone(),
                _ => return Err(CallError::NoSuchCall),
            }
        };
        pc.add_ice_candidate(candidate)
            .await
            .map_err(|e| CallError::Offer(format!("the candidate cannot be used: {e}")))
    }
}

/// One of a client's calls, given back when dropped.
pub(crate) struct ClientSlot {
    edge: Arc<WebRtcEdge>,
    client: IpAddr,
}

impl ClientSlot {
    fn take(edge: &Arc<WebRtcEdge>, client: IpAddr) -> Result<Self, CallError> {
        let mut counts = crate::lock(&edge.per_client);
        let n = counts.entry(client).or_default();
        if *n >= edge.settings.max_per_client {
            return Err(CallError::TooMany(*n));
        }
        *n += 1;
        Ok(Self {
            edge: edge.clone(),
            client,
        })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut counts = crate::lock(&self.edge.per_client);
        if let Some(n) = counts.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.client);
            }
        }
    }
}

/// What a browser's offer allows: its audio codecs kefu speaks and its
/// telephone-event payload types, or why the offer cannot be answered.
pub fn offered(offer: &str) -> Result<Offered, CallError> {
    let bad = |why: String| CallError::Offer(why);
    let desc = sdp::SessionDescription::unmarshal(&mut std::io::Cursor::new(offer))
        .map_err(|e| bad(format!("the offer is not SDP: {e}")))?;
    let media = desc
        .media_descriptions
        .iter()
        .find(|m| m.media_name.media == "audio" && m.media_name.port.value > 0)
        .ok_or_else(|| bad("the offer has no audio".into()))?;
    if !desc
        .attributes
        .iter()
        .chain(&media.attributes)
        .any(|a| a.key == "fingerprint")
    {
        return Err(bad("the offer has no DTLS fingerprint".into()));
    }
    let mut offered = Offered::default();
    for a in media.attributes.iter().filter(|a| a.key == "rtpmap") {
        let Some((pt, codec)) = a.value.as_deref().and_then(|v| v.split_once(' ')) else {
            continue;
        };
        let Ok(pt) = pt.parse::<u8>() else { continue };
        let mut parts = codec.split('/');
        let (name, clock) = (parts.next().unwrap_or_default(), parts.next());
        let clock: u32 = clock.and_then(|c| c.parse().ok()).unwrap_or(0);
        match (name.to_ascii_lowercase().as_str(), clock) {
            ("opus", 48_000) => offered.audio.push(BrowserCodec::Opus { payload_type: pt }),
            ("pcmu", 8_000) => offered.audio.push(BrowserCodec::G711 {
                law: crate::media::g711::Law::Pcmu,
                payload_type: pt,
            }),
            ("pcma", 8_000) => offered.audio.push(BrowserCodec::G711 {
                law: crate::media::g711::Law::Pcma,
                payload_type: pt,
            }),
            ("telephone-event", c) if c > 0 => offered.events.push((pt, c)),
            _ => {}
        }
    }
    if offered.preferred().is_none() {
        return Err(bad(
            "the offer's audio has none of Opus, PCMU or PCMA".into()
        ));
    }
    Ok(offered)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHROMIUM: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126\r\nc=IN IP4 0.0.0.0\r\n\
        a=mid:0\r\na=sendrecv\r\na=rtcp-mux\r\na=ice-ufrag:abcd\r\na=ice-pwd:0123456789012345678901\r\n\
        a=fingerprint:sha-256 AA:BB\r\na=setup:actpass\r\n\
        a=rtpmap:111 opus/48000/2\r\na=rtpmap:63 red/48000/2\r\na=rtpmap:9 G722/8000\r\n\
        a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:13 CN/8000\r\n\
        a=rtpmap:110 telephone-event/48000\r\na=rtpmap:126 telephone-event/8000\r\n";

    #[test]
    fn a_browsers_offer_gives_its_codecs_and_keys() {
        let o = offered(CHROMIUM).unwrap();
        assert_eq!(
            o.preferred(),
            Some(BrowserCodec::Opus { payload_type: 111 })
        );
        assert_eq!(o.audio.len(), 3);
        assert_eq!(o.events, vec![(110, 48_000), (126, 8_000)]);
    }

    #[test]
    fn offers_kefu_cannot_answer_are_refused_with_the_reason() {
        let cases = [
            ("hello", "not SDP"),
            (
                "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=fingerprint:sha-256 AA\r\n",
                "no audio",
            ),
            (
                &CHROMIUM.replace("a=fingerprint:sha-256 AA:BB\r\n", ""),
                "no DTLS fingerprint",
            ),
            (
                &CHROMIUM
                    .replace("a=rtpmap:111 opus/48000/2\r\n", "")
                    .replace("a=rtpmap:0 PCMU/8000\r\n", "")
                    .replace("a=rtpmap:8 PCMA/8000\r\n", ""),
                "none of Opus",
            ),
        ];
        for (offer, why) in cases {
            match offered(offer) {
                Err(CallError::Offer(e)) => assert!(e.contains(why), "{e} / {why}"),
                other => panic!("{why}: {:?}", other.map(|_| ())),
            }
        }
    }
}
