//! Attacks from the network, each as an attacker on loopback would make it, against
//! a real server: taking over a call's media, calling in from outside the trunk,
//! bursts of conversations from one address, and idle connections. (The SMS webhook
//! without its token and verification-code pumping are in tests/chat.rs, beside the
//! fake SMS gateway.)

mod common;

use std::io::Read;
use std::net::{TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use common::phone::{rtp, sdp_target};
use common::{RawUa, Server};

const T: Duration = Duration::from_secs(5);

/// RTP packets waiting on a non-blocking socket.
fn drain(sock: &UdpSocket) -> usize {
    let mut buf = [0u8; 2048];
    let mut n = 0;
    while sock.recv_from(&mut buf).is_ok() {
        n += 1;
    }
    n
}

/// A second source sends RTP (in sequence, like a real stream) to a live call's
/// media port while the caller keeps talking: kefu keeps the caller's media and
/// never sends the attacker a packet.
#[test]
fn a_second_source_cannot_take_over_a_calls_media() {
    let server = Server::start(Some(&common::dtmf_plans()));
    let ua = RawUa::new(server.sip);
    let ok = ua.answered_call("bleed-1", "kefu-en");
    let media = sdp_target(&ok);
    let attacker = UdpSocket::bind("127.0.0.1:0").unwrap();
    attacker.set_nonblocking(true).unwrap();
    ua.rtp.set_nonblocking(true).unwrap();
    let silence = [0xffu8; 160];
    let (mut to_caller, mut to_attacker) = (0, 0);
    let started = Instant::now();
    let mut seq = 0u16;
    while started.elapsed() < Duration::from_millis(2500) {
        ua.rtp
            .send_to(&rtp(0, seq, u32::from(seq) * 160, false, &silence), media)
            .unwrap();
        // The attacker's own stream, also in sequence.
        attacker
            .send_to(
                &rtp(0, 1000 + seq, u32::from(seq) * 160, false, &silence),
                media,
            )
            .unwrap();
        seq += 1;
        std::thread::sleep(Duration::from_millis(20));
        to_caller += drain(&ua.rtp);
        to_attacker += drain(&attacker);
    }
    assert_eq!(to_attacker, 0, "kefu sent the call's audio to the attacker");
    assert!(to_caller > 50, "the caller heard only {to_caller} packets");
    ua.send(&ua.in_dialog(&ok, "BYE", 2, "z9hG4bK-bleed-bye"));
    ua.expect_status(200, T);
}

/// With a trunk configured, an INVITE from anywhere else is refused (403); the lab
/// setting opens it again.
#[test]
fn invites_come_from_the_trunk_once_one_is_configured() {
    let trunk = "[[trunk]]\nname = \"carrier\"\naddresses = [\"192.0.2.10\"]\n";
    let server = Server::start_with(Some(&common::dtmf_plans()), trunk);
    let ua = RawUa::new(server.sip);
    ua.send(&ua.invite("outsider-1", "z9hG4bK-out1", "kefu-en"));
    let refused = ua.expect_status(403, T);
    assert!(refused.contains("trunk"), "{refused}");
    assert!(server.records().is_empty(), "a refused call left a record");

    let open = Server::start_with(
        Some(&common::dtmf_plans()),
        &format!("sip_open = true\n{trunk}"),
    );
    let ua = RawUa::new(open.sip);
    let ok = ua.answered_call("lab-1", "kefu-en");
    ua.send(&ua.in_dialog(&ok, "BYE", 2, "z9hG4bK-lab-bye"));
    ua.expect_status(200, T);
}

/// A client sends a request's headers, then its body a byte at a time (slowloris on
/// the body): it gets 408 when the body deadline passes, not a connection held open.
#[test]
fn a_body_sent_too_slowly_gets_408() {
    use std::io::Write;
    let s = Server::start_with(Some(&common::dtmf_plans()), "http_body_timeout = \"1s\"\n");
    let mut c = TcpStream::connect(s.http).unwrap();
    c.write_all(
        b"POST /api/chat/conversations HTTP/1.1\r\nHost: kefu\r\n\
          Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
    )
    .unwrap();
    let started = Instant::now();
    c.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while started.elapsed() < Duration::from_secs(5) && !got.ends_with(b"}") {
        // One more byte now and then: never enough to finish.
        let _ = c.write_all(b" ");
        match c.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) => continue,
        }
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("did not arrive in time"), "{text}");
}

