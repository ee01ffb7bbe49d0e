//! Scripted callers for the whole call session (`kefu::call::session`), in virtual
//! time: the caller's keys arrive as RFC 4733 RTP packets, time passes with the
//! caller's 20 ms silence frames, and the session's actions are what is checked.
//! The voice activity detector is the script's (`talk` and `say` are what the ears
//! notice next); recognition answers with the script's text.
//!
//! Each `tests/scripts/*.script` file is one conversation with a dialplan, written as
//! what the caller does (`>` lines) and what kefu must answer (`<` lines), in order:
//!
//! ```text
//! plans dialplans                      # directory of plans (audio comes from audio/)
//! call to=4008002000 from=10086 at=2026-11-24T10:00:00+08:00 [topic=INTENT]
//!                                      # topic: the caller's open topic elsewhere
//! > start                              # the call is answered
//! < play en/welcome.wav
//! > done                               # everything asked for has been played
//! > key 2                              # keys, all at the same instant
//! > wait 5s                            # time passes; timers fire when due
//! > talk / > say TEXT / > asr-busy     # at a listen or ask node: speech starts, is
//!                                      # heard, or recognition is unavailable
//! > asr-late                           # the utterance is queued: its words come late
//! > pause / > heard TEXT               # the caller pauses; the words so far are
//!                                      # recognised as TEXT (a draft)
//! > resume / > end                     # they go on / the utterance is over
//! > no-agent                           # after a transfer: nobody took the call
//! > agent                              # after a transfer: an agent took it
//! > announce                           # the queue says the caller's place
//! > quiet 40s                          # time passes and the caller sends nothing
//! > reinvite sendonly                  # the caller holds (sendrecv: resumes)
//! > refer-answer 603 | notify 200      # a blind transfer's REFER and NOTIFY
//! > dial-out answered | dial-out failed WHY
//! > hangup                             # the caller hangs up
//! < stop | transfer QUEUE | hangup REASON | listen LANG | stop-listening | forget
//! < record | stop-recording | note QUEUE: TEXT | blind-transfer TO | rate SCORE
//! < say TEXT                           # an ask node speaks the dialogue core's answer
//! < announce | media DIRECTION | dial-out TO | bridge | end REASON
//! = path welcome main_menu ...         # nodes visited so far
//! = var NAME VALUE                     # a call variable
//! = finished                           # the interpreter has ended the call
//! ```
//!
//! Every output must be expected, in order, before the next `>` or `=` line. A comment
//! after a line starts with two spaces and `#`. A second `call` starts a new call.
//!
//! `UPDATE_EXPECT=1 cargo test --test interpreter` rewrites the `<` lines of every
//! script to what the session now does (checks and actions stay as written); read
//! the diff before committing it.

#[path = "common/expect.rs"]
mod expect;

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use kefu::call::EndReason;
use kefu::call::session::{self, Action, Ears, Event, Noticed, Queued, Session};
use kefu::call::transfer::TransferLog;
use kefu::dialogue::Matcher;
use kefu::dialplan::{AudioRoot, Dialplan, Interpreter, Moment, load_dir};
use kefu::media::prompt::{Prompt, PromptCache};

/// One cache for every script: prompts are converted once.
/// The demo knowledge base, for `ask` nodes.
fn demo_kb() -> Arc<Matcher> {
    static KB: OnceLock<Arc<Matcher>> = OnceLock::new();
    KB.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("dialplans/kb");
        let kb = kefu::dialogue::kb::load_dir(&dir).unwrap_or_else(|e| panic!("{e}"));
        Arc::new(Matcher::new(Arc::new(kb)))
    })
    .clone()
}

fn prompts() -> &'static PromptCache {
    static CACHE: OnceLock<PromptCache> = OnceLock::new();
    CACHE.get_or_init(|| {
        // Text prompts are spoken by the real TTS (cached across runs).
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let speaker = kefu::speech::tts::Speaker::new(
            kefu::speech::ModelDir(root.join("models")),
            Some(std::env::temp_dir().join("kefu-test-tts-cache")),
        );
        PromptCache::with_speaker(Arc::new(speaker))
    })
}

