//! One conversation service for every channel: the customer behind an identity
//! (looked up, or made), a conversation started, a customer's message answered, a
//! hand-over to a person (a ticket and a place in a queue), an agent's reply, and
//! the live push of each change, every one committed to the records first. The
//! text channels, the agent API (through them) and the call use it alike; each
//! only adds its own wire (HTTP errors, SMS and WeChat delivery, SIP).
//!
//! The dialogue layer knows nothing of the store or the agents: they are reached
//! through two ports, [`Records`] (the store implements it) and [`Desk`] (the
//! agents' center implements it).

use std::future::Future;
use std::sync::Arc;

use chrono::Utc;

use super::conversations::{Appended, Channel, ConversationError, Conversations, Entry, Identity};
use super::reload::LiveKb;
use super::snapshot::Loaded;
use super::{Lang, Reply};

/// Where customers, conversations and tickets are kept.
pub trait Records: Send + Sync {
    /// The customer `identity` belongs to; a new one if none does.
    fn customer_for(
        &self,
        identity: &Identity,
    ) -> impl Future<Output = anyhow::Result<String>> + Send;
    /// The customer `identity` belongs to, if any.
    fn find_customer(
        &self,
        identity: &Identity,
    ) -> impl Future<Output = anyhow::Result<Option<String>>> + Send;
    /// Makes `identity` (and the customer it belonged to) part of `customer`.
    fn link(
        &self,
        customer: &str,
        identity: &Identity,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// Commits the turns just appended to a conversation; false when they were
    /// made from a stale copy (the records hold turns it lacks) and refused.
    fn record(
        &self,
        appended: &Appended,
        latency_us: Option<i64>,
    ) -> impl Future<Output = anyhow::Result<bool>> + Send;
    /// A text conversation as recorded (state and last turns), if there is one.
    fn load(&self, id: &str) -> impl Future<Output = anyhow::Result<Option<Loaded>>> + Send;
    /// The customer's most recent conversation on `channel` active since `since`.
    fn recent(
        &self,
        channel: Channel,
        customer: &str,
        since: chrono::DateTime<Utc>,
    ) -> impl Future<Output = anyhow::Result<Option<String>>> + Send;
    /// Opens a ticket for a conversation or a call handed to a person.
    fn open_ticket(
        &self,
        customer: &str,
        about: TicketFor<'_>,
        queue: &str,
        subject: &str,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// What a ticket is about: a text conversation, or a call (whose conversation is
/// recorded when it ends).
#[derive(Clone, Copy, Debug)]
pub enum TicketFor<'a> {
    Conversation(&'a str),
    Call(&'a str),
}

/// Where conversations handed to a person wait for an agent.
pub trait Desk: Send + Sync {
    /// Queues `item` for `queue`, agents with `needs` (languages) first; false when
    /// it is already waiting or the queues are full. `channel` and `reason` say
    /// where it came from and why.
    fn enqueue(
        &self,
        item: &str,
        queue: &str,
        needs: &[String],
        summary: &str,
        channel: Channel,
        reason: String,
    ) -> bool;
}

impl<T: Desk + ?Sized> Desk for Arc<T> {
    fn enqueue(
        &self,
        item: &str,
        queue: &str,
        needs: &[String],
        summary: &str,
        channel: Channel,
        reason: String,
    ) -> bool {
        (**self).enqueue(item, queue, needs, summary, channel, reason)
    }
}

/// Why the service could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Conversation(#[from] ConversationError),
    /// The records refused a change: nothing was pushed to anyone.
    #[error("not recorded: {0:#}")]
    NotRecorded(anyhow::Error),
    /// Other nodes kept adding turns to the conversation while this one tried.
    #[error("the conversation is changing elsewhere; try again")]
    Contended,
}

/// Tries at a turn whose conversation changed elsewhere meanwhile.
const STALE_TRIES: usize = 3;

/// A conversation just started.
#[derive(Debug)]
pub struct Started {
    pub conversation: String,
    pub customer: String,
    pub greeting: Reply,
}

/// The conversation service (see the module's documentation).
pub struct Service<R, D> {
    pub kb: LiveKb,
    pub conversations: Arc<Conversations>,
    pub records: R,
    pub desk: D,
}

impl<R, D> std::fmt::Debug for Service<R, D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service").finish_non_exhaustive()
    }
}

impl<R: Records, D: Desk> Service<R, D> {
    /// The customer an identity belongs to: remembered, else found in the records
    /// (where a new one is made).
    pub async fn customer(&self, identity: &Identity) -> Result<String, ServiceError> {
        if let Some(c) = self.conversations.customer_if_known(identity) {
            return Ok(c);
        }
        let c = self
            .records
            .customer_for(identity)
            .await
            .map_err(ServiceError::NotRecorded)?;
        self.conversations.adopt(identity, &c);
        Ok(c)
    }

