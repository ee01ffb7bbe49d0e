//! SIP session timers (RFC 4028) on calls kefu answers. A carrier's SBC asks
//! for them (`Session-Expires`, `Supported: timer`, often `Require: timer`) so
//! that a call whose far end vanished is torn down: one side refreshes the
//! session (a re-INVITE or UPDATE) every interval, and the other ends it when
//! no refresh comes. kefu leaves refreshing to the caller when it can (the
//! carrier then also notices a kefu node that died), refreshes with UPDATE when
//! the caller asks it to, and hangs up a call whose caller stopped refreshing.
//!
//! Negotiation and deadlines are sans I/O here; `keep` is the per-call task.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The shortest session interval kefu accepts (RFC 4028's recommended Min-SE).
pub const MIN_SE: u32 = 90;

/// Who refreshes the session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refresher {
    /// The caller (`refresher=uac`).
    Caller,
    /// kefu (`refresher=uas`).
    Kefu,
}

/// A session timer agreed for a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionTimer {
    /// Seconds a session lives without a refresh.
    pub interval: u32,
    pub refresher: Refresher,
    /// The caller supports timers: the answer says `Require: timer`.
    pub caller_supports: bool,
}

/// A `Session-Expires` value: seconds and the refresher, if named.
pub fn parse_expires(value: &str) -> Option<(u32, Option<Refresher>)> {
    let mut parts = value.split(';');
    let seconds = parts.next()?.trim().parse().ok()?;
    let mut refresher = None;
    for p in parts {
        if let Some((k, v)) = p.split_once('=')
            && k.trim().eq_ignore_ascii_case("refresher")
        {
            refresher = match v.trim().to_ascii_lowercase().as_str() {
                "uac" => Some(Refresher::Caller),
                "uas" => Some(Refresher::Kefu),
                _ => return None,
            };
        }
    }
    Some((seconds, refresher))
}

/// What an INVITE asks for: no timer (no `Session-Expires`), one, or a refusal
/// with the Min-SE to send in 422 (an interval below kefu's minimum). A
/// malformed `Session-Expires` is treated as absent.
pub fn negotiate(
    session_expires: Option<&str>,
    min_se: Option<&str>,
    caller_supports: bool,
) -> Result<Option<SessionTimer>, u32> {
    let Some((interval, refresher)) = session_expires.and_then(parse_expires) else {
        return Ok(None);
    };
    let floor = min_se
        .and_then(|m| m.split(';').next()?.trim().parse::<u32>().ok())
        .unwrap_or(0)
        .max(MIN_SE);
    if interval < MIN_SE {
        return Err(floor);
    }
    let refresher = refresher.unwrap_or(if caller_supports {
        Refresher::Caller
    } else {
        Refresher::Kefu
    });
    Ok(Some(SessionTimer {
        interval: interval.max(floor),
        refresher,
        caller_supports,
    }))
}

impl SessionTimer {
    /// The answer's `Session-Expires` value.
    pub fn header(&self) -> String {
        let who = match self.refresher {
            Refresher::Caller => "uac",
            Refresher::Kefu => "uas",
        };
        format!("{};refresher={who}", self.interval)
    }

    /// When to act after the last refresh: kefu refreshes at half the
    /// interval; a caller's refresh is awaited until the interval less a third
    /// (at most 32 s, RFC 4028 §10).
    pub fn next(&self, last: Instant) -> Instant {
        let interval = Duration::from_secs(u64::from(self.interval));
        match self.refresher {
            Refresher::Kefu => last + interval / 2,
            Refresher::Caller => last + interval - (interval / 3).min(Duration::from_secs(32)),
        }
    }
}

/// The `Session-Expires` a 2xx to a refresh carries: the request's, with the
/// refresher named (the caller's unless it named kefu). None when the request
/// carried none.
pub fn refresh_answer(request_value: Option<&str>) -> Option<String> {
    let (interval, refresher) = parse_expires(request_value?)?;
    let who = match refresher {
        Some(Refresher::Kefu) => "uas",
        _ => "uac",
    };
    Some(format!("{interval};refresher={who}"))
}

/// When the caller last refreshed the session (a re-INVITE or UPDATE in its
/// dialog), as the SIP edge saw it; shared with the call's timer.
#[derive(Debug)]
pub struct Refreshed {
    start: Instant,
    /// Milliseconds after `start`.
    last_ms: AtomicU64,
}

