//! RTCP for a call's leg (RFC 3550 §6): the sender report (SR) while kefu sends,
//! else a receiver report (RR), each with a reception block about the caller's
//! stream and a CNAME (SDES), every 5 s on average; what the far end reports
//! about kefu's stream (loss, jitter, round-trip time); BYE when the call ends.
//! Sans I/O: packets and times in, packets out. The packets are built and read
//! with the `rtcp` crate (webrtc-rs's, in the build already for WebRTC).
//!
//! Reports go to the RTP port + 1 (or the SDP's `a=rtcp`), or on the RTP port
//! itself when the offer asked for `a=rtcp-mux` (RFC 5761): RTCP is then told
//! from RTP by its packet type ([`is_rtcp`]).

use std::time::{Duration, Instant, SystemTime};

use rtcp::goodbye::Goodbye;
use rtcp::packet::Packet;
use rtcp::receiver_report::ReceiverReport;
use rtcp::reception_report::ReceptionReport;
use rtcp::sender_report::SenderReport;
use rtcp::source_description::{
    SdesType, SourceDescription, SourceDescriptionChunk, SourceDescriptionItem,
};
use serde::Serialize;

use super::receiver::Reception;

/// The mean interval between reports (RFC 3550 §6.2's minimum; a call's RTCP
/// bandwidth never allows more often).
const INTERVAL: Duration = Duration::from_secs(5);
/// Seconds from 1900 (NTP's epoch) to 1970.
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// Whether a datagram on a multiplexed port is RTCP, not RTP (RFC 5761 §4:
/// packet types 192–223, which RTP would read as payload types 64–95).
pub fn is_rtcp(packet: &[u8]) -> bool {
    packet.len() >= 8 && packet[0] >> 6 == 2 && (192..=223).contains(&packet[1])
}

/// kefu's sending side, for a sender report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sent {
    pub packets: u64,
    pub octets: u64,
    /// The RTP timestamp that corresponds to the report's wall-clock time.
    pub rtp_time: u32,
}

/// What the far end reported about kefu's stream.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct FarEnd {
    /// Reports (SR or RR) received.
    pub reports: u32,
    /// Share of kefu's packets lost since its previous report, 0–1.
    pub fraction_lost: f32,
    /// Packets of kefu's lost in all, as the far end counts them.
    pub total_lost: u32,
    /// Interarrival jitter of kefu's stream there, in milliseconds.
    pub jitter_ms: f32,
    /// Round-trip time from the last report that allowed it (RFC 3550 §6.4.1;
    /// a report is read at the call's next frame read, so this may be up to
    /// one read interval long).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtt_ms: Option<f32>,
    /// The far end said BYE.
    pub bye: bool,
}

/// One leg's RTCP state.
#[derive(Debug)]
pub struct Rtcp {
    ssrc: u32,
    cname: String,
    next_at: Instant,
    /// The far end's last SR: the middle 32 bits of its NTP time, and when it came.
    last_sr: Option<(u32, Instant)>,
    /// Packets sent when kefu last reported (an SR only if it sent since).
    sent_before: u64,
    /// Reports sent (the BYE's included).
    pub sent: u32,
    pub far: FarEnd,
}

/// `at` as a 64-bit NTP timestamp.
fn ntp(at: SystemTime) -> u64 {
    let since = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let seconds = since.as_secs() + NTP_UNIX_OFFSET;
    let fraction = (u64::from(since.subsec_nanos()) << 32) / 1_000_000_000;
    (seconds << 32) | fraction
}

/// The middle 32 bits of an NTP timestamp (RFC 3550's "compact" form, in
/// 1/65536 s).
fn middle(ntp: u64) -> u32 {
    (ntp >> 16) as u32
}

/// One compound packet of `packets`, as sent (empty if it cannot be built:
/// only out-of-range fields fail, and none is built here).
fn compound(packets: &[Box<dyn Packet + Send + Sync>]) -> Vec<u8> {
    match rtcp::packet::marshal(packets) {
        Ok(b) => b.to_vec(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot build an RTCP report");
            Vec::new()
        }
    }
}

