//! The store on real databases: SQLite files and PostgreSQL (a test that
//! cannot reach PostgreSQL fails, naming the URL it tried: set KEFU_TEST_POSTGRES to
//! point elsewhere). Customer data must never be in the database in plaintext, key
//! rotation must keep every value readable, and the audit log must refuse changes.

mod common;

use chrono::Utc;
use common::pg::{Db, postgres_db, sqlite_db};
use kefu::dialogue::conversations::{Channel, Identity, IdentityKind};
use kefu::dialogue::engine::{Speaker, Turn};
use kefu::store::crypto::Keyring;
use kefu::store::{Backend, Store, TurnsWrite};

const PHONE: &str = "+8613812345678";
const SENTENCE: &str = "My order 88231 never arrived at Lotus Road 12";
const SENTENCE_ZH: &str = "我的订单没有送到莲花路十二号";

fn ring(ids: &[u16]) -> (String, Keyring) {
    let text: String = ids.iter().map(|&i| Keyring::new_line(i)).collect();
    let ring = Keyring::parse(&text, "test").unwrap();
    (text, ring)
}

fn turn(speaker: Speaker, text: &str) -> Turn {
    Turn {
        at: Utc::now(),
        speaker,
        text: text.into(),
        intent: None,
        confidence: None,
    }
}

/// Stores a customer known by PHONE and a conversation with both sentences.
async fn write_conversation(store: &Store, id: &str) -> String {
    let customer = store
        .customer_for(&Identity::new(IdentityKind::Phone, PHONE))
        .await
        .unwrap();
    let now = Utc::now();
    store
        .record_turns(TurnsWrite {
            conversation: id.into(),
            channel: Channel::Web,
            customer: customer.clone(),
            call_id: None,
            started: now,
            updated: now,
            first_seq: 0,
            turns: vec![
                turn(
                    Speaker::Customer,
                    &format!("{SENTENCE}, call me on {PHONE}"),
                ),
                turn(Speaker::Bot, SENTENCE_ZH),
            ],
            latency_us: Some(1234),
            state: None,
        })
        .await
        .unwrap();
    customer
}

/// Every byte the database holds for kefu's tables, as text: SQLite's files, or
/// PostgreSQL's rows rendered (bytea as hex).
async fn raw_bytes(db: &Db, store: &Store) -> Vec<u8> {
    match store.backend() {
        Backend::Sqlite => {
            let path = kefu::store::backup::sqlite_path(&db.url).unwrap();
            let mut all = Vec::new();
            for ext in ["db", "db-wal"] {
                if let Ok(b) = std::fs::read(path.with_extension(ext)) {
                    all.extend(b);
                }
            }
            all
        }
        Backend::Postgres => {
            use sqlx::Row;
            let mut all = Vec::new();
            for table in [
                "customers",
                "identities",
                "conversations",
                "turns",
                "calls",
                "agents",
                "api_tokens",
                "sessions",
            ] {
                let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT t::text FROM {table} t"
                )))
                .fetch_all(store.pool())
                .await
                .unwrap();
                for r in rows {
                    let s: String = r.try_get(0).unwrap();
                    all.extend(s.into_bytes());
                }
            }
            all
        }
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// `needle` in plaintext, or (for PostgreSQL's rendering) as hex.
fn leaked(hay: &[u8], needle: &str) -> bool {
    contains(hay, needle.as_bytes()) || contains(hay, hex::encode(needle).as_bytes())
}

async fn sealed_at_rest(db: Db) {
    let (_, keys) = ring(&[1]);
    let store = Store::open(&db.url, Some(keys)).await.unwrap();
    let customer = write_conversation(&store, "conv-1").await;
    let raw = raw_bytes(&db, &store).await;
    assert!(raw.len() > 500, "read {} bytes of database", raw.len());
    for secret in [
        PHONE,
        "13812345678",
        SENTENCE,
        "88231",
        "Lotus Road",
        SENTENCE_ZH,
        "莲花路",
    ] {
        assert!(
            !leaked(&raw, secret),
            "{secret:?} is in the database in plaintext"
        );
    }
    // The same data is readable through the store, and findable by phone number.
    let turns = store.turns("conv-1").await.unwrap();
    assert_eq!(turns.len(), 2);
    assert_eq!(turns[0].text, format!("{SENTENCE}, call me on {PHONE}"));
    assert_eq!(turns[1].text, SENTENCE_ZH);
    assert_eq!(turns[1].latency_us, Some(1234));
    let found = store
        .find_customer(&Identity::new(IdentityKind::Phone, PHONE))
        .await
        .unwrap();
    assert_eq!(found.as_deref(), Some(customer.as_str()));
    assert_eq!(
        store.identities_of(&customer).await.unwrap(),
        vec![("phone".to_string(), PHONE.to_string())]
    );
    // With encryption off the control case does show the text: the scan can see it.
    let db2 = if store.backend() == Backend::Sqlite {
        sqlite_db().await
    } else {
        postgres_db().await
    };
    let plain = Store::open(&db2.url, None).await.unwrap();
    write_conversation(&plain, "conv-plain").await;
    assert!(leaked(&raw_bytes(&db2, &plain).await, SENTENCE_ZH));
    plain.close().await;
    store.close().await;
}

#[tokio::test]
async fn sqlite_keeps_no_customer_data_in_plaintext() {
    sealed_at_rest(sqlite_db().await).await;
}

