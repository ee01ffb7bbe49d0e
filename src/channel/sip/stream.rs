//! SIP over TCP, behind the same [`Guard`] as UDP.
//!
//! rsipstack's own TCP listener parses straight off the socket: a message it
//! cannot frame or parse closes the connection without a word, nothing limits
//! how many connections one address holds, and the per-source budgets and the
//! RFC 3261 checks of the UDP guard are skipped. So kefu accepts TCP itself:
//! [`Framer`] (sans-I/O) cuts the byte stream into messages by Content-Length
//! (RFC 3261 §18.3), every message goes through the [`Guard`], and what passes is
//! handed to the stack over an rsipstack channel connection, whose outgoing side
//! kefu writes back on the same TCP connection (responses, and requests inside
//! the dialogs that connection carries).
//!
//! A source that is not a trunk may hold [`PER_SOURCE`] connections; a message
//! begun must be complete within [`MESSAGE_TIME`] and a connection that carries
//! nothing for [`IDLE_TIME`] is closed, so slow or silent clients cannot hold the
//! listener's resources.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rsipstack::sip::SipMessage;
use rsipstack::sip::transport::Transport;
use rsipstack::transaction::endpoint::EndpointInnerRef;
use rsipstack::transport::channel::ChannelConnection;
use rsipstack::transport::{SipAddr, SipConnection, TransportEvent};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio_util::sync::CancellationToken;

use super::guard::{Checked, Guard, build_response};
use super::syntax;

/// The largest SIP message kefu reads from a stream, head and body.
pub const MAX_MESSAGE: usize = 64 * 1024;

/// How long a message may take to arrive once its first byte has.
pub const MESSAGE_TIME: Duration = Duration::from_secs(30);

/// How long a connection may carry nothing before it is closed. Clients keep a
/// connection they want open with CRLF pings (RFC 5626 §4.4.1), every 2 minutes or so.
pub const IDLE_TIME: Duration = Duration::from_secs(600);

/// How long a connection whose stream broke stays open for the answers to the
/// messages before the break.
const LINGER: Duration = Duration::from_millis(500);

/// Connections one address that is not a trunk may hold at once (a small office's
/// phones behind one NAT address).
pub const PER_SOURCE: usize = 16;

/// Connections from sources that are not trunks, all together.
pub const ALL_SOURCES: usize = 1024;

/// One thing cut out of the stream.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A whole message: head and exactly Content-Length bytes of body.
    Message(Vec<u8>),
    /// A CRLF CRLF keep-alive ping, to be answered with CRLF (RFC 5626 §3.5.1).
    Ping,
    /// The stream cannot be framed any further: answer `status` to the request
    /// whose head is given (if it is one) and close the connection.
    Broken {
        status: u16,
        reason: String,
        head: String,
    },
}

/// Cuts a SIP byte stream into messages (sans-I/O: bytes and time in, frames out).
#[derive(Debug, Default)]
pub struct Framer {
    buf: Vec<u8>,
    /// When the first byte of the pending message arrived.
    since: Option<Instant>,
}

impl Framer {
    /// Adds bytes read from the connection at `now`.
    pub fn push(&mut self, bytes: &[u8], now: Instant) {
        if self.buf.is_empty() && !bytes.is_empty() {
            self.since = Some(now);
        }
        self.buf.extend_from_slice(bytes);
    }

    /// When the pending message must be complete; `None` when nothing is pending.
    pub fn deadline(&self) -> Option<Instant> {
        self.since.map(|t| t + MESSAGE_TIME)
    }

    /// The next frame, if the bytes so far hold one.
    pub fn next(&mut self, now: Instant) -> Option<Frame> {
        let frame = self.cut();
        if self.buf.is_empty() {
            self.since = None;
        } else if matches!(frame, Some(Frame::Message(_) | Frame::Ping)) {
            self.since = Some(now);
        }
        frame
    }

    fn cut(&mut self) -> Option<Frame> {
        loop {
            if self.buf.starts_with(b"\r\n\r\n") {
                self.buf.drain(..4);
                return Some(Frame::Ping);
            }
            if b"\r\n\r\n".starts_with(&self.buf) {
                return None; // nothing, or the start of a ping
            }
            if self.buf.starts_with(b"\r\n") {
                // A CRLF before a start line is ignored (RFC 3261 §7.5), as is a pong.
                self.buf.drain(..2);
                continue;
            }
            break;
        }
        let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            if self.buf.len() > MAX_MESSAGE {
                return Some(self.broken(
                    513,
                    format!("no end of headers in {MAX_MESSAGE} bytes"),
                    self.buf.len(),
                ));
            }
            return None;
        };
        let length = match content_length(&self.buf[..end]) {
            Ok(n) => n,
            Err(reason) => return Some(self.broken(400, reason, end)),
        };
        let total = end + 4 + length;
        if total > MAX_MESSAGE {
            return Some(self.broken(
                513,
                format!("a message of {total} bytes: larger than kefu reads ({MAX_MESSAGE})"),
                end,
            ));
        }
        if self.buf.len() < total {
            return None;
        }
        let rest = self.buf.split_off(total);
        Some(Frame::Message(std::mem::replace(&mut self.buf, rest)))
    }

    fn broken(&mut self, status: u16, reason: String, head_end: usize) -> Frame {
        let head = String::from_utf8_lossy(&self.buf[..head_end.min(self.buf.len())]).into_owned();
        self.buf.clear();
        self.since = None;
        Frame::Broken {
            status,
            reason,
            head,
        }
    }
}

