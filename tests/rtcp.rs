//! RTCP on the wire (RFC 3550, RFC 5761): a bare SIP UA over loopback calls the
//! demo menu, sends RTP, and reads kefu's reports with the `rtcp` crate: sender
//! reports on the RTP port + 1 with a reception block about the caller's stream
//! and a CNAME; the caller's own report comes back in the call record (loss,
//! jitter, round-trip time); BYE when the call ends. Offered `a=rtcp-mux`, kefu
//! accepts it and reports on the RTP port.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use common::{RawUa, Server, dtmf_plans};
use rtcp::packet::Packet;
use rtcp::receiver_report::ReceiverReport;
use rtcp::reception_report::ReceptionReport;
use rtcp::sender_report::SenderReport;
use rtcp::source_description::SourceDescription;

const CALLER_SSRC: u32 = 0x00C0_FFEE;

/// A UA whose RTP socket is on an even port with the odd one bound for RTCP.
fn ua_with_rtcp(server: SocketAddr) -> (RawUa, UdpSocket) {
    for _ in 0..100 {
        let rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = rtp.local_addr().unwrap().port();
        if !port.is_multiple_of(2) {
            continue;
        }
        if let Ok(rtcp) = UdpSocket::bind(("127.0.0.1", port + 1)) {
            let mut ua = RawUa::new(server);
            ua.rtp = rtp;
            return (ua, rtcp);
        }
    }
    panic!("no even port with a free odd neighbour");
}

/// Places a call to the demo menu with `attributes` in the offer and ACKs it:
/// the 200 OK.
fn call(ua: &RawUa, call_id: &str, attributes: &str) -> String {
    call_to(ua, call_id, "kefu-en", attributes)
}

/// [`call`] to `service`.
fn call_to(ua: &RawUa, call_id: &str, service: &str, attributes: &str) -> String {
    let sdp = ua.sdp(
        1,
        "0 101",
        &format!("a=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n{attributes}"),
    );
    let me = ua.local();
    let invite = format!(
        "INVITE sip:{service}@{srv} SIP/2.0\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-{call_id};rport\nFrom: <sip:13900139000@{me}>;tag=rtcp1\nTo: <sip:{service}@{srv}>\nCall-ID: {call_id}\nCSeq: 1 INVITE\nContact: <sip:13900139000@{me}>\nMax-Forwards: 70\nContent-Type: application/sdp\nContent-Length: {}\n\n{sdp}",
        sdp.len(),
        srv = ua.server
    );
    ua.send(&invite);
    let ok = ua.expect_status(200, Duration::from_secs(5));
    ua.send(&ua.in_dialog(&ok, "ACK", 1, &format!("z9hG4bK-{call_id}-ack")));
    ok
}

/// kefu's RTP port, from its answer.
fn kefu_rtp(ok: &str) -> SocketAddr {
    let port = ok
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Sends silence as the caller's stream every 20 ms until `stop`.
fn talk(rtp: UdpSocket, to: SocketAddr, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    talk_pressing(rtp, to, stop, None)
}

/// [`talk`], pressing `key` (RFC 4733, payload type 101) 2.5 s in.
fn talk_pressing(
    rtp: UdpSocket,
    to: SocketAddr,
    stop: Arc<AtomicBool>,
    key: Option<u8>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut seq: u16 = 1;
        let mut frames = 0;
        while !stop.load(Ordering::Relaxed) {
            frames += 1;
            if frames == 125
                && let Some(key) = key
            {
                common::phone::press(&rtp, 101, to, key, &mut seq);
            }
            let mut p = vec![0x80, 0];
            p.extend_from_slice(&seq.to_be_bytes());
            p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
            p.extend_from_slice(&CALLER_SSRC.to_be_bytes());
            p.extend_from_slice(&[0xff; 160]);
            let _ = rtp.send_to(&p, to);
            seq = seq.wrapping_add(1);
            std::thread::sleep(Duration::from_millis(20));
        }
    })
}

