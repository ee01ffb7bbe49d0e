//! WeCom customer service (微信客服) against a loopback stand-in of WeCom's API:
//! the callback's URL check and events signed and encrypted as WeCom does
//! (`msg_signature` over the ciphertext, checked here with SHA-1 apart from
//! kefu), kefu pulling the waiting messages with `kf/sync_msg` (the event's
//! token, its own cursor, an access token from `gettoken` with the CorpID and
//! Secret) and answering with `kf/send_msg`; a message pulled twice answered
//! once; and an agent's reply on the customer's ticket sent back through WeCom.

mod common;

use std::sync::{Arc, Mutex};

use common::Server;
use kefu::channel::chat::wechat_aes::Cipher;
use serde_json::{Value, json};
use sha1::Digest;

const CORP: &str = "ww0123456789abcdef";
const SECRET: &str = "kf-secret-for-tests";
const TOKEN: &str = "wecomtoken";
const KEY: &str = "kefu0123456789abcdefghijklmnopqrstuvwxyzABC";
const ACCOUNT: &str = "wkAAAA0123";
const EVENT_TOKEN: &str = "ENCApHxnGDNAVNY4AaSJKj4Tb5mwsEMzxhFmHVGcra996NR";
const PASSWORD: &str = "desk password 2026";

#[derive(Default)]
struct Stand {
    /// Messages the next pull from an empty cursor returns.
    waiting: Vec<Value>,
    sent: Vec<Value>,
    refused: Vec<String>,
    /// The cursor of each pull.
    cursors: Vec<String>,
}

type Shared = Arc<Mutex<Stand>>;

async fn stand_in() -> (std::net::SocketAddr, Shared) {
    use axum::extract::{Json, Query, State};
    use std::collections::HashMap;
    let state: Shared = Arc::default();
    let token_ok =
        |q: &HashMap<String, String>| q.get("access_token").map(String::as_str) == Some("ACCESS-1");
    let app = axum::Router::new()
        .route(
            "/cgi-bin/gettoken",
            axum::routing::get(|Query(q): Query<HashMap<String, String>>| async move {
                Json(if q.get("corpid").map(String::as_str) == Some(CORP)
                    && q.get("corpsecret").map(String::as_str) == Some(SECRET)
                {
                    json!({"errcode": 0, "errmsg": "ok", "access_token": "ACCESS-1", "expires_in": 7200})
                } else {
                    json!({"errcode": 40001, "errmsg": "invalid credential"})
                })
            }),
        )
        .route(
            "/cgi-bin/kf/sync_msg",
            axum::routing::post(
                move |State(st): State<Shared>, Query(q): Query<HashMap<String, String>>, Json(b): Json<Value>| async move {
                    if !token_ok(&q) {
                        return Json(json!({"errcode": 40014, "errmsg": "invalid access_token"}));
                    }
                    if b["token"] != EVENT_TOKEN || b["open_kfid"] != ACCOUNT {
                        st.lock().unwrap().refused.push(b.to_string());
                        return Json(json!({"errcode": 95007, "errmsg": "invalid msg token"}));
                    }
                    let mut st = st.lock().unwrap();
                    st.cursors.push(b["cursor"].as_str().unwrap_or("?").to_string());
                    let list = std::mem::take(&mut st.waiting);
                    Json(json!({"errcode": 0, "errmsg": "ok", "next_cursor": "CURSOR-1", "has_more": 0, "msg_list": list}))
                },
            ),
        )
        .route(
            "/cgi-bin/kf/send_msg",
            axum::routing::post(
                move |State(st): State<Shared>, Query(q): Query<HashMap<String, String>>, Json(b): Json<Value>| async move {
                    if !token_ok(&q) {
                        return Json(json!({"errcode": 40014, "errmsg": "invalid access_token"}));
                    }
                    st.lock().unwrap().sent.push(b);
                    Json(json!({"errcode": 0, "errmsg": "ok", "msgid": "SENT-1"}))
                },
            ),
        )
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, state)
}

/// WeCom's msg_signature: SHA-1 over the sorted token, timestamp, nonce and ciphertext.
fn sign(ts: &str, nonce: &str, encrypted: &str) -> String {
    let mut parts = [TOKEN, ts, nonce, encrypted];
    parts.sort_unstable();
    hex::encode(sha1::Sha1::digest(parts.concat().as_bytes()))
}

fn cipher() -> Cipher {
    Cipher::new(KEY, CORP).unwrap()
}

fn customer_text(id: &str, origin: i64, text: &str) -> Value {
    json!({"msgid": id, "open_kfid": ACCOUNT, "external_userid": "wmUSER0001", "send_time": chrono::Utc::now().timestamp(),
           "origin": origin, "msgtype": "text", "text": {"content": text}})
}

