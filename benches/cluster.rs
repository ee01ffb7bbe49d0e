//! A cluster on this machine, measured from outside (loopback only, bounded,
//! stops by itself): Kamailio with the shipped configuration in front of three
//! kefu nodes (`cluster_node`, one PostgreSQL database), SIPp calling through
//! Kamailio.
//!
//! 1. **Capacity**: `KEFU_CLUSTER_CALLS` calls (default 1000) at
//!    `KEFU_CLUSTER_RATE` a second (default 50), each held `KEFU_CLUSTER_HOLD`
//!    seconds (default 10; concurrent calls ≈ rate × hold). Reported: calls
//!    completed and failed, INVITE→200 p50/p99/max through Kamailio, and the
//!    calls each node took.
//! 2. **Failover**: calls at 20 a second for 16 s, each held 2 s; node A is
//!    killed with SIGKILL 6 s in. Reported: the calls that failed (whose INVITE
//!    left after the kill, and those live on A), and the time from the kill to
//!    the last new call that failed or waited over a second for its 200 (sent
//!    to the dead node before a probe missed it: Kamailio tries the next node
//!    after 2 s).
//! 3. **Chats across nodes**: `KEFU_CLUSTER_CHATS` web chats (default 200),
//!    each started on one node with the customer's WebSocket on the next, and
//!    6 messages posted round the three nodes (as a load balancer without
//!    stickiness would: a refund question, then its order number on the next
//!    node, and so on), 0.5–1.5 s apart. Reported: reply latency for a message whose conversation the node
//!    had current and for one another node had changed (read back from the
//!    store), the time from a message posted on one node to its push on the
//!    WebSocket held by another, pushes missed, and the order numbers taken
//!    right though asked for on another node.
//!
//! Run: `cargo bench --bench cluster` (needs `deploy/setup.sh` and PostgreSQL:
//! `deploy/test-postgres.sh`). Under `cargo test` it runs 20 calls and a short
//! failover as a smoke run. Figures go to benches/RESULTS.md.

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::kamailio::{Balancer, CALL, kamailio};
use common::sipp_trace::{Signalling, parse_trace};
use common::{Server, free_port};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

/// Three nodes of one cluster on a fresh database, and Kamailio in front.
struct Cluster {
    nodes: Vec<Server>,
    balancer: std::net::SocketAddr,
    _kamailio: Balancer,
    _db: common::pg::PgDatabase,
    _dir: tempfile::TempDir,
}

fn cluster(max_calls: u64) -> Cluster {
    cluster_with(max_calls, "")
}

/// [`cluster`] with more settings for every node.
fn cluster_with(max_calls: u64, extra: &str) -> Cluster {
    let db = common::pg::PgDatabase::create_blocking();
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = dir.path().join("cluster.keys");
    std::fs::write(&keys, kefu::store::crypto::Keyring::new_line(1)).expect("keys");
    let nodes: Vec<Server> = ["a", "b", "c"]
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let first = 20000 + i as u64 * 4000;
            Server::start_with(
                Some(&common::dtmf_plans()),
                &format!(
                    "database = {:?}\nkey_file = {keys:?}\ncluster_node = \"{name}\"\n\
                     max_calls = {max_calls}\nrtp_ports = \"{first}-{}\"\n\
                     {extra}\n[[trunk]]\nname = \"kamailio\"\naddresses = [\"127.0.0.1\"]\n",
                    db.url,
                    first + 3998
                ),
            )
        })
        .collect();
    let port = free_port();
    let refs: Vec<&Server> = nodes.iter().collect();
    let kamailio = kamailio(dir.path(), port, &refs);
    Cluster {
        nodes,
        balancer: ([127, 0, 0, 1], port).into(),
        _kamailio: kamailio,
        _db: db,
        _dir: dir,
    }
}

