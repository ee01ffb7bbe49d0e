//! Warm transfer over real SIP and RTP: a caller walks the demo menu to "speak to
//! a person", kefu rings the registered agent's phone, speaks the summary, the
//! agent presses 1, and the two are bridged; the tests compare the audio payloads
//! that cross the bridge each way (with transcoding between PCMU and PCMA).

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::phone::{
    Phone, add_agent_with_phone, always_open_plans, available, frame, header, press, rtp,
    sdp_target, transcode,
};
use common::{RawUa, Server, Step, caller_scenario, sipp, write_rtp_pcap};
use kefu::media::g711::Law;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// A SIPp caller presses 0 at the demo's main menu ("speak to a person"); the agent's
/// phone rings with the caller's number in From, hears the summary, presses 1, and
/// the caller's audio reaches the agent transcoded from PCMU to PCMA, byte for byte
/// as G.711 defines it. The call record tells the transfer's story and the ticket
/// is the agent's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sipp_caller_is_warm_transferred_to_a_registered_agent() {
    let plans = tempfile::tempdir().unwrap();
    always_open_plans(plans.path());
    let server = Server::start_with(
        Some(plans.path()),
        "[[queue]]\nname = \"support-en\"\nring_timeout = \"30s\"\nmax_wait = \"2m\"\n",
    );
    add_agent_with_phone(&server, "li", "2001", "support-en");
    available(&server, "li").await;
    let phone = Phone::register(&server, "2001");

    // The caller: menu key 0 by RFC 4733, then (once bridged) 8 s of distinctive
    // audio, then waits for the agent to hang up.
    let dir = tempfile::tempdir().unwrap();
    // What the caller says to the agent (spoken by kefu's own TTS), then
    // distinctive frames.
    let mut caller_frames: Vec<Vec<u8>> = common::spoken_frames(
        "I would like to change the delivery address of my order.",
        dir.path(),
    )
    .iter()
    .map(|f| f.to_vec())
    .collect();
    caller_frames.extend((0..150).map(|i| frame(i, 0x00)));
    let pcap = dir.path().join("caller.pcap");
    write_rtp_pcap(&pcap, &caller_frames, 0, 1000);
    let scenario = caller_scenario(
        dir.path(),
        "to-agent",
        true,
        &[
            Step::Pause(2500),
            Step::Rfc4733('0'),
            Step::Pause(12000),
            Step::Pcap(pcap),
        ],
    );
    let server = std::sync::Arc::new(server);
    let sipp_run = {
        let server = server.clone();
        std::thread::spawn(move || sipp(&server, &scenario, "4008002000", &[]))
    };

    // kefu rings the agent's phone, showing the caller's number.
    let invite = phone.ringing(Duration::from_secs(30));
    assert!(
        header(&invite, "From").unwrap().contains("13800138000"),
        "{invite}"
    );
    phone.answer(&invite);
    let kefu_rtp = sdp_target(&invite);

    // The summary is spoken: some audio arrives before the agent decides (kefu
    // keeps the line with silence while the summary renders, which takes longer on
    // a busy machine: wait for sound, within 10 s).
    let sound = |p: &Vec<u8>| p[12..].iter().any(|&b| b != 0xd5 && b != 0x55);
    let summary = phone.collect(Duration::from_secs(10), |got| {
        got.len() >= 50 && got.iter().any(sound)
    });
    assert!(
        summary.len() >= 50,
        "no summary audio ({} packets)",
        summary.len()
    );
    assert!(
        summary.iter().all(|p| p[1] & 0x7f == 8),
        "kefu speaks PCMA to a PCMA phone"
    );
    assert!(summary.iter().any(sound), "the summary is not silence");
    let mut seq = 1;
    phone.press(kefu_rtp, 1, &mut seq);

    // The desk shows the call the agent is on; its live transcript is pushed on
    // the call's conversation.
    let (cookie, _) = server.sign_in("li", "a long enough password").await;
    let http = reqwest::Client::new();
    let mut live = serde_json::Value::Null;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        live = http
            .get(format!("http://{}/api/agent/calls", server.http))
            .header("cookie", cookie.clone())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if live.as_array().is_some_and(|a| !a.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let conversation = live[0]["conversation"].as_str().unwrap().to_string();
    assert!(
        live[0]["summary"].as_str().unwrap().contains("Call from"),
        "{live}"
    );
    // The desk follows it as the agent (signed in); the public chat route would
    // want the customer's key.
    let mut follow = format!(
        "ws://{}/api/agent/conversations/{conversation}/ws",
        server.http
    )
    .into_client_request()
    .unwrap();
    follow
        .headers_mut()
        .insert("cookie", cookie.parse().unwrap());
    let (ws, _) = tokio_tungstenite::connect_async(follow).await.unwrap();
    let public = format!(
        "ws://{}/api/chat/conversations/{conversation}/ws",
        server.http
    );
    assert!(
        tokio_tungstenite::connect_async(public).await.is_err(),
        "the call's conversation id alone opens nothing"
    );
    let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel::<serde_json::Value>();
    tokio::spawn(async move {
        use futures_util::StreamExt;
        let mut ws = ws;
        while let Some(Ok(m)) = ws.next().await {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&m.to_string()) {
                let _ = lines_tx.send(v);
            }
        }
    });

    // Bridged: the caller's frames arrive, transcoded to PCMA; the phone keeps
    // sending its own (quiet) audio meanwhile.
    let expected: std::collections::HashSet<Vec<u8>> = caller_frames
        .iter()
        .map(|f| transcode(Law::Pcmu, Law::Pcma, f))
        .collect();
    let sender = {
        let sock = phone.ua.rtp.try_clone().unwrap();
        std::thread::spawn(move || {
            for i in 0..1000usize {
                let p = rtp(
                    8,
                    100 + i as u16,
                    20_000 + 160 * i as u32,
                    i == 0,
                    &[0xd5; 160],
                );
                if sock.send_to(&p, kefu_rtp).is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let want = caller_frames.len() * 3 / 4;
    let mut matched = 0;
    let got = phone.collect(Duration::from_secs(40), |got| {
        matched = got
            .iter()
            .filter(|p| p.len() == 172 && expected.contains(&p[12..]))
            .count();
        matched >= want
    });
    assert!(
        matched >= want,
        "the caller's audio did not reach the agent: {matched} of {} frames among {} packets; kefu:\n{}",
        caller_frames.len(),
        got.len(),
        server.logs().join("\n")
    );
    // What the caller said reaches the desk as text while the call goes on.
    let said = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(v) = lines.recv().await {
            if v["speaker"] == "customer" {
                return v["text"].as_str().unwrap_or_default().to_lowercase();
            }
        }
        String::new()
    })
    .await
    .unwrap_or_default();
    assert!(
        said.contains("address") || said.contains("delivery"),
        "live transcript: {said:?}; kefu:\n{}",
        server.logs().join("\n")
    );
    phone.hang_up(&invite);
    let (ok, out) = sipp_run.join().unwrap();
    assert!(ok, "SIPp:\n{out}\nkefu:\n{}", server.logs().join("\n"));
    drop(sender);

    let record = common::only_record(&server);
    assert_eq!(record["end_reason"], "agent-hangup", "{record}");
    let call_id = record["call_id"].as_str().unwrap();
    let transfer = &record["transfer"];
    assert_eq!(transfer["queue"], "support-en", "{record}");
    assert!(transfer["agent"].is_string(), "{record}");
    assert!(
        transfer["first_invite_ms"].as_u64().unwrap() < 2000,
        "{record}"
    );
    assert!(
        transfer["relayed_to_agent"].as_u64().unwrap() >= want as u64,
        "{record}"
    );
    // The transcript is kept with the call.
    assert_eq!(record["conversation"], conversation.as_str(), "{record}");
    assert!(
        record["dialogue"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["speaker"] == "customer"),
        "{record}"
    );
    assert_eq!(
        common::strings(&record["path"]),
        ["welcome", "main_menu", "agent_hours", "agent"],
        "{record}"
    );
    // The call's ticket is the agent's, with the summary as its subject.
    let (cookie, csrf) = server.sign_in("li", "a long enough password").await;
    let tickets: serde_json::Value = reqwest::Client::new()
        .get(format!("http://{}/api/agent/tickets", server.http))
        .header("cookie", cookie.clone())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tickets[0]["call"], call_id, "{tickets}");
    assert_eq!(tickets[0]["status"], "open", "{tickets}");
    assert_eq!(tickets[0]["queue"], "support-en", "{tickets}");
    let subject = tickets[0]["subject"].as_str().unwrap();
    assert!(
        subject.starts_with("Call from 13800138000") && !subject.contains("Press 1"),
        "{subject}"
    );
    assert_eq!(
        tickets[0]["conversation"],
        conversation.as_str(),
        "{tickets}"
    );
    // After the call the agent wraps it up on the desk: outcome and notes.
    let r = reqwest::Client::new()
        .post(format!(
            "http://{}/api/agent/conversations/{conversation}/done",
            server.http
        ))
        .header("cookie", cookie.clone())
        .header("x-csrf-token", csrf)
        .json(&serde_json::json!({"disposition": "solved", "notes": "New address noted."}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let tickets: serde_json::Value = reqwest::Client::new()
        .get(format!("http://{}/api/agent/tickets", server.http))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tickets[0]["status"], "solved", "{tickets}");
    assert!(
        tickets[0]["notes"]
            .as_str()
            .unwrap()
            .contains("New address noted."),
        "{tickets}"
    );
}

/// Signs in a new admin: the session cookie.
async fn admin_cookie(server: &Server) -> String {
    let (ok, _, err) = server.kefu_with_input(
        &[
            "users",
            "add",
            "boss",
            "--role",
            "admin",
            "--password-stdin",
        ],
        "a long enough password\n",
    );
    assert!(ok, "{err}");
    server.sign_in("boss", "a long enough password").await.0
}

/// The first recording listed with a call (stored off the call's task: waits up
/// to 10 s for it), as an admin sees it.
async fn first_recording(server: &Server, cookie: &str, call_id: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let listed: serde_json::Value = reqwest::Client::new()
            .get(format!(
                "http://{}/api/calls/{call_id}/recordings",
                server.http
            ))
            .header("cookie", cookie)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if listed.as_array().is_some_and(|a| !a.is_empty()) || Instant::now() > deadline {
            return listed[0].clone();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Nobody is free: past the queue's maximum wait the caller is offered a message
/// or a callback, presses 1 and leaves a message, which is stored sealed, can be
/// listened to (audited) and is noted on the call's ticket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_queue_leads_to_voicemail_and_a_ticket() {
    let plans = tempfile::tempdir().unwrap();
    always_open_plans(plans.path());
    let server = Server::start_with(
        Some(plans.path()),
        "[[queue]]\nname = \"support-en\"\nring_timeout = \"5s\"\nmax_wait = \"5s\"\n",
    );
    let dir = tempfile::tempdir().unwrap();
    let message: Vec<Vec<u8>> = (0..100).map(|i| frame(i, 0x33)).collect();
    let pcap = dir.path().join("message.pcap");
    write_rtp_pcap(&pcap, &message, 0, 5000);
    // Key 0 at the menu; 5 s of hold; the no-agent menu (about 9 s of prompts)
    // takes key 1 at once; the message prompt and tone (5.4 s), then 2 s of
    // message and '#'.
    let scenario = caller_scenario(
        dir.path(),
        "voicemail",
        true,
        &[
            Step::Pause(2500),
            Step::Rfc4733('0'),
            Step::Pause(7500),
            Step::Rfc4733('1'),
            Step::Pause(7000),
            Step::Pcap(pcap),
            Step::Pause(3000),
            Step::Rfc4733('#'),
        ],
    );
    let (ok, out) = sipp(&server, &scenario, "4008002000", &[]);
    assert!(ok, "SIPp:\n{out}\nkefu:\n{}", server.logs().join("\n"));
    let record = common::only_record(&server);
    assert_eq!(
        common::strings(&record["path"]),
        [
            "welcome",
            "main_menu",
            "agent_hours",
            "agent",
            "no_agent",
            "voicemail",
            "message_saved",
            "goodbye"
        ],
        "{record}"
    );
    assert_eq!(record["transfer"]["timed_out"], true, "{record}");
    assert!(record["transfer"]["agent"].is_null(), "{record}");
    let call_id = record["call_id"].as_str().unwrap().to_string();

    // The message: listed with the call, and its audio holds what the caller sent.
    let cookie = admin_cookie(&server).await;
    let c = reqwest::Client::new();
    let get = |path: String| {
        c.get(format!("http://{}{path}", server.http))
            .header("cookie", cookie.clone())
            .send()
    };
    let listed = first_recording(&server, &cookie, &call_id).await;
    assert_eq!(listed["kind"], "voicemail", "{listed}");
    let ms = listed["duration_ms"].as_i64().unwrap();
    assert!((1500..=6000).contains(&ms), "{listed}");
    let id = listed["id"].as_str().unwrap();
    let r = get(format!("/api/recordings/{id}")).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "audio/wav");
    let wav = r.bytes().await.unwrap();
    let samples: Vec<i16> = hound::WavReader::new(std::io::Cursor::new(wav.to_vec()))
        .unwrap()
        .into_samples::<i16>()
        .map(Result::unwrap)
        .collect();
    let heard = message
        .iter()
        .filter(|f| {
            let mut pcm = vec![0i16; 160];
            Law::Pcmu.decode(f, &mut pcm);
            samples.windows(160).any(|w| w == pcm.as_slice())
        })
        .count();
    assert!(
        heard >= 90,
        "{heard} of 100 frames of the message are in the recording"
    );
    let audit = get("/api/audit".to_string())
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(audit.contains("recording.listen"), "{audit}");
    // Not stored in the clear: neither the database nor its log holds a WAV
    // (in the clear it would start "RIFF", or "UklGR" in base64).
    for file in ["kefu.db", "kefu.db-wal"] {
        let bytes = std::fs::read(server.data().join(file)).unwrap_or_default();
        for probe in [&b"RIFF"[..], &b"UklGR"[..]] {
            assert!(
                !bytes.windows(probe.len()).any(|w| w == probe),
                "a recording is readable in {file}"
            );
        }
    }

    // The ticket: opened when the caller asked for a person, with the time-out and
    // the message noted.
    let mut body = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let (ok, out, err) = server.kefu(&["customers", "export", "--phone", "13800138000"]);
        assert!(ok, "{err}");
        let data: serde_json::Value = serde_json::from_str(&out).unwrap();
        body = data["tickets"][0]["body"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if body.contains("Voicemail") {
            // Nobody took it: the ticket is new, waiting for someone to follow it up.
            assert_eq!(data["tickets"][0]["status"], "new", "{data}");
            assert_eq!(data["recordings"][0]["id"], id, "{data}");
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(body.contains("Nobody took the call"), "{body}");
    assert!(
        body.contains(&format!("Voicemail message: recording {id}")),
        "{body}"
    );
}

/// Three agents in a longest-idle queue: the first does not answer (the offer
/// rings out after the queue's ring timeout), the second answers, hears the summary
/// and presses 2, the third presses 1 and is bridged. A raw caller (PCMU) and the
/// third phone (PCMA) then each receive the other's frames, transcoded exactly.
/// The queue records its calls: the stored WAV has the caller left, the agent
/// right.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_answer_and_decline_pass_the_call_on_and_audio_flows_both_ways() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let plans = tempfile::tempdir().unwrap();
    always_open_plans(plans.path());
    let server = Server::start_with(
        Some(plans.path()),
        "[[queue]]\nname = \"support-en\"\nring_timeout = \"5s\"\nmax_wait = \"2m\"\nrecord = true\n",
    );
    let mut phones = Vec::new();
    for (user, ext) in [("ann", "3001"), ("bo", "3002"), ("cai", "3003")] {
        add_agent_with_phone(&server, user, ext, "support-en");
        phones.push(Phone::register(&server, ext));
        // Longest idle first: ann, then bo, then cai.
        available(&server, user).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let cai = phones.pop().unwrap();
    let bo = phones.pop().unwrap();
    let ann = phones.pop().unwrap();

    // The caller: silence, key 0 at the menu, silence until bridged, then its
    // own frames.
    let caller = RawUa::new(server.sip);
    caller.answered_call("transfer-both-ways", "4008002000");
    let bridged = Arc::new(AtomicBool::new(false));
    let caller_rtp = caller.rtp.try_clone().unwrap();
    let caller_frames: Vec<Vec<u8>> = (0..500).map(|i| frame(i, 0x11)).collect();
    // kefu's first packet tells the caller where to send (symmetric RTP).
    let mut buf = [0u8; 2048];
    caller_rtp
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let (_, kefu_media) = caller_rtp.recv_from(&mut buf).unwrap();
    let sending = std::thread::spawn({
        let (sock, bridged, frames) = (
            caller_rtp.try_clone().unwrap(),
            bridged.clone(),
            caller_frames.clone(),
        );
        move || {
            let mut seq = 1u16;
            let mut sent = 0usize;
            for i in 0..3000usize {
                if i == 125 {
                    press(&sock, 101, kefu_media, 0, &mut seq);
                }
                let payload = if bridged.load(Ordering::Relaxed) && sent < frames.len() {
                    sent += 1;
                    frames[sent - 1].clone()
                } else if sent >= frames.len() {
                    return;
                } else {
                    vec![0xff; 160]
                };
                let p = rtp(0, seq, 160 * i as u32, false, &payload);
                seq = seq.wrapping_add(1);
                if sock.send_to(&p, kefu_media).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    });

    // Ann's phone rings and she does not answer: after the ring timeout kefu
    // cancels it.
    let ring = ann.ringing(Duration::from_secs(20));
    ann.respond(&ring, "180 Ringing", "");
    {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            assert!(
                Instant::now() < deadline,
                "kefu never cancelled the unanswered ring"
            );
            if let Some(m) = ann.ua.recv(Duration::from_millis(200))
                && m.starts_with("CANCEL ")
            {
                break;
            }
        }
    }
    // Bo answers, hears the summary and passes with key 2: kefu hangs up on him.
    let invite_b = bo.ringing(Duration::from_secs(10));
    bo.answer(&invite_b);
    let summary = bo.collect(Duration::from_secs(10), |got| got.len() >= 25);
    assert!(summary.len() >= 25);
    let mut seq = 1;
    bo.press(sdp_target(&invite_b), 2, &mut seq);
    bo.ua.answer_request("BYE", Duration::from_secs(5));

    // Cai takes it with key 1.
    let invite_c = cai.ringing(Duration::from_secs(10));
    cai.answer(&invite_c);
    let kefu_c = sdp_target(&invite_c);
    cai.collect(Duration::from_secs(10), |got| got.len() >= 25);
    let mut seq = 1;
    cai.press(kefu_c, 1, &mut seq);
    bridged.store(true, Ordering::Relaxed);
    let cai_frames: Vec<Vec<u8>> = (0..500).map(|i| frame(i, 0x5a)).collect();
    let cai_sending = std::thread::spawn({
        let (sock, frames) = (cai.ua.rtp.try_clone().unwrap(), cai_frames.clone());
        move || {
            for (i, f) in frames.iter().enumerate() {
                let p = rtp(8, 50 + i as u16, 9000 + 160 * i as u32, i == 0, f);
                if sock.send_to(&p, kefu_c).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    });

    // Each side receives the other's frames, transcoded.
    let at_cai: std::collections::HashSet<Vec<u8>> = caller_frames
        .iter()
        .map(|f| transcode(Law::Pcmu, Law::Pcma, f))
        .collect();
    let at_caller: std::collections::HashSet<Vec<u8>> = cai_frames
        .iter()
        .map(|f| transcode(Law::Pcma, Law::Pcmu, f))
        .collect();
    let caller_got = std::thread::spawn({
        let sock = caller_rtp.try_clone().unwrap();
        move || {
            let mut matched = 0;
            let mut buf = [0u8; 2048];
            let deadline = Instant::now() + Duration::from_secs(30);
            sock.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            while Instant::now() < deadline && matched < 400 {
                if let Ok((n, _)) = sock.recv_from(&mut buf)
                    && n == 172
                    && at_caller.contains(&buf[12..n])
                {
                    matched += 1;
                }
            }
            matched
        }
    });
    let mut matched = 0;
    cai.collect(Duration::from_secs(30), |got| {
        matched = got
            .iter()
            .filter(|p| p.len() == 172 && at_cai.contains(&p[12..]))
            .count();
        matched >= 400
    });
    let caller_matched = caller_got.join().unwrap();
    assert!(
        matched >= 400 && caller_matched >= 400,
        "frames across the bridge: caller→agent {matched}, agent→caller {caller_matched} of 500; kefu:\n{}",
        server.logs().join("\n")
    );
    cai.hang_up(&invite_c);
    caller.answer_request("BYE", Duration::from_secs(5));
    sending.join().unwrap();
    cai_sending.join().unwrap();

    let record = common::only_record(&server);
    assert_eq!(record["end_reason"], "agent-hangup", "{record}");
    let tried: Vec<String> = record["transfer"]["tried"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t[1].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        tried,
        ["no answer", "declined", "took the call"],
        "{record}"
    );

    // The recording: two channels, each side's audio where it belongs.
    let call_id = record["call_id"].as_str().unwrap();
    let cookie = admin_cookie(&server).await;
    let c = reqwest::Client::new();
    let listed = first_recording(&server, &cookie, call_id).await;
    assert_eq!(listed["kind"], "call", "{listed}");
    let wav = c
        .get(format!(
            "http://{}/api/recordings/{}",
            server.http,
            listed["id"].as_str().unwrap()
        ))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let reader = hound::WavReader::new(std::io::Cursor::new(wav.to_vec())).unwrap();
    assert_eq!(reader.spec().channels, 2);
    let samples: Vec<i16> = reader.into_samples::<i16>().map(Result::unwrap).collect();
    let channel = |c: usize| -> Vec<i16> { samples.iter().skip(c).step_by(2).copied().collect() };
    let (left, right) = (channel(0), channel(1));
    let found = |track: &[i16], frames: &[Vec<u8>], law: Law| {
        frames
            .iter()
            .filter(|f| {
                let mut pcm = vec![0i16; 160];
                law.decode(f, &mut pcm);
                track.windows(160).any(|w| w == pcm.as_slice())
            })
            .count()
    };
    let caller_in_left = found(&left, &caller_frames[..100], Law::Pcmu);
    let agent_in_right = found(&right, &cai_frames[..100], Law::Pcma);
    assert!(
        caller_in_left >= 90 && agent_in_right >= 90,
        "recording: caller frames on the left {caller_in_left}/100, agent frames on the right {agent_in_right}/100"
    );
}

/// An agent's phone dials *2 and *1 (feature codes, digest-authenticated like its
/// REGISTER): the agent goes away and available again, and hears it confirmed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feature_codes_set_the_agents_state() {
    let server = Server::start(None);
    add_agent_with_phone(&server, "dee", "5001", "support-en");
    let phone = Phone::register(&server, "5001");
    let cookie = admin_cookie(&server).await;
    let state = || async {
        let v: serde_json::Value = reqwest::Client::new()
            .get(format!("http://{}/api/queues", server.http))
            .header("cookie", cookie.clone())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["agents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["state"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    for (code, expected) in [("*1", "available"), ("*2", "away"), ("*1", "available")] {
        phone.dial(code);
        // The confirmation plays, then kefu hangs up.
        let heard = phone.collect(Duration::from_secs(10), |got| got.len() >= 50);
        assert!(heard.len() >= 50, "no confirmation after {code}");
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            phone.ua.answer_request("BYE", Duration::from_secs(20))
        }))
        .is_err()
        {
            panic!("no BYE after {code}; kefu:\n{}", server.logs().join("\n"));
        }
        assert_eq!(state().await, [expected], "after {code}");
    }
    let logs = server.logs().join("\n");
    assert!(logs.contains("agent state set by feature code"), "{logs}");
}

/// SIPp as the agent's phone: one SIPp registers extension 6001 (MD5 digest), a
/// second listens on the same port for kefu's INVITE, answers with PCMA, presses
/// 1 (RFC 4733 from SIPp's own pcap) and plays distinctive audio, echoing what it
/// hears (`-rtp_echo`). A raw caller presses 0 at the demo menu, then checks that
/// the agent's frames reach it (A-law to µ-law, exactly) and that its own frames
/// come back through the agent's echo.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sipp_agent_takes_the_call_and_audio_flows_both_ways() {
    let plans = tempfile::tempdir().unwrap();
    always_open_plans(plans.path());
    let server = Server::start_with(
        Some(plans.path()),
        "sip_digest = [\"MD5\"]\n[[queue]]\nname = \"support-en\"\nring_timeout = \"30s\"\nmax_wait = \"2m\"\n",
    );
    add_agent_with_phone(&server, "eve", "6001", "support-en");
    available(&server, "eve").await;
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let media_port = common::free_ports(4);
    let register = format!(
        r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="register">
  <send retrans="500"><![CDATA[
REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:6001@[remote_ip]>;tag=reg[call_number]
To: <sip:6001@[remote_ip]>
Call-ID: [call_id]
CSeq: 1 REGISTER
Contact: <sip:6001@[local_ip]:[local_port]>
Expires: 600
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="401" auth="true"/>
  <send retrans="500"><![CDATA[
REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:6001@[remote_ip]>;tag=reg[call_number]
To: <sip:6001@[remote_ip]>
Call-ID: [call_id]
CSeq: 2 REGISTER
Contact: <sip:6001@[local_ip]:[local_port]>
Expires: 600
[authentication username=6001 password={}]
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="200"/>
</scenario>
"#,
        common::phone::PHONE_SECRET
    );
    let reg = dir.path().join("register.xml");
    std::fs::write(&reg, register).unwrap();
    let sipp_at = |scenario: PathBuf, remote: bool, extra: &'static [&'static str]| {
        let (sip, dir) = (server.sip, dir.path().to_path_buf());
        move || run_sipp(sip, &dir, port, media_port, &scenario, remote, extra)
    };
    let out = sipp_at(reg, true, &[])();
    assert!(
        out.status.success(),
        "SIPp register:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let agent_frames: Vec<Vec<u8>> = (0..300).map(|i| frame(i, 0x77)).collect();
    let pcap = dir.path().join("agent.pcap");
    write_rtp_pcap(&pcap, &agent_frames, 8, 3000);
    let uas = dir.path().join("agent.xml");
    std::fs::write(
        &uas,
        format!(
            r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="agent">
  <recv request="INVITE" timeout="30000"/>
  <send><![CDATA[
SIP/2.0 180 Ringing
[last_Via:]
[last_From:]
[last_To:];tag=[pid]agent[call_number]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:6001@[local_ip]:[local_port]>
Content-Length: 0

]]></send>
  <send retrans="500"><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:];tag=[pid]agent[call_number]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:6001@[local_ip]:[local_port]>
Content-Type: application/sdp
Content-Length: [len]

v=0
o=- 1 1 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 8 101
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
]]></send>
  <recv request="ACK"/>
  <pause milliseconds="1500"/>
  <nop><action><exec play_pcap_audio="/usr/share/sip-tester/dtmf_2833_1.pcap"/></action></nop>
  <pause milliseconds="1500"/>
  <nop><action><exec play_pcap_audio="{}"/></action></nop>
  <recv request="BYE" timeout="40000"/>
  <send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>
</scenario>
"#,
            pcap.display()
        ),
    )
    .unwrap();
    let agent = std::thread::spawn(sipp_at(uas, false, &["-rtp_echo"]));
    common::wait_udp_bound(port);

    // The caller: key 0, silence until the agent's frames arrive, then its own.
    let caller = RawUa::new(server.sip);
    let ok = caller.answered_call("to-sipp-agent", "4008002000");
    let kefu_media = sdp_target(&ok);
    let mut seq = 1u16;
    for i in 0..50u32 {
        let p = rtp(0, seq, 160 * i, false, &[0xff; 160]);
        caller.rtp.send_to(&p, kefu_media).unwrap();
        seq += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    press(&caller.rtp, 101, kefu_media, 0, &mut seq);
    let from_agent: std::collections::HashSet<Vec<u8>> = agent_frames
        .iter()
        .map(|f| transcode(Law::Pcma, Law::Pcmu, f))
        .collect();
    let caller_frames: Vec<Vec<u8>> = (0..400).map(|i| frame(i, 0x22)).collect();
    let echoed: std::collections::HashSet<Vec<u8>> = caller_frames
        .iter()
        .map(|f| transcode(Law::Pcma, Law::Pcmu, &transcode(Law::Pcmu, Law::Pcma, f)))
        .collect();
    let (mut heard_agent, mut heard_echo, mut sent) = (0, 0, 0usize);
    let mut buf = [0u8; 2048];
    caller
        .rtp
        .set_read_timeout(Some(Duration::from_millis(2)))
        .unwrap();
    let start = Instant::now();
    let mut tick = 0u32;
    while start.elapsed() < Duration::from_secs(40) && (heard_agent < 250 || heard_echo < 250) {
        // 20 ms pacing: silence until the agent is heard, then the caller's frames.
        let payload = if heard_agent > 0 && sent < caller_frames.len() {
            sent += 1;
            caller_frames[sent - 1].clone()
        } else {
            vec![0xff; 160]
        };
        caller
            .rtp
            .send_to(
                &rtp(0, seq, 160 * (100 + tick), false, &payload),
                kefu_media,
            )
            .unwrap();
        seq = seq.wrapping_add(1);
        tick += 1;
        let next = start + Duration::from_millis(20 * u64::from(tick));
        while Instant::now() < next {
            if let Ok((n, _)) = caller.rtp.recv_from(&mut buf)
                && n == 172
            {
                if from_agent.contains(&buf[12..n]) {
                    heard_agent += 1;
                } else if echoed.contains(&buf[12..n]) {
                    heard_echo += 1;
                }
            }
        }
    }
    caller.send(&caller.in_dialog(&ok, "BYE", 2, "z9hG4bK-sipp-agent-bye"));
    let out = agent.join().unwrap();
    assert!(
        heard_agent >= 250 && heard_echo >= 250,
        "agent frames heard {heard_agent} of 300, own frames echoed {heard_echo} of 400; SIPp:\n{}\nkefu:\n{}",
        String::from_utf8_lossy(&out.stdout),
        server.logs().join("\n")
    );
    assert!(
        out.status.success(),
        "SIPp agent:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let record = common::only_record(&server);
    assert_eq!(record["end_reason"], "caller-hangup", "{record}");
    assert_eq!(
        record["transfer"]["tried"][0][1], "took the call",
        "{record}"
    );
}

/// Runs SIPp from `dir` on fixed SIP and media ports (the registered contact):
/// against kefu (`remote`) or waiting for kefu's calls.
fn run_sipp(
    sip: SocketAddr,
    dir: &Path,
    port: u16,
    media_port: u16,
    scenario: &Path,
    remote: bool,
    extra: &[&str],
) -> std::process::Output {
    let mut cmd = std::process::Command::new("sipp");
    if remote {
        cmd.arg(sip.to_string());
    }
    cmd.arg("-sf")
        .arg(scenario)
        .args(["-m", "1", "-i", "127.0.0.1", "-p", &port.to_string()])
        .args(["-mp", &media_port.to_string()])
        .args(["-timeout", "60s", "-timeout_error", "-nostdin"])
        .args(extra)
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("SIPp must be installed (Debian package sip-tester)")
}

/// An agent whose phone does not register (a desk phone on the PBX) is called
/// at the fixed SIP URI given with `kefu agents add --uri`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_at_a_fixed_uri_is_called_without_registering() {
    let plans = tempfile::tempdir().unwrap();
    always_open_plans(plans.path());
    let server = Server::start_with(
        Some(plans.path()),
        "[[queue]]\nname = \"support-en\"\nring_timeout = \"30s\"\nmax_wait = \"2m\"\n",
    );
    let desk_phone = RawUa::new(server.sip);
    let uri = format!("sip:8001@{}", desk_phone.local());
    let (ok, _, err) = server.kefu_with_input(
        &["users", "add", "fay", "--role", "agent", "--password-stdin"],
        "a long enough password\n",
    );
    assert!(ok, "{err}");
    let (ok, _, err) = server.kefu(&[
        "agents",
        "add",
        "Fay",
        "--extension",
        "8001",
        "--queues",
        "support-en",
        "--user",
        "fay",
        "--uri",
        &uri,
    ]);
    assert!(ok, "{err}");
    let (_, list, _) = server.kefu(&["agents", "list"]);
    assert!(list.contains(&format!("uri={uri}")), "{list}");
    let (ok, _, err) = server.kefu(&[
        "agents",
        "add",
        "Bad",
        "--extension",
        "8002",
        "--uri",
        "mailto:someone",
    ]);
    assert!(!ok && err.contains("--uri"), "{err}");
    available(&server, "fay").await;
    let phone = Phone {
        ua: desk_phone,
        extension: "8001".into(),
    };

    let caller = RawUa::new(server.sip);
    let ok = caller.answered_call("to-fixed-uri", "4008002000");
    let kefu_media = sdp_target(&ok);
    let mut seq = 1u16;
    press(&caller.rtp, 101, kefu_media, 0, &mut seq);
    let invite = phone.ringing(Duration::from_secs(20));
    assert!(invite.starts_with(&format!("INVITE {uri} ")), "{invite}");
    phone.answer(&invite);
    let kefu_leg = sdp_target(&invite);
    phone.collect(Duration::from_secs(10), |got| got.len() >= 10);
    let mut leg_seq = 1;
    phone.press(kefu_leg, 1, &mut leg_seq);
    // Bridged: the caller's frames reach the desk phone.
    let frames: Vec<Vec<u8>> = (0..150).map(|i| frame(i, 0x66)).collect();
    let expected: std::collections::HashSet<Vec<u8>> = frames
        .iter()
        .map(|f| transcode(Law::Pcmu, Law::Pcma, f))
        .collect();
    let sending = std::thread::spawn({
        let (sock, frames) = (caller.rtp.try_clone().unwrap(), frames.clone());
        move || {
            for (i, f) in frames.iter().enumerate() {
                let _ = sock.send_to(
                    &rtp(0, 500 + i as u16, 160 * i as u32, false, f),
                    kefu_media,
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    });
    let mut matched = 0;
    phone.collect(Duration::from_secs(20), |got| {
        matched = got
            .iter()
            .filter(|p| p.len() == 172 && expected.contains(&p[12..]))
            .count();
        matched >= 100
    });
    sending.join().unwrap();
    assert!(
        matched >= 100,
        "{matched} of 150 frames reached the desk phone"
    );
    phone.hang_up(&invite);
    caller.answer_request("BYE", Duration::from_secs(5));
    let record = common::only_record(&server);
    assert_eq!(
        record["transfer"]["tried"][0][1], "took the call",
        "{record}"
    );
}

/// The agent accepts on the desk while their phone rings, then the phone refuses
/// (486): the caller is not left on hold for ever but goes on where the plan goes
/// when nobody takes the call (the demo's voicemail menu), and the record says
/// why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_accepted_on_the_desk_whose_phone_then_refuses_goes_on_in_the_plan() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let plans = tempfile::tempdir().unwrap();
    always_open_plans(plans.path());
    let server = Server::start_with(
        Some(plans.path()),
        "[[queue]]\nname = \"support-en\"\nring_timeout = \"30s\"\nmax_wait = \"2m\"\n",
    );
    add_agent_with_phone(&server, "dee", "3004", "support-en");
    let phone = Phone::register(&server, "3004");
    available(&server, "dee").await;

    let caller = RawUa::new(server.sip);
    let ok = caller.answered_call("desk-accept-refused", "4008002000");
    let rtp_sock = caller.rtp.try_clone().unwrap();
    rtp_sock
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 2048];
    let (_, kefu_media) = rtp_sock.recv_from(&mut buf).unwrap();
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    // The caller: quiet, key 0 (a person) at the menu, then quiet.
    let sending = std::thread::spawn({
        let (sock, stop) = (rtp_sock.try_clone().unwrap(), stop.clone());
        move || {
            let mut seq = 1u16;
            for i in 0..3000usize {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                if i == 125 {
                    press(&sock, 101, kefu_media, 0, &mut seq);
                }
                let _ = sock.send_to(
                    &rtp(0, seq, 160 * i as u32, false, &[0xff; 160]),
                    kefu_media,
                );
                seq = seq.wrapping_add(1);
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    });
    let invite = tokio::task::block_in_place(|| phone.ringing(Duration::from_secs(20)));
    phone.respond(&invite, "180 Ringing", "");
    let (cookie, csrf) = server.sign_in("dee", "a long enough password").await;
    let accepted = reqwest::Client::new()
        .post(format!(
            "http://{}/api/agent/offers/desk-accept-refused/accept",
            server.http
        ))
        .header("cookie", cookie)
        .header("x-csrf-token", csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), 200, "{}", accepted.text().await.unwrap());
    phone.respond(&invite, "486 Busy Here", "");
    assert!(
        tokio::task::block_in_place(
            || server.wait_log("the agent accepted on the desk but their leg failed", 0)
        ),
        "kefu never noticed the refused leg"
    );
    // The caller is at the plan's no-agent menu; they hang up.
    tokio::time::sleep(Duration::from_secs(2)).await;
    caller.send(&caller.in_dialog(&ok, "BYE", 2, "z9hG4bK-desk-refused-bye"));
    stop.store(true, Ordering::Relaxed);
    sending.join().unwrap();
    let record = common::only_record(&server);
    assert!(
        common::strings(&record["path"]).contains(&"no_agent".to_string()),
        "{record}"
    );
    assert_eq!(record["transfer"]["timed_out"], true, "{record}");
    let tried = &record["transfer"]["tried"][0];
    assert!(
        tried[0].is_string() && tried[1].as_str().unwrap().contains("486"),
        "{record}"
    );
}

/// The demo's survey after the agent: the agent hangs up first, the caller is
/// not hung up but asked to rate the call, presses 4, hears the thanks and is
/// hung up. The rating counts for the agent and the queue on the report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_agent_hangs_up_the_caller_rates_the_call() {
    use std::sync::mpsc;
    let plans = tempfile::tempdir().unwrap();
    common::phone::always_open_plans_with_survey(plans.path());
    let server = Server::start_with(
        Some(plans.path()),
        "[[queue]]\nname = \"support-en\"\nring_timeout = \"30s\"\nmax_wait = \"2m\"\n",
    );
    add_agent_with_phone(&server, "li", "2001", "support-en");
    available(&server, "li").await;
    let phone = Phone::register(&server, "2001");

    // The caller sends silence and presses the keys it is told to.
    let caller = RawUa::new(server.sip);
    caller.answered_call("survey-after-agent", "4008002000");
    let caller_rtp = caller.rtp.try_clone().unwrap();
    let mut buf = [0u8; 2048];
    caller_rtp
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let (_, kefu_media) = caller_rtp.recv_from(&mut buf).unwrap();
    let (keys, pressed) = mpsc::channel::<u8>();
    let sending = std::thread::spawn({
        let sock = caller_rtp.try_clone().unwrap();
        move || {
            let mut seq = 1u16;
            for i in 0..3000u32 {
                match pressed.try_recv() {
                    Ok(key) => press(&sock, 101, kefu_media, key, &mut seq),
                    Err(mpsc::TryRecvError::Disconnected) => return,
                    Err(mpsc::TryRecvError::Empty) => {}
                }
                let p = rtp(0, seq, 160 * i, false, &[0xff; 160]);
                seq = seq.wrapping_add(1);
                if sock.send_to(&p, kefu_media).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    });
    std::thread::sleep(Duration::from_millis(2500));
    keys.send(0).unwrap();

    // Li takes the call with key 1, then hangs up first.
    let invite = phone.ringing(Duration::from_secs(20));
    phone.answer(&invite);
    phone.collect(Duration::from_secs(10), |got| got.len() >= 25);
    let mut seq = 1;
    phone.press(sdp_target(&invite), 1, &mut seq);
    phone.collect(Duration::from_secs(5), |got| got.len() >= 50);
    phone.hang_up(&invite);

    // The caller stays on: the survey's question plays (no BYE), key 4, thanks,
    // then kefu hangs up.
    let asked = Instant::now();
    let mut heard = 0;
    caller_rtp
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    while heard < 50 && asked.elapsed() < Duration::from_secs(10) {
        if let Ok((n, _)) = caller_rtp.recv_from(&mut buf)
            && n == 172
        {
            let mut pcm = [0i16; 160];
            Law::Pcmu.decode(&buf[12..n], &mut pcm);
            if pcm.iter().any(|s| s.abs() > 2000) {
                heard += 1;
            }
        }
    }
    assert!(
        heard >= 50,
        "the caller heard {heard} frames of the survey's question"
    );
    keys.send(4).unwrap();
    caller.answer_request("BYE", Duration::from_secs(20));
    drop(keys);
    sending.join().unwrap();

    let record = common::only_record(&server);
    let path = common::strings(&record["path"]);
    assert!(
        path.ends_with(&[
            "agent".into(),
            "survey".into(),
            "rated".into(),
            "thanks".into()
        ]),
        "{record}"
    );
    assert!(record["transfer"]["agent"].is_string(), "{record}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let sat = server.report("channel=phone").await["satisfaction"].clone();
        if sat["ratings"] == 1 {
            assert_eq!(sat["scores"], serde_json::json!([0, 0, 0, 1, 0]), "{sat}");
            assert_eq!(sat["queues"][0]["key"], "support-en", "{sat}");
            assert_ne!(
                sat["agents"][0]["key"], "(bot)",
                "rated for the agent: {sat}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the rating never reached the report: {sat}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
