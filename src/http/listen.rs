//! The HTTP listener: hyper HTTP/1 connections with a deadline for each request's
//! headers, and a cap on connections per client address and in all, so clients that
//! connect and say nothing (or trickle their headers) cannot hold the server's
//! sockets. `axum::serve` has neither, hence this loop.
//!
//! A client at its cap that connects again has its oldest idle connection (no
//! request in flight) closed, so the newest wins: a flood of idle connections from
//! one address keeps recycling its own slots, and a real browser behind the same
//! address still gets answered. While all of a client's connections are busy, and at
//! the cap in all, new connections are closed at once.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_service::Service;

use crate::config::HttpLimits as Limits;

/// One open connection: its requests in flight, and its close signal.
#[derive(Clone)]
struct Conn {
    id: u64,
    busy: Arc<AtomicUsize>,
    close: CancellationToken,
}

/// Open connections by client address, oldest first.
#[derive(Default)]
struct Open {
    next_id: u64,
    total: usize,
    by_client: HashMap<IpAddr, VecDeque<Conn>>,
}

impl Open {
    /// Registers a new connection, or None when it must be closed at once. At the
    /// client's cap its oldest idle connection is told to close.
    fn admit(&mut self, ip: IpAddr, limits: &Limits) -> Option<Conn> {
        if self.total >= limits.connections {
            return None;
        }
        let list = self.by_client.entry(ip).or_default();
        if list.len() >= limits.per_client.max(1) {
            let idle = list
                .iter()
                .position(|c| c.busy.load(Ordering::Acquire) == 0)?;
            if let Some(old) = list.remove(idle) {
                old.close.cancel();
                self.total -= 1;
            }
        }
        self.next_id += 1;
        let conn = Conn {
            id: self.next_id,
            busy: Arc::default(),
            close: CancellationToken::new(),
        };
        list.push_back(conn.clone());
        self.total += 1;
        Some(conn)
    }

    fn close(&mut self, ip: IpAddr, id: u64) {
        if let Some(list) = self.by_client.get_mut(&ip) {
            if let Some(i) = list.iter().position(|c| c.id == id) {
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
            .and_then(|mut o| o.admit(peer.ip(), &limits));
        let Some(conn) = admitted else {
            tracing::debug!(%peer, "HTTP connection refused: too many open");
            continue;
        };
        let router = router.clone();
        let open = open.clone();
        let stop = stop.clone();
        tracker.spawn(async move {
            let id = conn.id;
            connection(stream, peer, router, limits, conn, stop).await;
            if let Ok(mut o) = open.lock() {
                o.close(peer.ip(), id);
            }
        });
    }
    tracker.close();
    tracker.wait().await;
    Ok(())
}

/// Reads a request's whole body (at most [`super::MAX_BODY`] bytes) within `within`,
/// before any handler runs: a client that trickles a body cannot keep a
/// connection busy (busy ones are never recycled) or a handler waiting. 408 when
/// it is too slow, 413 when too large.
async fn read_body(
    req: hyper::Request<Incoming>,
    within: Duration,
) -> Result<axum::extract::Request, axum::response::Response> {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    use http_body_util::{BodyExt, LengthLimitError, Limited};
    let (parts, body) = req.into_parts();
    let refuse = |status, reason: &str| super::ApiError::new(status, reason).into_response();
    match tokio::time::timeout(within, Limited::new(body, super::MAX_BODY).collect()).await {
        Err(_) => Err(refuse(
            StatusCode::REQUEST_TIMEOUT,
            "the request's body did not arrive in time",
        )),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => Err(refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            "the request's body is too large",
        )),
        Ok(Err(_)) => Err(refuse(
            StatusCode::BAD_REQUEST,
            "the request's body could not be read",
        )),
        Ok(Ok(body)) => Ok(axum::extract::Request::from_parts(
            parts,
            axum::body::Body::from(body.to_bytes()),
        )),
    }
}

async fn connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    router: Router,
    limits: Limits,
    conn: Conn,
    stop: CancellationToken,
) {
    let Conn { busy, close, .. } = conn;
    let body_timeout = limits.body_timeout;
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let mut router = router.clone();
        let busy = busy.clone();
        busy.fetch_add(1, Ordering::AcqRel);
        async move {
            let response = match read_body(req, body_timeout).await {
                Ok(mut req) => {
                    req.extensions_mut().insert(ConnectInfo(peer));
                    router.call(req).await.unwrap_or_else(|e| match e {})
                }
                Err(refused) => refused,
            };
            busy.fetch_sub(1, Ordering::AcqRel);
            Ok::<_, Infallible>(response)
        }
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
    fn a_client_at_its_cap_recycles_its_oldest_idle_connection() {
        let limits = Limits {
            connections: 10,
            per_client: 2,
            header_timeout: Duration::from_secs(1),
            body_timeout: Duration::from_secs(1),
        };
        let mut open = Open::default();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let first = open.admit(a, &limits).unwrap();
        let second = open.admit(a, &limits).unwrap();
        // Both answering a request: the new one is refused.
        first.busy.store(1, Ordering::Release);
        second.busy.store(1, Ordering::Release);
        assert!(open.admit(a, &limits).is_none());
        // The second goes idle: it is the one recycled, not the busy first.
        second.busy.store(0, Ordering::Release);
        let third = open.admit(a, &limits).unwrap();
        assert!(second.close.is_cancelled());
        assert!(!first.close.is_cancelled() && !third.close.is_cancelled());
        assert_eq!(open.total, 2);
        // The recycled connection ending later changes nothing.
        open.close(a, second.id);
        assert_eq!(open.total, 2);
        assert!(open.admit(b, &limits).is_some());
        assert_eq!(open.total, 3);
    }

    #[test]
    fn the_cap_in_all_refuses_new_connections() {
        let limits = Limits {
            connections: 3,
            per_client: 3,
            header_timeout: Duration::from_secs(1),
            body_timeout: Duration::from_secs(1),
        };
        let mut open = Open::default();
        let ids: Vec<_> = (1..=3)
            .map(|i| {
                let ip = IpAddr::from([192, 0, 2, i]);
                (ip, open.admit(ip, &limits).unwrap().id)
            })
            .collect();
        let late = "192.0.2.9".parse().unwrap();
        assert!(open.admit(late, &limits).is_none());
        open.close(ids[0].0, ids[0].1);
        assert!(open.admit(late, &limits).is_some());
        assert!(!open.by_client.contains_key(&ids[0].0));
    }
}