/// Where the caller's phone sends from (the SDP names it: no latching).
const PHONE: &str = "127.0.0.1:40000";
/// The caller's phone offers PCMU and telephone-event.
fn offer(direction: &str) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio 40000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na={direction}\r\n"
    )
}

/// The audio of an answer's sentences (the harness renders them, not the TTS).
const ANSWER: &str = "(answer)";
const FRAME: Duration = Duration::from_millis(20);

/// What the ears notice next: the script says when the caller talks.
type Heard = Arc<Mutex<VecDeque<Noticed>>>;

struct ScriptedEars(Heard);

/// What recognition answers for the script's words.
fn transcript(text: &str) -> kefu::speech::Transcript {
    kefu::speech::Transcript {
        text: text.to_string(),
        language: String::new(),
        confidence: 0.9,
        no_speech: 0.0,
        audio_ms: 100,
        decode_ms: 1,
    }
}

impl Ears for ScriptedEars {
    fn restart(&mut self, _language: &str) {}

    fn push(&mut self, _pcm: &[i16], out: &mut Vec<Noticed>) {
        out.extend(self.0.lock().unwrap().drain(..));
    }

    fn end_turn(&mut self) {}
}

/// The caller's phone: RTP with its own sequence and timestamps.
struct Phone {
    seq: u16,
    timestamp: u32,
}

impl Phone {
    fn packet(&mut self, payload_type: u8, marker: bool, payload: &[u8], advance: bool) -> Vec<u8> {
        let mut p = vec![0x80, payload_type | if marker { 0x80 } else { 0 }];
        p.extend_from_slice(&self.seq.to_be_bytes());
        p.extend_from_slice(&self.timestamp.to_be_bytes());
        p.extend_from_slice(&0x1234_5678u32.to_be_bytes());
        p.extend_from_slice(payload);
        self.seq = self.seq.wrapping_add(1);
        if advance {
            self.timestamp = self.timestamp.wrapping_add(160);
        }
        p
    }

    /// One 20 ms PCMU frame (0xff: silence; else a loud square wave).
    fn frame(&mut self, loud: bool) -> Vec<u8> {
        let payload: Vec<u8> = (0..160)
            .map(|i| match (loud, (i / 10) % 2) {
                (false, _) => 0xff,
                (true, 0) => 0x20,
                (true, _) => 0xa0,
            })
            .collect();
        self.packet(0, false, &payload, true)
    }

    /// The packets of one key press (RFC 4733: a start, then three ends).
    fn key(&mut self, key: char) -> Vec<Vec<u8>> {
        let event = match key {
            '0'..='9' => key as u8 - b'0',
            '*' => 10,
            '#' => 11,
            'A'..='D' => key as u8 - b'A' + 12,
            _ => panic!("no such key {key}"),
        };
        let mut packets = vec![self.packet(101, true, &[event, 10, 0, 160], false)];
        for _ in 0..3 {
            packets.push(self.packet(101, false, &[event, 0x80 | 10, 3, 32], false));
        }
        self.timestamp = self.timestamp.wrapping_add(800);
        packets
    }
}

struct Script {
    file: PathBuf,
    audio: PathBuf,
    session: Option<Session>,
    now: Moment,
    /// What happened, checked against the `<` lines (and UPDATE_EXPECT).
    expect: expect::Expect,
    plans_dir: Option<PathBuf>,
    heard: Heard,
    phone: Phone,
    /// An answer is being spoken: its sentences are rendered at `done`.
    speaking: bool,
    /// What the ears gave to recognition, waiting for the script's words.
    recognising: bool,
}

impl Script {
    fn fail(&self, line: usize, msg: impl std::fmt::Display) -> ! {
        panic!("{}:{}: {msg}", self.file.display(), line);
    }

