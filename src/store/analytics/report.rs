//! The report itself: contacts and automation per day, people's times, queues
//! and agents, hot topics and their trend, and unanswered questions.

use super::*;

impl Store {
    /// The report for the UTC days `from` to `to`, both included; for one channel
    /// ("phone", "web", "wechat", "sms", "app") or all.
    pub async fn analytics(
        &self,
        from: NaiveDate,
        to: NaiveDate,
        channel: Option<&str>,
    ) -> anyhow::Result<Report> {
        let (start, end) = (day_start(from), day_start(to.succ_opt().unwrap_or(to)));
        let only = channel.unwrap_or("");
        let p = self.pool();

        let (contacts, calls) = self.contacts(start, end, only, from).await?;
        let CallStats {
            input,
            confidence,
            blind,
        } = calls;
        let mut days: BTreeMap<(NaiveDate, String), (i64, i64)> = BTreeMap::new();
        let mut bot_resolution = Vec::new();
        for c in &contacts {
            let e = days.entry((c.day, c.channel.clone())).or_default();
            e.0 += 1;
            if !c.handed_over {
                e.1 += 1;
                bot_resolution.push(c.bot_resolution_ms);
            }
        }
        let days: Vec<DayRow> = days
            .into_iter()
            .map(|((day, channel), (n, automated))| DayRow {
                day,
                channel,
                conversations: n,
                automated,
                handed_over: n - automated,
                automation_rate: automated as f64 / n as f64,
            })
            .collect();
        let conversations: i64 = days.iter().map(|d| d.conversations).sum();
        let automated: i64 = days.iter().map(|d| d.automated).sum();

        let reply: Vec<f64> = sqlx::query(
            "SELECT latency_us FROM turns WHERE speaker = 'bot' AND latency_us IS NOT NULL \
             AND at_ms >= $1 AND at_ms < $2 AND ($3 = '' OR channel = $3)",
        )
        .bind(start)
        .bind(end)
        .bind(only)
        .fetch_all(p)
        .await?
        .iter()
        .map(|r| r.try_get::<i64, _>(0).map(|us| us as f64 / 1000.0))
        .collect::<Result<_, _>>()?;

        let stays = self.stays(start, end, only).await?;
        let mut reasons = stays.reasons;
        if blind > 0 {
            reasons.insert("blind_transfer".into(), blind);
        }
        let mut transfer_reasons: Vec<Count> = reasons
            .into_iter()
            .map(|(key, count)| Count { key, count })
            .collect();
        transfer_reasons.sort_by(|a, b| b.count.cmp(&a.count).then(a.key.cmp(&b.key)));
        let (human_first, human_resolution) = (stays.human_first, stays.human_resolution);
        let (queues, agents) = (stays.queues, stays.agents);
        let (top_intents, intent_trend) = self.topics(start, end, only, from).await?;
        let unanswered = self.unanswered(start, end, only).await?;
        let satisfaction = self.satisfaction(start, end, only).await?;

        let handed_over = conversations - automated;
        let rate = |n: i64| (conversations > 0).then(|| n as f64 / conversations as f64);
        Ok(Report {
            from,
            to,
            channel: channel.map(str::to_string),
            automation_rate: rate(automated),
            transfer_rate: rate(handed_over),
            days,
            conversations,
            automated,
            handed_over,
            first_response: Times {
                bot: Percentiles::of(reply),
                human: Percentiles::of(human_first),
            },
            resolution: Times {
                bot: Percentiles::of(bot_resolution),
                human: Percentiles::of(human_resolution),
            },
            transfer_reasons,
            queues,
            agents,
            input,
            asr_confidence: confidence
                .iter()
                .enumerate()
                .map(|(i, &count)| Bucket {
                    from: i as f64 / 10.0,
                    to: (i + 1) as f64 / 10.0,
                    count,
                })
                .collect(),
            top_intents,
            intent_trend,
            unanswered,
            satisfaction,
        })
    }

