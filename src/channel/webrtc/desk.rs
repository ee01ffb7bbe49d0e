//! The agent desk's softphone: the agent's browser answers a call that a warm
//! transfer rings on its desk (`call::softphone`). The browser posts its offer
//! for the ringing call; kefu answers, and once ICE and DTLS are up joins the
//! browser's audio to the agent leg's RTP socket through a gateway, exactly as a
//! widget call's audio joins its call. The leg then plays the summary, takes the
//! agent's decision and bridges the caller; Opus to and from G.711 is the
//! gateway's.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use super::peer::{self, Media};
use super::{Answered, CallError, WebRtcEdge, offered};
use crate::call::signal::BrowserSignal;
use crate::call::softphone::{Picked, Ring, Softphones};

/// Who may add candidates to, or hang up, a desk's peer connection: that agent.
pub fn owner(agent: &str) -> String {
    format!("desk:{agent}")
}

impl WebRtcEdge {
    fn softphones(&self) -> Result<&Softphones, CallError> {
        Ok(&self.ready()?.staff.softphones)
    }

    /// The agent's desk takes calls in the browser (`on`), or stops.
    pub fn set_softphone(&self, agent: &str, on: bool) -> Result<(), CallError> {
        self.softphones()?.set(agent, on, Instant::now());
        Ok(())
    }

    /// The desk polled: the calls ringing on it (it keeps taking calls while it
    /// polls). Empty when browser calls are off.
    pub fn desk_rings(&self, agent: &str) -> Vec<String> {
        self.softphones()
            .map(|phones| phones.touch(agent, Instant::now()))
            .unwrap_or_default()
    }

    /// The agent's browser answers `item`, ringing on its desk, with `offer`.
    pub async fn pick_up(
        self: &Arc<Self>,
        agent: &str,
        item: &str,
        offer: String,
    ) -> Result<Answered, CallError> {
        let offered = offered(&offer)?;
        let sip = self.ready()?.clone();
        // Agents are signed in and answer only what rings for them, so no
        // per-client limit: a contact center's desks share one public address.
        let ring = sip
            .staff
            .softphones
            .pick_up(agent, item)
            .ok_or(CallError::NotRinging)?;
        let (pc, media) = peer::open(self, offered, offer).await?;
        let ip = peer::gateway_ip(&sip);
        let gateway = match UdpSocket::bind(SocketAddr::new(ip, 0)).await {
            Ok(g) => g,
            Err(e) => {
                peer::close(&pc).await;
                return Err(CallError::Unavailable(format!("no media port free: {e}")));
            }
        };
        let (call_id, hung_up) = self.register("desk", owner(agent), &pc);
        let sdp = media.answer.clone();
        tokio::spawn(run(
            self.clone(),
            call_id.clone(),
            pc,
            media,
            (gateway, ring),
            hung_up,
        ));
        Ok(Answered { call_id, sdp })
    }
}

/// The desk's peer connection from its answer to the leg's end: connects, hands
/// the leg the browser's line, and closes when the leg lets go of it.
async fn run(
    edge: Arc<WebRtcEdge>,
    call_id: String,
    pc: Arc<webrtc::peer_connection::RTCPeerConnection>,
    mut media: Media,
    (gateway, ring): (UdpSocket, Ring),
    hung_up: CancellationToken,
) {
    let span = tracing::info_span!("softphone", call_id = %call_id);
    let timeout = edge.settings.connect_timeout;
    let connected = peer::connected(&mut media.states, &hung_up, timeout).await;
    peer::count_connection(connected.is_ok());
    match (connected, gateway.local_addr()) {
        (Ok(()), Ok(gateway_addr)) => {
            // The leg's socket as the gateway reaches it.
            let leg = SocketAddr::new(gateway_addr.ip(), ring.leg_rtp.port());
            let ended = CancellationToken::new();
            match peer::join(media, gateway, leg, hung_up, ended.clone()) {
                Ok(gone) => {
                    let line = Picked {
                        negotiated: peer::gateway_media(gateway_addr),
                        signal: BrowserSignal::new(gone, ended.clone()),
                    };
                    span.in_scope(|| tracing::info!("the desk's browser took the ringing call"));
                    // The leg holds the line until it ends (dropping it ends it).
                    if ring.picked.send(line).is_ok() {
                        ended.cancelled().await;
                    }
                }
                Err(e) => span.in_scope(|| tracing::error!(error = %e, "softphone not joined")),
            }
        }
        (Err(why), _) => span.in_scope(|| tracing::info!(%why, "softphone not connected")),
        (_, Err(e)) => span.in_scope(|| tracing::error!(error = %e, "gateway socket")),
    }
    crate::metrics::metrics().webrtc_active.dec();
    peer::close(&pc).await;
    crate::lock(&edge.calls).remove(&call_id);
}
