//! The dialogue core's cost on this machine:
//! 1. match latency (p50/p99) on a 1000-intent knowledge base;
//! 2. messages per second through the HTTP app API with 1000 concurrent
//!    conversations (a bounded loopback load client against the real binary);
//! 3. memory per idle conversation (server RSS before and after opening them);
//! 4. the semantic re-ranker: sentence embeddings per second, the latency of one
//!    message's embedding, and match + reply with the re-ranker on the demo knowledge
//!    base and on the 1000-intent one.
//!
//! Run: `cargo bench --bench dialogue` (`-- semantic` for part 4 alone). Under `cargo test` it runs at tiny sizes
//! (30 intents, 5 conversations) as a smoke run. Figures go to benches/RESULTS.md.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kefu::dialogue::kb::{KnowledgeBase, load_dir, load_files};
use kefu::dialogue::{Conversation, Lang, Matcher, Medium};

/// Whether this is `cargo test`'s smoke run (tiny sizes) rather than `cargo bench`.
static SMOKE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

/// `full` under `cargo bench`, `smoke` under `cargo test`.
fn size(full: usize, smoke: usize) -> usize {
    if *SMOKE.get().unwrap_or(&false) {
        smoke
    } else {
        full
    }
}

fn intents() -> usize {
    size(1000, 30)
}

fn conversations() -> usize {
    size(1000, 5)
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// 1000 intents: each demo intent repeated for many products, with its first ten
/// examples per language made specific to the product ("… for the Trail 17 jacket").
fn big_kb(demo: &KnowledgeBase) -> KnowledgeBase {
    let mut text = String::new();
    let topical: Vec<_> = demo
        .intents
        .iter()
        .filter(|i| i.slots.is_empty() && !i.tags.iter().any(|t| t == "small-talk"))
        .collect();
    for n in 0..intents() {
        let i = topical[n % topical.len()];
        let product = format!("trail{n}");
        text.push_str(&format!("[intents.{}-{n}]\n", i.id));
        text.push_str(&format!(
            "title = {{ en = \"{} ({product})\", zh = \"{}（{product}）\" }}\n",
            i.title.best(Lang::En),
            i.title.best(Lang::Zh)
        ));
        for (lang, key) in [(Lang::En, "en"), (Lang::Zh, "zh")] {
            let ex: Vec<String> = i
                .examples
                .iter()
                .filter(|e| e.lang == lang)
                .take(10)
                .map(|e| format!("{:?}", format!("{} {product}", e.text)))
                .collect();
            text.push_str(&format!("examples.{key} = [{}]\n", ex.join(", ")));
        }
        text.push_str(&format!(
            "answer = {{ en = {:?}, zh = {:?} }}\n\n",
            i.answer.best(Lang::En),
            i.answer.best(Lang::Zh)
        ));
    }
    match load_files(&[(PathBuf::from("bench-1000.toml"), text)]) {
        Ok(kb) => kb,
        Err(e) => panic!("generated knowledge base is invalid: {e}"),
    }
}

fn match_latency() {
    let demo = load_dir(&repo().join("dialplans/kb")).unwrap_or_else(|e| panic!("{e}"));
    let t0 = Instant::now();
    let kb = big_kb(&demo);
    let examples: usize = kb.intents.iter().map(|i| i.examples.len()).sum();
    let m = Matcher::new(Arc::new(kb));
    println!(
        "{}-intent knowledge base: {examples} examples, indexed in {:?}",
        intents(),
        t0.elapsed()
    );
    let questions: Vec<String> =
        std::fs::read_to_string(repo().join("tests/fixtures/kb/heldout.tsv"))
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split('\t').next().map(str::to_string))
            .collect();
    let mut times = Vec::new();
    let now = chrono::Utc::now();
    for round in 0..size(5, 2) {
        for q in &questions {
            let mut c = Conversation::new(Medium::Chat, Lang::detect(q));
            let t = Instant::now();
            let reply = c.respond(&m, q, now);
            let dt = t.elapsed();
            std::hint::black_box(reply);
            if round > 0 {
                times.push(dt);
            }
        }
    }
    times.sort();
    println!(
        "match + reply on {} intents: {} questions, p50 {:?}, p99 {:?}, max {:?}",
        intents(),
        times.len(),
        pct(&times, 0.5),
        pct(&times, 0.99),
        times[times.len() - 1]
    );
}

fn heldout() -> Vec<String> {
    std::fs::read_to_string(repo().join("tests/fixtures/kb/heldout.tsv"))
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split('\t').next().map(str::to_string))
        .collect()
}

