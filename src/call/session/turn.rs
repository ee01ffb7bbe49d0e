//! Taking the caller's turn: when an utterance's words are final, and which words.
//!
//! The ears offer the words so far at a short pause ([`Noticed::Paused`]) and they
//! are recognised at once, while the caller stays quiet: a draft. If the caller
//! goes on ([`Noticed::Resumed`]) the draft is forgotten. When the draft's words are
//! a whole request for the node the call is at (the dialogue would answer them, a
//! `listen` node's keyword is in them), the turn is taken once the caller has been
//! quiet for [`SHORT_WAIT`]; otherwise at the endpointer's end of the utterance
//! (its longer silence), still with the draft's words when nothing was said since,
//! so the utterance is not recognised twice.

use std::time::{Duration, Instant};

use super::{Action, Moment, Session};
use crate::dialplan::Input;
use crate::speech::Transcript;

/// Quiet after the caller's last voiced sound before words that are a whole
/// request end the turn (people leave about 200 ms between turns). Words that are
/// not wait for the endpointer's trailing silence.
pub(super) const SHORT_WAIT: Duration = Duration::from_millis(250);

/// Where the caller's current utterance is with recognition.
#[derive(Debug, Default)]
pub(super) enum Turn {
    /// Nothing is being recognised.
    #[default]
    Idle,
    /// The words up to a pause are being recognised. `ended`: the endpointer has
    /// since declared the utterance over, so they are all of it.
    Drafting { quiet_since: Instant, ended: bool },
    /// The draft's words, while the caller stays quiet; `complete`: a whole request.
    Drafted {
        quiet_since: Instant,
        transcript: Transcript,
        complete: bool,
    },
    /// The whole utterance is being recognised; it ended at `ended`. `next`: what
    /// the caller said meanwhile (and when it ended), recognised after it.
    Final {
        ended: Instant,
        next: Option<(Vec<f32>, Instant)>,
    },
}

impl Turn {
    /// When a whole request's draft may be taken.
    pub(super) fn deadline(&self) -> Option<Instant> {
        match self {
            Turn::Drafted {
                quiet_since,
                complete: true,
                ..
            } => Some(*quiet_since + SHORT_WAIT),
            _ => None,
        }
    }
}

impl Session {
    /// The caller paused `quiet` ago: their words so far are recognised now.
    pub(super) fn paused(&mut self, audio: Vec<f32>, quiet: Duration, now: Moment) {
        if matches!(self.turn, Turn::Final { .. }) {
            return; // an earlier utterance is still with recognition
        }
        self.turn = Turn::Drafting {
            quiet_since: now.mono.checked_sub(quiet).unwrap_or(now.mono),
            ended: false,
        };
        self.actions.push_back(Action::Recognise {
            audio,
            language: self.hearing_in.clone(),
            draft: true,
        });
    }

    /// The caller went on after a pause: the draft is not their words.
    pub(super) fn resumed(&mut self) {
        if matches!(self.turn, Turn::Drafting { .. } | Turn::Drafted { .. }) {
            self.turn = Turn::Idle;
            self.actions.push_back(Action::Forget);
        }
    }

    /// The endpointer declared the utterance over (`audio` is all of it).
    pub(super) fn utterance_ended(&mut self, audio: Vec<f32>, now: Moment) {
        match std::mem::take(&mut self.turn) {
            Turn::Drafted {
                quiet_since,
                transcript,
                ..
            } => self.take(Ok(transcript), quiet_since, now),
            Turn::Drafting { quiet_since, .. } => {
                self.turn = Turn::Drafting {
                    quiet_since,
                    ended: true,
                }
            }
            // One at a time: what the caller says while the first is recognised
            // (a caller waiting for an answer asks something else, or again) is
            // recognised next; of several, the latest.
            Turn::Final { ended, next } => {
                if next.is_some() {
                    tracing::debug!("a later utterance replaces one waiting for recognition");
                }
                self.turn = Turn::Final {
                    ended,
                    next: Some((audio, now.mono)),
                };
            }
            Turn::Idle => self.recognise_whole(audio, now.mono),
        }
    }

