//! Slots: values an intent collects before it can answer (an order number, a phone
//! number, a date), found in whatever the customer typed or said.
//!
//! Extraction takes speech-recognition output as it comes: Chinese and English number
//! words become digits, and spaces or dashes inside a number are ignored.

use std::sync::LazyLock;

use chrono::{Datelike, Duration, NaiveDate, Weekday};
use regex::Regex;

use super::kb::Texts;
use super::text::normalize;

#[derive(Clone, Debug)]
pub struct Slot {
    pub name: String,
    pub kind: SlotKind,
    /// Asks for the value.
    pub prompt: Texts,
    /// Asks again after an unusable answer.
    pub retry: Texts,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SlotKind {
    /// A run of digits of this length range (order numbers, codes).
    Digits {
        min: usize,
        max: usize,
    },
    /// A phone number: a mainland mobile, a landline with area code, or 7 to 15 digits.
    Phone,
    /// A calendar date, absolute or relative ("tomorrow", "明天", "12月3日"); kept as ISO.
    Date,
    Email,
    /// One of a fixed list of options.
    Choice(Vec<String>),
    /// Any non-empty text.
    Text,
}

impl SlotKind {
    pub const NAMES: &'static [&'static str] =
        &["digits", "phone", "date", "email", "choice", "text"];

    /// The value in `text`, normalised (digits only, ISO date, lower-case email, the
    /// option as written in the knowledge base), or `None` when there is none.
    pub fn extract(&self, text: &str, today: NaiveDate) -> Option<String> {
        match self {
            SlotKind::Digits { min, max } => digit_runs(text)
                .into_iter()
                .find(|r| (*min..=*max).contains(&r.len())),
            SlotKind::Phone => digit_runs(text).into_iter().find_map(|r| phone(&r)),
            SlotKind::Date => date(text, today),
            SlotKind::Email => EMAIL.find(text).map(|m| m.as_str().to_lowercase()),
            SlotKind::Choice(options) => {
                let t = normalize(text);
                options
                    .iter()
                    .filter(|o| !normalize(o).is_empty() && t.contains(&normalize(o)))
                    .max_by_key(|o| o.len())
                    .cloned()
            }
            SlotKind::Text => {
                let t = text.trim();
                (!t.is_empty()).then(|| t.to_string())
            }
        }
    }
}

static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}").unwrap_or_else(|_| unreachable!())
});

fn digit_of_word(word: &str) -> Option<char> {
    Some(match word {
        "zero" | "oh" | "o" => '0',
        "one" => '1',
        "two" => '2',
        "three" => '3',
        "four" => '4',
        "five" => '5',
        "six" => '6',
        "seven" => '7',
        "eight" => '8',
        "nine" => '9',
        _ => return None,
    })
}

fn digit_of_han(c: char) -> Option<char> {
    Some(match c {
        '零' | '〇' | '洞' => '0',
        '一' | '幺' | '壹' => '1',
        '二' | '两' | '贰' => '2',
        '三' | '叁' => '3',
        '四' | '肆' => '4',
        '五' | '伍' => '5',
        '六' | '陆' => '6',
        '七' | '柒' => '7',
        '八' | '捌' => '8',
        '九' | '玖' => '9',
        _ => return None,
    })
}

/// Digit runs in reading order. Digits separated only by spaces, dashes or dots stay
/// one run ("138 0013 8000", "one two three"); any other word ends a run.
pub fn digit_runs(text: &str) -> Vec<String> {
    let lower = text.to_lowercase();
    let mut runs = Vec::new();
    let mut current = String::new();
    let mut word = String::new();
    let flush_word = |word: &mut String, current: &mut String, runs: &mut Vec<String>| {
        if word.is_empty() {
            return;
        }
        match digit_of_word(word) {
            Some(d) => current.push(d),
            None => {
                if !current.is_empty() {
                    runs.push(std::mem::take(current));
                }
            }
        }
        word.clear();
    };
    for c in lower.chars() {
        if c.is_ascii_alphabetic() {
            word.push(c);
            continue;
        }
        flush_word(&mut word, &mut current, &mut runs);
        if let Some(d) = c.to_digit(10).and_then(|d| char::from_digit(d, 10)) {
            current.push(d);
        } else if let Some(d) = digit_of_han(c) {
            current.push(d);
        } else if matches!(c, ' ' | '-' | '.' | '　' | '－' | '+') {
            // separators inside a number
        } else if !current.is_empty() {
            runs.push(std::mem::take(&mut current));
        }
    }
    flush_word(&mut word, &mut current, &mut runs);
    if !current.is_empty() {
        runs.push(current);
    }
    runs
}

