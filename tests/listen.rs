//! A caller speaks to a `listen` node over a real SIP call: real RTP carrying Piper
//! speech through G.711, Silero VAD, endpointing and Whisper in the server. The test
//! measures barge-in on the RTP it receives and checks the route the words took.

mod common;

use std::io::{Read, Write};
use std::net::UdpSocket;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{RawUa, Server};

const PLAN: &str = r#"[dialplan]
name = "speech"
numbers = ["400"]
language = "en"
start = "ask"

[nodes.ask]
type = "listen"
prompt = "en/main-menu.wav"
timeout = "8s"
on_failure = "bye"

[nodes.ask.keywords]
"opening hours|open" = "hours"
"order|parcel" = "order"

[nodes.ask.options]
2 = "hours"

[nodes.hours]
type = "play"
prompt = "en/hours.wav"
next = "bye"

[nodes.order]
type = "play"
prompt = "en/enter-order.wav"
next = "bye"

[nodes.bye]
type = "hangup"
"#;

/// Whether a µ-law frame carries sound (not line silence).
fn loud(frame: &[u8]) -> bool {
    frame.iter().filter(|&&b| (b & 0x7f) < 0x60).count() > 8
}

/// Sends RTP from `sock` to `to`, paced at 20 ms: `lead` silent frames, then
/// `speech`, then silence until `stop` is set. `sent` counts the frames sent so far.
fn send_stream(
    sock: UdpSocket,
    to: std::net::SocketAddr,
    lead: usize,
    speech: Vec<[u8; 160]>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    sent: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    let start = Instant::now();
    let mut seq: u16 = 1000;
    let mut ts: u32 = 0;
    let mut i = 0usize;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) && i < 3000 {
        let payload = if i >= lead && i - lead < speech.len() {
            speech[i - lead]
        } else {
            [0xffu8; 160]
        };
        let mut pkt = vec![0x80, 0x00];
        pkt.extend_from_slice(&seq.to_be_bytes());
        pkt.extend_from_slice(&ts.to_be_bytes());
        pkt.extend_from_slice(&0x1234_5678u32.to_be_bytes());
        pkt.extend_from_slice(&payload);
        let _ = sock.send_to(&pkt, to);
        sent.store(i + 1, std::sync::atomic::Ordering::Relaxed);
        seq = seq.wrapping_add(1);
        ts = ts.wrapping_add(160);
        i += 1;
        let next = start + Duration::from_millis(20 * i as u64);
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
}

#[test]
fn a_caller_says_what_they_want_and_barges_in() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("speech.toml"), PLAN).unwrap();
    let speech = common::spoken_frames("What are your opening hours?", dir.path());
    let server = Server::start_with(Some(dir.path()), "asr_model = \"tiny.en-q8_0\"");
    let ua = RawUa::new(server.sip);
    ua.answered_call("listen-1", "400");

    // kefu's RTP tells us where to send ours (symmetric RTP).
    ua.rtp
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut buf = [0u8; 2048];
    let (_, kefu_rtp) = ua.rtp.recv_from(&mut buf).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    // Speak 1.5 s into the 7.8 s menu prompt.
    const LEAD: usize = 75;
    let speech_end = LEAD + speech.len();
    let sender = {
        let sock = ua.rtp.try_clone().unwrap();
        let (stop, sent) = (stop.clone(), sent.clone());
        std::thread::spawn(move || send_stream(sock, kefu_rtp, LEAD, speech, stop, sent))
    };

    // Watch the prompt on the caller's side, counting in the caller's own frames:
    // barge-in means the prompt goes quiet while the caller is still speaking.
    let frames_sent = || sent.load(std::sync::atomic::Ordering::Relaxed);
    let mut quiet = 0;
    let mut quiet_from = None;
    let stopped_at = loop {
        let (n, _) = ua
            .rtp
            .recv_from(&mut buf)
            .expect("kefu's RTP during the prompt");
        let at = frames_sent();
        if at <= LEAD {
            continue;
        }
        if loud(rtp_rs::RtpReader::new(&buf[..n]).unwrap().payload()) {
            quiet = 0;
        } else {
            quiet += 1;
            if quiet == 1 {
                quiet_from = Some(at);
            }
        }
        // Ten silent frames in a row (200 ms): longer than the prompt's own pauses.
        if quiet == 10 {
            break quiet_from.unwrap_or(at);
        }
        assert!(
            at < speech_end + 200,
            "the prompt kept playing over the caller"
        );
    };
    eprintln!(
        "barge-in: prompt audio stopped at the caller's frame {} (speech {LEAD}..{speech_end})",
        stopped_at
    );
    assert!(
        stopped_at < speech_end,
        "the prompt went on until the caller had finished speaking (frame {stopped_at}, \
         speech ended at frame {speech_end})"
    );

    // The words route the call to the opening hours, then kefu says goodbye.
    ua.answer_request("BYE", Duration::from_secs(30));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    sender.join().unwrap();
    let r = server.record("listen-1");
    let path = common::strings(&r["path"]);
    assert_eq!(path, ["ask", "hours", "bye"], "{r}");
    let heard = r["vars"]["heard"].as_str().unwrap().to_lowercase();
    // The route above is what matters. The transcript's last word varies with how
    // the utterance is cut ("opening hours", "open hours", "opening now?", seen in
    // test runs), so only the word that routed it is required.
    assert!(heard.contains("open"), "{r}");
    assert_eq!(r["utterances"].as_array().unwrap().len(), 1, "{r}");
    let latency = server
        .logs()
        .iter()
        .filter(|l| l.contains("caller said"))
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["latency_ms"].as_u64())
        .next();
    eprintln!("end of utterance → transcript: {latency:?} ms");
}

