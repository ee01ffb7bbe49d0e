//! Audio that flows through a call: codecs, tone detection and prompt files.
//!
//! Everything here is synchronous and allocation-free on the per-frame path, so the
//! same code serves the live call loop, tests and benchmarks.

pub mod dtmf;
pub mod g711;
pub mod playout;
pub mod prompt;
pub mod relay;
pub mod sdp;
pub mod tone;
pub mod wav;

/// Samples per second of narrowband telephony audio (G.711).
pub const SAMPLE_RATE: u32 = 8000;
/// Samples in one 20 ms frame at 8 kHz.
pub const FRAME_SAMPLES: usize = 160;
