//! The chat widget page in a real browser: Debian's headless Chromium driven by
//! playwright-core (installed by deploy/setup.sh into tests/browser).

mod common;

use std::process::Command;

use common::{Server, dtmf_plans, repo};

#[test]
fn widget_greets_and_answers() {
    let script = repo().join("tests/browser/widget.mjs");
    assert!(
        repo()
            .join("tests/browser/node_modules/playwright-core")
            .is_dir()
            && std::path::Path::new("/usr/bin/chromium").exists(),
        "the browser test needs Chromium and playwright-core: run deploy/setup.sh"
    );
    let s = Server::start_with(
        Some(&dtmf_plans()),
        &format!("kb = \"{}\"\n", repo().join("dialplans/kb").display()),
    );
    let out = Command::new("node")
        .arg(&script)
        .arg(format!("http://{}", s.http))
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "widget check failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    eprintln!("page open → greeting shown: {} ms", seen["greetingMs"]);
    assert!(
        seen["greeting"].as_str().unwrap().starts_with("Hello"),
        "{seen}"
    );
    assert!(
        seen["answer"]
            .as_str()
            .unwrap()
            .contains("9 a.m. to 9 p.m."),
        "{seen}"
    );
    assert!(
        seen["visitor"].as_str().is_some_and(|v| !v.is_empty()),
        "{seen}"
    );
    assert!(seen["rated"].as_str().unwrap().contains("5/5"), "{seen}");
    // The rating reaches the report (and the dashboard that draws it).
    let report = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(s.report(""));
    let sat = &report["satisfaction"];
    assert_eq!(sat["ratings"], 1, "{sat}");
    assert_eq!(sat["average"], 5.0, "{sat}");
    assert_eq!(sat["agents"][0]["key"], "(bot)", "{sat}");
}

/// A chat is rated once, 1 to 5, with the chat's key: anything else is a 4xx
/// with the reason, and the first rating stands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_is_rated_once_with_its_key() {
    let s = Server::start_with(
        Some(&dtmf_plans()),
        &format!("kb = \"{}\"\n", repo().join("dialplans/kb").display()),
    );
    let (id, started) = s.start_chat("rater").await;
    let key = started["key"].as_str().unwrap().to_string();
    let c = reqwest::Client::new();
    let rate = |key: &str, body: &str| {
        c.post(format!(
            "http://{}/api/chat/conversations/{id}/rating",
            s.http
        ))
        .header("x-kefu-key", key.to_string())
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
    };
    for (k, body, want, reason) in [
        (key.as_str(), r#"{"score":0}"#, 400, "1 to 5"),
        (key.as_str(), r#"{"score":6}"#, 400, "1 to 5"),
        (key.as_str(), r#"{"score":"five"}"#, 422, ""),
        (key.as_str(), r#"{"score":3,"comment":"x"}"#, 422, ""),
        ("0000", r#"{"score":3}"#, 403, ""),
        (key.as_str(), r#"{"score":2}"#, 201, "\"score\":2"),
        (key.as_str(), r#"{"score":5}"#, 409, "rated already"),
    ] {
        let r = rate(k, body).await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        assert_eq!(status, want, "{body}: {text}");
        assert!(text.contains(reason), "{body}: {text}");
    }
    let sat = &s.report("").await["satisfaction"];
    assert_eq!(sat["ratings"], 1, "the first rating stands: {sat}");
    assert_eq!(sat["scores"], serde_json::json!([0, 1, 0, 0, 0]), "{sat}");
    assert_eq!(sat["satisfied"], 0.0, "{sat}");
}