/// One address that is not a trunk sends 200 new INVITEs at once (lab setting, so
/// they would all be taken): it gets its burst of new calls and the rest are
/// dropped unread; another address is still answered.
#[test]
fn a_flood_of_invites_from_one_address_is_cut_off() {
    let server = Server::start_with(Some(&common::dtmf_plans()), "sip_open = true\n");
    let ua = RawUa::new(server.sip);
    // To a number no plan answers: each one that gets through is answered 404 at once.
    for i in 0..200 {
        ua.send(&ua.invite(
            &format!("flood-{i}"),
            &format!("z9hG4bK-flood-{i}"),
            "nobody",
        ));
    }
    ua.sock
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 4096];
    let mut answered = 0;
    let end = Instant::now() + Duration::from_secs(2);
    while Instant::now() < end {
        if let Ok((n, _)) = ua.sock.recv_from(&mut buf)
            && String::from_utf8_lossy(&buf[..n]).starts_with("SIP/2.0 404")
        {
            answered += 1;
        }
    }
    // A burst of 20 new calls, then 5 a second.
    assert!((15..=40).contains(&answered), "{answered} of 200 answered");
    // Another source is not held back.
    let other = RawUa {
        sock: UdpSocket::bind("127.0.0.2:0").unwrap(),
        server: server.sip,
        rtp: UdpSocket::bind("127.0.0.2:0").unwrap(),
    };
    other.send(&other.invite("other-1", "z9hG4bK-other-1", "nobody"));
    other.expect_status(404, T);
}

