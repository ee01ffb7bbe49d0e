//! Word and character error rates, for judging recognition against reference text.

/// Lower-cases, spells out digits, and keeps letters, digits and CJK characters;
/// everything else separates words.
pub fn normalise(text: &str) -> String {
    const DIGITS: [&str; 10] = [
        "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
    ];
    let mut out = String::with_capacity(text.len());
    for c in text.chars().flat_map(char::to_lowercase) {
        if let Some(d) = c.to_digit(10).filter(|_| c.is_ascii_digit()) {
            out.push(' ');
            out.push_str(DIGITS[d as usize]);
            out.push(' ');
        } else if c.is_alphanumeric() || c == '\'' {
            out.push(c);
        } else {
            out.push(' ');
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Edit distance between two token sequences.
pub fn edit_distance<T: PartialEq>(reference: &[T], hypothesis: &[T]) -> usize {
    let mut prev: Vec<usize> = (0..=hypothesis.len()).collect();
    let mut cur = vec![0; hypothesis.len() + 1];
    for (i, r) in reference.iter().enumerate() {
        cur[0] = i + 1;
        for (j, h) in hypothesis.iter().enumerate() {
            let substitute = prev[j] + usize::from(r != h);
            cur[j + 1] = substitute.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[hypothesis.len()]
}

/// Errors and reference length in words, after [`normalise`].
pub fn word_errors(reference: &str, hypothesis: &str) -> (usize, usize) {
    let r = normalise(reference);
    let h = normalise(hypothesis);
    let r: Vec<&str> = r.split(' ').filter(|w| !w.is_empty()).collect();
    let h: Vec<&str> = h.split(' ').filter(|w| !w.is_empty()).collect();
    (edit_distance(&r, &h), r.len())
}

/// Errors and reference length in characters, ignoring spaces and punctuation
/// (for Chinese, which has no spaces between words).
pub fn char_errors(reference: &str, hypothesis: &str) -> (usize, usize) {
    let chars = |s: &str| -> Vec<char> { normalise(s).chars().filter(|c| *c != ' ').collect() };
    let r = chars(reference);
    (edit_distance(&r, &chars(hypothesis)), r.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_error_counts() {
        assert_eq!(
            word_errors("Please enter your PIN.", "please enter your pin"),
            (0, 4)
        );
        assert_eq!(word_errors("press 1 now", "press one now"), (0, 3));
        assert_eq!(word_errors("a b c d", "a x c"), (2, 4));
        assert_eq!(word_errors("a b", "a b c d"), (2, 2));
        assert_eq!(word_errors("", "noise"), (1, 0));
    }

    #[test]
    fn char_error_counts() {
        assert_eq!(char_errors("我要查订单。", "我要查訂单"), (1, 5));
        assert_eq!(char_errors("营业时间", "营业时间"), (0, 4));
    }
}
