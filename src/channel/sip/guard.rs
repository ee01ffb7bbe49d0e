//! The first look at every SIP datagram, before the SIP stack sees it.
//!
//! rsipstack drops what it cannot parse without a word and has no method token for
//! extensions it does not know, but RFC 3261 §8.2 wants a 400 naming the problem and
//! a 501 for unknown methods, so that a misconfigured trunk is told what is wrong.
//! This module decides that from the bytes alone (sans-I/O) and writes the response;
//! [`GuardedSocket`] applies it on the UDP socket the stack reads from.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rsipstack::sip::Method;
use rsipstack::sip::prelude::HeadersExt;

/// What to do with one datagram.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Hand it to the SIP stack.
    Pass,
    /// Ignore it (a broken response, or an ACK, which is never answered).
    Drop(String),
    /// Answer with this response and do not pass it on.
    Reject {
        status: u16,
        reason: String,
        response: Vec<u8>,
    },
}

const METHODS: &[&str] = &[
    "ACK",
    "BYE",
    "CANCEL",
    "INFO",
    "INVITE",
    "MESSAGE",
    "NOTIFY",
    "OPTIONS",
    "PRACK",
    "PUBLISH",
    "REFER",
    "REGISTER",
    "SUBSCRIBE",
    "UPDATE",
];

/// Judges one datagram.
pub fn inspect(datagram: &[u8]) -> Verdict {
    if datagram.iter().all(|b| b.is_ascii_whitespace()) {
        return Verdict::Pass; // keep-alive
    }
    let text = String::from_utf8_lossy(datagram);
    let head = text.split("\r\n\r\n").next().unwrap_or_default();
    let first = head.lines().next().unwrap_or_default().trim_end();
    if first.starts_with("SIP/") {
        return match rsipstack::sip::SipMessage::try_from(datagram) {
            Ok(_) => Verdict::Pass,
            Err(e) => Verdict::Drop(format!("malformed response: {e}")),
        };
    }
    let parts: Vec<&str> = first.split(' ').collect();
    let method = parts.first().copied().unwrap_or_default();
    let is_ack = method == "ACK";
    let reject = |status: u16, reason: String| {
        if is_ack {
            Verdict::Drop(reason)
        } else {
            let response = build_response(head, status, &reason);
            Verdict::Reject {
                status,
                reason,
                response,
            }
        }
    };
    if parts.len() != 3 || parts[2] != "SIP/2.0" || method.is_empty() {
        return reject(
            400,
            "malformed request line; expected `METHOD sip:uri SIP/2.0`".into(),
        );
    }
    if !method
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b))
    {
        return reject(400, format!("invalid method token {method:?}"));
    }
    if !METHODS.contains(&method) {
        return reject(501, format!("method {method} is not implemented"));
    }
    let req = match rsipstack::sip::Request::try_from(datagram) {
        Ok(r) => r,
        Err(e) => return reject(400, format!("unparsable request: {e}")),
    };
    if let Err(reason) = check_request(&req, datagram.len() - head.len()) {
        return reject(400, reason);
    }
    Verdict::Pass
}

