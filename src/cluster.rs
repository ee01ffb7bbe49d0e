//! Several kefu nodes as one contact center, over the PostgreSQL they share
//! (`cluster_node` in kefu.toml): an agent whose phone registered through one
//! node, and who went available on any node's desk, is offered the callers
//! waiting on every node, and is rung by one node at a time.
//!
//! Each node keeps its own queue machine (`agents::center`) for the callers it
//! holds; what is shared is the agents:
//! - **phones**: a REGISTER taken here is written to `agent_phones` and the
//!   other nodes copy the bindings into their registrars;
//! - **availability** set on a desk or by a feature code is written to
//!   `agent_presence` and applied on every node;
//! - **holds**: before a node rings an agent (and while the agent is offered,
//!   busy or wrapping up there) it holds them in `agent_claims`, atomically, so
//!   the other nodes mark them as held elsewhere and offer them nothing.
//!
//! Changes are told at once with NOTIFY on one channel; every second each node
//! also beats (`cluster_nodes`) and reads the holds again, so a lost
//! notification or a dead node (its holds lapse once it stops beating) costs at
//! most a few seconds. Why PostgreSQL and not Redis or NATS: the store is
//! already the one shared service every node needs, its row locks make a hold
//! atomic, and LISTEN/NOTIFY carries the few messages a second this needs; one
//! more service would be one more thing to run and to fail.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::agents::Phones;
use crate::agents::center::{Center, Presence};
use crate::agents::queue::AgentState;
use crate::agents::registrar::Binding;
use crate::lock;
use crate::store::cluster::{WaitingRow, live_since, now_ms};
use crate::store::{ConversationService, Store};

/// How often a node beats and reads the holds again.
const BEAT: Duration = Duration::from_secs(1);

/// A phone binding as the other nodes get it (expiry in wall-clock time).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Bound {
    contact: String,
    source: SocketAddr,
    transport: String,
    expires_ms: i64,
}

/// What one node tells the others.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "news", rename_all = "kebab-case")]
enum News {
    Presence(Presence),
    Phones {
        extension: String,
        bindings: Vec<Bound>,
    },
    Holds {
        agent: String,
    },
    Released {
        agent: String,
    },
    /// A text conversation's turns were stored here: `said` in all now.
    Chat {
        conversation: String,
        said: u64,
    },
    /// The sender has a free agent whose desk talks to it: `node`, give it
    /// your waiting chat `item`.
    Take {
        item: String,
        node: String,
    },
    /// The sender handed its waiting chat `item` to node `to`.
    Given {
        item: String,
        to: String,
        queue: String,
        channel: String,
        reason: String,
        enqueued_ms: i64,
    },
}

/// An agent's desk that asked nothing of a node for this long talks to
/// another node (desks poll every few seconds).
const DESK_GONE: Duration = Duration::from_secs(10);
/// A waiting chat asked for is not asked for again sooner.
const ASK_AGAIN: Duration = Duration::from_secs(5);

#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    from: String,
    #[serde(flatten)]
    news: News,
}

/// This node's part in the cluster.
#[derive(Debug)]
pub struct Cluster {
    node: String,
    store: Store,
    center: Arc<Center>,
    phones: Arc<Phones>,
    /// The text conversations (a chat goes on through any node).
    chats: Arc<ConversationService>,
    /// Agents this node holds.
    held: Mutex<HashSet<String>>,
    /// Agents another node holds, as last marked in the center.
    elsewhere: Mutex<HashMap<String, String>>,
    /// The waiting items last written down.
    written: Mutex<Vec<WaitingRow>>,
    /// Other nodes' waiting chats asked for, and when.
    asked: Mutex<HashMap<String, Instant>>,
}

