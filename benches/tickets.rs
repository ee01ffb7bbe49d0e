//! The service desk's ticket list and search at scale (issue 25's target: under
//! 200 ms p99 with 1 million tickets and 10 million turns, in SQLite and in
//! PostgreSQL).
//!
//! A generator fills a database the way kefu's own code would (sealed subjects
//! and turns under a real key, the keyed search index from `store::terms`): 200,000
//! customers, one conversation of 10 turns per ticket (5 the customer's), tickets
//! over two years in 6 queues, 5 channels, 40 agents, the statuses and priorities
//! of a desk that has been running a while. The customers write from a vocabulary
//! of 1,400 English and Chinese words with a Zipf spread, plus order numbers.
//! Then it asks the store (`Store::tickets`, as the API does) 10 kinds of
//! question, 100 of each with random values, and prints p50/p99 per kind and
//! over all.
//!
//! Run the full size: `cargo test --release --bench tickets -- --bench` (or the
//! debug build without `--release`). The filled databases are kept
//! (target/bench-tickets/ and the PostgreSQL database `kefu_bench_tickets`, with
//! their key) and reused by the next run of the same size. Under `cargo test` it
//! runs at a tiny size as a smoke run.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use kefu::store::crypto::Keyring;
use kefu::store::ticket_list::{Cursor, Due, Filter, Sort, Who};
use kefu::store::tickets::{Priority, Status};
use kefu::store::{Backend, Sealer, Store, terms};
use sqlx::Connection;

const QUEUES: [&str; 6] = [
    "support",
    "billing",
    "sales",
    "returns",
    "vip",
    "support-en",
];
const CHANNELS: [&str; 5] = ["phone", "web", "wechat", "sms", "app"];
const AGENTS: usize = 40;
const DAY: i64 = 86_400_000;
/// Earlier conversations of the one customer whose panel is opened.
const HEAVY: usize = 1000;

/// splitmix64: a small, fast generator (reproducible data, no dependency).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    /// A Zipf-like pick: index i with weight about 1/(i+1).
    fn zipf(&mut self, n: usize) -> usize {
        let u = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        (((n as f64 + 1.0).powf(u)) - 1.0)
            .floor()
            .min(n as f64 - 1.0) as usize
    }
}

/// The words customers use: English and Chinese, most common first.
fn vocabulary() -> Vec<String> {
    let en = "order refund delivery parcel account password card payment invoice bill charge \
        cancel return exchange broken damaged late missing address phone number email login \
        app website price discount coupon member points subscription plan upgrade downgrade \
        contract warranty repair store hours open close weekend holiday manager complaint \
        agent person human help please thanks urgent today tomorrow yesterday week month \
        money back wrong item size color shipping courier tracking status update change \
        error crash slow network signal bank transfer balance statement fee interest loan";
    let zh = "订单 退款 快递 包裹 账户 密码 银行卡 付款 发票 账单 扣费 取消 退货 换货 损坏 \
        延迟 丢失 地址 电话 号码 邮箱 登录 应用 网站 价格 折扣 优惠券 会员 积分 订阅 套餐 \
        升级 合同 保修 维修 门店 营业 时间 周末 节假日 经理 投诉 人工 客服 帮忙 谢谢 紧急 \
        今天 明天 昨天 星期 月份 钱 退回 错误 尺码 颜色 运费 物流 查询 状态 更新 修改 \
        故障 网络 信号 转账 余额 手续费 利息 贷款";
    let mut v: Vec<String> = Vec::new();
    let en: Vec<&str> = en.split_whitespace().collect();
    let zh: Vec<&str> = zh.split_whitespace().collect();
    for i in 0..en.len().max(zh.len()) {
        if let Some(w) = en.get(i) {
            v.push(w.to_string());
        }
        if let Some(w) = zh.get(i) {
            v.push(w.to_string());
        }
    }
    // A long tail of rarer words (product names, places).
    for i in 0..1200 {
        v.push(if i % 2 == 0 {
            format!("model{i}")
        } else {
            format!("城区{i}")
        });
    }
    v
}