    /// The customer something is filed under for `identity` (a call's record,
    /// ticket or recording): the one the live conversations know, linked in the
    /// records too (a call's conversation may have made it), else the records'.
    pub async fn file_under(&self, identity: &Identity) -> Result<String, ServiceError> {
        match self.conversations.customer_if_known(identity) {
            Some(c) => {
                self.records
                    .link(&c, identity)
                    .await
                    .map_err(ServiceError::NotRecorded)?;
                Ok(c)
            }
            None => self
                .records
                .customer_for(identity)
                .await
                .map_err(ServiceError::NotRecorded),
        }
    }

    /// Remembers who `identity` is when the records know them (a caller resumes
    /// their open topic), without making a customer of a stranger.
    pub async fn recognise(&self, identity: &Identity) -> Result<Option<String>, ServiceError> {
        if let Some(c) = self.conversations.customer_if_known(identity) {
            return Ok(Some(c));
        }
        let found = self
            .records
            .find_customer(identity)
            .await
            .map_err(ServiceError::NotRecorded)?;
        if let Some(c) = &found {
            self.conversations.adopt(identity, c);
        }
        Ok(found)
    }

    /// Makes `identity` (and any customer it belonged to) part of `customer`, in the
    /// records and among the live conversations; returns the customer.
    pub async fn link(&self, customer: &str, identity: &Identity) -> Result<String, ServiceError> {
        self.records
            .link(customer, identity)
            .await
            .map_err(ServiceError::NotRecorded)?;
        Ok(self.conversations.link_to(customer, identity))
    }

    /// Starts a conversation and records its greeting.
    pub async fn start(
        &self,
        channel: Channel,
        identity: &Identity,
        lang: Lang,
    ) -> Result<Started, ServiceError> {
        self.customer(identity).await?;
        let m = self.kb.current();
        let (greeting, appended) = self
            .conversations
            .open(&m, channel, identity, lang, Utc::now());
        // A new conversation: no copy can be stale.
        self.commit(&appended, None).await?;
        Ok(Started {
            conversation: appended.conversation,
            customer: appended.customer,
            greeting,
        })
    }

    /// The customer's message: the reply, once both are recorded (and only then
    /// pushed to the conversation's subscribers); a reply that hands over opens
    /// the ticket and queues the conversation.
    pub async fn message(&self, id: &str, text: &str) -> Result<Reply, ServiceError> {
        let started = std::time::Instant::now();
        self.warm(text).await;
        let m = self.kb.current();
        let (reply, appended) = self
            .turn(id, Some(started), || {
                let made = self.conversations.respond(&m, id, text, Utc::now());
                crate::metrics::Metrics::observe(
                    &crate::metrics::metrics().match_seconds,
                    started.elapsed(),
                );
                made
            })
            .await?;
        if let Some(queue) = &reply.handover {
            let reason = reply.reason.clone().unwrap_or_else(|| "intent".into());
            self.hand_over(&appended, queue, text, reason).await;
        }
        Ok(reply)
    }

    /// A conversation the engine handed to a person: a ticket is opened and the
    /// conversation waits in the queue (agents with the customer's language first,
    /// in skills-based queues).
    async fn hand_over(&self, a: &Appended, queue: &str, said: &str, reason: String) {
        let about = TicketFor::Conversation(&a.conversation);
        if let Err(e) = self
            .records
            .open_ticket(&a.customer, about, queue, said)
            .await
        {
            tracing::error!(error = format!("{e:#}"), conversation = %crate::log_id(&a.conversation), "cannot open a ticket");
        }
        let lang = Lang::detect(said).code().to_string();
        if !self
            .desk
            .enqueue(&a.conversation, queue, &[lang], said, a.channel, reason)
        {
            tracing::warn!(conversation = %crate::log_id(&a.conversation), %queue, "cannot queue the conversation (already waiting, or the queues are full)");
        }
    }

    /// Opens the ticket of a hand-over for the customer behind `identity` (filed
    /// as [`Service::file_under`] does); returns the customer.
    pub async fn open_ticket(
        &self,
        identity: &Identity,
        about: TicketFor<'_>,
        queue: &str,
        subject: &str,
    ) -> Result<String, ServiceError> {
        let customer = self.file_under(identity).await?;
        self.records
            .open_ticket(&customer, about, queue, subject)
            .await
            .map_err(ServiceError::NotRecorded)?;
        Ok(customer)
    }

    /// Tells the customer nobody was free within the queue's maximum wait: their
    /// ticket stays open for an agent to answer later, here.
    pub async fn queue_gave_up(&self, id: &str) -> Result<(), ServiceError> {
        self.notice(id, |lang| match lang {
            Lang::Zh => "抱歉，客服人员暂时都在忙。您的问题已经记录下来，我们会尽快在这里回复您。".into(),
            Lang::En => "Sorry, all our agents are still busy. Your request is recorded, and a person will reply here as soon as they can.".into(),
        })
        .await
    }