impl Cluster {
    /// Joins: beats, copies the shared phones, availability and holds, and
    /// keeps them shared until `stop`.
    pub async fn join(
        node: &str,
        url: &str,
        store: Store,
        center: Arc<Center>,
        phones: Arc<Phones>,
        chats: Arc<ConversationService>,
        stop: CancellationToken,
    ) -> anyhow::Result<Arc<Self>> {
        let cluster = Arc::new(Self {
            node: node.to_string(),
            store,
            center,
            phones,
            chats,
            held: Mutex::default(),
            elsewhere: Mutex::default(),
            written: Mutex::default(),
            asked: Mutex::default(),
        });
        cluster.center.desks_elsewhere();
        let listener = crate::store::cluster::listen(url).await?;
        cluster.adopt_orphans(Some(node)).await?;
        cluster.store.heartbeat(node).await?;
        cluster.copy_shared().await?;
        cluster.sweep().await?;
        let presence = cluster.center.watch_presence();
        let registered = cluster.phones.watch();
        let commits = cluster.chats.conversations.watch_commits();
        tokio::spawn(
            cluster
                .clone()
                .tell(presence, registered, commits, stop.clone()),
        );
        tokio::spawn(cluster.clone().listen(listener, stop.clone()));
        tokio::spawn(cluster.clone().beat(stop));
        tracing::info!(node, "joined the cluster");
        Ok(cluster)
    }

    /// The phones and availability as the store has them.
    async fn copy_shared(&self) -> anyhow::Result<()> {
        for p in self.store.presences().await? {
            self.center.apply_presence(&p);
        }
        for (extension, json) in self.store.phones().await? {
            match serde_json::from_str::<Vec<Bound>>(&json) {
                Ok(bindings) => self.apply_phones(&extension, bindings),
                Err(e) => tracing::warn!(%extension, error = %e, "unreadable phone bindings"),
            }
        }
        Ok(())
    }

    fn apply_phones(&self, extension: &str, bindings: Vec<Bound>) {
        let (now, now_wall) = (Instant::now(), now_ms());
        let bindings = bindings
            .into_iter()
            .filter(|b| b.expires_ms > now_wall)
            .map(|b| Binding {
                contact: b.contact,
                source: b.source,
                transport: if b.transport == "tcp" { "tcp" } else { "udp" },
                expires_at: now + Duration::from_millis((b.expires_ms - now_wall) as u64),
            })
            .collect();
        lock(&self.phones.registrar).replace(extension, bindings);
    }

    async fn publish(&self, news: News) {
        let envelope = Envelope {
            from: self.node.clone(),
            news,
        };
        let sent = match serde_json::to_string(&envelope) {
            Ok(payload) => self.store.notify(&payload).await,
            Err(e) => Err(e.into()),
        };
        if let Err(e) = sent {
            tracing::warn!(error = format!("{e:#}"), "cannot tell the cluster");
        }
    }

    /// What happens on this node, written down and told to the others.
    async fn tell(
        self: Arc<Self>,
        mut presence: tokio::sync::mpsc::UnboundedReceiver<Presence>,
        mut registered: tokio::sync::mpsc::UnboundedReceiver<String>,
        mut commits: tokio::sync::broadcast::Receiver<(String, u64)>,
        stop: CancellationToken,
    ) {
        use tokio::sync::broadcast::error::RecvError;
        loop {
            let news = tokio::select! {
                () = stop.cancelled() => return,
                got = commits.recv() => match got {
                    Ok((conversation, said)) => News::Chat { conversation, said },
                    // Missed ones: a node with a stale copy finds out when it
                    // stores a turn, and reads the conversation again.
                    Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => return,
                },
                Some(p) = presence.recv() => {
                    if let Err(e) = self.store.save_presence(&p).await {
                        tracing::warn!(error = format!("{e:#}"), "cannot share an agent's availability");
                    }
                    News::Presence(p)
                }
                Some(extension) = registered.recv() => {
                    let bindings = self.bindings(&extension);
                    let json = serde_json::to_string(&bindings).unwrap_or_else(|_| "[]".into());
                    if let Err(e) = self.store.save_phones(&extension, &json, &self.node).await {
                        tracing::warn!(error = format!("{e:#}"), "cannot share a phone's registration");
                    }
                    News::Phones { extension, bindings }
                }
                else => return,
            };
            self.publish(news).await;
        }
    }

    /// An extension's live bindings here, with wall-clock expiries.
    fn bindings(&self, extension: &str) -> Vec<Bound> {
        let (now, now_wall) = (Instant::now(), now_ms());
        lock(&self.phones.registrar)
            .contacts(extension, now)
            .into_iter()
            .map(|b| Bound {
                contact: b.contact,
                source: b.source,
                transport: b.transport.to_string(),
                expires_ms: now_wall
                    + b.expires_at.saturating_duration_since(now).as_millis() as i64,
            })
            .collect()
    }

