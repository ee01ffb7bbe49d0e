//! Which intent a message means, and how sure we are.
//!
//! Two stages: BM25 (the `bm25` crate) retrieves the example questions that share terms
//! with the message; each intent is then scored from the idf-weighted cosine between
//! the message and its best example, and the share of the message's weight that its
//! examples cover together. Both are bounded (0 to 1) and drop when the message holds
//! words the knowledge base has never seen, which is what out-of-scope questions look
//! like, so the score serves as the confidence (`kefu kb eval` shows how it tracks
//! accuracy). A follow-up gets a boost right after the answer it follows.
//!
//! With a sentence-embedding model ([`super::semantic`]), a message the lexical score
//! is not sure of is matched by meaning instead: each intent is scored by the cosine
//! between the message and the centroids of its examples (same language, and all
//! languages together), and that raw score is mapped onto the confidence scale by the
//! knowledge base's own calibration ([`super::calibrate`]: thresholds per language,
//! from leave-one-out on the examples, recomputed on every load). A softmax
//! classifier fitted on the examples at load ([`super::classifier`]) picks which
//! intent comes first, its first few re-ordered by how well the message's words line
//! up with each one's examples ([`super::align`]); the best centroid score says how
//! sure that choice is.
//! Paraphrases that share no words with an example ("has my stuff been sent out yet")
//! are found this way, and unrelated questions fall below the calibrated threshold. Messages the
//! lexical score already answers with confidence skip the model (it costs a few
//! milliseconds of CPU per message; the lexical stage costs well under one), and so
//! does every message while the model is busy: the words-only score and the
//! `[kb.thresholds]` decide those.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bm25::{Embedder, EmbedderBuilder, Scorer, Tokenizer};

use super::align;
use super::calibrate::{Calibration, Centroids, Sample, calibrate, centroids, unrelated_questions};
use super::classifier::{self, Classifier};
use super::homophone::Homophones;
use super::kb::{KnowledgeBase, Thresholds};
use super::semantic::{EncodeError, Encoder, Vector};
use super::text::{Lang, Synonyms, normalize, terms};

/// How many retrieved examples the re-ranker looks at.
const CANDIDATES: usize = 64;
/// Added to a follow-up's score right after the intent it follows.
const FOLLOW_UP_BOOST: f32 = 0.2;
/// Character pairs back up Chinese word matches; they count for less.
const CHAR_WEIGHT: f32 = 0.5;
/// An intent's score: this much the best single example (cosine), the rest how much
/// of the message all its examples cover together.
const EXAMPLE_WEIGHT: f32 = 0.5;
/// A lexical score at or above this answers without the semantic re-ranker.
const SEMANTIC_GATE: f32 = 0.7;

/// Terms arrive already cut (by `text::terms`), joined with spaces.
#[derive(Debug, Default, Clone, Copy)]
struct PreCut;

impl Tokenizer for PreCut {
    fn tokenize(&self, input_text: &str) -> Vec<String> {
        input_text
            .split(' ')
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect()
    }
}

struct Doc {
    intent: usize,
    lang: Lang,
    terms: Vec<String>,
    norm: f32,
}

/// An intent and its score (0 to 1).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scored {
    pub intent: usize,
    pub score: f32,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Answer(Scored),
    /// Two intents are about equally likely: ask which one.
    Clarify(Scored, Scored),
    /// Nothing fits well enough; the best guess, if any.
    OutOfScope(Option<Scored>),
}

/// The knowledge base, indexed for matching. Built once per knowledge-base version.
pub struct Matcher {
    pub kb: Arc<KnowledgeBase>,
    synonyms: Synonyms,
    /// Mandarin sound-alikes of the knowledge base's words.
    homophones: Homophones,
    docs: Vec<Doc>,
    embedder: Embedder<u32, PreCut>,
    scorer: Scorer<u32, u32>,
    /// Examples holding each term.
    df: HashMap<String, u32>,
    /// (term, language) → the intents whose examples use it.
    vocabulary: HashMap<(String, Lang), Vec<usize>>,
    /// The intents' Mandarin titles, for the recogniser (see [`Matcher::expected_words`]).
    mandarin_titles: Option<Arc<str>>,
    semantic: Option<Semantic>,
}

