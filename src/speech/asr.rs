//! Whisper speech recognition of one finished utterance (16 kHz mono f32), and the
//! bounded worker pool calls share.
//!
//! Tuned for short telephone utterances (measured, see benches/RESULTS.md):
//! - the encoder's audio context is sized to the utterance instead of Whisper's fixed
//!   30 s window, which is most of the speed-up for 1–5 s of speech;
//! - greedy decoding with no temperature fallback (the fallback can turn one second of
//!   audio into tens of seconds of decoding), and a token budget proportional to the
//!   audio so a shortened context cannot loop on repeated output;
//! - workers × threads never exceed the cores (ggml's threads spin while they
//!   wait: oversubscribed, decodes took minutes); the server gives each worker
//!   cores ÷ workers threads, so its one default worker decodes a caller alone
//!   about 40 % faster on two cores (`SpeechRuntime::load`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use whisper_rs::{
    FullParams, SamplingStrategy, WhisperContext, WhisperContextParameters, WhisperState,
};

use super::models::{ModelError, check_ggml};

/// Samples per second Whisper expects.
pub const SAMPLE_RATE: usize = 16_000;

/// Language to recognise, per dialplan node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
const MIN_SAMPLES: usize = SAMPLE_RATE * 21 / 20;
/// Encoder positions per second of audio (1500 for 30 s).
const CTX_PER_SECOND: usize = 50;
/// The whole 30 s window.
const FULL_CTX: usize = 1500;
/// Extra context beyond the audio (4 s of silence): a tighter window makes Whisper
/// repeat itself (measured without timestamp tokens: 64 → 26 % WER, 200 → 2.5 %,
/// full window 1 % on tiny.en). Mandarin keeps it: at 100 the synthetic Mandarin
/// set's CER went from 66 % to 124 % (repetitions).
const CTX_MARGIN: usize = 200;
/// English needs less (with timestamp tokens on): base q8_0 on the 25 English
/// telephone prompts, 1.5 % WER at 200, 1.0 % at 100, 50 and 20. On the voice
/// bench's spoken questions 50 misheard "shipping" where 100 and 200 did not, so
/// 100: about a fifth less decoding for a short question (benches/RESULTS.md,
/// issue 23).
const CTX_MARGIN_EN: usize = 100;

