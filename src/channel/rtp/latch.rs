//! Which address a call's RTP is taken from, and sent to (sans I/O).
//!
//! Symmetric RTP answers where the media really comes from, which callers behind NAT
//! need; taking every packet's source as the new peer, though, lets anyone who finds
//! the port take over the call's audio (the "RTP Bleed" attacks). This is the rule
//! Asterisk adopted as `strictrtp`: packets from the address the SDP signalled are
//! taken at once; any other source must first send `PROBATION` packets in sequence
//! before it is believed (the NAT case); once a source is believed, every other
//! source is dropped. The signalled address always wins over a learned one, and a
//! re-INVITE that signals a new address starts learning again.

use std::net::SocketAddr;

/// In-sequence packets an unsignalled source sends before it is believed (Asterisk's
/// `probation` default).
pub const PROBATION: u8 = 4;

#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    /// Nothing believed yet: the unsignalled source seen last, its last sequence
    /// number and how many packets in a row it sent.
    Learning(Option<(SocketAddr, u16, u8)>),
    Locked(SocketAddr),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Latch {
    signalled: SocketAddr,
    state: State,
}

impl Latch {
    pub fn new(signalled: SocketAddr) -> Self {
        Self {
            signalled,
            state: State::Learning(None),
        }
    }

    /// Where to send: the believed source, else the signalled address.
    pub fn target(&self) -> SocketAddr {
        match self.state {
            State::Locked(a) => a,
            State::Learning(_) => self.signalled,
        }
    }

    /// Whether a packet from `from` with sequence number `seq` belongs to the call.
    pub fn accept(&mut self, from: SocketAddr, seq: u16) -> bool {
        if from == self.signalled {
            if self.state != State::Locked(from) {
                tracing::debug!(source = %from, "RTP source: the signalled address");
                self.state = State::Locked(from);
            }
            return true;
        }
        match self.state {
            State::Locked(a) => a == from,
            State::Learning(seen) => {
                let count = match seen {
                    Some((a, last, n)) if a == from && seq == last.wrapping_add(1) => n + 1,
                    _ => 1,
                };
                if count >= PROBATION {
                    tracing::debug!(sdp = %self.signalled, source = %from, "RTP source learned");
                    self.state = State::Locked(from);
                    true
                } else {
                    self.state = State::Learning(Some((from, seq, count)));
                    false
                }
            }
        }
    }

    /// A re-INVITE or UPDATE signalled this address: a new one is learned afresh.
    pub fn resignal(&mut self, signalled: SocketAddr) {
        if signalled != self.signalled {
            *self = Self::new(signalled);
        }
    }

    /// Whether a source is believed.
    pub fn is_locked(&self) -> bool {
        matches!(self.state, State::Locked(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_signalled_address_is_believed_at_once_and_others_are_dropped() {
        let mut l = Latch::new(addr("192.0.2.1:4000"));
        assert_eq!(l.target(), addr("192.0.2.1:4000"));
        assert!(l.accept(addr("192.0.2.1:4000"), 10));
        // An attacker's packets, in sequence or not, never get in.
        for seq in 0..50 {
            assert!(!l.accept(addr("198.51.100.9:5000"), seq));
        }
        assert_eq!(l.target(), addr("192.0.2.1:4000"));
    }

    #[test]
    fn a_caller_behind_nat_is_learned_after_a_few_packets_in_sequence() {
        let mut l = Latch::new(addr("10.0.0.5:4000"));
        let real = addr("203.0.113.7:61000");
        for seq in 100..100 + u16::from(PROBATION) - 1 {
            assert!(!l.accept(real, seq));
        }
        assert!(l.accept(real, 100 + u16::from(PROBATION) - 1));
        assert_eq!(l.target(), real);
        // Learned: another source is dropped now.
        for seq in 0..10 {
            assert!(!l.accept(addr("198.51.100.9:5000"), seq));
        }
        assert!(l.accept(real, 200));
    }

    #[test]
    fn interleaved_sources_are_not_learned_while_they_alternate() {
        let mut l = Latch::new(addr("10.0.0.5:4000"));
        for seq in 0..20u16 {
            assert!(!l.accept(addr("198.51.100.9:5000"), seq));
            assert!(!l.accept(addr("198.51.100.10:5000"), seq));
        }
        assert!(!l.is_locked());
        // Out of sequence does not count either.
        for seq in [5u16, 9, 2, 7, 1] {
            assert!(!l.accept(addr("198.51.100.9:5000"), seq));
        }
        assert!(!l.is_locked());
    }

    #[test]
    fn the_signalled_address_wins_over_a_learned_one() {
        let mut l = Latch::new(addr("192.0.2.1:4000"));
        for seq in 0..u16::from(PROBATION) {
            l.accept(addr("198.51.100.9:5000"), seq);
        }
        assert_eq!(l.target(), addr("198.51.100.9:5000"));
        assert!(l.accept(addr("192.0.2.1:4000"), 1));
        assert_eq!(l.target(), addr("192.0.2.1:4000"));
        assert!(!l.accept(addr("198.51.100.9:5000"), 5));
    }

    #[test]
    fn a_new_signalled_address_is_learned_afresh() {
        let mut l = Latch::new(addr("192.0.2.1:4000"));
        assert!(l.accept(addr("192.0.2.1:4000"), 1));
        l.resignal(addr("192.0.2.1:4000"));
        assert!(l.is_locked());
        l.resignal(addr("192.0.2.2:4002"));
        assert!(!l.is_locked());
        assert_eq!(l.target(), addr("192.0.2.2:4002"));
        assert!(!l.accept(addr("192.0.2.1:4000"), 2));
        assert!(l.accept(addr("192.0.2.2:4002"), 3));
    }

    #[test]
    fn sequence_numbers_wrap() {
        let mut l = Latch::new(addr("10.0.0.5:4000"));
        let real = addr("203.0.113.7:61000");
        let mut accepted = false;
        for seq in [65534u16, 65535, 0, 1] {
            accepted = l.accept(real, seq);
        }
        assert!(accepted);
    }
}
