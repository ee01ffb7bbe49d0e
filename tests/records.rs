//! The store under a running server: no acknowledged message is lost to kill -9,
//! backups taken while serving restore to the same records, calls are stored
//! sealed, and a server with encryption on but no key refuses to start.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Server, Step, caller_scenario, dtmf_plans, free_port, repo, sipp};
use kefu::store::Store;
use kefu::store::crypto::Keyring;
use serde_json::{Value, json};
use sqlx::Row;

/// Many customers, all from this test's one address: budgets lifted.
fn config() -> String {
    format!(
        "kb = \"{}\"\nconversations_per_minute = 100000\nmessages_per_minute = 100000\n",
        repo().join("dialplans/kb").display()
    )
}

fn start() -> Server {
    let config = config();
    Server::start_with(Some(&dtmf_plans()), &config)
}

async fn open_store(data: &Path) -> Store {
    open_store_at(data, &kefu::store::sqlite_url(&data.join("kefu.db"))).await
}

/// The store at `url`, opened with the keyring in `data`.
async fn open_store_at(data: &Path, url: &str) -> Store {
    let keys = Keyring::load(&data.join("kefu.keys")).unwrap();
    Store::open(url, Some(keys)).await.unwrap()
}

/// (conversation, customer text, reply text) of every message that got a reply.
type Acked = Arc<Mutex<Vec<(String, String, String)>>>;

/// Chat clients posting messages until `stop`, or `each` messages each; each
/// acknowledged message is noted as it comes, and a client stops at its first
/// refusal. The handle ends when every client has.
fn chat_load(
    http: std::net::SocketAddr,
    clients: usize,
    stop: Arc<AtomicBool>,
    each: Option<usize>,
) -> (Acked, tokio::task::JoinHandle<()>) {
    let acked: Acked = Arc::default();
    let tally = acked.clone();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut tasks = Vec::new();
    for k in 0..clients {
        let (client, acked, stop) = (client.clone(), acked.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let Ok(r) = client
                .post(format!("http://{http}/api/chat/conversations"))
                .json(&json!({"lang": "en"}))
                .send()
                .await
            else {
                return;
            };
            let Ok(v) = r.json::<Value>().await else {
                return;
            };
            let conv = v["conversation"].as_str().unwrap().to_string();
            let key = v["key"].as_str().unwrap().to_string();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) && each.is_none_or(|each| n < each) {
                n += 1;
                let text = format!("client {k} message {n}: where is my order 4471{n}?");
                let r = client
                    .post(format!(
                        "http://{http}/api/chat/conversations/{conv}/messages"
                    ))
                    .header("x-kefu-key", &key)
                    .json(&json!({ "text": text }))
                    .send()
                    .await;
                let Ok(r) = r else { return };
                if r.status() != 200 {
                    return;
                }
                let Ok(reply) = r.json::<Value>().await else {
                    return;
                };
                let reply = reply["text"].as_str().unwrap_or_default().to_string();
                acked.lock().unwrap().push((conv.clone(), text, reply));
            }
        }));
    }
    let all = tokio::spawn(async move {
        for t in tasks {
            let _ = t.await;
        }
    });
    (tally, all)
}

