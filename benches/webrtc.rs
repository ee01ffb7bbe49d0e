//! Browser calls under load, on loopback (bounded in count and time; nothing leaves
//! 127.0.0.1): N WebRTC clients (webrtc-rs peer connections in this process, as
//! a browser would: ICE, DTLS-SRTP, Opus both ways) each start a web chat, post
//! their offer to `/api/chat/conversations/{id}/calls`, and stay on a call that
//! waits in a queue with no agent, so kefu plays hold music all along.
//!
//! Reported per run: calls answered and connected; offer posted → first audio
//! packet p50/p95 (set-up time as a browser sees it); the audio packets each
//! call received against those it was owed (its RTP timestamp span, 20 ms per
//! packet), the worst call and the calls under 99 %; kefu's CPU per call while
//! every call is up (this harness's own CPU, which shares the machine, beside it).
//!
//! Run: `cargo bench --bench webrtc`. Settings: `KEFU_WEBRTC_CALLS` (default
//! `10,50,100`), `KEFU_WEBRTC_HOLD` (seconds every call is up together, default
//! 20). Under `cargo test` it places 2 calls for 4 s as a smoke run. Figures go
//! to benches/RESULTS.md.

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Server, repo};
use webrtc::api::APIBuilder;
use webrtc::api::interceptor_registry::register_default_interceptors;
use webrtc::api::media_engine::{MIME_TYPE_OPUS, MediaEngine};
use webrtc::interceptor::registry::Registry;
use webrtc::peer_connection::configuration::RTCConfiguration;
use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;
use webrtc::rtp::header::Header;
use webrtc::rtp::packet::Packet;
use webrtc::rtp_transceiver::rtp_codec::RTCRtpCodecCapability;
use webrtc::track::track_local::TrackLocalWriter;
use webrtc::track::track_local::track_local_static_rtp::TrackLocalStaticRTP;

/// A plan that queues every caller where no agent ever answers: kefu plays the
/// transfer prompt, then hold music, for the whole call.
const HOLD_PLAN: &str = r#"[dialplan]
name = "hold (WebRTC bench)"
numbers = ["hold"]
language = "en"
start = "wait"

[nodes.wait]
type = "transfer"
queue = "bench"
prompt = "en/transfer.wav"
next = "bye"

[nodes.bye]
type = "hangup"
"#;

/// What one call saw.
#[derive(Default)]
struct Seen {
    /// When the offer was posted, then how long until kefu's first audio packet.
    posted: Option<Instant>,
    first_audio: Option<Duration>,
    packets: u64,
    first_ts: u32,
    last_ts: u32,
}

impl Seen {
    /// Audio packets owed by the RTP timestamps' span (20 ms of Opus each).
    fn owed(&self) -> u64 {
        u64::from(self.last_ts.wrapping_sub(self.first_ts)) / 960 + 1
    }

