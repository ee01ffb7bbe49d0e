//! Two legs kefu placed itself, joined (a callback: the agent's phone or desk
//! softphone, and the customer reached through the trunk). Like the bridge of
//! an inbound call (`call::bridge`), kefu relays RTP both ways through two
//! `media::relay::Relay`s, passes SIP INFO keys on, answers re-INVITEs on either
//! leg as the first offer was checked (`call::reoffer`), and hangs the other leg
//! up when one leaves or goes quiet. Neither side has a dialplan session here,
//! so the loop owns both legs' media state itself.

use std::time::{Duration, Instant};

use rsipstack::dialog::dialog::DialogState;
use rsipstack::dialog::dialog_layer::DialogLayer;
use rsipstack::sip::StatusCode;
use tokio_util::sync::CancellationToken;

use super::bridge::{forward_info, leg_media};
use super::leg::AnsweredLeg;
use super::reoffer;
use super::signal::FromPeer;
use crate::media::relay::{LegMedia, MAX_PAYLOAD, Relay, Relayed};
use crate::media::sdp;

/// Which leg.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    A,
    B,
}

/// Who ended the joined call, and how.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    HungUp(Side),
    /// No RTP from this side for the RTP timeout.
    Quiet(Side),
    /// kefu ended it (`stop`: the desk hung up, or shutdown).
    Stopped,
}

/// How the joined call went.
#[derive(Debug)]
pub struct Joined {
    pub ending: Ending,
    pub talk: Duration,
    /// RTP packets relayed to A and to B.
    pub to_a: u64,
    pub to_b: u64,
}

/// One leg's state while joined.
struct Joint {
    leg: AnsweredLeg,
    /// Packets for this leg, from the other.
    relay: Relay,
    heard: Instant,
    local: Option<std::net::SocketAddr>,
    session_id: u64,
    sdp_version: u64,
}

impl Joint {
    /// `leg`, taking packets sent in the other leg's media (`from`).
    fn new(leg: AnsweredLeg, from: LegMedia) -> Self {
        let relay = Relay::new(from, leg_media(&leg.negotiated), leg.line);
        Self {
            local: Some(leg.local_sdp),
            relay,
            leg,
            heard: Instant::now(),
            session_id: rand::random::<u32>().into(),
            sdp_version: 1,
        }
    }

    fn quiet(&self, timeout: Duration) -> bool {
        self.heard.elapsed() > timeout && self.leg.negotiated.direction != sdp::Direction::Inactive
    }
}

/// Relays between `a` and `b` until one hangs up or goes quiet for
/// `rtp_timeout`, or `stop` is cancelled; both legs are hung up and forgotten
/// by the stack when it returns.
pub async fn join(
    a: AnsweredLeg,
    b: AnsweredLeg,
    layer: &DialogLayer,
    rtp_timeout: Duration,
    stop: CancellationToken,
) -> Joined {
    let started = Instant::now();
    let (from_a, from_b) = (leg_media(&a.negotiated), leg_media(&b.negotiated));
    let (mut a, mut b) = (Joint::new(a, from_b), Joint::new(b, from_a));
    let metrics = crate::metrics::metrics();
    metrics.bridged_active.inc();
    let ending = relay(&mut a, &mut b, rtp_timeout, &stop).await;
    for (side, j) in [(Side::A, &a), (Side::B, &b)] {
        let left = ending == Ending::HungUp(side);
        j.leg.signal.close(layer, left).await;
    }
    metrics.bridged_active.dec();
    Joined {
        ending,
        talk: started.elapsed(),
        to_a: a.relay.relayed,
        to_b: b.relay.relayed,
    }
}

async fn relay(
    a: &mut Joint,
    b: &mut Joint,
    rtp_timeout: Duration,
    stop: &CancellationToken,
) -> Ending {
    let (mut buf_a, mut buf_b) = (vec![0u8; 2048], vec![0u8; 2048]);
    let mut out = vec![0u8; 12 + MAX_PAYLOAD];
    let mut check = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            got = a.leg.socket.recv_from(&mut buf_a) => {
                if let Ok((len, from)) = got {
                    pass(&buf_a[..len], from, a, b, &mut out).await;
                }
            }
            got = b.leg.socket.recv_from(&mut buf_b) => {
                if let Ok((len, from)) = got {
                    pass(&buf_b[..len], from, b, a, &mut out).await;
                }
            }
            from = a.leg.signal.next() => {
                if signalled(from, a, b).await {
                    return Ending::HungUp(Side::A);
                }
            }
            from = b.leg.signal.next() => {
                if signalled(from, b, a).await {
                    return Ending::HungUp(Side::B);
                }
            }
            _ = check.tick() => {
                if a.quiet(rtp_timeout) {
                    tracing::warn!(leg = %a.leg.agent, "no RTP on a joined leg; hanging up");
                    return Ending::Quiet(Side::A);
                }
                if b.quiet(rtp_timeout) {
                    tracing::warn!(leg = %b.leg.agent, "no RTP on a joined leg; hanging up");
                    return Ending::Quiet(Side::B);
                }
            }
            _ = stop.cancelled() => return Ending::Stopped,
        }
    }
}

/// A packet from `from_leg`'s socket: relayed to `to` when it is that leg's
/// media (the latched source, a negotiated payload type).
async fn pass(
    packet: &[u8],
    source: std::net::SocketAddr,
    from_leg: &mut Joint,
    to: &mut Joint,
    out: &mut [u8],
) {
    if from_leg.leg.inbound.admit(packet, source).is_none() {
        return;
    }
    from_leg.heard = Instant::now();
    if let Relayed::Audio(n) | Relayed::Event(n) = to.relay.relay(packet, out, None)
        && to.leg.negotiated.direction.sends()
    {
        match to
            .leg
            .socket
            .send_to(&out[..n], to.leg.inbound.target())
            .await
        {
            Ok(_) => {
                crate::metrics::metrics().rtp_out.inc();
            }
            Err(e) => tracing::debug!(error = %e, "RTP to a joined leg failed"),
        }
    }
}

/// A request or departure on `this` leg's signalling; true when it left.
async fn signalled(from: FromPeer, this: &mut Joint, other: &mut Joint) -> bool {
    let state = match from {
        FromPeer::Left(_) => return true,
        FromPeer::Dialog(state) => state,
    };
    match state {
        Some(DialogState::Info(_, req, handle)) => {
            let _ = handle.reply(StatusCode::OK).await;
            forward_info(other.leg.signal.dialog(), &req);
        }
        Some(DialogState::Updated(_, req, handle)) => {
            let decision = match this.local {
                Some(local) => reoffer::reoffer(
                    &this.leg.negotiated,
                    &req.body,
                    this.leg.source,
                    local,
                    this.session_id,
                    &mut this.sdp_version,
                ),
                None => reoffer::Reoffer::Refused("the leg's media socket has no address".into()),
            };
            if let reoffer::Reoffer::Accepted { negotiated, .. } = &decision {
                this.leg.inbound.renegotiated(negotiated);
                this.leg.negotiated = negotiated.clone();
                let (mine, theirs) = (
                    leg_media(&this.leg.negotiated),
                    leg_media(&other.leg.negotiated),
                );
                this.relay.renegotiated(theirs, mine);
                other.relay.renegotiated(mine, theirs);
            }
            reoffer::respond(&handle, &decision, &req).await;
        }
        Some(DialogState::Options(_, _, handle)) => {
            let _ = handle.reply(StatusCode::OK).await;
        }
        Some(DialogState::Terminated(..)) | None => return true,
        Some(_) => {}
    }
    false
}
