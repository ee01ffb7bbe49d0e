//! How one side of a call is signalled: a SIP dialog (a trunk's or a phone's
//! INVITE, or kefu's INVITE to an agent's phone), or a browser's peer connection
//! (the WebRTC edge answered its offer over HTTP: a caller in the chat widget, or
//! an agent's softphone on the desk). The call task asks this for the side's next
//! request or departure and tells it to hang up; everything else (media, the
//! session, the dialplan, the bridge) is the same for both.

use rsipstack::dialog::dialog::{DialogState, DialogStateReceiver};
use rsipstack::dialog::dialog_layer::DialogLayer;
use rsipstack::dialog::invite_dialog::InviteDialog;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::EndReason;

/// One side's signalling.
pub enum Signal {
    Sip {
        dialog: InviteDialog,
        states: DialogStateReceiver,
    },
    Browser(BrowserSignal),
}

/// A browser's call: the WebRTC edge reports the peer connection's end on
/// `gone` and closes it when `hang_up` is cancelled.
pub struct BrowserSignal {
    gone: Option<oneshot::Receiver<EndReason>>,
    hang_up: CancellationToken,
}

impl BrowserSignal {
    pub fn new(gone: oneshot::Receiver<EndReason>, hang_up: CancellationToken) -> Self {
        Self {
            gone: Some(gone),
            hang_up,
        }
    }
}

/// What the other side did.
// Moved once from the stack's channel to the pump: boxing it would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum FromPeer {
    /// A request or change in the SIP dialog (None: the dialog is gone).
    Dialog(Option<DialogState>),
    /// The browser hung up or its connection failed.
    Left(EndReason),
}

impl Signal {
    /// The side's next request or its departure. Never returns for a browser
    /// that stays.
    pub async fn next(&mut self) -> FromPeer {
        match self {
            Signal::Sip { states, .. } => FromPeer::Dialog(states.recv().await),
            Signal::Browser(b) => {
                // Cancel-safe (the pump selects on this): the receiver stays until
                // it has answered; seen once, later calls wait for ever, as a quiet
                // dialog does.
                let Some(gone) = b.gone.as_mut() else {
                    return std::future::pending().await;
                };
                let why = gone
                    .await
                    .unwrap_or_else(|_| EndReason::BrowserGone("edge-ended".into()));
                b.gone = None;
                FromPeer::Left(why)
            }
        }
    }

    /// Hangs the side up: BYE on the dialog, or the peer connection closed.
    pub async fn bye(&self) -> Result<(), String> {
        match self {
            Signal::Sip { dialog, .. } => dialog.bye().await.map_err(|e| e.to_string()),
            Signal::Browser(b) => {
                b.hang_up.cancel();
                Ok(())
            }
        }
    }

    /// The SIP dialog, for what only SIP can carry (REFER, INFO, ringing).
    pub fn dialog(&self) -> Option<&InviteDialog> {
        match self {
            Signal::Sip { dialog, .. } => Some(dialog),
            Signal::Browser(_) => None,
        }
    }

    /// Ends this side for good: hung up (unless it `left` by itself) and its
    /// dialog forgotten by the stack.
    pub async fn close(&self, layer: &DialogLayer, left: bool) {
        if !left && let Err(e) = self.bye().await {
            tracing::debug!(error = %e, "hanging up failed");
        }
        if let Some(dialog) = self.dialog() {
            layer.remove_dialog(&dialog.id());
        }
    }
}

impl Drop for BrowserSignal {
    fn drop(&mut self) {
        // A call that ends for any reason closes the browser's peer connection.
        self.hang_up.cancel();
    }
}