#[tokio::test]
async fn postgres_keeps_no_customer_data_in_plaintext() {
    sealed_at_rest(postgres_db().await).await;
}

async fn rotation(db: Db) {
    let (text1, keys1) = ring(&[1]);
    let store = Store::open(&db.url, Some(keys1)).await.unwrap();
    for n in 0..7 {
        write_conversation(&store, &format!("old-{n}")).await;
    }
    // A ticket and an old call, both under key 1.
    let customer = store
        .customer_for(&Identity::new(IdentityKind::Phone, PHONE))
        .await
        .unwrap();
    store
        .open_ticket(
            &customer,
            None,
            Some("call-old"),
            "general",
            "refund for 88231",
        )
        .await
        .unwrap();
    assert!(
        store
            .add_draft("drafts/draft_x.toml", "examples = [\"refund for 88231?\"]")
            .await
            .unwrap()
    );
    let long_ago = Utc::now() - chrono::Duration::days(400);
    store
        .write(kefu::store::Write::Call(Box::new(
            kefu::store::writer::CallWrite {
                call_id: "call-old".into(),
                caller: PHONE.into(),
                callee: "4000".into(),
                customer: Some(customer.clone()),
                trunk: None,
                transport: "udp".into(),
                dialplan: "demo".into(),
                dialplan_version: "v1".into(),
                invite: Some(long_ago),
                answer: Some(long_ago),
                end: Some(long_ago),
                path: vec!["main".into()],
                end_reason: "caller-hangup".into(),
                keys: 0,
                utterances: 0,
                asr_confidence: "[]".into(),
                transfer: None,
                detail: "{}".into(),
                conversation: None,
            },
        )))
        .await
        .unwrap();
    store.close().await;
    // Key 2 joins: new rows use it, old rows still open.
    let text12 = format!("{text1}{}", Keyring::new_line(2));
    let store = Store::open(&db.url, Some(Keyring::parse(&text12, "t").unwrap()))
        .await
        .unwrap();
    assert_eq!(store.sealer().key_id(), 2);
    write_conversation(&store, "new-0").await;
    assert_eq!(store.turns("old-3").await.unwrap()[1].text, SENTENCE_ZH);
    // Writes under key 2 that touch one column of an old row (a note on the ticket,
    // retention purging the call's detail) must leave no column under key 1.
    assert_eq!(
        store.note_tickets("call-old", "called back").await.unwrap(),
        1
    );
    assert_eq!(
        kefu::store::retention::purge(&store, 365).await.unwrap().1,
        1
    );
    let mut progress = Vec::new();
    let done = kefu::store::rotate::rotate(&store, 3, |t, n| progress.push((t.to_string(), n)))
        .await
        .unwrap();
    // 7 conversations × 2 turns, the one identity and the draft were under key 1
    // (the ticket and the call were re-sealed whole when they were written).
    assert_eq!(done.total(), 7 * 2 + 1 + 1 + 1, "{done:?}");
    assert_eq!(done.reindexed, 1, "the ticket's search index, under key 2");
    assert!(progress.contains(&("turns".into(), 3)), "{progress:?}");
    // Again: nothing left to do (a stopped rotation resumes the same way).
    assert_eq!(
        kefu::store::rotate::rotate(&store, 3, |_, _| {})
            .await
            .unwrap()
            .total(),
        0
    );
    store.close().await;
    // Key 1 can now be dropped: key 2 alone opens every value and finds the customer.
    let key2_only: String = text12.lines().nth(1).unwrap().to_string();
    let store = Store::open(&db.url, Some(Keyring::parse(&key2_only, "t").unwrap()))
        .await
        .unwrap();
    for n in 0..7 {
        let turns = store.turns(&format!("old-{n}")).await.unwrap();
        assert_eq!(turns[0].text, format!("{SENTENCE}, call me on {PHONE}"));
    }
    // The ticket is still found by its words with key 1 gone.
    let found = store
        .tickets(&kefu::store::ticket_list::Filter {
            text: "refund 88231".into(),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(found.tickets.len(), 1, "{found:?}");
    let customer = store
        .find_customer(&Identity::new(IdentityKind::Phone, PHONE))
        .await
        .unwrap()
        .expect("found by the hash under key 2");
    assert_eq!(store.identities_of(&customer).await.unwrap()[0].1, PHONE);
    let all = store.export_customer(&customer).await.unwrap().to_string();
    assert!(
        all.contains("refund for 88231") && all.contains("called back"),
        "{all}"
    );
    assert_eq!(store.calls_from(PHONE).await.unwrap(), ["call-old"]);
    assert_eq!(
        store.drafts().await.unwrap()[0].1,
        "examples = [\"refund for 88231?\"]"
    );
    store.close().await;
}

#[tokio::test]
async fn sqlite_key_rotation_keeps_every_value_readable() {
    rotation(sqlite_db().await).await;
}

#[tokio::test]
async fn postgres_key_rotation_keeps_every_value_readable() {
    rotation(postgres_db().await).await;
}

async fn append_only(db: Db) {
    let store = Store::open(&db.url, None).await.unwrap();
    store
        .audit("admin", "kb.reload", "dialplans/kb", "12 intents")
        .await
        .unwrap();
    let log = store.audit_log().await.unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(
        (log[0].actor.as_str(), log[0].action.as_str()),
        ("admin", "kb.reload")
    );
    for sql in ["UPDATE audit_log SET actor = 'x'", "DELETE FROM audit_log"] {
        let e = sqlx::query(sql)
            .execute(store.pool())
            .await
            .expect_err("the audit log refuses changes");
        assert!(e.to_string().contains("append-only"), "{e}");
    }
    assert_eq!(store.audit_log().await.unwrap(), log);
    store.close().await;
}

#[tokio::test]
async fn sqlite_audit_log_is_append_only() {
    append_only(sqlite_db().await).await;
}

#[tokio::test]
async fn postgres_audit_log_is_append_only() {
    append_only(postgres_db().await).await;
}

async fn linking(db: Db) {
    let (_, keys) = ring(&[1]);
    let store = Store::open(&db.url, Some(keys)).await.unwrap();
    let web = Identity::new(IdentityKind::Web, "visitor-9");
    let phone = Identity::new(IdentityKind::Phone, PHONE);
    let a = store.customer_for(&web).await.unwrap();
    let b = write_conversation(&store, "by-phone").await;
    assert_ne!(a, b);
    // Linking the phone to the web customer brings its conversation along.
    store.link(&a, &phone).await.unwrap();
    assert_eq!(
        store.find_customer(&phone).await.unwrap().as_deref(),
        Some(a.as_str())
    );
    assert_eq!(
        store.conversations_of(&a).await.unwrap(),
        vec!["by-phone".to_string()]
    );
    assert_eq!(store.identities_of(&a).await.unwrap().len(), 2);
    assert!(store.identities_of(&b).await.unwrap().is_empty());
    store.close().await;
}

#[tokio::test]
async fn sqlite_links_customers() {
    linking(sqlite_db().await).await;
}

#[tokio::test]
async fn postgres_links_customers() {
    linking(postgres_db().await).await;
}

async fn many_writers(db: Db) {
    let (_, keys) = ring(&[1]);
    let store = Store::open(&db.url, Some(keys)).await.unwrap();
    let mut tasks = Vec::new();
    for n in 0..50 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            write_conversation(&s, &format!("c-{n}")).await;
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // Group commit loses nothing and keeps one customer for one phone number.
    assert_eq!(store.turn_count().await.unwrap(), 100);
    let customer = store
        .find_customer(&Identity::new(IdentityKind::Phone, PHONE))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(store.conversations_of(&customer).await.unwrap().len(), 50);
    store.close().await;
}

#[tokio::test]
async fn sqlite_concurrent_writes_all_land() {
    many_writers(sqlite_db().await).await;
}

#[tokio::test]
async fn postgres_concurrent_writes_all_land() {
    many_writers(postgres_db().await).await;
}

#[tokio::test]
async fn postgres_backup_and_restore_round_trip() {
    let db = postgres_db().await;
    let (text, keys) = ring(&[1]);
    let store = Store::open(&db.url, Some(Keyring::parse(&text, "t").unwrap()))
        .await
        .unwrap();
    write_conversation(&store, "pg-1").await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("kefu.dump");
    kefu::store::backup::backup(&store, &db.url, &out)
        .await
        .unwrap();
    store.close().await;
    let fresh = postgres_db().await;
    kefu::store::backup::restore(&out, &fresh.url, false)
        .await
        .unwrap();
    let restored = Store::open(&fresh.url, Some(keys)).await.unwrap();
    assert_eq!(restored.turns("pg-1").await.unwrap()[1].text, SENTENCE_ZH);
    restored.close().await;
}

async fn export_and_erase(db: Db) {
    let (_, keys) = ring(&[1]);
    let store = Store::open(&db.url, Some(keys)).await.unwrap();
    let customer = write_conversation(&store, "mine").await;
    let other = store
        .customer_for(&Identity::new(IdentityKind::Web, "someone-else"))
        .await
        .unwrap();
    let export = store.export_customer(&customer).await.unwrap();
    assert_eq!(export["identities"][0]["value"], PHONE);
    assert_eq!(export["conversations"][0]["turns"][1]["text"], SENTENCE_ZH);
    let n = store.erase_customer(&customer, "admin").await.unwrap();
    assert_eq!(
        n,
        2 + 1 + 1 + 1,
        "2 turns, the conversation, the identity, the customer"
    );
    let phone = Identity::new(IdentityKind::Phone, PHONE);
    assert_eq!(store.find_customer(&phone).await.unwrap(), None);
    assert!(store.turns("mine").await.unwrap().is_empty());
    // Nobody else's data goes with it; the audit log says who erased whom.
    let web = Identity::new(IdentityKind::Web, "someone-else");
    assert_eq!(store.find_customer(&web).await.unwrap(), Some(other));
    let log = store.audit_log().await.unwrap();
    assert!(
        log.iter()
            .any(|e| e.action == "customer.erase" && e.target == customer && e.actor == "admin"),
        "{log:?}"
    );
    store.close().await;
}

#[tokio::test]
async fn sqlite_exports_and_erases_a_customer() {
    export_and_erase(sqlite_db().await).await;
}

#[tokio::test]
async fn postgres_exports_and_erases_a_customer() {
    export_and_erase(postgres_db().await).await;
}

#[tokio::test]
async fn retention_deletes_old_turns_only() {
    let db = sqlite_db().await;
    let store = Store::open(&db.url, None).await.unwrap();
    let customer = write_conversation(&store, "recent").await;
    let old = Utc::now() - chrono::Duration::days(40);
    let mut t = turn(Speaker::Customer, "an old message");
    t.at = old;
    store
        .record_turns(TurnsWrite {
            conversation: "old".into(),
            channel: Channel::Sms,
            customer,
            call_id: None,
            started: old,
            updated: old,
            first_seq: 0,
            turns: vec![t],
            latency_us: None,
            state: None,
        })
        .await
        .unwrap();
    // A voicemail from long ago, and one from today.
    let old_voicemail = store
        .save_recording("c-old", None, "voicemail", 1000, b"RIFF-old")
        .await
        .unwrap();
    let new_voicemail = store
        .save_recording("c-new", None, "voicemail", 1000, b"RIFF-new")
        .await
        .unwrap();
    sqlx::query("UPDATE recordings SET created_ms = 0 WHERE id = $1")
        .bind(old_voicemail.as_str())
        .execute(store.pool())
        .await
        .unwrap();
    let (turns, _) = kefu::store::retention::purge(&store, 30).await.unwrap();
    assert_eq!(turns, 1);
    assert!(store.turns("old").await.unwrap().is_empty());
    assert!(store.recording(&old_voicemail).await.unwrap().is_none());
    assert!(store.recording(&new_voicemail).await.unwrap().is_some());
    assert_eq!(store.turns("recent").await.unwrap().len(), 2);
    store.close().await;
}

/// Users, tokens and sessions, and the reports' reads, on each database.
async fn access_and_reports(db: Db) {
    use kefu::store::access::{Audit, UserChange};
    let (_, keys) = ring(&[1]);
    let store = Store::open(&db.url, Some(keys)).await.unwrap();
    let audit = |action: &'static str, target: &str| Audit {
        actor: "user:root".into(),
        action,
        target: target.into(),
        detail: String::new(),
    };
    let user = store
        .add_user("li", "agent", "$argon2id$stub", audit("user.add", "li"))
        .await
        .unwrap()
        .unwrap();
    assert!(
        store
            .add_user("li", "admin", "$argon2id$x", audit("user.add", "li"))
            .await
            .unwrap()
            .is_none(),
        "names are unique"
    );
    let (found, hash) = store.user_with_hash("li").await.unwrap().unwrap();
    assert_eq!((found, hash.as_str()), (user.clone(), "$argon2id$stub"));

    let expires = Utc::now() + chrono::Duration::hours(1);
    store
        .add_session(
            "cookie-1",
            &user,
            "csrf-1",
            expires,
            audit("session.login", "li"),
        )
        .await
        .unwrap();
    let s = store.session("cookie-1").await.unwrap().unwrap();
    assert_eq!((s.user.name.as_str(), s.csrf.as_str()), ("li", "csrf-1"));
    assert!(store.session("cookie-2").await.unwrap().is_none());
    // An expired session is not found.
    store
        .add_session(
            "old",
            &user,
            "c",
            Utc::now() - chrono::Duration::seconds(1),
            audit("session.login", "li"),
        )
        .await
        .unwrap();
    assert!(store.session("old").await.unwrap().is_none());
    // A role change ends the user's sessions.
    let changed = store
        .change_user(
            "li",
            &UserChange {
                role: Some("supervisor".into()),
                ..UserChange::default()
            },
            audit("user.change", "li"),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(changed.role, "supervisor");
    assert!(store.session("cookie-1").await.unwrap().is_none());
    assert!(
        store
            .change_user(
                "nobody",
                &UserChange::default(),
                audit("user.change", "nobody")
            )
            .await
            .unwrap()
            .is_none()
    );

    let t = store
        .add_token(
            "kefu_secret",
            "app",
            "integrator",
            chrono::Utc::now() + chrono::Duration::days(90),
            audit("token.add", "app"),
        )
        .await
        .unwrap();
    assert_eq!(store.token("kefu_secret").await.unwrap().unwrap().id, t.id);
    assert!(
        store
            .revoke_token(&t.id, audit("token.revoke", &t.id))
            .await
            .unwrap()
    );
    assert!(
        !store
            .revoke_token(&t.id, audit("token.revoke", &t.id))
            .await
            .unwrap()
    );
    assert!(store.token("kefu_secret").await.unwrap().is_none());
    let tokens = store.tokens().await.unwrap();
    assert!(tokens.iter().any(|x| x.id == t.id && x.revoked.is_some()));

    // The reports' reads.
    write_conversation(&store, "conv-r").await;
    let s = store
        .summary(Utc::now() - chrono::Duration::days(1))
        .await
        .unwrap();
    assert_eq!(s.conversations, [("web".to_string(), 1)]);
    assert_eq!(
        s.turns,
        [("bot".to_string(), 1), ("customer".to_string(), 1)]
    );
    assert_eq!(s.mean_reply_ms, Some(1.234));
    let page = store.audit_page(0, 3).await.unwrap();
    assert_eq!(page.len(), 3);
    let rest = store.audit_page(page[2].id, 100).await.unwrap();
    assert_eq!(
        rest.iter()
            .map(|r| r.entry.action.as_str())
            .collect::<Vec<_>>(),
        ["user.change", "token.add", "token.revoke"]
    );
    // An expired token no longer works.
    store
        .add_token(
            "kefu_old",
            "old app",
            "integrator",
            chrono::Utc::now() - chrono::Duration::seconds(1),
            audit("token.add", "old app"),
        )
        .await
        .unwrap();
    assert!(store.token("kefu_old").await.unwrap().is_none());
    assert!(store.tickets_of(&user.id).await.unwrap().is_empty());

    // Agents: their phone's HA1s are sealed and come back opened.
    let agent = kefu::store::agents::NewAgent {
        name: "Wang Fang".into(),
        extension: "1001".into(),
        queues: vec!["general".into(), "billing".into()],
        skills: vec!["zh".into()],
        user_id: Some(user.id.clone()),
        contact_uri: None,
        ha1_sha256: "a".repeat(64),
        ha1_md5: "b".repeat(32),
    };
    store
        .add_agent(&agent, audit("agent.add", "1001"))
        .await
        .unwrap();
    assert!(
        store
            .add_agent(&agent, audit("agent.add", "1001"))
            .await
            .is_err()
    );
    let (a, ha1) = store.agent_secret("1001", "sha256").await.unwrap().unwrap();
    assert_eq!((a.queues.len(), ha1.len()), (2, 64));
    assert_eq!(
        store.agent_secret("1001", "md5").await.unwrap().unwrap().1,
        "b".repeat(32)
    );
    assert!(store.agent_secret("1002", "md5").await.unwrap().is_none());
    assert_eq!(
        store.agents().await.unwrap()[0].user_id.as_deref(),
        Some(user.id.as_str())
    );
    let bytes = raw_bytes(&db, &store).await;
    assert!(
        !leaked(&bytes, &"a".repeat(64)),
        "an HA1 is stored in plaintext"
    );
    store.close().await;
}

#[tokio::test]
async fn sqlite_users_tokens_sessions_and_reports() {
    access_and_reports(sqlite_db().await).await;
}

#[tokio::test]
async fn postgres_users_tokens_sessions_and_reports() {
    access_and_reports(postgres_db().await).await;
}

/// A `kefu` command and the server write the same SQLite file at once (two
/// processes, here two stores): transactions that read before they write must not
/// fail with "database is locked".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_on_one_sqlite_file() {
    use kefu::store::access::Audit;
    let db = sqlite_db().await;
    let (text, keys) = ring(&[1]);
    let server = Store::open(&db.url, Some(keys)).await.unwrap();
    let same = Keyring::parse(&text, "test").unwrap();
    let command = Store::open(&db.url, Some(same)).await.unwrap();
    let audit = |target: String| Audit {
        actor: "cli:test".into(),
        action: "user.add",
        target,
        detail: String::new(),
    };
    let users = async {
        for i in 0..60 {
            command
                .add_user(
                    &format!("u{i}"),
                    "agent",
                    "$argon2id$x",
                    audit(format!("u{i}")),
                )
                .await
                .unwrap()
                .unwrap();
        }
    };
    let turns = async {
        for i in 0..60 {
            write_conversation(&server, &format!("conv-{i}")).await;
        }
    };
    tokio::join!(users, turns);
    assert_eq!(server.users().await.unwrap().len(), 60);
    assert_eq!(server.turn_count().await.unwrap(), 120);
    server.close().await;
    command.close().await;
}

/// (id, channel, day, customer's words, intent, confidence, reply µs, person?)
type Seed<'a> = (
    &'a str,
    Channel,
    u32,
    &'a str,
    Option<&'a str>,
    Option<f32>,
    i64,
    &'a str,
);

