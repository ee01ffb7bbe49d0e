//! Roles and authentication over a real socket: the route-by-role matrix (every
//! route, every role, signed in and by token, and nobody), sign-in throttling,
//! session cookies and CSRF, users and tokens managed by an admin, secrets never
//! stored in plaintext, knowledge-base uploads by an integrator, and the audit
//! trail of it all.

mod common;

use std::time::Duration;

use common::{Server, repo};
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

const PASSWORD: &str = "correct horse battery staple";
const ROLES: [&str; 5] = ["admin", "supervisor", "agent", "auditor", "integrator"];

/// Who may use each route, as the issue states it: written out here, not read
/// from the server, so the test catches a route that drifts from it.
/// "public": anyone; "signed": anyone signed in; else the roles.
const EXPECTED: &[(&str, &str, &str)] = &[
    ("GET", "/healthz", "public"),
    ("GET", "/readyz", "public"),
    // Operational metrics: what reports may see (Prometheus scrapes with an
    // auditor's token).
    ("GET", "/metrics", "admin supervisor auditor"),
    // The operations dashboard: the page and its chart library are public (they
    // hold no data); the report and its CSV tables need Reports; drafting a
    // knowledge-base entry from an unanswered question is for supervisors.
    ("GET", "/dashboard", "public"),
    ("GET", "/assets/uplot.js", "public"),
    ("GET", "/assets/uplot.css", "public"),
    ("GET", "/api/reports", "admin supervisor auditor"),
    (
        "GET",
        "/api/reports/csv/{table}",
        "admin supervisor auditor",
    ),
    ("GET", "/api/kb/drafts", "admin supervisor integrator"),
    ("POST", "/api/kb/drafts", "admin supervisor"),
    ("GET", "/chat", "public"),
    ("GET", "/widget.js", "public"),
    ("POST", "/api/chat/conversations", "public"),
    ("GET", "/api/chat/conversations/{id}/messages", "public"),
    ("POST", "/api/chat/conversations/{id}/messages", "public"),
    ("GET", "/api/chat/conversations/{id}/ws", "public"),
    // The customer's rating of their chat (the key is the proof).
    ("POST", "/api/chat/conversations/{id}/rating", "public"),
    // Browser calls: the chat's key is the proof, as for its messages.
    ("GET", "/api/chat/call", "public"),
    ("POST", "/api/chat/conversations/{id}/calls", "public"),
    (
        "POST",
        "/api/chat/conversations/{id}/calls/{call}/candidates",
        "public",
    ),
    (
        "DELETE",
        "/api/chat/conversations/{id}/calls/{call}",
        "public",
    ),
    ("GET", "/wechat", "public"),
    ("POST", "/wechat", "public"),
    ("GET", "/wecom", "public"),
    ("POST", "/wecom", "public"),
    ("POST", "/sms/inbound", "public"),
    ("GET", "/api/openapi.json", "public"),
    ("POST", "/api/chat/conversations/{id}/phone", "public"),
    (
        "POST",
        "/api/chat/conversations/{id}/phone/confirm",
        "public",
    ),
    ("POST", "/api/login", "public"),
    // The channel API: integrators (and admins).
    ("POST", "/api/v1/conversations", "admin integrator"),
    (
        "GET",
        "/api/v1/conversations/{id}/messages",
        "admin integrator",
    ),
    (
        "POST",
        "/api/v1/conversations/{id}/messages",
        "admin integrator",
    ),
    (
        "POST",
        "/api/v1/conversations/{id}/rating",
        "admin integrator",
    ),
    ("POST", "/api/v1/customers/link", "admin integrator"),
    (
        "POST",
        "/api/v1/conversations/{id}/phone",
        "admin integrator",
    ),
    (
        "POST",
        "/api/v1/conversations/{id}/phone/confirm",
        "admin integrator",
    ),
    ("GET", "/api/v1/customers/{id}", "admin integrator"),
    // Signed in: who am I, sign out, my password.
    ("GET", "/api/session", "signed"),
    ("POST", "/api/logout", "signed"),
    ("POST", "/api/session/password", "signed"),
    // The knowledge base: integrators; supervisors may read it.
    ("GET", "/api/v1/kb", "admin supervisor integrator"),
    ("POST", "/api/v1/kb/match", "admin supervisor integrator"),
    ("PUT", "/api/v1/kb/files/{name}", "admin integrator"),
    // Recognition and synthesis as a service, for other nodes and programs.
    ("POST", "/v1/audio/transcriptions", "admin integrator"),
    ("POST", "/v1/audio/speech", "admin integrator"),
    // Users and tokens: admins only.
    ("GET", "/api/admin/users", "admin"),
    ("POST", "/api/admin/users", "admin"),
    ("PATCH", "/api/admin/users/{name}", "admin"),
    ("GET", "/api/admin/tokens", "admin"),
    ("POST", "/api/admin/tokens", "admin"),
    ("DELETE", "/api/admin/tokens/{id}", "admin"),
    // The audit log and who-may-do-what: admins and auditors.
    ("GET", "/api/admin/routes", "admin auditor"),
    ("GET", "/api/audit", "admin auditor"),
    // Reports: supervisors and auditors (read-only), admins.
    ("GET", "/api/reports/summary", "admin supervisor auditor"),
    // Call records hold callers' numbers and words: supervisors and admins.
    ("GET", "/api/calls/{id}", "admin supervisor"),
    // Recordings (voicemail, bridged calls) too; each listen is audited.
    ("GET", "/api/calls/{id}/recordings", "admin supervisor"),
    ("GET", "/api/recordings/{id}", "admin supervisor"),
    // One customer's data: admins.
    ("GET", "/api/admin/customers/{id}", "admin"),
    ("DELETE", "/api/admin/customers/{id}", "admin"),
    // Their own tickets, state, offers and conversations: agents, supervisors, admins.
    ("GET", "/api/agent/tickets", "admin supervisor agent"),
    // The service desk's tickets (the handlers keep agents to their own changes).
    ("GET", "/tickets", "public"),
    ("GET", "/api/tickets", "admin supervisor agent"),
    ("GET", "/api/tickets/{num}", "admin supervisor agent"),
    ("PATCH", "/api/tickets/{num}", "admin supervisor agent"),
    ("POST", "/api/tickets/{num}/notes", "admin supervisor agent"),
    ("POST", "/api/tickets/{num}/reply", "admin supervisor agent"),
    ("POST", "/api/tickets/{num}/call", "admin supervisor agent"),
    ("GET", "/api/tickets/{num}/call", "admin supervisor agent"),
    (
        "DELETE",
        "/api/tickets/{num}/call",
        "admin supervisor agent",
    ),
    ("GET", "/api/customers/{id}", "admin supervisor agent"),
    (
        "GET",
        "/api/customers/{id}/interactions/{iid}",
        "admin supervisor agent",
    ),
    ("GET", "/desk", "public"),
    ("POST", "/api/agent/state", "admin supervisor agent"),
    ("GET", "/api/agent/offers", "admin supervisor agent"),
    ("GET", "/api/agent/calls", "admin supervisor agent"),
    ("GET", "/api/agent/callback", "admin supervisor agent"),
    (
        "POST",
        "/api/agent/offers/{id}/accept",
        "admin supervisor agent",
    ),
    (
        "POST",
        "/api/agent/offers/{id}/decline",
        "admin supervisor agent",
    ),
    (
        "POST",
        "/api/agent/conversations/{id}/messages",
        "admin supervisor agent",
    ),
    (
        "POST",
        "/api/agent/conversations/{id}/done",
        "admin supervisor agent",
    ),
    (
        "GET",
        "/api/agent/conversations/{id}/ws",
        "admin supervisor agent",
    ),
    // Their own softphone on the desk.
    ("POST", "/api/agent/softphone", "admin supervisor agent"),
    (
        "POST",
        "/api/agent/softphone/calls",
        "admin supervisor agent",
    ),
    (
        "POST",
        "/api/agent/softphone/calls/{call}/candidates",
        "admin supervisor agent",
    ),
    (
        "DELETE",
        "/api/agent/softphone/calls/{call}",
        "admin supervisor agent",
    ),
    // The queues: supervisors and admins.
    ("GET", "/api/queues", "admin supervisor"),
];

