//! Hostile audio on a live call: a caller who never stops talking, music and noise
//! on the line, words broken by packet loss, a caller who talks over every prompt.
//! Each call runs over real SIP and RTP into an `ask` node on the demo knowledge
//! base (Silero VAD, endpointing and Whisper in the server); the caller is a paced
//! RTP sender in the test that hears kefu's audio as a phone would. Whatever comes
//! down the line, kefu must do bounded work, answer or re-prompt, and go on to
//! understand the next clean question: never a stuck call.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{RawUa, Server};

const PLAN: &str = r#"[dialplan]
name = "rough"
numbers = ["600"]
language = "en"
start = "question"

[nodes.question]
type = "ask"
prompt = "en/welcome.wav"
timeout = "8s"
max_failures = 5
on_failure = "bye"
on_handover = "bye"
on_goodbye = "bye"

[nodes.bye]
type = "hangup"
"#;

type Frame = [u8; 160];

/// µ-law line silence.
const SILENCE: Frame = [0xff; 160];

/// Whether one of kefu's µ-law frames carries sound (not line silence).
fn loud(payload: &[u8]) -> bool {
    payload.iter().filter(|&&b| (b & 0x7f) < 0x60).count() > 8
}

/// A small deterministic generator (xorshift), so every run sends the same audio.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }
}

/// `secs` of music: three-note chords with a melody on top, a new chord every
/// 400 ms, about −20 dBFS.
fn music(secs: f64) -> Vec<i16> {
    let chords = [
        [261.6, 329.6, 392.0],
        [220.0, 261.6, 329.6],
        [174.6, 220.0, 261.6],
        [196.0, 246.9, 293.7],
    ];
    let melody = [523.3, 587.3, 659.3, 784.0, 659.3, 587.3];
    (0..(secs * 8000.0) as usize)
        .map(|i| {
            let t = i as f64 / 8000.0;
            let beat = (t / 0.4) as usize;
            let chord = chords[beat / 2 % chords.len()];
            let mut v: f64 = chord
                .iter()
                .map(|f| (2.0 * std::f64::consts::PI * f * t).sin())
                .sum();
            v += 1.5 * (2.0 * std::f64::consts::PI * melody[beat % melody.len()] * t).sin();
            (v * 900.0) as i16
        })
        .collect()
}

/// `secs` of white noise at about −30 dBFS.
fn noise(secs: f64) -> Vec<i16> {
    let mut n = Noise(0x9e37_79b9_7f4a_7c15);
    (0..(secs * 8000.0) as usize)
        .map(|_| (n.next() * 1800.0) as i16)
        .collect()
}

/// A caller on the line: sends one 20 ms frame at a time, on the clock, and
/// notes whether kefu's audio in that time was loud.
struct Caller {
    ua: RawUa,
    ok: String,
    call_id: String,
    kefu: SocketAddr,
    seq: u16,
    ts: u32,
    started: Instant,
    sent: u64,
    /// Per frame sent: whether a loud frame of kefu's arrived meanwhile.
    heard: Vec<bool>,
}

impl Caller {
    fn call(server: &Server, call_id: &str) -> Self {
        let ua = RawUa::new(server.sip);
        let ok = ua.answered_call(call_id, "600");
        // kefu's RTP tells us where to send ours (symmetric RTP).
        ua.rtp
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let mut buf = [0u8; 2048];
        let (_, kefu) = ua.rtp.recv_from(&mut buf).expect("kefu's first RTP packet");
        ua.rtp.set_nonblocking(true).unwrap();
        Self {
            ua,
            ok,
            call_id: call_id.to_string(),
            kefu,
            seq: 2000,
            ts: 0,
            started: Instant::now(),
            sent: 0,
            heard: Vec::new(),
        }
    }

    /// Sends one frame (`None`: lost on the way, its sequence number skipped) and
    /// waits for the next 20 ms tick, listening meanwhile.
    fn send(&mut self, frame: Option<&Frame>) {
        if let Some(payload) = frame {
            let packet = common::phone::rtp(0, self.seq, self.ts, false, payload);
            let _ = self.ua.rtp.send_to(&packet, self.kefu);
        }
        self.seq = self.seq.wrapping_add(1);
        self.ts = self.ts.wrapping_add(160);
        self.sent += 1;
        let next = self.started + Duration::from_millis(20 * self.sent);
        let mut loud_now = false;
        let mut buf = [0u8; 2048];
        loop {
            while let Ok((len, _)) = self.ua.rtp.recv_from(&mut buf) {
                loud_now |= len > 12 && loud(&buf[12..len]);
            }
            let now = Instant::now();
            if now >= next {
                break;
            }
            std::thread::sleep((next - now).min(Duration::from_millis(5)));
        }
        self.heard.push(loud_now);
    }

