//! Speech synthesis cost on this machine: time to first audio for an answer (the first
//! sentence rendered, as the call path does) and real-time factor, per voice.
//!
//! Run: `cargo bench --bench tts` (needs `deploy/models.sh`). Figures go to
//! benches/RESULTS.md.

use std::path::Path;
use std::time::Instant;

use kefu::speech::ModelDir;
use kefu::speech::models::init_onnx_runtime;
use kefu::speech::tts::{RATE, Voice, clauses, sentences};

const ANSWERS: &[(&str, &str)] = &[
    (
        "en_US-joe-medium",
        "Our opening hours are nine in the morning to six in the evening, Monday to Friday. On Saturdays we open from ten to four. Is there anything else I can help you with?",
    ),
    (
        "en_US-joe-medium",
        "Your order has shipped. It will arrive on Friday afternoon.",
    ),
    (
        "en_US-joe-medium",
        "I am sorry, I did not understand that. Could you say it again?",
    ),
    (
        "kokoro-zh",
        "我们的营业时间是周一到周五早上九点到晚上六点。周六上午十点到下午四点。还有什么可以帮您？",
    ),
    ("kokoro-zh", "您的订单已经发货，预计周五下午送达。"),
    // An answer with a customer's values, rendered live (clause by clause).
    (
        "kokoro-zh",
        "您的订单123456已经发货，预计明天下午送到，请保持电话畅通。",
    ),
    (
        "espeak-cmn",
        "我们的营业时间是周一到周五早上九点到晚上六点。周六上午十点到下午四点。还有什么可以帮您？",
    ),
    ("espeak-cmn", "您的订单已经发货，预计周五下午送达。"),
];

fn main() {
    // Under `cargo test`: one round of one answer per voice, as a smoke run.
    let bench = std::env::args().any(|a| a == "--bench");
    if !bench {
        println!("tts (smoke run, not a measurement):");
    }
    kefu::speech::tts::configure_espeak_data();
    let models = ModelDir(Path::new(env!("CARGO_MANIFEST_DIR")).join("models"));
    init_onnx_runtime(&models.onnxruntime().expect("run deploy/models.sh")).expect("onnx runtime");
    for name in ["en_US-joe-medium", "kokoro-zh", "espeak-cmn"] {
        let voice = Voice::load(name, &models).expect("voice");
        let warm_up = if name.starts_with("en") {
            "Warm up."
        } else {
            "你好。"
        };
        voice.synthesize(warm_up).expect("warm-up");
        let mut first = Vec::new();
        let (mut synth_s, mut audio_s) = (0.0, 0.0);
        for _round in 0..if bench { 3 } else { 1 } {
            for (_, answer) in
                ANSWERS
                    .iter()
                    .filter(|(v, _)| *v == name)
                    .take(if bench { usize::MAX } else { 1 })
            {
                let start = Instant::now();
                // As a call renders an answer it did not render ahead.
                let pieces = sentences(answer).into_iter().flat_map(|s| clauses(&s));
                for (i, s) in pieces.enumerate() {
                    let audio = voice.synthesize(&s).expect("synthesis");
                    if i == 0 {
                        first.push(start.elapsed().as_secs_f64() * 1000.0);
                        if bench && std::env::var_os("KEFU_TTS_EACH").is_some() {
                            println!(
                                "  {name}: {:.0} ms to the first sound of {answer}",
                                first[first.len() - 1]
                            );
                        }
                    }
                    audio_s += audio.len() as f64 / f64::from(RATE);
                }
                synth_s += start.elapsed().as_secs_f64();
            }
        }
        first.sort_by(f64::total_cmp);
        println!(
            "{name:<18} first audio p50 {:>4.0} ms, max {:>4.0} ms; RTF {:.3} ({audio_s:.1} s of speech)",
            first[first.len() / 2],
            first[first.len() - 1],
            synth_s / audio_s
        );
    }
}
