//! The voice turn and speech capacity, on live calls over loopback (bounded in
//! count and time), measured as the caller hears it: from the caller's last voiced
//! frame (the recording's quiet tail is not counted as speech) to the first voiced
//! frame of kefu's spoken answer. That includes the endpointer's trailing silence,
//! recognition, matching, synthesis and sending.
//!
//! 1. Turns: one caller at a time asks one of ten English questions (Piper speech,
//!    G.711) into an `ask` node like the demo's, kefu as it ships (the default
//!    Whisper model, the semantic re-ranker on); `KEFU_VOICE_TURNS` turns (default
//!    20), p50/p95, and how many were understood (the turn matched the question's
//!    intent).
//! 2. Capacity: N callers ask "Where is my order?" in the same 20 ms; the rest hit
//!    the bounded recognition pool and are asked again or offered the keys:
//!    degraded, never hung. `KEFU_VOICE_CALLERS` (default `1,4,8,12,16`) and
//!    `KEFU_VOICE_MODELS` (`model:workers`, or `default` for the model kefu
//!    ships, `base-q8_0`; default `default:2,tiny.en-q8_0:2`).
//!
//! Run: `cargo bench --bench voice` (needs `deploy/setup.sh`); under `cargo test` it
//! takes one turn and one pair of callers as a smoke run. Figures go to
//! benches/RESULTS.md.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
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

/// Questions for the demo knowledge base, written for this bench (not its
/// examples), with the intent each should reach.
const QUESTIONS: [(&str, &str); 10] = [
    ("What time do you close today?", "opening_hours"),
    ("Where is my order?", "order_status"),
    ("How long does a refund take?", "refund_time"),
    ("Do you deliver on Saturdays?", "delivery_weekend"),
    ("Can I pay in instalments?", "installments"),
    ("I forgot my password.", "reset_password"),
    ("Is this jacket waterproof?", "waterproof"),
    ("How much is shipping?", "shipping_cost"),
    ("Where is your nearest shop?", "store_locations"),
    ("My parcel never arrived.", "missing_package"),
];

/// Loudness above which a frame is voiced (line silence and comfort noise are
/// far below it).
const VOICED: f64 = 200.0;

/// One caller: waits out the greeting, speaks at the barrier, measures the turn
/// from its last voiced frame to kefu's first voiced answer frame.
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
    // The greeting: voiced frames, then half a second of quiet.
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
            if loudness(&buf[12..len]) > VOICED {
                heard = true;
                quiet = 0;
            } else {
                quiet += 1;
            }
        }
    }
    barrier.wait();
    // The question, paced, then silence until the answer starts.
    let last_voiced = speech.iter().rposition(|f| loudness(f) > VOICED);
    let start = Instant::now();
    let mut spoke_end = start;
    for (i, f) in speech.iter().enumerate() {
        let at = start + Duration::from_millis(20 * i as u64);
        while Instant::now() < at {
            let _ = ua.rtp.recv_from(&mut buf);
        }
        send(f);
        if Some(i) == last_voiced {
            spoke_end = Instant::now();
        }
    }
    let mut next = start + Duration::from_millis(20 * speech.len() as u64);
    let deadline = spoke_end + Duration::from_secs(10);
    let mut answer = None;
    while Instant::now() < deadline {
        if Instant::now() >= next {
            send(&[0xff; 160]);
            next += Duration::from_millis(20);
        }
        if let Ok((len, _)) = ua.rtp.recv_from(&mut buf)
            && len > 12
            && loudness(&buf[12..len]) > VOICED
        {
            answer = Some(spoke_end.elapsed().as_secs_f64() * 1000.0);
            break;
        }
    }
    ua.send(&ua.in_dialog(&ok, "BYE", 2, &format!("z9hG4bK-voice-bye-{n}")));
    (id, answer)
}

/// kefu on the bench plan: as it ships, or with `model` and `workers` set.
fn start(dir: &Path, model: Option<(&str, &str)>) -> Server {
    let kb = format!(
        "kb = \"{}\"\n",
        common::repo().join("dialplans/kb").display()
    );
    match model {
        None => Server::start_shipped(Some(dir), &kb),
        Some((model, workers)) => Server::start_shipped(
            Some(dir),
            &format!("{kb}asr_model = \"{model}\"\nasr_workers = {workers}\n"),
        ),
    }
}

/// The intent the customer's turn of each call reached, by call id.
fn intents(server: &Server) -> HashMap<String, String> {
    server
        .records()
        .iter()
        .filter_map(|r| {
            let intent = r["dialogue"].as_array()?.iter().find_map(|t| {
                (t["speaker"] == "customer").then(|| t["intent"].as_str().unwrap_or("").to_string())
            })?;
            Some((r["call_id"].as_str()?.to_string(), intent))
        })
        .collect()
}