    fn say(&mut self, frames: &[Frame]) {
        for f in frames {
            self.send(Some(f));
        }
    }

    fn quiet(&mut self, n: usize) {
        for _ in 0..n {
            self.send(Some(&SILENCE));
        }
    }

    /// Stays quiet until kefu is heard (its first loud frame), at most `max`
    /// frames; the frames it took.
    fn until_heard(&mut self, max: usize) -> Option<usize> {
        (0..max).find(|_| {
            self.send(Some(&SILENCE));
            self.heard.last() == Some(&true)
        })
    }

    /// Stays quiet until kefu has been quiet for `run` frames in a row (at most
    /// `max` frames).
    fn until_quiet(&mut self, run: usize, max: usize) {
        let mut quiet = 0;
        for _ in 0..max {
            self.send(Some(&SILENCE));
            quiet = if self.heard.last() == Some(&true) {
                0
            } else {
                quiet + 1
            };
            if quiet >= run {
                return;
            }
        }
    }

    /// Hears kefu's prompt or answer out: its first sound, then a second of quiet.
    fn hear_out(&mut self) {
        assert!(
            self.until_heard(500).is_some(),
            "kefu said nothing for 10 s"
        );
        self.until_quiet(50, 1500);
    }

    /// Loud frames kefu sent while the caller sent frames `from..to`.
    fn loud_between(&self, from: usize, to: usize) -> usize {
        self.heard[from.min(self.heard.len())..to.min(self.heard.len())]
            .iter()
            .filter(|&&l| l)
            .count()
    }

    /// Hangs up and returns the call record.
    fn hang_up(self, server: &Server) -> serde_json::Value {
        let branch = format!("z9hG4bK-{}-bye", self.call_id);
        self.ua
            .send(&self.ua.in_dialog(&self.ok, "BYE", 2, &branch));
        self.ua.expect_status(200, Duration::from_secs(5));
        server.record(&self.call_id)
    }
}

/// The server with the plan and the demo knowledge base, the small English model.
fn server(dir: &std::path::Path) -> Server {
    std::fs::write(dir.join("rough.toml"), PLAN).unwrap();
    Server::start_with(
        Some(dir),
        &format!(
            "asr_model = \"tiny.en-q8_0\"\nkb = \"{}\"",
            common::repo().join("dialplans/kb").display()
        ),
    )
}

