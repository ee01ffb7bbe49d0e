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

/// A chunk quieter than this (mean power; an RMS of 0.002, about −54 dBFS) is
/// not speech, and the model is not run for it: a caller in silence, or on a
/// quiet line, costs nothing. Speech on a telephone line sits around −30 dBFS.
const GATE_POWER: f32 = 0.002 * 0.002;
/// After this many quiet chunks (320 ms) the recurrent state starts over, as the
/// model's would after a pause.
const QUIET_RESET: u32 = 10;

/// The Silero model, shared by every call: a few ONNX Runtime sessions (no more
/// than there are cores to run them), each used by one call at a time for one
/// chunk. A call's recurrent state stays with the call ([`SileroVad`]), so any
/// session serves any call, and memory does not grow with calls.
pub struct VadModel {
    sessions: Vec<std::sync::Mutex<Session>>,
    next: std::sync::atomic::AtomicUsize,
}

impl std::fmt::Debug for VadModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VadModel")
            .field("sessions", &self.sessions.len())
            .finish()
    }
}

impl VadModel {
    /// Opens `sessions` sessions of the model; ONNX Runtime must have been
    /// initialised.
    pub fn load(model: &Path, sessions: usize) -> Result<std::sync::Arc<Self>, VadError> {
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
        let open = || -> Result<Session, VadError> {
            Ok(Session::builder()
                .map_err(|e| corrupt(e.to_string()))?
                .with_intra_threads(1)
                .map_err(|e| corrupt(e.to_string()))?
                .with_inter_threads(1)
                .map_err(|e| corrupt(e.to_string()))?
                .commit_from_file(model)
                .map_err(|e| corrupt(e.to_string()))?)
        };
        let sessions = (0..sessions.max(1))
            .map(|_| open().map(std::sync::Mutex::new))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(std::sync::Arc::new(Self {
            sessions,
            next: std::sync::atomic::AtomicUsize::new(0),
        }))
    }

    /// Runs the model on one chunk (with its context) from `state`, which it
    /// updates; returns the speech probability. Takes a free session, or waits
    /// for one (a run takes well under a millisecond).
    fn run(&self, samples: Vec<f32>, state: &mut [f32]) -> Result<f32, VadError> {
        let run = |e: ort::Error| VadError::Run(e.to_string());
        let n = self.sessions.len();
        let start = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut session = (0..n)
            .find_map(|i| self.sessions[(start + i) % n].try_lock().ok())
            .unwrap_or_else(|| crate::lock(&self.sessions[start % n]));
        let input = Tensor::from_array(([1usize, CONTEXT + CHUNK], samples)).map_err(run)?;
        let st = Tensor::from_array(([2usize, 1, 128], state.to_vec())).map_err(run)?;
        let sr = Tensor::from_array(([1usize], vec![8000i64])).map_err(run)?;
        let outputs = session
            .run(ort::inputs!["input" => input, "state" => st, "sr" => sr])
            .map_err(run)?;
        let (_, p) = outputs["output"].try_extract_tensor::<f32>().map_err(run)?;
        let p = p.first().copied().unwrap_or(0.0);
        let (_, next) = outputs["stateN"].try_extract_tensor::<f32>().map_err(run)?;
        if next.len() == STATE {
            state.copy_from_slice(next);
        }
        Ok(p)
    }
}

/// One call's VAD: the shared model and this call's recurrent state.
pub struct SileroVad {
    model: std::sync::Arc<VadModel>,
    state: Vec<f32>,
    context: [f32; CONTEXT],
    /// Quiet chunks in a row.
    quiet: u32,
}

impl std::fmt::Debug for SileroVad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SileroVad").finish_non_exhaustive()
    }
}

impl SileroVad {
    /// A call's VAD on the shared model.
    pub fn new(model: std::sync::Arc<VadModel>) -> Self {
        Self {
            model,
            state: vec![0.0; STATE],
            context: [0.0; CONTEXT],
            quiet: 0,
        }
    }

    /// A VAD with a model of its own (one session), for tools and tests.
    pub fn load(model: &Path) -> Result<Self, VadError> {
        Ok(Self::new(VadModel::load(model, 1)?))
    }

    /// Forgets everything heard (a new call or a new question).
    pub fn reset(&mut self) {
        self.state.iter_mut().for_each(|s| *s = 0.0);
        self.context = [0.0; CONTEXT];
        self.quiet = 0;
    }

    /// Probability (0–1) that this 32 ms chunk of 8 kHz audio (-1..1) is speech.
    pub fn probability(&mut self, chunk: &[f32; CHUNK]) -> Result<f32, VadError> {
        let power = chunk.iter().map(|x| x * x).sum::<f32>() / CHUNK as f32;
        if power < GATE_POWER {
            self.context.copy_from_slice(&chunk[CHUNK - CONTEXT..]);
            self.quiet += 1;
            if self.quiet == QUIET_RESET {
                self.state.iter_mut().for_each(|s| *s = 0.0);
            }
            return Ok(0.0);
        }
        self.quiet = 0;
        let mut samples = Vec::with_capacity(CONTEXT + CHUNK);
        samples.extend_from_slice(&self.context);
        samples.extend_from_slice(chunk);
        self.context.copy_from_slice(&chunk[CHUNK - CONTEXT..]);
        self.model.run(samples, &mut self.state)
    }
}
