//! Follow-up calls from the desk: an agent clicks to call back on a ticket, kefu
//! rings the agent first (the desk's softphone when it is on, else their
//! registered phone, else their fixed address: `transfer::agent_reach`), and once
//! they answer dials the customer through the trunk and joins the two
//! (`call::join`). Ringing the agent first means a customer who answers never
//! waits for a person. How the try ended goes on the ticket (the store's
//! `callback_tried`: its callback row and its history) and a call record is kept
//! under the customer (transport `callback`), so the customer's panel shows it.
//!
//! `Callbacks` is the registry the API asks: one call per ticket and per agent at
//! a time, each with its stage, and a way to hang it up.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rsipstack::dialog::dialog::DialogState;
use rsipstack::sip::StatusCode;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::join::{self, Ending, Side};
use super::leg::{self, AnsweredLeg, LegCommand, LegEvent, LegSpec, Reach};
use super::signal::FromPeer;
use super::transfer::{Staff, agent_reach};
use crate::channel::rtp::sender::RtpSender;
use crate::media::prompt::PromptCache;
use crate::store::Store;
use crate::store::callbacks::{Callee, Tried};

/// How long the agent's phone rings: they asked for the call a moment ago.
const AGENT_RING: Duration = Duration::from_secs(30);
/// How long the customer's phone rings before the try counts as no answer.
const CUSTOMER_RING: Duration = Duration::from_secs(45);

/// Where a callback stands.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    RingingAgent,
    RingingCustomer,
    Talking,
}

/// A live callback as the desk sees it.
#[derive(Clone, Debug, Serialize)]
pub struct Progress {
    pub stage: Stage,
    /// Seconds since the stage began.
    pub seconds: u64,
}

/// Why a callback was not placed.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// SIP is not bound yet.
    Starting,
    /// No `[[trunk]]` to call through.
    NoTrunk,
    /// This ticket has a callback in progress.
    TicketBusy,
    /// The agent is on another callback.
    AgentBusy,
    /// The agent has no phone registered, no fixed address, and the desk's
    /// softphone is off.
    NoPhone,
    /// The number on the ticket is not one a trunk can dial.
    BadNumber,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refused::Starting => "calls cannot be placed yet; try again shortly",
            Refused::NoTrunk => "no [[trunk]] is configured to call customers through",
            Refused::TicketBusy => "this ticket is being called back already",
            Refused::AgentBusy => "you are on another callback",
            Refused::BadNumber => "the number on this ticket cannot be dialled",
            Refused::NoPhone => {
                "your phone is not registered and the desk's softphone is off: turn one on"
            }
        })
    }
}

/// One callback to make.
#[derive(Clone, Debug)]
pub struct Order {
    pub ticket: i64,
    /// The agent's id (agents table).
    pub agent: String,
    /// Who the ticket's history names (the signed-in user).
    pub actor: String,
    pub callee: Callee,
    /// The ticket's queue: its wrap-up follows the call.
    pub queue: String,
}

struct Live {
    agent: String,
    stage: Stage,
    since: Instant,
    hang_up: CancellationToken,
}

/// What placing calls needs from the SIP edge, set once it is bound.
struct Wired {
    staff: Arc<Staff>,
    prompts: Arc<PromptCache>,
    hangup_all: CancellationToken,
}

/// The trunk callbacks go through.
#[derive(Clone, Debug)]
pub struct Through {
    pub name: String,
    pub outbound: SocketAddr,
    /// The From of the calls (the company's number), "kefu" when unset.
    pub caller_id: String,
}

/// The callbacks in progress.
pub struct Callbacks {
    store: Store,
    trunk: Option<Through>,
    rtp_timeout: Duration,
    wired: OnceLock<Wired>,
    live: Mutex<HashMap<i64, Live>>,
}

impl std::fmt::Debug for Callbacks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Callbacks")
            .field("trunk", &self.trunk)
            .field("live", &crate::lock(&self.live).len())
            .finish()
    }
}

