//! The live conversations of every channel and the customers behind them.
//!
//! A customer is known by identities (a phone number, a WeChat openid, a web visitor
//! id, an app user id, an SMS number); identities are linked by the API, so a customer
//! who called yesterday and writes in web chat today is one customer. A new
//! conversation asks about the customer's open topic from any channel in the last
//! week. Bounded: at most `limit` conversations (the least recently active one is
//! dropped first) and about four identities per conversation (customers without a
//! live conversation are forgotten first). Persistence comes with the store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use tokio::sync::broadcast;

use super::engine::{Conversation, Reply, Turn};
use super::kb::Medium;
use super::matcher::Matcher;
use super::snapshot::Loaded;
use super::text::Lang;
use crate::lock;

/// How long an open topic is offered on a new conversation.
const TOPIC_MEMORY_DAYS: i64 = 7;
/// Identities kept per allowed conversation before idle customers are forgotten.
const IDENTITIES_PER_CONVERSATION: usize = 4;
/// Events buffered per WebSocket subscriber before it is considered lagging.
const PUSH_BUFFER: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Phone,
    Web,
    Wechat,
    Sms,
    App,
    /// WeCom customer service (微信客服): WeChat users writing to a company's
    /// WeCom customer-service account.
    Wecom,
}

impl Channel {
    pub const ALL: [Channel; 6] = [
        Channel::Phone,
        Channel::Web,
        Channel::Wechat,
        Channel::Sms,
        Channel::App,
        Channel::Wecom,
    ];

    /// The channel a stored name stands for.
    pub fn named(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }

    /// The channel's name in records and reports ("phone", "web", ...).
    pub fn name(self) -> &'static str {
        match self {
            Channel::Phone => "phone",
            Channel::Web => "web",
            Channel::Wechat => "wechat",
            Channel::Sms => "sms",
            Channel::App => "app",
            Channel::Wecom => "wecom",
        }
    }

    pub fn medium(self) -> Medium {
        match self {
            Channel::Phone => Medium::Voice,
            Channel::Sms => Medium::Sms,
            Channel::Web | Channel::Wechat | Channel::App | Channel::Wecom => Medium::Chat,
        }
    }
}

/// How a customer is known on one channel.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
pub struct Identity {
    pub kind: IdentityKind,
    pub value: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdentityKind {
    Phone,
    Wechat,
    Web,
    App,
    Sms,
    /// A WeCom customer-service customer: `OPEN_KFID:EXTERNAL_USERID` (the
    /// account they write to, and who they are to it).
    Wecom,
}

impl IdentityKind {
    pub const ALL: [IdentityKind; 6] = [
        IdentityKind::Phone,
        IdentityKind::Wechat,
        IdentityKind::Web,
        IdentityKind::App,
        IdentityKind::Sms,
        IdentityKind::Wecom,
    ];
}

impl Identity {
    pub fn new(kind: IdentityKind, value: impl Into<String>) -> Self {
        Self {
            kind,
            value: value.into(),
        }
    }
}

/// Something that happened in a conversation, pushed to its subscribers.
#[derive(Clone, Debug, Serialize)]
pub struct Event {
    pub conversation: String,
    #[serde(flatten)]
    pub turn: Turn,
}

pub struct Entry {
    pub id: String,
    pub channel: Channel,
    pub customer: String,
    pub created: DateTime<Utc>,
    pub updated: DateTime<Utc>,
    pub conversation: Conversation,
    push: broadcast::Sender<Event>,
    /// Held while a turn is made and stored: the conversation's turns reach the
    /// store in the order they were said.
    turn: Arc<tokio::sync::Mutex<()>>,
}

impl Entry {
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.push.subscribe()
    }

    /// The lock a turn is made and stored under (see [`Entry`]).
    pub fn turn_lock(&self) -> Arc<tokio::sync::Mutex<()>> {
        self.turn.clone()
    }

