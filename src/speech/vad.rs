//! Voice activity detection with Silero VAD (ONNX) on 8 kHz telephone audio.
//!
//! Silero takes 256-sample (32 ms) chunks at 8 kHz, preceded by the last 32 samples
//! of the previous chunk, and carries a recurrent state between chunks. It answers
//! the probability that the chunk holds speech; [`super::endpoint`] turns those into
//! utterances.

use std::path::Path;

use ort::session::Session;
use ort::value::Tensor;

use super::models::ModelError;

/// Samples per VAD chunk at 8 kHz (32 ms).
pub const CHUNK: usize = 256;
const CONTEXT: usize = 32;
const STATE: usize = 2 * 128;

#[derive(Debug, thiserror::Error)]
pub enum VadError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("voice activity detection failed: {0}")]
    Run(String),
}

/// One call's VAD: the model session and its recurrent state.
pub struct SileroVad {
    session: Session,
    state: Vec<f32>,
    context: [f32; CONTEXT],
}

impl std::fmt::Debug for SileroVad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SileroVad").finish_non_exhaustive()
    }
}

impl SileroVad {
    /// Opens the model; ONNX Runtime must have been initialised.
    pub fn load(model: &Path) -> Result<Self, VadError> {
        if !model.is_file() {
            return Err(ModelError::Missing {
                path: model.to_path_buf(),
            }
            .into());
        }
        let corrupt = |e: String| ModelError::Corrupt {
            path: model.to_path_buf(),
            reason: e,
        };
        let session = Session::builder()
            .map_err(|e| corrupt(e.to_string()))?
            .with_intra_threads(1)
            .map_err(|e| corrupt(e.to_string()))?
            .with_inter_threads(1)
            .map_err(|e| corrupt(e.to_string()))?
            .commit_from_file(model)
            .map_err(|e| corrupt(e.to_string()))?;
        Ok(Self {
            session,
            state: vec![0.0; STATE],
            context: [0.0; CONTEXT],
        })
    }

    /// Forgets everything heard (a new call or a new question).
    pub fn reset(&mut self) {
        self.state.iter_mut().for_each(|s| *s = 0.0);
        self.context = [0.0; CONTEXT];
    }

    /// Probability (0–1) that this 32 ms chunk of 8 kHz audio (-1..1) is speech.
    pub fn probability(&mut self, chunk: &[f32; CHUNK]) -> Result<f32, VadError> {
        let run = |e: ort::Error| VadError::Run(e.to_string());
        let mut samples = Vec::with_capacity(CONTEXT + CHUNK);
        samples.extend_from_slice(&self.context);
        samples.extend_from_slice(chunk);
        self.context.copy_from_slice(&chunk[CHUNK - CONTEXT..]);
        let input = Tensor::from_array(([1usize, CONTEXT + CHUNK], samples)).map_err(run)?;
        let state = Tensor::from_array(([2usize, 1, 128], self.state.clone())).map_err(run)?;
        let sr = Tensor::from_array(([1usize], vec![8000i64])).map_err(run)?;
        let outputs = self
            .session
            .run(ort::inputs!["input" => input, "state" => state, "sr" => sr])
            .map_err(run)?;
        let (_, p) = outputs["output"].try_extract_tensor::<f32>().map_err(run)?;
        let p = p.first().copied().unwrap_or(0.0);
        let (_, next) = outputs["stateN"].try_extract_tensor::<f32>().map_err(run)?;
        if next.len() == STATE {
            self.state.copy_from_slice(next);
        }
        Ok(p)
    }
}
