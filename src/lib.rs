//! kefu: a voice-first customer-service server.
//!
//! See ARCHITECTURE.md for the map of modules and how a call flows through them.

pub mod agents;
pub mod api;
pub mod auth;
pub mod call;
pub mod channel;
pub mod config;
pub mod dialogue;
pub mod dialplan;
pub mod media;
pub mod server;
pub mod source;
pub mod speech;
pub mod store;
pub mod watch;
