//! A signed-in desk (an agent's or a supervisor's browser session) over real
//! HTTP: the session cookie and CSRF token on every request.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{Server, Step, caller_scenario, sipp};

pub struct Desk {
    pub http: SocketAddr,
    pub cookie: String,
    pub csrf: String,
}

impl Desk {
    /// Signs `user` in on `server` (their password is the harness's usual one).
    pub async fn sign_in(server: &Server, user: &str) -> Self {
        let (cookie, csrf) = server.sign_in(user, "a long enough password").await;
        Self {
            http: server.http,
            cookie,
            csrf,
        }
    }

    /// A request with the session's cookie and CSRF token.
    pub fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        reqwest::Client::new()
            .request(method, format!("http://{}{path}", self.http))
            .header("cookie", &self.cookie)
            .header("x-csrf-token", &self.csrf)
    }

    /// Sends a request with no body: (status, JSON body or null).
    pub async fn send(&self, method: reqwest::Method, path: &str) -> (u16, Value) {
        let r = self.req(method, path).send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.send(reqwest::Method::GET, path).await
    }
}

/// A SIPp caller (13800138000) asks for a person at the demo's menu (key 0),
/// nobody takes the call within the queue's maximum wait, and at the no-agent menu
/// presses 2: "call me back". Returns the ticket, the only one on `desk`'s list of
/// callbacks to make.
pub async fn ask_for_a_callback(server: &Server, desk: &Desk) -> i64 {
    let dir = tempfile::tempdir().unwrap();
    let scenario = caller_scenario(
        dir.path(),
        "callback",
        true,
        &[
            Step::Pause(2500),
            Step::Rfc4733('0'),
            Step::Pause(7500),
            Step::Rfc4733('2'),
            Step::Pause(4000),
        ],
    );
    let (ok, out) = tokio::task::block_in_place(|| sipp(server, &scenario, "4008002000", &[]));
    assert!(ok, "SIPp:\n{out}\nkefu:\n{}", server.logs().join("\n"));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, page) = desk.get("/api/tickets?callback=waiting").await;
        assert_eq!(status, 200, "{page}");
        if let Some(num) = page["tickets"][0]["num"].as_i64() {
            assert_eq!(page["tickets"].as_array().unwrap().len(), 1, "{page}");
            return num;
        }
        assert!(Instant::now() < deadline, "no callback to make: {page}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
