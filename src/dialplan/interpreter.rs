//! Runs one call through a dialplan.
//!
//! A plain state machine in the style of a sans-I/O protocol core: the call feeds it
//! [`Input`]s with the current [`Moment`], drains [`Output`]s, and wakes it at
//! [`Interpreter::poll_timeout`]. It owns no clock, socket or task, so tests drive
//! whole dialogues in virtual time.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::actions::PromptItem;
use super::{Dialplan, NodeId};
use crate::dialogue::{Conversation, Lang, Matcher, Medium, Reply, ReplyKind};
use crate::media::prompt::Prompt;

/// A point in time on both clocks: monotonic for timers, wall for business hours.
#[derive(Clone, Copy, Debug)]
pub struct Moment {
    pub mono: Instant,
    pub wall: DateTime<Utc>,
}

impl Moment {
    pub fn now() -> Self {
        Self {
            mono: Instant::now(),
            wall: Utc::now(),
        }
    }

    pub fn after(&self, d: Duration) -> Self {
        Self {
            mono: self.mono + d,
            wall: self.wall + d,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    /// The caller pressed a key.
    Digit(char),
    /// While listening: the caller has been talking for the minimum time (barge-in).
    SpeechStarted,
    /// While listening: what the caller said (empty when nothing intelligible).
    Heard { text: String, confidence: f32 },
    /// While listening: speech recognition is saturated or unavailable; keys still work.
    AsrUnavailable,
    /// While listening: the caller's words will be recognised, but late.
    RecognitionDelayed,
    /// Everything asked for with [`Output::Play`] has been played.
    PlaybackDone,
    /// The deadline from [`Interpreter::poll_timeout`] has passed.
    Timer,
    /// The bridged agent (or blind transfer's target) hung up first and the
    /// caller is still on the line.
    AgentLeft,
    /// After [`Output::Transfer`]: no agent took the call within the queue's
    /// maximum wait (or the queues are full).
    NoAgent,
}

#[derive(Clone, Debug)]
pub enum Output {
    /// Play these prompts in order, replacing anything playing.
    Play(Vec<Arc<Prompt>>),
    /// Speak this text with the plan's voice (rendered by the call), replacing
    /// anything playing; [`Input::PlaybackDone`] follows as for `Play`.
    Say { text: String, language: String },
    /// Stop playing at once (the caller pressed a key).
    StopPlayback,
    /// Hand the caller to an agent queue: hold music until an agent takes the
    /// call (the call is bridged and the plan is done) or [`Input::NoAgent`].
    Transfer { queue: String },
    /// Hand the caller to a number or SIP URI (REFER, else a bridged dial-out);
    /// [`Input::NoAgent`] when that fails.
    BlindTransfer { to: String },
    /// Start recording the caller (a voicemail message).
    Record,
    /// Stop recording and keep the message.
    StopRecording,
    /// Add this line to the call's ticket (opening one in `queue` if there is none).
    Note { text: String, queue: String },
    /// The caller asks to be called back on `to` (as interpolated; the call
    /// checks it is a number): the call's ticket (opened in `queue` if there is
    /// none) goes on the desk's callback list.
    Callback { to: String, queue: String },
    /// The caller rated the call (1 to 5).
    Rate { score: u8 },
    /// Start detecting and recognising the caller's speech in this language.
    Listen { language: String },
    /// Stop listening; drop any utterance in progress.
    StopListening,
    /// End the call.
    Hangup { reason: String },
}

/// What a node asks the interpreter to do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Flow {
    Stay,
    Next(NodeId),
    Hangup(String),
}

/// Where a prompting node is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Phase {
    /// Playing the node's own prompt.
    #[default]
    Prompt,
    /// Waiting for keys.
    Wait,
    /// Playing an invalid/timeout prompt before asking again.
    Reprompt,
}

