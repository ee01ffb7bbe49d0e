//! kefu behind Kamailio on loopback, with the shipped configuration
//! (deploy/kamailio/kamailio.cfg): two kefu nodes in the dispatcher, SIPp
//! calling through Kamailio. Calls go round both nodes; in-dialog requests
//! (ACK, BYE) follow the Record-Route to the node that took the call; one node
//! is killed with SIGKILL and no new call fails: the other answers them all.
//! A node given SIGTERM finishes its live call and takes no new one. Two nodes
//! of one cluster (`cluster_node`, one PostgreSQL database) share an agent: one node's caller is taken by an agent whose phone registered with
//! the other, and only one node rings the agent at a time. A web chat goes on
//! through either node, and a dead node's waiting chat waits on the other.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::kamailio::{CALL, kamailio};
use common::{Server, free_port, sipp_to};

/// Sends `node` a signal (`KILL`: it dies at once; `TERM`: it drains).
fn signal(node: &Server, signal: &str) {
    let sent = Command::new("kill")
        .args([&format!("-{signal}"), &node.pid().to_string()])
        .status()
        .unwrap();
    assert!(sent.success(), "kill -{signal}");
}

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
    signal(&a, "KILL");
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
    signal(holder, "TERM");
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
    cluster_pair_with("").await
}