/// An initial prompt that steers Whisper to Simplified Chinese with punctuation.
const ZH_PROMPT: &str = "以下是普通话的句子。";

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
        self.transcribe_unless(audio, language, &|| false)
    }

    /// Like [`Recognizer::transcribe`], but gives up (an error) as soon as
    /// `unwanted` says nobody waits for the transcript any more.
    pub fn transcribe_unless(
        &mut self,
        audio: &[f32],
        language: Language,
        unwanted: Unwanted<'_>,
    ) -> Result<Transcript, AsrError> {
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
        let mut t = self.decode(samples, language, ctx, unwanted)?;
        if ctx < FULL_CTX && is_repetitive(&t.text) {
            // A shortened window occasionally makes Whisper loop on one phrase; the
            // full window does not. Retry once, at the full cost.
            tracing::debug!(
                chars = t.text.chars().count(),
                "repetitive transcript; decoding again with the full window"
            );
            t = self.decode(samples, language, FULL_CTX, unwanted)?;
        }
        if language == Language::Zh || t.language == "zh" {
            t.text = strip_prompt_echo(&t.text, ZH_PROMPT);
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
        if language == Language::Zh {
            params.set_initial_prompt(ZH_PROMPT);
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

/// Seconds of Whisper's encoder window a decode pays for beyond its audio.
fn margin_seconds(language: Language) -> f64 {
    let margin = if language == Language::En {
        CTX_MARGIN_EN
    } else {
        CTX_MARGIN
    };
    margin as f64 / CTX_PER_SECOND as f64
}

/// An utterance waiting longer than this goes before shorter ones.
const AGE_FIRST: Duration = Duration::from_millis(1500);

/// A draft is taken only when it would wait at most this long: it is worth
/// decoding only while the caller may still be quiet when it is done.
const DRAFT_WAIT: Duration = Duration::from_millis(400);

/// Utterances waiting for recognition, and the cores free to decode them: the
/// pool's scheduler, a plain state machine (time in, decisions out).
///
/// - **Admission by expected wait.** A finished utterance is taken when the
///   work queued ahead of it, divided over the cores, is expected to take at
///   most `max_wait`; otherwise it is refused at once ([`AsrError::Busy`]) and
///   the call answers politely. The work ahead counts everything queued, so
///   under sustained overload utterances are refused rather than left waiting. A draft (the words up to a pause, which are
///   all of them for most callers) is taken only when no finished utterance
///   waits and its own wait would be short ([`DRAFT_WAIT`]).
/// - **Shortest first**, unless one has waited [`AGE_FIRST`]: then the oldest.
///   A draft is ranked as a finished utterance: the caller usually waits for it.
/// - **Threads by load.** A job alone takes every free core; with others
///   waiting each takes one, which decodes about a third more in all
///   (benches/RESULTS.md). Threads in use never exceed the cores.
#[derive(Debug)]
pub struct Board {
    queue: Vec<Job>,
    cores: usize,
    free: usize,
    /// Decodes that may run at once.
    workers: usize,
    running: usize,
    /// Core-seconds one second of audio (with its margin) costs, learned.
    cost: f64,
    /// Estimated core-seconds of the decodes running.
    running_cost: f64,
    max_wait: Duration,
}

struct Job {
    audio: Vec<f32>,
    language: Language,
    draft: bool,
    /// Estimated core-seconds.
    cost: f64,
    reply: tokio::sync::oneshot::Sender<Result<Transcript, AsrError>>,
    queued: Instant,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("draft", &self.draft)
            .field("cost", &self.cost)
            .finish_non_exhaustive()
    }
}

/// What a worker takes: the job, its threads and its estimated cost.
struct Taken {
    job: Job,
    threads: usize,
}

/// The most utterances waiting per core, whatever the estimate says.
const QUEUE_PER_CORE: usize = 16;

impl Board {
    fn new(workers: usize, cores: usize, max_wait: Duration) -> Self {
        let cores = cores.max(1);
        Self {
            queue: Vec::new(),
            cores,
            free: cores,
            workers: workers.clamp(1, cores),
            running: 0,
            // base q8_0 on one thread: about 0.4 s for a 2 s question with its
            // 2 s margin; learned from the first decodes on.
            cost: 0.1,
            running_cost: 0.0,
            max_wait,
        }
    }

    fn seconds(audio: usize, language: Language) -> f64 {
        audio.max(MIN_SAMPLES) as f64 / SAMPLE_RATE as f64 + margin_seconds(language)
    }

    /// Takes `job` into the queue, or says why not.
    fn admit(&mut self, job: Job) -> Result<(), (Job, AsrError)> {
        let finals = self.queue.iter().filter(|j| !j.draft).count();
        if self.queue.len() >= QUEUE_PER_CORE * self.cores {
            let n = self.queue.len();
            return Err((job, AsrError::Busy(n)));
        }
        // Everything queued (a shorter one arriving later may still go first,
        // but never for longer than AGE_FIRST), and half of what runs.
        let ahead: f64 = self.queue.iter().map(|j| j.cost).sum::<f64>() + self.running_cost / 2.0;
        let wait = ahead / self.workers as f64;
        let limit = if job.draft {
            if finals > 0 {
                return Err((job, AsrError::Busy(finals)));
            }
            DRAFT_WAIT.min(self.max_wait)
        } else {
            self.max_wait
        };
        if wait > limit.as_secs_f64() {
            return Err((job, AsrError::Busy(finals)));
        }
        self.queue.push(job);
        Ok(())
    }

    /// The next job to decode now, if a worker may start one; jobs nobody
    /// waits for any more are dropped on the way (returned in `dropped`).
    fn take(&mut self, now: Instant, dropped: &mut usize) -> Option<Taken> {
        let before = self.queue.len();
        self.queue.retain(|j| !j.reply.is_closed());
        *dropped += before - self.queue.len();
        if self.queue.is_empty() || self.free == 0 || self.running >= self.workers {
            return None;
        }
        let oldest = self
            .queue
            .iter()
            .enumerate()
            .filter(|(_, j)| now.saturating_duration_since(j.queued) >= AGE_FIRST)
            .min_by_key(|(_, j)| j.queued)
            .map(|(i, _)| i);
        let next = oldest.or_else(|| {
            self.queue
                .iter()
                .enumerate()
                .min_by(|(_, a), (_, b)| a.cost.total_cmp(&b.cost))
                .map(|(i, _)| i)
        })?;
        let job = self.queue.swap_remove(next);
        let threads = if self.queue.is_empty() && self.running == 0 {
            self.free
        } else {
            1
        };
        self.free -= threads;
        self.running += 1;
        self.running_cost += job.cost;
        Some(Taken { job, threads })
    }

    /// A decode of `seconds` (audio and margin) with `threads` took `took`.
    fn done(&mut self, threads: usize, cost: f64, seconds: f64, took: Option<Duration>) {
        self.free = (self.free + threads).min(self.cores);
        self.running = self.running.saturating_sub(1);
        self.running_cost = (self.running_cost - cost).max(0.0);
        if let Some(took) = took
            && seconds > 0.0
        {
            let observed = took.as_secs_f64() * threads as f64 / seconds;
            self.cost = 0.8 * self.cost + 0.2 * observed;
        }
    }

    fn cost_of(&self, audio: usize, language: Language) -> f64 {
        self.cost * Self::seconds(audio, language)
    }
}

/// The pool's shared state: the board under its lock, workers waiting on it.
struct Shared {
    board: std::sync::Mutex<Board>,
    changed: std::sync::Condvar,
    stopped: std::sync::atomic::AtomicBool,
}

/// Stops the workers when the last handle to the pool goes.
struct Handle(Arc<Shared>);

impl Drop for Handle {
    fn drop(&mut self) {
        self.0.stopped.store(true, Ordering::Relaxed);
        self.0.changed.notify_all();
    }
}

/// Recognition requests from calls to a fixed set of worker threads, scheduled
/// by [`Board`]: a refused utterance fails at once with [`AsrError::Busy`] so
/// the call can ask again or offer the keys instead of waiting without end.
#[derive(Clone)]
pub struct AsrPool {
    handle: Arc<Handle>,
    pub model: Arc<WhisperModel>,
}

impl AsrPool {
    /// Starts `workers` recognisers (at most `cores`) sharing `cores` threads;
    /// an utterance is refused when it would wait more than `max_wait`.
    pub fn start(
        model: Arc<WhisperModel>,
        workers: usize,
        cores: usize,
        max_wait: Duration,
    ) -> Result<Self, AsrError> {
        let board = Board::new(workers, cores, max_wait);
        let shared = Arc::new(Shared {
            board: std::sync::Mutex::new(board),
            changed: std::sync::Condvar::new(),
            stopped: std::sync::atomic::AtomicBool::new(false),
        });
        let workers = workers.clamp(1, cores.max(1));
        for i in 0..workers {
            let recognizer = model.recognizer(1)?;
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(format!("asr-{i}"))
                .spawn(move || worker(recognizer, &shared))
                .map_err(|e| AsrError::Whisper(format!("cannot start worker: {e}")))?;
        }
        Ok(Self {
            handle: Arc::new(Handle(shared)),
            model,
        })
    }

    /// Queues a draft (the words up to a pause, which may not be all of them)
    /// only when no finished utterance waits and it would be decoded soon:
    /// drafts never push a caller's finished utterance over its wait. Busy
    /// otherwise.
    pub fn submit_spare(
        &self,
        audio: Vec<f32>,
        language: Language,
    ) -> Result<tokio::sync::oneshot::Receiver<Result<Transcript, AsrError>>, AsrError> {
        self.queue(audio, language, true)
    }

    /// Queues an utterance; the answer arrives on the returned channel.
    pub fn submit(
        &self,
        audio: Vec<f32>,
        language: Language,
    ) -> Result<tokio::sync::oneshot::Receiver<Result<Transcript, AsrError>>, AsrError> {
        self.queue(audio, language, false)
    }

    fn queue(
        &self,
        audio: Vec<f32>,
        language: Language,
        draft: bool,
    ) -> Result<tokio::sync::oneshot::Receiver<Result<Transcript, AsrError>>, AsrError> {
        self.model.supports(language)?;
        let (reply, rx) = tokio::sync::oneshot::channel();
        let shared = &self.handle.0;
        let m = crate::metrics::metrics();
        let mut board = crate::lock(&shared.board);
        let job = Job {
            cost: board.cost_of(audio.len(), language),
            audio,
            language,
            draft,
            reply,
            queued: Instant::now(),
        };
        match board.admit(job) {
            Ok(()) => {
                drop(board);
                m.asr_queue.inc();
                shared.changed.notify_one();
                Ok(rx)
            }
            Err((_, e)) => {
                m.asr_requests
                    .get_or_create(&crate::metrics::OutcomeLabel { outcome: "busy" })
                    .inc();
                Err(e)
            }
        }
    }

    /// Recognises and waits (for the CLI and tests).
    pub async fn transcribe(
        &self,
        audio: Vec<f32>,
        language: Language,
    ) -> Result<Transcript, AsrError> {
        self.submit(audio, language)?
            .await
            .map_err(|_| AsrError::Stopped)?
    }
}

fn worker(mut recognizer: Recognizer, shared: &Shared) {
    let m = crate::metrics::metrics();
    loop {
        let Taken { job, threads } = {
            let mut board = crate::lock(&shared.board);
            loop {
                if shared.stopped.load(Ordering::Relaxed) {
                    return;
                }
                let mut dropped = 0;
                let taken = board.take(Instant::now(), &mut dropped);
                for _ in 0..dropped {
                    // Not wanted any more (the caller went on, or hung up).
                    m.asr_queue.dec();
                    m.asr_requests
                        .get_or_create(&crate::metrics::OutcomeLabel { outcome: "dropped" })
                        .inc();
                }
                if let Some(taken) = taken {
                    break taken;
                }
                board = match shared.changed.wait(board) {
                    Ok(board) => board,
                    Err(poisoned) => poisoned.into_inner(),
                };
            }
        };
        m.asr_queue.dec();
        let waited = job.queued.elapsed();
        let started = Instant::now();
        recognizer.set_threads(threads);
        let reply = &job.reply;
        let result = recognizer.transcribe_unless(&job.audio, job.language, &|| reply.is_closed());
        let took = started.elapsed();
        let abandoned = job.reply.is_closed();
        {
            let mut board = crate::lock(&shared.board);
            let seconds = Board::seconds(job.audio.len(), job.language);
            board.done(threads, job.cost, seconds, result.is_ok().then_some(took));
        }
        shared.changed.notify_all();
        crate::metrics::Metrics::observe(&m.asr_decode_seconds, took);
        let outcome = match (&result, abandoned) {
            (_, true) => "dropped",
            (Ok(_), false) => "ok",
            (Err(_), false) => "error",
        };
        m.asr_requests
            .get_or_create(&crate::metrics::OutcomeLabel { outcome })
            .inc();
        if let Ok(t) = &result {
            tracing::debug!(
                audio_ms = t.audio_ms,
                decode_ms = t.decode_ms,
                waited_ms = waited.as_millis() as u64,
                threads,
                draft = job.draft,
                "utterance recognised"
            );
        }
        if waited > Duration::from_secs(3) {
            tracing::warn!(waited = ?waited, "speech recognition queue is slow");
        }
        let _ = job.reply.send(result);
    }
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

    /// A job of `seconds` of English audio, and the receiver that keeps it wanted.
    fn job(
        board: &Board,
        seconds: f64,
        draft: bool,
        queued: Instant,
    ) -> (
        Job,
        tokio::sync::oneshot::Receiver<Result<Transcript, AsrError>>,
    ) {
        let audio = vec![0.0; (seconds * SAMPLE_RATE as f64) as usize];
        let (reply, rx) = tokio::sync::oneshot::channel();
        let cost = board.cost_of(audio.len(), Language::En);
        let job = Job {
            audio,
            language: Language::En,
            draft,
            cost,
            reply,
            queued,
        };
        (job, rx)
    }

    #[test]
    fn the_shortest_goes_first_and_alone_it_takes_every_core() {
        let now = Instant::now();
        let mut board = Board::new(2, 2, Duration::from_secs(3));
        let mut keep = Vec::new();
        for seconds in [4.0, 1.5, 2.5] {
            let (j, rx) = job(&board, seconds, false, now);
            board.admit(j).map_err(|(_, e)| e).unwrap();
            keep.push(rx);
        }
        let mut dropped = 0;
        // Others wait: one thread each, shortest first.
        let first = board.take(now, &mut dropped).unwrap();
        assert_eq!((first.job.audio.len(), first.threads), (24_000, 1));
        let second = board.take(now, &mut dropped).unwrap();
        assert_eq!((second.job.audio.len(), second.threads), (40_000, 1));
        // Both cores busy: nothing more starts.
        assert!(board.take(now, &mut dropped).is_none());
        let seconds = Board::seconds(first.job.audio.len(), Language::En);
        board.done(1, first.job.cost, seconds, Some(Duration::from_millis(350)));
        let seconds = Board::seconds(second.job.audio.len(), Language::En);
        board.done(
            1,
            second.job.cost,
            seconds,
            Some(Duration::from_millis(450)),
        );
        // The last one is alone: both cores.
        let last = board.take(now, &mut dropped).unwrap();
        assert_eq!((last.job.audio.len(), last.threads), (64_000, 2));
        assert_eq!(dropped, 0);
        // The learned cost moved towards what was observed (0.1 s per second).
        assert!((board.cost - 0.1).abs() < 0.01, "{}", board.cost);
    }

    #[test]
    fn an_old_utterance_goes_before_shorter_ones() {
        let now = Instant::now();
        let mut board = Board::new(1, 1, Duration::from_secs(30));
        let (old, _a) = job(&board, 5.0, false, now);
        board.admit(old).map_err(|(_, e)| e).unwrap();
        let later = now + AGE_FIRST;
        let (short, _b) = job(&board, 1.0, false, later);
        board.admit(short).map_err(|(_, e)| e).unwrap();
        let mut dropped = 0;
        let next = board.take(later, &mut dropped).unwrap();
        assert_eq!(next.job.audio.len(), 80_000);
    }

    #[test]
    fn admission_is_by_the_expected_wait_and_drafts_only_when_soon() {
        let now = Instant::now();
        // One core; a 2 s question costs 0.1 × (2 + 2 margin) = 0.4 core-seconds.
        let mut board = Board::new(1, 1, Duration::from_secs(1));
        let mut keep = Vec::new();
        let mut admitted = 0;
        loop {
            let (j, rx) = job(&board, 2.0, false, now);
            match board.admit(j) {
                Ok(()) => {
                    admitted += 1;
                    keep.push(rx);
                }
                Err((_, e)) => {
                    assert!(matches!(e, AsrError::Busy(_)), "{e}");
                    break;
                }
            }
        }
        // Waits of 0, 0.4, 0.8 s are within the second; 1.2 s is not.
        assert_eq!(admitted, 3);
        // A draft is refused while finished utterances wait.
        let (d, _rx) = job(&board, 1.0, true, now);
        assert!(board.admit(d).is_err());
        // Nobody waits for them any more: dropped, not decoded.
        keep.clear();
        let mut dropped = 0;
        assert!(board.take(now, &mut dropped).is_none());
        assert_eq!(dropped, 3);
        // Idle: a draft is taken, and runs with the free core.
        let (d, _rx) = job(&board, 1.0, true, now);
        board.admit(d).map_err(|(_, e)| e).unwrap();
        let t = board.take(now, &mut dropped).unwrap();
        assert!(t.job.draft);
        // Another draft would start soon enough; a finished utterance waits too,
        // and then no draft is taken.
        let (d, _rx2) = job(&board, 1.0, true, now);
        assert!(board.admit(d).is_ok());
        let (f, _rx3) = job(&board, 1.0, false, now);
        assert!(board.admit(f).is_ok());
        let (d, _rx4) = job(&board, 1.0, true, now);
        assert!(board.admit(d).is_err());
    }

    #[test]
    fn languages_parse() {
        assert_eq!("zh".parse::<Language>(), Ok(Language::Zh));
        assert!("fr".parse::<Language>().is_err());
    }
}