/// SIPp through the balancer: `n` calls at `rate` a second, each held `hold`;
/// returns its exit status' success and what its message trace says per call.
fn place(
    c: &Cluster,
    n: u64,
    rate: u64,
    hold: Duration,
    during: impl FnOnce(),
) -> (bool, Vec<Signalling>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let xml = dir.path().join("call.xml");
    std::fs::write(
        &xml,
        CALL.replace(
            "<pause milliseconds=\"1500\"/>",
            &format!("<pause milliseconds=\"{}\"/>", hold.as_millis()),
        ),
    )
    .expect("scenario");
    let trace = dir.path().join("messages.log");
    let mut sipp = Command::new("sipp")
        .arg(c.balancer.to_string())
        .arg("-sf")
        .arg(&xml)
        .args(["-s", "kefu-en", "-m", &n.to_string(), "-l", &n.to_string()])
        .args(["-r", &rate.to_string(), "-rp", "1000", "-i", "127.0.0.1"])
        .args([
            "-p",
            &free_port().to_string(),
            "-mp",
            &free_port().to_string(),
        ])
        .args(["-trace_msg", "-message_file"])
        .arg(&trace)
        .args([
            "-timeout",
            &format!("{}s", hold.as_secs() + 60 + n / rate.max(1)),
            "-timeout_error",
            "-nostdin",
            "-recv_timeout",
            "10000",
        ])
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("SIPp must be installed (Debian package sip-tester): deploy/setup.sh");
    during();
    let ok = sipp.wait().is_ok_and(|s| s.success());
    let text = std::fs::read_to_string(&trace).unwrap_or_default();
    if let Ok(copy) = std::env::var("KEFU_CLUSTER_TRACE") {
        let _ = std::fs::write(copy, &text);
    }
    let mut calls: Vec<(u64, Signalling)> = parse_trace(&text).into_iter().collect();
    calls.sort_by_key(|(n, _)| *n);
    (ok, calls.into_iter().map(|(_, s)| s).collect())
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    common::nearest_rank(v, p)
}

