//! Speech recognition with the real models on real telephone speech.
//!
//! The models come from `deploy/models.sh` (the README's commands run it); the English
//! recordings are Debian's `asterisk-core-sounds-en-wav` (8 kHz, a professional voice,
//! the sort of audio an IVR hears) with their texts from `asterisk-core-sounds-en`.
//! Audio goes through a G.711 µ-law round trip first, as it would over a phone line.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use kefu::media::g711::Law;
use kefu::media::wav::{read_mono, resample};
use kefu::speech::asr::SAMPLE_RATE;
use kefu::speech::score::{char_errors, word_errors};
use kefu::speech::{Language, ModelDir, WhisperModel};

const SOUNDS: &str = "/usr/share/asterisk/sounds/en";
const TEXTS: &str = "/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz";

fn models() -> ModelDir {
    ModelDir(common::repo().join("models"))
}

fn load(name: &str) -> Arc<WhisperModel> {
    let path = models().whisper(name).unwrap_or_else(|e| panic!("{e}"));
    Arc::new(WhisperModel::load(&path).unwrap_or_else(|e| panic!("{e}")))
}

/// 8 kHz mono → µ-law and back (the phone line) → 16 kHz for Whisper.
fn telephone_audio(path: &Path) -> Vec<f32> {
    let (mono, rate) = read_mono(path).unwrap();
    let narrow = resample(&mono, rate, 8000).unwrap();
    let pcm: Vec<i16> = narrow
        .iter()
        .map(|s| (s * 32767.0).clamp(-32768.0, 32767.0) as i16)
        .collect();
    let mut line = Vec::with_capacity(pcm.len());
    for frame in pcm.chunks(160) {
        let mut enc = vec![0u8; frame.len()];
        Law::Pcmu.encode(frame, &mut enc);
        let mut dec = vec![0i16; frame.len()];
        Law::Pcmu.decode(&enc, &mut dec);
        line.extend(dec.iter().map(|&s| f32::from(s) / 32768.0));
    }
    resample(&line, 8000, SAMPLE_RATE as u32).unwrap()
}

/// Every 10th sentence-length prompt with plain text (no tones, no key symbols).
fn english_set() -> Vec<(PathBuf, String)> {
    let out = Command::new("gzip")
        .args(["-dc", TEXTS])
        .output()
        .expect("gzip");
    assert!(
        out.status.success(),
        "{TEXTS} is missing: the README's test command installs asterisk-core-sounds-en"
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let all: Vec<(PathBuf, String)> = text
        .lines()
        .filter(|l| !l.starts_with(';'))
        .filter_map(|l| l.split_once(": "))
        .filter(|(_, t)| {
            !t.contains(['[', '(', '*', '#', '<']) && t.split_whitespace().count() >= 4
        })
        .map(|(name, t)| (Path::new(SOUNDS).join(format!("{name}.wav")), t.to_string()))
        .filter(|(p, _)| p.is_file())
        .collect();
    assert!(
        all.len() > 200,
        "expected the asterisk English prompts; found {}",
        all.len()
    );
    all.into_iter().step_by(10).collect()
}

fn english_wer(model: &str) -> f64 {
    let whisper = load(model);
    let mut rec = whisper.recognizer(1).unwrap();
    let (mut errors, mut words) = (0, 0);
    for (path, reference) in english_set() {
        let t = rec
            .transcribe(&telephone_audio(&path), Language::En)
            .unwrap();
        let (e, n) = word_errors(&reference, &t.text);
        if e > 0 {
            eprintln!("{model}: {}: {reference:?} → {:?}", path.display(), t.text);
        }
        errors += e;
        words += n;
    }
    let wer = errors as f64 / words as f64;
    eprintln!("{model}: WER {:.1}% ({errors}/{words} words)", wer * 100.0);
    wer
}

#[test]
fn english_wer_base_q8() {
    let wer = english_wer("base-q8_0");
    assert!(wer < 0.06, "WER {wer}");
}

#[test]
fn english_wer_tiny_en_q8() {
    let wer = english_wer("tiny.en-q8_0");
    assert!(wer < 0.06, "WER {wer}");
}

/// Mandarin: the Mandarin voice (Kokoro) says typical caller sentences; the
/// character error rate of the multilingual model is reported and bounded, and the
/// output is Simplified Chinese characters (not pinyin, not Traditional, not a
/// repetition loop).
#[test]
fn mandarin_cer_on_synthesised_speech() {
    use kefu::speech::models::init_onnx_runtime;
    use kefu::speech::tts::{Voice, default_voice};
    let sentences = [
        "我要查询订单",
        "请问你们几点开门",
        "我想找人工客服",
        "我要退货",
        "谢谢再见",
    ];
    let dir = models();
    init_onnx_runtime(&dir.onnxruntime().unwrap()).unwrap();
    let voice = Voice::load(default_voice("zh"), &dir).unwrap();
    let whisper = load("base");
    let mut rec = whisper.recognizer(1).unwrap();
    let (mut errors, mut chars) = (0, 0);
    for reference in sentences {
        let audio = voice.synthesize(reference).unwrap();
        let t = rec.transcribe(&to_telephone(&audio), Language::Zh).unwrap();
        let (e, n) = char_errors(reference, &t.text);
        eprintln!("zh: {reference} → {} ({e}/{n})", t.text);
        assert!(
            t.text
                .chars()
                .any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c)),
            "not Chinese characters: {:?}",
            t.text
        );
        errors += e;
        chars += n;
    }
    let cer = errors as f64 / chars as f64;
    eprintln!("base: Mandarin CER {:.1}% ({errors}/{chars})", cer * 100.0);
    // Catches a broken pipeline (wrong rate, wrong language, a voice nobody can
    // understand, pinyin or empty output); the figure is in benches/RESULTS.md.
    assert!(cer < 0.4, "CER {cer}");
}

