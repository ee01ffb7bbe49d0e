//! A call's RTP socket, in one of two modes.
//!
//! **Polled** while the call is with the IVR: the socket is off the async reactor and
//! the call task reads whatever arrived at its 20 ms frame tick, when it wakes to send
//! anyway. A packet then costs no reactor event and no task wake-up of its own: at
//! 1000 calls that is 50,000 wake-ups a second fewer, about half of all the call
//! tasks' turns. What this adds is at most one frame (20 ms) before a key or a word is
//! seen, which no caller can hear.
//!
//! **Reactor** while a bridge relays the call to an agent: each packet is forwarded as
//! it arrives, so relaying adds no delay and no jitter of its own.

use std::io;
use std::io::IoSliceMut;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::SystemTime;

use nix::sys::socket::{
    ControlMessageOwned, MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, setsockopt, sockopt,
};

/// A datagram read in a batch: its bytes are the `len` first of its slot.
#[derive(Clone, Copy, Debug)]
pub struct Datagram {
    pub len: usize,
    pub from: SocketAddr,
    /// When the kernel received it (`None` if it did not say).
    pub at: Option<SystemTime>,
}

/// The call's socket; moving between modes keeps the port (and the caller's stream).
#[derive(Debug)]
pub struct RtpSocket(Mode);

#[derive(Debug)]
enum Mode {
    Reactor(tokio::net::UdpSocket),
    Polled(std::net::UdpSocket),
    /// A mode change failed (the runtime refused the socket): the call ends.
    Lost,
}

fn lost() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "the RTP socket was lost")
}

impl RtpSocket {
    pub fn new(socket: tokio::net::UdpSocket) -> Self {
        Self(Mode::Reactor(socket))
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match &self.0 {
            Mode::Reactor(s) => s.local_addr(),
            Mode::Polled(s) => s.local_addr(),
            Mode::Lost => Err(lost()),
        }
    }

    /// Takes the socket off the reactor, for reading at the frame tick.
    pub fn poll_mode(&mut self) -> io::Result<()> {
        self.0 = match std::mem::replace(&mut self.0, Mode::Lost) {
            // `into_std` deregisters it and leaves it non-blocking. Read in batches,
            // each datagram keeps its kernel arrival time (for the jitter figures).
            Mode::Reactor(s) => {
                let s = s.into_std()?;
                setsockopt(&s, sockopt::ReceiveTimestampns, &true)?;
                Mode::Polled(s)
            }
            other => other,
        };
        self.check()
    }

    /// Puts the socket back on the reactor (must run inside the runtime).
    pub fn reactor_mode(&mut self) -> io::Result<()> {
        self.0 = match std::mem::replace(&mut self.0, Mode::Lost) {
            Mode::Polled(s) => Mode::Reactor(tokio::net::UdpSocket::from_std(s)?),
            other => other,
        };
        self.check()
    }

    /// Polled mode: a second handle on the same socket (the shared RTP clock sends
    /// from it while the call reads).
    pub fn try_clone_polled(&self) -> io::Result<std::net::UdpSocket> {
        match &self.0 {
            Mode::Polled(s) => s.try_clone(),
            _ => Err(io::Error::other("the RTP socket is not polled")),
        }
    }

    fn check(&self) -> io::Result<()> {
        match self.0 {
            Mode::Lost => Err(lost()),
            _ => Ok(()),
        }
    }

    /// Polled mode: the datagrams already queued, as many as `buf` has slots of
    /// `slot` bytes for, in one system call (`recvmmsg`), each with its length,
    /// source and the kernel's time of arrival. `WouldBlock` when none is queued.
    pub fn try_recv_batch(
        &self,
        buf: &mut [u8],
        slot: usize,
        got: &mut Vec<Datagram>,
    ) -> io::Result<()> {
        let Mode::Polled(s) = &self.0 else {
            return Err(io::Error::other("the RTP socket is not polled"));
        };
        let mut iovs: Vec<[IoSliceMut<'_>; 1]> =
            buf.chunks_mut(slot).map(|c| [IoSliceMut::new(c)]).collect();
        let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(
            iovs.len(),
            Some(nix::cmsg_space!(nix::sys::time::TimeSpec)),
        );
        let received = recvmmsg(
            s.as_raw_fd(),
            &mut headers,
            iovs.iter_mut(),
            MsgFlags::MSG_DONTWAIT,
            None,
        )?;
        for msg in received {
            let mut at = None;
            if let Ok(cmsgs) = msg.cmsgs() {
                for c in cmsgs {
                    if let ControlMessageOwned::ScmTimestampns(ts) = c {
                        at = SystemTime::UNIX_EPOCH.checked_add(std::time::Duration::from(ts));
                    }
                }
            }
            let from = msg.address.and_then(|a| {
                a.as_sockaddr_in()
                    .map(|v4| SocketAddr::from(*v4))
                    .or_else(|| a.as_sockaddr_in6().map(|v6| SocketAddr::from(*v6)))
            });
            // A datagram from no IP address cannot be RTP from the caller.
            if let Some(from) = from {
                got.push(Datagram {
                    len: msg.bytes.min(slot),
                    from,
                    at,
                });
            }
        }
        Ok(())
    }

    /// Sends without waiting (a datagram socket only refuses when its buffer is full,
    /// and a frame that late is better dropped than sent late).
    fn try_send_to(&self, packet: &[u8], to: SocketAddr) -> io::Result<usize> {
        match &self.0 {
            Mode::Polled(s) => s.send_to(packet, to),
            Mode::Reactor(s) => s.try_send_to(packet, to),
            Mode::Lost => Err(lost()),
        }
    }

    /// Reactor mode: waits for the next datagram. In any other mode this never
    /// completes (a caller that forgot `reactor_mode` stalls instead of spinning).
    pub async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        match &self.0 {
            Mode::Reactor(s) => s.recv_from(buf).await,
            _ => {
                tracing::error!("RTP socket awaited while not on the reactor");
                std::future::pending().await
            }
        }
    }