/// Waits until the nodes have written `n` call records in all (or 30 s).
fn records(c: &Cluster, n: usize) -> Vec<usize> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let per: Vec<usize> = c.nodes.iter().map(|s| s.summaries().len()).collect();
        if per.iter().sum::<usize>() >= n || Instant::now() > deadline {
            return per;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn capacity(n: u64, rate: u64, hold: Duration) {
    let c = cluster(n + 100);
    let started = Instant::now();
    let (sipp_ok, calls) = place(&c, n, rate, hold, || {});
    let took = started.elapsed();
    let completed = calls.iter().filter(|s| s.ok.is_some() && s.bye_ok).count();
    let mut setup: Vec<f64> = calls
        .iter()
        .filter_map(|s| Some((s.ok? - s.invite?) as f64 / 1e6))
        .collect();
    let per = records(&c, completed);
    println!(
        "capacity: {n} calls at {rate}/s held {}s (≈{} at once) through Kamailio to 3 nodes in {:.1}s: \
         completed {completed}, failed {}; INVITE→200 p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; \
         calls per node {per:?}; SIPp {}",
        hold.as_secs(),
        (rate * hold.as_secs()).min(n),
        took.as_secs_f64(),
        n as usize - completed,
        percentile(&mut setup, 0.5),
        percentile(&mut setup, 0.99),
        percentile(&mut setup, 1.0),
        if sipp_ok { "ok" } else { "reported failures" },
    );
}

fn failover(rate: u64, seconds: u64, kill_after: Duration) {
    let c = cluster(1000);
    let hold = Duration::from_secs(2);
    let victim = c.nodes[0].pid();
    let mut killed_at = 0i128;
    let (_, calls) = place(&c, rate * seconds, rate, hold, || {
        std::thread::sleep(kill_after);
        killed_at = now_ns();
        let _ = Command::new("kill")
            .args(["-KILL", &victim.to_string()])
            .status();
    });
    let after: Vec<&Signalling> = calls
        .iter()
        .filter(|s| s.invite.is_some_and(|t| t >= killed_at))
        .collect();
    let failed_new = after.iter().filter(|s| s.ok.is_none() || !s.bye_ok).count();
    let failed_all = calls.iter().filter(|s| s.ok.is_none() || !s.bye_ok).count();
    // The last new call that failed, or whose 200 took over a second (its
    // INVITE went to the dead node first).
    let last_hurt = after
        .iter()
        .filter(|s| match (s.invite, s.ok) {
            (Some(i), Some(o)) => o - i > 1_000_000_000 || !s.bye_ok,
            _ => true,
        })
        .filter_map(|s| s.invite)
        .max()
        .map(|t| (t - killed_at) as f64 / 1e9);
    let mut setup_after: Vec<f64> = after
        .iter()
        .filter_map(|s| Some((s.ok? - s.invite?) as f64 / 1e6))
        .collect();
    println!(
        "failover: {} calls at {rate}/s held 2s, node A killed {:.0}s in: {} new calls after the kill, \
         {failed_new} of them failed; {failed_all} failed in all (calls live on A included); \
         last new call hurt (failed, or 200 after > 1 s) {} after the kill; \
         INVITE→200 of new calls p50 {:.1} ms, max {:.1} ms",
        calls.len(),
        kill_after.as_secs_f64(),
        after.len(),
        last_hurt.map_or("none".into(), |s| format!("{s:.2} s")),
        percentile(&mut setup_after, 0.5),
        percentile(&mut setup_after, 1.0),
    );
}

/// What one chat measured: reply latencies (ms) on a node whose copy was
/// current / was changed elsewhere, push latencies (ms) to a socket on another
/// node, pushes missed, order numbers taken right and asked.
#[derive(Default)]
struct ChatFigures {
    current: Vec<f64>,
    moved: Vec<f64>,
    pushed: Vec<f64>,
    missed: usize,
    right: usize,
    asked: usize,
}

async fn one_chat(
    i: usize,
    http: reqwest::Client,
    nodes: Vec<std::net::SocketAddr>,
) -> ChatFigures {
    use futures_util::StreamExt;
    let mut f = ChatFigures::default();
    let n = nodes.len();
    // Each customer from an address of their own, as the HTTP load balancer in
    // front names them (the nodes trust it): per-address budgets apply as
    // they would to real customers.
    let client = format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255);
    let Ok(r) = http
        .post(format!("http://{}/api/chat/conversations", nodes[i % n]))
        .header("x-forwarded-for", client.clone())
        .json(&serde_json::json!({"lang": "en", "visitor": format!("bench-{i}")}))
        .send()
        .await
    else {
        return f;
    };
    let Ok(started) = r.json::<serde_json::Value>().await else {
        return f;
    };
    let (Some(id), Some(key)) = (started["conversation"].as_str(), started["key"].as_str()) else {
        return f;
    };
    let socket_node = (i + 1) % n;
    let Ok(mut request) =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(format!(
            "ws://{}/api/chat/conversations/{id}/ws?key={key}",
            nodes[socket_node]
        ))
    else {
        return f;
    };
    if let Ok(v) = client.parse() {
        request.headers_mut().insert("x-forwarded-for", v);
    }
    let Ok((ws, _)) = tokio_tungstenite::connect_async(request).await else {
        return f;
    };
    // The socket's customer turns, with when each came.
    let (tx, mut heard) = tokio::sync::mpsc::unbounded_channel::<(String, Instant)>();
    let reader = tokio::spawn(async move {
        let mut ws = ws;
        while let Some(Ok(msg)) = ws.next().await {
            let Ok(text) = msg.to_text() else { continue };
            let Ok(e) = serde_json::from_str::<serde_json::Value>(text) else {
                continue;
            };
            if e["speaker"] == "customer" {
                let _ = tx.send((
                    e["text"].as_str().unwrap_or_default().to_string(),
                    Instant::now(),
                ));
            }
        }
    });
    let mut last_node = i % n;
    for k in 0..6usize {
        // Two messages a node: each order number goes to the node after the
        // one that asked for it, each question to the node that took the
        // last number.
        let node = (i + k.div_ceil(2)) % n;
        let text = if k % 2 == 0 {
            "Where's my refund? It's been a week".to_string()
        } else {
            format!("it's {}", 100_000 + i * 10 + k)
        };
        let think = 500 + (i * 7919 + k * 104_729) % 1000;
        tokio::time::sleep(Duration::from_millis(think as u64)).await;
        let sent = Instant::now();
        let reply = http
            .post(format!(
                "http://{}/api/chat/conversations/{id}/messages",
                nodes[node]
            ))
            .header("x-kefu-key", key)
            .header("x-forwarded-for", client.clone())
            .json(&serde_json::json!({ "text": text }))
            .send()
            .await;
        let took = sent.elapsed().as_secs_f64() * 1000.0;
        let Ok(reply) = reply else { continue };
        let Ok(reply) = reply.json::<serde_json::Value>().await else {
            continue;
        };
        if node == last_node {
            f.current.push(took)
        } else {
            f.moved.push(took)
        }
        last_node = node;
        if k % 2 == 1 {
            f.asked += 1;
            let number = text.trim_start_matches("it's ");
            if reply["kind"] == "answer"
                && reply["text"].as_str().is_some_and(|t| t.contains(number))
            {
                f.right += 1;
            }
        }
        if node != socket_node {
            let got = tokio::time::timeout(Duration::from_secs(5), async {
                while let Some((said, at)) = heard.recv().await {
                    if said == text {
                        return Some(at);
                    }
                }
                None
            })
            .await;
            match got {
                Ok(Some(at)) => f
                    .pushed
                    .push(at.saturating_duration_since(sent).as_secs_f64() * 1000.0),
                _ => f.missed += 1,
            }
        }
    }
    reader.abort();
    f
}

