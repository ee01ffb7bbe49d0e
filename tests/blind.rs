//! Blind transfer over real SIP: a `transfer` node with `to` sends REFER in the
//! caller's dialog. A SIPp caller that takes the REFER reports the transfer's
//! progress in NOTIFYs and kefu leaves the call; a SIPp caller that refuses it
//! (501, like many trunks) is bridged by kefu to the target it dials itself, and
//! the caller's audio reaches the target (payloads compared).

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::phone::{Phone, frame, transcode};
use common::{RawUa, Server, Step, write_rtp_pcap};
use kefu::media::g711::Law;

fn plan(dir: &Path, to: &str) {
    std::fs::write(
        dir.join("blind.toml"),
        format!(
            r#"[dialplan]
name = "blind transfer"
numbers = ["600"]
language = "en"
start = "menu"

[nodes.menu]
type = "menu"
prompt = "en/main-menu.wav"
timeout = "10s"
on_failure = "bye"

[nodes.menu.options]
0 = "out"

[nodes.out]
type = "transfer"
to = "{to}"
prompt = "en/transfer.wav"
next = "failed"

[nodes.failed]
type = "play"
prompt = "en/no-agent.wav"
next = "bye"

[nodes.bye]
type = "hangup"
prompt = "en/goodbye.wav"
"#
        ),
    )
    .unwrap();
}

const HEADERS: &str = "From: \"Test Caller\" <sip:13800138000@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]\nTo: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]\nCall-ID: [call_id]\n";

/// A SIPp caller: INVITE, ACK, key 0, the REFER kefu sends, then `after` (what
/// it does with the REFER).
fn scenario(dir: &Path, name: &str, after: &str) -> PathBuf {
    let refer = r#"  <recv request="REFER" timeout="10000">
    <action>
      <ereg regexp="Refer-To: *&lt;sip:[^&gt;]*&gt;" search_in="msg" check_it="true" assign_to="referto"/>
    </action>
  </recv>
"#;
    common::caller_scenario_ending(
        dir,
        name,
        true,
        &[Step::Pause(1000), Step::Rfc4733('0')],
        &format!("{refer}{after}\n"),
    )
}

fn reply(status: &str) -> String {
    format!(
        "  <send><![CDATA[\nSIP/2.0 {status}\n[last_Via:]\n[last_From:]\n[last_To:]\n[last_Call-ID:]\n[last_CSeq:]\nContent-Length: 0\n\n]]></send>\n"
    )
}

/// A NOTIFY with the transfer's progress. The last one's 200 may come after
/// kefu's BYE (responses and new requests are not ordered over UDP).
fn notify(cseq: u32, state: &str, frag: &str, last: bool) -> String {
    format!(
        "  <send retrans=\"500\"><![CDATA[\nNOTIFY sip:[service]@[remote_ip]:[remote_port] SIP/2.0\nVia: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]\n{HEADERS}CSeq: {cseq} NOTIFY\nEvent: refer\nSubscription-State: {state}\nContent-Type: message/sipfrag\nMax-Forwards: 70\nContent-Length: [len]\n\n{frag}\n]]></send>\n  <recv response=\"200\"{}/>\n",
        if last { " optional=\"true\"" } else { "" }
    )
}

fn sipp(server: &Server, scenario: &Path) -> (bool, String) {
    common::sipp(server, scenario, "600", &[])
}

