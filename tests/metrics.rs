//! `GET /metrics` in the Prometheus text format: it parses, needs a reader's
//! credentials, and moves while a call is in progress. And `kefu report`.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{RawUa, Server};

/// The metrics as (name → value), summed over labels.
fn scrape(server: &Server, token: &str) -> HashMap<String, f64> {
    let r = get_metrics(server, token);
    let lines = r.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("Prometheus text format");
    let mut out: HashMap<String, f64> = HashMap::new();
    for s in scrape.samples {
        let v = match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => continue,
        };
        *out.entry(s.metric).or_default() += v;
    }
    out
}

/// The metrics text, checked to be served as OpenMetrics.
fn get_metrics(server: &Server, token: &str) -> String {
    let (head, body) = server.get_metrics(token);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text"),
        "{head}"
    );
    body
}

#[test]
fn metrics_parse_and_move_during_a_call() {
    let server = Server::start(None);
    let (ok, token, err) = server.kefu(&["tokens", "create", "prometheus", "--role", "auditor"]);
    assert!(ok, "{err}");
    let token = token.trim().to_string();
    let before = scrape(&server, &token);
    assert_eq!(before.get("kefu_calls_active"), Some(&0.0), "{before:?}");

    let ua = RawUa::new(server.sip);
    let ok = ua.answered_call("metrics-call", "4008002000");
    // The welcome prompt reaches the caller; the counters show it. (The clock
    // counts a packet just after sending it, so the 11th packet's arrival means the
    // 10th is counted.)
    ua.rtp_packets(11);
    let count = |m: &HashMap<String, f64>, name: &str| m.get(name).copied().unwrap_or(0.0);
    let during = scrape(&server, &token);
    assert_eq!(during["kefu_calls_active"], 1.0, "{during:?}");
    assert_eq!(
        during["kefu_calls_started_total"],
        count(&before, "kefu_calls_started_total") + 1.0
    );
    let sent = during["kefu_rtp_packets_out_total"] - count(&before, "kefu_rtp_packets_out_total");
    assert!(sent >= 10.0, "{sent} RTP packets counted, 10 received");
    assert!(during["kefu_http_responses_total"] >= 1.0, "{during:?}");
    assert!(
        during.contains_key("kefu_store_commit_seconds_count"),
        "{during:?}"
    );

    ua.send(&ua.in_dialog(&ok, "BYE", 2, "z9hG4bK-metrics-bye"));
    ua.expect_status(200, Duration::from_secs(5));
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let after = scrape(&server, &token);
        if after["kefu_calls_active"] == 0.0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the call never ended: {after:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `kefu report` prints the supervisors' report (exact values are checked on a
/// seeded store in tests/store.rs), and refuses a backwards range.
#[test]
fn the_report_command_prints_each_format() {
    let server = Server::start(None);
    let (ok, csv, err) = server.kefu(&["report", "--format", "csv"]);
    assert!(ok, "{err}");
    assert!(
        csv.starts_with("day,channel,conversations,automated,handed_over,automation_rate\n"),
        "{csv}"
    );
    let (ok, json, err) = server.kefu(&[
        "report",
        "--format",
        "json",
        "--from",
        "2026-01-01",
        "--to",
        "2026-01-31",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["from"], "2026-01-01");
    assert_eq!(v["conversations"], 0);
    let (ok, md, _) = server.kefu(&["report"]);
    assert!(ok && md.starts_with("# kefu report"), "{md}");
    let (ok, _, err) = server.kefu(&["report", "--from", "2026-02-01", "--to", "2026-01-01"]);
    assert!(
        !ok && err.contains("--from must not be after --to"),
        "{err}"
    );
    // The server writes yesterday's report to data/reports/ at start (then daily).
    let yesterday = (chrono::Utc::now().date_naive() - chrono::Duration::days(1)).to_string();
    let dir = server.data().join("reports");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !dir.join(format!("{yesterday}.md")).exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "no daily report in {}",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join(format!("{yesterday}.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(json["from"], yesterday.as_str());
    assert_eq!(json["to"], yesterday.as_str());

    // One channel, one table as CSV; unknown ones are refused.
    let (ok, csv, err) = server.kefu(&[
        "report",
        "--format",
        "csv",
        "--table",
        "queues",
        "--channel",
        "web",
    ]);
    assert!(ok, "{err}");
    assert_eq!(
        csv,
        "queue,stays,answered,abandoned,timed_out,abandonment_rate,avg_wait_ms,avg_handle_ms\n"
    );
    let (ok, _, err) = server.kefu(&["report", "--channel", "fax"]);
    assert!(!ok && err.contains("unknown --channel"), "{err}");
    let (ok, _, err) = server.kefu(&["report", "--format", "csv", "--table", "nope"]);
    assert!(!ok && err.contains("unknown --table"), "{err}");

    // The Parquet export of a day (nothing happened on it: no files, no rows).
    let out = server.dir.path().join("export");
    let (ok, text, err) = server.kefu(&[
        "export",
        "--from",
        "2026-01-01",
        "--out",
        &out.display().to_string(),
    ]);
    assert!(ok, "{err}");
    assert!(text.contains("contacts: 0 rows"), "{text}");
    assert!(text.contains("0 files under"), "{text}");
}
