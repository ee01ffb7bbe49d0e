//! Budgets: how often one key (a client address, a phone number, a SIP source) may
//! do something, with governor's GCRA (a steady rate plus a burst). Used by the
//! HTTP routes that cost something (see `http::rate`) and by the SIP guard's
//! per-source request limits (see `channel::sip::guard`).

use std::hash::Hash;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

/// Keys remembered before quiet ones are dropped (a key that has waited out its
/// whole burst has no state worth keeping).
const TIDY_ABOVE: usize = 50_000;

pub struct Budget<K: Clone + Hash + Eq = std::net::IpAddr> {
    limiter: DefaultKeyedRateLimiter<K>,
    /// What is being limited, for the reason ("new conversations from this address").
    what: &'static str,
}

/// A spend refused: what was limited, and how long until one more is allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Over {
    pub what: &'static str,
    pub wait: Duration,
}

impl<K: Clone + Hash + Eq> Budget<K> {
    /// `count` per `period`, all of them at once if need be.
    pub fn new(count: u32, period: Duration, what: &'static str) -> Self {
        Self::with_burst(count, period, count, what)
    }

    /// `count` per `period` on average, at most `burst` at once.
    pub fn with_burst(count: u32, period: Duration, burst: u32, what: &'static str) -> Self {
        let count = NonZeroU32::new(count.max(1)).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(period / count.get())
            .unwrap_or_else(|| Quota::per_second(count))
            .allow_burst(burst);
        Self {
            limiter: DefaultKeyedRateLimiter::keyed(quota),
            what,
        }
    }

    pub fn per_minute(count: u32, what: &'static str) -> Self {
        Self::new(count, Duration::from_secs(60), what)
    }

    pub fn per_hour(count: u32, what: &'static str) -> Self {
        Self::new(count, Duration::from_secs(3600), what)
    }

    /// Spends one from `key`'s budget, or says how long until it may.
    pub fn spend(&self, key: &K) -> Result<(), Over> {
        if self.limiter.len() > TIDY_ABOVE {
            self.limiter.retain_recent();
        }
        self.limiter.check_key(key).map_err(|not_until| Over {
            what: self.what,
            wait: not_until.wait_time_from(DefaultClock::default().now()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_beyond_the_budget_is_refused_with_the_wait() {
        let b: Budget = Budget::per_minute(3, "things");
        let me: std::net::IpAddr = "192.0.2.1".parse().unwrap();
        let other: std::net::IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..3 {
            assert!(b.spend(&me).is_ok());
        }
        let e = b.spend(&me).unwrap_err();
        assert_eq!(e.what, "things");
        // 3 a minute: one more after 20 s.
        assert!(e.wait > Duration::from_secs(19) && e.wait <= Duration::from_secs(20));
        // Someone else is not affected.
        assert!(b.spend(&other).is_ok());
    }

    #[test]
    fn a_small_burst_caps_what_goes_at_once() {
        let b: Budget<u8> = Budget::with_burst(100, Duration::from_secs(1), 5, "requests");
        assert_eq!((0..50).filter(|_| b.spend(&1).is_ok()).count(), 5);
    }
}
