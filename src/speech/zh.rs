//! Mandarin text → the phoneme string Kokoro-82M was trained on: numbers read as
//! a caller expects, words cut by jieba, each word's syllables from a phrase table
//! (so polyphones are read by word: 银行 yín háng, 行走 xíng zǒu, 重新 chóng xīn),
//! each syllable written in IPA with its tone as an arrow.
//!
//! Written here because no crate turns pinyin into Kokoro's symbol set; the
//! syllable table follows the standard IPA description of Standard Chinese
//! (initials, finals, tones) in the symbols the model's vocabulary holds: one
//! letter per affricate (ʦ ʨ ꭧ), the apical vowel of zhi/ci as ɨ, tones as
//! → ↗ ↓ ↘ after the syllable's vowel, nothing for the neutral tone, words
//! separated by spaces.

use super::models::ModelError;
use std::collections::HashMap;
use std::path::Path;

/// Readings a phone menu needs where the phrase table has a word's other sense:
/// 重听 is "hard of hearing" (zhòng tīng) there, "listen again" (chóng tīng) in a
/// menu.
const SERVICE_READINGS: &[(&str, &str)] = &[
    ("重听", "chóng tīng"),
    ("重拨", "chóng bō"),
    ("重输", "chóng shū"),
    ("重选", "chóng xuǎn"),
    ("重播", "chóng bō"),
];

/// A syllable without its tone mark ("zhuang", "lü") and its tone (1–4, 5 neutral).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Syllable {
    pub plain: String,
    pub tone: u8,
}

/// Words whose reading differs from their characters' first readings:
/// pypinyin's phrase table (`models/zh/pinyin_phrases.json`, 47 000 words).
#[derive(Debug, Default)]
pub struct Phrases {
    words: HashMap<String, Vec<Syllable>>,
    longest: usize,
}