impl Callbacks {
    pub fn new(store: Store, trunk: Option<Through>, rtp_timeout: Duration) -> Arc<Self> {
        Arc::new(Self {
            store,
            trunk,
            rtp_timeout,
            wired: OnceLock::new(),
            live: Mutex::new(HashMap::new()),
        })
    }

    /// The SIP edge is bound: calls are placed with its dialer and ports.
    pub fn attach(
        &self,
        staff: Arc<Staff>,
        prompts: Arc<PromptCache>,
        hangup_all: CancellationToken,
    ) {
        let _ = self.wired.set(Wired {
            staff,
            prompts,
            hangup_all,
        });
    }

    /// The callback in progress on `ticket`, if any.
    pub fn progress(&self, ticket: i64) -> Option<Progress> {
        crate::lock(&self.live).get(&ticket).map(|l| Progress {
            stage: l.stage,
            seconds: l.since.elapsed().as_secs(),
        })
    }

    /// The callback agent `agent` is on now: (ticket, the item it rings as on
    /// the desk, its progress).
    pub fn of_agent(&self, agent: &str) -> Option<(i64, String, Progress)> {
        crate::lock(&self.live)
            .iter()
            .find(|(_, l)| l.agent == agent)
            .map(|(ticket, l)| {
                let progress = Progress {
                    stage: l.stage,
                    seconds: l.since.elapsed().as_secs(),
                };
                (*ticket, item(*ticket), progress)
            })
    }

    /// The agent on the callback in progress on `ticket`.
    pub fn agent_of(&self, ticket: i64) -> Option<String> {
        crate::lock(&self.live)
            .get(&ticket)
            .map(|l| l.agent.clone())
    }

    /// Hangs up the callback on `ticket` (at whatever stage); false when none.
    pub fn hang_up(&self, ticket: i64) -> bool {
        match crate::lock(&self.live).get(&ticket) {
            Some(l) => {
                l.hang_up.cancel();
                true
            }
            None => false,
        }
    }

    fn stage(&self, ticket: i64, stage: Stage) {
        if let Some(l) = crate::lock(&self.live).get_mut(&ticket) {
            l.stage = stage;
            l.since = Instant::now();
        }
    }

    /// Whether calls can be placed at all (SIP bound, a trunk to call through).
    pub fn can_place(&self) -> Result<(), Refused> {
        self.wired.get().ok_or(Refused::Starting)?;
        self.trunk.as_ref().map(|_| ()).ok_or(Refused::NoTrunk)
    }

