//! Text load on loopback (bounded in count and time): N web-chat conversations
//! at once over real HTTP, each customer asking M questions with a think time
//! between them, against the demo knowledge base with the semantic re-ranker on
//! (as shipped). Reply latency is request sent → reply received, which includes
//! committing both turns to the store.
//!
//! Questions come from the held-out set (tests/fixtures/kb/heldout.tsv: real
//! phrasings in English and Mandarin, typos included; it is the matcher's
//! development set, so the correctness figures here are development figures). Two
//! kinds of traffic are measured apart:
//! - cold: every message is one kefu has never seen (each question with its own
//!   greeting and sign-off, "Hi, … Thanks."), so none is answered from the
//!   embedding cache;
//! - repeated: the held-out questions as they are, over and over (after the first
//!   few hundred, answered from the cache).
//!
//! Each pass reports latency p50/p99, messages per second, failures, kefu's CPU,
//! how many messages the re-ranker compared by meaning and how many it had to
//! match by words alone because the model was busy (`kefu_semantic_rerank_total`),
//! and correctness under load: the share of conversations whose first message got
//! the intent its label says (out of scope: no intent), against the same questions
//! asked one at a time on an idle server. A last pass with no think time measures
//! the most messages per second.
//!
//! Run: `cargo bench --bench text` (needs `deploy/setup.sh`). Settings:
//! `KEFU_TEXT_CONVERSATIONS` (default 1000), `KEFU_TEXT_MESSAGES` (per
//! conversation, default 6), `KEFU_TEXT_THINK_MS` (mean think time, default
//! 5000), `KEFU_TEXT_SEMANTIC` (`false`: match by words only), `KEFU_TEXT_STORE`
//! (`postgres`: kefu stores in a fresh database at KEFU_TEST_POSTGRES instead of
//! SQLite). At the end it counts the customer turns stored against the messages
//! that got a reply: every one must be there. Under `cargo test` it runs a few
//! conversations as a smoke run. Figures go to benches/RESULTS.md.

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{Server, repo};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A held-out question and its label (`-`: out of scope).
#[derive(Clone)]
struct Question {
    text: String,
    label: String,
}

/// What customers write, and whether each message is made new.
struct Traffic {
    questions: Vec<Question>,
    cold: bool,
    /// Messages made so far: each cold message gets a wording of its own.
    made: AtomicUsize,
}

const OPENINGS_EN: [&str; 8] = [
    "Hi, ",
    "Hello! ",
    "Excuse me, ",
    "Quick question: ",
    "Good morning. ",
    "Hey there, ",
    "Sorry to bother you, ",
    "",
];
const CLOSINGS_EN: [&str; 7] = [
    " Thanks.",
    " Thank you!",
    " Please help.",
    " Cheers",
    " thx",
    " Many thanks in advance.",
    "",
];
const OPENINGS_ZH: [&str; 6] = ["你好，", "您好！", "请问", "麻烦问一下，", "打扰一下，", ""];
const CLOSINGS_ZH: [&str; 6] = ["谢谢", "，谢谢！", "。麻烦了", "，急", "？在线等", ""];

impl Traffic {
    /// The next message for question `q`: new words around it when cold.
    fn message(&self, q: &Question) -> String {
        if !self.cold {
            return q.text.clone();
        }
        let k = self.made.fetch_add(1, Ordering::Relaxed);
        let chinese = q
            .text
            .chars()
            .any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c));
        let (open, close) = if chinese {
            (
                &OPENINGS_ZH[k % OPENINGS_ZH.len()],
                &CLOSINGS_ZH[(k / OPENINGS_ZH.len()) % CLOSINGS_ZH.len()],
            )
        } else {
            (
                &OPENINGS_EN[k % OPENINGS_EN.len()],
                &CLOSINGS_EN[(k / OPENINGS_EN.len()) % CLOSINGS_EN.len()],
            )
        };
        // Past the affixes' combinations, a customer reference makes it new.
        let round = k / (OPENINGS_EN.len() * CLOSINGS_EN.len() * self.questions.len());
        let reference = if round == 0 {
            String::new()
        } else if chinese {
            format!("（客户{round}）")
        } else {
            format!(" (customer {round})")
        };
        format!("{open}{}{close}{reference}", q.text)
    }
}

/// Whether a reply's intent is the one `label` names (out of scope: none).
fn right(reply: &serde_json::Value, label: &str) -> bool {
    match reply["intent"].as_str() {
        Some(intent) => intent == label,
        None => label == "-",
    }
}

/// What one customer lived through.
#[derive(Default)]
struct Outcome {
    latencies: Vec<f64>,
    failed: usize,
    /// Whether the first message's reply had the right intent.
    first_right: Option<bool>,
}

