//! Satisfaction by reply, for channels without a widget (WeChat, SMS): when an
//! agent finishes such a conversation, the customer is asked to reply 1 to 5. If
//! their next message within a day is one such digit, it is their rating and is
//! thanked; anything else goes to the dialogue as usual and the question lapses.
//! Pending questions live in memory: a restart forgets them (the customer's next
//! message is then an ordinary one), which costs a rating, never a message.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::dialogue::text::Lang;

/// How long a question waits for its answer.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(24 * 3600);

/// Questions asked and not yet answered, by conversation.
#[derive(Debug, Default)]
pub struct Surveys(Mutex<HashMap<String, Instant>>);

impl Surveys {
    /// The customer of `conversation` was just asked.
    pub fn asked(&self, conversation: &str, now: Instant) {
        let mut pending = crate::lock(&self.0);
        pending.retain(|_, at| now.saturating_duration_since(*at) < ANSWER_WITHIN);
        pending.insert(conversation.to_string(), now);
    }

    /// Whether a question waits for this conversation's next message (it is
    /// taken: asked once, answered at most once).
    pub fn take(&self, conversation: &str, now: Instant) -> bool {
        crate::lock(&self.0)
            .remove(conversation)
            .is_some_and(|at| now.saturating_duration_since(at) < ANSWER_WITHIN)
    }
}

/// The question, in the conversation's language.
pub fn question(lang: Lang) -> String {
    match lang {
        Lang::Zh => "请为本次服务评分：回复 1 到 5（5 为非常满意）。".into(),
        Lang::En => "How did we do? Reply with a number from 1 to 5 (5 is best).".into(),
    }
}

pub fn thanks(lang: Lang, score: u8) -> String {
    match lang {
        Lang::Zh => format!("感谢您的评价（{score} 分）！"),
        Lang::En => format!("Thank you for your rating ({score} of 5)!"),
    }
}

/// A reply that is a rating: one digit 1 to 5 (ASCII or full-width), perhaps
/// with 分 or 星 after it, or "stars", and spaces or a full stop around it.
pub fn score_of(text: &str) -> Option<u8> {
    let t = text
        .trim()
        .trim_end_matches(['.', '。', '!', '！'])
        .trim_end();
    let t = t
        .strip_suffix("stars")
        .or_else(|| t.strip_suffix("star"))
        .or_else(|| t.strip_suffix('分'))
        .or_else(|| t.strip_suffix('星'))
        .unwrap_or(t)
        .trim();
    let mut chars = t.chars();
    let digit = match (chars.next(), chars.next()) {
        (Some(c @ '1'..='5'), None) => c as u32 - '0' as u32,
        (Some(c @ '１'..='５'), None) => c as u32 - '０' as u32,
        _ => return None,
    };
    u8::try_from(digit).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratings_are_one_digit_from_one_to_five() {
        for (text, want) in [
            ("5", Some(5)),
            (" 4 ", Some(4)),
            ("３", Some(3)),
            ("5分", Some(5)),
            ("4 stars", Some(4)),
            ("1.", Some(1)),
            ("0", None),
            ("6", None),
            ("45", None),
            ("my order is 5", None),
            ("", None),
        ] {
            assert_eq!(score_of(text), want, "{text:?}");
        }
    }

    #[test]
    fn a_question_is_answered_once_within_a_day() {
        let s = Surveys::default();
        let t0 = Instant::now();
        assert!(!s.take("c", t0));
        s.asked("c", t0);
        assert!(s.take("c", t0 + Duration::from_secs(60)));
        assert!(!s.take("c", t0 + Duration::from_secs(61)), "once");
        s.asked("d", t0);
        assert!(!s.take("d", t0 + ANSWER_WITHIN), "too late");
    }
}
