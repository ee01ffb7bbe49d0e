//! Speech as a network service (OpenAI's `/v1/audio` API): kefu serving it from
//! its own models, a kefu node hearing and speaking through another node's, the
//! same client against an independent implementation (faster-whisper-server, on
//! CTranslate2, installed by deploy/speech-server.sh), and the fall-back to the
//! local model when the service is gone. Everything over real sockets.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::Server;

/// A speech node: no plan listens, `serve_speech` loads the models anyway.
fn speech_node() -> (Server, String) {
    let server = Server::start_with(None, "asr_model = \"tiny.en-q8_0\"\nserve_speech = true");
    let token = server.api_token();
    (server, token)
}

/// The value of a counter line `kefu_NAME_total{LABELS} N` (0 when absent).
fn counter(metrics: &str, name: &str, labels: &str) -> f64 {
    let prefix = format!("kefu_{name}_total{{{labels}}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

fn metrics(server: &Server) -> String {
    server.get_metrics(&auditor(server)).1
}

fn auditor(server: &Server) -> String {
    let (ok, out, err) = server.kefu(&["tokens", "create", "scraper", "--role", "auditor"]);
    assert!(ok, "{err}");
    out.trim().to_string()
}

/// espeak-ng's WAV (22.05 kHz) of `text`.
fn espeak_wav(text: &str, dir: &Path) -> Vec<u8> {
    let path = dir.join("question.wav");
    let ok = Command::new("espeak-ng")
        .args(["-v", "en-us", "-w"])
        .arg(&path)
        .arg(text)
        .status()
        .unwrap()
        .success();
    assert!(ok, "espeak-ng failed");
    std::fs::read(path).unwrap()
}

async fn transcribe(
    c: &reqwest::Client,
    base: &str,
    token: Option<&str>,
    wav: Vec<u8>,
    fields: &[(&str, &str)],
) -> (u16, String) {
    let mut form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(wav).file_name("q.wav"),
    );
    for (k, v) in fields {
        form = form.text(k.to_string(), v.to_string());
    }
    let mut r = c
        .post(format!("{base}/v1/audio/transcriptions"))
        .multipart(form);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let answer = r.send().await.unwrap();
    (answer.status().as_u16(), answer.text().await.unwrap())
}

async fn speak(
    c: &reqwest::Client,
    base: &str,
    token: &str,
    body: serde_json::Value,
) -> reqwest::Response {
    c.post(format!("{base}/v1/audio/speech"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// kefu's own speech API with an ordinary HTTP client: it hears a WAV in any
/// rate, speaks in its voices (what it says is heard back as said), and turns
/// away what it cannot serve with a reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kefu_serves_the_openai_audio_api() {
    let (server, token) = speech_node();
    let base = format!("http://{}", server.http);
    let c = reqwest::Client::new();
    let dir = tempfile::tempdir().unwrap();
    let question = espeak_wav("I would like to know my refund status", dir.path());

    let (status, body) = transcribe(
        &c,
        &base,
        Some(&token),
        question.clone(),
        &[("model", "whisper-1"), ("language", "en")],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let text = serde_json::from_str::<serde_json::Value>(&body).unwrap()["text"]
        .as_str()
        .unwrap()
        .to_lowercase();
    assert!(text.contains("refund"), "{body}");
    let (status, body) = transcribe(
        &c,
        &base,
        Some(&token),
        question.clone(),
        &[("response_format", "text")],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.to_lowercase().contains("refund") && !body.contains('{'),
        "{body}"
    );
    let (status, body) = transcribe(
        &c,
        &base,
        Some(&token),
        question.clone(),
        &[("response_format", "verbose_json")],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(v["duration"].as_f64().unwrap() > 1.0, "{v}");

    // Speech: WAV at 8 kHz, which the same API hears back.
    let answer = speak(&c, &base, &token, serde_json::json!({"model": "tts-1", "input": "Your refund is on its way.", "voice": "en_US-joe-medium"})).await;
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.headers()["content-type"], "audio/wav");
    let wav = answer.bytes().await.unwrap().to_vec();
    let spec = hound::WavReader::new(std::io::Cursor::new(&wav))
        .unwrap()
        .spec();
    assert_eq!((spec.sample_rate, spec.channels), (8000, 1));
    let (status, body) = transcribe(&c, &base, Some(&token), wav, &[("language", "en")]).await;
    assert_eq!(status, 200, "{body}");
    // The words come back (Piper's renders vary, and Whisper tiny.en at 8 kHz
    // once heard "refund" as "reef and": most words, not every one).
    let heard: Vec<String> = body
        .to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .map(str::to_string)
        .collect();
    let said = ["your", "refund", "is", "on", "its", "way"];
    let back = said
        .iter()
        .filter(|w| heard.iter().any(|h| h == *w))
        .count();
    assert!(back >= 4, "heard back {back} of {said:?}: {body}");
    let raw = speak(&c, &base, &token, serde_json::json!({"input": "Thank you.", "voice": "en_US-joe-medium", "response_format": "pcm"})).await;
    assert_eq!(raw.status(), 200);
    let raw = raw.bytes().await.unwrap();
    assert!(
        raw.len() > 24_000 / 4 && raw.len() % 2 == 0,
        "{} bytes",
        raw.len()
    );

    // Refusals, each with its reason.
    let (status, body) = transcribe(&c, &base, None, question.clone(), &[]).await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = transcribe(
        &c,
        &base,
        Some(&token),
        b"ID3\x04\x00 not a wav".to_vec(),
        &[],
    )
    .await;
    assert_eq!(status, 415, "{body}");
    assert!(body.contains("WAV"), "{body}");
    let (status, body) = transcribe(
        &c,
        &base,
        Some(&token),
        question.clone(),
        &[("language", "fr")],
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("en or zh"), "{body}");
    let (status, body) = transcribe(
        &c,
        &base,
        Some(&token),
        question.clone(),
        &[("response_format", "srt")],
    )
    .await;
    assert_eq!(status, 400, "{body}");
    // A prompt (the words to expect) is taken; one too long is refused with why.
    let (status, body) = transcribe(
        &c,
        &base,
        Some(&token),
        question.clone(),
        &[("language", "en"), ("prompt", "refunds, order status")],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let long = "退款".repeat(1001);
    let (status, body) = transcribe(
        &c,
        &base,
        Some(&token),
        question.clone(),
        &[("prompt", long.as_str())],
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("prompt"), "{body}");
    let no_file = c
        .post(format!("{base}/v1/audio/transcriptions"))
        .bearer_auth(&token)
        .multipart(reqwest::multipart::Form::new().text("model", "whisper-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(no_file.status(), 400);
    let not_multipart = c
        .post(format!("{base}/v1/audio/transcriptions"))
        .bearer_auth(&token)
        .body("file=x")
        .send()
        .await
        .unwrap();
    assert_eq!(not_multipart.status(), 415);
    for (body, wanted) in [
        (
            serde_json::json!({"input": "Hi.", "voice": "alloy"}),
            "unknown voice",
        ),
        (
            serde_json::json!({"input": "Hi.", "voice": "remote:x:y"}),
            "own voices",
        ),
        (
            serde_json::json!({"input": "", "voice": "en_US-joe-medium"}),
            "1 to 4096",
        ),
        (
            serde_json::json!({"input": "a".repeat(5000), "voice": "en_US-joe-medium"}),
            "1 to 4096",
        ),
        (
            serde_json::json!({"input": "Hi.", "voice": "en_US-joe-medium", "response_format": "mp3"}),
            "wav or pcm",
        ),
        (
            serde_json::json!({"input": "Hi.", "voice": "en_US-joe-medium", "speed": 2.0}),
            "speed",
        ),
        (serde_json::json!({"voice": "en_US-joe-medium"}), "input"),
    ] {
        let r = speak(&c, &base, &token, body.clone()).await;
        assert_eq!(r.status(), 400, "{body}");
        let text = r.text().await.unwrap();
        assert!(text.contains(wanted), "{body}: {text}");
    }
    let m = metrics(&server);
    assert!(
        counter(&m, "speech_served", "kind=\"transcription\",outcome=\"ok\"") >= 4.0,
        "{m}"
    );
    assert!(
        counter(&m, "speech_served", "kind=\"speech\",outcome=\"ok\"") >= 2.0,
        "{m}"
    );
    assert!(
        counter(
            &m,
            "speech_served",
            "kind=\"transcription\",outcome=\"refused\""
        ) >= 4.0,
        "{m}"
    );
}

/// The settings that send a node's English recognition (and, with `voice`,
/// its English speech) to the service at `url`.
fn remote_settings(url: &str, key: Option<&str>, voice: bool, cache: &Path) -> String {
    let mut s = format!("tts_cache = {cache:?}\n");
    if voice {
        s.push_str("[voices]\nen = \"remote:pool:en_US-joe-medium\"\n");
    }
    s.push_str("[recognition]\nen = \"pool\"\n\n[[speech_service]]\nname = \"pool\"\n");
    s.push_str(&format!("url = \"{url}\"\ntimeout = \"5s\"\n"));
    if let Some(k) = key {
        s.push_str(&format!("api_key = \"{k}\"\n"));
    }
    s
}

/// A media node whose plan listens hears its caller through another kefu
/// node's recogniser and speaks through its voice: the call is answered, and
/// both nodes' counters show the work crossed between them.
#[test]
fn a_node_hears_and_speaks_through_another_nodes_models() {
    let (pool, token) = speech_node();
    let cache = tempfile::tempdir().unwrap();
    let settings = remote_settings(
        &format!("http://{}/v1", pool.http),
        Some(&token),
        true,
        cache.path(),
    );
    let (node, r, _dir) = common::ask_call_with("What time do you close today?", false, &settings);
    common::assert_hours_answered(&r);
    let at_node = metrics(&node);
    let at_pool = metrics(&pool);
    assert!(
        counter(
            &at_node,
            "speech_remote",
            "kind=\"transcription\",outcome=\"ok\""
        ) >= 1.0,
        "{at_node}"
    );
    assert_eq!(
        counter(
            &at_node,
            "speech_remote",
            "kind=\"transcription\",outcome=\"fallback\""
        ),
        0.0,
        "{at_node}"
    );
    assert!(
        counter(&at_node, "speech_remote", "kind=\"speech\",outcome=\"ok\"") >= 1.0,
        "{at_node}"
    );
    assert!(
        counter(
            &at_pool,
            "speech_served",
            "kind=\"transcription\",outcome=\"ok\""
        ) >= 1.0,
        "{at_pool}"
    );
    assert!(
        counter(&at_pool, "speech_served", "kind=\"speech\",outcome=\"ok\"") >= 1.0,
        "{at_pool}"
    );
}

/// faster-whisper-server on a free loopback port, until dropped.
struct Independent {
    child: Child,
    port: u16,
}

impl Drop for Independent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn independent_server() -> Independent {
    let dir: PathBuf = common::repo().join("models/.speech-server");
    let program = dir.join("venv/bin/faster-whisper-server");
    assert!(
        program.exists(),
        "{} is missing: run deploy/speech-server.sh",
        program.display()
    );
    let port = common::free_port();
    let child = Command::new(program)
        .arg(dir.join("model"))
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        // Nothing from a model hub: the model is a local directory.
        .env("HF_HUB_OFFLINE", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let server = Independent { child, port };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let up = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok_and(|mut s| {
            use std::io::{Read, Write};
            let _ = write!(
                s,
                "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            );
            let mut text = String::new();
            let _ = s.read_to_string(&mut text);
            text.starts_with("HTTP/1.1 200")
        });
        if up {
            return server;
        }
        assert!(
            Instant::now() < deadline,
            "faster-whisper-server did not come up"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The same client against an independent implementation of the API: a call's
/// question is heard by faster-whisper-server and answered.
#[test]
fn a_node_hears_through_an_independent_whisper_server() {
    let independent = independent_server();
    let cache = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{}/v1", independent.port);
    let settings = remote_settings(&url, None, false, cache.path());
    let (node, r, _dir) = common::ask_call_with("What time do you close today?", false, &settings);
    common::assert_hours_answered(&r);
    let m = metrics(&node);
    assert!(
        counter(&m, "speech_remote", "kind=\"transcription\",outcome=\"ok\"") >= 1.0,
        "{m}"
    );
    assert_eq!(
        counter(
            &m,
            "speech_remote",
            "kind=\"transcription\",outcome=\"fallback\""
        ),
        0.0,
        "{m}"
    );
}

/// A service that is gone: the local model hears the caller and a local voice
/// answers, so the caller notices nothing.
#[test]
fn a_dead_service_falls_back_to_the_local_models() {
    let port = common::free_port();
    let cache = tempfile::tempdir().unwrap();
    let settings = remote_settings(
        &format!("http://127.0.0.1:{port}/v1"),
        None,
        true,
        cache.path(),
    );
    let (node, r, _dir) = common::ask_call_with("What time do you close today?", false, &settings);
    common::assert_hours_answered(&r);
    let m = metrics(&node);
    assert!(
        counter(
            &m,
            "speech_remote",
            "kind=\"transcription\",outcome=\"fallback\""
        ) >= 1.0,
        "{m}"
    );
    assert!(
        counter(&m, "speech_remote", "kind=\"speech\",outcome=\"fallback\"") >= 1.0,
        "{m}"
    );
    assert_eq!(
        counter(&m, "speech_remote", "kind=\"transcription\",outcome=\"ok\""),
        0.0,
        "{m}"
    );
}
