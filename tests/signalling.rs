//! SIP behaviour at the edges: malformed input, unknown dialogs, CANCEL, INVITE
//! retransmission, OPTIONS, and the RTP a caller receives after its ACK.

mod common;

use std::time::Duration;

use common::{RawUa, Server};

const T: Duration = Duration::from_secs(5);

#[test]
fn malformed_requests_get_400_and_the_server_keeps_answering() {
    let server = Server::start(Some(&common::dtmf_plans()));
    let ua = RawUa::new(server.sip);
    ua.send("INVITE sip:kefu@127.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK-x\nFrom: <sip:a@b>;tag=1\nTo: <sip:kefu@127.0.0.1>\nCall-ID: bad-1\nCSeq: 1 BYE\nContent-Length: 0\n\n");
    let resp = ua.expect_status(400, T);
    assert!(resp.contains("does not match"), "{resp}");
    ua.send("FROB sip:kefu@127.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK-y\nFrom: <sip:a@b>;tag=1\nTo: <sip:kefu@127.0.0.1>\nCall-ID: bad-2\nCSeq: 1 FROB\nContent-Length: 0\n\n");
    ua.expect_status(501, T);
    ua.sock
        .send_to(&[0xff, 0x00, 0x13, 0x37], server.sip)
        .unwrap();
    ua.send("this is not sip\n\n");
    ua.expect_status(400, T);
    // Still serving: OPTIONS is answered with what kefu allows.
    let me = ua.local();
    ua.send(&format!("OPTIONS sip:kefu@{} SIP/2.0\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-o\nFrom: <sip:a@{me}>;tag=1\nTo: <sip:kefu@{}>\nCall-ID: opt-1\nCSeq: 1 OPTIONS\nMax-Forwards: 70\nContent-Length: 0\n\n", server.sip, server.sip));
    let ok = ua.expect_status(200, T);
    assert!(ok.contains("INVITE"), "{ok}");
    // REGISTER is for agents' phones: challenged (tests/agents.rs goes further).
    ua.send(&format!("REGISTER sip:{} SIP/2.0\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-r\nFrom: <sip:a@{me}>;tag=1\nTo: <sip:a@{me}>\nCall-ID: reg-1\nCSeq: 1 REGISTER\nMax-Forwards: 70\nContent-Length: 0\n\n", server.sip));
    assert!(
        ua.expect_status(401, T)
            .contains("WWW-Authenticate: Digest")
    );
    // SUBSCRIBE is not for this server: 405 with Allow.
    ua.send(&format!("SUBSCRIBE sip:{} SIP/2.0\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-s\nFrom: <sip:a@{me}>;tag=1\nTo: <sip:a@{me}>\nCall-ID: sub-1\nCSeq: 1 SUBSCRIBE\nEvent: presence\nMax-Forwards: 70\nContent-Length: 0\n\n", server.sip));
    assert!(ua.expect_status(405, T).contains("Allow:"));
}

#[test]
fn bye_for_an_unknown_dialog_gets_481() {
    let server = Server::start(Some(&common::dtmf_plans()));
    let ua = RawUa::new(server.sip);
    let me = ua.local();
    ua.send(&format!("BYE sip:kefu@{} SIP/2.0\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-b\nFrom: <sip:a@{me}>;tag=1\nTo: <sip:kefu@{}>;tag=nope\nCall-ID: no-such-call\nCSeq: 2 BYE\nMax-Forwards: 70\nContent-Length: 0\n\n", server.sip, server.sip));
    ua.expect_status(481, T);
}

#[test]
fn cancel_before_answer_gets_487() {
    let dir = tempfile::tempdir().unwrap();
    let plan = std::fs::read_to_string(common::dtmf_plans().join("demo-en.toml"))
        .unwrap()
        .replace(
            "language = \"en\"",
            "language = \"en\"\nanswer_after = \"10s\"",
        );
    std::fs::write(dir.path().join("ring.toml"), plan).unwrap();
    let server = Server::start(Some(dir.path()));
    let ua = RawUa::new(server.sip);
    ua.send(&ua.invite("cancel-1", "z9hG4bK-c1", "kefu-en"));
    ua.expect_status(180, T);
    let me = ua.local();
    ua.send(&format!("CANCEL sip:kefu-en@{} SIP/2.0\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-c1;rport\nFrom: <sip:13900139000@{me}>;tag=raw1\nTo: <sip:kefu-en@{}>\nCall-ID: cancel-1\nCSeq: 1 CANCEL\nMax-Forwards: 70\nContent-Length: 0\n\n", server.sip, server.sip));
    ua.expect_status(487, T);
    let r = server.record("cancel-1");
    assert_eq!(r["end_reason"], "cancelled", "{r}");
    assert!(r["answer_at"].is_null(), "{r}");
}

