//! SMS through the Chinese clouds' SMS APIs, against loopback stand-ins that check
//! each request's signature the way the services document it (written here apart
//! from kefu's signer): Alibaba Cloud's RPC signature v1 and Tencent Cloud's
//! TC3-HMAC-SHA256. A customer texts kefu; the answer goes out through the cloud;
//! a wrong secret is refused by the stand-in and kefu says the answer was not sent.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use axum::http::HeaderMap;
use base64::Engine;
use common::Server;
use serde_json::{Value, json};

const TOKEN: &str = "gateway-secret-0123456789";
const ALIYUN_ID: &str = "LTAI5tTestKeyId";
const ALIYUN_SECRET: &str = "aliyun-secret-for-tests";
const TENCENT_ID: &str = "AKIDtestsecretid";
const TENCENT_KEY: &str = "tencent-secret-key-for-tests";

type Seen = Arc<Mutex<Vec<Value>>>;

fn rfc3986(s: &str) -> String {
    let mut out = String::new();
    for b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(b) {
            out.push(*b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Alibaba Cloud's check: every documented common parameter, a fresh nonce, a
/// timestamp within 15 minutes, and the signature over the sorted parameters.
fn aliyun_check(form: &HashMap<String, String>, nonces: &mut Vec<String>) -> Result<(), String> {
    use hmac13::{KeyInit, Mac};
    for (k, v) in [
        ("Action", "SendSms"),
        ("Version", "2017-05-25"),
        ("SignatureMethod", "HMAC-SHA1"),
        ("SignatureVersion", "1.0"),
        ("AccessKeyId", ALIYUN_ID),
        ("Format", "JSON"),
    ] {
        if form.get(k).map(String::as_str) != Some(v) {
            return Err(format!("MissingParameter {k}"));
        }
    }
    let nonce = form.get("SignatureNonce").ok_or("MissingSignatureNonce")?;
    if nonces.contains(nonce) {
        return Err("SignatureNonceUsed".into());
    }
    nonces.push(nonce.clone());
    let ts = chrono::DateTime::parse_from_rfc3339(form.get("Timestamp").ok_or("MissingTimestamp")?)
        .map_err(|_| "InvalidTimeStamp.Format")?;
    if (chrono::Utc::now() - ts.with_timezone(&chrono::Utc))
        .num_minutes()
        .abs()
        > 15
    {
        return Err("InvalidTimeStamp.Expired".into());
    }
    let sorted: BTreeMap<&String, &String> =
        form.iter().filter(|(k, _)| *k != "Signature").collect();
    let query: Vec<String> = sorted
        .iter()
        .map(|(k, v)| format!("{}={}", rfc3986(k), rfc3986(v)))
        .collect();
    let to_sign = format!("POST&%2F&{}", rfc3986(&query.join("&")));
    let mut mac =
        hmac13::Hmac::<sha1::Sha1>::new_from_slice(format!("{ALIYUN_SECRET}&").as_bytes()).unwrap();
    mac.update(to_sign.as_bytes());
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    if form.get("Signature") != Some(&expected) {
        return Err("SignatureDoesNotMatch".into());
    }
    Ok(())
}

async fn aliyun() -> (std::net::SocketAddr, Seen) {
    let seen: Seen = Arc::default();
    let sink = seen.clone();
    let nonces = Arc::new(Mutex::new(Vec::new()));
    let app = axum::Router::new().route(
        "/",
        axum::routing::post(move |axum::extract::Form(f): axum::extract::Form<HashMap<String, String>>| {
            let (sink, nonces) = (sink.clone(), nonces.clone());
            async move {
                let checked = aliyun_check(&f, &mut nonces.lock().unwrap());
                sink.lock().unwrap().push(json!({"ok": checked.is_ok(), "form": f}));
                axum::Json(match checked {
                    Ok(()) => json!({"Code": "OK", "Message": "OK", "BizId": "900619746936498440^0", "RequestId": "F655A8D5-B967-440B-8683-DAD6FF8DE990"}),
                    Err(code) => json!({"Code": code, "Message": "Specified signature is not matched with our calculation.", "RequestId": "x"}),
                })
            }
        }),
    );
    serve(app, seen).await
}

async fn serve(app: axum::Router, seen: Seen) -> (std::net::SocketAddr, Seen) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, seen)
}

fn hmac256(key: &[u8], data: &str) -> Vec<u8> {
    use hmac::Mac;
    let mut m = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(key).unwrap();
    m.update(data.as_bytes());
    m.finalize().into_bytes().to_vec()
}

fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

/// Tencent Cloud's check: the action and version headers, a timestamp within 5
/// minutes, the credential scope, and TC3-HMAC-SHA256 over the signed headers
/// as they arrived.
fn tencent_check(h: &HeaderMap, body: &str) -> Result<(), String> {
    let header = |n: &str| {
        h.get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    if header("x-tc-action") != "SendSms" || header("x-tc-version") != "2021-01-11" {
        return Err("InvalidAction".into());
    }
    let ts: i64 = header("x-tc-timestamp")
        .parse()
        .map_err(|_| "InvalidParameter")?;
    if (chrono::Utc::now().timestamp() - ts).abs() > 300 {
        return Err("AuthFailure.SignatureExpire".into());
    }
    let date = chrono::DateTime::from_timestamp(ts, 0)
        .unwrap()
        .format("%Y-%m-%d")
        .to_string();
    let auth = header("authorization");
    let rest = auth
        .strip_prefix("TC3-HMAC-SHA256 ")
        .ok_or("AuthFailure.InvalidAuthorization")?;
    let parts: HashMap<&str, &str> = rest.split(", ").filter_map(|p| p.split_once('=')).collect();
    if parts.get("Credential") != Some(&format!("{TENCENT_ID}/{date}/sms/tc3_request").as_str()) {
        return Err("AuthFailure.SecretIdNotFound".into());
    }
    let signed = parts
        .get("SignedHeaders")
        .ok_or("AuthFailure.InvalidAuthorization")?;
    let names: Vec<&str> = signed.split(';').collect();
    let canon_headers: String = names
        .iter()
        .map(|n| format!("{n}:{}\n", header(n).to_lowercase()))
        .collect();
    let canonical = format!("POST\n/\n\n{canon_headers}\n{signed}\n{}", sha256_hex(body));
    let to_sign = format!(
        "TC3-HMAC-SHA256\n{ts}\n{date}/sms/tc3_request\n{}",
        sha256_hex(&canonical)
    );
    let key = hmac256(
        &hmac256(
            &hmac256(format!("TC3{TENCENT_KEY}").as_bytes(), &date),
            "sms",
        ),
        "tc3_request",
    );
    if parts.get("Signature") != Some(&hex::encode(hmac256(&key, &to_sign)).as_str()) {
        return Err("AuthFailure.SignatureFailure".into());
    }
    Ok(())
}

async fn tencent() -> (std::net::SocketAddr, Seen) {
    let seen: Seen = Arc::default();
    let sink = seen.clone();
    let app = axum::Router::new().route(
        "/",
        axum::routing::post(move |h: HeaderMap, body: String| {
            let sink = sink.clone();
            async move {
                let checked = tencent_check(&h, &body);
                let req: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                sink.lock().unwrap().push(json!({"ok": checked.is_ok(), "body": req}));
                axum::Json(match checked {
                    Ok(()) => json!({"Response": {"SendStatusSet": [{"SerialNo": "5000:1", "PhoneNumber": req["PhoneNumberSet"][0], "Fee": 1, "Code": "Ok", "Message": "send success"}], "RequestId": "a0aabda6"}}),
                    Err(code) => json!({"Response": {"Error": {"Code": code, "Message": "The provided credentials could not be validated."}, "RequestId": "b1"}}),
                })
            }
        }),
    );
    serve(app, seen).await
}

/// A customer texts "how long does a refund take": (kefu's answer, what the cloud saw).
async fn text_in(config: &str, seen: &Seen) -> (Value, Vec<Value>) {
    let s = Server::start_with(None, &format!("sms_inbound_token = \"{TOKEN}\"\n{config}"));
    let r = reqwest::Client::new()
        .post(format!("http://{}/sms/inbound", s.http))
        .header("x-kefu-token", TOKEN)
        .form(&[
            ("From", "+8613800138000"),
            ("To", "10690000"),
            ("Body", "how long does a refund take"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let reply: Value = r.json().await.unwrap();
    (reply, seen.lock().unwrap().clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_go_out_through_alibaba_clouds_sms_api_signed() {
    let (addr, seen) = aliyun().await;
    let section = |secret: &str| {
        format!(
            "[sms_aliyun]\naccess_key_id = \"{ALIYUN_ID}\"\naccess_key_secret = \"{secret}\"\nsign_name = \"客服中心\"\ntemplate_code = \"SMS_480120001\"\nendpoint = \"http://{addr}\"\n"
        )
    };
    let (reply, got) = text_in(&section(ALIYUN_SECRET), &seen).await;
    assert_eq!(reply["sent"], true, "{reply} {got:?}");
    assert_eq!(
        got.len(),
        reply["parts"].as_array().unwrap().len(),
        "one request per part"
    );
    assert!(got.iter().all(|g| g["ok"] == true), "{got:?}");
    let form = &got[0]["form"];
    assert_eq!(
        form["PhoneNumbers"], "13800138000",
        "mainland numbers go without +86"
    );
    assert_eq!(form["SignName"], "客服中心");
    assert_eq!(form["TemplateCode"], "SMS_480120001");
    let param: Value = serde_json::from_str(form["TemplateParam"].as_str().unwrap()).unwrap();
    assert_eq!(param["content"], reply["parts"][0], "{param}");

    // A wrong secret: the cloud refuses the signature, kefu says it was not sent.
    seen.lock().unwrap().clear();
    let (reply, got) = text_in(&section("not-the-secret"), &seen).await;
    assert_eq!(reply["sent"], false, "{reply}");
    assert_eq!(got.len(), 1, "it stops at the first refusal");
    assert_eq!(got[0]["ok"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_go_out_through_tencent_clouds_sms_api_signed() {
    let (addr, seen) = tencent().await;
    let section = |key: &str| {
        format!(
            "[sms_tencent]\nsecret_id = \"{TENCENT_ID}\"\nsecret_key = \"{key}\"\nsdk_app_id = \"1400006666\"\nsign_name = \"客服中心\"\ntemplate_id = \"1110\"\nendpoint = \"http://{addr}\"\n"
        )
    };
    let (reply, got) = text_in(&section(TENCENT_KEY), &seen).await;
    assert_eq!(reply["sent"], true, "{reply} {got:?}");
    assert!(got.iter().all(|g| g["ok"] == true), "{got:?}");
    let body = &got[0]["body"];
    assert_eq!(body["PhoneNumberSet"][0], "+8613800138000");
    assert_eq!(body["SmsSdkAppId"], "1400006666");
    assert_eq!(body["TemplateId"], "1110");
    assert_eq!(body["TemplateParamSet"][0], reply["parts"][0]);

    seen.lock().unwrap().clear();
    let (reply, got) = text_in(&section("wrong-key"), &seen).await;
    assert_eq!(reply["sent"], false, "{reply}");
    assert_eq!(got[0]["ok"], false);
}

#[test]
fn a_config_with_two_ways_to_send_sms_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("kefu.toml");
    std::fs::write(
        &file,
        "sms_outbound_url = \"http://127.0.0.1:9/send\"\n[sms_tencent]\nsecret_id = \"a\"\nsecret_key = \"b\"\nsdk_app_id = \"1\"\nsign_name = \"s\"\ntemplate_id = \"1\"\n",
    )
    .unwrap();
    let e = kefu::config::Config::load(Some(&file)).unwrap_err();
    assert!(
        format!("{e:#}").contains("choose one way to send SMS"),
        "{e:#}"
    );
    std::fs::write(&file, "[sms_aliyun]\naccess_key_id = \"\"\naccess_key_secret = \"b\"\nsign_name = \"s\"\ntemplate_code = \"t\"\n").unwrap();
    let e = kefu::config::Config::load(Some(&file)).unwrap_err();
    assert!(
        format!("{e:#}").contains("`access_key_id` must not be empty"),
        "{e:#}"
    );
}
