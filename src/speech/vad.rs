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

/// The Silero model: one ONNX Runtime session, run by the [`Detector`]'s thread
/// for every call (or by a tool's [`SileroVad`]). A call's recurrent state stays
/// with the call ([`VadState`]), so memory does not grow with calls.
pub struct VadModel {
    session: std::sync::Mutex<Session>,
}

impl std::fmt::Debug for VadModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VadModel").finish_non_exhaustive()
    }
}

impl VadModel {
    /// Opens the model; ONNX Runtime must have been initialised.
    pub fn load(model: &Path) -> Result<std::sync::Arc<Self>, VadError> {
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
        Ok(std::sync::Arc::new(Self {
            session: std::sync::Mutex::new(session),
        }))
    }

    /// Runs the model once for several calls' chunks (each with its context and
    /// its call's recurrent state, which it updates): one ONNX run whatever the
    /// batch, so the runtime's fixed cost per run is shared.
    pub fn run_batch(&self, items: &mut [Item]) -> Result<(), VadError> {
        if items.is_empty() {
            return Ok(());
        }
        let run = |e: ort::Error| VadError::Run(e.to_string());
        let mut session = crate::lock(&self.session);
        let b = items.len();
        let mut input = Vec::with_capacity(b * INPUT);
        let mut state = vec![0.0f32; b * STATE];
        let half = STATE / 2;
        for (i, item) in items.iter().enumerate() {
            input.extend_from_slice(&item.input);
            // A call's state is [2, 1, 128]; the batch's is [2, b, 128].
            for layer in 0..2 {
                state[layer * b * half + i * half..][..half]
                    .copy_from_slice(&item.state[layer * half..][..half]);
            }
        }
        let input = Tensor::from_array(([b, INPUT], input)).map_err(run)?;
        let st = Tensor::from_array(([2usize, b, half], state)).map_err(run)?;
        let sr = Tensor::from_array(([1usize], vec![8000i64])).map_err(run)?;
        let outputs = session
            .run(ort::inputs!["input" => input, "state" => st, "sr" => sr])
            .map_err(run)?;
        let (_, p) = outputs["output"].try_extract_tensor::<f32>().map_err(run)?;
        let (_, next) = outputs["stateN"].try_extract_tensor::<f32>().map_err(run)?;
        if p.len() != b || next.len() != b * STATE {
            return Err(VadError::Run(format!(
                "the model answered {} probabilities and {} state values for {b} chunks",
                p.len(),
                next.len()
            )));
        }
        for (i, item) in items.iter_mut().enumerate() {
            item.p = p[i];
            for layer in 0..2 {
                item.state[layer * half..][..half]
                    .copy_from_slice(&next[layer * b * half + i * half..][..half]);
            }
        }
        Ok(())
    }
}

/// Samples the model takes per chunk: the context, then the chunk.
pub const INPUT: usize = CONTEXT + CHUNK;

/// One call's chunk in a batched run ([`VadModel::run_batch`]).
#[derive(Clone, Debug)]
pub struct Item {
    /// The previous chunk's last samples, then this chunk (8 kHz, -1..1).
    pub input: [f32; INPUT],
    /// The call's recurrent state, updated by the run.
    pub state: [f32; STATE],
    /// The speech probability the run answered.
    pub p: f32,
}

/// One call's detector state: the model's recurrent state, the last samples
/// heard (the next chunk's context) and the quiet gate. Pure: the model runs
/// elsewhere ([`SileroVad`] at once, [`Detector`] batched across calls).
#[derive(Clone, Debug)]
pub struct VadState {
    state: [f32; STATE],
    context: [f32; CONTEXT],
    /// Quiet chunks in a row.
    quiet: u32,
}

impl Default for VadState {
    fn default() -> Self {
        Self {
            state: [0.0; STATE],
            context: [0.0; CONTEXT],
            quiet: 0,
        }
    }
}

/// Whether a chunk is too quiet to be speech: the model is not run for it.
pub fn is_quiet(chunk: &[f32; CHUNK]) -> bool {
    chunk.iter().map(|x| x * x).sum::<f32>() / (CHUNK as f32) < GATE_POWER
}

impl VadState {
    /// Takes the next chunk: `None` when it is too quiet to be speech (its
    /// probability is 0 and the model is not run), else the model's input with
    /// this call's state, to run and hand back to [`VadState::ran`].
    pub fn begin(&mut self, chunk: &[f32; CHUNK]) -> Option<Item> {
        if is_quiet(chunk) {
            self.context.copy_from_slice(&chunk[CHUNK - CONTEXT..]);
            self.quiet += 1;
            if self.quiet == QUIET_RESET {
                self.state = [0.0; STATE];
            }
            return None;
        }
        let mut input = [0.0; INPUT];
        input[..CONTEXT].copy_from_slice(&self.context);
        input[CONTEXT..].copy_from_slice(chunk);
        self.context.copy_from_slice(&chunk[CHUNK - CONTEXT..]);
        self.quiet = 0;
        Some(Item {
            input,
            state: self.state,
            p: 0.0,
        })
    }