    /// Pushes these turns to the subscribers.
    fn push_turns(&self, turns: &[Turn]) {
        for turn in turns {
            // No subscriber is fine: the history keeps every turn.
            let _ = self.push.send(Event {
                conversation: self.id.clone(),
                turn: turn.clone(),
            });
        }
    }
}

/// Turns just added to a conversation, for the store (and then the subscribers).
#[derive(Clone, Debug)]
pub struct Appended {
    pub conversation: String,
    pub channel: Channel,
    pub customer: String,
    pub created: DateTime<Utc>,
    pub updated: DateTime<Utc>,
    /// The first turn's sequence number (turns said before it in the conversation).
    pub first_seq: usize,
    pub turns: Vec<Turn>,
    /// The engine's state after these turns, for a text conversation (to go on
    /// elsewhere: `dialogue::snapshot`); none for a call's.
    pub state: Option<String>,
}

impl Appended {
    /// Turns said in the conversation once these are.
    pub fn said(&self) -> u64 {
        (self.first_seq + self.turns.len()) as u64
    }
}

#[derive(Default)]
struct Inner {
    entries: HashMap<String, Arc<Mutex<Entry>>>,
    /// Identity → customer id.
    identities: HashMap<Identity, String>,
}

pub struct Conversations {
    inner: Mutex<Inner>,
    limit: usize,
    /// (conversation, turns said) for each text conversation's turns once stored:
    /// what the other nodes of a cluster are told.
    commits: broadcast::Sender<(String, u64)>,
}

impl std::fmt::Debug for Conversations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conversations")
            .field("live", &self.len())
            .field("limit", &self.limit)
            .finish()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConversationError {
    #[error("no conversation {0:?}")]
    Unknown(String),
}