/// Match + reply for each question once, in a fresh conversation; (p50, p99, max).
fn respond_times(m: &Matcher, questions: &[String]) -> (Duration, Duration, Duration) {
    let now = chrono::Utc::now();
    let mut times: Vec<Duration> = questions
        .iter()
        .map(|q| {
            let mut c = Conversation::new(Medium::Chat, Lang::detect(q));
            let t = Instant::now();
            std::hint::black_box(c.respond(m, q, now));
            t.elapsed()
        })
        .collect();
    times.sort();
    (pct(&times, 0.5), pct(&times, 0.99), times[times.len() - 1])
}

fn semantic_latency() {
    let models = repo().join("models");
    let encoder = kefu::server::open_encoder(&models, None).unwrap_or_else(|e| panic!("{e}"));
    let mut questions = heldout();
    questions.truncate(size(usize::MAX, 10));
    // One message at a time, as a customer's message arrives (no reuse).
    let mut times: Vec<Duration> = questions
        .iter()
        .map(|q| {
            let t = Instant::now();
            std::hint::black_box(encoder.embed(&[q.as_str()]).expect("embed"));
            t.elapsed()
        })
        .collect();
    times.sort();
    println!(
        "sentence embedding of one message: p50 {:?}, p99 {:?}, max {:?}",
        pct(&times, 0.5),
        pct(&times, 0.99),
        times[times.len() - 1]
    );
    let demo = Arc::new(load_dir(&repo().join("dialplans/kb")).unwrap_or_else(|e| panic!("{e}")));
    let examples: usize = demo.intents.iter().map(|i| i.examples.len()).sum();
    let t = Instant::now();
    let m = Matcher::with_encoder(demo.clone(), Some(encoder.clone())).expect("embed examples");
    let dt = t.elapsed();
    println!(
        "demo knowledge base: {examples} examples embedded in {dt:?} ({:.0}/s)",
        examples as f64 / dt.as_secs_f64()
    );
    let (p50, p99, max) = respond_times(&m, &questions);
    println!(
        "match + reply with the re-ranker, demo knowledge base, {} held-out questions (first time each): p50 {p50:?}, p99 {p99:?}, max {max:?}",
        questions.len()
    );
    let (p50, p99, max) = respond_times(&m, &questions);
    println!(
        "  the same questions again (embeddings reused): p50 {p50:?}, p99 {p99:?}, max {max:?}"
    );
    let big = Arc::new(big_kb(&demo));
    let examples: usize = big.intents.iter().map(|i| i.examples.len()).sum();
    let t = Instant::now();
    let m = Matcher::with_encoder(big.clone(), Some(encoder.clone())).expect("embed examples");
    println!(
        "{}-intent knowledge base: {examples} examples embedded and calibrated in {:?}",
        intents(),
        t.elapsed()
    );
    // A reload: the examples' embeddings are known; the index and calibration are
    // built again.
    let t = Instant::now();
    let m2 = Matcher::with_encoder(big, Some(encoder)).expect("reload");
    println!(
        "  reload (embeddings known; index and calibration rebuilt): {:?}",
        t.elapsed()
    );
    drop(m2);
    let fresh: Vec<String> = questions.iter().map(|q| format!("{q} ")).collect();
    let (p50, p99, max) = respond_times(&m, &fresh);
    println!(
        "match + reply with the re-ranker, {} intents (first time each): p50 {p50:?}, p99 {p99:?}, max {max:?}",
        intents()
    );
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(18080)
}