    /// Places the callback: rings the agent now, and the customer once the
    /// agent answers; the outcome goes on the ticket when it ends.
    pub async fn place(self: &Arc<Self>, mut order: Order) -> Result<Stage, Refused> {
        let wired = self.wired.get().ok_or(Refused::Starting)?;
        let through = self.trunk.clone().ok_or(Refused::NoTrunk)?;
        // Whatever the store holds (a caller's From), only a phone number is dialled.
        order.callee.number = crate::dialplan::actions::callback::number(&order.callee.number)
            .ok_or(Refused::BadNumber)?;
        let hang_up = wired.hangup_all.child_token();
        {
            let mut live = crate::lock(&self.live);
            if live.contains_key(&order.ticket) {
                return Err(Refused::TicketBusy);
            }
            if live.values().any(|l| l.agent == order.agent) {
                return Err(Refused::AgentBusy);
            }
            live.insert(
                order.ticket,
                Live {
                    agent: order.agent.clone(),
                    stage: Stage::RingingAgent,
                    since: Instant::now(),
                    hang_up: hang_up.clone(),
                },
            );
        }
        // In a cluster, one callback per ticket across the nodes too.
        let held = format!("callback:{}", order.ticket);
        let claims = wired.staff.claims.get().cloned();
        if let Some(c) = &claims
            && !c.claim(&held).await
        {
            crate::lock(&self.live).remove(&order.ticket);
            return Err(Refused::TicketBusy);
        }
        let item = item(order.ticket);
        let Some(reach) = agent_reach(&wired.staff, &self.store, &order.agent, &item).await else {
            crate::lock(&self.live).remove(&order.ticket);
            if let Some(c) = &claims {
                c.release(&held).await;
            }
            return Err(Refused::NoPhone);
        };
        let this = self.clone();
        let center = wired.staff.center.clone();
        tokio::spawn(async move {
            let invite = chrono::Utc::now();
            // No queue offers while on the callback (an agent who was available).
            let occupied = center.occupy(&order.agent);
            let (tried, relayed) = this.call(&order, reach, &through, &hang_up).await;
            if occupied {
                center.release(&order.agent, &order.queue);
            }
            tracing::info!(ticket = order.ticket, outcome = %tried.outcome, ring_ms = tried.ring_ms, talk_ms = ?tried.talk_ms, "callback ended");
            // The call record first, then the outcome on the ticket, then the
            // call is over: a desk that sees it end finds both.
            let record = CallRecord {
                order: &order,
                through: &through,
                tried: &tried,
                relayed,
                invite,
            };
            if let Err(e) = record.store(&this.store).await {
                tracing::error!(
                    error = format!("{e:#}"),
                    "cannot store the callback's call record"
                );
            }
            let number = &order.callee.number;
            if let Err(e) = this
                .store
                .callback_tried(order.ticket, number, &order.actor, &tried)
                .await
            {
                tracing::error!(
                    error = format!("{e:#}"),
                    "cannot record the callback's outcome"
                );
            }
            crate::lock(&this.live).remove(&order.ticket);
            if let Some(c) = &claims {
                c.release(&held).await;
            }
        });
        Ok(Stage::RingingAgent)
    }

    /// The call itself: the agent, then the customer, then both joined. How it
    /// ended, and the packets relayed (to the agent, to the customer).
    async fn call(
        &self,
        order: &Order,
        reach: Reach,
        through: &Through,
        hang_up: &CancellationToken,
    ) -> (Tried, (u64, u64)) {
        let started = Instant::now();
        let ended = |outcome: &str| Tried {
            outcome: outcome.to_string(),
            ring_ms: started.elapsed().as_millis() as u64,
            talk_ms: None,
            ended: None,
        };
        let Some(wired) = self.wired.get() else {
            return (ended("failed"), (0, 0));
        };
        let agent_spec = LegSpec {
            agent: order.agent.clone(),
            reach,
            // The agent's phone shows whom it is about to call.
            caller: order.callee.number.clone(),
            summary: None,
            // Nothing is spoken on a callback's legs.
            language: String::new(),
            voice: None,
            ring_for: AGENT_RING,
        };
        let agent = match self.leg(wired, agent_spec, hang_up, None).await {
            Ok(leg) => leg,
            Err("cancelled") => return (ended("cancelled"), (0, 0)),
            Err(outcome) => return (ended(&format!("agent-{outcome}")), (0, 0)),
        };
        let mut agent = *agent;
        self.stage(order.ticket, Stage::RingingCustomer);
        let ringing = Instant::now();
        let uri = format!("sip:{}@{}", order.callee.number, through.outbound);
        let Some(contact) = leg::fixed_contact(&uri, Some(through.outbound)).await else {
            agent
                .signal
                .close(&wired.staff.dialer.dialog_layer, false)
                .await;
            return (ended("failed"), (0, 0));
        };
        let customer_spec = LegSpec {
            agent: "customer".into(),
            reach: Reach::Phone(contact),
            caller: through.caller_id.clone(),
            summary: None,
            language: String::new(),
            voice: None,
            ring_for: CUSTOMER_RING,
        };
        let customer = self
            .leg(wired, customer_spec, hang_up, Some(&mut agent))
            .await;
        let ring_ms = ringing.elapsed().as_millis() as u64;
        let customer = match customer {
            Ok(leg) => *leg,
            Err(outcome) => {
                let agent_left = outcome == "agent-hung-up";
                agent
                    .signal
                    .close(&wired.staff.dialer.dialog_layer, agent_left)
                    .await;
                let mut tried = ended(outcome);
                tried.ring_ms = ring_ms;
                return (tried, (0, 0));
            }
        };
        self.stage(order.ticket, Stage::Talking);
        tracing::info!(ticket = order.ticket, agent = %order.agent, "callback answered; agent and customer joined");
        let joined = join::join(
            agent,
            customer,
            &wired.staff.dialer.dialog_layer,
            self.rtp_timeout,
            hang_up.clone(),
        )
        .await;
        let ended = match joined.ending {
            Ending::HungUp(Side::A) => "the agent hung up",
            Ending::HungUp(Side::B) => "the customer hung up",
            Ending::Quiet(Side::A) => "the agent's line went quiet",
            Ending::Quiet(Side::B) => "the customer's line went quiet",
            Ending::Stopped => "hung up from the desk",
        };
        let tried = Tried {
            outcome: "answered".into(),
            ring_ms,
            talk_ms: Some(joined.talk.as_millis() as u64),
            ended: Some(ended.into()),
        };
        (tried, (joined.to_a, joined.to_b))
    }