    /// Reactor mode: sends, waiting for buffer space if needed.
    pub async fn send_to(&self, packet: &[u8], to: SocketAddr) -> io::Result<usize> {
        match &self.0 {
            Mode::Reactor(s) => s.send_to(packet, to).await,
            _ => self.try_send_to(packet, to),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keeps_its_port_and_its_queue_across_modes() {
        let bound = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut socket = RtpSocket::new(bound);
        let port = socket.local_addr().unwrap();
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let peer_addr = peer.local_addr().unwrap();

        socket.poll_mode().unwrap();
        let mut buf = [0u8; 64];
        let (mut batch, mut got) = (vec![0u8; 2 * 64], Vec::new());
        assert_eq!(
            socket
                .try_recv_batch(&mut batch, 64, &mut got)
                .unwrap_err()
                .kind(),
            io::ErrorKind::WouldBlock
        );
        // Reads until `n` datagrams are in `got` (polling, bounded): each call's
        // payloads, and the time the call that returned each came back.
        let read = |socket: &RtpSocket,
                    got: &mut Vec<Datagram>,
                    batch: &mut Vec<u8>,
                    n: usize|
         -> Vec<(Vec<u8>, SystemTime)> {
            let mut out = Vec::new();
            for attempt in 0.. {
                assert!(attempt < 2000, "the datagrams never came");
                let from = got.len();
                let result = socket.try_recv_batch(batch, 64, got);
                let returned = SystemTime::now();
                match result {
                    Ok(()) => {
                        assert!(got.len() - from <= 2, "two slots, more datagrams");
                        for (i, d) in got[from..].iter().enumerate() {
                            out.push((batch[i * 64..][..d.len].to_vec(), returned));
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    }
                    Err(e) => panic!("{e}"),
                }
                if got.len() >= n {
                    break;
                }
            }
            out
        };
        // The kernel turns receive timestamps on for the whole stack asynchronously
        // (a work queue): until then it stamps datagrams when they are read. Probe
        // until a datagram carries a time from before it was read (bounded).
        for attempt in 0.. {
            assert!(attempt < 100, "the kernel never stamped arrivals");
            got.clear();
            peer.send_to(b"probe", port).unwrap();
            let sent = SystemTime::now();
            read(&socket, &mut got, &mut batch, 1);
            if got[0].at.is_some_and(|at| at <= sent) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        got.clear();

        // Batches of at most two, each datagram with the kernel's arrival time: after
        // the sends began, by the read that returned it, in order. (That the time is
        // the arrival's, not the read's, the probe above showed.)
        let before = SystemTime::now();
        for text in [&b"first"[..], b"second", b"third"] {
            peer.send_to(text, port).unwrap();
        }
        let read3 = read(&socket, &mut got, &mut batch, 3);
        let texts: Vec<&[u8]> = read3.iter().map(|(t, _)| t.as_slice()).collect();
        assert_eq!(texts, [&b"first"[..], b"second", b"third"]);
        let mut last = before;
        for (d, (_, read_by)) in got.iter().zip(&read3) {
            assert_eq!(d.from, peer_addr);
            let at = d.at.expect("a kernel timestamp");
            assert!(
                at >= last && at <= *read_by,
                "arrival {at:?}: the sends began at {before:?}, read by {read_by:?}"
            );
            last = at;
        }
        assert_eq!(
            socket
                .try_recv_batch(&mut batch, 64, &mut got)
                .unwrap_err()
                .kind(),
            io::ErrorKind::WouldBlock
        );
        socket.send_to(b"out", peer_addr).await.unwrap();
        let (n, _) = peer.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"out");

        // Back on the reactor for a bridge: same port, a packet queued meanwhile waits.
        peer.send_to(b"three", port).unwrap();
        socket.reactor_mode().unwrap();
        assert_eq!(socket.local_addr().unwrap(), port);
        let (n, _) = socket.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"three");
        socket.send_to(b"four", peer_addr).await.unwrap();
        let (n, _) = peer.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"four");
    }
}