    fn recognise_whole(&mut self, audio: Vec<f32>, ended: Instant) {
        self.turn = Turn::Final { ended, next: None };
        self.actions.push_back(Action::Recognise {
            audio,
            language: self.hearing_in.clone(),
            draft: false,
        });
    }

    /// Recognition answered for the draft or the whole utterance.
    pub(super) fn recognised(&mut self, result: Result<Transcript, String>, now: Moment) {
        match std::mem::take(&mut self.turn) {
            Turn::Idle | Turn::Drafted { .. } => {} // forgotten meanwhile
            Turn::Final { ended, next } => {
                self.take(result, ended, now);
                // Still listening: what the caller said meanwhile is their next turn.
                if let Some((audio, ended)) = next
                    && self.listening
                    && matches!(self.turn, Turn::Idle)
                {
                    self.recognise_whole(audio, ended);
                }
            }
            Turn::Drafting {
                quiet_since,
                ended: true,
            } => self.take(result, quiet_since, now),
            Turn::Drafting {
                quiet_since,
                ended: false,
            } => {
                // A failed draft is no loss: the whole utterance is recognised at
                // its end.
                if let Ok(transcript) = result {
                    let complete = self.listening
                        && !transcript.text.trim().is_empty()
                        && self.interpreter.complete(&transcript.text);
                    self.turn = Turn::Drafted {
                        quiet_since,
                        transcript,
                        complete,
                    };
                    self.take_if_complete(now);
                }
            }
        }
    }

    /// Recognition refused the words (saturated): the caller is told only when it
    /// was the whole utterance; a refused draft is tried again at the end.
    pub(super) fn refused(&mut self, now: Moment) {
        let whole = match std::mem::take(&mut self.turn) {
            Turn::Drafting { ended, .. } => ended,
            // Idle: a refusal of words the turn no longer tracks; saying so is the
            // safe side.
            Turn::Final { .. } | Turn::Idle => true,
            Turn::Drafted { .. } => false,
        };
        if whole && self.listening {
            self.interpreter.handle(Input::AsrUnavailable, now);
        }
    }

    /// Takes a whole request's draft once the caller has been quiet long enough
    /// (checked after every event).
    pub(super) fn take_if_complete(&mut self, now: Moment) {
        if self.ended {
            return;
        }
        let Turn::Drafted {
            quiet_since,
            complete: true,
            ..
        } = self.turn
        else {
            return;
        };
        if now.mono.saturating_duration_since(quiet_since) < SHORT_WAIT {
            return;
        }
        if let Turn::Drafted { transcript, .. } = std::mem::take(&mut self.turn) {
            if let Some(ears) = self.ears.as_mut() {
                ears.end_turn();
            }
            self.take(Ok(transcript), quiet_since, now);
        }
    }

    /// The caller's words for this turn, to the plan; `since`: when the caller
    /// went quiet (or the utterance was declared over), for the log.
    fn take(&mut self, result: Result<Transcript, String>, since: Instant, now: Moment) {
        self.turn = Turn::Idle;
        if !self.listening {
            return;
        }
        match result {
            Ok(t) => {
                tracing::info!(
                    chars = t.text.chars().count(),
                    confidence = t.confidence,
                    audio_ms = t.audio_ms,
                    decode_ms = t.decode_ms,
                    after_ms = now.mono.saturating_duration_since(since).as_millis() as u64,
                    "caller said"
                );
                self.utterances.push(t.text.clone());
                self.asr_confidence.push(t.confidence);
                self.interpreter.handle(
                    Input::Heard {
                        text: t.text,
                        confidence: t.confidence,
                    },
                    now,
                );
            }
            Err(e) => {
                tracing::warn!(error = %e, "speech recognition failed");
                self.interpreter.handle(Input::AsrUnavailable, now);
            }
        }
    }
}
