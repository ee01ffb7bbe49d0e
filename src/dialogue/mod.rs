//! The dialogue core every channel shares: the knowledge base (`kb`), text analysis
//! (`text`, and Mandarin sound-alikes in `homophone`), intent matching with calibrated confidence (`matcher`;
//! `calibrate`, `threshold` and `classifier` fitted on each knowledge base at load), slots, and the
//! per-conversation state machine (`engine`). Nothing here does I/O or reads a clock;
//! `reload` (the file watcher), `conversations` (the shared live set) and `service`
//! (the one conversation service every channel uses; the store and the agents'
//! desk behind two ports) are the edges.

pub mod align;
pub mod calibrate;
pub mod classifier;
pub mod conversations;
pub mod engine;
pub mod eval;
pub mod homophone;
pub mod kb;
pub mod matcher;
pub mod reload;
mod replies;
pub mod semantic;
pub mod service;
pub mod slots;
pub mod snapshot;
pub mod text;
pub mod threshold;

pub use engine::{Conversation, Reply, ReplyKind};
pub use kb::{KnowledgeBase, Medium};
pub use matcher::Matcher;
pub use text::Lang;
