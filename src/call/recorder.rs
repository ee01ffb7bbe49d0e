//! Audio kept while a call records: a voicemail message (one channel) or a bridged
//! call (caller left, agent right). Samples are placed by arrival time, so a leg
//! that goes quiet (silence suppression, hold) stays in step with the other.
//! Bounded: nothing is kept past `max`.

use std::time::{Duration, Instant};

use crate::media::SAMPLE_RATE;

/// Up to this much arrival jitter is absorbed before silence is inserted.
const SLACK: usize = 1600;

#[derive(Debug)]
pub struct Recorder {
    channels: Vec<Vec<i16>>,
    start: Instant,
    max_samples: usize,
}

impl Recorder {
    pub fn new(channels: usize, max: Duration, start: Instant) -> Self {
        Self {
            channels: vec![Vec::new(); channels.max(1)],
            start,
            max_samples: (max.as_millis() as usize) * SAMPLE_RATE as usize / 1000,
        }
    }

    /// Audio of `channel` that arrived at `now`.
    pub fn push(&mut self, channel: usize, pcm: &[i16], now: Instant) {
        let max = self.max_samples;
        let at = (now.saturating_duration_since(self.start).as_micros() as usize)
            * SAMPLE_RATE as usize
            / 1_000_000;
        let Some(buf) = self.channels.get_mut(channel) else {
            return;
        };
        let starts_at = at.saturating_sub(pcm.len());
        if buf.len() + SLACK < starts_at {
            buf.resize(starts_at.min(max), 0);
        }
        let room = max.saturating_sub(buf.len());
        buf.extend_from_slice(&pcm[..pcm.len().min(room)]);
    }

    pub fn duration(&self) -> Duration {
        let samples = self.channels.iter().map(Vec::len).max().unwrap_or(0);
        Duration::from_micros(samples as u64 * 1_000_000 / u64::from(SAMPLE_RATE))
    }

    pub fn is_empty(&self) -> bool {
        self.channels.iter().all(Vec::is_empty)
    }

    /// The recording as a 16-bit PCM WAV file (channels padded to one length).
    pub fn wav(&self) -> Result<Vec<u8>, hound::Error> {
        let spec = hound::WavSpec {
            channels: self.channels.len() as u16,
            sample_rate: SAMPLE_RATE,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let len = self.channels.iter().map(Vec::len).max().unwrap_or(0);
        let mut out = std::io::Cursor::new(Vec::with_capacity(44 + len * 2 * self.channels.len()));
        {
            let mut w = hound::WavWriter::new(&mut out, spec)?;
            for i in 0..len {
                for c in &self.channels {
                    w.write_sample(c.get(i).copied().unwrap_or(0))?;
                }
            }
            w.finalize()?;
        }
        Ok(out.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_stay_in_step_and_are_bounded() {
        let t0 = Instant::now();
        let mut r = Recorder::new(2, Duration::from_secs(1), t0);
        // The caller talks for 100 ms from the start.
        for i in 1..=5u64 {
            r.push(0, &[100; 160], t0 + Duration::from_millis(20 * i));
        }
        // The agent's first packet arrives at 600 ms: silence before it.
        r.push(1, &[200; 160], t0 + Duration::from_millis(600));
        assert_eq!(r.channels[0].len(), 800);
        assert_eq!(r.channels[1].len(), 4800);
        assert_eq!(r.channels[1][4639], 0);
        assert_eq!(r.channels[1][4640], 200);
        // Past the maximum nothing more is kept.
        r.push(1, &[1; 160], t0 + Duration::from_secs(5));
        assert_eq!(r.channels[1].len(), 8000);
        assert_eq!(r.duration(), Duration::from_secs(1));
        let wav = r.wav().unwrap();
        let reader = hound::WavReader::new(std::io::Cursor::new(wav)).unwrap();
        assert_eq!(reader.spec().channels, 2);
        assert_eq!(reader.len(), 16000);
    }
}