/// (id, day, seconds long, keys, utterances, recognizer confidence, transfer)
type SeedCall<'a> = (&'a str, u32, i64, i64, i64, &'a str, Option<&'a str>);
/// (item, queue, channel, reason, agent, day, enqueued, answered, ended, outcome)
type SeedStay<'a> = (
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    Option<&'a str>,
    u32,
    i64,
    Option<i64>,
    i64,
    &'static str,
);

/// The supervisors' report over a seeded store: exact automation rates, first
/// response and resolution percentiles, hand-over reasons, queues and agents,
/// keys or speech, recognizer confidence, hot topics and their trend,
/// unanswered groups, a channel filter; and the Parquet export read back, whose
/// automation rate is the report's.
async fn analytics(db: Db) {
    use chrono::{Duration, NaiveDate, TimeZone};
    use kefu::agents::center::Stay;
    use kefu::store::writer::CallWrite;
    let (_, keys) = ring(&[1]);
    let store = Store::open(&db.url, Some(keys)).await.unwrap();
    let at = |day: u32, hour: u32| Utc.with_ymd_and_hms(2026, 11, day, hour, 0, 0).unwrap();
    let said =
        |speaker: Speaker, text: &str, when, intent: Option<&str>, confidence: Option<f32>| Turn {
            at: when,
            speaker,
            text: text.into(),
            intent: intent.map(str::to_string),
            confidence,
        };
    let seeded: [Seed; 5] = [
        (
            "w1",
            Channel::Web,
            20,
            "Do you sell kayaks?",
            None,
            None,
            2000,
            "",
        ),
        (
            "w2",
            Channel::Web,
            20,
            "where is my order",
            Some("order_status"),
            Some(0.9),
            4000,
            "agent",
        ),
        (
            "w3",
            Channel::Web,
            21,
            "do you sell KAYAKS",
            None,
            None,
            6000,
            "",
        ),
        (
            "s1",
            Channel::Sms,
            21,
            "opening hours?",
            Some("opening_hours"),
            Some(0.95),
            8000,
            "ticket",
        ),
        (
            "p1",
            Channel::Phone,
            20,
            "hours",
            Some("opening_hours"),
            Some(0.4),
            10000,
            "",
        ),
    ];
    for (id, channel, day, text, intent, confidence, latency, person) in seeded {
        let customer = store
            .customer_for(&Identity::new(IdentityKind::Web, format!("v-{id}")))
            .await
            .unwrap();
        let mut turns = vec![
            said(Speaker::Customer, text, at(day, 9), intent, confidence),
            said(Speaker::Bot, "an answer", at(day, 9), None, None),
        ];
        if person == "agent" {
            turns.insert(
                1,
                said(
                    Speaker::Agent,
                    "Let me check.",
                    at(day, 9) + Duration::seconds(45),
                    None,
                    None,
                ),
            );
        }
        store
            .record_turns(TurnsWrite {
                conversation: id.into(),
                channel,
                customer: customer.clone(),
                call_id: None,
                started: at(day, 9),
                updated: at(day, 9) + Duration::seconds(60),
                first_seq: 0,
                turns,
                latency_us: Some(latency),
                state: None,
            })
            .await
            .unwrap();
        if person == "ticket" {
            store
                .open_ticket(&customer, Some(id), None, "general", text)
                .await
                .unwrap();
        }
    }
    // A conversation outside the range is not counted.
    let customer = store
        .customer_for(&Identity::new(IdentityKind::Web, "v-old"))
        .await
        .unwrap();
    store
        .record_turns(TurnsWrite {
            conversation: "old".into(),
            channel: Channel::Web,
            customer,
            call_id: None,
            started: at(10, 9),
            updated: at(10, 9),
            first_seq: 0,
            turns: vec![said(
                Speaker::Customer,
                "do you sell kayaks",
                at(10, 9),
                None,
                None,
            )],
            latency_us: None,
            state: None,
        })
        .await
        .unwrap();
    // Calls that only used the menu (no conversation): (id, day, seconds long,
    // keys, utterances, recognizer confidence, transfer).
    let calls: [SeedCall; 3] = [
        ("c1", 20, 120, 3, 0, "[]", None),
        ("c2", 21, 300, 1, 2, "[0.95,0.42]", Some("general:a2")),
        ("c3", 21, 30, 2, 1, "[0.85]", Some("refer:+861012345678")),
    ];
    for (id, day, secs, keys, utterances, heard, transfer) in calls {
        store
            .write(kefu::store::Write::Call(Box::new(CallWrite {
                call_id: id.into(),
                caller: "+8613800000000".into(),
                callee: "4000".into(),
                customer: None,
                trunk: None,
                transport: "udp".into(),
                dialplan: "demo".into(),
                dialplan_version: "v1".into(),
                invite: Some(at(day, 9)),
                answer: Some(at(day, 9)),
                end: Some(at(day, 9) + Duration::seconds(secs)),
                path: vec!["main".into()],
                end_reason: "caller-hangup".into(),
                keys,
                utterances,
                asr_confidence: heard.into(),
                transfer: transfer.map(str::to_string),
                detail: "{}".into(),
                conversation: None,
            })))
            .await
            .unwrap();
    }
    // Queue stays: (item, queue, channel, reason, agent, enqueued, answered,
    // ended, outcome), times as seconds after 09:00 of the day.
    let stays: [SeedStay; 4] = [
        (
            "w2",
            "general",
            "web",
            "intent:human",
            Some("a1"),
            20,
            0,
            Some(30),
            600,
            "answered",
        ),
        (
            "c2",
            "general",
            "phone",
            "menu",
            Some("a2"),
            21,
            60,
            Some(80),
            300,
            "answered",
        ),
        (
            "s1",
            "general",
            "sms",
            "not_understood",
            None,
            21,
            0,
            None,
            180,
            "abandoned",
        ),
        (
            "w9",
            "billing",
            "web",
            "slot_failed",
            None,
            20,
            3600,
            None,
            3900,
            "timed_out",
        ),
    ];
    for (item, queue, channel, reason, agent, day, enq, ans, end, outcome) in stays {
        let t = |s: i64| at(day, 9) + Duration::seconds(s);
        store
            .record_stay(&Stay {
                item: item.into(),
                queue: queue.into(),
                channel: channel.into(),
                reason: reason.into(),
                enqueued: t(enq),
                answered: ans.map(t),
                agent: agent.map(str::to_string),
                ended: t(end),
                outcome,
            })
            .await
            .unwrap();
    }

    let d = |day| NaiveDate::from_ymd_opt(2026, 11, day).unwrap();
    let r = store.analytics(d(20), d(21), None).await.unwrap();
    let days: Vec<(NaiveDate, &str, i64, i64)> = r
        .days
        .iter()
        .map(|x| (x.day, x.channel.as_str(), x.conversations, x.automated))
        .collect();
    assert_eq!(
        days,
        [
            (d(20), "phone", 2, 2),
            (d(20), "web", 2, 1),
            (d(21), "phone", 2, 0),
            (d(21), "sms", 1, 0),
            (d(21), "web", 1, 1)
        ]
    );
    assert_eq!((r.conversations, r.automated, r.handed_over), (8, 4, 4));
    assert_eq!((r.automation_rate, r.transfer_rate), (Some(0.5), Some(0.5)));
    let p = |x: &kefu::store::analytics::Percentiles| (x.count, x.p50_ms, x.p90_ms);
    assert_eq!(p(&r.first_response.bot), (5, Some(6.0), Some(10.0)));
    assert_eq!(
        p(&r.first_response.human),
        (2, Some(20_000.0), Some(45_000.0))
    );
    assert_eq!(p(&r.resolution.bot), (4, Some(60_000.0), Some(120_000.0)));
    assert_eq!(
        p(&r.resolution.human),
        (2, Some(300_000.0), Some(600_000.0))
    );
    let counts = |v: &[kefu::store::analytics::Count]| -> Vec<(String, i64)> {
        v.iter().map(|c| (c.key.clone(), c.count)).collect()
    };
    assert_eq!(
        counts(&r.transfer_reasons),
        [
            ("blind_transfer".to_string(), 1),
            ("intent:human".to_string(), 1),
            ("menu".to_string(), 1),
            ("not_understood".to_string(), 1),
            ("slot_failed".to_string(), 1)
        ]
    );
    let queues: Vec<_> = r
        .queues
        .iter()
        .map(|q| {
            (
                q.queue.as_str(),
                q.stays,
                q.answered,
                q.abandoned,
                q.timed_out,
                q.avg_wait_ms.map(|v| v.round()),
                q.avg_handle_ms,
            )
        })
        .collect();
    assert_eq!(
        queues,
        [
            ("billing", 1, 0, 0, 1, Some(300_000.0), None),
            ("general", 3, 2, 1, 0, Some(76_667.0), Some(395_000.0)),
        ]
    );
    assert!((r.queues[1].abandonment_rate - 1.0 / 3.0).abs() < 1e-9);
    let agents: Vec<_> = r
        .agents
        .iter()
        .map(|a| (a.agent.as_str(), a.answered, a.avg_wait_ms, a.avg_handle_ms))
        .collect();
    assert_eq!(
        agents,
        [
            ("a1", 1, Some(30_000.0), Some(570_000.0)),
            ("a2", 1, Some(20_000.0), Some(220_000.0))
        ]
    );
    let i = &r.input;
    assert_eq!(
        (i.calls, i.keys_only, i.speech_only, i.both, i.neither),
        (3, 1, 0, 2, 0)
    );
    let buckets: Vec<i64> = r.asr_confidence.iter().map(|b| b.count).collect();
    assert_eq!(buckets, [0, 0, 0, 0, 1, 0, 0, 0, 1, 1]);
    assert_eq!(
        counts(&r.top_intents),
        [
            ("opening_hours".to_string(), 2),
            ("order_status".to_string(), 1)
        ]
    );
    let trend: Vec<(NaiveDate, &str, i64)> = r
        .intent_trend
        .iter()
        .map(|t| (t.day, t.intent.as_str(), t.count))
        .collect();
    assert_eq!(
        trend,
        [
            (d(20), "opening_hours", 1),
            (d(20), "order_status", 1),
            (d(21), "opening_hours", 1)
        ]
    );
    let unanswered: Vec<(&str, usize, Vec<&str>)> = r
        .unanswered
        .iter()
        .map(|u| {
            (
                u.question.as_str(),
                u.count,
                u.examples.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    assert_eq!(
        unanswered,
        [
            (
                "do you sell kayaks",
                2,
                vec!["Do you sell kayaks?", "do you sell KAYAKS"]
            ),
            ("hours", 1, vec!["hours"]),
        ]
    );
    assert_eq!(
        r.csv("days")
            .unwrap()
            .unwrap()
            .lines()
            .take(2)
            .collect::<Vec<_>>(),
        [
            "day,channel,conversations,automated,handed_over,automation_rate",
            "2026-11-20,phone,2,2,0,1.0"
        ]
    );
    assert_eq!(
        r.csv("unanswered").unwrap().unwrap().lines().nth(1),
        Some("do you sell kayaks,2,1,Do you sell kayaks? / do you sell KAYAKS")
    );
    assert_eq!(
        r.csv("queues").unwrap().unwrap().lines().nth(1),
        Some("billing,1,0,0,1,0.0,300000.0,")
    );
    for table in kefu::store::analytics::TABLES {
        let csv = r.csv(table).unwrap().unwrap();
        assert!(csv.lines().count() >= 2, "{table}: {csv}");
    }
    assert!(r.csv("nope").is_none());
    assert!(r.markdown().contains("| do you sell kayaks | 2 |"));

    // One channel: only its contacts, turns and stays.
    let web = store.analytics(d(20), d(21), Some("web")).await.unwrap();
    assert_eq!((web.conversations, web.automated), (3, 2));
    assert_eq!(web.input.calls, 0);
    assert_eq!(
        web.queues
            .iter()
            .map(|q| (q.queue.as_str(), q.stays))
            .collect::<Vec<_>>(),
        [("billing", 1), ("general", 1)]
    );
    assert_eq!(web.unanswered.len(), 1);

    // The Parquet export, partitioned by day, read back.
    let out = tempfile::tempdir().unwrap();
    let exported = store
        .export_parquet(d(20), d(21), out.path(), true)
        .await
        .unwrap();
    assert_eq!(
        exported
            .rows
            .iter()
            .map(|(t, n)| (*t, *n))
            .collect::<Vec<_>>(),
        [
            ("calls", 3),
            ("contacts", 8),
            ("conversations", 5),
            ("queue_stays", 4),
            ("turns", 11)
        ]
    );
    let read = |table: &str| -> Vec<(String, arrow_array::RecordBatch)> {
        let mut parts: Vec<_> = std::fs::read_dir(out.path().join(table))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        parts.sort();
        parts
            .into_iter()
            .flat_map(|dir| {
                let day = dir.file_name().unwrap().to_string_lossy().into_owned();
                let f = std::fs::File::open(dir.join("part-0.parquet")).unwrap();
                parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
                    .unwrap()
                    .build()
                    .unwrap()
                    .map(move |b| (day.clone(), b.unwrap()))
            })
            .collect()
    };
    use arrow_array::Array;
    let contacts = read("contacts");
    let mut by_day: Vec<(String, usize, usize)> = Vec::new();
    for (day, b) in &contacts {
        let handed = b
            .column_by_name("handed_over")
            .unwrap()
            .as_any()
            .downcast_ref::<arrow_array::BooleanArray>()
            .unwrap();
        let n = handed.len();
        let people = (0..n).filter(|&i| handed.value(i)).count();
        by_day.push((day.clone(), n, people));
    }
    assert_eq!(
        by_day,
        [
            ("day=2026-11-20".to_string(), 4, 1),
            ("day=2026-11-21".to_string(), 4, 3)
        ]
    );
    let (all, people) = by_day
        .iter()
        .fold((0, 0), |(a, p), (_, n, h)| (a + n, p + h));
    assert_eq!(
        Some((all - people) as f64 / all as f64),
        r.automation_rate,
        "the export's automation rate is the report's"
    );
    // Turns match the store, words included (--with-text).
    let mut texts = Vec::new();
    for (_, b) in read("turns") {
        let conv = b
            .column_by_name("conversation_id")
            .unwrap()
            .as_any()
            .downcast_ref::<arrow_array::StringArray>()
            .unwrap()
            .clone();
        let text = b
            .column_by_name("text")
            .unwrap()
            .as_any()
            .downcast_ref::<arrow_array::StringArray>()
            .unwrap()
            .clone();
        for i in 0..b.num_rows() {
            texts.push((conv.value(i).to_string(), text.value(i).to_string()));
        }
    }
    assert_eq!(texts.len(), 11);
    for id in ["w1", "w2", "w3", "s1", "p1"] {
        let stored: Vec<(String, String)> = store
            .turns(id)
            .await
            .unwrap()
            .into_iter()
            .map(|t| (id.to_string(), t.text))
            .collect();
        let exported: Vec<(String, String)> =
            texts.iter().filter(|(c, _)| c == id).cloned().collect();
        assert_eq!(exported, stored, "{id}");
    }
    let calls = read("calls");
    let keys: i64 = calls
        .iter()
        .map(|(_, b)| {
            let k = b
                .column_by_name("keys")
                .unwrap()
                .as_any()
                .downcast_ref::<arrow_array::Int64Array>()
                .unwrap();
            (0..k.len()).map(|i| k.value(i)).sum::<i64>()
        })
        .sum();
    assert_eq!(keys, 6);
    assert!(
        calls[0].1.schema().field_with_name("caller").is_err(),
        "no numbers in the export"
    );
    store.close().await;
}

#[tokio::test]
async fn sqlite_analytics_report_exact_values() {
    analytics(sqlite_db().await).await;
}

#[tokio::test]
async fn postgres_analytics_report_exact_values() {
    analytics(postgres_db().await).await;
}

/// Ratings: one per conversation (the first stands), counted overall and for the
/// queue and agent of the conversation's stay; a channel filter applies.
async fn ratings(db: Db) {
    let store = Store::open(&db.url, None).await.unwrap();
    let now = Utc::now();
    assert!(store.rate("c1", "web", 5, now).await.unwrap());
    assert!(
        !store.rate("c1", "web", 1, now).await.unwrap(),
        "rated once"
    );
    assert!(store.rate("c2", "web", 2, now).await.unwrap());
    assert!(store.rate("c3", "web", 9, now).await.is_err());
    store
        .record_stay(&kefu::agents::center::Stay {
            item: "c2".into(),
            queue: "support".into(),
            channel: "web".into(),
            reason: "menu".into(),
            enqueued: now,
            answered: Some(now),
            agent: Some("ann".into()),
            ended: now,
            outcome: "answered",
        })
        .await
        .unwrap();
    let s = store.satisfaction(0, i64::MAX, "").await.unwrap();
    assert_eq!(
        (s.ratings, s.average, s.satisfied),
        (2, Some(3.5), Some(0.5))
    );
    assert_eq!(s.scores, [0, 1, 0, 0, 1]);
    let agents: Vec<(&str, i64, f64)> = s
        .agents
        .iter()
        .map(|r| (r.key.as_str(), r.ratings, r.average))
        .collect();
    assert_eq!(agents, [("(bot)", 1, 5.0), ("ann", 1, 2.0)]);
    assert_eq!(s.queues[1].key, "support");
    let sms = store.satisfaction(0, i64::MAX, "sms").await.unwrap();
    assert_eq!((sms.ratings, sms.average), (0, None));
}

#[tokio::test]
async fn sqlite_counts_ratings() {
    ratings(sqlite_db().await).await;
}

#[tokio::test]
async fn postgres_counts_ratings() {
    ratings(postgres_db().await).await;
}
