//! How calls and messages arrive: SIP signalling and RTP media for calls; WebRTC
//! for browsers' calls; HTTP for the text channels (web chat, WeChat, SMS, the app
//! API).

pub mod chat;
pub mod rtp;
pub mod sip;
pub mod webrtc;
