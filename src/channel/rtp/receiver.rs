//! Incoming stream tracking: SSRC, extended sequence numbers, loss and interarrival
//! jitter after RFC 3550 appendix A.1 and A.8.

use std::time::Instant;

const MAX_DROPOUT: u16 = 3000;
const MAX_MISORDER: u16 = 100;

/// What the receiver made of one packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accepted {
    /// In order or reordered within bounds: carries the extended sequence number.
    Packet(u64),
    /// A copy of a packet already seen, or too old to use.
    Stale,
}

/// Per-stream receive statistics and sequence state.
#[derive(Clone, Debug, Default)]
pub struct RtpReceiver {
    ssrc: Option<u32>,
    /// Highest extended sequence number seen.
    max_seq: u64,
    base_seq: u64,
    received: u64,
    /// Interarrival jitter in timestamp units, scaled by 16 as in RFC 3550.
    jitter_q4: u64,
    last_transit: Option<i64>,
    /// Times the sender changed SSRC.
    pub ssrc_changes: u32,
    /// Times the sequence space started afresh (new SSRC or a large jump); frames
    /// buffered before a restart cannot be ordered against those after it.
    pub restarts: u32,
    pub last_packet_at: Option<Instant>,
    /// Expected and received counts at the last reception report (RFC 3550
    /// A.3: a report's fraction lost is since the one before).
    expected_prior: u64,
    received_prior: u64,
}

/// The stream as an RTCP reception block reports it (RFC 3550 §6.4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reception {
    pub ssrc: u32,
    /// Lost since the last report, in 1/256.
    pub fraction_lost: u8,
    pub total_lost: u32,
    /// The extended highest sequence number received.
    pub highest_seq: u32,
    /// Interarrival jitter in timestamp units.
    pub jitter: u32,
}

impl RtpReceiver {
    /// Records a packet that arrived at `arrival` (in timestamp units of the same
    /// clock, 8 kHz here) and returns whether to use it.
    pub fn receive(
        &mut self,
        ssrc: u32,
        seq: u16,
        timestamp: u32,
        arrival: u64,
        now: Instant,
    ) -> Accepted {
        self.last_packet_at = Some(now);
        if self.ssrc != Some(ssrc) {
            if self.ssrc.is_some() {
                self.ssrc_changes += 1;
                self.restarts += 1;
            }
            // A new source (or a restarted one): start its sequence space afresh.
            self.ssrc = Some(ssrc);
            self.max_seq = u64::from(seq) + (1 << 16);
            self.base_seq = self.max_seq;
            self.received = 1;
            self.last_transit = None;
            self.jitter_q4 = 0;
            self.update_jitter(timestamp, arrival);
            return Accepted::Packet(self.max_seq);
        }
        let max_low = self.max_seq as u16;
        let delta = seq.wrapping_sub(max_low);
        let ext = if delta == 0 {
            return Accepted::Stale;
        } else if delta < MAX_DROPOUT {
            // In order, possibly with a gap; wrap-around moves to the next cycle.
            self.max_seq += u64::from(delta);
            self.max_seq
        } else if delta > u16::MAX - MAX_MISORDER {
            // Reordered: an earlier packet arriving late.
            let back = u64::from(u16::MAX - delta) + 1;
            if back > self.max_seq - self.base_seq {
                return Accepted::Stale;
            }
            self.max_seq - back
        } else {
            // A big jump: the sender restarted its sequence; resynchronise.
            self.restarts += 1;
            self.max_seq = u64::from(seq) + (1 << 16);
            self.base_seq = self.max_seq;
            self.received = 0;
            self.max_seq
        };
        self.received += 1;
        self.update_jitter(timestamp, arrival);
        Accepted::Packet(ext)
    }

    fn update_jitter(&mut self, timestamp: u32, arrival: u64) {
        let transit = arrival as i64 - i64::from(timestamp);
        if let Some(last) = self.last_transit {
            let d = (transit - last).unsigned_abs();
            // J += (|D| - J) / 16, kept in Q4 fixed point.
            self.jitter_q4 = self.jitter_q4 + d - ((self.jitter_q4 + 8) >> 4);
        }
        self.last_transit = Some(transit);
    }

    pub fn ssrc(&self) -> Option<u32> {
        self.ssrc
    }