/// The next RTCP compound packet on `socket` (RTP packets skipped), within 10 s.
fn next_rtcp(socket: &UdpSocket) -> Vec<Box<dyn Packet + Send + Sync>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 2048];
    while Instant::now() < deadline {
        socket
            .set_read_timeout(Some(deadline - Instant::now()))
            .unwrap();
        let Ok((n, _)) = socket.recv_from(&mut buf) else {
            break;
        };
        if n >= 2 && (192..=223).contains(&buf[1]) {
            let mut raw = &buf[..n];
            return rtcp::packet::unmarshal(&mut raw).expect("RTCP that parses");
        }
    }
    panic!("no RTCP from kefu within 10 s");
}

#[test]
fn kefu_reports_on_the_odd_port_and_reads_the_callers_reports() {
    let server = Server::start(Some(&dtmf_plans()));
    let (ua, rtcp_socket) = ua_with_rtcp(server.sip);
    let ok = call(&ua, "rtcp-odd", "");
    assert!(
        !ok.contains("a=rtcp-mux"),
        "not offered, not answered:\n{ok}"
    );
    let kefu = kefu_rtp(&ok);
    let stop = Arc::new(AtomicBool::new(false));
    let talker = talk(ua.rtp.try_clone().unwrap(), kefu, stop.clone());

    // A sender report (kefu plays the menu) about the caller's stream, and a CNAME.
    let report = next_rtcp(&rtcp_socket);
    let sr = report[0]
        .as_any()
        .downcast_ref::<SenderReport>()
        .unwrap_or_else(|| panic!("a sender report first: {report:?}"));
    assert!(
        sr.packet_count > 0 && sr.octet_count >= 160 * sr.packet_count,
        "{sr:?}"
    );
    assert_eq!(sr.reports.len(), 1, "{sr:?}");
    assert_eq!(sr.reports[0].ssrc, CALLER_SSRC);
    assert!(sr.reports[0].last_sequence_number > 10, "{sr:?}");
    let sdes = report[1]
        .as_any()
        .downcast_ref::<SourceDescription>()
        .expect("an SDES after the report");
    assert_eq!(sdes.chunks[0].source, sr.ssrc);
    assert!(!sdes.chunks[0].items[0].text.is_empty());
    let received_at = SystemTime::now();

    // The caller reports kefu's stream back 20 ms after the SR came.
    std::thread::sleep(Duration::from_millis(20));
    let rr = ReceiverReport {
        ssrc: CALLER_SSRC,
        reports: vec![ReceptionReport {
            ssrc: sr.ssrc,
            fraction_lost: 64,
            total_lost: 7,
            last_sequence_number: 1000,
            jitter: 80,
            last_sender_report: (sr.ntp_time >> 16) as u32,
            delay: ((SystemTime::now()
                .duration_since(received_at)
                .unwrap()
                .as_secs_f64())
                * 65536.0) as u32,
        }],
        profile_extensions: bytes::Bytes::new(),
    };
    let packet = rtcp::packet::marshal(&[Box::new(rr) as Box<dyn Packet + Send + Sync>]).unwrap();
    rtcp_socket
        .send_to(&packet, SocketAddr::new(kefu.ip(), kefu.port() + 1))
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));

    // Hang up: kefu says BYE in RTCP too.
    ua.send(&ua.in_dialog(&ok, "BYE", 2, "z9hG4bK-rtcp-odd-bye"));
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut bye = false;
    while !bye && Instant::now() < deadline {
        let packets = next_rtcp(&rtcp_socket);
        bye = packets.iter().any(|p| {
            p.as_any()
                .downcast_ref::<rtcp::goodbye::Goodbye>()
                .is_some()
        });
    }
    assert!(bye, "an RTCP BYE at the end");
    stop.store(true, Ordering::Relaxed);
    talker.join().unwrap();

    let record = server.record("rtcp-odd");
    let rtcp = &record["rtcp"];
    assert!(rtcp["sent"].as_u64().unwrap() >= 2, "{record}");
    let far = &rtcp["far_end"];
    assert_eq!(far["reports"], 1, "{record}");
    assert_eq!(far["total_lost"], 7, "{record}");
    assert_eq!(far["fraction_lost"], 0.25, "{record}");
    assert_eq!(far["jitter_ms"], 10.0, "{record}");
    let rtt = far["rtt_ms"].as_f64().expect("a round-trip time");
    assert!((0.0..100.0).contains(&rtt), "loopback: {rtt} ms");
}