/// SIPp as the caller streams a PCMU recording of a spoken request (replayed from a
/// pcap, as a softphone or trunk would send it); the words pick the route.
#[test]
fn sipp_streams_a_spoken_request_and_is_routed() {
    use common::{Step, caller_scenario, only_record, sipp, write_rtp_pcap};
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("speech.toml"), PLAN).unwrap();
    let payloads: Vec<Vec<u8>> = common::spoken_frames("I am calling about my order.", dir.path())
        .iter()
        .map(|f| f.to_vec())
        .collect();
    let pcap = dir.path().join("order.pcap");
    write_rtp_pcap(&pcap, &payloads, 0, 2000);
    let server = Server::start_with(Some(dir.path()), "asr_model = \"tiny.en-q8_0\"");
    let scenario = caller_scenario(
        dir.path(),
        "spoken_order",
        true,
        &[Step::Pause(1000), Step::Pcap(pcap)],
    );
    let (ok, out) = sipp(&server, &scenario, "400", &[]);
    assert!(
        ok,
        "SIPp failed:\n{out}\nserver:\n{}",
        server.logs().join("\n")
    );
    let r = only_record(&server);
    let path = common::strings(&r["path"]);
    assert_eq!(path, ["ask", "order", "bye"], "{r}");
    assert!(
        r["vars"]["heard"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("order"),
        "{r}"
    );
}

/// SIPp calls the `ask` plan and says `words`; returns the server and the record.
/// With `shipped`, kefu runs its shipped defaults (the default Whisper model, the
/// semantic re-ranker on); otherwise the small English model and words-only matching.
fn ask_call(words: &str, shipped: bool) -> (Server, serde_json::Value, tempfile::TempDir) {
    common::ask_call_with(words, shipped, "")
}

/// An `ask` node over a real call: SIPp speaks a question, Whisper hears it, the
/// dialogue core answers from the demo knowledge base, Piper speaks the answer.
#[test]
fn sipp_asks_a_question_and_hears_the_answer() {
    asks_and_hears(false);
}

/// The same with kefu as it ships: the default Whisper model and the semantic
/// re-ranker.
#[test]
fn sipp_asks_a_question_and_hears_the_answer_with_the_shipped_defaults() {
    asks_and_hears(true);
}

fn asks_and_hears(shipped: bool) {
    // "today": Piper renders differ from run to run, and tiny.en heard a bare
    // "What time do you close?" as "…do you quote?" in about one run in seven.
    let (_server, r, _dir) = ask_call("What time do you close today?", shipped);
    common::assert_hours_answered(&r);
    let turns = r["dialogue"].as_array().unwrap();
    // The answer is spoken sentence by sentence, in order.
    let answer = turns[1]["text"].as_str().unwrap();
    let spoken: String = common::strings(&r["prompts"])
        .iter()
        .filter_map(|p| p.strip_prefix("say:"))
        .collect::<Vec<_>>()
        .join(" ");
    assert_eq!(spoken, answer, "the answer was not played: {r}");
    assert_eq!(r["vars"]["intent"], "opening_hours", "{r}");
    // End of speech → transcript, and transcript → the answer's first sentence ready.
    let field = |needle: &str, key: &str| {
        _server
            .logs()
            .iter()
            .filter(|l| l.contains(needle))
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find_map(|v| v[key].as_u64())
    };
    eprintln!(
        "end of utterance → transcript: {:?} ms; first sentence of the answer rendered in {:?} ms",
        field("caller said", "latency_ms"),
        field("answer speaking", "first_sentence_ms")
    );
}

