//! How calls and messages arrive: SIP signalling and RTP media.

pub mod rtp;
pub mod sip;
