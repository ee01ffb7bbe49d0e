//! Search terms for the tickets' keyed index: what a supervisor's search and a
//! stored text are both cut into, so that they meet.
//!
//! Text is folded as the dialogue core folds it (full width to half width, lower
//! case, Traditional to Simplified Chinese). Runs of Han characters (and kana,
//! hangul) give overlapping pairs of characters, since Chinese has no spaces
//! between words: 退款申请 gives 退款, 款申, 申请, so a search for 退款 finds it.
//! Other words give their English stem ("refunded" and "refunds" meet at
//! "refund"), digits stay whole (an order number is a good search). Single
//! letters are dropped; a lone Han character is kept as itself.

use std::collections::BTreeSet;
use std::sync::LazyLock;

use rust_stemmers::{Algorithm, Stemmer};

/// The lookup-hash column name the terms are keyed under.
pub const COLUMN: &str = "tickets.term";

/// Terms kept from one text at most (a pasted essay indexes its first words).
pub const MAX_TERMS: usize = 400;
/// Longer words are cut (nobody searches for a 200-letter token).
const MAX_WORD: usize = 40;

static STEMMER: LazyLock<Stemmer> = LazyLock::new(|| Stemmer::create(Algorithm::English));

fn is_cjk(c: char) -> bool {
    crate::is_han(c)
        || ('\u{3040}'..='\u{30ff}').contains(&c)
        || ('\u{ac00}'..='\u{d7af}').contains(&c)
}

/// The distinct terms of `text`, in the order they first appear (at most
/// [`MAX_TERMS`]).
pub fn terms(text: &str) -> Vec<String> {
    let folded = crate::dialogue::text::normalize(text);
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    let mut keep = |t: String, out: &mut Vec<String>| {
        if out.len() < MAX_TERMS && seen.insert(t.clone()) {
            out.push(t);
        }
    };
    for word in folded.split(' ') {
        let chars: Vec<char> = word.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let cjk = is_cjk(chars[i]);
            let start = i;
            while i < chars.len() && is_cjk(chars[i]) == cjk {
                i += 1;
            }
            let run = &chars[start..i];
            if cjk {
                if run.len() == 1 {
                    keep(run[0].to_string(), &mut out);
                }
                for pair in run.windows(2) {
                    keep(pair.iter().collect(), &mut out);
                }
            } else {
                let w: String = run.iter().take(MAX_WORD).collect();
                let w = w.trim_matches('\'');
                if w.chars().count() < 2 && !w.chars().all(|c| c.is_ascii_digit()) {
                    continue;
                }
                if w.is_empty() {
                    continue;
                }
                let stem = if w.chars().all(|c| c.is_ascii_alphabetic() || c == '\'') {
                    STEMMER.stem(&w.replace('\'', "")).into_owned()
                } else {
                    w.to_string()
                };
                keep(stem, &mut out);
            }
        }
    }
    out
}

/// A term's place in the index: the first 8 bytes of its lookup hash (keyed with
/// encryption on), as the signed integer the databases store.
pub fn slot(hash: &[u8]) -> i64 {
    let mut b = [0u8; 8];
    for (d, s) in b.iter_mut().zip(hash) {
        *d = *s;
    }
    i64::from_be_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chinese_runs_become_pairs_and_words_their_stems() {
        assert_eq!(terms("退款申请"), ["退款", "款申", "申请"]);
        assert_eq!(terms("我要退款"), ["我要", "要退", "退款"]);
        // Traditional and full width fold to what a search types.
        assert_eq!(terms("退款"), terms("退款"));
        assert_eq!(terms("訂單８８２３１"), ["订单", "88231"]);
        assert_eq!(terms("Refunded REFUNDS, refund!"), ["refund"]);
        assert_eq!(terms("a b 7 I'm"), ["7", "im"]);
        assert_eq!(terms("订单88231还没到"), ["订单", "88231", "还没", "没到"]);
        assert_eq!(terms("好"), ["好"]);
        assert!(terms("  ,,, !!").is_empty());
    }

    #[test]
    fn a_huge_text_gives_bounded_terms() {
        let text: String = (0..5000).map(|i| format!("w{i} ")).collect();
        assert_eq!(terms(&text).len(), MAX_TERMS);
        let long = "x".repeat(10_000);
        assert_eq!(terms(&long)[0].len(), MAX_WORD);
    }

    #[test]
    fn slots_are_the_hash_prefix() {
        assert_eq!(slot(&[0, 0, 0, 0, 0, 0, 1, 2, 9, 9]), 258);
        assert_eq!(slot(&[0xff; 32]), -1);
    }
}