#[test]
fn offered_rtcp_mux_kefu_reports_on_the_rtp_port() {
    let server = Server::start(Some(&dtmf_plans()));
    let (ua, _odd) = ua_with_rtcp(server.sip);
    let ok = call(&ua, "rtcp-mux", "a=rtcp-mux\r\n");
    assert!(ok.contains("a=rtcp-mux"), "accepted in the answer:\n{ok}");
    let kefu = kefu_rtp(&ok);
    let stop = Arc::new(AtomicBool::new(false));
    let talker = talk(ua.rtp.try_clone().unwrap(), kefu, stop.clone());
    let report = next_rtcp(&ua.rtp);
    let sr = report[0]
        .as_any()
        .downcast_ref::<SenderReport>()
        .unwrap_or_else(|| panic!("a sender report: {report:?}"));
    assert_eq!(sr.reports[0].ssrc, CALLER_SSRC);
    stop.store(true, Ordering::Relaxed);
    talker.join().unwrap();
    ua.send(&ua.in_dialog(&ok, "BYE", 2, "z9hG4bK-rtcp-mux-bye"));
    let record = server.record("rtcp-mux");
    assert!(record["rtcp"]["sent"].as_u64().unwrap() >= 1, "{record}");
}

/// While a bridge relays the call to an agent, kefu goes on reporting to the
/// caller: receiver reports about the caller's stream (the relayed packets are
/// the agent phone's, not a clock kefu could pair with its own).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bridged_caller_still_gets_receiver_reports() {
    use common::phone::{Phone, add_agent_with_phone, always_open_plans, available};
    let plans = tempfile::tempdir().unwrap();
    always_open_plans(plans.path());
    let server = Server::start_with(
        Some(plans.path()),
        "[[queue]]\nname = \"support-en\"\nring_timeout = \"20s\"\nmax_wait = \"2m\"\n",
    );
    add_agent_with_phone(&server, "ann", "3001", "support-en");
    let phone = Phone::register(&server, "3001");
    available(&server, "ann").await;
    let (ua, _odd) = ua_with_rtcp(server.sip);
    let ok = call_to(&ua, "rtcp-bridge", "4008002000", "a=rtcp-mux\r\n");
    let kefu = kefu_rtp(&ok);
    let stop = Arc::new(AtomicBool::new(false));
    let talker = talk_pressing(ua.rtp.try_clone().unwrap(), kefu, stop.clone(), Some(0));
    let ring = tokio::task::block_in_place(|| phone.ringing(Duration::from_secs(30)));
    tokio::task::block_in_place(|| phone.answer(&ring));
    // Bridged: a receiver report about the caller's stream comes within 10 s.
    let rr = tokio::task::block_in_place(|| {
        let deadline = Instant::now() + Duration::from_secs(12);
        while Instant::now() < deadline {
            let report = next_rtcp(&ua.rtp);
            if let Some(rr) = report[0].as_any().downcast_ref::<ReceiverReport>() {
                return Some(rr.clone());
            }
        }
        None
    })
    .expect("a receiver report while bridged");
    assert_eq!(rr.reports.len(), 1, "{rr:?}");
    assert_eq!(rr.reports[0].ssrc, CALLER_SSRC);
    stop.store(true, Ordering::Relaxed);
    talker.join().unwrap();
    ua.send(&ua.in_dialog(&ok, "BYE", 2, "z9hG4bK-rtcp-bridge-bye"));
}
