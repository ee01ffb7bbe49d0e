//! Follow-up calls over real SIP and RTP: a SIPp caller nobody answered asks to
//! be called back at the demo's no-agent menu; the ticket is on the desk's list
//! of callbacks; the agent clicks to call: kefu rings the agent's registered
//! phone, then dials the customer through the trunk (a raw UA at the trunk's
//! address). The first try finds the customer busy, the second is answered and
//! the two talk (audio checked both ways, transcoded); the outcome of each try
//! is on the ticket, and the call is in the customer's history.

mod common;

use std::collections::HashSet;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::desk::Desk;
use common::phone::{
    Phone, add_agent_with_phone, always_open_plans, frame, header, rtp, sdp_target, transcode,
};
use common::{RawUa, Server};
use kefu::media::g711::Law;
use serde_json::Value;

/// The desk's callback requests.
impl Desk {
    async fn call(&self, num: i64) -> (u16, Value) {
        self.send(reqwest::Method::POST, &format!("/api/tickets/{num}/call"))
            .await
    }

    /// The ticket once its callback has `tries` tries (10 s at most).
    async fn tried(&self, num: i64, tries: i64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (_, t) = self.get(&format!("/api/tickets/{num}")).await;
            if t["callback"]["tries"] == tries || Instant::now() > deadline {
                return t;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The customer's phone at the trunk: answers with PCMU (the agent's phone
/// speaks PCMA, so kefu transcodes), telephone-event 101.
fn answer_pcmu(customer: &Phone, invite: &str) {
    customer.respond(invite, "180 Ringing", "");
    let sdp = format!(
        "v=0\r\no=- 9 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n",
        customer.ua.rtp.local_addr().unwrap().port()
    );
    customer.respond(invite, "200 OK", &sdp);
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Some(m) = customer.ua.recv(deadline - Instant::now())
            && m.starts_with("ACK ")
        {
            return;
        }
    }
    panic!("kefu did not ACK the customer's 200 OK");
}

/// Sends `frames` from `sock` to `to` every 20 ms on a thread.
fn send_frames(
    sock: &UdpSocket,
    to: SocketAddr,
    pt: u8,
    frames: Vec<Vec<u8>>,
) -> std::thread::JoinHandle<()> {
    let sock = sock.try_clone().unwrap();
    std::thread::spawn(move || {
        for (i, f) in frames.iter().enumerate() {
            let p = rtp(pt, 100 + i as u16, 4000 + 160 * i as u32, i == 0, f);
            if sock.send_to(&p, to).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    })
}

/// How many of the packets `sock` receives within 20 s carry one of `expected`.
fn count_received(sock: &UdpSocket, expected: HashSet<Vec<u8>>, want: usize) -> usize {
    let mut matched = 0;
    let mut buf = [0u8; 2048];
    let deadline = Instant::now() + Duration::from_secs(20);
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    while Instant::now() < deadline && matched < want {
        if let Ok((n, _)) = sock.recv_from(&mut buf)
            && n == 172
            && expected.contains(&buf[12..n])
        {
            matched += 1;
        }
    }
    matched
}

/// A server whose trunk leads to the customer's phone (a raw UA), with the
/// support queue giving up after 5 s.
fn server_with_a_trunk() -> (Server, Phone) {
    let customer_sip = UdpSocket::bind("127.0.0.1:0").unwrap();
    let customer_rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let trunk = customer_sip.local_addr().unwrap();
    let plans = tempfile::tempdir().unwrap();
    always_open_plans(plans.path());
    let server = Server::start_with(
        Some(plans.path()),
        &format!(
            "[[queue]]\nname = \"support-en\"\nring_timeout = \"5s\"\nmax_wait = \"5s\"\n\n\
             [[trunk]]\nname = \"carrier\"\naddresses = [\"127.0.0.1\"]\noutbound = \"{trunk}\"\ncaller_id = \"4008002000\"\n"
        ),
    );
    let customer = Phone {
        ua: RawUa {
            sock: customer_sip,
            server: server.sip,
            rtp: customer_rtp,
        },
        extension: "customer".into(),
    };
    (server, customer)
}

/// [`common::desk::ask_for_a_callback`] on this server, and the call's path through
/// the demo's menus to "call me back".
async fn ask_for_a_callback(server: &Server, desk: &Desk) -> i64 {
    let num = common::desk::ask_for_a_callback(server, desk).await;
    let record = common::only_record(server);
    assert_eq!(
        common::strings(&record["path"]),
        [
            "welcome",
            "main_menu",
            "agent_hours",
            "agent",
            "no_agent",
            "callback",
            "callback_said",
            "goodbye"
        ],
        "{record}"
    );
    num
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requested_callback_is_called_back_through_the_trunk() {
    let (server, customer) = server_with_a_trunk();
    // Li has a phone but is not available: nobody takes the call.
    add_agent_with_phone(&server, "li", "2001", "support-en");
    add_agent_with_phone(&server, "wang", "2002", "support-en");
    let li_phone = Phone::register(&server, "2001");

    let li = Desk::sign_in(&server, "li").await;
    let num = ask_for_a_callback(&server, &li).await;
    let (_, ticket) = li.get(&format!("/api/tickets/{num}")).await;
    assert_eq!(ticket["callback"]["number"], "138****000", "{ticket}");
    assert_eq!(ticket["callback"]["tries"], 0, "{ticket}");
    assert!(ticket["callback"]["done"].is_null(), "{ticket}");
    assert!(
        ticket["history"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["action"] == "ticket.callback-requested" && h["detail"] == "138****000"),
        "{ticket}"
    );

    // Bad requests say why.
    let (status, body) = li.call(999_999).await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = li.send(reqwest::Method::POST, "/api/tickets/x1/call").await;
    assert_eq!(status, 404, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("not a ticket number"),
        "{body}"
    );
    let (status, body) = li.get(&format!("/api/tickets/{num}/call")).await;
    assert_eq!(status, 404, "nothing in progress yet: {body}");
    // A web chat's customer left no number: nothing to dial.
    let _chat = server
        .handed_over_chat("v-callback", "I want to talk to a person")
        .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let web = loop {
        let (_, page) = li.get("/api/tickets?channel=web").await;
        if let Some(n) = page["tickets"][0]["num"].as_i64() {
            break n;
        }
        assert!(Instant::now() < deadline, "no web ticket: {page}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (status, body) = li.call(web).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("no number"),
        "{body}"
    );
    // Wang's phone is not registered and his desk takes no calls.
    let wang = Desk::sign_in(&server, "wang").await;
    let (status, body) = wang.call(num).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("phone is not registered"),
        "{body}"
    );

    // First try: Li's phone rings with the customer's number, Li answers, the
    // customer's phone is busy. Li's phone is hung up; the callback stays to make.
    let (status, body) = li.call(num).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["stage"], "ringing-agent", "{body}");
    let (status, body) = li.call(num).await;
    assert_eq!(status, 409, "one call per ticket: {body}");
    let invite = li_phone.ringing(Duration::from_secs(10));
    assert!(
        header(&invite, "From").unwrap().contains("13800138000"),
        "{invite}"
    );
    li_phone.answer(&invite);
    let to_customer = customer.ringing(Duration::from_secs(10));
    // Ringing at once: kefu stops retransmitting the INVITE (a stale copy would
    // otherwise wait in the socket for the second try).
    customer.respond(&to_customer, "180 Ringing", "");
    assert!(
        to_customer.starts_with("INVITE sip:13800138000@"),
        "{to_customer}"
    );
    assert!(
        header(&to_customer, "From").unwrap().contains("4008002000"),
        "{to_customer}"
    );
    // Li hears ringback meanwhile (450 Hz, on Li's PCMA line).
    let ringback = li_phone.collect(Duration::from_secs(5), |got| got.len() >= 25);
    let loud = ringback
        .iter()
        .filter(|p| {
            let mut pcm = [0i16; 160];
            p.len() == 172 && {
                Law::Pcma.decode(&p[12..], &mut pcm);
                pcm.iter().any(|s| s.abs() > 3000)
            }
        })
        .count();
    assert!(
        loud >= 20,
        "{loud} of {} packets carry the ringback",
        ringback.len()
    );
    customer.respond(&to_customer, "486 Busy Here", "");
    li_phone.ua.answer_request("BYE", Duration::from_secs(10));
    let t = li.tried(num, 1).await;
    assert_eq!(t["callback"]["outcome"], "busy", "{t}");
    assert!(t["callback"]["done"].is_null(), "{t}");
    assert_eq!(t["assignee"], "li", "calling back took the ticket: {t}");
    let (_, page) = li.get("/api/tickets?callback=waiting").await;
    assert_eq!(page["tickets"][0]["num"], num, "still to call: {page}");
    // Wang may not call Li's ticket now.
    let (status, body) = wang.call(num).await;
    assert_eq!(status, 403, "{body}");

    // Second try: answered; agent and customer hear each other.
    let (status, body) = li.call(num).await;
    assert_eq!(status, 202, "{body}");
    let invite = li_phone.ringing(Duration::from_secs(10));
    li_phone.answer(&invite);
    // The second try's INVITE (not a late copy of the first's).
    let first = header(&to_customer, "Call-ID").unwrap();
    let to_customer = loop {
        let invite = customer.ringing(Duration::from_secs(10));
        if header(&invite, "Call-ID").unwrap() != first {
            break invite;
        }
    };
    answer_pcmu(&customer, &to_customer);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, p) = li.get(&format!("/api/tickets/{num}/call")).await;
        if p["stage"] == "talking" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never talking: {p}; kefu:\n{}",
            server.logs().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let li_frames: Vec<Vec<u8>> = (0..150).map(|i| frame(i, 0x21)).collect();
    let customer_frames: Vec<Vec<u8>> = (0..150).map(|i| frame(i, 0x6c)).collect();
    let at_customer: HashSet<Vec<u8>> = li_frames
        .iter()
        .map(|f| transcode(Law::Pcma, Law::Pcmu, f))
        .collect();
    let at_li: HashSet<Vec<u8>> = customer_frames
        .iter()
        .map(|f| transcode(Law::Pcmu, Law::Pcma, f))
        .collect();
    let sending = [
        send_frames(&li_phone.ua.rtp, sdp_target(&invite), 8, li_frames),
        send_frames(
            &customer.ua.rtp,
            sdp_target(&to_customer),
            0,
            customer_frames,
        ),
    ];
    let customer_heard = std::thread::spawn({
        let sock = customer.ua.rtp.try_clone().unwrap();
        move || count_received(&sock, at_customer, 120)
    });
    let li_heard = count_received(&li_phone.ua.rtp, at_li, 120);
    let customer_heard = customer_heard.join().unwrap();
    for s in sending {
        s.join().unwrap();
    }
    assert!(
        li_heard >= 120 && customer_heard >= 120,
        "frames across: customer→agent {li_heard}, agent→customer {customer_heard} of 150; kefu:\n{}",
        server.logs().join("\n")
    );
    // The customer hangs up; kefu hangs Li's phone up.
    customer.hang_up(&to_customer);
    li_phone.ua.answer_request("BYE", Duration::from_secs(10));

    let t = li.tried(num, 2).await;
    assert_eq!(t["callback"]["outcome"], "answered", "{t}");
    assert!(!t["callback"]["done"].is_null(), "{t}");
    let history: Vec<String> = t["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["action"] == "ticket.callback")
        .map(|h| format!("{} {}", h["actor"], h["detail"]))
        .collect();
    assert_eq!(history.len(), 2, "{t}");
    assert!(history[0].contains("busy 138****000"), "{history:?}");
    assert!(
        history[1].contains("answered 138****000: talked 0m"),
        "{history:?}"
    );
    // The call is over (its outcome is stored a moment before it is let go).
    let deadline = Instant::now() + Duration::from_secs(5);
    while li.get(&format!("/api/tickets/{num}/call")).await.0 != 404 {
        assert!(Instant::now() < deadline, "the callback never ended");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, page) = li.get("/api/tickets?callback=waiting").await;
    assert_eq!(page["tickets"].as_array().unwrap().len(), 0, "{page}");

    // The customer's history holds both callback calls beside the first call.
    let customer_id = t["customer"].as_str().unwrap();
    let (status, view) = li.get(&format!("/api/customers/{customer_id}")).await;
    assert_eq!(status, 200, "{view}");
    let callbacks = view["interactions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| {
            i["id"]
                .as_str()
                .is_some_and(|id| id.starts_with(&format!("callback-{num}-")))
        })
        .count();
    assert_eq!(callbacks, 2, "{view}");
    // ... and the day's report counts callers, not callbacks.
    let report = server.report("channel=phone").await;
    assert_eq!(report["conversations"], 1, "{report}");
}

/// The agent calls back with the desk's softphone, in Chromium: the tickets
/// page lists the callback, the agent clicks Call back, the desk answers the
/// callback ringing there, kefu dials the customer through the trunk, and the
/// two hear each other (Opus in the browser, G.711 at the trunk). The page
/// follows the call to its end and shows the try on the ticket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_desk_softphone_calls_a_customer_back_from_the_tickets_page() {
    let (server, customer) = server_with_a_trunk();
    add_agent_with_phone(&server, "ann", "3001", "support-en");
    let ann = Desk::sign_in(&server, "ann").await;
    let num = ask_for_a_callback(&server, &ann).await;

    let dir = tempfile::tempdir().unwrap();
    let speech = |words: &str, name: &str| {
        let sub = dir.path().join(name);
        std::fs::create_dir_all(&sub).unwrap();
        let mut frames = common::spoken_frames(words, &sub);
        frames.extend(std::iter::repeat_n([0xffu8; 160], 25));
        frames
    };
    let agent_frames = speech(
        "Hello, this is Ann from the service desk, calling you back.",
        "ann",
    );
    let mut mic = Vec::with_capacity(agent_frames.len() * 160);
    for f in &agent_frames {
        let mut pcm = [0i16; 160];
        Law::Pcmu.decode(f, &mut pcm);
        mic.extend_from_slice(&pcm);
    }
    let wav = dir.path().join("mic.wav");
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&wav, spec).unwrap();
    for s in mic {
        w.write_sample(s).unwrap();
    }
    w.finalize().unwrap();
    let customer_frames = speech(
        "Oh hello, thank you for calling me back so soon.",
        "customer",
    );