/// [`cluster_pair`] with more settings for both nodes (top-level keys first,
/// then tables; with a `[[queue]]` of its own, the default queue is left out).
async fn cluster_pair_with(extra: &str) -> Pair {
    let db = common::pg::PgDatabase::create().await;
    let plans = tempfile::tempdir().unwrap();
    common::phone::always_open_plans(plans.path());
    let keys = plans.path().join("cluster.keys");
    std::fs::write(&keys, kefu::store::crypto::Keyring::new_line(1)).unwrap();
    // The support queue, unless `extra` sets its own queues.
    let queue = if extra.contains("[[queue]]") {
        ""
    } else {
        "[[queue]]\nname = \"support-en\"\nring_timeout = \"30s\"\nmax_wait = \"2m\"\nwrap_up = \"1s\"\n"
    };
    let node = |name: &str| {
        Server::start_with(
            Some(plans.path()),
            &format!(
                "database = {:?}\nkey_file = {:?}\ncluster_node = \"{name}\"\n\
                 {extra}\n{queue}",
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
    let cookie = supervisor(&a).await;

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
    signal(&b, "KILL");
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

/// The next turn pushed on a chat WebSocket: (speaker, text).
async fn pushed(
    ws: &mut (
             impl futures_util::StreamExt<
        Item = Result<
            tokio_tungstenite::tungstenite::Message,
            tokio_tungstenite::tungstenite::Error,
        >,
    > + Unpin
         ),
) -> (String, String) {
    let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("a pushed turn within 5 s")
        .expect("socket open")
        .expect("a frame");
    let e: serde_json::Value = serde_json::from_str(msg.to_text().unwrap()).unwrap();
    (
        e["speaker"].as_str().unwrap().to_string(),
        e["text"].as_str().unwrap().to_string(),
    )
}

/// Adds the supervisor `name` (through `node`'s store, which every node shares).
fn add_supervisor(node: &Server, name: &str) {
    let (ok, _, err) = node.kefu_with_input(
        &[
            "users",
            "add",
            name,
            "--role",
            "supervisor",
            "--password-stdin",
        ],
        "a long enough password\n",
    );
    assert!(ok, "{err}");
}

/// A supervisor added on `node` and signed in there: their session cookie.
async fn supervisor(node: &Server) -> String {
    add_supervisor(node, "wang");
    node.sign_in("wang", "a long enough password").await.0
}

/// The waiting items in a node's queue view, as (item, node).
async fn waiting_in(node: &Server, cookie: &str) -> Vec<(String, String)> {
    let view: serde_json::Value = reqwest::Client::new()
        .get(format!("http://{}/api/queues", node.http))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    view["waiting"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                w["item"].as_str().unwrap_or_default().to_string(),
                w["node"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// A web chat behind an HTTP load balancer, which may send any request to any
/// node: started through node A, it goes on through node B (the order number A
/// asked for is taken on B), every turn reaches the customer's WebSocket on
/// either node, and both nodes give the same history. Handed to a person on B,
/// it waits in B's queue; when B dies it waits on A, and the customer's next
/// message through A is still part of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_goes_on_through_any_node() {
    use serde_json::{Value, json};
    let Pair { a, b, _db, _plans } = cluster_pair().await;
    let http = reqwest::Client::new();
    let started: Value = http
        .post(format!("http://{}/api/chat/conversations", a.http))
        .json(&json!({"lang": "en", "visitor": "visitor-cluster"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = started["conversation"].as_str().unwrap().to_string();
    let key = started["key"].as_str().unwrap().to_string();
    let socket = |node: &Server| {
        let url = format!(
            "ws://{}/api/chat/conversations/{id}/ws?key={key}",
            node.http
        );
        async move { tokio_tungstenite::connect_async(url).await.unwrap().0 }
    };
    let (mut on_a, mut on_b) = (socket(&a).await, socket(&b).await);
    let say = |node: &Server, text: &str| {
        let req = http
            .post(format!(
                "http://{}/api/chat/conversations/{id}/messages",
                node.http
            ))
            .header("x-kefu-key", key.clone())
            .json(&json!({ "text": text }));
        async move {
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap()
        }
    };
    let r = say(&a, "Where's my refund? It's been a week").await;
    assert_eq!(
        (r["kind"].as_str(), r["intent"].as_str()),
        (Some("ask_slot"), Some("refund_status")),
        "{r}"
    );
    // B's socket hears what was said on A.
    let heard = pushed(&mut on_b).await;
    assert_eq!(heard.0, "customer");
    assert!(heard.1.contains("refund"), "{heard:?}");
    assert_eq!(
        pushed(&mut on_b).await,
        ("bot".to_string(), r["text"].as_str().unwrap().to_string())
    );

    // The order number goes to B, which fills the slot A asked for.
    let r = say(&b, "it's 482913").await;
    assert_eq!(r["kind"], "answer", "{r}");
    assert!(r["text"].as_str().unwrap().contains("482913"), "{r}");
    let mut on_a_heard = Vec::new();
    for _ in 0..4 {
        on_a_heard.push(pushed(&mut on_a).await);
    }
    assert_eq!(
        on_a_heard[2],
        ("customer".to_string(), "it's 482913".to_string()),
        "{on_a_heard:?}"
    );
    assert_eq!(
        on_a_heard[3].1,
        r["text"].as_str().unwrap(),
        "{on_a_heard:?}"
    );

    // Both nodes give the same history, in order.
    let history = |node: &Server| {
        let req = http
            .get(format!(
                "http://{}/api/chat/conversations/{id}/messages",
                node.http
            ))
            .header("x-kefu-key", key.clone());
        async move {
            let h: Value = req.send().await.unwrap().json().await.unwrap();
            h["turns"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["text"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    let (through_a, through_b) = (history(&a).await, history(&b).await);
    assert_eq!(
        through_a.len(),
        5,
        "greeting and two exchanges: {through_a:?}"
    );
    assert_eq!(through_a, through_b);

    // Handed to a person on B: it waits in B's queue, and A's view shows it.
    let cookie = supervisor(&a).await;
    let r = say(&b, "i need a human").await;
    assert_eq!(r["handover"], "general", "{r}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut waiting = Vec::new();
    while Instant::now() < deadline {
        waiting = waiting_in(&a, &cookie).await;
        if !waiting.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(waiting, vec![(id.clone(), "b".to_string())]);

    // B dies: the chat waits on A, and goes on there.
    signal(&b, "KILL");
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        waiting = waiting_in(&a, &cookie).await;
        if waiting.iter().any(|(_, node)| node == "a") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(waiting, vec![(id.clone(), "a".to_string())]);
    assert!(
        a.logs()
            .iter()
            .any(|l| l.contains("a dead node's waiting chat waits here now"))
    );
    say(&a, "hello, anyone there?").await;
    let through_a = history(&a).await;
    assert_eq!(
        through_a.last().map(String::as_str),
        Some("hello, anyone there?"),
        "{through_a:?}"
    );
    assert_eq!(through_a.len(), 8, "{through_a:?}");
}

/// An agent whose desk talks to node A takes a chat handed over on node B: B
/// cannot show an offer on that desk, so A asks for the chat and it waits in
/// A's queue; the agent's reply, made on A, reaches the customer's WebSocket
/// on B.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_takes_a_chat_waiting_on_another_node() {
    use common::phone::add_agent_with_phone;
    use serde_json::{Value, json};
    let Pair { a, b, _db, _plans } = cluster_pair().await;
    add_agent_with_phone(&a, "li", "2001", "general");
    let (cookie, csrf) = a.sign_in("li", "a long enough password").await;
    let http = reqwest::Client::new();
    let desk = |method: reqwest::Method, path: &str| {
        http.request(method, format!("http://{}{path}", a.http))
            .header("cookie", cookie.clone())
            .header("x-csrf-token", csrf.clone())
    };
    let r = desk(reqwest::Method::POST, "/api/agent/state")
        .json(&json!({"available": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let (conv, _, mut customer) = b.handed_over_chat("visitor-li", "i need a human").await;
    // The desk polls its offers, as it does every few seconds.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut offers = Value::Null;
    while Instant::now() < deadline {
        offers = desk(reqwest::Method::GET, "/api/agent/offers")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if offers
            .as_array()
            .is_some_and(|o| o.iter().any(|o| o["item"] == conv.as_str()))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        offers
            .as_array()
            .is_some_and(|o| o.iter().any(|o| o["item"] == conv.as_str())),
        "the chat waiting on B is offered on A's desk: {offers}"
    );
    assert!(
        b.logs()
            .iter()
            .any(|l| l.contains("a waiting chat goes to the node its agent's desk talks to"))
    );
    let taken: Value = desk(
        reqwest::Method::POST,
        &format!("/api/agent/offers/{conv}/accept"),
    )
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let said: Vec<&str> = taken["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["text"].as_str())
        .collect();
    assert!(said.contains(&"i need a human"), "{taken}");
    let r = desk(
        reqwest::Method::POST,
        &format!("/api/agent/conversations/{conv}/messages"),
    )
    .json(&json!({"text": "Hello, this is Li."}))
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 204);
    // The customer's socket on B: the hand-over's turns, then Li.
    let mut heard = Vec::new();
    while !heard
        .iter()
        .any(|(who, _): &(String, String)| who == "agent")
    {
        heard.push(pushed(&mut customer).await);
    }
    assert_eq!(
        heard.last(),
        Some(&("agent".to_string(), "Hello, this is Li.".to_string()))
    );
}

/// The knowledge base from one place: both nodes load the same directory
/// (shared storage, in production a network mount or a synced directory), so
/// a file an integrator uploads through node A is answered by node B once its
/// watcher reloads, with no restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_knowledge_base_file_uploaded_through_one_node_is_answered_by_the_other() {
    use serde_json::{Value, json};
    let kb = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(common::repo().join("dialplans/kb")).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, kb.path().join(p.file_name().unwrap())).unwrap();
    }
    let Pair { a, b, _db, _plans } =
        cluster_pair_with(&format!("kb = \"{}\"", kb.path().display())).await;
    let http = reqwest::Client::new();
    let parking = r#"[intents.parking]
title = { en = "parking", zh = "停车" }
examples.en = ["where can I park my car", "is there parking at the store", "car park"]
examples.zh = ["门店可以停车吗", "停车场在哪里"]
answer.en = "Customers park free for two hours in the garage under the store."
answer.zh = "门店地下车库可免费停车两小时。"
"#;
    let r = http
        .put(format!("http://{}/api/v1/kb/files/parking.toml", a.http))
        .bearer_auth(a.api_token())
        .header("content-type", "application/toml")
        .body(parking)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut matched = Value::Null;
    while Instant::now() < deadline {
        matched = http
            .post(format!("http://{}/api/v1/kb/match", b.http))
            .bearer_auth(b.api_token())
            .json(&json!({"text": "Where can I park?"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if matched["ranked"][0]["intent"] == "parking" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(matched["ranked"][0]["intent"], "parking", "{matched}");
}

/// One callback per ticket across the cluster: while an agent's callback on a
/// ticket rings through node A, another agent's try on node B is refused as
/// "being called back already"; once A's try ends, B's goes ahead (and fails
/// here for its own reason: that supervisor's phone is not registered).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_is_called_back_by_one_node_at_a_time() {
    use common::desk::Desk;
    use common::phone::{Phone, add_agent_with_phone};
    let trunk = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let Pair { a, b, _db, _plans } = cluster_pair_with(&format!(
        "[[queue]]\nname = \"support-en\"\nring_timeout = \"5s\"\nmax_wait = \"5s\"\n\n\
         [[trunk]]\nname = \"carrier\"\naddresses = [\"127.0.0.1\"]\noutbound = \"{}\"\ncaller_id = \"4008002000\"\n",
        trunk.local_addr().unwrap()
    ))
    .await;
    add_agent_with_phone(&a, "li", "2001", "support-en");
    // Wang supervises (an agent could not call back a ticket Li took) and is
    // an agent too, with no phone.
    add_supervisor(&a, "wang");
    let (ok, _, err) = a.kefu_with_input(
        &[
            "agents",
            "add",
            "wang",
            "--extension",
            "2002",
            "--queues",
            "support-en",
            "--user",
            "wang",
            "--password-stdin",
        ],
        "phone secret 2002\n",
    );
    assert!(ok, "{err}");
    let li_phone = Phone::register(&a, "2001");
    let li = Desk::sign_in(&a, "li").await;
    let wang = Desk::sign_in(&b, "wang").await;

    // A caller nobody takes asks to be called back (key 0, then 2 at the
    // no-agent menu).
    let num = common::desk::ask_for_a_callback(&a, &li).await;
    let call = |desk: &Desk| {
        desk.req(reqwest::Method::POST, &format!("/api/tickets/{num}/call"))
            .send()
    };

    // Li calls back through A: her phone rings.
    let r = call(&li).await.unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let ring = tokio::task::block_in_place(|| li_phone.ringing(Duration::from_secs(10)));
    // Wang tries the same ticket through B meanwhile: refused.
    let r = call(&wang).await.unwrap();
    assert_eq!(r.status(), 409);
    let body = r.text().await.unwrap();
    assert!(body.contains("being called back already"), "{body}");

    // Li's phone is busy: her try ends, and the ticket is free again.
    li_phone.respond(&ring, "486 Busy Here", "");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = call(&wang).await.unwrap();
        let status = r.status();
        let body = r.text().await.unwrap();
        if !body.contains("being called back already") {
            assert_eq!(status, 409, "{body}");
            assert!(body.contains("phone is not registered"), "{body}");
            break;
        }
        assert!(Instant::now() < deadline, "the ticket stayed held: {body}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
