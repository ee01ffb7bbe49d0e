//! `kefu check` and hot reload, as an admin meets them.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{RawUa, Server};

const GOOD: &str = r#"[dialplan]
name = "t"
numbers = ["100"]
start = "hello"

[nodes.hello]
type = "play"
prompt = "en/welcome.wav"
next = "menu"

[nodes.menu]
type = "menu"
prompt = "en/main-menu.wav"
timeout = "5s"
on_failure = "bye"

[nodes.menu.options]
1 = "bye"

[nodes.bye]
type = "hangup"
"#;

fn check(dir: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kefu"))
        .arg("check")
        .arg(dir)
        .arg("--audio")
        .arg(common::repo().join("audio"))
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn check_accepts_the_demo_hotline() {
    let (ok, err) = check(&common::repo().join("dialplans"));
    assert!(ok, "{err}");
}

#[test]
fn check_rejects_broken_dialplans_with_positions() {
    // (edit to the good file, expected "line:col: message" fragment)
    let cases: &[(&str, &str, &str)] = &[
        (
            "next = \"menu\"",
            "next = \"menu2\"",
            "t.toml:9:8: `next` names unknown node `menu2`",
        ),
        (
            "prompt = \"en/welcome.wav\"",
            "prompt = \"en/nope.wav\"",
            "t.toml:8:10: audio file",
        ),
        (
            "timeout = \"5s\"",
            "timeout = \"5 parsecs\"",
            "t.toml:14:11: `timeout` is not a duration",
        ),
        (
            "1 = \"bye\"",
            "1 = \"bye\"\n\"1\" = \"menu\"",
            "t.toml:19:1: invalid TOML: duplicate key",
        ),
        (
            "[nodes.bye]",
            "[nodes.orphan]\ntype = \"hangup\"\n\n[nodes.bye]",
            "t.toml:20:8: node `orphan` is unreachable",
        ),
        (
            "type = \"menu\"",
            "type = \"menuu\"",
            "t.toml:12:8: unknown node type `menuu`",
        ),
        (
            "on_failure = \"bye\"",
            "on_failure = \"bye\"\ntimout = \"3s\"",
            "t.toml:16:1: unknown field `timout`",
        ),
        ("1 = \"bye\"", "12 = \"bye\"", "t.toml:18:1: menu key `12`"),
        (
            "type = \"hangup\"",
            "type = \"transfer\"\nto = \"call me\"",
            "t.toml:22:6: `to` must be a SIP URI",
        ),
        (
            "type = \"hangup\"",
            "type = \"transfer\"\nqueue = \"sales\"\nto = \"+8610\"",
            "needs exactly one of `queue` (an agent queue) or `to`",
        ),
        (
            "type = \"hangup\"",
            "type = \"record\"\nmax_length = \"1h\"\nnext = \"bye\"",
            "`max_length` must be between 1s and 300s",
        ),
        (
            "type = \"hangup\"",
            "type = \"note\"\nnext = \"bye\"",
            "needs `text`",
        ),
    ];
    for (from, to, want) in cases {
        let dir = tempfile::tempdir().unwrap();
        assert!(GOOD.contains(from), "{from}");
        std::fs::write(dir.path().join("t.toml"), GOOD.replacen(from, to, 1)).unwrap();
        let (ok, err) = check(dir.path());
        assert!(!ok, "accepted a broken plan ({to})");
        assert!(err.contains(want), "want {want:?} in:\n{err}");
    }
}

#[test]
fn edits_apply_to_new_calls_only_and_bad_edits_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t.toml");
    std::fs::write(&file, GOOD).unwrap();
    let server = Server::start(Some(dir.path()));

    let a = RawUa::new(server.sip);
    let ok_a = a.answered_call("reload-a", "100");

    // Edit while call A is live: a new greeting.
    let before = server.logs().len();
    std::fs::write(&file, GOOD.replace("en/welcome.wav", "en/hours.wav")).unwrap();
    assert!(
        server.wait_log("dialplans reloaded", before),
        "no reload:\n{}",
        server.logs().join("\n")
    );

    let b = RawUa::new(server.sip);
    let ok_b = b.answered_call("reload-b", "100");

    // An invalid edit is rejected and the last good version stays live.
    let before = server.logs().len();
    std::fs::write(&file, GOOD.replace("next = \"menu\"", "next = \"nowhere\"")).unwrap();
    assert!(server.wait_log("rejected", before));
    assert!(
        server
            .logs()
            .iter()
            .skip(before)
            .any(|l| l.contains("t.toml:9:8")),
        "error names file:line:col"
    );
    let c = RawUa::new(server.sip);
    let ok_c = c.answered_call("reload-c", "100");

    // Each call is playing its first prompt before it hangs up.
    for ua in [&a, &b, &c] {
        ua.rtp_packets(1);
    }
    for (ua, ok, id) in [(&a, &ok_a, "a"), (&b, &ok_b, "b"), (&c, &ok_c, "c")] {
        ua.send(&ua.in_dialog(ok, "BYE", 2, &format!("z9hG4bK-bye-{id}")));
    }
    let ra = server.record("reload-a");
    let rb = server.record("reload-b");
    let rc = server.record("reload-c");
    assert_eq!(ra["prompts"][0], "en/welcome.wav", "{ra}");
    assert_eq!(rb["prompts"][0], "en/hours.wav", "{rb}");
    assert_eq!(rc["prompts"][0], "en/hours.wav", "{rc}");
    assert_ne!(ra["dialplan_version"], rb["dialplan_version"]);
    assert_eq!(rb["dialplan_version"], rc["dialplan_version"]);
}

