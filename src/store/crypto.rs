//! Encryption at rest: AES-256-GCM (the `aes-gcm` crate) under a keyring of numbered
//! keys, and keyed hashes (HMAC-SHA256) for looking values up without storing them in
//! plaintext.
//!
//! A sealed value is `[1][key id: u16 BE][nonce: 12][ciphertext + tag]`, so every
//! value names the key that opens it and keys can rotate row by row. The associated
//! data is the column's name (`turns.text`), so a value copied into another column
//! does not open. New values use the last key of the ring. Lookup hashes use a key
//! derived (HKDF-SHA256) from the key that sealed the row; a lookup hashes under every
//! key of the ring, so it finds rows written before and after a rotation.
//!
//! The keyring file (or the `KEFU_KEYS` variable) holds one key per line,
//! `<id> <32 bytes in base64>`; `#` starts a comment. `kefu keys init` writes the
//! first, `kefu keys add` appends the next.

use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use sha2::Sha256;

const VERSION: u8 = 1;
const HEADER: usize = 1 + 2 + 12;
/// The environment variable that may hold the keyring instead of a file.
pub const KEYS_ENV: &str = "KEFU_KEYS";

struct Key {
    id: u16,
    cipher: Aes256Gcm,
    /// For lookup hashes.
    index: [u8; 32],
}

/// The keys that open stored values; the last one seals new values.
pub struct Keyring {
    keys: Vec<Key>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<u16> = self.keys.iter().map(|k| k.id).collect();
        f.debug_struct("Keyring").field("ids", &ids).finish()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("stored value is not an encrypted value (too short or unknown format)")]
    Format,
    #[error("stored value was sealed with key {0}, which is not in the keyring")]
    UnknownKey(u16),
    #[error("stored value does not open with key {0} (corrupt, or moved from another column)")]
    Open(u16),
}

impl Keyring {
    /// Parses `<id> <base64>` lines.
    pub fn parse(text: &str, origin: &str) -> anyhow::Result<Self> {
        let mut keys: Vec<Key> = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let at = format!("{origin}:{}", n + 1);
            let (id, b64) = line
                .split_once(char::is_whitespace)
                .with_context(|| format!("{at}: expected `<id> <base64 key>`"))?;
            let id: u16 =
                id.parse().ok().filter(|&i| i > 0).with_context(|| {
                    format!("{at}: key id {id:?} is not a number from 1 to 65535")
                })?;
            let raw = B64
                .decode(b64.trim())
                .with_context(|| format!("{at}: key {id} is not base64"))?;
            let raw: [u8; 32] = raw.try_into().map_err(|v: Vec<u8>| {
                anyhow::anyhow!("{at}: key {id} has {} bytes; AES-256 needs 32", v.len())
            })?;
            if keys.iter().any(|k| k.id == id) {
                bail!("{at}: key id {id} appears twice");
            }
            keys.push(Key::new(id, &raw));
        }
        if keys.is_empty() {
            bail!("{origin}: no keys");
        }
        Ok(Self { keys })
    }

    /// The keyring from `KEFU_KEYS` if set, else from `file`; a clear error if neither.
    pub fn load(file: &Path) -> anyhow::Result<Self> {
        if let Ok(text) = std::env::var(KEYS_ENV) {
            return Self::parse(&text.replace(';', "\n"), KEYS_ENV);
        }
        match std::fs::read_to_string(file) {
            Ok(text) => Self::parse(&text, &file.display().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
                "encryption is on but there is no key: {} does not exist and {KEYS_ENV} is not set.\n\
                 Create a key with `kefu keys init` (writes {}), set {KEYS_ENV}=\"1 <base64 key>\", \
                 or turn encryption off with `encryption = false` in kefu.toml",
                file.display(),
                file.display()
            ),
            Err(e) => Err(e).with_context(|| format!("cannot read the keyring {}", file.display())),
        }
    }

    /// A keyring line with a fresh random key.
    pub fn new_line(id: u16) -> String {
        let key: [u8; 32] = rand::random();
        format!("{id} {}\n", B64.encode(key))
    }

    pub fn current_id(&self) -> u16 {
        self.keys.last().map_or(0, |k| k.id)
    }

    pub fn ids(&self) -> Vec<u16> {
        self.keys.iter().map(|k| k.id).collect()
    }

    fn current(&self) -> &Key {
        // `parse` refuses an empty ring.
        &self.keys[self.keys.len() - 1]
    }

    fn key(&self, id: u16) -> Result<&Key, CryptoError> {
        self.keys
            .iter()
            .find(|k| k.id == id)
            .ok_or(CryptoError::UnknownKey(id))
    }

    /// Seals `plain` for `column` under the current key.
    pub fn seal(&self, column: &str, plain: &[u8]) -> Vec<u8> {
        let key = self.current();
        let nonce: [u8; 12] = rand::random();
        let mut out = Vec::with_capacity(HEADER + plain.len() + 16);
        out.push(VERSION);
        out.extend_from_slice(&key.id.to_be_bytes());
        out.extend_from_slice(&nonce);
        // Encryption with a valid key and nonce cannot fail for inputs under 64 GiB.
        let sealed = key
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plain,
                    aad: column.as_bytes(),
                },
            )
            .unwrap_or_default();
        out.extend_from_slice(&sealed);
        out
    }

    pub fn seal_str(&self, column: &str, plain: &str) -> Vec<u8> {
        self.seal(column, plain.as_bytes())
    }

    /// The key id a sealed value names.
    pub fn key_of(sealed: &[u8]) -> Result<u16, CryptoError> {
        if sealed.len() < HEADER + 16 || sealed[0] != VERSION {
            return Err(CryptoError::Format);
        }
        Ok(u16::from_be_bytes([sealed[1], sealed[2]]))
    }

    pub fn open(&self, column: &str, sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let id = Self::key_of(sealed)?;
        let key = self.key(id)?;
        key.cipher
            .decrypt(
                Nonce::from_slice(&sealed[3..HEADER]),
                Payload {
                    msg: &sealed[HEADER..],
                    aad: column.as_bytes(),
                },
            )
            .map_err(|_| CryptoError::Open(id))
    }

    pub fn open_str(&self, column: &str, sealed: &[u8]) -> Result<String, CryptoError> {
        let id = Self::key_of(sealed)?;
        String::from_utf8(self.open(column, sealed)?).map_err(|_| CryptoError::Open(id))
    }

    /// The lookup hash of `value` for `column` under the current key.
    pub fn lookup(&self, column: &str, value: &str) -> Vec<u8> {
        self.current().lookup(column, value)
    }

    /// The lookup hashes of `value` under every key, for finding rows sealed before a
    /// rotation finished.
    pub fn lookups(&self, column: &str, value: &str) -> Vec<Vec<u8>> {
        self.keys.iter().map(|k| k.lookup(column, value)).collect()
    }
}

