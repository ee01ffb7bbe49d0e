//! The one inbound-RTP stage of every leg: the caller's (in the IVR and bridged)
//! and an agent's (while hearing the summary and bridged). A packet is the leg's
//! media only if it parses as RTP, carries a payload type the leg negotiated (its
//! codec or telephone-event), and comes from the source the [`Latch`] believes.
//! Only such packets count toward learning a source, so a stranger's packets of
//! another payload type are neither heard nor help anyone latch. Sans I/O.

use std::net::SocketAddr;

use rtp_rs::RtpReader;

use super::latch::Latch;
use crate::media::sdp::Negotiated;

/// Which packets a leg takes, and where its media goes back to.
#[derive(Clone, Debug)]
pub struct Inbound {
    latch: Latch,
    payload_type: u8,
    telephone_event: Option<u8>,
}

/// A packet taken as the leg's media.
pub struct Admitted<'a> {
    pub rtp: RtpReader<'a>,
    /// An RFC 4733 event (a key), not audio.
    pub event: bool,
}

impl Inbound {
    pub fn new(negotiated: &Negotiated) -> Self {
        Self {
            latch: Latch::new(negotiated.remote),
            payload_type: negotiated.payload_type,
            telephone_event: negotiated.telephone_event,
        }
    }

    /// `packet` from `from`, if it is this leg's media. Refusals of a wrong source
    /// are counted (`kefu_rtp_packets_refused`), admissions as `kefu_rtp_in`.
    pub fn admit<'a>(&mut self, packet: &'a [u8], from: SocketAddr) -> Option<Admitted<'a>> {
        let rtp = RtpReader::new(packet).ok()?;
        let pt = rtp.payload_type();
        let event = Some(pt) == self.telephone_event;
        if !event && pt != self.payload_type {
            return None;
        }
        let metrics = crate::metrics::metrics();
        if !self.latch.accept(from, rtp.sequence_number().into()) {
            metrics.rtp_refused.inc();
            return None;
        }
        metrics.rtp_in.inc();
        Some(Admitted { rtp, event })
    }

    /// The leg's media were renegotiated (re-INVITE, UPDATE): new payload types,
    /// and a new signalled address is learned afresh.
    pub fn renegotiated(&mut self, negotiated: &Negotiated) {
        self.payload_type = negotiated.payload_type;
        self.telephone_event = negotiated.telephone_event;
        self.latch.resignal(negotiated.remote);
    }

    /// Where this leg's media is sent: the believed source, else the signalled one.
    pub fn target(&self) -> SocketAddr {
        self.latch.target()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn negotiated(remote: &str) -> Negotiated {
        let offer = format!(
            "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
             m=audio {port} RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n",
            ip = remote.split(':').next().unwrap(),
            port = remote.split(':').nth(1).unwrap(),
        );
        crate::media::sdp::negotiate(offer.as_bytes()).unwrap()
    }

    fn packet(pt: u8, seq: u16) -> Vec<u8> {
        let mut p = vec![
            0x80,
            pt,
            (seq >> 8) as u8,
            seq as u8,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            1,
        ];
        p.extend_from_slice(&[0xd5; 160]);
        p
    }

    #[test]
    fn only_the_negotiated_payload_types_from_the_believed_source_are_taken() {
        let signalled: SocketAddr = "192.0.2.1:4000".parse().unwrap();
        let stranger: SocketAddr = "198.51.100.9:5000".parse().unwrap();
        let mut inbound = Inbound::new(&negotiated("192.0.2.1:4000"));
        assert!(inbound.admit(&packet(8, 1), signalled).is_some());
        assert!(inbound.admit(&packet(101, 2), signalled).unwrap().event);
        assert!(
            inbound.admit(&packet(0, 3), signalled).is_none(),
            "PCMU was not negotiated"
        );
        assert!(inbound.admit(b"not rtp", signalled).is_none());
        // A stranger is refused, however many packets in sequence it sends.
        for seq in 10..20 {
            assert!(inbound.admit(&packet(8, seq), stranger).is_none());
        }
        assert_eq!(inbound.target(), signalled);
    }

    #[test]
    fn behind_nat_a_source_is_learned_from_media_packets_only() {
        let nat: SocketAddr = "198.51.100.9:5000".parse().unwrap();
        let mut inbound = Inbound::new(&negotiated("10.0.0.5:4000"));
        // Packets of another payload type do not count toward learning.
        for seq in 1..10 {
            assert!(inbound.admit(&packet(0, seq), nat).is_none());
        }
        let taken: Vec<bool> = (20..25)
            .map(|seq| inbound.admit(&packet(8, seq), nat).is_some())
            .collect();
        assert_eq!(taken, [false, false, false, true, true]);
        assert_eq!(inbound.target(), nat);
        // A re-INVITE to a new address starts learning again.
        inbound.renegotiated(&negotiated("192.0.2.7:6000"));
        assert_eq!(
            inbound.target(),
            "192.0.2.7:6000".parse::<SocketAddr>().unwrap()
        );
    }
}
