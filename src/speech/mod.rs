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

/// What calls need to listen: the shared recognition pool and the VAD model, with
/// VAD sessions opened ahead (opening one takes tens of milliseconds, which must not
/// happen on a call's media task).
pub struct SpeechRuntime {
    pub asr: AsrPool,
    pub vad_model: PathBuf,
    idle_vads: std::sync::Mutex<Vec<vad::SileroVad>>,
}

/// VAD sessions opened at start; more are opened (on the caller's task) only when
/// more calls than this listen at once.
const VAD_SESSIONS: usize = 8;

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
        // Opening the sessions also proves the model file is usable.
        let idle = (0..VAD_SESSIONS)
            .map(|_| vad::SileroVad::load(&vad_model))
            .collect::<Result<Vec<_>, _>>()?;
        let asr = AsrPool::start(whisper, workers, 1, workers * 2)?;
        Ok(Arc::new(Self {
            asr,
            vad_model,
            idle_vads: std::sync::Mutex::new(idle),
        }))
    }

    /// A VAD session for a call (reset); give it back with [`Self::give_back`].
    pub fn take_vad(&self) -> Result<vad::SileroVad, vad::VadError> {
        let idle = self.idle_vads.lock().ok().and_then(|mut v| v.pop());
        match idle {
            Some(v) => Ok(v),
            None => {
                tracing::warn!("all prepared VAD sessions are in use; opening another");
                vad::SileroVad::load(&self.vad_model)
            }
        }
    }

    pub fn give_back(&self, mut vad: vad::SileroVad) {
        vad.reset();
        if let Ok(mut idle) = self.idle_vads.lock() {
            idle.push(vad);
        }
    }
}
