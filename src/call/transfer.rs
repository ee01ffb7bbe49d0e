//! A caller waiting for an agent (warm transfer): the queue item in the contact
//! center, the agent legs being rung, the position announcements and the ticket.
//!
//! The call task holds one `Waiting` while the caller hears hold music and asks it
//! what happened next (`Waiting::next`): an announcement to play, the time-out, or
//! an agent leg to bridge. Store work (the ticket, looking agents up) runs on
//! spawned tasks so the media loop never waits for the database.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use super::CallSetup;
use super::leg::{self, AnsweredLeg, Dialer, LegCommand, LegEvent, LegSpec, Reach};
use super::softphone::Softphones;
use crate::agents::Phones;
use crate::agents::center::{Center, ItemEvent};
use crate::agents::queue::Answer;
use crate::dialogue::conversations::Identity;
use crate::media::prompt::{Prompt, PromptCache};
use crate::store::Store;

/// What warm transfers need besides the call: the queues, the agents' phones and
/// a way to call them.
#[derive(Debug)]
pub struct Staff {
    pub center: Arc<Center>,
    pub phones: Arc<Phones>,
    /// Agents who take calls on the desk's softphone.
    pub softphones: Arc<Softphones>,
    pub dialer: Arc<Dialer>,
    /// In a cluster: no agent another node holds is rung (set once it joins).
    pub claims: std::sync::OnceLock<Arc<dyn crate::agents::Claims>>,
}

/// What the call task should do next.
pub enum Happened {
    /// Play this announcement (the caller's place in the queue), then hold music.
    Announce(Arc<Prompt>),
    /// Nobody took the call within the queue's maximum wait.
    TimedOut,
    /// This agent took the call: bridge it.
    Bridge(Box<AnsweredLeg>),
    /// Something changed that the call task need not act on.
    Nothing,
}

/// Changes to the call's ticket, applied in order by one task.
enum TicketChange {
    Assign {
        agent: String,
    },
    Note(String),
    /// The caller asked to be called back on this number.
    Callback(String),
}

/// The call's ticket: opened on a task of its own, which then applies the changes
/// sent to it in order (the media loop never waits for the store).
#[derive(Clone, Debug)]
pub struct Ticket(mpsc::Sender<TicketChange>);

impl Ticket {
    /// Opens the ticket of the call for the caller's customer (`identity`).
    pub(super) fn open(s: &CallSetup, identity: Identity, queue: &str, subject: &str) -> Self {
        Self(open_ticket(
            s.dialogue.store.clone(),
            s.dialogue.service.clone(),
            identity,
            s.call_id.clone(),
            queue.to_string(),
            subject.to_string(),
        ))
    }

    /// Adds a line to the ticket (voicemail left, callback asked for, no agent).
    pub fn note(&self, text: String) {
        if self.0.try_send(TicketChange::Note(text)).is_err() {
            tracing::warn!("the call's ticket is not keeping up; a note was dropped");
        }
    }

    /// The caller asks to be called back on `to` (a call variable's value): the
    /// ticket goes on the desk's callback list, or, when `to` is not a number
    /// (an anonymous caller), it says so.
    pub fn callback(&self, to: &str) {
        let change = match crate::dialplan::actions::callback::number(to) {
            Some(number) => TicketChange::Callback(number),
            None => TicketChange::Note("Callback requested, but the number is unknown.".into()),
        };
        if self.0.try_send(change).is_err() {
            tracing::warn!("the call's ticket is not keeping up; a callback was dropped");
        }
    }

    fn assign(&self, agent: String) {
        let _ = self.0.try_send(TicketChange::Assign { agent });
    }
}

/// The transfer's story, for the call record.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct TransferLog {
    pub queue: String,
    /// Agents rung, in order, with how each leg ended.
    pub tried: Vec<(String, String)>,
    /// The agent who took the call.
    pub agent: Option<String>,
    /// From the request for a person to the first agent leg's INVITE.
    pub first_invite_ms: Option<u64>,
    /// From the request for a person to the bridge.
    pub wait_ms: Option<u64>,
    pub timed_out: bool,
    /// How long caller and agent talked.
    pub talk_ms: Option<u64>,
    /// A blind transfer's target (a number or SIP URI) and how it was done:
    /// "refer" (the caller's side took it over) or "dial-out" (kefu bridged it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<&'static str>,
    /// RTP packets relayed each way while bridged.
    pub relayed_to_agent: u64,
    pub relayed_to_caller: u64,
}

