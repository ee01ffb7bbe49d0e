//! The service desk's tickets on real databases (SQLite and PostgreSQL): numbers,
//! filters, the keyed search over sealed subjects and customers' words, due dates
//! from the queue's SLA with the clock paused while waiting on the customer,
//! versions (two supervisors at once: one wins, the other is told), notes and the
//! audit of every change.

mod common;

use std::time::Duration;

use chrono::Utc;
use common::pg::{Db, postgres_db, sqlite_db};
use kefu::dialogue::conversations::{Channel, Identity, IdentityKind};
use kefu::dialogue::engine::{Speaker, Turn};
use kefu::store::callbacks::Tried;
use kefu::store::crypto::Keyring;
use kefu::store::ticket_list::{Cursor, Due, Filter, Sort, Who};
use kefu::store::tickets::{Change, Changed, Priority, Status};
use kefu::store::{Store, TurnsWrite};

fn turn(speaker: Speaker, text: &str) -> Turn {
    Turn {
        at: Utc::now(),
        speaker,
        text: text.into(),
        intent: None,
        confidence: None,
    }
}

/// A customer known by `phone` wrote `said` on `channel` in conversation `conv`.
async fn wrote(
    store: &Store,
    conv: &str,
    channel: Channel,
    phone: &str,
    said: &str,
    seq: usize,
) -> String {
    let customer = store
        .customer_for(&Identity::new(IdentityKind::Phone, phone))
        .await
        .unwrap();
    let now = Utc::now();
    store
        .record_turns(TurnsWrite {
            conversation: conv.into(),
            channel,
            customer: customer.clone(),
            call_id: None,
            started: now,
            updated: now,
            first_seq: seq,
            turns: vec![turn(Speaker::Customer, said), turn(Speaker::Bot, "…")],
            latency_us: None,
            state: None,
        })
        .await
        .unwrap();
    customer
}

fn all() -> Filter {
    Filter {
        limit: 50,
        ..Filter::default()
    }
}

async fn nums(store: &Store, f: Filter) -> Vec<i64> {
    store
        .tickets(&f)
        .await
        .unwrap()
        .tickets
        .iter()
        .map(|t| t.num)
        .collect()
}

async fn search(store: &Store, text: &str) -> Vec<i64> {
    nums(
        store,
        Filter {
            text: text.into(),
            ..all()
        },
    )
    .await
}