/// How much of the titles goes to the recogniser (characters), as much as
/// `speech::asr::HINT_CHARS` takes: each costs decoding time, and 50 gained about half
/// as much as 100 (benches/RESULTS.md, change 7).
const HINT_CHARS: usize = 100;

/// The model, each intent's centroids, the knowledge base's own calibration, and the
/// classifier that ranks (`None` on a knowledge base too large to train it at load).
struct Semantic {
    encoder: Arc<Encoder>,
    centroids: Vec<Centroids>,
    calibration: Calibration,
    classifier: Option<Classifier>,
    /// The examples' token states, to re-rank the classifier's first few.
    aligned: align::Examples,
}

impl std::fmt::Debug for Matcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Matcher")
            .field("kb", &self.kb.name)
            .field("examples", &self.docs.len())
            .field("semantic", &self.semantic.is_some())
            .finish()
    }
}

impl Matcher {
    /// A matcher with the semantic re-ranker when `encoder` is given: every example
    /// question is embedded (or taken from what the encoder already knows).
    pub fn with_encoder(
        kb: Arc<KnowledgeBase>,
        encoder: Option<Arc<Encoder>>,
    ) -> Result<Self, EncodeError> {
        let mut m = Self::new(kb);
        if let Some(encoder) = encoder {
            // The examples, then the built-in unrelated questions (calibration's
            // stand-ins for out-of-scope questions far from the business).
            let mut texts: Vec<&str> =
                m.kb.intents
                    .iter()
                    .flat_map(|i| i.examples.iter().map(|e| e.text.as_str()))
                    .collect();
            let examples = texts.len();
            let unrelated: Vec<&str> = unrelated_questions().collect();
            texts.extend_from_slice(&unrelated);
            let mut embedded = encoder.examples(&texts)?;
            let unrelated: Vec<(Lang, Vector)> = unrelated
                .iter()
                .zip(embedded.split_off(examples))
                .map(|(t, e)| (Lang::detect(t), e.vector))
                .collect();
            let samples: Vec<Sample> = m
                .docs
                .iter()
                .zip(&embedded)
                .map(|(d, e)| Sample {
                    intent: d.intent,
                    lang: d.lang,
                    vector: e.vector.clone(),
                })
                .collect();
            let aligned = align::Examples::new(
                m.kb.intents.len(),
                m.docs
                    .iter()
                    .zip(&embedded)
                    .map(|(d, e)| (d.intent, d.lang, e.clone())),
            );
            let started = std::time::Instant::now();
            let centroids = centroids(&samples, m.kb.intents.len());
            let calibration = calibrate(&samples, &centroids, &unrelated);
            let classifier = Classifier::fit(&samples, m.kb.intents.len());
            tracing::info!(
                kb = %m.kb.name,
                ms = started.elapsed().as_millis() as u64,
                classifier = classifier.is_some(),
                "calibrated the matcher on the knowledge base's own examples"
            );
            m.semantic = Some(Semantic {
                encoder,
                centroids,
                calibration,
                classifier,
                aligned,
            });
        }
        Ok(m)
    }

    /// The same matcher reading Mandarin exactly as written, without putting sound-alikes
    /// back (to measure what they bring: `kefu kb eval --no-sound-alikes`).
    pub fn without_sound_alikes(mut self) -> Self {
        self.homophones = Homophones::default();
        self
    }

    /// Whether the semantic re-ranker is on.
    pub fn is_semantic(&self) -> bool {
        self.semantic.is_some()
    }

    /// Whether a classifier ranks intents (else centroids alone: a knowledge base
    /// too large to train one at load time).
    pub fn is_classified(&self) -> bool {
        self.semantic
            .as_ref()
            .is_some_and(|s| s.classifier.is_some())
    }

    /// What calibration found (with the semantic matcher only).
    pub fn calibration(&self) -> Option<&Calibration> {
        self.semantic.as_ref().map(|s| &s.calibration)
    }

    /// The words a caller speaking `lang` is likely to use, for the speech
    /// recogniser to favour over sound-alikes (退款, not 腿款): the intents' titles
    /// (see [`titles`]). Mandarin only (where it was measured: benches/RESULTS.md,
    /// issue 20).
    pub fn expected_words(&self, lang: Lang) -> Option<Arc<str>> {
        (lang == Lang::Zh).then(|| self.mandarin_titles.clone())?
    }

