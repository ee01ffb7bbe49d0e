//! Unanswered questions that ask the same thing in other words, merged by the
//! cosine of their sentence embeddings (sans I/O; the embedding is a parameter).

use super::{EXAMPLES, Report, Unanswered};

/// Embeds texts (L2-normalised), for clustering unanswered questions by meaning.
pub type Embed = std::sync::Arc<dyn Fn(&[&str]) -> anyhow::Result<Vec<Vec<f32>>> + Send + Sync>;

/// Unanswered questions at least this similar (cosine of multilingual-e5-small
/// embeddings) are one cluster: paraphrases of one question score above it,
/// different questions about the same thing below: measured, paraphrases score
/// 0.945–0.994 ("do you sell kayaks" / "can I buy a kayak from you"), while
/// "do you sell kayaks" / "do you rent kayaks" scores 0.924 and "… kayaks" /
/// "… bicycles" 0.891 (`tests/semantic.rs` checks these clusters).
pub const CLUSTER_THRESHOLD: f32 = 0.93;

/// Merges groups of unanswered questions that ask the same thing in other words:
/// `vectors[i]` is the L2-normalised sentence embedding of `groups[i].question`.
/// Groups are taken most asked first; each joins the first cluster whose leader
/// (its most asked question) is at least `threshold` similar (cosine), or leads
/// a new one. Deterministic for the same input.
pub fn cluster(groups: Vec<Unanswered>, vectors: &[Vec<f32>], threshold: f32) -> Vec<Unanswered> {
    let mut groups: Vec<(Unanswered, &Vec<f32>)> = groups.into_iter().zip(vectors).collect();
    groups.sort_by(|(a, _), (b, _)| b.count.cmp(&a.count).then(a.question.cmp(&b.question)));
    let mut clusters: Vec<(&Vec<f32>, Unanswered)> = Vec::new();
    for (g, v) in groups {
        let home = clusters
            .iter_mut()
            .find(|(leader, _)| leader.iter().zip(v).map(|(x, y)| x * y).sum::<f32>() >= threshold);
        match home {
            Some((_, c)) => {
                c.count += g.count;
                c.phrasings += g.phrasings;
                for e in g.examples {
                    if c.examples.len() < EXAMPLES + 2 && !c.examples.contains(&e) {
                        c.examples.push(e);
                    }
                }
            }
            None => clusters.push((v, g)),
        }
    }
    let mut merged: Vec<Unanswered> = clusters.into_iter().map(|(_, c)| c).collect();
    merged.sort_by(|a, b| b.count.cmp(&a.count).then(a.question.cmp(&b.question)));
    merged
}

impl Report {
    /// Clusters the unanswered questions by meaning with `embed` (left grouped by
    /// wording when it fails).
    pub fn cluster_with(&mut self, embed: &Embed) {
        let questions: Vec<&str> = self
            .unanswered
            .iter()
            .map(|u| u.question.as_str())
            .collect();
        match embed(&questions) {
            Ok(v) => self.cluster_unanswered(&v, CLUSTER_THRESHOLD),
            Err(e) => tracing::warn!(
                error = format!("{e:#}"),
                "cannot cluster unanswered questions"
            ),
        }
    }

    /// Merges unanswered groups that ask the same thing in other words
    /// ([`cluster`]); `vectors[i]` embeds `unanswered[i].question`.
    pub fn cluster_unanswered(&mut self, vectors: &[Vec<f32>], threshold: f32) {
        if vectors.len() == self.unanswered.len() {
            self.unanswered = cluster(std::mem::take(&mut self.unanswered), vectors, threshold);
        }
    }
}
