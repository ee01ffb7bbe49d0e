//! Answering a re-INVITE or UPDATE (hold, resume, a new codec or media address) the
//! same way on the caller's leg and on an agent's: the offer is read, its media
//! address checked like the first one (`sdp::check_target`), and the answer is
//! kefu's SDP under the next version. Deciding is sans I/O ([`reoffer`]);
//! [`respond`] sends the decision on the request's transaction.

use std::net::{IpAddr, SocketAddr};

use rsipstack::dialog::dialog::TransactionHandle;
use rsipstack::sip::{Header, StatusCode};

use crate::media::sdp::{self, Negotiated};

/// What to answer to a new offer inside a dialog.
#[derive(Debug, PartialEq, Eq)]
pub enum Reoffer {
    /// Take it: the media now negotiated, and the SDP answer to send.
    Accepted {
        negotiated: Negotiated,
        answer: String,
    },
    /// Refuse it (488) and keep the media as it was: why.
    Refused(String),
}

/// The answer to `offer` from a peer signalling from `peer` (an empty body asks for
/// our offer again, RFC 3261 §14.2: the current media stand). `local` is where kefu
/// takes this leg's RTP; `sdp_version` counts up with each answer.
pub fn reoffer(
    current: &Negotiated,
    offer: &[u8],
    peer: IpAddr,
    local: SocketAddr,
    session_id: u64,
    sdp_version: &mut u64,
) -> Reoffer {
    let negotiated = if offer.is_empty() {
        Ok(current.clone())
    } else {
        sdp::negotiate(offer).and_then(|n| sdp::check_target(n.remote, peer).map(|()| n))
    };
    match negotiated {
        Ok(negotiated) => {
            *sdp_version += 1;
            let answer = sdp::answer(local, &negotiated, session_id, *sdp_version);
            Reoffer::Accepted { negotiated, answer }
        }
        Err(e) => Reoffer::Refused(e.to_string()),
    }
}

/// Sends the decision on `request`: 200 with the SDP answer (and, for a session
/// refresh, its `Session-Expires`: RFC 4028), or 488 with a Warning.
pub async fn respond(
    handle: &TransactionHandle,
    decision: &Reoffer,
    request: &rsipstack::sip::Request,
) {
    use rsipstack::sip::prelude::HeadersExt;
    let sent = match decision {
        Reoffer::Accepted { answer, .. } => {
            let mut headers = vec![Header::Other(
                "Content-Type".into(),
                "application/sdp".into(),
            )];
            let asked = request.session_expires_header().map(|h| h.value());
            if let Some(expires) = super::session_timer::refresh_answer(asked) {
                headers.push(Header::Other("Session-Expires".into(), expires));
            }
            handle
                .respond(
                    StatusCode::OK,
                    Some(headers),
                    Some(answer.clone().into_bytes()),
                )
                .await
        }
        Reoffer::Refused(why) => {
            tracing::info!(error = %why, "re-INVITE offer refused");
            let headers = vec![Header::Other(
                "Warning".into(),
                format!("399 kefu \"{}\"", why.replace('"', "'")),
            )];
            handle
                .respond(StatusCode::NotAcceptableHere, Some(headers), None)
                .await
        }
    };
    if let Err(e) = sent {
        tracing::debug!(error = %e, "cannot answer re-INVITE");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\no=- 1 1 IN IP4 203.0.113.5\r\ns=-\r\nc=IN IP4 203.0.113.5\r\nt=0 0\r\n\
        m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendonly\r\n";

    fn first() -> Negotiated {
        sdp::negotiate(OFFER.replace("sendonly", "sendrecv").as_bytes()).unwrap()
    }

    #[test]
    fn a_hold_is_answered_with_the_next_version() {
        let peer: IpAddr = "203.0.113.5".parse().unwrap();
        let local: SocketAddr = "192.0.2.1:20000".parse().unwrap();
        let mut version = 1;
        match reoffer(&first(), OFFER.as_bytes(), peer, local, 7, &mut version) {
            Reoffer::Accepted { negotiated, answer } => {
                // Our side of it: the phone sends only, kefu receives only.
                assert_eq!(negotiated.direction, sdp::Direction::RecvOnly);
                assert!(answer.contains("a=recvonly"), "{answer}");
                assert!(answer.contains("o=kefu 7 2 "), "{answer}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(version, 2);
        // No body: the media stand.
        match reoffer(&first(), b"", peer, local, 7, &mut version) {
            Reoffer::Accepted { negotiated, .. } => assert_eq!(negotiated, first()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_offer_aiming_media_at_loopback_is_refused() {
        let peer: IpAddr = "203.0.113.5".parse().unwrap();
        let local: SocketAddr = "192.0.2.1:20000".parse().unwrap();
        let mut version = 1;
        let evil = OFFER.replace("c=IN IP4 203.0.113.5", "c=IN IP4 127.0.0.1");
        assert!(matches!(
            reoffer(&first(), evil.as_bytes(), peer, local, 7, &mut version),
            Reoffer::Refused(_)
        ));
        assert_eq!(version, 1, "a refusal uses no version");
        assert!(matches!(
            reoffer(&first(), b"garbage", peer, local, 7, &mut version),
            Reoffer::Refused(_)
        ));
    }
}