    /// A notice from kefu in the conversation (worded by `text` in the customer's
    /// language), recorded and pushed like every turn: a call made from a chat
    /// leaves its transcript here.
    pub async fn notice(
        &self,
        id: &str,
        text: impl Fn(Lang) -> String,
    ) -> Result<(), ServiceError> {
        self.turn(id, None, || {
            self.conversations
                .notice(id, &text, Utc::now())
                .map(|a| ((), a))
        })
        .await
        .map(|_| ())
    }

    /// An agent's reply, recorded and pushed; what was appended, for the channel
    /// to deliver where a push does not reach (SMS, WeChat).
    pub async fn agent_reply(&self, id: &str, text: &str) -> Result<Appended, ServiceError> {
        self.turn(id, None, || {
            self.conversations
                .agent_message(id, text, Utc::now())
                .map(|a| ((), a))
        })
        .await
        .map(|((), a)| a)
    }

    /// Makes a turn with `make` and commits it, one turn of the conversation at
    /// a time. Turns made from a stale copy (another node added some meanwhile)
    /// are made again from the recorded conversation. `started`: when the
    /// customer's message came, for the reply's latency.
    async fn turn<T>(
        &self,
        id: &str,
        started: Option<std::time::Instant>,
        make: impl Fn() -> Result<(T, Appended), ConversationError>,
    ) -> Result<(T, Appended), ServiceError> {
        let entry = self.entry(id).await?;
        let turn = crate::lock(&entry).turn_lock();
        let _one_at_a_time = turn.lock().await;
        for _ in 0..STALE_TRIES {
            let (made, appended) = make()?;
            let latency = started.and_then(|s| i64::try_from(s.elapsed().as_micros()).ok());
            if self.commit(&appended, latency).await? {
                return Ok((made, appended));
            }
            tracing::info!(conversation = %crate::log_id(id), "conversation changed elsewhere; going on from the recorded one");
            self.load(id).await?;
        }
        Err(ServiceError::Contended)
    }

    /// The live conversation `id`: here, or read back from the records (one
    /// another node started, or this node before a restart).
    pub async fn entry(&self, id: &str) -> Result<Arc<std::sync::Mutex<Entry>>, ServiceError> {
        match self.conversations.get(id) {
            Ok(entry) => Ok(entry),
            Err(_) => self.load(id).await,
        }
    }

    /// Reads the conversation back from the records and puts it in place.
    async fn load(&self, id: &str) -> Result<Arc<std::sync::Mutex<Entry>>, ServiceError> {
        match self.records.load(id).await {
            Ok(Some(loaded)) => Ok(self.conversations.restore(id, loaded)),
            Ok(None) => Err(ConversationError::Unknown(id.to_string()).into()),
            Err(e) => Err(ServiceError::NotRecorded(e)),
        }
    }

    /// Brings this node's copy of a conversation up to `said` turns when it
    /// has an older one (another node added turns): its subscribers here get
    /// them. A copy this node does not have is left alone.
    pub async fn catch_up(&self, id: &str, said: u64) -> Result<(), ServiceError> {
        let Ok(entry) = self.conversations.get(id) else {
            return Ok(());
        };
        let turn = crate::lock(&entry).turn_lock();
        let _one_at_a_time = turn.lock().await;
        if self
            .conversations
            .said_of(id)
            .is_some_and(|have| have < said)
        {
            self.load(id).await?;
        }
        Ok(())
    }

    /// The conversation on `channel` that a customer of a channel without
    /// conversation ids (WeChat, SMS) is in: one active here within `within`,
    /// else one the records have (another node's).
    pub async fn recent(
        &self,
        channel: Channel,
        identity: &Identity,
        within: chrono::Duration,
    ) -> Result<Option<String>, ServiceError> {
        let now = Utc::now();
        if let Some(id) = self
            .conversations
            .find_recent(channel, identity, within, now)
        {
            return Ok(Some(id));
        }
        let Some(customer) = self.recognise(identity).await? else {
            return Ok(None);
        };
        let found = self
            .records
            .recent(channel, &customer, now - within)
            .await
            .map_err(ServiceError::NotRecorded)?;
        match found {
            Some(id) if self.entry(&id).await.is_ok() => Ok(Some(id)),
            _ => Ok(None),
        }
    }

    /// Records `appended`, then pushes it to the conversation's subscribers;
    /// false (nothing recorded or pushed) when it was made from a stale copy.
    async fn commit(
        &self,
        appended: &Appended,
        latency_us: Option<i64>,
    ) -> Result<bool, ServiceError> {
        let recorded = self
            .records
            .record(appended, latency_us)
            .await
            .map_err(ServiceError::NotRecorded)?;
        if recorded {
            self.conversations.publish(appended);
        }
        Ok(recorded)
    }

    /// Runs what matching `text` needs from the sentence-embedding model (a few
    /// milliseconds of CPU, when the words alone are not conclusive) on a blocking
    /// thread, so the reply that follows does not hold up the async runtime.
    pub async fn warm(&self, text: &str) {
        let m = self.kb.current();
        if !m.is_semantic() {
            return;
        }
        let text = text.to_string();
        let _ = tokio::task::spawn_blocking(move || m.warm(&text, Lang::detect(&text))).await;
    }
}
