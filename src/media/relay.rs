//! One direction of a bridged call (B2BUA media): RTP packets from one leg,
//! rewritten for the other. Sans I/O: bytes in, bytes out.
//!
//! The outgoing stream keeps kefu's own SSRC, sequence and timestamp line for that
//! leg (the leg heard prompts from kefu before the bridge), so each incoming source
//! is re-based onto it: gaps and reordering in the sequence pass through, a new
//! incoming source (SSRC change) continues the line with a marker. Audio is
//! transcoded when the legs use different G.711 laws; RFC 4733 events keep their
//! payload and get the other leg's payload type, or are dropped when that leg did
//! not negotiate telephone-event (the caller's key reaches nobody then; counted).

use super::FRAME_SAMPLES;
use super::g711::Law;

/// What one leg negotiated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LegMedia {
    pub law: Law,
    pub payload_type: u8,
    pub telephone_event: Option<u8>,
}

/// What became of a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Relayed {
    /// Audio: this many bytes of `out` are the packet to send.
    Audio(usize),
    /// A telephone event: this many bytes of `out`.
    Event(usize),
    /// Not for the other leg (not RTP, unknown payload type, an event the other
    /// leg cannot take).
    Dropped,
}

/// Where the outgoing line continues from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Line {
    pub ssrc: u32,
    /// The next sequence number to send.
    pub seq: u16,
    /// The timestamp the next packet should carry.
    pub timestamp: u32,
}

#[derive(Clone, Copy, Debug)]
struct Base {
    source: u32,
    seq_offset: u16,
    ts_offset: u32,
}

/// Largest payload relayed (60 ms of G.711 is 480 bytes; anything up to a full
/// Ethernet MTU fits).
pub const MAX_PAYLOAD: usize = 1400;

#[derive(Debug)]
pub struct Relay {
    from: LegMedia,
    to: LegMedia,
    line: Line,
    base: Option<Base>,
    /// Packets sent on, and dropped.
    pub relayed: u64,
    pub dropped: u64,
}

impl Relay {
    pub fn new(from: LegMedia, to: LegMedia, line: Line) -> Self {
        Self {
            from,
            to,
            line,
            base: None,
            relayed: 0,
            dropped: 0,
        }
    }

    /// Either leg renegotiated (re-INVITE).
    pub fn renegotiated(&mut self, from: LegMedia, to: LegMedia) {
        self.from = from;
        self.to = to;
    }

    /// Where the outgoing line stands (to continue it after the bridge).
    pub fn line(&self) -> Line {
        self.line
    }

    /// Rewrites `packet` for the other leg into `out` (at least 12 +
    /// [`MAX_PAYLOAD`] bytes). Decoded audio, when `pcm` is given, is written there
    /// (for recording): its sample count is returned with the audio.
    pub fn relay(&mut self, packet: &[u8], out: &mut [u8], pcm: Option<&mut Vec<i16>>) -> Relayed {
        let r = self.rewrite(packet, out, pcm);
        match r {
            Relayed::Dropped => self.dropped += 1,
            _ => self.relayed += 1,
        }
        r
    }

