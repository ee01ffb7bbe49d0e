//! What a dialplan node can do. One file per node type: each parses its own table
//! (reporting problems with positions) and runs against the call's [`Run`] state.

pub mod ask;
pub mod branch;
pub mod callback;
pub mod collect;
pub mod goto;
pub mod hangup;
pub mod hours;
pub mod listen;
pub mod menu;
pub mod note;
pub mod play;
pub mod rate;
pub mod record;
pub mod set;
pub mod transfer;

use std::sync::Arc;

use toml::Spanned;

use super::interpreter::{Flow, Run};
use super::{AudioRoot, NodeId};
use crate::media::prompt::{Prompt, PromptCache};
use crate::source::{Fields, Source};

/// A node's behaviour.
#[derive(Debug)]
pub enum Action {
    Play(play::Play),
    Menu(menu::Menu),
    Collect(collect::Collect),
    Goto(goto::Goto),
    Set(set::Set),
    Branch(branch::Branch),
    Hours(hours::Hours),
    Listen(listen::Listen),
    Ask(ask::Ask),
    Transfer(transfer::Transfer),
    Record(record::Record),
    Note(note::Note),
    Callback(callback::Callback),
    Rate(rate::Rate),
    Hangup(hangup::Hangup),
}

/// The node types, as written in `type = "..."`.
pub const TYPES: &[&str] = &[
    "play", "menu", "collect", "goto", "set", "branch", "hours", "listen", "ask", "transfer",
    "record", "note", "callback", "rate", "hangup",
];

/// One piece of a prompt: a file, or the digits of a variable read out one by one.
#[derive(Clone, Debug)]
pub enum PromptItem {
    File(Arc<Prompt>),
    Digits(String),
}

/// What node parsers need besides their own table.
pub struct Cx<'s, 'a> {
    pub src: &'s mut Source<'a>,
    pub node_names: &'s [String],
    pub audio: &'s AudioRoot,
    pub prompts: &'s PromptCache,
    pub has_digit_prompts: bool,
    /// The plan's language and voice, for text (`say:`) prompts.
    pub language: &'s str,
    pub voice: Option<&'s str>,
}

impl Cx<'_, '_> {
    fn resolve(&mut self, name: &Spanned<String>, field: &str) -> Option<NodeId> {
        let id = self.node_names.iter().position(|n| n == name.get_ref());
        if id.is_none() {
            self.src.error(
                name.span(),
                format!("`{field}` names unknown node `{}`", name.get_ref()),
            );
        }
        id
    }

    /// An optional field naming another node.
    pub fn target(&mut self, f: &mut Fields<'_, '_>, field: &str) -> Option<NodeId> {
        let name = f.string(self.src, field)?;
        self.resolve(&name, field)
    }

    /// A field naming another node that must be present.
    pub fn required_target(&mut self, f: &mut Fields<'_, '_>, field: &str) -> Option<NodeId> {
        let name = f.required_string(self.src, field)?;
        self.resolve(&name, field)
    }

    /// Resolves a target written as a string value somewhere inside a table.
    pub fn target_value(&mut self, name: &Spanned<String>, field: &str) -> Option<NodeId> {
        self.resolve(name, field)
    }

