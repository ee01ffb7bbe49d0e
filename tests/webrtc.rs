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

/// The tests that talk through Chromium's audio take turns: three of them at once
/// on two cores starve Chromium's real-time audio, and what Whisper then hears
/// is the machine's overload, not kefu's audio.
fn one_call_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
    TURN.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What Whisper (tiny.en, through `kefu transcribe`) hears in a WAV file, in
/// lower case.
fn whisper(wav: &std::path::Path) -> String {
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
        .arg(wav)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kefu transcribe: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_lowercase()
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
    let _turn = one_call_at_a_time();
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
    let text = whisper(&heard);
    eprintln!("the greeting as the browser heard it (Whisper tiny.en): {text:?}");
    assert!(
        text.contains("welcome") || text.contains("sunrise") || text.contains("outfitters"),
        "the greeting as the browser heard it: {text:?}"
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
    let _turn = one_call_at_a_time();
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
    common::assert_hours_answered(&r);
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

/// An offer from a "browser" that never connects (its only candidate is port 9).
fn silent_offer() -> String {
    format!(
        "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n\
         m=audio 9 UDP/TLS/RTP/SAVPF 0\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=sendrecv\r\n\
         a=rtcp-mux\r\na=ice-ufrag:abcd\r\na=ice-pwd:0123456789012345678901\r\n\
         a=fingerprint:sha-256 {}\r\na=setup:actpass\r\na=rtpmap:0 PCMU/8000\r\n\
         a=candidate:1 1 udp 2130706431 127.0.0.1 9 typ host\r\n",
        ["AB"; 32].join(":")
    )
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
    let silent = offer(&silent_offer());
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

/// 20 ms levels of 8 kHz audio, in dB of full scale (floored at -70).
fn levels(pcm: &[i16]) -> Vec<f64> {
    pcm.chunks_exact(160)
        .map(|f| {
            let energy = f.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / 160.0;
            (10.0 * (energy.max(1.0) / (32768.0 * 32768.0)).log10()).max(-70.0)
        })
        .collect()
}

fn correlation(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let (va, vb): (f64, f64) = (
        a.iter().map(|x| (x - ma).powi(2)).sum(),
        b.iter().map(|y| (y - mb).powi(2)).sum(),
    );
    cov / (va * vb).sqrt().max(1e-9)
}

/// Frame by frame, how `heard` (20 ms levels) follows `source`, a loop of 20 ms
/// levels: each second of heard speech is placed where it fits the loop best
/// (a jitter buffer may stretch time between seconds). Returns the seconds with
/// speech, how many of them follow the loop (levels correlated r >= 0.8, speech
/// frames within `tolerance` dB on average), and the median r.
fn follows_loop(heard: &[f64], source: &[f64], tolerance: f64) -> (usize, usize, f64) {
    let (mut speech, mut matched, mut rs) = (0, 0, Vec::new());
    for window in heard.chunks_exact(50) {
        if window.iter().cloned().fold(-70.0, f64::max) < -45.0 {
            continue;
        }
        speech += 1;
        let (r, lag) = (0..source.len())
            .map(|lag| {
                let placed: Vec<f64> = (0..50).map(|k| source[(lag + k) % source.len()]).collect();
                (correlation(window, &placed), lag)
            })
            .fold((f64::MIN, 0), |best, x| if x.0 > best.0 { x } else { best });
        let both: Vec<f64> = (0..50)
            .filter(|&k| window[k] > -40.0 && source[(lag + k) % source.len()] > -40.0)
            .map(|k| window[k] - source[(lag + k) % source.len()])
            .collect();
        let level = both.iter().sum::<f64>() / both.len().max(1) as f64;
        if r >= 0.8 && level.abs() <= tolerance {
            matched += 1;
        }
        rs.push(r);
    }
    (speech, matched, common::nearest_rank(&mut rs, 0.5))
}

/// µ-law frames as 8 kHz samples.
fn decoded(frames: &[[u8; 160]]) -> Vec<i16> {
    let mut pcm = vec![0i16; frames.len() * 160];
    for (f, out) in frames.iter().zip(pcm.chunks_exact_mut(160)) {
        kefu::media::g711::Law::Pcmu.decode(f, out);
    }
    pcm
}

/// A SIP caller (the raw UA) is warm-transferred to an agent who takes calls on
/// the desk's softphone: the call rings on the desk, the agent answers in
/// Chromium and hears the summary (Whisper recognises it), accepts, and the two
/// talk through kefu's bridge (G.711 on the caller's side, Opus in the browser).
/// Each direction's audio is compared frame by frame (20 ms levels) with what
/// was sent, and the desk shows both sides' words in the live transcript.
#[test]
fn the_desk_softphone_takes_a_warm_transferred_sip_call() {
    let _turn = one_call_at_a_time();
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

    let plans = tempfile::tempdir().unwrap();
    common::phone::always_open_plans(plans.path());
    let s = Server::start_with(
        Some(plans.path()),
        "asr_model = \"tiny.en-q8_0\"\n[[queue]]\nname = \"support-en\"\nring_timeout = \"60s\"\nmax_wait = \"2m\"\n",
    );
    common::phone::add_agent_with_phone(&s, "ann", "3001", "support-en");
    let dir = tempfile::tempdir().unwrap();
    // Each side says its sentence, then a second of quiet, over and over.
    let looped = |words: &str| {
        let mut frames = common::spoken_frames(words, dir.path());
        frames.extend(std::iter::repeat_n([0xffu8; 160], 50));
        frames
    };
    let agent_loop = decoded(&looped(
        "Hello, this is Ann from the service desk. How can I help you today?",
    ));
    let mic = dir.path().join("agent.wav");
    write_wav(&mic, 8000, agent_loop.iter().copied());
    let caller_loop = looped("I would like to know where my refund is. It has been two weeks.");

    let caller = common::RawUa::new(s.sip);
    let stop = AtomicBool::new(false);
    let since_epoch = || {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
    };
    let (seen, received) = std::thread::scope(|scope| {
        let desk = scope.spawn(|| {
            browser(
                &s,
                "softphone.mjs",
                &[
                    "ann",
                    "a long enough password",
                    mic.to_str().unwrap(),
                    "7000",
                    "8000",
                ],
                "softphone",
            )
        });
        caller.answered_call("softphone-call", "4008002000");
        let rtp = caller.rtp.try_clone().unwrap();
        rtp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 2048];
        let (_, kefu_media) = rtp.recv_from(&mut buf).unwrap();
        // The caller: quiet, key 0 (a person) at the menu, then its sentence.
        let (stop, caller_loop, caller) = (&stop, &caller_loop, &caller);
        let sending = scope.spawn(move || {
            let sock = caller.rtp.try_clone().unwrap();
            let start = Instant::now();
            let (mut seq, mut i) = (1u16, 0usize);
            while !stop.load(Ordering::Relaxed) && start.elapsed() < Duration::from_secs(150) {
                if i == 125 {
                    common::phone::press(&sock, 101, kefu_media, 0, &mut seq);
                    i += 6;
                }
                let payload: &[u8] = if i < 125 {
                    &[0xff; 160]
                } else {
                    &caller_loop[(i - 125) % caller_loop.len()]
                };
                let packet = common::phone::rtp(0, seq, 160 * i as u32, false, payload);
                let _ = sock.send_to(&packet, kefu_media);
                seq = seq.wrapping_add(1);
                i += 1;
                let next = start + Duration::from_millis(20 * i as u64);
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
        });
        // What the caller hears, with when it arrived.
        let hearing = scope.spawn(move || {
            let sock = caller.rtp.try_clone().unwrap();
            sock.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            let mut heard = Vec::new();
            let mut buf = [0u8; 2048];
            let start = Instant::now();
            while !stop.load(Ordering::Relaxed) && start.elapsed() < Duration::from_secs(150) {
                if let Ok((n, _)) = sock.recv_from(&mut buf)
                    && n == 172
                    && buf[1] & 0x7f == 0
                {
                    heard.push((since_epoch(), buf[12..n].to_vec()));
                }
            }
            heard
        });
        // The agent hangs up: kefu hangs the caller up (the desk sees the call
        // end once the caller's side is done).
        let bye = scope.spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Some(m) = caller.recv(Duration::from_millis(200))
                    && m.starts_with("BYE ")
                {
                    caller.ok(&m);
                    return true;
                }
            }
            false
        });
        let seen = desk.join();
        stop.store(true, Ordering::Relaxed);
        sending.join().unwrap();
        let received = hearing.join().unwrap();
        let (seen, _) = seen.unwrap_or_else(|e| std::panic::resume_unwind(e));
        assert!(bye.join().unwrap(), "kefu hung the caller up");
        (seen, received)
    });
    eprintln!(
        "softphone: rang {} ms after going available; connected {} ms after answering",
        seen["ringMs"], seen["connectedMs"]
    );
    let offer = seen["offer"].as_str().unwrap();
    assert!(offer.contains("Call from"), "the desk's offer: {offer}");
    let samples = |v: &serde_json::Value| -> Vec<i16> {
        v["samples"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_i64().unwrap() as i16)
            .collect()
    };
    // The summary, as the agent heard it in the browser.
    let summary = dir.path().join("summary.wav");
    write_wav(&summary, 16_000, samples(&seen["summary"]));
    let text = whisper(&summary);
    eprintln!("the summary as the desk heard it (Whisper tiny.en): {text:?}");
    assert!(
        text.contains("call from") || text.contains("press") || text.contains("take the call"),
        "the summary as the desk heard it: {text:?}"
    );
    // Caller → agent: what the desk heard (16 kHz, taken down to 8 kHz).
    let at_desk: Vec<i16> = samples(&seen["call"])
        .chunks_exact(2)
        .map(|p| ((i32::from(p[0]) + i32::from(p[1])) / 2) as i16)
        .collect();
    let (speech, matched, r) =
        follows_loop(&levels(&at_desk), &levels(&decoded(&caller_loop)), 3.0);
    eprintln!(
        "caller → desk: {matched} of {speech} seconds of speech follow the caller's audio frame by frame (median r {r:.2})"
    );
    assert!(
        speech >= 4 && matched * 10 >= speech * 8,
        "caller → desk: {matched}/{speech}, r {r:.2}"
    );
    // Agent → caller: what the caller heard while bridged.
    let (from, to) = (
        seen["acceptedAt"].as_u64().unwrap() + 1500,
        seen["hungUpAt"].as_u64().unwrap() - 200,
    );
    let bridged: Vec<[u8; 160]> = received
        .iter()
        .filter(|(at, _)| (from..to).contains(at))
        .map(|(_, p)| p.as_slice().try_into().unwrap())
        .collect();
    let (speech, matched, r) = follows_loop(&levels(&decoded(&bridged)), &levels(&agent_loop), 6.0);
    eprintln!(
        "desk → caller: {matched} of {speech} seconds of speech follow the agent's microphone frame by frame (median r {r:.2})"
    );
    assert!(
        speech >= 4 && matched * 10 >= speech * 8,
        "desk → caller: {matched}/{speech}, r {r:.2}"
    );
    // The live transcript on the desk: both sides' words.
    let (customer, agent) = (
        seen["customerLine"].as_str().unwrap().to_lowercase(),
        seen["agentLine"].as_str().unwrap().to_lowercase(),
    );
    // Whisper hears each line a little differently from run to run ("hello this
    // is and from the service test."): two of its words must be there.
    let heard = |line: &str, words: &[&str]| words.iter().filter(|w| line.contains(*w)).count();
    assert!(
        heard(&customer, &["know", "where", "refund", "two", "weeks"]) >= 2,
        "{customer:?}"
    );
    assert!(
        heard(
            &agent,
            &["hello", "ann", "service", "desk", "help", "today"]
        ) >= 2,
        "{agent:?}"
    );
    assert_eq!(seen["hangUpStatus"], 204);
    let record = common::only_record(&s);
    assert_eq!(record["end_reason"], "agent-hangup", "{record}");
    assert_eq!(
        record["transfer"]["tried"][0][1], "took the call",
        "{record}"
    );
    assert!(
        s.logs()
            .iter()
            .any(|l| l.contains("the desk's browser took the ringing call"))
    );
}