fn url(s: &Server, path: &str) -> String {
    format!("http://{}{path}", s.http)
}

fn add_user(s: &Server, name: &str, role: &str) {
    let (ok, _, err) = s.kefu_with_input(
        &["users", "add", name, "--role", role, "--password-stdin"],
        &format!("{PASSWORD}\n"),
    );
    assert!(ok, "kefu users add {name}: {err}");
}

fn token(s: &Server, name: &str, role: &str) -> String {
    let (ok, out, err) = s.kefu(&["tokens", "create", name, "--role", role]);
    assert!(ok, "kefu tokens create: {err}");
    out.trim().to_string()
}

/// A signed-in browser: its session cookie and CSRF token.
#[derive(Clone, Debug)]
struct Session {
    cookie: String,
    csrf: String,
    set_cookie: String,
}

async fn login(
    c: &Client,
    s: &Server,
    name: &str,
    password: &str,
) -> Result<Session, (u16, String)> {
    let r = c
        .post(url(s, "/api/login"))
        .json(&json!({"name": name, "password": password}))
        .send()
        .await
        .unwrap();
    let status = r.status();
    let set_cookie = r
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let retry = r
        .headers()
        .get("retry-after")
        .map(|v| format!(" retry-after={}", v.to_str().unwrap()))
        .unwrap_or_default();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    if status != StatusCode::OK {
        return Err((status.as_u16(), format!("{body}{retry}")));
    }
    let cookie = set_cookie.split(';').next().unwrap().to_string();
    Ok(Session {
        cookie,
        csrf: body["csrf"].as_str().unwrap().to_string(),
        set_cookie,
    })
}

