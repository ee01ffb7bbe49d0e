//! `kefu kb eval`: how well the knowledge base understands a labelled test set.
//!
//! The file is TSV, one question per line: `question<TAB>intent`, where the intent `-`
//! (or `oos`) marks a question the knowledge base should not answer. Lines starting
//! with `#` are comments. The language of each question is detected from its text.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

use super::matcher::{Matcher, Outcome, decide};
use super::text::Lang;
use crate::source::Diagnostic;

#[derive(Clone, Debug)]
pub struct Case {
    pub text: String,
    /// `None`: out of scope.
    pub intent: Option<String>,
    pub line: usize,
}

pub fn parse(path: &Path, text: &str, m: &Matcher) -> Result<Vec<Case>, Vec<Diagnostic>> {
    let mut cases = Vec::new();
    let mut problems = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line_no = n + 1;
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((q, label)) = line.rsplit_once('\t') else {
            problems.push(Diagnostic {
                file: path.to_path_buf(),
                line: line_no,
                col: 1,
                message: "expected `question<TAB>intent`".into(),
            });
            continue;
        };
        let label = label.trim();
        let intent = match label {
            "-" | "oos" | "" => None,
            id if m.kb.intent(id).is_some() => Some(id.to_string()),
            id => {
                problems.push(Diagnostic {
                    file: path.to_path_buf(),
                    line: line_no,
                    col: q.chars().count() + 2,
                    message: format!("no intent `{id}` in the knowledge base"),
                });
                continue;
            }
        };
        cases.push(Case {
            text: q.trim().to_string(),
            intent,
            line: line_no,
        });
    }
    if problems.is_empty() {
        Ok(cases)
    } else {
        Err(problems)
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    pub in_scope: usize,
    pub out_of_scope: usize,
    /// In-scope questions whose best-ranked intent is right.
    pub top1: usize,
    /// In-scope questions the engine would answer with the right intent.
    pub answered_right: usize,
    pub answered_wrong: usize,
    pub clarified: usize,
    /// Out-of-scope decisions that were right / wrong.
    pub oos_true: usize,
    pub oos_false: usize,
    /// (expected, got) → count; "-" is out of scope.
    pub confusions: BTreeMap<(String, String), usize>,
    /// Per language: (in-scope, top-1 right).
    pub by_lang: BTreeMap<String, (usize, usize)>,
    /// Per language: the same report for that language's questions alone.
    pub langs: BTreeMap<String, Report>,
    /// Confidence bins of answered questions: (answered, right), 0.1 wide.
    pub calibration: [(usize, usize); 10],
    /// Every question not handled right, in file order.
    pub misses: Vec<Miss>,
}

/// A question the knowledge base did not handle right, for `kefu kb eval --misses`.
#[derive(Clone, Debug, PartialEq)]
pub struct Miss {
    pub line: usize,
    pub text: String,
    /// The labelled intent, "-" for out of scope.
    pub expected: String,
    /// What kefu did: an intent, "A|B" when it asked back, "-" when it declined.
    pub got: String,
    /// The confidence of kefu's first choice (0 when nothing matched at all).
    pub confidence: f32,
}

