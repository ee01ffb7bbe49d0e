//! kefu: a voice-first customer-service server.
//!
//! See ARCHITECTURE.md for the map of modules and how a call flows through them.

pub mod agents;
pub mod api;
pub mod auth;
pub mod budget;
pub mod call;
pub mod channel;
pub mod cluster;
pub mod config;
pub mod dialogue;
pub mod dialplan;
pub mod http;
pub mod media;
pub mod metrics;
pub mod server;
pub mod source;
pub mod speech;
pub mod store;
pub mod watch;

/// Locks a mutex, carrying on past a panic in another holder: every guarded state
/// here stays consistent between statements, so a poisoned lock is still usable
/// (and one failed request must not take the server down with it).
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Whether a character is a Chinese (Han) character, in the CJK blocks.
pub fn is_han(c: char) -> bool {
    matches!(c as u32, 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF | 0x20000..=0x2FA1F)
}

/// jieba's word segmenter with its default dictionary, built once for the process:
/// the dialogue's terms and the Mandarin voice's words are both cut with it.
pub fn jieba() -> &'static jieba_rs::Jieba {
    static JIEBA: std::sync::LazyLock<jieba_rs::Jieba> =
        std::sync::LazyLock::new(jieba_rs::Jieba::new);
    &JIEBA
}

/// How logs name a conversation (or a queue item): its first 8 characters. The
/// whole id, with its web chat key (`channel::chat::proof`), opens the customer's
/// side of a conversation, so the id stays out of log lines as well; 32 bits are
/// enough to follow one through the logs.
pub fn log_id(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}