/// The next interval: INTERVAL times a random factor in [0.5, 1.5) (§6.3.1).
fn jittered(base: Duration) -> Duration {
    base.mul_f64(0.5 + rand::random::<f64>())
}

impl Rtcp {
    /// A leg sending as `ssrc`; its first report is due half an interval on.
    pub fn new(ssrc: u32, cname: &str, now: Instant) -> Self {
        Self {
            ssrc,
            cname: cname.chars().take(255).collect(),
            next_at: now + jittered(INTERVAL / 2),
            last_sr: None,
            sent_before: 0,
            sent: 0,
            far: FarEnd::default(),
        }
    }

    /// Whether a report is due.
    pub fn due(&self, now: Instant) -> bool {
        now >= self.next_at
    }

    /// The report due now: an SR when kefu sent since its last report, else an
    /// RR; a reception block when the caller's stream was heard; the CNAME.
    pub fn report(
        &mut self,
        now: Instant,
        wall: SystemTime,
        sent: Option<Sent>,
        heard: Option<Reception>,
    ) -> Vec<u8> {
        self.next_at = now + jittered(INTERVAL);
        self.sent += 1;
        let blocks: Vec<ReceptionReport> = heard.map(|r| self.block(r, now)).into_iter().collect();
        let first: Box<dyn Packet + Send + Sync> = match sent {
            Some(s) if s.packets > self.sent_before => {
                self.sent_before = s.packets;
                Box::new(SenderReport {
                    ssrc: self.ssrc,
                    ntp_time: ntp(wall),
                    rtp_time: s.rtp_time,
                    packet_count: s.packets as u32,
                    octet_count: s.octets as u32,
                    reports: blocks,
                    profile_extensions: bytes::Bytes::new(),
                })
            }
            _ => Box::new(ReceiverReport {
                ssrc: self.ssrc,
                reports: blocks,
                profile_extensions: bytes::Bytes::new(),
            }),
        };
        compound(&[first, self.sdes()])
    }

    /// The last report: an RR and BYE (the call is over).
    pub fn bye(&mut self, now: Instant, heard: Option<Reception>) -> Vec<u8> {
        self.sent += 1;
        let blocks: Vec<ReceptionReport> = heard.map(|r| self.block(r, now)).into_iter().collect();
        let rr = Box::new(ReceiverReport {
            ssrc: self.ssrc,
            reports: blocks,
            profile_extensions: bytes::Bytes::new(),
        });
        let bye = Box::new(Goodbye {
            sources: vec![self.ssrc],
            reason: bytes::Bytes::new(),
        });
        compound(&[rr, self.sdes(), bye])
    }

    fn sdes(&self) -> Box<dyn Packet + Send + Sync> {
        Box::new(SourceDescription {
            chunks: vec![SourceDescriptionChunk {
                source: self.ssrc,
                items: vec![SourceDescriptionItem {
                    sdes_type: SdesType::SdesCname,
                    text: bytes::Bytes::from(self.cname.clone().into_bytes()),
                }],
            }],
        })
    }

    /// A reception block about the caller's stream (§6.4.1).
    fn block(&self, r: Reception, now: Instant) -> ReceptionReport {
        let (lsr, dlsr) = match self.last_sr {
            Some((lsr, at)) => {
                let waited = now.saturating_duration_since(at);
                (lsr, (waited.as_secs_f64() * 65536.0) as u32)
            }
            None => (0, 0),
        };
        ReceptionReport {
            ssrc: r.ssrc,
            fraction_lost: r.fraction_lost,
            total_lost: r.total_lost.min(0x7f_ffff),
            last_sequence_number: r.highest_seq,
            jitter: r.jitter,
            last_sender_report: lsr,
            delay: dlsr,
        }
    }