#[test]
fn retransmitted_invite_is_one_call_and_rtp_is_paced() {
    let server = Server::start(Some(&common::dtmf_plans()));
    let ua = RawUa::new(server.sip);
    let invite = ua.invite("retrans-1", "z9hG4bK-r1", "kefu-en");
    ua.send(&invite);
    ua.send(&invite);
    ua.send(&invite);
    let ok = ua.expect_status(200, T);
    // A late retransmission is answered with the same 200 (same dialog, same
    // answer), not with a new call.
    ua.send(&invite);
    let again = ua.expect_status(200, T);
    let header = |m: &str, name: &str| {
        m.lines()
            .find(|l| l.to_ascii_lowercase().starts_with(&format!("{name}:")))
            .map(str::to_string)
    };
    for name in ["to", "contact", "cseq", "call-id"] {
        assert_eq!(header(&ok, name), header(&again, name), "{name}");
    }
    let body = |m: &str| m.split_once("\r\n\r\n").map(|(_, b)| b.to_string());
    assert_eq!(body(&ok), body(&again), "the same answer");
    assert_eq!(server.active_calls(), Some(1), "one call, not two");
    let ack = ua.in_dialog(&ok, "ACK", 1, "z9hG4bK-ack1");
    ua.send(&ack);

    // On the caller's side: the prompt's packets, in order, one frame each.
    ua.rtp
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut buf = [0u8; 2048];
    let mut seqs = Vec::new();
    while seqs.len() < 150 {
        let (n, _) = ua.rtp.recv_from(&mut buf).expect("RTP from kefu");
        let pkt = rtp_rs::RtpReader::new(&buf[..n]).unwrap();
        assert_eq!(pkt.payload().len(), 160);
        seqs.push((
            u16::from(pkt.sequence_number()),
            pkt.timestamp(),
            pkt.mark(),
        ));
    }
    assert!(seqs[0].2, "first packet has the marker bit");
    for w in seqs.windows(2) {
        assert_eq!(w[1].0, w[0].0.wrapping_add(1));
        assert_eq!(w[1].1, w[0].1.wrapping_add(160));
        assert!(!w[1].2, "a marker bit in the middle of the talkspurt");
    }
    // (How steadily the packets are paced is measured by the load bench.)

    let bye = ua.in_dialog(&ok, "BYE", 2, "z9hG4bK-bye1");
    ua.send(&bye);
    ua.expect_status(200, T);
    let r = server.record("retrans-1");
    assert_eq!(r["end_reason"], "caller-hangup", "{r}");
    // A second call from the retransmission would still be waiting for its ACK.
    server.wait_no_calls();
    assert_eq!(
        server.records().len(),
        1,
        "a retransmitted INVITE made a second call"
    );
}

#[test]
fn call_limit_and_draining_answer_503_with_retry_after() {
    let server = Server::start_with(Some(&common::dtmf_plans()), "max_calls = 1");
    let a = RawUa::new(server.sip);
    let ok = a.answered_call("limit-1", "kefu-en");
    let b = RawUa::new(server.sip);
    b.send(&b.invite("limit-2", "z9hG4bK-l2", "kefu-en"));
    let busy = b.expect_status(503, T);
    assert!(busy.contains("Retry-After:"), "{busy}");
    a.send(&a.in_dialog(&ok, "BYE", 2, "z9hG4bK-l1b"));
    a.expect_status(200, T);
}

/// Reads RTP until none comes for `quiet`: how many packets came.
fn drain_rtp(ua: &RawUa, quiet: Duration) -> usize {
    ua.rtp.set_read_timeout(Some(quiet)).unwrap();
    let mut buf = [0u8; 2048];
    let mut n = 0;
    while ua.rtp.recv_from(&mut buf).is_ok() {
        n += 1;
        assert!(n < 10_000, "RTP never stops");
    }
    n
}

