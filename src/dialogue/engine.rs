//! One conversation with one customer: a sans-I/O state machine. Every channel (a call's
//! `listen` node, web chat, WeChat, SMS, the app API, `kefu chat`) feeds it the
//! customer's words with the time and gets the reply to show or speak.
//!
//! It remembers what it needs across turns: the intent answered last (follow-ups such
//! as "and at weekends?"), the slot being collected, the two options it asked the
//! customer to choose between, misses in a row (to offer a person), and the history.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::kb::{Intent, KnowledgeBase, Medium};
use super::matcher::{Matcher, Outcome, Scored};
use super::replies::{join_sentences, pick_option, yes_or_no};
use super::text::Lang;

/// Unusable answers to a slot prompt before handing over to a person.
const SLOT_TRIES: u32 = 3;
/// Turns kept in a conversation's history (older ones are dropped).
pub const HISTORY_LIMIT: usize = 200;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Speaker {
    Customer,
    Bot,
    Agent,
}

#[derive(Clone, Debug, Serialize)]
pub struct Turn {
    pub at: DateTime<Utc>,
    pub speaker: Speaker,
    pub text: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub intent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplyKind {
    Greeting,
    Answer,
    /// Asks for a slot value.
    AskSlot,
    /// "Do you mean A or B?"
    Clarify,
    /// Out of scope.
    Fallback,
    /// Passing the customer to a person.
    Handover,
    /// "Are you contacting us about your refund request?"
    Resume,
    /// Already with a person: the message waits for them.
    Queued,
    /// The customer's reply was their rating of the conversation (thanked).
    Rated,
}

/// What the engine says back, and why.
#[derive(Clone, Debug, Serialize)]
pub struct Reply {
    pub text: String,
    pub kind: ReplyKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub intent: Option<String>,
    pub confidence: f32,
    /// The agent queue to hand over to, when this reply hands over.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handover: Option<String>,
    /// Why, when this reply hands over: "not_understood" (repeated misses),
    /// "slot_failed" (a value the customer could not give), or "intent:ID" (an
    /// intent that hands over, such as asking for a person).
    #[serde(skip_serializing_if = "Option::is_none", rename = "handover_reason")]
    pub reason: Option<String>,
    /// Other intents that scored, best first (for `kefu chat` and the API).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub candidates: Vec<(String, f32)>,
}

/// What a message did to a slot being collected.
enum Filled<'k> {
    Reply(Reply),
    /// The slot was left (for this intent, when a new question left it), and
    /// the ranking goes on to the new question.
    Left(Option<&'k Intent>, Vec<(String, f32)>),
}

#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
#[serde(tag = "is", rename_all = "snake_case")]
pub(super) enum State {
    Idle,
    Filling {
        intent: String,
        slot: usize,
        tries: u32,
    },
    Clarifying {
        options: [String; 2],
    },
    Resuming {
        topic: String,
    },
    /// A question was answered in the middle of collecting a slot: offered to go back
    /// to that intent, whose values so far are kept.
    Returning {
        intent: String,
    },
    HandedOver {
        queue: String,
    },
}

#[derive(Clone, Debug)]
pub struct Conversation {
    pub medium: Medium,
    pub lang: Lang,
    pub(super) state: State,
    /// The intent answered last, by id (ids survive a knowledge-base reload).
    pub(super) last_intent: Option<String>,
    /// The last intent marked `topic`: what a customer may come back about.
    pub open_topic: Option<String>,
    pub(super) misses: u32,
    pub values: BTreeMap<String, String>,
    pub history: Vec<Turn>,
    /// Turns said so far, including those dropped from `history`: the next turn's
    /// sequence number.
    pub said: u64,
}

impl Conversation {
    pub fn new(medium: Medium, lang: Lang) -> Self {
        Self {
            medium,
            lang,
            state: State::Idle,
            last_intent: None,
            open_topic: None,
            misses: 0,
            values: BTreeMap::new(),
            history: Vec::new(),
            said: 0,
        }
    }

