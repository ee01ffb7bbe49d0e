//! Where agents' phones are: the registrar's bindings (RFC 3261 §10), sans I/O.
//! Each agent (by extension) may have a few contacts, each with its own expiry; a
//! REGISTER refreshes, adds or removes them. Time is a parameter.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Contacts one agent may register at once (desk phone, softphone, mobile...).
pub const MAX_CONTACTS: usize = 5;
/// Expiry bounds, in seconds: shorter asks get 423 Interval Too Brief; longer are cut.
pub const MIN_EXPIRES: u32 = 60;
pub const MAX_EXPIRES: u32 = 3600;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    /// The Contact URI, as registered.
    pub contact: String,
    /// Where the REGISTER came from (calls go there when the Contact is behind NAT).
    pub source: SocketAddr,
    pub transport: &'static str,
    pub expires_at: Instant,
}

/// Only authenticated extensions get here, and expired contacts go when their
/// extension registers again, so memory is bounded by agents × `MAX_CONTACTS`.
#[derive(Debug, Default)]
pub struct Registrar {
    bindings: HashMap<String, Vec<Binding>>,
}

impl Registrar {
    /// Adds or refreshes `binding` for the agent `extension`; a new contact beyond
    /// `MAX_CONTACTS` replaces the one expiring soonest.
    pub fn bind(&mut self, extension: &str, binding: Binding, now: Instant) {
        let list = self.bindings.entry(extension.to_string()).or_default();
        list.retain(|b| b.expires_at > now && b.contact != binding.contact);
        if list.len() >= MAX_CONTACTS
            && let Some((i, _)) = list.iter().enumerate().min_by_key(|(_, b)| b.expires_at)
        {
            list.remove(i);
        }
        list.push(binding);
    }

    /// Removes one contact (or, with None, every contact: `Contact: *`).
    pub fn unbind(&mut self, extension: &str, contact: Option<&str>) {
        match contact {
            None => {
                self.bindings.remove(extension);
            }
            Some(c) => {
                if let Some(list) = self.bindings.get_mut(extension) {
                    list.retain(|b| b.contact != c);
                    if list.is_empty() {
                        self.bindings.remove(extension);
                    }
                }
            }
        }
    }

    /// The agent's contacts as another node of the cluster registered them
    /// (replacing what was known here).
    pub fn replace(&mut self, extension: &str, bindings: Vec<Binding>) {
        if bindings.is_empty() {
            self.bindings.remove(extension);
        } else {
            self.bindings.insert(extension.to_string(), bindings);
        }
    }

    /// Whether any agent's phone has a live registration from this address.
    pub fn has_source(&self, ip: std::net::IpAddr, now: Instant) -> bool {
        self.bindings
            .values()
            .flatten()
            .any(|b| b.source.ip() == ip && b.expires_at > now)
    }

    /// The agent's live contacts, most recently registered last.
    pub fn contacts(&self, extension: &str, now: Instant) -> Vec<Binding> {
        self.bindings
            .get(extension)
            .map(|l| l.iter().filter(|b| b.expires_at > now).cloned().collect())
            .unwrap_or_default()
    }
}

/// The expiry a REGISTER asked for, bounded: Ok(seconds) (0 removes), or Err with
/// the minimum when it is too brief (answer 423 with Min-Expires).
pub fn expiry(asked: Option<u32>) -> Result<u32, u32> {
    match asked.unwrap_or(MAX_EXPIRES) {
        0 => Ok(0),
        s if s < MIN_EXPIRES => Err(MIN_EXPIRES),
        s => Ok(s.min(MAX_EXPIRES)),
    }
}

pub fn seconds(s: u32) -> Duration {
    Duration::from_secs(u64::from(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(contact: &str, at: Instant) -> Binding {
        Binding {
            contact: contact.into(),
            source: "127.0.0.1:5062".parse().unwrap(),
            transport: "udp",
            expires_at: at,
        }
    }

    #[test]
    fn bind_refresh_expire_and_unbind() {
        let mut r = Registrar::default();
        let t0 = Instant::now();
        r.bind("1001", b("sip:1001@10.0.0.5:5062", t0 + seconds(60)), t0);
        r.bind("1001", b("sip:1001@10.0.0.5:5062", t0 + seconds(120)), t0);
        assert_eq!(r.contacts("1001", t0).len(), 1, "a refresh replaces");
        r.bind("1001", b("sip:1001@10.0.0.6:5060", t0 + seconds(30)), t0);
        assert_eq!(r.contacts("1001", t0).len(), 2);
        assert_eq!(r.contacts("1001", t0 + seconds(31)).len(), 1, "expired");

        r.unbind("1001", Some("sip:1001@10.0.0.5:5062"));
        assert!(
            r.contacts("1001", t0)
                .iter()
                .all(|c| c.contact.ends_with("5060"))
        );
        r.unbind("1001", None);
        assert!(r.contacts("1001", t0).is_empty());
    }

    #[test]
    fn contacts_are_bounded() {
        let mut r = Registrar::default();
        let t0 = Instant::now();
        for i in 0..10u64 {
            r.bind(
                "1001",
                b(
                    &format!("sip:1001@10.0.0.{i}"),
                    t0 + seconds(100 + i as u32),
                ),
                t0,
            );
        }
        let live = r.contacts("1001", t0);
        assert_eq!(live.len(), MAX_CONTACTS);
        assert_eq!(live.last().unwrap().contact, "sip:1001@10.0.0.9");
        assert!(
            r.contacts("1001", t0 + seconds(200)).is_empty(),
            "all expired"
        );
    }

    #[test]
    fn expiry_bounds() {
        assert_eq!(expiry(None), Ok(3600));
        assert_eq!(expiry(Some(0)), Ok(0));
        assert_eq!(expiry(Some(30)), Err(60));
        assert_eq!(expiry(Some(600)), Ok(600));
        assert_eq!(expiry(Some(86400)), Ok(3600));
    }
}