#[test]
fn reinvite_holds_unholds_and_changes_codec() {
    let server = Server::start(Some(&common::dtmf_plans()));
    let ua = RawUa::new(server.sip);
    let ok = ua.answered_call("reinv-1", "kefu-en");
    let before = ua.rtp_packets(10);
    assert!(
        before.iter().all(|(pt, _)| *pt == 0),
        "PCMU first: {before:?}"
    );

    // Hold: the caller will only send, so kefu answers recvonly and goes quiet.
    let te =
        "a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n";
    let hold = ua.sdp(2, "0 8 101", &format!("{te}a=sendonly\r\n"));
    ua.send(&ua.in_dialog_with_sdp(&ok, "INVITE", 2, "z9hG4bK-hold", &hold));
    let answer = ua.expect_status(200, T);
    assert!(answer.contains("a=recvonly"), "{answer}");
    assert!(answer.contains("RTP/AVP 0 101"), "{answer}");
    ua.send(&ua.in_dialog(&ok, "ACK", 2, "z9hG4bK-hold-ack"));
    // Packets sent before the hold took effect, then silence: the first quiet
    // stretch must last for good (until the unhold).
    let in_flight = drain_rtp(&ua, Duration::from_millis(200));
    assert!(in_flight < 25, "{in_flight} packets after the hold");
    let held = drain_rtp(&ua, Duration::from_millis(600));
    assert_eq!(held, 0, "RTP while on hold");

    // Unhold with only PCMA on offer: kefu resumes, in PCMA, with a marker bit.
    let pcma = ua.sdp(
        3,
        "8 101",
        "a=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n",
    );
    ua.send(&ua.in_dialog_with_sdp(&ok, "INVITE", 3, "z9hG4bK-unhold", &pcma));
    let answer = ua.expect_status(200, T);
    assert!(answer.contains("a=sendrecv"), "{answer}");
    assert!(answer.contains("RTP/AVP 8 101"), "{answer}");
    assert!(answer.contains("PCMA/8000"), "{answer}");
    ua.send(&ua.in_dialog(&ok, "ACK", 3, "z9hG4bK-unhold-ack"));
    let after = ua.rtp_packets(10);
    assert!(
        after.iter().all(|(pt, _)| *pt == 8),
        "PCMA after: {after:?}"
    );
    assert!(after[0].1, "the first packet after hold has the marker bit");

    // An offer with no codec kefu speaks is refused and the call goes on unchanged.
    let g729 = ua.sdp(4, "18", "a=rtpmap:18 G729/8000\r\n");
    ua.send(&ua.in_dialog_with_sdp(&ok, "INVITE", 4, "z9hG4bK-g729", &g729));
    ua.expect_status(488, T);
    let still = ua.rtp_packets(10);
    assert!(still.iter().all(|(pt, _)| *pt == 8), "{still:?}");

    ua.send(&ua.in_dialog(&ok, "BYE", 5, "z9hG4bK-reinv-bye"));
    ua.expect_status(200, T);
    assert_eq!(server.record("reinv-1")["end_reason"], "caller-hangup");
}

/// A trunk trusted to assert who calls (RFC 3325): the caller's number comes
/// from its P-Asserted-Identity, even when the From is anonymous; from a trunk
/// not trusted to, the header is ignored and the From counts.
#[test]
fn a_trusted_trunk_names_the_caller_with_p_asserted_identity() {
    for (trusted, wanted) in [(true, "+8613800138000"), (false, "anonymous")] {
        let server = Server::start_with(
            Some(&common::dtmf_plans()),
            &format!(
                "[[trunk]]\nname = \"carrier\"\naddresses = [\"127.0.0.1\"]\ntrust_identity = {trusted}\n"
            ),
        );
        let ua = RawUa::new(server.sip);
        let invite = ua
            .invite("pai-1", "z9hG4bK-pai-1", "kefu-en")
            .replace("From: <sip:13900139000@", "From: <sip:anonymous@")
            .replace(
                "Max-Forwards: 70\n",
                "Max-Forwards: 70\nPrivacy: id\nP-Asserted-Identity: \"Li\" <sip:+8613800138000@ims.carrier.example;user=phone>, <tel:+86-138-0013-8000>\n",
            );
        ua.send(&invite);
        let ok = ua.expect_status(200, Duration::from_secs(5));
        ua.send(&ua.in_dialog(&ok, "ACK", 1, "z9hG4bK-pai-ack"));
        ua.send(&ua.in_dialog(&ok, "BYE", 2, "z9hG4bK-pai-bye"));
        ua.expect_status(200, Duration::from_secs(5));
        let r = common::only_record(&server);
        assert_eq!(r["from"], wanted, "trusted {trusted}: {r}");
    }
}

/// Behind 1:1 NAT (`advertised_address`): the 200 OK's SDP and Contact, and
/// the Via of what kefu sends, name the public address, not the bound one.
#[test]
fn an_advertised_address_is_what_sip_and_sdp_name() {
    let server = Server::start_with(
        Some(&common::dtmf_plans()),
        "advertised_address = \"203.0.113.7\"\nrtp_timeout = \"2s\"",
    );
    let ua = RawUa::new(server.sip);
    ua.send(&ua.invite("adv-1", "z9hG4bK-adv-1", "kefu-en"));
    let ok = ua.expect_status(200, Duration::from_secs(5));
    assert!(ok.contains("c=IN IP4 203.0.113.7"), "{ok}");
    assert!(
        ok.contains("o=kefu ") && ok.contains("IN IP4 203.0.113.7\r\n"),
        "{ok}"
    );
    let contact = common::phone::header(&ok, "Contact").unwrap();
    assert!(
        contact.contains(&format!("203.0.113.7:{}", server.sip.port())),
        "{contact}"
    );
    ua.send(&ua.in_dialog(&ok, "ACK", 1, "z9hG4bK-adv-ack"));
    // No RTP from this caller: kefu hangs up, and its BYE's Via is public.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let bye = loop {
        let m = ua.recv(Duration::from_secs(10)).expect("kefu's BYE");
        if m.starts_with("BYE ") {
            break m;
        }
        assert!(std::time::Instant::now() < deadline, "no BYE");
    };
    ua.ok(&bye);
    let via = common::phone::header(&bye, "Via").unwrap();
    assert!(
        via.contains(&format!("203.0.113.7:{}", server.sip.port())),
        "{via}"
    );
}

