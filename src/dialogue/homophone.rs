//! Sound-alike words in Mandarin messages, put back to the knowledge base's own words.
//!
//! A recogniser that hears 退款 (tuì kuǎn, refund) may write 腿款 (tuǐ kuǎn, "leg
//! money"), and a pinyin keyboard does the same to typed chat; neither the word index
//! nor the sentence embedding knows what 腿款 means. Every Mandarin word of two to four
//! characters in the examples is indexed by its toneless pinyin, with the sound pairs
//! that recognisers and southern accents blur folded together (zh/z, ch/c, sh/s, n/l,
//! eng/en, ing/in). In a message, a run of characters that the knowledge base never
//! uses but that sounds like one of its words becomes that word (also when one of its
//! syllables differs in aspiration only: 长单 for 账单); text the knowledge base does
//! use is never touched, and nothing shorter than two syllables is.
//!
//! Pure data in, text out: built once per knowledge-base version by the matcher.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use pinyin::ToPinyin;

use super::text::{chinese_words, is_han};

/// Words this long (in characters) are indexed; single characters have too many
/// sound-alikes to correct.
const SHORTEST: usize = 2;
const LONGEST: usize = 4;

#[derive(Clone, Debug, Default)]
pub struct Homophones {
    /// Every run of 2–4 characters the knowledge base's Mandarin uses: never corrected.
    known: HashSet<String>,
    /// Folded toneless pinyin of a word → the word (the most used of its sound-alikes).
    by_sound: HashMap<String, String>,
}

impl Homophones {
    /// Indexes the Mandarin of these (normalised) texts.
    pub fn new<'a>(texts: impl IntoIterator<Item = &'a str>) -> Self {
        let mut known = HashSet::new();
        let mut uses: HashMap<String, HashMap<String, u32>> = HashMap::new();
        for text in texts {
            for run in han_runs(text) {
                let chars: Vec<char> = run.chars().collect();
                for n in SHORTEST..=LONGEST {
                    for w in chars.windows(n) {
                        known.insert(w.iter().collect::<String>());
                    }
                }
                for word in chinese_words(run) {
                    let n = word.chars().count();
                    if !(SHORTEST..=LONGEST).contains(&n) {
                        continue;
                    }
                    if let Some(key) = sound(&word) {
                        *uses.entry(key).or_default().entry(word).or_default() += 1;
                    }
                }
            }
        }
        let by_sound = uses
            .into_iter()
            .filter_map(|(key, words)| {
                // The most used word wins; ties go to the first in character order, so
                // the choice does not depend on hashing.
                let best = words
                    .into_iter()
                    .max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(&a.0)))?;
                Some((key, best.0))
            })
            .collect();
        Self { known, by_sound }
    }

    /// Whether anything was indexed.
    pub fn is_empty(&self) -> bool {
        self.by_sound.is_empty()
    }

    /// The message with its sound-alikes replaced by the knowledge base's words
    /// (borrowed unchanged when there are none). Expects normalised text.
    pub fn correct<'a>(&self, text: &'a str) -> Cow<'a, str> {
        if self.is_empty() || !text.chars().any(is_han) {
            return Cow::Borrowed(text);
        }
        let chars: Vec<char> = text.chars().collect();
        let mut out = String::with_capacity(text.len());
        let mut changed = false;
        let mut i = 0;
        'scan: while i < chars.len() {
            if is_han(chars[i]) {
                let run_end = chars[i..]
                    .iter()
                    .position(|c| !is_han(*c))
                    .map_or(chars.len(), |p| i + p);
                // Where the message's own words end: a replacement never splits one
                // (成公 in 改成|公司 sounds like 成功 but is two halves of two words).
                let run: String = chars[i..run_end].iter().collect();
                let mut ends = HashSet::new();
                let mut at = i;
                for w in chinese_words(&run) {
                    at += w.chars().count();
                    ends.insert(at);
                }
                ends.insert(i);
                while i < run_end {
                    i = self.correct_at(&chars, i, run_end, &ends, &mut out, &mut changed);
                }
                continue 'scan;
            }
            out.push(chars[i]);
            i += 1;
        }
        if changed {
            Cow::Owned(out)
        } else {
            Cow::Borrowed(text)
        }
    }

    /// Writes what starts at `i` (a word as it is, a sound-alike replaced, or one
    /// character) and returns where the next starts. `ends` holds the positions where
    /// the message's words end (and the run's start): only a window from one of them
    /// to another is replaced.
    fn correct_at(
        &self,
        chars: &[char],
        i: usize,
        run_end: usize,
        ends: &HashSet<usize>,
        out: &mut String,
        changed: &mut bool,
    ) -> usize {
        for n in (SHORTEST..=LONGEST.min(run_end - i)).rev() {
            let window: String = chars[i..i + n].iter().collect();
            if self.known.contains(&window) {
                out.push_str(&window);
                return i + n;
            }
            if !ends.contains(&i) || !ends.contains(&(i + n)) {
                continue;
            }
            if let Some(word) = self.sounds_like(&window) {
                out.push_str(word);
                *changed = true;
                return i + n;
            }
        }
        // Up to the end of this word, unchanged.
        let next = (i + 1..=run_end)
            .find(|e| ends.contains(e))
            .unwrap_or(run_end);
        out.extend(&chars[i..next]);
        next
    }

    /// The knowledge-base word this window sounds like: the same folded syllables, or
    /// (for words of two syllables or more) all but one the same and that one differing
    /// only in aspiration (b/p, d/t, g/k, j/q, z/c: 长单 cháng dān heard for 账单 zhàng
    /// dān), which recognisers blur on a phone line more than any other initials.
    fn sounds_like(&self, window: &str) -> Option<&String> {
        let mut syllables = syllables(window)?;
        if let Some(word) = self.by_sound.get(&syllables.join(" ")) {
            return Some(word);
        }
        for k in 0..syllables.len() {
            let Some(other) = aspiration_partner(&syllables[k]) else {
                continue;
            };
            let own = std::mem::replace(&mut syllables[k], other);
            if let Some(word) = self.by_sound.get(&syllables.join(" ")) {
                return Some(word);
            }
            syllables[k] = own;
        }
        None
    }
}