/// A stand-in SMS gateway on loopback (a real HTTP server taking the form posts
/// kefu sends): the bodies it received.
fn sms_gateway() -> (std::net::SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let sent: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = sent.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut request = Vec::new();
            let mut chunk = [0u8; 4096];
            let body = loop {
                let n = stream.read(&mut chunk).unwrap_or(0);
                if n == 0 {
                    break None;
                }
                request.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&request).to_string();
                let Some((head, body)) = text.split_once("\r\n\r\n") else {
                    continue;
                };
                let length = head
                    .lines()
                    .find_map(|l| {
                        let (name, value) = l.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                if body.len() >= length {
                    break Some(body.to_string());
                }
            };
            if let Some(body) = body {
                sink.lock().unwrap().push(body);
            }
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\nconnection: close\r\n\r\nqueued",
            );
        }
    });
    (addr, sent)
}

/// What a caller raised on the phone follows them to web chat once the app has
/// proved their number (a code texted to it) and linked its user's web visitor.
/// The number cannot be linked without the code.
#[test]
fn a_topic_raised_on_the_phone_is_offered_in_web_chat() {
    let (gateway, sent) = sms_gateway();
    let (server, r, _dir) = common::ask_call_with(
        "I want to make a complaint.",
        false,
        &format!("sms_outbound_url = \"http://{gateway}/send\"\n"),
    );
    assert_eq!(r["dialogue"][0]["intent"], "complaint", "{r}");
    let caller = r["from"].as_str().unwrap().to_string();
    let auth = format!("authorization: Bearer {}", server.api_token());
    let http = |path: &str, body: serde_json::Value| -> (u16, serde_json::Value) {
        let out = Command::new("curl")
            .args(["-s", "-w", "\n%{http_code}", "-X", "POST"])
            .args(["-H", "content-type: application/json", "-H", &auth, "-d"])
            .arg(body.to_string())
            .arg(format!("http://{}{path}", server.http))
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&out.stdout).to_string();
        let (body, status) = out.rsplit_once('\n').unwrap_or_default();
        let json = serde_json::from_str(body).unwrap_or(serde_json::Value::Null);
        (status.trim().parse().unwrap_or(0), json)
    };
    // Asserting the number is not enough.
    let (status, refused) = http(
        "/api/v1/customers/link",
        serde_json::json!({"identities": [{"kind": "app", "value": "app-9"}, {"kind": "phone", "value": caller}]}),
    );
    assert_eq!(status, 403, "{refused}");
    // The app's user proves it: the code texted to the number, typed back.
    let (status, started) = http(
        "/api/v1/conversations",
        serde_json::json!({"user": "app-9", "lang": "en"}),
    );
    assert_eq!(status, 201, "{started}");
    let id = started["conversation"].as_str().unwrap();
    let (status, body) = http(
        &format!("/api/v1/conversations/{id}/phone"),
        serde_json::json!({ "phone": caller }),
    );
    assert_eq!(status, 202, "{body}");
    let text = sent.lock().unwrap().first().cloned().unwrap_or_default();
    let code: String = text
        .split("code")
        .nth(1)
        .unwrap_or_default()
        .chars()
        .filter(char::is_ascii_digit)
        .take(6)
        .collect();
    assert_eq!(code.len(), 6, "{text}");
    let (status, body) = http(
        &format!("/api/v1/conversations/{id}/phone/confirm"),
        serde_json::json!({ "code": code }),
    );
    assert_eq!(status, 200, "{body}");
    let (status, linked) = http(
        "/api/v1/customers/link",
        serde_json::json!({"identities": [{"kind": "app", "value": "app-9"}, {"kind": "web", "value": "visitor-9"}]}),
    );
    assert_eq!(status, 200, "{linked}");
    assert_eq!(
        linked["identities"].as_array().map(Vec::len),
        Some(3),
        "app, phone and web: {linked}"
    );
    let (status, started) = http(
        "/api/chat/conversations",
        serde_json::json!({"visitor": "visitor-9", "lang": "en"}),
    );
    assert_eq!(status, 201, "{started}");
    assert_eq!(
        started["reply"]["text"], "Are you contacting us about your complaint?",
        "{started}"
    );
}
