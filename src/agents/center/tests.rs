//! The center's offers, answers and ledger, driven without sockets.

use super::*;

fn phone() -> Origin {
    Origin {
        channel: "phone".into(),
        reason: "menu".into(),
    }
}

fn web() -> Origin {
    Origin {
        channel: "web".into(),
        reason: "intent:human".into(),
    }
}

#[tokio::test]
async fn a_watched_call_hears_offers_withdrawals_and_the_connection() {
    let c = Center::new([QueueConfig::named("general")]);
    c.add_agent("a1", &["general".into()], &[]);
    c.add_agent("a2", &["general".into()], &[]);
    c.set_available("a1", true);
    let mut rx = c
        .enqueue_watched("call-1", "general", &[], "order 123", phone())
        .unwrap();
    assert!(
        c.enqueue_watched("call-1", "general", &[], "", phone())
            .is_none()
    );
    // Longest idle first: a1 (a2 is away).
    assert_eq!(
        rx.try_recv().unwrap(),
        ItemEvent::Offered { agent: "a1".into() }
    );
    // Being offered, it hears no position (it is about to be answered).
    c.set_available("a2", true);
    assert!(!c.answer("call-1", "a1", Answer::Decline));
    assert_eq!(
        rx.try_recv().unwrap(),
        ItemEvent::Offered { agent: "a2".into() }
    );
    assert!(c.answer("call-1", "a2", Answer::Accept));
    assert_eq!(
        rx.try_recv().unwrap(),
        ItemEvent::Connected { agent: "a2".into() }
    );
    assert!(c.holds("call-1", "a2"));
    // A caller who hangs up while waiting leaves the queue: the agent is freed.
    let _rx2 = c
        .enqueue_watched("call-2", "general", &[], "", phone())
        .unwrap();
    assert_eq!(c.offers("a1").len(), 1);
    c.leave("call-2");
    assert!(c.offers("a1").is_empty());
    assert_eq!(
        c.state("a1"),
        Some(super::super::queue::AgentState::Available)
    );
    assert!(c.take_timed_out().is_empty(), "calls are told, not listed");
}

#[test]
fn a_chat_is_offered_taken_and_finished() {
    let c = Center::new([QueueConfig::named("general")]);
    let mut ledger = c.ledger();
    c.add_agent("a1", &["general".into()], &[]);
    assert!(c.enqueue("conv-1", "general", &[], "where is my refund", web()));
    assert!(
        !c.enqueue("conv-1", "general", &[], "", web()),
        "already waiting"
    );
    assert!(c.offers("a1").is_empty(), "away agents get nothing");
    c.set_available("a1", true);
    let offers = c.offers("a1");
    assert_eq!(offers.len(), 1);
    assert_eq!(
        (
            offers[0].item.as_str(),
            offers[0].queue.as_str(),
            offers[0].summary.as_str()
        ),
        ("conv-1", "general", "where is my refund")
    );
    assert!(
        !c.answer("conv-1", "a2", Answer::Accept),
        "not offered to a2"
    );
    assert!(c.answer("conv-1", "a1", Answer::Accept));
    assert!(!c.answer("conv-1", "a1", Answer::Accept), "taken once");
    assert!(c.holds("conv-1", "a1"));
    assert!(c.offers("a1").is_empty());
    assert!(!c.finish("conv-1", "a2"));
    assert!(c.finish("conv-1", "a1"));
    assert_eq!(c.state("a1"), Some(super::super::queue::AgentState::WrapUp));
    let stay = ledger.try_recv().unwrap();
    assert_eq!(
        (
            stay.item.as_str(),
            stay.queue.as_str(),
            stay.channel.as_str(),
            stay.reason.as_str(),
            stay.agent.as_deref(),
            stay.outcome
        ),
        (
            "conv-1",
            "general",
            "web",
            "intent:human",
            Some("a1"),
            "answered"
        )
    );
    let answered = stay.answered.unwrap();
    assert!(stay.enqueued <= answered && answered <= stay.ended);
    assert!(ledger.try_recv().is_err(), "one stay per hand-over");
}

#[test]
fn callers_who_leave_the_queue_or_time_out_are_in_the_ledger() {
    let mut config = QueueConfig::named("general");
    config.max_wait = Duration::ZERO;
    let c = Center::new([config]);
    let mut ledger = c.ledger();
    let _rx = c
        .enqueue_watched("call-9", "general", &[], "", phone())
        .unwrap();
    c.leave("call-9");
    let stay = ledger.try_recv().unwrap();
    assert_eq!(
        (stay.outcome, stay.agent, stay.answered),
        ("abandoned", None, None)
    );
    assert!(c.enqueue("conv-2", "general", &[], "", web()));
    let e = {
        let mut inner = lock(&c.inner);
        inner.queues.tick(Instant::now() + Duration::from_secs(1))
    };
    lock(&c.inner).apply(e);
    assert_eq!(c.take_timed_out(), vec!["conv-2".to_string()]);
    assert_eq!(ledger.try_recv().unwrap().outcome, "timed_out");
}
