//! What a call is playing: a queue of prompts cut into 20 ms frames.

use std::collections::VecDeque;
use std::sync::Arc;

use super::FRAME_SAMPLES;
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

    /// Fills one frame.
    pub fn next_frame(&mut self, out: &mut [i16; FRAME_SAMPLES]) -> Frame {
        if !self.active {
            out.fill(0);
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
            let samples = prompt.samples();
            let n = (samples.len() - self.offset).min(FRAME_SAMPLES - filled);
            out[filled..filled + n].copy_from_slice(&samples[self.offset..self.offset + n]);
            filled += n;
            self.offset += n;
            if self.offset >= samples.len() {
                self.queue.pop_front();
                self.offset = 0;
            }
        }
        out[filled..].fill(0);
        if self.queue.is_empty() {
            self.active = false;
            Frame::Finished
        } else {
            Frame::Audio
        }
    }
}
