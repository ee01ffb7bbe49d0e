//! Reading a customer's short replies (yes or no, which of two offered intents)
//! and joining reply sentences: pure text in and out, for the engine.

use super::kb::KnowledgeBase;
use super::matcher::Scored;
use super::text::normalize;

/// Two sentences as one reply: a space between them unless the first ends in Chinese
/// punctuation.
pub(super) fn join_sentences(first: &str, second: &str) -> String {
    let first = first.trim_end();
    if first.is_empty() {
        return second.to_string();
    }
    let gap = if first.ends_with(|c: char| "。！？；".contains(c)) {
        ""
    } else {
        " "
    };
    format!("{first}{gap}{second}")
}

/// Which of two offered intents the customer chose: by position ("the first", "2",
/// "后者") or by the matcher ranking one of them first.
pub(super) fn pick_option(
    text: &str,
    options: &[String; 2],
    ranked: &[Scored],
    kb: &KnowledgeBase,
) -> Option<String> {
    let t = normalize(text);
    let first = [
        "1",
        "one",
        "first",
        "the first",
        "first one",
        "the first one",
        "former",
        "第一",
        "第一个",
        "前者",
        "前面那个",
        "一",
    ];
    let second = [
        "2",
        "two",
        "second",
        "the second",
        "second one",
        "the second one",
        "latter",
        "第二",
        "第二个",
        "后者",
        "后面那个",
        "二",
    ];
    if first.contains(&t.as_str()) {
        return Some(options[0].clone());
    }
    if second.contains(&t.as_str()) {
        return Some(options[1].clone());
    }
    ranked
        .iter()
        .map(|s| &kb.intents[s.intent].id)
        .find(|id| options.contains(id))
        .filter(|_| {
            ranked
                .first()
                .is_some_and(|s| s.score >= kb.thresholds.clarify)
        })
        .cloned()
}

pub(super) fn yes_or_no(text: &str) -> Option<bool> {
    let t = normalize(text);
    let yes = [
        "yes",
        "yeah",
        "yep",
        "yes please",
        "right",
        "correct",
        "that's right",
        "sure",
        "是",
        "是的",
        "对",
        "对的",
        "嗯",
        "好",
        "好的",
        "没错",
        "是啊",
    ];
    let no = [
        "no",
        "nope",
        "no thanks",
        "not really",
        "something else",
        "不是",
        "不",
        "没有",
        "不用",
        "不对",
        "别的事",
    ];
    // Politeness and particles around the answer ("no thanks", "不用了", "好的谢谢").
    let mut t = t.as_str();
    loop {
        let before = t;
        for tail in [
            " please",
            " thanks",
            " thank you",
            "谢谢",
            "了",
            "啊",
            "吧",
            "呀",
        ] {
            t = t.strip_suffix(tail).unwrap_or(t).trim_end();
        }
        if t == before {
            break;
        }
    }
    if yes.contains(&t) {
        Some(true)
    } else if no.contains(&t) {
        Some(false)
    } else {
        None
    }
}
