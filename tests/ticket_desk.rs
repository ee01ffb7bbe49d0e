//! The service desk's tickets over HTTP (a real server, real sockets): the list's
//! filters and search, who may change what, a change on a stale version, two
//! supervisors at once, notes, bad input answered with a reason; and the tickets
//! page in headless Chromium (tests/browser/tickets.mjs). The page's screenshot
//! is kept in target/test-artifacts/tickets.png.

mod common;

use common::Server;
use reqwest::Method;
use serde_json::{Value, json};

const PASSWORD: &str = "desk password 2026";

fn add_supervisor(s: &Server, name: &str) {
    let (ok, _, err) = s.kefu_with_input(
        &[
            "users",
            "add",
            name,
            "--role",
            "supervisor",
            "--password-stdin",
        ],
        &format!("{PASSWORD}\n"),
    );
    assert!(ok, "kefu users add {name}: {err}");
}

struct As {
    base: String,
    cookie: String,
    csrf: String,
}

impl As {
    async fn new(s: &Server, name: &str) -> Self {
        let (cookie, csrf) = s.sign_in(name, PASSWORD).await;
        Self {
            base: format!("http://{}", s.http),
            cookie,
            csrf,
        }
    }

    async fn call(&self, m: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut r = reqwest::Client::new()
            .request(m, format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .header("x-csrf-token", &self.csrf);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let r = r.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.call(Method::GET, path, None).await
    }

    async fn nums(&self, query: &str) -> Vec<i64> {
        let (status, page) = self.get(&format!("/api/tickets?{query}")).await;
        assert_eq!(status, 200, "{query}: {page}");
        page["tickets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["num"].as_i64().unwrap())
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ticket_api_filters_searches_and_refuses_what_it_must() {
    let s = Server::start(None);
    s.add_agent_user("wang", PASSWORD, "Wang Fang", "1001");
    s.add_agent_user("li", PASSWORD, "Li Na", "1002");
    add_supervisor(&s, "boss");
    add_supervisor(&s, "boss2");
    let (_conv, _, _ws) = s
        .handed_over_chat("visitor-ann", "I want to talk to a person")
        .await;
    let boss = As::new(&s, "boss").await;
    let wang = As::new(&s, "wang").await;

    // The list, its filters and the search over the customer's sealed words.
    for _ in 0..50 {
        if !boss.nums("").await.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(boss.nums("").await, [1]);
    assert_eq!(boss.nums("status=new&channel=web&assignee=none").await, [1]);
    assert_eq!(boss.nums("status=open").await, Vec::<i64>::new());
    assert_eq!(boss.nums("q=PERSON").await, [1]);
    assert_eq!(boss.nums("q=talk%20person").await, [1]);
    assert_eq!(boss.nums("q=refund").await, Vec::<i64>::new());
    assert_eq!(
        boss.nums("customer=visitor-ann").await,
        [1],
        "by the customer's identity"
    );
    assert_eq!(boss.nums("customer=%2B860000").await, Vec::<i64>::new());
    assert_eq!(boss.nums("sort=due&due=2099-01-01T00:00:00Z").await, [1]);
    // Odd characters are words or nothing, never SQL.
    for q in [
        "%25'%3B%20DROP%20TABLE%20tickets%3B--",
        "%F0%9F%98%80",
        "%00%01",
        "_%25",
        "%E2%80%AE",
    ] {
        let (status, page) = boss.get(&format!("/api/tickets?q={q}")).await;
        assert_eq!(status, 200, "{q}: {page}");
    }
    assert_eq!(boss.nums("").await, [1], "nothing lost");

    // Bad input: a 4xx with a reason.
    let long = "x".repeat(201);
    for (query, needle) in [
        ("status=bogus", "`status`"),
        ("limit=100000", "`limit`"),
        ("limit=0", "`limit`"),
        ("sort=oldest", "`sort`"),
        ("due=tomorrow", "`due`"),
        ("after=zzz", "`after`"),
        ("assignee=nobody-here", "no user named"),
        ("priority=meh", "`priority`"),
        ("bogus=1", "unknown field"),
        (&format!("q={long}"), "200 characters"),
    ] {
        let (status, body) = boss.get(&format!("/api/tickets?{query}")).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains(needle),
            "{query}: {body}"
        );
    }
    assert_eq!(boss.get("/api/tickets/abc").await.0, 404);
    assert_eq!(boss.get("/api/tickets/999").await.0, 404);
    let patch = |v: Value| Some(v);
    let (st, body) = boss
        .call(
            Method::PATCH,
            "/api/tickets/1",
            patch(json!({"version": 0})),
        )
        .await;
    assert_eq!(st, 400, "{body}");
    let (st, _) = boss
        .call(
            Method::PATCH,
            "/api/tickets/1",
            patch(json!({"version": 0, "status": "lost"})),
        )
        .await;
    assert_eq!(st, 422);
    let (st, _) = boss
        .call(
            Method::PATCH,
            "/api/tickets/1",
            patch(json!({"status": "open"})),
        )
        .await;
    assert_eq!(st, 422, "the version is required");

    // An agent takes an unassigned ticket, but gives nobody else one.
    let (st, body) = wang
        .call(
            Method::PATCH,
            "/api/tickets/1",
            patch(json!({"version": 0, "assignee": "li"})),
        )
        .await;
    assert_eq!(st, 403, "{body}");
    let (st, body) = wang
        .call(
            Method::PATCH,
            "/api/tickets/1",
            patch(json!({"version": 0, "assignee": "wang"})),
        )
        .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["status"], "open");
    assert_eq!(body["assignee"], "wang");
    assert_eq!(wang.nums("assignee=me").await, [1]);

    // ... and may give it back, and take it again.
    let (st, body) = wang
        .call(
            Method::PATCH,
            "/api/tickets/1",
            patch(json!({"version": 1, "assignee": null})),
        )
        .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["status"], "new", "given back: nobody has it");
    let (st, body) = wang
        .call(
            Method::PATCH,
            "/api/tickets/1",
            patch(json!({"version": 2, "assignee": "wang"})),
        )
        .await;
    assert_eq!(st, 200, "{body}");

    // The supervisor's change on the version before the agent's is refused.
    let (st, body) = boss
        .call(
            Method::PATCH,
            "/api/tickets/1",
            patch(json!({"version": 0, "assignee": "li"})),
        )
        .await;
    assert_eq!(st, 409, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("changed by someone else"),
        "{body}"
    );

    // Two supervisors at once on the same version: one wins, one is told.
    let boss2 = As::new(&s, "boss2").await;
    let a = boss.call(
        Method::PATCH,
        "/api/tickets/1",
        patch(json!({"version": 3, "assignee": "li"})),
    );
    let b = boss2.call(
        Method::PATCH,
        "/api/tickets/1",
        patch(json!({"version": 3, "priority": "urgent"})),
    );
    let ((sa, _), (sb, _)) = tokio::join!(a, b);
    let mut got = [sa, sb];
    got.sort();
    assert_eq!(got, [200, 409]);

    // Notes: internal, bounded.
    for bad in [json!({"text": "  "}), json!({"text": "x".repeat(4001)})] {
        let (st, _) = wang
            .call(Method::POST, "/api/tickets/1/notes", Some(bad))
            .await;
        assert_eq!(st, 400);
    }
    let (st, _) = wang
        .call(
            Method::POST,
            "/api/tickets/9/notes",
            Some(json!({"text": "hi"})),
        )
        .await;
    assert_eq!(st, 404);
    let (st, body) = boss
        .call(
            Method::POST,
            "/api/tickets/1/notes",
            Some(json!({"text": "checked"})),
        )
        .await;
    assert_eq!(st, 201, "{body}");

    // The history holds every change that was made, and only those.
    let (_, d) = boss.get("/api/tickets/1").await;
    let actions: Vec<String> = d["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{} {} {}",
                e["actor"].as_str().unwrap(),
                e["action"].as_str().unwrap(),
                e["detail"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        actions[0], "kefu ticket.open queue general, channel web",
        "{actions:?}"
    );
    assert_eq!(
        actions[1], "user:wang ticket.status new → open",
        "{actions:?}"
    );
    assert_eq!(
        actions[2], "user:wang ticket.assign nobody → wang",
        "{actions:?}"
    );
    // Given back and taken again: two statuses and two assignments.
    assert_eq!(
        actions[3], "user:wang ticket.status open → new",
        "{actions:?}"
    );
    assert_eq!(
        actions[4], "user:wang ticket.assign wang → nobody",
        "{actions:?}"
    );
    assert_eq!(
        actions.len(),
        9,
        "one of the two supervisors' changes, and the note: {actions:?}"
    );
    assert_eq!(actions[8], "user:boss ticket.note note 1", "{actions:?}");
    assert_eq!(d["notes"][0]["text"], "checked");
    assert_eq!(d["version"], 4);
}

#[test]
fn a_supervisor_filters_assigns_and_reassigns_on_the_tickets_page() {
    let s = Server::start(None);
    s.add_agent_user("wang", PASSWORD, "Wang Fang", "1001");
    s.add_agent_user("li", PASSWORD, "Li Na", "1002");
    add_supervisor(&s, "boss");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _sockets = rt.block_on(async {
        let (_, _, a) = s
            .handed_over_chat("visitor-en", "I want to talk to a person")
            .await;
        let (_, _, b) = s.handed_over_chat("visitor-zh", "我要转人工").await;
        (a, b)
    });
    let (seen, shot) = common::browser(
        &s,
        "tickets.mjs",
        &["boss", PASSWORD, "li", PASSWORD],
        "tickets",
    );
    let nums = |k: &str| -> Vec<i64> {
        seen[k]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["num"].as_i64().unwrap())
            .collect()
    };
    assert_eq!(nums("unsolved"), [2, 1], "{seen}");
    assert_eq!(nums("searchPerson"), [1], "{seen}");
    assert_eq!(nums("searchZh"), [2], "{seen}");
    assert_eq!(nums("searchNone"), Vec::<i64>::new(), "{seen}");
    assert_eq!(seen["emptyShown"], true);
    assert_eq!(nums("unassignedWeb"), [2, 1], "{seen}");
    assert_eq!(seen["statusAfterAssign"], "open", "{seen}");
    let row1 = seen["listAfterReassign"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["num"] == 1)
        .unwrap();
    assert_eq!(row1["assignee"], "li", "{seen}");
    assert_eq!(nums("agentMine"), [1], "{seen}");
    assert!(
        seen["agentNote"]
            .as_str()
            .unwrap()
            .contains("call back today"),
        "{seen}"
    );
    assert_eq!(seen["conflictStatus"], 409, "{seen}");
    assert!(
        seen["conflictError"]
            .as_str()
            .unwrap()
            .contains("changed by someone else"),
        "{seen}"
    );
    assert_eq!(
        seen["priorityShown"], "urgent",
        "the page shows the ticket as it now is: {seen}"
    );
    assert_eq!(seen["retryStatus"], 200, "{seen}");
    let history = common::strings(&seen["history"]).join("\n");
    for needle in [
        "user:boss · ticket.assign · nobody → wang",
        "user:boss · ticket.assign · wang → li",
        "user:li · ticket.priority · normal → urgent",
        "user:li · ticket.note · note 1",
        "user:boss · ticket.status · open → pending",
    ] {
        assert!(history.contains(needle), "{needle}:\n{history}");
    }
    assert!(
        std::fs::metadata(&shot).unwrap().len() > 10_000,
        "a real screenshot"
    );
}

/// Reads the customer's socket until an agent's turn arrives: its text.
async fn agent_turn(ws: &mut common::Ws) -> String {
    use futures_util::StreamExt;
    loop {
        let msg = tokio::time::timeout(std::time::Duration::from_secs(5), ws.next())
            .await
            .expect("the agent's reply in time")
            .unwrap()
            .unwrap();
        let v: Value = serde_json::from_str(msg.to_text().unwrap()).unwrap();
        if v["speaker"] == "agent" {
            return v["text"].as_str().unwrap().to_string();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_replies_on_a_ticket_and_sees_the_customer_behind_it() {
    // One live conversation at a time: the second chat makes kefu forget the first.
    let s = Server::start_with(None, "max_conversations = 1\n");
    s.add_agent_user("wang", PASSWORD, "Wang Fang", "1001");
    s.add_agent_user("li", PASSWORD, "Li Na", "1002");
    let (conv, started, mut ws) = s
        .handed_over_chat("visitor-ann", "I want to talk to a person")
        .await;
    let customer = started["customer"].as_str().unwrap().to_string();
    let wang = As::new(&s, "wang").await;
    let li = As::new(&s, "li").await;
    for _ in 0..50 {
        if !wang.nums("").await.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let reply = |text: &str| Some(json!({ "text": text }));
    // Only the ticket's agent replies.
    let (st, _) = wang
        .call(
            Method::PATCH,
            "/api/tickets/1",
            Some(json!({"version": 0, "assignee": "wang"})),
        )
        .await;
    assert_eq!(st, 200);
    let (st, body) = li
        .call(Method::POST, "/api/tickets/1/reply", reply("hi"))
        .await;
    assert_eq!(st, 403, "{body}");
    let (st, body) = wang
        .call(Method::POST, "/api/tickets/1/reply", reply(""))
        .await;
    assert_eq!(st, 400, "{body}");

    // Live: the customer's widget gets it at once; the ticket waits on them.
    let (st, body) = wang
        .call(
            Method::POST,
            "/api/tickets/1/reply",
            reply("Your refund was approved today."),
        )
        .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["reach"], "live");
    assert_eq!(body["ticket"]["status"], "pending");
    assert_eq!(body["ticket"]["waiting"], true);
    assert_eq!(agent_turn(&mut ws).await, "Your refund was approved today.");
    // The customer answers: the ticket is open again.
    let key = started["key"].as_str().unwrap();
    s.say_in_chat(&conv, key, "Thank you, when will the money arrive?")
        .await;
    let (_, d) = wang.get("/api/tickets/1").await;
    assert_eq!(d["status"], "open", "{d}");

    // The customer on one screen: masked identity, the conversation, the ticket.
    let (st, v) = wang.get(&format!("/api/customers/{customer}")).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["identities"][0]["kind"], "web", "{v}");
    assert_eq!(v["identities"][0]["value"], "vis****ann", "{v}");
    assert_eq!(v["total"], 1);
    assert_eq!(v["interactions"][0]["id"], conv.as_str());
    assert!(v["interactions"][0]["turns"].as_i64().unwrap() >= 5, "{v}");
    assert_eq!(v["tickets"][0]["num"], 1);
    let (st, t) = wang
        .get(&format!("/api/customers/{customer}/interactions/{conv}"))
        .await;
    assert_eq!(st, 200, "{t}");
    let said: Vec<String> = t["turns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["text"].as_str().unwrap().to_string())
        .collect();
    assert!(
        said.contains(&"Your refund was approved today.".to_string()),
        "{said:?}"
    );
    assert_eq!(
        wang.get(&format!("/api/customers/{customer}/interactions/other"))
            .await
            .0,
        404
    );
    assert_eq!(wang.get("/api/customers/nobody").await.0, 404);

    // Later, once kefu has forgotten the conversation: stored as its next turn.
    let (_other, _, _ws2) = s
        .handed_over_chat("visitor-bob", "I want to talk to a person")
        .await;
    let (_, d) = wang.get("/api/tickets/1").await;
    let (st, body) = wang
        .call(
            Method::POST,
            "/api/tickets/1/reply",
            reply("The money arrives on Monday."),
        )
        .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["reach"], "stored", "{body}");
    assert_eq!(
        body["ticket"]["version"].as_i64().unwrap(),
        d["version"].as_i64().unwrap() + 1
    );
    let (_, t) = wang
        .get(&format!("/api/customers/{customer}/interactions/{conv}"))
        .await;
    let last = t["turns"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["speaker"], "agent");
    assert_eq!(last["text"], "The money arrives on Monday.");
    let (_, d) = wang.get("/api/tickets/1").await;
    let replies = d["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "ticket.reply")
        .count();
    assert_eq!(replies, 2, "{d}");
}

#[test]
fn a_reply_on_a_ticket_reaches_the_customers_widget() {
    let s = Server::start(None);
    s.add_agent_user("wang", PASSWORD, "Wang Fang", "1001");
    let (seen, shot) = common::browser(&s, "ticket_reply.mjs", &["wang", PASSWORD], "ticket-reply");
    assert_eq!(seen["replyStatus"], 200, "{seen}");
    assert_eq!(
        seen["widget"], "您好，退款已经批准，三个工作日内到账。",
        "{seen}"
    );
    assert!(
        seen["reach"].as_str().unwrap().contains("Delivered"),
        "{seen}"
    );
    assert_eq!(seen["statusAfter"], "pending", "{seen}");
    assert_eq!(seen["total"], "1", "{seen}");
    let ids = common::strings(&seen["identities"]).join(" ");
    assert!(
        ids.starts_with("web: ") && ids.contains("****"),
        "masked: {ids}"
    );
    let turns = common::strings(&seen["turns"]).join("\n");
    assert!(turns.contains("customer: 我要转人工"), "{turns}");
    assert!(
        std::fs::metadata(&shot).unwrap().len() > 10_000,
        "a real screenshot"
    );
}