impl Report {
    /// Right decisions over all questions, out of scope counted as a class: an
    /// in-scope question answered with its intent, an out-of-scope one declined.
    pub fn overall_accuracy(&self) -> f64 {
        ratio(
            self.answered_right + self.oos_true,
            self.in_scope + self.out_of_scope,
        )
    }
    /// In-scope questions answered with the right intent.
    pub fn answered_right_share(&self) -> f64 {
        ratio(self.answered_right, self.in_scope)
    }
    pub fn top1_accuracy(&self) -> f64 {
        ratio(self.top1, self.in_scope)
    }
    /// The overall accuracy if every out-of-scope decision were right and every other
    /// question answered with the intent ranked first: what ranking allows, whatever
    /// the thresholds. Below the target, more or better examples are needed, not other
    /// thresholds.
    pub fn ranking_ceiling(&self) -> f64 {
        ratio(
            self.top1 + self.out_of_scope,
            self.in_scope + self.out_of_scope,
        )
    }
    pub fn oos_precision(&self) -> f64 {
        ratio(self.oos_true, self.oos_true + self.oos_false)
    }
    pub fn oos_recall(&self) -> f64 {
        ratio(self.oos_true, self.out_of_scope)
    }
    pub fn oos_f1(&self) -> f64 {
        let (p, r) = (self.oos_precision(), self.oos_recall());
        if p + r == 0.0 {
            0.0
        } else {
            2.0 * p * r / (p + r)
        }
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// Runs every case through the matcher with the knowledge base's thresholds (or
/// `thresholds` to try others).
pub fn evaluate(
    m: &Matcher,
    cases: &[Case],
    thresholds: Option<&crate::dialogue::kb::Thresholds>,
) -> Report {
    let mut r = tally(m, cases, thresholds);
    for lang in Lang::ALL {
        let of_lang: Vec<Case> = cases
            .iter()
            .filter(|c| Lang::detect(&c.text) == lang)
            .cloned()
            .collect();
        if !of_lang.is_empty() {
            r.langs
                .insert(lang.code().to_string(), tally(m, &of_lang, thresholds));
        }
    }
    r
}

fn tally(
    m: &Matcher,
    cases: &[Case],
    thresholds: Option<&crate::dialogue::kb::Thresholds>,
) -> Report {
    let t = thresholds.unwrap_or(&m.kb.thresholds);
    let mut r = Report::default();
    for case in cases {
        let lang = Lang::detect(&case.text);
        let ranked = m.rank(&case.text, lang, None, 5);
        let outcome = decide(t, &ranked);
        let id = |i: usize| m.kb.intents[i].id.clone();
        let got = match &outcome {
            Outcome::Answer(s) => id(s.intent),
            Outcome::Clarify(a, b) => format!("{}|{}", id(a.intent), id(b.intent)),
            Outcome::OutOfScope(_) => "-".into(),
        };
        let expected = case.intent.as_deref().unwrap_or("-");
        if got != expected {
            r.misses.push(Miss {
                line: case.line,
                text: case.text.clone(),
                expected: expected.to_string(),
                got: got.clone(),
                confidence: ranked.first().map_or(0.0, |s| s.score),
            });
        }
        match &case.intent {
            Some(expected) => {
                r.in_scope += 1;
                let e = r.by_lang.entry(lang.code().to_string()).or_default();
                e.0 += 1;
                if ranked.first().is_some_and(|s| id(s.intent) == *expected) {
                    r.top1 += 1;
                    e.1 += 1;
                }
                match &outcome {
                    Outcome::Answer(s) => {
                        let right = id(s.intent) == *expected;
                        if right {
                            r.answered_right += 1;
                        } else {
                            r.answered_wrong += 1;
                        }
                        let bin = ((s.score * 10.0) as usize).min(9);
                        r.calibration[bin].0 += 1;
                        r.calibration[bin].1 += usize::from(right);
                    }
                    Outcome::Clarify(..) => r.clarified += 1,
                    Outcome::OutOfScope(_) => r.oos_false += 1,
                }
                if got != *expected {
                    *r.confusions.entry((expected.clone(), got)).or_default() += 1;
                }
            }
            None => {
                r.out_of_scope += 1;
                match &outcome {
                    Outcome::OutOfScope(_) => r.oos_true += 1,
                    Outcome::Answer(s) => {
                        let bin = ((s.score * 10.0) as usize).min(9);
                        r.calibration[bin].0 += 1;
                        *r.confusions.entry(("-".into(), got)).or_default() += 1;
                    }
                    Outcome::Clarify(..) => {
                        *r.confusions.entry(("-".into(), got)).or_default() += 1;
                    }
                }
            }
        }
    }
    r
}

pub fn render(r: &Report, worst: usize) -> String {
    let mut s = String::new();
    let pct = |x: f64| format!("{:.1} %", x * 100.0);
    let _ = writeln!(
        s,
        "questions: {} in scope, {} out of scope",
        r.in_scope, r.out_of_scope
    );
    let _ = writeln!(
        s,
        "overall accuracy (out of scope as a class): {:.3}; in-scope answered right: {} ({}/{})",
        r.overall_accuracy(),
        pct(r.answered_right_share()),
        r.answered_right,
        r.in_scope
    );
    for (lang, l) in &r.langs {
        let _ = writeln!(
            s,
            "  {lang}: overall {:.3}, answered right {}, out-of-scope F1 {:.3} ({} in scope, {} out)",
            l.overall_accuracy(),
            pct(l.answered_right_share()),
            l.oos_f1(),
            l.in_scope,
            l.out_of_scope
        );
    }
    let _ = writeln!(
        s,
        "top-1 accuracy: {} ({}/{})",
        pct(r.top1_accuracy()),
        r.top1,
        r.in_scope
    );
    for (lang, (n, right)) in &r.by_lang {
        let _ = writeln!(s, "  {lang}: {} ({right}/{n})", pct(ratio(*right, *n)));
    }
    let _ = writeln!(
        s,
        "ranking's ceiling (overall if every out-of-scope decision were right): {:.3}{}",
        r.ranking_ceiling(),
        r.langs
            .iter()
            .map(|(lang, l)| format!("; {lang} {:.3}", l.ranking_ceiling()))
            .collect::<String>()
    );
    let _ = writeln!(
        s,
        "decisions on in-scope questions: answered right {}, answered wrong {}, asked back {}, treated as out of scope {}",
        r.answered_right, r.answered_wrong, r.clarified, r.oos_false
    );
    let _ = writeln!(
        s,
        "out of scope: precision {} recall {} F1 {:.3}",
        pct(r.oos_precision()),
        pct(r.oos_recall()),
        r.oos_f1()
    );
    let _ = writeln!(s, "confidence of answers (bin: answered, right):");
    for (i, (n, right)) in r.calibration.iter().enumerate() {
        if *n > 0 {
            let _ = writeln!(
                s,
                "  {:.1}-{:.1}: {n}, {} right",
                i as f32 / 10.0,
                (i + 1) as f32 / 10.0,
                pct(ratio(*right, *n))
            );
        }
    }
    let mut confused: Vec<_> = r.confusions.iter().collect();
    confused.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    if !confused.is_empty() {
        let _ = writeln!(s, "most confused (expected → got, \"-\" is out of scope):");
        for ((e, g), n) in confused.into_iter().take(worst) {
            let _ = writeln!(s, "  {n:>3}  {e} → {g}");
        }
    }
    s
}

/// Every question not handled right: `file:line: question`, then on the next line
/// what was expected and what kefu did, with its confidence.
pub fn render_misses(path: &Path, r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "not handled right ({}):", r.misses.len());
    for m in &r.misses {
        let _ = writeln!(
            s,
            "  {}:{}: {}\n      expected {}, got {} (confidence {:.2})",
            path.display(),
            m.line,
            m.text,
            m.expected,
            m.got,
            m.confidence
        );
    }
    s
}
