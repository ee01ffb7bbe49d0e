//! Speech recognition cost on this machine, per model and quantisation:
//! end-of-speech → final transcript latency (p50/p95) for 2–5 s telephone utterances,
//! real-time factor, and the recognition throughput of N parallel single-threaded
//! workers (how many callers can be speaking at once and still be served in real time).
//!
//! Run: `cargo bench --bench asr` (needs `deploy/models.sh` and Debian's
//! asterisk-core-sounds-en-wav). Figures go to benches/RESULTS.md.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use kefu::media::wav::{read_mono, resample};
use kefu::speech::{Language, ModelDir, WhisperModel};

fn utterances() -> Vec<Vec<f32>> {
    let dir = Path::new("/usr/share/asterisk/sounds/en");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("asterisk-core-sounds-en-wav is installed")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "wav"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let Ok((mono, rate)) = read_mono(&f) else {
            continue;
        };
        let secs = mono.len() as f32 / rate as f32;
        if (2.0..=5.0).contains(&secs)
            && let Ok(a) = resample(&mono, rate, 16_000)
        {
            out.push(a);
        }
        if out.len() == 24 {
            break;
        }
    }
    out
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    // `cargo test --all-targets` runs bench binaries too: there, a smoke run of the
    // harness (the small model, two utterances), not a measurement.
    let bench = std::env::args().any(|a| a == "--bench");
    let models = ModelDir(Path::new(env!("CARGO_MANIFEST_DIR")).join("models"));
    let mut audio = utterances();
    if !bench {
        audio.truncate(2);
        println!("asr (smoke run, not a measurement):");
    }
    let audio_s: f64 = audio.iter().map(|a| a.len() as f64 / 16_000.0).sum();
    println!(
        "{} utterances of 2–5 s, {audio_s:.1} s of audio in all",
        audio.len()
    );
    println!("model          threads  p50 ms  p95 ms  RTF");
    let only = std::env::var("KEFU_ASR_MODELS").ok();
    let only: Vec<&str> = only
        .as_deref()
        .map(|o| o.split(',').collect())
        .unwrap_or_default();
    let names: &[&str] = if !only.is_empty() {
        &only
    } else if bench {
        &["tiny.en-q8_0", "tiny.en", "base-q8_0", "base"]
    } else {
        &["tiny.en-q8_0"]
    };
    for &name in names {
        let model = match models.whisper(name).map(|p| WhisperModel::load(&p)) {
            Ok(Ok(m)) => Arc::new(m),
            _ => {
                println!("{name}: missing (run deploy/models.sh)");
                continue;
            }
        };
        for threads in if bench { &[1, 2][..] } else { &[1][..] } {
            let threads = *threads;
            let mut rec = model.recognizer(threads).expect("state");
            rec.transcribe(&audio[0], Language::En).expect("warm-up");
            let mut times = Vec::new();
            let start = Instant::now();
            for a in &audio {
                let t = Instant::now();
                rec.transcribe(a, Language::En).expect("decode");
                times.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            let total = start.elapsed().as_secs_f64();
            times.sort_by(f64::total_cmp);
            println!(
                "{name:<14} {threads:>7} {:>7.0} {:>7.0}  {:.3}",
                percentile(&times, 0.5),
                percentile(&times, 0.95),
                total / audio_s
            );
        }
        // Parallel single-threaded workers on the same utterances.
        for workers in if bench { 2..=3 } else { 2..=2 } {
            let start = Instant::now();
            std::thread::scope(|s| {
                for w in 0..workers {
                    let model = model.clone();
                    let audio = &audio;
                    s.spawn(move || {
                        let mut rec = model.recognizer(1).expect("state");
                        for a in audio.iter().skip(w).step_by(workers) {
                            rec.transcribe(a, Language::En).expect("decode");
                        }
                    });
                }
            });
            let wall = start.elapsed().as_secs_f64();
            println!(
                "{name:<14} {workers} workers × 1 thread: {:.1} s of speech per second",
                audio_s / wall
            );
        }
    }
}