    /// Rings one leg until it answers: the leg, or how it ended (busy,
    /// no-answer, declined, failed, cancelled, agent-hung-up). `waiting`, the
    /// agent already on the line while the customer rings, is watched: their
    /// hanging up ends the try.
    async fn leg(
        &self,
        wired: &Wired,
        spec: LegSpec,
        hang_up: &CancellationToken,
        waiting: Option<&mut AnsweredLeg>,
    ) -> Result<Box<AnsweredLeg>, &'static str> {
        // The agent on the line hears ringback meanwhile.
        let (mut signal, mut ringback) = match waiting {
            Some(w) => (
                Some(&mut w.signal),
                Some(Ringing::new(
                    &w.socket,
                    &mut w.line,
                    &w.inbound,
                    &w.negotiated,
                )),
            ),
            None => (None, None),
        };
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let (events_tx, mut events) = mpsc::channel(4);
        let (commands, commands_rx) = mpsc::channel(4);
        tokio::spawn(leg::run(
            spec,
            wired.staff.dialer.clone(),
            wired.prompts.clone(),
            events_tx,
            commands_rx,
        ));
        loop {
            tokio::select! {
                event = events.recv() => return match event {
                    Some((_, LegEvent::Accept(leg))) => Ok(leg),
                    Some((_, LegEvent::Declined(why))) => {
                        tracing::info!(%why, "callback leg not answered");
                        Err(leg::outcome_of(&why))
                    }
                    None => Err("failed"),
                },
                from = async {
                    match signal.as_deref_mut() {
                        Some(s) => s.next().await,
                        None => std::future::pending().await,
                    }
                } => {
                    if waiting_left(from).await {
                        let _ = commands.send(LegCommand::Hangup).await;
                        return Err("agent-hung-up");
                    }
                }
                _ = tick.tick(), if ringback.is_some() => {
                    if let Some(r) = ringback.as_mut() {
                        r.send().await;
                    }
                }
                _ = hang_up.cancelled() => {
                    let _ = commands.send(LegCommand::Hangup).await;
                    return Err("cancelled");
                }
            }
        }
    }
}

/// Ringback to the agent on the line while the customer's phone rings, on the
/// agent leg's own stream (its `line` moves on, so the joined call continues it).
struct Ringing<'a> {
    socket: &'a tokio::net::UdpSocket,
    line: &'a mut crate::media::relay::Line,
    to: SocketAddr,
    law: crate::media::g711::Law,
    payload_type: u8,
    tone: crate::media::tone::Ringback,
    /// The stream from where the leg's line stood, a new talkspurt.
    sender: RtpSender,
    slot: u64,
}

impl<'a> Ringing<'a> {
    fn new(
        socket: &'a tokio::net::UdpSocket,
        line: &'a mut crate::media::relay::Line,
        inbound: &crate::channel::rtp::inbound::Inbound,
        negotiated: &crate::media::sdp::Negotiated,
    ) -> Self {
        Self {
            socket,
            to: inbound.target(),
            law: negotiated.law,
            payload_type: negotiated.payload_type,
            tone: crate::media::tone::Ringback::default(),
            sender: RtpSender::new(line.ssrc, line.seq, line.timestamp),
            slot: 0,
            line,
        }
    }

