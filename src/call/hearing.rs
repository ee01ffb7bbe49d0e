//! A call's ears while a `listen` node is active: caller audio (8 kHz) → Silero VAD
//! in 32 ms chunks → endpointing → utterances submitted to the shared recognition
//! pool. The transcript comes back on a channel the call task awaits.

use std::sync::Arc;

use tokio::sync::oneshot;

use crate::dialogue::{Lang, Matcher};

use crate::speech::endpoint::{EndpointConfig, Endpointer, Event};
use crate::speech::vad::{CHUNK, SileroVad};
use crate::speech::{AsrError, Language, SpeechRuntime, Transcript};

/// What the call should tell the interpreter.
#[derive(Debug, PartialEq)]
pub enum Heard {
    SpeechStarted,
    /// Recognition could not take the utterance (saturated or failed).
    Unavailable,
}

pub type Pending = oneshot::Receiver<Result<Transcript, AsrError>>;

pub struct Hearing {
    runtime: Arc<SpeechRuntime>,
    vad: SileroVad,
    endpointer: Endpointer,
    chunk: Vec<f32>,
    language: Language,
    /// The utterance being recognised, if any.
    pub pending: Option<Pending>,
    /// When the last utterance ended, for latency logs.
    pub utterance_end: Option<std::time::Instant>,
    /// The knowledge base an `ask` node answers from, when it re-ranks semantically.
    matcher: Option<Arc<Matcher>>,
}

impl Hearing {
    pub fn new(runtime: Arc<SpeechRuntime>, language: &str) -> Self {
        let vad = runtime.vad();
        let language = language.parse().unwrap_or(Language::Auto);
        Self {
            runtime,
            vad,
            endpointer: Endpointer::new(EndpointConfig::default()),
            chunk: Vec::with_capacity(CHUNK),
            language,
            pending: None,
            utterance_end: None,
            matcher: None,
        }
    }

    /// Transcripts for `matcher` (an `ask` node's knowledge base) arrive with what
    /// matching needs from the sentence-embedding model already computed, on a
    /// blocking thread, so the call task never runs the model.
    pub fn with_matcher(mut self, matcher: Option<Arc<Matcher>>) -> Self {
        self.matcher = matcher.filter(|m| m.is_semantic());
        self
    }

    /// Starts over for a new question (same call, same VAD session).
    pub fn restart(&mut self, language: &str) {
        self.vad.reset();
        self.endpointer.reset();
        self.chunk.clear();
        self.pending = None;
        self.language = language.parse().unwrap_or(Language::Auto);
    }

    /// Feeds decoded caller audio; returns what the interpreter must hear now.
    pub fn push(&mut self, pcm: &[i16], out: &mut Vec<Heard>) {
        for &s in pcm {
            self.chunk.push(f32::from(s) / 32768.0);
            if self.chunk.len() < CHUNK {
                continue;
            }
            let Ok(chunk) = <&[f32; CHUNK]>::try_from(&self.chunk[..]) else {
                self.chunk.clear();
                continue;
            };
            let p = match self.vad.probability(chunk) {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error = %e, "voice activity detection failed");
                    0.0
                }
            };
            let event = self.endpointer.push(chunk, p);
            self.chunk.clear();
            match event {
                Some(Event::SpeechStarted { onset_ms }) => {
                    tracing::debug!(onset_ms, "caller started speaking");
                    out.push(Heard::SpeechStarted);
                }
                Some(Event::Utterance {
                    audio, end_ms, cut, ..
                }) => {
                    tracing::debug!(end_ms, cut, samples = audio.len(), "utterance ended");
                    self.submit(audio, out);
                }
                None => {}
            }
        }
    }

    fn submit(&mut self, audio: Vec<f32>, out: &mut Vec<Heard>) {
        if self.pending.is_some() {
            // Still recognising the previous utterance: this one is a continuation the
            // caller added; keep the first answer (a later turn will hear the rest).
            return;
        }
        let wide = match crate::media::wav::resample(&audio, 8000, 16_000) {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "cannot resample the utterance");
                out.push(Heard::Unavailable);
                return;
            }
        };
        match self.runtime.asr.submit(wide, self.language) {
            Ok(rx) => {
                let rx = match &self.matcher {
                    Some(m) => warmed(rx, m.clone()),
                    None => rx,
                };
                self.pending = Some(rx);
                self.utterance_end = Some(std::time::Instant::now());
            }
            Err(e) => {
                tracing::warn!(error = %e, "speech recognition refused the utterance");
                out.push(Heard::Unavailable);
            }
        }
    }
}

/// The transcript from `rx`, once `m` has prepared for matching it.
fn warmed(rx: Pending, m: Arc<Matcher>) -> Pending {
    let (tx, warmed) = oneshot::channel();
    tokio::spawn(async move {
        let Ok(heard) = rx.await else {
            return; // recognition gave up: dropping `tx` says so
        };
        if let Ok(t) = &heard {
            let text = t.text.clone();
            let _ = tokio::task::spawn_blocking(move || m.warm(&text, Lang::detect(&text))).await;
        }
        let _ = tx.send(heard);
    });
    warmed
}
