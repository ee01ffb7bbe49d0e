//! Speech on the line: models, recognition (Whisper) and, later, synthesis.
//!
//! Recognition runs on a bounded pool of worker threads outside the async runtime;
//! calls submit finished utterances and await the transcript.

pub mod asr;
pub mod endpoint;
pub mod models;
pub mod score;
pub mod tts;
pub mod vad;

pub use asr::{AsrError, AsrPool, Language, Recognizer, Transcript, WhisperModel};
pub use models::{FETCH_SCRIPT, ModelDir, ModelError};
