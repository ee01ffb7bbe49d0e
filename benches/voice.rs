//! Speech capacity and the voice turn, on live calls over loopback (bounded in
//! count and time): N callers reach an `ask` node at once, hear its greeting,
//! then all ask "Where is my order?" (Piper speech, G.711) in the same 20 ms.
//! Each caller measures the voice turn: from its last frame of speech to the
//! first frame of kefu's spoken answer (so it includes the endpointer's
//! trailing silence, recognition, matching, synthesis and sending). The call
//! records say how many were understood (the turn matched `order_status`);
//! the rest hit the bounded recognition pool and were asked again or offered
//! the keys: degraded, never hung.
//!
//! Run: `cargo bench --bench voice` (needs `deploy/setup.sh`). `KEFU_VOICE_CALLERS`
//! (default `1,4,8,12,16`) and `KEFU_VOICE_MODELS` (`model:workers`, default
//! `base-q8_0:2,tiny.en-q8_0:2`). Figures go to benches/RESULTS.md.

#[path = "../tests/common/mod.rs"]
mod common;

use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::phone::{rtp, sdp_target};
use common::{RawUa, Server, spoken_frames};

const PLAN: &str = r#"[dialplan]
name = "bench: a voice turn"
numbers = ["600"]
language = "en"
start = "ask"

[nodes.ask]
type = "ask"
prompt = "say:Hello, how can I help?"
timeout = "10s"
max_failures = 3
on_failure = "bye"
on_handover = "bye"
on_goodbye = "bye"

[nodes.bye]
type = "hangup"
"#;

/// Mean magnitude of a µ-law frame (0: silence).
fn loudness(payload: &[u8]) -> f64 {
    payload
        .iter()
        .map(|&b| {
            let b = !b;
            let exp = (b >> 4) & 7;
            let mant = i32::from(b & 0x0f);
            (((mant << 3) + 0x84) << exp) - 0x84
        })
        .map(|v| f64::from(v.unsigned_abs()))
        .sum::<f64>()
        / payload.len().max(1) as f64
}

/// One caller: waits out the greeting, speaks at the barrier, measures the turn.
fn caller(
    server: SocketAddr,
    n: usize,
    speech: Arc<Vec<[u8; 160]>>,
    barrier: Arc<Barrier>,
) -> (String, Option<f64>) {
    let ua = RawUa::new(server);
    let id = format!("voice-{n}-{}", rand::random::<u32>());
    let ok = ua.answered_call(&id, "600");
    let kefu = sdp_target(&ok);
    let Ok(sock) = ua.rtp.try_clone() else {
        return (id, None);
    };
    let sock: UdpSocket = sock;
    let _ = sock.set_read_timeout(Some(Duration::from_millis(5)));
    let mut buf = [0u8; 2048];
    let (mut seq, mut ts) = (1u16, 0u32);
    let mut send = |payload: &[u8]| {
        let _ = sock.send_to(&rtp(0, seq, ts, false, payload), kefu);
        seq = seq.wrapping_add(1);
        ts = ts.wrapping_add(160);
    };
    // The greeting: loud frames, then half a second of quiet.
    let deadline = Instant::now() + Duration::from_secs(15);
    let (mut heard, mut quiet) = (false, 0);
    let mut next = Instant::now();
    while Instant::now() < deadline && !(heard && quiet >= 25) {
        if Instant::now() >= next {
            send(&[0xff; 160]);
            next += Duration::from_millis(20);
        }
        if let Ok((len, _)) = ua.rtp.recv_from(&mut buf)
            && len > 12
        {
            if loudness(&buf[12..len]) > 200.0 {
                heard = true;
                quiet = 0;
            } else {
                quiet += 1;
            }
        }
    }
    barrier.wait();
    // The question, paced, then silence until the answer starts.
    let start = Instant::now();
    for (i, f) in speech.iter().enumerate() {
        let at = start + Duration::from_millis(20 * i as u64);
        while Instant::now() < at {
            let _ = ua.rtp.recv_from(&mut buf);
        }
        send(f);
    }
    let spoke_end = Instant::now();
    let mut next = spoke_end + Duration::from_millis(20);
    let deadline = spoke_end + Duration::from_secs(10);
    let mut answer = None;
    while Instant::now() < deadline {
        if Instant::now() >= next {
            send(&[0xff; 160]);
            next += Duration::from_millis(20);
        }
        if let Ok((len, _)) = ua.rtp.recv_from(&mut buf)
            && len > 12
            && loudness(&buf[12..len]) > 200.0
        {
            answer = Some(spoke_end.elapsed().as_secs_f64() * 1000.0);
            break;
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    ua.send(&ua.in_dialog(&ok, "BYE", 2, &format!("z9hG4bK-voice-bye-{n}")));
    (id, answer)
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("voice: run with `cargo bench --bench voice` to measure");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("voice.toml"), PLAN).expect("plan");
    let speech = Arc::new(spoken_frames("Where is my order?", dir.path()));
    let callers: Vec<usize> = std::env::var("KEFU_VOICE_CALLERS")
        .unwrap_or_else(|_| "1,4,8,12,16".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .map(|n: usize| n.clamp(1, 64))
        .collect();
    let models =
        std::env::var("KEFU_VOICE_MODELS").unwrap_or_else(|_| "base-q8_0:2,tiny.en-q8_0:2".into());
    for spec in models.split(',') {
        let (model, workers) = spec.split_once(':').unwrap_or((spec, "2"));
        for &n in &callers {
            let server = Server::start_with(
                Some(dir.path()),
                &format!(
                    "asr_model = \"{model}\"\nasr_workers = {workers}\nkb = \"{}\"\nsemantic = true\n",
                    common::repo().join("dialplans/kb").display()
                ),
            );
            let barrier = Arc::new(Barrier::new(n));
            let threads: Vec<_> = (0..n)
                .map(|i| {
                    let (speech, barrier, sip) = (speech.clone(), barrier.clone(), server.sip);
                    std::thread::spawn(move || caller(sip, i, speech, barrier))
                })
                .collect();
            let heard: Vec<(String, Option<f64>)> =
                threads.into_iter().filter_map(|t| t.join().ok()).collect();
            std::thread::sleep(Duration::from_secs(1));
            let understood: std::collections::HashSet<String> = server
                .records()
                .iter()
                .filter(|r| {
                    r["dialogue"].as_array().is_some_and(|d| {
                        d.iter()
                            .any(|t| t["speaker"] == "customer" && t["intent"] == "order_status")
                    })
                })
                .filter_map(|r| r["call_id"].as_str().map(str::to_string))
                .collect();
            // The answer's turn for those understood; the busy notice's for the rest.
            let (mut turns, mut told): (Vec<f64>, Vec<f64>) = (Vec::new(), Vec::new());
            for (id, t) in &heard {
                match (understood.contains(id), t) {
                    (true, Some(t)) => turns.push(*t),
                    (false, Some(t)) => told.push(*t),
                    _ => {}
                }
            }
            println!(
                "{model}, {workers} workers, {n} speaking at once: {}/{n} understood, voice turn p50 {:.0} ms, p95 {:.0} ms, max {:.0} ms; {} told at once to say it again (p50 {:.0} ms); {} heard nothing within 10 s",
                understood.len(),
                common::nearest_rank(&mut turns, 0.5),
                common::nearest_rank(&mut turns, 0.95),
                common::nearest_rank(&mut turns, 1.0),
                told.len(),
                common::nearest_rank(&mut told, 0.5),
                n - turns.len() - told.len()
            );
        }
    }
}
