//! Human agents: their phones' registrations (`registrar`, with digest
//! authentication in `digest`). Queues, transfers and the desk build on these.

pub mod center;
pub mod digest;
pub mod queue;
pub mod registrar;

use std::sync::Mutex;

use crate::auth::throttle::Throttle;

/// What the SIP edge needs to take REGISTERs: the bindings, the nonce key, the
/// failure throttle (per address and per extension) and the realm.
#[derive(Debug)]
pub struct Phones {
    pub realm: String,
    /// Digest algorithms offered, best first.
    pub offered: Vec<digest::Algorithm>,
    pub registrar: Mutex<registrar::Registrar>,
    pub nonces: digest::Nonces,
    pub throttle: Mutex<Throttle>,
    /// Where the extensions whose phones registered here are told (a cluster's
    /// node shares their bindings).
    registered: Mutex<Option<tokio::sync::mpsc::UnboundedSender<String>>>,
}

impl Phones {
    pub fn new(realm: &str, offered: &[digest::Algorithm]) -> Self {
        Self {
            realm: realm.to_string(),
            offered: offered.to_vec(),
            registrar: Mutex::default(),
            nonces: digest::Nonces::default(),
            throttle: Mutex::default(),
            registered: Mutex::default(),
        }
    }

    /// Extensions whose bindings change here go to the returned channel from now on.
    pub fn watch(&self) -> tokio::sync::mpsc::UnboundedReceiver<String> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        *crate::lock(&self.registered) = Some(tx);
        rx
    }

    /// A REGISTER changed this extension's bindings.
    pub fn changed(&self, extension: &str) {
        if let Some(tx) = crate::lock(&self.registered).as_ref() {
            let _ = tx.send(extension.to_string());
        }
    }
}

/// Whether this node may ring an agent now. In a cluster another node may hold
/// them (ringing them, or on its call); a single node always may. The same
/// holds serve other things one node at a time must do (a ticket's callback,
/// held as `callback:NUM`).
#[async_trait::async_trait]
pub trait Claims: Send + Sync + std::fmt::Debug {
    /// Holds `what` for this node; false when another node does.
    async fn claim(&self, what: &str) -> bool;
    /// Lets go of something held with `claim` that is not an agent (an agent
    /// is let go when this node's queues have them free again).
    async fn release(&self, what: &str);
}

impl std::fmt::Debug for digest::Nonces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Nonces")
    }
}
