//! The RFC 4475 torture messages (tests/fixtures/rfc4475), each sent as one UDP
//! datagram to a live server: every valid request is answered, every malformed one
//! refused with 400 (or the specific status RFC 3261 names), nothing is ever 500 or
//! a 2xx to a malformed request, and the server is still answering afterwards.
//! tests/fixtures/rfc4475/expected.txt says what each must get.

mod common;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use common::Server;

/// The first final response's status line to `datagram`, if one comes in `wait`.
fn final_answer(sip: std::net::SocketAddr, datagram: &[u8], wait: Duration) -> Option<String> {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    sock.send_to(datagram, sip).unwrap();
    let end = Instant::now() + wait;
    let mut buf = [0u8; 65_536];
    while Instant::now() < end {
        let Ok((n, _)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let text = String::from_utf8_lossy(&buf[..n]).to_string();
        let line = text.lines().next().unwrap_or_default().to_string();
        if !line.starts_with("SIP/2.0 1") {
            return Some(text);
        }
    }
    None
}

#[test]
fn every_torture_message_gets_the_answer_rfc_4475_asks_for() {
    let dir = common::repo().join("tests/fixtures/rfc4475");
    // The trunk is loopback, so INVITEs are taken (and never limited per source).
    let server = Server::start_with(
        Some(&common::dtmf_plans()),
        "[[trunk]]\nname = \"torture\"\naddresses = [\"127.0.0.1\"]\n",
    );
    let table = std::fs::read_to_string(dir.join("expected.txt")).unwrap();
    let mut wrong = Vec::new();
    for line in table
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let mut cols = line.split_whitespace();
        let (name, want) = (cols.next().unwrap(), cols.next().unwrap());
        let datagram = std::fs::read(dir.join(format!("{name}.dat"))).unwrap();
        let wait = if want == "-" {
            Duration::from_millis(500)
        } else {
            Duration::from_secs(3)
        };
        let got = final_answer(server.sip, &datagram, wait);
        let status = got
            .as_deref()
            .and_then(|t| t.split(' ').nth(1))
            .unwrap_or("-")
            .to_string();
        if status != want {
            wrong.push(format!("{name}: want {want}, got {got:?}"));
        }
        // A refusal says why, in a Warning.
        if let Some(t) = got.filter(|_| want.starts_with('4') || want.starts_with('5'))
            && !["401", "404", "405", "481"].contains(&want)
        {
            assert!(t.contains("Warning: 399 kefu"), "{name}: {t}");
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // Still serving.
    let options = "OPTIONS sip:kefu@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-after\r\n\
        From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:kefu@127.0.0.1>\r\nCall-ID: after\r\nCSeq: 1 OPTIONS\r\n\
        Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
    let after = final_answer(server.sip, options.as_bytes(), Duration::from_secs(3));
    assert!(after.is_some_and(|t| t.starts_with("SIP/2.0 200")));
}
