//! The demo hotline driven by SIPp as a real caller, with each of the three DTMF
//! transports. Each test checks the call record: path, prompts, keys, end reason.

mod common;

use common::{Server, Step, caller_scenario, only_record, sipp, strings};

fn assert_hours_path(r: &serde_json::Value, source: &str) {
    assert_eq!(
        strings(&r["path"]),
        ["welcome", "main_menu", "opening_hours", "more", "goodbye"],
        "{r}"
    );
    let prompts = strings(&r["prompts"]);
    assert_eq!(
        prompts.first().map(String::as_str),
        Some("en/welcome.wav"),
        "{r}"
    );
    assert!(prompts.contains(&"en/hours.wav".to_string()), "{r}");
    assert_eq!(
        prompts.last().map(String::as_str),
        Some("en/goodbye.wav"),
        "{r}"
    );
    assert!(r["digits"].as_str().unwrap().starts_with("2#"), "{r}");
    assert!(
        strings(&r["digit_sources"]).iter().all(|s| s == source),
        "{r}"
    );
    assert_eq!(r["end_reason"], "dialplan-hangup", "{r}");
    assert!(r["rtp_sent"].as_u64().unwrap() > 100, "{r}");
}

fn assert_order_path(r: &serde_json::Value) {
    assert_eq!(
        strings(&r["path"]),
        [
            "welcome",
            "main_menu",
            "order_number",
            "order_readback",
            "more",
            "goodbye"
        ],
        "{r}"
    );
    assert_eq!(r["vars"]["order_number"], "234567", "{r}");
    let prompts = strings(&r["prompts"]);
    // The order number is read back digit by digit.
    let readback: Vec<&str> = prompts
        .iter()
        .filter(|p| p.starts_with("en/digits/"))
        .map(String::as_str)
        .collect();
    assert_eq!(
        readback,
        [
            "en/digits/2.wav",
            "en/digits/3.wav",
            "en/digits/4.wav",
            "en/digits/5.wav",
            "en/digits/6.wav",
            "en/digits/7.wav"
        ],
        "{r}"
    );
    assert!(prompts.contains(&"en/enter-order.wav".to_string()), "{r}");
    assert_eq!(r["end_reason"], "dialplan-hangup", "{r}");
}

fn order_steps(key: fn(char) -> Step) -> Vec<Step> {
    let mut steps = vec![Step::Pause(1500), key('1'), Step::Pause(2500)];
    for d in "234567".chars() {
        steps.push(key(d));
        steps.push(Step::Pause(400));
    }
    // Readback: "order number", six digits, then the next-steps sentence.
    steps.push(Step::Pause(13000));
    steps.push(key('#'));
    steps
}

fn hours_steps(key: fn(char) -> Step) -> Vec<Step> {
    vec![Step::Pause(1500), key('2'), Step::Pause(9500), key('#')]
}

fn run(name: &str, te: bool, steps: &[Step]) -> serde_json::Value {
    run_with(name, te, steps, &[])
}

fn run_with(name: &str, te: bool, steps: &[Step], sipp_args: &[&str]) -> serde_json::Value {
    call(Server::start(None), name, te, steps, sipp_args)
}

fn call(
    server: Server,
    name: &str,
    te: bool,
    steps: &[Step],
    sipp_args: &[&str],
) -> serde_json::Value {
    let scenario = caller_scenario(server.dir.path(), name, te, steps);
    let (ok, out) = sipp(&server, &scenario, "kefu-en", sipp_args);
    assert!(
        ok,
        "SIPp failed:\n{out}\nserver:\n{}",
        server.logs().join("\n")
    );
    // The stored record (sealed; `kefu calls show` opens it), checked against the
    // summary in the log.
    only_record(&server)
}

#[test]
fn opening_hours_with_rfc4733() {
    let r = run("hours_rfc4733", true, &hours_steps(Step::Rfc4733));
    assert_eq!(r["transport"], "udp", "{r}");
    assert_hours_path(&r, "rfc4733");
}

#[test]
fn order_status_with_rfc4733() {
    assert_order_path(&run("order_rfc4733", true, &order_steps(Step::Rfc4733)));
}

#[test]
fn order_status_with_rfc4733_on_postgres() {
    let server = Server::start_on_postgres(None, "");
    let steps = order_steps(Step::Rfc4733);
    assert_order_path(&call(server, "order_pg", true, &steps, &[]));
}

#[test]
fn opening_hours_with_sip_info() {
    let r = run(
        "hours_info",
        true,
        &hours_steps(|k| Step::Info("application/dtmf-relay", k)),
    );
    assert_hours_path(&r, "info");
}

/// The same call over SIP on TCP (one connection): INVITE, INFO keys, kefu's BYE.
#[test]
fn opening_hours_over_tcp() {
    let r = run_with(
        "hours_tcp",
        true,
        &hours_steps(|k| Step::Info("application/dtmf-relay", k)),
        &["-t", "t1"],
    );
    assert_eq!(r["transport"], "tcp", "{r}");
    assert_hours_path(&r, "info");
}

#[test]
fn order_status_with_sip_info() {
    assert_order_path(&run(
        "order_info",
        true,
        &order_steps(|k| Step::Info("application/dtmf", k)),
    ));
}

/// In-band tones: 80 ms of DTMF then silence, as PCMU, replayed by SIPp from a pcap.
fn tone_pcap(dir: &std::path::Path, key: char) -> std::path::PathBuf {
    let mut pcm = kefu::media::dtmf::inband::synthesize(key, 100, 4000.0);
    pcm.extend(std::iter::repeat_n(0i16, 800));
    let payloads: Vec<Vec<u8>> = pcm
        .chunks(160)
        .map(|c| {
            let mut frame = [0i16; 160];
            frame[..c.len()].copy_from_slice(c);
            let mut out = vec![0u8; 160];
            kefu::media::g711::Law::Pcmu.encode(&frame, &mut out);
            out
        })
        .collect();
    let name = if key == '#' {
        "pound".to_string()
    } else {
        key.to_string()
    };
    let path = dir.join(format!("tone_{name}.pcap"));
    // Each key continues a phone's stream at its own place, as a real phone would.
    common::write_rtp_pcap(&path, &payloads, 0, key as u16 * 100);
    path
}

fn inband(key: char) -> Step {
    let dir = std::env::temp_dir().join(format!("kefu-tones-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    Step::Pcap(tone_pcap(&dir, key))
}

#[test]
fn opening_hours_with_inband_tones() {
    assert_hours_path(&run("hours_inband", false, &hours_steps(inband)), "inband");
}

#[test]
fn order_status_with_inband_tones() {
    assert_order_path(&run("order_inband", false, &order_steps(inband)));
}
