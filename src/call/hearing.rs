//! A call's ears: caller audio (8 kHz) → Silero VAD in 32 ms chunks → endpointing
//! ([`Hearing`], the session's [`Ears`]); utterances go to the shared recognition
//! pool ([`recognise`]) and the transcript comes back on a channel the call task
//! awaits.

use std::sync::Arc;

use tokio::sync::oneshot;

use super::session::{Ears, Noticed};
use crate::dialogue::{Lang, Matcher};

use crate::speech::endpoint::{EndpointConfig, Endpointer, Event};
use crate::speech::vad::{CHUNK, SileroVad};
use crate::speech::{AsrError, Language, SpeechRuntime, Transcript};

pub type Pending = oneshot::Receiver<Result<Transcript, AsrError>>;

/// Voice activity detection and endpointing over a caller's audio: the session's
/// [`Ears`].
pub struct Hearing {
    vad: SileroVad,
    endpointer: Endpointer,
    chunk: Vec<f32>,
    /// The endpointer's pause (how long ago the caller went quiet when it reports one).
    pause: std::time::Duration,
}

impl Hearing {
    pub fn new(runtime: &SpeechRuntime) -> Self {
        let config = EndpointConfig::default();
        Self {
            vad: runtime.vad(),
            pause: config.pause,
            endpointer: Endpointer::new(config),
            chunk: Vec::with_capacity(CHUNK),
        }
    }
}

impl Ears for Hearing {
    /// Starts over for a new question (same call, same VAD session).
    fn restart(&mut self, _language: &str) {
        self.vad.reset();
        self.endpointer.reset();
        self.chunk.clear();
    }

    fn end_turn(&mut self) {
        self.endpointer.reset();
    }

    fn push(&mut self, pcm: &[i16], out: &mut Vec<Noticed>) {
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
                    out.push(Noticed::SpeechStarted);
                }
                Some(Event::Paused { audio, end_ms }) => {
                    tracing::trace!(end_ms, "caller paused");
                    out.push(Noticed::Paused {
                        audio,
                        quiet: self.pause,
                    });
                }
                Some(Event::Resumed) => out.push(Noticed::Resumed),
                Some(Event::Utterance {
                    audio, end_ms, cut, ..
                }) => {
                    tracing::debug!(end_ms, cut, samples = audio.len(), "utterance ended");
                    out.push(Noticed::Utterance(audio));
                }
                None => {}
            }
        }
    }
}

/// Sends an utterance (8 kHz) to the shared recognition pool (a `draft` only when
/// it has spare capacity). For `matcher` (an
/// `ask` node's knowledge base, when it re-ranks semantically) the transcript
/// arrives with what matching needs from the sentence-embedding model already
/// computed, on a blocking thread, so the call task never runs the model.
pub fn recognise(
    runtime: &SpeechRuntime,
    audio: &[f32],
    language: &str,
    matcher: Option<&Arc<Matcher>>,
    draft: bool,
) -> Result<Pending, String> {
    let wide = crate::media::wav::resample(audio, 8000, 16_000)
        .map_err(|e| format!("cannot resample the utterance: {e}"))?;
    let language = language.parse().unwrap_or(Language::Auto);
    let submitted = if draft {
        runtime.asr.submit_spare(wide, language)
    } else {
        runtime.asr.submit(wide, language)
    };
    let rx = submitted.map_err(|e| format!("speech recognition refused the utterance: {e}"))?;
    Ok(match matcher.filter(|m| m.is_semantic()) {
        Some(m) => warmed(rx, m.clone()),
        None => rx,
    })
}

/// A bridged leg's ears: its utterances recognised one at a time for the live
/// transcript (barge-in means nothing during a bridge).
pub struct Transcribing {
    hearing: Hearing,
    runtime: Arc<SpeechRuntime>,
    language: String,
    pub pending: Option<Pending>,
}

impl Transcribing {
    pub fn new(runtime: Arc<SpeechRuntime>, language: &str) -> Self {
        Self {
            hearing: Hearing::new(&runtime),
            runtime,
            language: language.to_string(),
            pending: None,
        }
    }

    pub fn push(&mut self, pcm: &[i16]) {
        let mut noticed = Vec::new();
        self.hearing.push(pcm, &mut noticed);
        for n in noticed {
            if let Noticed::Utterance(audio) = n
                && self.pending.is_none()
            {
                match recognise(&self.runtime, &audio, &self.language, None, false) {
                    Ok(rx) => self.pending = Some(rx),
                    Err(e) => tracing::debug!(error = %e, "no transcript for an utterance"),
                }
            }
        }
    }
}

/// The transcript from `rx`, once `m` has prepared for matching it.
fn warmed(rx: Pending, m: Arc<Matcher>) -> Pending {
    let (mut tx, warmed) = oneshot::channel();
    tokio::spawn(async move {
        let heard = tokio::select! {
            heard = rx => heard,
            // Not wanted any more: dropping `rx` lets recognition skip it.
            () = tx.closed() => return,
        };
        let Ok(heard) = heard else {
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