/// Header rules the stack relies on but does not enforce.
fn check_request(req: &rsipstack::sip::Request, body_room: usize) -> Result<(), String> {
    let via = req
        .via_header()
        .map_err(|_| "missing Via header".to_string())?;
    if via.value().trim().is_empty() {
        return Err("empty Via header".into());
    }
    req.from_header()
        .map_err(|_| "missing From header".to_string())?;
    req.to_header()
        .map_err(|_| "missing To header".to_string())?;
    let call_id = req
        .call_id_header()
        .map_err(|_| "missing Call-ID header".to_string())?;
    if call_id.value().trim().is_empty() {
        return Err("empty Call-ID header".into());
    }
    let cseq = req
        .cseq_header()
        .map_err(|_| "missing CSeq header".to_string())?;
    cseq.seq()
        .map_err(|_| format!("CSeq {:?} has no valid number", cseq.value()))?;
    let method = cseq
        .method()
        .map_err(|_| format!("CSeq {:?} has no valid method", cseq.value()))?;
    if method != req.method {
        return Err(format!(
            "CSeq method {method} does not match request method {}",
            req.method
        ));
    }
    if let Some(len) = req.header_value("Content-Length") {
        let len: usize = len
            .trim()
            .parse()
            .map_err(|_| format!("Content-Length {len:?} is not a number"))?;
        // The separator (\r\n\r\n) is part of what follows the head.
        if len + 4 > body_room && len > 0 {
            return Err(format!(
                "Content-Length {len} is larger than the body received"
            ));
        }
    }
    if req.method == Method::Invite && !req.body.is_empty() {
        let ct = req.header_value("Content-Type").unwrap_or_default();
        if !ct.to_ascii_lowercase().starts_with("application/sdp") {
            return Err(format!("INVITE body must be application/sdp, not {ct:?}"));
        }
    }
    Ok(())
}

/// Writes a response from the raw header lines of a request that may not parse.
fn build_response(head: &str, status: u16, reason: &str) -> Vec<u8> {
    let phrase = match status {
        400 => "Bad Request",
        501 => "Not Implemented",
        _ => "Error",
    };
    let mut out = format!("SIP/2.0 {status} {phrase}\r\n");
    for line in head.lines().skip(1) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim().to_ascii_lowercase();
        let value = value.trim();
        match name.as_str() {
            "via" | "v" => out.push_str(&format!("Via: {value}\r\n")),
            "from" | "f" => out.push_str(&format!("From: {value}\r\n")),
            "to" | "t" if value.contains(";tag=") => out.push_str(&format!("To: {value}\r\n")),
            "to" | "t" => out.push_str(&format!("To: {value};tag=kefu-{status}\r\n")),
            "call-id" | "i" => out.push_str(&format!("Call-ID: {value}\r\n")),
            "cseq" => out.push_str(&format!("CSeq: {value}\r\n")),
            _ => {}
        }
    }
    let reason = reason.replace('"', "'");
    out.push_str(&format!(
        "Warning: 399 kefu \"{reason}\"\r\nServer: kefu/{}\r\nContent-Length: 0\r\n\r\n",
        env!("CARGO_PKG_VERSION")
    ));
    out.into_bytes()
}

/// Counters of what the guard turned away.
#[derive(Debug, Default)]
pub struct GuardStats {
    pub rejected: AtomicU64,
    pub dropped: AtomicU64,
}

/// The UDP socket the SIP stack reads from, with [`inspect`] in front of it.
pub struct GuardedSocket {
    inner: tokio::net::UdpSocket,
    pub stats: Arc<GuardStats>,
}

impl GuardedSocket {
    pub fn new(inner: tokio::net::UdpSocket) -> Self {
        Self {
            inner,
            stats: Arc::default(),
        }
    }
}

