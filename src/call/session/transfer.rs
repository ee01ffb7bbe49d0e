//! The session's hand-overs: queueing the caller for an agent (with the agent's
//! summary) and a blind transfer's REFER → NOTIFY → dial-out fallback.

use super::*;

impl Session {
    /// Queues the caller for an agent with a summary of what the call learnt.
    pub(super) fn start_transfer(&mut self, queue: String) {
        let language = self.config.language.clone();
        let lang = crate::dialogue::Lang::from_code(&language);
        let conversation = self.interpreter.conversation();
        let customer_turns = || {
            conversation
                .into_iter()
                .flat_map(|c| c.history.iter().rev())
                .filter(|t| t.speaker == crate::dialogue::engine::Speaker::Customer)
        };
        let topic = customer_turns().find_map(|t| t.intent.clone()).map(|id| {
            self.interpreter
                .matcher()
                .and_then(|m| m.kb.intent(&id))
                .zip(lang)
                .map(|(i, l)| i.title.best(l).to_string())
                .unwrap_or_else(|| id.replace(['_', '-'], " "))
        });
        let said = self
            .utterances
            .last()
            .cloned()
            .or_else(|| customer_turns().next().map(|t| t.text.clone()));
        let collected: Vec<(String, String)> = self
            .interpreter
            .vars()
            .iter()
            .filter(|(k, v)| {
                !matches!(
                    k.as_str(),
                    "caller" | "called" | "queue" | "handover_reason"
                ) && !v.is_empty()
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let (caller, topic, said) = (&self.config.caller, topic.as_deref(), said.as_deref());
        let summary = crate::call::leg::summary_text(&language, caller, topic, said, &collected);
        let subject = crate::call::leg::subject_text(&language, caller, topic, said, &collected);
        // The ask node's hand-over says why; otherwise the caller chose it in a menu.
        let reason = self
            .interpreter
            .vars()
            .get("handover_reason")
            .cloned()
            .unwrap_or_else(|| "menu".into());
        self.waiting = true;
        self.actions.push_back(Action::Queue {
            queue,
            summary,
            subject,
            reason,
        });
    }

    pub(super) fn queued(&mut self, q: Queued, now: Moment) {
        if !self.waiting {
            return;
        }
        match q {
            Queued::Full => {
                tracing::warn!("cannot queue the caller (the queues are full)");
                self.waiting = false;
                self.interpreter.handle(Input::NoAgent, now);
            }
            Queued::Announce(p) => {
                self.playing = true;
                self.actions.push_back(Action::Announce(p));
            }
            Queued::TimedOut(log) => {
                self.waiting = false;
                self.transfer = Some(log);
                // The pump stopped the hold music when the caller left the queue.
                self.playing = false;
                self.interpreter.handle(Input::NoAgent, now);
            }
            Queued::Answered(log) => {
                self.waiting = false;
                self.transfer = Some(log);
                self.actions.push_back(Action::Bridge);
            }
        }
    }

    pub(super) fn start_blind(&mut self, to: String) {
        tracing::info!("blind transfer requested; sending REFER");
        self.transfer = Some(TransferLog {
            target: Some(to.clone()),
            method: Some("refer"),
            ..TransferLog::default()
        });
        self.blind = Some(Blind {
            target: to.clone(),
            deadline: None,
            dialing: false,
        });
        self.actions.push_back(Action::Refer { to });
    }

    pub(super) fn refer_answered(&mut self, answer: Result<u16, String>, now: Moment) {
        let Some(b) = self.blind.as_mut() else {
            return;
        };
        match answer {
            // Accepted: the outcome comes in NOTIFYs.
            Ok(code) if (200..300).contains(&code) => b.deadline = Some(now.mono + NOTIFY_WAIT),
            other => {
                let why = match other {
                    Ok(code) => format!("REFER answered {code}"),
                    Err(e) => e,
                };
                tracing::info!(%why, "the caller's side will not transfer; dialling out");
                self.dial_out();
            }
        }
    }

    /// A NOTIFY about the REFER (sipfrag of the transfer's progress): a 2xx means
    /// the target answered and kefu leaves; a failure dials out instead.
    pub(super) fn notified(&mut self, body: &[u8]) {
        if self.blind.is_none() {
            return;
        }
        let Some(code) = crate::call::blind::sipfrag_status(body) else {
            return;
        };
        match code {
            100..=199 => {}
            200..=299 => {
                tracing::info!("the caller's side transferred the call");
                self.blind = None;
                self.end(EndReason::Referred);
            }
            _ => {
                tracing::info!(
                    code,
                    "the caller's side could not reach the target; dialling out"
                );
                self.dial_out();
            }
        }
    }

    /// Calls the target and bridges it once answered.
    pub(super) fn dial_out(&mut self) {
        let Some(b) = self.blind.as_mut() else {
            return;
        };
        b.deadline = None;
        if b.dialing {
            return;
        }
        b.dialing = true;
        if let Some(log) = self.transfer.as_mut() {
            log.method = Some("dial-out");
        }
        self.actions.push_back(Action::DialOut {
            to: b.target.clone(),
        });
    }

    pub(super) fn dial_out_ended(&mut self, outcome: Result<(), String>, now: Moment) {
        if !self.blind.as_ref().is_some_and(|b| b.dialing) {
            return;
        }
        self.blind = None;
        match outcome {
            Ok(()) => {
                if let Some(log) = self.transfer.as_mut() {
                    log.agent = log.target.clone();
                }
                self.actions.push_back(Action::Bridge);
            }
            Err(why) => {
                tracing::info!(%why, "blind transfer failed");
                if let Some(log) = self.transfer.as_mut() {
                    log.tried
                        .push((log.target.clone().unwrap_or_default(), why));
                }
                self.interpreter.handle(Input::NoAgent, now);
            }
        }
    }
}