#[test]
fn sigterm_drains_live_calls() {
    let mut server = Server::start(None);
    let a = RawUa::new(server.sip);
    let ok = a.answered_call("drain-a", "kefu-en");
    a.rtp_packets(1);
    Command::new("kill")
        .args(["-TERM", &server.pid().to_string()])
        .status()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while server.http_get("/readyz").0 != 503 {
        assert!(
            std::time::Instant::now() < deadline,
            "still ready after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let b = RawUa::new(server.sip);
    b.send(&b.invite("drain-b", "z9hG4bK-db", "kefu-en"));
    b.expect_status(503, Duration::from_secs(5));
    // A load balancer's OPTIONS probe hears it too (and sends no new calls).
    let probe = RawUa::new(server.sip);
    probe.send(&format!(
        "OPTIONS sip:{srv} SIP/2.0\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-probe;rport\nFrom: <sip:balancer@{me}>;tag=p1\nTo: <sip:{srv}>\nCall-ID: probe-1\nCSeq: 1 OPTIONS\nMax-Forwards: 70\nContent-Length: 0\n\n",
        srv = server.sip,
        me = probe.local()
    ));
    let refused = probe.expect_status(503, Duration::from_secs(5));
    assert!(refused.contains("Retry-After:"), "{refused}");
    // The live call goes on until the caller hangs up (its audio keeps coming
    // after the refusal above); then kefu exits.
    a.rtp_packets(10);
    assert!(
        server.wait_exit(Duration::ZERO).is_none(),
        "exited with a live call"
    );
    a.send(&a.in_dialog(&ok, "BYE", 2, "z9hG4bK-dab"));
    a.expect_status(200, Duration::from_secs(5));
    let status = server
        .wait_exit(Duration::from_secs(10))
        .expect("kefu exits after draining");
    assert!(status.success());
    assert_eq!(server.record("drain-a")["end_reason"], "caller-hangup");
}

const SPOKEN: &str = r#"[dialplan]
name = "spoken"
numbers = ["300"]
language = "en"
start = "hello"

[nodes.hello]
type = "play"
prompt = ["say:Thank you for calling. This message is spoken by Piper.", "en/goodbye.wav"]
next = "bye"

[nodes.bye]
type = "hangup"
"#;

fn check_with(dir: &Path, models: &Path, data: &Path, sub: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kefu"))
        .args(sub)
        .arg(dir)
        .arg("--audio")
        .arg(common::repo().join("audio"))
        .arg("--models")
        .arg(models)
        .arg("--data")
        .arg(data)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// `say:` prompts are rendered by the TTS when plans load (and cached on disk);
/// errors in them point at the item, and a missing model names the set-up script.
#[test]
fn text_prompts_are_rendered_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let models = common::repo().join("models");
    std::fs::write(dir.path().join("t.toml"), SPOKEN).unwrap();
    let (ok, err) = check_with(dir.path(), &models, data.path(), &["prompts", "render"]);
    assert!(ok, "{err}");
    let cached = std::fs::read_dir(data.path().join("tts-cache"))
        .unwrap()
        .count();
    assert_eq!(cached, 2, "one rendered file per sentence");

    std::fs::write(
        dir.path().join("t.toml"),
        SPOKEN.replace("say:Thank you for calling.", "say:Hello ${caller}."),
    )
    .unwrap();
    let (ok, err) = check_with(dir.path(), &models, data.path(), &["check"]);
    assert!(!ok);
    assert!(
        err.contains("t.toml:9:11: text prompts are rendered when the dialplan loads"),
        "{err}"
    );

    std::fs::write(dir.path().join("t.toml"), SPOKEN).unwrap();
    let (ok, err) = check_with(
        dir.path(),
        Path::new("/nonexistent"),
        data.path(),
        &["check"],
    );
    assert!(!ok);
    assert!(
        err.contains("t.toml:9:11: cannot speak this text") && err.contains("deploy/models.sh"),
        "{err}"
    );
}

/// A call hears the spoken prompt: the record lists it and the RTP carries speech.
#[test]
fn a_call_plays_a_text_prompt() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("t.toml"), SPOKEN).unwrap();
    let server = Server::start(Some(dir.path()));
    let ua = RawUa::new(server.sip);
    ua.answered_call("spoken-1", "300");
    ua.rtp
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut buf = [0u8; 2048];
    let mut loud = 0;
    for _ in 0..100 {
        let (n, _) = ua.rtp.recv_from(&mut buf).unwrap();
        let pkt = rtp_rs::RtpReader::new(&buf[..n]).unwrap();
        // µ-law bytes near 0xFF/0x7F are silence; speech swings far from them.
        loud += pkt.payload().iter().filter(|&&b| (b & 0x7f) < 0x50).count();
    }
    assert!(
        loud > 500,
        "the first two seconds carry speech ({loud} loud samples)"
    );
    ua.answer_request("BYE", Duration::from_secs(15));
    let r = server.record("spoken-1");
    let prompts = common::strings(&r["prompts"]);
    assert_eq!(
        prompts,
        [
            "say:Thank you for calling. This message is spoken by Piper.",
            "en/goodbye.wav"
        ],
        "{r}"
    );
    assert_eq!(r["end_reason"], "dialplan-hangup", "{r}");
}

#[test]
fn check_reports_listen_node_mistakes_with_positions() {
    let plan = r#"[dialplan]
name = "t"
numbers = ["100"]
start = "ask"

[nodes.ask]
type = "listen"
prompt = "en/main-menu.wav"
language = "fr"

[nodes.ask.keywords]
"hours" = "nowhere"

[nodes.bye]
type = "hangup"
"#;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("t.toml"), plan).unwrap();
    let (ok, err) = check(dir.path());
    assert!(!ok);
    assert!(err.contains("t.toml:9:12: `language` must be"), "{err}");
    assert!(
        err.contains("t.toml:12:11: `keywords` names unknown node `nowhere`"),
        "{err}"
    );
    assert!(!err.contains("needs `keywords`"), "{err}");
}
