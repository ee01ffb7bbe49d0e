//! Agents' phones register over real SIP: SIPp sends REGISTER, kefu challenges
//! with digest authentication (SHA-256 and MD5 offered; SIPp answers MD5), a right
//! password binds the contact, a wrong one is challenged again and then the
//! address is throttled; un-REGISTER removes the binding.

mod common;

use std::path::{Path, PathBuf};

use common::{Server, sipp};

const SECRET: &str = "phone-secret-1001";

/// A REGISTER from SIPp's address for extension 1001; `auth` adds SIPp's digest
/// answer to the last challenge with `password`.
fn register(cseq: u32, password: Option<&str>, contact: &str, expires: u32) -> String {
    let auth = password
        .map(|p| format!("[authentication username=1001 password={p}]\n      "))
        .unwrap_or_default();
    format!(
        r#"  <send retrans="500">
    <![CDATA[
      REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:1001@[remote_ip]>;tag=reg[call_number]
      To: <sip:1001@[remote_ip]>
      Call-ID: [call_id]
      CSeq: {cseq} REGISTER
      Contact: {contact}
      Expires: {expires}
      {auth}Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
"#
    )
}

fn expect(status: u16, auth: bool) -> String {
    format!(
        "  <recv response=\"{status}\"{}/>\n",
        if auth { " auth=\"true\"" } else { "" }
    )
}

fn scenario(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(format!("{name}.xml"));
    std::fs::write(
        &path,
        format!(
            "<?xml version=\"1.0\" encoding=\"ISO-8859-1\" ?>\n<scenario name=\"{name}\">\n{body}</scenario>\n"
        ),
    )
    .unwrap();
    path
}

#[test]
fn a_phone_registers_with_digest_and_a_wrong_password_is_throttled() {
    // SIPp answers MD5 only, and takes the first challenge: offer just MD5.
    let server = Server::start_with(None, "sip_digest = [\"MD5\"]\n");
    let (ok, out, err) = server.kefu_with_input(
        &[
            "agents",
            "add",
            "Wang Fang",
            "--extension",
            "1001",
            "--queues",
            "general,billing",
            "--skills",
            "zh,en",
            "--password-stdin",
        ],
        &format!("{SECRET}\n"),
    );
    assert!(ok, "kefu agents add: {err}");
    assert!(out.contains("1001"), "{out}");
    let (ok, out, _) = server.kefu(&["agents", "list"]);
    assert!(
        ok && out.contains("Wang Fang") && out.contains("general,billing"),
        "{out}"
    );
    let dir = tempfile::tempdir().unwrap();
    let contact = "<sip:1001@[local_ip]:[local_port]>";

    // The right password: challenged, then bound (the 200 lists the contact with
    // its expiry), then removed with Contact: * and Expires: 0.
    let body = [
        register(1, None, contact, 300),
        expect(401, true),
        register(2, Some(SECRET), contact, 300),
        "  <recv response=\"200\">\n    <action>\n      <ereg regexp=\"expires=(2[0-9][0-9]|300)\" search_in=\"hdr\" header=\"Contact:\" check_it=\"true\" assign_to=\"e\"/>\n    </action>\n  </recv>\n".to_string(),
        register(3, None, "*", 0),
        expect(401, true),
        register(4, Some(SECRET), "*", 0),
        expect(200, false),
        "  <Reference variables=\"e\"/>\n".to_string(),
    ]
    .concat();
    let (ok, out) = sipp(&server, &scenario(dir.path(), "ok", &body), "1001", &[]);
    assert!(ok, "SIPp:\n{out}\nkefu:\n{}", server.logs().join("\n"));
    // The log is read from the server's output by another thread: wait for it.
    assert!(
        server.wait_log("phone unregistered", 0),
        "{}",
        server.logs().join("\n")
    );
    let logs = server.logs().join("\n");
    assert!(logs.contains("phone registered"), "{logs}");

    // The wrong password: challenged again each time; after five free failures the
    // sixth locks the address, and the seventh REGISTER is refused outright.
    let mut body = vec![register(1, None, contact, 300), expect(401, true)];
    for i in 0..6 {
        body.push(register(2 + i, Some("wrong-password"), contact, 300));
        body.push(expect(401, true));
    }
    body.push(register(8, Some("wrong-password"), contact, 300));
    body.push(expect(403, false));
    // Locked: even the right password waits.
    body.push(register(9, None, contact, 300));
    body.push(expect(403, false));
    let (ok, out) = sipp(
        &server,
        &scenario(dir.path(), "wrong", &body.concat()),
        "1001",
        &[],
    );
    assert!(ok, "SIPp:\n{out}\nkefu:\n{}", server.logs().join("\n"));
    let logs = server.logs().join("\n");
    assert!(logs.contains("REGISTER with wrong credentials"), "{logs}");
    assert!(
        logs.contains("REGISTER refused: too many failures"),
        "{logs}"
    );
    // The password is not in the database, only its digests (sealed).
    for entry in std::fs::read_dir(server.data()).unwrap() {
        let p = entry.unwrap().path();
        if p.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("kefu.db")
        {
            let bytes = std::fs::read(&p).unwrap();
            assert!(
                !bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()),
                "the SIP password is stored in {}",
                p.display()
            );
        }
    }
}

fn sha256(text: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

fn header<'a>(msg: &'a str, name: &str) -> Vec<&'a str> {
    msg.lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
        .collect()
}

