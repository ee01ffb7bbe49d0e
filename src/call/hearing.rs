//! A call's ears: caller audio (8 kHz) in 32 ms chunks → Silero VAD, batched with
//! every other listening call's chunks (`speech::vad::Detector`) → endpointing
//! ([`Hearing`], the session's [`Ears`]); utterances go to the shared recognition
//! pool ([`recognise`]) and the transcript comes back on a channel the call task
//! awaits.

use std::sync::Arc;

use tokio::sync::oneshot;

use super::session::{Ears, Noticed};
use crate::dialogue::{Lang, Matcher};

use crate::speech::endpoint::{EndpointConfig, Endpointer, Event};
use crate::speech::vad::{CHUNK, Job, VadError, VadState, is_quiet};
use crate::speech::{AsrError, Language, SpeechRuntime, Transcript};

pub type Pending = oneshot::Receiver<Result<Transcript, AsrError>>;

/// The voice detector's answer on its way.
pub type Detecting = oneshot::Receiver<Result<Job, VadError>>;

/// At most this much audio (8 s) waits for the detector (the rest is dropped,
/// oldest first): a detector that stopped answering must not grow a call without
/// bound, and one that is only late must not lose a caller's words.
const MAX_WAITING: usize = 250;

/// Voice activity detection and endpointing over a caller's audio: the session's
/// [`Ears`]. The detector runs elsewhere: chunks wait here until it answers.
pub struct Hearing {
    /// The call's detector state; None while a run is out.
    vad: Option<VadState>,
    /// Which run is out (answers to an earlier question are dropped).
    run: u64,
    endpointer: Endpointer,
    chunk: Vec<f32>,
    /// Whole chunks not yet sent to the detector.
    waiting: Vec<[f32; CHUNK]>,
    /// The endpointer's pause (how long ago the caller went quiet when it reports one).
    pause: std::time::Duration,
}

impl Default for Hearing {
    fn default() -> Self {
        let config = EndpointConfig::default();
        Self {
            vad: Some(VadState::default()),
            run: 0,
            pause: config.pause,
            endpointer: Endpointer::new(config),
            chunk: Vec::with_capacity(CHUNK),
            waiting: Vec::new(),
        }
    }
}

impl Ears for Hearing {
    /// Starts over for a new question (same call): a run still out answers the
    /// old one and is dropped.
    fn restart(&mut self, _language: &str) {
        self.vad = Some(VadState::default());
        self.run += 1;
        self.endpointer.reset();
        self.chunk.clear();
        self.waiting.clear();
    }

    fn end_turn(&mut self) {
        self.endpointer.reset();
    }

    /// Quiet chunks with nothing ahead of them are settled here (no model run:
    /// a silent caller costs no trip to the detector); the rest wait for it.
    fn push(&mut self, pcm: &[i16], out: &mut Vec<Noticed>) {
        for &s in pcm {
            self.chunk.push(f32::from(s) / 32768.0);
            if self.chunk.len() < CHUNK {
                continue;
            }
            if let Ok(chunk) = <[f32; CHUNK]>::try_from(&self.chunk[..]) {
                match self.vad.as_mut() {
                    Some(vad) if self.waiting.is_empty() && is_quiet(&chunk) => {
                        let _quiet = vad.begin(&chunk);
                        self.endpoint(&chunk, 0.0, out);
                    }
                    _ => {
                        if self.waiting.len() == MAX_WAITING {
                            self.waiting.remove(0);
                        }
                        self.waiting.push(chunk);
                    }
                }
            }
            self.chunk.clear();
        }
    }

    fn detect(&mut self) -> Option<Job> {
        if self.waiting.is_empty() {
            return None;
        }
        let vad = self.vad.take()?;
        self.run += 1;
        Some(Job {
            vad,
            chunks: std::mem::take(&mut self.waiting),
            probabilities: Vec::new(),
            run: self.run,
        })
    }

    fn detected(&mut self, job: Result<Job, String>, out: &mut Vec<Noticed>) {
        let job = match job {
            Ok(job) if job.run == self.run => job,
            Ok(_) => return, // asked before a restart
            Err(e) => {
                // The run's audio is lost; the call listens on from a fresh state.
                tracing::warn!(error = %e, "voice activity detection failed");
                self.vad = Some(VadState::default());
                return;
            }
        };
        self.vad = Some(job.vad);
        for (chunk, &p) in job.chunks.iter().zip(&job.probabilities) {
            self.endpoint(chunk, p, out);
        }
    }
}