/// State of the current node; reset on entering each node.
#[derive(Clone, Debug, Default)]
pub struct Local {
    pub phase: Phase,
    pub failures: u32,
    pub buffer: String,
    /// Where to go once the words being spoken have been heard out.
    pub after_speech: Option<Flow>,
    /// The caller was told speech cannot be taken right now (a `listen` node
    /// tells it once per visit).
    pub busy_told: bool,
}

/// The call state nodes read and change.
#[derive(Debug)]
pub struct Run {
    pub vars: BTreeMap<String, String>,
    pub local: Local,
    pub typeahead: VecDeque<char>,
    pub now: Moment,
    deadline: Option<Instant>,
    playing: bool,
    listening: bool,
    outputs: VecDeque<Output>,
    digit_prompts: Option<Vec<Arc<Prompt>>>,
    /// The call's conversation with the dialogue core (`ask` nodes), with the
    /// knowledge base as it was when the call started.
    dialogue: Option<(Arc<Matcher>, Conversation)>,
    /// A topic from another channel, asked about once by the first `ask` node.
    open_topic: Option<String>,
}

impl Run {
    /// The question about the caller's open topic, once per call ("Are you calling
    /// about your refund?"); `None` when there is no topic or it was asked already.
    pub fn resume_question(&mut self) -> Option<String> {
        let topic = self.open_topic.take()?;
        let now = self.now.wall;
        let (matcher, conversation) = self.dialogue.as_mut()?;
        let reply = conversation.open(matcher, Some(&topic), now);
        (reply.kind == ReplyKind::Resume).then_some(reply.text)
    }

    /// The caller said `text`: the dialogue core's reply, if this call has one.
    pub fn converse(&mut self, text: &str) -> Option<Reply> {
        let now = self.now.wall;
        let (matcher, conversation) = self.dialogue.as_mut()?;
        Some(conversation.respond(matcher, text, now))
    }

    /// Whether the dialogue would answer `text` outright (an answer, a hand-over, a
    /// new question's first slot), not "do you mean…" or "sorry?", which a caller
    /// still talking would rather finish first. Tried on a copy of the
    /// conversation: nothing changes.
    pub fn would_answer(&self, text: &str) -> bool {
        let Some((matcher, conversation)) = self.dialogue.as_ref() else {
            return false;
        };
        let filling = conversation.is_filling();
        let reply = conversation.clone().respond(matcher, text, self.now.wall);
        match reply.kind {
            ReplyKind::Answer | ReplyKind::Handover | ReplyKind::Resume => true,
            // A fresh question that needs a value; a value still being given may
            // go on ("four, five… six").
            ReplyKind::AskSlot => !filling,
            ReplyKind::Greeting
            | ReplyKind::Clarify
            | ReplyKind::Fallback
            | ReplyKind::Queued
            | ReplyKind::Rated => false,
        }
    }

    /// Starts speaking `text`; returns false when there is nothing to say.
    pub fn say(&mut self, text: &str, language: &str) -> bool {
        if text.trim().is_empty() {
            return false;
        }
        self.outputs.push_back(Output::Say {
            text: text.to_string(),
            language: language.to_string(),
        });
        self.playing = true;
        true
    }

    /// Starts playing `items`; returns false when there is nothing to play.
    pub fn play(&mut self, items: &[PromptItem]) -> bool {
        let mut prompts = Vec::new();
        for item in items {
            match item {
                PromptItem::File(p) => prompts.push(p.clone()),
                PromptItem::Digits(var) => {
                    let value = self.vars.get(var).cloned().unwrap_or_default();
                    if let Some(digits) = &self.digit_prompts {
                        prompts.extend(
                            value
                                .chars()
                                .filter_map(|c| c.to_digit(10))
                                .map(|d| digits[d as usize].clone()),
                        );
                    }
                }
            }
        }
        if prompts.is_empty() {
            return false;
        }
        self.outputs.push_back(Output::Play(prompts));
        self.playing = true;
        true
    }

