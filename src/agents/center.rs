//! The contact center at run time: the queue state machine (`queue`) behind a lock,
//! a task that ticks it at its deadlines, and what each agent's desk is being
//! offered. Text conversations handed over by the dialogue engine enter here; the
//! agent API (`api::agent`) accepts, declines and answers them.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::queue::{Answer, Event, QueueConfig, Queues};
use crate::lock;

/// What an agent is offered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Offer {
    /// The conversation (or call) id.
    pub item: String,
    pub queue: String,
    /// Seconds left to accept.
    pub expires_in: u64,
    /// What the customer asked for, so the agent knows before accepting.
    pub summary: String,
}

/// What the call task of a waiting caller is told about its item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ItemEvent {
    /// Ring this agent (until the offer is withdrawn).
    Offered { agent: String },
    /// Stop ringing this agent (ring timeout, someone else took it).
    Withdrawn { agent: String },
    /// This agent has the caller: bridge them.
    Connected { agent: String },
    /// Nobody took the caller within the queue's maximum wait.
    TimedOut,
    /// The caller's place in the queue (1: next), to announce.
    Position(usize),
}

/// Where a waiting item came from and why it wants a person (for the ledger).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// The channel: "phone", "web", "wechat", "sms", "app".
    pub channel: String,
    /// Why it was handed over: "menu" (the dialplan's transfer), "not_understood"
    /// (repeated misses), "slot_failed", or "intent:ID" (an intent that hands over).
    pub reason: String,
}

/// A finished stay in an agent queue (the center's ledger, written by
/// `store::Store::record_stay`): ids, times, names of queues and agents; no personal
/// data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stay {
    /// The conversation or call id.
    pub item: String,
    pub queue: String,
    pub channel: String,
    /// Why the customer was handed over ([`Origin`]).
    pub reason: String,
    pub enqueued: DateTime<Utc>,
    /// When an agent took it.
    pub answered: Option<DateTime<Utc>>,
    pub agent: Option<String>,
    /// When the agent finished (or the customer left, or the wait timed out).
    pub ended: DateTime<Utc>,
    /// "answered", "abandoned" (left before anyone took it) or "timed_out".
    pub outcome: &'static str,
}

#[derive(Clone, Debug)]
struct OpenStay {
    queue: String,
    origin: Origin,
    enqueued: DateTime<Utc>,
    answered: Option<(DateTime<Utc>, String)>,
}

/// Finished stays not yet written; the ledger's writer keeps up easily, so a full
/// buffer means the store is stuck, and stays are dropped (with a warning) rather
/// than blocking the center.
const LEDGER_BUFFER: usize = 4096;

/// Events a watcher may have pending; a call task reads them at once, so a full
/// buffer means it is stuck, and it loses events rather than blocking the center.
const WATCH_BUFFER: usize = 64;

#[derive(Clone, Debug)]
struct Item {
    queue: String,
    summary: String,
}

#[derive(Debug, Default)]
struct Inner {
    queues: Queues,
    items: HashMap<String, Item>,
    /// Agent → item → offer deadline.
    offers: HashMap<String, HashMap<String, Instant>>,
    /// Item → the agent who took it.
    assigned: HashMap<String, String>,
    /// Items that waited too long, for the text channels to answer.
    timed_out: Vec<String>,
    /// Items whose edge (a call) follows them itself.
    watchers: HashMap<String, tokio::sync::mpsc::Sender<ItemEvent>>,
    /// Bridged calls: item → the live conversation their transcript goes to.
    live: HashMap<String, String>,
    /// Items in a queue or with an agent, for the ledger.
    stays: HashMap<String, OpenStay>,
    ledger: Option<tokio::sync::mpsc::Sender<Stay>>,
}

/// A call an agent is on (for the desk).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LiveCall {
    pub call: String,
    /// The conversation the call's live transcript is pushed to.
    pub conversation: String,
    pub summary: String,
}

/// An agent's availability as set on this node (the desk, a feature code),
/// for the other nodes of a cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Presence {
    pub agent: String,
    pub available: bool,
    pub queues: Vec<String>,
    pub skills: Vec<String>,
}

