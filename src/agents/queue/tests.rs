//! The queue machine driven with `Instant`s: strategies, offers, ring-outs,
//! wrap-up, waits, announcements.

use super::*;

fn s(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

fn queues(strategy: Strategy) -> (Queues, Instant) {
    let mut q = Queues::new([QueueConfig {
        strategy,
        announce_every: None,
        ..QueueConfig::named("general")
    }]);
    let t0 = Instant::now();
    q.add_agent("a1", &strings(&["general"]), &strings(&["zh"]), t0);
    q.add_agent(
        "a2",
        &strings(&["general"]),
        &strings(&["en", "zh", "billing"]),
        t0,
    );
    q.add_agent("a3", &strings(&["general"]), &strings(&["en"]), t0);
    (q, t0)
}

fn offered(events: &[Event]) -> Vec<Vec<String>> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Offer { agents, .. } => Some(agents.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn longest_idle_gets_the_offer_and_accepting_connects() {
    let (mut q, t0) = queues(Strategy::LongestIdle);
    q.set_available("a2", true, t0);
    q.set_available("a1", true, t0 + s(5));
    let e = q.enqueue("call-1", "general", &[], t0 + s(10)).unwrap();
    assert_eq!(offered(&e), [strings(&["a2"])]);
    assert_eq!(q.state("a2"), Some(AgentState::Offered));
    let e = q.answer("call-1", "a2", Answer::Accept, t0 + s(12));
    assert_eq!(
        e,
        [Event::Connected {
            item: "call-1".into(),
            agent: "a2".into()
        }]
    );
    assert_eq!(q.state("a2"), Some(AgentState::Busy));
    // Wrap-up, then available (and the longest idle is now a1).
    q.finish("a2", "general", t0 + s(60));
    assert_eq!(q.state("a2"), Some(AgentState::WrapUp));
    assert_eq!(q.next_deadline(), Some(t0 + s(70)));
    q.tick(t0 + s(70));
    assert_eq!(q.state("a2"), Some(AgentState::Available));
    let e = q.enqueue("call-2", "general", &[], t0 + s(71)).unwrap();
    assert_eq!(offered(&e), [strings(&["a1"])]);
}

#[test]
fn an_agent_on_a_callback_is_offered_nothing_until_it_ends() {
    let (mut q, t0) = queues(Strategy::LongestIdle);
    q.set_available("a1", true, t0);
    assert!(q.occupy("a1"));
    assert!(!q.occupy("a1"), "occupied once");
    assert!(!q.occupy("a2"), "away agents stay away");
    let e = q.enqueue("call-1", "general", &[], t0 + s(1)).unwrap();
    assert!(offered(&e).is_empty());
    q.finish("a1", "general", t0 + s(30));
    assert_eq!(q.state("a1"), Some(AgentState::WrapUp));
    let e = q.tick(t0 + s(40));
    assert_eq!(offered(&e), [strings(&["a1"])]);
}

#[test]
fn decline_and_no_answer_move_to_the_next_agent() {
    let (mut q, t0) = queues(Strategy::LongestIdle);
    for a in ["a1", "a2", "a3"] {
        q.set_available(a, true, t0);
    }
    let e = q.enqueue("call-1", "general", &[], t0).unwrap();
    assert_eq!(offered(&e), [strings(&["a1"])]);
    let e = q.answer("call-1", "a1", Answer::Decline, t0 + s(2));
    assert_eq!(offered(&e), [strings(&["a2"])]);
    assert_eq!(q.state("a1"), Some(AgentState::Available));
    // a2 lets it ring out: withdrawn, a2 set away, a3 offered.
    let e = q.tick(t0 + s(22));
    assert!(e.contains(&Event::Withdraw {
        item: "call-1".into(),
        agents: strings(&["a2"])
    }));
    assert_eq!(offered(&e), [strings(&["a3"])]);
    assert_eq!(q.state("a2"), Some(AgentState::Away));
    // a3 declines too: everyone was tried; a new round after a pause.
    let e = q.answer("call-1", "a3", Answer::Decline, t0 + s(25));
    assert!(offered(&e).is_empty());
    assert_eq!(q.next_deadline(), Some(t0 + s(45)));
    let e = q.tick(t0 + s(45));
    assert_eq!(offered(&e), [strings(&["a1"])]);
}

#[test]
fn ring_all_withdraws_from_the_others() {
    let (mut q, t0) = queues(Strategy::RingAll);
    q.set_available("a1", true, t0);
    q.set_available("a3", true, t0);
    let e = q.enqueue("chat-9", "general", &[], t0).unwrap();
    assert_eq!(offered(&e), [strings(&["a1", "a3"])]);
    let e = q.answer("chat-9", "a3", Answer::Accept, t0 + s(1));
    assert_eq!(
        e[0],
        Event::Withdraw {
            item: "chat-9".into(),
            agents: strings(&["a1"])
        }
    );
    assert_eq!(q.state("a1"), Some(AgentState::Available));
    assert_eq!(q.state("a3"), Some(AgentState::Busy));
}

#[test]
fn round_robin_takes_turns() {
    let (mut q, t0) = queues(Strategy::RoundRobin);
    for a in ["a1", "a2", "a3"] {
        q.set_available(a, true, t0);
    }
    let mut got = Vec::new();
    for i in 0..4 {
        let item = format!("c{i}");
        let e = q.enqueue(&item, "general", &[], t0 + s(i)).unwrap();
        let agent = offered(&e)[0][0].clone();
        q.answer(&item, &agent, Answer::Accept, t0 + s(i));
        q.finish(&agent, "general", t0 + s(i));
        q.tick(t0 + s(i) + s(10));
        got.push(agent);
    }
    assert_eq!(got, strings(&["a1", "a2", "a3", "a1"]));
}

#[test]
fn skills_pick_the_closest_match_and_wait_for_one() {
    let (mut q, t0) = queues(Strategy::Skills);
    for a in ["a1", "a2", "a3"] {
        q.set_available(a, true, t0);
    }
    // Needs zh: a1 (zh only) before a2 (zh plus two more).
    let e = q.enqueue("c-zh", "general", &strings(&["zh"]), t0).unwrap();
    assert_eq!(offered(&e), [strings(&["a1"])]);
    // Needs billing: only a2.
    let e = q
        .enqueue("c-bill", "general", &strings(&["billing"]), t0)
        .unwrap();
    assert_eq!(offered(&e), [strings(&["a2"])]);
    // Needs fr: nobody; it waits.
    let e = q.enqueue("c-fr", "general", &strings(&["fr"]), t0).unwrap();
    assert!(offered(&e).is_empty());
    assert_eq!(q.waiting(t0 + s(3)).len(), 3);
}

#[test]
fn maximum_wait_times_out_and_positions_are_announced() {
    let mut q = Queues::new([QueueConfig {
        max_wait: s(120),
        announce_every: Some(s(30)),
        ..QueueConfig::named("billing")
    }]);
    let t0 = Instant::now();
    let e = q.enqueue("c1", "billing", &[], t0).unwrap();
    assert_eq!(
        e,
        [Event::Position {
            item: "c1".into(),
            position: 1
        }]
    );
    let e = q.enqueue("c2", "billing", &[], t0 + s(1)).unwrap();
    assert_eq!(
        e,
        [Event::Position {
            item: "c2".into(),
            position: 2
        }]
    );
    assert!(
        q.enqueue("c2", "billing", &[], t0 + s(1)).is_none(),
        "no duplicates"
    );
    let e = q.tick(t0 + s(30));
    assert_eq!(
        e,
        [Event::Position {
            item: "c1".into(),
            position: 1
        }]
    );
    // c1 leaves: c2 is next.
    q.leave("c1", t0 + s(40));
    let e = q.tick(t0 + s(45));
    assert!(e.contains(&Event::Position {
        item: "c2".into(),
        position: 1
    }));
    let e = q.tick(t0 + s(121));
    assert!(e.contains(&Event::TimedOut { item: "c2".into() }));
    assert!(q.waiting(t0 + s(121)).is_empty());
    assert_eq!(q.next_deadline(), None);
}

#[test]
fn away_agents_get_nothing_and_an_agent_coming_back_takes_the_oldest() {
    let (mut q, t0) = queues(Strategy::LongestIdle);
    q.enqueue("old", "general", &[], t0).unwrap();
    q.enqueue("new", "general", &[], t0 + s(5)).unwrap();
    assert_eq!(q.state("a1"), Some(AgentState::Away));
    let e = q.set_available("a1", true, t0 + s(6));
    assert_eq!(offered(&e), [strings(&["a1"])], "one agent, one offer");
    assert!(matches!(&e[0], Event::Offer { item, .. } if item == "old"));
    // Another queue's agents are not offered this queue's items.
    q.add_agent("b1", &strings(&["billing"]), &[], t0);
    let e = q.set_available("b1", true, t0 + s(7));
    assert!(offered(&e).is_empty());
}

#[test]
fn in_a_cluster_a_chat_is_offered_only_to_agents_whose_desk_is_here() {
    let (mut q, t0) = queues(Strategy::LongestIdle);
    q.desks_elsewhere();
    q.set_available("a1", true, t0);
    // A call rings a1's phone, which any node reaches.
    let e = q.enqueue("call-1", "general", &[], t0 + s(1)).unwrap();
    assert_eq!(offered(&e), [strings(&["a1"])]);
    q.answer("call-1", "a1", Answer::Decline, t0 + s(2));
    q.leave("call-1", t0 + s(2));
    // A chat waits: a1's desk talks to another node.
    let e = q.enqueue_chat("chat-1", "general", &[], t0 + s(3)).unwrap();
    assert!(offered(&e).is_empty(), "{e:?}");
    // Once it talks to this one, a1 is offered the chat.
    let e = q.set_desk("a1", true, t0 + s(4));
    assert_eq!(offered(&e), [strings(&["a1"])]);
    // A waiting chat nobody is offered can be handed to another node; an
    // offered one cannot.
    assert!(!q.hand_off("chat-1"));
    q.enqueue_chat("chat-2", "general", &[], t0 + s(5)).unwrap();
    assert!(q.hand_off("chat-2"));
    assert!(!q.hand_off("chat-2"), "gone");
    assert_eq!(q.waiting(t0 + s(6)).len(), 1);
}

#[test]
fn on_one_node_every_desk_is_here() {
    let (mut q, t0) = queues(Strategy::LongestIdle);
    q.set_available("a3", true, t0);
    let e = q.enqueue_chat("chat-1", "general", &[], t0 + s(1)).unwrap();
    assert_eq!(offered(&e), [strings(&["a3"])]);
}
