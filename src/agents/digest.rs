//! SIP digest authentication (RFC 3261 §22, RFC 8760 algorithms) for agents'
//! phones, sans I/O: challenges with stateless nonces, and checking a response
//! against a stored HA1 (the password itself is never kept).
//!
//! Algorithms: SHA-256 (offered first, as RFC 8760 asks) and MD5 (what most deployed
//! phones still speak); `sip_digest` chooses which are offered, in order. SHA-512-256 is not offered: the common phones and SIPp do
//! not support it. Hashes come from the `sha2` and `md-5` crates; the header is
//! tokenised by rsipstack (`AuthTokenizer`); the digest arithmetic is written here
//! because rsipstack's `DigestGenerator` needs the plaintext password.

use std::net::IpAddr;

use hmac::{Hmac, Mac};
use md5::Md5;
use sha2::{Digest, Sha256};

/// How long a nonce is good for, in seconds; an older one gets `stale=true`.
pub const NONCE_LIFETIME_SECS: u64 = 300;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    Sha256,
    Md5,
}

impl Algorithm {
    pub const OFFERED: [Algorithm; 2] = [Algorithm::Sha256, Algorithm::Md5];

    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Md5 => "MD5",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_uppercase().as_str() {
            "SHA-256" | "SHA256" => Some(Algorithm::Sha256),
            "MD5" => Some(Algorithm::Md5),
            _ => None,
        }
    }

    pub fn hash(self, text: &str) -> String {
        match self {
            Algorithm::Sha256 => hex::encode(Sha256::digest(text.as_bytes())),
            Algorithm::Md5 => hex::encode(Md5::digest(text.as_bytes())),
        }
    }
}

/// H(username:realm:password) for one algorithm: what the store keeps.
pub fn ha1(algorithm: Algorithm, username: &str, realm: &str, password: &str) -> String {
    algorithm.hash(&format!("{username}:{realm}:{password}"))
}

/// An Authorization header's digest parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub realm: String,
    pub nonce: String,
    /// The digest-uri exactly as the phone wrote it (it is hashed as written).
    pub uri: String,
    pub response: String,
    pub algorithm: Algorithm,
    /// (cnonce, nc) when qop=auth.
    pub qop_auth: Option<(String, String)>,
}

/// Why an Authorization header cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DigestError {
    #[error("Authorization header: {0}")]
    Malformed(String),
    /// Credentials in another scheme than Digest: the phone is challenged for Digest.
    #[error("authorization scheme {0:?} is not Digest")]
    Scheme(String),
    #[error("unsupported digest algorithm {0:?}")]
    Algorithm(String),
    #[error("unsupported qop {0:?}")]
    Qop(String),
}

impl Credentials {
    pub fn parse(header: &str) -> Result<Self, DigestError> {
        use rsipstack::sip::headers::typed::tokenizers::AuthTokenizer;
        let tok =
            AuthTokenizer::parse(header).map_err(|e| DigestError::Malformed(e.to_string()))?;
        if !tok.scheme.eq_ignore_ascii_case("digest") {
            return Err(DigestError::Scheme(tok.scheme.to_string()));
        }
        let find = |name: &str| {
            tok.params
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.trim_matches('"').to_string())
        };
        let need = |name: &str| {
            find(name)
                .filter(|v| !v.is_empty() && v.len() <= 512)
                .ok_or_else(|| DigestError::Malformed(format!("missing {name}")))
        };
        let algorithm = match find("algorithm") {
            None => Algorithm::Md5,
            Some(a) => Algorithm::parse(&a).ok_or(DigestError::Algorithm(a))?,
        };
        let qop_auth = match find("qop") {
            None => None,
            Some(q) if q.eq_ignore_ascii_case("auth") => Some((need("cnonce")?, need("nc")?)),
            Some(q) => return Err(DigestError::Qop(q)),
        };
        Ok(Self {
            username: need("username")?,
            realm: need("realm")?,
            nonce: need("nonce")?,
            uri: need("uri")?,
            response: need("response")?.to_ascii_lowercase(),
            algorithm,
            qop_auth,
        })
    }

    /// Whether the response proves the password behind `ha1` for `method`.
    pub fn verify(&self, ha1: &str, method: &str) -> bool {
        let a = self.algorithm;
        let ha2 = a.hash(&format!("{method}:{}", self.uri));
        let expected = match &self.qop_auth {
            Some((cnonce, nc)) => a.hash(&format!("{ha1}:{}:{nc}:{cnonce}:auth:{ha2}", self.nonce)),
            None => a.hash(&format!("{ha1}:{}:{ha2}", self.nonce)),
        };
        crate::auth::same_secret(&self.response, &expected)
    }
}

