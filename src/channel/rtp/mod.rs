//! RTP media: sending paced G.711 frames, receiving with SSRC/sequence tracking and a
//! small reordering buffer, which source a call's media is taken from (`latch`), and
//! the port pool calls take their sockets from.
//!
//! RTCP is not sent yet: receiver statistics (loss, jitter) are kept here and reported
//! in the call record; SR/RR packets would go out from the shared sender (`clock`),
//! which holds every stream's sender state.

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