    /// Queue stays in the period: hand-over reasons, people's times, queues and
    /// agents.
    async fn stays(&self, start: i64, end: i64, only: &str) -> anyhow::Result<Stays> {
        let p = self.pool();
        let rows = sqlx::query(
            "SELECT s.queue, s.reason, s.agent, s.channel, s.enqueued_ms, s.answered_ms, s.ended_ms, s.outcome, \
             (SELECT MIN(t.at_ms) FROM turns t WHERE t.conversation_id = s.item AND t.speaker = 'agent' \
              AND t.at_ms >= s.enqueued_ms), \
             COALESCE((SELECT c.started_ms FROM conversations c WHERE c.id = s.item), \
              (SELECT k.answer_ms FROM calls k WHERE k.call_id = s.item), s.enqueued_ms) \
             FROM queue_stays s WHERE s.enqueued_ms >= $1 AND s.enqueued_ms < $2 \
             AND ($3 = '' OR s.channel = $3)",
        )
        .bind(start)
        .bind(end)
        .bind(only)
        .fetch_all(p)
        .await
        .context("cannot read queue stays")?;
        let mut reasons: BTreeMap<String, i64> = BTreeMap::new();
        let (mut human_first, mut human_resolution) = (Vec::new(), Vec::new());
        #[derive(Default)]
        struct Tally {
            stays: i64,
            answered: i64,
            abandoned: i64,
            timed_out: i64,
            waits: Vec<f64>,
            handles: Vec<f64>,
        }
        let mut queues: BTreeMap<String, Tally> = BTreeMap::new();
        let mut agents: BTreeMap<String, Tally> = BTreeMap::new();
        for r in &rows {
            let queue: String = r.try_get(0)?;
            *reasons.entry(r.try_get(1)?).or_default() += 1;
            let agent: Option<String> = r.try_get(2)?;
            let stay_channel: String = r.try_get(3)?;
            let enqueued: i64 = r.try_get(4)?;
            let answered: Option<i64> = r.try_get(5)?;
            let ended: i64 = r.try_get(6)?;
            let outcome: String = r.try_get(7)?;
            let first_agent: Option<i64> = r.try_get(8)?;
            let contact: i64 = r.try_get(9)?;
            let q = queues.entry(queue).or_default();
            q.stays += 1;
            q.waits.push((answered.unwrap_or(ended) - enqueued) as f64);
            match outcome.as_str() {
                "abandoned" => q.abandoned += 1,
                "timed_out" => q.timed_out += 1,
                _ => {}
            }
            let Some(answered) = answered else { continue };
            q.answered += 1;
            q.handles.push((ended - answered) as f64);
            let first = if stay_channel == "phone" {
                Some(answered)
            } else {
                first_agent
            };
            if let Some(first) = first {
                human_first.push((first - enqueued) as f64);
            }
            if outcome == "answered" {
                human_resolution.push((ended - contact) as f64);
            }
            if let Some(agent) = agent {
                let a = agents.entry(agent).or_default();
                a.answered += 1;
                a.waits.push((answered - enqueued) as f64);
                a.handles.push((ended - answered) as f64);
            }
        }
        let queues = queues
            .into_iter()
            .map(|(queue, t)| QueueRow {
                queue,
                stays: t.stays,
                answered: t.answered,
                abandoned: t.abandoned,
                timed_out: t.timed_out,
                abandonment_rate: t.abandoned as f64 / t.stays.max(1) as f64,
                avg_wait_ms: mean(&t.waits),
                avg_handle_ms: mean(&t.handles),
            })
            .collect();
        let agents = agents
            .into_iter()
            .map(|(agent, t)| AgentRow {
                agent,
                answered: t.answered,
                avg_wait_ms: mean(&t.waits),
                avg_handle_ms: mean(&t.handles),
            })
            .collect();

        Ok(Stays {
            reasons,
            human_first,
            human_resolution,
            queues,
            agents,
        })
    }