impl Hearing {
    /// One chunk and its speech probability through the endpointer.
    fn endpoint(&mut self, chunk: &[f32; CHUNK], p: f32, out: &mut Vec<Noticed>) {
        match self.endpointer.push(chunk, p) {
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
    // The knowledge base's words, for the recogniser to favour (Mandarin).
    let hint = match (language, matcher) {
        (Language::Zh, Some(m)) => m.expected_words(Lang::Zh),
        _ => None,
    };
    let submitted = runtime.asr.submit_with(wide, language, hint, draft);
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
    detecting: Option<Detecting>,
    pending: Option<Pending>,
}

impl Transcribing {
    pub fn new(runtime: Arc<SpeechRuntime>, language: &str) -> Self {
        Self {
            hearing: Hearing::default(),
            runtime,
            language: language.to_string(),
            detecting: None,
            pending: None,
        }
    }

    pub fn push(&mut self, pcm: &[i16]) {
        let mut noticed = Vec::new();
        // Quiet audio is settled at once: the end of an utterance may be here.
        self.hearing.push(pcm, &mut noticed);
        self.hear(noticed);
        self.detect();
    }

    /// Whether [`Transcribing::next`] has something to wait for.
    pub fn busy(&self) -> bool {
        self.detecting.is_some() || self.pending.is_some()
    }

    /// Waits for the detector or the recogniser: a transcript when one is done.
    pub async fn next(&mut self) -> Option<Result<Transcript, String>> {
        let Self {
            detecting, pending, ..
        } = self;
        tokio::select! {
            job = awaited(detecting.as_mut()), if detecting.is_some() => {
                self.detecting = None;
                let mut noticed = Vec::new();
                self.hearing.detected(detection(job), &mut noticed);
                self.hear(noticed);
                self.detect();
                None
            }
            heard = awaited(pending.as_mut()), if pending.is_some() => {
                self.pending = None;
                Some(transcript(heard))
            }
        }
    }

    /// Sends a finished utterance to recognition, one at a time.
    fn hear(&mut self, noticed: Vec<Noticed>) {
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

    fn detect(&mut self) {
        if self.detecting.is_none()
            && let Some(job) = self.hearing.detect()
        {
            self.detecting = Some(self.runtime.detector.submit(job));
        }
    }
}

/// What `f` gives, or never (a `select!` branch whose future may be absent).
pub async fn awaited<F: std::future::Future + Unpin>(f: Option<&mut F>) -> F::Output {
    match f {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

/// The detector's answer, or why none came.
pub fn detection(
    answer: Result<Result<Job, VadError>, oneshot::error::RecvError>,
) -> Result<Job, String> {
    match answer {
        Ok(Ok(job)) => Ok(job),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("the voice detector stopped".into()),
    }
}

/// The recogniser's answer, or why none came.
pub fn transcript(
    answer: Result<Result<Transcript, AsrError>, oneshot::error::RecvError>,
) -> Result<Transcript, String> {
    match answer {
        Ok(Ok(t)) => Ok(t),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("recognition gave up".into()),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// 32 ms of a loud tone (8 kHz, 16-bit).
    fn loud() -> Vec<i16> {
        (0..CHUNK)
            .map(|i| ((i as f32 * 0.3).sin() * 8000.0) as i16)
            .collect()
    }

    /// The detector's answer: every chunk at probability `p`.
    fn answer(mut job: Job, p: f32) -> Result<Job, String> {
        job.probabilities = vec![p; job.chunks.len()];
        Ok(job)
    }

    #[test]
    fn quiet_audio_is_settled_at_once_and_loud_audio_waits_for_the_detector() {
        let mut h = Hearing::default();
        let mut out = Vec::new();
        h.push(&[0i16; CHUNK * 10], &mut out);
        assert!(h.detect().is_none(), "quiet chunks need no detector");
        assert!(out.is_empty());
        for _ in 0..4 {
            h.push(&loud(), &mut out);
        }
        let job = h.detect().expect("loud chunks go to the detector");
        assert_eq!(job.chunks.len(), 4);
        // One run at a time: what comes meanwhile waits, quiet or not.
        h.push(&[0i16; CHUNK], &mut out);
        assert!(h.detect().is_none());
        assert!(out.is_empty());
        h.detected(answer(job, 0.9), &mut out);
        assert_eq!(out, vec![Noticed::SpeechStarted]);
        let next = h.detect().expect("the chunk that waited");
        assert_eq!(next.chunks.len(), 1);
    }

    #[test]
    fn the_end_of_an_utterance_in_quiet_audio_is_noticed_by_push() {
        let mut h = Hearing::default();
        let mut out = Vec::new();
        for _ in 0..10 {
            h.push(&loud(), &mut out);
        }
        let job = h.detect().unwrap();
        h.detected(answer(job, 0.9), &mut out);
        out.clear();
        // Digital silence after the words: settled here, no detector run.
        h.push(&[0i16; CHUNK * 25], &mut out);
        assert!(h.detect().is_none());
        assert!(
            matches!(out.last(), Some(Noticed::Utterance(audio)) if audio.len() >= CHUNK * 10),
            "{out:?}"
        );
    }

    #[test]
    fn an_answer_for_an_earlier_question_is_dropped() {
        let mut h = Hearing::default();
        let mut out = Vec::new();
        for _ in 0..4 {
            h.push(&loud(), &mut out);
        }
        let stale = h.detect().unwrap();
        h.restart("en");
        for _ in 0..4 {
            h.push(&loud(), &mut out);
        }
        let fresh = h.detect().expect("a new question's run need not wait");
        h.detected(answer(stale, 0.9), &mut out);
        assert!(
            out.is_empty(),
            "the old question's speech was heard: {out:?}"
        );
        h.detected(answer(fresh, 0.9), &mut out);
        assert_eq!(out, vec![Noticed::SpeechStarted]);
    }

    #[test]
    fn a_failed_run_loses_its_audio_and_listening_goes_on() {
        let mut h = Hearing::default();
        let mut out = Vec::new();
        h.push(&loud(), &mut out);
        let _lost = h.detect().unwrap();
        h.detected(Err("detector failed".into()), &mut out);
        assert!(out.is_empty());
        h.push(&loud(), &mut out);
        assert!(h.detect().is_some());
    }
}
