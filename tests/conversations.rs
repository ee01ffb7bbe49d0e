//! Scripted chat transcripts for the conversation service (`kefu::dialogue::service`)
//! as kefu runs it: the demo knowledge base, a real SQLite store in a temporary
//! directory, the agents' center with the demo's queues.
//!
//! Each `tests/scripts/*.chat` file is one or more conversations, written as what
//! the customer and the agent do (`>` lines) and what kefu answers (`<` lines):
//!
//! ```text
//! chat web visitor-1 en                # a web chat starts: its greeting follows
//! < reply Hello! ...                   # a reply (the greeting, or an answer)
//! > say What time do you close?        # the customer writes
//! < queued support-en                  # the reply handed over: waiting in the queue
//! > agent Hello, this is Anna.         # an agent replies
//! < pushed agent: Hello, this is Anna. # what the conversation's subscribers get
//! > gave-up                            # the queue's maximum wait passed
//! < notice Sorry, all our agents ...   # what the customer is told
//! = turns 6                            # turns committed to the store
//! = customer                           # the same customer as the previous chat
//! ```
//!
//! Every output must be expected, in order, before the next `>` or `=` line.
//! `UPDATE_EXPECT=1 cargo test --test conversations` rewrites the `<` lines.

#[path = "common/expect.rs"]
mod expect;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kefu::agents::center::Center;
use kefu::dialogue::Lang;
use kefu::dialogue::conversations::{Channel, Conversations, Identity, IdentityKind};
use kefu::dialogue::service::Service;
use kefu::dialogue::{Matcher, kb};
use kefu::store::{ConversationService, Store};
use tokio::sync::broadcast;

struct Chat {
    file: PathBuf,
    service: ConversationService,
    store: Store,
    center: Arc<Center>,
    conversation: Option<String>,
    customer: Option<String>,
    previous_customer: Option<String>,
    pushes: Option<broadcast::Receiver<kefu::dialogue::conversations::Event>>,
    expect: expect::Expect,
}

impl Chat {
    fn fail(&self, line: usize, msg: impl std::fmt::Display) -> ! {
        panic!("{}:{}: {msg}", self.file.display(), line);
    }

    fn conversation(&self, line: usize) -> String {
        self.conversation
            .clone()
            .unwrap_or_else(|| self.fail(line, "no `chat` line before this"))
    }

    /// What was pushed to the conversation's subscribers since the last look,
    /// for the agent's words (the customer's and the bot's are the replies).
    fn drain_pushes(&mut self) {
        let Some(rx) = self.pushes.as_mut() else {
            return;
        };
        while let Ok(e) = rx.try_recv() {
            if e.turn.speaker == kefu::dialogue::engine::Speaker::Agent {
                self.expect
                    .pending
                    .push_back(format!("pushed agent: {}", e.turn.text));
            }
        }
    }

    fn waiting(&self, conversation: &str) -> Option<String> {
        let (_, waiting) = self.center.snapshot();
        waiting
            .into_iter()
            .find(|w| w.item == conversation)
            .map(|w| w.queue)
    }

    async fn act(&mut self, line: usize, action: &str) {
        let (verb, arg) = action.split_once(' ').unwrap_or((action, ""));
        let arg = arg.trim();
        match verb {
            "say" => {
                let id = self.conversation(line);
                let was_waiting = self.waiting(&id).is_some();
                let reply = self
                    .service
                    .message(&id, arg)
                    .await
                    .unwrap_or_else(|e| self.fail(line, e));
                self.expect.pending.push_back(if reply.text.is_empty() {
                    "no reply (a person has it)".to_string()
                } else {
                    format!("reply {}", reply.text)
                });
                if let Some(queue) = self.waiting(&id).filter(|_| !was_waiting) {
                    self.expect.pending.push_back(format!("queued {queue}"));
                }
            }
            "agent" => {
                let id = self.conversation(line);
                self.service
                    .agent_reply(&id, arg)
                    .await
                    .unwrap_or_else(|e| self.fail(line, e));
            }
            "gave-up" => {
                let id = self.conversation(line);
                self.service
                    .queue_gave_up(&id)
                    .await
                    .unwrap_or_else(|e| self.fail(line, e));
                let history = self.service.conversations.history(&id).unwrap_or_default();
                if let Some(t) = history.last() {
                    self.expect.pending.push_back(format!("notice {}", t.text));
                }
            }
            other => self.fail(line, format!("unknown action `{other}`")),
        }
        self.drain_pushes();
    }