fn phone(digits: &str) -> Option<String> {
    let d = digits
        .strip_prefix("0086")
        .or_else(|| digits.strip_prefix("86").filter(|r| r.len() == 11))
        .unwrap_or(digits);
    let mobile = d.len() == 11 && d.starts_with('1') && matches!(d.as_bytes()[1], b'3'..=b'9');
    let landline = d.starts_with('0') && (10..=12).contains(&d.len());
    let other = (7..=15).contains(&d.len()) && !d.starts_with('1');
    (mobile || landline || other).then(|| d.to_string())
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];

static ISO_DATE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(\d{4})[-/.年](\d{1,2})[-/.月](\d{1,2})").unwrap_or_else(|_| unreachable!())
});
static ZH_DATE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(\d{1,2})月(\d{1,2})[日号]?").unwrap_or_else(|_| unreachable!()));
static MONTH_DAY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\b([a-z]{3})[a-z]*\.?\s+(\d{1,2})(?:st|nd|rd|th)?\b")
        .unwrap_or_else(|_| unreachable!())
});
static DAY_MONTH: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\b(\d{1,2})(?:st|nd|rd|th)?\s+(?:of\s+)?([a-z]{3})[a-z]*\b")
        .unwrap_or_else(|_| unreachable!())
});

fn date(text: &str, today: NaiveDate) -> Option<String> {
    let lower = text.to_lowercase();
    let iso = |d: NaiveDate| d.format("%Y-%m-%d").to_string();
    // Chinese numerals in dates ("十二月三号") become digits first.
    let digits = han_numbers_to_digits(&lower);
    if let Some(c) = ISO_DATE.captures(&digits) {
        let (y, m, d) = (c[1].parse().ok()?, c[2].parse().ok()?, c[3].parse().ok()?);
        return NaiveDate::from_ymd_opt(y, m, d).map(iso);
    }
    if let Some(c) = ZH_DATE.captures(&digits) {
        return month_day(today, c[1].parse().ok()?, c[2].parse().ok()?).map(iso);
    }
    let month_day_pairs = MONTH_DAY
        .captures_iter(&digits)
        .map(|c| (c[1].to_string(), c[2].to_string()))
        .chain(
            DAY_MONTH
                .captures_iter(&digits)
                .map(|c| (c[2].to_string(), c[1].to_string())),
        );
    for (mon, day) in month_day_pairs {
        if let Some(m) = MONTHS.iter().position(|x| *x == mon)
            && let Some(d) = month_day(today, m as u32 + 1, day.parse().ok()?)
        {
            return Some(iso(d));
        }
    }
    let relative = [
        ("day after tomorrow", 2),
        ("大后天", 3),
        ("后天", 2),
        ("tomorrow", 1),
        ("明天", 1),
        ("today", 0),
        ("今天", 0),
    ];
    for (word, days) in relative {
        if lower.contains(word) {
            return Some(iso(today + Duration::days(days)));
        }
    }
    let weekdays = [
        (["monday", "周一", "星期一"], Weekday::Mon),
        (["tuesday", "周二", "星期二"], Weekday::Tue),
        (["wednesday", "周三", "星期三"], Weekday::Wed),
        (["thursday", "周四", "星期四"], Weekday::Thu),
        (["friday", "周五", "星期五"], Weekday::Fri),
        (["saturday", "周六", "星期六"], Weekday::Sat),
        (["sunday", "周日", "星期日"], Weekday::Sun),
    ];
    for (names, wd) in weekdays {
        if names.iter().any(|n| lower.contains(n)) {
            let ahead =
                (wd.num_days_from_monday() + 7 - today.weekday().num_days_from_monday()) % 7;
            let ahead = if ahead == 0 { 7 } else { ahead };
            return Some(iso(today + Duration::days(i64::from(ahead))));
        }
    }
    None
}

/// The next date with this month and day, today included.
fn month_day(today: NaiveDate, month: u32, day: u32) -> Option<NaiveDate> {
    let this_year = NaiveDate::from_ymd_opt(today.year(), month, day)?;
    if this_year >= today {
        Some(this_year)
    } else {
        NaiveDate::from_ymd_opt(today.year() + 1, month, day)
    }
}