    fn session(&mut self, line: usize) -> &mut Session {
        if self.session.is_none() {
            self.fail(line, "no `call` line before this");
        }
        self.session.as_mut().unwrap()
    }

    fn interp(&mut self, line: usize) -> &Interpreter {
        self.session(line).interpreter()
    }

    fn path_of(&self, p: &Prompt) -> String {
        p.path()
            .strip_prefix(&self.audio)
            .unwrap_or(p.path())
            .display()
            .to_string()
    }

    /// The line an action reads as; None for those the harness answers itself.
    fn render(&mut self, action: Action) -> Option<String> {
        Some(match action {
            Action::Play(prompts) => {
                self.speaking = false;
                if prompts.iter().any(|p| p.path() == Path::new(ANSWER)) {
                    return None;
                }
                let names: Vec<String> = prompts.iter().map(|p| self.path_of(p)).collect();
                format!("play {}", names.join(", "))
            }
            Action::Append(_) => return None,
            Action::StopPlayback => {
                self.speaking = false;
                "stop".into()
            }
            Action::Speak { text, .. } => {
                self.speaking = true;
                format!("say {text}")
            }
            Action::Announce(p) => format!("announce {}", self.path_of(&p)),
            Action::Listen { language } => format!("listen {language}"),
            Action::StopListening => {
                self.recognising = false;
                "stop-listening".into()
            }
            Action::Recognise { .. } => {
                self.recognising = true;
                return None;
            }
            Action::Forget => {
                self.recognising = false;
                "forget".into()
            }
            // The harness's ears settle what they hear themselves.
            Action::Detect(_) => return None,
            Action::Remote(to) => format!("remote {to}"),
            Action::Media(n) => format!("media {}", format!("{:?}", n.direction).to_lowercase()),
            Action::Queue { queue, .. } => format!("transfer {queue}"),
            Action::Refer { to } => format!("blind-transfer {to}"),
            Action::DialOut { to } => format!("dial-out {to}"),
            Action::Bridge => "bridge".into(),
            Action::Note { text, queue } => format!("note {queue}: {text}"),
            Action::Callback { to, queue } => format!("callback {queue}: {to}"),
            Action::Rate { score } => format!("rate {score}"),
            Action::Record => "record".into(),
            Action::Keep(_) => "stop-recording".into(),
            Action::End(EndReason::Plan(reason)) => format!("hangup {reason}"),
            Action::End(reason) => format!("end {reason}"),
        })
    }

    fn drain(&mut self, line: usize) {
        while let Some(action) = self.session(line).poll_action() {
            if let Some(text) = self.render(action) {
                self.expect.pending.push_back(text);
            }
        }
    }

    fn feed(&mut self, line: usize, event: Event<'_>) {
        let now = self.now;
        self.session(line).handle(event, now);
        self.drain(line);
    }

    fn send(&mut self, line: usize, packet: &[u8]) {
        let from: SocketAddr = PHONE.parse().unwrap();
        let at = self.now.mono;
        self.feed(line, Event::Rtp { packet, from, at });
    }

    /// Advances virtual time to `until`: the session's timers fire at their
    /// deadlines, and the phone sends a silence frame every 20 ms unless `quiet`.
    fn wait(&mut self, line: usize, d: Duration, quiet: bool) {
        let until = self.now.mono + d;
        let mut next_frame = self.now.mono + FRAME;
        loop {
            let timer = self.session(line).poll_timeout();
            let step = [Some(next_frame), timer, Some(until)]
                .into_iter()
                .flatten()
                .filter(|t| *t > self.now.mono || *t == until)
                .min()
                .unwrap_or(until)
                .min(until);
            let ahead = step.saturating_duration_since(self.now.mono);
            self.now = self.now.after(ahead);
            if step == next_frame {
                next_frame += FRAME;
                if !quiet {
                    let frame = self.phone.frame(false);
                    self.send(line, &frame);
                }
            }
            self.feed(line, Event::Tick);
            if self.now.mono >= until {
                break;
            }
        }
    }