/// The Content-Length of a message head, which a stream needs to find where the
/// message ends (RFC 3261 §18.3: it MUST be present over TCP).
fn content_length(head: &[u8]) -> Result<usize, String> {
    let head = String::from_utf8_lossy(head);
    let mut found: Option<usize> = None;
    for line in head.split("\r\n").skip(1) {
        if line.starts_with([' ', '\t']) {
            continue; // a folded continuation
        }
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if syntax::long_name(name.trim()) != "content-length" {
            continue;
        }
        let value = value.trim();
        let n: usize = value
            .parse()
            .ok()
            .filter(|_| value.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| format!("Content-Length {value:?} is not a number"))?;
        if found.is_some_and(|f| f != n) {
            return Err("several Content-Length values".into());
        }
        found = Some(n);
    }
    found.ok_or_else(|| "no Content-Length: a message over TCP must have one".into())
}

/// The TCP listener's share of the guard: who holds how many connections.
pub struct Openings {
    guard: Arc<Guard>,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection counted against its source; uncounted when dropped.
pub struct Opened {
    openings: Arc<Openings>,
    ip: Option<IpAddr>,
}

impl Drop for Opened {
    fn drop(&mut self) {
        let Some(ip) = self.ip else { return };
        let mut open = crate::lock(&self.openings.open);
        if let Some(n) = open.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&ip);
            }
        }
    }
}

impl Openings {
    pub fn new(guard: Arc<Guard>) -> Arc<Self> {
        Arc::new(Self {
            guard,
            open: Mutex::default(),
        })
    }

    /// Counts a new connection from `ip`, or refuses it (`None`) when its source,
    /// or all sources together, already hold as many as they may. Trunks are not
    /// counted.
    pub fn open(self: &Arc<Self>, ip: IpAddr) -> Option<Opened> {
        if self.guard.is_trunk(ip) {
            return Some(Opened {
                openings: self.clone(),
                ip: None,
            });
        }
        let mut open = crate::lock(&self.open);
        let all: usize = open.values().sum();
        let mine = open.get(&ip).copied().unwrap_or(0);
        if mine >= PER_SOURCE || all >= ALL_SOURCES {
            return None;
        }
        open.insert(ip, mine + 1);
        Some(Opened {
            openings: self.clone(),
            ip: Some(ip),
        })
    }
}

/// Accepts SIP/TCP connections until `stop` is cancelled.
pub async fn serve(
    listener: tokio::net::TcpListener,
    endpoint: EndpointInnerRef,
    openings: Arc<Openings>,
    stop: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors, most likely: wait rather than spin.
                tracing::warn!(error = %e, "cannot accept a SIP/TCP connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(opened) = openings.open(peer.ip()) else {
            crate::metrics::metrics().sip_refused.inc();
            if openings.guard.may_log() {
                tracing::info!(%peer, "SIP/TCP connection refused: too many from this address");
            }
            continue; // dropping the stream closes it
        };
        let endpoint = endpoint.clone();
        let guard = openings.guard.clone();
        let stop = stop.child_token();
        tokio::spawn(async move {
            let _opened = opened;
            if let Err(e) = connection(stream, peer, endpoint, guard, stop).await {
                tracing::debug!(%peer, error = %e, "SIP/TCP connection ended");
            }
        });
    }
}

