//! Prompt audio: WAV files of any rate, width and channel count, converted once at
//! load time to 8 kHz mono and shared by every call that plays them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

use super::SAMPLE_RATE;
use super::g711::Law;
use super::wav::{read_mono, resample};

pub use super::wav::WavError as PromptError;

/// A prompt ready to play: 8 kHz mono linear samples.
#[derive(Debug)]
pub struct Prompt {
    path: PathBuf,
    samples: Vec<i16>,
    /// The samples as G.711, encoded once (on first play) and shared by every call
    /// that plays the prompt: a frame is then a copy, not 160 encodes.
    ulaw: OnceLock<Vec<u8>>,
    alaw: OnceLock<Vec<u8>>,
}

impl Prompt {
    /// Reads and converts a WAV file.
    pub fn load(path: &Path) -> Result<Self, PromptError> {
        let (mono, rate) = read_mono(path)?;
        let samples = resample(&mono, rate, SAMPLE_RATE)?
            .iter()
            .map(|&s| (s * 32767.0).clamp(-32768.0, 32767.0) as i16)
            .collect();
        Ok(Self::from_samples(path.to_path_buf(), samples))
    }

    /// A prompt from 8 kHz samples already in memory (rendered speech), named `path`.
    pub fn from_samples(path: PathBuf, samples: Vec<i16>) -> Self {
        Self {
            path,
            samples,
            ulaw: OnceLock::new(),
            alaw: OnceLock::new(),
        }
    }