    /// An RTCP datagram from the far end; unreadable ones are ignored (a
    /// stranger's bytes are not worth an error).
    pub fn received(&mut self, packet: &[u8], now: Instant, wall: SystemTime) {
        let mut raw = packet;
        let Ok(packets) = rtcp::packet::unmarshal(&mut raw) else {
            return;
        };
        for p in &packets {
            let any = p.as_any();
            let blocks = if let Some(sr) = any.downcast_ref::<SenderReport>() {
                self.last_sr = Some((middle(sr.ntp_time), now));
                Some(&sr.reports)
            } else if let Some(rr) = any.downcast_ref::<ReceiverReport>() {
                Some(&rr.reports)
            } else {
                if any.downcast_ref::<Goodbye>().is_some() {
                    self.far.bye = true;
                }
                None
            };
            let Some(blocks) = blocks else { continue };
            self.far.reports += 1;
            if let Some(b) = blocks.iter().find(|b| b.ssrc == self.ssrc) {
                self.far.fraction_lost = f32::from(b.fraction_lost) / 256.0;
                self.far.total_lost = b.total_lost;
                self.far.jitter_ms = b.jitter as f32 / 8.0;
                if b.last_sender_report != 0 {
                    let a = middle(ntp(wall));
                    let rtt = a.wrapping_sub(b.last_sender_report).wrapping_sub(b.delay);
                    // A clock step or a bogus block gives a huge value: skip it.
                    if rtt < 65536 * 60 {
                        self.far.rtt_ms = Some(rtt as f32 * 1000.0 / 65536.0);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reception() -> Reception {
        Reception {
            ssrc: 0xCAFE,
            fraction_lost: 25,
            total_lost: 3,
            highest_seq: 70_000,
            jitter: 40,
        }
    }

    #[test]
    fn a_sender_reports_and_a_listener_receives_the_report() {
        let t0 = Instant::now();
        let wall = SystemTime::now();
        let mut kefu = Rtcp::new(0xBEEF, "kefu@example", t0);
        assert!(!kefu.due(t0));
        assert!(kefu.due(t0 + Duration::from_secs(4)));
        let sent = Sent {
            packets: 250,
            octets: 40_000,
            rtp_time: 1234,
        };
        let sr = kefu.report(t0, wall, Some(sent), Some(reception()));
        assert!(is_rtcp(&sr));
        assert_eq!(sr[1], 200, "a sender report first");
        // The next one is due 2.5 to 7.5 s on.
        assert!(!kefu.due(t0 + Duration::from_millis(2400)));
        assert!(kefu.due(t0 + Duration::from_millis(7600)));
        // Nothing sent since: a receiver report.
        let rr = kefu.report(t0, wall, Some(sent), None);
        assert_eq!(rr[1], 201);

        // The caller reads kefu's SR, and reports back 40 ms later with the
        // SR's time in its block: kefu measures the round trip.
        let mut caller = Rtcp::new(0xCAFE, "caller", t0);
        caller.received(&sr, t0, wall);
        assert_eq!(caller.far.reports, 1);
        let heard = Reception {
            ssrc: 0xBEEF,
            fraction_lost: 64,
            total_lost: 9,
            highest_seq: 250,
            jitter: 80,
        };
        let back = caller.report(t0 + Duration::from_millis(30), wall, None, Some(heard));
        kefu.received(&back, t0, wall + Duration::from_millis(40));
        assert_eq!(kefu.far.reports, 1);
        assert_eq!(kefu.far.total_lost, 9);
        assert!((kefu.far.fraction_lost - 0.25).abs() < 1e-6);
        assert!((kefu.far.jitter_ms - 10.0).abs() < 1e-6);
        let rtt = kefu.far.rtt_ms.expect("a round trip");
        assert!((5.0..15.0).contains(&rtt), "40 ms out, 30 ms held: {rtt}");

        let bye = kefu.bye(t0, None);
        caller.received(&bye, t0, wall);
        assert!(caller.far.bye);
    }

    #[test]
    fn rtp_and_garbage_are_not_rtcp_and_garbage_is_ignored() {
        let rtp = [0x80u8, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1];
        assert!(!is_rtcp(&rtp));
        assert!(!is_rtcp(&[0x80, 200, 0]));
        let mut r = Rtcp::new(1, "x", Instant::now());
        for junk in [
            &b""[..],
            b"\x80\xc8\x00\x06",
            &[0x81, 201, 0xff, 0xff, 0, 0, 0, 1],
        ] {
            r.received(junk, Instant::now(), SystemTime::now());
        }
        assert_eq!(r.far, FarEnd::default());
    }
}
