//! The pool of UDP ports calls take their RTP sockets from.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use tokio::net::UdpSocket;

/// An inclusive range of even RTP ports (the odd neighbour is left for RTCP).
#[derive(Debug)]
pub struct PortPool {
    first: u16,
    last: u16,
}

#[derive(Debug, thiserror::Error)]
#[error("no free RTP port in {first}-{last} on {ip}")]
pub struct PortsExhausted {
    first: u16,
    last: u16,
    ip: IpAddr,
}

impl PortPool {
    pub fn new(first: u16, last: u16) -> Arc<Self> {
        let first = first + first % 2;
        Arc::new(Self {
            first,
            last: last.max(first),
        })
    }

    fn slots(&self) -> u32 {
        u32::from(self.last - self.first) / 2 + 1
    }

    /// Binds a socket on a free even port chosen at random, so nobody can tell the
    /// next call's media port from the last one (and take its audio over), and a
    /// port just released is rarely reused at once (late packets of the old call).
    pub async fn bind(&self, ip: IpAddr) -> Result<UdpSocket, PortsExhausted> {
        let slots = self.slots();
        let start = rand::random::<u32>() % slots;
        for k in 0..slots {
            let n = (start + k) % slots;
            let port = self.first + (n * 2) as u16;
            if let Ok(sock) = UdpSocket::bind(SocketAddr::new(ip, port)).await {
                return Ok(sock);
            }
        }
        Err(PortsExhausted {
            first: self.first,
            last: self.last,
            ip,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn binds_even_ports_and_reports_exhaustion() {
        let pool = PortPool::new(41001, 41005);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let a = pool.bind(ip).await.unwrap();
        let b = pool.bind(ip).await.unwrap();
        for s in [&a, &b] {
            let port = s.local_addr().unwrap().port();
            assert!(port % 2 == 0 && (41002..=41004).contains(&port), "{port}");
        }
        assert!(pool.bind(ip).await.is_err());
        drop(a);
        assert!(pool.bind(ip).await.is_ok());
    }

    #[tokio::test]
    async fn the_next_port_cannot_be_told_from_the_last() {
        let pool = PortPool::new(42000, 42998);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let mut steps = std::collections::HashSet::new();
        let mut last = pool.bind(ip).await.unwrap().local_addr().unwrap().port();
        for _ in 0..20 {
            let port = pool.bind(ip).await.unwrap().local_addr().unwrap().port();
            steps.insert(i32::from(port) - i32::from(last));
            last = port;
        }
        // Sequential ports would step by 2 every time.
        assert!(steps.len() > 5, "{steps:?}");
    }
}
