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
}