/// Makes and checks nonces: a nonce is its time and an HMAC of that time and the
/// phone's address under a per-process key, so checking needs no memory; what is
/// remembered is the nonce count last accepted for each nonce in its lifetime, so a
/// response cannot be used twice.
pub struct Nonces {
    key: [u8; 32],
    /// Nonce → (highest nonce count accepted, 0 without qop; when it was issued).
    used: std::sync::Mutex<std::collections::HashMap<String, (u64, u64)>>,
}

/// Nonces remembered at most (each lives `NONCE_LIFETIME_SECS`; beyond this many
/// the oldest half is forgotten, which only makes their phones re-challenge).
const MAX_USED: usize = 100_000;

/// What a nonce turned out to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NonceCheck {
    Fresh,
    /// Ours, but too old: challenge again with `stale=true` (no new password prompt).
    Stale,
    Forged,
}

impl Default for Nonces {
    fn default() -> Self {
        Self {
            key: rand::random(),
            used: std::sync::Mutex::default(),
        }
    }
}

impl Nonces {
    fn mac(&self, secs: u64, salt: &str, from: IpAddr) -> String {
        let Ok(mut m) = Hmac::<Sha256>::new_from_slice(&self.key) else {
            return String::new();
        };
        m.update(&secs.to_be_bytes());
        m.update(salt.as_bytes());
        m.update(from.to_string().as_bytes());
        hex::encode(&m.finalize().into_bytes()[..16])
    }

    /// A nonce for a phone at `from`, at `now` (seconds since the epoch): its time,
    /// a random salt (every challenge's nonce is new) and their HMAC.
    pub fn issue(&self, from: IpAddr, now: u64) -> String {
        let salt = format!("{:016x}", rand::random::<u64>());
        format!("{now:x}.{salt}.{}", self.mac(now, &salt, from))
    }

    pub fn check(&self, nonce: &str, from: IpAddr, now: u64) -> NonceCheck {
        let mut parts = nonce.splitn(3, '.');
        let (Some(t), Some(salt), Some(mac)) = (parts.next(), parts.next(), parts.next()) else {
            return NonceCheck::Forged;
        };
        let Ok(secs) = u64::from_str_radix(t, 16) else {
            return NonceCheck::Forged;
        };
        if !crate::auth::same_secret(mac, &self.mac(secs, salt, from)) || secs > now + 5 {
            NonceCheck::Forged
        } else if now - secs.min(now) > NONCE_LIFETIME_SECS {
            NonceCheck::Stale
        } else {
            NonceCheck::Fresh
        }
    }

    /// Records a verified response's use of a (fresh) nonce: false when it was used
    /// before with this nonce count or a higher one (`nc`, hex; None without qop,
    /// which allows one use).
    pub fn spend(&self, nonce: &str, nc: Option<&str>, now: u64) -> bool {
        let count = match nc {
            Some(nc) => match u64::from_str_radix(nc, 16) {
                Ok(n) if n > 0 => n,
                _ => return false,
            },
            None => 0,
        };
        let issued = nonce
            .split_once('.')
            .and_then(|(t, _)| u64::from_str_radix(t, 16).ok())
            .unwrap_or(now);
        let mut used = crate::lock(&self.used);
        if used.len() >= MAX_USED {
            let cutoff = now.saturating_sub(NONCE_LIFETIME_SECS);
            used.retain(|_, (_, at)| *at >= cutoff);
            if used.len() >= MAX_USED {
                let mut times: Vec<u64> = used.values().map(|(_, at)| *at).collect();
                times.sort_unstable();
                let median = times[times.len() / 2];
                used.retain(|_, (_, at)| *at > median);
            }
        }
        match used.get_mut(nonce) {
            Some((last, _)) if count <= *last => false,
            Some((last, _)) => {
                *last = count;
                true
            }
            None => {
                used.insert(nonce.to_string(), (count, issued));
                true
            }
        }
    }