    pub fn stop_playback(&mut self) {
        if !self.playing {
            return;
        }
        self.playing = false;
        // A prompt asked for within this same step has not started yet: drop it
        // rather than start and stop it (a key typed ahead skips the next prompt).
        if matches!(
            self.outputs.back(),
            Some(Output::Play(_) | Output::Say { .. })
        ) {
            self.outputs.pop_back();
            // What played before that prompt was already stopped in this step, or
            // the dropped prompt was about to replace it: stop it now.
            if self
                .outputs
                .iter()
                .any(|o| matches!(o, Output::StopPlayback))
            {
                return;
            }
        }
        if !matches!(self.outputs.back(), Some(Output::StopPlayback)) {
            self.outputs.push_back(Output::StopPlayback);
        }
    }

    /// Whether a prompt asked for is still playing.
    pub fn is_playing(&self) -> bool {
        self.playing
    }

    pub fn listen(&mut self, language: &str) {
        if !self.listening {
            self.listening = true;
            self.outputs.push_back(Output::Listen {
                language: language.to_string(),
            });
        }
    }

    pub fn stop_listening(&mut self) {
        if self.listening {
            self.listening = false;
            // Started and stopped within one step: neither needs to happen.
            if let Some(i) = self
                .outputs
                .iter()
                .rposition(|o| matches!(o, Output::Listen { .. }))
            {
                self.outputs.remove(i);
            } else {
                self.outputs.push_back(Output::StopListening);
            }
        }
    }

    pub fn emit(&mut self, output: Output) {
        self.outputs.push_back(output);
    }

    pub fn set_timer(&mut self, after: Duration) {
        self.deadline = Some(self.now.mono + after);
    }

    pub fn clear_timer(&mut self) {
        self.deadline = None;
    }

    /// Replaces `${name}` with the variable's value (empty when unset).
    pub fn interpolate(&self, template: &str) -> String {
        let mut out = String::with_capacity(template.len());
        let mut rest = template;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            match rest[start + 2..].find('}') {
                Some(end) => {
                    let name = &rest[start + 2..start + 2 + end];
                    out.push_str(self.vars.get(name).map(String::as_str).unwrap_or(""));
                    rest = &rest[start + 3 + end..];
                }
                None => {
                    out.push_str(&rest[start..]);
                    rest = "";
                }
            }
        }
        out.push_str(rest);
        out
    }
}

/// Instant nodes (goto, set, branch, hours) allowed in a row before the call is
/// considered stuck in a loop.
const MAX_HOPS: u32 = 64;

#[derive(Debug)]
pub struct Interpreter {
    plan: Arc<Dialplan>,
    run: Run,
    current: NodeId,
    finished: bool,
    /// Names of the nodes visited, in order.
    path: Vec<String>,
}

impl Interpreter {
    /// Prepares a run; `vars` holds what the call knows (caller, called, …).
    pub fn new(plan: Arc<Dialplan>, vars: BTreeMap<String, String>, now: Moment) -> Self {
        let run = Run {
            vars,
            local: Local::default(),
            typeahead: VecDeque::new(),
            now,
            deadline: None,
            playing: false,
            listening: false,
            outputs: VecDeque::new(),
            digit_prompts: plan.digit_prompts.clone(),
            dialogue: None,
            open_topic: None,
        };
        let current = plan.start;
        Self {
            plan,
            run,
            current,
            finished: false,
            path: Vec::new(),
        }
    }

    /// Gives the call a conversation with the dialogue core, for `ask` nodes.
    /// `open_topic` is what the caller last contacted us about on any channel: the
    /// first `ask` node asks about it ("Are you calling about your refund?") instead
    /// of playing its prompt.
    pub fn with_dialogue(mut self, matcher: Arc<Matcher>, open_topic: Option<String>) -> Self {
        let lang = Lang::from_code(&self.plan.language).unwrap_or(Lang::Zh);
        self.run.dialogue = Some((matcher, Conversation::new(Medium::Voice, lang)));
        self.run.open_topic = open_topic;
        self
    }