    /// The most asked-about intents in the period, and the daily counts of the
    /// first few.
    async fn topics(
        &self,
        start: i64,
        end: i64,
        only: &str,
        from: NaiveDate,
    ) -> anyhow::Result<(Vec<Count>, Vec<TrendRow>)> {
        let p = self.pool();
        let rows = sqlx::query(
            "SELECT intent, at_ms FROM turns WHERE speaker = 'customer' AND intent IS NOT NULL \
             AND at_ms >= $1 AND at_ms < $2 AND ($3 = '' OR channel = $3)",
        )
        .bind(start)
        .bind(end)
        .bind(only)
        .fetch_all(p)
        .await?;
        let mut totals: HashMap<String, i64> = HashMap::new();
        let mut per_day: BTreeMap<(NaiveDate, String), i64> = BTreeMap::new();
        for r in &rows {
            let intent: String = r.try_get(0)?;
            let at: i64 = r.try_get(1)?;
            *totals.entry(intent.clone()).or_default() += 1;
            *per_day.entry((day_of(at, from), intent)).or_default() += 1;
        }
        let mut top_intents: Vec<Count> = totals
            .into_iter()
            .map(|(key, count)| Count { key, count })
            .collect();
        top_intents.sort_by(|a, b| b.count.cmp(&a.count).then(a.key.cmp(&b.key)));
        top_intents.truncate(TOP_INTENTS);
        let followed: Vec<&str> = top_intents
            .iter()
            .take(TREND_INTENTS)
            .map(|c| c.key.as_str())
            .collect();
        let intent_trend = per_day
            .into_iter()
            .filter(|((_, intent), _)| followed.contains(&intent.as_str()))
            .map(|((day, intent), count)| TrendRow { day, intent, count })
            .collect();

        Ok((top_intents, intent_trend))
    }

    /// Questions the bot did not answer (or hardly), grouped. Their text is sealed,
    /// so they are opened here and grouped in memory.
    async fn unanswered(
        &self,
        start: i64,
        end: i64,
        only: &str,
    ) -> anyhow::Result<Vec<Unanswered>> {
        let p = self.pool();
        let rows = sqlx::query(
            "SELECT text, key_id FROM turns WHERE speaker = 'customer' \
             AND (intent IS NULL OR confidence < $3) AND at_ms >= $1 AND at_ms < $2 \
             AND ($4 = '' OR channel = $4)",
        )
        .bind(start)
        .bind(end)
        .bind(f64::from(UNANSWERED_BELOW))
        .bind(only)
        .fetch_all(p)
        .await?;
        let mut groups: HashMap<String, Unanswered> = HashMap::new();
        for r in &rows {
            let sealed: Vec<u8> = r.try_get(0)?;
            let text = self.sealer().open(r.try_get(1)?, "turns.text", &sealed)?;
            let key = question_key(&text);
            if key.is_empty() {
                continue;
            }
            let g = groups.entry(key.clone()).or_insert_with(|| Unanswered {
                question: key,
                count: 0,
                examples: Vec::new(),
                phrasings: 1,
            });
            g.count += 1;
            let example = text.trim().to_string();
            if g.examples.len() < EXAMPLES && !g.examples.contains(&example) {
                g.examples.push(example);
            }
        }
        let mut unanswered: Vec<Unanswered> = groups.into_values().collect();
        unanswered.sort_by(|a, b| b.count.cmp(&a.count).then(a.question.cmp(&b.question)));
        unanswered.truncate(MAX_GROUPS);

        Ok(unanswered)
    }
}

/// What the queue stays of a period add up to.
struct Stays {
    reasons: BTreeMap<String, i64>,
    human_first: Vec<f64>,
    human_resolution: Vec<f64>,
    queues: Vec<QueueRow>,
    agents: Vec<AgentRow>,
}
