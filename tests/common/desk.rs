//! A signed-in desk (an agent's or a supervisor's browser session) over real
//! HTTP: the session cookie and CSRF token on every request.

use std::net::SocketAddr;

use serde_json::Value;

use super::Server;

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