    /// The run of the item [`VadState::begin`] gave: its state is this call's now.
    pub fn ran(&mut self, item: &Item) -> f32 {
        self.state = item.state;
        item.p
    }
}

/// One call's chunks for the [`Detector`], and what it answered.
#[derive(Debug, Default)]
pub struct Job {
    /// The call's detector state before the chunks; after them once answered.
    pub vad: VadState,
    /// 32 ms chunks of 8 kHz audio (-1..1), in order.
    pub chunks: Vec<[f32; CHUNK]>,
    /// One speech probability per chunk, once answered.
    pub probabilities: Vec<f32>,
    /// The caller's own number for the run, handed back unchanged.
    pub run: u64,
}

type Reply = tokio::sync::oneshot::Sender<Result<Job, VadError>>;

/// Voice detection for every listening call on one thread: the jobs that arrive
/// while a batch runs are answered together in the next, one ONNX run per chunk
/// position, so the runtime's fixed cost per run is paid once for all calls
/// rather than once per call (`cargo bench --bench media -- vad`). A job waits
/// for at most the batch in progress; with one call listening it runs at once.
#[derive(Clone, Debug)]
pub struct Detector {
    tx: std::sync::mpsc::Sender<(Job, Reply)>,
}

impl Detector {
    /// Starts the detector's thread on `model`.
    pub fn start(model: std::sync::Arc<VadModel>) -> Result<Self, VadError> {
        let (tx, rx) = std::sync::mpsc::channel::<(Job, Reply)>();
        std::thread::Builder::new()
            .name("vad".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut batch = vec![first];
                    batch.extend(rx.try_iter());
                    answer(&model, batch);
                }
            })
            .map_err(|e| VadError::Run(format!("cannot start the detector's thread: {e}")))?;
        Ok(Self { tx })
    }

    /// Queues a call's chunks; the answer arrives on the returned channel.
    pub fn submit(&self, job: Job) -> tokio::sync::oneshot::Receiver<Result<Job, VadError>> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        // A stopped detector drops the reply: the receiver then reports it.
        let _ = self.tx.send((job, reply));
        rx
    }
}

/// Runs a batch of calls' jobs: chunk position by position, each position's
/// loud chunks in one run.
fn answer(model: &VadModel, mut batch: Vec<(Job, Reply)>) {
    let m = crate::metrics::metrics();
    let longest = batch.iter().map(|(j, _)| j.chunks.len()).max().unwrap_or(0);
    let mut items = Vec::with_capacity(batch.len());
    let mut owners = Vec::with_capacity(batch.len());
    let mut failed = None;
    for position in 0..longest {
        items.clear();
        owners.clear();
        for (i, (job, _)) in batch.iter_mut().enumerate() {
            let Some(chunk) = job.chunks.get(position) else {
                continue;
            };
            match job.vad.begin(chunk) {
                Some(item) => {
                    items.push(item);
                    owners.push(i);
                }
                None => job.probabilities.push(0.0),
            }
        }
        if items.is_empty() {
            continue;
        }
        m.vad_batch.observe(items.len() as f64);
        if let Err(e) = model.run_batch(&mut items) {
            failed = Some(e.to_string());
        }
        for (item, &i) in items.iter().zip(&owners) {
            let job = &mut batch[i].0;
            let p = job.vad.ran(item);
            job.probabilities
                .push(if failed.is_some() { 0.0 } else { p });
        }
    }
    for (job, reply) in batch {
        let _ = reply.send(match &failed {
            None => Ok(job),
            Some(e) => Err(VadError::Run(e.clone())),
        });
    }
}

/// One call's VAD run at once on the shared model, for tools and tests (calls
/// use the batching [`Detector`]).
pub struct SileroVad {
    model: std::sync::Arc<VadModel>,
    vad: VadState,
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
            vad: VadState::default(),
        }
    }

    /// A VAD with a model of its own (one session), for tools and tests.
    pub fn load(model: &Path) -> Result<Self, VadError> {
        Ok(Self::new(VadModel::load(model)?))
    }

    /// Forgets everything heard (a new call or a new question).
    pub fn reset(&mut self) {
        self.vad = VadState::default();
    }

    /// Probability (0–1) that this 32 ms chunk of 8 kHz audio (-1..1) is speech.
    pub fn probability(&mut self, chunk: &[f32; CHUNK]) -> Result<f32, VadError> {
        let Some(item) = self.vad.begin(chunk) else {
            return Ok(0.0);
        };
        let mut items = [item];
        self.model.run_batch(&mut items)?;
        Ok(self.vad.ran(&items[0]))
    }
}