#[derive(Debug, Default)]
pub struct Center {
    inner: Mutex<Inner>,
    wake: Notify,
    /// Told when an item times out (`take_timed_out` has it).
    gave_up: Notify,
    /// Where agents' availability set here is told (a cluster's node shares it).
    presence: Mutex<Option<tokio::sync::mpsc::UnboundedSender<Presence>>>,
    /// When each agent's desk last asked this node anything.
    desks: Mutex<HashMap<String, Instant>>,
}

/// A waiting item handed to another node (`Center::hand_off`).
#[derive(Clone, Debug)]
pub struct HandedOff {
    pub queue: String,
    pub origin: Origin,
    pub enqueued: DateTime<Utc>,
}

impl Inner {
    /// The item's stay is over: it goes to the ledger.
    fn close(&mut self, item: &str, outcome: &'static str) {
        let Some(open) = self.stays.remove(item) else {
            return;
        };
        let Some(ledger) = &self.ledger else {
            return;
        };
        let (answered, agent) = open
            .answered
            .map_or((None, None), |(t, a)| (Some(t), Some(a)));
        let stay = Stay {
            item: item.to_string(),
            queue: open.queue,
            channel: open.origin.channel,
            reason: open.origin.reason,
            enqueued: open.enqueued,
            answered,
            agent,
            ended: Utc::now(),
            outcome,
        };
        if ledger.try_send(stay).is_err() {
            tracing::warn!(%item, "the queue ledger is not keeping up; a stay is not recorded");
        }
    }

    /// Tells the item's watcher, if it has one; true if it has.
    fn tell(&mut self, item: &str, event: ItemEvent) -> bool {
        let Some(w) = self.watchers.get(item) else {
            return false;
        };
        if let Err(e) = w.try_send(event) {
            tracing::warn!(%item, error = %e, "a waiting call is not reading its queue events");
            if matches!(e, tokio::sync::mpsc::error::TrySendError::Closed(_)) {
                self.watchers.remove(item);
            }
        }
        true
    }

    fn apply(&mut self, events: Vec<Event>) {
        for e in events {
            match e {
                Event::Offer {
                    item,
                    agents,
                    until,
                } => {
                    for a in agents {
                        self.tell(&item, ItemEvent::Offered { agent: a.clone() });
                        self.offers
                            .entry(a)
                            .or_default()
                            .insert(item.clone(), until);
                    }
                }
                Event::Withdraw { item, agents } => {
                    for a in agents {
                        self.tell(&item, ItemEvent::Withdrawn { agent: a.clone() });
                        if let Some(o) = self.offers.get_mut(&a) {
                            o.remove(&item);
                        }
                    }
                }
                Event::Connected { item, agent } => {
                    if let Some(o) = self.offers.get_mut(&agent) {
                        o.remove(&item);
                    }
                    tracing::info!(item = %crate::log_id(&item), %agent, "agent took a conversation");
                    self.tell(
                        &item,
                        ItemEvent::Connected {
                            agent: agent.clone(),
                        },
                    );
                    self.watchers.remove(&item);
                    if let Some(s) = self.stays.get_mut(&item) {
                        s.answered = Some((Utc::now(), agent.clone()));
                    }
                    self.assigned.insert(item, agent);
                }
                Event::TimedOut { item } => {
                    tracing::info!(item = %crate::log_id(&item), "nobody took a conversation within the queue's maximum wait");
                    self.items.remove(&item);
                    self.close(&item, "timed_out");
                    if self.tell(&item, ItemEvent::TimedOut) {
                        self.watchers.remove(&item);
                    } else if self.timed_out.len() < 1000 {
                        self.timed_out.push(item);
                    }
                }
                // Chats see their place in the queue view; callers hear it.
                Event::Position { item, position } => {
                    self.tell(&item, ItemEvent::Position(position));
                }
            }
        }
    }
}

impl Center {
    pub fn new(configs: impl IntoIterator<Item = QueueConfig>) -> Self {
        Self {
            inner: Mutex::new(Inner {
                queues: Queues::new(configs),
                ..Inner::default()
            }),
            wake: Notify::new(),
            gave_up: Notify::new(),
            presence: Mutex::default(),
            desks: Mutex::default(),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut Inner, Instant) -> R) -> R {
        let r = f(&mut lock(&self.inner), Instant::now());
        self.wake.notify_one();
        r
    }

