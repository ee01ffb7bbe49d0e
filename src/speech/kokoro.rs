//! Kokoro-82M (int8 ONNX) speaking Mandarin: [`super::zh`] turns text into the
//! model's phonemes, the model turns them and a voice vector into 24 kHz audio.
//!
//! The model (Apache-2.0 weights) comes from registry packages that ship it with
//! Japanese voice vectors only; its acoustic model still speaks Mandarin when fed
//! Mandarin phonemes (measured in benches/RESULTS.md). A voice vector is a file of
//! little-endian float32, 256 per row, one row per phoneme count (upstream's
//! published voices, e.g. its Mandarin ones, come in this form), so an operator can
//! point kefu at another.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ort::session::Session;
use ort::value::Tensor;

use super::models::{ModelDir, ModelError};
use super::zh::{Phrases, phonemes};

/// The model's output rate.
pub const RATE: u32 = 24_000;
/// Width of one voice-vector row.
const STYLE: usize = 256;
/// Phoneme tokens per run (the model's context is 512 with the two pads).
const MAX_TOKENS: usize = 510;
/// The voice vector used when none is named: of the shipped ones, the one an
/// independent recogniser understood best in Mandarin (benches/RESULTS.md).
pub const DEFAULT_VOICE: &str = "jf_gongitsune";
/// Speaking rate: a little slower than trained. Over the 22 sentences of
/// benches/voices/zh.tsv the independent recogniser's character error rate was
/// 0.188 at 1.0, 0.161 at 0.9, 0.179 at 0.85, 0.188 at 0.8 (a development
/// figure: the rate was chosen on those sentences).
const SPEED: f32 = 0.9;
/// Quiet between the pieces of a sentence too long for one run (24 kHz: 150 ms).
const PIECE_GAP: usize = 3600;

pub struct Kokoro {
    session: Mutex<Session>,
    vocab: HashMap<char, i64>,
    /// Voice-vector rows, `STYLE` floats each.
    style: Vec<f32>,
    phrases: Phrases,
    /// Speaking rate (1.0 as trained).
    speed: f32,
}

impl std::fmt::Debug for Kokoro {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kokoro")
            .field("style_rows", &(self.style.len() / STYLE))
            .finish()
    }
}

/// Where a voice vector named in a voice ("kokoro-zh:NAME" or a path) lives.
pub fn voice_file(models: &ModelDir, voice: &str) -> PathBuf {
    if voice.contains('/') || voice.ends_with(".bin") {
        PathBuf::from(voice)
    } else {
        models.0.join("kokoro/voices").join(format!("{voice}.bin"))
    }
}

impl Kokoro {
    /// Loads the model, its vocabulary, the pinyin phrase table and a voice
    /// vector (a name under `models/kokoro/voices/` or a path). ONNX Runtime must
    /// have been initialised.
    pub fn load(models: &ModelDir, voice: &str) -> Result<Self, ModelError> {
        let model = models.kokoro_model()?;
        let corrupt = |path: &Path, reason: String| ModelError::Corrupt {
            path: path.to_path_buf(),
            reason,
        };
        let vocab_path = models.kokoro_vocab()?;
        let vocab = read_vocab(&vocab_path).map_err(|e| corrupt(&vocab_path, e))?;
        let voice_path = voice_file(models, voice);
        let style = read_style(&voice_path)?;
        let phrases = Phrases::load(&models.zh_phrases()?)?;
        let threads = std::thread::available_parallelism()
            .map(usize::from)
            .unwrap_or(1)
            .min(2);
        let err = |e: String| corrupt(&model, e);
        let session = Session::builder()
            .map_err(|e| err(e.to_string()))?
            .with_intra_threads(threads)
            .map_err(|e| err(e.to_string()))?
            .with_inter_threads(1)
            .map_err(|e| err(e.to_string()))?
            // It renders beside live calls (answers ahead, in the background): its
            // threads sleep between runs instead of spinning on the cores calls need.
            .with_intra_op_spinning(false)
            .map_err(|e| err(e.to_string()))?
            .commit_from_file(&model)
            .map_err(|e| err(e.to_string()))?;
        Ok(Self {
            session: Mutex::new(session),
            vocab,
            style,
            phrases,
            speed: SPEED,
        })
    }

    /// The phonemes a text is read with (for `kefu say --phonemes` and tests).
    pub fn phonemes(&self, text: &str) -> String {
        phonemes(text, &self.phrases)
    }

    /// Renders Mandarin text (one sentence or a few) at [`RATE`].
    pub fn synthesize(&self, text: &str) -> Result<Vec<f32>, String> {
        let tokens: Vec<i64> = self
            .phonemes(text)
            .chars()
            .filter_map(|c| self.vocab.get(&c).copied())
            .collect();
        let mut out = Vec::new();
        for piece in pieces(&tokens, self.vocab.get(&',').copied()) {
            if !out.is_empty() {
                out.extend(std::iter::repeat_n(0.0, PIECE_GAP));
            }
            out.extend(self.run(piece)?);
        }
        Ok(out)
    }

