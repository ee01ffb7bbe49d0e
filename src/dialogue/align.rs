//! Word-by-word alignment between a message and example questions (BERTScore-style),
//! used to re-rank the few intents the classifier likes best.
//!
//! A sentence embedding averages a question into one point, and with five or six
//! examples per intent two neighbouring intents' points can be close (a line's bill
//! and its balance). Aligning each word of the message with its most similar word of
//! an example, and each word of the example with the message's, in the encoder's
//! contextual token states (rare words weighing more), tells such pairs apart by the
//! words that matter. On the development sets (benches/RESULTS.md, change 8) it put
//! the right intent first 1–4 points more often in both languages; it is only a
//! ranking signal: whether to answer is still decided by the calibrated centroid score.
//!
//! Token states are kept as unit vectors rounded to 8 bits (a prototype found the
//! same rankings as with 32-bit floats), so a knowledge base's examples cost about
//! 4 KB each. Pure computation: token states in, numbers out.

use std::collections::HashMap;

use super::Lang;
use super::semantic::{DIM, Embedding, cosine};

/// The intents the classifier ranks highest that alignment may re-order.
pub const CANDIDATES: usize = 5;

/// Log-odds gained per unit of alignment (F1 of the aligned words' similarities)
/// over the classifier's first choice: alignment differences between intents are a
/// few hundredths, so this lets a clearly better-aligned intent overtake one the
/// classifier prefers by less than about half a unit of log-odds. Chosen on the
/// development sets only (10–20 ranked alike; benches/RESULTS.md, change 8).
pub const WEIGHT: f32 = 15.0;

/// Examples of one intent in one language aligned with a message at most: an intent
/// with more is aligned through the ones whose embeddings are nearest the message's.
/// This bounds the work a message costs whatever a knowledge base holds (the demo's
/// intents have at most 12 per language, the frozen sets' 6).
pub const MAX_ALIGNED: usize = 16;

/// 8-bit scale of a unit vector's components.
const SCALE: f32 = 127.0;

/// One text's contextual token states: its tokens' ids and their unit-length states
/// (without the prefix and the sentence markers), rounded to 8 bits.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenStates {
    ids: Box<[u32]>,
    states: Box<[i8]>,
}

impl TokenStates {
    /// From each token's id and its state (`DIM` floats per token, row after row).
    /// `None` when the two disagree in length.
    pub fn new(ids: Vec<u32>, states: &[f32]) -> Option<Self> {
        if states.len() != ids.len() * DIM {
            return None;
        }
        let mut quantised = Vec::with_capacity(states.len());
        for row in states.chunks_exact(DIM) {
            let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
            quantised.extend(
                row.iter()
                    .map(|x| (x / norm * SCALE).round().clamp(-SCALE, SCALE) as i8),
            );
        }
        Some(Self {
            ids: ids.into(),
            states: quantised.into(),
        })
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    fn row(&self, i: usize) -> &[i8] {
        &self.states[i * DIM..(i + 1) * DIM]
    }

    /// Appends the cache's form: token count (u16), ids (u32 each), states (i8).
    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.ids.len() as u16).to_le_bytes());
        for id in self.ids.iter() {
            out.extend_from_slice(&id.to_le_bytes());
        }
        out.extend(self.states.iter().map(|&s| s as u8));
    }

    /// Reads what [`TokenStates::write`] wrote at `bytes[*at..]`, moving `at` past it;
    /// `None` when the bytes end too soon.
    pub fn read(bytes: &[u8], at: &mut usize) -> Option<Self> {
        let count = u16::from_le_bytes(bytes.get(*at..*at + 2)?.try_into().ok()?) as usize;
        let ids_end = *at + 2 + count * 4;
        let end = ids_end + count * DIM;
        let ids = bytes
            .get(*at + 2..ids_end)?
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect::<Vec<_>>();
        let states = bytes.get(ids_end..end)?.iter().map(|&b| b as i8).collect();
        *at = end;
        Some(Self {
            ids: ids.into(),
            states,
        })
    }
}

/// How rare each token is among a knowledge base's examples: inverse document
/// frequency, ln((examples + 1) / (examples using it + 1)).
#[derive(Debug, Default)]
pub struct Rarity {
    used_by: HashMap<u32, u32>,
    examples: u32,
}

impl Rarity {
    pub fn new<'a>(examples: impl IntoIterator<Item = &'a TokenStates>) -> Self {
        let mut r = Self::default();
        for e in examples {
            r.examples += 1;
            let mut ids: Vec<u32> = e.ids.to_vec();
            ids.sort_unstable();
            ids.dedup();
            for id in ids {
                *r.used_by.entry(id).or_default() += 1;
            }
        }
        r
    }

    fn weight(&self, id: u32) -> f32 {
        let used = self.used_by.get(&id).copied().unwrap_or(0);
        ((self.examples as f32 + 1.0) / (used as f32 + 1.0)).ln()
    }
}