    /// A prompt field: a file under the audio directory, `${digits:VAR}`, `say:TEXT`
    /// (spoken by the plan's voice, rendered at load), or a list of these.
    pub fn prompt(&mut self, f: &mut Fields<'_, '_>, field: &str) -> Option<Vec<PromptItem>> {
        let items = f.strings(self.src, field)?;
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            let text = item.get_ref();
            if let Some(var) = text
                .strip_prefix("${digits:")
                .and_then(|r| r.strip_suffix('}'))
            {
                if !self.has_digit_prompts {
                    self.src.error(
                        item.span(),
                        "`${digits:...}` needs `digits = \"<folder with 0.wav … 9.wav>\"` in [dialplan]",
                    );
                }
                out.push(PromptItem::Digits(var.to_string()));
                continue;
            }
            if let Some(say) = text.strip_prefix("say:") {
                let say = say.trim();
                if say.is_empty() {
                    self.src
                        .error(item.span(), "`say:` needs the text to speak");
                } else if say.contains("${") {
                    self.src.error(
                        item.span(),
                        "text prompts are rendered when the dialplan loads and cannot use ${...}; read values back with `${digits:NAME}` items",
                    );
                } else {
                    match self.prompts.say(self.voice, self.language, say) {
                        Ok(p) => out.push(PromptItem::File(p)),
                        Err(e) => self
                            .src
                            .error(item.span(), format!("cannot speak this text: {e}")),
                    }
                }
                continue;
            }
            let path = self.audio.resolve(text);
            if !path.exists() {
                self.src.error(
                    item.span(),
                    format!("audio file {} does not exist", path.display()),
                );
                continue;
            }
            match self.prompts.get(&path) {
                Ok(p) => out.push(PromptItem::File(p)),
                Err(e) => self
                    .src
                    .error(item.span(), format!("audio file {}: {e}", path.display())),
            }
        }
        Some(out)
    }

    /// The node's `language` (one of `allowed`), else the plan's.
    pub fn language(&mut self, f: &mut Fields<'_, '_>, allowed: &[&str]) -> String {
        match f.string(self.src, "language") {
            Some(l) if allowed.contains(&l.get_ref().as_str()) => l.into_inner(),
            Some(l) => {
                let quoted: Vec<String> = allowed.iter().map(|a| format!("\"{a}\"")).collect();
                self.src.error(
                    l.span(),
                    format!("`language` must be {}", quoted.join(" or ")),
                );
                String::new()
            }
            None => self.language.to_string(),
        }
    }

    pub fn required_prompt(
        &mut self,
        f: &mut Fields<'_, '_>,
        field: &str,
    ) -> Option<Vec<PromptItem>> {
        let p = self.prompt(f, field);
        if p.is_none() {
            self.src
                .error(f.span.clone(), format!("{} needs `{field}`", f.what));
        }
        p
    }
}

impl Action {
    /// Parses the table of a node whose `type` is `kind`; `None` after reporting.
    pub fn parse(kind: &str, f: &mut Fields<'_, '_>, cx: &mut Cx<'_, '_>) -> Option<Self> {
        Some(match kind {
            "play" => Action::Play(play::Play::parse(f, cx)?),
            "menu" => Action::Menu(menu::Menu::parse(f, cx)?),
            "collect" => Action::Collect(collect::Collect::parse(f, cx)?),
            "goto" => Action::Goto(goto::Goto::parse(f, cx)?),
            "set" => Action::Set(set::Set::parse(f, cx)?),
            "branch" => Action::Branch(branch::Branch::parse(f, cx)?),
            "hours" => Action::Hours(hours::Hours::parse(f, cx)?),
            "listen" => Action::Listen(listen::Listen::parse(f, cx)?),
            "ask" => Action::Ask(ask::Ask::parse(f, cx)?),
            "transfer" => Action::Transfer(transfer::Transfer::parse(f, cx)?),
            "record" => Action::Record(record::Record::parse(f, cx)?),
            "note" => Action::Note(note::Note::parse(f, cx)?),
            "callback" => Action::Callback(callback::Callback::parse(f, cx)?),
            "rate" => Action::Rate(rate::Rate::parse(f, cx)?),
            "hangup" => Action::Hangup(hangup::Hangup::parse(f, cx)?),
            _ => return None,
        })
    }

