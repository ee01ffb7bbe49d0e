//! Endpointing: from per-chunk speech probabilities to "the caller started talking"
//! (for barge-in) and "the caller has finished" (an utterance to recognise).
//!
//! A plain state machine over 32 ms chunks of 8 kHz audio; time is the chunk count,
//! so tests drive it with made-up probabilities and no clock.

use std::collections::VecDeque;
use std::time::Duration;

use super::vad::CHUNK;

const CHUNK_MS: u64 = (CHUNK as u64 * 1000) / 8000;

#[derive(Clone, Debug, PartialEq)]
pub struct EndpointConfig {
    /// Probability at or above which a chunk counts as speech.
    pub start_threshold: f32,
    /// Probability below which a chunk counts as silence again (hysteresis).
    pub end_threshold: f32,
    /// Speech must last this long before it counts (a cough or click does not).
    pub min_speech: Duration,
    /// Silence after speech that ends the utterance.
    pub trailing_silence: Duration,
    /// Silence after speech that may be the end: the words so far are offered
    /// ([`Event::Paused`]) so they can be recognised while the caller stays quiet.
    pub pause: Duration,
    /// An utterance is cut here even if the caller goes on talking.
    pub max_utterance: Duration,
    /// Audio kept from before the onset, so the first syllable is not clipped.
    pub pre_roll: Duration,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        Self {
            start_threshold: 0.5,
            end_threshold: 0.35,
            min_speech: Duration::from_millis(96),
            trailing_silence: Duration::from_millis(600),
            pause: Duration::from_millis(96),
            max_utterance: Duration::from_secs(15),
            pre_roll: Duration::from_millis(256),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// Speech has lasted `min_speech`: stop any interruptible prompt. `onset_ms` is
    /// when it began, counted from the first chunk pushed.
    SpeechStarted { onset_ms: u64 },
    /// The caller has been quiet for `pause` after speech: the utterance so far,
    /// which is the whole utterance unless the caller goes on.
    Paused { audio: Vec<f32>, end_ms: u64 },
    /// The caller went on after a [`Event::Paused`]: what it offered is not the
    /// whole utterance.
    Resumed,
    /// The caller has finished (or hit `max_utterance`, then `cut` is true).
    Utterance {
        audio: Vec<f32>,
        onset_ms: u64,
        end_ms: u64,
        cut: bool,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Quiet,
    Onset { chunks: u64 },
    Speaking { silent: u64 },
}

#[derive(Debug)]
pub struct Endpointer {
    cfg: EndpointConfig,
    state: State,
    pre_roll: VecDeque<f32>,
    utterance: Vec<f32>,
    /// Chunks pushed so far.
    chunks: u64,
    onset_chunk: u64,
}

fn chunks_for(d: Duration) -> u64 {
    (d.as_millis() as u64).div_ceil(CHUNK_MS).max(1)
}

impl Endpointer {
    pub fn new(cfg: EndpointConfig) -> Self {
        Self {
            cfg,
            state: State::Quiet,
            pre_roll: VecDeque::new(),
            utterance: Vec::new(),
            chunks: 0,
            onset_chunk: 0,
        }
    }

    /// Whether the caller is talking (past `min_speech`).
    pub fn is_speaking(&self) -> bool {
        matches!(self.state, State::Speaking { .. })
    }

    /// Drops any partial utterance (e.g. when the dialplan stops listening).
    pub fn reset(&mut self) {
        self.state = State::Quiet;
        self.utterance.clear();
        self.pre_roll.clear();
    }

    /// Feeds one chunk and the VAD's speech probability for it.
    pub fn push(&mut self, chunk: &[f32; CHUNK], p: f32) -> Option<Event> {
        let index = self.chunks;
        self.chunks += 1;
        match self.state {
            State::Quiet => {
                if p >= self.cfg.start_threshold {
                    self.utterance.clear();
                    self.utterance.extend(self.pre_roll.drain(..));
                    self.utterance.extend_from_slice(chunk);
                    self.onset_chunk = index;
                    self.state = State::Onset { chunks: 1 };
                    return self.maybe_started();
                }
                self.pre_roll.extend(chunk.iter());
                let keep = chunks_for(self.cfg.pre_roll) as usize * CHUNK;
                while self.pre_roll.len() > keep {
                    self.pre_roll.pop_front();
                }
                None
            }
            State::Onset { chunks } => {
                self.utterance.extend_from_slice(chunk);
                if p >= self.cfg.end_threshold {
                    self.state = State::Onset { chunks: chunks + 1 };
                    self.maybe_started()
                } else {
                    // Too short to be speech: back to quiet, keeping the tail as pre-roll.
                    self.state = State::Quiet;
                    let keep =
                        (chunks_for(self.cfg.pre_roll) as usize * CHUNK).min(self.utterance.len());
                    let from = self.utterance.len() - keep;
                    self.pre_roll = self.utterance.drain(from..).collect();
                    self.utterance.clear();
                    None
                }
            }
            State::Speaking { silent: before } => {
                self.utterance.extend_from_slice(chunk);
                let silent = if p < self.cfg.end_threshold {
                    before + 1
                } else {
                    0
                };
                self.state = State::Speaking { silent };
                let heard = (index + 1 - self.onset_chunk) * CHUNK_MS;
                let pause = chunks_for(self.cfg.pause);
                if silent == 0 && before >= pause {
                    Some(Event::Resumed)
                } else if silent == pause && silent < chunks_for(self.cfg.trailing_silence) {
                    Some(Event::Paused {
                        audio: self.trimmed(silent).to_vec(),
                        end_ms: (index + 1 - silent) * CHUNK_MS,
                    })
                } else if silent >= chunks_for(self.cfg.trailing_silence) {
                    let len = self.trimmed(silent).len();
                    self.utterance.truncate(len);
                    Some(self.finish(index + 1 - silent, false))
                } else if heard >= self.cfg.max_utterance.as_millis() as u64 {
                    Some(self.finish(index + 1, true))
                } else {
                    None
                }
            }
        }
    }

    /// The utterance so far without all but ~100 ms of its `silent` trailing chunks
    /// (Whisper needs no more).
    fn trimmed(&self, silent: u64) -> &[f32] {
        let drop = (silent.saturating_sub(3) as usize * CHUNK).min(self.utterance.len());
        &self.utterance[..self.utterance.len() - drop]
    }

    fn maybe_started(&mut self) -> Option<Event> {
        if let State::Onset { chunks } = self.state
            && chunks >= chunks_for(self.cfg.min_speech)
        {
            self.state = State::Speaking { silent: 0 };
            return Some(Event::SpeechStarted {
                onset_ms: self.onset_chunk * CHUNK_MS,
            });
        }
        None
    }

    fn finish(&mut self, end_chunk: u64, cut: bool) -> Event {
        self.state = State::Quiet;
        self.pre_roll.clear();
        Event::Utterance {
            audio: std::mem::take(&mut self.utterance),
            onset_ms: self.onset_chunk * CHUNK_MS,
            end_ms: end_chunk * CHUNK_MS,
            cut,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs probabilities through an endpointer; chunk i holds the value i.
    fn run(e: &mut Endpointer, probs: &[f32]) -> Vec<(usize, Event)> {
        let mut out = Vec::new();
        for (i, &p) in probs.iter().enumerate() {
            let chunk = [i as f32; CHUNK];
            if let Some(ev) = e.push(&chunk, p) {
                out.push((i, ev));
            }
        }
        out
    }

    fn speech(n: usize) -> Vec<f32> {
        vec![0.9; n]
    }
    fn silence(n: usize) -> Vec<f32> {
        vec![0.05; n]
    }

    #[test]
    fn an_utterance_starts_after_min_speech_and_ends_after_trailing_silence() {
        let mut e = Endpointer::new(EndpointConfig::default());
        let probs = [silence(20), speech(40), silence(25)].concat();
        let events = run(&mut e, &probs);
        assert_eq!(events.len(), 3, "{events:?}");
        // 96 ms of speech = 3 chunks: started on the third speech chunk.
        assert_eq!(events[0], (22, Event::SpeechStarted { onset_ms: 20 * 32 }));
        // 96 ms of quiet after the last speech chunk (59): the words so far.
        let (
            at,
            Event::Paused {
                audio: draft,
                end_ms,
            },
        ) = &events[1]
        else {
            panic!("{events:?}")
        };
        assert_eq!((*at, *end_ms), (59 + 3, 60 * 32));
        // 600 ms of silence = 19 chunks after the last speech chunk (59).
        let (
            at,
            Event::Utterance {
                audio,
                onset_ms,
                end_ms,
                cut,
            },
        ) = &events[2]
        else {
            panic!("{events:?}")
        };
        assert_eq!(*at, 59 + 19);
        assert_eq!((*onset_ms, *end_ms, *cut), (20 * 32, 60 * 32, false));
        // Pre-roll (8 chunks of 256 ms) + 40 speech chunks + 3 chunks of tail.
        assert_eq!(audio.len(), (8 + 40 + 3) * CHUNK);
        assert_eq!(audio[0], 12.0, "pre-roll starts 8 chunks before the onset");
        assert_eq!(audio[audio.len() - 1], 62.0);
        assert_eq!(draft, audio, "nothing was said after the pause");
    }

    #[test]
    fn a_cough_does_not_count() {
        let mut e = Endpointer::new(EndpointConfig::default());
        let probs = [silence(10), speech(2), silence(30)].concat();
        assert!(run(&mut e, &probs).is_empty());
        assert!(!e.is_speaking());
    }

    #[test]
    fn short_pauses_inside_speech_do_not_end_the_utterance() {
        let mut e = Endpointer::new(EndpointConfig::default());
        let probs = [speech(20), silence(10), speech(20), silence(20)].concat();
        let events = run(&mut e, &probs);
        let kinds: Vec<_> = events
            .iter()
            .map(|(at, ev)| match ev {
                Event::SpeechStarted { .. } => (*at, "started"),
                Event::Paused { .. } => (*at, "paused"),
                Event::Resumed => (*at, "resumed"),
                Event::Utterance { .. } => (*at, "utterance"),
            })
            .collect();
        assert_eq!(
            kinds,
            [
                (2, "started"),
                (22, "paused"),
                (30, "resumed"),
                (52, "paused"),
                (68, "utterance")
            ]
        );
        assert!(matches!(events[4].1, Event::Utterance { end_ms, .. } if end_ms == 50 * 32));
    }

    #[test]
    fn hysteresis_keeps_weak_speech_going() {
        let mut e = Endpointer::new(EndpointConfig::default());
        // 0.4 is under the start threshold but over the end threshold.
        let probs = [speech(5), vec![0.4; 40], silence(20)].concat();
        let events = run(&mut e, &probs);
        assert!(
            matches!(events.last(), Some((_, Event::Utterance { end_ms, .. })) if *end_ms == 45 * 32)
        );
    }

    #[test]
    fn a_long_monologue_is_cut_at_max_utterance() {
        let cfg = EndpointConfig {
            max_utterance: Duration::from_secs(2),
            ..EndpointConfig::default()
        };
        let mut e = Endpointer::new(cfg);
        let events = run(&mut e, &speech(200));
        let cuts: Vec<_> = events
            .iter()
            .filter(|(_, ev)| matches!(ev, Event::Utterance { cut: true, .. }))
            .collect();
        assert!(cuts.len() >= 2, "{events:?}");
        let (at, _) = cuts[0];
        assert_eq!(*at, 2000usize.div_ceil(32) - 1);
    }
}