    /// The first thing said: asks about an open topic from another channel if there is
    /// one, else the greeting.
    pub fn open(&mut self, m: &Matcher, open_topic: Option<&str>, now: DateTime<Utc>) -> Reply {
        let kb = &m.kb;
        let reply = match open_topic.and_then(|t| kb.intent(t)) {
            Some(topic) => {
                self.state = State::Resuming {
                    topic: topic.id.clone(),
                };
                self.open_topic = Some(topic.id.clone());
                let title = topic.title.best(self.lang);
                Reply {
                    text: kb.replies.resume.best(self.lang).replace("${topic}", title),
                    kind: ReplyKind::Resume,
                    intent: Some(topic.id.clone()),
                    confidence: 1.0,
                    handover: None,
                    reason: None,
                    candidates: Vec::new(),
                }
            }
            None => self.greeting(kb, Vec::new()),
        };
        self.push(now, Speaker::Bot, &reply.text, reply.intent.clone(), None);
        reply
    }

    pub fn handed_over(&self) -> Option<&str> {
        match &self.state {
            State::HandedOver { queue } => Some(queue),
            _ => None,
        }
    }

    /// Records what a person (an agent) said.
    pub fn agent_said(&mut self, text: &str, now: DateTime<Utc>) {
        self.push(now, Speaker::Agent, text, None, None);
    }

    /// Records what the customer said to a person (a bridged call's transcript):
    /// no reply is made.
    pub fn customer_said(&mut self, text: &str, now: DateTime<Utc>) {
        self.push(now, Speaker::Customer, text, None, None);
    }

    /// Records a notice from kefu itself (a queue gave up waiting, say).
    pub fn bot_said(&mut self, text: &str, now: DateTime<Utc>) {
        self.push(now, Speaker::Bot, text, None, None);
    }

    /// Whether the conversation waits for a slot's value (an order number…).
    pub fn is_filling(&self) -> bool {
        matches!(self.state, State::Filling { .. })
    }

    /// The customer said `text`; returns the reply.
    pub fn respond(&mut self, m: &Matcher, text: &str, now: DateTime<Utc>) -> Reply {
        if text.chars().any(char::is_alphabetic) {
            self.lang = Lang::detect(text);
        }
        self.push(now, Speaker::Customer, text, None, None);
        let reply = self.decide(m, text, now);
        if let Some(last) = self
            .history
            .iter_mut()
            .rev()
            .find(|t| t.speaker == Speaker::Customer)
        {
            last.intent = reply.intent.clone();
            last.confidence = Some(reply.confidence);
        }
        if reply.kind != ReplyKind::Queued {
            self.push(
                now,
                Speaker::Bot,
                &reply.text,
                reply.intent.clone(),
                Some(reply.confidence),
            );
        }
        reply
    }

    fn push(
        &mut self,
        at: DateTime<Utc>,
        speaker: Speaker,
        text: &str,
        intent: Option<String>,
        confidence: Option<f32>,
    ) {
        if self.history.len() >= HISTORY_LIMIT {
            self.history.remove(0);
        }
        self.said += 1;
        self.history.push(Turn {
            at,
            speaker,
            text: text.to_string(),
            intent,
            confidence,
        });
    }

