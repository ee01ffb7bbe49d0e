//! Agents who take calls in the desk's browser (the softphone) instead of a SIP
//! phone. A browser cannot be called: the desk says it takes calls and keeps
//! saying so while it polls; a warm transfer then rings the agent here, the desk
//! sees the ring with its offer and answers it with a WebRTC offer of its own, and
//! the WebRTC edge hands the agent leg the browser's line once ICE and DTLS are up.
//! From there the leg is an ordinary one: the summary, the decision, the bridge.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::signal::BrowserSignal;
use crate::media::sdp::Negotiated;

/// A desk that stops polling (a closed tab, a lost network) stops taking calls
/// after this long; its agent's SIP phone, if any, is rung again.
pub const LINGER: Duration = Duration::from_secs(20);

/// A browser that has connected for one ringing call: its audio as the leg
/// sees it (the gateway's loopback socket, speaking G.711 with RFC 4733 events)
/// and its signalling.
pub struct Picked {
    pub negotiated: Negotiated,
    pub signal: BrowserSignal,
}

/// A call ringing on an agent's desk: where the agent leg's RTP socket is, and
/// where the browser's line goes once connected (dropped: it did not connect).
pub struct Ring {
    pub leg_rtp: SocketAddr,
    pub picked: oneshot::Sender<Picked>,
}

#[derive(Default)]
struct Desk {
    seen: Option<Instant>,
    /// Item (call id) → its ring.
    rings: HashMap<String, Ring>,
}

/// Which agents take calls in their browser, and what rings there.
#[derive(Default)]
pub struct Softphones {
    desks: Mutex<HashMap<String, Desk>>,
}

impl std::fmt::Debug for Softphones {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Softphones")
            .field("desks", &crate::lock(&self.desks).len())
            .finish()
    }
}

impl Softphones {
    /// The agent's desk takes calls (`on`) or stops; calls ringing there when it
    /// stops are passed on.
    pub fn set(&self, agent: &str, on: bool, now: Instant) {
        let mut desks = crate::lock(&self.desks);
        if on {
            desks.entry(agent.to_string()).or_default().seen = Some(now);
        } else {
            desks.remove(agent);
        }
    }

    /// The desk polled: it is still there. Returns the calls ringing on it.
    pub fn touch(&self, agent: &str, now: Instant) -> Vec<String> {
        let mut desks = crate::lock(&self.desks);
        match desks.get_mut(agent) {
            Some(desk) if desk.seen.is_some() => {
                desk.seen = Some(now);
                desk.rings.retain(|_, r| !r.picked.is_closed());
                let mut items: Vec<String> = desk.rings.keys().cloned().collect();
                items.sort();
                items
            }
            _ => Vec::new(),
        }
    }

    /// Whether the agent takes calls in the browser now.
    pub fn is_on(&self, agent: &str, now: Instant) -> bool {
        crate::lock(&self.desks)
            .get(agent)
            .and_then(|d| d.seen)
            .is_some_and(|seen| now.saturating_duration_since(seen) < LINGER)
    }

    /// Rings `item` on the agent's desk; the receiver gets the browser's line, or
    /// an error when the ring is withdrawn or the browser does not connect. None
    /// when the agent does not take calls in the browser.
    pub fn ring(
        &self,
        agent: &str,
        item: &str,
        leg_rtp: SocketAddr,
        now: Instant,
    ) -> Option<oneshot::Receiver<Picked>> {
        if !self.is_on(agent, now) {
            return None;
        }
        let (picked, rx) = oneshot::channel();
        let mut desks = crate::lock(&self.desks);
        let desk = desks.get_mut(agent)?;
        desk.rings
            .insert(item.to_string(), Ring { leg_rtp, picked });
        Some(rx)
    }

    /// The desk answers `item`: its ring, if it still rings there.
    pub fn pick_up(&self, agent: &str, item: &str) -> Option<Ring> {
        let mut desks = crate::lock(&self.desks);
        let ring = desks.get_mut(agent)?.rings.remove(item)?;
        (!ring.picked.is_closed()).then_some(ring)
    }

    /// The leg stopped ringing (withdrawn, taken elsewhere, the caller left).
    pub fn stop_ringing(&self, agent: &str, item: &str) {
        if let Some(desk) = crate::lock(&self.desks).get_mut(agent) {
            desk.rings.remove(item);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr() -> SocketAddr {
        "127.0.0.1:40000".parse().unwrap()
    }

    #[test]
    fn a_desk_rings_while_it_polls_and_stops_when_it_goes() {
        let phones = Softphones::default();
        let t0 = Instant::now();
        assert!(phones.ring("ann", "call-1", addr(), t0).is_none());
        phones.set("ann", true, t0);
        let rx = phones.ring("ann", "call-1", addr(), t0).unwrap();
        assert_eq!(phones.touch("ann", t0 + Duration::from_secs(1)), ["call-1"]);
        // Not polled for longer than LINGER: no new rings.
        assert!(
            phones
                .ring(
                    "ann",
                    "call-2",
                    addr(),
                    t0 + LINGER + Duration::from_secs(2)
                )
                .is_none()
        );
        let ring = phones.pick_up("ann", "call-1").unwrap();
        assert!(phones.pick_up("ann", "call-1").is_none(), "picked up once");
        drop(ring);
        // The browser never connected: the leg hears so.
        assert!(rx.blocking_recv().is_err());
    }

    #[test]
    fn a_withdrawn_ring_cannot_be_picked_up() {
        let phones = Softphones::default();
        let t0 = Instant::now();
        phones.set("bo", true, t0);
        let rx = phones.ring("bo", "call-1", addr(), t0).unwrap();
        drop(rx);
        assert!(phones.touch("bo", t0).is_empty());
        assert!(phones.pick_up("bo", "call-1").is_none());
        let _rx = phones.ring("bo", "call-2", addr(), t0).unwrap();
        phones.stop_ringing("bo", "call-2");
        assert!(phones.pick_up("bo", "call-2").is_none());
        phones.set("bo", false, t0);
        assert!(!phones.is_on("bo", t0));
    }
}
