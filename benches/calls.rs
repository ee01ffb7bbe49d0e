//! How many callers can talk at the same instant and still be understood in time:
//! N SIPp calls (loopback only, bounded) each stream the same spoken request into a
//! `listen` node at once; the server's log gives the caller's pause → words taken
//! (`after_ms`) for every call. Real time holds while the latency stays near the single-caller one.
//!
//! Run: `cargo bench --bench calls` (needs `deploy/setup.sh`); `KEFU_CALLS_LOG=1`
//! also prints the server's lines about each caller's words. Figures go to
//! benches/RESULTS.md.

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::{Server, Step, caller_scenario, free_port, write_rtp_pcap};

const PLAN: &str = r#"[dialplan]
name = "load"
numbers = ["400"]
language = "en"
start = "ask"

[nodes.ask]
type = "listen"
prompt = "en/main-menu.wav"
timeout = "8s"
on_failure = "bye"

[nodes.ask.keywords]
"order|parcel" = "order"

[nodes.order]
type = "play"
prompt = "en/enter-order.wav"
next = "bye"

[nodes.bye]
type = "hangup"
"#;

fn spoken_pcap(dir: &Path) -> std::path::PathBuf {
    let frames: Vec<Vec<u8>> = common::spoken_frames("I am calling about my order.", dir)
        .iter()
        .map(|f| f.to_vec())
        .collect();
    let pcap = dir.join("order.pcap");
    write_rtp_pcap(&pcap, &frames, 0, 4000);
    pcap
}

fn run(model: &str, workers: usize, callers: usize, dir: &Path, scenario: &Path) {
    let server = Server::start_with(
        Some(dir),
        &format!("asr_model = \"{model}\"\nasr_workers = {workers}\n"),
    );
    let n = callers.to_string();
    let out = Command::new("sipp")
        .arg(server.sip.to_string())
        .arg("-sf")
        .arg(scenario)
        .args(["-s", "400", "-m", &n, "-l", &n, "-r", &n, "-i", "127.0.0.1"])
        .args([
            "-p",
            &free_port().to_string(),
            "-mp",
            &free_port().to_string(),
        ])
        .args(["-timeout", "120s", "-timeout_error", "-nostdin"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let ok = out.is_ok_and(|s| s.success());
    // The call records are written as the calls end, after SIPp has seen the BYE.
    server.wait_no_calls();
    let logs = server.logs();
    if std::env::var_os("KEFU_CALLS_LOG").is_some() {
        for l in logs
            .iter()
            .filter(|l| l.contains("caller") || l.contains("utterance"))
        {
            println!("{l}");
        }
    }
    let mut latencies: Vec<u64> = logs
        .iter()
        .filter(|l| l.contains("caller said"))
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["after_ms"].as_u64())
        .collect();
    latencies.sort_unstable();
    let routed = server
        .records()
        .iter()
        .filter(|r| common::strings(&r["path"]).iter().any(|p| p == "order"))
        .count();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len().max(1) - 1) as f64 * p).round() as usize)
            .copied()
    };
    println!(
        "{model}, {workers} worker(s), {callers} callers at once: pause → words taken p50 {:?} ms, max {:?} ms; {routed}/{callers} routed by their words{}",
        pct(0.5),
        latencies.last(),
        if ok { "" } else { " (SIPp reported failures)" }
    );
}

fn main() {
    // Under `cargo test`: one caller on the small model, as a smoke run.
    let bench = std::env::args().any(|a| a == "--bench");
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("load.toml"), PLAN).expect("plan");
    let pcap = spoken_pcap(dir.path());
    let scenario = caller_scenario(
        dir.path(),
        "spoken_order",
        true,
        &[Step::Pause(1000), Step::Pcap(pcap)],
    );
    if !bench {
        println!("calls (smoke run, not a measurement):");
        run("tiny.en-q8_0", 1, 1, dir.path(), &scenario);
        return;
    }
    for (model, workers) in [("tiny.en-q8_0", 1), ("tiny.en-q8_0", 2), ("base-q8_0", 2)] {
        for callers in [1, 2, 4, 8, 12] {
            run(model, workers, callers, dir.path(), &scenario);
        }
    }
}
