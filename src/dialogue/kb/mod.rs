//! The knowledge base staff edit: intents with example questions per language, answers
//! per channel, follow-ups, slots to collect and hand-over actions.
//!
//! Files are TOML (the dialplans' format family) in one directory, read by `load` with
//! `file:line:col` errors; built-in small talk (`smalltalk.toml`) comes first and a file
//! may replace any of its intents by id. `import` turns a spreadsheet (`sheet`: a workbook or exported text) into such a file.

pub mod import;
mod load;
mod sheet;

use std::collections::BTreeMap;
use std::path::PathBuf;

pub use load::{KbError, load_dir, load_files};

use super::slots::Slot;
use super::text::Lang;

/// One text per language.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Texts(pub BTreeMap<Lang, String>);

impl Texts {
    pub fn get(&self, lang: Lang) -> Option<&str> {
        self.0.get(&lang).map(String::as_str)
    }

    /// The text in `lang`, else in any language the entry has.
    pub fn best(&self, lang: Lang) -> &str {
        self.get(lang)
            .or_else(|| self.0.values().next().map(String::as_str))
            .unwrap_or("")
    }

    pub fn of(pairs: &[(Lang, &str)]) -> Self {
        Self(pairs.iter().map(|(l, s)| (*l, s.to_string())).collect())
    }
}

/// Where a channel shows an answer: spoken on a call, read in chat (web, WeChat, app),
/// or sent as a text message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Medium {
    Voice,
    Chat,
    Sms,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Example {
    pub lang: Lang,
    pub text: String,
}

/// What to do when an intent is recognised.
#[derive(Clone, Debug)]
pub struct Intent {
    pub id: String,
    /// Short name per language, used to ask "Do you mean A or B?".
    pub title: Texts,
    pub examples: Vec<Example>,
    /// Short and speakable: the voice answer, and the chat answer unless `chat` is set.
    pub answer: Texts,
    /// Richer text with links for chat channels.
    pub chat: Texts,
    /// Intents this one follows up ("and at weekends?" after opening hours): preferred
    /// when the previous answer was one of them.
    pub after: Vec<String>,
    pub tags: Vec<String>,
    /// Values to collect, in order, before answering from the template.
    pub slots: Vec<Slot>,
    /// Hand the conversation to this agent queue after answering.
    pub handover: Option<String>,
    /// Opens a topic a customer may come back about on another channel.
    pub topic: bool,
    pub file: PathBuf,
    pub line: usize,
}

impl Intent {
    /// One of kefu's own small-talk intents (greetings, thanks, a person), not the
    /// knowledge base's.
    pub fn is_built_in(&self) -> bool {
        self.file.as_os_str() == load::SMALL_TALK_FILE
    }

    /// The answer for a channel: chat gets the richer text when there is one; voice
    /// and SMS the short one.
    pub fn text_for(&self, medium: Medium, lang: Lang) -> &str {
        match medium {
            Medium::Voice | Medium::Sms => self.answer.best(lang),
            Medium::Chat => self.chat.get(lang).unwrap_or(self.answer.best(lang)),
        }
    }
}

/// The engine's own sentences, which a knowledge base may reword.
#[derive(Clone, Debug)]
pub struct Replies {
    pub fallback: Texts,
    /// "Do you mean ${options}?"
    pub clarify: Texts,
    /// Joins the two options of a clarification ("A or B").
    pub or: Texts,
    pub handover: Texts,
    /// A slot value was asked for too often without a usable answer.
    pub give_up: Texts,
    /// "Are you contacting us about ${topic}?" (the topic intent's title)
    pub resume: Texts,
    /// After answering a question asked in the middle of another request, offers to
    /// go back to it: "Shall we go back to ${topic}?"
    pub back_to: Texts,
}

impl Default for Replies {
    fn default() -> Self {
        use Lang::*;
        Self {
            fallback: Texts::of(&[
                (
                    En,
                    "Sorry, I don't have an answer to that. Could you put it another way?",
                ),
                (Zh, "抱歉，这个问题我还回答不了。您能换个说法吗？"),
            ]),
            clarify: Texts::of(&[
                (En, "Do you mean ${options}?"),
                (Zh, "您是想问${options}？"),
            ]),
            or: Texts::of(&[(En, " or "), (Zh, "还是")]),
            handover: Texts::of(&[
                (En, "I'll pass you to a colleague who can help."),
                (Zh, "我帮您转接人工客服。"),
            ]),
            give_up: Texts::of(&[
                (
                    En,
                    "Sorry, I couldn't take that down. Let me find a colleague for you.",
                ),
                (Zh, "抱歉，我没能记下来。我帮您转接人工客服。"),
            ]),
            resume: Texts::of(&[
                (En, "Are you contacting us about ${topic}?"),
                (Zh, "请问您是为了${topic}联系我们吗？"),
            ]),
            back_to: Texts::of(&[
                (En, "Shall we go back to ${topic}?"),
                (Zh, "要继续办理${topic}吗？"),
            ]),
        }
    }
}

/// How sure the matcher must be, tuned with `kefu kb eval`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Thresholds {
    /// Answer when the best intent scores at least this.
    pub answer: f32,
    /// Ask back when two intents score at least this and are within `margin`.
    pub clarify: f32,
    pub margin: f32,
    /// Misses in a row before offering a person.
    pub misses_before_handover: u32,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            answer: 0.45,
            clarify: 0.35,
            margin: 0.04,
            misses_before_handover: 2,
        }
    }
}

/// A validated knowledge base.
#[derive(Clone, Debug)]
pub struct KnowledgeBase {
    pub name: String,
    pub intents: Vec<Intent>,
    pub synonyms: Vec<Vec<String>>,
    pub replies: Replies,
    pub thresholds: Thresholds,
    /// The agent queue for "I want a person" and repeated misses.
    pub default_queue: String,
    /// Where "today" and "tomorrow" are reckoned for date slots.
    pub timezone: chrono_tz::Tz,
    /// Hash of all file texts, to tell versions apart in logs.
    pub version: String,
}

impl KnowledgeBase {
    pub fn intent(&self, id: &str) -> Option<&Intent> {
        self.intents.iter().find(|i| i.id == id)
    }

    pub fn intent_index(&self, id: &str) -> Option<usize> {
        self.intents.iter().position(|i| i.id == id)
    }
}
