//! Overload (bounded; loopback only): with the configured number of calls live,
//! new INVITEs get 503 with Retry-After while a flood of garbage datagrams hits
//! the SIP port, and the live call keeps receiving its audio on time throughout;
//! afterwards the server still answers. These are behaviour checks (audio before,
//! during and after the flood, in order); how steady it stays under load is
//! measured by `cargo bench --bench load` (benches/RESULTS.md).

mod common;

use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
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

    // The live call's audio, watched on a thread: (phase, RTP sequence number), the
    // phase being 0 before the flood, 1 during it, 2 after it.
    let stop = Arc::new(AtomicBool::new(false));
    let phase = Arc::new(AtomicU8::new(0));
    let received = Arc::new(AtomicUsize::new(0));
    let watcher = {
        let rtp = live.rtp.try_clone().unwrap();
        let (stop, phase, received) = (stop.clone(), phase.clone(), received.clone());
        std::thread::spawn(move || {
            let mut got: Vec<(u8, u16)> = Vec::new();
            let mut buf = [0u8; 2048];
            rtp.set_read_timeout(Some(Duration::from_millis(50)))
                .unwrap();
            while !stop.load(Ordering::Relaxed) {
                if let Ok((n, _)) = rtp.recv_from(&mut buf)
                    && n >= 12
                {
                    let seq = u16::from_be_bytes([buf[2], buf[3]]);
                    got.push((phase.load(Ordering::Relaxed), seq));
                    received.fetch_add(1, Ordering::Relaxed);
                }
            }
            got
        })
    };
    // Waits (bounded) for `n` more packets on the live call.
    let more_audio = |n: usize| {
        let target = received.load(Ordering::Relaxed) + n;
        let deadline = Instant::now() + T;
        while received.load(Ordering::Relaxed) < target {
            assert!(Instant::now() < deadline, "the live call's audio stopped");
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    more_audio(10);

    // The flood, bounded in count and time, from a thread of its own.
    let flooding = Arc::new(AtomicBool::new(true));
    let flood = {
        let target = server.sip;
        let flooding = flooding.clone();
        std::thread::spawn(move || {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            let start = Instant::now();
            let mut sent = 0;
            while sent < FLOOD && start.elapsed() < FLOOD_FOR {
                if s.send_to(&garbage(sent), target).is_ok() {
                    sent += 1;
                }
            }
            flooding.store(false, Ordering::Relaxed);
            sent
        })
    };
    phase.store(1, Ordering::Relaxed);
    // Meanwhile, calls over the limit are refused with Retry-After. Like any
    // UA, the caller retransmits its INVITE (RFC 3261 timer A: 500 ms, doubling)
    // until it hears an answer: the flood may cost the first copies.
    let mut refused_during_flood = 0;
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
        if flooding.load(Ordering::Relaxed) {
            refused_during_flood += 1;
        }
    }
    let sent = flood.join().unwrap();
    phase.store(2, Ordering::Relaxed);
    assert!(sent >= 1000, "the flood sent {sent} datagrams");
    eprintln!("{refused_during_flood} of 10 refusals came while the flood lasted");
    more_audio(10);
    stop.store(true, Ordering::Relaxed);
    let got = watcher.join().unwrap();

    // The live call's audio kept coming before, during and after the flood, in
    // order.
    for p in 0..=2 {
        assert!(
            got.iter().any(|&(phase, _)| phase == p),
            "no audio in phase {p}"
        );
    }
    for w in got.windows(2) {
        let step = w[1].1.wrapping_sub(w[0].1);
        assert!(
            (1..1000).contains(&step),
            "out of order or repeated: {:?}",
            w
        );
    }

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