    /// What the other nodes tell.
    async fn listen(
        self: Arc<Self>,
        mut listener: sqlx::postgres::PgListener,
        stop: CancellationToken,
    ) {
        loop {
            let got = tokio::select! {
                () = stop.cancelled() => return,
                got = listener.try_recv() => got,
            };
            match got {
                Ok(Some(n)) => match serde_json::from_str::<Envelope>(n.payload()) {
                    Ok(e) if e.from != self.node => self.apply(e),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "unreadable cluster news"),
                },
                // The connection dropped and sqlx reconnects: what was told
                // meanwhile is read from the tables.
                Ok(None) => {
                    tracing::warn!(
                        "the cluster's notifications were interrupted; reading the tables again"
                    );
                    if let Err(e) = self.copy_shared().await {
                        tracing::warn!(
                            error = format!("{e:#}"),
                            "cannot read the cluster's tables"
                        );
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen to the cluster");
                    tokio::time::sleep(BEAT).await;
                }
            }
        }
    }

    fn apply(self: &Arc<Self>, e: Envelope) {
        match e.news {
            News::Presence(p) => self.center.apply_presence(&p),
            News::Phones {
                extension,
                bindings,
            } => self.apply_phones(&extension, bindings),
            News::Holds { agent } => self.mark(&agent, Some(&e.from)),
            News::Released { agent } => {
                let theirs = lock(&self.elsewhere).get(&agent) == Some(&e.from);
                if theirs {
                    self.mark(&agent, None);
                }
            }
            News::Take { item, node } if node == self.node => {
                let me = self.clone();
                tokio::spawn(async move { me.give(&item, &e.from).await });
            }
            News::Given {
                item,
                to,
                queue,
                channel,
                reason,
                enqueued_ms,
            } if to == self.node => {
                let me = self.clone();
                let row = WaitingRow {
                    item,
                    queue,
                    node: e.from,
                    channel,
                    reason,
                    enqueued_ms,
                };
                tokio::spawn(async move { me.take_given(row).await });
            }
            News::Take { .. } | News::Given { .. } => {}
            News::Chat { conversation, said } => {
                let chats = self.chats.clone();
                tokio::spawn(async move {
                    if let Err(e) = chats.catch_up(&conversation, said).await {
                        tracing::warn!(error = %e, conversation = %crate::log_id(&conversation), "cannot read a conversation another node changed");
                    }
                });
            }
        }
    }

    /// Marks the agent held by `node` (or by nobody else) in the center.
    fn mark(&self, agent: &str, node: Option<&str>) {
        let changed = {
            let mut elsewhere = lock(&self.elsewhere);
            match node {
                Some(n) => elsewhere.insert(agent.to_string(), n.to_string()).is_none(),
                None => elsewhere.remove(agent).is_some(),
            }
        };
        if changed {
            self.center.set_elsewhere(agent, node.is_some());
        }
    }