    /// A lexical-only matcher.
    pub fn new(kb: Arc<KnowledgeBase>) -> Self {
        let synonyms = Synonyms::new(&kb.synonyms);
        let mut docs = Vec::new();
        for (i, intent) in kb.intents.iter().enumerate() {
            for e in &intent.examples {
                let mut t = terms(&synonyms.apply(&normalize(&e.text)));
                t.sort();
                t.dedup();
                docs.push(Doc {
                    intent: i,
                    lang: e.lang,
                    terms: t,
                    norm: 0.0,
                });
            }
        }
        let mut df: HashMap<String, u32> = HashMap::new();
        for d in &docs {
            for t in &d.terms {
                *df.entry(t.clone()).or_default() += 1;
            }
        }
        let mandarin: Vec<String> = kb
            .intents
            .iter()
            .flat_map(|i| &i.examples)
            .filter(|e| e.lang == Lang::Zh)
            .map(|e| synonyms.apply(&normalize(&e.text)))
            .chain(kb.synonyms.iter().flatten().map(|w| normalize(w)))
            .collect();
        let homophones = Homophones::new(mandarin.iter().map(String::as_str));
        let mut vocabulary: HashMap<(String, Lang), Vec<usize>> = HashMap::new();
        for d in &docs {
            for t in &d.terms {
                let v = vocabulary.entry((t.clone(), d.lang)).or_default();
                if v.last() != Some(&d.intent) {
                    v.push(d.intent);
                }
            }
        }
        let joined: Vec<String> = docs.iter().map(|d| d.terms.join(" ")).collect();
        let corpus: Vec<&str> = joined.iter().map(String::as_str).collect();
        let embedder =
            EmbedderBuilder::<u32, PreCut>::with_tokenizer_and_fit_to_corpus(PreCut, &corpus)
                .build();
        let mut scorer = Scorer::<u32, u32>::new();
        for (i, text) in joined.iter().enumerate() {
            scorer.upsert(&(i as u32), embedder.embed(text));
        }
        let mandarin_titles = titles(&kb, Lang::Zh);
        let mut m = Self {
            kb,
            mandarin_titles,
            synonyms,
            homophones,
            docs,
            embedder,
            scorer,
            df,
            vocabulary,
            semantic: None,
        };
        for i in 0..m.docs.len() {
            let norm = m.docs[i]
                .terms
                .iter()
                .map(|t| m.weight(t).powi(2))
                .sum::<f32>()
                .sqrt();
            m.docs[i].norm = norm;
        }
        m
    }

    fn weight(&self, term: &str) -> f32 {
        let n = self.docs.len() as f32;
        let df = self.df.get(term).copied().unwrap_or(0) as f32;
        let idf = (1.0 + (n - df + 0.5) / (df + 0.5)).ln();
        if term.starts_with('#') {
            idf * CHAR_WEIGHT
        } else {
            idf
        }
    }

