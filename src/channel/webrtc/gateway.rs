//! The media gateway between a browser and its call, sans I/O: the browser's RTP
//! (Opus at 48 kHz, or G.711; RFC 4733 events at the clock rate they were
//! negotiated at) becomes the G.711 RTP a SIP caller would send, and the call's
//! G.711 RTP becomes what the browser negotiated. The call task then cannot tell a
//! browser from a phone: one IVR, one session.
//!
//! Opus is libopus (the `opus` crate); the encoder and decoder run at 8 kHz, the
//! call's rate (Opus resamples inside; its RTP clock stays 48 kHz, RFC 7587).

use bytes::Bytes;
use webrtc::rtp::header::Header;
use webrtc::rtp::packet::Packet;

use crate::media::g711::Law;

/// RTP clock of Opus (RFC 7587 §4.1), whatever the audio's bandwidth.
const OPUS_CLOCK: u32 = 48_000;
/// The call's rate: G.711 and kefu's media.
const CALL_CLOCK: u32 = 8_000;
/// The payload type kefu's call expects RFC 4733 events on (it offers 101).
pub const CALL_EVENT_PT: u8 = 101;
/// Longest audio in one browser packet kefu accepts (Opus allows 120 ms).
const MAX_FRAME: usize = (CALL_CLOCK as usize) * 120 / 1000;

/// What the browser's audio is, as negotiated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BrowserCodec {
    Opus { payload_type: u8 },
    G711 { law: Law, payload_type: u8 },
}

impl BrowserCodec {
    fn clock(self) -> u32 {
        match self {
            BrowserCodec::Opus { .. } => OPUS_CLOCK,
            BrowserCodec::G711 { .. } => CALL_CLOCK,
        }
    }

