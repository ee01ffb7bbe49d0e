//! Why a call ended: one closed set of reasons, compared as values in the call and
//! written to the call record and the store under the names kefu has always used
//! (`caller-hangup`, `referred`, …), so stored records and reports keep their meaning.

use std::fmt;

/// Why a call ended.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum EndReason {
    /// Still running: what a record says before its call has ended.
    #[default]
    Live,
    /// The caller hung up (BYE).
    CallerHangup,
    /// The caller gave up before the call was answered (CANCEL).
    Cancelled,
    /// The SIP dialog timed out.
    Timeout,
    /// kefu hung up (the dialog reports our own BYE).
    KefuHangup,
    /// The dialplan hung up, with its reason (`dialplan-hangup`, `dialplan-loop`).
    Plan(String),
    /// The SIP stack dropped the dialog.
    DialogGone,
    /// The caller never confirmed the answer (no ACK within 32 s).
    NoAck,
    /// No RTP from the caller for `rtp_timeout`.
    RtpTimeout,
    /// No RTP from the agent's phone on a bridged call.
    AgentRtpTimeout,
    /// The agent hung up a bridged call.
    AgentHangup,
    /// Handed on by a blind transfer (REFER, or dialled out and bridged).
    Referred,
    /// The server was shutting down and the drain time ran out.
    Shutdown,
    /// Signalling failed (answering, ringing): what the stack said.
    SipError(String),
    /// The call's RTP socket failed.
    RtpSocket(String),
    /// Another dialog end the SIP stack reports (its name, lower case).
    Dialog(String),
    /// A browser's peer connection failed or closed without hanging up (the
    /// connection's state, lower case).
    BrowserGone(String),
}

impl EndReason {
    /// Whether the caller's side already ended the dialog, so there is no BYE to send.
    pub fn caller_left(&self) -> bool {
        matches!(
            self,
            Self::CallerHangup | Self::Cancelled | Self::BrowserGone(_)
        )
    }

    /// The call was handed on to a blind transfer's target.
    pub fn referred(&self) -> bool {
        matches!(self, Self::Referred)
    }
}

impl fmt::Display for EndReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Self::Live => "live",
            Self::CallerHangup => "caller-hangup",
            Self::Cancelled => "cancelled",
            Self::Timeout => "timeout",
            Self::KefuHangup => "kefu-hangup",
            Self::Plan(reason) | Self::Dialog(reason) => reason,
            Self::DialogGone => "dialog-gone",
            Self::NoAck => "no-ack",
            Self::RtpTimeout => "rtp-timeout",
            Self::AgentRtpTimeout => "agent-rtp-timeout",
            Self::AgentHangup => "agent-hangup",
            Self::Referred => "referred",
            Self::Shutdown => "shutdown",
            Self::SipError(e) => return write!(f, "sip-error: {e}"),
            Self::RtpSocket(e) => return write!(f, "rtp-socket: {e}"),
            Self::BrowserGone(state) => return write!(f, "browser-{state}"),
        };
        f.write_str(name)
    }
}

impl serde::Serialize for EndReason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl From<&rsipstack::dialog::dialog::TerminatedReason> for EndReason {
    fn from(reason: &rsipstack::dialog::dialog::TerminatedReason) -> Self {
        use rsipstack::dialog::dialog::TerminatedReason as T;
        match reason {
            T::UacBye => Self::CallerHangup,
            T::UacCancel => Self::Cancelled,
            T::Timeout => Self::Timeout,
            T::UasBye => Self::KefuHangup,
            other => Self::Dialog(format!("{other:?}").to_lowercase()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_keep_their_stored_names() {
        for (reason, name) in [
            (EndReason::CallerHangup, "caller-hangup"),
            (EndReason::Cancelled, "cancelled"),
            (EndReason::Plan("dialplan-hangup".into()), "dialplan-hangup"),
            (EndReason::Referred, "referred"),
            (EndReason::AgentRtpTimeout, "agent-rtp-timeout"),
            (EndReason::SipError("503".into()), "sip-error: 503"),
        ] {
            assert_eq!(reason.to_string(), name);
            assert_eq!(
                serde_json::to_value(&reason).unwrap(),
                serde_json::json!(name)
            );
        }
        assert!(EndReason::Cancelled.caller_left());
        assert!(!EndReason::Shutdown.caller_left());
    }
}