    /// Intents ranked by score, best first (at most `limit`). `previous` is the intent
    /// answered last in this conversation, which makes its follow-ups likelier.
    pub fn rank(
        &self,
        text: &str,
        lang: Lang,
        previous: Option<usize>,
        limit: usize,
    ) -> Vec<Scored> {
        let text = self.heard(text, lang);
        let text = text.as_ref();
        let mut scores = self.lexical(text, lang);
        if let Some(sem) = self.semantic_scores(text, lang, &scores) {
            scores = sem
                .into_iter()
                .enumerate()
                .filter_map(|(intent, s)| s.map(|s| (intent, s)))
                .collect();
        }
        let mut ranked: Vec<Scored> = scores
            .into_iter()
            .map(|(intent, mut score)| {
                // In context, follow-ups of the last answer gain and follow-ups of
                // anything else lose: "and on Sunday?" after opening hours is about
                // opening hours, not weekend delivery.
                if let Some(p) = previous {
                    let after = &self.kb.intents[intent].after;
                    if after.iter().any(|a| *a == self.kb.intents[p].id) {
                        score = (score + FOLLOW_UP_BOOST).min(1.0);
                    } else if !after.is_empty() {
                        score = (score - FOLLOW_UP_BOOST).max(0.0);
                    }
                }
                Scored { intent, score }
            })
            .collect();
        ranked.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.intent.cmp(&b.intent)));
        ranked.truncate(limit);
        ranked
    }

    /// Computes what [`Matcher::rank`] will need from the sentence-embedding model
    /// for this message, so an async edge can pay for it on a blocking thread.
    pub fn warm(&self, text: &str, lang: Lang) {
        let text = self.heard(text, lang);
        let text = text.as_ref();
        if let Some(sem) = &self.semantic
            && self.needs_semantic(&self.lexical(text, lang))
        {
            match sem.encoder.message(text) {
                Ok(_) => {}
                // The reply (on the async runtime) must not run the model instead.
                Err(EncodeError::Busy) => sem.encoder.refuse(text),
                Err(e) => tracing::warn!(error = %e, "sentence embedding failed"),
            }
        }
    }

    /// A Mandarin message with its sound-alikes of the knowledge base's words put back
    /// ([`Homophones`]); any other message as it is.
    fn heard<'a>(&self, text: &'a str, lang: Lang) -> Cow<'a, str> {
        if lang != Lang::Zh {
            return Cow::Borrowed(text);
        }
        match self.homophones.correct(&normalize(text)) {
            Cow::Owned(corrected) => {
                tracing::debug!(%text, %corrected, "sound-alike words corrected");
                Cow::Owned(corrected)
            }
            Cow::Borrowed(_) => Cow::Borrowed(text),
        }
    }

    fn needs_semantic(&self, lexical: &HashMap<usize, f32>) -> bool {
        lexical.values().all(|s| *s < SEMANTIC_GATE)
    }

    /// Each intent's semantic confidence (0–1, by index; `None` for an intent without
    /// examples), when the message needs it.
    fn semantic_scores(
        &self,
        text: &str,
        lang: Lang,
        lexical: &HashMap<usize, f32>,
    ) -> Option<Vec<Option<f32>>> {
        let sem = self.semantic.as_ref()?;
        if !self.needs_semantic(lexical) || text.trim().is_empty() {
            return None;
        }
        let count = |outcome| {
            crate::metrics::metrics()
                .semantic
                .get_or_create(&crate::metrics::OutcomeLabel { outcome })
                .inc();
        };
        let q = match sem.encoder.message(text) {
            Ok(q) => q,
            Err(EncodeError::Busy) => {
                count("busy");
                tracing::debug!("sentence-embedding model busy; matching by words only");
                return None;
            }
            Err(e) => {
                count("failed");
                tracing::warn!(error = %e, "sentence embedding failed; matching by words only");
                return None;
            }
        };
        count("used");
        let scale = sem.calibration.scale(lang);
        let answer = self.kb.thresholds.answer;
        let mut raw: Vec<Option<f32>> = sem
            .centroids
            .iter()
            .map(|c| c.score(&q.vector, lang))
            .collect();
        // The classifier ranks; the best centroid score says how sure we are (it was
        // calibrated): the classifier's choice takes that score, and the intent that
        // had it takes the choice's. The classifier learnt the language of each
        // intent's examples too, so it decides only between intents that have some
        // in the message's language: an intent without (English examples only, a
        // Mandarin question) competes through the centroids' lift alone.
        let speaks = |k: usize| sem.centroids[k].by_lang.contains_key(&lang);
        // Word-by-word alignment with the examples re-orders its first few.
        let mut odds = sem.classifier.as_ref().and_then(|c| c.log_odds(&q.vector));
        if let Some(odds) = odds.as_mut() {
            align::rerank(odds, |k| sem.aligned.best(k, lang, &q));
        }
        let chosen = odds.as_deref().and_then(classifier::first);
        let mut ranked_by_classifier = None;
        if let Some(chosen) = chosen
            && raw.get(chosen).is_some_and(Option::is_some)
            && let Some((best, _)) = raw
                .iter()
                .enumerate()
                .filter_map(|(k, r)| r.map(|r| (k, r)))
                .max_by(|a, b| a.1.total_cmp(&b.1))
            && speaks(chosen)
            && speaks(best)
        {
            raw.swap(chosen, best);
            ranked_by_classifier = Some(chosen);
        }
        let mut confidence: Vec<Option<f32>> = raw
            .into_iter()
            .map(|r| r.map(|raw| scale.confidence(raw, answer)))
            .collect();
        if let (Some(top), Some(odds)) = (ranked_by_classifier, &odds) {
            keep_implausible_below(
                &mut confidence,
                top,
                odds,
                self.kb.thresholds.margin,
                speaks,
            );
        }
        Some(confidence)
    }

    /// Intent → lexical score, for the intents that share any term with the message.
    fn lexical(&self, text: &str, lang: Lang) -> HashMap<usize, f32> {
        let mut q = terms(&self.synonyms.apply(&normalize(text)));
        q.sort();
        q.dedup();
        if q.is_empty() {
            return HashMap::new();
        }
        let q_weights: HashMap<&str, f32> =
            q.iter().map(|t| (t.as_str(), self.weight(t))).collect();
        let q_norm = q_weights.values().map(|w| w * w).sum::<f32>().sqrt();
        let hits = self.scorer.matches(&self.embedder.embed(&q.join(" ")));
        let mut best: HashMap<usize, f32> = HashMap::new();
        for hit in hits
            .iter()
            .filter(|h| self.docs[h.id as usize].lang == lang)
            .take(CANDIDATES)
        {
            let doc = &self.docs[hit.id as usize];
            let shared: f32 = doc
                .terms
                .iter()
                .filter_map(|t| q_weights.get(t.as_str()))
                .map(|w| w * w)
                .sum();
            let cos = shared / (q_norm * doc.norm).max(f32::EPSILON);
            let e = best.entry(doc.intent).or_default();
            *e = e.max(cos);
        }
        // How much of the message each intent's examples cover, taken together: a
        // paraphrase shares words with several examples rather than all with one.
        let mut covered: HashMap<usize, f32> = HashMap::new();
        for (t, w) in &q_weights {
            if let Some(intents) = self.vocabulary.get(&(t.to_string(), lang)) {
                for &i in intents {
                    *covered.entry(i).or_default() += w * w;
                }
            }
        }
        let q_sq = q_norm * q_norm;
        covered
            .into_iter()
            .map(|(intent, c)| {
                let cos = best.get(&intent).copied().unwrap_or(0.0);
                (
                    intent,
                    EXAMPLE_WEIGHT * cos + (1.0 - EXAMPLE_WEIGHT) * c / q_sq.max(f32::EPSILON),
                )
            })
            .collect()
    }

    /// Answer, ask back, or admit it is out of scope.
    pub fn decide(&self, ranked: &[Scored]) -> Outcome {
        decide(&self.kb.thresholds, ranked)
    }

    pub fn classify(
        &self,
        text: &str,
        lang: Lang,
        previous: Option<usize>,
    ) -> (Outcome, Vec<Scored>) {
        let ranked = self.rank(text, lang, previous, 5);
        (self.decide(&ranked), ranked)
    }
}

