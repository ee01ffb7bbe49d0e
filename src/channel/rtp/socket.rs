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
use std::net::SocketAddr;

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
            // `into_std` deregisters it and leaves it non-blocking.
            Mode::Reactor(s) => Mode::Polled(s.into_std()?),
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

    fn check(&self) -> io::Result<()> {
        match self.0 {
            Mode::Lost => Err(lost()),
            _ => Ok(()),
        }
    }

    /// Polled mode: the next datagram already queued, or `WouldBlock` when none is.
    pub fn try_recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        match &self.0 {
            Mode::Polled(s) => s.recv_from(buf),
            Mode::Reactor(s) => s.try_recv_from(buf),
            Mode::Lost => Err(lost()),
        }
    }

    /// Sends without waiting (a datagram socket only refuses when its buffer is full,
    /// and a frame that late is better dropped than sent late).
    pub fn try_send_to(&self, packet: &[u8], to: SocketAddr) -> io::Result<usize> {
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
        assert_eq!(
            socket.try_recv_from(&mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        peer.send_to(b"one", port).unwrap();
        peer.send_to(b"two", port).unwrap();
        // Polled: both are read at the next tick, in order, without waiting.
        let mut got = Vec::new();
        for _ in 0..100 {
            match socket.try_recv_from(&mut buf) {
                Ok((n, from)) => {
                    assert_eq!(from, peer_addr);
                    got.push(buf[..n].to_vec());
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && got.len() < 2 => {
                    std::thread::sleep(std::time::Duration::from_millis(1))
                }
                Err(_) => break,
            }
        }
        assert_eq!(got, [b"one".to_vec(), b"two".to_vec()]);
        socket.try_send_to(b"out", peer_addr).unwrap();
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