pub struct Waiting {
    item: String,
    started: Instant,
    staff: Arc<Staff>,
    store: Store,
    prompts: Arc<PromptCache>,
    events: mpsc::Receiver<ItemEvent>,
    legs: HashMap<String, mpsc::Sender<LegCommand>>,
    leg_tx: mpsc::Sender<(String, LegEvent)>,
    leg_rx: mpsc::Receiver<(String, LegEvent)>,
    announcement: Option<oneshot::Receiver<Result<Arc<Prompt>, String>>>,
    /// An agent the center connected (accepted on the desk) before their leg did.
    desk_taken: Option<String>,
    /// The center has let go of the item (it was taken on the desk).
    connected: bool,
    ticket: Ticket,
    caller: String,
    summary: String,
    language: String,
    voice: Option<String>,
    done: bool,
    pub log: TransferLog,
}

impl Waiting {
    /// Queues the caller (matching agents with the plan's language in
    /// skills-based queues) and opens their ticket; None if the queues are full.
    /// `told`: the summary the agent hears, and the subject the desk's offer
    /// and the ticket show.
    /// `reason` is why the caller wants a person (`agents::center::Origin`).
    pub(super) fn start(
        s: &CallSetup,
        queue: &str,
        told: [String; 2],
        reason: String,
    ) -> Option<Self> {
        let [summary, subject] = told;
        let needs = [s.plan.language.clone()];
        let origin = crate::agents::center::Origin {
            channel: "phone".into(),
            reason,
        };
        let events = s
            .staff
            .center
            .enqueue_watched(&s.call_id, queue, &needs, &subject, origin)?;
        let started = Instant::now();
        tracing::info!(%queue, "caller waiting for an agent");
        let ticket = Ticket::open(s, s.caller_identity(), queue, &subject);
        let (leg_tx, leg_rx) = mpsc::channel(32);
        Some(Self {
            item: s.call_id.clone(),
            started,
            staff: s.staff.clone(),
            store: s.dialogue.store.clone(),
            prompts: s.dialogue.prompts.clone(),
            events,
            legs: HashMap::new(),
            leg_tx,
            leg_rx,
            announcement: None,
            desk_taken: None,
            connected: false,
            ticket,
            caller: s.caller.clone(),
            summary,
            language: s.plan.language.clone(),
            voice: s.plan.voice.clone(),
            done: false,
            log: TransferLog {
                queue: queue.to_string(),
                ..TransferLog::default()
            },
        })
    }