/// "Do you mean A or B?" only when B is plausible: an intent the classifier finds
/// less than half as likely as its first (`top`; `odds` are its log odds against
/// it), among those it may judge (`judged`: with examples in the message's
/// language), is kept at least two margins below the first, so [`decide`] does not
/// ask back about it. Centroid scores of neighbouring intents are close in a narrow
/// business (a line's balance and its bill); asking back whenever they were close
/// turned away customers the classifier had placed right (benches/RESULTS.md, change
/// 5: 14 of 202 development questions with six examples per language were asked
/// back, 9 with this rule).
fn keep_implausible_below(
    confidence: &mut [Option<f32>],
    top: usize,
    odds: &[Option<f32>],
    margin: f32,
    judged: impl Fn(usize) -> bool,
) {
    let Some(top_confidence) = confidence.get(top).copied().flatten() else {
        return;
    };
    let cap = top_confidence - 2.0 * margin;
    for (k, c) in confidence.iter_mut().enumerate() {
        if let (Some(c), Some(o)) = (c.as_mut(), odds.get(k).copied().flatten())
            && k != top
            && judged(k)
            && o < -std::f32::consts::LN_2
        {
            *c = c.min(cap).max(0.0);
        }
    }
}

/// The intents' titles in `lang`, each once, joined by "、" up to [`HINT_CHARS`]:
/// the knowledge base's own first, then the built-in small talk's.
fn titles(kb: &KnowledgeBase, lang: Lang) -> Option<Arc<str>> {
    let (mut joined, mut used) = (String::new(), 0);
    let mut seen = HashSet::new();
    let (built_in, own): (Vec<_>, Vec<_>) = kb.intents.iter().partition(|i| i.is_built_in());
    for title in own
        .iter()
        .chain(&built_in)
        .filter_map(|i| i.title.get(lang))
    {
        let title = title.trim();
        if title.is_empty() || !seen.insert(title) {
            continue;
        }
        let length = title.chars().count() + usize::from(used > 0);
        if used + length > HINT_CHARS {
            continue;
        }
        if used > 0 {
            joined.push('、');
        }
        joined.push_str(title);
        used += length;
    }
    (!joined.is_empty()).then(|| Arc::from(joined))
}

