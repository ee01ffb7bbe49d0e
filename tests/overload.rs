//! Overload (bounded; loopback only): with the configured number of calls live,
//! new INVITEs get 503 with Retry-After while a flood of garbage datagrams hits
//! the SIP port, and the live call keeps receiving its audio on time throughout;
//! afterwards the server still answers. The bounds here are lenient behaviour
//! checks (no stall, nothing lost wholesale); the figures under load are
//! measured by `cargo bench --bench load` (benches/RESULTS.md).

mod common;

use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{RawUa, Server};

const T: Duration = Duration::from_secs(5);
/// Garbage datagrams sent at most, and for how long at most.
const FLOOD: usize = 30_000;
const FLOOD_FOR: Duration = Duration::from_secs(3);

/// Hostile datagrams of many shapes: random bytes, truncated and oversized
/// requests, binary in headers, a response to nothing.
fn garbage(i: usize) -> Vec<u8> {
    let n = rand::random::<u16>() as usize % 1400 + 1;
    match i % 6 {
        0 => (0..n).map(|_| rand::random::<u8>()).collect(),
        1 => b"INVITE sip:x SIP/2.0\r\nVia: SIP/2.0/UDP".to_vec(),
        2 => format!(
            "OPTIONS sip:kefu SIP/2.0\r\nVia: {}\r\n\r\n",
            "x".repeat(n * 40)
        )
        .into_bytes(),
        3 => b"SIP/2.0 200 OK\r\nCall-ID: nothing\r\nCSeq: 1 INVITE\r\n\r\n".to_vec(),
        4 => {
            let mut v = b"REGISTER sip:kefu SIP/2.0\r\nFrom: \x00\xff\xfe\r\n".to_vec();
            v.extend((0..n).map(|_| rand::random::<u8>()));
            v
        }
        _ => vec![0u8; n],
    }
}

#[test]
fn over_the_limit_and_under_a_garbage_flood_live_calls_keep_their_audio() {
    let server = Server::start_with(Some(&common::dtmf_plans()), "max_calls = 2");
    let live = RawUa::new(server.sip);
    let ok = live.answered_call("overload-live", "kefu-en");
    let other = RawUa::new(server.sip);
    let other_ok = other.answered_call("overload-other", "kefu-en");

    // The live call's audio, watched on a thread: (arrival, RTP timestamp).
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let rtp = live.rtp.try_clone().unwrap();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut got: Vec<(Instant, u32)> = Vec::new();
            let mut buf = [0u8; 2048];
            rtp.set_read_timeout(Some(Duration::from_millis(50)))
                .unwrap();
            while !stop.load(Ordering::Relaxed) {
                if let Ok((n, _)) = rtp.recv_from(&mut buf)
                    && n >= 12
                {
                    let ts = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
                    got.push((Instant::now(), ts));
                }
            }
            got
        })
    };
    std::thread::sleep(Duration::from_millis(500));

    // The flood, bounded in count and time, from a thread of its own.
    let flood = {
        let target = server.sip;
        std::thread::spawn(move || {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            let start = Instant::now();
            let mut sent = 0;
            while sent < FLOOD && start.elapsed() < FLOOD_FOR {
                if s.send_to(&garbage(sent), target).is_ok() {
                    sent += 1;
                }
            }
            sent
        })
    };
    // Meanwhile, calls over the limit are refused with Retry-After. Like any
    // UA, the caller retransmits its INVITE (RFC 3261 timer A: 500 ms, doubling)
    // until it hears an answer: the flood may cost the first copies.
    std::thread::sleep(Duration::from_millis(300));
    for i in 0..10 {
        let extra = RawUa::new(server.sip);
        let invite = extra.invite(
            &format!("overload-extra-{i}"),
            &format!("z9hG4bK-over{i}"),
            "kefu-en",
        );
        let mut wait = Duration::from_millis(500);
        let busy = loop {
            extra.send(&invite);
            if let Some(r) = extra.recv(wait)
                && r.starts_with("SIP/2.0 503")
            {
                break r;
            }
            assert!(wait < Duration::from_secs(4), "no 503 for call {i}");
            wait *= 2;
        };
        assert!(busy.contains("Retry-After:"), "{busy}");
    }
    let sent = flood.join().unwrap();
    assert!(sent >= 1000, "the flood sent {sent} datagrams");
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let got = watcher.join().unwrap();

    // The live call's audio kept coming: nearly every 20 ms frame it was owed
    // arrived, and it never stalled.
    assert!(got.len() > 50, "{} packets", got.len());
    let owed = (got.last().unwrap().1.wrapping_sub(got[0].1)) / 160 + 1;
    assert!(
        got.len() as f64 >= 0.95 * f64::from(owed),
        "received {} of {owed} frames during the flood",
        got.len()
    );
    let worst_gap = got
        .windows(2)
        .map(|w| w[1].0 - w[0].0)
        .max()
        .unwrap_or_default();
    assert!(
        worst_gap < Duration::from_millis(250),
        "the audio stalled for {worst_gap:?}"
    );

    // Afterwards: the live call hangs up normally, and the freed place takes a
    // new call.
    live.send(&live.in_dialog(&ok, "BYE", 2, "z9hG4bK-overload-bye"));
    live.expect_status(200, T);
    let deadline = Instant::now() + T;
    while !server
        .http_get("/readyz")
        .1
        .contains("ready: 1 active calls")
    {
        assert!(Instant::now() < deadline, "the ended call never left");
        std::thread::sleep(Duration::from_millis(50));
    }
    let next = RawUa::new(server.sip);
    let next_ok = next.answered_call("overload-next", "kefu-en");
    next.send(&next.in_dialog(&next_ok, "BYE", 2, "z9hG4bK-overload-next-bye"));
    next.expect_status(200, T);
    other.send(&other.in_dialog(&other_ok, "BYE", 2, "z9hG4bK-overload-other-bye"));
    other.expect_status(200, T);
    // Still serving after it all (the ended calls may still be leaving).
    let (status, ready) = server.http_get("/readyz");
    assert_eq!(status, 200, "{ready}");
}