    /// Waits for the next thing that happens to the waiting caller.
    pub async fn next(&mut self) -> Happened {
        tokio::select! {
            e = self.events.recv(), if !self.connected => match e {
                Some(e) => self.queue_event(e),
                // The center lets go of an item once an agent took it on the
                // desk: their leg brings the call.
                None if self.desk_taken.is_some() => {
                    self.connected = true;
                    Happened::Nothing
                }
                // The center dropped us (it should not): treat as a time-out.
                None => self.timed_out(),
            },
            Some((agent, e)) = self.leg_rx.recv() => self.leg_event(agent, e).await,
            spoken = async {
                match self.announcement.as_mut() {
                    Some(rx) => rx.await,
                    None => std::future::pending().await,
                }
            }, if self.announcement.is_some() => {
                self.announcement = None;
                match spoken {
                    Ok(Ok(p)) => Happened::Announce(p),
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "cannot speak the queue position");
                        Happened::Nothing
                    }
                    Err(_) => Happened::Nothing,
                }
            }
        }
    }

    fn timed_out(&mut self) -> Happened {
        self.done = true;
        self.log.timed_out = true;
        self.hang_up_legs();
        self.ticket
            .note("Nobody took the call within the queue's maximum wait.".into());
        Happened::TimedOut
    }

    fn queue_event(&mut self, e: ItemEvent) -> Happened {
        match e {
            ItemEvent::Offered { agent } => {
                self.ring(agent);
                Happened::Nothing
            }
            ItemEvent::Withdrawn { agent } => {
                if let Some(cmd) = self.legs.remove(&agent) {
                    let _ = cmd.try_send(LegCommand::Hangup);
                    self.log.tried.push((agent, "no answer".into()));
                }
                Happened::Nothing
            }
            ItemEvent::Connected { agent } => {
                // Accepted on the desk: the leg takes the call once answered.
                if let Some(cmd) = self.legs.get(&agent) {
                    let _ = cmd.try_send(LegCommand::Take);
                }
                self.desk_taken = Some(agent);
                Happened::Nothing
            }
            ItemEvent::TimedOut => self.timed_out(),
            ItemEvent::Position(n) => {
                let text = position_text(&self.language, n);
                let (tx, rx) = oneshot::channel();
                let (prompts, voice, language) = (
                    self.prompts.clone(),
                    self.voice.clone(),
                    self.language.clone(),
                );
                tokio::task::spawn_blocking(move || {
                    let _ = tx.send(prompts.say(voice.as_deref(), &language, &text));
                });
                self.announcement = Some(rx);
                Happened::Nothing
            }
        }
    }

    /// Rings the agent's desk when it takes calls in the browser, else calls the
    /// agent's phone (looked up off the media loop); an agent with neither
    /// passes at once.
    fn ring(&mut self, agent: String) {
        if self.log.first_invite_ms.is_none() {
            self.log.first_invite_ms = Some(self.started.elapsed().as_millis() as u64);
        }
        let (cmd_tx, cmd_rx) = mpsc::channel(4);
        self.legs.insert(agent.clone(), cmd_tx);
        let (caller, summary, language, voice) = (
            self.caller.clone(),
            self.summary.clone(),
            self.language.clone(),
            self.voice.clone(),
        );
        let (store, staff, prompts, events) = (
            self.store.clone(),
            self.staff.clone(),
            self.prompts.clone(),
            self.leg_tx.clone(),
        );
        let item = self.item.clone();
        tokio::spawn(async move {
            if let Some(claims) = staff.claims.get()
                && !claims.claim(&agent).await
            {
                let why = "on a call of another node".to_string();
                let _ = events.send((agent, LegEvent::Declined(why))).await;
                return;
            }
            let Some(reach) = agent_reach(&staff, &store, &agent, &item).await else {
                let _ = events
                    .send((agent, LegEvent::Declined("no phone registered".into())))
                    .await;
                return;
            };
            let spec = LegSpec {
                agent,
                reach,
                caller,
                summary: Some(summary),
                language,
                voice,
                ring_for: leg::MAX_RING,
            };
            leg::run(spec, staff.dialer.clone(), prompts, events, cmd_rx).await;
        });
    }

    async fn leg_event(&mut self, agent: String, e: LegEvent) -> Happened {
        match e {
            LegEvent::Declined(why) if self.desk_taken.as_deref() == Some(agent.as_str()) => {
                // Accepted on the desk, but their phone (or browser) did not take
                // the call: the caller is not left on hold for ever.
                tracing::warn!(%agent, %why, "the agent accepted on the desk but their leg failed");
                self.legs.remove(&agent);
                self.log.tried.push((agent.clone(), why.clone()));
                self.staff.center.finish(&self.item, &agent);
                self.desk_taken = None;
                self.ticket.note(format!(
                    "The agent accepted on the desk, but the call did not reach them ({why})."
                ));
                self.done = true;
                self.log.timed_out = true;
                self.hang_up_legs();
                Happened::TimedOut
            }
            LegEvent::Declined(why) => {
                if self.legs.remove(&agent).is_some() {
                    self.log.tried.push((agent.clone(), why));
                    self.staff
                        .center
                        .answer(&self.item, &agent, Answer::Decline);
                }
                Happened::Nothing
            }
            LegEvent::Accept(answered) => {
                let ours = self.desk_taken.as_deref() == Some(agent.as_str())
                    || self.staff.center.answer(&self.item, &agent, Answer::Accept);
                if self.done || !ours {
                    // Someone else took the caller first (ring-all), or the wait
                    // ended: this agent is hung up.
                    tracing::info!(%agent, "agent answered a call already taken");
                    answered
                        .signal
                        .close(&self.staff.dialer.dialog_layer, false)
                        .await;
                    return Happened::Nothing;
                }
                self.legs.remove(&agent);
                self.done = true;
                self.hang_up_legs();
                self.log.tried.push((agent.clone(), "took the call".into()));
                self.log.agent = Some(agent.clone());
                self.log.wait_ms = Some(self.started.elapsed().as_millis() as u64);
                self.ticket.assign(agent);
                Happened::Bridge(answered)
            }
        }
    }

    fn hang_up_legs(&mut self) {
        for (_, cmd) in self.legs.drain() {
            let _ = cmd.try_send(LegCommand::Hangup);
        }
    }

    /// The call's ticket (it outlives the wait: voicemail and callbacks note it).
    pub fn ticket(&self) -> Ticket {
        self.ticket.clone()
    }
}