    /// The fields each node type reads (for "unknown field" messages).
    pub fn fields(kind: &str) -> &'static [&'static str] {
        match kind {
            "play" => play::FIELDS,
            "menu" => menu::FIELDS,
            "collect" => collect::FIELDS,
            "goto" => goto::FIELDS,
            "set" => set::FIELDS,
            "branch" => branch::FIELDS,
            "hours" => hours::FIELDS,
            "listen" => listen::FIELDS,
            "ask" => ask::FIELDS,
            "transfer" => transfer::FIELDS,
            "record" => record::FIELDS,
            "note" => note::FIELDS,
            "callback" => callback::FIELDS,
            "rate" => rate::FIELDS,
            "hangup" => hangup::FIELDS,
            _ => &[],
        }
    }

    /// Nodes this one can lead to, for the reachability check.
    pub fn targets(&self) -> Vec<NodeId> {
        match self {
            Action::Play(a) => vec![a.next],
            Action::Menu(a) => a
                .options
                .iter()
                .map(|(_, t)| *t)
                .chain(a.on_failure)
                .collect(),
            Action::Collect(a) => std::iter::once(a.next).chain(a.on_failure).collect(),
            Action::Goto(a) => vec![a.target],
            Action::Set(a) => vec![a.next],
            Action::Branch(a) => a
                .rules
                .iter()
                .map(|r| r.target)
                .chain([a.otherwise])
                .collect(),
            Action::Hours(a) => vec![a.when_open, a.when_closed],
            Action::Listen(a) => a
                .keywords
                .iter()
                .map(|(_, t)| *t)
                .chain(a.options.iter().map(|(_, t)| *t))
                .chain(a.on_failure)
                .collect(),
            Action::Ask(a) => a
                .options
                .iter()
                .map(|(_, t)| *t)
                .chain(a.on_failure)
                .chain([a.on_handover])
                .chain(a.on_goodbye)
                .collect(),
            Action::Transfer(a) => a.next.into_iter().chain(a.after).collect(),
            Action::Record(a) => vec![a.next],
            Action::Note(a) => vec![a.next],
            Action::Callback(a) => vec![a.next],
            Action::Rate(a) => [a.next].into_iter().chain(a.invalid).collect(),
            Action::Hangup(_) => Vec::new(),
        }
    }

    /// Whether the node consumes keys pressed ahead of its prompt.
    pub fn takes_digits(&self) -> bool {
        matches!(
            self,
            Action::Menu(_) | Action::Collect(_) | Action::Listen(_) | Action::Ask(_)
        )
    }

    pub fn enter(&self, run: &mut Run) -> Flow {
        match self {
            Action::Play(a) => a.enter(run),
            Action::Menu(a) => a.enter(run),
            Action::Collect(a) => a.enter(run),
            Action::Goto(a) => Flow::Next(a.target),
            Action::Set(a) => a.enter(run),
            Action::Branch(a) => a.enter(run),
            Action::Hours(a) => a.enter(run),
            Action::Listen(a) => a.enter(run),
            Action::Ask(a) => a.enter(run),
            Action::Transfer(a) => a.enter(run),
            Action::Record(a) => a.enter(run),
            Action::Note(a) => a.enter(run),
            Action::Callback(a) => a.enter(run),
            Action::Rate(a) => a.enter(run),
            Action::Hangup(a) => a.enter(run),
        }
    }

    pub fn digit(&self, run: &mut Run, digit: char) -> Flow {
        match self {
            Action::Play(a) => a.digit(run, digit),
            Action::Menu(a) => a.digit(run, digit),
            Action::Collect(a) => a.digit(run, digit),
            Action::Listen(a) => a.digit(run, digit),
            Action::Ask(a) => a.digit(run, digit),
            Action::Record(a) => a.digit(run, digit),
            _ => Flow::Stay,
        }
    }

    /// The caller started talking (only `listen` and `ask` nodes listen).
    pub fn speech_started(&self, run: &mut Run) -> Flow {
        match self {
            Action::Listen(a) => a.speech_started(run),
            Action::Ask(a) => a.speech_started(run),
            _ => Flow::Stay,
        }
    }

    pub fn heard(&self, run: &mut Run, text: &str, confidence: f32) -> Flow {
        match self {
            Action::Listen(a) => a.heard(run, text, confidence),
            Action::Ask(a) => a.heard(run, text, confidence),
            _ => Flow::Stay,
        }
    }

    /// Whether `text` is a whole request for this node, so the caller's turn may be
    /// taken without waiting out the usual silence. Changes nothing.
    pub fn complete(&self, run: &Run, text: &str) -> bool {
        match self {
            Action::Listen(a) => a.route(text).is_some(),
            Action::Ask(_) => run.would_answer(text),
            _ => false,
        }
    }

    pub fn asr_unavailable(&self, run: &mut Run) -> Flow {
        match self {
            Action::Listen(a) => a.asr_unavailable(run),
            Action::Ask(a) => a.asr_unavailable(run),
            _ => Flow::Stay,
        }
    }

    pub fn recognition_delayed(&self, run: &mut Run) -> Flow {
        match self {
            Action::Listen(a) => tell_hold_on(run, &a.language),
            Action::Ask(a) => tell_hold_on(run, &a.language),
            _ => {}
        }
        Flow::Stay
    }

    pub fn playback_done(&self, run: &mut Run) -> Flow {
        match self {
            Action::Play(a) => Flow::Next(a.next),
            Action::Menu(a) => a.playback_done(run),
            Action::Collect(a) => a.playback_done(run),
            Action::Listen(a) => a.playback_done(run),
            Action::Ask(a) => a.playback_done(run),
            Action::Record(a) => a.playback_done(run),
            Action::Hangup(_) => Flow::Hangup(hangup::REASON.into()),
            _ => Flow::Stay,
        }
    }

    /// The agent a `transfer` node bridged hung up; the caller is still there.
    pub fn agent_left(&self) -> Flow {
        match self {
            Action::Transfer(a) => a.agent_left(),
            _ => Flow::Stay,
        }
    }

    /// Whether the caller goes on in the plan when the agent hangs up first.
    pub fn goes_on_after_agent(&self) -> bool {
        matches!(self, Action::Transfer(a) if a.after.is_some())
    }

    /// Nobody took the call a `transfer` node queued.
    pub fn no_agent(&self, _run: &mut Run) -> Flow {
        match self {
            Action::Transfer(a) => a.no_agent(),
            _ => Flow::Stay,
        }
    }

    pub fn timer(&self, run: &mut Run) -> Flow {
        match self {
            Action::Menu(a) => a.timer(run),
            Action::Collect(a) => a.timer(run),
            Action::Listen(a) => a.timer(run),
            Action::Ask(a) => a.timer(run),
            Action::Record(a) => a.timer(run),
            _ => Flow::Stay,
        }
    }
}