    // The customer answers, talks for 12 s (what they hear is kept), and hangs up.
    let talking = std::thread::spawn(move || {
        let invite = customer.ringing(Duration::from_secs(90));
        answer_pcmu(&customer, &invite);
        let to = sdp_target(&invite);
        let frames: Vec<Vec<u8>> = customer_frames
            .iter()
            .cycle()
            .take(600)
            .map(|f| f.to_vec())
            .collect();
        let sending = send_frames(&customer.ua.rtp, to, 0, frames);
        let mut loud = 0;
        let mut buf = [0u8; 2048];
        let until = Instant::now() + Duration::from_secs(12);
        customer
            .ua
            .rtp
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        while Instant::now() < until {
            if let Ok((n, _)) = customer.ua.rtp.recv_from(&mut buf)
                && n == 172
            {
                let mut pcm = [0i16; 160];
                Law::Pcmu.decode(&buf[12..n], &mut pcm);
                let energy = pcm.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / 160.0;
                if energy.sqrt() > 300.0 {
                    loud += 1;
                }
            }
        }
        customer.hang_up(&invite);
        drop(sending);
        loud
    });
    let seen = {
        let wav = wav.to_str().unwrap().to_string();
        let num = num.to_string();
        let server = &server;
        tokio::task::block_in_place(|| {
            common::browser(
                server,
                "callback.mjs",
                &["ann", "a long enough password", &wav, &num, "3000"],
                "callback",
            )
            .0
        })
    };
    let customer_heard = talking.join().unwrap();
    assert_eq!(seen["listed"], 1, "{seen}");
    assert!(
        seen["before"].as_str().unwrap().contains("to call"),
        "{seen}"
    );
    assert!(
        seen["deskSays"]
            .as_str()
            .unwrap()
            .contains(&format!("#{num}")),
        "{seen}"
    );
    let after = seen["after"].as_str().unwrap();
    assert!(
        after.contains("called back") && after.contains("answered"),
        "{seen}"
    );
    assert!(
        seen["interactions"].as_str().unwrap().contains("callback"),
        "{seen}"
    );
    let history = seen["history"].as_str().unwrap();
    assert!(
        history.contains("ticket.callback · answered 138****000: talked")
            && history.contains("the customer hung up"),
        "{history}"
    );
    // Each side heard the other: at least a fifth of 3 s in the browser, and
    // of 12 s at the trunk, carried speech (the rest is the pauses between).
    let loud = seen["loudFrames"].as_u64().unwrap();
    assert!(
        loud >= 30,
        "the desk heard {loud} loud 20 ms frames of {}: {seen}",
        seen["heardFrames"]
    );
    assert!(
        customer_heard >= 120,
        "the customer heard {customer_heard} loud frames of 600"
    );
}
