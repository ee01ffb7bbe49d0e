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

use std::path::PathBuf;
use std::sync::Arc;

/// What calls need to listen: the shared recognition pool and the VAD model.
#[derive(Clone)]
pub struct SpeechRuntime {
    pub asr: AsrPool,
    pub vad_model: PathBuf,
}

impl std::fmt::Debug for SpeechRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpeechRuntime")
            .field("model", &self.asr.model.name)
            .finish()
    }
}

impl SpeechRuntime {
    /// Loads the Whisper model `model` into a pool of `workers` single-threaded
    /// recognisers, checks the VAD model and ONNX Runtime. Any missing or corrupt
    /// file is an error naming the set-up script.
    pub fn load(models: &ModelDir, model: &str, workers: usize) -> anyhow::Result<Arc<Self>> {
        let whisper = Arc::new(WhisperModel::load(&models.whisper(model)?)?);
        models::init_onnx_runtime(&models.onnxruntime()?)?;
        let vad_model = models.silero_vad()?;
        // Opening a session proves the model file is usable.
        vad::SileroVad::load(&vad_model)?;
        let asr = AsrPool::start(whisper, workers, 1, workers * 2)?;
        Ok(Arc::new(Self { asr, vad_model }))
    }
}
