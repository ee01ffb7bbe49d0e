//! WeChat's safe mode (安全模式): messages in both directions are AES-256-CBC
//! encrypted with the account's EncodingAESKey, and `msg_signature` signs the
//! ciphertext together with the token, timestamp and nonce, so a request's body
//! cannot be changed or replayed under a captured signature (the plain-text mode's
//! `signature` covers no body at all).
//!
//! The format, as the WeChat documentation gives it: the key is the 43-character
//! EncodingAESKey plus `=`, base64-decoded (32 bytes); the IV is its first 16 bytes;
//! the plain text is 16 random bytes, the message's length (4 bytes, big-endian),
//! the message and the AppID, padded PKCS#7-style to a multiple of 32 bytes (not
//! AES's 16, so the `cbc` crate's own padding cannot be used). Sans-I/O.

use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit, block_padding::NoPadding};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha1::{Digest, Sha1};

type Encryptor = cbc::Encryptor<aes::Aes256>;
type Decryptor = cbc::Decryptor<aes::Aes256>;

/// WeChat pads to this block size.
const BLOCK: usize = 32;

/// The account's key and AppID.
#[derive(Clone)]
pub struct Cipher {
    key: [u8; 32],
    appid: String,
}

impl std::fmt::Debug for Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Cipher({})", self.appid)
    }
}

impl Cipher {
    /// From the EncodingAESKey (43 characters) and the AppID.
    pub fn new(encoding_aes_key: &str, appid: &str) -> Result<Self, String> {
        let key = crate::config::encoding_aes_key(encoding_aes_key)?;
        Ok(Self {
            key,
            appid: appid.to_string(),
        })
    }

    /// The message inside an `Encrypt` value, if it decrypts, is well formed and is
    /// for this AppID.
    pub fn decrypt(&self, encrypted: &str) -> Result<String, String> {
        let mut data = STANDARD
            .decode(encrypted.trim())
            .map_err(|_| "Encrypt is not base64".to_string())?;
        if data.is_empty() || data.len() % BLOCK != 0 {
            return Err("Encrypt has the wrong length".into());
        }
        let plain = Decryptor::new(&self.key.into(), self.key[..16].into())
            .decrypt_padded_mut::<NoPadding>(&mut data)
            .map_err(|_| "Encrypt does not decrypt".to_string())?;
        let pad = usize::from(*plain.last().unwrap_or(&0));
        if !(1..=BLOCK).contains(&pad) || pad > plain.len() {
            return Err("Encrypt does not decrypt with this key".into());
        }
        let plain = &plain[..plain.len() - pad];
        if plain.len() < 20 {
            return Err("Encrypt is too short".into());
        }
        let len = u32::from_be_bytes([plain[16], plain[17], plain[18], plain[19]]) as usize;
        let rest = &plain[20..];
        if len > rest.len() {
            return Err("Encrypt does not decrypt with this key".into());
        }
        let (message, appid) = rest.split_at(len);
        if appid != self.appid.as_bytes() {
            return Err("the message is for another account".into());
        }
        String::from_utf8(message.to_vec()).map_err(|_| "the message is not UTF-8".into())
    }

    /// `message` encrypted for the account, as the `Encrypt` value of a reply;
    /// `random` is the 16 random bytes that start the plain text.
    pub fn encrypt(&self, message: &str, random: [u8; 16]) -> String {
        let mut plain = Vec::with_capacity(message.len() + self.appid.len() + 20 + BLOCK);
        plain.extend_from_slice(&random);
        plain.extend_from_slice(&(message.len() as u32).to_be_bytes());
        plain.extend_from_slice(message.as_bytes());
        plain.extend_from_slice(self.appid.as_bytes());
        let pad = BLOCK - plain.len() % BLOCK;
        plain.extend(std::iter::repeat_n(pad as u8, pad));
        let len = plain.len();
        let encrypted = Encryptor::new(&self.key.into(), self.key[..16].into())
            .encrypt_padded_mut::<NoPadding>(&mut plain, len)
            .map(<[u8]>::to_vec)
            .unwrap_or_default();
        STANDARD.encode(encrypted)
    }
}

/// `msg_signature`: SHA-1 over the sorted token, timestamp, nonce and ciphertext.
pub fn msg_signature(token: &str, timestamp: &str, nonce: &str, encrypted: &str) -> String {
    let mut parts = [token, timestamp, nonce, encrypted];
    parts.sort_unstable();
    hex::encode(Sha1::digest(parts.concat().as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";

    #[test]
    fn a_message_goes_round() {
        let c = Cipher::new(KEY, "wx-sunrise").unwrap();
        let xml = "<xml><Content><![CDATA[你好]]></Content></xml>";
        let sealed = c.encrypt(xml, [7; 16]);
        assert_ne!(sealed, c.encrypt(xml, [8; 16]));
        assert_eq!(c.decrypt(&sealed).unwrap(), xml);
        // Another account's key or AppID does not open it.
        let other = Cipher::new(KEY, "wx-other").unwrap();
        assert!(other.decrypt(&sealed).is_err());
        let wrong = Cipher::new("bbcdefghijklmnopqrstuvwxyz0123456789ABCDEFG", "wx-sunrise");
        assert!(wrong.unwrap().decrypt(&sealed).is_err());
    }

    #[test]
    fn broken_ciphertexts_are_refused_not_panicked_on() {
        let c = Cipher::new(KEY, "wx").unwrap();
        for bad in [
            "",
            "!!!",
            "AAAA",
            &STANDARD.encode([0u8; 32]),
            &STANDARD.encode([1u8; 64]),
        ] {
            assert!(c.decrypt(bad).is_err(), "{bad}");
        }
        assert!(Cipher::new("short", "wx").is_err());
    }

    #[test]
    fn the_signature_covers_the_ciphertext() {
        let a = msg_signature("kefu", "1409304348", "n", "AAAA");
        assert_eq!(a, msg_signature("kefu", "1409304348", "n", "AAAA"));
        assert_ne!(a, msg_signature("kefu", "1409304348", "n", "AAAB"));
    }
}