impl Drop for Waiting {
    /// A caller who hangs up (or leaves for voicemail) leaves the queue; their
    /// agent legs hang up when their command channels close.
    fn drop(&mut self) {
        if !self.done {
            self.staff.center.leave(&self.item);
        }
    }
}

/// Where agent `agent` takes a call now: the desk's softphone when it is on
/// (rung as `item`), else their registered phone, else their fixed address;
/// None when they have none of these.
pub(super) async fn agent_reach(
    staff: &Staff,
    store: &Store,
    agent: &str,
    item: &str,
) -> Option<Reach> {
    if staff.softphones.is_on(agent, Instant::now()) {
        return Some(Reach::Desk {
            softphones: staff.softphones.clone(),
            item: item.to_string(),
        });
    }
    let a = match store.agent_by_id(agent).await {
        Ok(a) => a?,
        Err(e) => {
            tracing::warn!(error = format!("{e:#}"), "cannot look the agent up");
            return None;
        }
    };
    let registered = crate::lock(&staff.phones.registrar)
        .contacts(&a.extension, Instant::now())
        .pop();
    let contact = match (registered, &a.contact_uri) {
        (Some(b), _) => Some(b),
        // No phone registered: the agent's fixed address.
        (None, Some(uri)) => leg::fixed_contact(uri, None).await,
        (None, None) => None,
    };
    contact.map(Reach::Phone)
}

/// "You are caller number 2."
pub fn position_text(language: &str, n: usize) -> String {
    match (language.starts_with("zh"), n) {
        (true, 1) => "您是下一位，请稍候。".into(),
        (true, n) => format!("您前面还有{}位客户，请稍候。", n - 1),
        (false, 1) => "You are next in line. Please hold.".into(),
        (false, n) => format!("You are number {n} in line. Please hold."),
    }
}

fn open_ticket(
    store: Store,
    service: Arc<crate::store::ConversationService>,
    identity: Identity,
    call_id: String,
    queue: String,
    subject: String,
) -> mpsc::Sender<TicketChange> {
    let (tx, mut rx) = mpsc::channel::<TicketChange>(16);
    tokio::spawn(async move {
        let about = crate::dialogue::service::TicketFor::Call(&call_id);
        let opened = service
            .open_ticket(&identity, about, &queue, &subject)
            .await;
        if let Err(e) = opened {
            tracing::error!(error = format!("{e:#}"), "cannot open the call's ticket");
            return;
        }
        while let Some(change) = rx.recv().await {
            let done = match change {
                TicketChange::Assign { agent } => match store.agent_by_id(&agent).await {
                    Ok(Some(a)) => match a.user_id {
                        Some(user) => {
                            let actor = format!("agent:{}", a.name);
                            store.assign_tickets(&call_id, &user, &actor).await
                        }
                        None => Ok(()),
                    },
                    Ok(None) => Ok(()),
                    Err(e) => Err(e),
                },
                TicketChange::Note(text) => store.note_tickets(&call_id, &text).await.map(|_| ()),
                TicketChange::Callback(number) => {
                    store.request_callback(&call_id, &number).await.map(|_| ())
                }
            };
            if let Err(e) = done {
                tracing::error!(error = format!("{e:#}"), "cannot update the call's ticket");
            }
        }
    });
    tx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_spoken_in_the_plan_language() {
        assert_eq!(position_text("en", 1), "You are next in line. Please hold.");
        assert_eq!(
            position_text("en", 3),
            "You are number 3 in line. Please hold."
        );
        assert_eq!(position_text("zh", 3), "您前面还有2位客户，请稍候。");
    }
}
