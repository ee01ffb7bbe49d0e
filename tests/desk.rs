//! The agent desk page in a real browser (Debian's headless Chromium via
//! playwright-core, tests/browser/desk.mjs): a web-chat hand-over is accepted and
//! answered from the desk, and the customer's page shows the answer. The desk's
//! screenshot is kept in target/test-artifacts/desk.png.

mod common;

use common::Server;

#[test]
fn an_agent_takes_a_web_chat_from_the_desk() {
    let s = Server::start(None);
    s.add_agent_user("wang", "desk password 2026", "Wang Fang", "1001");
    let (seen, shot) = common::browser(&s, "desk.mjs", &["wang", "desk password 2026"], "desk");
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