/// A knowledge base's example questions' token states, by intent, and how rare each
/// token is among them.
#[derive(Debug, Default)]
pub struct Examples {
    by_intent: Vec<Vec<(Lang, Embedding)>>,
    rarity: Rarity,
}

impl Examples {
    /// From (intent index, language, what the model made of it) for every example.
    pub fn new(
        intents: usize,
        examples: impl IntoIterator<Item = (usize, Lang, Embedding)>,
    ) -> Self {
        let mut by_intent = vec![Vec::new(); intents];
        for (intent, lang, embedding) in examples {
            if let Some(list) = by_intent.get_mut(intent) {
                list.push((lang, embedding));
            }
        }
        let rarity = Rarity::new(by_intent.iter().flatten().map(|(_, e)| e.tokens.as_ref()));
        Self { by_intent, rarity }
    }

    /// How well `message` aligns with the best of `intent`'s examples in `lang`
    /// (`None` when it has none in that language); of more than [`MAX_ALIGNED`], the
    /// nearest to the message by embedding are aligned.
    pub fn best(&self, intent: usize, lang: Lang, message: &Embedding) -> Option<f32> {
        let mut candidates: Vec<&Embedding> = self
            .by_intent
            .get(intent)?
            .iter()
            .filter(|(l, _)| *l == lang)
            .map(|(_, e)| e)
            .collect();
        if candidates.len() > MAX_ALIGNED {
            let mut near: Vec<(f32, &Embedding)> = candidates
                .into_iter()
                .map(|e| (cosine(&message.vector, &e.vector), e))
                .collect();
            near.sort_by(|a, b| b.0.total_cmp(&a.0));
            candidates = near.into_iter().take(MAX_ALIGNED).map(|(_, e)| e).collect();
        }
        candidates
            .into_iter()
            .filter_map(|e| alignment(&message.tokens, &e.tokens, &self.rarity))
            .max_by(f32::total_cmp)
    }
}

/// How well a message and an example align: the F1 of their rarity-weighted best
/// matches (precision over the message's tokens, recall over the example's), each
/// match the cosine between two token states (each side's average taken as 0 when
/// below it). `None` when either side has no token or no weight.
pub fn alignment(message: &TokenStates, example: &TokenStates, rarity: &Rarity) -> Option<f32> {
    let (m, e) = (message.len(), example.len());
    if m == 0 || e == 0 {
        return None;
    }
    let mut best_for_message = vec![f32::MIN; m];
    let mut best_for_example = vec![f32::MIN; e];
    for (i, best_m) in best_for_message.iter_mut().enumerate() {
        let a = message.row(i);
        for (j, best_e) in best_for_example.iter_mut().enumerate() {
            let dot: i32 = a
                .iter()
                .zip(example.row(j))
                .map(|(&x, &y)| i32::from(x) * i32::from(y))
                .sum();
            let cos = dot as f32 / (SCALE * SCALE);
            *best_m = best_m.max(cos);
            *best_e = best_e.max(cos);
        }
    }
    let weighted = |ids: &[u32], best: &[f32]| {
        let (mut sum, mut weight) = (0.0, 0.0);
        for (&id, &b) in ids.iter().zip(best) {
            let w = rarity.weight(id);
            sum += w * b;
            weight += w;
        }
        (weight > 0.0).then(|| sum / weight)
    };
    let precision = weighted(&message.ids, &best_for_message)?.max(0.0);
    let recall = weighted(&example.ids, &best_for_example)?.max(0.0);
    let sum = precision + recall;
    Some(if sum > f32::EPSILON {
        2.0 * precision * recall / sum
    } else {
        0.0
    })
}