/// The softphone's routes take only the signed-in agent's own calls: nothing
/// ringing is a 404, a bad offer a 400 with the reason, a user who is no agent a
/// 404, and another agent's call cannot be touched.
#[test]
fn the_softphone_answers_only_calls_ringing_on_its_own_desk() {
    let s = server();
    common::phone::add_agent_with_phone(&s, "bo", "3002", "support-en");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (cookie, csrf) = runtime.block_on(s.sign_in("bo", "a long enough password"));
    let agent =
        format!("Cookie: {cookie}\r\nX-CSRF-Token: {csrf}\r\nContent-Type: application/json\r\n");
    let (status, body) = http(&s, "POST", "/api/agent/softphone", &agent, r#"{"on":true}"#);
    assert_eq!((status, body.as_str()), (200, r#"{"on":true}"#));
    let (status, body) = http(
        &s,
        "POST",
        "/api/agent/softphone",
        &agent,
        r#"{"on":"yes"}"#,
    );
    assert_eq!(status, 422, "{body}");
    let pick = |item: &str, kind: &str, sdp: &str| {
        serde_json::json!({"item": item, "type": kind, "sdp": sdp}).to_string()
    };
    let calls = "/api/agent/softphone/calls";
    for (body, want, reason) in [
        (
            pick("no-such-call", "offer", &silent_offer()),
            404,
            "not ringing on your desk",
        ),
        (pick("no-such-call", "offer", "not sdp"), 400, "not SDP"),
        (
            pick("no-such-call", "answer", &silent_offer()),
            400,
            "offer",
        ),
        (r#"{"item":"x"}"#.to_string(), 422, ""),
    ] {
        let (status, answer) = http(&s, "POST", calls, &agent, &body);
        assert_eq!(status, want, "{answer}");
        assert!(answer.contains(reason), "{answer}");
    }
    let (status, _) = http(&s, "DELETE", &format!("{calls}/desk-nope"), &agent, "");
    assert_eq!(status, 404);
    let (status, _) = http(
        &s,
        "POST",
        &format!("{calls}/desk-nope/candidates"),
        &agent,
        r#"{"candidate":""}"#,
    );
    assert_eq!(status, 404);
    // Someone signed in who is not an agent has no softphone.
    let (ok, _, err) = s.kefu_with_input(
        &[
            "users",
            "add",
            "sue",
            "--role",
            "supervisor",
            "--password-stdin",
        ],
        "a long enough password\n",
    );
    assert!(ok, "{err}");
    let (cookie, csrf) = runtime.block_on(s.sign_in("sue", "a long enough password"));
    let supervisor =
        format!("Cookie: {cookie}\r\nX-CSRF-Token: {csrf}\r\nContent-Type: application/json\r\n");
    let (status, body) = http(
        &s,
        "POST",
        "/api/agent/softphone",
        &supervisor,
        r#"{"on":true}"#,
    );
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("not an agent"), "{body}");
    // Off: the desk's offers no longer ring.
    let (status, _) = http(
        &s,
        "POST",
        "/api/agent/softphone",
        &agent,
        r#"{"on":false}"#,
    );
    assert_eq!(status, 200);
}