#[derive(Clone, Debug)]
enum Who {
    Nobody,
    User(Session),
    Token(String),
}

/// Sends `method path` as `who` with a harmless body: (status, body text).
async fn call(
    c: &Client,
    s: &Server,
    who: &Who,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, String) {
    let mut r = c.request(Method::from_bytes(method.as_bytes()).unwrap(), url(s, path));
    match who {
        Who::Nobody => {}
        Who::User(sess) => {
            r = r
                .header("cookie", &sess.cookie)
                .header("x-csrf-token", &sess.csrf);
        }
        Who::Token(t) => r = r.bearer_auth(t),
    }
    if let Some(b) = body {
        r = r.json(&b);
    } else if method != "GET" && method != "DELETE" {
        r = r.json(&json!({}));
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| format!(" retry-after={}", v.to_str().unwrap()))
        .unwrap_or_default();
    (status, resp.text().await.unwrap_or_default() + &retry)
}

/// How long a 429 told the client to wait (its Retry-After, as `login` and `call`
/// append it to the text).
fn retry_after(text: &str) -> Option<Duration> {
    let secs = text
        .split("retry-after=")
        .nth(1)?
        .split_whitespace()
        .next()?;
    Some(Duration::from_secs(secs.parse().ok()?))
}

/// Runs `attempt` until it is not refused with 429, waiting each time for as long
/// as the refusal said (a lockout ends when the server says it does); 5 tries.
async fn after_lockout<F, Fut>(mut attempt: F) -> (u16, String)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = (u16, String)>,
{
    for _ in 0..5 {
        let (status, text) = attempt().await;
        if status != 429 {
            return (status, text);
        }
        let wait = retry_after(&text).unwrap_or_else(|| panic!("429 without Retry-After: {text}"));
        tokio::time::sleep(wait + Duration::from_millis(50)).await;
    }
    panic!("still locked out after five waits");
}

/// A concrete path for a route pattern: ids that name nothing, so no request of
/// the walk changes anything it could not undo.
fn concrete(path: &str) -> String {
    path.replace("{id}", "none0000")
        .replace("{name}", "nobody")
        .replace("{table}", "days")
}