    async fn beat(self: Arc<Self>, stop: CancellationToken) {
        let mut every = tokio::time::interval(BEAT);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = every.tick() => {}
            }
            if let Err(e) = self.sweep().await {
                tracing::warn!(error = format!("{e:#}"), "cannot keep the cluster's state");
            }
        }
        // Leaving: the agents this node holds are free at once.
        let held: Vec<String> = lock(&self.held).drain().collect();
        for agent in held {
            let _ = self.store.release_agent(&agent, &self.node).await;
        }
    }

    /// Beats; holds the agents this node's center has busy and lets go of the
    /// ones it has free; marks the agents other live nodes hold.
    async fn sweep(&self) -> anyhow::Result<()> {
        self.store.heartbeat(&self.node).await?;
        let (agents, _) = self.center.snapshot();
        for a in agents {
            let busy = matches!(
                a.state,
                AgentState::Offered | AgentState::Busy | AgentState::WrapUp
            );
            let holding = lock(&self.held).contains(&a.id);
            if busy && !holding && !a.elsewhere {
                self.hold(&a.id).await;
            } else if !busy && holding {
                self.release(&a.id).await;
            }
        }
        let held_elsewhere: HashMap<String, String> = self
            .store
            .held_agents(live_since())
            .await?
            .into_iter()
            .filter(|(_, node)| *node != self.node)
            .collect();
        let marked: Vec<String> = lock(&self.elsewhere).keys().cloned().collect();
        for agent in marked {
            if !held_elsewhere.contains_key(&agent) {
                self.mark(&agent, None);
            }
        }
        for (agent, node) in &held_elsewhere {
            self.mark(agent, Some(node));
        }
        self.share_waiting().await?;
        self.adopt_orphans(None).await?;
        let desks = self.center.refresh_desks(DESK_GONE);
        self.ask_for_chats(&desks).await
    }

    /// Asks other nodes for their oldest waiting chats, one for each free agent
    /// whose desk talks to this node (in that agent's queues): a chat is
    /// offered on a desk, so it must wait where the desk is.
    async fn ask_for_chats(&self, desks: &[String]) -> anyhow::Result<()> {
        if desks.is_empty() {
            return Ok(());
        }
        let (agents, _) = self.center.snapshot();
        let mut free: Vec<Vec<String>> = agents
            .into_iter()
            .filter(|a| a.state == AgentState::Available && !a.elsewhere && desks.contains(&a.id))
            .map(|a| a.queues)
            .collect();
        if free.is_empty() {
            return Ok(());
        }
        let now = Instant::now();
        lock(&self.asked).retain(|_, at| now.duration_since(*at) < ASK_AGAIN);
        for r in self.store.waiting_elsewhere(&self.node).await? {
            if r.channel == "phone" || lock(&self.asked).contains_key(&r.item) {
                continue;
            }
            let Some(agent) = free.iter().position(|q| q.contains(&r.queue)) else {
                continue;
            };
            free.swap_remove(agent);
            lock(&self.asked).insert(r.item.clone(), now);
            self.publish(News::Take {
                item: r.item,
                node: r.node,
            })
            .await;
            if free.is_empty() {
                break;
            }
        }
        Ok(())
    }

    /// Another node asked for a chat waiting here: handed over when nobody here
    /// is being offered it.
    async fn give(&self, item: &str, to: &str) {
        let Some(h) = self.center.hand_off(item) else {
            return;
        };
        tracing::info!(item = %crate::log_id(item), queue = %h.queue, %to, "a waiting chat goes to the node its agent's desk talks to");
        self.publish(News::Given {
            item: item.to_string(),
            to: to.to_string(),
            queue: h.queue,
            channel: h.origin.channel,
            reason: h.origin.reason,
            enqueued_ms: crate::store::ms(h.enqueued),
        })
        .await;
        if let Err(e) = self.share_waiting().await {
            tracing::warn!(
                error = format!("{e:#}"),
                "cannot write down what waits here"
            );
        }
    }

    /// A chat another node handed here waits in this node's queue; one that
    /// cannot (its conversation unreadable, the queue full) is recorded as an
    /// abandoned stay rather than lost.
    async fn take_given(&self, row: WaitingRow) {
        if self.requeue(&row).await {
            tracing::info!(item = %crate::log_id(&row.item), queue = %row.queue, from = %row.node, "a chat handed here waits here");
            return;
        }
        tracing::warn!(item = %crate::log_id(&row.item), queue = %row.queue, "a chat handed here cannot wait here; recorded as abandoned");
        if let Err(e) = self.store.record_stay(&abandoned(row)).await {
            tracing::warn!(error = format!("{e:#}"), "cannot record a queue stay");
        }
    }

    /// Writes down what waits here, when it changed.
    async fn share_waiting(&self) -> anyhow::Result<()> {
        let rows: Vec<WaitingRow> = self
            .center
            .waiting_items()
            .into_iter()
            .map(|(item, queue, origin, enqueued)| WaitingRow {
                item,
                queue,
                node: self.node.clone(),
                channel: origin.channel,
                reason: origin.reason,
                enqueued_ms: crate::store::ms(enqueued),
            })
            .collect();
        if *lock(&self.written) == rows {
            return Ok(());
        }
        self.store.write_waiting(&self.node, &rows).await?;
        *lock(&self.written) = rows;
        Ok(())
    }

    /// The items a dead node left waiting: a chat waits on in this node's
    /// queue (its conversation is in the store), from when it first queued;
    /// a caller was cut off with the node, so their stay is recorded as
    /// abandoned, not lost from the queue's report. `own`: this node's name
    /// when it starts (what it left when it stopped).
    async fn adopt_orphans(&self, own: Option<&str>) -> anyhow::Result<()> {
        for r in self.store.take_orphans(own).await? {
            if r.channel != "phone" && self.requeue(&r).await {
                tracing::warn!(item = %crate::log_id(&r.item), queue = %r.queue, node = %r.node, "a dead node's waiting chat waits here now");
                continue;
            }
            tracing::warn!(item = %crate::log_id(&r.item), queue = %r.queue, node = %r.node, "a dead node's waiting item is recorded as abandoned");
            self.store.record_stay(&abandoned(r)).await?;
        }
        Ok(())
    }

    /// Queues another node's waiting chat here (a dead node's, or one handed
    /// over); false when it cannot be (its conversation is not in the store,
    /// or the queue is full).
    async fn requeue(&self, r: &WaitingRow) -> bool {
        let Ok(entry) = self.chats.entry(&r.item).await else {
            return false;
        };
        let (channel, lang, said) = {
            let e = lock(&entry);
            let said = e
                .conversation
                .history
                .iter()
                .rev()
                .find(|t| t.speaker == crate::dialogue::engine::Speaker::Customer)
                .map(|t| t.text.clone())
                .unwrap_or_default();
            (e.channel, e.conversation.lang, said)
        };
        let origin = crate::agents::center::Origin {
            channel: channel.name().to_string(),
            reason: r.reason.clone(),
        };
        self.center.requeue(
            &r.item,
            &r.queue,
            &[lang.code().to_string()],
            &said,
            origin,
            crate::store::from_ms(r.enqueued_ms),
        )
    }

    /// Holds the agent for this node; false when another node does. A store
    /// that cannot answer does not stop calls: the agent is rung.
    async fn hold(&self, agent: &str) -> bool {
        match self
            .store
            .claim_agent(agent, &self.node, live_since())
            .await
        {
            Ok(true) => {
                let new = lock(&self.held).insert(agent.to_string());
                if new {
                    self.publish(News::Holds {
                        agent: agent.to_string(),
                    })
                    .await;
                }
                true
            }
            Ok(false) => false,
            Err(e) => {
                tracing::warn!(error = format!("{e:#}"), %agent, "cannot hold an agent; ringing them anyway");
                true
            }
        }
    }

    async fn release(&self, agent: &str) {
        lock(&self.held).remove(agent);
        if let Err(e) = self.store.release_agent(agent, &self.node).await {
            tracing::warn!(error = format!("{e:#}"), %agent, "cannot release an agent");
        }
        self.publish(News::Released {
            agent: agent.to_string(),
        })
        .await;
    }
}