/// A phone speaking SHA-256 (RFC 8760), written out here: the digest arithmetic of
/// RFC 7616 over a raw UDP socket.
#[test]
fn sha256_registration_unknown_extensions_and_bad_headers() {
    use std::time::Duration;
    let server = Server::start(None);
    let (ok, _, err) = server.kefu_with_input(
        &[
            "agents",
            "add",
            "Li Wei",
            "--extension",
            "1001",
            "--password-stdin",
        ],
        &format!("{SECRET}\n"),
    );
    assert!(ok, "{err}");
    let ua = common::RawUa::new(server.sip);
    let uri = format!("sip:{}", server.sip);
    let request = |ext: &str, cseq: u32, auth: &str| {
        let to = format!("sip:{ext}@{}", server.sip);
        format!(
            "REGISTER {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{ext}x{cseq}\r\nFrom: <{to}>;tag=t{ext}\r\nTo: <{to}>\r\nCall-ID: raw-{ext}\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:{ext}@{local}>\r\nExpires: 120\r\n{auth}Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
            local = ua.local()
        )
    };
    let answer = |ext: &str, password: &str, challenge: &str| {
        assert!(challenge.contains("algorithm=SHA-256"), "{challenge}");
        let nonce = challenge
            .split("nonce=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        let ha1 = sha256(&format!("{ext}:kefu:{password}"));
        let ha2 = sha256(&format!("REGISTER:{uri}"));
        let response = sha256(&format!("{ha1}:{nonce}:00000001:c0ffee:auth:{ha2}"));
        format!(
            "Authorization: Digest username=\"{ext}\", realm=\"kefu\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{response}\", algorithm=SHA-256, qop=auth, nc=00000001, cnonce=\"c0ffee\"\r\n"
        )
    };
    ua.send(&request("1001", 1, ""));
    let r = ua.expect_status(401, Duration::from_secs(2));
    let challenges = header(&r, "WWW-Authenticate");
    assert_eq!(challenges.len(), 2, "{r}");
    assert!(challenges[1].contains("algorithm=MD5"), "{r}");
    let good = answer("1001", SECRET, challenges[0]);
    ua.send(&request("1001", 2, &good));
    let r = ua.expect_status(200, Duration::from_secs(2));
    // The same response again (captured and replayed as a new request): refused.
    ua.send(&request("1001", 30, &good));
    let replayed = ua.expect_status(401, Duration::from_secs(2));
    assert!(replayed.contains("stale=true"), "{replayed}");
    let contact = header(&r, "Contact");
    assert!(
        contact
            .iter()
            .any(|c| c.contains(&ua.local().to_string()) && c.contains("expires=120")),
        "{r}"
    );

    // Nobody is extension 1002: the right-looking answer is still refused.
    ua.send(&request("1002", 1, ""));
    let r = ua.expect_status(401, Duration::from_secs(2));
    let ch = header(&r, "WWW-Authenticate")[0].to_string();
    ua.send(&request("1002", 2, &answer("1002", SECRET, &ch)));
    ua.expect_status(401, Duration::from_secs(2));
    // A nonce from elsewhere (here: made up) is not accepted either.
    let forged = answer(
        "1001",
        SECRET,
        "algorithm=SHA-256, nonce=\"6a0f0000.00112233445566778899aabbccddeeff\"",
    );
    ua.send(&request("1001", 3, &forged));
    ua.expect_status(401, Duration::from_secs(2));

    // A malformed Authorization header is a 400 with the reason.
    ua.send(&request(
        "1001",
        4,
        "Authorization: Digest username=\"1001\", algorithm=SHA-512-256\r\n",
    ));
    let reply = ua.expect_status(400, Duration::from_secs(2));
    assert!(reply.contains("Warning:"), "{reply}");
    // Too brief an expiry gets 423 with Min-Expires.
    ua.send(&request("1001", 5, "").replace("Expires: 120", "Expires: 10"));
    let r = ua.expect_status(401, Duration::from_secs(2));
    let ch = header(&r, "WWW-Authenticate")[0].to_string();
    ua.send(
        &request("1001", 6, &answer("1001", SECRET, &ch)).replace("Expires: 120", "Expires: 10"),
    );
    let r = ua.expect_status(423, Duration::from_secs(2));
    assert_eq!(header(&r, "Min-Expires"), ["60"], "{r}");
}

/// A web chat asks for a person: a ticket opens and the conversation waits in the
/// queue; the agent (a signed-in user linked to an agent) sets themselves available,
/// is offered it, accepts, answers, and the customer's WebSocket receives the
/// answer, which is stored; the ticket is the agent's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_web_chat_handed_over_reaches_an_agent_and_back() {
    handed_over_to_an_agent(Server::start(None)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_web_chat_handed_over_reaches_an_agent_and_back_on_postgres() {
    handed_over_to_an_agent(tokio::task::block_in_place(|| {
        Server::start_on_postgres(None, "")
    }))
    .await;
}

async fn handed_over_to_an_agent(server: Server) {
    use futures_util::StreamExt;
    use serde_json::{Value, json};
    use std::time::Duration;

    server.add_agent_user("wang", "a long enough password", "Wang Fang", "1001");
    let base = format!("http://{}", server.http);
    let c = reqwest::Client::new();
    let (cookie, csrf) = server.sign_in("wang", "a long enough password").await;
    let agent = |method: reqwest::Method, path: &str| {
        c.request(method, format!("{base}{path}"))
            .header("cookie", &cookie)
            .header("x-csrf-token", &csrf)
    };

    // The customer opens a chat, subscribes, and asks for a person.
    let (conv, started, mut ws) = server
        .handed_over_chat("v-77", "I want to talk to a person")
        .await;
    let key = started["key"].as_str().unwrap().to_string();

    // Away agents are offered nothing; available, they are.
    let offers: Value = agent(reqwest::Method::GET, "/api/agent/offers")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(offers, json!([]));
    let state: Value = agent(reqwest::Method::POST, "/api/agent/state")
        .json(&json!({"available": true}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(state["state"], "offered", "{state}");
    let offers: Value = agent(reqwest::Method::GET, "/api/agent/offers")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(offers[0]["item"], conv.as_str(), "{offers}");
    assert_eq!(offers[0]["queue"], "general");
    // The supervisor's view would show it offered: an agent may not see it.
    let r = agent(reqwest::Method::GET, "/api/queues")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    let taken: Value = agent(
        reqwest::Method::POST,
        &format!("/api/agent/offers/{conv}/accept"),
    )
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let history = taken["history"].as_array().unwrap();
    assert!(
        history
            .iter()
            .any(|t| t["text"] == "I want to talk to a person"),
        "{taken}"
    );
    // Taken: a second accept is refused.
    let r = agent(
        reqwest::Method::POST,
        &format!("/api/agent/offers/{conv}/accept"),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 409);

    let r = agent(
        reqwest::Method::POST,
        &format!("/api/agent/conversations/{conv}/messages"),
    )
    .json(&json!({"text": "Hello, this is Wang Fang. How can I help?"}))
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 204);
    // The customer's socket gets the agent's words (after the earlier turns).
    let mut got = Value::Null;
    for _ in 0..10 {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a pushed turn")
            .unwrap()
            .unwrap();
        let v: Value = serde_json::from_str(msg.to_text().unwrap()).unwrap();
        if v["speaker"] == "agent" {
            got = v;
            break;
        }
    }
    assert_eq!(
        got["text"], "Hello, this is Wang Fang. How can I help?",
        "{got}"
    );

    // Stored, and the ticket is the agent's (open), its subject the request.
    let tickets: Value = agent(reqwest::Method::GET, "/api/agent/tickets")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tickets[0]["conversation"], conv.as_str(), "{tickets}");
    assert_eq!(tickets[0]["status"], "open");
    assert_eq!(tickets[0]["subject"], "I want to talk to a person");
    let history: Value = c
        .get(format!("{base}/api/chat/conversations/{conv}/messages"))
        .header("x-kefu-key", key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        history["turns"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["speaker"] == "agent"),
        "{history}"
    );

    let r = agent(
        reqwest::Method::POST,
        &format!("/api/agent/conversations/{conv}/done"),
    )
    .json(&json!({"disposition": "maybe"}))
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    let r = agent(
        reqwest::Method::POST,
        &format!("/api/agent/conversations/{conv}/done"),
    )
    .json(&json!({"disposition": "pending", "notes": "call back on Monday"}))
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 204);
    let tickets: Value = agent(reqwest::Method::GET, "/api/agent/tickets")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tickets[0]["status"], "pending", "{tickets}");
    // The notes are kept with the ticket (an export shows them).
    let customer = started["customer"].as_str().unwrap().to_string();
    let (ok, out, _) = server.kefu(&["customers", "export", "--id", &customer]);
    assert!(ok && out.contains("call back on Monday"), "{out}");
    // Done: no more replies from this agent to it.
    let r = agent(
        reqwest::Method::POST,
        &format!("/api/agent/conversations/{conv}/messages"),
    )
    .json(&json!({"text": "one more thing"}))
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 403);
}