/// "十二" → "12", "三十一" → "31", "二〇二六" → "2026" (numbers up to 99 and digit strings).
fn han_numbers_to_digits(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if digit_of_han(c).is_none() && c != '十' {
            out.push(c);
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len() && (digit_of_han(chars[i]).is_some() || chars[i] == '十') {
            i += 1;
        }
        let run: Vec<char> = chars[start..i].to_vec();
        match run.iter().position(|&c| c == '十') {
            Some(p) => {
                let tens = if p == 0 {
                    1
                } else {
                    run[..p]
                        .iter()
                        .filter_map(|&c| digit_of_han(c))
                        .next_back()
                        .and_then(|d| d.to_digit(10))
                        .unwrap_or(1)
                };
                let ones = run[p + 1..]
                    .iter()
                    .find_map(|&c| digit_of_han(c))
                    .and_then(|d| d.to_digit(10))
                    .unwrap_or(0);
                out.push_str(&(tens * 10 + ones).to_string());
            }
            None => out.extend(run.iter().filter_map(|&c| digit_of_han(c))),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn digits_from_text_speech_and_chinese() {
        let six = SlotKind::Digits { min: 6, max: 6 };
        let today = day(2026, 11, 24);
        assert_eq!(
            six.extract("my order is 123456", today).as_deref(),
            Some("123456")
        );
        assert_eq!(
            six.extract("one two three four five six", today).as_deref(),
            Some("123456")
        );
        assert_eq!(
            six.extract("订单号是一二三四五六", today).as_deref(),
            Some("123456")
        );
        assert_eq!(six.extract("123 456", today).as_deref(), Some("123456"));
        assert_eq!(six.extract("order 12345", today), None);
        assert_eq!(six.extract("I don't know", today), None);
    }

    #[test]
    fn phone_numbers() {
        let today = day(2026, 11, 24);
        let p = SlotKind::Phone;
        assert_eq!(
            p.extract("138 0013 8000", today).as_deref(),
            Some("13800138000")
        );
        assert_eq!(
            p.extract("+86 138-0013-8000", today).as_deref(),
            Some("13800138000")
        );
        assert_eq!(
            p.extract("我的手机是幺三八零零一三八零零零", today)
                .as_deref(),
            Some("13800138000")
        );
        assert_eq!(
            p.extract("021 6212 3456", today).as_deref(),
            Some("02162123456")
        );
        assert_eq!(p.extract("12345", today), None);
    }

    #[test]
    fn dates_absolute_and_relative() {
        let today = day(2026, 11, 24); // a Tuesday
        let d = SlotKind::Date;
        assert_eq!(
            d.extract("2026-12-03", today).as_deref(),
            Some("2026-12-03")
        );
        assert_eq!(d.extract("12月3日", today).as_deref(), Some("2026-12-03"));
        assert_eq!(
            d.extract("十二月三号", today).as_deref(),
            Some("2026-12-03")
        );
        assert_eq!(
            d.extract("January 5th", today).as_deref(),
            Some("2027-01-05")
        );
        assert_eq!(
            d.extract("the 3rd of December", today).as_deref(),
            Some("2026-12-03")
        );
        assert_eq!(
            d.extract("tomorrow please", today).as_deref(),
            Some("2026-11-25")
        );
        assert_eq!(d.extract("后天", today).as_deref(), Some("2026-11-26"));
        assert_eq!(
            d.extract("next friday", today).as_deref(),
            Some("2026-11-27")
        );
        assert_eq!(d.extract("周二", today).as_deref(), Some("2026-12-01"));
        assert_eq!(d.extract("2026-02-30", today), None);
        assert_eq!(d.extract("whenever", today), None);
    }

    #[test]
    fn email_and_choice() {
        let today = day(2026, 11, 24);
        assert_eq!(
            SlotKind::Email
                .extract("it's Li.Wei@Example.com thanks", today)
                .as_deref(),
            Some("li.wei@example.com")
        );
        let c = SlotKind::Choice(vec!["Beijing".into(), "上海".into()]);
        assert_eq!(
            c.extract("the beijing store", today).as_deref(),
            Some("Beijing")
        );
        assert_eq!(c.extract("上海店", today).as_deref(), Some("上海"));
        assert_eq!(c.extract("Shenzhen", today), None);
    }
}
