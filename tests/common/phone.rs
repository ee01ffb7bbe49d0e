//! A desk phone written out over raw UDP, for the transfer tests and benchmarks:
//! it registers with SHA-256 digest (RFC 7616 arithmetic), answers kefu's INVITE,
//! presses keys as RFC 4733 events and keeps the RTP it receives.

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use kefu::media::g711::Law;

use super::{RawUa, Server};

pub const PHONE_SECRET: &str = "agent-phone-secret";

/// The demo plans, with agents available at any hour (the demo's own hours would
/// make the test depend on the time of day), and no survey after the agent: the
/// caller is hung up with the agent.
pub fn always_open_plans(dir: &Path) {
    open_plans(dir, false);
}

/// The demo plans open at any hour, with the survey after the agent.
pub fn always_open_plans_with_survey(dir: &Path) {
    open_plans(dir, true);
}

fn open_plans(dir: &Path, survey: bool) {
    for lang in ["en", "zh"] {
        let name = format!("demo-{lang}.toml");
        let text = std::fs::read_to_string(super::repo().join("dialplans").join(&name)).unwrap();
        let open = "open = [\"mon-fri 09:00-18:00\", \"sat 10:00-16:00\"]";
        assert!(text.contains(open), "the demo's opening hours moved");
        let after = "after = \"survey\"\n";
        assert!(text.contains(after), "the demo's survey moved");
        let text = if survey {
            text
        } else {
            // The survey's nodes go too (an unreachable node is an error).
            let (start, end) = (
                text.find("[nodes.survey]").unwrap(),
                text.find("[nodes.goodbye]").unwrap(),
            );
            format!("{}{}", &text[..start], &text[end..]).replace(after, "")
        };
        std::fs::write(
            dir.join(&name),
            text.replace(open, "open = [\"daily 00:00-24:00\"]")
                .replace(
                    "closed_dates = [\"2026-10-01\", \"2027-02-17\"]",
                    "closed_dates = []",
                ),
        )
        .unwrap();
    }
}

/// An agent user with a phone: `kefu users add` and `kefu agents add` with a SIP
/// password.
pub fn add_agent_with_phone(server: &Server, user: &str, extension: &str, queues: &str) {
    let (ok, _, err) = server.kefu_with_input(
        &["users", "add", user, "--role", "agent", "--password-stdin"],
        "a long enough password\n",
    );
    assert!(ok, "{err}");
    let (ok, _, err) = server.kefu_with_input(
        &[
            "agents",
            "add",
            user,
            "--extension",
            extension,
            "--queues",
            queues,
            "--user",
            user,
            "--password-stdin",
        ],
        &format!("{PHONE_SECRET}\n"),
    );
    assert!(ok, "{err}");
}

/// Signs the agent in on the desk and makes them available.
pub async fn available(server: &Server, user: &str) {
    set_available(server, user, true).await;
}

