//! RTP media: sending paced G.711 frames, receiving with SSRC/sequence tracking and a
//! small reordering buffer, which source a call's media is taken from (`latch`), and
//! the port pool calls take their sockets from.
//!
//! RTCP (`rtcp`, sans I/O): sender and receiver reports built from the
//! receiver's statistics and the clock's sender state, the far end's reports
//! read back; `call::reports` sends and reads them for the caller's leg.

pub mod clock;
pub mod inbound;
pub mod jitter;
pub mod latch;
pub mod pacer;
pub mod ports;
pub mod receiver;
pub mod rtcp;
pub mod sender;
pub mod socket;

/// RTP packets per second of 20 ms audio.
pub const FRAME_MILLIS: u64 = 20;