    /// The prompt in `law`, encoded on first use.
    pub fn encoded(&self, law: Law) -> &[u8] {
        let cell = match law {
            Law::Pcmu => &self.ulaw,
            Law::Pcma => &self.alaw,
        };
        cell.get_or_init(|| {
            let mut out = vec![0u8; self.samples.len()];
            law.encode(&self.samples, &mut out);
            out
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn samples(&self) -> &[i16] {
        &self.samples
    }

    pub fn duration_ms(&self) -> u64 {
        self.samples.len() as u64 * 1000 / u64::from(SAMPLE_RATE)
    }
}

/// Loaded prompts keyed by path; a file is read again only when it changes on disk,
/// so a dialplan reload re-reads just the prompts an admin replaced.
/// A loaded prompt with the file's modification time and size when it was read.
type Stamped = (Option<SystemTime>, u64, Arc<Prompt>);

#[derive(Debug, Default)]
pub struct PromptCache {
    entries: Mutex<HashMap<PathBuf, Stamped>>,
    /// Renders text prompts (`say:` items); none when speech synthesis is not set up.
    speaker: Option<Arc<dyn TextRenderer>>,
}

/// Turns text into 8 kHz speech for prompts (implemented by the TTS in `speech`, so
/// that media does not depend on speech).
pub trait TextRenderer: Send + Sync + std::fmt::Debug {
    /// Renders `text` with `voice` (or the default voice for `language` when `None`).
    fn render(&self, voice: Option<&str>, language: &str, text: &str) -> Result<Vec<i16>, String>;

    /// Renders text that may carry a customer's words: nothing of it may be kept
    /// on disk (a renderer without a disk cache just renders).
    fn render_private(
        &self,
        voice: Option<&str>,
        language: &str,
        text: &str,
    ) -> Result<Vec<i16>, String> {
        self.render(voice, language, text)
    }

    /// Loads the voice now, so the first text spoken on a call does not wait for it.
    fn prepare(&self, voice: Option<&str>, language: &str) -> Result<(), String>;

    /// Whether `text` is rendered already and held in memory (rendered ahead, or
    /// said before), so speaking it costs no synthesis.
    fn rendered(&self, _voice: Option<&str>, _language: &str, _text: &str) -> bool {
        false
    }
}

impl PromptCache {
    /// A cache that can also render text prompts.
    pub fn with_speaker(speaker: Arc<dyn TextRenderer>) -> Self {
        Self {
            speaker: Some(speaker),
            ..Self::default()
        }
    }

    /// A spoken text prompt. The renderer keeps its own cache of rendered speech
    /// (memory and disk), so a reload does not synthesise unchanged text again.
    pub fn say(
        &self,
        voice: Option<&str>,
        language: &str,
        text: &str,
    ) -> Result<Arc<Prompt>, String> {
        self.speak(voice, language, text, false)
    }

    /// Like [`Self::say`] for text that may carry a customer's words (answers,
    /// an agent's briefing): rendered without touching the disk cache.
    pub fn say_private(
        &self,
        voice: Option<&str>,
        language: &str,
        text: &str,
    ) -> Result<Arc<Prompt>, String> {
        self.speak(voice, language, text, true)
    }

    fn speak(
        &self,
        voice: Option<&str>,
        language: &str,
        text: &str,
        private: bool,
    ) -> Result<Arc<Prompt>, String> {
        let Some(speaker) = &self.speaker else {
            return Err(
                "text prompts need speech synthesis, which this command does not set up".into(),
            );
        };
        let samples = if private {
            speaker.render_private(voice, language, text)?
        } else {
            speaker.render(voice, language, text)?
        };
        // The label stays in memory (and in the call's sealed record).
        Ok(Arc::new(Prompt::from_samples(
            PathBuf::from(format!("say:{text}")),
            samples,
        )))
    }

    /// Whether `text` is rendered already and held in memory (see
    /// [`TextRenderer::rendered`]).
    pub fn rendered(&self, voice: Option<&str>, language: &str, text: &str) -> bool {
        self.speaker
            .as_ref()
            .is_some_and(|s| s.rendered(voice, language, text))
    }

    /// Loads a voice ahead of its first use on a call (for `ask` nodes' answers).
    pub fn prepare_voice(&self, voice: Option<&str>, language: &str) -> Result<(), String> {
        match &self.speaker {
            Some(speaker) => speaker.prepare(voice, language),
            None => Err("speech synthesis is not set up".into()),
        }
    }

    pub fn get(&self, path: &Path) -> Result<Arc<Prompt>, PromptError> {
        let meta =
            std::fs::metadata(path).map_err(|e| PromptError::Wav(hound::Error::IoError(e)))?;
        let stamp = (meta.modified().ok(), meta.len());
        if let Ok(entries) = self.entries.lock()
            && let Some((modified, len, prompt)) = entries.get(path)
            && (*modified, *len) == stamp
        {
            return Ok(prompt.clone());
        }
        let prompt = Arc::new(Prompt::load(path)?);
        if let Ok(mut entries) = self.entries.lock() {
            entries.insert(path.to_path_buf(), (stamp.0, stamp.1, prompt.clone()));
        }
        Ok(prompt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_wav(path: &Path, rate: u32, channels: u16, bits: u16, secs: f32, freq: f32) {
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: bits,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(path, spec).unwrap();
        let n = (rate as f32 * secs) as usize;
        let full = ((1i64 << (bits - 1)) - 1) as f32;
        for i in 0..n {
            let v = (0.5
                * (2.0 * std::f32::consts::PI * freq * i as f32 / rate as f32).sin()
                * full) as i32;
            for _ in 0..channels {
                w.write_sample(v).unwrap();
            }
        }
        w.finalize().unwrap();
    }

    #[test]
    fn converts_any_rate_width_and_channels_to_8k_mono() {
        let dir = tempfile::tempdir().unwrap();
        for (rate, channels, bits) in [
            (8000, 1, 16),
            (16000, 1, 16),
            (22050, 2, 16),
            (44100, 2, 24),
            (48000, 1, 8),
        ] {
            let path = dir.path().join(format!("t{rate}_{channels}_{bits}.wav"));
            write_wav(&path, rate, channels, bits, 0.5, 440.0);
            let p = Prompt::load(&path).unwrap();
            assert_eq!(
                p.samples().len(),
                4000,
                "{rate} Hz {channels} ch {bits} bit"
            );
            // A half-scale 440 Hz sine: the middle of the file keeps its level.
            let peak = p.samples()[1000..3000]
                .iter()
                .map(|s| s.unsigned_abs())
                .max()
                .unwrap();
            assert!((14000..=18500).contains(&peak), "peak {peak} for {rate} Hz");
        }
    }

    #[test]
    fn rejects_files_that_are_not_wav() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.wav");
        std::fs::write(&path, b"RIFF but not really").unwrap();
        assert!(Prompt::load(&path).is_err());
        assert!(Prompt::load(&dir.path().join("missing.wav")).is_err());
    }

    #[test]
    fn cache_reloads_only_changed_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.wav");
        write_wav(&path, 8000, 1, 16, 0.25, 440.0);
        let cache = PromptCache::default();
        let a = cache.get(&path).unwrap();
        let b = cache.get(&path).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        write_wav(&path, 8000, 1, 16, 0.5, 440.0);
        let c = cache.get(&path).unwrap();
        assert_eq!(c.samples().len(), 4000);
    }
}