/// Serves one connection: frames, guards and hands messages to the stack, and
/// writes the stack's messages back.
async fn connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    endpoint: EndpointInnerRef,
    guard: Arc<Guard>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let (mut reader, writer) = stream.into_split();
    let writer = Arc::new(tokio::sync::Mutex::new(writer));
    let (to_stack, from_edge) = tokio::sync::mpsc::unbounded_channel();
    let (to_edge, mut from_stack) = tokio::sync::mpsc::unbounded_channel();
    let remote = SipAddr {
        r#type: Some(Transport::Tcp),
        addr: peer.into(),
    };
    let channel = ChannelConnection::create_connection(
        from_edge,
        to_edge,
        remote.clone(),
        Some(stop.child_token()),
    )
    .await?;
    let conn = SipConnection::Channel(channel);
    endpoint.transport_layer.add_connection(conn.clone());

    // The stack's messages for this peer go out on this connection.
    let done = stop.child_token();
    let out = writer.clone();
    let out_done = done.clone();
    tokio::spawn(async move {
        loop {
            let event = tokio::select! {
                _ = out_done.cancelled() => return,
                e = from_stack.recv() => e,
            };
            let Some(TransportEvent::Incoming(msg, ..)) = event else {
                if event.is_none() {
                    return;
                }
                continue;
            };
            if write(&out, &msg.to_bytes()).await.is_err() {
                out_done.cancel();
                return;
            }
        }
    });

    let result = read_loop(
        &mut reader,
        peer,
        &remote,
        &conn,
        &writer,
        &guard,
        &to_stack,
        &done,
    )
    .await;
    done.cancel();
    drop(to_stack); // ends the channel's serve loop: the stack retires the connection
    endpoint.transport_layer.remove_connection(&conn);
    let _ = writer.lock().await.shutdown().await;
    result
}

#[allow(clippy::too_many_arguments)]
async fn read_loop(
    reader: &mut tokio::net::tcp::OwnedReadHalf,
    peer: SocketAddr,
    remote: &SipAddr,
    conn: &SipConnection,
    writer: &tokio::sync::Mutex<OwnedWriteHalf>,
    guard: &Guard,
    to_stack: &tokio::sync::mpsc::UnboundedSender<TransportEvent>,
    done: &CancellationToken,
) -> anyhow::Result<()> {
    let mut framer = Framer::default();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let wait = framer
            .deadline()
            .unwrap_or_else(|| Instant::now() + IDLE_TIME);
        let read = tokio::select! {
            _ = done.cancelled() => return Ok(()),
            r = tokio::time::timeout_at(wait.into(), reader.read(&mut buf)) => r,
        };
        let n = match read {
            Err(_) => anyhow::bail!("nothing complete within the time allowed"),
            Ok(Ok(0)) => return Ok(()),
            Ok(Ok(n)) => n,
            Ok(Err(e)) => return Err(e.into()),
        };
        let now = Instant::now();
        framer.push(&buf[..n], now);
        while let Some(frame) = framer.next(now) {
            match frame {
                Frame::Ping => write(writer, b"\r\n").await?,
                Frame::Broken {
                    status,
                    reason,
                    head,
                } => {
                    let is_request = head
                        .as_bytes()
                        .first()
                        .is_some_and(|b| syntax::is_token_char(*b))
                        && !head.starts_with("SIP/");
                    if guard.may_log() {
                        tracing::info!(%peer, status, %reason, "SIP/TCP stream cannot be read on");
                    }
                    if is_request {
                        write(writer, &build_response(&head, status, &reason, None)).await?;
                    }
                    // Messages before this one may still be answered by the stack:
                    // let those answers go out before the connection closes.
                    tokio::time::sleep(LINGER).await;
                    anyhow::bail!(reason);
                }
                Frame::Message(bytes) => match guard.check(peer, &bytes) {
                    Checked::Pass(message) => {
                        let msg = match SipMessage::try_from(&message[..]) {
                            Ok(m) => SipConnection::update_msg_received(m, peer, Transport::Tcp)?,
                            Err(e) => {
                                tracing::debug!(%peer, error = %e, "SIP message the stack cannot read");
                                continue;
                            }
                        };
                        to_stack.send(TransportEvent::Incoming(
                            msg,
                            conn.clone(),
                            remote.clone(),
                        ))?;
                    }
                    Checked::Reject(response) => write(writer, &response).await?,
                    Checked::Drop => {}
                },
            }
        }
    }
}

