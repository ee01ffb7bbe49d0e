//! Sign-in throttling: a sans-I/O state machine keyed by user name and by client
//! address. Each key has a few free failures in a window; after that, every further
//! failure locks the key for twice as long as the last (1 s, 2 s, 4 s, ... up to
//! 15 min), and a locked key is refused before its password is even checked. A
//! success clears the key. Memory is bounded: quiet keys are forgotten first.
//!
//! Attempts are begun ([`Throttle::attempt`]) and finished ([`Throttle::finish`]):
//! those in flight count against a key's free failures, and past them only one
//! attempt per key may be in flight, so a hundred concurrent guesses cannot all
//! pass the check before the first failure is recorded. Keys
//! that have succeeded before are remembered ([`Throttle::knows`]), so a caller can
//! spare a user's usual address the lock a stranger brought on the user's name.
//!
//! Written here because rate-limiting crates count requests, not failures, and
//! cannot clear a key on success.

use std::collections::HashMap;
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct Policy {
    /// Failures allowed in `window` before locking starts.
    pub free: u32,
    pub window: Duration,
    /// The first lock; each later one doubles.
    pub base: Duration,
    pub max: Duration,
    /// Keys remembered at most.
    pub max_keys: usize,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            free: 5,
            window: Duration::from_secs(15 * 60),
            base: Duration::from_secs(1),
            max: Duration::from_secs(15 * 60),
            max_keys: 100_000,
        }
    }
}

#[derive(Clone, Debug)]
struct Entry {
    failures: u32,
    first: Instant,
    last: Instant,
    locked_until: Option<Instant>,
    /// Attempts begun and not yet finished.
    in_flight: u32,
}

impl Entry {
    fn new(now: Instant) -> Self {
        Self {
            failures: 0,
            first: now,
            last: now,
            locked_until: None,
            in_flight: 0,
        }
    }
}

#[derive(Debug, Default)]
pub struct Throttle {
    policy: Policy,
    keys: HashMap<String, Entry>,
    /// Keys that succeeded, and when last.
    known: HashMap<String, Instant>,
}

impl Throttle {
    pub fn new(policy: Policy) -> Self {
        Self {
            policy,
            keys: HashMap::new(),
            known: HashMap::new(),
        }
    }

    /// Begins an attempt under all `keys` at once: refused with the longest wait if
    /// any is locked, or if one already has an attempt in flight and the two
    /// together would pass its free failures. [`Self::finish`] ends it.
    pub fn attempt(&mut self, keys: &[String], now: Instant) -> Result<(), Duration> {
        if let Some(wait) = keys.iter().filter_map(|k| self.check(k, now).err()).max() {
            return Err(wait);
        }
        let free = self.policy.free;
        let crowded = keys.iter().any(|k| {
            self.keys
                .get(k)
                .is_some_and(|e| e.in_flight > 0 && e.failures + e.in_flight >= free)
        });
        if crowded {
            return Err(self.policy.base);
        }
        for k in keys {
            if !self.keys.contains_key(k) && self.keys.len() >= self.policy.max_keys {
                self.forget(now);
            }
            self.keys
                .entry(k.clone())
                .or_insert(Entry::new(now))
                .in_flight += 1;
        }
        Ok(())
    }

    /// Ends an attempt that could not be decided (the store failed): neither a
    /// failure nor a success.
    pub fn abandon(&mut self, keys: &[String]) {
        for k in keys {
            if let Some(e) = self.keys.get_mut(k) {
                e.in_flight = e.in_flight.saturating_sub(1);
            }
        }
    }

    /// Ends an attempt begun by [`Self::attempt`]: a failure under every key, or,
    /// when `proven` is given, a success: that key starts afresh and is
    /// remembered as known (the others keep their counts).
    pub fn finish(&mut self, keys: &[String], proven: Option<&str>, now: Instant) {
        self.abandon(keys);
        let Some(proven) = proven else {
            for k in keys {
                self.fail(k, now);
            }
            return;
        };
        self.succeed(proven);
        if self.known.len() >= self.policy.max_keys {
            let window = self.policy.window * 96;
            self.known.retain(|_, at| now.duration_since(*at) < window);
            if self.known.len() >= self.policy.max_keys {
                self.known.clear();
            }
        }
        self.known.insert(proven.to_string(), now);
    }

    /// Whether `key` has succeeded before (and not been forgotten).
    pub fn knows(&self, key: &str) -> bool {
        self.known.contains_key(key)
    }

    /// Ok if `key` may try now; else how long until it may.
    pub fn check(&self, key: &str, now: Instant) -> Result<(), Duration> {
        match self.keys.get(key).and_then(|e| e.locked_until) {
            Some(until) if until > now => Err(until - now),
            _ => Ok(()),
        }
    }

    /// A failed attempt by `key`.
    pub fn fail(&mut self, key: &str, now: Instant) {
        if !self.keys.contains_key(key) && self.keys.len() >= self.policy.max_keys {
            self.forget(now);
        }
        let p = &self.policy;
        let e = self.keys.entry(key.to_string()).or_insert(Entry::new(now));
        if now.duration_since(e.first) > p.window && e.locked_until.is_none_or(|u| u <= now) {
            e.failures = 0;
            e.first = now;
        }
        e.failures += 1;
        e.last = now;
        if e.failures > p.free {
            let doublings = (e.failures - p.free - 1).min(20);
            let lock = p.base.saturating_mul(1 << doublings).min(p.max);
            e.locked_until = Some(now + lock);
        }
    }

