//! The web chat customer's proof that a conversation is theirs.
//!
//! A conversation id reaches agents, supervisors, integrators and records, so it
//! cannot also be the customer's credential: whoever saw it could read the chat
//! and speak as the customer. When a conversation starts, the widget gets a key
//! with it: an HMAC of the conversation id under a server secret (the store's
//! keyring when encryption is on, so keys outlive restarts and key rotations until
//! the old key is retired; otherwise a random secret kept in the store, which
//! every node of a cluster shares). The public chat
//! routes ask for it, in the `X-Kefu-Key` header or, for the WebSocket (browsers
//! cannot set its headers), the `key` query parameter. No key is stored: the key
//! is derived again to check it.

use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::ApiError;
use crate::store::Sealer;

/// The header that carries the key.
pub const HEADER: &str = "x-kefu-key";

/// The MAC's "column": keeps these MACs apart from the store's lookup hashes.
const PURPOSE: &str = "chat customer key v1";

/// Bytes of MAC in a key (128 bits, as hex).
const KEY_BYTES: usize = 16;

pub struct ChatKeys {
    sealer: Sealer,
    /// Used when encryption is off (the store's keyring is then absent).
    own: [u8; 32],
}

impl ChatKeys {
    /// `own`: the secret used without a keyring, the store's (`Store::secret`),
    /// so every node and a restarted one accept the keys given out.
    pub fn new(sealer: Sealer, own: [u8; 32]) -> Self {
        Self { sealer, own }
    }

    /// The key the customer gets for `conversation`.
    pub fn key(&self, conversation: &str) -> String {
        let mac = match self.sealer.keyed_lookups(PURPOSE, conversation).pop() {
            Some(current) => current,
            None => self.own_mac(conversation),
        };
        hex::encode(&mac[..KEY_BYTES.min(mac.len())])
    }

    /// Whether `given` is `conversation`'s key (under any key of the keyring).
    pub fn check(&self, conversation: &str, given: Option<&str>) -> Result<(), ApiError> {
        let refused = |why: &str| {
            ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "{why}: send the `key` this conversation was started with ({HEADER} header or `key` query parameter)"
                ),
            )
        };
        let Some(given) = given.filter(|g| !g.is_empty()) else {
            return Err(refused("no key for this conversation"));
        };
        let mut macs = self.sealer.keyed_lookups(PURPOSE, conversation);
        if macs.is_empty() {
            macs.push(self.own_mac(conversation));
        }
        // Every candidate is compared in full, in constant time.
        let matched = macs
            .iter()
            .map(|m| crate::auth::same_secret(given, &hex::encode(&m[..KEY_BYTES.min(m.len())])))
            .fold(false, |any, m| any | m);
        if matched {
            Ok(())
        } else {
            Err(refused("wrong key for this conversation"))
        }
    }

    fn own_mac(&self, conversation: &str) -> Vec<u8> {
        // HMAC takes keys of any length.
        let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(&self.own) else {
            return Vec::new();
        };
        mac.update(PURPOSE.as_bytes());
        mac.update(&[0]);
        mac.update(conversation.as_bytes());
        mac.finalize().into_bytes().to_vec()
    }
}

/// The key a request carries: the header, else the `key` query parameter.
pub fn given<'a>(headers: &'a HeaderMap, query: Option<&'a str>) -> Option<&'a str> {
    headers
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .or_else(|| query?.split('&').find_map(|pair| pair.strip_prefix("key=")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_opens_its_own_conversation_only() {
        let keys = ChatKeys::new(Sealer::new(None), rand::random());
        let k = keys.key("conv-a");
        assert_eq!(k.len(), 32);
        assert!(keys.check("conv-a", Some(&k)).is_ok());
        assert!(keys.check("conv-b", Some(&k)).is_err());
        assert!(keys.check("conv-a", None).is_err());
        assert!(keys.check("conv-a", Some("")).is_err());
        // Another server (another secret) does not accept it.
        assert!(
            ChatKeys::new(Sealer::new(None), rand::random())
                .check("conv-a", Some(&k))
                .is_err()
        );
    }

    #[test]
    fn with_a_keyring_keys_survive_a_restart_and_a_rotation() {
        use crate::store::crypto::Keyring;
        let one = Keyring::new_line(1);
        let ring = |text: &str| Sealer::new(Some(Keyring::parse(text, "test").unwrap()));
        let before = ChatKeys::new(ring(&one), [0; 32]).key("conv-a");
        assert!(
            ChatKeys::new(ring(&one), [0; 32])
                .check("conv-a", Some(&before))
                .is_ok()
        );
        let rotated = format!("{one}{}", Keyring::new_line(2));
        let after = ChatKeys::new(ring(&rotated), [0; 32]);
        assert!(
            after.check("conv-a", Some(&before)).is_ok(),
            "old key still held"
        );
        assert_ne!(after.key("conv-a"), before, "new keys under the new key");
    }

    #[test]
    fn the_key_is_read_from_the_header_or_the_query() {
        let mut h = HeaderMap::new();
        assert_eq!(given(&h, Some("a=1&key=abc")), Some("abc"));
        assert_eq!(given(&h, None), None);
        h.insert(HEADER, "def".parse().unwrap());
        assert_eq!(given(&h, Some("key=abc")), Some("def"));
    }
}
