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
                     [[trunk]]\nname = \"kamailio\"\naddresses = [\"127.0.0.1\"]\n",
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

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        // `cargo test --all-targets`: a smoke run of the harness.
        capacity(20, 10, Duration::from_secs(2));
        failover(10, 6, Duration::from_secs(3));
        return;
    }
    capacity(
        env_or("KEFU_CLUSTER_CALLS", 1000).clamp(1, 3000),
        env_or("KEFU_CLUSTER_RATE", 50).clamp(1, 500),
        Duration::from_secs(env_or("KEFU_CLUSTER_HOLD", 10).clamp(1, 120)),
    );
    failover(20, 16, Duration::from_secs(6));
}
