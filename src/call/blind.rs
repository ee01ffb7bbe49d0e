//! Blind transfer (a `transfer` node with `to`): kefu asks the caller's side to
//! call the target itself with SIP REFER (RFC 3515) and follows its NOTIFYs; a
//! final 2xx in a NOTIFY means the target answered, and kefu leaves the call. If
//! the REFER is refused (many trunks do not take it), or the transfer fails or
//! goes unanswered, kefu calls the target itself and bridges it (a B2BUA
//! dial-out, as for an agent leg without the summary). When that fails too, the
//! plan goes on at the node's `next`.
//!
//! The decisions are the session's (`call::session`); this module does the I/O:
//! the REFER and the dial-out leg, each on a task of its own.

use std::net::SocketAddr;

use rsipstack::sip::Header;
use tokio::sync::{mpsc, oneshot};

use super::CallSetup;
use super::leg::{self, LegCommand, LegEvent, LegSpec};

/// What the REFER's answer was: its status, or why there was none.
pub(super) type ReferAnswer = Result<u16, String>;

/// The dial-out leg: its reports, and its command channel (dropping it hangs
/// the leg up).
pub(super) struct Dialing {
    pub(super) events: mpsc::Receiver<(String, LegEvent)>,
    _commands: mpsc::Sender<LegCommand>,
}

/// The SIP URI a target is reached at: as written, or a number at the trunk.
fn target_uri(target: &str, trunk: SocketAddr) -> String {
    if target.starts_with("sip:") {
        target.to_string()
    } else {
        format!("sip:{target}@{trunk}")
    }
}

/// The status code of a `message/sipfrag` body ("SIP/2.0 200 OK").
pub(super) fn sipfrag_status(body: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(body).ok()?;
    let line = text.lines().next()?;
    let mut parts = line.split_whitespace();
    (parts.next()? == "SIP/2.0")
        .then(|| parts.next()?.parse().ok())
        .flatten()
}

/// Sends the REFER asking the caller's side to call `to`; its answer arrives on
/// the receiver.
pub(super) fn refer(s: &CallSetup, to: &str) -> oneshot::Receiver<ReferAnswer> {
    let uri = target_uri(to, s.source);
    let (tx, rx) = oneshot::channel();
    let dialog = s.signal.dialog().cloned();
    let refer_to = format!("<{uri}>");
    let referred_by = format!("<sip:kefu@{}>", s.staff.dialer.public());
    tokio::spawn(async move {
        let Some(dialog) = dialog else {
            // The session then dials the target out and bridges it.
            let _ = tx.send(Err("a browser's call cannot be referred".into()));
            return;
        };
        let headers = vec![Header::Other("Referred-By".into(), referred_by)];
        let answer = match dialog
            .refer(
                rsipstack::sip::headers::untyped::ReferTo::new(refer_to),
                Some(headers),
                None,
            )
            .await
        {
            Ok(Some(resp)) => Ok(u16::from(resp.status_code)),
            Ok(None) => Err("no answer to the REFER".into()),
            Err(e) => Err(format!("REFER failed: {e}")),
        };
        let _ = tx.send(answer);
    });
    rx
}

/// Calls `to` (at the trunk the call came from, for a number); the leg reports
/// on the returned channel.
pub(super) fn dial_out(s: &CallSetup, to: &str) -> Dialing {
    let (events_tx, events_rx) = mpsc::channel(8);
    let (cmd_tx, cmd_rx) = mpsc::channel(4);
    let (dialer, prompts) = (s.staff.dialer.clone(), s.dialogue.prompts.clone());
    let (target, uri, trunk) = (to.to_string(), target_uri(to, s.source), s.source);
    let (caller, language) = (s.caller.clone(), s.plan.language.clone());
    tokio::spawn(async move {
        let contact = leg::fixed_contact(&uri, Some(trunk)).await;
        let Some(contact) = contact else {
            let _ = events_tx
                .send((
                    target,
                    LegEvent::Declined("the target cannot be reached".into()),
                ))
                .await;
            return;
        };
        let spec = LegSpec {
            agent: target,
            reach: leg::Reach::Phone(contact),
            caller,
            summary: None,
            language,
            voice: None,
            ring_for: leg::MAX_RING,
        };
        leg::run(spec, dialer, prompts, events_tx, cmd_rx).await;
    });
    Dialing {
        events: events_rx,
        _commands: cmd_tx,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sipfrag_and_targets() {
        assert_eq!(sipfrag_status(b"SIP/2.0 200 OK\r\n"), Some(200));
        assert_eq!(sipfrag_status(b"SIP/2.0 100 Trying"), Some(100));
        assert_eq!(sipfrag_status(b"garbage"), None);
        assert_eq!(sipfrag_status(&[0xff, 0xfe]), None);
        let trunk: SocketAddr = "10.0.0.1:5060".parse().unwrap();
        assert_eq!(
            target_uri("+8613900000000", trunk),
            "sip:+8613900000000@10.0.0.1:5060"
        );
        assert_eq!(
            target_uri("sip:desk@pbx.example", trunk),
            "sip:desk@pbx.example"
        );
    }
}