    fn rewrite(&mut self, packet: &[u8], out: &mut [u8], pcm: Option<&mut Vec<i16>>) -> Relayed {
        let Ok(rtp) = rtp_rs::RtpReader::new(packet) else {
            return Relayed::Dropped;
        };
        let pt = rtp.payload_type();
        let payload = rtp.payload();
        if payload.len() > MAX_PAYLOAD || out.len() < 12 + MAX_PAYLOAD {
            return Relayed::Dropped;
        }
        let event = Some(pt) == self.from.telephone_event;
        let out_pt = if event {
            match self.to.telephone_event {
                Some(te) => te,
                None => return Relayed::Dropped,
            }
        } else if pt == self.from.payload_type {
            self.to.payload_type
        } else {
            return Relayed::Dropped;
        };
        let (seq, ts) = (u16::from(rtp.sequence_number()), rtp.timestamp());
        let mut marker = rtp.mark();
        let base = match self.base {
            Some(b) if b.source == rtp.ssrc() => b,
            _ => {
                // A new source: continue our line from where it stands.
                marker = true;
                let b = Base {
                    source: rtp.ssrc(),
                    seq_offset: self.line.seq.wrapping_sub(seq),
                    ts_offset: self.line.timestamp.wrapping_sub(ts),
                };
                self.base = Some(b);
                b
            }
        };
        let out_seq = seq.wrapping_add(base.seq_offset);
        let out_ts = ts.wrapping_add(base.ts_offset);
        let samples = if event { 0 } else { payload.len() };
        // The line moves on from the newest packet (late ones do not pull it back).
        if (out_seq.wrapping_sub(self.line.seq) as i16) >= 0 {
            self.line.seq = out_seq.wrapping_add(1);
            self.line.timestamp = out_ts.wrapping_add(samples.max(FRAME_SAMPLES) as u32);
        }
        let mut body = [0u8; MAX_PAYLOAD];
        let body = &mut body[..payload.len()];
        if event {
            body.copy_from_slice(payload);
        } else {
            let mut decoded = [0i16; MAX_PAYLOAD];
            let decoded = &mut decoded[..payload.len()];
            let needs_pcm = pcm.is_some() || self.from.law != self.to.law;
            if needs_pcm {
                self.from.law.decode(payload, decoded);
            }
            if self.from.law == self.to.law {
                body.copy_from_slice(payload);
            } else {
                self.to.law.encode(decoded, body);
            }
            if let Some(pcm) = pcm {
                pcm.clear();
                pcm.extend_from_slice(decoded);
            }
        }
        match rtp_rs::RtpPacketBuilder::new()
            .payload_type(out_pt)
            .ssrc(self.line.ssrc)
            .sequence(rtp_rs::Seq::from(out_seq))
            .timestamp(out_ts)
            .marked(marker)
            .payload(body)
            .build_into(out)
        {
            Ok(n) if event => Relayed::Event(n),
            Ok(n) => Relayed::Audio(n),
            Err(_) => Relayed::Dropped,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtp_rs::{RtpPacketBuilder, RtpReader, Seq};

    const PCMU: LegMedia = LegMedia {
        law: Law::Pcmu,
        payload_type: 0,
        telephone_event: Some(101),
    };
    const PCMA: LegMedia = LegMedia {
        law: Law::Pcma,
        payload_type: 8,
        telephone_event: Some(96),
    };

    fn packet(pt: u8, ssrc: u32, seq: u16, ts: u32, payload: &[u8]) -> Vec<u8> {
        RtpPacketBuilder::new()
            .payload_type(pt)
            .ssrc(ssrc)
            .sequence(Seq::from(seq))
            .timestamp(ts)
            .payload(payload)
            .build()
            .unwrap()
    }

    fn line() -> Line {
        Line {
            ssrc: 0xabcd,
            seq: 500,
            timestamp: 80_000,
        }
    }

    #[test]
    fn same_law_passes_the_payload_on_our_line() {
        let mut r = Relay::new(PCMU, PCMU, line());
        let mut out = [0u8; 12 + MAX_PAYLOAD];
        let payload: Vec<u8> = (0..160).map(|i| i as u8).collect();
        let n = match r.relay(&packet(0, 7, 65535, 1000, &payload), &mut out, None) {
            Relayed::Audio(n) => n,
            other => panic!("{other:?}"),
        };
        let p = RtpReader::new(&out[..n]).unwrap();
        assert_eq!(p.payload(), payload.as_slice());
        assert_eq!(
            (p.ssrc(), u16::from(p.sequence_number()), p.timestamp()),
            (0xabcd, 500, 80_000)
        );
        assert!(p.mark(), "a new source starts a talkspurt");
        // The next packet (sequence wraps) follows on; a gap stays a gap.
        let n = match r.relay(&packet(0, 7, 1, 1320, &payload), &mut out, None) {
            Relayed::Audio(n) => n,
            other => panic!("{other:?}"),
        };
        let p = RtpReader::new(&out[..n]).unwrap();
        assert_eq!(
            (u16::from(p.sequence_number()), p.timestamp()),
            (502, 80_320)
        );
        assert!(!p.mark());
        assert_eq!(r.line().seq, 503);
    }

    #[test]
    fn transcodes_between_laws_and_hands_out_the_audio() {
        let mut r = Relay::new(PCMU, PCMA, line());
        let pcm_in: Vec<i16> = (0..160).map(|i| ((i * 97) % 4000 - 2000) as i16).collect();
        let mut ulaw = vec![0u8; 160];
        Law::Pcmu.encode(&pcm_in, &mut ulaw);
        let mut out = [0u8; 12 + MAX_PAYLOAD];
        let mut heard = Vec::new();
        let Relayed::Audio(n) = r.relay(&packet(0, 7, 10, 0, &ulaw), &mut out, Some(&mut heard))
        else {
            panic!()
        };
        let p = RtpReader::new(&out[..n]).unwrap();
        assert_eq!(p.payload_type(), 8);
        let mut expected_pcm = vec![0i16; 160];
        Law::Pcmu.decode(&ulaw, &mut expected_pcm);
        assert_eq!(heard, expected_pcm);
        let mut alaw = vec![0u8; 160];
        Law::Pcma.encode(&expected_pcm, &mut alaw);
        assert_eq!(p.payload(), alaw.as_slice());
    }

    #[test]
    fn events_change_payload_type_or_are_dropped() {
        let mut r = Relay::new(PCMU, PCMA, line());
        let mut out = [0u8; 12 + MAX_PAYLOAD];
        let event = [1u8, 0x0a, 0, 160];
        let Relayed::Event(n) = r.relay(&packet(101, 7, 10, 0, &event), &mut out, None) else {
            panic!()
        };
        let p = RtpReader::new(&out[..n]).unwrap();
        assert_eq!((p.payload_type(), p.payload()), (96, &event[..]));
        let no_events = LegMedia {
            telephone_event: None,
            ..PCMA
        };
        let mut r = Relay::new(PCMU, no_events, line());
        assert_eq!(
            r.relay(&packet(101, 7, 10, 0, &event), &mut out, None),
            Relayed::Dropped
        );
        assert_eq!(
            r.relay(&packet(18, 7, 11, 0, &[0; 20]), &mut out, None),
            Relayed::Dropped
        );
        assert_eq!(r.relay(b"not rtp", &mut out, None), Relayed::Dropped);
        assert_eq!((r.relayed, r.dropped), (0, 3));
    }

    #[test]
    fn a_new_source_continues_the_line() {
        let mut r = Relay::new(PCMU, PCMU, line());
        let mut out = [0u8; 12 + MAX_PAYLOAD];
        r.relay(&packet(0, 7, 100, 5000, &[0xff; 160]), &mut out, None);
        let Relayed::Audio(n) = r.relay(&packet(0, 8, 9000, 123, &[0xff; 160]), &mut out, None)
        else {
            panic!()
        };
        let p = RtpReader::new(&out[..n]).unwrap();
        assert_eq!(
            (u16::from(p.sequence_number()), p.timestamp()),
            (501, 80_160)
        );
        assert!(p.mark());
    }
}