/// SIP over TCP passes the same guard as UDP: one address holds a bounded number of
/// connections, its INVITEs spend the same budget, and a stream that cannot be
/// framed (no Content-Length) is answered 400 and closed.
#[test]
fn sip_over_tcp_is_held_to_the_same_limits() {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    let server = Server::start_with(Some(&common::dtmf_plans()), "sip_open = true\n");
    let connect = || {
        let c = TcpStream::connect(server.sip).unwrap();
        c.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        c
    };
    let mut held: Vec<TcpStream> = (0..16).map(|_| connect()).collect();
    // The 17th is closed by kefu at once (the kernel accepted it; kefu did not).
    let mut extra = connect();
    extra
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let mut byte = [0u8; 1];
    assert!(
        matches!(extra.read(&mut byte), Ok(0) | Err(_)),
        "a 17th connection from one address is closed"
    );
    let invite = |i: usize| {
        format!(
            "INVITE sip:nobody@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5999;branch=z9hG4bK-tcp-{i}\r\n\
             From: <sip:13900139000@127.0.0.1>;tag=t{i}\r\nTo: <sip:nobody@127.0.0.1>\r\n\
             Call-ID: tcp-flood-{i}\r\nCSeq: 1 INVITE\r\nContact: <sip:13900139000@127.0.0.1:5999;transport=tcp>\r\n\
             Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
    };
    let flood: String = (0..200).map(invite).collect();
    held[0].write_all(flood.as_bytes()).unwrap();
    let mut got = Vec::new();
    let end = Instant::now() + Duration::from_secs(2);
    let mut buf = [0u8; 65536];
    while Instant::now() < end {
        if let Ok(n) = held[0].read(&mut buf) {
            got.extend_from_slice(&buf[..n]);
        }
    }
    let answered = String::from_utf8_lossy(&got).matches("SIP/2.0 404").count();
    assert!((15..=40).contains(&answered), "{answered} of 200 answered");
    // Framing lost: 400 with the reason, then the connection is closed.
    let mut c = held.pop().unwrap();
    c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    c.write_all(
        b"OPTIONS sip:kefu@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5999;branch=z9hG4bK-nocl\r\n\
          From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:kefu@127.0.0.1>\r\nCall-ID: nocl\r\nCSeq: 1 OPTIONS\r\n\
          Max-Forwards: 70\r\n\r\n",
    )
    .unwrap();
    let mut answer = String::new();
    let _ = c.read_to_string(&mut answer);
    assert!(answer.starts_with("SIP/2.0 400"), "{answer}");
    assert!(answer.contains("Content-Length"), "{answer}");
    // Closing frees the address's places: a new connection is served.
    drop(held);
    drop(c);
    std::thread::sleep(Duration::from_millis(200));
    let mut fresh = connect();
    fresh
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    fresh
        .write_all(
            b"OPTIONS sip:kefu@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5999;branch=z9hG4bK-fresh\r\n\
              From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:kefu@127.0.0.1>\r\nCall-ID: fresh\r\nCSeq: 1 OPTIONS\r\n\
              Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        )
        .unwrap();
    let n = fresh.read(&mut buf).unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("SIP/2.0 200"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
}

/// One address opening hundreds of conversations at once gets its budget and then
/// 429 with Retry-After; another address is not affected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_conversations_from_one_address_is_cut_off() {
    let s = Server::start_with(
        Some(&common::dtmf_plans()),
        &format!("kb = {:?}\n", common::repo().join("dialplans/kb")),
    );
    let url = format!("http://{}/api/chat/conversations", s.http);
    let c = reqwest::Client::new();
    let tasks: Vec<_> = (0..300)
        .map(|_| {
            let c = c.clone();
            let url = url.clone();
            tokio::spawn(async move {
                match c.post(&url).json(&serde_json::json!({})).send().await {
                    Ok(r) => (
                        r.status().as_u16(),
                        r.headers().get("retry-after").is_some(),
                    ),
                    // Too many connections at once from one address: closed.
                    Err(_) => (0, false),
                }
            })
        })
        .collect();
    let (mut accepted, mut refused, mut closed) = (0, 0, 0);
    for t in tasks {
        match t.await.unwrap() {
            (0, _) => closed += 1,
            (s, _) if s < 300 => accepted += 1,
            (429, true) => refused += 1,
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert!((1..=20).contains(&accepted), "{accepted} accepted");
    assert!(
        refused > 0,
        "none refused with 429 ({closed} connections closed)"
    );
    // Someone else (another address) still starts a conversation.
    let other = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .unwrap();
    let r = other
        .post(&url)
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
}

/// Hundreds of connections that never send a request neither crowd out a real
/// client from the same address nor stay open past the header deadline.
#[test]
fn idle_connections_are_recycled_and_closed() {
    let s = Server::start_with(
        Some(&common::dtmf_plans()),
        "http_connections_per_client = 50\nhttp_header_timeout = \"2s\"\n",
    );
    let idle: Vec<TcpStream> = (0..300)
        .map(|_| TcpStream::connect(s.http).unwrap())
        .collect();
    let (status, _) = s.http_get("/healthz");
    assert_eq!(status, 200);
    // Past the deadline every idle connection has been closed by the server.
    std::thread::sleep(Duration::from_secs(3));
    let mut still_open = 0;
    for mut c in idle {
        c.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut buf = [0u8; 512];
        loop {
            match c.read(&mut buf) {
                // EOF: closed.
                Ok(0) => break,
                // A timeout answer before the close.
                Ok(_) => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    still_open += 1;
                    break;
                }
                // Reset: closed.
                Err(_) => break,
            }
        }
    }
    assert_eq!(still_open, 0, "{still_open} idle connections still open");
}

/// What kefu writes is for its own user only: the data directory 0700, the database
/// and everything else it creates there 0600 (customers' words are in them).
#[test]
fn customer_data_on_disk_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let s = Server::start(Some(&common::dtmf_plans()));
    let (status, _) = s.http_get("/healthz");
    assert_eq!(status, 200);
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&s.data()), 0o700);
    let mut seen = 0;
    for entry in std::fs::read_dir(s.data()).unwrap() {
        let p = entry.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        // The key file is the test's own (as an admin would place it).
        if name == "kefu.keys" {
            continue;
        }
        assert_eq!(mode(&p) & 0o077, 0, "{name} is readable by others");
        seen += 1;
    }
    assert!(seen > 0, "kefu wrote nothing under {}", s.data().display());
}

/// A conversation's id (with its key) opens the customer's side of a web chat: the
/// logs name it by its first 8 characters only, so a reader of the logs holds neither.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_never_carry_a_whole_conversation_id() {
    let s = Server::start_with(
        Some(&common::dtmf_plans()),
        &format!("kb = {:?}\n", common::repo().join("dialplans/kb")),
    );
    let (id, started) = s.start_chat("visitor-logs").await;
    let url = format!("http://{}/api/chat/conversations/{id}/messages", s.http);
    let r = reqwest::Client::new()
        .post(&url)
        .header("x-kefu-key", started["key"].as_str().unwrap())
        .json(&serde_json::json!({"text": "I want to talk to a person"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let logs = s.logs().join("\n");
    assert!(
        logs.contains(&id[..8]),
        "the conversation is not followed in the logs"
    );
    assert!(!logs.contains(&id), "a whole conversation id in the logs");
}