async fn http_load() {
    let bin = env!("CARGO_BIN_EXE_kefu");
    let dir = tempfile::tempdir().expect("temp dir");
    let http = format!("127.0.0.1:{}", free_port());
    let sip = format!("127.0.0.1:{}", free_port());
    let config = dir.path().join("kefu.toml");
    std::fs::write(
        &config,
        format!(
            "max_conversations = 20000\nkb = \"{}\"\n",
            repo().join("dialplans/kb").display()
        ),
    )
    .expect("write config");
    // A keyring and an integrator token, as an operator makes them.
    let kefu = |args: &[&str]| {
        let out = std::process::Command::new(bin)
            .args(args)
            .arg("--data")
            .arg(dir.path().join("data"))
            .arg("--config")
            .arg(&config)
            .output()
            .expect("run kefu");
        assert!(
            out.status.success(),
            "kefu {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    kefu(&["keys", "init"]);
    let token = kefu(&["tokens", "create", "bench", "--role", "integrator"]);
    let mut child = std::process::Command::new(bin)
        .args(["serve", "--config"])
        .arg(&config)
        .args(["--http", &http, "--sip", &sip, "--dialplans"])
        .arg(repo().join("tests/fixtures/dtmf"))
        .arg("--audio")
        .arg(repo().join("audio"))
        .arg("--data")
        .arg(dir.path().join("data"))
        .env("KEFU_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start kefu");
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(conversations())
        .build()
        .expect("client");
    let base = format!("http://{http}/api/v1/conversations");
    for _ in 0..200 {
        if client
            .get(format!("http://{http}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rss_before = rss_kib(child.id());
    let questions = [
        "where is my order",
        "what time do you close",
        "how long does a refund take",
        "我的快递到哪了",
        "可以分期吗",
        "do you deliver on weekends",
        "优惠券怎么用",
        "how do I reset my password",
        "门店在哪里",
        "is this jacket waterproof",
    ];
    // Flat out: every conversation sends its next message as soon as the reply comes.
    run_load(
        &client,
        &base,
        &token,
        "flat out",
        Duration::ZERO,
        &questions,
    )
    .await;
    // Paced: each conversation sends a message every second, as people typing do
    // (about 1000 messages/s offered); this is the latency a customer sees.
    run_load(
        &client,
        &base,
        &token,
        "paced, 1 message/s each",
        Duration::from_secs(1),
        &questions,
    )
    .await;
    let rss_loaded = rss_kib(child.id());
    let idle = size(10_000, 500);
    for chunk in 0..(idle / 500) {
        let mut batch = Vec::new();
        for n in 0..500 {
            let (client, base, token) = (client.clone(), base.clone(), token.clone());
            batch.push(tokio::spawn(async move {
                let _ = client
                    .post(&base)
                    .bearer_auth(&token)
                    .json(&serde_json::json!({ "user": format!("idle-{chunk}-{n}") }))
                    .send()
                    .await;
            }));
        }
        for b in batch {
            let _ = b.await;
        }
    }
    let rss_idle = rss_kib(child.id());
    println!(
        "memory: RSS {} MiB at start, {} MiB after the load, {} MiB with {idle} more idle conversations: {:.1} KiB per idle conversation",
        rss_before / 1024,
        rss_loaded / 1024,
        rss_idle / 1024,
        rss_idle.saturating_sub(rss_loaded) as f64 / idle as f64
    );
    let _ = child.kill();
    let _ = child.wait();
}

async fn run_load(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    label: &str,
    think: Duration,
    questions: &[&'static str],
) {
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    let conversations = conversations();
    let messages_each = size(10, 2);
    for n in 0..conversations {
        let (client, base, questions, token) = (
            client.clone(),
            base.to_string(),
            questions.to_vec(),
            token.to_string(),
        );
        tasks.push(tokio::spawn(async move {
            // Spread the starts over the think time so the paced load is even.
            if !think.is_zero() {
                tokio::time::sleep(think.mul_f64(n as f64 / conversations as f64)).await;
            }
            let started: serde_json::Value = client
                .post(&base)
                .bearer_auth(&token)
                .json(&serde_json::json!({ "user": format!("load-{n}") }))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            let id = started["conversation"].as_str()?.to_string();
            let mut times = Vec::new();
            for k in 0..messages_each {
                let q = questions[(n + k) % questions.len()];
                let t = Instant::now();
                let r = client
                    .post(format!("{base}/{id}/messages"))
                    .bearer_auth(&token)
                    .json(&serde_json::json!({ "text": q }))
                    .send()
                    .await
                    .ok()?;
                if !r.status().is_success() {
                    return None;
                }
                let _ = r.bytes().await;
                times.push(t.elapsed());
                tokio::time::sleep(think).await;
            }
            Some(times)
        }));
    }
    let mut times = Vec::new();
    let mut failed = 0;
    for t in tasks {
        match t.await {
            Ok(Some(v)) => times.extend(v),
            _ => failed += 1,
        }
    }
    let elapsed = t0.elapsed();
    times.sort();
    println!(
        "HTTP app API ({label}), {conversations} concurrent conversations x {messages_each} messages: {:.0} messages/s, latency p50 {:?} p99 {:?}, {failed} conversations failed",
        times.len() as f64 / elapsed.as_secs_f64(),
        pct(&times, 0.5),
        pct(&times, 0.99)
    );
    assert!(
        failed == 0 || !*SMOKE.get().unwrap_or(&false),
        "conversations failed in the smoke run"
    );
}

fn main() {
    let smoke = !std::env::args().any(|a| a == "--bench");
    SMOKE.get_or_init(|| smoke);
    if smoke {
        println!("dialogue (smoke run at tiny sizes, not a measurement):");
    }
    // `cargo bench --bench dialogue -- semantic`: the semantic matcher's part alone.
    if std::env::args().any(|a| a == "semantic") {
        semantic_latency();
        return;
    }
    match_latency();
    semantic_latency();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(http_load());
}