    fn decide(&mut self, m: &Matcher, text: &str, now: DateTime<Utc>) -> Reply {
        let kb = &m.kb;
        let previous = self
            .last_intent
            .as_deref()
            .and_then(|id| kb.intent_index(id));
        let (outcome, ranked) = m.classify(text, self.lang, previous);
        let mut candidates: Vec<(String, f32)> = ranked
            .iter()
            .map(|s| (kb.intents[s.intent].id.clone(), s.score))
            .collect();
        let wants_person =
            matches!(outcome, Outcome::Answer(s) if kb.intents[s.intent].handover.is_some());

        // The intent whose slot a clear new question leaves, to offer going back to.
        let mut left = None;
        match std::mem::replace(&mut self.state, State::Idle) {
            State::HandedOver { queue } => {
                self.state = State::HandedOver {
                    queue: queue.clone(),
                };
                return Reply {
                    text: String::new(),
                    kind: ReplyKind::Queued,
                    intent: None,
                    confidence: 0.0,
                    handover: None,
                    reason: None,
                    candidates,
                };
            }
            State::Filling {
                intent,
                slot,
                tries,
            } => {
                let filling = (intent, slot, tries);
                match self.fill_slot(kb, filling, text, now, &outcome, wants_person, candidates) {
                    Filled::Reply(reply) => return reply,
                    Filled::Left(i, c) => {
                        left = i;
                        candidates = c;
                    }
                }
            }
            State::Returning { intent } => match yes_or_no(text) {
                Some(true) => {
                    if let Some(i) = kb.intent(&intent) {
                        return self.continue_intent(i, 1.0, candidates);
                    }
                }
                Some(false) => return self.greeting(kb, candidates),
                // Anything else is a new message: the offer lapses.
                None => {}
            },
            State::Clarifying { options } => {
                if let Some(choice) = pick_option(text, &options, &ranked, kb)
                    && let Some(i) = kb.intent(&choice)
                {
                    return self.answer_intent(m, i, text, 1.0, now, candidates);
                }
            }
            State::Resuming { topic } => match yes_or_no(text) {
                Some(true) => {
                    if let Some(i) = kb.intent(&topic) {
                        return self.answer_intent(m, i, text, 1.0, now, candidates);
                    }
                }
                Some(false) => return self.greeting(kb, candidates),
                None => {}
            },
            State::Idle => {}
        }

        let mut reply = match outcome {
            Outcome::Answer(s) => {
                let i = &kb.intents[s.intent];
                self.answer_intent(m, i, text, s.score, now, candidates)
            }
            Outcome::Clarify(a, b) => self.clarify(kb, a, b, candidates),
            Outcome::OutOfScope(best) => return self.not_understood(kb, best, candidates),
        };
        // The new question answered outright: offer to go back to the one it
        // interrupted.
        if let Some(i) = left
            && reply.kind == ReplyKind::Answer
            && self.state == State::Idle
        {
            let offer = kb
                .replies
                .back_to
                .best(self.lang)
                .replace("${topic}", i.title.best(self.lang));
            reply.text = join_sentences(&reply.text, &offer);
            self.state = State::Returning {
                intent: i.id.clone(),
            };
        }
        reply
    }

