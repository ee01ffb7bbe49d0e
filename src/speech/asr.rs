//! Whisper speech recognition of one finished utterance (16 kHz mono f32); the
//! pool calls share is `speech::pool`.
//!
//! Tuned for short telephone utterances (measured, see benches/RESULTS.md):
//! - the encoder's audio context is sized to the utterance instead of Whisper's fixed
//!   30 s window, which is most of the speed-up for 1–5 s of speech;
//! - greedy decoding with no temperature fallback (the fallback can turn one second of
//!   audio into tens of seconds of decoding), and a token budget proportional to the
//!   audio so a shortened context cannot loop on repeated output;
//! - threads in use never exceed the cores (ggml's threads spin while they
//!   wait: oversubscribed, decodes took minutes); the pool gives a caller alone
//!   every core, about 40 % faster on two cores than one thread.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use whisper_rs::{
    FullParams, SamplingStrategy, WhisperContext, WhisperContextParameters, WhisperState,
};

use super::models::{ModelError, check_ggml};

/// Samples per second Whisper expects.
pub const SAMPLE_RATE: usize = 16_000;

/// Language to recognise, per dialplan node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    Zh,
    En,
    Auto,
}

impl Language {
    pub fn code(self) -> &'static str {
        match self {
            Language::Zh => "zh",
            Language::En => "en",
            Language::Auto => "auto",
        }
    }
}

impl std::str::FromStr for Language {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "zh" => Ok(Language::Zh),
            "en" => Ok(Language::En),
            "auto" => Ok(Language::Auto),
            _ => Err(format!("unknown language {s:?}: use zh, en or auto")),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AsrError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("model {0} only understands English; use a multilingual model for {1}")]
    EnglishOnly(String, &'static str),
    #[error("whisper failed: {0}")]
    Whisper(String),
    #[error("speech recognition is saturated ({0} utterances waiting)")]
    Busy(usize),
    #[error("speech recognition workers have stopped")]
    Stopped,
}

/// What was said in one utterance.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Transcript {
    /// Recognised text, trimmed; empty when nothing intelligible was said.
    pub text: String,
    /// Language Whisper decoded in ("zh", "en", ...).
    pub language: String,
    /// Mean probability of the text tokens, 0–1.
    pub confidence: f32,
    /// Whisper's estimate that the audio holds no speech, 0–1.
    pub no_speech: f32,
    pub audio_ms: u64,
    pub decode_ms: u64,
}

/// A loaded Whisper model, shared by every worker.
pub struct WhisperModel {
    ctx: WhisperContext,
    pub name: String,
    pub path: PathBuf,
    pub multilingual: bool,
}

impl std::fmt::Debug for WhisperModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WhisperModel")
            .field("name", &self.name)
            .field("path", &self.path)
            .finish()
    }
}