impl Key {
    fn new(id: u16, raw: &[u8; 32]) -> Self {
        let hk = hkdf::Hkdf::<Sha256>::new(Some(b"kefu lookup"), raw);
        let mut index = [0u8; 32];
        // 32 bytes is well within HKDF-SHA256's output limit.
        let _ = hk.expand(b"hmac-sha256 v1", &mut index);
        Self {
            id,
            cipher: Aes256Gcm::new(raw.into()),
            index,
        }
    }

    fn lookup(&self, column: &str, value: &str) -> Vec<u8> {
        // HMAC accepts keys of any length.
        let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(&self.index) else {
            return Vec::new();
        };
        mac.update(column.as_bytes());
        mac.update(&[0]);
        mac.update(value.as_bytes());
        mac.finalize().into_bytes().to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(lines: &[u16]) -> (String, Keyring) {
        let text: String = lines.iter().map(|&i| Keyring::new_line(i)).collect();
        let ring = Keyring::parse(&text, "test").unwrap();
        (text, ring)
    }

    #[test]
    fn seals_and_opens_and_names_the_key() {
        let (_, k) = ring(&[1, 2]);
        let s = k.seal_str("turns.text", "我的电话是 13800138000");
        assert_eq!(Keyring::key_of(&s), Ok(2));
        assert_eq!(
            k.open_str("turns.text", &s).unwrap(),
            "我的电话是 13800138000"
        );
        // Another column's value does not open here.
        assert_eq!(k.open("calls.caller", &s), Err(CryptoError::Open(2)));
        // Two seals of one value differ (random nonce).
        assert_ne!(s, k.seal_str("turns.text", "我的电话是 13800138000"));
    }

    #[test]
    fn old_values_open_after_a_key_is_added() {
        let (text, old) = ring(&[1]);
        let sealed = old.seal_str("c", "hello");
        let new = Keyring::parse(&format!("{text}{}", Keyring::new_line(2)), "t").unwrap();
        assert_eq!(new.current_id(), 2);
        assert_eq!(new.open_str("c", &sealed).unwrap(), "hello");
        assert!(new.lookups("c", "x").contains(&old.lookup("c", "x")));
        let (_, other) = ring(&[1]);
        assert_eq!(other.open("c", &sealed), Err(CryptoError::Open(1)));
    }

    #[test]
    fn bad_keyrings_say_where() {
        for (text, want) in [
            ("", "no keys"),
            ("1 YWJj", "t:1: key 1 has 3 bytes"),
            ("x AAAA", "t:1: key id \"x\""),
            ("# c\n1", "t:2: expected"),
            ("1 %%%", "t:1: key 1 is not base64"),
        ] {
            let e = Keyring::parse(text, "t").unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
        let line = Keyring::new_line(3);
        let e = Keyring::parse(&format!("{line}{line}"), "t")
            .unwrap_err()
            .to_string();
        assert!(e.contains("appears twice"), "{e}");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let (_, k) = ring(&[1]);
        assert_eq!(k.open("c", b""), Err(CryptoError::Format));
        assert_eq!(
            k.open(
                "c",
                &[
                    1, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                    0, 0, 0, 0, 0
                ]
            ),
            Err(CryptoError::UnknownKey(9))
        );
        let mut s = k.seal("c", b"x");
        let last = s.len() - 1;
        s[last] ^= 1;
        assert_eq!(k.open("c", &s), Err(CryptoError::Open(1)));
    }
}