    pub fn received(&self) -> u64 {
        self.received
    }

    /// Packets expected from the first to the highest sequence number seen.
    pub fn expected(&self) -> u64 {
        if self.ssrc.is_none() {
            0
        } else {
            self.max_seq - self.base_seq + 1
        }
    }

    pub fn lost(&self) -> u64 {
        self.expected().saturating_sub(self.received)
    }

    /// Interarrival jitter in timestamp units.
    pub fn jitter(&self) -> u64 {
        self.jitter_q4 >> 4
    }

    /// The stream's reception block for a report now (None before any packet);
    /// the next one's fraction lost counts from here.
    pub fn reception(&mut self) -> Option<Reception> {
        let ssrc = self.ssrc?;
        let expected = self.expected();
        let expected_interval = expected.saturating_sub(self.expected_prior);
        let received_interval = self.received.saturating_sub(self.received_prior);
        self.expected_prior = expected;
        self.received_prior = self.received;
        let lost_interval = expected_interval.saturating_sub(received_interval);
        let fraction_lost = (lost_interval << 8)
            .checked_div(expected_interval)
            .map_or(0, |f| f.min(255) as u8);
        Some(Reception {
            ssrc,
            fraction_lost,
            total_lost: self.lost().min(0x7f_ffff) as u32,
            // Sequence numbers count from cycle 1 here (see `receive`).
            highest_seq: self.max_seq.saturating_sub(1 << 16) as u32,
            jitter: self.jitter().min(u64::from(u32::MAX)) as u32,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(rx: &mut RtpReceiver, seqs: &[u16]) -> Vec<Accepted> {
        let now = Instant::now();
        seqs.iter()
            .map(|&s| {
                let ts = u32::from(s) * 160;
                rx.receive(7, s, ts, u64::from(ts), now)
            })
            .collect()
    }

    #[test]
    fn counts_loss_and_wraps() {
        let mut rx = RtpReceiver::default();
        let got = feed(&mut rx, &[65533, 65534, 0, 1, 3]);
        assert!(got.iter().all(|a| matches!(a, Accepted::Packet(_))));
        assert_eq!(rx.expected(), 7);
        assert_eq!(rx.received(), 5);
        assert_eq!(rx.lost(), 2);
        assert_eq!(rx.jitter(), 0);
    }

    #[test]
    fn a_reception_block_counts_loss_since_the_last_one() {
        let mut rx = RtpReceiver::default();
        assert_eq!(rx.reception(), None);
        feed(&mut rx, &[65534, 65535, 0, 1]);
        let r = rx.reception().unwrap();
        assert_eq!((r.ssrc, r.fraction_lost, r.total_lost), (7, 0, 0));
        assert_eq!(r.highest_seq, 65536 + 1, "one cycle, sequence 1");
        // Two of the next four lost: half since the last report.
        feed(&mut rx, &[3, 5]);
        let r = rx.reception().unwrap();
        assert_eq!((r.fraction_lost, r.total_lost), (128, 2));
    }

    #[test]
    fn duplicates_and_reordering() {
        let mut rx = RtpReceiver::default();
        let got = feed(&mut rx, &[10, 12, 11, 12, 12]);
        assert_eq!(got[2], Accepted::Packet((1 << 16) + 11));
        assert_eq!(got[4], Accepted::Stale);
        assert_eq!(rx.lost(), 0);
    }

    #[test]
    fn ssrc_change_restarts_sequence_space() {
        let mut rx = RtpReceiver::default();
        feed(&mut rx, &[100, 101]);
        let now = Instant::now();
        assert!(matches!(
            rx.receive(9, 5000, 0, 0, now),
            Accepted::Packet(_)
        ));
        assert_eq!(rx.ssrc_changes, 1);
        assert_eq!(rx.expected(), 1);
    }

    #[test]
    fn jitter_follows_arrival_variation() {
        let mut rx = RtpReceiver::default();
        let now = Instant::now();
        for i in 0..200u32 {
            // Every other packet arrives 2 ms (16 samples) late.
            let arrival = u64::from(i * 160 + if i % 2 == 1 { 16 } else { 0 });
            rx.receive(1, i as u16, i * 160, arrival, now);
        }
        assert!((14..=16).contains(&rx.jitter()), "jitter {}", rx.jitter());
    }
}