impl WhisperModel {
    pub fn load(path: &Path) -> Result<Self, AsrError> {
        if !path.is_file() {
            return Err(ModelError::Missing {
                path: path.to_path_buf(),
            }
            .into());
        }
        check_ggml(path)?;
        whisper_rs::install_logging_hooks();
        let ctx = WhisperContext::new_with_params(path, WhisperContextParameters::default())
            .map_err(|e| ModelError::Corrupt {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
        let multilingual = ctx.is_multilingual();
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().trim_start_matches("ggml-").to_string())
            .unwrap_or_default();
        Ok(Self {
            ctx,
            name,
            path: path.to_path_buf(),
            multilingual,
        })
    }

    /// Fails for a language the model cannot recognise.
    pub fn supports(&self, language: Language) -> Result<(), AsrError> {
        if !self.multilingual && language != Language::En {
            return Err(AsrError::EnglishOnly(self.name.clone(), language.code()));
        }
        Ok(())
    }

    pub fn recognizer(self: &Arc<Self>, threads: usize) -> Result<Recognizer, AsrError> {
        let state = self
            .ctx
            .create_state()
            .map_err(|e| AsrError::Whisper(e.to_string()))?;
        Ok(Recognizer {
            model: self.clone(),
            state,
            threads: threads.max(1),
        })
    }
}

/// One decoding state; not shared between threads at once.
pub struct Recognizer {
    model: Arc<WhisperModel>,
    state: WhisperState,
    threads: usize,
}

/// Whisper will not decode under a second of audio; shorter utterances are padded.
pub(super) const MIN_SAMPLES: usize = SAMPLE_RATE * 21 / 20;
/// Encoder positions per second of audio (1500 for 30 s).
pub(super) const CTX_PER_SECOND: usize = 50;
/// The whole 30 s window.
const FULL_CTX: usize = 1500;
/// Extra context beyond the audio (4 s of silence): a tighter window makes Whisper
/// repeat itself (measured without timestamp tokens: 64 → 26 % WER, 200 → 2.5 %,
/// full window 1 % on tiny.en). Mandarin keeps it: at 100 the synthetic Mandarin
/// set's CER went from 66 % to 124 % (repetitions).
pub(super) const CTX_MARGIN: usize = 200;
/// English needs less (with timestamp tokens on): base q8_0 on the 25 English
/// telephone prompts, 1.5 % WER at 200, 1.0 % at 100, 50 and 20. On the voice
/// bench's spoken questions 50 misheard "shipping" where 100 and 200 did not, so
/// 100: about a fifth less decoding for a short question (benches/RESULTS.md,
/// issue 23).
pub(super) const CTX_MARGIN_EN: usize = 100;

/// An initial prompt that steers Whisper to Simplified Chinese with punctuation.
const ZH_PROMPT: &str = "以下是普通话的句子。";

/// How long a hint may be (characters). Whisper keeps at most 224 prompt tokens
/// (half its text context) and drops the oldest, and [`ZH_PROMPT`]'s words at the
/// start should survive: with 100 characters of titles the whole prompt is 133–148
/// tokens on the demo's, telecom's and bank's knowledge bases (Whisper's multilingual
/// tokenizer). Every character costs decoding time too (benches/RESULTS.md).
pub const HINT_CHARS: usize = 100;

/// The initial prompt for a decode. Mandarin: [`ZH_PROMPT`] (Simplified Chinese with
/// punctuation), followed by the words the caller is likely to use (`hint`: a
/// knowledge base's names for what it answers, "查询话费余额、充值话费"), which
/// Whisper then favours over sound-alikes (腿款 for 退款). English: no prompt
/// (the hint's effect there was not measured). A hint is cut to [`HINT_CHARS`].
pub fn prompt(language: Language, hint: Option<&str>) -> Option<String> {
    if language != Language::Zh {
        return None;
    }
    let hint: String = hint
        .map(str::trim)
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_control())
        .take(HINT_CHARS)
        .collect();
    Some(if hint.is_empty() {
        ZH_PROMPT.to_string()
    } else {
        format!("以下是普通话的句子，关于{hint}。")
    })
}

