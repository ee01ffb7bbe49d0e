//! RFC 4733 telephone-event receiver.
//!
//! An event keeps one RTP timestamp from its first packet to its three redundant end
//! packets, so a key press is reported once, on the first packet seen with a new
//! timestamp. Reporting at the start rather than the end lets a key press cut a prompt
//! short as soon as it begins.

use super::digit_for_event;

/// One decoded telephone-event payload (RFC 4733 §2.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TelephoneEvent {
    pub event: u8,
    pub end: bool,
    pub volume: u8,
    pub duration: u16,
}

impl TelephoneEvent {
    pub fn parse(payload: &[u8]) -> Option<Self> {
        let &[event, flags, d0, d1, ..] = payload else {
            return None;
        };
        Some(Self {
            event,
            end: flags & 0x80 != 0,
            volume: flags & 0x3F,
            duration: u16::from_be_bytes([d0, d1]),
        })
    }

    pub fn write(&self, out: &mut [u8; 4]) {
        let d = self.duration.to_be_bytes();
        *out = [
            self.event,
            (u8::from(self.end) << 7) | (self.volume & 0x3F),
            d[0],
            d[1],
        ];
    }
}

/// Turns a stream of telephone-event packets into key presses, once each.
#[derive(Debug, Default)]
pub struct EventReceiver {
    last: Option<(u32, u8)>,
}

impl EventReceiver {
    /// Feeds one packet (its RTP timestamp and payload); returns a digit when the
    /// packet starts a new key press.
    pub fn receive(&mut self, timestamp: u32, payload: &[u8]) -> Option<char> {
        let ev = TelephoneEvent::parse(payload)?;
        let digit = digit_for_event(ev.event)?;
        if self.last == Some((timestamp, ev.event)) {
            return None;
        }
        self.last = Some((timestamp, ev.event));
        Some(digit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt(event: u8, end: bool, duration: u16) -> [u8; 4] {
        let mut b = [0; 4];
        TelephoneEvent {
            event,
            end,
            volume: 10,
            duration,
        }
        .write(&mut b);
        b
    }

    #[test]
    fn one_press_with_three_end_packets_counts_once() {
        let mut rx = EventReceiver::default();
        let mut got = Vec::new();
        for d in [160, 320, 480] {
            got.extend(rx.receive(1000, &pkt(1, false, d)));
        }
        for _ in 0..3 {
            got.extend(rx.receive(1000, &pkt(1, true, 640)));
        }
        assert_eq!(got, vec!['1']);
    }

    #[test]
    fn lost_start_still_counts_from_end_packets() {
        let mut rx = EventReceiver::default();
        assert_eq!(rx.receive(5000, &pkt(11, true, 800)), Some('#'));
        assert_eq!(rx.receive(5000, &pkt(11, true, 800)), None);
    }

    #[test]
    fn same_digit_twice_is_two_presses() {
        let mut rx = EventReceiver::default();
        assert_eq!(rx.receive(1000, &pkt(5, true, 800)), Some('5'));
        assert_eq!(rx.receive(3000, &pkt(5, false, 160)), Some('5'));
    }

    #[test]
    fn garbage_is_ignored() {
        let mut rx = EventReceiver::default();
        assert_eq!(rx.receive(1, &[1, 2]), None);
        assert_eq!(rx.receive(1, &pkt(200, false, 1)), None);
    }
}
