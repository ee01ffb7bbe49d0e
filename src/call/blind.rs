//! Blind transfer (a `transfer` node with `to`): kefu asks the caller's side to
//! call the target itself with SIP REFER (RFC 3515) and follows its NOTIFYs; a
//! final 2xx in a NOTIFY means the target answered, and kefu leaves the call. If
//! the REFER is refused (many trunks do not take it), or the transfer fails or
//! goes unanswered, kefu calls the target itself and bridges it (a B2BUA
//! dial-out, as for an agent leg without the summary). When that fails too, the
//! plan goes on at the node's `next`.

use std::net::SocketAddr;
use std::time::Duration;

use rsipstack::sip::Header;
use tokio::sync::{mpsc, oneshot};

use super::leg::{self, LegCommand, LegEvent, LegSpec};
use super::transfer::TransferLog;
use super::{CallSetup, Media, Step};
use crate::dialplan::{Input, Moment};

/// How long the caller's side may take to report the transfer's outcome.
const NOTIFY_WAIT: Duration = Duration::from_secs(30);

/// What the REFER's answer was: its status, or why there was none.
type ReferAnswer = Result<u16, String>;

pub(super) struct Blind {
    target: String,
    uri: String,
    /// Where a dial-out goes (the trunk the call came in on, for a number).
    destination: SocketAddr,
    refer: Option<oneshot::Receiver<ReferAnswer>>,
    /// Until when the caller's side may report (after a 202).
    deadline: Option<tokio::time::Instant>,
    dialing: Option<Dialing>,
}

/// The dial-out leg: its reports, and its command channel (dropping it hangs
/// the leg up).
pub(super) struct Dialing {
    events: mpsc::Receiver<(String, LegEvent)>,
    _commands: mpsc::Sender<LegCommand>,
}

pub(super) enum Happened {
    /// The REFER was answered.
    Refer(ReferAnswer),
    /// The caller's side took too long to report.
    Timeout,
    Dial(LegEvent),
}

impl Blind {
    pub(super) async fn next(&mut self) -> Happened {
        let until = self
            .deadline
            .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            r = async {
                match self.refer.as_mut() {
                    Some(rx) => rx.await,
                    None => std::future::pending().await,
                }
            }, if self.refer.is_some() => {
                self.refer = None;
                Happened::Refer(r.unwrap_or_else(|_| Err("REFER task ended".into())))
            }
            _ = tokio::time::sleep_until(until), if self.deadline.is_some() => {
                self.deadline = None;
                Happened::Timeout
            }
            e = async {
                match self.dialing.as_mut() {
                    Some(d) => d.events.recv().await,
                    None => std::future::pending().await,
                }
            }, if self.dialing.is_some() => match e {
                Some((_, e)) => Happened::Dial(e),
                None => Happened::Dial(LegEvent::Declined("dial-out ended".into())),
            }
        }
    }
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

impl Media {
    /// Starts a blind transfer to `to`: the REFER goes out on a task of its own.
    pub(super) fn start_blind(&mut self, s: &CallSetup, to: &str) {
        let uri = target_uri(to, s.source);
        tracing::info!("blind transfer requested; sending REFER");
        let (tx, rx) = oneshot::channel();
        let dialog = s.dialog.clone();
        let refer_to = format!("<{uri}>");
        let referred_by = format!("<sip:kefu@{}>", s.staff.dialer.local);
        tokio::spawn(async move {
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
        self.transfer_log = Some(TransferLog {
            target: Some(to.to_string()),
            method: Some("refer"),
            ..TransferLog::default()
        });
        self.blind = Some(Blind {
            target: to.to_string(),
            uri,
            destination: s.source,
            refer: Some(rx),
            deadline: None,
            dialing: None,
        });
    }

    pub(super) fn blind_happened(&mut self, s: &CallSetup, h: Happened) -> Step {
        match h {
            Happened::Refer(Ok(code)) if (200..300).contains(&code) => {
                // Accepted: the outcome comes in NOTIFYs.
                if let Some(b) = self.blind.as_mut() {
                    b.deadline = Some(tokio::time::Instant::now() + NOTIFY_WAIT);
                }
                Step::Continue
            }
            Happened::Refer(r) => {
                let why = match r {
                    Ok(code) => format!("REFER answered {code}"),
                    Err(e) => e,
                };
                tracing::info!(%why, "the caller's side will not transfer; dialling out");
                self.dial_out(s);
                Step::Continue
            }
            Happened::Timeout => {
                tracing::info!("no outcome of the REFER in time; dialling out");
                self.dial_out(s);
                Step::Continue
            }
            Happened::Dial(LegEvent::Accept(leg)) => {
                if let Some(log) = self.transfer_log.as_mut() {
                    log.agent = log.target.clone();
                }
                self.blind = None;
                Step::Bridge(leg)
            }
            Happened::Dial(LegEvent::Declined(why)) => {
                tracing::info!(%why, "blind transfer failed");
                if let Some(log) = self.transfer_log.as_mut() {
                    log.tried
                        .push((log.target.clone().unwrap_or_default(), why));
                }
                self.blind = None;
                self.interpreter.handle(Input::NoAgent, Moment::now());
                Step::Continue
            }
        }
    }

    /// A NOTIFY about the REFER (sipfrag of the transfer's progress): a 2xx means
    /// the target answered and kefu leaves; a failure dials out instead.
    pub(super) fn blind_notified(&mut self, s: &CallSetup, body: &[u8]) -> Step {
        let Some(code) = sipfrag_status(body) else {
            return Step::Continue;
        };
        match code {
            100..=199 => Step::Continue,
            200..=299 => {
                tracing::info!("the caller's side transferred the call");
                self.blind = None;
                Step::End(super::EndReason::Referred)
            }
            _ => {
                tracing::info!(
                    code,
                    "the caller's side could not reach the target; dialling out"
                );
                if let Some(b) = self.blind.as_mut() {
                    b.deadline = None;
                }
                self.dial_out(s);
                Step::Continue
            }
        }
    }

    /// Calls the target and bridges it once answered.
    fn dial_out(&mut self, s: &CallSetup) {
        let Some(b) = self.blind.as_mut() else {
            return;
        };
        if b.dialing.is_some() {
            return;
        }
        b.deadline = None;
        if let Some(log) = self.transfer_log.as_mut() {
            log.method = Some("dial-out");
        }
        let (events_tx, events_rx) = mpsc::channel(8);
        let (cmd_tx, cmd_rx) = mpsc::channel(4);
        let (dialer, prompts) = (s.staff.dialer.clone(), s.dialogue.prompts.clone());
        let (target, uri, trunk) = (b.target.clone(), b.uri.clone(), b.destination);
        let (caller, language) = (s.caller.clone(), s.plan.language.clone());
        tokio::spawn(async move {
            let contact = leg::fixed_contact(&uri, Some(trunk)).await;
            let Some(contact) = contact else { return };
            let spec = LegSpec {
                agent: target,
                contact,
                caller,
                summary: None,
                language,
                voice: None,
            };
            leg::run(spec, dialer, prompts, events_tx, cmd_rx).await;
        });
        b.dialing = Some(Dialing {
            events: events_rx,
            _commands: cmd_tx,
        });
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