/// Whisper's abort callback: asks the closure `data` points at.
unsafe extern "C" fn unwanted(data: *mut std::ffi::c_void) -> bool {
    // SAFETY: `decode` sets `data` to a `&Unwanted` on its own stack, which
    // outlives the `full` call that invokes this callback.
    let unwanted = unsafe { &*(data as *const Unwanted<'_>) };
    unwanted()
}

/// Whether a decode is still wanted: asked between the model's steps.
type Unwanted<'a> = &'a (dyn Fn() -> bool + Sync);

impl Recognizer {
    /// The threads the next decodes use.
    pub fn set_threads(&mut self, threads: usize) {
        self.threads = threads.max(1);
    }

    pub fn transcribe(
        &mut self,
        audio: &[f32],
        language: Language,
    ) -> Result<Transcript, AsrError> {
        self.transcribe_unless(audio, language, None, &|| false)
    }

    /// Like [`Recognizer::transcribe`], with the words the caller is likely to
    /// use (`hint`, see [`prompt`]), giving up (an error) as soon as `unwanted`
    /// says nobody waits for the transcript any more.
    pub fn transcribe_unless(
        &mut self,
        audio: &[f32],
        language: Language,
        hint: Option<&str>,
        unwanted: Unwanted<'_>,
    ) -> Result<Transcript, AsrError> {
        let prompt = prompt(language, hint);
        let prompt = prompt.as_deref();
        self.model.supports(language)?;
        let started = Instant::now();
        let audio_ms = (audio.len() * 1000 / SAMPLE_RATE) as u64;
        let mut padded;
        let samples = if audio.len() < MIN_SAMPLES {
            padded = audio.to_vec();
            padded.resize(MIN_SAMPLES, 0.0);
            &padded[..]
        } else {
            audio
        };
        let seconds = samples.len() as f32 / SAMPLE_RATE as f32;
        let margin = if language == Language::En {
            CTX_MARGIN_EN
        } else {
            CTX_MARGIN
        };
        let ctx = ((seconds * CTX_PER_SECOND as f32).ceil() as usize + margin).min(FULL_CTX);
        let mut t = self.decode(samples, language, prompt, ctx, unwanted)?;
        if ctx < FULL_CTX && is_repetitive(&t.text) {
            // A shortened window occasionally makes Whisper loop. Most often it
            // says the whole request again ("Where is my order? Where is my
            // order? Where is my"): the first copy is the request. Otherwise the
            // full window, which does not loop, is tried once, at about ten times
            // the cost (measured: 3.3-4 s against 0.3 s for a 1.3 s question on
            // one thread, which under load took a third of the recognisers' time).
            if let Some(once) = said_once(&t.text) {
                tracing::debug!(
                    chars = t.text.chars().count(),
                    kept = once.chars().count(),
                    "the transcript repeats itself; keeping the first time"
                );
                t.text = once;
            } else {
                tracing::debug!(
                    chars = t.text.chars().count(),
                    "repetitive transcript; decoding again with the full window"
                );
                t = self.decode(samples, language, prompt, FULL_CTX, unwanted)?;
            }
        }
        if language == Language::Zh || t.language == "zh" {
            t.text = strip_prompt_echo(&t.text, prompt.unwrap_or(ZH_PROMPT));
            // Whisper mixes in Traditional characters; callers here expect Simplified.
            t.text = zhconv::zhconv(&t.text, zhconv::Variant::ZhHans);
        }
        t.text = clean(&t.text, t.confidence, t.no_speech);
        t.audio_ms = audio_ms;
        t.decode_ms = started.elapsed().as_millis() as u64;
        Ok(t)
    }

    fn decode(
        &mut self,
        samples: &[f32],
        language: Language,
        prompt: Option<&str>,
        ctx: usize,
        unwanted: Unwanted<'_>,
    ) -> Result<Transcript, AsrError> {
        let seconds = samples.len() as f32 / SAMPLE_RATE as f32;
        let mut params = FullParams::new(SamplingStrategy::Greedy { best_of: 1 });
        params.set_n_threads(self.threads as i32);
        params.set_translate(false);
        params.set_no_context(true);
        params.set_single_segment(true);
        // Timestamp tokens let Whisper see where the speech ends; without them a
        // shortened window makes it repeat the utterance until the token budget.
        params.set_no_timestamps(false);
        params.set_print_special(false);
        params.set_print_progress(false);
        params.set_print_realtime(false);
        params.set_print_timestamps(false);
        params.set_suppress_blank(true);
        params.set_suppress_nst(true);
        params.set_temperature(0.0);
        params.set_temperature_inc(0.0);
        params.set_audio_ctx(ctx as i32);
        // About 8 text tokens a second is generous for speech in either language.
        params.set_max_tokens((seconds * 8.0).ceil() as i32 + 8);
        let code = match language {
            Language::Auto => None,
            l => Some(l.code()),
        };
        params.set_language(code);
        if let Some(prompt) = prompt {
            params.set_initial_prompt(prompt);
        }
        let unwanted: *const Unwanted<'_> = &unwanted;
        // SAFETY: the callback reads `unwanted` only during `full` below, while
        // the reference it points at lives.
        unsafe {
            params.set_abort_callback(Some(self::unwanted));
            params.set_abort_callback_user_data(unwanted as *mut std::ffi::c_void);
        }
        self.state
            .full(params, samples)
            .map_err(|e| AsrError::Whisper(e.to_string()))?;

        let eot = self.model.ctx.token_eot();
        let mut text = String::new();
        let mut probs = Vec::new();
        let mut no_speech: f32 = 0.0;
        for segment in self.state.as_iter() {
            no_speech = no_speech.max(segment.no_speech_probability());
            if let Ok(t) = segment.to_str_lossy() {
                text.push_str(&t);
            }
            for i in 0..segment.n_tokens() {
                if let Some(token) = segment.get_token(i)
                    && token.token_id() < eot
                {
                    probs.push(token.token_probability());
                }
            }
        }
        let lang_id = self.state.full_lang_id_from_state();
        let language_code = whisper_rs::get_lang_str(lang_id)
            .unwrap_or(language.code())
            .to_string();
        let confidence = if probs.is_empty() {
            0.0
        } else {
            probs.iter().sum::<f32>() / probs.len() as f32
        };
        Ok(Transcript {
            text,
            language: language_code,
            confidence,
            no_speech,
            audio_ms: 0,
            decode_ms: 0,
        })
    }
}

/// Whether the text loops: a phrase of six or more characters said twice in a row,
/// or a shorter one four times.
fn is_repetitive(text: &str) -> bool {
    let chars: Vec<char> = text.chars().filter(|c| c.is_alphanumeric()).collect();
    (1..=chars.len() / 2).any(|unit| {
        let needed = if unit >= 6 { 2 } else { 4 };
        (0..chars.len()).any(|start| {
            let mut run = 1;
            let mut at = start + unit;
            while at + unit <= chars.len() && chars[at..at + unit] == chars[start..start + unit] {
                run += 1;
                at += unit;
            }
            run >= needed
        })
    })
}

/// How long a repeated phrase is at least, counting a Latin letter or digit as 1
/// and a Chinese character as 2: a shorter unit going round ("我。我。我。",
/// "no no no") is a loop on noise, not a request said again.
const PHRASE: usize = 6;

/// `text` up to the end of its first copy, when the whole of it is one phrase
/// (see [`PHRASE`]) said at least twice, the last time perhaps cut short;
/// punctuation is compared loosely, as in [`is_repetitive`].
fn said_once(text: &str) -> Option<String> {
    let chars: Vec<char> = text.chars().filter(|c| c.is_alphanumeric()).collect();
    let period =
        (1..=chars.len() / 2).find(|&p| (p..chars.len()).all(|i| chars[i] == chars[i % p]))?;
    let weight: usize = chars[..period]
        .iter()
        .map(|c| if c.is_ascii() { 1 } else { 2 })
        .sum();
    if weight < PHRASE {
        return None;
    }
    // Cut after the period's last letter and the punctuation that follows it.
    let mut seen = 0;
    let mut end = text.len();
    for (at, c) in text.char_indices() {
        if seen == period && c.is_alphanumeric() {
            end = at;
            break;
        }
        if c.is_alphanumeric() {
            seen += 1;
        }
    }
    Some(text[..end].trim().to_string())
}

/// Whisper sometimes repeats the start of its initial prompt as if it were heard;
/// drops such a prefix (three characters or more).
fn strip_prompt_echo(text: &str, prompt: &str) -> String {
    let text = text.trim_start();
    let common = text
        .chars()
        .zip(prompt.chars())
        .take_while(|(a, b)| a == b)
        .count();
    if common >= 3 {
        text.chars()
            .skip(common)
            .collect::<String>()
            .trim_start()
            .to_string()
    } else {
        text.to_string()
    }
}

/// Whisper's known inventions on silence and noise: subtitle credits from its
/// training data, which are never what a caller said.
const ALWAYS_INVENTED: &[&str] = &[
    "字幕由",
    "字幕提供",
    "中文字幕",
    "Amara.org",
    "请不吝点赞",
    "請不吝點贊",
    "订阅 转发",
    "明镜与点点",
    "明鏡與點點",
    "YoYo Television",
    "谢谢观看",
    "謝謝觀看",
    "Thanks for watching",
    "Subtitles by",
];

/// Short phrases Whisper produces on near-silence; kept only when it is sure.
const WEAK_INVENTED: &[&str] = &["you", "thank you", "bye", "谢谢", "謝謝", "嗯"];

/// Removes non-speech annotations and known hallucinations; returns trimmed text.
fn clean(text: &str, confidence: f32, no_speech: f32) -> String {
    let mut out = String::with_capacity(text.len());
    let mut depth = 0usize;
    for c in text.chars() {
        match c {
            '[' | '(' | '（' => depth += 1,
            ']' | ')' | '）' => depth = depth.saturating_sub(1),
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    let out = out.trim().to_string();
    if ALWAYS_INVENTED.iter().any(|h| out.contains(h)) {
        return String::new();
    }
    let bare: String = out
        .chars()
        .filter(|c| c.is_alphanumeric() || c.is_whitespace())
        .collect::<String>()
        .trim()
        .to_lowercase();
    if WEAK_INVENTED.contains(&bare.as_str()) && (confidence < 0.6 || no_speech > 0.3) {
        return String::new();
    }
    if bare.is_empty() {
        return String::new();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotations_and_subtitle_credits_are_dropped() {
        assert_eq!(clean(" [BLANK_AUDIO]", 0.9, 0.0), "");
        assert_eq!(clean("(music) Hello there.", 0.9, 0.0), "Hello there.");
        assert_eq!(clean("字幕由Amara.org社区提供", 0.99, 0.0), "");
        assert_eq!(clean("请不吝点赞 订阅 转发", 0.99, 0.0), "");
        assert_eq!(clean(" Thank you.", 0.4, 0.0), "");
        assert_eq!(clean(" Thank you.", 0.9, 0.05), "Thank you.");
        assert_eq!(clean("我要查订单", 0.9, 0.0), "我要查订单");
        assert_eq!(clean("我想取消订阅", 0.9, 0.0), "我想取消订阅");
        assert_eq!(clean(" ... ", 0.9, 0.0), "");
    }

    #[test]
    fn traditional_characters_become_simplified() {
        assert_eq!(
            zhconv::zhconv("我要下旋電單。營業時間", zhconv::Variant::ZhHans),
            "我要下旋电单。营业时间"
        );
    }

    #[test]
    fn mandarin_is_prompted_with_the_words_to_expect() {
        assert_eq!(prompt(Language::Zh, None).as_deref(), Some(ZH_PROMPT));
        assert_eq!(prompt(Language::Zh, Some("  ")).as_deref(), Some(ZH_PROMPT));
        assert_eq!(
            prompt(Language::Zh, Some("退款、营业时间")).as_deref(),
            Some("以下是普通话的句子，关于退款、营业时间。")
        );
        let long = prompt(Language::Zh, Some(&"退款\n".repeat(200))).unwrap();
        assert!(!long.contains('\n'));
        assert!(long.chars().count() <= ZH_PROMPT.chars().count() + 3 + HINT_CHARS);
        assert_eq!(prompt(Language::En, Some("refunds")), None);
        assert_eq!(prompt(Language::Auto, None), None);
    }

    #[test]
    fn an_echoed_prompt_is_dropped() {
        assert_eq!(strip_prompt_echo("以下是太天。", ZH_PROMPT), "太天。");
        assert_eq!(strip_prompt_echo("以下我要退货", ZH_PROMPT), "以下我要退货");
    }

    #[test]
    fn repetition_is_detected() {
        assert!(is_repetitive("我。我。我。我。我。"));
        assert!(is_repetitive("要追,要追,要追,要追,"));
        assert!(!is_repetitive(
            "I would like to check the status of my order."
        ));
        assert!(!is_repetitive("no no no"));
        assert!(is_repetitive(
            "Your message has been saved. Your message has been saved."
        ));
        assert!(!is_repetitive("我要查询订单"));
    }

    #[test]
    fn a_request_said_again_is_kept_once() {
        assert_eq!(
            said_once(" Where is my order? Where is my order? Where is my").as_deref(),
            Some("Where is my order?")
        );
        assert_eq!(
            said_once("我要退货。我要退货。我要退货。").as_deref(),
            Some("我要退货。")
        );
        // A short unit going round, or words that are not one phrase repeated.
        assert_eq!(said_once("我。我。我。我。我。"), None);
        assert_eq!(said_once("no no no no"), None);
        assert_eq!(said_once("Where is my order? Where is my parcel?"), None);
        assert_eq!(said_once("I would like to check my order."), None);
    }

    #[test]
    fn languages_parse() {
        assert_eq!("zh".parse::<Language>(), Ok(Language::Zh));
        assert!("fr".parse::<Language>().is_err());
    }
}
