//! The 20 ms frame clock of an outgoing stream.
//!
//! Deadlines are computed from the stream's start (`start + n·20 ms`), never from the
//! previous send, so timing error never accumulates. A late wake-up sends one frame
//! for the latest slot and skips the missed ones instead of bursting, and the RTP
//! timestamp follows the slot number so receivers see the true media clock.

use std::time::{Duration, Instant};

use super::FRAME_MILLIS;

const FRAME: Duration = Duration::from_millis(FRAME_MILLIS);

#[derive(Clone, Debug)]
pub struct Pacer {
    start: Instant,
    /// Slot number of the next frame to send.
    next_slot: u64,
}

impl Pacer {
    pub fn new(start: Instant) -> Self {
        Self {
            start,
            next_slot: 0,
        }
    }

    /// When slot 0 was due.
    pub fn start(&self) -> Instant {
        self.start
    }

    /// When the next frame is due.
    /// The slot the next frame will fill (where a stream handed on continues).
    pub fn next_slot(&self) -> u64 {
        self.next_slot
    }

    pub fn deadline(&self) -> Instant {
        self.start + FRAME * self.next_slot as u32
    }

    /// Called at or after `deadline()`: returns the slot to send now (skipping the ones
    /// that were missed), or `None` if woken early.
    pub fn tick(&mut self, now: Instant) -> Option<u64> {
        if now < self.deadline() {
            return None;
        }
        let elapsed_slots = (now - self.start).as_millis() as u64 / FRAME_MILLIS;
        let slot = elapsed_slots.max(self.next_slot);
        self.next_slot = slot + 1;
        Some(slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_never_drift() {
        let t0 = Instant::now();
        let mut p = Pacer::new(t0);
        for i in 0..1000u64 {
            let due = p.deadline();
            assert_eq!(due, t0 + Duration::from_millis(20 * i));
            // Wake up a little late each time: the schedule stays on the grid.
            assert_eq!(p.tick(due + Duration::from_micros(700)), Some(i));
        }
    }

    #[test]
    fn early_wake_up_sends_nothing() {
        let t0 = Instant::now();
        let mut p = Pacer::new(t0);
        assert_eq!(p.tick(t0), Some(0));
        assert_eq!(p.tick(t0 + Duration::from_millis(19)), None);
        assert_eq!(p.tick(t0 + Duration::from_millis(20)), Some(1));
    }

    #[test]
    fn a_stall_skips_slots_instead_of_bursting() {
        let t0 = Instant::now();
        let mut p = Pacer::new(t0);
        assert_eq!(p.tick(t0), Some(0));
        // The task was stalled for 105 ms: one frame for slot 5, then back on the grid.
        assert_eq!(p.tick(t0 + Duration::from_millis(105)), Some(5));
        assert_eq!(p.tick(t0 + Duration::from_millis(106)), None);
        assert_eq!(p.deadline(), t0 + Duration::from_millis(120));
    }
}
