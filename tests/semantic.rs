//! The semantic re-ranker with the real sentence-embedding model (multilingual-e5-small
//! from `deploy/models.sh`) on the demo knowledge base.

mod common;

use std::sync::Arc;

use common::repo;
use kefu::dialogue::kb::load_dir;
use kefu::dialogue::matcher::Outcome;
use kefu::dialogue::{Lang, Matcher};

/// The real model, with example embeddings cached between test runs.
fn encoder() -> Arc<kefu::dialogue::semantic::Encoder> {
    kefu::server::open_encoder(
        &repo().join("models"),
        Some(&repo().join("target/test-embeddings.bin")),
    )
    .unwrap()
}

fn matchers() -> (Matcher, Matcher) {
    let kb = Arc::new(load_dir(&repo().join("dialplans/kb")).unwrap());
    let encoder = encoder();
    (
        Matcher::with_encoder(kb.clone(), Some(encoder)).unwrap(),
        Matcher::new(kb),
    )
}

fn top(m: &Matcher, text: &str) -> (String, f32, Outcome) {
    let (outcome, ranked) = m.classify(text, Lang::detect(text), None);
    let best = ranked
        .first()
        .map(|s| (m.kb.intents[s.intent].id.clone(), s.score))
        .unwrap_or(("-".into(), 0.0));
    (best.0, best.1, outcome)
}

#[test]
fn paraphrases_without_shared_words_are_understood() {
    let (semantic, lexical) = matchers();
    // Shares no content word with any order_status example; by words alone it
    // looks like a refund question.
    let text = "has my stuff been sent out yet";
    let (id, _, outcome) = top(&semantic, text);
    assert_eq!(id, "order_status", "{outcome:?}");
    assert!(matches!(outcome, Outcome::Answer(_)), "{outcome:?}");
    assert_ne!(top(&lexical, text).0, "order_status");
    // Found by words too, but with little confidence; the model is sure.
    let text = "可以用信用卡付钱吗";
    let (id, score, _) = top(&semantic, text);
    assert_eq!(id, "payment_methods");
    assert!(score > top(&lexical, text).1 + 0.2, "{score}");
}

#[test]
fn unrelated_questions_stay_out_of_scope() {
    let (semantic, _) = matchers();
    for text in [
        "who won the football match last night",
        "帮我写一首关于春天的诗",
        "what is the capital of Australia",
    ] {
        let (_, score, outcome) = top(&semantic, text);
        assert!(
            matches!(outcome, Outcome::OutOfScope(_)),
            "{text}: {outcome:?}"
        );
        assert!(score < 0.3, "{text}: {score}");
    }
}

#[test]
fn confident_word_matches_skip_the_model_and_keep_their_score() {
    let (semantic, lexical) = matchers();
    // An example question verbatim: the words decide, the model is not run.
    let text = "what are your opening hours";
    assert_eq!(top(&semantic, text), top(&lexical, text));
    assert_eq!(top(&semantic, text).0, "opening_hours");
}

/// Unanswered questions are clustered by meaning with the same model: paraphrases
/// join their most asked question, neighbouring questions (selling vs renting,
/// kayaks vs bicycles) stay apart.
#[test]
fn unanswered_questions_cluster_by_meaning() {
    use kefu::store::analytics::{CLUSTER_THRESHOLD, Unanswered, cluster};
    let encoder = encoder();
    let asked = [
        ("do you sell kayaks", 4),
        ("do you have kayaks for sale", 2),
        ("can i buy a kayak from you", 1),
        ("do you rent kayaks", 3),
        ("is there a kayak rental", 1),
        ("do you sponsor marathon runners", 2),
        ("are you sponsoring any marathon runners", 1),
        ("do you sell bicycles", 1),
        ("你们卖皮划艇吗", 2),
        ("有没有皮划艇卖", 1),
    ];
    let groups: Vec<Unanswered> = asked
        .iter()
        .map(|(q, n)| Unanswered {
            question: q.to_string(),
            count: *n,
            examples: vec![q.to_string()],
            phrasings: 1,
        })
        .collect();
    let texts: Vec<&str> = asked.iter().map(|(q, _)| *q).collect();
    let vectors: Vec<Vec<f32>> = encoder
        .embed(&texts)
        .unwrap()
        .into_iter()
        .map(|v| v.to_vec())
        .collect();
    let clusters = cluster(groups, &vectors, CLUSTER_THRESHOLD);
    let got: Vec<(&str, usize, usize)> = clusters
        .iter()
        .map(|c| (c.question.as_str(), c.count, c.phrasings))
        .collect();
    assert_eq!(
        got,
        [
            ("do you sell kayaks", 7, 3),
            ("do you rent kayaks", 4, 2),
            ("do you sponsor marathon runners", 3, 2),
            ("你们卖皮划艇吗", 3, 2),
            ("do you sell bicycles", 1, 1),
        ]
    );
    assert_eq!(
        clusters[0].examples,
        [
            "do you sell kayaks",
            "do you have kayaks for sale",
            "can i buy a kayak from you"
        ]
    );
}

#[test]
fn a_message_refused_while_warming_is_not_embedded_for_its_reply() {
    let encoder = encoder();
    let text = "is the warehouse near the harbour";
    encoder.refuse(text);
    // The reply finds it refused (words alone), once; the next asks the model.
    assert!(matches!(
        encoder.message(text),
        Err(kefu::dialogue::semantic::EncodeError::Busy)
    ));
    assert_eq!(encoder.message(text).unwrap().len(), 384);
}
