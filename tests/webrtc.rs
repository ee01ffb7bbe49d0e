//! Browser calls: the chat widget in Debian's headless Chromium calls the hotline
//! over WebRTC (ICE, DTLS-SRTP, Opus), hears the greeting, presses a key with
//! RTCDTMFSender and is routed by the same dialplan a SIP caller gets; the call
//! record says so. Bad offers get a 4xx with the reason.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;

use common::{Server, browser, dtmf_plans, repo, strings};

/// Writes mono 16-bit `samples` at `rate` to `path` (a fake microphone's file).
fn write_wav(path: &std::path::Path, rate: u32, samples: impl IntoIterator<Item = i16>) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for s in samples {
        w.write_sample(s).unwrap();
    }
    w.finalize().unwrap();
}

/// A quiet microphone: low noise, so the call hears a live line.
fn microphone(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("mic.wav");
    let noise = (0..48_000u64 * 10).map(|i| ((i * 7919) % 61) as i16 - 30);
    write_wav(&path, 48_000, noise);
    path
}

fn server() -> Server {
    Server::start_with(
        Some(&dtmf_plans()),
        &format!(
            "kb = \"{}\"\n[webrtc]\nnumber = \"kefu-en\"\nmax_per_client = 2\nconnect_timeout = \"2s\"\n",
            repo().join("dialplans/kb").display()
        ),
    )
}