    /// A successful attempt: `key` starts afresh.
    pub fn succeed(&mut self, key: &str) {
        self.keys.remove(key);
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Makes room: drops keys quiet for a whole window (and not locked), then, if
    /// still full, the least recently failed tenth.
    fn forget(&mut self, now: Instant) {
        let window = self.policy.window;
        self.keys.retain(|_, e| {
            now.duration_since(e.last) < window || e.locked_until.is_some_and(|u| u > now)
        });
        if self.keys.len() >= self.policy.max_keys {
            let mut lasts: Vec<Instant> = self.keys.values().map(|e| e.last).collect();
            let cut = (lasts.len() / 10).max(1);
            let (_, nth, _) = lasts.select_nth_unstable(cut - 1);
            let cutoff = *nth;
            self.keys.retain(|_, e| e.last > cutoff);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn free_failures_then_doubling_locks() {
        let mut t = Throttle::default();
        let t0 = Instant::now();
        for i in 0..5 {
            t.check("u:li", t0 + secs(i)).unwrap();
            t.fail("u:li", t0 + secs(i));
        }
        // Five failures are free.
        assert!(t.check("u:li", t0 + secs(5)).is_ok());
        t.fail("u:li", t0 + secs(5));
        assert_eq!(t.check("u:li", t0 + secs(5)), Err(secs(1)));
        assert!(t.check("u:li", t0 + secs(6)).is_ok());
        t.fail("u:li", t0 + secs(6));
        assert_eq!(t.check("u:li", t0 + secs(6)), Err(secs(2)));
        t.fail("u:li", t0 + secs(8));
        assert_eq!(t.check("u:li", t0 + secs(8)), Err(secs(4)));
        // Other keys are untouched.
        assert!(t.check("u:wang", t0 + secs(8)).is_ok());
    }

    #[test]
    fn locks_stop_at_the_maximum() {
        let mut t = Throttle::default();
        let t0 = Instant::now();
        for i in 0..40 {
            t.fail("ip:10.0.0.1", t0 + secs(i));
        }
        let wait = t.check("ip:10.0.0.1", t0 + secs(39)).unwrap_err();
        assert_eq!(wait, secs(15 * 60));
    }

    #[test]
    fn success_clears_and_old_failures_expire() {
        let mut t = Throttle::default();
        let t0 = Instant::now();
        for i in 0..6 {
            t.fail("k", t0 + secs(i));
        }
        assert!(t.check("k", t0 + secs(5)).is_err());
        t.succeed("k");
        assert!(t.check("k", t0 + secs(5)).is_ok());
        // Four failures, then a quiet window: the count starts again.
        for i in 0..4 {
            t.fail("j", t0 + secs(i));
        }
        for i in 0..5 {
            t.fail("j", t0 + secs(1000 + i));
        }
        assert!(t.check("j", t0 + secs(1005)).is_ok());
    }

    #[test]
    fn concurrent_attempts_are_counted_before_they_are_checked() {
        let mut t = Throttle::default();
        let t0 = Instant::now();
        let keys = ["user:li".to_string(), "ip:10.0.0.1".to_string()];
        // A hundred attempts begun before any ends: the five free ones.
        let begun = (0..100).filter(|_| t.attempt(&keys, t0).is_ok()).count();
        assert_eq!(begun, 5);
        for _ in 0..5 {
            t.finish(&keys, None, t0);
        }
        // Then one at a time: the sixth fails and locks.
        assert!(t.attempt(&keys, t0).is_ok());
        assert!(t.attempt(&keys, t0).is_err());
        t.finish(&keys, None, t0);
        assert_eq!(t.check("user:li", t0), Err(secs(1)));
    }

    #[test]
    fn a_success_takes_its_count_back_and_is_remembered() {
        let mut t = Throttle::default();
        let t0 = Instant::now();
        let keys = ["user:li@10.0.0.1".to_string(), "ip:10.0.0.1".to_string()];
        for _ in 0..4 {
            t.attempt(&keys, t0).unwrap();
            t.finish(&keys, None, t0);
        }
        t.attempt(&keys, t0).unwrap();
        t.finish(&keys, Some(&keys[0]), t0);
        assert!(t.knows("user:li@10.0.0.1") && !t.knows("user:li@10.0.0.2"));
        assert!(!t.keys.contains_key("user:li@10.0.0.1"));
        // The address keeps its four failures, no more.
        assert_eq!(t.keys["ip:10.0.0.1"].failures, 4);
        assert_eq!(t.keys["ip:10.0.0.1"].in_flight, 0);
    }

    #[test]
    fn memory_is_bounded() {
        let mut t = Throttle::new(Policy {
            max_keys: 100,
            ..Policy::default()
        });
        let t0 = Instant::now();
        for i in 0..1000u64 {
            t.fail(&format!("ip:{i}"), t0 + Duration::from_millis(i));
        }
        assert!(t.len() <= 100, "{} keys", t.len());
        // The newest failures are remembered.
        t.fail("ip:999", t0 + secs(2));
        assert!(t.keys.contains_key("ip:999"));
    }
}