impl Phrases {
    /// Reads the table: a JSON object of word → one list of readings per character,
    /// the first of which is used (`{"银行": [["yín"], ["háng"]]}`).
    pub fn load(path: &Path) -> Result<Self, ModelError> {
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::unreadable(path, &e))?;
        let raw: HashMap<String, Vec<Vec<String>>> =
            serde_json::from_str(&text).map_err(|e| ModelError::Corrupt {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
        let mut phrases = Self::default();
        for (word, readings) in raw {
            let syllables: Option<Vec<Syllable>> = readings
                .iter()
                .map(|r| r.first().and_then(|s| split_tone(s)))
                .collect();
            if let Some(s) = syllables.filter(|s| s.len() == word.chars().count()) {
                phrases.longest = phrases.longest.max(s.len());
                phrases.words.insert(word, s);
            }
        }
        for (word, readings) in SERVICE_READINGS {
            let syllables: Vec<Syllable> = readings.split(' ').filter_map(split_tone).collect();
            phrases.words.insert((*word).to_string(), syllables);
        }
        Ok(phrases)
    }

    #[cfg(test)]
    fn from_pairs(pairs: &[(&str, &str)]) -> Self {
        let mut phrases = Self::default();
        for (word, readings) in pairs {
            let s: Vec<Syllable> = readings.split(' ').filter_map(split_tone).collect();
            phrases.longest = phrases.longest.max(s.len());
            phrases.words.insert((*word).into(), s);
        }
        phrases
    }

    /// The syllables of one word of Chinese characters: the whole word from the
    /// table, else the longest table words inside it from the left, else each
    /// character's most common reading.
    pub fn syllables(&self, word: &str) -> Vec<Syllable> {
        let chars: Vec<char> = word.chars().collect();
        let mut out = Vec::with_capacity(chars.len());
        let mut i = 0;
        while i < chars.len() {
            let most = self.longest.min(chars.len() - i);
            let found = (2..=most).rev().find_map(|n| {
                let piece: String = chars[i..i + n].iter().collect();
                self.words.get(&piece).map(|s| (n, s))
            });
            match found {
                Some((n, s)) => {
                    out.extend(s.iter().cloned());
                    i += n;
                }
                None => {
                    out.extend(char_syllable(chars[i]));
                    i += 1;
                }
            }
        }
        out
    }
}

/// A character's most common reading.
fn char_syllable(c: char) -> Option<Syllable> {
    use pinyin::ToPinyin;
    c.to_pinyin().and_then(|p| split_tone(p.with_tone()))
}

/// "háng" → ("hang", 2); "de" → ("de", 5); "lǜ" → ("lü", 4).
pub fn split_tone(marked: &str) -> Option<Syllable> {
    const MARKS: &[(char, char, u8)] = &[
        ('ā', 'a', 1),
        ('á', 'a', 2),
        ('ǎ', 'a', 3),
        ('à', 'a', 4),
        ('ē', 'e', 1),
        ('é', 'e', 2),
        ('ě', 'e', 3),
        ('è', 'e', 4),
        ('ī', 'i', 1),
        ('í', 'i', 2),
        ('ǐ', 'i', 3),
        ('ì', 'i', 4),
        ('ō', 'o', 1),
        ('ó', 'o', 2),
        ('ǒ', 'o', 3),
        ('ò', 'o', 4),
        ('ū', 'u', 1),
        ('ú', 'u', 2),
        ('ǔ', 'u', 3),
        ('ù', 'u', 4),
        ('ǖ', 'ü', 1),
        ('ǘ', 'ü', 2),
        ('ǚ', 'ü', 3),
        ('ǜ', 'ü', 4),
        ('ń', 'n', 2),
        ('ň', 'n', 3),
        ('ǹ', 'n', 4),
        ('ḿ', 'm', 2),
        ('ê', 'ê', 5),
    ];
    let mut plain = String::with_capacity(marked.len());
    let mut tone = 5;
    for c in marked.chars() {
        match MARKS.iter().find(|(m, _, _)| *m == c) {
            Some((_, base, t)) => {
                plain.push(*base);
                if *t != 5 {
                    tone = *t;
                }
            }
            None if c == 'v' => plain.push('ü'),
            None if c.is_ascii_lowercase() || c == 'ü' => plain.push(c),
            None => return None,
        }
    }
    (!plain.is_empty()).then_some(Syllable { plain, tone })
}

const INITIALS: &[(&str, &str)] = &[
    ("zh", "ꭧ"),
    ("ch", "ꭧʰ"),
    ("sh", "ʂ"),
    ("b", "p"),
    ("p", "pʰ"),
    ("m", "m"),
    ("f", "f"),
    ("d", "t"),
    ("t", "tʰ"),
    ("n", "n"),
    ("l", "l"),
    ("g", "k"),
    ("k", "kʰ"),
    ("h", "x"),
    ("j", "ʨ"),
    ("q", "ʨʰ"),
    ("x", "ɕ"),
    ("r", "ɻ"),
    ("z", "ʦ"),
    ("c", "ʦʰ"),
    ("s", "s"),
];

/// Finals in their full spelling → (glide and vowel, coda); the tone goes between.
const FINALS: &[(&str, &str, &str)] = &[
    ("a", "a", ""),
    ("o", "wo", ""),
    ("e", "ɤ", ""),
    ("ê", "ɛ", ""),
    ("ai", "ai", ""),
    ("ei", "ei", ""),
    ("ao", "au", ""),
    ("ou", "ou", ""),
    ("an", "a", "n"),
    ("en", "ə", "n"),
    ("ang", "a", "ŋ"),
    ("eng", "ə", "ŋ"),
    ("ong", "ʊ", "ŋ"),
    ("er", "ɚ", ""),
    ("i", "i", ""),
    ("ia", "ja", ""),
    ("ie", "je", ""),
    ("iao", "jau", ""),
    ("iou", "jou", ""),
    ("ian", "jɛ", "n"),
    ("in", "i", "n"),
    ("iang", "ja", "ŋ"),
    ("ing", "i", "ŋ"),
    ("iong", "jʊ", "ŋ"),
    ("io", "jɔ", ""),
    ("u", "u", ""),
    ("ua", "wa", ""),
    ("uo", "wo", ""),
    ("uai", "wai", ""),
    ("uei", "wei", ""),
    ("uan", "wa", "n"),
    ("uen", "wə", "n"),
    ("uang", "wa", "ŋ"),
    ("ueng", "wə", "ŋ"),
    ("ü", "y", ""),
    ("üe", "ɥe", ""),
    ("üan", "ɥɛ", "n"),
    ("ün", "y", "n"),
];

fn tone_mark(tone: u8) -> &'static str {
    match tone {
        1 => "→",
        2 => "↗",
        3 => "↓",
        4 => "↘",
        _ => "",
    }
}

