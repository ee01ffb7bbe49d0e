//! Text to speech: Piper voices (piper-rs on ONNX Runtime) for English, Kokoro-82M
//! ([`super::kokoro`], on ONNX Runtime) for Mandarin, and espeak-ng for either when
//! the models are not wanted — one interface.
//!
//! Answers are synthesised sentence by sentence ([`sentences`]) so the first audio can
//! leave before the whole answer is rendered, and rendered prompts are cached by voice
//! and text in memory and on disk ([`TtsCache`]), so static prompts cost nothing after
//! their first use.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::models::{ModelDir, ModelError};
use crate::media::wav::resample;

/// Output rate: telephone audio.
pub const RATE: u32 = 8000;

#[derive(Debug, thiserror::Error)]
pub enum TtsError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("unknown voice {0:?}; voices: {1}")]
    UnknownVoice(String, String),
    #[error("speech synthesis failed: {0}")]
    Synth(String),
}

/// The voices kefu ships with, by name.
pub const VOICES: &[(&str, &str)] = &[
    ("en_US-joe-medium", "Piper, English (US), male, CC0"),
    (
        "kokoro-zh",
        "Kokoro-82M, Mandarin; kokoro-zh:NAME or kokoro-zh:PATH picks another voice vector",
    ),
    (
        "espeak-cmn",
        "espeak-ng, Mandarin (hard to understand; kokoro-zh is the default)",
    ),
    ("espeak-en", "espeak-ng, English"),
];

/// The default voice for a dialplan language (kefu.toml's `[voices]` can name
/// another).
pub fn default_voice(language: &str) -> &'static str {
    match language {
        "zh" => "kokoro-zh",
        _ => "en_US-joe-medium",
    }
}

/// The voice vector a Kokoro voice name asks for: `kokoro-zh` → the default,
/// `kokoro-zh:NAME` or `kokoro-zh:PATH` → that one; `None` for other voices.
fn kokoro_vector(name: &str) -> Option<&str> {
    let rest = name.strip_prefix("kokoro-zh")?;
    match rest.strip_prefix(':') {
        Some(vector) if !vector.is_empty() => Some(vector),
        _ if rest.is_empty() || rest == ":" => Some(super::kokoro::DEFAULT_VOICE),
        _ => None,
    }
}

/// Whether a voice name is one [`Voice::load`] knows (the files are checked when it
/// loads).
pub fn check_voice_name(name: &str) -> Result<(), TtsError> {
    if kokoro_vector(name).is_some()
        || remote_voice(name).is_some()
        || VOICES.iter().any(|(n, _)| *n == name)
    {
        Ok(())
    } else {
        let names: Vec<&str> = VOICES.iter().map(|(n, _)| *n).collect();
        Err(TtsError::UnknownVoice(name.into(), names.join(", ")))
    }
}

enum Engine {
    Piper(Mutex<piper_rs::Piper>),
    Kokoro(Box<super::kokoro::Kokoro>),
    Espeak {
        voice: &'static str,
    },
    /// A remote speech service's voice (`remote:SERVICE:VOICE`).
    Remote {
        service: Arc<super::remote::Service>,
        voice: String,
    },
}

/// A remote voice's name, `remote:SERVICE:VOICE`, as (service, voice).
pub fn remote_voice(name: &str) -> Option<(&str, &str)> {
    let (service, voice) = name.strip_prefix("remote:")?.split_once(':')?;
    (!service.is_empty() && !voice.is_empty()).then_some((service, voice))
}

/// A loaded voice; synthesis is serialised per voice.
pub struct Voice {
    pub name: String,
    engine: Engine,
}

impl std::fmt::Debug for Voice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Voice").field("name", &self.name).finish()
    }
}

/// Where Debian's `espeak-ng-data` package puts `espeak-ng-data/` (by architecture).
const ESPEAK_DATA_PARENTS: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/usr/share",
];