#[test]
fn transcribe_cli_prints_the_text_and_names_the_setup_for_a_missing_model() {
    let wav = Path::new(SOUNDS).join("agent-pass.wav");
    let out = Command::new(env!("CARGO_BIN_EXE_kefu"))
        .arg("transcribe")
        .arg(&wav)
        .args(["--model", "tiny.en-q8_0", "--language", "en", "--models"])
        .arg(common::repo().join("models"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        word_errors(
            "Please enter your password followed by the pound key.",
            &text
        )
        .0,
        0,
        "{text}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_kefu"))
        .arg("transcribe")
        .arg(&wav)
        .args(["--models", "/nonexistent"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("deploy/models.sh"), "{err}");
}

/// The whole recognition pipeline on a phone line: silence, a prompt-length sentence,
/// Calls share one VAD model: each keeps its own recurrent state, so a call's
/// probabilities are those of a model of its own, whatever other calls feed in
/// between; a quiet line is not run through the model at all.
#[test]
fn one_vad_model_serves_many_calls_each_with_its_own_state() {
    use kefu::speech::models::init_onnx_runtime;
    use kefu::speech::vad::{CHUNK, SileroVad, VadModel};

    let dir = models();
    init_onnx_runtime(&dir.onnxruntime().unwrap()).unwrap();
    let shared = VadModel::load(&dir.silero_vad().unwrap()).unwrap();
    let mut alone = SileroVad::load(&dir.silero_vad().unwrap()).unwrap();
    let (mut a, mut b) = (
        SileroVad::new(shared.clone()),
        SileroVad::new(shared.clone()),
    );
    let speech = telephone_audio(&Path::new(SOUNDS).join("agent-newlocation.wav"));
    let speech_8k = resample(&speech, SAMPLE_RATE as u32, 8000).unwrap();
    let other = telephone_audio(&Path::new(SOUNDS).join("agent-pass.wav"));
    let other_8k = resample(&other, SAMPLE_RATE as u32, 8000).unwrap();
    let mut max_p: f32 = 0.0;
    for (i, chunk) in speech_8k.chunks_exact(CHUNK).enumerate() {
        let chunk: &[f32; CHUNK] = chunk.try_into().unwrap();
        let expected = alone.probability(chunk).unwrap();
        // Another call's audio goes through the same model in between.
        if let Some(o) = other_8k.chunks_exact(CHUNK).nth(i) {
            b.probability(o.try_into().unwrap()).unwrap();
        }
        let got = a.probability(chunk).unwrap();
        assert!(
            (got - expected).abs() < 1e-5,
            "chunk {i}: {got} vs {expected}"
        );
        max_p = max_p.max(got);
    }
    assert!(max_p > 0.8, "speech was heard: {max_p}");
    // A quiet line (about -60 dBFS of noise) is not speech.
    let mut quiet = SileroVad::new(shared);
    for i in 0..50 {
        let chunk: [f32; CHUNK] =
            std::array::from_fn(|j| if (i + j) % 2 == 0 { 0.001 } else { -0.001 });
        assert_eq!(quiet.probability(&chunk).unwrap(), 0.0);
    }
}

/// The detector thread batches several calls' chunks into one run per chunk
/// position: each call still gets the probabilities a model of its own gives,
/// whether its chunks arrive alone or with other calls', and in jobs of any size.
#[test]
fn the_batching_detector_answers_each_call_as_its_own_model_would() {
    use kefu::speech::models::init_onnx_runtime;
    use kefu::speech::vad::{CHUNK, Detector, Job, SileroVad, VadModel};

    let dir = models();
    init_onnx_runtime(&dir.onnxruntime().unwrap()).unwrap();
    let detector = Detector::start(VadModel::load(&dir.silero_vad().unwrap()).unwrap()).unwrap();
    let chunks = |file: &str| -> Vec<[f32; CHUNK]> {
        let audio = telephone_audio(&Path::new(SOUNDS).join(file));
        resample(&audio, SAMPLE_RATE as u32, 8000)
            .unwrap()
            .chunks_exact(CHUNK)
            .map(|c| c.try_into().unwrap())
            .collect()
    };
    let calls = [
        chunks("agent-newlocation.wav"),
        chunks("agent-pass.wav"),
        chunks("vm-goodbye.wav"),
    ];
    let expected: Vec<Vec<f32>> = calls
        .iter()
        .map(|c| {
            let mut alone = SileroVad::load(&dir.silero_vad().unwrap()).unwrap();
            c.iter()
                .map(|chunk| alone.probability(chunk).unwrap())
                .collect()
        })
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    // Each call sends jobs of 1, 2, 3... chunks, all calls' jobs submitted
    // together so that the detector batches them.
    let mut states: Vec<Job> = (0..calls.len()).map(|_| Job::default()).collect();
    let mut got: Vec<Vec<f32>> = vec![Vec::new(); calls.len()];
    let mut at = vec![0usize; calls.len()];
    let mut size = 1;
    while at.iter().zip(&calls).any(|(a, c)| *a < c.len()) {
        let mut waiting = Vec::new();
        for (i, call) in calls.iter().enumerate() {
            let end = (at[i] + size).min(call.len());
            let job = Job {
                vad: std::mem::take(&mut states[i]).vad,
                chunks: call[at[i]..end].to_vec(),
                probabilities: Vec::new(),
                run: i as u64,
            };
            at[i] = end;
            waiting.push(detector.submit(job));
        }
        for rx in waiting {
            let job = rt.block_on(rx).unwrap().unwrap();
            let i = job.run as usize;
            assert_eq!(job.probabilities.len(), job.chunks.len());
            got[i].extend(&job.probabilities);
            states[i] = job;
        }
        size = size % 4 + 1;
    }
    for (i, (got, expected)) in got.iter().zip(&expected).enumerate() {
        assert_eq!(got.len(), expected.len());
        for (k, (g, e)) in got.iter().zip(expected).enumerate() {
            assert!((g - e).abs() < 1e-4, "call {i}, chunk {k}: {g} vs {e}");
        }
        assert!(
            expected.iter().any(|&p| p > 0.8),
            "call {i}: speech was heard"
        );
    }
}

/// silence → Silero VAD → endpointing → Whisper. One utterance, at the right time,
/// with the right words; nothing from the silence around it.
#[test]
fn vad_endpointing_and_whisper_find_one_utterance_in_a_stream() {
    use kefu::speech::endpoint::{EndpointConfig, Endpointer, Event};
    use kefu::speech::models::init_onnx_runtime;
    use kefu::speech::vad::{CHUNK, SileroVad};

    let dir = models();
    init_onnx_runtime(&dir.onnxruntime().unwrap()).unwrap();
    let mut vad = SileroVad::load(&dir.silero_vad().unwrap()).unwrap();
    let mut ep = Endpointer::new(EndpointConfig::default());

    let speech = telephone_audio(&Path::new(SOUNDS).join("agent-newlocation.wav"));
    let speech_8k = resample(&speech, SAMPLE_RATE as u32, 8000).unwrap();
    let mut stream = vec![0.0f32; 8000]; // 1 s of line silence
    stream.extend(&speech_8k);
    stream.extend(vec![0.0f32; 16000]);

    let mut events = Vec::new();
    let started = std::time::Instant::now();
    let chunks = stream.len() / CHUNK;
    for chunk in stream.chunks_exact(CHUNK) {
        let chunk: &[f32; CHUNK] = chunk.try_into().unwrap();
        let p = vad.probability(chunk).unwrap();
        if let Some(ev) = ep.push(chunk, p) {
            events.push(ev);
        }
    }
    eprintln!(
        "VAD: {:.0} µs per 32 ms chunk",
        started.elapsed().as_micros() as f64 / chunks as f64
    );
    let described: Vec<String> = events
        .iter()
        .map(|e| match e {
            Event::SpeechStarted { onset_ms } => format!("start {onset_ms}"),
            Event::Paused { end_ms, .. } => format!("pause {end_ms}"),
            Event::Resumed => "resume".into(),
            Event::Utterance {
                onset_ms, end_ms, ..
            } => format!("utterance {onset_ms}-{end_ms}"),
        })
        .collect();
    // The last pause offered the whole utterance: a draft recognised then needs
    // no second recognition.
    let last_draft = events.iter().rev().find_map(|e| match e {
        Event::Paused { audio, .. } => Some(audio.clone()),
        _ => None,
    });
    events.retain(|e| matches!(e, Event::SpeechStarted { .. } | Event::Utterance { .. }));
    assert_eq!(events.len(), 2, "{described:?}");
    assert!(
        matches!((&last_draft, &events[1]), (Some(d), Event::Utterance { audio, .. }) if d == audio),
        "{described:?}"
    );
    let Event::SpeechStarted { onset_ms } = events[0] else {
        panic!("speech start first")
    };
    let Event::Utterance {
        audio, end_ms, cut, ..
    } = &events[1]
    else {
        panic!("then the utterance")
    };
    let speech_ms = speech_8k.len() as u64 / 8;
    // The recording itself starts with a little silence: onset within 400 ms of it.
    assert!((1000..1400).contains(&onset_ms), "onset {onset_ms} ms");
    assert!(!cut);
    assert!(
        *end_ms <= 1000 + speech_ms + 100,
        "end {end_ms} ms vs speech end {}",
        1000 + speech_ms
    );
    let whisper = load("tiny.en-q8_0");
    let t = whisper
        .recognizer(1)
        .unwrap()
        .transcribe(
            &resample(audio, 8000, SAMPLE_RATE as u32).unwrap(),
            Language::En,
        )
        .unwrap();
    let (errors, words) = word_errors("Please enter a new extension, followed by pound.", &t.text);
    assert!(errors <= 1, "{errors}/{words}: {:?}", t.text);
}

fn to_telephone(samples_8k: &[f32]) -> Vec<f32> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("line.wav");
    kefu::speech::tts::write_wav(&path, samples_8k).unwrap();
    telephone_audio(&path)
}