/// One syllable in IPA with its tone; `None` for a spelling that is not Mandarin.
pub fn syllable_ipa(s: &Syllable) -> Option<String> {
    let tone = tone_mark(s.tone);
    // Syllables without an initial or final of the usual kind.
    let whole = match s.plain.as_str() {
        "m" => Some(("m", "")),
        "n" => Some(("n", "")),
        "ng" => Some(("ŋ", "")),
        "hm" => Some(("hm", "")),
        "hng" => Some(("hŋ", "")),
        "o" => Some(("ɔ", "")),
        _ => None,
    };
    if let Some((vowel, coda)) = whole {
        return Some(format!("{vowel}{tone}{coda}"));
    }
    let spelled = s.plain.as_str();
    let (initial, rest) = INITIALS
        .iter()
        .find(|(p, _)| spelled.starts_with(p))
        .map(|(p, ipa)| (Some((*p, *ipa)), &spelled[p.len()..]))
        .unwrap_or((None, spelled));
    let final_ = full_final(initial.map(|(p, _)| p), rest)?;
    let (vowel, coda) = if final_ == "-i" {
        ("ɨ", "")
    } else if final_ == "er" && s.tone == 4 {
        // 二 èr is said with an open start ([aɚ]); the plain ɚ was heard as 啊 or
        // 了 after 请按 by the independent recogniser (benches/RESULTS.md).
        ("ɑɚ", "")
    } else {
        FINALS
            .iter()
            .find(|(f, _, _)| *f == final_)
            .map(|(_, v, c)| (*v, *c))?
    };
    let initial = initial.map(|(_, ipa)| ipa).unwrap_or("");
    Some(format!("{initial}{vowel}{tone}{coda}"))
}

/// The final as written in full: y/w spellings undone (you → iou, wei → uei),
/// abbreviations expanded (liu → iou, gui → uei, lun → uen), u after j/q/x/y as ü,
/// and the apical vowel of zhi/chi/shi/ri/zi/ci/si as "-i".
fn full_final(initial: Option<&str>, rest: &str) -> Option<String> {
    if rest.is_empty() {
        return None;
    }
    let f = match initial {
        None => {
            if let Some(r) = rest.strip_prefix("yu") {
                format!("ü{r}")
            } else if let Some(r) = rest.strip_prefix("yi") {
                format!("i{r}")
            } else if let Some(r) = rest.strip_prefix('y') {
                format!("i{r}")
            } else if let Some(r) = rest.strip_prefix("wu") {
                format!("u{r}")
            } else if let Some(r) = rest.strip_prefix('w') {
                format!("u{r}")
            } else {
                rest.to_string()
            }
        }
        Some("j" | "q" | "x") => match rest.strip_prefix('u') {
            Some(r) => format!("ü{r}"),
            None => rest.to_string(),
        },
        Some("zh" | "ch" | "sh" | "r" | "z" | "c" | "s") if rest == "i" => "-i".into(),
        Some(_) => rest.to_string(),
    };
    Some(match f.as_str() {
        "iu" => "iou".into(),
        "ui" => "uei".into(),
        "un" => "uen".into(),
        "üen" => "ün".into(),
        _ => f,
    })
}

/// The glide a syllable spelled with y or w (its IPA starting with i, y or u)
/// takes after a nasal coda, so the coda is not heard as its onset: 欢迎 huān yíng
/// was heard as 华宁 (hua ning) without it, with it as written.
fn linking_glide(before: &str, syllable: &str) -> Option<char> {
    if !(before.ends_with('n') || before.ends_with('ŋ')) {
        return None;
    }
    match syllable.chars().next()? {
        'i' => Some('j'),
        'y' => Some('ɥ'),
        'u' => Some('w'),
        _ => None,
    }
}

/// English letter names in IPA, for letters inside Mandarin text ("VIP", "App").
fn letter_ipa(c: char) -> Option<&'static str> {
    const NAMES: [&str; 26] = [
        "ei",
        "bi",
        "si",
        "di",
        "i",
        "ɛf",
        "ʤi",
        "eiʧ",
        "ai",
        "ʤei",
        "kei",
        "ɛl",
        "ɛm",
        "ɛn",
        "ou",
        "pi",
        "kju",
        "ɑɹ",
        "ɛs",
        "ti",
        "ju",
        "vi",
        "dʌbəlju",
        "ɛks",
        "wai",
        "zi",
    ];
    c.is_ascii_alphabetic()
        .then(|| NAMES[(c.to_ascii_lowercase() as u8 - b'a') as usize])
}

