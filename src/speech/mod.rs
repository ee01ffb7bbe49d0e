//! Speech on the line: models, recognition (Whisper) and, later, synthesis.
//!
//! Recognition runs on a bounded pool of worker threads outside the async runtime;
//! calls submit finished utterances and await the transcript.

pub mod asr;
pub mod endpoint;
pub mod kokoro;
pub mod models;
pub mod pool;
pub mod remote;
pub mod score;
pub mod tts;
pub mod vad;
pub mod zh;

pub use asr::{AsrError, Language, Recognizer, Transcript, WhisperModel};
pub use models::{FETCH_SCRIPT, ModelDir, ModelError};
pub use pool::AsrPool;

use std::sync::Arc;

/// What calls need to listen: the shared recognition pool and the voice
/// detector, with its model session opened ahead (opening one takes tens of
/// milliseconds, which must not happen on a call's media task).
pub struct SpeechRuntime {
    pub asr: AsrPool,
    /// The voice detector's thread: every call's chunks, batched.
    pub detector: vad::Detector,
}

impl std::fmt::Debug for SpeechRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpeechRuntime")
            .field("model", &self.asr.model.name)
            .finish()
    }
}

/// The longest a finished utterance may be expected to wait for a recogniser;
/// past it the caller is asked at once to say it again or use the keys. A
/// refused caller says it again within seconds, so refusing early only adds
/// work: a caller who waits longer than [`HOLD_ON_AFTER`] hears "one moment"
/// instead, and only a queue this long refuses.
pub const MAX_WAIT: std::time::Duration = std::time::Duration::from_secs(4);

/// A whole utterance expected back later than this (queued behind other
/// callers' words) has its caller told "one moment" meanwhile.
pub const HOLD_ON_AFTER: std::time::Duration = std::time::Duration::from_millis(1500);

impl SpeechRuntime {
    /// Loads the Whisper model `model` into a pool of `workers` recognisers
    /// (at most one per core) sharing the cores' threads: a caller alone gets
    /// every core, callers at once one each (never more threads than cores in
    /// all, which ggml's spinning threads punish). Checks the VAD model and ONNX
    /// Runtime. Any missing or corrupt file is an error naming the set-up
    /// script.
    /// `remote`: languages heard by a remote service first.
    pub fn load(
        models: &ModelDir,
        model: &str,
        workers: usize,
        remote: std::collections::HashMap<Language, Arc<remote::Service>>,
    ) -> anyhow::Result<Arc<Self>> {
        let whisper = Arc::new(WhisperModel::load(&models.whisper(model)?)?);
        models::init_onnx_runtime(&models.onnxruntime()?)?;
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        // One session: the detector's thread runs every call's chunks in batches.
        // Opening it also proves the model file is usable.
        let vad = vad::VadModel::load(&models.silero_vad()?)?;
        let detector = vad::Detector::start(vad)?;
        let asr = AsrPool::start(whisper, workers, cores, MAX_WAIT)?.with_remote(remote);
        Ok(Arc::new(Self { asr, detector }))
    }
}