async fn write(writer: &tokio::sync::Mutex<OwnedWriteHalf>, bytes: &[u8]) -> std::io::Result<()> {
    let mut w = writer.lock().await;
    w.write_all(bytes).await?;
    w.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(framer: &mut Framer, now: Instant) -> Vec<Frame> {
        std::iter::from_fn(|| framer.next(now)).collect()
    }

    const OPTIONS: &[u8] = b"OPTIONS sip:k@h SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nContent-Length: 0\r\n\r\n";

    #[test]
    fn messages_are_cut_by_content_length_however_the_bytes_arrive() {
        let t = Instant::now();
        let body = b"v=0\r\n";
        let mut with_body = b"MESSAGE sip:k@h SIP/2.0\r\nl: 5\r\n\r\n".to_vec();
        with_body.extend_from_slice(body);
        let mut stream = OPTIONS.to_vec();
        stream.extend_from_slice(&with_body);
        stream.extend_from_slice(OPTIONS);
        // All at once, and one byte at a time.
        let mut f = Framer::default();
        f.push(&stream, t);
        let whole = all(&mut f, t);
        let mut f = Framer::default();
        let mut bytewise = Vec::new();
        for b in &stream {
            f.push(std::slice::from_ref(b), t);
            bytewise.extend(all(&mut f, t));
        }
        let want = vec![
            Frame::Message(OPTIONS.to_vec()),
            Frame::Message(with_body),
            Frame::Message(OPTIONS.to_vec()),
        ];
        assert_eq!(whole, want);
        assert_eq!(bytewise, want);
        assert_eq!(f.deadline(), None);
    }

    #[test]
    fn pings_are_told_from_stray_line_ends() {
        let t = Instant::now();
        let mut f = Framer::default();
        f.push(b"\r\n", t);
        assert_eq!(f.next(t), None, "maybe the start of a ping");
        f.push(b"\r\n", t);
        assert_eq!(f.next(t), Some(Frame::Ping));
        f.push(b"\r\n", t);
        f.push(OPTIONS, t);
        assert_eq!(all(&mut f, t), vec![Frame::Message(OPTIONS.to_vec())]);
    }

    #[test]
    fn a_stream_that_cannot_be_framed_is_broken_with_a_reason() {
        let t = Instant::now();
        for (head, status, why) in [
            (
                "INVITE sip:k@h SIP/2.0\r\nCSeq: 1 INVITE\r\n\r\n",
                400,
                "no Content-Length",
            ),
            (
                "INVITE sip:k@h SIP/2.0\r\nContent-Length: -3\r\n\r\n",
                400,
                "not a number",
            ),
            (
                "INVITE sip:k@h SIP/2.0\r\nContent-Length: 3\r\nl: 4\r\n\r\n",
                400,
                "several",
            ),
            (
                "INVITE sip:k@h SIP/2.0\r\nContent-Length: 99999999999999999999\r\n\r\n",
                400,
                "not a number",
            ),
            (
                "INVITE sip:k@h SIP/2.0\r\nContent-Length: 70000\r\n\r\n",
                513,
                "larger",
            ),
        ] {
            let mut f = Framer::default();
            f.push(head.as_bytes(), t);
            match f.next(t) {
                Some(Frame::Broken {
                    status: s,
                    reason,
                    head: h,
                }) => {
                    assert_eq!(s, status, "{head}");
                    assert!(reason.contains(why), "{head}: {reason}");
                    assert!(h.starts_with("INVITE sip:k@h"), "{h}");
                }
                other => panic!("{head}: {other:?}"),
            }
            assert_eq!(f.next(t), None);
        }
        // Headers that never end.
        let mut f = Framer::default();
        f.push(&vec![b'a'; MAX_MESSAGE + 1], t);
        assert!(matches!(f.next(t), Some(Frame::Broken { status: 513, .. })));
    }

    #[test]
    fn a_message_begun_must_end_in_time() {
        let t = Instant::now();
        let mut f = Framer::default();
        assert_eq!(f.deadline(), None);
        f.push(&OPTIONS[..10], t);
        assert_eq!(f.next(t), None);
        assert_eq!(f.deadline(), Some(t + MESSAGE_TIME));
        let later = t + Duration::from_secs(5);
        let mut rest = OPTIONS[10..].to_vec();
        rest.extend_from_slice(b"OPT");
        f.push(&rest, later);
        assert_eq!(f.next(later), Some(Frame::Message(OPTIONS.to_vec())));
        // The next message's clock starts when the last one was cut.
        assert_eq!(f.deadline(), Some(later + MESSAGE_TIME));
    }

    #[test]
    fn a_source_holds_a_bounded_number_of_connections() {
        let trunk: IpAddr = "10.0.0.1".parse().unwrap();
        let guard = Arc::new(Guard::new(super::super::guard::SourceLimits::new(
            Default::default(),
            vec![trunk],
        )));
        let openings = Openings::new(guard);
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let held: Vec<Opened> = (0..PER_SOURCE).map_while(|_| openings.open(ip)).collect();
        assert_eq!(held.len(), PER_SOURCE);
        assert!(openings.open(ip).is_none());
        assert!(openings.open("192.0.2.8".parse().unwrap()).is_some());
        let trunk_held: Vec<Opened> = (0..100).map_while(|_| openings.open(trunk)).collect();
        assert_eq!(trunk_held.len(), 100, "trunks are not counted");
        drop(held);
        assert!(
            openings.open(ip).is_some(),
            "closing frees the source's places"
        );
        assert!(crate::lock(&openings.open).is_empty());
    }
}
