//! Scripted callers for the dialplan interpreter, in virtual time.
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
//! > no-agent                           # after a transfer: nobody took the call
//! < stop | transfer QUEUE | hangup REASON | listen LANG | stop-listening
//! < record | stop-recording | note QUEUE: TEXT | blind-transfer TO
//! < say TEXT                           # an ask node speaks the dialogue core's answer
//! = path welcome main_menu ...         # nodes visited so far
//! = var NAME VALUE                     # a call variable
//! = finished                           # the interpreter has ended the call
//! ```
//!
//! Every output must be expected, in order, before the next `>` or `=` line. A comment
//! after a line starts with two spaces and `#`. A second `call` starts a new call.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use kefu::dialogue::Matcher;
use kefu::dialplan::{AudioRoot, Dialplan, Input, Interpreter, Moment, Output, load_dir};
use kefu::media::prompt::PromptCache;

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

struct Script {
    file: PathBuf,
    audio: PathBuf,
    interpreter: Option<Interpreter>,
    now: Moment,
    pending: VecDeque<String>,
    plans_dir: Option<PathBuf>,
}

impl Script {
    fn fail(&self, line: usize, msg: impl std::fmt::Display) -> ! {
        panic!("{}:{}: {msg}", self.file.display(), line);
    }

    fn interp(&mut self, line: usize) -> &mut Interpreter {
        if self.interpreter.is_none() {
            self.fail(line, "no `call` line before this");
        }
        self.interpreter.as_mut().unwrap()
    }

    fn render(&self, output: Output) -> String {
        match output {
            Output::Play(prompts) => {
                let names: Vec<String> = prompts
                    .iter()
                    .map(|p| {
                        p.path()
                            .strip_prefix(&self.audio)
                            .unwrap_or(p.path())
                            .display()
                            .to_string()
                    })
                    .collect();
                format!("play {}", names.join(", "))
            }
            Output::StopPlayback => "stop".into(),
            Output::Transfer { queue } => format!("transfer {queue}"),
            Output::BlindTransfer { to } => format!("blind-transfer {to}"),
            Output::Record => "record".to_string(),
            Output::StopRecording => "stop-recording".to_string(),
            Output::Note { text, queue } => format!("note {queue}: {text}"),
            Output::Hangup { reason } => format!("hangup {reason}"),
            Output::Listen { language } => format!("listen {language}"),
            Output::StopListening => "stop-listening".into(),
            Output::Say { text, .. } => format!("say {text}"),
        }
    }

    fn drain(&mut self, line: usize) {
        while let Some(out) = self.interp(line).poll_output() {
            let text = self.render(out);
            self.pending.push_back(text);
        }
    }

    fn feed(&mut self, line: usize, input: Input) {
        let now = self.now;
        self.interp(line).handle(input, now);
        self.drain(line);
    }

    /// Advances virtual time, firing each timer at its deadline.
    fn wait(&mut self, line: usize, d: Duration) {
        let until = self.now.mono + d;
        loop {
            let due = self.interp(line).poll_timeout().filter(|t| *t <= until);
            let Some(due) = due else { break };
            let step = due.saturating_duration_since(self.now.mono);
            self.now = self.now.after(step);
            self.feed(line, Input::Timer);
        }
        let rest = until.saturating_duration_since(self.now.mono);
        self.now = self.now.after(rest);
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
        self.interpreter =
            Some(Interpreter::new(plan, vars, self.now).with_dialogue(demo_kb(), topic));
    }

    fn act(&mut self, line: usize, action: &str) {
        if let Some(extra) = self.pending.front() {
            self.fail(line, format!("unexpected output before this: `{extra}`"));
        }
        let (verb, arg) = action.split_once(' ').unwrap_or((action, ""));
        match verb {
            "start" => {
                let now = self.now;
                self.interp(line).start(now);
                self.drain(line);
            }
            "done" => self.feed(line, Input::PlaybackDone),
            "talk" => self.feed(line, Input::SpeechStarted),
            "say" => self.feed(
                line,
                Input::Heard {
                    text: arg.trim().to_string(),
                    confidence: 0.9,
                },
            ),
            "asr-busy" => self.feed(line, Input::AsrUnavailable),
            "no-agent" => self.feed(line, Input::NoAgent),
            "key" => {
                for c in arg.trim().chars() {
                    self.feed(line, Input::Digit(c));
                }
            }
            "wait" => {
                let d = humantime::parse_duration(arg.trim())
                    .unwrap_or_else(|e| self.fail(line, format!("bad duration: {e}")));
                self.wait(line, d);
            }
            other => self.fail(line, format!("unknown action `{other}`")),
        }
    }

    fn expect_output(&mut self, line: usize, want: &str) {
        match self.pending.pop_front() {
            Some(got) if got == want => {}
            Some(got) => self.fail(line, format!("expected `{want}`, got `{got}`")),
            None => self.fail(line, format!("expected `{want}`, got nothing")),
        }
    }

    fn check(&mut self, line: usize, what: &str) {
        if let Some(extra) = self.pending.front() {
            self.fail(line, format!("unexpected output before this: `{extra}`"));
        }
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
            other => self.fail(line, format!("unknown check `{other}`")),
        }
    }
}

fn run_script(file: &Path, root: &Path) {
    let text = std::fs::read_to_string(file).unwrap();
    let mut s = Script {
        file: file.to_path_buf(),
        audio: root.join("audio"),
        interpreter: None,
        now: Moment::now(),
        pending: VecDeque::new(),
        plans_dir: None,
    };
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let body = raw.split("  #").next().unwrap_or("").trim();
        if body.is_empty() || body.starts_with('#') {
            continue;
        }
        if let Some(rest) = body.strip_prefix("> ") {
            s.act(line, rest.trim());
        } else if let Some(rest) = body.strip_prefix("< ") {
            s.expect_output(line, rest.trim());
        } else if let Some(rest) = body.strip_prefix("= ") {
            s.check(line, rest.trim());
        } else if let Some(rest) = body.strip_prefix("plans ") {
            s.plans_dir = Some(root.join(rest.trim()));
        } else if let Some(rest) = body.strip_prefix("call ") {
            s.call(line, rest);
        } else {
            s.fail(line, format!("cannot read `{body}`"));
        }
    }
    if let Some(extra) = s.pending.front() {
        s.fail(
            text.lines().count(),
            format!("unexpected output at the end: `{extra}`"),
        );
    }
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
    let failed: Vec<String> = files
        .iter()
        .filter(|f| std::panic::catch_unwind(|| run_script(f, root)).is_err())
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