/// WeCom tells kefu that messages wait: the signed, encrypted event.
async fn notify(s: &Server, nonce: &str) -> (u16, String) {
    let inner = format!(
        "<xml><ToUserName><![CDATA[{CORP}]]></ToUserName><CreateTime>{}</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[kf_msg_or_event]]></Event><Token><![CDATA[{EVENT_TOKEN}]]></Token><OpenKfId><![CDATA[{ACCOUNT}]]></OpenKfId></xml>",
        chrono::Utc::now().timestamp()
    );
    let enc = cipher().encrypt(&inner, rand::random());
    let ts = chrono::Utc::now().timestamp().to_string();
    let body = format!(
        "<xml><ToUserName><![CDATA[{CORP}]]></ToUserName><Encrypt><![CDATA[{enc}]]></Encrypt><AgentID><![CDATA[]]></AgentID></xml>"
    );
    let r = reqwest::Client::new()
        .post(format!(
            "http://{}/wecom?msg_signature={}&timestamp={ts}&nonce={nonce}",
            s.http,
            sign(&ts, nonce, &enc)
        ))
        .body(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn wait_sent(st: &Shared, n: usize) -> Vec<Value> {
    for _ in 0..100 {
        if st.lock().unwrap().sent.len() >= n {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    st.lock().unwrap().sent.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wecom_customers_are_answered_through_the_kf_api() {
    let (api, st) = stand_in().await;
    let s = Server::start_with(
        None,
        &format!(
            "[wecom]\ncorp_id = \"{CORP}\"\nsecret = \"{SECRET}\"\ntoken = \"{TOKEN}\"\naes_key = \"{KEY}\"\napi = \"http://{api}\"\n"
        ),
    );
    s.add_agent_user("wang", PASSWORD, "Wang Fang", "1001");

    // The callback URL check: kefu returns the decrypted echostr, only when signed.
    let echo = cipher().encrypt("echo-7789", rand::random());
    let ts = chrono::Utc::now().timestamp().to_string();
    let c = reqwest::Client::new();
    let url = |sig: &str| {
        let mut u = reqwest::Url::parse(&format!("http://{}/wecom", s.http)).unwrap();
        u.query_pairs_mut()
            .append_pair("msg_signature", sig)
            .append_pair("timestamp", &ts)
            .append_pair("nonce", "n1")
            .append_pair("echostr", &echo);
        u
    };
    let r = c.get(url(&sign(&ts, "n1", &echo))).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "echo-7789");
    let r = c.get(url("0000")).send().await.unwrap();
    assert_eq!(r.status(), 403);

    // A customer's text, an agent's own message in WeCom, and the customer's text
    // again (the same msgid): one answer.
    st.lock().unwrap().waiting = vec![
        customer_text("MSG-1", 3, "What time do you close?"),
        customer_text("MSG-2", 5, "(a person in WeCom wrote this)"),
        customer_text("MSG-1", 3, "What time do you close?"),
    ];
    assert_eq!(notify(&s, "n2").await, (200, "success".into()));
    let sent = wait_sent(&st, 1).await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["touser"], "wmUSER0001");
    assert_eq!(sent[0]["open_kfid"], ACCOUNT);
    assert_eq!(sent[0]["msgtype"], "text");
    assert!(
        !sent[0]["text"]["content"].as_str().unwrap().is_empty(),
        "{sent:?}"
    );
    // WeCom sends the event again: the message is not answered twice.
    assert_eq!(notify(&s, "n3").await.0, 200);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(st.lock().unwrap().sent.len(), 1);
    assert!(st.lock().unwrap().refused.is_empty());
    // A forged event is refused before anything is pulled.
    let r = c
        .post(format!(
            "http://{}/wecom?msg_signature=00&timestamp={ts}&nonce=n4",
            s.http
        ))
        .body("<xml><Encrypt><![CDATA[AAAA]]></Encrypt></xml>")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // The customer asks for a person; an agent answers on the ticket, through WeCom.
    st.lock().unwrap().waiting = vec![customer_text("MSG-3", 3, "I want to talk to a person")];
    // Each pull goes on from the cursor the last one gave.
    assert_eq!(notify(&s, "n5").await.0, 200);
    let (cookie, csrf) = s.sign_in("wang", PASSWORD).await;
    let base = format!("http://{}", s.http);
    let mut num = None;
    for _ in 0..100 {
        let page: Value = c
            .get(format!("{base}/api/tickets?channel=wecom"))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if let Some(n) = page["tickets"][0]["num"].as_i64() {
            num = Some(n);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let num = num.expect("a WeCom ticket");
    assert_eq!(st.lock().unwrap().cursors, ["", "CURSOR-1", "CURSOR-1"]);
    let patch: Value = c
        .patch(format!("{base}/api/tickets/{num}"))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .json(&json!({"version": 0, "assignee": "wang"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(patch["assignee"], "wang", "{patch}");
    let before = st.lock().unwrap().sent.len();
    let r = c
        .post(format!("{base}/api/tickets/{num}/reply"))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .json(&json!({"text": "您好，我是王芳，请问有什么可以帮您？"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let sent = wait_sent(&st, before + 1).await;
    assert_eq!(
        sent.last().unwrap()["text"]["content"],
        "您好，我是王芳，请问有什么可以帮您？",
        "{sent:?}"
    );
}
