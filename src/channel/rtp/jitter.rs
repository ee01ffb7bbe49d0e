//! A small reordering buffer for received frames.
//!
//! kefu consumes caller audio for detection and recognition, not for live playout, so
//! the buffer only restores order: frames leave as soon as they are contiguous, and a
//! gap is given up on once `depth` later frames have arrived behind it.

use std::collections::BTreeMap;

#[derive(Debug)]
pub struct JitterBuffer<T> {
    depth: usize,
    next: Option<u64>,
    frames: BTreeMap<u64, T>,
}

impl<T> JitterBuffer<T> {
    pub fn new(depth: usize) -> Self {
        Self {
            depth: depth.max(1),
            next: None,
            frames: BTreeMap::new(),
        }
    }

    /// Adds the frame with extended sequence number `seq`; late or duplicate frames are
    /// dropped (returns false).
    pub fn push(&mut self, seq: u64, frame: T) -> bool {
        if self.next.is_some_and(|n| seq < n) || self.frames.contains_key(&seq) {
            return false;
        }
        self.frames.insert(seq, frame);
        true
    }

    /// Takes the next frame that is ready, in sequence order.
    pub fn pop(&mut self) -> Option<(u64, T)> {
        let (&first, _) = self.frames.first_key_value()?;
        let ready = match self.next {
            None => true,
            Some(n) => first == n || self.frames.len() > self.depth,
        };
        if !ready {
            return None;
        }
        let (seq, frame) = self.frames.pop_first()?;
        self.next = Some(seq + 1);
        Some((seq, frame))
    }

    pub fn len(&self) -> usize {
        self.frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(jb: &mut JitterBuffer<u64>) -> Vec<u64> {
        std::iter::from_fn(|| jb.pop().map(|(_, f)| f)).collect()
    }

    #[test]
    fn restores_order() {
        let mut jb = JitterBuffer::new(3);
        let mut out = Vec::new();
        for s in [1, 3, 2, 4, 6, 5] {
            jb.push(s, s);
            out.extend(drain(&mut jb));
        }
        assert_eq!(out, vec![1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn gives_up_on_a_lost_frame_after_depth() {
        let mut jb = JitterBuffer::new(2);
        let mut out = Vec::new();
        for s in [1, 3, 4, 5] {
            jb.push(s, s);
            out.extend(drain(&mut jb));
        }
        assert_eq!(out, vec![1, 3, 4, 5]);
        // The lost frame turning up afterwards is too late.
        assert!(!jb.push(2, 2));
        assert!(!jb.push(5, 5));
    }
}