    async fn send(&mut self) {
        let pcm = self.tone.next_frame();
        let mut payload = [0u8; crate::media::FRAME_SAMPLES];
        self.law.encode(&pcm, &mut payload);
        let mut packet = [0u8; 12 + crate::media::FRAME_SAMPLES];
        let Ok(n) = self
            .sender
            .build(self.payload_type, self.slot, &payload, &mut packet)
        else {
            return;
        };
        // The line moves on, so the joined call continues the stream.
        self.slot += 1;
        self.line.seq = self.sender.next_seq();
        self.line.timestamp = self.sender.timestamp_for_slot(self.slot);
        if let Err(e) = self.socket.send_to(&packet[..n], self.to).await {
            tracing::debug!(error = %e, "ringback to the agent failed");
        }
    }
}

/// How a ticket's callback rings on the desk's softphone.
fn item(ticket: i64) -> String {
    format!("callback-{ticket}")
}

/// A request on the agent's leg while the customer's phone rings: answered (no
/// media change now); true when the agent hung up.
async fn waiting_left(from: FromPeer) -> bool {
    match from {
        FromPeer::Left(_) => true,
        FromPeer::Dialog(Some(DialogState::Terminated(..)) | None) => true,
        FromPeer::Dialog(Some(DialogState::Options(_, _, handle)))
        | FromPeer::Dialog(Some(DialogState::Info(_, _, handle))) => {
            let _ = handle.reply(StatusCode::OK).await;
            false
        }
        FromPeer::Dialog(Some(DialogState::Updated(_, _, handle))) => {
            let _ = handle.reply(StatusCode::NotAcceptableHere).await;
            false
        }
        FromPeer::Dialog(Some(_)) => false,
    }
}

/// The callback's call record, stored under the customer like an inbound call
/// (transport `callback`; reports of inbound traffic leave it out).
struct CallRecord<'a> {
    order: &'a Order,
    through: &'a Through,
    tried: &'a Tried,
    relayed: (u64, u64),
    invite: chrono::DateTime<chrono::Utc>,
}

impl CallRecord<'_> {
    async fn store(&self, store: &Store) -> anyhow::Result<()> {
        let end = chrono::Utc::now();
        let call_id = format!(
            "callback-{}-{}",
            self.order.ticket,
            hex::encode(rand::random::<[u8; 6]>())
        );
        let answer = self
            .tried
            .talk_ms
            .map(|t| end - chrono::Duration::milliseconds(t as i64));
        let detail = serde_json::json!({
            "call_id": call_id,
            "direction": "outbound",
            "ticket": self.order.ticket,
            "agent": self.order.actor,
            "outcome": self.tried.outcome,
            "ring_ms": self.tried.ring_ms,
            "talk_ms": self.tried.talk_ms,
            "relayed_to_agent": self.relayed.0,
            "relayed_to_customer": self.relayed.1,
            "invite_at": self.invite,
            "answer_at": answer,
            "end_at": end,
        });
        let write = crate::store::writer::CallWrite {
            call_id,
            caller: self.order.callee.number.clone(),
            callee: self.through.caller_id.clone(),
            customer: Some(self.order.callee.customer.clone()),
            trunk: Some(self.through.name.clone()),
            transport: "callback".into(),
            dialplan: String::new(),
            dialplan_version: String::new(),
            invite: Some(self.invite),
            answer,
            end: Some(end),
            path: vec!["callback".into()],
            end_reason: self.tried.outcome.clone(),
            keys: 0,
            utterances: 0,
            asr_confidence: "[]".into(),
            transfer: Some(format!("callback:{}", self.order.actor)),
            detail: detail.to_string(),
            conversation: None,
        };
        store
            .write(crate::store::Write::Call(Box::new(write)))
            .await?;
        Ok(())
    }
}
