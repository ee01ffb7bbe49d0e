//! What a call is playing: a queue of prompts cut into 20 ms frames.

use std::collections::VecDeque;
use std::sync::Arc;

use super::FRAME_SAMPLES;
use super::g711::Law;
use super::prompt::Prompt;

/// What one frame held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame {
    /// Prompt audio (the last prompt may end inside it, padded with silence).
    Audio,
    /// The queue ran out in this frame: everything asked for has been played.
    Finished,
    /// Nothing to play.
    Silence,
}

#[derive(Debug, Default)]
pub struct Playout {
    queue: VecDeque<Arc<Prompt>>,
    offset: usize,
    active: bool,
    /// Prompts that started sounding, in order, for the call record.
    pub started: Vec<Arc<Prompt>>,
}

impl Playout {
    /// Replaces whatever is playing.
    pub fn play(&mut self, prompts: Vec<Arc<Prompt>>) {
        self.queue = prompts.into();
        self.offset = 0;
        self.active = !self.queue.is_empty();
    }

    /// Adds a prompt after what is queued (the next sentence of an answer).
    pub fn append(&mut self, prompt: Arc<Prompt>) {
        self.queue.push_back(prompt);
        self.active = true;
    }

    /// Stops at once, without reporting `Finished`.
    pub fn stop(&mut self) {
        self.queue.clear();
        self.offset = 0;
        self.active = false;
    }

    pub fn is_playing(&self) -> bool {
        self.active
    }

    /// Fills one frame of linear samples.
    pub fn next_frame(&mut self, out: &mut [i16; FRAME_SAMPLES]) -> Frame {
        self.fill(out, 0, |p| p.samples())
    }

    /// Fills one frame already in `law` (the prompts' shared encoding: no per-call
    /// encoding, and silence is a fill).
    pub fn next_payload(&mut self, law: Law, out: &mut [u8; FRAME_SAMPLES]) -> Frame {
        self.fill(out, law.silence(), |p| p.encoded(law))
    }

    fn fill<T: Copy>(
        &mut self,
        out: &mut [T; FRAME_SAMPLES],
        silence: T,
        source: impl Fn(&Prompt) -> &[T],
    ) -> Frame {
        if !self.active {
            out.fill(silence);
            return Frame::Silence;
        }
        let mut filled = 0;
        while filled < FRAME_SAMPLES {
            let Some(prompt) = self.queue.front() else {
                break;
            };
            if self.offset == 0 {
                self.started.push(prompt.clone());
            }
            let samples = source(prompt);
            let n = (samples.len() - self.offset).min(FRAME_SAMPLES - filled);
            out[filled..filled + n].copy_from_slice(&samples[self.offset..self.offset + n]);
            filled += n;
            self.offset += n;
            if self.offset >= samples.len() {
                self.queue.pop_front();
                self.offset = 0;
            }
        }
        out[filled..].fill(silence);
        if self.queue.is_empty() {
            self.active = false;
            Frame::Finished
        } else {
            Frame::Audio
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn prompt(name: &str, len: usize, seed: i16) -> Arc<Prompt> {
        let samples = (0..len)
            .map(|i| (i as i16).wrapping_mul(seed).wrapping_add(seed))
            .collect();
        Arc::new(Prompt::from_samples(PathBuf::from(name), samples))
    }

    #[test]
    fn encoded_frames_are_the_encoded_linear_frames() {
        // Two prompts whose ends fall inside frames: joined across, padded at the end.
        let prompts = vec![prompt("a", 250, 311), prompt("b", 170, -97)];
        for law in [Law::Pcmu, Law::Pcma] {
            let (mut linear, mut encoded) = (Playout::default(), Playout::default());
            linear.play(prompts.clone());
            encoded.play(prompts.clone());
            let mut frames = Vec::new();
            for _ in 0..4 {
                let mut pcm = [0i16; FRAME_SAMPLES];
                let mut want = [0u8; FRAME_SAMPLES];
                let a = linear.next_frame(&mut pcm);
                law.encode(&pcm, &mut want);
                let mut got = [0u8; FRAME_SAMPLES];
                let b = encoded.next_payload(law, &mut got);
                assert_eq!((a, want), (b, got));
                frames.push(b);
            }
            assert_eq!(
                frames,
                [Frame::Audio, Frame::Audio, Frame::Finished, Frame::Silence]
            );
            assert_eq!(encoded.started.len(), 2);
        }
    }
}