    /// The knowledge base the call's conversation matches against, if it has one.
    pub fn matcher(&self) -> Option<&Arc<Matcher>> {
        self.run.dialogue.as_ref().map(|(m, _)| m)
    }

    /// Whether `text` is a whole request for the node the call is at (see
    /// [`crate::dialplan::actions::Action::complete`]).
    pub fn complete(&self, text: &str) -> bool {
        !self.finished
            && self.plan.nodes[self.current]
                .action
                .complete(&self.run, text)
    }

    /// The call's conversation with the dialogue core, if it has one.
    /// Whether the caller goes on in the plan when a bridged agent hangs up
    /// first (the transfer node has `after`).
    pub fn goes_on_after_agent(&self) -> bool {
        !self.finished && self.plan.nodes[self.current].action.goes_on_after_agent()
    }

    pub fn conversation(&self) -> Option<&Conversation> {
        self.run.dialogue.as_ref().map(|(_, c)| c)
    }

    pub fn start(&mut self, now: Moment) {
        self.run.now = now;
        self.follow(Flow::Next(self.plan.start));
    }

    pub fn handle(&mut self, input: Input, now: Moment) {
        if self.finished {
            return;
        }
        self.run.now = now;
        let plan = self.plan.clone();
        let action = &plan.nodes[self.current].action;
        let flow = match input {
            Input::Digit(d) => action.digit(&mut self.run, d),
            Input::SpeechStarted => action.speech_started(&mut self.run),
            Input::Heard { text, confidence } => action.heard(&mut self.run, &text, confidence),
            Input::AsrUnavailable => action.asr_unavailable(&mut self.run),
            Input::RecognitionDelayed => action.recognition_delayed(&mut self.run),
            Input::PlaybackDone => {
                if !self.run.playing {
                    return;
                }
                self.run.playing = false;
                action.playback_done(&mut self.run)
            }
            Input::NoAgent => action.no_agent(&mut self.run),
            Input::AgentLeft => action.agent_left(),
            Input::Timer => match self.run.deadline {
                Some(d) if d <= now.mono => {
                    self.run.deadline = None;
                    action.timer(&mut self.run)
                }
                _ => Flow::Stay,
            },
        };
        self.follow(flow);
    }

    fn follow(&mut self, mut flow: Flow) {
        let plan = self.plan.clone();
        let mut hops = 0;
        loop {
            flow = match flow {
                Flow::Stay => {
                    let action = &plan.nodes[self.current].action;
                    match self.run.typeahead.pop_front() {
                        Some(d) if action.takes_digits() => action.digit(&mut self.run, d),
                        Some(d) => {
                            self.run.typeahead.push_front(d);
                            return;
                        }
                        None => return,
                    }
                }
                Flow::Next(id) => {
                    hops += 1;
                    if hops > MAX_HOPS {
                        Flow::Hangup("dialplan-loop".into())
                    } else {
                        self.run.stop_playback();
                        self.run.stop_listening();
                        self.run.clear_timer();
                        self.run.local = Local::default();
                        self.current = id;
                        self.path.push(plan.nodes[id].name.clone());
                        plan.nodes[id].action.enter(&mut self.run)
                    }
                }
                Flow::Hangup(reason) => {
                    self.run.stop_playback();
                    self.run.stop_listening();
                    self.run.clear_timer();
                    self.run.outputs.push_back(Output::Hangup { reason });
                    self.finished = true;
                    return;
                }
            };
            // Every step that waits resets the loop guard.
            if matches!(flow, Flow::Stay) {
                hops = 0;
            }
        }
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.run.outputs.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.run.deadline
    }

    pub fn is_finished(&self) -> bool {
        self.finished
    }

    pub fn path(&self) -> &[String] {
        &self.path
    }

    pub fn vars(&self) -> &BTreeMap<String, String> {
        &self.run.vars
    }

    pub fn plan(&self) -> &Arc<Dialplan> {
        &self.plan
    }
}