impl Conversations {
    pub fn new(limit: usize) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            limit: limit.max(1),
            commits: broadcast::channel(1024).0,
        }
    }

    pub fn len(&self) -> usize {
        lock(&self.inner).entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The customer an identity belongs to, created on first sight.
    pub fn customer_of(&self, identity: &Identity) -> String {
        let mut inner = lock(&self.inner);
        if let Some(c) = inner.identities.get(identity) {
            return c.clone();
        }
        if inner.identities.len() >= IDENTITIES_PER_CONVERSATION * self.limit {
            forget_idle_customers(&mut inner);
        }
        // Random, like the store's: ids never collide with earlier runs' customers.
        let id = format!("c{}", hex::encode(rand::random::<[u8; 10]>()));
        inner.identities.insert(identity.clone(), id.clone());
        id
    }

    /// Remembers that an identity belongs to a customer (one found in the store).
    pub fn adopt(&self, identity: &Identity, customer: &str) {
        let mut inner = lock(&self.inner);
        if !inner.identities.contains_key(identity)
            && inner.identities.len() >= IDENTITIES_PER_CONVERSATION * self.limit
        {
            forget_idle_customers(&mut inner);
        }
        inner
            .identities
            .insert(identity.clone(), customer.to_string());
    }

    /// The customer an identity belongs to, if it has been seen (creates nothing).
    pub fn customer_if_known(&self, identity: &Identity) -> Option<String> {
        lock(&self.inner).identities.get(identity).cloned()
    }

    /// Makes two identities one customer (the first one's); returns that customer id.
    pub fn link(&self, a: &Identity, b: &Identity) -> String {
        let keep = self.customer_of(a);
        self.link_to(&keep, b)
    }

    /// Adds `identity` (and any customer it already belongs to) to `customer`.
    pub fn link_to(&self, customer: &str, identity: &Identity) -> String {
        let other = self.customer_of(identity);
        let mut inner = lock(&self.inner);
        if other != customer {
            for c in inner.identities.values_mut() {
                if *c == other {
                    *c = customer.to_string();
                }
            }
            for e in inner.entries.values() {
                let mut e = lock(e);
                if e.customer == other {
                    e.customer = customer.to_string();
                }
            }
        }
        customer.to_string()
    }

    /// Forgets a customer (erased from the store): their identities and live
    /// conversations go; a later message from them starts afresh.
    pub fn forget_customer(&self, customer: &str) {
        let mut inner = lock(&self.inner);
        inner.identities.retain(|_, c| c != customer);
        inner.entries.retain(|_, e| lock(e).customer != customer);
    }

    pub fn identities_of(&self, customer: &str) -> Vec<Identity> {
        let inner = lock(&self.inner);
        let mut out: Vec<Identity> = inner
            .identities
            .iter()
            .filter(|(_, c)| *c == customer)
            .map(|(i, _)| i.clone())
            .collect();
        out.sort_by(|a, b| (a.kind as u8, &a.value).cmp(&(b.kind as u8, &b.value)));
        out
    }

    /// The customer's most recent open topic from the last week, on any channel.
    pub fn open_topic(&self, customer: &str, now: DateTime<Utc>) -> Option<String> {
        let inner = lock(&self.inner);
        inner
            .entries
            .values()
            .filter_map(|e| {
                let e = lock(e);
                (e.customer == customer && now - e.updated < Duration::days(TOPIC_MEMORY_DAYS))
                    .then(|| e.conversation.open_topic.clone().map(|t| (e.updated, t)))
                    .flatten()
            })
            .max_by_key(|(at, _)| *at)
            .map(|(_, t)| t)
    }

    /// Starts a conversation and returns its id and greeting.
    pub fn start(
        &self,
        m: &Matcher,
        channel: Channel,
        identity: &Identity,
        lang: Lang,
        now: DateTime<Utc>,
    ) -> (String, Reply) {
        let (reply, appended) = self.open(m, channel, identity, lang, now);
        (appended.conversation, reply)
    }

    /// Starts a conversation: the greeting and the turns to store.
    pub fn open(
        &self,
        m: &Matcher,
        channel: Channel,
        identity: &Identity,
        lang: Lang,
        now: DateTime<Utc>,
    ) -> (Reply, Appended) {
        let customer = self.customer_of(identity);
        let topic = self.open_topic(&customer, now);
        let mut conversation = Conversation::new(channel.medium(), lang);
        let reply = conversation.open(m, topic.as_deref(), now);
        let turns = conversation.history.clone();
        let state = text_state(channel, &conversation);
        let (id, _) = self.insert(
            None,
            channel,
            customer.clone(),
            conversation,
            now,
            now,
            PUSH_BUFFER,
        );
        tracing::info!(conversation = %crate::log_id(&id), ?channel, customer = %customer, resumed = topic.is_some(), "conversation started");
        let appended = Appended {
            conversation: id,
            channel,
            customer,
            created: now,
            updated: now,
            first_seq: 0,
            turns,
            state,
        };
        (reply, appended)
    }

    /// Keeps a conversation held elsewhere (a call's, when it ends) so the customer's
    /// other channels see its topic and history.
    pub fn record(
        &self,
        channel: Channel,
        identity: &Identity,
        conversation: Conversation,
        started: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> String {
        let customer = self.customer_of(identity);
        self.insert(None, channel, customer, conversation, started, now, 1)
            .0
    }

    /// Makes a call's conversation live while the caller talks with an agent, so
    /// the desk can follow the transcript (pushed like chat turns).
    pub fn live(
        &self,
        channel: Channel,
        identity: &Identity,
        conversation: Conversation,
        started: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> String {
        let customer = self.customer_of(identity);
        self.insert(
            None,
            channel,
            customer,
            conversation,
            started,
            now,
            PUSH_BUFFER,
        )
        .0
    }

    /// A line of a bridged call's transcript: who said it and what; the turn, for
    /// the store and the desk.
    pub fn transcribed(
        &self,
        id: &str,
        speaker: crate::dialogue::engine::Speaker,
        text: &str,
        now: DateTime<Utc>,
    ) -> Result<Appended, ConversationError> {
        use crate::dialogue::engine::Speaker;
        self.append(id, now, |c| match speaker {
            Speaker::Agent => c.agent_said(text, now),
            Speaker::Customer => c.customer_said(text, now),
            Speaker::Bot => c.bot_said(text, now),
        })
        .map(|((), a)| a)
    }

    /// The whole conversation as kept (for the call record at the end).
    pub fn conversation(&self, id: &str) -> Result<Conversation, ConversationError> {
        let entry = self.get(id)?;
        let c = lock(&entry).conversation.clone();
        Ok(c)
    }

    /// Adds a conversation (under `id`, or a new one), dropping the least
    /// recently active one when full.
    #[allow(clippy::too_many_arguments)]
    fn insert(
        &self,
        id: Option<String>,
        channel: Channel,
        customer: String,
        conversation: Conversation,
        created: DateTime<Utc>,
        updated: DateTime<Utc>,
        push_buffer: usize,
    ) -> (String, Arc<Mutex<Entry>>) {
        let id = id.unwrap_or_else(new_id);
        let (push, _) = broadcast::channel(push_buffer);
        let entry = Entry {
            id: id.clone(),
            channel,
            customer,
            created,
            updated,
            conversation,
            push,
            turn: Arc::default(),
        };
        let mut inner = lock(&self.inner);
        if let Some(there) = inner.entries.get(&id) {
            // Restored twice at once: the first one stays.
            return (id, there.clone());
        }
        if inner.entries.len() >= self.limit
            && let Some(oldest) = inner
                .entries
                .iter()
                .min_by_key(|(_, e)| lock(e).updated)
                .map(|(k, _)| k.clone())
        {
            inner.entries.remove(&oldest);
            tracing::info!(conversation = %crate::log_id(&oldest), "conversation limit reached; dropped the least recently active");
        }
        let entry = Arc::new(Mutex::new(entry));
        inner.entries.insert(id.clone(), entry.clone());
        (id, entry)
    }

    pub fn get(&self, id: &str) -> Result<Arc<Mutex<Entry>>, ConversationError> {
        lock(&self.inner)
            .entries
            .get(id)
            .cloned()
            .ok_or_else(|| ConversationError::Unknown(id.to_string()))
    }

    /// The customer wrote or said `text`; returns the reply and pushes both turns.
    pub fn message(
        &self,
        m: &Matcher,
        id: &str,
        text: &str,
        now: DateTime<Utc>,
    ) -> Result<Reply, ConversationError> {
        let (reply, appended) = self.respond(m, id, text, now)?;
        self.publish(&appended);
        Ok(reply)
    }

    /// The customer wrote or said `text`: the reply and the turns added, not yet
    /// pushed (the channel stores them first, then calls `publish`).
    pub fn respond(
        &self,
        m: &Matcher,
        id: &str,
        text: &str,
        now: DateTime<Utc>,
    ) -> Result<(Reply, Appended), ConversationError> {
        self.append(id, now, |c| c.respond(m, text, now))
    }

    /// Pushes turns to the conversation's subscribers.
    pub fn publish(&self, appended: &Appended) {
        let Ok(entry) = self.get(&appended.conversation) else {
            return;
        };
        lock(&entry).push_turns(&appended.turns);
        if appended.state.is_some() {
            // Nobody listening (a single node) is fine.
            let _ = self
                .commits
                .send((appended.conversation.clone(), appended.said()));
        }
    }

    /// Every text conversation's turns once stored: (conversation, turns said).
    pub fn watch_commits(&self) -> broadcast::Receiver<(String, u64)> {
        self.commits.subscribe()
    }

    /// Turns said in a live conversation, if it is here.
    pub fn said_of(&self, id: &str) -> Option<u64> {
        let entry = self.get(id).ok()?;
        let said = lock(&entry).conversation.said;
        Some(said)
    }

    /// Puts a conversation read back from the store in place (a node that did
    /// not have it, or had an older copy): its subscribers here get the turns
    /// they have not seen. Returns the entry.
    pub fn restore(&self, id: &str, loaded: Loaded) -> Arc<Mutex<Entry>> {
        for identity in &loaded.identities {
            self.adopt(identity, &loaded.customer);
        }
        if let Ok(entry) = self.get(id) {
            {
                let mut e = lock(&entry);
                let seen = e.conversation.said;
                let new = loaded.conversation.said.saturating_sub(seen) as usize;
                let h = &loaded.conversation.history;
                let unseen = h[h.len().saturating_sub(new)..].to_vec();
                e.customer = loaded.customer;
                e.updated = loaded.updated;
                e.conversation = loaded.conversation;
                e.push_turns(&unseen);
            }
            return entry;
        }
        self.insert(
            Some(id.to_string()),
            loaded.channel,
            loaded.customer,
            loaded.conversation,
            loaded.created,
            loaded.updated,
            PUSH_BUFFER,
        )
        .1
    }

    /// A person answered in the conversation.
    /// An agent's message in a conversation: the turn, for the store (publish it
    /// once stored).
    pub fn agent_message(
        &self,
        id: &str,
        text: &str,
        now: DateTime<Utc>,
    ) -> Result<Appended, ConversationError> {
        self.append(id, now, |c| c.agent_said(text, now))
            .map(|((), a)| a)
    }

    /// A notice from kefu in a conversation, worded in the customer's language by
    /// `text`; the turn, for the store.
    pub fn notice(
        &self,
        id: &str,
        text: impl FnOnce(crate::dialogue::Lang) -> String,
        now: DateTime<Utc>,
    ) -> Result<Appended, ConversationError> {
        self.append(id, now, |c| {
            let t = text(c.lang);
            c.bot_said(&t, now)
        })
        .map(|((), a)| a)
    }

    /// Runs `say` on the conversation; returns its result and the turns it added,
    /// for the store (publish them once stored).
    fn append<R>(
        &self,
        id: &str,
        now: DateTime<Utc>,
        say: impl FnOnce(&mut crate::dialogue::engine::Conversation) -> R,
    ) -> Result<(R, Appended), ConversationError> {
        let entry = self.get(id)?;
        let mut e = lock(&entry);
        let before = e.conversation.said;
        let result = say(&mut e.conversation);
        e.updated = now;
        let new = (e.conversation.said - before) as usize;
        let h = &e.conversation.history;
        let appended = Appended {
            conversation: e.id.clone(),
            channel: e.channel,
            customer: e.customer.clone(),
            created: e.created,
            updated: now,
            first_seq: before as usize,
            turns: h[h.len().saturating_sub(new)..].to_vec(),
            state: text_state(e.channel, &e.conversation),
        };
        Ok((result, appended))
    }

    /// The conversation of this identity on this channel active in the last `within`,
    /// for channels without a conversation id of their own (WeChat, SMS).
    pub fn find_recent(
        &self,
        channel: Channel,
        identity: &Identity,
        within: Duration,
        now: DateTime<Utc>,
    ) -> Option<String> {
        let customer = lock(&self.inner).identities.get(identity).cloned()?;
        let inner = lock(&self.inner);
        inner
            .entries
            .values()
            .filter_map(|e| {
                let e = lock(e);
                (e.channel == channel && e.customer == customer && now - e.updated < within)
                    .then(|| (e.updated, e.id.clone()))
            })
            .max_by_key(|(at, _)| *at)
            .map(|(_, id)| id)
    }

    pub fn history(&self, id: &str) -> Result<Vec<Turn>, ConversationError> {
        let entry = self.get(id)?;
        let history = lock(&entry).conversation.history.clone();
        Ok(history)
    }
}

/// Drops the identities of customers with no live conversation (their links and
/// topics go with them; the store will keep them for good).
fn forget_idle_customers(inner: &mut Inner) {
    let live: std::collections::HashSet<String> = inner
        .entries
        .values()
        .map(|e| lock(e).customer.clone())
        .collect();
    let before = inner.identities.len();
    inner.identities.retain(|_, c| live.contains(c));
    tracing::info!(
        forgotten = before - inner.identities.len(),
        "identity limit reached; forgot customers without a live conversation"
    );
}

/// The state a text conversation stores with its turns (calls keep theirs).
fn text_state(channel: Channel, c: &Conversation) -> Option<String> {
    (channel != Channel::Phone).then(|| c.snapshot())
}

/// A conversation id: 16 random bytes, hex.
fn new_id() -> String {
    let bytes: [u8; 16] = rand::random();
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialogue::kb::load_files;
    use std::path::PathBuf;

    fn matcher() -> Matcher {
        let kb = r#"
[intents.refund]
title = { en = "your refund request", zh = "退款申请" }
topic = true
examples.en = ["i want a refund", "refund please"]
answer.en = "Your refund is being processed."
"#;
        Matcher::new(Arc::new(
            load_files(&[(PathBuf::from("t.toml"), kb.into())]).unwrap(),
        ))
    }

    #[test]
    fn a_linked_customer_resumes_on_another_channel() {
        let m = matcher();
        let convs = Conversations::new(10);
        let now = Utc::now();
        let web = Identity::new(IdentityKind::Web, "visitor-1");
        let phone = Identity::new(IdentityKind::Phone, "+8613800138000");
        let (id, greeting) = convs.start(&m, Channel::Web, &web, Lang::En, now);
        assert_eq!(greeting.kind, crate::dialogue::ReplyKind::Greeting);
        convs.message(&m, &id, "I want a refund", now).unwrap();
        // Not linked yet: a plain greeting.
        let (_, r) = convs.start(&m, Channel::Phone, &phone, Lang::En, now);
        assert_eq!(r.kind, crate::dialogue::ReplyKind::Greeting);
        assert_eq!(convs.link(&web, &phone), convs.customer_of(&web));
        let (_, r) = convs.start(&m, Channel::Phone, &phone, Lang::En, now);
        assert_eq!(r.text, "Are you contacting us about your refund request?");
        assert_eq!(convs.identities_of(&convs.customer_of(&phone)).len(), 2);
    }

    #[test]
    fn identities_stay_bounded() {
        let m = matcher();
        let convs = Conversations::new(2);
        let now = Utc::now();
        let (_, _) = convs.start(
            &m,
            Channel::Web,
            &Identity::new(IdentityKind::Web, "kept"),
            Lang::En,
            now,
        );
        for n in 0..20 {
            convs.customer_of(&Identity::new(IdentityKind::Sms, format!("+86{n}")));
        }
        let size = lock(&convs.inner).identities.len();
        assert!(size <= 4 * 2, "{size} identities kept");
        assert!(
            convs
                .customer_if_known(&Identity::new(IdentityKind::Web, "kept"))
                .is_some()
        );
        assert!(
            convs
                .customer_if_known(&Identity::new(IdentityKind::Sms, "+860"))
                .is_none()
        );
    }

    #[test]
    fn the_least_recently_active_conversation_goes_first() {
        let m = matcher();
        let convs = Conversations::new(2);
        let t0 = Utc::now();
        let who = |n: &str| Identity::new(IdentityKind::Web, n);
        let (a, _) = convs.start(&m, Channel::Web, &who("a"), Lang::En, t0);
        let (b, _) = convs.start(
            &m,
            Channel::Web,
            &who("b"),
            Lang::En,
            t0 + Duration::seconds(1),
        );
        convs
            .message(&m, &a, "refund please", t0 + Duration::seconds(2))
            .unwrap();
        let (c, _) = convs.start(
            &m,
            Channel::Web,
            &who("c"),
            Lang::En,
            t0 + Duration::seconds(3),
        );
        assert!(convs.get(&a).is_ok() && convs.get(&c).is_ok());
        assert_eq!(convs.get(&b).err(), Some(ConversationError::Unknown(b)));
    }
}