/// Piper speaks an answer, the phone line carries it, Whisper hears the same words.
#[test]
fn tts_to_asr_round_trip_english() {
    use kefu::speech::models::init_onnx_runtime;
    use kefu::speech::tts::{TtsCache, Voice, sentences};
    kefu::speech::tts::configure_espeak_data();
    let dir = models();
    init_onnx_runtime(&dir.onnxruntime().unwrap()).unwrap();
    let voice = Voice::load("en_US-joe-medium", &dir).unwrap();
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = TtsCache::new(Some(cache_dir.path().to_path_buf()), 16);
    let answer = "Your order has shipped. It will arrive on Friday afternoon.";
    let mut audio = Vec::new();
    for s in sentences(answer) {
        audio.extend(cache.get(&voice, &s).unwrap().iter());
    }
    assert!(audio.len() > 8000 * 2, "{} samples", audio.len());
    // Rendered sentences are on disk, and a fresh cache serves the same audio from there.
    let files = std::fs::read_dir(cache_dir.path()).unwrap().count();
    assert_eq!(files, 2);
    let again = TtsCache::new(Some(cache_dir.path().to_path_buf()), 16)
        .get(&voice, "Your order has shipped.")
        .unwrap();
    let first = cache.get(&voice, "Your order has shipped.").unwrap();
    assert_eq!(again.len(), first.len());
    // What may carry a customer's words (order 482913) never reaches the disk.
    let private = cache
        .get_private(&voice, "Order 482913 has shipped.")
        .unwrap();
    assert!(private.len() > 8000);
    assert_eq!(std::fs::read_dir(cache_dir.path()).unwrap().count(), 2);

    let whisper = load("base-q8_0");
    let t = whisper
        .recognizer(1)
        .unwrap()
        .transcribe(&to_telephone(&audio), Language::En)
        .unwrap();
    // Piper's voice draws fresh noise on every synthesis, so the same sentence is not
    // the same audio twice: one run in many was heard as "Your order has shit." (2
    // errors of 10). Two errors allow for that; a broken voice or line misses most words.
    let (errors, words) = word_errors(answer, &t.text);
    assert!(errors <= 2, "{errors}/{words}: {:?}", t.text);
}

