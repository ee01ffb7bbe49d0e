//! The semantic re-ranker with the real sentence-embedding model (multilingual-e5-small
//! from `deploy/models.sh`) on the demo knowledge base.

mod common;

use std::sync::Arc;

use common::repo;
use kefu::dialogue::kb::load_dir;
use kefu::dialogue::matcher::Outcome;
use kefu::dialogue::{Lang, Matcher};

fn matchers() -> (Matcher, Matcher) {
    let kb = Arc::new(load_dir(&repo().join("dialplans/kb")).unwrap());
    let encoder = kefu::server::open_encoder(
        &repo().join("models"),
        Some(&repo().join("target/test-embeddings.bin")),
    )
    .unwrap();
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
