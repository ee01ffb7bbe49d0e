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

use super::conversations::{Appended, Channel, ConversationError, Conversations, Identity};
use super::reload::LiveKb;
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
    /// Commits the turns just appended to a conversation.
    fn record(
        &self,
        appended: &Appended,
        latency_us: Option<i64>,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;
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
}

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
        let (reply, appended) = self.conversations.respond(&m, id, text, Utc::now())?;
        crate::metrics::Metrics::observe(
            &crate::metrics::metrics().match_seconds,
            started.elapsed(),
        );
        let latency = i64::try_from(started.elapsed().as_micros()).ok();
        self.commit(&appended, latency).await?;
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
        text: impl FnOnce(Lang) -> String,
    ) -> Result<(), ServiceError> {
        let appended = self.conversations.notice(id, text, Utc::now())?;
        self.commit(&appended, None).await
    }

    /// An agent's reply, recorded and pushed; what was appended, for the channel
    /// to deliver where a push does not reach (SMS, WeChat).
    pub async fn agent_reply(&self, id: &str, text: &str) -> Result<Appended, ServiceError> {
        let appended = self.conversations.agent_message(id, text, Utc::now())?;
        self.commit(&appended, None).await?;
        Ok(appended)
    }

    /// Records `appended`, then pushes it to the conversation's subscribers.
    async fn commit(
        &self,
        appended: &Appended,
        latency_us: Option<i64>,
    ) -> Result<(), ServiceError> {
        self.records
            .record(appended, latency_us)
            .await
            .map_err(ServiceError::NotRecorded)?;
        self.conversations.publish(appended);
        Ok(())
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