#[async_trait::async_trait]
impl crate::agents::Claims for Cluster {
    async fn claim(&self, what: &str) -> bool {
        let ok = self.hold(what).await;
        if !ok {
            tracing::info!(%what, "held by another node");
        }
        ok
    }

    async fn release(&self, what: &str) {
        Cluster::release(self, what).await;
    }
}

/// A waiting item's stay, ended now unanswered.
fn abandoned(r: WaitingRow) -> crate::agents::center::Stay {
    crate::agents::center::Stay {
        item: r.item,
        queue: r.queue,
        channel: r.channel,
        reason: r.reason,
        enqueued: crate::store::from_ms(r.enqueued_ms),
        answered: None,
        agent: None,
        ended: chrono::Utc::now(),
        outcome: "abandoned",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn news_reads_back_as_written() {
        let all = [
            News::Presence(Presence {
                agent: "a1".into(),
                available: true,
                queues: vec!["support-en".into()],
                skills: vec![],
            }),
            News::Phones {
                extension: "2001".into(),
                bindings: vec![Bound {
                    contact: "sip:2001@127.0.0.1:5099".into(),
                    source: "127.0.0.1:5099".parse().unwrap(),
                    transport: "udp".into(),
                    expires_ms: 1,
                }],
            },
            News::Holds { agent: "a1".into() },
            News::Released { agent: "a1".into() },
        ];
        for news in all {
            let e = Envelope {
                from: "b".into(),
                news: news.clone(),
            };
            let text = serde_json::to_string(&e).unwrap();
            let back: Envelope = serde_json::from_str(&text).unwrap();
            assert_eq!((back.from.as_str(), back.news), ("b", news), "{text}");
        }
    }
}