/// What [`tell_busy`] says: in Mandarin or English, at an `ask` node or a
/// `listen` node.
pub fn busy_notice(zh: bool, ask: bool) -> &'static str {
    match (zh, ask) {
        (true, false) => "抱歉，现在无法识别语音，请使用电话按键。",
        (true, true) => "抱歉，刚才没听清，请再说一遍，或者使用电话按键。",
        (false, false) => "Sorry, I can't take spoken answers right now. Please use your keypad.",
        (false, true) => "Sorry, I missed that. Please say it again, or use your keypad.",
    }
}

/// What [`tell_hold_on`] says, in Mandarin or English.
pub fn hold_on_notice(zh: bool) -> &'static str {
    if zh {
        "请稍等。"
    } else {
        "One moment, please."
    }
}

/// The caller's words are queued behind other callers' and will be answered
/// late: they hear that they were heard, so they wait for the answer instead
/// of saying it again (which would cost a second recognition and lengthen the
/// queue for everyone). Never over something playing; the node's phase and
/// timers are left as they are (the answer clears them).
pub fn tell_hold_on(run: &mut Run, language: &str) {
    if run.is_playing() {
        return;
    }
    let zh = language.starts_with("zh");
    run.say(hold_on_notice(zh), if zh { "zh" } else { "en" });
}

/// Speech recognition refused the caller's utterance (saturated): the caller is
/// told at once, in the node's language, instead of waiting out the node's
/// timeout in silence: at a `listen` node to use the keypad, at an `ask` node to
/// say it again or use the keypad. At a `listen` node once per visit (the keys
/// are the answer); at an `ask` node, where a caller asks question after
/// question, each time (else a second refusal would leave them in silence).
/// Never over something playing; true if said.
pub fn tell_busy(run: &mut Run, language: &str, ask: bool) -> bool {
    if (run.local.busy_told && !ask) || run.is_playing() {
        return false;
    }
    run.local.busy_told = true;
    let zh = language.starts_with("zh");
    if !run.say(busy_notice(zh, ask), if zh { "zh" } else { "en" }) {
        return false;
    }
    // The wait for an answer starts over when the notice has been played.
    run.clear_timer();
    run.local.phase = super::interpreter::Phase::Prompt;
    true
}