/// Text → phonemes. Unknown symbols are dropped; the result holds only characters
/// of Kokoro's vocabulary (checked again when tokenised).
pub fn phonemes(text: &str, phrases: &Phrases) -> String {
    let text = read_numbers(text);
    let mut out = String::with_capacity(text.len() * 3);
    let space = |out: &mut String| {
        if !out.is_empty() && !out.ends_with(' ') {
            out.push(' ');
        }
    };
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if crate::is_han(c) {
            let start = i;
            while i < chars.len() && crate::is_han(chars[i]) {
                i += 1;
            }
            let run: String = chars[start..i].iter().collect();
            for word in crate::jieba().cut(&run, false) {
                let mut ipa = String::new();
                for syl in phrases.syllables(word.word).iter().filter_map(syllable_ipa) {
                    let before = if ipa.is_empty() { out.trim_end() } else { &ipa };
                    if let Some(g) = linking_glide(before, &syl) {
                        ipa.push(g);
                    }
                    ipa.push_str(&syl);
                }
                if !ipa.is_empty() {
                    space(&mut out);
                    out.push_str(&ipa);
                }
            }
            continue;
        }
        if c.is_ascii_alphabetic() {
            space(&mut out);
            while i < chars.len() && chars[i].is_ascii_alphabetic() {
                space(&mut out);
                out.extend(letter_ipa(chars[i]).into_iter().flat_map(str::chars));
                i += 1;
            }
            continue;
        }
        let punct = match c {
            '，' | '、' | ',' => Some(","),
            '。' | '．' | '.' => Some("."),
            '！' | '!' => Some("!"),
            '？' | '?' => Some("?"),
            '：' | ':' => Some(":"),
            '；' | ';' => Some(";"),
            '…' => Some("…"),
            '—' => Some("—"),
            _ => None,
        };
        match punct {
            Some(p) => {
                while out.ends_with(' ') {
                    out.pop();
                }
                if !out.is_empty() {
                    out.push_str(p);
                    out.push(' ');
                }
            }
            None => space(&mut out),
        }
        i += 1;
    }
    out.trim_end().to_string()
}

const DIGITS: [char; 10] = ['零', '一', '二', '三', '四', '五', '六', '七', '八', '九'];

/// Measure words after which 2 is read 两 (两个, 两天, 两点).
const MEASURES: &[char] = &[
    '个', '位', '天', '次', '件', '份', '点', '种', '张', '台', '家', '年', '周', '本', '只', '条',
    '小', '分', '秒', '把', '双', '箱', '瓶', '岁',
];

/// Arabic numerals → Chinese as a caller expects to hear them: order and phone
/// numbers (five digits or more, or a leading zero) and years digit by digit,
/// amounts and counts as numbers (128 → 一百二十八, 3.5 → 三点五, 2个 → 两个),
/// times (9:30 → 九点三十分), percentages (15% → 百分之十五).
pub fn read_numbers(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len() * 2);
    let mut i = 0;
    // A currency sign before an amount is read after it: ¥128 → 一百二十八元.
    let mut yuan = false;
    while i < chars.len() {
        if !chars[i].is_ascii_digit() {
            yuan = matches!(chars[i], '¥' | '￥');
            if !yuan {
                out.push(chars[i]);
            }
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len() && chars[i].is_ascii_digit() {
            i += 1;
        }
        let int: String = chars[start..i].iter().collect();
        let next = chars.get(i).copied();
        // A time of day.
        if next == Some(':')
            && chars
                .get(i + 1..i + 3)
                .is_some_and(|m| m.iter().all(char::is_ascii_digit))
            && int.len() <= 2
        {
            let minutes: String = chars[i + 1..i + 3].iter().collect();
            out.push_str(&read_integer(&int));
            out.push('点');
            if minutes != "00" {
                out.push_str(&read_integer(&minutes));
                out.push('分');
            }
            i += 3;
            continue;
        }
        // A decimal fraction.
        let mut fraction = String::new();
        if next == Some('.') && chars.get(i + 1).is_some_and(char::is_ascii_digit) {
            let mut j = i + 1;
            while j < chars.len() && chars[j].is_ascii_digit() {
                fraction.push(chars[j]);
                j += 1;
            }
            i = j;
        }
        let after = chars.get(i).copied();
        let percent = matches!(after, Some('%' | '％'));
        let digit_by_digit = fraction.is_empty()
            && !percent
            && (int.len() >= 5
                || (int.len() > 1 && int.starts_with('0'))
                || (int.len() == 4 && after == Some('年')));
        if percent {
            out.push_str("百分之");
            i += 1;
        }
        if digit_by_digit {
            out.extend(int.bytes().map(|b| DIGITS[usize::from(b - b'0')]));
        } else if int == "2" && fraction.is_empty() && after.is_some_and(|c| MEASURES.contains(&c))
        {
            out.push('两');
        } else {
            out.push_str(&read_integer(&int));
            if !fraction.is_empty() {
                out.push('点');
                out.extend(fraction.bytes().map(|b| DIGITS[usize::from(b - b'0')]));
            }
        }
        if std::mem::take(&mut yuan) {
            out.push('元');
        }
    }
    out
}

