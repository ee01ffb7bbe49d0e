//! The recognition pool: finished utterances and drafts from calls, scheduled
//! onto a fixed set of Whisper recognisers by [`Board`], a plain state machine.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::asr::{
    AsrError, CTX_MARGIN, CTX_MARGIN_EN, CTX_PER_SECOND, Language, MIN_SAMPLES, Recognizer,
    SAMPLE_RATE, Transcript, WhisperModel,
};
use super::remote::{self, Service};

/// Where a transcript will arrive.
pub type Pending = tokio::sync::oneshot::Receiver<Result<Transcript, AsrError>>;

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
    /// Whether `cost` has been learned from a one-thread decode yet.
    measured_alone: bool,
    max_wait: Duration,
}

struct Job {
    audio: Vec<f32>,
    language: Language,
    /// Words the caller is likely to use (see [`super::asr::prompt`]).
    hint: Option<Arc<str>>,
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

/// What a worker takes: the job and the threads it decodes with.
struct Taken {
    job: Job,
    threads: usize,
}

/// How much faster a decode on several threads is than on one (base q8_0 on
/// this project's 2-core machine, `cargo bench --bench asr`: p50 409 ms on one
/// thread, 279 ms on two).
const PARALLEL_SPEEDUP: f64 = 1.47;

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
            measured_alone: false,
            max_wait,
        }
    }

    fn seconds(audio: usize, language: Language) -> f64 {
        audio.max(MIN_SAMPLES) as f64 / SAMPLE_RATE as f64 + margin_seconds(language)
    }

    /// Expected seconds before a job queued now starts: everything queued (a
    /// shorter one arriving later may still go first, but never for longer than
    /// AGE_FIRST), and half of what runs, shared by the workers.
    fn wait(&self) -> f64 {
        let ahead: f64 = self.queue.iter().map(|j| j.cost).sum::<f64>() + self.running_cost / 2.0;
        ahead / self.workers as f64
    }

    /// Takes `job` into the queue, or says why not (dropping it: its caller is
    /// told on the spot).
    fn admit(&mut self, job: Job) -> Result<(), AsrError> {
        let finals = self.queue.iter().filter(|j| !j.draft).count();
        if self.queue.len() >= QUEUE_PER_CORE * self.cores {
            let n = self.queue.len();
            return Err(AsrError::Busy(n));
        }
        let wait = self.wait();
        let limit = if job.draft {
            if finals > 0 {
                return Err(AsrError::Busy(finals));
            }
            DRAFT_WAIT.min(self.max_wait)
        } else {
            self.max_wait
        };
        if wait > limit.as_secs_f64() {
            return Err(AsrError::Busy(finals));
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
        let Some(took) = took.filter(|_| seconds > 0.0) else {
            return;
        };
        // The cost is learned from one-thread decodes, the only kind there is
        // when a queue forms. A decode on several threads says little about it:
        // the threads wait for each other, and for anything else on the cores
        // (measured: 1.2 s for 1.8 s of speech on 2 busy cores, 0.26 s on idle
        // ones), which made the estimate double and the pool refuse callers it
        // had time for. Until a one-thread decode is seen (an idle server), a
        // multi-thread one stands in, at the measured speed-up.
        let observed = if threads == 1 {
            self.measured_alone = true;
            took.as_secs_f64() / seconds
        } else if !self.measured_alone {
            took.as_secs_f64() * PARALLEL_SPEEDUP / seconds
        } else {
            return;
        };
        self.cost = 0.8 * self.cost + 0.2 * observed;
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
    /// Languages recognised by a remote service first (kefu.toml's
    /// `[recognition]`); the local workers hear them when it fails.
    remote: Arc<HashMap<Language, Arc<Service>>>,
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
            remote: Arc::default(),
        })
    }

    /// Sends these languages' utterances to remote services first.
    pub fn with_remote(mut self, routes: HashMap<Language, Arc<Service>>) -> Self {
        self.remote = Arc::new(routes);
        self
    }

    /// Queues a draft (the words up to a pause, which may not be all of them)
    /// only when no finished utterance waits and it would be decoded soon:
    /// drafts never push a caller's finished utterance over its wait. Busy
    /// otherwise.
    pub fn submit_spare(&self, audio: Vec<f32>, language: Language) -> Result<Pending, AsrError> {
        self.submit_with(audio, language, None, true)
    }

    /// Queues an utterance; the answer arrives on the returned channel.
    pub fn submit(&self, audio: Vec<f32>, language: Language) -> Result<Pending, AsrError> {
        self.submit_with(audio, language, None, false)
    }

    /// Queues an utterance (a `draft` as [`AsrPool::submit_spare`] does) with the
    /// words the caller is likely to use (`hint`: a knowledge base's names for what
    /// it answers), which the recogniser then favours over sound-alikes.
    pub fn submit_with(
        &self,
        audio: Vec<f32>,
        language: Language,
        hint: Option<Arc<str>>,
        draft: bool,
    ) -> Result<Pending, AsrError> {
        if let Some(service) = self.remote.get(&language).cloned()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let (reply, rx) = tokio::sync::oneshot::channel();
            let pool = self.clone();
            runtime.spawn(async move {
                pool.remote(service, audio, language, hint, draft, reply)
                    .await;
            });
            return Ok(rx);
        }
        self.submit_local(audio, language, hint, draft)
    }

    /// An utterance heard by a remote service; by the local workers when the
    /// service fails or is late.
    async fn remote(
        self,
        service: Arc<Service>,
        audio: Vec<f32>,
        language: Language,
        hint: Option<Arc<str>>,
        draft: bool,
        mut reply: tokio::sync::oneshot::Sender<Result<Transcript, AsrError>>,
    ) {
        let heard = tokio::select! {
            heard = service.transcribe(&audio, language, hint.as_deref(), draft) => heard,
            () = reply.closed() => {
                remote::count("transcription", "dropped");
                return;
            }
        };
        let error = match heard {
            Ok(transcript) => {
                remote::count("transcription", "ok");
                let _ = reply.send(Ok(transcript));
                return;
            }
            Err(e) => e,
        };
        remote::count("transcription", error.outcome());
        tracing::warn!(error = %error, draft, "remote recognition failed; the local model hears the utterance");
        let local = match self.submit_local(audio, language, hint, draft) {
            Ok(local) => local,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        remote::count("transcription", "fallback");
        tokio::select! {
            heard = local => {
                let _ = reply.send(heard.unwrap_or(Err(AsrError::Stopped)));
            }
            // Dropping `local` tells the worker nobody waits.
            () = reply.closed() => {}
        }
    }

    /// An utterance for this process's own workers (kefu's speech API serves
    /// these, never forwarding); a `draft` only on spare capacity.
    pub fn submit_local(
        &self,
        audio: Vec<f32>,
        language: Language,
        hint: Option<Arc<str>>,
        draft: bool,
    ) -> Result<Pending, AsrError> {
        self.model.supports(language)?;
        let (reply, rx) = tokio::sync::oneshot::channel();
        let shared = &self.handle.0;
        let m = crate::metrics::metrics();
        let mut board = crate::lock(&shared.board);
        let job = Job {
            cost: board.cost_of(audio.len(), language),
            audio,
            language,
            hint,
            draft,
            reply,
            queued: Instant::now(),
        };
        let (draft, samples) = (job.draft, job.audio.len());
        match board.admit(job) {
            Ok(()) => {
                drop(board);
                m.asr_queue.inc();
                shared.changed.notify_one();
                Ok(rx)
            }
            Err(e) => {
                tracing::debug!(
                    draft,
                    audio_ms = samples as u64 * 1000 / SAMPLE_RATE as u64,
                    queued = board.queue.len(),
                    running = board.running,
                    expected_wait_ms = (board.wait() * 1000.0) as u64,
                    cost = board.cost,
                    "recognition refused"
                );
                m.asr_requests
                    .get_or_create(&crate::metrics::OutcomeLabel { outcome: "busy" })
                    .inc();
                Err(e)
            }
        }
    }

    /// How long the utterance just queued is expected to take to come back:
    /// what is queued (itself included) and half of what runs.
    pub fn expected_wait(&self) -> Duration {
        let wait = crate::lock(&self.handle.0.board).wait();
        Duration::from_secs_f64(wait.clamp(0.0, 3600.0))
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
        let result =
            recognizer.transcribe_unless(&job.audio, job.language, job.hint.as_deref(), &|| {
                reply.is_closed()
            });
        let took = started.elapsed();
        let abandoned = job.reply.is_closed();
        let (cost, queued) = {
            let mut board = crate::lock(&shared.board);
            let seconds = Board::seconds(job.audio.len(), job.language);
            board.done(threads, job.cost, seconds, result.is_ok().then_some(took));
            (board.cost, board.queue.len())
        };
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
                cost,
                queued,
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
            hint: None,
            draft,
            cost,
            reply,
            queued,
        };
        (job, rx)
    }

    #[test]
    fn the_expected_wait_counts_the_queue_and_half_of_what_runs() {
        let now = Instant::now();
        let mut board = Board::new(2, 2, Duration::from_secs(4));
        assert_eq!(board.wait(), 0.0);
        let mut keep = Vec::new();
        let mut costs = Vec::new();
        for seconds in [2.0, 3.0, 1.0] {
            let (j, rx) = job(&board, seconds, false, now);
            costs.push(j.cost);
            board.admit(j).unwrap();
            keep.push(rx);
        }
        let all: f64 = costs.iter().sum();
        assert!((board.wait() - all / 2.0).abs() < 1e-9);
        // The shortest starts: half of its cost still counts, shared by 2 workers.
        let mut dropped = 0;
        let running = board.take(now, &mut dropped).unwrap();
        let expected = (all - running.job.cost / 2.0) / 2.0;
        assert!((board.wait() - expected).abs() < 1e-9, "{}", board.wait());
    }

    #[test]
    fn the_shortest_goes_first_and_alone_it_takes_every_core() {
        let now = Instant::now();
        let mut board = Board::new(2, 2, Duration::from_secs(3));
        let mut keep = Vec::new();
        for seconds in [4.0, 1.5, 2.5] {
            let (j, rx) = job(&board, seconds, false, now);
            board.admit(j).unwrap();
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
    fn the_cost_is_learned_from_one_thread_decodes() {
        let mut board = Board::new(2, 2, Duration::from_secs(4));
        // Idle: a two-thread decode stands in, at the measured speed-up.
        board.done(2, 0.0, 4.0, Some(Duration::from_millis(272)));
        let expected = 0.8 * 0.1 + 0.2 * (0.272 * PARALLEL_SPEEDUP / 4.0);
        assert!((board.cost - expected).abs() < 1e-9, "{}", board.cost);
        for _ in 0..30 {
            board.done(1, 0.0, 4.0, Some(Duration::from_millis(400)));
        }
        assert!((board.cost - 0.1).abs() < 0.001, "{}", board.cost);
        // Once one-thread decodes are measured, a slow two-thread one (its
        // threads waiting on busy cores) does not move the estimate.
        board.done(2, 0.0, 4.0, Some(Duration::from_millis(1200)));
        assert!((board.cost - 0.1).abs() < 0.001, "{}", board.cost);
    }

    #[test]
    fn an_old_utterance_goes_before_shorter_ones() {
        let now = Instant::now();
        let mut board = Board::new(1, 1, Duration::from_secs(30));
        let (old, _a) = job(&board, 5.0, false, now);
        board.admit(old).unwrap();
        let later = now + AGE_FIRST;
        let (short, _b) = job(&board, 1.0, false, later);
        board.admit(short).unwrap();
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
                Err(e) => {
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
        board.admit(d).unwrap();
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
}
