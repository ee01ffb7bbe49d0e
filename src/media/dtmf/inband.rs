//! In-band DTMF detection with the Goertzel algorithm on decoded 8 kHz audio.
//!
//! Blocks of 102 samples (12.75 ms) put each neighbouring DTMF frequency near a null
//! of the filter, so the row and column tones separate cleanly. A block counts as a
//! key only when (1) each tone is loud enough, (2) the two tones carry most of the
//! block's energy, (3) each tone stands well above the others of its group, and
//! (4) the twist between the groups is within ITU-T Q.24 limits. A key is reported
//! after two equal blocks in a row (≥ 25.5 ms of tone) and must be followed by a
//! break before it can repeat. Speech, music and single tones fail (2) or (3).

use crate::media::SAMPLE_RATE;

const BLOCK: usize = 102;
const ROWS: [f32; 4] = [697.0, 770.0, 852.0, 941.0];
const COLS: [f32; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
const KEYS: [[char; 4]; 4] = [
    ['1', '2', '3', 'A'],
    ['4', '5', '6', 'B'],
    ['7', '8', '9', 'C'],
    ['*', '0', '#', 'D'],
];
/// Minimum amplitude of each tone (about -32 dBm0 on a 16-bit scale).
const MIN_AMPLITUDE: f32 = 200.0;
/// Share of the block's energy that the two tones must hold together.
const MIN_TONE_SHARE: f32 = 0.75;
/// How far (power ratio) a tone must stand above the others of its group.
const MIN_PEAK_RATIO: f32 = 8.0;
/// Normal twist (column quieter than row) and reverse twist, as power ratios.
const MAX_NORMAL_TWIST: f32 = 6.3; // 8 dB
const MAX_REVERSE_TWIST: f32 = 2.5; // 4 dB

/// Streaming DTMF tone detector. Feed decoded audio; receive key presses.
#[derive(Clone, Debug)]
pub struct ToneDetector {
    coeffs: [f32; 8],
    block: [f32; BLOCK],
    filled: usize,
    /// Key seen in the previous block.
    previous: Option<char>,
    /// Key already reported and still held down.
    reported: Option<char>,
}

impl Default for ToneDetector {
    fn default() -> Self {
        let mut coeffs = [0.0; 8];
        for (c, f) in coeffs.iter_mut().zip(ROWS.iter().chain(COLS.iter())) {
            *c = 2.0 * (2.0 * std::f32::consts::PI * f / SAMPLE_RATE as f32).cos();
        }
        Self {
            coeffs,
            block: [0.0; BLOCK],
            filled: 0,
            previous: None,
            reported: None,
        }
    }
}

impl ToneDetector {
    /// Feeds audio; calls `on_key` for each key press that completes in it.
    pub fn push(&mut self, samples: &[i16], mut on_key: impl FnMut(char)) {
        for &s in samples {
            self.block[self.filled] = f32::from(s);
            self.filled += 1;
            if self.filled == BLOCK {
                self.filled = 0;
                let key = self.classify();
                if let Some(k) = self.step(key) {
                    on_key(k);
                }
            }
        }
    }

    fn step(&mut self, key: Option<char>) -> Option<char> {
        let stable = key.is_some() && key == self.previous;
        self.previous = key;
        if key.is_none() && self.previous.is_none() {
            // Two silent blocks in a row release the held key.
            self.reported = None;
        }
        if stable && self.reported != key {
            self.reported = key;
            return key;
        }
        None
    }

    fn classify(&self) -> Option<char> {
        let energy: f32 = self.block.iter().map(|x| x * x).sum();
        if energy <= 0.0 {
            return None;
        }
        let mut power = [0.0f32; 8];
        for (p, &coeff) in power.iter_mut().zip(&self.coeffs) {
            let (mut s1, mut s2) = (0.0f32, 0.0f32);
            for &x in &self.block {
                let s0 = x + coeff * s1 - s2;
                s2 = s1;
                s1 = s0;
            }
            *p = s1 * s1 + s2 * s2 - coeff * s1 * s2;
        }
        let (row, row_power) = strongest(&power[..4])?;
        let (col, col_power) = strongest(&power[4..])?;
        // A sine of amplitude A gives Goertzel power (N·A/2)².
        let amplitude = |p: f32| 2.0 * p.sqrt() / BLOCK as f32;
        if amplitude(row_power) < MIN_AMPLITUDE || amplitude(col_power) < MIN_AMPLITUDE {
            return None;
        }
        // Block energy of a sine is N·A²/2, so power / (N·E/2) is that tone's share.
        let share = (row_power + col_power) / (BLOCK as f32 * energy / 2.0);
        if share < MIN_TONE_SHARE {
            return None;
        }
        let others_ok = |group: &[f32], peak: usize, peak_power: f32| {
            group
                .iter()
                .enumerate()
                .all(|(i, &p)| i == peak || p * MIN_PEAK_RATIO <= peak_power)
        };
        if !others_ok(&power[..4], row, row_power) || !others_ok(&power[4..], col, col_power) {
            return None;
        }
        if row_power > col_power * MAX_NORMAL_TWIST || col_power > row_power * MAX_REVERSE_TWIST {
            return None;
        }
        Some(KEYS[row][col])
    }
}

fn strongest(powers: &[f32]) -> Option<(usize, f32)> {
    powers
        .iter()
        .copied()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(&b.1))
}

