//! What authentication costs a request:
//! 1. argon2id hashing and verifying a password (a sign-in; on purpose slow);
//! 2. finding an API token by its hash in SQLite (every integrator request);
//! 3. finding a session by its cookie's hash, with its user (every signed-in request);
//! 4. the sign-in throttle's check (every sign-in).
//!
//! Run: `cargo bench --bench auth`. Figures go to benches/RESULTS.md.

use std::hint::black_box;

use anyhow::Context;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use kefu::auth::throttle::Throttle;
use kefu::auth::{new_token, password, secret};
use kefu::store::Store;
use kefu::store::access::Audit;

fn audit(action: &'static str) -> Audit {
    Audit {
        actor: "bench".into(),
        action,
        target: "bench".into(),
        detail: String::new(),
    }
}

fn passwords(c: &mut Criterion) {
    let mut g = c.benchmark_group("password");
    g.sample_size(20);
    g.bench_function("argon2id_hash", |b| {
        b.iter(|| password::hash(black_box("correct horse battery staple")))
    });
    let Ok(h) = password::hash("correct horse battery staple") else {
        return;
    };
    g.bench_function("argon2id_verify", |b| {
        b.iter(|| password::verify(black_box("correct horse battery staple"), &h))
    });
    g.finish();
}

fn lookups(c: &mut Criterion) {
    let Ok(rt) = tokio::runtime::Runtime::new() else {
        return;
    };
    let Ok(dir) = tempfile::tempdir() else {
        return;
    };
    let url = kefu::store::sqlite_url(&dir.path().join("kefu.db"));
    let setup = rt.block_on(async {
        let store = Store::open(&url, None).await?;
        // Some hundreds of tokens, users and sessions (lookups go by index).
        let mut token = String::new();
        let mut key = String::new();
        for i in 0..300 {
            token = new_token();
            store
                .add_token(
                    &token,
                    &format!("app{i}"),
                    "integrator",
                    chrono::Utc::now() + chrono::Duration::days(90),
                    audit("token.add"),
                )
                .await?;
            let user = store
                .add_user(
                    &format!("user{i}"),
                    "agent",
                    "$argon2id$x",
                    audit("user.add"),
                )
                .await?
                .context("the user exists")?;
            key = secret();
            let expires = chrono::Utc::now() + chrono::Duration::hours(12);
            store
                .add_session(&key, &user, &secret(), expires, audit("session.login"))
                .await?;
        }
        anyhow::Ok((store, token, key))
    });
    let Ok((store, token, key)) = setup else {
        return;
    };
    c.bench_function("token_lookup_sqlite", |b| {
        b.iter(|| rt.block_on(store.token(black_box(&token))))
    });
    c.bench_function("session_lookup_sqlite", |b| {
        b.iter(|| rt.block_on(store.session(black_box(&key))))
    });
    rt.block_on(store.close());
}

fn throttle(c: &mut Criterion) {
    let mut t = Throttle::default();
    let now = Instant::now();
    for i in 0..10_000 {
        t.fail(&format!("ip:10.0.{}.{}", i / 256, i % 256), now);
    }
    c.bench_function("throttle_check_10k_keys", |b| {
        b.iter(|| t.check(black_box("ip:10.0.3.7"), now))
    });
}

criterion_group!(benches, passwords, lookups, throttle);
criterion_main!(benches);
