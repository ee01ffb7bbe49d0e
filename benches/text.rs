//! Text load on loopback (bounded in count and time): N web-chat conversations
//! at once over real HTTP, each customer asking M questions from the held-out
//! set (tests/fixtures/kb/heldout.tsv: real phrasings in English and Mandarin,
//! typos included) with a think time between them, against the demo knowledge
//! base with the semantic re-ranker on (as shipped). Reports reply latency
//! (request sent → reply received, which includes committing both turns to
//! the store) p50/p99, messages per second, failures, and kefu's CPU.
//!
//! A second pass with no think time measures the most messages per second the
//! server answers with N customers waiting on each other.
//!
//! Run: `cargo bench --bench text` (needs `deploy/setup.sh`). Settings:
//! `KEFU_TEXT_CONVERSATIONS` (default 1000), `KEFU_TEXT_MESSAGES` (per
//! conversation, default 6), `KEFU_TEXT_THINK_MS` (mean think time, default
//! 5000), `KEFU_TEXT_SEMANTIC` (`false`: match by words only). Figures go to
//! benches/RESULTS.md.

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Server, repo};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One customer: opens a conversation, asks `messages` questions with a think
/// time of `think` ± 50 % between them; returns each reply's latency (ms), or
/// the failures.
async fn customer(
    base: Arc<String>,
    client: reqwest::Client,
    questions: Arc<Vec<String>>,
    n: usize,
    messages: u64,
    think: Duration,
) -> (Vec<f64>, usize) {
    let mut latencies = Vec::new();
    let mut failed = 0;
    // Customers arrive spread over the first think time, not all at once.
    if !think.is_zero() {
        tokio::time::sleep(think.mul_f64(rand::random::<f64>())).await;
    }
    let started: serde_json::Value = match client
        .post(format!("{base}/api/chat/conversations"))
        .json(&serde_json::json!({"visitor": format!("load-{n}"), "lang": "en"}))
        .send()
        .await
    {
        Ok(r) if r.status().is_success() => r.json().await.unwrap_or_default(),
        _ => return (latencies, messages as usize),
    };
    let Some(conv) = started["conversation"].as_str().map(str::to_string) else {
        return (latencies, messages as usize);
    };
    for m in 0..messages as usize {
        let q = &questions[(n * 7 + m * 13) % questions.len()];
        let t0 = Instant::now();
        let r = client
            .post(format!("{base}/api/chat/conversations/{conv}/messages"))
            .json(&serde_json::json!({ "text": q }))
            .send()
            .await;
        let ok = match r {
            Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
            _ => false,
        };
        if ok {
            latencies.push(t0.elapsed().as_secs_f64() * 1000.0);
        } else {
            failed += 1;
        }
        if !think.is_zero() {
            tokio::time::sleep(think.mul_f64(0.5 + rand::random::<f64>())).await;
        }
    }
    (latencies, failed)
}

async fn pass(
    server: &Server,
    questions: Arc<Vec<String>>,
    conversations: u64,
    messages: u64,
    think: Duration,
) {
    let base = Arc::new(format!("http://{}", server.http));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(conversations as usize)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let pid = server.pid();
    let (t0, cpu0) = (Instant::now(), common::cpu_time(pid));
    let tasks: Vec<_> = (0..conversations as usize)
        .map(|n| {
            tokio::spawn(customer(
                base.clone(),
                client.clone(),
                questions.clone(),
                n,
                messages,
                think,
            ))
        })
        .collect();
    let mut latencies = Vec::new();
    let mut failed = 0;
    for t in tasks {
        if let Ok((l, f)) = t.await {
            latencies.extend(l);
            failed += f;
        }
    }
    let wall = t0.elapsed().as_secs_f64();
    let cpu = (common::cpu_time(pid) - cpu0).as_secs_f64() / wall;
    let answered = latencies.len();
    println!(
        "{conversations} conversations × {messages} messages, think {think:?}: {answered} replies, {failed} failed, {:.0} messages/s over {wall:.1} s",
        answered as f64 / wall
    );
    println!(
        "  reply latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; kefu CPU {:.0} % of a core",
        common::nearest_rank(&mut latencies, 0.5),
        common::nearest_rank(&mut latencies, 0.99),
        common::nearest_rank(&mut latencies, 1.0),
        cpu * 100.0
    );
}

fn main() {
    // `cargo test --all-targets` runs benches once without `--bench`: this one
    // places real load, so it only does that under `cargo bench`.
    if !std::env::args().any(|a| a == "--bench") {
        println!("text: run with `cargo bench --bench text` to measure");
        return;
    }
    let conversations = env_or("KEFU_TEXT_CONVERSATIONS", 1000).clamp(1, 5000);
    let messages = env_or("KEFU_TEXT_MESSAGES", 6).clamp(1, 50);
    let think = Duration::from_millis(env_or("KEFU_TEXT_THINK_MS", 5000).min(60_000));
    // This process holds a connection per customer.
    let _ = rlimit::increase_nofile_limit(conversations * 2 + 256);
    let server = Server::start_with(
        Some(&common::dtmf_plans()),
        &format!(
            "kb = \"{}\"\nsemantic = {}\n",
            repo().join("dialplans/kb").display(),
            std::env::var("KEFU_TEXT_SEMANTIC").map_or(true, |v| v != "false")
        ),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let questions: Vec<String> =
        std::fs::read_to_string(repo().join("tests/fixtures/kb/heldout.tsv"))
            .expect("held-out questions")
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .filter_map(|l| l.split('\t').next().map(str::to_string))
            .collect();
    let questions = Arc::new(questions);
    rt.block_on(async {
        pass(&server, questions.clone(), conversations, messages, think).await;
        pass(&server, questions, conversations, messages, Duration::ZERO).await;
    });
}