    fn run(&self, tokens: &[i64]) -> Result<Vec<f32>, String> {
        if tokens.is_empty() {
            return Ok(Vec::new());
        }
        let rows = self.style.len() / STYLE;
        let row = tokens.len().min(rows) - 1;
        let style = self.style[row * STYLE..(row + 1) * STYLE].to_vec();
        let mut ids = Vec::with_capacity(tokens.len() + 2);
        ids.push(0);
        ids.extend_from_slice(tokens);
        ids.push(0);
        let err = |e: ort::Error| e.to_string();
        let input = Tensor::from_array(([1usize, ids.len()], ids)).map_err(err)?;
        let style = Tensor::from_array(([1usize, STYLE], style)).map_err(err)?;
        let speed = Tensor::from_array(([1usize], vec![self.speed])).map_err(err)?;
        let mut session = crate::lock(&self.session);
        let outputs = session
            .run(ort::inputs!["tokens" => input, "style" => style, "speed" => speed])
            .map_err(err)?;
        let (_, audio) = outputs[0].try_extract_tensor::<f32>().map_err(err)?;
        Ok(audio.to_vec())
    }
}

/// Cuts a token sequence into runs the model accepts, at the last comma (or other
/// break) before the limit where there is one.
fn pieces(tokens: &[i64], comma: Option<i64>) -> Vec<&[i64]> {
    let mut out = Vec::new();
    let mut rest = tokens;
    while rest.len() > MAX_TOKENS {
        let cut = comma
            .and_then(|c| rest[..MAX_TOKENS].iter().rposition(|&t| t == c))
            .filter(|&p| p > MAX_TOKENS / 4)
            .map_or(MAX_TOKENS, |p| p + 1);
        out.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    if !rest.is_empty() {
        out.push(rest);
    }
    out
}

/// The model's vocabulary: `{"vocab": {"a": 43, ...}}`, one character per symbol.
fn read_vocab(path: &Path) -> Result<HashMap<char, i64>, String> {
    #[derive(serde::Deserialize)]
    struct File {
        vocab: HashMap<String, i64>,
    }
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let file: File = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    let vocab: HashMap<char, i64> = file
        .vocab
        .into_iter()
        .filter_map(|(k, v)| {
            let mut chars = k.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => Some((c, v)),
                _ => None,
            }
        })
        .collect();
    if vocab.len() < 50 {
        return Err(format!("only {} symbols", vocab.len()));
    }
    Ok(vocab)
}

/// A voice vector: little-endian float32, a whole number of 256-wide rows.
fn read_style(path: &Path) -> Result<Vec<f32>, ModelError> {
    let bytes = std::fs::read(path).map_err(|e| ModelError::unreadable(path, &e))?;
    let row = STYLE * 4;
    if bytes.is_empty() || !bytes.len().is_multiple_of(row) {
        return Err(ModelError::Corrupt {
            path: path.to_path_buf(),
            reason: format!(
                "a voice vector is rows of {STYLE} little-endian float32 ({row} bytes each); this file has {} bytes",
                bytes.len()
            ),
        });
    }
    let style: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    if style.iter().any(|v| !v.is_finite()) {
        return Err(ModelError::Corrupt {
            path: path.to_path_buf(),
            reason: "not a voice vector: it holds values that are not numbers".into(),
        });
    }
    Ok(style)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_sentences_are_cut_at_a_comma() {
        let mut tokens = vec![43i64; 600];
        tokens[300] = 3;
        let p = pieces(&tokens, Some(3));
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].len(), 301);
        assert_eq!(p[1].len(), 299);
        let long = vec![43i64; 1100];
        let p = pieces(&long, Some(3));
        assert_eq!(
            p.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [510, 510, 80]
        );
        assert!(pieces(&[], Some(3)).is_empty());
    }

    #[test]
    fn voice_vectors_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.bin");
        std::fs::write(&bad, [0u8; 1000]).unwrap();
        let err = read_style(&bad).unwrap_err().to_string();
        assert!(err.contains("1000 bytes"), "{err}");
        let good = dir.path().join("good.bin");
        std::fs::write(&good, vec![0u8; 2048]).unwrap();
        assert_eq!(read_style(&good).unwrap().len(), 512);
        let missing = read_style(&dir.path().join("none.bin")).unwrap_err();
        assert!(
            missing.to_string().contains("deploy/models.sh"),
            "{missing}"
        );
    }

    #[test]
    fn voices_by_name_or_path() {
        let models = ModelDir(PathBuf::from("m"));
        assert_eq!(
            voice_file(&models, "jf_alpha"),
            Path::new("m/kokoro/voices/jf_alpha.bin")
        );
        assert_eq!(
            voice_file(&models, "/opt/zf_xiaobei.bin"),
            Path::new("/opt/zf_xiaobei.bin")
        );
    }
}