    /// The WWW-Authenticate header values for a challenge, one per algorithm in
    /// `offered` (best first: phones take the first they support).
    pub fn challenge(
        &self,
        realm: &str,
        offered: &[Algorithm],
        from: IpAddr,
        now: u64,
        stale: bool,
    ) -> Vec<String> {
        let nonce = self.issue(from, now);
        offered
            .iter()
            .map(|a| {
                format!(
                    "Digest realm=\"{realm}\", nonce=\"{nonce}\", algorithm={}, qop=\"auth\"{}",
                    a.name(),
                    if stale { ", stale=true" } else { "" }
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 2617 §3.5's example (MD5, qop=auth), checked against its published response.
    #[test]
    fn rfc2617_example() {
        let header = r#"Digest username="Mufasa", realm="testrealm@host.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="/dir/index.html", qop=auth, nc=00000001, cnonce="0a4f113b", response="6629fae49393a05397450978507c4ef1", opaque="5ccc069c403ebaf9f0171e9517f40e41""#;
        let c = Credentials::parse(header).unwrap();
        assert_eq!(c.algorithm, Algorithm::Md5);
        let h = ha1(
            Algorithm::Md5,
            "Mufasa",
            "testrealm@host.com",
            "Circle Of Life",
        );
        assert!(c.verify(&h, "GET"));
        assert!(!c.verify(&h, "POST"));
        let wrong = ha1(
            Algorithm::Md5,
            "Mufasa",
            "testrealm@host.com",
            "circle of life",
        );
        assert!(!c.verify(&wrong, "GET"));
    }

    /// RFC 7616 §3.9.1's SHA-256 example.
    #[test]
    fn rfc7616_sha256_example() {
        let header = r#"Digest username="Mufasa", realm="http-auth@example.org", uri="/dir/index.html", algorithm=SHA-256, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", nc=00000001, cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", qop=auth, response="753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS""#;
        let c = Credentials::parse(header).unwrap();
        assert_eq!(c.algorithm, Algorithm::Sha256);
        let h = ha1(
            Algorithm::Sha256,
            "Mufasa",
            "http-auth@example.org",
            "Circle of Life",
        );
        assert!(c.verify(&h, "GET"));
    }

    #[test]
    fn a_response_is_good_once() {
        let n = Nonces::default();
        let from: IpAddr = "192.0.2.1".parse().unwrap();
        let nonce = n.issue(from, 1000);
        assert!(n.spend(&nonce, Some("00000001"), 1001));
        // Replayed as it was: refused; the phone's next count: accepted.
        assert!(!n.spend(&nonce, Some("00000001"), 1002));
        assert!(n.spend(&nonce, Some("00000002"), 1003));
        assert!(!n.spend(&nonce, Some("00000002"), 1004));
        assert!(!n.spend(&nonce, Some("zz"), 1004));
        // Without qop a nonce serves once.
        let other = n.issue(from, 1005);
        assert!(n.spend(&other, None, 1005));
        assert!(!n.spend(&other, None, 1006));
    }

    #[test]
    fn malformed_headers_are_errors() {
        assert!(Credentials::parse("Basic dXNlcjpwYXNz").is_err());
        assert!(Credentials::parse("Digest username=\"a\"").is_err());
        assert!(matches!(
            Credentials::parse(
                r#"Digest username="a", realm="r", nonce="n", uri="sip:x", response="y", algorithm=SHA-512-256"#
            ),
            Err(DigestError::Algorithm(_))
        ));
        assert!(Credentials::parse("").is_err());
        assert!(Credentials::parse("Digest ,,,,=\"").is_err());
    }

    #[test]
    fn nonces_are_bound_to_time_and_address() {
        let n = Nonces::default();
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let nonce = n.issue(a, 1_000_000);
        assert_eq!(n.check(&nonce, a, 1_000_010), NonceCheck::Fresh);
        assert_eq!(n.check(&nonce, b, 1_000_010), NonceCheck::Forged);
        assert_eq!(
            n.check(&nonce, a, 1_000_000 + NONCE_LIFETIME_SECS + 1),
            NonceCheck::Stale
        );
        assert_eq!(n.check("f4240.00", a, 1_000_010), NonceCheck::Forged);
        assert_eq!(n.check("nonsense", a, 1_000_010), NonceCheck::Forged);
        assert_eq!(
            Nonces::default().check(&nonce, a, 1_000_010),
            NonceCheck::Forged
        );
        let ch = n.challenge("kefu", &Algorithm::OFFERED, a, 1_000_000, true);
        assert!(ch[0].contains("algorithm=SHA-256") && ch[0].contains("stale=true"));
        assert!(ch[1].contains("algorithm=MD5"));
    }
}
