//! Builds the outgoing RTP packets of one stream.

use rtp_rs::{RtpPacketBuilder, Seq};

use crate::media::FRAME_SAMPLES;

#[derive(Debug, thiserror::Error)]
#[error("cannot build RTP packet: {0:?}")]
pub struct BuildError(rtp_rs::RtpPacketBuildError);

/// Sequence, timestamp and marker state of an outgoing stream (RFC 3550 §5.1).
#[derive(Clone, Debug)]
pub struct RtpSender {
    ssrc: u32,
    seq: u16,
    timestamp_base: u32,
    marker_pending: bool,
    /// Packets and payload octets sent, for statistics.
    pub packets: u64,
    pub octets: u64,
}

impl RtpSender {
    pub fn new(ssrc: u32, first_seq: u16, timestamp_base: u32) -> Self {
        Self {
            ssrc,
            seq: first_seq,
            timestamp_base,
            marker_pending: true,
            packets: 0,
            octets: 0,
        }
    }

    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// The sequence number the next packet will carry.
    pub fn next_seq(&self) -> u16 {
        self.seq
    }

    /// The next packet starts a talkspurt (set after a pause such as hold).
    pub fn mark_talkspurt(&mut self) {
        self.marker_pending = true;
    }

    /// Continues the stream from a line another sender carried on (a bridge):
    /// the next packet has `seq`, slot 0 has `timestamp`, and a new talkspurt
    /// begins.
    pub fn continue_at(&mut self, seq: u16, timestamp: u32) {
        self.seq = seq;
        self.timestamp_base = timestamp;
        self.marker_pending = true;
    }

    /// RTP timestamp of a 20 ms slot of the stream clock.
    pub fn timestamp_for_slot(&self, slot: u64) -> u32 {
        self.timestamp_base
            .wrapping_add((slot.wrapping_mul(FRAME_SAMPLES as u64)) as u32)
    }

    /// Writes the packet for `slot` into `buf`, returning its length.
    pub fn build(
        &mut self,
        payload_type: u8,
        slot: u64,
        payload: &[u8],
        buf: &mut [u8],
    ) -> Result<usize, BuildError> {
        let len = RtpPacketBuilder::new()
            .payload_type(payload_type)
            .ssrc(self.ssrc)
            .sequence(Seq::from(self.seq))
            .timestamp(self.timestamp_for_slot(slot))
            .marked(self.marker_pending)
            .payload(payload)
            .build_into(buf)
            .map_err(BuildError)?;
        self.marker_pending = false;
        self.seq = self.seq.wrapping_add(1);
        self.packets += 1;
        self.octets += payload.len() as u64;
        Ok(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtp_rs::RtpReader;

    #[test]
    fn sequence_timestamp_and_marker() {
        let mut s = RtpSender::new(0xdead_beef, 65534, 4_294_967_000);
        let mut buf = [0u8; 200];
        let payload = [0xFFu8; 160];
        let mut seen = Vec::new();
        for slot in 0..4 {
            let n = s.build(0, slot, &payload, &mut buf).unwrap();
            let r = RtpReader::new(&buf[..n]).unwrap();
            seen.push((u16::from(r.sequence_number()), r.timestamp(), r.mark()));
            assert_eq!(r.ssrc(), 0xdead_beef);
            assert_eq!(r.payload().len(), 160);
        }
        assert_eq!(
            seen,
            vec![
                (65534, 4_294_967_000, true),
                (65535, 4_294_967_160, false),
                (0, 24, false), // both wrap
                (1, 184, false),
            ]
        );
    }
}
