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
}

impl Phones {
    pub fn new(realm: &str, offered: &[digest::Algorithm]) -> Self {
        Self {
            realm: realm.to_string(),
            offered: offered.to_vec(),
            registrar: Mutex::default(),
            nonces: digest::Nonces::default(),
            throttle: Mutex::default(),
        }
    }
}

impl std::fmt::Debug for digest::Nonces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Nonces")
    }
}
