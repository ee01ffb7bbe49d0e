//! The HTTP listener: hyper HTTP/1 connections with a deadline for each request's
//! headers, and a cap on connections per client address and in all, so clients that
//! connect and say nothing (or trickle their headers) cannot hold the server's
//! sockets. `axum::serve` has neither, hence this loop.
//!
//! A client at its cap that connects again has its oldest connection closed as soon
//! as that one is idle (a request in flight finishes first), so the newest wins: a
//! flood of idle connections from one address keeps recycling its own slots, and a
//! real browser behind the same address still gets answered. Connections younger
//! than `GRACE` are not recycled (their request may be on its way): while all of a
//! client's are that young, and at the cap in all, new connections are closed at
//! once.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_service::Service;

/// How long a new connection is safe from being recycled.
const GRACE: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Connections open at once, in all.
    pub connections: usize,
    /// Connections open at once from one client address.
    pub per_client: usize,
    /// How long a client has to send a request's headers (and how long an idle
    /// connection stays open waiting for the next request).
    pub header_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            connections: 4096,
            per_client: 256,
            header_timeout: Duration::from_secs(10),
        }
    }
}

/// Open connections by client address, oldest first, each with its close signal.
#[derive(Default)]
struct Open {
    next_id: u64,
    total: usize,
    by_client: HashMap<IpAddr, VecDeque<(u64, Instant, CancellationToken)>>,
}

impl Open {
    /// Registers a new connection, or None when it must be closed at once. At the
    /// client's cap its oldest connection is told to close, if it is old enough.
    fn admit(
        &mut self,
        ip: IpAddr,
        limits: &Limits,
        now: Instant,
    ) -> Option<(u64, CancellationToken)> {
        if self.total >= limits.connections {
            return None;
        }
        let list = self.by_client.entry(ip).or_default();
        if list.len() >= limits.per_client.max(1) {
            match list.front() {
                Some((_, since, _)) if now.duration_since(*since) >= GRACE => {
                    if let Some((_, _, oldest)) = list.pop_front() {
                        oldest.cancel();
                        self.total -= 1;
                    }
                }
                _ => return None,
            }
        }
        self.next_id += 1;
        let token = CancellationToken::new();
        list.push_back((self.next_id, now, token.clone()));
        self.total += 1;
        Some((self.next_id, token))
    }

    fn close(&mut self, ip: IpAddr, id: u64) {
        if let Some(list) = self.by_client.get_mut(&ip) {
            if let Some(i) = list.iter().position(|(n, _, _)| *n == id) {
                list.remove(i);
                self.total -= 1;
            }
            if list.is_empty() {
                self.by_client.remove(&ip);
            }
        }
    }
}

/// Serves `router` on `listener` until `stop`; then lets requests in flight finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let open = Arc::new(Mutex::new(Open::default()));
    let tracker = TaskTracker::new();
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, typically: wait rather than spin.
                    tracing::warn!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let admitted = open
            .lock()
            .ok()
            .and_then(|mut o| o.admit(peer.ip(), &limits, Instant::now()));
        let Some((id, close)) = admitted else {
            tracing::debug!(%peer, "HTTP connection refused: too many open");
            continue;
        };
        let router = router.clone();
        let open = open.clone();
        let stop = stop.clone();
        tracker.spawn(async move {
            connection(stream, peer, router, limits, close, stop).await;
            if let Ok(mut o) = open.lock() {
                o.close(peer.ip(), id);
            }
        });
    }
    tracker.close();
    tracker.wait().await;
    Ok(())
}

async fn connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    router: Router,
    limits: Limits,
    close: CancellationToken,
    stop: CancellationToken,
) {
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        let mut router = router.clone();
        async move { Ok::<_, Infallible>(router.call(req).await.unwrap_or_else(|e| match e {})) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(%peer, error = %e, "HTTP connection ended");
            }
            return;
        }
        _ = close.cancelled() => {}
        _ = stop.cancelled() => {}
    }
    conn.as_mut().graceful_shutdown();
    if let Err(e) = conn.await {
        tracing::debug!(%peer, error = %e, "HTTP connection ended");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_at_its_cap_recycles_its_oldest_connection() {
        let limits = Limits {
            connections: 10,
            per_client: 2,
            header_timeout: Duration::from_secs(1),
        };
        let mut open = Open::default();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let t0 = Instant::now();
        let (first, first_close) = open.admit(a, &limits, t0).unwrap();
        let (_, second_close) = open.admit(a, &limits, t0).unwrap();
        // Too young to recycle: the new one is refused.
        assert!(open.admit(a, &limits, t0 + GRACE / 2).is_none());
        assert!(!first_close.is_cancelled());
        let (_, third_close) = open.admit(a, &limits, t0 + GRACE).unwrap();
        assert!(first_close.is_cancelled());
        assert!(!second_close.is_cancelled() && !third_close.is_cancelled());
        assert_eq!(open.total, 2);
        // The recycled connection ending later changes nothing.
        open.close(a, first);
        assert_eq!(open.total, 2);
        assert!(open.admit(b, &limits, t0).is_some());
        assert_eq!(open.total, 3);
    }

    #[test]
    fn the_cap_in_all_refuses_new_connections() {
        let limits = Limits {
            connections: 3,
            per_client: 3,
            header_timeout: Duration::from_secs(1),
        };
        let mut open = Open::default();
        let ids: Vec<_> = (1..=3)
            .map(|i| {
                let ip = IpAddr::from([192, 0, 2, i]);
                (ip, open.admit(ip, &limits, Instant::now()).unwrap().0)
            })
            .collect();
        let late = "192.0.2.9".parse().unwrap();
        assert!(open.admit(late, &limits, Instant::now()).is_none());
        open.close(ids[0].0, ids[0].1);
        assert!(open.admit(late, &limits, Instant::now()).is_some());
        assert!(open.by_client.get(&ids[0].0).is_none());
    }
}
