//! What queue routing costs as the contact center grows: with A agents serving one
//! queue (all busy, so nothing is offered) and W conversations already waiting,
//! the time to enqueue one more, to tick, and to route one when an agent frees up
//! (which scans the waiting items and the agents).
//!
//! Run: `cargo bench --bench queues`. Figures go to benches/RESULTS.md.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use kefu::agents::queue::{Answer, QueueConfig, Queues, Strategy};

/// A center with `agents` agents, all busy, and `waiting` conversations queued.
fn busy_center(agents: usize, waiting: usize, strategy: Strategy) -> (Queues, Instant) {
    let mut q = Queues::new([QueueConfig {
        strategy,
        max_wait: Duration::from_secs(3600),
        announce_every: Some(Duration::from_secs(60)),
        ..QueueConfig::named("general")
    }]);
    let t0 = Instant::now();
    let queues = vec!["general".to_string()];
    let skills = vec!["zh".to_string(), "en".to_string()];
    for a in 0..agents {
        let id = format!("agent{a:05}");
        q.add_agent(&id, &queues, &skills, t0);
        q.set_available(&id, true, t0);
    }
    // Make every agent busy: each takes one conversation.
    for a in 0..agents {
        let item = format!("taken{a:05}");
        if let Some(events) = q.enqueue(&item, "general", &[], t0) {
            for e in events {
                if let kefu::agents::queue::Event::Offer { item, agents, .. } = e {
                    for agent in agents {
                        q.answer(&item, &agent, Answer::Accept, t0);
                    }
                }
            }
        }
    }
    for w in 0..waiting {
        q.enqueue(&format!("wait{w:05}"), "general", &["zh".to_string()], t0);
    }
    (q, t0)
}

fn routing(c: &mut Criterion) {
    let mut g = c.benchmark_group("queue");
    g.sample_size(20);
    for (agents, waiting) in [(100, 100), (1000, 1000)] {
        let label = format!("{agents}a_{waiting}w");
        let (mut q, t0) = busy_center(agents, waiting, Strategy::LongestIdle);
        let mut n = 0u64;
        g.bench_function(BenchmarkId::new("enqueue_and_leave", &label), |b| {
            b.iter(|| {
                n += 1;
                let item = format!("new{n}");
                black_box(q.enqueue(&item, "general", &[], t0));
                q.leave(&item, t0);
            })
        });
        g.bench_function(BenchmarkId::new("tick", &label), |b| {
            b.iter(|| black_box(q.tick(t0 + Duration::from_secs(1))))
        });
        // An agent frees up: wrap-up ends and the oldest waiting item is offered and
        // accepted; a new one joins, so the queue stays as long.
        for strategy in [Strategy::LongestIdle, Strategy::Skills, Strategy::RingAll] {
            let (mut q, t0) = busy_center(agents, waiting, strategy);
            let mut t = t0;
            g.bench_function(
                BenchmarkId::new(format!("agent_frees_{strategy:?}"), &label),
                |b| {
                    b.iter(|| {
                        t += Duration::from_millis(1);
                        let e = q.finish("agent00000", "general", t);
                        black_box(&e);
                        let e = q.tick(t + Duration::from_secs(10));
                        for ev in &e {
                            if let kefu::agents::queue::Event::Offer { item, .. } = ev {
                                q.answer(item, "agent00000", Answer::Accept, t);
                                // Keep the queue as long as it was.
                                n += 1;
                                q.enqueue(&format!("more{n}"), "general", &["zh".to_string()], t);
                            }
                        }
                    })
                },
            );
        }
    }
    g.finish();
}

criterion_group!(benches, routing);
criterion_main!(benches);
