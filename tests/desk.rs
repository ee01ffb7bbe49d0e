//! The agent desk page in a real browser (Debian's headless Chromium via
//! playwright-core, tests/browser/desk.mjs): a web-chat hand-over is accepted and
//! answered from the desk, and the customer's page shows the answer. The desk's
//! screenshot is kept in target/test-artifacts/desk.png.

mod common;

use std::process::Command;

use common::{Server, repo};

#[test]
fn an_agent_takes_a_web_chat_from_the_desk() {
    assert!(
        repo()
            .join("tests/browser/node_modules/playwright-core")
            .is_dir()
            && std::path::Path::new("/usr/bin/chromium").exists(),
        "the browser test needs Chromium and playwright-core: run deploy/setup.sh"
    );
    let s = Server::start(None);
    s.add_agent_user("wang", "desk password 2026", "Wang Fang", "1001");
    let artifacts = repo().join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let shot = artifacts.join("desk.png");
    let _ = std::fs::remove_file(&shot);
    let out = Command::new("node")
        .arg(repo().join("tests/browser/desk.mjs"))
        .arg(format!("http://{}", s.http))
        .args(["wang", "desk password 2026"])
        .arg(&shot)
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "desk check failed:\n{stdout}\n{}\nserver:\n{}",
        String::from_utf8_lossy(&out.stderr),
        s.logs().join("\n")
    );
    let seen: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    assert_eq!(seen["seenByAgent"], "I want to talk to a person", "{seen}");
    assert_eq!(
        seen["reply"], "Hello, this is Wang Fang from the desk.",
        "{seen}"
    );
    assert!(
        seen["ticket"]
            .as_str()
            .unwrap()
            .contains("I want to talk to a person"),
        "{seen}"
    );
    assert!(!seen["handover"].as_str().unwrap().is_empty(), "{seen}");
    assert!(
        std::fs::metadata(&shot).unwrap().len() > 10_000,
        "a real screenshot"
    );
}
