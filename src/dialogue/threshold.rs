//! The answer threshold from stand-in scores: the score that maximises the expected
//! share of right decisions over kernel-smoothed stand-in distributions. Pure
//! computation, used by [`super::calibrate`].

use std::f32::consts::SQRT_2;

use super::calibrate::{FALLBACK_THRESHOLD, OUT_OF_SCOPE_SHARE, UNRELATED_SHARE};

/// Candidate thresholds tried between the lowest and the highest stand-in score.
const GRID: usize = 400;

/// The threshold that maximises the expected share of right decisions, with the
/// stand-in distributions smoothed by a Gaussian kernel (Silverman's rule of thumb for
/// the bandwidth). The raw step function is flat near its top on a few hundred
/// stand-ins, so its argmax jumps with single examples; the smoothed one moves
/// little. Together with the classifier ([`super::classifier`]) it took the
/// development set from 0.901 to 0.912 overall, and from 0.821 to 0.874 with its
/// knowledge base cut to six examples per language (benches/RESULTS.md).
///
/// `ins`: in-scope stand-ins (score, ranked right); `near`: near misses; `far`: the
/// unrelated questions' scores, weighed at [`UNRELATED_SHARE`] of the out-of-scope
/// ones (none: near misses alone).
pub fn smoothed_best(ins: &[(f32, bool)], near: &[f32], far: &[f32]) -> f32 {
    let in_scores: Vec<f32> = ins.iter().map(|(s, _)| *s).collect();
    let right = Smoothed::new(
        ins.iter().filter(|(_, r)| *r).map(|(s, _)| *s).collect(),
        bandwidth(&in_scores),
    );
    let right_share = right.sorted.len() as f32 / ins.len().max(1) as f32;
    let near = Smoothed::new(near.to_vec(), bandwidth(near));
    let far = Smoothed::new(far.to_vec(), bandwidth(far));
    let unrelated = if far.sorted.is_empty() {
        0.0
    } else {
        UNRELATED_SHARE
    };
    let (lo, hi) = in_scores
        .iter()
        .chain(&near.sorted)
        .fold((f32::MAX, f32::MIN), |(lo, hi), &s| (lo.min(s), hi.max(s)));
    let value = |t: f32| {
        let answered = right_share * (1.0 - right.below(t));
        let rejected = (1.0 - unrelated) * near.below(t) + unrelated * far.below(t);
        (1.0 - OUT_OF_SCOPE_SHARE) * answered + OUT_OF_SCOPE_SHARE * rejected
    };
    // The best value, and the first and last grid points that reach it: stand-ins
    // far apart leave a plateau (every threshold between them is right on all of
    // them, and the tails round to the same value), whose middle is taken.
    let mut best = (f32::MIN, FALLBACK_THRESHOLD, FALLBACK_THRESHOLD);
    for i in 0..=GRID {
        let t = lo + (hi - lo) * i as f32 / GRID as f32;
        let v = value(t);
        if v > best.0 {
            best = (v, t, t);
        } else if v == best.0 {
            best.2 = t;
        }
    }
    (best.1 + best.2) / 2.0
}

/// Scores smoothed by a Gaussian kernel of width `h`.
struct Smoothed {
    sorted: Vec<f32>,
    h: f32,
}

/// Beyond this many bandwidths a score counts whole on its side of a threshold (the
/// kernel's mass past it is 2e-9, below f32's resolution near 1).
const TAILS: f32 = 6.0;

impl Smoothed {
    fn new(mut scores: Vec<f32>, h: f32) -> Self {
        scores.sort_by(f32::total_cmp);
        Self { sorted: scores, h }
    }

    /// The smoothed share of the scores below `t` (0 when there are none). Only the
    /// scores within [`TAILS`] bandwidths of `t` need the kernel: the reload of a
    /// 1000-intent knowledge base took 0.25 s longer when every score used it.
    fn below(&self, t: f32) -> f32 {
        if self.sorted.is_empty() {
            return 0.0;
        }
        let reach = TAILS * self.h;
        let whole = self.sorted.partition_point(|&s| s < t - reach);
        let near = self.sorted.partition_point(|&s| s <= t + reach);
        let partial: f32 = self.sorted[whole..near]
            .iter()
            .map(|s| 0.5 * (1.0 + libm::erff((t - s) / (self.h * SQRT_2))))
            .sum();
        (whole as f32 + partial) / self.sorted.len() as f32
    }
}

/// Silverman's rule of thumb: 1.06 σ n^(-1/5), kept above zero.
fn bandwidth(xs: &[f32]) -> f32 {
    let n = xs.len().max(1) as f32;
    let mean = xs.iter().sum::<f32>() / n;
    let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f32>() / n;
    (1.06 * var.sqrt() * n.powf(-0.2)).max(1e-4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unrelated_questions_weigh_against_near_misses() {
        // Near misses overlap the lower in-scope stand-ins; unrelated questions score
        // far below both. Near misses alone push the threshold up into the in-scope
        // ones; with the unrelated half of out-of-scope questions it comes down, and
        // stays far above the unrelated ones.
        let ins: Vec<(f32, bool)> = (0..40).map(|i| (0.90 + 0.001 * i as f32, true)).collect();
        let near: Vec<f32> = (0..40).map(|i| 0.88 + 0.001 * i as f32).collect();
        let far: Vec<f32> = (0..40).map(|i| 0.50 + 0.001 * i as f32).collect();
        let alone = smoothed_best(&ins, &near, &[]);
        let mixed = smoothed_best(&ins, &near, &far);
        assert!(mixed < alone, "{mixed} !< {alone}");
        assert!(mixed > 0.85, "{mixed}");
    }

    #[test]
    fn the_smoothed_share_below_matches_the_kernel_over_every_score() {
        let scores: Vec<f32> = (0..200).map(|i| ((i * 37) % 101) as f32 / 100.0).collect();
        let h = bandwidth(&scores);
        let smoothed = Smoothed::new(scores.clone(), h);
        for t in [-0.5, 0.0, 0.13, 0.5, 0.77, 1.0, 1.5] {
            let every: f32 = scores
                .iter()
                .map(|s| 0.5 * (1.0 + libm::erff((t - s) / (h * SQRT_2))))
                .sum::<f32>()
                / scores.len() as f32;
            assert!((smoothed.below(t) - every).abs() < 1e-5, "{t}");
        }
        assert_eq!(Smoothed::new(Vec::new(), 0.1).below(0.5), 0.0);
    }
}