    /// A message while a slot is being collected: the value (and the intent goes
    /// on), the slot asked again (or a person, after too many tries), or the slot
    /// left for a clear new question (the intent left, to offer going back to).
    #[allow(clippy::too_many_arguments)]
    fn fill_slot<'k>(
        &mut self,
        kb: &'k KnowledgeBase,
        (intent, slot, tries): (String, usize, u32),
        text: &str,
        now: DateTime<Utc>,
        outcome: &Outcome,
        wants_person: bool,
        candidates: Vec<(String, f32)>,
    ) -> Filled<'k> {
        if let Some(i) = kb.intent(&intent) {
            let today = now.with_timezone(&kb.timezone).date_naive();
            if let Some(value) = i.slots.get(slot).and_then(|s| s.kind.extract(text, today)) {
                let name = i.slots[slot].name.clone();
                self.values.insert(name, value);
                return Filled::Reply(self.continue_intent(i, 1.0, candidates));
            }
            // A clear new question (or asking for a person) leaves the slot (the
            // customer can ask again; its values so far are kept), and so does
            // a question between two other intents, which is asked back.
            let other = |s: &Scored| kb.intents[s.intent].id != intent;
            let switches = match outcome {
                Outcome::Answer(s) => other(s),
                Outcome::Clarify(a, b) => other(a) && other(b),
                Outcome::OutOfScope(_) => false,
            };
            if !switches && !wants_person {
                if tries + 1 >= SLOT_TRIES {
                    return Filled::Reply(self.hand_over(
                        kb.replies.give_up.best(self.lang).to_string(),
                        &kb.default_queue,
                        "slot_failed".into(),
                        candidates,
                    ));
                }
                let s = &i.slots[slot];
                let ask = s
                    .retry
                    .get(self.lang)
                    .unwrap_or(s.prompt.best(self.lang))
                    .to_string();
                self.state = State::Filling {
                    intent,
                    slot,
                    tries: tries + 1,
                };
                return Filled::Reply(Reply {
                    text: ask,
                    kind: ReplyKind::AskSlot,
                    intent: Some(i.id.clone()),
                    confidence: 1.0,
                    handover: None,
                    reason: None,
                    candidates,
                });
            }
            if !wants_person {
                return Filled::Left(Some(i), candidates);
            }
        }
        Filled::Left(None, candidates)
    }

    /// A message the knowledge base does not cover: the fallback, or a person
    /// after too many misses in a row.
    fn not_understood(
        &mut self,
        kb: &KnowledgeBase,
        best: Option<Scored>,
        candidates: Vec<(String, f32)>,
    ) -> Reply {
        self.misses += 1;
        let confidence = best.map_or(0.0, |b| b.score);
        if self.misses >= kb.thresholds.misses_before_handover {
            let mut r = self.hand_over(
                kb.replies.handover.best(self.lang).to_string(),
                &kb.default_queue,
                "not_understood".into(),
                candidates,
            );
            r.confidence = confidence;
            return r;
        }
        Reply {
            text: kb.replies.fallback.best(self.lang).to_string(),
            kind: ReplyKind::Fallback,
            intent: None,
            confidence,
            handover: None,
            reason: None,
            candidates,
        }
    }

    /// The greeting intent's text (what "no, something else" gets, too).
    fn greeting(&self, kb: &KnowledgeBase, candidates: Vec<(String, f32)>) -> Reply {
        let text = kb
            .intent("greeting")
            .map(|g| g.text_for(self.medium, self.lang).to_string())
            .unwrap_or_default();
        Reply {
            text,
            kind: ReplyKind::Greeting,
            intent: None,
            confidence: 1.0,
            handover: None,
            reason: None,
            candidates,
        }
    }

    fn clarify(
        &mut self,
        kb: &KnowledgeBase,
        a: Scored,
        b: Scored,
        candidates: Vec<(String, f32)>,
    ) -> Reply {
        let (ia, ib) = (&kb.intents[a.intent], &kb.intents[b.intent]);
        let options = format!(
            "{}{}{}",
            ia.title.best(self.lang),
            kb.replies.or.best(self.lang),
            ib.title.best(self.lang)
        );
        self.state = State::Clarifying {
            options: [ia.id.clone(), ib.id.clone()],
        };
        Reply {
            text: kb
                .replies
                .clarify
                .best(self.lang)
                .replace("${options}", &options),
            kind: ReplyKind::Clarify,
            intent: None,
            confidence: a.score,
            handover: None,
            reason: None,
            candidates,
        }
    }

    /// Starts on a recognised intent: takes any slot values the message already holds.
    fn answer_intent(
        &mut self,
        m: &Matcher,
        i: &Intent,
        text: &str,
        confidence: f32,
        now: DateTime<Utc>,
        candidates: Vec<(String, f32)>,
    ) -> Reply {
        self.misses = 0;
        let today = now.with_timezone(&m.kb.timezone).date_naive();
        for slot in &i.slots {
            if let Some(v) = slot.kind.extract(text, today) {
                self.values.insert(slot.name.clone(), v);
            } else {
                self.values.remove(&slot.name);
            }
        }
        self.continue_intent(i, confidence, candidates)
    }

    /// Asks for the next missing slot, or answers.
    fn continue_intent(
        &mut self,
        i: &Intent,
        confidence: f32,
        candidates: Vec<(String, f32)>,
    ) -> Reply {
        if let Some((n, slot)) = i
            .slots
            .iter()
            .enumerate()
            .find(|(_, s)| !self.values.contains_key(&s.name))
        {
            self.state = State::Filling {
                intent: i.id.clone(),
                slot: n,
                tries: 0,
            };
            return Reply {
                text: slot.prompt.best(self.lang).to_string(),
                kind: ReplyKind::AskSlot,
                intent: Some(i.id.clone()),
                confidence,
                handover: None,
                reason: None,
                candidates,
            };
        }
        self.last_intent = Some(i.id.clone());
        if i.topic {
            self.open_topic = Some(i.id.clone());
        }
        let mut text = i.text_for(self.medium, self.lang).to_string();
        for (name, value) in &self.values {
            text = text.replace(&format!("${{{name}}}"), value);
        }
        if let Some(queue) = &i.handover {
            let mut r = self.hand_over(text, queue, format!("intent:{}", i.id), candidates);
            r.intent = Some(i.id.clone());
            r.confidence = confidence;
            return r;
        }
        Reply {
            text,
            kind: ReplyKind::Answer,
            intent: Some(i.id.clone()),
            confidence,
            handover: None,
            reason: None,
            candidates,
        }
    }

    fn hand_over(
        &mut self,
        text: String,
        queue: &str,
        reason: String,
        candidates: Vec<(String, f32)>,
    ) -> Reply {
        self.misses = 0;
        self.state = State::HandedOver {
            queue: queue.to_string(),
        };
        Reply {
            text,
            kind: ReplyKind::Handover,
            intent: None,
            confidence: 1.0,
            handover: Some(queue.to_string()),
            reason: Some(reason),
            candidates,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialogue::kb::load_files;
    use std::path::PathBuf;
    use std::sync::Arc;

    const KB: &str = r#"
[intents.order]
title = { en = "order status", zh = "订单状态" }
topic = true
examples.en = ["where is my order", "track my order", "order status"]
examples.zh = ["我的订单到哪了", "查订单", "订单状态"]
answer = { en = "Order ${order} ships today.", zh = "订单${order}今天发货。" }
[[intents.order.slots]]
name = "order"
kind = "digits"
length = 6
prompt = { en = "What is your 6-digit order number?", zh = "请说一下六位订单号。" }
retry = { en = "An order number has 6 digits.", zh = "订单号是六位数字。" }

[intents.hours]
title = { en = "opening hours", zh = "营业时间" }
examples.en = ["what are your opening hours", "when do you open"]
examples.zh = ["几点开门", "营业时间"]
answer = { en = "9 to 6.", zh = "九点到六点。" }

[intents.weekend]
title = { en = "weekend hours", zh = "周末营业时间" }
after = ["hours"]
examples.en = ["are you open at weekends", "what about saturday"]
examples.zh = ["周末开门吗", "那周末呢"]
answer = { en = "10 to 4 at weekends.", zh = "周末十点到四点。" }
"#;

    fn setup() -> Matcher {
        Matcher::new(Arc::new(
            load_files(&[(PathBuf::from("t.toml"), KB.into())]).unwrap(),
        ))
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-24T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn slot_filling_with_reprompt() {
        let m = setup();
        let mut c = Conversation::new(Medium::Chat, Lang::En);
        let r = c.respond(&m, "where's my order?", now());
        assert_eq!(
            (r.kind, r.text.as_str()),
            (ReplyKind::AskSlot, "What is your 6-digit order number?")
        );
        let r = c.respond(&m, "it's 12345", now());
        assert_eq!(
            (r.kind, r.text.as_str()),
            (ReplyKind::AskSlot, "An order number has 6 digits.")
        );
        let r = c.respond(&m, "123456", now());
        assert_eq!(
            (r.kind, r.text.as_str()),
            (ReplyKind::Answer, "Order 123456 ships today.")
        );
        assert_eq!(c.open_topic.as_deref(), Some("order"));
        // A number given with the question needs no prompt.
        let r = c.respond(&m, "track my order 654321", now());
        assert_eq!(r.text, "Order 654321 ships today.");
    }

    #[test]
    fn a_new_question_while_filling_a_slot_is_answered() {
        let m = setup();
        let mut c = Conversation::new(Medium::Chat, Lang::En);
        assert_eq!(
            c.respond(&m, "track my order", now()).kind,
            ReplyKind::AskSlot
        );
        // Answered, and the interrupted request is offered again.
        let r = c.respond(&m, "what are your opening hours?", now());
        assert_eq!(
            (r.kind, r.text.as_str()),
            (
                ReplyKind::Answer,
                "9 to 6. Shall we go back to order status?"
            )
        );
        let r = c.respond(&m, "yes please", now());
        assert_eq!(
            (r.kind, r.text.as_str()),
            (ReplyKind::AskSlot, "What is your 6-digit order number?")
        );
        assert_eq!(
            c.respond(&m, "123456", now()).text,
            "Order 123456 ships today."
        );

        // Declined: nothing more about it; asked again later, it starts afresh.
        let mut c = Conversation::new(Medium::Voice, Lang::Zh);
        assert_eq!(c.respond(&m, "查订单", now()).kind, ReplyKind::AskSlot);
        assert_eq!(
            c.respond(&m, "你们几点开门", now()).text,
            "九点到六点。要继续办理订单状态吗？"
        );
        assert_eq!(c.respond(&m, "不用了", now()).kind, ReplyKind::Greeting);
        let r = c.respond(&m, "订单状态 123456", now());
        assert_eq!(r.text, "订单123456今天发货。");

        // Ignored: the next question is simply answered.
        let mut c = Conversation::new(Medium::Chat, Lang::En);
        c.respond(&m, "track my order", now());
        c.respond(&m, "what are your opening hours?", now());
        let r = c.respond(&m, "are you open at weekends", now());
        assert_eq!(
            (r.kind, r.text.as_str()),
            (ReplyKind::Answer, "10 to 4 at weekends.")
        );
    }

    #[test]
    fn slot_gives_up_after_three_unusable_answers() {
        let m = setup();
        let mut c = Conversation::new(Medium::Voice, Lang::Zh);
        c.respond(&m, "查订单", now());
        c.respond(&m, "不知道", now());
        c.respond(&m, "忘了", now());
        let r = c.respond(&m, "嗯……", now());
        assert_eq!(r.kind, ReplyKind::Handover);
        assert_eq!(r.handover.as_deref(), Some("general"));
        assert_eq!(c.respond(&m, "hello?", now()).kind, ReplyKind::Queued);
    }

    #[test]
    fn context_carries_to_follow_ups() {
        let m = setup();
        let mut c = Conversation::new(Medium::Chat, Lang::En);
        assert_eq!(c.respond(&m, "when do you open", now()).text, "9 to 6.");
        let r = c.respond(&m, "and at weekends?", now());
        assert_eq!(r.text, "10 to 4 at weekends.");
    }

    #[test]
    fn repeated_misses_hand_over() {
        let m = setup();
        let mut c = Conversation::new(Medium::Chat, Lang::En);
        assert_eq!(
            c.respond(&m, "do you sell volcano insurance", now()).kind,
            ReplyKind::Fallback
        );
        let r = c.respond(&m, "quantum chromodynamics", now());
        assert_eq!(r.kind, ReplyKind::Handover);
        assert_eq!(c.handed_over(), Some("general"));
    }

    #[test]
    fn asking_for_a_person_hands_over() {
        let m = setup();
        let mut c = Conversation::new(Medium::Chat, Lang::Zh);
        let r = c.respond(&m, "我要转人工", now());
        assert_eq!(
            (r.kind, r.handover.as_deref()),
            (ReplyKind::Handover, Some("general"))
        );
    }

    #[test]
    fn resuming_an_open_topic() {
        let m = setup();
        let mut c = Conversation::new(Medium::Voice, Lang::En);
        let r = c.open(&m, Some("order"), now());
        assert_eq!(
            (r.kind, r.text.as_str()),
            (
                ReplyKind::Resume,
                "Are you contacting us about order status?"
            )
        );
        let r = c.respond(&m, "yes", now());
        assert_eq!(r.kind, ReplyKind::AskSlot);
        let mut c = Conversation::new(Medium::Voice, Lang::En);
        c.open(&m, Some("order"), now());
        assert_eq!(c.respond(&m, "no", now()).kind, ReplyKind::Greeting);
    }
}