/// Waits (at most 60 s) until `n` messages have been acknowledged.
async fn acknowledged(acked: &Acked, n: usize) {
    for _ in 0..1200 {
        if acked.lock().unwrap().len() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "only {} of {n} messages got replies",
        acked.lock().unwrap().len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_replied_message_survives_kill_9() {
    let server = start();
    let stop = Arc::new(AtomicBool::new(false));
    let (acked, load) = chat_load(server.http, 8, stop.clone(), None);
    acknowledged(&acked, 40).await;
    // No warning: SIGKILL in the middle of the load.
    let status = Command::new("kill")
        .args(["-9", &server.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    load.await.unwrap();
    stop.store(true, Ordering::Relaxed);
    let acked = acked.lock().unwrap().clone();
    let store = open_store(&server.data()).await;
    assert_stored(&store, &acked).await;
    eprintln!(
        "{} acknowledged messages, all stored after kill -9",
        acked.len()
    );
    store.close().await;
}

/// Every acknowledged message is in `store`, followed by its reply.
async fn assert_stored(store: &Store, acked: &[(String, String, String)]) {
    let mut turns: BTreeMap<String, Vec<kefu::store::StoredTurn>> = BTreeMap::new();
    for (conv, text, reply) in acked {
        if !turns.contains_key(conv) {
            turns.insert(conv.clone(), store.turns(conv).await.unwrap());
        }
        let t = &turns[conv];
        let i = t
            .iter()
            .position(|t| t.speaker == "customer" && &t.text == text)
            .unwrap_or_else(|| panic!("acknowledged message {text:?} is not in the store"));
        // An empty reply: the conversation is with a person now, nothing was said.
        if !reply.is_empty() {
            assert_eq!(t.get(i + 1).map(|t| t.text.as_str()), Some(reply.as_str()));
            assert_eq!(t[i + 1].speaker, "bot");
        }
    }
}

/// The server's group commit on PostgreSQL: many chats writing at once (turns with
/// and without a confidence in one batch) are all answered and all stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stores_every_turn_of_concurrent_chats() {
    let config = config();
    let server =
        tokio::task::block_in_place(|| Server::start_on_postgres(Some(&dtmf_plans()), &config));
    const CLIENTS: usize = 16;
    const EACH: usize = 15;
    let stop = Arc::new(AtomicBool::new(false));
    let (acked, load) = chat_load(server.http, CLIENTS, stop, Some(EACH));
    load.await.unwrap();
    let acked = acked.lock().unwrap().clone();
    let refused: Vec<String> = server
        .logs()
        .into_iter()
        .filter(|l| l.contains("store"))
        .filter(|l| l.contains("\"WARN\"") || l.contains("\"ERROR\""))
        .collect();
    assert!(refused.is_empty(), "store trouble: {refused:#?}");
    assert_eq!(acked.len(), CLIENTS * EACH, "every message is answered");
    let store = open_store_at(&server.data(), &server.database_url()).await;
    assert_stored(&store, &acked).await;
    store.close().await;
}

/// Every turn of every conversation, opened.
async fn all_turns(store: &Store) -> BTreeMap<String, Vec<kefu::store::StoredTurn>> {
    let ids: Vec<String> = sqlx::query("SELECT id FROM conversations")
        .fetch_all(store.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| r.try_get(0).unwrap())
        .collect();
    let mut out = BTreeMap::new();
    for id in ids {
        out.insert(id.clone(), store.turns(&id).await.unwrap());
    }
    out
}

/// `kefu restore BACKUP --data FRESH`, with the server's keyring copied there.
fn restore(server: &Server, backup: &Path, fresh: &Path) -> std::process::Output {
    std::fs::create_dir_all(fresh).unwrap();
    std::fs::copy(server.data().join("kefu.keys"), fresh.join("kefu.keys")).unwrap();
    Command::new(env!("CARGO_BIN_EXE_kefu"))
        .arg("restore")
        .arg(backup)
        .arg("--data")
        .arg(fresh)
        .output()
        .unwrap()
}

fn restore_into(server: &Server, backup: &Path, fresh: &Path) {
    let out = restore(server, backup, fresh);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_while_serving_restores_the_same_records() {
    let server = start();
    let dir = tempfile::tempdir().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (acked, load) = chat_load(server.http, 4, stop.clone(), None);
    acknowledged(&acked, 10).await;
    // A backup in the middle of the load.
    let during = dir.path().join("during.db");
    let (ok, _, err) =
        tokio::task::block_in_place(|| server.kefu(&["backup", during.to_str().unwrap()]));
    assert!(ok, "{err}");
    // Messages after the backup, which it must not hold.
    let taken = acked.lock().unwrap().len();
    acknowledged(&acked, taken + 10).await;
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    let acked = acked.lock().unwrap().len();
    // And one after it, with the server still up.
    let after = dir.path().join("after.db");
    let (ok, _, err) =
        tokio::task::block_in_place(|| server.kefu(&["backup", after.to_str().unwrap()]));
    assert!(ok, "{err}");
    let (ok, _, err) =
        tokio::task::block_in_place(|| server.kefu(&["backup", after.to_str().unwrap()]));
    assert!(
        !ok && err.contains("exists"),
        "a backup never overwrites: {err}"
    );

    let live = open_store(&server.data()).await;
    let live_turns = all_turns(&live).await;

    // The backup taken during the load is a consistent prefix of the live records.
    let fresh = dir.path().join("restored-during");
    tokio::task::block_in_place(|| restore_into(&server, &during, &fresh));
    let restored = open_store(&fresh).await;
    let during_turns = all_turns(&restored).await;
    assert!(!during_turns.is_empty());
    for (conv, turns) in &during_turns {
        let l = &live_turns[conv];
        assert_eq!(&l[..turns.len()], &turns[..], "conversation {conv}");
    }
    let count = |t: &BTreeMap<String, Vec<kefu::store::StoredTurn>>| -> usize {
        t.values().map(Vec::len).sum()
    };
    // Every acknowledged message is live; the mid-load backup has fewer turns
    // (10 messages were acknowledged after it).
    assert!(count(&live_turns) >= acked, "{acked} acknowledged");
    assert!(count(&during_turns) < count(&live_turns));
    restored.close().await;

    // The one taken after the load holds exactly the live records.
    let fresh = dir.path().join("restored-after");
    tokio::task::block_in_place(|| restore_into(&server, &after, &fresh));
    let restored = open_store(&fresh).await;
    assert_eq!(all_turns(&restored).await, live_turns);
    // The backups were noted in the audit log.
    let log = restored.audit_log().await.unwrap();
    assert!(log.iter().any(|e| e.action == "backup"), "{log:?}");
    restored.close().await;
    live.close().await;
    // Restoring over an existing database needs --force.
    let out = tokio::task::block_in_place(|| restore(&server, &after, &fresh));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--force"));
}

#[test]
fn a_call_is_stored_sealed() {
    let server = Server::start(Some(&dtmf_plans()));
    let steps = [
        Step::Pause(1500),
        Step::Rfc4733('2'),
        Step::Pause(9500),
        Step::Rfc4733('#'),
    ];
    let scenario = caller_scenario(server.dir.path(), "stored", true, &steps);
    let (ok, out) = sipp(&server, &scenario, "kefu-en", &[]);
    assert!(ok, "SIPp failed:\n{out}");
    let r = common::only_record(&server);
    let stored = server.stored_call(r["call_id"].as_str().unwrap());
    assert_eq!(stored["digits"], "2#");
    assert!(stored["from"].as_str().unwrap().contains("13800138000"));
    // The log (not encrypted) has neither the number nor the keys.
    let logs = server.logs().join("\n");
    assert!(
        !logs.contains("13800138000"),
        "the caller's number is in the log"
    );
    assert!(!logs.contains("\"2#\""), "the keys are in the log");
    // Found by the caller's number (its keyed hash), never stored in plaintext.
    let from = stored["from"].as_str().unwrap().to_string();
    let data = server.data();
    let found = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let store = open_store(&data).await;
        let found = store.calls_from(&from).await.unwrap();
        store.close().await;
        found
    });
    assert_eq!(found, vec![r["call_id"].as_str().unwrap().to_string()]);
    // The caller's number is nowhere in the database files in plaintext.
    let mut raw = Vec::new();
    for f in ["kefu.db", "kefu.db-wal"] {
        raw.extend(std::fs::read(server.data().join(f)).unwrap_or_default());
    }
    assert!(raw.len() > 4096);
    assert!(!raw.windows(11).any(|w| w == b"13800138000"));
}

#[test]
fn encryption_without_a_key_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kefu"))
        .args(["serve", "--sip", &format!("127.0.0.1:{}", free_port())])
        .args(["--http", &format!("127.0.0.1:{}", free_port())])
        .arg("--data")
        .arg(dir.path().join("data"))
        .arg("--dialplans")
        .arg(dtmf_plans())
        .arg("--audio")
        .arg(repo().join("audio"))
        .env_remove("KEFU_KEYS")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("kefu keys init"), "{err}");
    assert!(err.contains("encryption = false"), "{err}");
}

/// The key commands work on a fresh data directory and each is in the audit log.
#[test]
fn key_commands_are_audited() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let kefu = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_kefu"))
            .args(args)
            .arg("--data")
            .arg(&data)
            .env_remove("KEFU_KEYS")
            .env("USER", "ops")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "kefu {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    std::fs::create_dir_all(&data).unwrap();
    kefu(&["keys", "init"]);
    kefu(&["keys", "add"]);
    kefu(&["keys", "rotate"]);
    let log = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let store = open_store(&data).await;
        let log = store.audit_log().await.unwrap();
        store.close().await;
        log
    });
    let actions: Vec<(&str, &str, &str)> = log
        .iter()
        .map(|e| (e.actor.as_str(), e.action.as_str(), e.target.as_str()))
        .collect();
    assert_eq!(
        actions,
        [
            ("cli:ops", "keys.init", "key 1"),
            ("cli:ops", "keys.add", "key 2"),
            ("cli:ops", "keys.rotate", "key 2"),
        ]
    );
}