fn chats(count: usize) {
    // The HTTP load balancer in front is this process, on loopback.
    let c = cluster_with(100, "trusted_proxies = [\"127.0.0.1\"]");
    // This process holds a socket and a connection per customer.
    let _ = rlimit::increase_nofile_limit(count as u64 * 3 + 256);
    let nodes: Vec<std::net::SocketAddr> = c.nodes.iter().map(|s| s.http).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let started = Instant::now();
    let all: Vec<ChatFigures> = runtime.block_on(async {
        let http = reqwest::Client::new();
        let tasks: Vec<_> = (0..count)
            .map(|i| {
                let (http, nodes) = (http.clone(), nodes.clone());
                tokio::spawn(async move {
                    // Spread the starts over a few seconds.
                    tokio::time::sleep(Duration::from_millis((i * 20) as u64)).await;
                    one_chat(i, http, nodes).await
                })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap_or_default());
        }
        out
    });
    let mut total = ChatFigures::default();
    for f in all {
        total.current.extend(f.current);
        total.moved.extend(f.moved);
        total.pushed.extend(f.pushed);
        total.missed += f.missed;
        total.right += f.right;
        total.asked += f.asked;
    }
    let line = |name: &str, v: &mut Vec<f64>| {
        println!(
            "  {name}: {} p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            v.len(),
            percentile(v, 0.5),
            percentile(v, 0.99),
            percentile(v, 1.0)
        );
    };
    println!(
        "chats across nodes: {count} chats, {} messages in {:.1} s",
        total.current.len() + total.moved.len(),
        started.elapsed().as_secs_f64()
    );
    line("reply, copy current", &mut total.current);
    line("reply, changed on another node", &mut total.moved);
    line("push to a socket on another node", &mut total.pushed);
    println!("  pushes missed (5 s): {}", total.missed);
    println!(
        "  order numbers taken right, asked for on another node: {} of {}",
        total.right, total.asked
    );
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        // `cargo test --all-targets`: a smoke run of the harness.
        capacity(20, 10, Duration::from_secs(2));
        failover(10, 6, Duration::from_secs(3));
        chats(3);
        return;
    }
    chats(env_or("KEFU_CLUSTER_CHATS", 200).clamp(1, 2000) as usize);
    if std::env::var("KEFU_CLUSTER_ONLY_CHATS").is_ok() {
        return;
    }
    capacity(
        env_or("KEFU_CLUSTER_CALLS", 1000).clamp(1, 3000),
        env_or("KEFU_CLUSTER_RATE", 50).clamp(1, 500),
        Duration::from_secs(env_or("KEFU_CLUSTER_HOLD", 10).clamp(1, 120)),
    );
    failover(20, 16, Duration::from_secs(6));
}