/// Mandarin is spoken by Kokoro-82M (the default Mandarin voice) from kefu's own
/// pinyin front end: Whisper must hear the sentence nearly as written.
#[test]
fn tts_to_asr_round_trip_mandarin() {
    use kefu::speech::models::init_onnx_runtime;
    use kefu::speech::tts::{Voice, default_voice};
    let dir = models();
    init_onnx_runtime(&dir.onnxruntime().unwrap()).unwrap();
    let voice = Voice::load(default_voice("zh"), &dir).unwrap();
    let text = "您好，欢迎致电朝阳户外。";
    let audio = voice.synthesize(text).unwrap();
    let whisper = load("base");
    let t = whisper
        .recognizer(1)
        .unwrap()
        .transcribe(&to_telephone(&audio), Language::Zh)
        .unwrap();
    let (errors, chars) = char_errors(text, &t.text);
    eprintln!(
        "kokoro-zh → base: {text} → {} (CER {errors}/{chars})",
        t.text
    );
    assert!(t.text.starts_with("您好"), "{:?}", t.text);
    assert!((errors as f64) < chars as f64 * 0.5, "{:?}", t.text);
}

/// Polyphonic characters are read by word, with the phrase table the set-up
/// fetches: 行 in 银行 and 行走, 重 in 重新 and 重要, 长 in 长度 and 成长; a
/// menu's 重听 is "listen again".
#[test]
fn polyphones_are_read_by_word_with_the_real_phrase_table() {
    use kefu::speech::zh::Phrases;
    let phrases = Phrases::load(&models().zh_phrases().unwrap()).unwrap();
    let read = |word: &str| {
        phrases
            .syllables(word)
            .iter()
            .map(|s| format!("{}{}", s.plain, s.tone))
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(read("银行"), "yin2 hang2");
    assert_eq!(read("行走"), "xing2 zou3");
    assert_eq!(read("重新"), "chong2 xin1");
    assert_eq!(read("重要"), "zhong4 yao4");
    assert_eq!(read("长度"), "chang2 du4");
    assert_eq!(read("成长"), "cheng2 zhang3");
    assert_eq!(read("重听"), "chong2 ting1");
    assert_eq!(read("银行卡"), "yin2 hang2 ka3");
}

#[test]
fn say_cli_writes_telephone_audio_and_names_the_setup_for_a_missing_voice() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("hello.wav");
    let run = Command::new(env!("CARGO_BIN_EXE_kefu"))
        .args(["say", "Hello, how can I help?", "-o"])
        .arg(&out)
        .arg("--models")
        .arg(common::repo().join("models"))
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let reader = hound::WavReader::open(&out).unwrap();
    assert_eq!(reader.spec().sample_rate, 8000);
    assert!(reader.duration() > 8000, "{} samples", reader.duration());
    let run = Command::new(env!("CARGO_BIN_EXE_kefu"))
        .args(["say", "Hello", "-o"])
        .arg(&out)
        .args(["--models", "/nonexistent"])
        .output()
        .unwrap();
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).contains("deploy/models.sh"));
}

