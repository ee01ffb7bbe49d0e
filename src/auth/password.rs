//! Passwords: argon2id (the `argon2` crate's defaults: 19 MiB, 2 passes, the
//! OWASP-recommended setting) in PHC strings, so parameters can rise later and old
//! hashes still verify. Hashing costs tens of milliseconds of CPU on purpose:
//! callers run it on a blocking thread.

use std::sync::OnceLock;

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

pub const MIN_LEN: usize = 10;
pub const MAX_LEN: usize = 256;

/// A password a user may choose: long enough to resist guessing once the hashes
/// are stolen; bounded so a huge body cannot cost the server much.
pub fn check(password: &str) -> Result<(), String> {
    let n = password.chars().count();
    if n < MIN_LEN {
        return Err(format!(
            "the password must have at least {MIN_LEN} characters"
        ));
    }
    if n > MAX_LEN {
        return Err(format!(
            "the password must have at most {MAX_LEN} characters"
        ));
    }
    Ok(())
}

pub fn hash(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("cannot hash the password: {e}"))
}

/// Whether `password` matches `stored` (a PHC string). A missing or malformed hash
/// never matches, and costs as much time as a real check (so a response time does
/// not tell which user names exist).
pub fn verify(password: &str, stored: &str) -> bool {
    match PasswordHash::new(stored) {
        Ok(h) => Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok(),
        Err(_) => {
            let _ = PasswordHash::new(dummy())
                .map(|h| Argon2::default().verify_password(password.as_bytes(), &h));
            false
        }
    }
}

/// A hash of nothing anyone knows, for timing-equal checks of unknown users.
fn dummy() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| hash(&crate::auth::secret()).unwrap_or_default())
}

/// A password for a user created without one: 20 random URL-safe characters.
pub fn generate() -> String {
    crate::auth::secret().chars().take(20).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_then_verify() {
        let h = hash("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify("correct horse battery", &h));
        assert!(!verify("correct horse battery!", &h));
        assert!(!verify("anything", ""));
        assert!(!verify("anything", "not a hash"));
    }

    #[test]
    fn same_password_different_salt() {
        assert_ne!(hash("0123456789").unwrap(), hash("0123456789").unwrap());
    }

    #[test]
    fn length_rules() {
        assert!(check("short").is_err());
        assert!(check("ten chars!").is_ok());
        assert!(check(&"x".repeat(257)).is_err());
        assert_eq!(generate().len(), 20);
    }
}
