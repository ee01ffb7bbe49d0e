//! Customer satisfaction: a rating of 1 to 5 per conversation, given once, and
//! what the report makes of them (overall, and per queue and agent through the
//! conversation's queue stays).

use std::collections::BTreeMap;

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;

use super::{Store, ms};

/// Ratings in a period.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Satisfaction {
    pub ratings: i64,
    pub average: Option<f64>,
    /// The share of ratings of 4 or 5 (CSAT).
    pub satisfied: Option<f64>,
    /// How many of each score, 1 to 5.
    pub scores: [i64; 5],
    /// Per queue the rated conversation last waited in, and per agent who last
    /// took it; conversations the bot handled alone count under "(bot)".
    pub queues: Vec<RatingRow>,
    pub agents: Vec<RatingRow>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RatingRow {
    pub key: String,
    pub ratings: i64,
    pub average: f64,
    pub satisfied: f64,
}

/// Who handled a rated conversation when it was handled by nobody.
const BOT: &str = "(bot)";

impl Store {
    /// Stores the customer's rating of a conversation; false when it was rated
    /// already (the first rating stands).
    pub async fn rate(
        &self,
        conversation: &str,
        channel: &str,
        score: u8,
        at: DateTime<Utc>,
    ) -> anyhow::Result<bool> {
        anyhow::ensure!((1..=5).contains(&score), "a rating is 1 to 5");
        let n = sqlx::query(
            "INSERT INTO ratings (conversation, channel, score, at_ms) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (conversation) DO NOTHING",
        )
        .bind(conversation)
        .bind(channel)
        .bind(i64::from(score))
        .bind(ms(at))
        .execute(self.pool())
        .await
        .context("cannot store the rating")?
        .rows_affected();
        Ok(n == 1)
    }

    /// The ratings given from `start` to `end` (ms), for one channel or all ("").
    pub async fn satisfaction(
        &self,
        start: i64,
        end: i64,
        only: &str,
    ) -> anyhow::Result<Satisfaction> {
        let rows = sqlx::query(
            "SELECT r.score, \
             (SELECT q.queue FROM queue_stays q WHERE q.item = r.conversation \
              ORDER BY q.enqueued_ms DESC LIMIT 1), \
             (SELECT q.agent FROM queue_stays q WHERE q.item = r.conversation \
              AND q.agent IS NOT NULL ORDER BY q.enqueued_ms DESC LIMIT 1) \
             FROM ratings r WHERE r.at_ms >= $1 AND r.at_ms < $2 AND ($3 = '' OR r.channel = $3)",
        )
        .bind(start)
        .bind(end)
        .bind(only)
        .fetch_all(self.pool())
        .await
        .context("cannot read ratings")?;
        let mut all = Vec::with_capacity(rows.len());
        let (mut queues, mut agents) = (BTreeMap::new(), BTreeMap::new());
        for r in &rows {
            let score: i64 = r.try_get(0)?;
            let queue: Option<String> = r.try_get(1)?;
            let agent: Option<String> = r.try_get(2)?;
            all.push(score);
            let tally = |m: &mut BTreeMap<String, Vec<i64>>, k: Option<String>| {
                m.entry(k.unwrap_or_else(|| BOT.to_string()))
                    .or_default()
                    .push(score);
            };
            tally(&mut queues, queue);
            tally(&mut agents, agent);
        }
        let mut scores = [0i64; 5];
        for &s in &all {
            if let Some(n) = usize::try_from(s - 1).ok().and_then(|i| scores.get_mut(i)) {
                *n += 1;
            }
        }
        let (average, satisfied) = summary(&all).map_or((None, None), |(a, s)| (Some(a), Some(s)));
        let rows_of = |m: BTreeMap<String, Vec<i64>>| {
            m.into_iter()
                .filter_map(|(key, v)| {
                    let (average, satisfied) = summary(&v)?;
                    Some(RatingRow {
                        key,
                        ratings: v.len() as i64,
                        average,
                        satisfied,
                    })
                })
                .collect()
        };
        Ok(Satisfaction {
            ratings: all.len() as i64,
            average,
            satisfied,
            scores,
            queues: rows_of(queues),
            agents: rows_of(agents),
        })
    }
}

/// The average score and the share of 4s and 5s; None without ratings.
fn summary(scores: &[i64]) -> Option<(f64, f64)> {
    if scores.is_empty() {
        return None;
    }
    let n = scores.len() as f64;
    let average = scores.iter().sum::<i64>() as f64 / n;
    let satisfied = scores.iter().filter(|&&s| s >= 4).count() as f64 / n;
    Some((average, satisfied))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_is_the_average_and_the_share_of_fours_and_fives() {
        assert_eq!(summary(&[]), None);
        assert_eq!(summary(&[5, 4, 1, 2]), Some((3.0, 0.5)));
    }
}