/// One customer: opens a conversation, asks `messages` questions with a think
/// time of `think` ± 50 % between them.
async fn customer(
    base: Arc<String>,
    client: reqwest::Client,
    traffic: Arc<Traffic>,
    n: usize,
    messages: u64,
    think: Duration,
) -> Outcome {
    let mut out = Outcome::default();
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
        _ => {
            out.failed = messages as usize;
            return out;
        }
    };
    let Some(conv) = started["conversation"].as_str().map(str::to_string) else {
        out.failed = messages as usize;
        return out;
    };
    // The customer's proof for the conversation's other routes.
    let key = started["key"].as_str().unwrap_or_default().to_string();
    let questions = &traffic.questions;
    for m in 0..messages as usize {
        let q = &questions[(n * 7 + m * 13) % questions.len()];
        let text = traffic.message(q);
        let t0 = Instant::now();
        let r = client
            .post(format!("{base}/api/chat/conversations/{conv}/messages"))
            .header("x-kefu-key", &key)
            .json(&serde_json::json!({ "text": text }))
            .send()
            .await;
        let reply = match r {
            Ok(r) if r.status().is_success() => r.json::<serde_json::Value>().await.ok(),
            _ => None,
        };
        match reply {
            Some(reply) => {
                out.latencies.push(t0.elapsed().as_secs_f64() * 1000.0);
                if m == 0 {
                    out.first_right = Some(right(&reply, &q.label));
                }
            }
            None => out.failed += 1,
        }
        if !think.is_zero() {
            tokio::time::sleep(think.mul_f64(0.5 + rand::random::<f64>())).await;
        }
    }
    out
}

/// The re-ranker's counts so far: (used, busy).
fn rerank_counts(server: &Server, token: &str) -> (f64, f64) {
    let (_, text) = server.get_metrics(token);
    let count = |outcome: &str| {
        let needle = format!("kefu_semantic_rerank_total{{outcome=\"{outcome}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&needle))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    };
    (count("used"), count("busy"))
}

/// The share of first messages answered with the right intent, asked one at a
/// time on an idle server (the reference for correctness under load).
async fn idle_correctness(server: &Server, traffic: &Traffic, n: usize) -> (f64, usize) {
    let client = reqwest::Client::new();
    let base = format!("http://{}", server.http);
    let (mut right_n, mut answered) = (0, 0);
    for k in 0..n {
        let q = &traffic.questions[(k * 7) % traffic.questions.len()];
        let text = traffic.message(q);
        let Ok(r) = client
            .post(format!("{base}/api/chat/conversations"))
            .json(&serde_json::json!({"visitor": format!("idle-{k}"), "lang": "en"}))
            .send()
            .await
        else {
            continue;
        };
        let started: serde_json::Value = r.json().await.unwrap_or_default();
        let conv = started["conversation"].as_str().unwrap_or_default();
        let key = started["key"].as_str().unwrap_or_default();
        let Ok(r) = client
            .post(format!("{base}/api/chat/conversations/{conv}/messages"))
            .header("x-kefu-key", key)
            .json(&serde_json::json!({ "text": text }))
            .send()
            .await
        else {
            continue;
        };
        if !r.status().is_success() {
            continue;
        }
        answered += 1;
        let reply: serde_json::Value = r.json().await.unwrap_or_default();
        right_n += usize::from(right(&reply, &q.label));
    }
    (right_n as f64 / n.max(1) as f64, answered)
}

/// Customer turns in the server's store (what was said is sealed; who said it
/// is not).
async fn stored_customer_turns(server: &Server) -> i64 {
    use sqlx::Row;
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&server.database_url())
        .await
        .expect("open the server's database");
    let n = sqlx::query("SELECT COUNT(*) FROM turns WHERE speaker = 'customer'")
        .fetch_one(&pool)
        .await
        .expect("count turns")
        .try_get(0)
        .expect("a count");
    pool.close().await;
    n
}

struct Pass<'a> {
    server: &'a Server,
    token: &'a str,
    traffic: Arc<Traffic>,
    conversations: u64,
    messages: u64,
    think: Duration,
}