    fn packet(&mut self, timestamp: u32) {
        if self.first_audio.is_none() {
            self.first_audio = self.posted.map(|at| at.elapsed());
            self.first_ts = timestamp;
        }
        self.packets += 1;
        self.last_ts = timestamp;
    }
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

/// One browser: a chat, an offer, the call; returns what it saw once `until`.
async fn browser(base: String, until: Instant) -> anyhow::Result<Arc<std::sync::Mutex<Seen>>> {
    let http = reqwest::Client::new();
    let chat: serde_json::Value = http
        .post(format!("{base}/api/chat/conversations"))
        .json(&serde_json::json!({"lang": "en"}))
        .send()
        .await?
        .json()
        .await?;
    let (id, key) = (
        chat["conversation"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        chat["key"].as_str().unwrap_or_default().to_string(),
    );
    let mut media = MediaEngine::default();
    media.register_default_codecs()?;
    let registry = register_default_interceptors(Registry::new(), &mut media)?;
    let api = APIBuilder::new()
        .with_media_engine(media)
        .with_interceptor_registry(registry)
        .build();
    let pc = Arc::new(api.new_peer_connection(RTCConfiguration::default()).await?);
    let track = Arc::new(TrackLocalStaticRTP::new(
        RTCRtpCodecCapability {
            mime_type: MIME_TYPE_OPUS.into(),
            clock_rate: 48_000,
            channels: 2,
            ..Default::default()
        },
        "mic".into(),
        "bench".into(),
    ));
    pc.add_track(track.clone()).await?;
    let seen = Arc::new(std::sync::Mutex::new(Seen::default()));
    {
        let seen = seen.clone();
        pc.on_track(Box::new(move |remote, _, _| {
            let seen = seen.clone();
            Box::pin(async move {
                while let Ok((p, _)) = remote.read_rtp().await {
                    seen.lock().unwrap().packet(p.header.timestamp);
                }
            })
        }));
    }
    let offer = pc.create_offer(None).await?;
    let mut gathered = pc.gathering_complete_promise().await;
    pc.set_local_description(offer).await?;
    let _ = gathered.recv().await;
    let local = pc.local_description().await.expect("a local description");
    seen.lock().unwrap().posted = Some(Instant::now());
    let answer: serde_json::Value = http
        .post(format!("{base}/api/chat/conversations/{id}/calls"))
        .header("x-kefu-key", &key)
        .json(&serde_json::json!({"type": "offer", "sdp": local.sdp}))
        .send()
        .await?
        .json()
        .await?;
    let sdp = answer["sdp"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("no answer: {answer}"))?;
    pc.set_remote_description(RTCSessionDescription::answer(sdp.to_string())?)
        .await?;
    // The microphone: one Opus frame of quiet noise, every 20 ms.
    let mut encoder = opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip)?;
    let noise: Vec<i16> = (0..960).map(|i| ((i * 7919) % 41) as i16 - 20).collect();
    let frame = encoder.encode_vec(&noise, 400)?;
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let (ssrc, mut seq, mut ts) = (rand::random::<u32>(), 0u16, 0u32);
    while Instant::now() < until {
        tick.tick().await;
        let p = Packet {
            header: Header {
                version: 2,
                payload_type: 111,
                sequence_number: seq,
                timestamp: ts,
                ssrc,
                ..Header::default()
            },
            payload: bytes::Bytes::from(frame.clone()),
        };
        let _ = track.write_rtp(&p).await;
        seq = seq.wrapping_add(1);
        ts = ts.wrapping_add(960);
    }
    let _ = http
        .delete(format!(
            "{base}/api/chat/conversations/{id}/calls/{}",
            answer["call"].as_str().unwrap_or_default()
        ))
        .header("x-kefu-key", &key)
        .send()
        .await;
    pc.close().await?;
    Ok(seen)
}

/// Runs `n` calls for `hold`; the calls that connected with audio.
fn run(n: usize, hold: Duration) -> usize {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hold.toml"), HOLD_PLAN).unwrap();
    let s = Server::start_with(
        Some(dir.path()),
        &format!(
            "kb = \"{}\"\nrtp_ports = \"30000-31999\"\nmax_calls = 2000\n\
             conversations_per_minute = 100000\nmessages_per_minute = 100000\n\
             [[queue]]\nname = \"bench\"\nmax_wait = \"30m\"\nannounce_every = \"off\"\n\
             [webrtc]\nnumber = \"hold\"\nmax_per_client = 5000\nudp_ports = \"40000-44999\"\n",
            repo().join("dialplans/kb").display()
        ),
    );
    let base = format!("http://{}", s.http);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // Calls start over 2 s per 50; all are up together for `hold`.
    let ramp = Duration::from_millis(40 * n as u64);
    let me = std::process::id();
    // kefu's own CPU with no call, to take off.
    let (idle0, i0) = (common::cpu_time(s.pid()), Instant::now());
    std::thread::sleep(Duration::from_secs(3));
    let idle = (common::cpu_time(s.pid()) - idle0).as_secs_f64() / i0.elapsed().as_secs_f64();
    let started = Instant::now();
    let until = started + ramp + Duration::from_secs(3) + hold;
    let (seen, cpu) = runtime.block_on(async {
        let mut calls = Vec::new();
        for _ in 0..n {
            calls.push(tokio::spawn(browser(base.clone(), until)));
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
        tokio::time::sleep_until((started + ramp + Duration::from_secs(3)).into()).await;
        let (kefu0, me0, t0) = (
            common::cpu_time(s.pid()),
            common::cpu_time(me),
            Instant::now(),
        );
        tokio::time::sleep(hold - Duration::from_secs(1)).await;
        let cpu = (
            common::cpu_time(s.pid()) - kefu0,
            common::cpu_time(me) - me0,
            t0.elapsed(),
        );
        let mut seen = Vec::new();
        for c in calls {
            match c.await {
                Ok(Ok(s)) => seen.push(s),
                Ok(Err(e)) => eprintln!("a call failed: {e:#}"),
                Err(e) => eprintln!("a call's task failed: {e}"),
            }
        }
        (seen, cpu)
    });
    let mut setup: Vec<f64> = Vec::new();
    let mut shares: Vec<f64> = Vec::new();
    for s in &seen {
        let s = s.lock().unwrap();
        if let Some(t) = s.first_audio {
            setup.push(t.as_secs_f64() * 1000.0);
            shares.push(s.packets as f64 / s.owed() as f64);
        }
    }
    let (kefu, harness, window) = cpu;
    let cores = kefu.as_secs_f64() / window.as_secs_f64();
    let per_call = (cores - idle).max(0.0) * 100.0 / shares.len().max(1) as f64;
    let received: f64 = shares.iter().sum::<f64>() / shares.len().max(1) as f64;
    let worst = shares.iter().cloned().fold(f64::INFINITY, f64::min);
    let short = shares.iter().filter(|&&x| x < 0.99).count();
    println!(
        "N = {n} browser calls, {hold:?} together: connected with audio {}/{n}; offer → first audio p50 {:.0} ms, p95 {:.0} ms",
        setup.len(),
        common::nearest_rank(&mut setup.clone(), 0.5),
        common::nearest_rank(&mut setup, 0.95)
    );
    println!(
        "  audio received / owed: mean {:.3} %, worst call {:.3} %, calls under 99 %: {short}",
        received * 100.0,
        worst * 100.0
    );
    println!(
        "  kefu CPU while all are up: {per_call:.3} % of a core per call ({cores:.2} cores in all, {idle:.3} with no call); this harness's {n} peers: {:.2} cores",
        harness.as_secs_f64() / window.as_secs_f64()
    );
    shares.len()
}

fn main() {
    // The DTLS of the peers uses rustls: name its back end, as kefu does.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let smoke = !std::env::args().any(|a| a == "--bench");
    if smoke {
        assert_eq!(
            run(2, Duration::from_secs(4)),
            2,
            "both calls connect with audio"
        );
        return;
    }
    let hold = Duration::from_secs(env_or("KEFU_WEBRTC_HOLD", "20").parse().unwrap_or(20));
    for n in env_or("KEFU_WEBRTC_CALLS", "10,50,100").split(',') {
        if let Ok(n) = n.trim().parse::<usize>() {
            run(
                n.clamp(1, 1000),
                hold.clamp(Duration::from_secs(5), Duration::from_secs(300)),
            );
        }
    }
}
