//! kefu behind Kamailio on loopback, with the shipped configuration
//! (deploy/kamailio/kamailio.cfg): two kefu nodes in the dispatcher, SIPp
//! calling through Kamailio. Calls go round both nodes; in-dialog requests
//! (ACK, BYE) follow the Record-Route to the node that took the call; one node
//! is killed with SIGKILL and no new call fails: the other answers them all.
//! A node given SIGTERM finishes its live call and takes no new one. Two nodes
//! of one cluster (`cluster_node`, one PostgreSQL database) share an agent: one node's caller is taken by an agent whose phone registered with
//! the other, and only one node rings the agent at a time.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::kamailio::{CALL, kamailio};
use common::{Server, free_port, sipp_to};

/// The calls a node has finished (its call records in the log).
fn finished(node: &Server) -> usize {
    node.summaries().len()
}

#[test]
fn calls_through_kamailio_survive_a_node_killed() {
    let a = Server::start(Some(&common::dtmf_plans()));
    let b = Server::start(Some(&common::dtmf_plans()));
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("call.xml");
    std::fs::write(&scenario, CALL).unwrap();
    let port = free_port();
    let _kamailio = kamailio(dir.path(), port, &[&a, &b]);
    let balancer: SocketAddr = ([127, 0, 0, 1], port).into();

    // Round the nodes: four calls, two each, every one answered and ended by
    // its BYE (which reached the node through Kamailio's Record-Route).
    for i in 0..4 {
        let (ok, out) = sipp_to(balancer, &scenario, "kefu-en", &[]);
        assert!(ok, "call {i} through Kamailio:\n{out}");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while finished(&a) + finished(&b) < 4 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!((finished(&a), finished(&b)), (2, 2), "calls per node");
    for r in a.records().iter().chain(b.records().iter()) {
        assert_eq!(r["end_reason"], "caller-hangup", "{r}");
    }

    // Node A dies. No new call fails: one Kamailio sends to A before a probe
    // has missed it is tried on B after 2 s, and once a probe has missed A,
    // every call goes to B.
    Command::new("kill")
        .args(["-KILL", &a.pid().to_string()])
        .status()
        .unwrap();
    for i in 0..4 {
        let (ok, out) = sipp_to(balancer, &scenario, "kefu-en", &[]);
        assert!(ok, "call {i} after node A died:\n{out}");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while finished(&b) < 6 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(finished(&b), 6, "node B took every call after A died");
}

/// A node given SIGTERM drains behind Kamailio: its live call goes on to its
/// BYE (through the Record-Route, to the draining node), and every new call is
/// answered by the other node.
#[test]
fn a_drained_node_finishes_its_calls_and_takes_no_new_ones() {
    let a = Server::start(Some(&common::dtmf_plans()));
    let b = Server::start(Some(&common::dtmf_plans()));
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _kamailio = kamailio(dir.path(), port, &[&a, &b]);
    let balancer: SocketAddr = ([127, 0, 0, 1], port).into();
    let long = dir.path().join("long.xml");
    std::fs::write(
        &long,
        CALL.replace(
            "<pause milliseconds=\"1500\"/>",
            "<pause milliseconds=\"8000\"/>",
        ),
    )
    .unwrap();
    let short = dir.path().join("call.xml");
    std::fs::write(&short, CALL).unwrap();

    // A long call; the node that took it is drained while it goes on.
    let live = std::thread::spawn(move || sipp_to(balancer, &long, "kefu-en", &[]));
    let deadline = Instant::now() + Duration::from_secs(10);
    let holder = loop {
        if a.active_calls() == Some(1) {
            break &a;
        }
        if b.active_calls() == Some(1) {
            break &b;
        }
        assert!(Instant::now() < deadline, "the long call reached no node");
        std::thread::sleep(Duration::from_millis(50));
    };
    let other = if std::ptr::eq(holder, &a) { &b } else { &a };
    Command::new("kill")
        .args(["-TERM", &holder.pid().to_string()])
        .status()
        .unwrap();
    for i in 0..4 {
        let (ok, out) = sipp_to(balancer, &short, "kefu-en", &[]);
        assert!(ok, "new call {i} while a node drains:\n{out}");
    }
    let (ok, out) = live.join().unwrap();
    assert!(ok, "the draining node's live call:\n{out}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while (finished(other) < 4 || finished(holder) < 1) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(finished(other), 4, "the other node took every new call");
    let records = holder.summaries();
    assert_eq!(
        records.len(),
        1,
        "the draining node took no new call: {records:?}"
    );
    assert_eq!(records[0]["end_reason"], "caller-hangup", "{}", records[0]);
}

/// Two nodes of one cluster (`cluster_node` a and b) on a fresh PostgreSQL
/// database with one key, running the always-open demo plans; the database and
/// plans live as long as the pair.
struct Pair {
    a: Server,
    b: Server,
    _db: common::pg::PgDatabase,
    _plans: tempfile::TempDir,
}

async fn cluster_pair() -> Pair {
    let db = common::pg::PgDatabase::create().await;
    let plans = tempfile::tempdir().unwrap();
    common::phone::always_open_plans(plans.path());
    let keys = plans.path().join("cluster.keys");
    std::fs::write(&keys, kefu::store::crypto::Keyring::new_line(1)).unwrap();
    let node = |name: &str| {
        Server::start_with(
            Some(plans.path()),
            &format!(
                "database = {:?}\nkey_file = {:?}\ncluster_node = \"{name}\"\n\
                 [[queue]]\nname = \"support-en\"\nring_timeout = \"30s\"\nmax_wait = \"2m\"\nwrap_up = \"1s\"\n",
                db.url, keys
            ),
        )
    };
    let (a, b) = (node("a"), node("b"));
    Pair {
        a,
        b,
        _db: db,
        _plans: plans,
    }
}

/// The port a request's top Via names (which node sent it).
fn via_port(request: &str) -> u16 {
    let via = common::phone::header(request, "Via").unwrap();
    let host = via.split_whitespace().nth(1).unwrap();
    let host = host.split(';').next().unwrap();
    host.rsplit(':').next().unwrap().parse().unwrap()
}

/// A caller of the demo's agent line (key 0) who waits for kefu's BYE.
fn queued_caller(
    node: &std::sync::Arc<Server>,
    dir: &Path,
    name: &str,
) -> std::thread::JoinHandle<(bool, String)> {
    use common::{Step, caller_scenario, sipp};
    let scenario = caller_scenario(
        dir,
        name,
        true,
        &[Step::Pause(2500), Step::Rfc4733('0'), Step::Pause(1000)],
    );
    let node = node.clone();
    std::thread::spawn(move || sipp(&node, &scenario, "4008002000", &[]))
}

/// An agent whose phone registered through node A, and who went available on
/// A's desk, takes a caller waiting on node B: B rings the phone itself. While
/// B holds the agent, node A rings them for nothing; once the call is over, A's
/// waiting caller gets them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_of_one_node_takes_callers_waiting_on_another() {
    use common::phone::{Phone, add_agent_with_phone, available, sdp_target};
    let Pair { a, b, _db, _plans } = cluster_pair().await;
    add_agent_with_phone(&a, "li", "2001", "support-en");
    let mut phone = Phone::register(&a, "2001");
    available(&a, "li").await;
    let (a, b) = (std::sync::Arc::new(a), std::sync::Arc::new(b));
    let dir = tempfile::tempdir().unwrap();

    // A caller on B: B rings the phone that registered through A.
    let first = queued_caller(&b, dir.path(), "first");
    let invite = phone.ringing(Duration::from_secs(30));
    assert_eq!(
        via_port(&invite),
        b.sip.port(),
        "node B rings the agent: {invite}"
    );
    phone.ua.server = b.sip;
    phone.answer(&invite);
    let mut seq = 1;
    let logged = b.logs().len();
    phone.press(sdp_target(&invite), 1, &mut seq);
    assert!(
        b.wait_log("caller and agent bridged", logged),
        "{}",
        b.logs().join("\n")
    );

    // A caller on A meanwhile: A may not ring the agent B holds.
    let logged = a.logs().len();
    let second = queued_caller(&a, dir.path(), "second");
    assert!(
        a.wait_log("caller waiting for an agent", logged),
        "{}",
        a.logs().join("\n")
    );
    if let Some(m) = phone.ua.recv(Duration::from_secs(3)) {
        assert!(
            !m.starts_with("INVITE "),
            "node A rang an agent node B holds: {m}"
        );
    }

    // The agent hangs up on B's caller; after the wrap-up A rings them.
    phone.hang_up(&invite);
    let (ok, out) = first.join().unwrap();
    assert!(ok, "first caller:\n{out}\n{}", b.logs().join("\n"));
    let invite = phone.ringing(Duration::from_secs(30));
    assert_eq!(
        via_port(&invite),
        a.sip.port(),
        "node A rings the agent now: {invite}"
    );
    phone.ua.server = a.sip;
    phone.answer(&invite);
    let logged = a.logs().len();
    phone.press(sdp_target(&invite), 1, &mut seq);
    assert!(
        a.wait_log("caller and agent bridged", logged),
        "{}",
        a.logs().join("\n")
    );
    phone.hang_up(&invite);
    let (ok, out) = second.join().unwrap();
    assert!(ok, "second caller:\n{out}\n{}", a.logs().join("\n"));
    for (node, name) in [(&b, "B"), (&a, "A")] {
        let r = common::only_record(node);
        assert_eq!(r["transfer"]["queue"], "support-en", "{name}: {r}");
        assert!(r["transfer"]["agent"].is_string(), "{name}: {r}");
        assert_eq!(r["end_reason"], "agent-hangup", "{name}: {r}");
        // Nobody was offered an agent another node held: no try was spent.
        assert!(
            !r["transfer"].to_string().contains("another node"),
            "{name}: {r}"
        );
    }
}

/// The callers waiting on every node show in any node's queue view, each with
/// its node; when a node dies, its waiting caller is not lost from the queues'
/// report: another node records the stay (abandoned: the caller was cut off).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_sees_who_waits_and_a_dead_nodes_callers_are_counted() {
    let Pair { a, b, _db, _plans } = cluster_pair().await;
    let b = std::sync::Arc::new(b);
    let (ok, _, err) = a.kefu_with_input(
        &[
            "users",
            "add",
            "wang",
            "--role",
            "supervisor",
            "--password-stdin",
        ],
        "a long enough password\n",
    );
    assert!(ok, "{err}");
    let (cookie, _) = a.sign_in("wang", "a long enough password").await;

    // Nobody is available: B's caller waits, and A's view shows them.
    let dir = tempfile::tempdir().unwrap();
    let logged = b.logs().len();
    let _caller = queued_caller(&b, dir.path(), "waiting");
    assert!(
        b.wait_log("caller waiting for an agent", logged),
        "{}",
        b.logs().join("\n")
    );
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut view = serde_json::Value::Null;
    while Instant::now() < deadline {
        view = http
            .get(format!("http://{}/api/queues", a.http))
            .header("cookie", cookie.clone())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if view["waiting"].as_array().is_some_and(|w| !w.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let waiting = &view["waiting"][0];
    assert_eq!(waiting["node"], "b", "{view}");
    assert_eq!(waiting["queue"], "support-en", "{view}");

    // B dies with its caller waiting: A counts the stay.
    Command::new("kill")
        .args(["-KILL", &b.pid().to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let abandoned = |report: &serde_json::Value| {
        report["queues"].as_array().and_then(|q| {
            q.iter()
                .find(|r| r["queue"] == "support-en")
                .map(|r| (r["stays"].as_i64(), r["abandoned"].as_i64()))
        })
    };
    let mut report = serde_json::Value::Null;
    while Instant::now() < deadline {
        report = a.report("").await;
        if abandoned(&report).is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(abandoned(&report), Some((Some(1), Some(1))), "{report}");
    assert!(
        a.logs()
            .iter()
            .any(|l| l.contains("a dead node's waiting item is recorded as abandoned"))
    );
}