/// The order number a ticket's customer mentions (in about a third of their messages).
fn order_of(num: usize) -> u64 {
    10_000_000 + (num as u64 * 7919) % 90_000_000
}

fn sentence(rng: &mut Rng, vocab: &[String], zh: bool, order: u64) -> String {
    let n = 6 + rng.below(8);
    let mut s = String::new();
    for i in 0..n {
        let w = &vocab[rng.zipf(vocab.len())];
        if !zh && i > 0 {
            s.push(' ');
        }
        s.push_str(w);
    }
    if rng.below(3) == 0 {
        s.push_str(&format!(" {order}"));
    }
    s
}

/// One generated conversation's turns (the customer's every other one, from
/// the vocabulary) into `out`: what the customer said.
fn conversation(
    rng: &mut Rng,
    vocab: &[String],
    sealer: &Sealer,
    (conv, at, channel): (&str, i64, &'static str),
    (zh, order): (bool, u64),
    turns: usize,
    out: &mut Vec<TurnRow>,
) -> Vec<String> {
    let mut said = Vec::new();
    for k in 0..turns {
        let customer_turn = k % 2 == 0;
        let text = if customer_turn {
            let s = sentence(rng, vocab, zh, order);
            said.push(s.clone());
            s
        } else {
            "好的，我们正在为您处理。 We are on it.".to_string()
        };
        out.push((
            conv.to_string(),
            k as i64,
            at + k as i64 * 20_000,
            if customer_turn { "customer" } else { "bot" },
            channel,
            sealer.seal("turns.text", &text),
            customer_turn.then(|| INTENTS[rng.zipf(INTENTS.len())]),
        ));
    }
    said
}

struct Sizes {
    tickets: usize,
    turns_per: usize,
    customers: usize,
}

/// Fills `store` (empty, migrated) with generated tickets; returns the seconds taken.
async fn fill(store: &Store, sizes: &Sizes) -> f64 {
    let t0 = Instant::now();
    let sealer = store.sealer();
    let vocab = vocabulary();
    let mut slot_of: HashMap<String, i64> = HashMap::new();
    let mut slot = |sealer: &Sealer, t: &str| -> i64 {
        if let Some(s) = slot_of.get(t) {
            return *s;
        }
        let s = terms::slot(&sealer.lookup(terms::COLUMN, t));
        if slot_of.len() < 200_000 {
            slot_of.insert(t.to_string(), s);
        }
        s
    };
    let pool = store.pool();
    // Users (agents).
    for a in 0..AGENTS {
        sqlx::query("INSERT INTO users (id, name, role, password_hash, disabled, created_ms) VALUES ($1, $2, 'agent', NULL, 0, 0)")
            .bind(format!("u{a:04}"))
            .bind(format!("agent{a}"))
            .execute(pool)
            .await
            .unwrap();
    }
    let mut rng = Rng(42);
    let now = chrono::Utc::now().timestamp_millis();
    let start = now - 730 * DAY;
    let mut postings: Vec<(i64, i64)> = Vec::new();
    let batch = 2000;
    let mut rows = Bulk {
        customers: (0..sizes.customers).collect(),
        ..Bulk::default()
    };
    for num in 1..=sizes.tickets {
        let customer = rng.below(sizes.customers);
        let created = start + (730 * DAY) * num as i64 / sizes.tickets as i64;
        let zh = rng.below(2) == 0;
        let order = order_of(num);
        let conv = format!("v{num:08}");
        let channel = CHANNELS[rng.zipf(CHANNELS.len())];
        let said = conversation(
            &mut rng,
            &vocab,
            sealer,
            (&conv, created, channel),
            (zh, order),
            sizes.turns_per,
            &mut rows.turns,
        );
        let subject = said.last().cloned().unwrap_or_default();
        let age = now - created;
        let status = if age > 30 * DAY {
            [
                Status::Closed,
                Status::Closed,
                Status::Closed,
                Status::Solved,
            ][rng.below(4)]
        } else {
            [
                Status::New,
                Status::Open,
                Status::Open,
                Status::Pending,
                Status::Solved,
                Status::Closed,
            ][rng.below(6)]
        };
        let priority = [
            Priority::Normal,
            Priority::Normal,
            Priority::Normal,
            Priority::Normal,
            Priority::High,
            Priority::Low,
            Priority::Urgent,
        ][rng.below(7)];
        let queue = QUEUES[rng.zipf(QUEUES.len())];
        let assignee = (status != Status::New).then(|| format!("u{:04}", rng.below(AGENTS)));
        let due = created + store.slas().due_in(Some(queue), priority);
        rows.tickets.push(TicketRow {
            id: format!("k{num:010}"),
            num: num as i64,
            customer: format!("c{customer:07}"),
            conv: conv.clone(),
            queue,
            channel,
            status: status.as_str(),
            priority: priority.as_str(),
            assignee,
            subject: sealer.seal("tickets.subject", &subject),
            body: sealer.seal("tickets.body", ""),
            created,
            due,
            paused: (status == Status::Pending).then_some(now - rng.below(5) as i64 * DAY),
        });
        rows.convs
            .push((conv, channel, format!("c{customer:07}"), created));
        let mut ts: Vec<i64> = said
            .iter()
            .flat_map(|s| terms::terms(s))
            .map(|t| slot(sealer, &t))
            .collect();
        ts.sort();
        ts.dedup();
        postings.extend(ts.into_iter().map(|t| (t, num as i64)));
        if num % batch == 0 || num == sizes.tickets {
            rows.write(store, sealer).await;
            if num % 100_000 == 0 {
                println!("  … {num} tickets in {:.0} s", t0.elapsed().as_secs_f64());
            }
        }
    }
    // One customer with 1,000 earlier conversations (10 turns each).
    for k in 0..HEAVY {
        let conv = format!("h{k:05}");
        let at = start + k as i64 * DAY / 2;
        let channel = CHANNELS[k % CHANNELS.len()];
        conversation(
            &mut rng,
            &vocab,
            sealer,
            (&conv, at, channel),
            (k % 2 == 0, order_of(k)),
            sizes.turns_per,
            &mut rows.turns,
        );
        rows.convs.push((conv, channel, "c0000000".into(), at));
    }
    rows.write(store, sealer).await;
    // The index: sorted, so that the B-trees fill in order.
    postings.sort_unstable();
    println!(
        "  {} index rows ({:.1} per ticket)",
        postings.len(),
        postings.len() as f64 / sizes.tickets as f64
    );
    write_postings(store, &postings).await;
    match store.backend() {
        Backend::Sqlite => {
            sqlx::query("ANALYZE").execute(pool).await.unwrap();
        }
        Backend::Postgres => {
            sqlx::query("VACUUM ANALYZE").execute(pool).await.unwrap();
        }
    }
    t0.elapsed().as_secs_f64()
}

struct TicketRow {
    id: String,
    num: i64,
    customer: String,
    conv: String,
    queue: &'static str,
    channel: &'static str,
    status: &'static str,
    priority: &'static str,
    assignee: Option<String>,
    subject: Vec<u8>,
    body: Vec<u8>,
    created: i64,
    due: i64,
    paused: Option<i64>,
}

type TurnRow = (
    String,
    i64,
    i64,
    &'static str,
    &'static str,
    Vec<u8>,
    Option<&'static str>,
);

const INTENTS: [&str; 6] = [
    "order_status",
    "refund",
    "delivery",
    "account",
    "opening_hours",
    "human",
];

#[derive(Default)]
struct Bulk {
    customers: Vec<usize>,
    convs: Vec<(String, &'static str, String, i64)>,
    turns: Vec<TurnRow>,
    tickets: Vec<TicketRow>,
}

/// `INSERT INTO table (cols) VALUES (…), (…)` for `rows` rows of `cols` values.
fn values(table: &str, cols: &str, rows: usize) -> String {
    let n = cols.split(',').count();
    let mut s = format!("INSERT INTO {table} ({cols}) VALUES ");
    for r in 0..rows {
        if r > 0 {
            s.push_str(", ");
        }
        s.push('(');
        for c in 0..n {
            if c > 0 {
                s.push_str(", ");
            }
            s.push_str(&format!("${}", r * n + c + 1));
        }
        s.push(')');
    }
    s
}

impl Bulk {
    async fn write(&mut self, store: &Store, sealer: &Sealer) {
        let mut tx = store.pool().begin().await.unwrap();
        for chunk in std::mem::take(&mut self.customers).chunks(1000) {
            let sql = values("customers", "id, name, key_id, created_ms", chunk.len());
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for c in chunk {
                q = q
                    .bind(format!("c{c:07}"))
                    .bind(sealer.seal("customers.name", ""))
                    .bind(sealer.key_id())
                    .bind(0i64);
            }
            q.execute(&mut *tx).await.unwrap();
            let sql = values(
                "identities",
                "kind, lookup, value, customer_id, key_id, created_ms",
                chunk.len(),
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for c in chunk {
                let phone = format!("+86139{c:08}");
                q = q
                    .bind("phone")
                    .bind(sealer.lookup("identities.value", &phone))
                    .bind(sealer.seal("identities.value", &phone))
                    .bind(format!("c{c:07}"))
                    .bind(sealer.key_id())
                    .bind(0i64);
            }
            q.execute(&mut *tx).await.unwrap();
        }
        for chunk in std::mem::take(&mut self.convs).chunks(1000) {
            let sql = values(
                "conversations",
                "id, channel, customer_id, started_ms, updated_ms",
                chunk.len(),
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (id, ch, cu, at) in chunk {
                q = q
                    .bind(id.clone())
                    .bind(*ch)
                    .bind(cu.clone())
                    .bind(*at)
                    .bind(*at);
            }
            q.execute(&mut *tx).await.unwrap();
        }
        for chunk in std::mem::take(&mut self.turns).chunks(1000) {
            let sql = values(
                "turns",
                "conversation_id, seq, at_ms, speaker, channel, text, key_id, intent",
                chunk.len(),
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (c, seq, at, sp, ch, text, intent) in chunk {
                q = q
                    .bind(c.clone())
                    .bind(*seq)
                    .bind(*at)
                    .bind(*sp)
                    .bind(*ch)
                    .bind(text.clone())
                    .bind(sealer.key_id())
                    .bind(*intent);
            }
            q.execute(&mut *tx).await.unwrap();
        }
        for chunk in std::mem::take(&mut self.tickets).chunks(500) {
            let sql = values(
                "tickets",
                "id, num, customer_id, conversation_id, queue, channel, status, priority, assignee, \
                 subject, body, key_id, created_ms, updated_ms, due_ms, paused_ms, version",
                chunk.len(),
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for t in chunk {
                q = q
                    .bind(t.id.clone())
                    .bind(t.num)
                    .bind(t.customer.clone())
                    .bind(t.conv.clone())
                    .bind(t.queue)
                    .bind(t.channel)
                    .bind(t.status)
                    .bind(t.priority)
                    .bind(t.assignee.clone())
                    .bind(t.subject.clone())
                    .bind(t.body.clone())
                    .bind(sealer.key_id())
                    .bind(t.created)
                    .bind(t.created)
                    .bind(t.due)
                    .bind(t.paused)
                    .bind(0i64);
            }
            q.execute(&mut *tx).await.unwrap();
        }
        tx.commit().await.unwrap();
    }
}

async fn write_postings(store: &Store, postings: &[(i64, i64)]) {
    let pool = store.pool();
    let t = Instant::now();
    sqlx::query("DROP INDEX ticket_terms_ticket")
        .execute(pool)
        .await
        .unwrap();
    for (i, chunk) in postings.chunks(200_000).enumerate() {
        let mut tx = pool.begin().await.unwrap();
        for c in chunk.chunks(5000) {
            let sql = values("ticket_terms", "term, ticket", c.len());
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (term, ticket) in c {
                q = q.bind(*term).bind(*ticket);
            }
            q.execute(&mut *tx).await.unwrap();
        }
        tx.commit().await.unwrap();
        if i % 50 == 49 {
            println!(
                "  … {} index rows in {:.0} s",
                (i + 1) * 200_000,
                t.elapsed().as_secs_f64()
            );
        }
    }
    sqlx::query("CREATE INDEX ticket_terms_ticket ON ticket_terms(ticket)")
        .execute(pool)
        .await
        .unwrap();
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1e3
}

/// The questions a desk asks, with random values.
fn question(kind: usize, rng: &mut Rng, sizes: &Sizes, vocab: &[String]) -> (&'static str, Filter) {
    let base = Filter {
        limit: 50,
        ..Filter::default()
    };
    let unsolved = vec![Status::New, Status::Open, Status::Pending];
    let user = || format!("u{:04}", 0);
    match kind {
        0 => (
            "unsolved, newest first",
            Filter {
                status: unsolved,
                ..base
            },
        ),
        1 => (
            "a queue's open tickets, due soonest",
            Filter {
                status: vec![Status::Open],
                queue: Some(QUEUES[rng.below(QUEUES.len())].into()),
                sort: Sort::Due,
                ..base
            },
        ),
        2 => (
            "an agent's tickets",
            Filter {
                assignee: Who::User(format!("u{:04}", rng.below(AGENTS))),
                ..base
            },
        ),
        3 => (
            "overdue, due soonest",
            Filter {
                due: Due::Overdue,
                sort: Sort::Due,
                ..base
            },
        ),
        4 => (
            "one customer's tickets",
            Filter {
                customers: Some(vec![format!("c{:07}", rng.below(sizes.customers))]),
                ..base
            },
        ),
        5 => (
            "search: a common word",
            Filter {
                text: vocab[rng.below(20)].clone(),
                ..base
            },
        ),
        6 => (
            "search: an order number",
            Filter {
                text: order_of(1 + rng.below(sizes.tickets)).to_string(),
                ..base
            },
        ),
        7 => (
            "search: two words, unsolved",
            Filter {
                text: format!("{} {}", vocab[rng.below(40)], vocab[40 + rng.below(200)]),
                status: unsolved,
                ..base
            },
        ),
        8 => (
            "search: a rare word on one channel",
            Filter {
                text: vocab[200 + rng.below(1000)].clone(),
                channel: Some(CHANNELS[rng.below(CHANNELS.len())].into()),
                ..base
            },
        ),
        _ => (
            "page 5 of all tickets",
            Filter {
                after: Some(Cursor {
                    due_ms: 0,
                    num: sizes.tickets as i64 - 200,
                }),
                assignee: if rng.below(2) == 0 {
                    Who::Anyone
                } else {
                    Who::User(user())
                },
                ..base
            },
        ),
    }
}

/// Opening the panel of the customer with 1,000 earlier conversations.
async fn customer_panel(store: &Store, each: usize) {
    let mut lat = Vec::new();
    let mut total = 0;
    for _ in 0..each {
        let t = Instant::now();
        let v = store
            .customer_view("c0000000", None)
            .await
            .unwrap()
            .unwrap();
        lat.push(t.elapsed());
        total = v.total;
    }
    lat.sort();
    println!(
        "  the customer with {total} interactions, their panel: p50 {:.2} ms, p99 {:.2} ms",
        pct(&lat, 0.5),
        pct(&lat, 0.99)
    );
}

async fn measure(store: &Store, sizes: &Sizes, each: usize) {
    let vocab = vocabulary();
    let mut rng = Rng(7);
    let mut all = Vec::new();
    for kind in 0..10 {
        let mut lat = Vec::new();
        let mut name = "";
        let mut found = 0;
        for _ in 0..each {
            let (n, f) = question(kind, &mut rng, sizes, &vocab);
            name = n;
            let t = Instant::now();
            let page = store.tickets(&f).await.unwrap();
            lat.push(t.elapsed());
            found += page.tickets.len();
        }
        lat.sort();
        println!(
            "  {name:<38} p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms  ({:.1} tickets a page)",
            pct(&lat, 0.5),
            pct(&lat, 0.99),
            pct(&lat, 1.0),
            found as f64 / each as f64
        );
        all.extend(lat);
    }
    all.sort();
    println!(
        "  all {} questions: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        all.len(),
        pct(&all, 0.5),
        pct(&all, 0.99),
        pct(&all, 1.0)
    );
}

/// A question as the tickets page asks it over HTTP (`GET /api/tickets?…`).
fn query_of(f: &Filter) -> String {
    use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
    let mut q = vec![format!("limit={}", f.limit)];
    let mut put =
        |k: &str, v: &str| q.push(format!("{k}={}", utf8_percent_encode(v, NON_ALPHANUMERIC)));
    if !f.status.is_empty() {
        let s: Vec<&str> = f.status.iter().map(|s| s.as_str()).collect();
        put("status", &s.join(","));
    }
    if let Some(v) = &f.queue {
        put("queue", v);
    }
    if let Some(v) = &f.channel {
        put("channel", v);
    }
    if let Who::User(id) = &f.assignee {
        // The API names users; the generator's u0007 is agent7.
        put(
            "assignee",
            &format!("agent{}", id[1..].parse::<usize>().unwrap()),
        );
    }
    if f.due == Due::Overdue {
        put("due", "overdue");
    }
    if let Some(c) = f.customers.as_ref().and_then(|c| c.first()) {
        put("customer", c);
    }
    if !f.text.is_empty() {
        put("q", &f.text);
    }
    if f.sort == Sort::Due {
        put("sort", "due");
    }
    if let Some(c) = f.after {
        put("after", &c.text());
    }
    q.join("&")
}

/// A free loopback port (UDP and TCP) for the server the HTTP pass starts.
fn free_port() -> u16 {
    loop {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// The same questions over HTTP, on the wire as the tickets page asks them: a
/// kefu server (this build's binary) on the same database and key, a
/// supervisor's session; each time is from the request to the last byte of
/// the JSON page.
async fn over_http(url: &str, keys: &std::path::Path, sizes: &Sizes, each: usize) {
    let dir = tempfile::tempdir().unwrap();
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let plans = dir.path().join("plans");
    std::fs::create_dir_all(&plans).unwrap();
    std::fs::write(
        plans.join("bench.toml"),
        "[dialplan]\nname = \"bench\"\ndefault = true\nlanguage = \"en\"\nstart = \"bye\"\n\n\
         [nodes.bye]\ntype = \"hangup\"\n",
    )
    .unwrap();
    let config = dir.path().join("kefu.toml");
    std::fs::write(
        &config,
        format!(
            "database = {url:?}\nkey_file = {keys:?}\nsemantic = false\nrtp_ports = \"41000-41010\"\n"
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let kefu = |args: &[&str]| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_kefu"));
        c.args(args)
            .arg("--config")
            .arg(&config)
            .arg("--data")
            .arg(&data);
        c
    };
    let mut add = kefu(&[
        "users",
        "add",
        "bench-sup",
        "--role",
        "supervisor",
        "--password-stdin",
    ])
    .stdin(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    use std::io::Write;
    add.stdin
        .take()
        .unwrap()
        .write_all(b"a long enough password\n")
        .unwrap();
    add.wait().unwrap();
    let http = format!("127.0.0.1:{}", free_port());
    let sip = format!("127.0.0.1:{}", free_port());
    let mut server = kefu(&["serve", "--http", &http, "--sip", &sip])
        .arg("--dialplans")
        .arg(&plans)
        .arg("--audio")
        .arg(repo.join("audio"))
        .arg("--models")
        .arg(repo.join("models"))
        .env("KEFU_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let base = format!("http://{http}");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !client
        .get(format!("{base}/readyz"))
        .send()
        .await
        .is_ok_and(|r| r.status() == 200)
    {
        assert!(Instant::now() < deadline, "the server did not start");
        assert!(
            server.try_wait().unwrap().is_none(),
            "the server exited at start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = client
        .post(format!("{base}/api/login"))
        .json(&serde_json::json!({"name": "bench-sup", "password": "a long enough password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let get = |path: String| {
        let (client, cookie) = (client.clone(), cookie.clone());
        async move {
            let t = Instant::now();
            let r = client
                .get(path)
                .header("cookie", cookie)
                .send()
                .await
                .unwrap();
            let status = r.status();
            let body = r.bytes().await.unwrap();
            assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
            (t.elapsed(), body.len())
        }
    };
    let vocab = vocabulary();
    for (pass, n) in [("warm-up", 5), ("measured", each)] {
        let mut rng = Rng(7);
        let mut all = Vec::new();
        for kind in 0..10 {
            for _ in 0..n {
                let (_, f) = question(kind, &mut rng, sizes, &vocab);
                all.push(get(format!("{base}/api/tickets?{}", query_of(&f))).await.0);
            }
        }
        all.sort();
        if pass == "measured" {
            println!(
                "  over HTTP, all {} questions: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
                all.len(),
                pct(&all, 0.5),
                pct(&all, 0.99),
                pct(&all, 1.0)
            );
        }
    }
    let mut lat = Vec::new();
    for _ in 0..each {
        lat.push(get(format!("{base}/api/customers/c0000000")).await.0);
    }
    lat.sort();
    println!(
        "  over HTTP, the customer's panel: p50 {:.2} ms, p99 {:.2} ms",
        pct(&lat, 0.5),
        pct(&lat, 0.99)
    );
    let _ = server.kill();
    let _ = server.wait();
}

/// The database's key, kept next to it so a filled database can be reused.
fn keyring(file: &std::path::Path) -> Keyring {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(_) => {
            let t = Keyring::new_line(1);
            std::fs::write(file, &t).unwrap();
            t
        }
    };
    Keyring::parse(&text, "bench").unwrap()
}

async fn run(label: &str, url: &str, key_file: &std::path::Path, sizes: &Sizes, each: usize) {
    println!("{label}:");
    let store = Store::open(url, Some(keyring(key_file))).await.unwrap();
    let have: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tickets")
        .fetch_one(store.pool())
        .await
        .unwrap();
    if have != sizes.tickets as i64 {
        assert_eq!(have, 0, "a partly filled database: remove it and run again");
        let s = fill(&store, sizes).await;
        println!(
            "  filled {} tickets and {} turns in {s:.0} s",
            sizes.tickets,
            sizes.tickets * sizes.turns_per
        );
    } else {
        println!("  reusing {have} tickets");
    }
    // Warm the caches as a running server's would be.
    measure(&store, sizes, 5).await;
    println!("  measured:");
    measure(&store, sizes, each).await;
    customer_panel(&store, each).await;
    store.close().await;
    over_http(url, key_file, sizes, each).await;
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let sizes = if full {
        Sizes {
            tickets: 1_000_000,
            turns_per: 10,
            customers: 200_000,
        }
    } else {
        println!("tickets (smoke run at a tiny size, not a measurement):");
        Sizes {
            tickets: 3_000,
            turns_per: 10,
            customers: 600,
        }
    };
    let each = if full { 100 } else { 3 };
    let only = std::env::var("KEFU_BENCH_ONLY").unwrap_or_default();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let tmp = tempfile::tempdir().unwrap();
        let dir = if full {
            let d = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-tickets");
            std::fs::create_dir_all(&d).unwrap();
            d
        } else {
            tmp.path().to_path_buf()
        };
        if only.is_empty() || only == "sqlite" {
            run(
                "SQLite (WAL, encrypted)",
                &kefu::store::sqlite_url(&dir.join("tickets.db")),
                &dir.join("sqlite.keys"),
                &sizes,
                each,
            )
            .await;
        }
        if only.is_empty() || only == "postgres" {
            let admin = std::env::var("KEFU_TEST_POSTGRES")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
            let name = if full {
                "kefu_bench_tickets".to_string()
            } else {
                format!("kefu_bench_t{}", std::process::id())
            };
            let mut c = sqlx::PgConnection::connect(&admin).await.unwrap();
            let exists: Option<i32> =
                sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
                    .bind(&name)
                    .fetch_optional(&mut c)
                    .await
                    .unwrap();
            if exists.is_none() {
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut c)
                    .await
                    .unwrap();
            }
            let url = format!("{}/{name}", &admin[..admin.rfind('/').unwrap()]);
            run(
                "PostgreSQL (local, encrypted)",
                &url,
                &dir.join("postgres.keys"),
                &sizes,
                each,
            )
            .await;
            if !full {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE {name} WITH (FORCE)"
                )))
                .execute(&mut c)
                .await
                .unwrap();
            }
        }
    });
}
