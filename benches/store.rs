//! The store's write rate with encryption on, on SQLite (a file in WAL mode,
//! synchronous FULL) and on the local PostgreSQL:
//! 1. one writer: a message and its reply (2 turns) per commit, one after another
//!    (the latency a single chat customer sees added to a reply);
//! 2. many writers at once (64 and 512 conversations), which group commit batches:
//!    turns per second;
//! 3. sealing alone (AES-256-GCM of a 60-byte message).
//!
//! Run: `cargo bench --bench store` (PostgreSQL at KEFU_TEST_POSTGRES, default
//! postgres://postgres@127.0.0.1:5432/test; `deploy/test.sh` starts one). Under
//! `cargo test` it runs at tiny sizes as a smoke run. Figures go to
//! benches/RESULTS.md.

use std::time::{Duration, Instant};

use chrono::Utc;
use kefu::dialogue::conversations::Channel;
use kefu::dialogue::engine::{Speaker, Turn};
use kefu::store::crypto::Keyring;
use kefu::store::{Store, TurnsWrite};
use sqlx::Connection;

const TEXT: &str = "您好，我的订单 88231 还没有送到，请问什么时候能到？";
const REPLY: &str = "Your order is on its way and should arrive within two days.";

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn pair(conv: &str, customer: &str, seq: usize) -> TurnsWrite {
    let now = Utc::now();
    let turn = |speaker, text: &str| Turn {
        at: now,
        speaker,
        text: text.into(),
        intent: Some("order_status".into()),
        confidence: Some(0.9),
    };
    TurnsWrite {
        conversation: conv.into(),
        channel: Channel::App,
        customer: customer.into(),
        call_id: None,
        started: now,
        updated: now,
        first_seq: seq,
        turns: vec![turn(Speaker::Customer, TEXT), turn(Speaker::Bot, REPLY)],
        latency_us: Some(900),
        state: None,
    }
}

fn keys() -> Keyring {
    Keyring::parse(&Keyring::new_line(1), "bench").unwrap()
}

async fn sequential(store: &Store, n: usize) {
    let mut lat = Vec::with_capacity(n);
    let t0 = Instant::now();
    for i in 0..n {
        let t = Instant::now();
        store
            .record_turns(pair("seq-conv", "c-bench", i * 2))
            .await
            .unwrap();
        lat.push(t.elapsed());
    }
    let total = t0.elapsed();
    lat.sort();
    println!(
        "  one writer: {n} commits of 2 turns in {:.2} s = {:.0} turns/s; per commit p50 {:.2} ms, p99 {:.2} ms",
        total.as_secs_f64(),
        (2 * n) as f64 / total.as_secs_f64(),
        pct(&lat, 0.5).as_secs_f64() * 1e3,
        pct(&lat, 0.99).as_secs_f64() * 1e3
    );
}

async fn concurrent(store: &Store, writers: usize, each: usize) {
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(each);
            let conv = format!("conc-{writers}-{w}");
            for i in 0..each {
                let t = Instant::now();
                s.record_turns(pair(&conv, "c-bench", i * 2)).await.unwrap();
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    let total = t0.elapsed();
    lat.sort();
    println!(
        "  {writers} writers × {each}: {:.0} turns/s; per commit p50 {:.2} ms, p99 {:.2} ms",
        (2 * writers * each) as f64 / total.as_secs_f64(),
        pct(&lat, 0.5).as_secs_f64() * 1e3,
        pct(&lat, 0.99).as_secs_f64() * 1e3
    );
}

async fn run(name: &str, url: &str, smoke: bool) {
    println!("{name}:");
    let store = Store::open(url, Some(keys())).await.unwrap();
    if smoke {
        sequential(&store, 5).await;
        concurrent(&store, 8, 3).await;
    } else {
        sequential(&store, 500).await;
        concurrent(&store, 64, 100).await;
        concurrent(&store, 512, 40).await;
    }
    println!("  stored turns: {}", store.turn_count().await.unwrap());
    store.close().await;
}

fn main() {
    let smoke = !std::env::args().any(|a| a == "--bench");
    if smoke {
        println!("store (smoke run at tiny sizes, not a measurement):");
    }
    let k = keys();
    let n = if smoke { 1_000 } else { 200_000 };
    let t = Instant::now();
    let mut bytes = 0;
    for _ in 0..n {
        bytes += k.seal_str("turns.text", TEXT).len();
    }
    let el = t.elapsed();
    println!(
        "sealing: {:.2} µs per {}-byte message ({} bytes stored each)",
        el.as_secs_f64() * 1e6 / n as f64,
        TEXT.len(),
        bytes / n
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        run(
            "SQLite (WAL, synchronous FULL, encrypted)",
            &kefu::store::sqlite_url(&dir.path().join("bench.db")),
            smoke,
        )
        .await;
        let admin = std::env::var("KEFU_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let name = format!("kefu_bench_{}", std::process::id());
        let mut c = sqlx::PgConnection::connect(&admin).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut c)
            .await
            .unwrap();
        let url = format!("{}/{name}", &admin[..admin.rfind('/').unwrap()]);
        run("PostgreSQL (local, encrypted)", &url, smoke).await;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE {name} WITH (FORCE)"
        )))
        .execute(&mut c)
        .await
        .unwrap();
    });
}