/// The intents of the record's customer turns, in order ("" when none), with
/// their words for messages.
fn customer_turns(r: &serde_json::Value) -> Vec<(String, String)> {
    r["dialogue"]
        .as_array()
        .map(|turns| {
            turns
                .iter()
                .filter(|t| t["speaker"] == "customer")
                .map(|t| {
                    (
                        t["intent"].as_str().unwrap_or("").to_string(),
                        t["text"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A clean question at the end: kefu must still understand it, and answer.
fn ends_with_a_clean_question(caller: &mut Caller, question: &[Frame]) {
    caller.until_quiet(50, 1500);
    caller.say(question);
    assert!(
        caller.until_heard(400).is_some(),
        "no answer within 8 s of the clean question"
    );
    caller.until_quiet(50, 1500);
}

/// A caller talks for 33 s without a pause: the utterance is cut at the
/// endpointer's limit (15 s) and recognised, so the work stays bounded; kefu
/// answers what it heard and then understands the caller's next clean question.
#[test]
fn a_caller_who_never_stops_talking_is_cut_and_answered() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    let loop_ = common::spoken_frames(
        "What time do you close today? I need to know when you close.",
        dir.path(),
    );
    let question = common::spoken_frames("How much is shipping?", dir.path());
    let mut caller = Caller::call(&server, "endless-1");
    caller.hear_out(); // the greeting
    let begin = caller.heard.len();
    // Piper's own pauses are under 300 ms: the speech runs on with no end of turn.
    let mut talking = Vec::new();
    while talking.len() < 33 * 50 {
        talking.extend(loop_.iter().filter(|f| loud(&f[..])).copied());
    }
    caller.say(&talking[..33 * 50]);
    let stopped = caller.heard.len();
    let reply = caller.until_heard(500);
    assert!(
        reply.is_some() || caller.loud_between(begin, stopped) > 0,
        "kefu said nothing during or within 10 s of 33 s of speech"
    );
    ends_with_a_clean_question(&mut caller, &question);
    let r = caller.hang_up(&server);
    let turns = customer_turns(&r);
    let Some(((last, _), endless)) = turns.split_last() else {
        panic!("no customer turn at all: {r}");
    };
    assert_eq!(last, "shipping_cost", "{turns:?}");
    // 33 s of speech: cut at 15 s and 30 s, the rest ended by silence.
    assert!(
        (2..=4).contains(&endless.len()),
        "the endless speech should make 2–4 turns (cut at the 15 s limit): {turns:?}"
    );
    assert!(
        endless.iter().any(|(intent, _)| intent == "opening_hours"),
        "what the caller kept saying was not understood: {turns:?}"
    );
    eprintln!("endless speech: {} turns {turns:?}", turns.len());
}

/// Ten seconds of music, then ten of loud noise, on the line: whatever kefu makes
/// of them (nothing, a "sorry?"), the call goes on and the next question is
/// understood.
#[test]
fn music_and_noise_on_the_line_do_not_jam_the_call() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    let question = common::spoken_frames("How much is shipping?", dir.path());
    let mut caller = Caller::call(&server, "music-1");
    caller.hear_out();
    caller.say(&common::pcmu_frames(&music(10.0)));
    caller.say(&common::pcmu_frames(&noise(10.0)));
    ends_with_a_clean_question(&mut caller, &question);
    let r = caller.hang_up(&server);
    let turns = customer_turns(&r);
    assert_eq!(
        turns.last().map(|t| t.0.as_str()),
        Some("shipping_cost"),
        "{turns:?}"
    );
    assert!(
        turns.len() <= 4,
        "music and noise made too many turns: {turns:?}"
    );
    assert_eq!(r["end_reason"], "caller-hangup", "{r}");
    eprintln!("music and noise: turns {turns:?}");
}

/// A question with a fifth of its packets lost, then one with 200 ms missing in
/// the middle: each gets a reply (an answer, "say it again" or the re-prompt),
/// neither is split into two turns, and the call goes on.
#[test]
fn words_broken_by_packet_loss_get_a_reply() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    let first = common::spoken_frames("What time do you close today?", dir.path());
    let second = common::spoken_frames("Where is your nearest shop?", dir.path());
    let question = common::spoken_frames("How much is shipping?", dir.path());
    let mut caller = Caller::call(&server, "loss-1");
    caller.hear_out();
    for (i, f) in first.iter().enumerate() {
        caller.send((i % 5 != 2).then_some(f));
    }
    assert!(
        caller.until_heard(400).is_some(),
        "no reply to the lossy question"
    );
    caller.until_quiet(50, 1500);
    let middle = second.len() / 2;
    for (i, f) in second.iter().enumerate() {
        caller.send((!(middle..middle + 10).contains(&i)).then_some(f));
    }
    assert!(
        caller.until_heard(400).is_some(),
        "no reply to the question with a gap"
    );
    ends_with_a_clean_question(&mut caller, &question);
    let r = caller.hang_up(&server);
    let turns = customer_turns(&r);
    // At most one turn per question: the gap does not split the second.
    assert!(turns.len() <= 3, "one turn per question: {turns:?}");
    assert_eq!(
        turns.last().map(|t| t.0.as_str()),
        Some("shipping_cost"),
        "{turns:?}"
    );
    eprintln!("packet loss: turns {turns:?}");
}

/// A caller who starts talking 300 ms into every prompt and answer: each time the
/// prompt stops (barge-in) and the question is answered.
#[test]
fn a_caller_who_talks_over_every_prompt_is_heard_each_time() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    let questions = [
        ("What time do you close today?", "opening_hours"),
        ("How much is shipping?", "shipping_cost"),
        ("I forgot my password.", "reset_password"),
    ];
    let spoken: Vec<Vec<Frame>> = questions
        .iter()
        .map(|(q, _)| common::spoken_frames(q, dir.path()))
        .collect();
    let mut caller = Caller::call(&server, "over-1");
    for words in &spoken {
        assert!(caller.until_heard(500).is_some(), "kefu said nothing");
        caller.quiet(15);
        let from = caller.heard.len();
        caller.say(words);
        let to = caller.heard.len();
        // Barge-in: kefu went quiet while the caller was still talking.
        let tail = caller.loud_between(to.saturating_sub(25), to);
        assert!(
            tail < 5,
            "kefu kept talking over the caller ({} loud frames of the last 25; {} while speaking)",
            tail,
            caller.loud_between(from, to)
        );
    }
    assert!(
        caller.until_heard(500).is_some(),
        "no answer to the last question"
    );
    caller.until_quiet(50, 1500);
    let r = caller.hang_up(&server);
    let turns: Vec<String> = customer_turns(&r).into_iter().map(|t| t.0).collect();
    let wanted: Vec<&str> = questions.iter().map(|q| q.1).collect();
    assert_eq!(turns, wanted, "{r}");
}