/// Synthesises a DTMF key as 8 kHz samples (each tone at `amplitude`), for tests,
/// benchmarks and in-band signalling.
pub fn synthesize(key: char, millis: u32, amplitude: f32) -> Vec<i16> {
    let Some((r, c)) = KEYS.iter().enumerate().find_map(|(r, row)| {
        row.iter()
            .position(|&k| k == key.to_ascii_uppercase())
            .map(|c| (r, c))
    }) else {
        return Vec::new();
    };
    let n = (SAMPLE_RATE * millis / 1000) as usize;
    (0..n)
        .map(|i| {
            let t = i as f32 / SAMPLE_RATE as f32;
            let v = amplitude
                * ((2.0 * std::f32::consts::PI * ROWS[r] * t).sin()
                    + (2.0 * std::f32::consts::PI * COLS[c] * t).sin());
            v.clamp(-32768.0, 32767.0) as i16
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detect(samples: &[i16]) -> String {
        let mut d = ToneDetector::default();
        let mut out = String::new();
        // Feed in 20 ms frames, as the call loop does.
        for frame in samples.chunks(160) {
            d.push(frame, |k| out.push(k));
        }
        out
    }

    fn silence(ms: u32) -> Vec<i16> {
        vec![0; (SAMPLE_RATE * ms / 1000) as usize]
    }

    #[test]
    fn every_key_at_several_levels() {
        for amp in [400.0, 2000.0, 8000.0] {
            let mut audio = Vec::new();
            for k in "0123456789*#ABCD".chars() {
                audio.extend(synthesize(k, 80, amp));
                audio.extend(silence(60));
            }
            assert_eq!(detect(&audio), "0123456789*#ABCD", "amplitude {amp}");
        }
    }

    #[test]
    fn repeated_key_needs_a_break() {
        let mut audio = synthesize('7', 100, 3000.0);
        audio.extend(silence(50));
        audio.extend(synthesize('7', 100, 3000.0));
        assert_eq!(detect(&audio), "77");
        // One long press is one key.
        assert_eq!(detect(&synthesize('7', 600, 3000.0)), "7");
    }

    #[test]
    fn too_short_a_tone_is_not_a_key() {
        let mut audio = silence(40);
        audio.extend(synthesize('5', 20, 3000.0));
        audio.extend(silence(40));
        assert_eq!(detect(&audio), "");
    }

    #[test]
    fn survives_noise_and_twist_limits() {
        let mut audio = synthesize('9', 100, 3000.0);
        let mut seed = 12345u32;
        for s in audio.iter_mut() {
            seed = seed.wrapping_mul(1103515245).wrapping_add(12345);
            *s = s.saturating_add(((seed >> 16) % 400) as i16 - 200);
        }
        assert_eq!(detect(&audio), "9");
    }

    #[test]
    fn single_tones_and_noise_are_not_keys() {
        let tone: Vec<i16> = (0..8000)
            .map(|i| {
                (8000.0 * (2.0 * std::f32::consts::PI * 1000.0 * i as f32 / 8000.0).sin()) as i16
            })
            .collect();
        assert_eq!(detect(&tone), "");
        let row_only: Vec<i16> = (0..8000)
            .map(|i| {
                (8000.0 * (2.0 * std::f32::consts::PI * 770.0 * i as f32 / 8000.0).sin()) as i16
            })
            .collect();
        assert_eq!(detect(&row_only), "");
        let mut seed = 1u32;
        let noise: Vec<i16> = (0..16000)
            .map(|_| {
                seed = seed.wrapping_mul(1103515245).wrapping_add(12345);
                ((seed >> 16) as i16) / 2
            })
            .collect();
        assert_eq!(detect(&noise), "");
    }

    #[test]
    fn speech_prompts_are_not_keys() {
        // The demo prompts are real (synthesised) speech in Mandarin and English.
        let audio_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("audio");
        let mut checked = 0;
        for lang in ["en", "zh"] {
            let Ok(entries) = std::fs::read_dir(audio_dir.join(lang)) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.extension().is_some_and(|e| e == "wav") {
                    let prompt = crate::media::prompt::Prompt::load(&path)
                        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                    assert_eq!(
                        detect(prompt.samples()),
                        "",
                        "false key in {}",
                        path.display()
                    );
                    checked += 1;
                }
            }
        }
        assert!(
            checked >= 10,
            "expected the demo prompts under audio/, found {checked}"
        );
    }
}
