//! A softmax classifier over the knowledge base's example embeddings, fitted at load
//! time: it ranks intents for the semantic matcher.
//!
//! Centroids treat every direction of the embedding alike; a few examples per intent
//! differ from the neighbouring intents' in a few directions only (a refund's
//! status against its timing), and a linear classifier learns those. On the
//! development set it ranks the right intent first for 96.5 % of in-scope questions
//! against the centroids' 93.6 % (95.0 against 90.6 % with six examples per
//! language; benches/RESULTS.md), while
//! the centroids' calibrated raw score still decides whether to answer at all
//! ([`super::calibrate`]): probabilities of a classifier trained on every intent say
//! little about a question that fits none.
//!
//! Multinomial logistic regression with a weak L2 penalty, full-batch Adam for a fixed
//! number of epochs (the result barely moves between 100 and 300 epochs or learning
//! rates from 0.02 to 0.1). The matrix products run in `ndarray` (matrixmultiply).
//! Training cost grows with examples × intents; above [`MAX_CELLS`] the matcher ranks by
//! centroids alone, and `kefu kb check` says so. Pure computation: vectors in,
//! numbers out.

use ndarray::{Array1, Array2, ArrayView1, Axis};

use super::calibrate::Sample;

/// At most this many (example, intent) pairs: about a second and a half of training on
/// one core (0.16 s for the demo's 55,000).
pub const MAX_CELLS: usize = 500_000;
const EPOCHS: usize = 100;
const LEARNING_RATE: f32 = 0.05;
/// The L2 penalty is 1 / (C × examples), as in the usual formulation with C = 100:
/// weak, since the examples are few and unit length.
const INVERSE_PENALTY: f32 = 100.0;
const BETA1: f32 = 0.9;
const BETA2: f32 = 0.999;
const EPSILON: f32 = 1e-8;

/// Weights (dimensions × intents) and a bias per intent.
#[derive(Clone, Debug)]
pub struct Classifier {
    weights: Array2<f32>,
    bias: Array1<f32>,
    /// Intents that had examples: the only ones it may pick.
    trained: Vec<bool>,
}

/// Adam's running moments for one parameter.
struct Moments<D: ndarray::Dimension> {
    first: ndarray::Array<f32, D>,
    second: ndarray::Array<f32, D>,
}

impl<D: ndarray::Dimension> Moments<D> {
    fn new(shape: D) -> Self {
        Self {
            first: ndarray::Array::zeros(shape.clone()),
            second: ndarray::Array::zeros(shape),
        }
    }

    fn step(&mut self, param: &mut ndarray::Array<f32, D>, grad: &ndarray::Array<f32, D>, t: i32) {
        let (c1, c2) = (1.0 - BETA1.powi(t), 1.0 - BETA2.powi(t));
        ndarray::Zip::from(param)
            .and(&mut self.first)
            .and(&mut self.second)
            .and(grad)
            .for_each(|p, m, v, &g| {
                *m = BETA1 * *m + (1.0 - BETA1) * g;
                *v = BETA2 * *v + (1.0 - BETA2) * g * g;
                *p -= LEARNING_RATE * (*m / c1) / ((*v / c2).sqrt() + EPSILON);
            });
    }
}

impl Classifier {
    /// Fits on the examples; `None` when there is nothing to tell apart (fewer than two
    /// intents with examples) or training would cost more than [`MAX_CELLS`] allows.
    pub fn fit(samples: &[Sample], intents: usize) -> Option<Self> {
        let mut trained = vec![false; intents];
        for s in samples {
            if let Some(t) = trained.get_mut(s.intent) {
                *t = true;
            }
        }
        let dim = samples.first()?.vector.len();
        if trained.iter().filter(|t| **t).count() < 2 || samples.len() * intents > MAX_CELLS {
            return None;
        }
        let n = samples.len();
        let mut x = Array2::<f32>::zeros((n, dim));
        let mut y = Array2::<f32>::zeros((n, intents));
        for (i, s) in samples.iter().enumerate() {
            if s.vector.len() != dim || s.intent >= intents {
                return None;
            }
            x.row_mut(i).assign(&ArrayView1::from(&s.vector[..]));
            y[[i, s.intent]] = 1.0;
        }
        let mut weights = Array2::<f32>::zeros((dim, intents));
        let mut bias = Array1::<f32>::zeros(intents);
        let (mut mw, mut mb) = (
            Moments::new(weights.raw_dim()),
            Moments::new(bias.raw_dim()),
        );
        let penalty = 1.0 / (INVERSE_PENALTY * n as f32);
        let xt = x.t();
        for epoch in 1..=EPOCHS as i32 {
            let mut p = x.dot(&weights) + &bias;
            softmax_rows(&mut p, &trained);
            // d(mean cross-entropy)/d(logits)
            let g = (p - &y) / n as f32;
            let gw = xt.dot(&g) + &(&weights * penalty);
            let gb = g.sum_axis(Axis(0));
            mw.step(&mut weights, &gw, epoch);
            mb.step(&mut bias, &gb, epoch);
        }
        Some(Self {
            weights,
            bias,
            trained,
        })
    }