    /// The caller's voice as the ears notice it, carried by one loud frame.
    fn notice(&mut self, line: usize, noticed: Noticed) {
        self.heard.lock().unwrap().push_back(noticed);
        // A few frames: after a key the reorder buffer waits out the events' gap in
        // the sequence numbers before it decodes voice again.
        for _ in 0..5 {
            if self.heard.lock().unwrap().is_empty() {
                return;
            }
            let frame = self.phone.frame(true);
            self.send(line, &frame);
        }
        // Nobody was listening: the caller spoke to no one.
        self.heard.lock().unwrap().clear();
    }

    fn call(&mut self, line: usize, args: &str) {
        let mut to = None;
        let mut topic = None;
        let mut vars = BTreeMap::new();
        let mut wall: DateTime<Utc> = Utc::now();
        for kv in args.split_whitespace() {
            let Some((k, v)) = kv.split_once('=') else {
                self.fail(line, format!("expected key=value, got `{kv}`"));
            };
            match k {
                "to" => to = Some(v.to_string()),
                "from" => {
                    vars.insert("caller".to_string(), v.to_string());
                }
                "at" => {
                    wall = DateTime::parse_from_rfc3339(v)
                        .unwrap_or_else(|e| self.fail(line, format!("bad time `{v}`: {e}")))
                        .with_timezone(&Utc)
                }
                "topic" => topic = Some(v.to_string()),
                other => self.fail(line, format!("unknown call field `{other}`")),
            }
        }
        let to = to.unwrap_or_else(|| self.fail(line, "call needs to=NUMBER"));
        vars.insert("called".to_string(), to.clone());
        let dir = self
            .plans_dir
            .clone()
            .unwrap_or_else(|| self.fail(line, "no `plans` line before `call`"));
        let registry = load_dir(&dir, &AudioRoot(self.audio.clone()), prompts())
            .unwrap_or_else(|e| self.fail(line, format!("plans do not load:\n{e}")));
        let plan: Arc<Dialplan> = registry
            .lookup(&to)
            .unwrap_or_else(|| self.fail(line, format!("no plan answers {to}")));
        self.now = Moment {
            mono: Instant::now(),
            wall,
        };
        let config = session::Config {
            negotiated: kefu::media::sdp::negotiate(offer("sendrecv").as_bytes())
                .unwrap_or_else(|e| self.fail(line, format!("offer: {e}"))),
            dtmf: Default::default(),
            rtp_timeout: Duration::from_secs(30),
            local_rtp: "127.0.0.1:20000".parse().unwrap(),
            peer: "127.0.0.1".parse().unwrap(),
            session_id: 1,
            sdp_version: 1,
            caller: vars.get("caller").cloned().unwrap_or_default(),
            language: plan.language.clone(),
        };
        let interpreter = Interpreter::new(plan, vars, self.now).with_dialogue(demo_kb(), topic);
        let heard = self.heard.clone();
        let ears: session::MakeEars =
            Box::new(move |_: &str| -> Box<dyn Ears> { Box::new(ScriptedEars(heard.clone())) });
        self.session = Some(Session::new(config, interpreter, Some(ears), self.now.mono));
        self.speaking = false;
        self.recognising = false;
    }