/// Re-ranks the classifier's log odds (0 for its first choice, `None` for intents it
/// may not judge): each of the [`CANDIDATES`] intents it ranks highest for which
/// `aligned` gives a figure gains [`WEIGHT`] × (that figure − the first choice's);
/// the odds are then shifted so the new first is 0 again. Without a figure for the
/// first choice nothing changes.
pub fn rerank(odds: &mut [Option<f32>], aligned: impl Fn(usize) -> Option<f32>) {
    let mut ranked: Vec<(usize, f32)> = odds
        .iter()
        .enumerate()
        .filter_map(|(k, o)| o.map(|o| (k, o)))
        .collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    ranked.truncate(CANDIDATES);
    let Some(&(first, _)) = ranked.first() else {
        return;
    };
    let Some(base) = aligned(first) else {
        return;
    };
    for (k, _) in ranked.into_iter().skip(1) {
        if let (Some(a), Some(o)) = (aligned(k), odds[k].as_mut()) {
            *o += WEIGHT * (a - base);
        }
    }
    let best = odds.iter().flatten().copied().fold(f32::MIN, f32::max);
    for o in odds.iter_mut().flatten() {
        *o -= best;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// Token states pointing along the given axes (one token per axis).
    fn tokens(axes: &[(u32, usize)]) -> TokenStates {
        let mut states = vec![0.0; axes.len() * DIM];
        for (i, &(_, axis)) in axes.iter().enumerate() {
            states[i * DIM + axis] = 2.0;
        }
        TokenStates::new(axes.iter().map(|a| a.0).collect(), &states).unwrap()
    }

    #[test]
    fn shared_rare_words_align_better_than_shared_common_ones() {
        // Token 1 ("my") is in every example; 7 ("bill") and 8 ("balance") are rare.
        let bill = tokens(&[(1, 0), (7, 7)]);
        let balance = tokens(&[(1, 0), (8, 8)]);
        let others: Vec<TokenStates> = (20..26).map(|id| tokens(&[(1, 0), (id, 20)])).collect();
        let rarity = Rarity::new(others.iter().chain([&bill, &balance]));
        let message = tokens(&[(1, 0), (7, 7), (9, 30)]);
        let with_bill = alignment(&message, &bill, &rarity).unwrap();
        let with_balance = alignment(&message, &balance, &rarity).unwrap();
        assert!(
            with_bill > with_balance + 0.2,
            "{with_bill} vs {with_balance}"
        );
        let same = alignment(&bill, &bill, &rarity).unwrap();
        assert!((same - 1.0).abs() < 1e-3, "{same}");
        assert_eq!(alignment(&tokens(&[]), &bill, &rarity), None);
    }

    /// An example whose embedding points along `near` and whose tokens are `axes`.
    fn example(near: usize, axes: &[(u32, usize)]) -> Embedding {
        let mut v = vec![0.0; DIM];
        v[near] = 1.0;
        Embedding {
            vector: v.into(),
            tokens: Arc::new(tokens(axes)),
        }
    }

    #[test]
    fn an_intent_aligns_through_its_best_example_in_the_language() {
        let examples = Examples::new(
            3,
            [
                (0, Lang::En, example(0, &[(7, 7)])),
                (0, Lang::En, example(0, &[(8, 8)])),
                (0, Lang::Zh, example(0, &[(9, 9)])),
                (1, Lang::En, example(0, &[(10, 10)])),
                (5, Lang::En, example(0, &[(11, 11)])),
            ],
        );
        let message = example(0, &[(8, 8)]);
        assert_eq!(examples.best(0, Lang::En, &message), Some(1.0));
        assert_eq!(examples.best(0, Lang::Zh, &message), Some(0.0));
        assert_eq!(examples.best(1, Lang::En, &message), Some(0.0));
        assert_eq!(examples.best(2, Lang::En, &message), None);
        assert_eq!(examples.best(5, Lang::En, &message), None);
    }

    #[test]
    fn of_many_examples_only_the_nearest_few_are_aligned() {
        // 40 examples far from the message by embedding (axis 1), one of them
        // with the message's very tokens, and MAX_ALIGNED near ones that share none.
        let mut list: Vec<(usize, Lang, Embedding)> = (0..40)
            .map(|i| (0, Lang::En, example(1, &[(100 + i, 40)])))
            .collect();
        list.push((0, Lang::En, example(1, &[(8, 8)])));
        list.extend((0..MAX_ALIGNED).map(|i| (0, Lang::En, example(0, &[(200 + i as u32, 50)]))));
        let examples = Examples::new(1, list);
        let message = example(0, &[(8, 8)]);
        assert_eq!(examples.best(0, Lang::En, &message), Some(0.0));
        // Among few, every example is aligned.
        let few = Examples::new(
            1,
            [
                (0, Lang::En, example(1, &[(8, 8)])),
                (0, Lang::En, example(0, &[(9, 9)])),
            ],
        );
        assert_eq!(few.best(0, Lang::En, &message), Some(1.0));
    }

    #[test]
    fn token_states_round_trip_through_the_cache_form() {
        let t = tokens(&[(5, 3), (70_000, 100)]);
        let mut bytes = vec![9];
        t.write(&mut bytes);
        let mut at = 1;
        assert_eq!(TokenStates::read(&bytes, &mut at), Some(t));
        assert_eq!(at, bytes.len());
        let mut at = 1;
        assert_eq!(TokenStates::read(&bytes[..bytes.len() - 1], &mut at), None);
        assert!(TokenStates::new(vec![1, 2], &[0.0; DIM]).is_none());
    }

    #[test]
    fn a_better_aligned_candidate_overtakes_a_close_first_choice() {
        let mut odds = vec![Some(0.0), Some(-0.3), None, Some(-5.0)];
        let aligned = [Some(0.80), Some(0.85), Some(0.99), Some(0.99)];
        rerank(&mut odds, |k| aligned[k]);
        // 1 gains 0.75 over 0 and comes first; 3 gains as much but was far behind.
        assert_eq!(odds[1], Some(0.0));
        assert!((odds[0].unwrap() + 0.45).abs() < 1e-5, "{odds:?}");
        assert!(odds[3].unwrap() < -2.0, "{odds:?}");
        assert_eq!(odds[2], None);
        // Without a figure for the first choice, nothing moves.
        let mut odds = vec![Some(0.0), Some(-0.3)];
        rerank(&mut odds, |k| (k == 1).then_some(0.9));
        assert_eq!(odds, vec![Some(0.0), Some(-0.3)]);
    }
}