/// Points piper-rs's phonemiser at espeak-ng's data. Call once at start-up, before
/// any other thread exists (it sets an environment variable).
pub fn configure_espeak_data() {
    const VAR: &str = "PIPER_ESPEAKNG_DATA_DIRECTORY";
    if std::env::var_os(VAR).is_some() {
        return;
    }
    if let Some(parent) = ESPEAK_DATA_PARENTS
        .iter()
        .find(|p| Path::new(p).join("espeak-ng-data").is_dir())
    {
        // SAFETY: called from `main` before the runtime or any thread starts, so no
        // other thread can be reading the environment.
        unsafe { std::env::set_var(VAR, parent) };
    }
}

impl Voice {
    /// Loads a voice by name; Piper and Kokoro voices need ONNX Runtime initialised.
    pub fn load(name: &str, models: &ModelDir) -> Result<Self, TtsError> {
        check_voice_name(name)?;
        let engine = match name {
            _ if let Some(vector) = kokoro_vector(name) => {
                Engine::Kokoro(Box::new(super::kokoro::Kokoro::load(models, vector)?))
            }
            "espeak-cmn" => Engine::Espeak {
                voice: "cmn-latn-pinyin",
            },
            "espeak-en" => Engine::Espeak { voice: "en-us" },
            // The rest of the known names are Piper voices.
            _ => {
                let model = models.piper_voice(name)?;
                let config = PathBuf::from(format!("{}.json", model.display()));
                if !config.is_file() {
                    return Err(ModelError::Missing { path: config }.into());
                }
                let piper =
                    piper_rs::Piper::new(&model, &config).map_err(|e| ModelError::Corrupt {
                        path: model.clone(),
                        reason: e.to_string(),
                    })?;
                Engine::Piper(Mutex::new(piper))
            }
        };
        Ok(Self {
            name: name.into(),
            engine,
        })
    }

    /// Whether a remote service speaks this voice (a local one stands in when it
    /// fails).
    pub fn is_remote(&self) -> bool {
        matches!(self.engine, Engine::Remote { .. })
    }

    /// The phonemes a text is read with, for voices that read phonemes kefu makes
    /// (Kokoro); `None` for the others.
    pub fn phonemes(&self, text: &str) -> Option<String> {
        match &self.engine {
            Engine::Kokoro(kokoro) => Some(kokoro.phonemes(text)),
            _ => None,
        }
    }

    /// Renders text to 8 kHz mono samples (-1..1).
    pub fn synthesize(&self, text: &str) -> Result<Vec<f32>, TtsError> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(Vec::new());
        }
        let (samples, rate) = match &self.engine {
            Engine::Piper(piper) => {
                let mut piper = piper
                    .lock()
                    .map_err(|_| TtsError::Synth("voice poisoned by an earlier panic".into()))?;
                piper
                    .create(text, false, None, Some(PIPER_LENGTH), None, None)
                    .map_err(|e| TtsError::Synth(e.to_string()))?
            }
            Engine::Kokoro(kokoro) => (
                kokoro.synthesize(text).map_err(TtsError::Synth)?,
                super::kokoro::RATE,
            ),
            // espeak-ng reads pinyin far more intelligibly than characters (measured
            // by recognising its output: characters come back as noise).
            Engine::Espeak { voice } if voice.contains("pinyin") => {
                espeak(voice, &to_pinyin(text))?
            }
            Engine::Espeak { voice } => espeak(voice, text)?,
            Engine::Remote { service, voice } => {
                let spoken = service.speak_blocking(voice, text);
                super::remote::count(
                    "speech",
                    spoken.as_ref().map_or_else(|e| e.outcome(), |_| "ok"),
                );
                spoken.map_err(|e| TtsError::Synth(e.to_string()))?
            }
        };
        let mut out = resample(&samples, rate, RATE).map_err(|e| TtsError::Synth(e.to_string()))?;
        trim_leading_quiet(&mut out);
        Ok(out)
    }
}