    /// For each intent, ln(p / p of the first): 0 for the intent it ranks first,
    /// negative for the others, `None` for intents without examples (and `None` in
    /// all when `q` has another width).
    pub fn log_odds(&self, q: &[f32]) -> Option<Vec<Option<f32>>> {
        if q.len() != self.weights.nrows() {
            return None;
        }
        let logits = ArrayView1::from(q).dot(&self.weights) + &self.bias;
        let best = logits
            .iter()
            .zip(&self.trained)
            .filter(|(_, t)| **t)
            .map(|(v, _)| *v)
            .fold(f32::MIN, f32::max);
        Some(
            logits
                .iter()
                .zip(&self.trained)
                .map(|(v, t)| t.then_some(*v - best))
                .collect(),
        )
    }
}

/// The intent [`Classifier::log_odds`] ranks first (its log odds are 0).
pub fn first(odds: &[Option<f32>]) -> Option<usize> {
    odds.iter().position(|o| *o == Some(0.0))
}

/// Turns each row of logits into probabilities; intents without examples get none.
fn softmax_rows(p: &mut Array2<f32>, trained: &[bool]) {
    for mut row in p.rows_mut() {
        let max = row
            .iter()
            .zip(trained)
            .filter(|(_, t)| **t)
            .map(|(v, _)| *v)
            .fold(f32::MIN, f32::max);
        let mut sum = 0.0;
        for (v, t) in row.iter_mut().zip(trained) {
            *v = if *t { (*v - max).exp() } else { 0.0 };
            sum += *v;
        }
        row.mapv_inplace(|v| v / sum.max(f32::MIN_POSITIVE));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialogue::Lang;
    use crate::dialogue::semantic::Vector;

    fn unit(mut x: Vec<f32>) -> Vector {
        let n = x.iter().map(|v| v * v).sum::<f32>().sqrt();
        x.iter_mut().for_each(|v| *v /= n);
        Vector::from(x)
    }

    #[test]
    fn it_ranks_by_the_direction_that_tells_close_intents_apart() {
        // Both intents lie along axis 0 (what they share) and differ only slightly, on
        // axis 1; axis 2 varies as much within each intent and tells nothing.
        let mut samples = Vec::new();
        for j in 0..6 {
            let noise = if j % 2 == 0 { 0.3 } else { -0.3 };
            for (intent, side) in [(0, 0.15), (1, -0.15)] {
                samples.push(Sample {
                    intent,
                    lang: Lang::En,
                    vector: unit(vec![1.0, side, noise, 0.0]),
                });
            }
        }
        // A third intent without examples is never picked.
        let c = Classifier::fit(&samples, 3).expect("two intents with examples");
        let best = |q: &[f32]| c.log_odds(q).and_then(|o| first(&o));
        assert_eq!(best(&unit(vec![1.0, 0.05, -0.3, 0.0])), Some(0));
        assert_eq!(best(&unit(vec![1.0, -0.05, 0.3, 0.0])), Some(1));
        assert_eq!(c.log_odds(&[1.0, 0.0]), None, "another width");
    }

    #[test]
    fn too_little_or_too_much_to_train_on_is_refused() {
        let one = vec![Sample {
            intent: 0,
            lang: Lang::En,
            vector: unit(vec![1.0, 0.0]),
        }];
        assert!(Classifier::fit(&one, 1).is_none());
        assert!(Classifier::fit(&[], 4).is_none());
        let two: Vec<Sample> = (0..2)
            .map(|intent| Sample {
                intent,
                lang: Lang::En,
                vector: unit(vec![1.0, intent as f32]),
            })
            .collect();
        assert!(Classifier::fit(&two, MAX_CELLS).is_none());
    }
}