#[test]
fn the_widget_calls_hears_the_greeting_and_is_routed_by_a_key() {
    let s = server();
    let dir = tempfile::tempdir().unwrap();
    let mic = microphone(dir.path());
    let (seen, _) = browser(
        &s,
        "call.mjs",
        &[mic.to_str().unwrap(), "2", "1500"],
        "webrtc-call",
    );
    eprintln!("call button → connected: {} ms", seen["connectedMs"]);
    assert!(
        seen["greeting"]["peak"].as_f64().unwrap() > 0.02,
        "the greeting is heard in the page: {}",
        seen["greeting"]["peak"]
    );
    // What the page heard, recognised by Whisper: the greeting's words.
    let heard = dir.path().join("heard.wav");
    let rate = seen["greeting"]["rate"].as_u64().unwrap() as u32;
    let samples = seen["greeting"]["samples"].as_array().unwrap();
    write_wav(
        &heard,
        rate,
        samples.iter().map(|x| x.as_i64().unwrap() as i16),
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kefu"))
        .args([
            "transcribe",
            "--model",
            "tiny.en-q8_0",
            "--language",
            "en",
            "--models",
        ])
        .arg(repo().join("models"))
        .arg(&heard)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_lowercase();
    eprintln!("the greeting as the browser heard it (Whisper tiny.en): {text:?}");
    assert!(
        text.contains("welcome") || text.contains("sunrise") || text.contains("outfitters"),
        "the greeting as the browser heard it: {text:?} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let call_id = seen["call"].as_str().expect("a call id").to_string();
    let r = s.record(&call_id);
    assert_eq!(r["transport"], "webrtc", "{r}");
    assert_eq!(r["digits"], "2", "{r}");
    assert!(
        strings(&r["path"]).contains(&"opening_hours".to_string()),
        "{r}"
    );
    assert_eq!(r["end_reason"], "caller-hangup", "{r}");
    assert!(r["rtp_received"].as_u64().unwrap() > 50, "{r}");
    assert!(r["rtp_sent"].as_u64().unwrap() > 50, "{r}");
}

/// The browser's microphone says `words` (Piper, via `kefu say`) after 3 s of
/// quiet (the call is connected by then, even on a busy machine), then stays
/// quiet (Chromium loops the file: 30 s of it).
fn spoken_microphone(words: &str, dir: &std::path::Path) -> std::path::PathBuf {
    let frames = common::spoken_frames(words, dir);
    let mut pcm = vec![0i16; 8000 * 3];
    for f in &frames {
        let mut out = [0i16; 160];
        kefu::media::g711::Law::Pcmu.decode(f, &mut out);
        pcm.extend_from_slice(&out);
    }
    pcm.resize(8000 * 30, 0);
    let path = dir.join("question.wav");
    write_wav(&path, 8000, pcm);
    path
}

/// The visitor asks by voice from the widget: Opus from Chromium's fake
/// microphone, through the gateway, VAD, Whisper and the dialogue core; the answer
/// is spoken back, and the call is filed under the chat's customer.
#[test]
fn the_widget_caller_asks_by_voice_and_hears_the_answer() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ask.toml"), common::ASK_PLAN).unwrap();
    let mic = spoken_microphone("What time do you close today?", dir.path());
    let s = Server::start_with(
        Some(dir.path()),
        &format!(
            "asr_model = \"tiny.en-q8_0\"\nkb = \"{}\"\n[webrtc]\nnumber = \"500\"\n",
            repo().join("dialplans/kb").display()
        ),
    );
    let (seen, _) = browser(
        &s,
        "call.mjs",
        &[mic.to_str().unwrap(), "-", "10000"],
        "webrtc-ask",
    );
    let r = s.record(seen["call"].as_str().expect("a call id"));
    let turns = r["dialogue"]
        .as_array()
        .unwrap_or_else(|| panic!("no dialogue in {r}"));
    assert!(
        turns[0]["text"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("close"),
        "{r}"
    );
    assert_eq!(turns[0]["intent"], "opening_hours", "{r}");
    assert!(
        common::strings(&r["prompts"])
            .iter()
            .any(|p| p.starts_with("say:")),
        "the answer was spoken: {r}"
    );
    assert!(
        seen["afterKeys"]["peak"].as_f64().unwrap() > 0.02,
        "the page heard the answer: {}",
        seen["afterKeys"]
    );
    // Filed under the chat's customer, and left in the chat it was made from.
    assert!(r["conversation"].is_string(), "{r}");
    let transcript = seen["transcript"].as_str().unwrap();
    assert!(
        transcript.contains("You: ") && transcript.to_lowercase().contains("close"),
        "{transcript}"
    );
}

/// A raw HTTP request; the status and body.
fn http(s: &Server, method: &str, path: &str, headers: &str, body: &str) -> (u16, String) {
    let mut c = TcpStream::connect(s.http).unwrap();
    write!(
        c,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn bad_offers_get_a_reason_and_the_server_stays_up() {
    let s = server();
    let json = "Content-Type: application/json\r\n";
    let (status, body) = http(
        &s,
        "POST",
        "/api/chat/conversations",
        json,
        "{\"lang\":\"en\"}",
    );
    assert_eq!(status, 201, "{body}");
    let started: serde_json::Value = serde_json::from_str(&body).unwrap();
    let (id, key) = (
        started["conversation"].as_str().unwrap(),
        started["key"].as_str().unwrap(),
    );
    let path = format!("/api/chat/conversations/{id}/calls");
    let keyed = format!("{json}X-Kefu-Key: {key}\r\n");
    let offer = |sdp: &str| serde_json::json!({"type": "offer", "sdp": sdp}).to_string();
    let video = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=fingerprint:sha-256 AA\r\n";
    for (headers, body, want, reason) in [
        (json.to_string(), offer(video), 403, "key"),
        (keyed.clone(), offer("not sdp"), 400, "not SDP"),
        (keyed.clone(), offer(video), 400, "no audio"),
        (
            keyed.clone(),
            "{\"type\":\"answer\",\"sdp\":\"\"}".into(),
            400,
            "offer",
        ),
        (keyed.clone(), "{".into(), 400, ""),
        (keyed.clone(), offer(&"a".repeat(20_000)), 400, "bytes"),
    ] {
        let (status, answer) = http(&s, "POST", &path, &headers, &body);
        assert_eq!(status, want, "{answer}");
        assert!(answer.contains(reason), "{answer}");
    }
    let (status, _) = http(&s, "DELETE", &format!("{path}/webrtc-nope"), &keyed, "");
    assert_eq!(status, 404);

    // Offers from a "browser" that never connects: answered, then dropped when
    // ICE and DTLS do not come within connect_timeout (2 s here); the client's
    // limit (2) holds meanwhile and is given back after.
    let silent = offer(&format!(
        "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n\
         m=audio 9 UDP/TLS/RTP/SAVPF 0\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=sendrecv\r\n\
         a=rtcp-mux\r\na=ice-ufrag:abcd\r\na=ice-pwd:0123456789012345678901\r\n\
         a=fingerprint:sha-256 {}\r\na=setup:actpass\r\na=rtpmap:0 PCMU/8000\r\n\
         a=candidate:1 1 udp 2130706431 127.0.0.1 9 typ host\r\n",
        ["AB"; 32].join(":")
    ));
    let mut answer_of_first = String::new();
    for _ in 0..2 {
        let (status, answer) = http(&s, "POST", &path, &keyed, &silent);
        assert_eq!(status, 201, "{answer}");
        assert!(answer.contains("a=fingerprint"), "{answer}");
        answer_of_first = answer;
    }
    let (status, answer) = http(&s, "POST", &path, &keyed, &silent);
    assert_eq!(status, 429, "{answer}");
    // Trickled candidates: a malformed one is a 400; one for a call that is not
    // there (or is another conversation's) a 404.
    let live: serde_json::Value = serde_json::from_str(&answer_of_first).unwrap();
    let trickle = format!("{path}/{}/candidates", live["call"].as_str().unwrap());
    for (body, want) in [
        ("{\"candidate\":\"not a candidate\"}".to_string(), 400),
        (format!("{{\"candidate\":\"candidate:{}\"}}", "x".repeat(600)), 400),
        ("{\"candidate\":\"candidate:1 1 udp 1 127.0.0.1 9 typ host\",\"sdpMid\":\"0\",\"sdpMLineIndex\":0}".to_string(), 204),
        ("{\"candidate\":\"\"}".to_string(), 204),
        ("{\"nope\":1}".to_string(), 422),
    ] {
        let (status, answer) = http(&s, "POST", &trickle, &keyed, &body);
        assert_eq!(status, want, "{body}: {answer}");
    }
    let (status, _) = http(
        &s,
        "POST",
        &format!("{path}/webrtc-nope/candidates"),
        &keyed,
        "{\"candidate\":\"\"}",
    );
    assert_eq!(status, 404);
    std::thread::sleep(std::time::Duration::from_secs(3));
    let (status, answer) = http(&s, "POST", &path, &keyed, &silent);
    assert_eq!(
        status, 201,
        "the limit is given back after the time-out: {answer}"
    );
    assert!(
        s.logs()
            .iter()
            .filter(|l| l.contains("browser call not connected"))
            .count()
            >= 2,
        "the dropped calls are logged"
    );
    let (status, body) = http(&s, "GET", "/api/chat/call", "", "");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"enabled\":true"), "{body}");
}

#[test]
fn the_snippet_puts_the_widget_on_an_allowed_site_only() {
    let port = common::free_port();
    let s = Server::start_with(
        Some(&dtmf_plans()),
        &format!(
            "kb = \"{}\"\n[widget]\nallowed_origins = [\"http://localhost:{port}\"]\n",
            repo().join("dialplans/kb").display()
        ),
    );
    let (seen, _) = browser(&s, "embed.mjs", &[&port.to_string()], "widget-embedded");
    assert!(
        seen["greeting"].as_str().unwrap().starts_with("Hello"),
        "{seen}"
    );
    assert!(
        seen["answer"]
            .as_str()
            .unwrap()
            .contains("9 a.m. to 9 p.m."),
        "{seen}"
    );
    assert_eq!(seen["callButton"], true, "{seen}");
    assert_eq!(seen["allowedApi"], 201, "{seen}");
    assert_eq!(seen["refusedFrame"], true, "{seen}");
    assert!(
        seen["otherApi"]
            .as_str()
            .is_some_and(|e| e.contains("Failed to fetch")),
        "{seen}"
    );
}
