//! A text conversation's state as the store keeps it, so that the conversation
//! goes on from another node (behind an HTTP load balancer) or after a restart:
//! everything the engine remembers except the history, which the store keeps turn
//! by turn and hands back with it.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::engine::{Conversation, HISTORY_LIMIT, State, Turn};
use super::kb::Medium;
use super::text::Lang;

#[derive(Serialize, Deserialize)]
struct Snapshot {
    medium: Medium,
    lang: String,
    state: State,
    #[serde(default)]
    last_intent: Option<String>,
    #[serde(default)]
    open_topic: Option<String>,
    #[serde(default)]
    misses: u32,
    #[serde(default)]
    values: BTreeMap<String, String>,
}

/// A conversation as read back from the store.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub channel: super::conversations::Channel,
    pub customer: String,
    pub created: DateTime<Utc>,
    pub updated: DateTime<Utc>,
    pub conversation: Conversation,
    /// The customer's identities (where an agent's answer is delivered).
    pub identities: Vec<super::conversations::Identity>,
}

/// Why a stored state cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("the stored conversation state cannot be read: {0}")]
pub struct Unreadable(String);

impl Conversation {
    /// The state to store with the turns just said (JSON).
    pub fn snapshot(&self) -> String {
        let s = Snapshot {
            medium: self.medium,
            lang: self.lang.code().to_string(),
            state: self.state.clone(),
            last_intent: self.last_intent.clone(),
            open_topic: self.open_topic.clone(),
            misses: self.misses,
            values: self.values.clone(),
        };
        // Plain strings, numbers and maps: serialising cannot fail.
        serde_json::to_string(&s).unwrap_or_default()
    }

    /// The conversation again from its stored state, its last turns (oldest
    /// first, at most [`HISTORY_LIMIT`]) and the number of turns said in all.
    pub fn resume(snapshot: &str, mut history: Vec<Turn>, said: u64) -> Result<Self, Unreadable> {
        let s: Snapshot = serde_json::from_str(snapshot).map_err(|e| Unreadable(e.to_string()))?;
        let lang = Lang::from_code(&s.lang)
            .ok_or_else(|| Unreadable(format!("unknown language {:?}", s.lang)))?;
        if history.len() > HISTORY_LIMIT {
            history.drain(..history.len() - HISTORY_LIMIT);
        }
        let mut c = Conversation::new(s.medium, lang);
        c.state = s.state;
        c.last_intent = s.last_intent;
        c.open_topic = s.open_topic;
        c.misses = s.misses;
        c.values = s.values;
        c.history = history;
        c.said = said;
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialogue::engine::Speaker;

    #[test]
    fn a_conversation_reads_back_as_it_was_stored() {
        let mut c = Conversation::new(Medium::Chat, Lang::En);
        c.state = State::Filling {
            intent: "order_status".into(),
            slot: 1,
            tries: 2,
        };
        c.last_intent = Some("order_status".into());
        c.misses = 1;
        c.values.insert("order".into(), "A123".into());
        let turn = Turn {
            at: Utc::now(),
            speaker: Speaker::Customer,
            text: "where is my order".into(),
            intent: Some("order_status".into()),
            confidence: Some(0.9),
        };
        let back = Conversation::resume(&c.snapshot(), vec![turn.clone()], 7).unwrap();
        assert_eq!(back.state, c.state);
        assert_eq!(back.last_intent, c.last_intent);
        assert_eq!(back.values, c.values);
        assert_eq!(back.misses, 1);
        assert_eq!(back.lang, Lang::En);
        assert_eq!(back.said, 7);
        assert_eq!(back.history.len(), 1);
        assert_eq!(back.history[0].text, turn.text);
    }

    #[test]
    fn a_damaged_state_is_an_error_not_a_panic() {
        for bad in [
            "",
            "{}",
            "null",
            "{\"medium\":\"text\",\"lang\":\"fr\",\"state\":{\"is\":\"idle\"}}",
        ] {
            assert!(Conversation::resume(bad, Vec::new(), 0).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_the_last_turns_are_kept() {
        let c = Conversation::new(Medium::Chat, Lang::Zh);
        let turns: Vec<Turn> = (0..HISTORY_LIMIT + 5)
            .map(|i| Turn {
                at: Utc::now(),
                speaker: Speaker::Bot,
                text: i.to_string(),
                intent: None,
                confidence: None,
            })
            .collect();
        let back = Conversation::resume(&c.snapshot(), turns, 205).unwrap();
        assert_eq!(back.history.len(), HISTORY_LIMIT);
        assert_eq!(back.history[0].text, "5");
    }
}