    /// Makes the agent known (or updates their queues and skills). A new agent is
    /// away, so no deadline moves: the ticker is not woken.
    pub fn add_agent(&self, agent: &str, queues: &[String], skills: &[String]) {
        lock(&self.inner)
            .queues
            .add_agent(agent, queues, skills, Instant::now());
    }

    /// The agent sets themselves available or away on this node.
    pub fn set_available(&self, agent: &str, available: bool) {
        let profile = self.with(|i, now| {
            let e = i.queues.set_available(agent, available, now);
            i.apply(e);
            i.queues.profile(agent)
        });
        if let (Some((queues, skills)), Some(tx)) = (profile, lock(&self.presence).as_ref()) {
            let _ = tx.send(Presence {
                agent: agent.to_string(),
                available,
                queues,
                skills,
            });
        }
    }

    /// Availability set on this node goes to the returned channel from now on.
    pub fn watch_presence(&self) -> tokio::sync::mpsc::UnboundedReceiver<Presence> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        *lock(&self.presence) = Some(tx);
        rx
    }

    /// Availability an agent set on another node (not told again).
    pub fn apply_presence(&self, p: &Presence) {
        self.with(|i, now| {
            i.queues.add_agent(&p.agent, &p.queues, &p.skills, now);
            let e = i.queues.set_available(&p.agent, p.available, now);
            i.apply(e);
        });
    }

    /// Another node holds the agent (true) or let them go (false).
    pub fn set_elsewhere(&self, agent: &str, elsewhere: bool) {
        self.with(|i, now| {
            let e = i.queues.set_elsewhere(agent, elsewhere, now);
            i.apply(e);
        });
    }

    /// Finished stays go to the returned channel from now on (the server writes
    /// them to the store).
    pub fn ledger(&self) -> tokio::sync::mpsc::Receiver<Stay> {
        let (tx, rx) = tokio::sync::mpsc::channel(LEDGER_BUFFER);
        lock(&self.inner).ledger = Some(tx);
        rx
    }

    /// A conversation joins a queue; false if it is already waiting or the queues
    /// are full.
    pub fn enqueue(
        &self,
        item: &str,
        queue: &str,
        needs: &[String],
        summary: &str,
        origin: Origin,
    ) -> bool {
        // A chat is offered on a desk; a call rings a phone.
        let chat = origin.channel != "phone";
        self.with(|i, now| {
            match if chat {
                i.queues.enqueue_chat(item, queue, needs, now)
            } else {
                i.queues.enqueue(item, queue, needs, now)
            } {
                Some(e) => {
                    i.stays.insert(
                        item.to_string(),
                        OpenStay {
                            queue: queue.to_string(),
                            origin,
                            enqueued: Utc::now(),
                            answered: None,
                        },
                    );
                    i.items.insert(
                        item.to_string(),
                        Item {
                            queue: queue.to_string(),
                            summary: summary.chars().take(500).collect(),
                        },
                    );
                    i.apply(e);
                    true
                }
                None => false,
            }
        })
    }

    /// A caller joins a queue, followed by their call task: offers, withdrawals,
    /// the connection or the time-out come on the returned channel. None if the
    /// item is already waiting or the queues are full.
    pub fn enqueue_watched(
        &self,
        item: &str,
        queue: &str,
        needs: &[String],
        summary: &str,
        origin: Origin,
    ) -> Option<tokio::sync::mpsc::Receiver<ItemEvent>> {
        let (tx, rx) = tokio::sync::mpsc::channel(WATCH_BUFFER);
        {
            let mut inner = lock(&self.inner);
            if inner.watchers.contains_key(item) {
                return None;
            }
            inner.watchers.insert(item.to_string(), tx);
        }
        if self.enqueue(item, queue, needs, summary, origin) {
            Some(rx)
        } else {
            lock(&self.inner).watchers.remove(item);
            None
        }
    }

    /// Queues an item that already waited elsewhere since `enqueued` (a chat a
    /// dead node left waiting): its stay counts from then.
    pub fn requeue(
        &self,
        item: &str,
        queue: &str,
        needs: &[String],
        summary: &str,
        origin: Origin,
        enqueued: DateTime<Utc>,
    ) -> bool {
        if !self.enqueue(item, queue, needs, summary, origin) {
            return false;
        }
        if let Some(stay) = lock(&self.inner).stays.get_mut(item) {
            stay.enqueued = enqueued;
        }
        true
    }

    /// The agent's desk asked this node something (it polls every few seconds).
    pub fn desk_seen(&self, agent: &str) {
        lock(&self.desks).insert(agent.to_string(), Instant::now());
    }

    /// In a cluster: chats are offered here only to agents whose desk has asked
    /// this node something within `within` (see [`Center::refresh_desks`]).
    pub fn desks_elsewhere(&self) {
        lock(&self.inner).queues.desks_elsewhere();
    }

    /// Marks which agents' desks talk to this node (asked within `within`);
    /// the agents whose desk is here.
    pub fn refresh_desks(&self, within: std::time::Duration) -> Vec<String> {
        let now = Instant::now();
        let here: Vec<String> = {
            let mut desks = lock(&self.desks);
            desks.retain(|_, seen| now.duration_since(*seen) < within);
            desks.keys().cloned().collect()
        };
        let (agents, _) = self.snapshot();
        self.with(|i, now| {
            for a in agents {
                let e = i.queues.set_desk(&a.id, here.contains(&a.id), now);
                i.apply(e);
            }
        });
        here
    }

    /// Takes a waiting item nobody is being offered out of the queues, to wait
    /// on another node (its stay goes on there); None when it is not waiting
    /// here or is being offered.
    pub fn hand_off(&self, item: &str) -> Option<HandedOff> {
        self.with(|i, _| {
            if !i.queues.hand_off(item) {
                return None;
            }
            i.items.remove(item);
            i.watchers.remove(item);
            let stay = i.stays.remove(item)?;
            Some(HandedOff {
                queue: stay.queue,
                origin: stay.origin,
                enqueued: stay.enqueued,
            })
        })
    }

    /// The caller left the queue (hung up, or gave up for voicemail).
    pub fn leave(&self, item: &str) {
        self.with(|i, now| {
            i.watchers.remove(item);
            i.items.remove(item);
            let taken = i.stays.get(item).is_some_and(|s| s.answered.is_some());
            i.close(item, if taken { "answered" } else { "abandoned" });
            let e = i.queues.leave(item, now);
            i.apply(e);
        });
    }

    /// The agent answers an offer; true if accepting gave them the conversation.
    pub fn answer(&self, item: &str, agent: &str, answer: Answer) -> bool {
        self.with(|i, now| {
            let e = i.queues.answer(item, agent, answer, now);
            if answer == Answer::Decline
                && let Some(o) = i.offers.get_mut(agent)
            {
                o.remove(item);
            }
            let connected = e.iter().any(
                |e| matches!(e, Event::Connected { item: it, agent: a } if it == item && a == agent),
            );
            i.apply(e);
            connected
        })
    }

    /// The agent is done with the conversation: wrap-up, then free.
    pub fn finish(&self, item: &str, agent: &str) -> bool {
        self.with(|i, now| {
            if i.assigned.get(item).is_none_or(|a| a != agent) {
                return false;
            }
            i.assigned.remove(item);
            i.live.remove(item);
            i.close(item, "answered");
            let queue = i.items.remove(item).map(|it| it.queue).unwrap_or_default();
            let e = i.queues.finish(agent, &queue, now);
            i.apply(e);
            true
        })
    }

    /// The agent is busy outside the queues (a callback they placed): offered
    /// nothing until `release`. True when they were available.
    pub fn occupy(&self, agent: &str) -> bool {
        lock(&self.inner).queues.occupy(agent)
    }

    /// The agent `occupy` made busy is done: wrap-up as `queue` sets it, then
    /// offers again.
    pub fn release(&self, agent: &str, queue: &str) {
        self.with(|i, now| {
            let e = i.queues.finish(agent, queue, now);
            i.apply(e);
        });
    }

    /// A bridged call's transcript goes to `conversation` (the desk follows it).
    pub fn attach(&self, item: &str, conversation: &str) {
        let mut inner = lock(&self.inner);
        if inner.assigned.contains_key(item) {
            inner
                .live
                .insert(item.to_string(), conversation.to_string());
        }
    }

    /// The calls `agent` is on now.
    pub fn calls_of(&self, agent: &str) -> Vec<LiveCall> {
        let inner = lock(&self.inner);
        let mut calls: Vec<LiveCall> = inner
            .live
            .iter()
            .filter(|(item, _)| inner.assigned.get(*item).is_some_and(|a| a == agent))
            .map(|(item, conversation)| LiveCall {
                call: item.clone(),
                conversation: conversation.clone(),
                summary: inner
                    .items
                    .get(item)
                    .map(|i| i.summary.clone())
                    .unwrap_or_default(),
            })
            .collect();
        calls.sort_by(|a, b| a.call.cmp(&b.call));
        calls
    }

    /// Whether `agent` may follow `conversation`'s turns: a chat they hold, or
    /// the conversation of a call they are on.
    pub fn follows(&self, conversation: &str, agent: &str) -> bool {
        let inner = lock(&self.inner);
        let is_theirs = |item: &str| inner.assigned.get(item).is_some_and(|a| a == agent);
        is_theirs(conversation)
            || inner
                .live
                .iter()
                .any(|(item, c)| c == conversation && is_theirs(item))
    }

    /// Whether `agent` has the conversation.
    pub fn holds(&self, item: &str, agent: &str) -> bool {
        lock(&self.inner)
            .assigned
            .get(item)
            .is_some_and(|a| a == agent)
    }

    pub fn offers(&self, agent: &str) -> Vec<Offer> {
        let inner = lock(&self.inner);
        let now = Instant::now();
        let mut out: Vec<Offer> = inner
            .offers
            .get(agent)
            .map(|o| {
                o.iter()
                    .filter(|(_, until)| **until > now)
                    .map(|(item, until)| {
                        let it = inner.items.get(item);
                        Offer {
                            item: item.clone(),
                            queue: it.map(|i| i.queue.clone()).unwrap_or_default(),
                            expires_in: until.saturating_duration_since(now).as_secs(),
                            summary: it.map(|i| i.summary.clone()).unwrap_or_default(),
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.sort_by(|a, b| a.item.cmp(&b.item));
        out
    }

    /// A queue's settings (the defaults for a queue nobody configured).
    pub fn queue_config(&self, queue: &str) -> QueueConfig {
        lock(&self.inner).queues.config(queue)
    }

    pub fn state(&self, agent: &str) -> Option<super::queue::AgentState> {
        lock(&self.inner).queues.state(agent)
    }

    /// The queues as a supervisor sees them.
    pub fn snapshot(&self) -> (Vec<super::queue::AgentView>, Vec<super::queue::WaitingView>) {
        let inner = lock(&self.inner);
        (inner.queues.agents(), inner.queues.waiting(Instant::now()))
    }

    /// The items waiting now, with where they came from and when they joined
    /// (a cluster's node writes them down for the others).
    pub fn waiting_items(&self) -> Vec<(String, String, Origin, DateTime<Utc>)> {
        let inner = lock(&self.inner);
        inner
            .queues
            .waiting(Instant::now())
            .into_iter()
            .filter_map(|w| {
                let stay = inner.stays.get(&w.item)?;
                Some((w.item, w.queue, stay.origin.clone(), stay.enqueued))
            })
            .collect()
    }

    /// Items that timed out since the last call.
    pub fn take_timed_out(&self) -> Vec<String> {
        std::mem::take(&mut lock(&self.inner).timed_out)
    }

    /// Waits until an item times out.
    pub async fn timed_out(&self) {
        self.gave_up.notified().await;
    }

    /// Ticks the queues at their deadlines until `stop`.
    pub async fn run(&self, stop: CancellationToken) {
        loop {
            let wait = lock(&self.inner)
                .queues
                .next_deadline()
                .map(|d| d.saturating_duration_since(Instant::now()))
                .unwrap_or(Duration::from_secs(3600));
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
                _ = self.wake.notified() => {}
            }
            let gave_up = {
                let mut inner = lock(&self.inner);
                let e = inner.queues.tick(Instant::now());
                inner.apply(e);
                !inner.timed_out.is_empty()
            };
            if gave_up {
                self.gave_up.notify_one();
            }
        }
    }
}

/// Conversations handed to a person wait here.
impl crate::dialogue::service::Desk for Center {
    fn enqueue(
        &self,
        item: &str,
        queue: &str,
        needs: &[String],
        summary: &str,
        channel: crate::dialogue::conversations::Channel,
        reason: String,
    ) -> bool {
        let origin = Origin {
            channel: channel.name().to_string(),
            reason,
        };
        Center::enqueue(self, item, queue, needs, summary, origin)
    }
}

#[cfg(test)]
mod tests;