fn role_denied(status: u16, body: &str) -> bool {
    status == 403 && body.contains("may not do this")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_with_every_role() {
    let s = Server::start(None);
    let c = Client::new();
    for role in ROLES {
        add_user(&s, &format!("{role}1"), role);
    }
    let mut sessions = Vec::new();
    for role in ROLES {
        sessions.push((
            role,
            login(&c, &s, &format!("{role}1"), PASSWORD).await.unwrap(),
        ));
    }
    let tokens = [
        ("integrator", token(&s, "app1", "integrator")),
        ("auditor", token(&s, "bi1", "auditor")),
    ];
    // A token cannot be a person's role.
    let (ok, _, err) = s.kefu(&["tokens", "create", "x", "--role", "admin"]);
    assert!(!ok && err.contains("integrator or an auditor"), "{err}");

    // The server's table is exactly the expected one: no route without a
    // declared permission, none missing from this test.
    let admin = Who::User(sessions[0].1.clone());
    let (status, table) = call(&c, &s, &admin, "GET", "/api/admin/routes", None).await;
    assert_eq!(status, 200, "{table}");
    let table: Vec<Value> = serde_json::from_str(&table).unwrap();
    let mut served: Vec<(String, String)> = table
        .iter()
        .map(|r| {
            (
                r["method"].as_str().unwrap().to_string(),
                r["path"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let mut expected: Vec<(String, String)> = EXPECTED
        .iter()
        .map(|(m, p, _)| (m.to_string(), p.to_string()))
        .collect();
    served.sort();
    expected.sort();
    assert_eq!(
        served, expected,
        "the server's routes differ from the test's table"
    );
    for r in &table {
        let (_, _, who) = EXPECTED
            .iter()
            .find(|(m, p, _)| *m == r["method"] && *p == r["path"])
            .unwrap();
        let declared = r["permission"].as_str().unwrap();
        match *who {
            "public" => assert_eq!(declared, "public", "{r}"),
            "signed" => assert_eq!(declared, "signed_in", "{r}"),
            _ => assert!(declared != "public" && declared != "signed_in", "{r}"),
        }
    }

    let mut checked = 0;
    for (method, pattern, allowed) in EXPECTED {
        let path = concrete(pattern);
        let logout = *pattern == "/api/logout";
        // Nobody.
        let (status, body) = call(&c, &s, &Who::Nobody, method, &path, None).await;
        if *allowed == "public" {
            assert_ne!(status, 401, "{method} {path} unauthenticated: {body}");
            assert!(!role_denied(status, &body), "{method} {path}: {body}");
        } else {
            assert_eq!(status, 401, "{method} {path} unauthenticated: {body}");
        }
        checked += 1;
        // Each role, signed in.
        for (role, sess) in &sessions {
            // Signing out ends the session: use a fresh one for it.
            let who = if logout {
                Who::User(login(&c, &s, &format!("{role}1"), PASSWORD).await.unwrap())
            } else {
                Who::User(sess.clone())
            };
            let (status, body) = call(&c, &s, &who, method, &path, None).await;
            let may =
                matches!(*allowed, "public" | "signed") || allowed.split(' ').any(|r| r == *role);
            if may {
                assert!(
                    status != 401 && !role_denied(status, &body),
                    "{role} should reach {method} {path}: {status} {body}"
                );
            } else {
                assert!(
                    role_denied(status, &body),
                    "{role} must get 403 on {method} {path}: {status} {body}"
                );
            }
            checked += 1;
        }
        // Each token, as its role.
        for (role, t) in &tokens {
            let (status, body) = call(&c, &s, &Who::Token(t.clone()), method, &path, None).await;
            let may =
                matches!(*allowed, "public" | "signed") || allowed.split(' ').any(|r| r == *role);
            if logout || *pattern == "/api/session/password" {
                // Tokens neither sign out nor have passwords: a plain 400.
                assert_eq!(status, 400, "{role} token on {method} {path}: {body}");
            } else if may {
                assert!(
                    status != 401 && !role_denied(status, &body),
                    "{role} token should reach {method} {path}: {status} {body}"
                );
            } else {
                assert!(
                    role_denied(status, &body),
                    "{role} token must get 403 on {method} {path}: {status} {body}"
                );
            }
            checked += 1;
        }
    }
    assert_eq!(checked, EXPECTED.len() * 8);

    // Wrong credentials are 401, never a pass to a public fallback.
    let (status, _) = call(
        &c,
        &s,
        &Who::Token("kefu_forged".into()),
        "GET",
        "/api/session",
        None,
    )
    .await;
    assert_eq!(status, 401);
    let forged = Session {
        cookie: "kefu_session=forged".into(),
        csrf: "x".into(),
        set_cookie: String::new(),
    };
    let (status, body) = call(&c, &s, &Who::User(forged), "GET", "/api/session", None).await;
    assert_eq!(status, 401, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_csrf_and_throttled_sign_in() {
    let s = Server::start(None);
    let c = Client::new();
    add_user(&s, "li.wei", "supervisor");
    add_user(&s, "root", "admin");

    // The cookie: HttpOnly, SameSite=Strict, Secure, whole site, bounded life.
    let sess = login(&c, &s, "li.wei", PASSWORD).await.unwrap();
    for attr in [
        "HttpOnly",
        "SameSite=Strict",
        "Secure",
        "Path=/",
        "Max-Age=43200",
    ] {
        assert!(
            sess.set_cookie.contains(attr),
            "{attr} missing: {}",
            sess.set_cookie
        );
    }
    let me = Who::User(sess.clone());
    let (status, body) = call(&c, &s, &me, "GET", "/api/session", None).await;
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (v["name"].as_str(), v["role"].as_str(), v["via"].as_str()),
        (Some("li.wei"), Some("supervisor"), Some("session"))
    );
    assert_eq!(v["csrf"], sess.csrf.as_str());
    assert!(
        v["permissions"]
            .as_array()
            .unwrap()
            .contains(&json!("reports"))
    );

    // A change without the CSRF token is refused, even with the cookie.
    let r = c
        .post(url(&s, "/api/v1/kb/match"))
        .header("cookie", &sess.cookie)
        .json(&json!({"text": "opening hours"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("CSRF"));
    let r = c
        .post(url(&s, "/api/v1/kb/match"))
        .header("cookie", &sess.cookie)
        .header("x-csrf-token", "guess")
        .json(&json!({"text": "opening hours"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let (status, body) = call(
        &c,
        &s,
        &me,
        "POST",
        "/api/v1/kb/match",
        Some(json!({"text": "What are your opening hours?"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["ranked"][0]["intent"], "opening_hours", "{v}");

    // Signing out ends the session for good.
    let (status, _) = call(&c, &s, &me, "POST", "/api/logout", None).await;
    assert_eq!(status, 204);
    let (status, body) = call(&c, &s, &me, "GET", "/api/session", None).await;
    assert_eq!(status, 401, "{body}");

    // Throttling: five wrong passwords are answered 401, then the name is locked
    // (429 with Retry-After), even for the right password, while another user
    // from elsewhere is not affected by the name's lock.
    for i in 0..5 {
        let e = login(&c, &s, "li.wei", "wrong password!")
            .await
            .unwrap_err();
        assert_eq!(e.0, 401, "attempt {i}: {}", e.1);
        assert!(e.1.contains("wrong name or password"));
    }
    let e = login(&c, &s, "li.wei", "wrong password!")
        .await
        .unwrap_err();
    assert_eq!(e.0, 401);
    let e = login(&c, &s, "li.wei", PASSWORD).await.unwrap_err();
    assert_eq!(e.0, 429, "{}", e.1);
    assert!(e.1.contains("retry-after="), "{}", e.1);
    // Unknown names fail the same way (and count against the address).
    let e = login(&c, &s, "nobody", "wrong password!")
        .await
        .unwrap_err();
    assert_eq!(e.0, 429, "the address is locked by now: {}", e.1);
    // The lock runs out (1 s, doubling) when the refusal says; then the right
    // password works.
    let mut tries = 0;
    let sess = loop {
        match login(&c, &s, "li.wei", PASSWORD).await {
            Ok(sess) => break sess,
            Err((429, text)) if tries < 5 => {
                tries += 1;
                let wait = retry_after(&text).expect("a 429 says when to retry");
                tokio::time::sleep(wait + Duration::from_millis(50)).await;
            }
            Err(e) => panic!("{e:?}"),
        }
    };
    assert!(!sess.csrf.is_empty());

    // An admin disables li.wei: their live session ends at once.
    let root = Who::User(login(&c, &s, "root", PASSWORD).await.unwrap());
    let (status, body) = call(
        &c,
        &s,
        &root,
        "PATCH",
        "/api/admin/users/li.wei",
        Some(json!({"disabled": true})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = call(&c, &s, &Who::User(sess), "GET", "/api/session", None).await;
    assert_eq!(status, 401);
    let e = login(&c, &s, "li.wei", PASSWORD).await.unwrap_err();
    assert_eq!(e.0, 403, "{}", e.1);
    // The last admin cannot lock themselves out.
    let (status, body) = call(
        &c,
        &s,
        &root,
        "PATCH",
        "/api/admin/users/root",
        Some(json!({"role": "agent"})),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    // A password change needs the current one and ends every session.
    let (status, _) = call(
        &c,
        &s,
        &root,
        "POST",
        "/api/session/password",
        Some(json!({"current": "not it at all", "new": "a new long password"})),
    )
    .await;
    assert_eq!(status, 401);
    // A new password that is too short is refused before anything is checked.
    let (status, body) = call(
        &c,
        &s,
        &root,
        "POST",
        "/api/session/password",
        Some(json!({"current": PASSWORD, "new": "short"})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    // The failure above locked the address again (it had six already): wait it
    // out as the refusal says.
    let (status, body) = after_lockout(|| {
        call(
            &c,
            &s,
            &root,
            "POST",
            "/api/session/password",
            Some(json!({"current": PASSWORD, "new": "a new long password"})),
        )
    })
    .await;
    assert_eq!(status, 204, "{body}");
    let (status, _) = call(&c, &s, &root, "GET", "/api/session", None).await;
    assert_eq!(status, 401);
    login(&c, &s, "root", "a new long password").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_manages_users_and_tokens_and_secrets_stay_hashed() {
    let s = Server::start(None);
    let c = Client::new();
    add_user(&s, "root", "admin");
    let root = Who::User(login(&c, &s, "root", PASSWORD).await.unwrap());

    // A user with a generated password, shown once.
    let (status, body) = call(
        &c,
        &s,
        &root,
        "POST",
        "/api/admin/users",
        Some(json!({"name": "wang.fang", "role": "agent"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let generated = v["password"].as_str().unwrap().to_string();
    assert_eq!(v["user"]["role"], "agent");
    login(&c, &s, "wang.fang", &generated).await.unwrap();
    let (status, _) = call(
        &c,
        &s,
        &root,
        "POST",
        "/api/admin/users",
        Some(json!({"name": "wang.fang", "role": "agent"})),
    )
    .await;
    assert_eq!(status, 409);
    let (status, body) = call(
        &c,
        &s,
        &root,
        "POST",
        "/api/admin/users",
        Some(json!({"name": "x y", "role": "agent"})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = call(
        &c,
        &s,
        &root,
        "POST",
        "/api/admin/users",
        Some(json!({"name": "z", "role": "root"})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("unknown role"));
    // Promote: the role changes, the old session ends.
    let agent = Who::User(login(&c, &s, "wang.fang", &generated).await.unwrap());
    let (status, _) = call(&c, &s, &agent, "GET", "/api/reports/summary", None).await;
    assert_eq!(status, 403);
    let (status, _) = call(
        &c,
        &s,
        &root,
        "PATCH",
        "/api/admin/users/wang.fang",
        Some(json!({"role": "supervisor"})),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = call(&c, &s, &agent, "GET", "/api/reports/summary", None).await;
    assert_eq!(status, 401);
    let sup = Who::User(login(&c, &s, "wang.fang", &generated).await.unwrap());
    let (status, body) = call(&c, &s, &sup, "GET", "/api/reports/summary?days=30", None).await;
    assert_eq!(status, 200, "{body}");

    // A token made over HTTP works at once, is listed without its secret, and
    // stops working when revoked.
    let (status, body) = call(
        &c,
        &s,
        &root,
        "POST",
        "/api/admin/tokens",
        Some(json!({"name": "shop-app", "role": "integrator"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let secret = v["token"].as_str().unwrap().to_string();
    let id = v["id"].as_str().unwrap().to_string();
    let app = Who::Token(secret.clone());
    let (status, body) = call(
        &c,
        &s,
        &app,
        "POST",
        "/api/v1/conversations",
        Some(json!({"user": "u-1", "lang": "en"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (_, listed) = call(&c, &s, &root, "GET", "/api/admin/tokens", None).await;
    assert!(
        listed.contains("shop-app") && !listed.contains(&secret),
        "{listed}"
    );
    // Tokens expire: 90 days unless asked, never more than a year.
    let listed: Value = serde_json::from_str(&listed).unwrap();
    let expires = listed[0]["expires"].as_str().unwrap();
    let expires = chrono::DateTime::parse_from_rfc3339(expires).unwrap();
    let days = (expires.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_days();
    assert!((89..=90).contains(&days), "{expires}");
    let (status, body) = call(
        &c,
        &s,
        &root,
        "POST",
        "/api/admin/tokens",
        Some(json!({"name": "forever", "role": "integrator", "days": 100000})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = call(
        &c,
        &s,
        &root,
        "POST",
        "/api/admin/tokens",
        Some(json!({"name": "boss", "role": "admin"})),
    )
    .await;
    assert_eq!(status, 400, "{body}");

    // Neither the token nor any password is in the database files.
    let mut bytes = Vec::new();
    for e in std::fs::read_dir(s.data()).unwrap() {
        let p = e.unwrap().path();
        if p.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("kefu.db")
        {
            bytes.extend(std::fs::read(&p).unwrap());
        }
    }
    let found = |needle: &str| bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(found("shop-app"), "control: the token's name is stored");
    assert!(found("$argon2id$"), "control: password hashes are stored");
    for secret_text in [secret.as_str(), &secret[5..], PASSWORD, generated.as_str()] {
        assert!(
            !found(secret_text),
            "{secret_text:?} is stored in plaintext"
        );
    }

    let (status, _) = call(
        &c,
        &s,
        &root,
        "DELETE",
        &format!("/api/admin/tokens/{id}"),
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (status, body) = call(
        &c,
        &s,
        &app,
        "POST",
        "/api/v1/conversations",
        Some(json!({"user": "u-1"})),
    )
    .await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("revoked"));
    let (status, _) = call(
        &c,
        &s,
        &root,
        "DELETE",
        &format!("/api/admin/tokens/{id}"),
        None,
    )
    .await;
    assert_eq!(status, 404);

    // Every change above is in the audit log, with who made it; an auditor reads
    // it, and cannot write it.
    let auditor = Who::Token(token(&s, "audit-bot", "auditor"));
    let (status, body) = call(&c, &s, &auditor, "GET", "/api/audit?limit=1000", None).await;
    assert_eq!(status, 200, "{body}");
    let log: Vec<Value> = serde_json::from_str(&body).unwrap();
    let has = |actor: &str, action: &str, target: &str| {
        log.iter()
            .any(|e| e["actor"] == actor && e["action"] == action && e["target"] == target)
    };
    assert!(has("user:root", "user.add", "wang.fang"), "{body}");
    assert!(has("user:root", "user.change", "wang.fang"), "{body}");
    assert!(has("user:root", "token.add", "shop-app"), "{body}");
    assert!(has("user:root", "token.revoke", &id), "{body}");
    assert!(
        has("user:wang.fang", "session.login", "wang.fang"),
        "{body}"
    );
    assert!(
        log.iter().any(|e| e["action"] == "user.add"
            && e["target"] == "root"
            && e["actor"].as_str().unwrap().starts_with("cli:")),
        "{body}"
    );
    assert!(
        log.iter()
            .any(|e| e["action"] == "token.add" && e["target"] == "audit-bot"),
        "{body}"
    );
    // Paging.
    let first = log[0]["id"].as_i64().unwrap();
    let (_, page) = call(
        &c,
        &s,
        &auditor,
        "GET",
        &format!("/api/audit?after={first}&limit=2"),
        None,
    )
    .await;
    let page: Vec<Value> = serde_json::from_str(&page).unwrap();
    assert_eq!(page.len(), 2);
    assert_eq!(page[0]["id"], log[1]["id"]);
    let (status, _) = call(&c, &s, &auditor, "GET", "/api/audit?limit=0", None).await;
    assert_eq!(status, 400);
    let (status, _) = call(&c, &s, &auditor, "DELETE", "/api/audit", None).await;
    assert_eq!(status, 405);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customer_data_reads_are_audited_and_erase_forgets() {
    let s = Server::start(None);
    let c = Client::new();
    add_user(&s, "root", "admin");
    let root = Who::User(login(&c, &s, "root", PASSWORD).await.unwrap());
    let app = Who::Token(s.api_token());
    let (status, body) = call(
        &c,
        &s,
        &app,
        "POST",
        "/api/v1/conversations",
        Some(json!({"user": "erase-me", "lang": "en"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let customer = v["customer"].as_str().unwrap().to_string();
    let conv = v["conversation"].as_str().unwrap().to_string();
    let (status, _) = call(
        &c,
        &s,
        &app,
        "POST",
        &format!("/api/v1/conversations/{conv}/messages"),
        Some(json!({"text": "What are your opening hours?"})),
    )
    .await;
    assert_eq!(status, 200);

    let (status, body) = call(
        &c,
        &s,
        &root,
        "GET",
        &format!("/api/admin/customers/{customer}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("opening hours") && body.contains("erase-me"),
        "{body}"
    );
    let (status, body) = call(
        &c,
        &s,
        &root,
        "DELETE",
        &format!("/api/admin/customers/{customer}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = call(
        &c,
        &s,
        &root,
        "GET",
        &format!("/api/admin/customers/{customer}"),
        None,
    )
    .await;
    assert_eq!(status, 404);
    // The live conversation is gone too: nothing more is written for them.
    let (status, _) = call(
        &c,
        &s,
        &app,
        "POST",
        &format!("/api/v1/conversations/{conv}/messages"),
        Some(json!({"text": "hello?"})),
    )
    .await;
    assert_eq!(status, 404);
    let (ok, out, _) = s.kefu(&["customers", "export", "--id", &customer]);
    assert!(ok);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert!(
        v["identities"].as_array().unwrap().is_empty()
            && v["conversations"].as_array().unwrap().is_empty(),
        "{v}"
    );

    let (_, body) = call(&c, &s, &root, "GET", "/api/audit?limit=1000", None).await;
    let log: Vec<Value> = serde_json::from_str(&body).unwrap();
    for action in ["customer.export", "customer.erase"] {
        assert!(
            log.iter().any(|e| e["actor"] == "user:root"
                && e["action"] == action
                && e["target"] == customer.as_str()),
            "{action} missing: {body}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_integrator_uploads_a_knowledge_base_file() {
    let kb = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(repo().join("dialplans/kb")).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, kb.path().join(p.file_name().unwrap())).unwrap();
    }
    let s = Server::start_with(None, &format!("kb = \"{}\"\n", kb.path().display()));
    let c = Client::new();
    let app = Who::Token(s.api_token());
    let (status, body) = call(&c, &s, &app, "GET", "/api/v1/kb", None).await;
    assert_eq!(status, 200);
    let before: Value = serde_json::from_str(&body).unwrap();
    assert!(
        before["intents"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["id"] == "opening_hours")
    );

    let put = |name: &str, text: &str| {
        let r = c
            .put(url(&s, &format!("/api/v1/kb/files/{name}")))
            .bearer_auth(s.api_token())
            .header("content-type", "application/toml")
            .body(text.to_string());
        async move {
            let r = r.send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    // A broken file is refused with its position, and nothing is written.
    let (status, body) = put(
        "parking.toml",
        "[intents.parking]\ntitle = { en = \"parking\" }\nanswer.en = 5\n",
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("parking.toml:3:"), "{body}");
    assert!(!kb.path().join("parking.toml").exists());
    let (status, _) = put("../escape.toml", "").await;
    assert!(status == 400 || status == 404, "{status}");

    let good = r#"[intents.parking]
title = { en = "parking", zh = "停车" }
examples.en = ["where can I park my car", "is there parking at the store", "car park"]
examples.zh = ["门店可以停车吗", "停车场在哪里"]
answer.en = "Customers park free for two hours in the garage under the store."
answer.zh = "门店地下车库可免费停车两小时。"
"#;
    let (status, body) = put("parking.toml", good).await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_ne!(v["version"], before["version"]);
    // The watcher picks it up; the next question matches it.
    let mut matched = Value::Null;
    for _ in 0..50 {
        let (_, body) = call(
            &c,
            &s,
            &app,
            "POST",
            "/api/v1/kb/match",
            Some(json!({"text": "Where can I park?"})),
        )
        .await;
        matched = serde_json::from_str(&body).unwrap();
        if matched["ranked"][0]["intent"] == "parking" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(matched["ranked"][0]["intent"], "parking", "{matched}");
    assert_eq!(matched["version"], v["version"]);
    assert_eq!(matched["outcome"], "answer", "{matched}");
    // A supervisor may read the knowledge base but not change it.
    add_user(&s, "sup", "supervisor");
    let sup = Who::User(login(&c, &s, "sup", PASSWORD).await.unwrap());
    let (status, body) = call(
        &c,
        &s,
        &sup,
        "PUT",
        "/api/v1/kb/files/x.toml",
        Some(json!({})),
    )
    .await;
    assert!(role_denied(status, &body), "{status} {body}");

    // An edit on disk that does not load is refused by the watcher: audited too.
    std::fs::write(
        kb.path().join("zz-broken.toml"),
        "[intents.x]\nanswer.en = 5\n",
    )
    .unwrap();
    let (ok, out, _) = s.kefu(&["tokens", "list"]);
    assert!(ok && out.contains("test-app"), "{out}");
    let reader = Who::Token(token(&s, "reader", "auditor"));
    let mut log: Vec<Value> = Vec::new();
    for _ in 0..50 {
        let (_, body) = call(&c, &s, &reader, "GET", "/api/audit?limit=1000", None).await;
        log = serde_json::from_str(&body).unwrap();
        if log.iter().any(|e| e["action"] == "kb.rejected") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let has = |actor: &str, action: &str, target: &Value| {
        log.iter().any(|e| {
            e["actor"] == actor
                && e["action"] == action
                && (target.is_null() || e["target"] == *target)
        })
    };
    assert!(
        has("token:test-app", "kb.upload", &json!("parking.toml")),
        "{log:?}"
    );
    // The versions live at start, and the one the upload made live.
    assert!(has("watcher", "kb.reload", &before["version"]), "{log:?}");
    assert!(has("watcher", "dialplans.reload", &Value::Null), "{log:?}");
    assert!(has("watcher", "kb.reload", &v["version"]), "{log:?}");
    assert!(has("watcher", "kb.rejected", &Value::Null), "{log:?}");
    // The broken file never went live.
    let (_, body) = call(&c, &s, &app, "GET", "/api/v1/kb", None).await;
    let now: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(now["version"], v["version"]);

    std::fs::remove_file(kb.path().join("zz-broken.toml")).unwrap();
    // A spreadsheet is imported as `kefu kb import` does and kept as TOML; one
    // with an unknown column is refused with the cell's position.
    let sheet = "编号,问题,答案,Question (EN),answer_en\n\
                 gift_wrap,可以包装成礼物吗|能帮我包礼品吗,可以，结账时选择礼品包装。,Can you gift wrap it?,\"Yes, choose gift wrap at checkout.\"\n";
    let (status, body) = put("gifts.csv", sheet).await;
    assert_eq!(status, 200, "{body}");
    let g: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(g["file"], "gifts.toml");
    let kept = std::fs::read_to_string(kb.path().join("gifts.toml")).unwrap();
    assert!(kept.contains("能帮我包礼品吗"), "{kept}");
    assert!(!kb.path().join("gifts.csv").exists());
    let (status, body) = put("more.csv", "id,question,answer_en\nx,y,z\n").await;
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("more.csv:1:2: unknown column"), "{body}");
    assert!(!kb.path().join("more.toml").exists());
}

/// Behind a trusted reverse proxy, sign-ins are counted per client address from
/// `X-Forwarded-For`; from anyone else the header is ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_behind_a_trusted_proxy() {
    let attempt = |s: &Server, n: usize, xff: &'static str| {
        let url = url(s, "/api/login");
        async move {
            Client::new()
                .post(url)
                .header("x-forwarded-for", xff)
                .json(&json!({"name": format!("nobody{n}"), "password": "wrong password!"}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    let proxied = Server::start_with(None, "trusted_proxies = [\"127.0.0.1\"]\n");
    for n in 0..6 {
        assert_eq!(attempt(&proxied, n, "10.0.0.1").await, 401);
    }
    assert_eq!(
        attempt(&proxied, 6, "10.0.0.1").await,
        429,
        "10.0.0.1 is locked"
    );
    assert_eq!(
        attempt(&proxied, 7, "10.0.0.2").await,
        401,
        "10.0.0.2 is not"
    );
    // A client's own X-Forwarded-For entry is not believed: the proxy's (last) is.
    assert_eq!(attempt(&proxied, 8, "10.0.0.9, 10.0.0.1").await, 429);

    let direct = Server::start(None);
    for n in 0..6 {
        assert_eq!(
            attempt(&direct, n, ["10.1.0.1", "10.1.0.2", "10.1.0.3"][n % 3]).await,
            401
        );
    }
    assert_eq!(
        attempt(&direct, 6, "10.1.0.4").await,
        429,
        "the header is ignored"
    );
}