/// Nobody takes a handed-over chat within the queue's maximum wait: the customer
/// is told so (and the ticket stays open for later).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_nobody_takes_is_told_so() {
    use futures_util::StreamExt;
    use serde_json::Value;
    use std::time::Duration;

    let server = Server::start_with(
        None,
        "[[queue]]\nname = \"general\"\nmax_wait = \"6s\"\nring_timeout = \"5s\"\n",
    );
    let base = format!("http://{}", server.http);
    let c = reqwest::Client::new();
    let (conv, started, mut ws) = server
        .handed_over_chat("v-88", "can i speak to a human")
        .await;
    let key = started["key"].as_str().unwrap();
    let mut notice = Value::Null;
    for _ in 0..10 {
        let msg = tokio::time::timeout(Duration::from_secs(15), ws.next())
            .await
            .expect("a pushed turn")
            .unwrap()
            .unwrap();
        let v: Value = serde_json::from_str(msg.to_text().unwrap()).unwrap();
        if v["text"]
            .as_str()
            .unwrap_or_default()
            .contains("agents are still busy")
        {
            notice = v;
            break;
        }
    }
    assert_eq!(notice["speaker"], "bot", "{notice}");
    let history: Value = c
        .get(format!("{base}/api/chat/conversations/{conv}/messages"))
        .header("x-kefu-key", key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let turns = history["turns"].as_array().unwrap();
    assert!(
        turns.last().unwrap()["text"]
            .as_str()
            .unwrap()
            .contains("still busy"),
        "{history}"
    );
}