pub fn decide(t: &Thresholds, ranked: &[Scored]) -> Outcome {
    let Some(&top) = ranked.first() else {
        return Outcome::OutOfScope(None);
    };
    let second = ranked.get(1).copied();
    if let Some(s) = second
        && s.score >= t.clarify
        && top.score - s.score < t.margin
    {
        return Outcome::Clarify(top, s);
    }
    if top.score >= t.answer {
        Outcome::Answer(top)
    } else {
        Outcome::OutOfScope(Some(top))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialogue::kb::load_files;
    use std::path::PathBuf;

    fn matcher(text: &str) -> Matcher {
        let kb = load_files(&[(PathBuf::from("t.toml"), text.to_string())]).unwrap();
        Matcher::new(Arc::new(kb))
    }

    const KB: &str = r#"
[synonyms]
en = [["refund", "money back", "reimburse"]]
zh = [["退款", "退钱"]]

[intents.hours]
title = { en = "opening hours", zh = "营业时间" }
examples.en = ["what are your opening hours", "when do you open", "what time do you close"]
examples.zh = ["你们几点开门", "营业时间是什么", "几点关门"]
answer = { en = "9 to 6.", zh = "九点到六点。" }

[intents.hours_weekend]
title = { en = "weekend hours", zh = "周末营业时间" }
after = ["hours"]
examples.en = ["are you open at weekends", "and on saturday", "what about sunday"]
examples.zh = ["周末开门吗", "星期六营业吗", "那周末呢"]
answer = { en = "10 to 4.", zh = "十点到四点。" }

[intents.refund]
title = { en = "refunds", zh = "退款" }
examples.en = ["how do i get a refund", "when will i get my refund", "refund status"]
examples.zh = ["怎么退款", "退款什么时候到账", "我要退款"]
answer = { en = "Refunds take 3 days.", zh = "退款三天到账。" }
"#;

    fn top(m: &Matcher, text: &str, prev: Option<&str>) -> (String, f32) {
        let lang = Lang::detect(text);
        let prev = prev.and_then(|p| m.kb.intent_index(p));
        let r = m.rank(text, lang, prev, 5);
        (m.kb.intents[r[0].intent].id.clone(), r[0].score)
    }

    #[test]
    fn the_recogniser_is_told_the_mandarin_titles() {
        let m = matcher(KB);
        let words = m.expected_words(Lang::Zh).unwrap();
        // The knowledge base's own titles first, then the small talk's (转人工: a person).
        assert!(
            words.starts_with("营业时间、周末营业时间、退款、"),
            "{words}"
        );
        assert!(words.contains("转人工"), "{words}");
        assert_eq!(m.expected_words(Lang::En), None);
        // As many whole titles as fit, each once.
        let long: String = (0..60)
            .map(|i| format!("[intents.t{i}]\ntitle = {{ zh = \"标题{i:02}\" }}\nexamples.zh = [\"问题{i}\"]\nanswer.zh = \"好\"\n"))
            .collect();
        let words = matcher(&long).expected_words(Lang::Zh).unwrap();
        assert!(words.chars().count() <= HINT_CHARS, "{words}");
        assert!(words.starts_with("标题00、标题01、"), "{words}");
        assert!(!words.contains("标题59"), "{words}");
    }

    #[test]
    fn matches_paraphrases_in_both_languages() {
        let m = matcher(KB);
        assert_eq!(top(&m, "What time do you open?", None).0, "hours");
        assert_eq!(top(&m, "請問幾點開門", None).0, "hours");
        assert_eq!(top(&m, "I'd like my money back", None).0, "refund");
        assert_eq!(top(&m, "能退钱吗", None).0, "refund");
        assert_eq!(top(&m, "hello", None).0, "greeting");
    }

    #[test]
    fn follow_ups_win_in_context() {
        let m = matcher(KB);
        let (id, _) = top(&m, "and at the weekend?", Some("hours"));
        assert_eq!(id, "hours_weekend");
        let (id, _) = top(&m, "那星期天呢", Some("hours"));
        assert_eq!(id, "hours_weekend");
    }

    #[test]
    fn unknown_words_lower_confidence() {
        let m = matcher(KB);
        let (_, known) = top(&m, "when do you open", None);
        let (_, unknown) = top(&m, "when does the volcano museum in Reykjavik open", None);
        assert!(known > 0.9, "{known}");
        assert!(unknown < known - 0.4, "{unknown}");
        let (o, _) = m.classify("what is the weather like on mars", Lang::En, None);
        assert!(matches!(o, Outcome::OutOfScope(_)), "{o:?}");
        let (o, _) = m.classify("zebra", Lang::En, None);
        assert_eq!(o, Outcome::OutOfScope(None));
    }

    #[test]
    fn only_pairs_the_classifier_finds_plausible_are_asked_about() {
        let t = Thresholds::default();
        let ranked = |confidence: &[Option<f32>]| {
            let mut r: Vec<Scored> = confidence
                .iter()
                .enumerate()
                .filter_map(|(intent, s)| s.map(|score| Scored { intent, score }))
                .collect();
            r.sort_by(|a, b| b.score.total_cmp(&a.score));
            r
        };
        let close = [Some(0.60), Some(0.59), Some(0.58), None];
        // The confidences after the rule, intent 0 first, with these log odds.
        let after = |second: f32, judged: fn(usize) -> bool| {
            let mut c = close;
            let odds = [Some(0.0), Some(second), Some(-2.0), None];
            keep_implausible_below(&mut c, 0, &odds, t.margin, judged);
            c
        };
        // Intent 1 is nearly as likely as 0: still asked about.
        let c = after(-0.1, |_| true);
        assert_eq!(c[1], Some(0.59));
        assert!((c[2].unwrap() - (0.60 - 2.0 * t.margin)).abs() < 1e-6);
        assert!(
            matches!(decide(&t, &ranked(&c)), Outcome::Clarify(a, b) if a.intent == 0 && b.intent == 1)
        );
        // Both far less likely: the first is answered.
        let c = after(-1.0, |_| true);
        assert!(matches!(decide(&t, &ranked(&c)), Outcome::Answer(a) if a.intent == 0));
        // An intent the classifier may not judge keeps its score, and is asked about.
        let c = after(-1.0, |k| k != 1);
        assert_eq!(c[1], Some(0.59));
        assert!(matches!(decide(&t, &ranked(&c)), Outcome::Clarify(..)));
    }

    #[test]
    fn close_candidates_are_clarified() {
        let t = Thresholds::default();
        let a = Scored {
            intent: 0,
            score: 0.6,
        };
        let b = Scored {
            intent: 1,
            score: 0.58,
        };
        assert_eq!(decide(&t, &[a, b]), Outcome::Clarify(a, b));
        let b = Scored {
            intent: 1,
            score: 0.3,
        };
        assert_eq!(decide(&t, &[a, b]), Outcome::Answer(a));
        assert_eq!(
            decide(
                &t,
                &[Scored {
                    intent: 0,
                    score: 0.2
                }]
            ),
            Outcome::OutOfScope(Some(Scored {
                intent: 0,
                score: 0.2
            }))
        );
    }

    #[test]
    fn mandarin_sound_alikes_find_their_intent() {
        let m = matcher(KB);
        // 腿款 (tuǐ kuǎn) as a recogniser hears 退款; 银夜 (yín yè) for 营业.
        let (intent, heard) = top(&m, "我要腿款", None);
        assert_eq!(intent, "refund");
        assert_eq!(top(&m, "银夜时间是什么", None).0, "hours");
        // Read as written, the words share nothing with the examples.
        let as_written = matcher(KB).without_sound_alikes();
        let best = as_written.rank("我要腿款", Lang::Zh, None, 5);
        assert!(best.first().is_none_or(|s| s.score < heard), "{best:?}");
    }
}
