//! Call-progress tones kefu plays itself: the ringback an agent hears while
//! kefu rings the customer on a callback (China's, ITU-T E.180 Supplement 2:
//! 450 Hz, 1 s on, 4 s off). Sans I/O: frames of 8 kHz samples on demand.

use super::{FRAME_SAMPLES, SAMPLE_RATE};

const HZ: f32 = 450.0;
/// About −13 dBm0: a comfortable level on a handset.
const LEVEL: f32 = 6500.0;
const ON_SAMPLES: u64 = SAMPLE_RATE as u64;
const PERIOD_SAMPLES: u64 = 5 * SAMPLE_RATE as u64;

/// The ringback tone, continuous across frames.
#[derive(Debug, Default)]
pub struct Ringback {
    /// Samples produced so far.
    n: u64,
}

impl Ringback {
    /// The next 20 ms of the tone.
    pub fn next_frame(&mut self) -> [i16; FRAME_SAMPLES] {
        let mut out = [0i16; FRAME_SAMPLES];
        for s in &mut out {
            if self.n % PERIOD_SAMPLES < ON_SAMPLES {
                let t = self.n as f32 / SAMPLE_RATE as f32;
                *s = (LEVEL * (std::f32::consts::TAU * HZ * t).sin()) as i16;
            }
            self.n += 1;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_second_of_450_hz_then_four_of_silence() {
        let mut r = Ringback::default();
        let frames: Vec<[i16; FRAME_SAMPLES]> = (0..500).map(|_| r.next_frame()).collect();
        let loud = |f: &[i16; FRAME_SAMPLES]| f.iter().any(|&s| s.abs() > 1000);
        // 50 frames on, 200 off, twice.
        assert!(frames[..50].iter().all(loud));
        assert!(!frames[50..250].iter().any(loud));
        assert!(frames[250..300].iter().all(loud));
        // 450 Hz: 9 cycles in a 20 ms frame, so 18 sign changes give or take one.
        let f = &frames[10];
        let crossings = f.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
        assert!((17..=19).contains(&crossings), "{crossings}");
    }
}