async fn desk(db: Db) {
    let keys = Keyring::parse(&Keyring::new_line(1), "test").unwrap();
    let store = Store::open(&db.url, Some(keys)).await.unwrap();
    store
        .slas()
        .set([("billing".to_string(), Duration::from_secs(7200))]);
    let li = store
        .add_user(
            "li.na",
            "agent",
            "x",
            kefu::store::access::Audit {
                actor: "test".into(),
                action: "user.add",
                target: "li.na".into(),
                detail: String::new(),
            },
        )
        .await
        .unwrap()
        .unwrap();

    // Three hand-overs on three channels, two customers.
    let alice = wrote(
        &store,
        "c1",
        Channel::Web,
        "+8613800000001",
        "My order 88231 never arrived",
        0,
    )
    .await;
    let t0 = Utc::now().timestamp_millis();
    store
        .open_ticket(
            &alice,
            Some("c1"),
            None,
            "billing",
            "I want a refund for the lost parcel",
        )
        .await
        .unwrap();
    let bob = wrote(
        &store,
        "c2",
        Channel::Sms,
        "+8613800000002",
        "我想退款，订单还没到",
        0,
    )
    .await;
    store
        .open_ticket(&bob, Some("c2"), None, "support", "人工")
        .await
        .unwrap();
    store
        .open_ticket(
            &alice,
            None,
            Some("call-1"),
            "support",
            "Caller asked about opening hours",
        )
        .await
        .unwrap();

    // Numbers, channels, due dates from each queue's SLA.
    let page = store.tickets(&all()).await.unwrap();
    let t: Vec<_> = page
        .tickets
        .iter()
        .map(|t| (t.num, t.channel.clone().unwrap_or_default(), t.status))
        .collect();
    assert_eq!(
        t,
        [
            (3, "phone".to_string(), Status::New),
            (2, "sms".to_string(), Status::New),
            (1, "web".to_string(), Status::New)
        ]
    );
    let first = &page.tickets[2];
    let due_in = first.due.timestamp_millis() - t0;
    assert!(
        (7_100_000..7_300_000).contains(&due_in),
        "billing is due in 2 h: {due_in}"
    );
    let day = page.tickets[1].due.timestamp_millis() - t0;
    assert!(
        (86_300_000..86_500_000).contains(&day),
        "a queue with no SLA: a day: {day}"
    );
    assert!(!first.overdue && !first.waiting);

    // Filters.
    let f = |g: fn(&mut Filter)| {
        let mut x = all();
        g(&mut x);
        x
    };
    assert_eq!(
        nums(&store, f(|x| x.queue = Some("support".into()))).await,
        [3, 2]
    );
    assert_eq!(
        nums(&store, f(|x| x.channel = Some("sms".into()))).await,
        [2]
    );
    assert_eq!(
        nums(
            &store,
            Filter {
                customers: Some(vec![alice.clone()]),
                ..all()
            }
        )
        .await,
        [3, 1]
    );
    assert_eq!(
        nums(
            &store,
            Filter {
                customers: Some(vec![]),
                ..all()
            }
        )
        .await,
        Vec::<i64>::new()
    );
    assert_eq!(
        nums(&store, f(|x| x.status = vec![Status::Open])).await,
        Vec::<i64>::new()
    );
    assert_eq!(
        nums(&store, f(|x| x.assignee = Who::Nobody)).await,
        [3, 2, 1]
    );
    assert_eq!(
        nums(&store, f(|x| x.due = Due::Overdue)).await,
        Vec::<i64>::new()
    );
    assert_eq!(nums(&store, f(|x| x.sort = Sort::Due)).await, [1, 2, 3]);

    // Search: subjects and the customer's words, both sealed; every word must match.
    assert_eq!(search(&store, "88231").await, [1]);
    assert_eq!(
        search(&store, "refunds").await,
        [1],
        "English words meet at their stem"
    );
    assert_eq!(search(&store, "ARRIVED order").await, [1]);
    assert_eq!(search(&store, "order hours").await, Vec::<i64>::new());
    assert_eq!(search(&store, "退款").await, [2]);
    assert_eq!(search(&store, "订单 退款").await, [2]);
    assert_eq!(search(&store, "hours").await, [3]);
    assert_eq!(search(&store, "%' OR 1=1 --").await, Vec::<i64>::new());
    assert_eq!(
        search(&store, "_%\\").await,
        [3, 2, 1],
        "no words: no search"
    );

    // Taking a ticket opens it; every change is audited with who and what.
    store
        .assign_tickets("c1", &li.id, "user:li.na")
        .await
        .unwrap();
    let d = store.ticket(1).await.unwrap().unwrap();
    assert_eq!(d.ticket.status, Status::Open);
    assert_eq!(d.ticket.assignee.as_deref(), Some("li.na"));
    assert_eq!(d.ticket.version, 1);
    let actions: Vec<_> = d
        .history
        .iter()
        .map(|e| (e.action.as_str(), e.detail.as_str()))
        .collect();
    assert_eq!(
        actions,
        [
            ("ticket.open", "queue billing, channel web"),
            ("ticket.status", "new → open"),
            ("ticket.assign", "nobody → li.na")
        ]
    );
    assert_eq!(
        nums(&store, f(|x| x.status = vec![Status::Open])).await,
        [1]
    );
    assert_eq!(
        nums(
            &store,
            Filter {
                assignee: Who::User(li.id.clone()),
                ..all()
            }
        )
        .await,
        [1]
    );

    // A change on an old version is refused, and the ticket is as the first left it.
    let urgent = Change {
        priority: Some(Priority::Urgent),
        ..Change::default()
    };
    assert_eq!(
        store
            .change_ticket(1, 0, &urgent, "user:boss")
            .await
            .unwrap(),
        Changed::Stale { version: 1 }
    );
    let before = store.ticket(1).await.unwrap().unwrap().ticket.due;
    assert_eq!(
        store
            .change_ticket(1, 1, &urgent, "user:boss")
            .await
            .unwrap(),
        Changed::Done { version: 2 }
    );
    let d = store.ticket(1).await.unwrap().unwrap();
    assert_eq!(d.ticket.priority, Priority::Urgent);
    let moved = before.timestamp_millis() - d.ticket.due.timestamp_millis();
    assert_eq!(
        moved,
        7_200_000 - 1_200_000,
        "urgent: a sixth of the 2 h SLA"
    );
    assert_eq!(
        store.change_ticket(99, 0, &urgent, "x").await.unwrap(),
        Changed::Missing
    );

    // Waiting on the customer pauses the clock; their reply reopens the ticket and
    // the due date moves on by the wait.
    let pending = Change {
        status: Some(Status::Pending),
        ..Change::default()
    };
    assert_eq!(
        store
            .change_ticket(1, 2, &pending, "user:li.na")
            .await
            .unwrap(),
        Changed::Done { version: 3 }
    );
    let due_paused = store.ticket(1).await.unwrap().unwrap().ticket;
    assert!(due_paused.waiting);
    tokio::time::sleep(Duration::from_millis(300)).await;
    wrote(
        &store,
        "c1",
        Channel::Web,
        "+8613800000001",
        "here is the tracking number ZX90",
        2,
    )
    .await;
    let d = store.ticket(1).await.unwrap().unwrap();
    assert_eq!(
        d.ticket.status,
        Status::Open,
        "the customer's reply reopens it"
    );
    assert!(!d.ticket.waiting);
    let shift = d.ticket.due.timestamp_millis() - due_paused.due.timestamp_millis();
    assert!(
        (250..5_000).contains(&shift),
        "due moved by the wait: {shift} ms"
    );
    assert_eq!(
        d.history
            .last()
            .map(|e| (e.actor.as_str(), e.detail.as_str())),
        Some(("customer", "pending → open"))
    );
    assert_eq!(
        search(&store, "zx90").await,
        [1],
        "later words are searchable too"
    );

    // Internal notes, sealed, with the audit naming the note and not its words.
    assert_eq!(
        store
            .add_note(1, "user:li.na", "VIP: refund approved by finance")
            .await
            .unwrap(),
        Some(1)
    );
    assert_eq!(store.add_note(7, "user:li.na", "x").await.unwrap(), None);
    let d = store.ticket(1).await.unwrap().unwrap();
    assert_eq!(d.notes[0].text, "VIP: refund approved by finance");
    assert_eq!(d.notes[0].author, "user:li.na");
    assert!(
        d.history
            .iter()
            .any(|e| e.action == "ticket.note" && e.detail == "note 1")
    );
    assert!(
        !store
            .audit_log()
            .await
            .unwrap()
            .iter()
            .any(|e| e.detail.contains("VIP"))
    );

    // Two supervisors move one ticket at once: one wins, the other is told, and
    // the audit holds exactly the one change.
    let v = store.ticket(2).await.unwrap().unwrap().ticket.version;
    let a = Change {
        status: Some(Status::Solved),
        ..Change::default()
    };
    let b = Change {
        priority: Some(Priority::High),
        ..Change::default()
    };
    let (x, y) = tokio::join!(
        store.change_ticket(2, v, &a, "user:sup1"),
        store.change_ticket(2, v, &b, "user:sup2")
    );
    let (x, y) = (x.unwrap(), y.unwrap());
    assert!(
        matches!(
            (&x, &y),
            (Changed::Done { .. }, Changed::Stale { .. })
                | (Changed::Stale { .. }, Changed::Done { .. })
        ),
        "{x:?} {y:?}"
    );
    let d = store.ticket(2).await.unwrap().unwrap();
    let changes = d
        .history
        .iter()
        .filter(|e| e.action != "ticket.open")
        .count();
    assert_eq!(changes, 1, "{:?}", d.history);
    // Closed is final.
    let v = d.ticket.version;
    let close = Change {
        status: Some(Status::Closed),
        ..Change::default()
    };
    assert_eq!(
        store
            .change_ticket(2, v, &close, "user:sup1")
            .await
            .unwrap(),
        Changed::Done { version: v + 1 }
    );
    assert_eq!(
        store
            .change_ticket(2, v + 1, &urgent, "user:sup1")
            .await
            .unwrap(),
        Changed::Closed
    );

    // Pages: no ticket twice, none missed, in both orders.
    for i in 0..7 {
        store
            .open_ticket(&bob, Some("c2"), None, "support", &format!("more {i}"))
            .await
            .unwrap();
    }
    for sort in [Sort::Newest, Sort::Due] {
        let mut seen = Vec::new();
        let mut after: Option<Cursor> = None;
        loop {
            let page = store
                .tickets(&Filter {
                    limit: 3,
                    sort,
                    after,
                    ..all()
                })
                .await
                .unwrap();
            assert!(page.tickets.len() <= 3);
            seen.extend(page.tickets.iter().map(|t| t.num));
            match page.next {
                Some(c) => after = Some(Cursor::parse(&c).unwrap()),
                None => break,
            }
        }
        let mut sorted = seen.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted, (1..=10).collect::<Vec<i64>>(), "{sort:?}: {seen:?}");
    }

    // Erasing a customer takes their tickets' notes and index rows too.
    store.erase_customer(&alice, "user:admin").await.unwrap();
    assert_eq!(search(&store, "88231").await, Vec::<i64>::new());
    assert!(store.ticket(1).await.unwrap().is_none());
    store.close().await;
}