/// The syllable with its initial's aspirated (or plain) partner, for initials that
/// have one (after [`fold`]: zh/ch are already z/c).
fn aspiration_partner(syllable: &str) -> Option<String> {
    const PAIRS: [(char, char); 5] = [('b', 'p'), ('d', 't'), ('g', 'k'), ('j', 'q'), ('z', 'c')];
    let mut chars = syllable.chars();
    let initial = chars.next()?;
    let rest = chars.as_str();
    if rest.is_empty() {
        return None;
    }
    PAIRS.iter().find_map(|&(plain, aspirated)| {
        (initial == plain)
            .then_some(aspirated)
            .or_else(|| (initial == aspirated).then_some(plain))
            .map(|partner| format!("{partner}{rest}"))
    })
}

/// The runs of Han characters in a text.
fn han_runs(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !is_han(c)).filter(|r| !r.is_empty())
}

/// A word's folded toneless pinyin, syllables joined by spaces (`None` if a character
/// has no reading).
fn sound(word: &str) -> Option<String> {
    Some(syllables(word)?.join(" "))
}

/// A word's folded toneless syllables (`None` if a character has no reading).
fn syllables(word: &str) -> Option<Vec<String>> {
    word.chars()
        .map(|c| Some(fold(c.to_pinyin()?.plain())))
        .collect()
}

/// Folds the sound pairs that recognisers and regional accents confuse: retroflex and
/// flat initials (zh/z, ch/c, sh/s), n/l, and the nasal finals eng/en, ing/in.
fn fold(syllable: &str) -> String {
    let mut s = if let Some(rest) = syllable.strip_prefix("zh") {
        format!("z{rest}")
    } else if let Some(rest) = syllable.strip_prefix("ch") {
        format!("c{rest}")
    } else if let Some(rest) = syllable.strip_prefix("sh") {
        format!("s{rest}")
    } else if let Some(rest) = syllable.strip_prefix('n').filter(|r| !r.is_empty()) {
        format!("l{rest}")
    } else {
        syllable.to_string()
    };
    if s.ends_with("eng") || s.ends_with("ing") {
        s.pop();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kb() -> Homophones {
        Homophones::new(["我想退款", "怎么申请退款", "营业时间是几点", "我要投诉"])
    }

    #[test]
    fn a_sound_alike_becomes_the_knowledge_base_word() {
        assert_eq!(kb().correct("我要腿款"), "我要退款");
        // Toneless and across the blurred pairs: 营业 yíng yè heard as 银夜 yín yè.
        assert_eq!(kb().correct("你们银夜时间"), "你们营业时间");
    }

    #[test]
    fn text_the_knowledge_base_uses_is_left_alone() {
        let h = kb();
        assert!(matches!(h.correct("怎么申请退款"), Cow::Borrowed(_)));
        assert!(matches!(h.correct("where is my refund"), Cow::Borrowed(_)));
        // Nothing sounds like these words.
        assert!(matches!(h.correct("今天天气怎么样"), Cow::Borrowed(_)));
    }

    #[test]
    fn a_correction_never_splits_the_messages_own_words() {
        let h = Homophones::new(["成功了吗", "怎么退款"]);
        // 成公 (chéng gōng) sounds like 成功 but is the end of 改成 and half of 公司.
        assert_eq!(h.correct("地址要改成公司的"), "地址要改成公司的");
    }

    #[test]
    fn a_sound_alike_may_span_several_of_the_messages_words() {
        let h = Homophones::new(["信用卡丢了怎么办", "账单什么时候出"]);
        // 新用卡 (xīn yòng kǎ) is cut 新用|卡 in the message.
        assert_eq!(h.correct("里面有新用卡"), "里面有信用卡");
        // 长单 (cháng dān) differs from 账单 (zhàng dān) in aspiration only.
        assert_eq!(h.correct("长单每个月几号出"), "账单每个月几号出");
        // Two syllables changed is too far: 常谈 (cháng tán).
        assert_eq!(h.correct("老生常谈"), "老生常谈");
    }

    #[test]
    fn aspiration_pairs_are_partners_both_ways() {
        assert_eq!(aspiration_partner("dan").as_deref(), Some("tan"));
        assert_eq!(aspiration_partner("cang").as_deref(), Some("zang"));
        assert_eq!(aspiration_partner("qi").as_deref(), Some("ji"));
        assert_eq!(aspiration_partner("ma"), None);
        assert_eq!(aspiration_partner("a"), None);
    }

    #[test]
    fn single_characters_are_not_corrected() {
        // 推 tuī alone sounds like 退 but is one syllable.
        assert_eq!(kb().correct("推"), "推");
    }

    #[test]
    fn folding_joins_the_confusable_pairs() {
        assert_eq!(fold("zhang"), "zang");
        assert_eq!(fold("shi"), "si");
        assert_eq!(fold("nian"), "lian");
        assert_eq!(fold("n"), "n");
        assert_eq!(fold("qing"), "qin");
        assert_eq!(fold("feng"), "fen");
    }

    #[test]
    fn an_empty_knowledge_base_changes_nothing() {
        let h = Homophones::new([]);
        assert!(h.is_empty());
        assert_eq!(h.correct("腿款"), "腿款");
    }
}
