//! Queue routing, sans I/O: who waits (calls and chats, by id), which agents are
//! free, and who is offered what. Inputs are method calls with the time; outputs
//! are `Event`s the edges carry out (ring an agent's phone, show an offer on the
//! desk, play a position announcement, give up after the maximum wait).
//!
//! Rules:
//! - Waiting items are served oldest first, across queues.
//! - An offer goes to one agent (longest idle, round robin, or the best skills
//!   match), or to every eligible agent at once (ring-all). It lasts
//!   `ring_timeout`; a decline or no answer moves on to the next agent. An agent
//!   who lets an offer ring out is set away (their phone is unattended).
//! - When every eligible agent has been tried, the next round starts one
//!   `ring_timeout` later.
//! - After a conversation the agent has `wrap_up` before the next offer.
//! - An item still waiting after `max_wait` times out (the edge offers voicemail
//!   or a callback and opens a ticket).

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// The agent free the longest.
    #[default]
    LongestIdle,
    /// Agents in turn (by id), from after the last one offered.
    RoundRobin,
    /// Every eligible agent at once; the first to accept gets it.
    RingAll,
    /// Only agents with every skill the item needs; the one with the fewest other
    /// skills (keeping generalists free), then the longest idle.
    Skills,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueConfig {
    pub name: String,
    pub strategy: Strategy,
    pub max_wait: Duration,
    pub ring_timeout: Duration,
    pub wrap_up: Duration,
    /// How often a waiting caller hears their position (None: never).
    pub announce_every: Option<Duration>,
    /// What callers hear while they wait, a file under `audio/` (looped).
    pub hold_music: String,
    /// Whether calls bridged from this queue are recorded.
    pub record: bool,
    /// Time to solve a ticket of normal priority.
    pub sla: Duration,
}