/// The caller's side takes the REFER: 202, NOTIFY 100 Trying, NOTIFY 200 OK;
/// kefu then hangs up its leg, and the record says the call was referred.
#[test]
fn a_trunk_that_takes_refer_transfers_the_call_itself() {
    let plans = tempfile::tempdir().unwrap();
    plan(plans.path(), "+8613900000000");
    let server = Server::start(Some(plans.path()));
    let dir = tempfile::tempdir().unwrap();
    let after = [
        reply("202 Accepted"),
        notify(2, "active;expires=60", "SIP/2.0 100 Trying", false),
        notify(3, "terminated;reason=noresource", "SIP/2.0 200 OK", true),
        "  <recv request=\"BYE\" timeout=\"10000\"/>\n".to_string(),
        reply("200 OK"),
        "  <Reference variables=\"referto\"/>\n".to_string(),
    ]
    .concat();
    let s = scenario(dir.path(), "refer-ok", &after);
    let (ok, out) = sipp(&server, &s);
    assert!(ok, "SIPp:\n{out}\nkefu:\n{}", server.logs().join("\n"));
    let record = common::only_record(&server);
    assert_eq!(record["end_reason"], "referred", "{record}");
    assert_eq!(record["transfer"]["method"], "refer", "{record}");
    assert_eq!(record["transfer"]["target"], "+8613900000000", "{record}");
    assert_eq!(
        common::strings(&record["path"]),
        ["menu", "out"],
        "{record}"
    );
}

/// The caller's side refuses REFER (501): kefu dials the target itself (a SIP URI
/// here, a raw UA answering PCMA) and bridges; the caller's frames reach it.
#[test]
fn a_trunk_without_refer_is_bridged_to_the_target_by_kefu() {
    let plans = tempfile::tempdir().unwrap();
    // The target listens before the plan names it.
    let target_ua = RawUa::new("127.0.0.1:9".parse().unwrap());
    let target_uri = format!("sip:7001@{}", target_ua.local());
    plan(plans.path(), &target_uri);
    let server = Server::start(Some(plans.path()));
    let target = Phone {
        ua: RawUa {
            server: server.sip,
            ..target_ua
        },
        extension: "7001".into(),
    };
    let dir = tempfile::tempdir().unwrap();
    let frames: Vec<Vec<u8>> = (0..300).map(|i| frame(i, 0x44)).collect();
    let pcap = dir.path().join("caller.pcap");
    write_rtp_pcap(&pcap, &frames, 0, 2000);
    let after = [
        reply("501 Not Implemented"),
        "  <pause milliseconds=\"3000\"/>\n".to_string(),
        format!(
            "  <nop><action><exec play_pcap_audio=\"{}\"/></action></nop>\n",
            pcap.display()
        ),
        "  <recv request=\"BYE\" timeout=\"30000\"/>\n".to_string(),
        reply("200 OK"),
        "  <Reference variables=\"referto\"/>\n".to_string(),
    ]
    .concat();
    let s = scenario(dir.path(), "refer-refused", &after);
    let server = std::sync::Arc::new(server);
    let caller = std::thread::spawn({
        let server = server.clone();
        move || sipp(&server, &s)
    });
    let invite = target.ringing(Duration::from_secs(20));
    assert!(
        invite.starts_with(&format!("INVITE {target_uri} ")),
        "{invite}"
    );
    target.answer(&invite);
    let expected: std::collections::HashSet<Vec<u8>> = frames
        .iter()
        .map(|f| transcode(Law::Pcmu, Law::Pcma, f))
        .collect();
    let mut matched = 0;
    target.collect(Duration::from_secs(20), |got| {
        matched = got
            .iter()
            .filter(|p| p.len() == 172 && expected.contains(&p[12..]))
            .count();
        matched >= 250
    });
    assert!(
        matched >= 250,
        "{matched} of 300 caller frames reached the target; kefu:\n{}",
        server.logs().join("\n")
    );
    target.hang_up(&invite);
    let (ok, out) = caller.join().unwrap();
    assert!(ok, "SIPp:\n{out}\nkefu:\n{}", server.logs().join("\n"));
    let record = common::only_record(&server);
    assert_eq!(record["end_reason"], "agent-hangup", "{record}");
    assert_eq!(record["transfer"]["method"], "dial-out", "{record}");
    assert_eq!(record["transfer"]["agent"], target_uri.as_str(), "{record}");
}