/// Piper's phoneme length scale: a tenth slower than trained, a telephone pace.
/// On the 17 English demo prompts at 8 kHz the independent recogniser's word
/// error rate was 0.045–0.056 at 1.0 (two renders), 0.035–0.056 at 1.1 (three),
/// 0.040 at 1.2 (one): inside Piper's render-to-render variation, so this is a
/// choice of pace, not a measured gain (benches/RESULTS.md).
const PIPER_LENGTH: f32 = 1.1;

/// Level (of full scale) under which a rendered sample counts as quiet.
const QUIET_LEVEL: f32 = 0.01;
/// Quiet kept before a sentence's first sound (8 kHz samples: 30 ms), so its onset
/// is not clipped.
const LEAD_KEPT: usize = 240;

/// Drops the voices' own silence before the first sound (Piper starts with about
/// a tenth of a second of it): a caller waiting for an answer hears it that much
/// sooner. The quiet between sentences (at their ends) stays.
fn trim_leading_quiet(samples: &mut Vec<f32>) {
    if let Some(first) = samples.iter().position(|s| s.abs() > QUIET_LEVEL) {
        samples.drain(..first.saturating_sub(LEAD_KEPT));
    }
}

/// espeak-ng as a process: its library keeps one global voice, which piper-rs's
/// phonemiser already owns; a process per sentence costs ~20 ms and shares nothing.
fn espeak(voice: &str, text: &str) -> Result<(Vec<f32>, u32), TtsError> {
    let out = std::process::Command::new("espeak-ng")
        .args(["-v", voice, "--stdout", "--"])
        .arg(text)
        .output()
        .map_err(|e| {
            TtsError::Synth(format!(
                "cannot run espeak-ng (Debian package espeak-ng): {e}"
            ))
        })?;
    if !out.status.success() {
        return Err(TtsError::Synth(format!(
            "espeak-ng failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    // espeak-ng streams its WAV with placeholder sizes, which `decode_mono` reads.
    let (samples, rate) = crate::media::wav::decode_mono(&out.stdout)
        .map_err(|e| TtsError::Synth(format!("espeak-ng output: {e}")))?;
    Ok((samples, rate))
}

/// Chinese characters → pinyin with tone numbers ("我们" → "wo3 men5"); Chinese
/// punctuation → ASCII; everything else unchanged.
pub fn to_pinyin(text: &str) -> String {
    use pinyin::ToPinyin;
    let mut out = String::with_capacity(text.len() * 3);
    for c in text.chars() {
        if let Some(p) = c.to_pinyin() {
            let syllable = p.with_tone_num_end();
            out.push(' ');
            out.push_str(syllable);
            if !syllable.ends_with(|d: char| d.is_ascii_digit()) {
                out.push('5'); // neutral tone
            }
            out.push(' ');
        } else {
            out.push(match c {
                '。' => '.',
                '，' | '、' => ',',
                '！' => '!',
                '？' => '?',
                '；' => ';',
                '：' => ':',
                other => other,
            });
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A Chinese sentence longer than this (characters) is rendered live clause by
/// clause.
const LONG_ZH: usize = 16;
/// The shortest clause rendered on its own (about 1.5 s of speech).
const CLAUSE_ZH: usize = 6;

/// The pieces a sentence rendered live (one carrying a customer's values) is
/// spoken in: a long Chinese sentence in its clauses (cut after ，：where both
/// sides keep [`CLAUSE_ZH`] characters), because the Mandarin voice renders at
/// about a third of real time (a 6 s sentence took 2.5 s before its first
/// sound); any other sentence whole. Sentences rendered ahead stay whole: cut at
/// a clause, a menu's last digit is said as an ending and misheard more
/// (benches/RESULTS.md, issue 23).
pub fn clauses(sentence: &str) -> Vec<String> {
    let chars: Vec<char> = sentence.chars().collect();
    if chars.len() <= LONG_ZH || !chars.iter().any(|&c| is_cjk(c)) {
        return vec![sentence.to_string()];
    }
    let mut out = Vec::new();
    let mut start = 0;
    for (i, &c) in chars.iter().enumerate() {
        let cut = matches!(c, '，' | '：' | ',')
            && i + 1 - start >= CLAUSE_ZH
            && chars.len() - (i + 1) >= CLAUSE_ZH;
        if cut {
            out.push(
                chars[start..=i]
                    .iter()
                    .collect::<String>()
                    .trim()
                    .to_string(),
            );
            start = i + 1;
        }
    }
    out.push(chars[start..].iter().collect::<String>().trim().to_string());
    out.retain(|s| !s.is_empty());
    out
}

fn is_cjk(c: char) -> bool {
    ('\u{4e00}'..='\u{9fff}').contains(&c)
}

/// Splits an answer into sentences (keeping their punctuation), for rendering the
/// first one while the rest wait. Handles Chinese and Western punctuation.
pub fn sentences(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        current.push(c);
        let ends = match c {
            '。' | '！' | '？' | '；' | '!' | '?' | ';' => true,
            // A full stop ends a sentence when followed by space or the end, not in
            // "3.5" or "www.example.com".
            '.' => chars.peek().is_none_or(|n| n.is_whitespace()),
            _ => false,
        };
        if ends {
            let s = current.trim();
            if !s.is_empty() {
                out.push(s.to_string());
            }
            current.clear();
        }
    }
    let s = current.trim();
    if !s.is_empty() {
        out.push(s.to_string());
    }
    out
}

/// (voice, text).
type CacheKey = (String, String);

/// Rendered speech by (voice, text): memory first, then `dir` on disk, then the voice.
#[derive(Debug)]
pub struct TtsCache {
    dir: Option<PathBuf>,
    memory: Mutex<HashMap<CacheKey, Arc<Vec<f32>>>>,
    /// Entries kept in memory; beyond it about half are dropped, in no particular
    /// order (the disk keeps everything).
    capacity: usize,
}

/// A file name for a cache entry: a stable hash of voice and text (FNV-1a; not for
/// security, only to spread names), plus the voice for people reading the folder.
fn entry_name(voice: &str, text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in voice.bytes().chain([0u8]).chain(text.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    // A voice may name a file ("kokoro-zh:/opt/voices/x.bin"): only safe characters
    // go into the name (the hash covers the whole voice).
    let readable: String = voice
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{readable}-{h:016x}.wav")
}

impl TtsCache {
    pub fn new(dir: Option<PathBuf>, capacity: usize) -> Self {
        Self {
            dir,
            memory: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    /// The rendered sentence, synthesising (and storing) it when not cached.
    pub fn get(&self, voice: &Voice, text: &str) -> Result<Arc<Vec<f32>>, TtsError> {
        self.get_with(voice, text, true)
    }

    /// Like [`Self::get`] for text that may carry a customer's words (an answer
    /// with their order number, an agent's briefing): kept in memory only, never
    /// written to the disk cache, where nothing could erase or expire it.
    pub fn get_private(&self, voice: &Voice, text: &str) -> Result<Arc<Vec<f32>>, TtsError> {
        self.get_with(voice, text, false)
    }

    /// Whether `text` in `voice` is held in memory.
    pub fn in_memory(&self, voice: &Voice, text: &str) -> bool {
        let key = (voice.name.clone(), text.to_string());
        self.memory.lock().is_ok_and(|m| m.contains_key(&key))
    }

    fn get_with(&self, voice: &Voice, text: &str, disk: bool) -> Result<Arc<Vec<f32>>, TtsError> {
        let key = (voice.name.clone(), text.to_string());
        let outcome = |outcome: &'static str| {
            crate::metrics::metrics()
                .tts_cache
                .get_or_create(&crate::metrics::OutcomeLabel { outcome })
                .inc();
        };
        if let Some(hit) = self.memory.lock().ok().and_then(|m| m.get(&key).cloned()) {
            outcome("memory");
            return Ok(hit);
        }
        let file = self
            .dir
            .as_ref()
            .filter(|_| disk)
            .map(|d| d.join(entry_name(&voice.name, text)));
        if let Some(f) = &file
            && let Ok((samples, rate)) = crate::media::wav::read_mono(f)
            && rate == RATE
        {
            outcome("disk");
            return Ok(self.remember(key, samples));
        }
        outcome("rendered");
        let started = Instant::now();
        let samples = voice.synthesize(text)?;
        tracing::debug!(voice = %voice.name, chars = text.chars().count(), ms = started.elapsed().as_millis() as u64, "sentence synthesised");
        if let Some(f) = &file
            && let Err(e) = write_wav(f, &samples)
        {
            tracing::warn!(file = %f.display(), error = %e, "cannot store rendered speech");
        }
        Ok(self.remember(key, samples))
    }

    fn remember(&self, key: CacheKey, samples: Vec<f32>) -> Arc<Vec<f32>> {
        let samples = Arc::new(samples);
        if let Ok(mut m) = self.memory.lock() {
            if m.len() >= self.capacity {
                let drop: Vec<_> = m.keys().take(self.capacity / 2 + 1).cloned().collect();
                for k in drop {
                    m.remove(&k);
                }
            }
            m.insert(key, samples.clone());
        }
        samples
    }
}

/// Speaks text prompts for dialplans: loads voices on first use (so a server whose
/// plans have no text prompts never needs the models), caches renders on disk.
#[derive(Debug)]
pub struct Speaker {
    models: ModelDir,
    cache: TtsCache,
    voices: Mutex<HashMap<String, Arc<Voice>>>,
    /// Voices by language where a plan names none (kefu.toml's `[voices]`).
    defaults: std::collections::BTreeMap<String, String>,
    /// Remote speech services by name, for `remote:SERVICE:VOICE` voices.
    services: HashMap<String, Arc<super::remote::Service>>,
}

impl Speaker {
    /// `cache_dir`: where rendered prompts are kept between runs (e.g. data/tts-cache).
    pub fn new(models: ModelDir, cache_dir: Option<PathBuf>) -> Self {
        Self {
            models,
            cache: TtsCache::new(cache_dir, 4096),
            voices: Mutex::new(HashMap::new()),
            defaults: Default::default(),
            services: HashMap::new(),
        }
    }

    /// The remote services `remote:SERVICE:VOICE` voices name.
    pub fn with_services(mut self, services: HashMap<String, Arc<super::remote::Service>>) -> Self {
        self.services = services;
        self
    }

    /// The voices used for a language where a plan names none, instead of
    /// [`default_voice`]'s.
    pub fn with_defaults(mut self, defaults: std::collections::BTreeMap<String, String>) -> Self {
        self.defaults = defaults;
        self
    }

    /// The voice for a plan's `voice` (if any) and language.
    fn choose<'a>(&'a self, voice: Option<&'a str>, language: &str) -> &'a str {
        voice
            .or_else(|| self.defaults.get(language).map(String::as_str))
            .unwrap_or_else(|| default_voice(language))
    }

    /// The local voice that speaks for a remote one when its service fails: the
    /// language's configured voice if local, else the built-in default.
    fn fallback<'a>(&'a self, language: &str) -> &'a str {
        self.defaults
            .get(language)
            .map(String::as_str)
            .filter(|v| remote_voice(v).is_none())
            .unwrap_or_else(|| default_voice(language))
    }

    pub fn voice(&self, name: &str) -> Result<Arc<Voice>, TtsError> {
        if let Some(v) = self.voices.lock().ok().and_then(|m| m.get(name).cloned()) {
            return Ok(v);
        }
        if let Some((service, voice)) = remote_voice(name) {
            let Some(service) = self.services.get(service) else {
                let known: Vec<&str> = self.services.keys().map(String::as_str).collect();
                return Err(TtsError::UnknownVoice(
                    name.into(),
                    format!("no [[speech_service]] named {service:?} (services: {known:?})"),
                ));
            };
            let voice = Arc::new(Voice {
                name: name.into(),
                engine: Engine::Remote {
                    service: service.clone(),
                    voice: voice.into(),
                },
            });
            if let Ok(mut m) = self.voices.lock() {
                m.insert(name.to_string(), voice.clone());
            }
            return Ok(voice);
        }
        if !name.starts_with("espeak-") {
            super::models::init_onnx_runtime(&self.models.onnxruntime()?)?;
        }
        let voice = Arc::new(Voice::load(name, &self.models)?);
        if let Ok(mut m) = self.voices.lock() {
            m.insert(name.to_string(), voice.clone());
        }
        Ok(voice)
    }

    /// Renders a whole text, sentence by sentence (each sentence cached on its own).
    pub fn speak(&self, voice: &str, text: &str) -> Result<Vec<f32>, TtsError> {
        self.speak_with(voice, text, true, None)
    }

    /// Speaks text that may carry a customer's words: memory cache only.
    pub fn speak_private(&self, voice: &str, text: &str) -> Result<Vec<f32>, TtsError> {
        self.speak_with(voice, text, false, None)
    }

    /// Renders `text`; a sentence a remote voice fails to speak is spoken by the
    /// `fallback` voice (cached under that voice, so the remote one is asked
    /// again next time).
    fn speak_with(
        &self,
        voice: &str,
        text: &str,
        disk: bool,
        fallback: Option<&str>,
    ) -> Result<Vec<f32>, TtsError> {
        let voice = self.voice(voice)?;
        let get = |voice: &Voice, s: &str| {
            if disk {
                self.cache.get(voice, s)
            } else {
                self.cache.get_private(voice, s)
            }
        };
        let mut out = Vec::new();
        for s in sentences(text) {
            let samples = match get(&voice, &s) {
                Ok(samples) => samples,
                Err(e) if voice.is_remote() && fallback.is_some() => {
                    let local = self.voice(fallback.unwrap_or_default())?;
                    tracing::warn!(voice = %voice.name, fallback = %local.name, error = %e, "remote speech failed; a local voice speaks the sentence");
                    super::remote::count("speech", "fallback");
                    get(&local, &s)?
                }
                Err(e) => return Err(e),
            };
            out.extend(samples.iter());
        }
        Ok(out)
    }
}

fn to_pcm16(audio: &[f32]) -> Vec<i16> {
    audio
        .iter()
        .map(|&s| (s * 32767.0).clamp(-32768.0, 32767.0) as i16)
        .collect()
}

impl crate::media::prompt::TextRenderer for Speaker {
    fn render(&self, voice: Option<&str>, language: &str, text: &str) -> Result<Vec<i16>, String> {
        let voice = self.choose(voice, language);
        let audio = self
            .speak_with(voice, text, true, Some(self.fallback(language)))
            .map_err(|e| e.to_string())?;
        Ok(to_pcm16(&audio))
    }

    fn render_private(
        &self,
        voice: Option<&str>,
        language: &str,
        text: &str,
    ) -> Result<Vec<i16>, String> {
        let voice = self.choose(voice, language);
        let audio = self
            .speak_with(voice, text, false, Some(self.fallback(language)))
            .map_err(|e| e.to_string())?;
        Ok(to_pcm16(&audio))
    }

    fn prepare(&self, voice: Option<&str>, language: &str) -> Result<(), String> {
        let voice = self
            .voice(self.choose(voice, language))
            .map_err(|e| e.to_string())?;
        if voice.is_remote() {
            // The stand-in, loaded before a call needs it.
            self.voice(self.fallback(language))
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    fn rendered(&self, voice: Option<&str>, language: &str, text: &str) -> bool {
        let voice = self.choose(voice, language);
        self.voice(voice)
            .is_ok_and(|v| self.cache.in_memory(&v, text))
    }
}

/// Writes 8 kHz 16-bit mono, atomically (temp file + rename).
pub fn write_wav(path: &Path, samples: &[f32]) -> Result<(), hound::Error> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let tmp = path.with_extension("wav.tmp");
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&tmp, spec)?;
    for &s in samples {
        w.write_sample((s * 32767.0).clamp(-32768.0, 32767.0) as i16)?;
    }
    w.finalize()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_split_into_sentences() {
        assert_eq!(
            sentences("We open at 9.30 daily. Visit www.example.com! Thanks"),
            ["We open at 9.30 daily.", "Visit www.example.com!", "Thanks"]
        );
        assert_eq!(
            sentences("您好。营业时间是早上九点到晚上六点！还有问题吗？"),
            ["您好。", "营业时间是早上九点到晚上六点！", "还有问题吗？"]
        );
        assert!(sentences("  ").is_empty());
    }

    #[test]
    fn long_chinese_sentences_are_rendered_live_clause_by_clause() {
        assert_eq!(
            clauses("您的订单123456已经发货，预计明天下午送到，请保持电话畅通。"),
            [
                "您的订单123456已经发货，",
                "预计明天下午送到，",
                "请保持电话畅通。"
            ]
        );
        // Short ones stay whole, and no clause is left shorter than six characters.
        assert_eq!(
            clauses("您好，请问有什么可以帮您？"),
            ["您好，请问有什么可以帮您？"]
        );
        assert_eq!(
            clauses("好的，我们的营业时间是周一到周五早上九点到晚上六点。"),
            ["好的，我们的营业时间是周一到周五早上九点到晚上六点。"]
        );
        // English sentences are not cut: that voice renders at a twentieth of real time.
        assert_eq!(
            clauses("Your order 123456 has shipped, and it should arrive tomorrow afternoon."),
            ["Your order 123456 has shipped, and it should arrive tomorrow afternoon."]
        );
    }

    #[test]
    fn characters_become_numbered_pinyin() {
        assert_eq!(to_pinyin("我要退货。"), "wo3 yao4 tui4 huo4 .");
        assert_eq!(to_pinyin("你们好，VIP"), "ni3 men5 hao3 ,VIP");
    }

    #[test]
    fn leading_quiet_is_trimmed_to_a_short_lead() {
        let mut s = vec![0.0; 2000];
        s.extend([0.5, -0.5, 0.0, 0.0]);
        trim_leading_quiet(&mut s);
        assert_eq!(s.len(), LEAD_KEPT + 4);
        assert_eq!(s[LEAD_KEPT], 0.5);
        let mut short = vec![0.001, 0.3];
        trim_leading_quiet(&mut short);
        assert_eq!(short, [0.001, 0.3]);
        let mut silent = vec![0.0; 100];
        trim_leading_quiet(&mut silent);
        assert_eq!(silent.len(), 100, "nothing to find: left as it is");
    }

    #[test]
    fn cache_names_are_stable_and_distinct() {
        assert_eq!(entry_name("v", "hello"), entry_name("v", "hello"));
        assert_ne!(entry_name("v", "hello"), entry_name("v", "hello."));
        assert_ne!(entry_name("a", "bc"), entry_name("ab", "c"));
        let named = entry_name("kokoro-zh:/opt/voices/zf_xiaobei.bin", "你好。");
        assert!(
            named.starts_with("kokoro-zh__opt_voices_zf_xiaobei.bin-"),
            "{named}"
        );
        assert!(!named.contains('/'));
    }

    #[test]
    fn unknown_voices_are_named() {
        let err = Voice::load("nope", &ModelDir(PathBuf::from("models"))).unwrap_err();
        assert!(err.to_string().contains("en_US-joe-medium"), "{err}");
        assert_eq!(
            kokoro_vector("kokoro-zh"),
            Some(super::super::kokoro::DEFAULT_VOICE)
        );
        assert_eq!(kokoro_vector("kokoro-zh:jm_kumo"), Some("jm_kumo"));
        assert_eq!(kokoro_vector("kokoro-zh:/v/x.bin"), Some("/v/x.bin"));
        assert_eq!(kokoro_vector("kokoro-zhx"), None);
        assert!(check_voice_name("kokoro-zhx").is_err());
    }
}