#[async_trait::async_trait]
impl rsipstack::platform::net::UdpSocket for GuardedSocket {
    async fn recv_from(&self, buf: &mut [u8]) -> rsipstack::Result<(usize, SocketAddr)> {
        loop {
            let (len, from) = self.inner.recv_from(buf).await?;
            match inspect(&buf[..len]) {
                Verdict::Pass => return Ok((len, from)),
                Verdict::Drop(why) => {
                    self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%from, %why, "SIP datagram dropped");
                }
                Verdict::Reject {
                    status,
                    reason,
                    response,
                } => {
                    self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(%from, status, %reason, "SIP request rejected");
                    if let Err(e) = self.inner.send_to(&response, from).await {
                        tracing::warn!(%from, error = %e, "cannot send SIP rejection");
                    }
                }
            }
        }
    }

    async fn send_to(&self, buf: &[u8], addr: SocketAddr) -> rsipstack::Result<usize> {
        Ok(self.inner.send_to(buf, addr).await?)
    }

    fn local_addr(&self) -> rsipstack::Result<SocketAddr> {
        Ok(self.inner.local_addr()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "OPTIONS sip:kefu@127.0.0.1 SIP/2.0\r\n\
        Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1\r\nFrom: <sip:a@127.0.0.1>;tag=1\r\n\
        To: <sip:kefu@127.0.0.1>\r\nCall-ID: abc\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";

    fn status(v: &Verdict) -> Option<u16> {
        match v {
            Verdict::Reject { status, .. } => Some(*status),
            _ => None,
        }
    }

    #[test]
    fn passes_good_requests_and_keepalives() {
        assert_eq!(inspect(GOOD.as_bytes()), Verdict::Pass);
        assert_eq!(inspect(b"\r\n\r\n"), Verdict::Pass);
    }

    #[test]
    fn rejects_with_reasons() {
        let cases = [
            (GOOD.replace("CSeq: 1 OPTIONS\r\n", ""), 400, "CSeq"),
            (
                GOOD.replace("CSeq: 1 OPTIONS", "CSeq: 1 INVITE"),
                400,
                "does not match",
            ),
            (GOOD.replace("Call-ID: abc\r\n", ""), 400, "Call-ID"),
            (
                GOOD.replace("SIP/2.0\r\nVia", "SIP/3.0\r\nVia"),
                400,
                "request line",
            ),
            (
                GOOD.replace("OPTIONS sip", "FROB sip")
                    .replace("1 OPTIONS", "1 FROB"),
                501,
                "FROB",
            ),
            (
                GOOD.replace("Content-Length: 0", "Content-Length: 500"),
                400,
                "Content-Length",
            ),
            ("garbage\r\n\r\n".to_string(), 400, "request line"),
        ];
        for (msg, want, word) in cases {
            let v = inspect(msg.as_bytes());
            assert_eq!(status(&v), Some(want), "{msg}");
            let Verdict::Reject {
                reason, response, ..
            } = v
            else {
                unreachable!()
            };
            assert!(reason.contains(word), "{reason}");
            let resp = String::from_utf8(response).unwrap();
            assert!(resp.starts_with(&format!("SIP/2.0 {want} ")), "{resp}");
            assert!(resp.contains("Warning: 399 kefu"), "{resp}");
        }
    }

    #[test]
    fn response_copies_dialog_headers() {
        let msg = GOOD.replace("CSeq: 1 OPTIONS", "CSeq: 1 INVITE");
        let Verdict::Reject { response, .. } = inspect(msg.as_bytes()) else {
            panic!()
        };
        let resp = String::from_utf8(response).unwrap();
        assert!(resp.contains("Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1\r\n"));
        assert!(resp.contains("Call-ID: abc\r\n"));
        assert!(resp.contains("To: <sip:kefu@127.0.0.1>;tag=kefu-400\r\n"));
    }

    #[test]
    fn never_answers_an_ack_or_a_broken_response() {
        let ack = GOOD
            .replace("OPTIONS sip", "ACK sip")
            .replace("1 OPTIONS", "1 INVITE");
        assert!(matches!(inspect(ack.as_bytes()), Verdict::Drop(_)));
        assert!(matches!(
            inspect(b"SIP/2.0 abc OK\r\nVia\r\n\r\n"),
            Verdict::Drop(_)
        ));
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut seed = 7u32;
        for len in 0..400 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed = seed.wrapping_mul(1103515245).wrapping_add(12345);
                    (seed >> 16) as u8
                })
                .collect();
            let _ = inspect(&bytes);
            let mut mangled = GOOD.as_bytes().to_vec();
            if !mangled.is_empty() {
                let i = len % mangled.len();
                mangled[i] = (seed >> 8) as u8;
            }
            let _ = inspect(&mangled);
        }
    }
}