    async fn chat(&mut self, line: usize, args: &str) {
        let parts: Vec<&str> = args.split_whitespace().collect();
        let [channel, who, lang] = parts[..] else {
            self.fail(line, "chat CHANNEL IDENTITY LANG");
        };
        let (channel, kind) = match channel {
            "web" => (Channel::Web, IdentityKind::Web),
            "sms" => (Channel::Sms, IdentityKind::Sms),
            "wechat" => (Channel::Wechat, IdentityKind::Wechat),
            "app" => (Channel::App, IdentityKind::App),
            other => self.fail(line, format!("unknown channel `{other}`")),
        };
        let lang = Lang::from_code(lang).unwrap_or_else(|| self.fail(line, "lang: en or zh"));
        let started = self
            .service
            .start(channel, &Identity::new(kind, who), lang)
            .await
            .unwrap_or_else(|e| self.fail(line, e));
        let entry = self
            .service
            .conversations
            .get(&started.conversation)
            .unwrap_or_else(|e| self.fail(line, e));
        self.pushes = Some(entry.lock().unwrap().subscribe());
        self.previous_customer = self.customer.take();
        self.customer = Some(started.customer);
        self.conversation = Some(started.conversation);
        self.expect
            .pending
            .push_back(format!("reply {}", started.greeting.text));
    }

    async fn check(&mut self, line: usize, what: &str) {
        let (verb, arg) = what.split_once(' ').unwrap_or((what, ""));
        match verb {
            "turns" => {
                let id = self.conversation(line);
                let got = self.store.turns(&id).await.unwrap().len();
                if got.to_string() != arg.trim() {
                    self.fail(line, format!("{got} turns are stored"));
                }
            }
            "customer" => {
                if self.customer != self.previous_customer {
                    self.fail(line, "not the previous chat's customer");
                }
            }
            other => self.fail(line, format!("unknown check `{other}`")),
        }
    }
}

async fn run_chat(file: &Path, update: bool) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let data = tempfile::tempdir().unwrap();
    let store = Store::open(&kefu::store::sqlite_url(&data.path().join("kefu.db")), None)
        .await
        .unwrap();
    let kb = kb::load_dir(&root.join("dialplans/kb")).unwrap_or_else(|e| panic!("{e}"));
    let live = kefu::dialogue::reload::LiveKb::new(Matcher::new(Arc::new(kb)));
    let center = Arc::new(Center::new(
        ["support-en", "support-zh", "general", "vip-desk"]
            .map(kefu::agents::queue::QueueConfig::named),
    ));
    let mut c = Chat {
        file: file.to_path_buf(),
        service: Service {
            kb: live,
            conversations: Arc::new(Conversations::new(100)),
            records: store.clone(),
            desk: center.clone(),
        },
        store,
        center,
        conversation: None,
        customer: None,
        previous_customer: None,
        pushes: None,
        expect: expect::Expect::new(update),
    };
    let text = std::fs::read_to_string(file).unwrap();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let body = raw.split("  #").next().unwrap_or("").trim();
        if let Some(rest) = body.strip_prefix("< ") {
            if let Err(e) = c.expect.expect(raw, rest.trim()) {
                c.fail(line, e);
            }
            continue;
        }
        let acts = !(body.is_empty() || body.starts_with('#'));
        if acts && let Err(e) = c.expect.settle() {
            c.fail(line, e);
        }
        c.expect.keep(raw);
        if !acts {
            continue;
        }
        if let Some(rest) = body.strip_prefix("> ") {
            c.act(line, rest.trim()).await;
        } else if let Some(rest) = body.strip_prefix("= ") {
            c.check(line, rest.trim()).await;
        } else if let Some(rest) = body.strip_prefix("chat ") {
            c.chat(line, rest).await;
        } else {
            c.fail(line, format!("cannot read `{body}`"));
        }
    }
    if let Err(e) = c.expect.settle() {
        c.fail(text.lines().count(), e);
    }
    c.expect.finish(file, &text);
}

#[tokio::test]
async fn scripted_chats() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scripts");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "chat"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "expected scripted chats in {dir:?}");
    let update = expect::update_requested();
    for f in &files {
        run_chat(f, update).await;
    }
}

/// The harness notices a wrong reply, a missing one and an extra one.
#[tokio::test]
async fn scripted_chat_mismatches_fail() {
    let dir = tempfile::tempdir().unwrap();
    let bad = [
        "chat web v en\n< reply nothing like the greeting\n",
        "chat web v en\n",
        "chat web v en\n> say hello\n< reply no\n",
    ];
    for (i, text) in bad.iter().enumerate() {
        let file = dir.path().join(format!("bad{i}.chat"));
        std::fs::write(&file, text).unwrap();
        let result = tokio::spawn({
            let file = file.clone();
            async move { run_chat(&file, false).await }
        })
        .await;
        assert!(result.is_err(), "script {i} should have failed:\n{text}");
    }
}