/// An integer written in digits, read as a number (up to 万亿; longer runs are read
/// digit by digit).
fn read_integer(digits: &str) -> String {
    let digits = digits.trim_start_matches('0');
    if digits.is_empty() {
        return "零".into();
    }
    if digits.len() > 16 {
        return digits
            .bytes()
            .map(|b| DIGITS[usize::from(b - b'0')])
            .collect();
    }
    let value: u64 = digits.parse().unwrap_or(0);
    let groups = [
        (value / 1_000_000_000_000, "万亿"),
        (value / 100_000_000 % 10_000, "亿"),
        (value / 10_000 % 10_000, "万"),
        (value % 10_000, ""),
    ];
    let mut out = String::new();
    let mut gap = false;
    for (g, unit) in groups {
        if g == 0 {
            gap = !out.is_empty();
            continue;
        }
        if !out.is_empty() && (gap || g < 1000) {
            out.push('零');
        }
        out.push_str(&read_group(g));
        out.push_str(unit);
        gap = false;
    }
    // A leading 10–19 is said without its 一: 十二, 十五万.
    match out.strip_prefix("一十") {
        Some(rest) => format!("十{rest}"),
        None => out,
    }
}

/// 1..=9999 with 千, 百, 十 and the zeros between.
fn read_group(g: u64) -> String {
    let places = [
        (g / 1000, "千"),
        (g / 100 % 10, "百"),
        (g / 10 % 10, "十"),
        (g % 10, ""),
    ];
    let mut out = String::new();
    let mut zero = false;
    for (d, unit) in places {
        if d == 0 {
            zero = !out.is_empty();
            continue;
        }
        if zero {
            out.push('零');
            zero = false;
        }
        out.push(DIGITS[d as usize]);
        out.push_str(unit);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ipa(plain: &str, tone: u8) -> String {
        syllable_ipa(&Syllable {
            plain: plain.into(),
            tone,
        })
        .unwrap_or_else(|| panic!("{plain} has no IPA"))
    }

    #[test]
    fn syllables_take_initial_final_and_tone() {
        assert_eq!(ipa("zhong", 1), "ꭧʊ→ŋ");
        assert_eq!(ipa("guo", 2), "kwo↗");
        assert_eq!(ipa("ni", 3), "ni↓");
        assert_eq!(ipa("hao", 3), "xau↓");
        assert_eq!(ipa("shi", 4), "ʂɨ↘");
        assert_eq!(ipa("si", 4), "sɨ↘");
        assert_eq!(ipa("de", 5), "tɤ");
        assert_eq!(ipa("qu", 4), "ʨʰy↘", "u after q is ü");
        assert_eq!(ipa("xuan", 3), "ɕɥɛ↓n");
        assert_eq!(ipa("jun", 1), "ʨy→n");
        assert_eq!(ipa("lü", 4), "ly↘");
        assert_eq!(ipa("liu", 4), "ljou↘", "iu is iou");
        assert_eq!(ipa("gui", 4), "kwei↘", "ui is uei");
        assert_eq!(ipa("lun", 2), "lwə↗n", "un is uen");
        assert_eq!(ipa("bo", 1), "pwo→");
        assert_eq!(ipa("ci", 4), "ʦʰɨ↘");
        assert_eq!(ipa("chu", 1), "ꭧʰu→");
    }

    #[test]
    fn syllables_spelled_with_y_and_w() {
        assert_eq!(ipa("yi", 1), "i→");
        assert_eq!(ipa("ying", 2), "i↗ŋ");
        assert_eq!(ipa("you", 3), "jou↓");
        assert_eq!(ipa("yan", 4), "jɛ↘n");
        assert_eq!(ipa("yu", 3), "y↓");
        assert_eq!(ipa("yuan", 2), "ɥɛ↗n");
        assert_eq!(ipa("yun", 4), "y↘n");
        assert_eq!(ipa("wu", 3), "u↓");
        assert_eq!(ipa("wei", 4), "wei↘");
        assert_eq!(ipa("wen", 4), "wə↘n");
        assert_eq!(ipa("er", 4), "ɑɚ↘");
        assert_eq!(ipa("er", 2), "ɚ↗");
        assert_eq!(ipa("ng", 2), "ŋ↗");
        assert!(
            syllable_ipa(&Syllable {
                plain: "zzz".into(),
                tone: 1
            })
            .is_none()
        );
    }

    #[test]
    fn tone_marks_become_numbers() {
        let s = |p: &str, t: u8| {
            Some(Syllable {
                plain: p.into(),
                tone: t,
            })
        };
        assert_eq!(split_tone("háng"), s("hang", 2));
        assert_eq!(split_tone("de"), s("de", 5));
        assert_eq!(split_tone("lǜ"), s("lü", 4));
        assert_eq!(split_tone("nǚ"), s("nü", 3));
        assert_eq!(split_tone("ňg"), s("ng", 3));
        assert_eq!(split_tone("x1"), None);
    }

    #[test]
    fn polyphones_are_read_by_word() {
        let phrases = Phrases::from_pairs(&[
            ("银行", "yín háng"),
            ("行业", "háng yè"),
            ("重新", "chóng xīn"),
            ("成长", "chéng zhǎng"),
        ]);
        let tones = |w: &str| {
            phrases
                .syllables(w)
                .iter()
                .map(|s| format!("{}{}", s.plain, s.tone))
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(tones("银行"), "yin2 hang2");
        assert_eq!(tones("重新"), "chong2 xin1");
        assert_eq!(tones("成长"), "cheng2 zhang3");
        assert_eq!(
            tones("银行业"),
            "yin2 hang2 ye4",
            "longest table word first"
        );
        assert_eq!(
            tones("我们"),
            "wo3 men5",
            "characters' own readings otherwise"
        );
    }

    #[test]
    fn numbers_are_read_as_callers_expect() {
        assert_eq!(read_numbers("订单号123456"), "订单号一二三四五六");
        assert_eq!(
            read_numbers("电话01062345678"),
            "电话零一零六二三四五六七八"
        );
        assert_eq!(read_numbers("共128元"), "共一百二十八元");
        assert_eq!(read_numbers("¥99.50"), "九十九点五零元");
        assert_eq!(read_numbers("退款￥128已到账"), "退款一百二十八元已到账");
        assert_eq!(read_numbers("请按1，请按2"), "请按一，请按二");
        assert_eq!(read_numbers("2个工作日"), "两个工作日");
        assert_eq!(read_numbers("9:30到18:00"), "九点三十分到十八点");
        assert_eq!(read_numbers("打8折，优惠15%"), "打八折，优惠百分之十五");
        assert_eq!(read_numbers("2024年"), "二零二四年");
        assert_eq!(read_numbers("1005"), "一千零五");
        assert_eq!(read_numbers("10"), "十");
        assert_eq!(read_numbers("110"), "一百一十");
        assert_eq!(read_numbers("1200"), "一千二百");
        assert_eq!(read_numbers("3.5公斤"), "三点五公斤");
        assert_eq!(
            read_numbers("20000"),
            "二零零零零",
            "five digits: an identifier"
        );
        assert_eq!(read_integer("100000"), "十万");
        assert_eq!(read_integer("1000001"), "一百万零一");
        assert_eq!(read_integer("100200"), "十万零二百");
        assert_eq!(read_integer("0"), "零");
    }

    #[test]
    fn text_becomes_words_of_ipa_with_punctuation() {
        let phrases = Phrases::from_pairs(&[("银行", "yín háng")]);
        let p = phonemes("您好，银行VIP请按1。", &phrases);
        assert!(p.starts_with("ni↗nxau↓, "), "{p}");
        assert!(p.contains(" i↗nxa↗ŋ "), "{p}");
        assert!(p.contains("vi ai pi"), "{p}");
        assert!(p.ends_with("i→."), "{p}");
        let p = phonemes("欢迎，请按1", &phrases);
        assert_eq!(p, "xwa→nji↗ŋ, ʨʰi↓ŋ a↘n ji→", "a glide after a nasal coda");
        assert_eq!(phonemes("", &phrases), "");
        assert_eq!(phonemes("#@%&", &phrases), "");
    }
}