/// `turns` voice turns, one caller at a time, cycling through the questions:
/// (turn times of the understood ones, how many were understood, how many heard
/// nothing).
fn sequential(
    server: &Server,
    speech: &[Arc<Vec<[u8; 160]>>],
    turns: usize,
) -> (Vec<f64>, usize, usize) {
    let mut asked = Vec::new();
    for t in 0..turns {
        let q = t % QUESTIONS.len();
        let (id, turn) = caller(server.sip, t, speech[q].clone(), Arc::new(Barrier::new(1)));
        asked.push((id, q, turn));
    }
    server.wait_no_calls();
    let reached = intents(server);
    let (mut times, mut understood, mut silent) = (Vec::new(), 0, 0);
    for (id, q, turn) in asked {
        if reached.get(&id).map(String::as_str) == Some(QUESTIONS[q].1) {
            understood += 1;
        } else if std::env::var_os("KEFU_VOICE_LOG").is_some() {
            println!(
                "not understood: {:?} reached {:?}",
                QUESTIONS[q].0,
                reached.get(&id)
            );
        }
        match turn {
            Some(t) => times.push(t),
            None => silent += 1,
        }
    }
    (times, understood, silent)
}

/// `n` callers ask at once; prints what they lived through.
fn at_once(server: &Server, speech: &Arc<Vec<[u8; 160]>>, n: usize, label: &str) {
    let barrier = Arc::new(Barrier::new(n));
    let threads: Vec<_> = (0..n)
        .map(|i| {
            let (speech, barrier, sip) = (speech.clone(), barrier.clone(), server.sip);
            std::thread::spawn(move || caller(sip, i, speech, barrier))
        })
        .collect();
    let heard: Vec<(String, Option<f64>)> =
        threads.into_iter().filter_map(|t| t.join().ok()).collect();
    server.wait_no_calls();
    let reached = intents(server);
    // The answer's turn for those understood; the busy notice's for the rest.
    let (mut turns, mut told): (Vec<f64>, Vec<f64>) = (Vec::new(), Vec::new());
    let mut understood = 0;
    for (id, t) in &heard {
        let ok = reached.get(id).map(String::as_str) == Some("order_status");
        understood += usize::from(ok);
        match (ok, t) {
            (true, Some(t)) => turns.push(*t),
            (false, Some(t)) => told.push(*t),
            _ => {}
        }
    }
    println!(
        "{label}, {n} speaking at once: {understood}/{n} understood, voice turn p50 {:.0} ms, p95 {:.0} ms, max {:.0} ms; {} told at once to say it again (p50 {:.0} ms); {} heard nothing within 10 s",
        common::nearest_rank(&mut turns, 0.5),
        common::nearest_rank(&mut turns, 0.95),
        common::nearest_rank(&mut turns, 1.0),
        told.len(),
        common::nearest_rank(&mut told, 0.5),
        n - turns.len() - told.len()
    );
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("voice.toml"), PLAN).expect("plan");
    let speech: Vec<Arc<Vec<[u8; 160]>>> = QUESTIONS
        .iter()
        .map(|(q, _)| Arc::new(spoken_frames(q, dir.path())))
        .collect();
    if !bench {
        // `cargo test --all-targets` runs benches once: a smoke run of the harness.
        let server = start(dir.path(), None);
        let (times, understood, silent) = sequential(&server, &speech, 1);
        assert_eq!(silent, 0, "no answer was heard");
        println!(
            "voice (smoke, not a measurement): 1 turn, {understood} understood, {:.0} ms",
            times[0]
        );
        at_once(&server, &speech[1], 2, "smoke");
        return;
    }
    let turns: usize = std::env::var("KEFU_VOICE_TURNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
        .clamp(1, 200);
    let server = start(dir.path(), None);
    let (mut times, understood, silent) = sequential(&server, &speech, turns);
    println!(
        "shipped defaults, one caller at a time: {turns} turns, {understood} understood, voice turn p50 {:.0} ms, p95 {:.0} ms, min {:.0} ms, max {:.0} ms; {silent} heard nothing within 10 s",
        common::nearest_rank(&mut times, 0.5),
        common::nearest_rank(&mut times, 0.95),
        common::nearest_rank(&mut times, 0.0),
        common::nearest_rank(&mut times, 1.0),
    );
    if std::env::var_os("KEFU_VOICE_LOG").is_some() {
        // Where the time went, turn by turn, as the server logged it.
        for line in server.logs() {
            if line.contains("caller said") || line.contains("answer speaking") {
                println!("{line}");
            }
        }
    }
    drop(server);

    let callers: Vec<usize> = std::env::var("KEFU_VOICE_CALLERS")
        .unwrap_or_else(|_| "1,4,8,12,16".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .map(|n: usize| n.clamp(1, 64))
        .collect();
    let models =
        std::env::var("KEFU_VOICE_MODELS").unwrap_or_else(|_| "default:2,tiny.en-q8_0:2".into());
    for spec in models.split(',') {
        let (model, workers) = spec.split_once(':').unwrap_or((spec, "2"));
        for &n in &callers {
            let server = if model == "default" {
                start(dir.path(), None)
            } else {
                start(dir.path(), Some((model, workers)))
            };
            at_once(
                &server,
                &speech[1],
                n,
                &format!("{model}, {workers} workers"),
            );
        }
    }
}