impl Default for Refreshed {
    fn default() -> Self {
        Self {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }
}

impl Refreshed {
    pub fn now(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_ms.fetch_max(ms, Ordering::Relaxed);
    }

    pub fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// Keeps the answered call's session timer until the dialog ends: refreshes
/// with UPDATE when kefu is the refresher (a refresh that fails ends the call:
/// the caller is gone), or ends the call when the caller stops refreshing.
pub async fn keep(
    timer: SessionTimer,
    dialog: rsipstack::dialog::invite_dialog::InviteDialog,
    refreshed: Arc<Refreshed>,
) {
    use rsipstack::sip::Header;
    refreshed.now();
    let ended = dialog.cancel_token().clone();
    loop {
        let due = timer.next(refreshed.last());
        tokio::select! {
            () = ended.cancelled() => return,
            () = tokio::time::sleep_until(due.into()) => {}
        }
        // A refresh may have come in meanwhile.
        if timer.next(refreshed.last()) > Instant::now() {
            continue;
        }
        match timer.refresher {
            Refresher::Kefu => {
                let headers = vec![
                    Header::Other("Session-Expires".into(), timer.header()),
                    Header::Other("Supported".into(), "timer".into()),
                ];
                match dialog.update(Some(headers), None).await {
                    Ok(Some(r))
                        if r.status_code.kind() == rsipstack::sip::StatusCodeKind::Successful =>
                    {
                        refreshed.now();
                    }
                    other => {
                        let why = match other {
                            Ok(Some(r)) => r.status_code.to_string(),
                            Ok(None) => "no answer".into(),
                            Err(e) => e.to_string(),
                        };
                        tracing::info!(%why, "session refresh failed; hanging up");
                        let _ = dialog
                            .bye_with_reason("session refresh failed".into())
                            .await;
                        return;
                    }
                }
            }
            Refresher::Caller => {
                tracing::info!(
                    interval = timer.interval,
                    "the caller stopped refreshing the session; hanging up"
                );
                let _ = dialog.bye_with_reason("session timer expired".into()).await;
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_the_caller_asks_decides_the_timer() {
        assert_eq!(negotiate(None, None, true), Ok(None));
        let t = negotiate(Some("1800;refresher=uac"), None, true)
            .unwrap()
            .unwrap();
        assert_eq!(
            (t.interval, t.refresher, t.caller_supports),
            (1800, Refresher::Caller, true)
        );
        assert_eq!(t.header(), "1800;refresher=uac");
        // No refresher named: the caller refreshes when it can, else kefu.
        let t = negotiate(Some("600"), None, true).unwrap().unwrap();
        assert_eq!(t.refresher, Refresher::Caller);
        let t = negotiate(Some("600"), None, false).unwrap().unwrap();
        assert_eq!(
            (t.refresher, t.header().as_str()),
            (Refresher::Kefu, "600;refresher=uas")
        );
        // Too short: 422 with kefu's minimum (or the caller's, if higher).
        assert_eq!(negotiate(Some("60"), None, true), Err(MIN_SE));
        assert_eq!(negotiate(Some("60"), Some("120"), true), Err(120));
        // The caller's own minimum raises the interval.
        let t = negotiate(Some("100"), Some("300"), true).unwrap().unwrap();
        assert_eq!(t.interval, 300);
        // Malformed: no timer, not a failed call.
        assert_eq!(negotiate(Some("soon"), None, true), Ok(None));
        assert_eq!(negotiate(Some("1800;refresher=both"), None, true), Ok(None));
    }

    #[test]
    fn deadlines_follow_who_refreshes() {
        let t0 = Instant::now();
        let kefu = SessionTimer {
            interval: 1800,
            refresher: Refresher::Kefu,
            caller_supports: false,
        };
        assert_eq!(kefu.next(t0), t0 + Duration::from_secs(900));
        let caller = SessionTimer {
            refresher: Refresher::Caller,
            ..kefu
        };
        assert_eq!(caller.next(t0), t0 + Duration::from_secs(1800 - 32));
        let short = SessionTimer {
            interval: 90,
            ..caller
        };
        assert_eq!(short.next(t0), t0 + Duration::from_secs(60));
        assert_eq!(
            refresh_answer(Some("1800")).as_deref(),
            Some("1800;refresher=uac")
        );
        assert_eq!(
            refresh_answer(Some("90;refresher=uas")).as_deref(),
            Some("90;refresher=uas")
        );
        assert_eq!(refresh_answer(None), None);
    }
}