    fn act(&mut self, line: usize, action: &str) {
        let (verb, arg) = action.split_once(' ').unwrap_or((action, ""));
        let arg = arg.trim();
        match verb {
            "start" => self.feed(line, Event::Start),
            "done" => {
                if self.speaking {
                    // The answer's one sentence is rendered and sent, then plays out.
                    let sentence = Arc::new(Prompt::from_samples(ANSWER.into(), vec![0; 800]));
                    self.feed(line, Event::Sentence(sentence));
                    self.feed(line, Event::AnswerRendered);
                }
                self.feed(line, Event::PlayoutEnded);
            }
            "talk" => self.notice(line, Noticed::SpeechStarted),
            "say" => {
                self.notice(line, Noticed::Utterance(vec![0.1; 800]));
                if std::mem::take(&mut self.recognising) {
                    let heard = transcript(arg);
                    self.feed(line, Event::Heard(Ok(heard)));
                }
            }
            // The caller pauses: the words so far go to recognition (answered by
            // `heard`); `resume`: they go on; `end`: the endpointer's end of the
            // utterance, with no new words.
            "pause" => self.notice(
                line,
                Noticed::Paused {
                    audio: vec![0.1; 800],
                    quiet: Duration::from_millis(96),
                },
            ),
            "resume" => self.notice(line, Noticed::Resumed),
            "end" => self.notice(line, Noticed::Utterance(vec![0.1; 800])),
            "heard" => {
                if !std::mem::take(&mut self.recognising) {
                    self.fail(line, "nothing is being recognised");
                }
                let heard = transcript(arg);
                self.feed(line, Event::Heard(Ok(heard)));
            }
            "asr-busy" => self.feed(line, Event::RecognitionRefused),
            "asr-late" => self.feed(line, Event::RecognitionDelayed),
            "no-agent" => self.feed(line, Event::Queue(Queued::TimedOut(TransferLog::default()))),
            "agent" => self.feed(line, Event::Queue(Queued::Answered(TransferLog::default()))),
            "announce" => {
                let place = Arc::new(Prompt::from_samples("position.wav".into(), vec![0; 800]));
                self.feed(line, Event::Queue(Queued::Announce(place)));
            }
            "key" => {
                for c in arg.chars() {
                    for packet in self.phone.key(c) {
                        self.send(line, &packet);
                    }
                }
            }
            "wait" | "quiet" => {
                let d = humantime::parse_duration(arg)
                    .unwrap_or_else(|e| self.fail(line, format!("bad duration: {e}")));
                self.wait(line, d, verb == "quiet");
            }
            "reinvite" => {
                let now = self.now;
                let decision = self.session(line).reoffer(offer(arg).as_bytes(), now);
                if let kefu::call::reoffer::Reoffer::Refused(why) = decision {
                    self.expect.pending.push_back(format!("refused {why}"));
                }
                self.drain(line);
            }
            "refer-answer" => {
                let code = arg
                    .parse()
                    .unwrap_or_else(|_| self.fail(line, "a status code"));
                self.feed(line, Event::ReferAnswered(Ok(code)));
            }
            "notify" => {
                let body = format!("SIP/2.0 {arg}\r\n");
                self.feed(line, Event::Notify(body.as_bytes()));
            }
            "dial-out" => match arg.split_once(' ').unwrap_or((arg, "")) {
                ("answered", _) => self.feed(line, Event::DialOut(Ok(()))),
                ("failed", why) => self.feed(line, Event::DialOut(Err(why.to_string()))),
                _ => self.fail(line, "dial-out answered | dial-out failed WHY"),
            },
            "hangup" => self.feed(line, Event::Gone(EndReason::CallerHangup)),
            other => self.fail(line, format!("unknown action `{other}`")),
        }
    }

    fn check(&mut self, line: usize, what: &str) {
        let (verb, arg) = what.split_once(' ').unwrap_or((what, ""));
        match verb {
            "path" => {
                let got = self.interp(line).path().join(" ");
                if got != arg.trim() {
                    self.fail(line, format!("path is `{got}`"));
                }
            }
            "var" => {
                let (name, value) = arg.trim().split_once(' ').unwrap_or((arg.trim(), ""));
                let got = self.interp(line).vars().get(name).cloned();
                if got.as_deref() != Some(value) {
                    self.fail(line, format!("{name} is {got:?}"));
                }
            }
            "unset" => {
                let name = arg.trim();
                if let Some(v) = self.interp(line).vars().get(name).cloned() {
                    self.fail(line, format!("{name} is set to {v:?}"));
                }
            }
            "finished" => {
                if !self.interp(line).is_finished() {
                    self.fail(line, "the call has not ended");
                }
            }
            "running" => {
                if self.interp(line).is_finished() {
                    self.fail(line, "the call has ended");
                }
            }
            "keys" => {
                let got = self.session(line).digits.clone();
                if got != arg.trim() {
                    self.fail(line, format!("keys are `{got}`"));
                }
            }
            other => self.fail(line, format!("unknown check `{other}`")),
        }
    }
}