    fn payload_type(self) -> u8 {
        match self {
            BrowserCodec::Opus { payload_type } | BrowserCodec::G711 { payload_type, .. } => {
                payload_type
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("opus: {0}")]
    Opus(#[from] opus::Error),
}

/// What the browser may send, from its offer: audio payload types with their
/// codecs, and telephone-event payload types with their clock rates.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Offered {
    pub audio: Vec<BrowserCodec>,
    pub events: Vec<(u8, u32)>,
}

impl Offered {
    /// What kefu sends the browser: Opus when offered, else G.711 (µ-law first).
    pub fn preferred(&self) -> Option<BrowserCodec> {
        let opus = self
            .audio
            .iter()
            .find(|c| matches!(c, BrowserCodec::Opus { .. }));
        let law = |l: Law| {
            self.audio
                .iter()
                .find(move |c| matches!(c, BrowserCodec::G711 { law, .. } if *law == l))
        };
        opus.or_else(|| law(Law::Pcmu))
            .or_else(|| law(Law::Pcma))
            .copied()
    }
}

/// Browser → call: every packet becomes µ-law at 8 kHz (or an RFC 4733 event).
pub struct ToCall {
    offered: Offered,
    decoder: Option<opus::Decoder>,
    pcm: Vec<i16>,
    rescale: Rescale,
    /// Packets dropped: unknown payload type, or audio that would not decode.
    pub dropped: u64,
}

impl ToCall {
    /// The law the call speaks.
    pub const LAW: Law = Law::Pcmu;

    pub fn new(offered: Offered) -> Self {
        Self {
            offered,
            decoder: None,
            pcm: vec![0; MAX_FRAME],
            rescale: Rescale::default(),
            dropped: 0,
        }
    }

    /// The call's RTP for one packet from the browser (None: dropped). The call
    /// sees the browser's sequence numbers and SSRC, its timestamps on 8 kHz.
    pub fn translate(&mut self, p: &Packet) -> Option<Packet> {
        let pt = p.header.payload_type;
        if let Some(&codec) = self.offered.audio.iter().find(|c| c.payload_type() == pt) {
            let payload = match self.audio(codec, &p.payload) {
                Ok(payload) => payload,
                Err(e) => {
                    tracing::debug!(error = %e, "undecodable audio from the browser dropped");
                    self.dropped += 1;
                    return None;
                }
            };
            let header = self.header(p, Self::LAW.payload_type(), codec.clock());
            return Some(Packet { header, payload });
        }
        if let Some(&(_, clock)) = self.offered.events.iter().find(|(e, _)| *e == pt)
            && let Some(payload) = rescale_event(&p.payload, clock)
        {
            let header = self.header(p, CALL_EVENT_PT, clock);
            return Some(Packet { header, payload });
        }
        // Comfort noise, RED, a codec never offered, a short event: nothing the
        // call hears.
        self.dropped += 1;
        None
    }

    /// A browser packet's header as the call would have it.
    fn header(&mut self, p: &Packet, payload_type: u8, clock: u32) -> Header {
        Header {
            version: 2,
            marker: p.header.marker,
            payload_type,
            sequence_number: p.header.sequence_number,
            timestamp: self.rescale.at(p.header.timestamp, clock),
            ssrc: p.header.ssrc,
            ..Header::default()
        }
    }

    /// The call's µ-law for one packet's audio.
    fn audio(&mut self, codec: BrowserCodec, payload: &Bytes) -> Result<Bytes, GatewayError> {
        let n = match codec {
            BrowserCodec::G711 { law, .. } if law == Self::LAW => return Ok(payload.clone()),
            BrowserCodec::G711 { law, .. } => {
                let n = payload.len().min(MAX_FRAME);
                law.decode(&payload[..n], &mut self.pcm[..n]);
                n
            }
            BrowserCodec::Opus { .. } => {
                let decoder = match &mut self.decoder {
                    Some(d) => d,
                    None => self
                        .decoder
                        .insert(opus::Decoder::new(CALL_CLOCK, opus::Channels::Mono)?),
                };
                decoder.decode(payload, &mut self.pcm, false)?
            }
        };
        let mut out = vec![0u8; n];
        Self::LAW.encode(&self.pcm[..n], &mut out);
        Ok(Bytes::from(out))
    }
}

/// Browser timestamps on 8 kHz: counted from the first one seen, so that the
/// division stays continuous where the 48 kHz clock wraps.
#[derive(Default)]
struct Rescale {
    first: Option<u32>,
}

impl Rescale {
    fn at(&mut self, timestamp: u32, clock: u32) -> u32 {
        if clock == CALL_CLOCK {
            return timestamp;
        }
        let first = *self.first.get_or_insert(timestamp);
        let since = u64::from(timestamp.wrapping_sub(first));
        first.wrapping_add((since * u64::from(CALL_CLOCK) / u64::from(clock)) as u32)
    }
}

/// An RFC 4733 event payload with its duration moved from `clock` to 8 kHz (None:
/// not an event payload).
fn rescale_event(payload: &Bytes, clock: u32) -> Option<Bytes> {
    if payload.len() < 4 {
        return None;
    }
    let mut out = payload[..4].to_vec();
    let duration = u32::from(u16::from_be_bytes([payload[2], payload[3]]));
    let scaled = (u64::from(duration) * u64::from(CALL_CLOCK) / u64::from(clock)) as u16;
    out[2..4].copy_from_slice(&scaled.to_be_bytes());
    Some(Bytes::from(out))
}

/// Call → browser.
pub struct ToBrowser {
    codec: BrowserCodec,
    encoder: Option<opus::Encoder>,
    pcm: Vec<i16>,
    encoded: Vec<u8>,
}

impl ToBrowser {
    pub fn new(codec: BrowserCodec) -> Result<Self, GatewayError> {
        let encoder = match codec {
            BrowserCodec::Opus { .. } => {
                let mut e =
                    opus::Encoder::new(CALL_CLOCK, opus::Channels::Mono, opus::Application::Voip)?;
                // Narrowband speech: 24 kb/s is transparent for it, and complexity
                // 5 (as phones' WebRTC stacks use) halves the encoder's CPU, the
                // largest part of a browser call's cost (benches/RESULTS.md).
                e.set_bitrate(opus::Bitrate::Bits(24_000))?;
                e.set_complexity(5)?;
                Some(e)
            }
            BrowserCodec::G711 { .. } => None,
        };
        Ok(Self {
            codec,
            encoder,
            pcm: vec![0; MAX_FRAME],
            encoded: vec![0; 1500],
        })
    }

    /// The browser's RTP for one packet of the call's µ-law (None: not that, or
    /// a frame Opus cannot take). The track rewrites SSRC and payload type to the
    /// negotiated ones; sequence numbers are the call's.
    pub fn translate(&mut self, p: &Packet) -> Option<Packet> {
        let law = ToCall::LAW;
        let n = p.payload.len();
        if p.header.payload_type != law.payload_type() || n > MAX_FRAME {
            return None;
        }
        let payload = match (self.codec, &mut self.encoder) {
            (BrowserCodec::G711 { law: theirs, .. }, _) if theirs == law => p.payload.clone(),
            (BrowserCodec::G711 { law: theirs, .. }, _) => {
                law.decode(&p.payload, &mut self.pcm[..n]);
                let mut out = vec![0u8; n];
                theirs.encode(&self.pcm[..n], &mut out);
                Bytes::from(out)
            }
            (BrowserCodec::Opus { .. }, Some(encoder)) => {
                law.decode(&p.payload, &mut self.pcm[..n]);
                match encoder.encode(&self.pcm[..n], &mut self.encoded) {
                    Ok(len) => Bytes::copy_from_slice(&self.encoded[..len]),
                    Err(e) => {
                        tracing::debug!(error = %e, samples = n, "frame not encoded to Opus");
                        return None;
                    }
                }
            }
            (BrowserCodec::Opus { .. }, None) => return None,
        };
        let clock = self.codec.clock();
        // Multiplying wraps consistently (6 × 2^32 ≡ 0 mod 2^32).
        let timestamp = p.header.timestamp.wrapping_mul(clock / CALL_CLOCK);
        let header = Header {
            version: 2,
            marker: p.header.marker,
            payload_type: self.codec.payload_type(),
            sequence_number: p.header.sequence_number,
            timestamp,
            ssrc: p.header.ssrc,
            ..Header::default()
        };
        Some(Packet { header, payload })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(n: usize, offset: usize) -> Vec<i16> {
        (0..n)
            .map(|i| {
                let t = (i + offset) as f32 / CALL_CLOCK as f32;
                (8000.0 * (2.0 * std::f32::consts::PI * 440.0 * t).sin()) as i16
            })
            .collect()
    }

    fn call_packet(seq: u16, pcm: &[i16]) -> Packet {
        let mut payload = vec![0u8; pcm.len()];
        Law::Pcmu.encode(pcm, &mut payload);
        Packet {
            header: Header {
                version: 2,
                payload_type: 0,
                sequence_number: seq,
                timestamp: u32::from(seq) * 160,
                ssrc: 7,
                ..Header::default()
            },
            payload: Bytes::from(payload),
        }
    }

    #[test]
    fn speech_through_opus_both_ways_comes_back_as_it_went() {
        let opus = BrowserCodec::Opus { payload_type: 111 };
        let mut to_browser = ToBrowser::new(opus).unwrap();
        let mut to_call = ToCall::new(Offered {
            audio: vec![opus],
            events: vec![(110, 48_000), (126, 8_000)],
        });
        let mut heard = Vec::new();
        for seq in 0..50u16 {
            let pcm = tone(160, usize::from(seq) * 160);
            let out = to_browser.translate(&call_packet(seq, &pcm)).unwrap();
            assert_eq!(out.header.payload_type, 111);
            assert_eq!(out.header.timestamp, u32::from(seq) * 960);
            assert!(out.payload.len() < 160, "Opus is smaller than G.711");
            let back = to_call.translate(&out).unwrap();
            assert_eq!(back.header.payload_type, 0);
            assert_eq!(back.header.timestamp, u32::from(seq) * 160, "{seq}");
            assert_eq!(back.payload.len(), 160);
            let mut pcm = vec![0i16; 160];
            Law::Pcmu.decode(&back.payload, &mut pcm);
            heard.extend(pcm);
        }
        // After the codec's start-up, the tone's energy is there (a lossy codec:
        // its loudness, not its samples, is compared).
        let rms = |s: &[i16]| {
            (s.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / s.len() as f64).sqrt()
        };
        let sent = rms(&tone(4000, 0));
        let got = rms(&heard[4000..]);
        assert!(
            (got / sent - 1.0).abs() < 0.25,
            "sent {sent:.0}, heard {got:.0}"
        );
    }

    #[test]
    fn g711_passes_through_untouched() {
        let pcmu = BrowserCodec::G711 {
            law: Law::Pcmu,
            payload_type: 0,
        };
        let p = call_packet(3, &tone(160, 0));
        let out = ToBrowser::new(pcmu).unwrap().translate(&p).unwrap();
        assert_eq!(out.payload, p.payload);
        let back = ToCall::new(Offered {
            audio: vec![pcmu],
            events: vec![],
        })
        .translate(&out)
        .unwrap();
        assert_eq!(back.payload, p.payload);
        assert_eq!(back.header.timestamp, p.header.timestamp);
    }

    #[test]
    fn a_key_at_48_khz_reaches_the_call_at_8_khz() {
        let opus = BrowserCodec::Opus { payload_type: 111 };
        let mut to_call = ToCall::new(Offered {
            audio: vec![opus],
            events: vec![(110, 48_000)],
        });
        // Key 5, end bit, volume 10, 960 samples at 48 kHz (20 ms).
        let key = Packet {
            header: Header {
                version: 2,
                payload_type: 110,
                sequence_number: 9,
                timestamp: 96_000,
                ssrc: 1,
                ..Header::default()
            },
            payload: Bytes::from_static(&[5, 0x8a, 0x03, 0xc0]),
        };
        let out = to_call.translate(&key).unwrap();
        assert_eq!(out.header.payload_type, CALL_EVENT_PT);
        // The first timestamp seen is kept; durations move to 8 kHz.
        assert_eq!(out.header.timestamp, 96_000);
        assert_eq!(&out.payload[..], &[5, 0x8a, 0x00, 0xa0]);
        // Unknown payload types and short events are dropped, not passed on.
        let mut odd = key.clone();
        odd.header.payload_type = 13;
        assert!(to_call.translate(&odd).is_none());
        odd.header.payload_type = 110;
        odd.payload = Bytes::from_static(&[5]);
        assert!(to_call.translate(&odd).is_none());
        // Garbage where Opus should be is dropped.
        let mut junk = key;
        junk.header.payload_type = 111;
        junk.payload = Bytes::from_static(&[0xff, 0xff, 0xff]);
        let _ = to_call.translate(&junk);
    }
}