/// The recognition pool is bounded: when the work queued would keep a new
/// utterance waiting longer than the pool's limit, it is refused at once (the
/// call then offers keys or a hold prompt) instead of waiting; queued ones still
/// complete.
#[test]
fn a_saturated_pool_refuses_at_once_and_finishes_what_it_took() {
    use kefu::speech::{AsrError, AsrPool};
    // One worker on one core, and a wait limit of about one utterance's decode.
    let pool = AsrPool::start(
        load("tiny.en-q8_0"),
        1,
        1,
        std::time::Duration::from_millis(500),
    )
    .unwrap();
    let audio = telephone_audio(&Path::new(SOUNDS).join("agent-pass.wav"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let first = pool.submit(audio.clone(), Language::En).unwrap();
    // The worker may not have taken the first job yet: fill until refused.
    let mut taken = vec![first];
    let refused = loop {
        match pool.submit(audio.clone(), Language::En) {
            Ok(rx) => taken.push(rx),
            Err(e) => break e,
        }
        assert!(
            taken.len() <= 3,
            "a pool that may keep an utterance 0.5 s took {}",
            taken.len()
        );
    };
    assert!(matches!(refused, AsrError::Busy(_)), "{refused}");
    // Refused without waiting for room: the job queued last is not done yet.
    let last = taken.last_mut().unwrap();
    assert!(
        matches!(
            last.try_recv(),
            Err(tokio::sync::oneshot::error::TryRecvError::Empty)
        ),
        "the refusal waited for the queue to drain"
    );
    assert!(
        pool.submit(audio.clone(), Language::Zh).is_err(),
        "tiny.en cannot do Mandarin"
    );
    // A draft (the words up to a pause) takes only spare capacity: refused while
    // an utterance waits.
    assert!(matches!(
        pool.submit_spare(audio.clone(), Language::En),
        Err(AsrError::Busy(_))
    ));
    // A job nobody waits for any more is skipped, and the rest still finish (one
    // worker, in order: the job queued after it is done once it was passed over).
    let unwanted = taken.pop().unwrap();
    drop(unwanted);
    let mut after = None;
    while after.is_none() {
        after = pool.submit(audio.clone(), Language::En).ok();
        std::thread::yield_now();
    }
    taken.extend(after);
    for rx in taken {
        let t = rt.block_on(rx).unwrap().unwrap();
        assert!(t.text.to_lowercase().contains("password"), "{t:?}");
    }
    // All done: a draft is taken again.
    let draft = pool.submit_spare(audio.clone(), Language::En).unwrap();
    let t = rt.block_on(draft).unwrap().unwrap();
    assert!(t.text.to_lowercase().contains("password"), "{t:?}");
}