#[tokio::test]
async fn sqlite_tickets_as_a_desk_team_uses_them() {
    desk(sqlite_db().await).await;
}

#[tokio::test]
async fn postgres_tickets_as_a_desk_team_uses_them() {
    desk(postgres_db().await).await;
}

/// Callbacks on a ticket: asked for by a call, on the desk's list until a try
/// reaches the customer, each try in the history, gone with the customer.
async fn callbacks(db: Db) {
    let keys = Keyring::parse(&Keyring::new_line(1), "test").unwrap();
    let store = Store::open(&db.url, Some(keys)).await.unwrap();
    let alice = wrote(
        &store,
        "c1",
        Channel::Phone,
        "+8613800000001",
        "Where is my parcel",
        0,
    )
    .await;
    store
        .open_ticket(
            &alice,
            None,
            Some("call-9"),
            "support",
            "Callback requested",
        )
        .await
        .unwrap();
    let waiting = || Filter {
        callbacks: true,
        ..all()
    };
    // Before anything is asked: no callback, and the customer's own number.
    assert!(store.callback(1).await.unwrap().is_none());
    assert_eq!(nums(&store, waiting()).await, Vec::<i64>::new());
    assert_eq!(
        store.callee(1).await.unwrap().unwrap().number,
        "+8613800000001"
    );
    assert!(store.callee(77).await.unwrap().is_none());

    assert_eq!(
        store
            .request_callback("call-9", "+8613900000009")
            .await
            .unwrap(),
        1
    );
    let callee = store.callee(1).await.unwrap().unwrap();
    assert_eq!(callee.number, "+8613900000009");
    assert_eq!(callee.customer, alice);
    assert_eq!(callee.subject, "Callback requested");
    assert_eq!(nums(&store, waiting()).await, [1]);
    let cb = store.callback(1).await.unwrap().unwrap();
    assert_eq!((cb.number.as_str(), cb.tries), ("+86139****0009", 0));

    let busy = Tried {
        outcome: "busy".into(),
        ring_ms: 3_000,
        talk_ms: None,
        ended: None,
    };
    store
        .callback_tried(1, &callee.number, "user:li.na", &busy)
        .await
        .unwrap();
    assert_eq!(nums(&store, waiting()).await, [1], "still to call");
    let answered = Tried {
        outcome: "answered".into(),
        ring_ms: 5_000,
        talk_ms: Some(61_000),
        ended: Some("the customer hung up".into()),
    };
    store
        .callback_tried(1, &callee.number, "user:li.na", &answered)
        .await
        .unwrap();
    assert_eq!(nums(&store, waiting()).await, Vec::<i64>::new());
    let d = store.ticket(1).await.unwrap().unwrap();
    let cb = d.callback.unwrap();
    assert_eq!((cb.tries, cb.outcome.as_deref()), (2, Some("answered")));
    assert!(cb.done.is_some() && cb.tried.is_some());
    let tries: Vec<(String, String)> = d
        .history
        .iter()
        .filter(|e| e.action.starts_with("ticket.callback"))
        .map(|e| (e.actor.clone(), e.detail.clone()))
        .collect();
    assert_eq!(
        tries,
        [
            ("kefu".to_string(), "+86139****0009".to_string()),
            (
                "user:li.na".to_string(),
                "busy +86139****0009 after 0m 03s".to_string()
            ),
            (
                "user:li.na".to_string(),
                "answered +86139****0009: talked 1m 01s, the customer hung up".to_string()
            ),
        ]
    );
    // Asked again: back on the list, the tries kept. A call with no open
    // ticket asks for nothing.
    store
        .request_callback("call-9", "+8613900000009")
        .await
        .unwrap();
    assert_eq!(nums(&store, waiting()).await, [1]);
    assert_eq!(store.callback(1).await.unwrap().unwrap().tries, 2);
    assert_eq!(store.request_callback("call-x", "10086").await.unwrap(), 0);

    // The number is sealed: not in the database in the clear.
    if let Some(file) = db.url.strip_prefix("sqlite://") {
        let path = file.split('?').next().unwrap();
        for f in [path.to_string(), format!("{path}-wal")] {
            let bytes = std::fs::read(&f).unwrap_or_default();
            assert!(
                !bytes.windows(13).any(|w| w == b"8613900000009"),
                "the callback number is readable in {f}"
            );
        }
    }
    // Erasing the customer takes the callback too.
    store.erase_customer(&alice, "user:admin").await.unwrap();
    assert!(store.callback(1).await.unwrap().is_none());
    store.close().await;
}

#[tokio::test]
async fn sqlite_callbacks_wait_on_the_desk_until_one_reaches_the_customer() {
    callbacks(sqlite_db().await).await;
}

#[tokio::test]
async fn postgres_callbacks_wait_on_the_desk_until_one_reaches_the_customer() {
    callbacks(postgres_db().await).await;
}