fn run_script(file: &Path, root: &Path) {
    run_script_as(file, root, false);
}

/// Runs one script; with `update`, rewrites its `<` lines to what happened.
fn run_script_as(file: &Path, root: &Path, update: bool) {
    let text = std::fs::read_to_string(file).unwrap();
    let mut s = Script {
        file: file.to_path_buf(),
        audio: root.join("audio"),
        session: None,
        now: Moment::now(),
        expect: expect::Expect::new(update),
        plans_dir: None,
        heard: Heard::default(),
        phone: Phone {
            seq: 1000,
            timestamp: 8000,
        },
        speaking: false,
        recognising: false,
    };
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let body = raw.split("  #").next().unwrap_or("").trim();
        if let Some(rest) = body.strip_prefix("< ") {
            if let Err(e) = s.expect.expect(raw, rest.trim()) {
                s.fail(line, e);
            }
            continue;
        }
        let acts = !(body.is_empty() || body.starts_with('#') || body.starts_with("plans "));
        if acts && let Err(e) = s.expect.settle() {
            s.fail(line, e);
        }
        s.expect.keep(raw);
        if !acts {
            if let Some(rest) = body.strip_prefix("plans ") {
                s.plans_dir = Some(root.join(rest.trim()));
            }
            continue;
        }
        if let Some(rest) = body.strip_prefix("> ") {
            s.act(line, rest.trim());
        } else if let Some(rest) = body.strip_prefix("= ") {
            s.check(line, rest.trim());
        } else if let Some(rest) = body.strip_prefix("call ") {
            s.call(line, rest);
        } else {
            s.fail(line, format!("cannot read `{body}`"));
        }
    }
    if let Err(e) = s.expect.settle() {
        s.fail(text.lines().count(), e);
    }
    s.expect.finish(file, &text);
}

#[test]
fn scripted_callers() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("tests/scripts");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "script"))
        .collect();
    files.sort();
    assert!(files.len() >= 8, "expected the scripted callers in {dir:?}");
    let update = expect::update_requested();
    let failed: Vec<String> = files
        .iter()
        .filter(|f| std::panic::catch_unwind(|| run_script_as(f, root, update)).is_err())
        .map(|f| f.display().to_string())
        .collect();
    assert!(failed.is_empty(), "scripts failed (see above): {failed:?}");
}

/// The harness itself must notice a wrong expectation, a missing one and an extra one.
#[test]
fn scripted_caller_mismatches_fail() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let head = "plans dialplans\ncall to=4008002000 from=1\n> start\n";
    let bad = [
        "< play en/goodbye.wav\n",                           // wrong prompt
        "",                                                  // output left unexpected
        "< play en/welcome.wav\n< stop\n",                   // output that never came
        "< play en/welcome.wav\n= path welcome main_menu\n", // wrong path
    ];
    let dir = tempfile::tempdir().unwrap();
    for (i, tail) in bad.iter().enumerate() {
        let file = dir.path().join(format!("bad{i}.script"));
        std::fs::write(&file, format!("{head}{tail}")).unwrap();
        let result = std::panic::catch_unwind(|| run_script(&file, root));
        assert!(
            result.is_err(),
            "script {i} should have failed:\n{head}{tail}"
        );
    }
    let good = dir.path().join("good.script");
    std::fs::write(
        &good,
        format!("{head}< play en/welcome.wav\n= path welcome\n"),
    )
    .unwrap();
    run_script(&good, root);
}