/// Signs the agent in on the desk and sets them available or away.
pub async fn set_available(server: &Server, user: &str, available: bool) {
    let (cookie, csrf) = server.sign_in(user, "a long enough password").await;
    let r = reqwest::Client::new()
        .post(format!("http://{}/api/agent/state", server.http))
        .header("cookie", cookie)
        .header("x-csrf-token", csrf)
        .json(&serde_json::json!({ "available": available }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

pub fn sha256(text: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

/// The Authorization header (SHA-256, RFC 7616) answering `challenge` for the
/// agent `extension`.
pub fn authorization(extension: &str, uri: &str, method: &str, challenge: &str) -> String {
    let nonce = challenge
        .split("nonce=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let ha1 = sha256(&format!("{extension}:kefu:{PHONE_SECRET}"));
    let ha2 = sha256(&format!("{method}:{uri}"));
    let response = sha256(&format!("{ha1}:{nonce}:00000001:feed:auth:{ha2}"));
    format!(
        "Authorization: Digest username=\"{extension}\", realm=\"kefu\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{response}\", algorithm=SHA-256, qop=auth, nc=00000001, cnonce=\"feed\"\r\n"
    )
}

pub fn header(msg: &str, name: &str) -> Option<String> {
    msg.lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim().to_string())
}

/// Where an SDP body asks for RTP.
pub fn sdp_target(msg: &str) -> SocketAddr {
    let ip = msg
        .lines()
        .find_map(|l| l.strip_prefix("c=IN IP4 "))
        .unwrap()
        .trim();
    let port = msg
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .unwrap()
        .split(' ')
        .next()
        .unwrap();
    format!("{ip}:{port}").parse().unwrap()
}

pub fn rtp(pt: u8, seq: u16, ts: u32, marker: bool, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, pt | if marker { 0x80 } else { 0 }];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&0x0a9e_0001u32.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// A distinctive 20 ms frame: packet `i` of a party's stream (`salt` tells the
/// parties apart).
pub fn frame(i: usize, salt: u8) -> Vec<u8> {
    (0..160).map(|j| ((i * 31 + j * 7) as u8) ^ salt).collect()
}

/// A key press as RFC 4733 events with payload type `pt` (three updates, three
/// end packets).
pub fn press(sock: &UdpSocket, pt: u8, to: SocketAddr, key: u8, seq: &mut u16) {
    let ts = 4000 + u32::from(*seq) * 160;
    for (i, duration) in [160u16, 320, 480, 640, 640, 640].iter().enumerate() {
        let end = if i >= 3 { 0x80 } else { 0 };
        let payload = [key, end | 10, (duration >> 8) as u8, *duration as u8];
        sock.send_to(&rtp(pt, *seq, ts, i == 0, &payload), to)
            .unwrap();
        *seq = seq.wrapping_add(1);
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn transcode(from: Law, to: Law, payload: &[u8]) -> Vec<u8> {
    let mut pcm = vec![0i16; payload.len()];
    from.decode(payload, &mut pcm);
    let mut out = vec![0u8; payload.len()];
    to.encode(&pcm, &mut out);
    out
}

/// An agent's desk phone written out over raw UDP: registers with SHA-256 digest,
/// answers kefu's INVITE with PCMA only (so kefu must transcode the caller's PCMU),
/// and keeps every RTP packet it receives.
pub struct Phone {
    pub ua: RawUa,
    pub extension: String,
}

impl Phone {
    pub fn register(server: &Server, extension: &str) -> Self {
        let ua = RawUa::new(server.sip);
        let uri = format!("sip:{}", server.sip);
        let request = |cseq: u32, auth: &str| {
            let to = format!("sip:{extension}@{}", server.sip);
            format!(
                "REGISTER {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKreg{cseq}\r\nFrom: <{to}>;tag=r{extension}\r\nTo: <{to}>\r\nCall-ID: reg-{extension}\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:{extension}@{local}>\r\nExpires: 600\r\n{auth}Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
                local = ua.local()
            )
        };
        ua.send(&request(1, ""));
        let challenge = header(
            &ua.expect_status(401, Duration::from_secs(5)),
            "WWW-Authenticate",
        )
        .unwrap();
        ua.send(&request(
            2,
            &authorization(extension, &uri, "REGISTER", &challenge),
        ));
        ua.expect_status(200, Duration::from_secs(5));
        Self {
            ua,
            extension: extension.to_string(),
        }
    }

    /// Dials `number` at kefu (a feature code), answering the digest challenge;
    /// returns the 200 OK after ACKing it.
    pub fn dial(&self, number: &str) -> String {
        let uri = format!("sip:{number}@{}", self.ua.server);
        let local = self.ua.local();
        let ext = &self.extension;
        static CALLS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let sdp = format!(
            "v=0\r\no=- 3 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n",
            self.ua.rtp.local_addr().unwrap().port()
        );
        let invite = |cseq: u32, auth: &str| {
            format!(
                "INVITE {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKfc{n}x{cseq}\r\nFrom: <sip:{ext}@{local}>;tag=fc{ext}\r\nTo: <{uri}>\r\nCall-ID: fc-{number}-{ext}-{n}\r\nCSeq: {cseq} INVITE\r\nContact: <sip:{ext}@{local}>\r\n{auth}Max-Forwards: 70\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
                sdp.len()
            )
        };
        self.ua.send(&invite(1, ""));
        let challenge = header(
            &self.ua.expect_status(401, Duration::from_secs(5)),
            "WWW-Authenticate",
        )
        .unwrap();
        self.ua
            .send(&invite(2, &authorization(ext, &uri, "INVITE", &challenge)));
        let ok = self.ua.expect_status(200, Duration::from_secs(10));
        self.ua.send(
            &self
                .ua
                .in_dialog(&ok, "ACK", 2, &format!("z9hG4bKfcack{n}")),
        );
        ok
    }

    /// Waits for kefu's INVITE; returns it.
    pub fn ringing(&self, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(m) = self.ua.recv(deadline - Instant::now())
                && m.starts_with("INVITE ")
            {
                return m;
            }
        }
        panic!("the agent's phone never rang");
    }

    pub fn respond(&self, invite: &str, status: &str, body: &str) {
        let mut reply = format!("SIP/2.0 {status}\r\n");
        for name in ["Via", "From", "Call-ID", "CSeq"] {
            reply.push_str(&format!("{name}: {}\r\n", header(invite, name).unwrap()));
        }
        reply.push_str(&format!(
            "To: {};tag=phone{}\r\nContact: <sip:{}@{}>\r\n",
            header(invite, "To").unwrap(),
            self.extension,
            self.extension,
            self.ua.local()
        ));
        if body.is_empty() {
            reply.push_str("Content-Length: 0\r\n\r\n");
        } else {
            reply.push_str(&format!(
                "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ));
        }
        self.ua.send(&reply);
    }

    /// Answers with PCMA and telephone-event 96 (not kefu's 101: events must be
    /// renumbered on the way through).
    pub fn answer(&self, invite: &str) {
        self.respond(invite, "180 Ringing", "");
        let sdp = format!(
            "v=0\r\no=- 7 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {} RTP/AVP 8 96\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:96 telephone-event/8000\r\na=fmtp:96 0-15\r\n",
            self.ua.rtp.local_addr().unwrap().port()
        );
        self.respond(invite, "200 OK", &sdp);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Some(m) = self.ua.recv(deadline - Instant::now())
                && m.starts_with("ACK ")
            {
                return;
            }
        }
        panic!("kefu did not ACK the agent's 200 OK");
    }

    /// RTP received within `timeout`, until `enough` says stop.
    pub fn collect(
        &self,
        timeout: Duration,
        mut enough: impl FnMut(&[Vec<u8>]) -> bool,
    ) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        let mut buf = [0u8; 2048];
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline && !enough(&got) {
            self.ua
                .rtp
                .set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            if let Ok((n, _)) = self.ua.rtp.recv_from(&mut buf) {
                got.push(buf[..n].to_vec());
            }
        }
        got
    }

    /// Presses `key` as RFC 4733 events (three updates, three end packets).
    pub fn press(&self, to: SocketAddr, key: u8, seq: &mut u16) {
        press(&self.ua.rtp, 96, to, key, seq);
    }

    pub fn hang_up(&self, invite: &str) {
        let from = header(invite, "From").unwrap();
        let to = format!(
            "{};tag=phone{}",
            header(invite, "To").unwrap(),
            self.extension
        );
        let contact = header(invite, "Contact").unwrap();
        let target = contact.trim_start_matches('<').split('>').next().unwrap();
        self.ua.send(&format!(
            "BYE {target} SIP/2.0\r\nVia: SIP/2.0/UDP {};branch=z9hG4bKbye1\r\nFrom: {to}\r\nTo: {from}\r\nCall-ID: {}\r\nCSeq: 1 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
            self.ua.local(),
            header(invite, "Call-ID").unwrap()
        ));
        self.ua.expect_status(200, Duration::from_secs(5));
    }
}