impl Pass<'_> {
    /// Runs the pass: (messages answered, messages failed).
    async fn run(self, label: &str) -> (usize, usize) {
        let base = Arc::new(format!("http://{}", self.server.http));
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(self.conversations as usize)
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client");
        let pid = self.server.pid();
        let (used0, busy0) = rerank_counts(self.server, self.token);
        let (t0, cpu0) = (Instant::now(), common::cpu_time(pid));
        let tasks: Vec<_> = (0..self.conversations as usize)
            .map(|n| {
                tokio::spawn(customer(
                    base.clone(),
                    client.clone(),
                    self.traffic.clone(),
                    n,
                    self.messages,
                    self.think,
                ))
            })
            .collect();
        let (mut latencies, mut failed) = (Vec::new(), 0);
        let (mut firsts, mut firsts_right) = (0, 0);
        for t in tasks {
            if let Ok(o) = t.await {
                latencies.extend(o.latencies);
                failed += o.failed;
                if let Some(ok) = o.first_right {
                    firsts += 1;
                    firsts_right += usize::from(ok);
                }
            }
        }
        let wall = t0.elapsed().as_secs_f64();
        let cpu = (common::cpu_time(pid) - cpu0).as_secs_f64() / wall;
        let (used1, busy1) = rerank_counts(self.server, self.token);
        let answered = latencies.len();
        println!(
            "{label}: {} conversations × {} messages, think {:?}: {answered} replies, {failed} failed, {:.0} messages/s over {wall:.1} s",
            self.conversations,
            self.messages,
            self.think,
            answered as f64 / wall
        );
        println!(
            "  reply latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; kefu CPU {:.0} % of a core",
            common::nearest_rank(&mut latencies, 0.5),
            common::nearest_rank(&mut latencies, 0.99),
            common::nearest_rank(&mut latencies, 1.0),
            cpu * 100.0
        );
        println!(
            "  re-ranker: {:.0} messages compared by meaning, {:.0} matched by words alone because the model was busy; first messages with the right intent: {firsts_right}/{firsts} ({:.1} %)",
            used1 - used0,
            busy1 - busy0,
            100.0 * firsts_right as f64 / firsts.max(1) as f64
        );
        (answered, failed)
    }
}

fn questions() -> Vec<Question> {
    std::fs::read_to_string(repo().join("tests/fixtures/kb/heldout.tsv"))
        .expect("held-out questions")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (text, label) = l.split_once('\t')?;
            Some(Question {
                text: text.to_string(),
                label: label.trim().to_string(),
            })
        })
        .collect()
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let (conversations, messages, think) = if bench {
        (
            env_or("KEFU_TEXT_CONVERSATIONS", 1000).clamp(1, 5000),
            env_or("KEFU_TEXT_MESSAGES", 6).clamp(1, 50),
            Duration::from_millis(env_or("KEFU_TEXT_THINK_MS", 5000).min(60_000)),
        )
    } else {
        // `cargo test --all-targets` runs benches once: a smoke run of the harness.
        (4, 2, Duration::ZERO)
    };
    // This process holds a connection per customer.
    let _ = rlimit::increase_nofile_limit(conversations * 2 + 256);
    // Every customer comes from this one address: lift the per-address budgets and
    // connection cap that would otherwise (rightly) cut it off.
    let config = format!(
        "kb = \"{}\"\nsemantic = {}\nconversations_per_minute = 1000000\n\
         messages_per_minute = 1000000\nhttp_connections = 100000\n\
         http_connections_per_client = 100000\n",
        repo().join("dialplans/kb").display(),
        std::env::var("KEFU_TEXT_SEMANTIC").map_or(true, |v| v != "false")
    );
    let postgres = std::env::var("KEFU_TEXT_STORE").is_ok_and(|v| v == "postgres");
    let server = if postgres {
        Server::start_on_postgres(Some(&common::dtmf_plans()), &config)
    } else {
        Server::start_with(Some(&common::dtmf_plans()), &config)
    };
    println!("store: {}", if postgres { "PostgreSQL" } else { "SQLite" });
    let (ok, token, err) = server.kefu(&["tokens", "create", "bench", "--role", "auditor"]);
    assert!(ok, "kefu tokens create: {err}");
    let token = token.trim().to_string();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let traffic = |cold: bool| {
        Arc::new(Traffic {
            questions: questions(),
            cold,
            made: AtomicUsize::new(0),
        })
    };
    let cold = traffic(true);
    let repeated = traffic(false);
    rt.block_on(async {
        // Its wordings are cold too, and none comes again in the passes below.
        let (reference, mut answered) =
            idle_correctness(&server, &cold, 200.min(conversations as usize * 4)).await;
        println!(
            "idle reference: first messages (cold wording) with the right intent {:.1} %",
            reference * 100.0
        );
        let pass = |traffic: &Arc<Traffic>, think: Duration| Pass {
            server: &server,
            token: &token,
            traffic: traffic.clone(),
            conversations,
            messages,
            think,
        };
        let mut failed = 0;
        for (traffic, think, label) in [
            (&cold, think, "cold"),
            (&repeated, think, "repeated"),
            (&cold, Duration::ZERO, "cold, no think time"),
        ] {
            let (a, f) = pass(traffic, think).run(label).await;
            answered += a;
            failed += f;
        }
        let stored = stored_customer_turns(&server).await;
        println!(
            "stored: {stored} customer turns for {answered} messages that got a reply ({failed} failed)"
        );
        if !bench {
            assert_eq!(failed, 0, "messages failed in the smoke run");
        }
        assert_eq!(
            stored, answered as i64,
            "a message that got a reply was not stored, or one was stored twice"
        );
    });
}
