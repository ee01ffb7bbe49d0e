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

/// Ids spliced into request paths are encoded: a phone call's id is its SIP
/// Call-ID, chosen by whoever sent the INVITE, and `x/../../admin/tokens` must not
/// become another route (with the agent's cookie and CSRF token).
#[test]
fn the_desk_encodes_every_id_it_puts_in_a_path() {
    for page in ["src/api/desk.html", "src/channel/chat/widget.html"] {
        let text = std::fs::read_to_string(common::repo().join(page)).unwrap();
        for (i, line) in text.lines().enumerate() {
            let Some(at) = line.find("/api/") else {
                continue;
            };
            let path = &line[at..];
            let path = &path[..path.find('`').unwrap_or(path.len())];
            for part in path.split("${").skip(1) {
                assert!(
                    part.starts_with("seg(") || part.starts_with("encodeURIComponent("),
                    "{page}:{}: an id spliced into a path unencoded: {path}",
                    i + 1
                );
            }
        }
    }
}
