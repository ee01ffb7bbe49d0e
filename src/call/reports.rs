//! The caller leg's RTCP while the call is with the IVR: the reports the
//! `channel::rtp::rtcp` state machine makes go out on the RTP port + 1, or on
//! the RTP port itself when the caller offered `a=rtcp-mux`; the caller's
//! reports are read back (loss and jitter of kefu's stream as the caller hears
//! it, the round-trip time) into the call record. A browser's call has none
//! here (its peer connection reports). While a bridge relays the call to an
//! agent, kefu goes on with receiver reports to the caller and reads theirs
//! (the agent's phone and kefu keep their own RTCP, if any, on that leg).

use std::net::SocketAddr;
use std::time::{Instant, SystemTime};

use crate::channel::rtp::clock::ClockStream;
use crate::channel::rtp::rtcp::{FarEnd, Rtcp, Sent, is_rtcp};

use super::CallSetup;
use super::session::Session;

/// Datagrams read from the RTCP port per frame tick, at most.
const READS: usize = 8;

pub(super) struct CallerReports {
    rtcp: Rtcp,
    /// The RTP port + 1; None when RTCP shares the RTP port.
    socket: Option<std::net::UdpSocket>,
    /// Where reports go: the signalled RTCP address, until the caller's own
    /// reports show where they come from (symmetric RTCP, RFC 4961).
    target: SocketAddr,
    learned: bool,
}

impl CallerReports {
    /// The caller's RTCP, for a SIP call; None for a browser's, for a caller
    /// whose RTP port is odd with no `a=rtcp` (see `Negotiated::rtcp_target`),
    /// or when the RTCP port cannot be bound (the call goes on without reports).
    pub(super) fn open(s: &CallSetup, ssrc: u32) -> Option<Self> {
        if !matches!(s.signal, super::signal::Signal::Sip { .. }) {
            return None;
        }
        let cname = format!("kefu@{}", s.call_id.chars().take(64).collect::<String>());
        let rtcp = Rtcp::new(ssrc, &cname, Instant::now());
        let target = s.negotiated.rtcp_target()?;
        if s.negotiated.rtcp_mux {
            return Some(Self {
                rtcp,
                socket: None,
                target,
                learned: false,
            });
        }
        let local = s.socket.local_addr().ok()?;
        let odd = SocketAddr::new(local.ip(), local.port().checked_add(1)?);
        let socket = match std::net::UdpSocket::bind(odd) {
            Ok(socket) => socket,
            Err(e) => {
                tracing::debug!(error = %e, port = odd.port(), "no RTCP port; the call goes on without reports");
                return None;
            }
        };
        socket.set_nonblocking(true).ok()?;
        Some(Self {
            rtcp,
            socket: Some(socket),
            target,
            learned: false,
        })
    }

    /// A datagram on the RTP port: true when it was RTCP (multiplexed) and is
    /// taken here.
    pub(super) fn multiplexed(
        &mut self,
        packet: &[u8],
        from: SocketAddr,
        remote: SocketAddr,
    ) -> bool {
        if self.socket.is_some() || !is_rtcp(packet) {
            return false;
        }
        self.heard(packet, from, remote);
        true
    }

    /// Reads what arrived on the RTCP port.
    pub(super) fn read(&mut self, remote: SocketAddr) {
        // Out for the reads, so `heard` may change the rest of the state.
        let Some(socket) = self.socket.take() else {
            return;
        };
        let mut buf = [0u8; 1500];
        for _ in 0..READS {
            let Ok((n, from)) = socket.recv_from(&mut buf) else {
                break;
            };
            self.heard(&buf[..n], from, remote);
        }
        self.socket = Some(socket);
    }

    /// A report from `from`, taken when it comes from the caller's address
    /// (the RTP source's IP): the first one also shows where to send ours.
    fn heard(&mut self, packet: &[u8], from: SocketAddr, remote: SocketAddr) {
        if from.ip() != remote.ip() {
            return;
        }
        if !self.learned {
            self.learned = true;
            self.target = from;
        }
        self.rtcp
            .received(packet, Instant::now(), SystemTime::now());
    }

    /// Sends a report when one is due: a sender report from the IVR's stream
    /// (`out`), a receiver report while a bridge relays the agent's packets
    /// (their timestamps are the agent's phone's, not a clock kefu could pair
    /// with the wall clock).
    pub(super) async fn report(
        &mut self,
        s: &CallSetup,
        out: Option<&ClockStream>,
        session: &mut Session,
    ) {
        let now = Instant::now();
        if !self.rtcp.due(now) {
            return;
        }
        let sent = out.map(|out| {
            let o = out.lock();
            Sent {
                packets: o.sender.packets,
                octets: o.sender.octets,
                rtp_time: o.rtp_time_at(now),
            }
        });
        let heard = session.reception();
        let packet = self.rtcp.report(now, SystemTime::now(), sent, heard);
        self.send(s, session.remote(), &packet).await;
    }

    /// The last report and BYE (the call is over).
    pub(super) async fn bye(&mut self, s: &CallSetup, session: &mut Session) {
        let heard = session.reception();
        let packet = self.rtcp.bye(Instant::now(), heard);
        self.send(s, session.remote(), &packet).await;
    }

    async fn send(&self, s: &CallSetup, remote: SocketAddr, packet: &[u8]) {
        if packet.is_empty() {
            return;
        }
        let sent = match &self.socket {
            Some(socket) => socket.send_to(packet, self.target),
            // Multiplexed: where the caller's media goes (symmetric RTP).
            None => s.socket.send_to(packet, remote).await,
        };
        if let Err(e) = sent {
            tracing::debug!(error = %e, "cannot send an RTCP report");
        }
    }

    /// What the caller reported about kefu's stream, and the reports sent.
    pub(super) fn far_end(&self) -> (FarEnd, u32) {
        (self.rtcp.far.clone(), self.rtcp.sent)
    }
}