impl QueueConfig {
    /// A queue with the defaults: longest idle, 5 min maximum wait, 20 s to
    /// answer an offer, 10 s wrap-up, position every 60 s.
    pub fn named(name: &str) -> Self {
        Self {
            name: name.to_string(),
            strategy: Strategy::LongestIdle,
            max_wait: Duration::from_secs(300),
            ring_timeout: Duration::from_secs(20),
            wrap_up: Duration::from_secs(10),
            announce_every: Some(Duration::from_secs(60)),
            hold_music: "hold.wav".into(),
            record: false,
            sla: Duration::from_secs(24 * 3600),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AgentState {
    Available,
    /// Being offered an item (ringing).
    Offered,
    Busy,
    WrapUp,
    Away,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Offer `item` to these agents until `until`.
    Offer {
        item: String,
        agents: Vec<String>,
        until: Instant,
    },
    /// Stop offering `item` to these agents (someone else took it, it timed out,
    /// the caller left).
    Withdraw { item: String, agents: Vec<String> },
    /// Tell the caller their place in the queue (1: next).
    Position { item: String, position: usize },
    /// `agent` accepted `item`: connect them.
    Connected { item: String, agent: String },
    /// Nobody took `item` within the queue's maximum wait.
    TimedOut { item: String },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    Accept,
    Decline,
}

#[derive(Clone, Debug)]
struct Agent {
    queues: Vec<String>,
    skills: Vec<String>,
    state: AgentState,
    /// When they last became free (for longest idle).
    idle_since: Instant,
    wrap_until: Option<Instant>,
    /// Another node of the cluster holds them (rings them, or they are on its
    /// call): offered nothing here until it lets them go.
    elsewhere: bool,
    /// Their desk talks to this node: only then can a chat be offered to them
    /// here (a call rings their phone, which any node reaches).
    desk_here: bool,
}

#[derive(Clone, Debug)]
struct Waiting {
    item: String,
    queue: String,
    needs: Vec<String>,
    since: Instant,
    offered_to: Vec<String>,
    offer_until: Option<Instant>,
    tried: HashSet<String>,
    /// A new round of offers starts no earlier than this.
    retry_at: Option<Instant>,
    next_announce: Option<Instant>,
    /// Offered on a desk only (a chat), not by ringing a phone.
    desk_only: bool,
}

/// An agent as a supervisor sees them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AgentView {
    pub id: String,
    pub state: AgentState,
    pub queues: Vec<String>,
    /// Held by another node of the cluster (ringing there, or on its call).
    pub elsewhere: bool,
}

/// A waiting item as a supervisor sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WaitingView {
    pub item: String,
    pub queue: String,
    pub waited_secs: u64,
    pub offered_to: Vec<String>,
    /// In a cluster: the node the item waits on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

#[derive(Debug, Default)]
pub struct Queues {
    configs: BTreeMap<String, QueueConfig>,
    agents: BTreeMap<String, Agent>,
    /// Oldest first.
    waiting: Vec<Waiting>,
    /// Round robin: the agent offered last, per queue.
    last_offered: BTreeMap<String, String>,
    /// In a cluster, a desk is elsewhere until it shows up here.
    desks_elsewhere: bool,
}

/// Items waiting at most (a full queue refuses more: the edge plays "all agents
/// are busy" and opens a ticket at once).
pub const MAX_WAITING: usize = 10_000;

impl Queues {
    pub fn new(configs: impl IntoIterator<Item = QueueConfig>) -> Self {
        Self {
            configs: configs.into_iter().map(|c| (c.name.clone(), c)).collect(),
            ..Self::default()
        }
    }

    /// The queue's settings; a queue nobody configured has the defaults.
    pub fn config(&self, queue: &str) -> QueueConfig {
        self.configs
            .get(queue)
            .cloned()
            .unwrap_or_else(|| QueueConfig::named(queue))
    }

    /// Adds (or updates) an agent; a new one starts away.
    pub fn add_agent(&mut self, id: &str, queues: &[String], skills: &[String], now: Instant) {
        let a = self.agents.entry(id.to_string()).or_insert(Agent {
            queues: Vec::new(),
            skills: Vec::new(),
            state: AgentState::Away,
            idle_since: now,
            wrap_until: None,
            elsewhere: false,
            desk_here: !self.desks_elsewhere,
        });
        a.queues = queues.to_vec();
        a.skills = skills.to_vec();
    }

    pub fn state(&self, agent: &str) -> Option<AgentState> {
        self.agents.get(agent).map(|a| a.state)
    }

    /// The agent's queues and skills.
    pub fn profile(&self, agent: &str) -> Option<(Vec<String>, Vec<String>)> {
        self.agents
            .get(agent)
            .map(|a| (a.queues.clone(), a.skills.clone()))
    }

    /// Another node holds the agent (true), or let them go (false): only an
    /// agent nobody else holds is offered anything here.
    pub fn set_elsewhere(&mut self, agent: &str, elsewhere: bool, now: Instant) -> Vec<Event> {
        match self.agents.get_mut(agent) {
            Some(a) if a.elsewhere != elsewhere => {
                a.elsewhere = elsewhere;
                if elsewhere {
                    Vec::new()
                } else {
                    a.idle_since = now;
                    self.dispatch(now)
                }
            }
            _ => Vec::new(),
        }
    }

    /// In a cluster: agents' desks may talk to other nodes, so none is taken to
    /// be here until `set_desk` says so.
    pub fn desks_elsewhere(&mut self) {
        self.desks_elsewhere = true;
        for a in self.agents.values_mut() {
            a.desk_here = false;
        }
    }

    /// The agent's desk talks to this node (true) or no longer does: chats are
    /// offered to them here only while it does.
    pub fn set_desk(&mut self, agent: &str, here: bool, now: Instant) -> Vec<Event> {
        match self.agents.get_mut(agent) {
            Some(a) if a.desk_here != here => {
                a.desk_here = here;
                if here { self.dispatch(now) } else { Vec::new() }
            }
            _ => Vec::new(),
        }
    }

    /// The agent sets themselves available or away (from the desk or a feature
    /// code). Busy, offered and wrap-up agents finish those first.
    pub fn set_available(&mut self, agent: &str, available: bool, now: Instant) -> Vec<Event> {
        let Some(a) = self.agents.get_mut(agent) else {
            return Vec::new();
        };
        match (a.state, available) {
            (AgentState::Away, true) => {
                a.state = AgentState::Available;
                a.idle_since = now;
            }
            (AgentState::Available, false) => a.state = AgentState::Away,
            _ => {}
        }
        self.dispatch(now)
    }

    /// The agent is busy outside the queues (a callback they placed): no offers
    /// until `finish`. True when they were available (only then does their
    /// `finish` follow).
    pub fn occupy(&mut self, agent: &str) -> bool {
        match self.agents.get_mut(agent) {
            Some(a) if a.state == AgentState::Available => {
                a.state = AgentState::Busy;
                true
            }
            _ => false,
        }
    }

    /// A caller or chat joins `queue`; `needs` are skills a skills-based queue
    /// requires (a language, a product line). None when the queue system is full.
    pub fn enqueue(
        &mut self,
        item: &str,
        queue: &str,
        needs: &[String],
        now: Instant,
    ) -> Option<Vec<Event>> {
        self.enqueue_item(item, queue, needs, false, now)
    }

    /// [`Queues::enqueue`] for a chat, which only an agent whose desk is here
    /// can be offered.
    pub fn enqueue_chat(
        &mut self,
        item: &str,
        queue: &str,
        needs: &[String],
        now: Instant,
    ) -> Option<Vec<Event>> {
        self.enqueue_item(item, queue, needs, true, now)
    }

    fn enqueue_item(
        &mut self,
        item: &str,
        queue: &str,
        needs: &[String],
        desk_only: bool,
        now: Instant,
    ) -> Option<Vec<Event>> {
        if self.waiting.len() >= MAX_WAITING || self.waiting.iter().any(|w| w.item == item) {
            return None;
        }
        let config = self.config(queue);
        self.waiting.push(Waiting {
            item: item.to_string(),
            queue: queue.to_string(),
            needs: needs.to_vec(),
            since: now,
            offered_to: Vec::new(),
            offer_until: None,
            tried: HashSet::new(),
            retry_at: None,
            next_announce: config.announce_every.map(|_| now),
            desk_only,
        });
        let mut events = self.dispatch(now);
        events.extend(self.announce(now));
        Some(events)
    }

    /// An agent answered an offer.
    pub fn answer(&mut self, item: &str, agent: &str, answer: Answer, now: Instant) -> Vec<Event> {
        let Some(i) = self
            .waiting
            .iter()
            .position(|w| w.item == item && w.offered_to.iter().any(|a| a == agent))
        else {
            return Vec::new();
        };
        let mut events = Vec::new();
        match answer {
            Answer::Accept => {
                let w = self.waiting.remove(i);
                let others: Vec<String> = w
                    .offered_to
                    .iter()
                    .filter(|a| *a != agent)
                    .cloned()
                    .collect();
                for o in &others {
                    self.free(o, now);
                }
                if !others.is_empty() {
                    events.push(Event::Withdraw {
                        item: item.to_string(),
                        agents: others,
                    });
                }
                if let Some(a) = self.agents.get_mut(agent) {
                    a.state = AgentState::Busy;
                }
                events.push(Event::Connected {
                    item: item.to_string(),
                    agent: agent.to_string(),
                });
            }
            Answer::Decline => {
                let w = &mut self.waiting[i];
                w.offered_to.retain(|a| a != agent);
                if w.offered_to.is_empty() {
                    w.offer_until = None;
                }
                self.free(agent, now);
            }
        }
        events.extend(self.dispatch(now));
        events
    }

    /// The caller hung up, or the chat closed, while waiting.
    /// Takes a waiting item out that no agent is being offered (to wait on
    /// another node instead); false when it is not waiting here or is offered.
    pub fn hand_off(&mut self, item: &str) -> bool {
        match self.waiting.iter().position(|w| w.item == item) {
            Some(i) if self.waiting[i].offered_to.is_empty() => {
                self.waiting.remove(i);
                true
            }
            _ => false,
        }
    }

    pub fn leave(&mut self, item: &str, now: Instant) -> Vec<Event> {
        let Some(i) = self.waiting.iter().position(|w| w.item == item) else {
            return Vec::new();
        };
        let w = self.waiting.remove(i);
        for a in &w.offered_to {
            self.free(a, now);
        }
        let mut events = Vec::new();
        if !w.offered_to.is_empty() {
            events.push(Event::Withdraw {
                item: w.item,
                agents: w.offered_to,
            });
        }
        events.extend(self.dispatch(now));
        events
    }

    /// The agent's conversation ended: wrap-up, then available again.
    pub fn finish(&mut self, agent: &str, queue: &str, now: Instant) -> Vec<Event> {
        let wrap = self.config(queue).wrap_up;
        if let Some(a) = self.agents.get_mut(agent)
            && a.state == AgentState::Busy
        {
            a.state = AgentState::WrapUp;
            a.wrap_until = Some(now + wrap);
        }
        self.tick(now)
    }

    /// Deadlines: offers ringing out, wrap-ups ending, maximum waits, new rounds,
    /// announcements.
    pub fn tick(&mut self, now: Instant) -> Vec<Event> {
        let mut events = Vec::new();
        for a in self.agents.values_mut() {
            if a.state == AgentState::WrapUp && a.wrap_until.is_some_and(|t| t <= now) {
                a.state = AgentState::Available;
                a.wrap_until = None;
                a.idle_since = now;
            }
        }
        // Offers nobody answered: those agents are away from their phones.
        let mut rang_out = Vec::new();
        for w in &mut self.waiting {
            if w.offer_until.is_some_and(|t| t <= now) {
                let agents = std::mem::take(&mut w.offered_to);
                w.offer_until = None;
                events.push(Event::Withdraw {
                    item: w.item.clone(),
                    agents: agents.clone(),
                });
                rang_out.extend(agents);
            }
        }
        for a in rang_out {
            if let Some(agent) = self.agents.get_mut(&a) {
                agent.state = AgentState::Away;
            }
        }
        // Waited too long.
        let configs = &self.configs;
        let mut gone = Vec::new();
        self.waiting.retain(|w| {
            let max = configs
                .get(&w.queue)
                .map_or(QueueConfig::named(&w.queue).max_wait, |c| c.max_wait);
            let expired = now.duration_since(w.since) >= max;
            if expired {
                gone.push(w.clone());
            }
            !expired
        });
        for w in gone {
            for a in &w.offered_to {
                if let Some(agent) = self.agents.get_mut(a) {
                    agent.state = AgentState::Available;
                    agent.idle_since = now;
                }
            }
            if !w.offered_to.is_empty() {
                events.push(Event::Withdraw {
                    item: w.item.clone(),
                    agents: w.offered_to.clone(),
                });
            }
            events.push(Event::TimedOut { item: w.item });
        }
        events.extend(self.dispatch(now));
        events.extend(self.announce(now));
        events
    }

    /// The next time `tick` has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        let agents = self.agents.values().filter_map(|a| a.wrap_until);
        let waiting = self.waiting.iter().flat_map(|w| {
            let max = w.since + self.config(&w.queue).max_wait;
            [Some(max), w.offer_until, w.retry_at, w.next_announce]
                .into_iter()
                .flatten()
        });
        agents.chain(waiting).min()
    }

    pub fn agents(&self) -> Vec<AgentView> {
        self.agents
            .iter()
            .map(|(id, a)| AgentView {
                id: id.clone(),
                state: a.state,
                queues: a.queues.clone(),
                elsewhere: a.elsewhere,
            })
            .collect()
    }

    pub fn waiting(&self, now: Instant) -> Vec<WaitingView> {
        self.waiting
            .iter()
            .map(|w| WaitingView {
                item: w.item.clone(),
                queue: w.queue.clone(),
                waited_secs: now.duration_since(w.since).as_secs(),
                offered_to: w.offered_to.clone(),
                node: None,
            })
            .collect()
    }

    fn free(&mut self, agent: &str, now: Instant) {
        if let Some(a) = self.agents.get_mut(agent)
            && a.state == AgentState::Offered
        {
            a.state = AgentState::Available;
            a.idle_since = now;
        }
    }

    fn announce(&mut self, now: Instant) -> Vec<Event> {
        let mut events = Vec::new();
        let mut positions: BTreeMap<String, usize> = BTreeMap::new();
        for i in 0..self.waiting.len() {
            let queue = self.waiting[i].queue.clone();
            let position = positions.entry(queue.clone()).or_insert(0);
            *position += 1;
            let every = self.config(&queue).announce_every;
            let w = &mut self.waiting[i];
            if let (Some(at), Some(every)) = (w.next_announce, every)
                && at <= now
                && w.offered_to.is_empty()
            {
                events.push(Event::Position {
                    item: w.item.clone(),
                    position: *position,
                });
                w.next_announce = Some(now + every);
            }
        }
        events
    }

    /// The agents of `available` who may be offered `w`.
    fn eligible(&self, w: &Waiting, strategy: Strategy, available: &[String]) -> Vec<String> {
        available
            .iter()
            .filter(|id| {
                self.agents.get(*id).is_some_and(|a| {
                    a.queues.contains(&w.queue)
                        && !w.tried.contains(*id)
                        && (a.desk_here || !w.desk_only)
                        && (strategy != Strategy::Skills
                            || w.needs.iter().all(|n| a.skills.contains(n)))
                })
            })
            .cloned()
            .collect()
    }

    /// Offers waiting items, oldest first, to available agents. The available
    /// agents are listed once, so a busy center (many waiting, few free) costs
    /// about one pass over each, not their product.
    fn dispatch(&mut self, now: Instant) -> Vec<Event> {
        let mut events = Vec::new();
        let mut available: Vec<String> = self
            .agents
            .iter()
            .filter(|(_, a)| a.state == AgentState::Available && !a.elsewhere)
            .map(|(id, _)| id.clone())
            .collect();
        for i in 0..self.waiting.len() {
            if available.is_empty() {
                break;
            }
            if !self.waiting[i].offered_to.is_empty()
                || self.waiting[i].retry_at.is_some_and(|t| t > now)
            {
                continue;
            }
            let config = self.config(&self.waiting[i].queue);
            let mut candidates = self.eligible(&self.waiting[i], config.strategy, &available);
            if candidates.is_empty() && !self.waiting[i].tried.is_empty() {
                // Everyone was tried: a new round, after a pause.
                let w = &mut self.waiting[i];
                w.tried.clear();
                if w.retry_at.is_none() {
                    w.retry_at = Some(now + config.ring_timeout);
                    continue;
                }
                w.retry_at = None;
                candidates = self.eligible(&self.waiting[i], config.strategy, &available);
            }
            self.waiting[i].retry_at = None;
            if candidates.is_empty() {
                continue;
            }
            let chosen = self.choose(&self.waiting[i], &config, candidates);
            available.retain(|a| !chosen.contains(a));
            for a in &chosen {
                if let Some(agent) = self.agents.get_mut(a) {
                    agent.state = AgentState::Offered;
                }
            }
            if let Some(last) = chosen.last() {
                self.last_offered.insert(config.name.clone(), last.clone());
            }
            let until = now + config.ring_timeout;
            let w = &mut self.waiting[i];
            w.tried.extend(chosen.iter().cloned());
            w.offered_to = chosen.clone();
            w.offer_until = Some(until);
            events.push(Event::Offer {
                item: w.item.clone(),
                agents: chosen,
                until,
            });
        }
        events
    }

    fn choose(
        &self,
        w: &Waiting,
        config: &QueueConfig,
        mut candidates: Vec<String>,
    ) -> Vec<String> {
        let idle = |id: &String| self.agents.get(id).map(|a| a.idle_since);
        match config.strategy {
            Strategy::RingAll => candidates,
            Strategy::LongestIdle => {
                candidates.sort_by_key(|id| (idle(id), id.clone()));
                candidates.truncate(1);
                candidates
            }
            Strategy::Skills => {
                let extra = |id: &String| {
                    self.agents.get(id).map_or(usize::MAX, |a| {
                        a.skills.iter().filter(|s| !w.needs.contains(s)).count()
                    })
                };
                candidates.sort_by_key(|id| (extra(id), idle(id), id.clone()));
                candidates.truncate(1);
                candidates
            }
            Strategy::RoundRobin => {
                // Candidates are in id order; take the first after the last offered.
                let after = self.last_offered.get(&config.name);
                let pick = after
                    .and_then(|last| candidates.iter().find(|c| *c > last))
                    .or_else(|| candidates.first())
                    .cloned();
                pick.into_iter().collect()
            }
        }
    }
}

#[cfg(test)]
mod tests;