/// Session timers (RFC 4028), as carriers' SBCs ask for them: `Require: timer`
/// is accepted; an interval under 90 s gets 422 with Min-SE; the 200 names the
/// interval and who refreshes; a caller's refresh is answered with its
/// Session-Expires; and when the caller makes kefu the refresher, kefu sends
/// UPDATE at half the interval.
#[test]
fn session_timers_are_negotiated_and_kept() {
    // A plan that keeps the caller a while: one key, waited for 100 s.
    let plans = tempfile::tempdir().unwrap();
    std::fs::write(
        plans.path().join("wait.toml"),
        "[dialplan]\nname = \"wait\"\nnumbers = [\"kefu-en\"]\nlanguage = \"en\"\nstart = \"key\"\n\n\
         [nodes.key]\ntype = \"collect\"\nprompt = \"en/main-menu.wav\"\nvariable = \"key\"\n\
         max_digits = 1\nfirst_digit_timeout = \"100s\"\nnext = \"bye\"\non_failure = \"bye\"\n\n\
         [nodes.bye]\ntype = \"hangup\"\n",
    )
    .unwrap();
    let server = Server::start_with(Some(plans.path()), "rtp_timeout = \"120s\"");
    let ua = RawUa::new(server.sip);
    let with_timer = |call: &str, expires: &str| {
        ua.invite(call, &format!("z9hG4bK-{call}"), "kefu-en").replace(
            "Max-Forwards: 70\n",
            &format!("Max-Forwards: 70\nSupported: timer\nRequire: timer\nSession-Expires: {expires}\n"),
        )
    };
    ua.send(&with_timer("st-short", "60"));
    let refused = ua.expect_status(422, Duration::from_secs(5));
    assert_eq!(
        common::phone::header(&refused, "Min-SE").as_deref(),
        Some("90"),
        "{refused}"
    );

    ua.send(&with_timer("st-uas", "90;refresher=uas"));
    let ok = ua.expect_status(200, Duration::from_secs(5));
    assert_eq!(
        common::phone::header(&ok, "Session-Expires").as_deref(),
        Some("90;refresher=uas"),
        "{ok}"
    );
    assert_eq!(
        common::phone::header(&ok, "Require").as_deref(),
        Some("timer"),
        "{ok}"
    );
    ua.send(&ua.in_dialog(&ok, "ACK", 1, "z9hG4bK-st-ack"));
    // The call is up once its audio flows.
    ua.rtp_packets(1);
    // The caller refreshes once (a re-INVITE with the same SDP): the 200
    // carries the Session-Expires.
    let sdp = ua.sdp(2, "0 101", "a=rtpmap:101 telephone-event/8000\r\n");
    let reinvite = ua
        .in_dialog_with_sdp(&ok, "INVITE", 2, "z9hG4bK-st-re", &sdp)
        .replace(
            "CSeq: 2 INVITE",
            "Session-Expires: 90;refresher=uas\nCSeq: 2 INVITE",
        );
    ua.send(&reinvite);
    let refreshed = ua.expect_status(200, Duration::from_secs(5));
    assert_eq!(
        common::phone::header(&refreshed, "Session-Expires").as_deref(),
        Some("90;refresher=uas"),
        "{refreshed}"
    );
    ua.send(&ua.in_dialog(&refreshed, "ACK", 2, "z9hG4bK-st-reack"));
    // kefu refreshes 45 s after that (half the interval).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let update = loop {
        let m = ua.recv(Duration::from_secs(60)).expect("kefu's UPDATE");
        if m.starts_with("UPDATE ") {
            break m;
        }
        assert!(std::time::Instant::now() < deadline, "no UPDATE");
    };
    assert_eq!(
        common::phone::header(&update, "Session-Expires").as_deref(),
        Some("90;refresher=uas"),
        "{update}"
    );
    ua.ok(&update);
    ua.send(&ua.in_dialog(&ok, "BYE", 3, "z9hG4bK-st-bye"));
    let bye_ok = ua.expect_status(200, Duration::from_secs(5));
    assert!(bye_ok.contains("CSeq: 3 BYE"), "{bye_ok}");
    let r = common::only_record(&server);
    assert_eq!(r["end_reason"], "caller-hangup", "{r}");
}
