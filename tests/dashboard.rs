//! The operations dashboard in a real browser (Debian's headless Chromium via
//! playwright-core, tests/browser/dashboard.mjs) over traffic the server really
//! handled: web chats (answered, unanswered twice in other words, handed over
//! and left waiting until the queue gave up) and a phone call. An agent gets
//! 403; a supervisor sees the figures, the charts drawn with the data, the
//! tables, a CSV export and the channel filter, and drafts a knowledge-base
//! entry from the unanswered cluster. The screenshot is kept in
//! target/test-artifacts/dashboard.png.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{RawUa, Server, repo};

const SUPERVISOR_PASSWORD: &str = "supervisor password 2026";
const AGENT_PASSWORD: &str = "agent password 2026";

/// A web chat: the visitor says `text`; returns the reply's kind.
async fn chat(s: &Server, visitor: &str, text: &str) -> String {
    rated_chat(s, visitor, text, None).await
}

/// A web chat the visitor then rates with `score` stars.
async fn rated_chat(s: &Server, visitor: &str, text: &str, score: Option<u8>) -> String {
    let (conv, started) = s.start_chat(visitor).await;
    let key = started["key"].as_str().unwrap();
    let r = s.say_in_chat(&conv, key, text).await;
    if let Some(score) = score {
        let rated = reqwest::Client::new()
            .post(format!(
                "http://{}/api/chat/conversations/{conv}/rating",
                s.http
            ))
            .header("x-kefu-key", key)
            .json(&serde_json::json!({ "score": score }))
            .send()
            .await
            .unwrap();
        assert_eq!(rated.status(), 201);
    }
    r["kind"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supervisor_reads_the_dashboard_and_drafts_an_entry() {
    // A copy of the demo knowledge base: the draft is written beside it.
    let kb = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(repo().join("dialplans/kb")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "toml") {
            std::fs::copy(&p, kb.path().join(p.file_name().unwrap())).unwrap();
        }
    }
    let s = Server::start_with(
        None,
        &format!(
            "kb = \"{}\"\nsemantic = true\n[[queue]]\nname = \"general\"\nring_timeout = \"5s\"\nmax_wait = \"5s\"\n",
            kb.path().display()
        ),
    );
    let (ok, _, err) = s.kefu_with_input(
        &[
            "users",
            "add",
            "li",
            "--role",
            "supervisor",
            "--password-stdin",
        ],
        &format!("{SUPERVISOR_PASSWORD}\n"),
    );
    assert!(ok, "{err}");
    s.add_agent_user("wang", AGENT_PASSWORD, "Wang Fang", "1001");

    assert_eq!(
        rated_chat(&s, "v1", "What are your opening hours?", Some(5)).await,
        "answer"
    );
    assert_eq!(
        rated_chat(&s, "v2", "Do you sponsor marathon runners?", Some(2)).await,
        "fallback"
    );
    assert_eq!(
        chat(&s, "v3", "Are you sponsoring any marathon runners?").await,
        "fallback"
    );
    assert_eq!(
        chat(&s, "v4", "I want to talk to a person").await,
        "handover"
    );
    // A phone call that is answered and hung up.
    let ua = RawUa::new(s.sip);
    let ok = ua.answered_call("dashboard-call", "4008002000");
    tokio::task::block_in_place(|| ua.rtp_packets(1));
    ua.send(&ua.in_dialog(&ok, "BYE", 2, "z9hG4bK-dashboard-bye"));
    ua.expect_status(200, Duration::from_secs(5));
    // The hand-over waits five seconds (max_wait), then its stay is in the ledger;
    // the call's record is stored when it ends.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let token = {
        let (ok, t, err) = s.kefu(&["tokens", "create", "reader", "--role", "auditor"]);
        assert!(ok, "{err}");
        t.trim().to_string()
    };
    let report = loop {
        let r: serde_json::Value = reqwest::Client::new()
            .get(format!("http://{}/api/reports", s.http))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if r["queues"].as_array().is_some_and(|q| !q.is_empty()) && r["conversations"] == 5 {
            break r;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the report never showed the call and the queue stay: {r}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(report["automated"], 4, "{report}");
    // An auditor sees the counts, never the customers' own words.
    let unanswered = report["unanswered"].as_array().unwrap();
    assert!(!unanswered.is_empty(), "{report}");
    for u in unanswered {
        assert_eq!(u["question"], "(customer's words withheld)", "{report}");
        assert_eq!(u["examples"], serde_json::json!([]), "{report}");
    }
    assert!(!report.to_string().contains("marathon"), "{report}");

    let (seen, shot) = common::browser(
        &s,
        "dashboard.mjs",
        &["li", SUPERVISOR_PASSWORD, "wang", AGENT_PASSWORD],
        "dashboard",
    );

    // The agent may not read reports.
    let agent_error = seen["agentError"].as_str().unwrap();
    assert!(agent_error.starts_with("403"), "{seen}");
    assert_eq!(seen["agentCanvases"], 0, "{seen}");

    // The supervisor's figures.
    assert_eq!(seen["loaded"], "true", "{seen}");
    assert_eq!(seen["error"], "", "{seen}");
    assert_eq!(seen["kpis"]["contacts"], "5", "{seen}");
    assert_eq!(seen["kpis"]["automation"], "80.0 %", "{seen}");
    assert_eq!(seen["kpis"]["transfer"], "20.0 %", "{seen}");
    assert_eq!(seen["kpis"]["satisfaction"], "3.5 / 5 · 50.0 %", "{seen}");
    // Every chart has its canvas; those with data have it drawn in the series'
    // colour (the confidence chart is empty: nobody spoke to the call).
    for (chart, v) in seen["charts"].as_object().unwrap() {
        assert_eq!(v["canvas"], true, "{chart}: {v}");
        assert!(v["painted"].as_u64().unwrap() > 1000, "{chart}: {v}");
        if chart != "chart-confidence" {
            assert!(
                v["series"].as_u64().unwrap() >= 10,
                "{chart} draws no data: {v}"
            );
        }
    }
    assert_eq!(seen["charts"].as_object().unwrap().len(), 7, "{seen}");
    let rows = |t: &str| seen["tables"][t].as_array().unwrap().clone();
    let days = rows("days");
    assert_eq!(days.len(), 2, "phone and web today: {days:?}");
    let queues = rows("queues");
    assert_eq!(queues[0][0], "general", "{queues:?}");
    assert_eq!(
        (&queues[0][1], &queues[0][2], &queues[0][4]),
        (&"1".into(), &"0".into(), &"1".into()),
        "one customer, timed out: {queues:?}"
    );
    assert_eq!(rows("reasons"), [serde_json::json!(["intent:human", "1"])]);
    assert_eq!(
        rows("input"),
        [serde_json::json!(["1", "0", "0", "0", "1"])]
    );
    assert!(
        rows("intents")
            .iter()
            .any(|r| r[0] == "opening_hours" && r[1] == "1"),
        "{seen}"
    );
    // The two marathon questions are one cluster.
    let unanswered = rows("unanswered");
    assert_eq!(unanswered.len(), 1, "{unanswered:?}");
    assert_eq!(
        (&unanswered[0][1], &unanswered[0][2]),
        (&"2".into(), &"2".into())
    );
    assert!(unanswered[0][3].as_str().unwrap().contains("marathon"));

    // The CSV export of a table, with the page's filters.
    let csv = &seen["csv"];
    assert_eq!(csv["status"], 200, "{csv}");
    assert!(csv["type"].as_str().unwrap().starts_with("text/csv"));
    assert!(csv["disposition"].as_str().unwrap().contains("attachment"));
    let text = csv["text"].as_str().unwrap();
    assert!(
        text.starts_with("day,channel,conversations,automated,handed_over,automation_rate\n"),
        "{text}"
    );
    assert_eq!(text.lines().count(), 3, "{text}");
    assert_eq!(seen["webContacts"], "4", "{seen}");

    // The draft: a knowledge-base file with the cluster's phrasings, not live. It
    // holds customers' words, so it is kept sealed in the store (read over the API),
    // never written into the knowledge-base directory.
    let drafted = seen["drafted"].as_str().unwrap();
    let file = drafted.split_whitespace().last().unwrap();
    assert!(
        !kb.path().join(file).exists(),
        "a draft in plaintext: {file}"
    );
    let reader = {
        let (ok, t, err) = s.kefu(&["tokens", "create", "kb-reader", "--role", "integrator"]);
        assert!(ok, "{err}");
        t.trim().to_string()
    };
    let drafts: serde_json::Value = reqwest::Client::new()
        .get(format!("http://{}/api/kb/drafts", s.http))
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let text = drafts
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["file"] == file)
        .and_then(|d| d["text"].as_str())
        .unwrap_or_else(|| panic!("{file} not among the drafts: {drafts}"))
        .to_string();
    assert!(text.contains("Do you sponsor marathon runners?"), "{text}");
    assert!(
        text.contains("Are you sponsoring any marathon runners?"),
        "{text}"
    );
    let check = Command::new(env!("CARGO_BIN_EXE_kefu"))
        .args(["kb", "check"])
        .arg(kb.path())
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "the knowledge base is untouched by drafts: {}",
        String::from_utf8_lossy(&check.stderr)
    );

    assert!(
        std::fs::metadata(&shot).unwrap().len() > 20_000,
        "a real screenshot"
    );
}

/// The post-call survey over the wire: a caller keys 4 at a `collect` of one
/// digit followed by `rate` (RFC 4733 over real RTP), and the report counts one
/// phone rating of 4.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_rates_the_call_with_a_key() {
    let plans = tempfile::tempdir().unwrap();
    std::fs::copy(
        repo().join("tests/scripts/plans/survey.toml"),
        plans.path().join("survey.toml"),
    )
    .unwrap();
    let s = Server::start_with(Some(plans.path()), "");
    let ua = RawUa::new(s.sip);
    ua.answered_call("survey-call", "800");
    tokio::task::block_in_place(|| {
        let rtp = ua.rtp.try_clone().unwrap();
        rtp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 2048];
        let (_, kefu_media) = rtp.recv_from(&mut buf).unwrap();
        let mut seq = 1;
        common::phone::press(&rtp, 101, kefu_media, 4, &mut seq);
        // kefu says goodbye and hangs up.
        ua.answer_request("BYE", Duration::from_secs(15));
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = s.report("channel=phone").await;
        let sat = &r["satisfaction"];
        if sat["ratings"] == 1 {
            assert_eq!(sat["scores"], serde_json::json!([0, 0, 0, 1, 0]), "{sat}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the call's rating never reached the report: {sat}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
