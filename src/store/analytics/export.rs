//! The report as tables (CSV, one per name in [`TABLES`]) and as Markdown.

use serde::Serialize;

use super::{Percentiles, Report};

/// The channels a report can be limited to.
pub const CHANNELS: &[&str] = &["phone", "web", "wechat", "sms", "app", "wecom"];

/// The report's tables, by the names the dashboard and `kefu report --table` use.
pub const TABLES: &[&str] = &[
    "days",
    "times",
    "reasons",
    "queues",
    "agents",
    "input",
    "asr_confidence",
    "intents",
    "trend",
    "unanswered",
];

/// A row of the times table.
#[derive(Serialize)]
struct TimeRow<'a> {
    measure: &'a str,
    by: &'a str,
    count: usize,
    p50_ms: Option<f64>,
    p90_ms: Option<f64>,
}

/// A row of the unanswered table (its examples joined).
#[derive(Serialize)]
struct UnansweredRow<'a> {
    question: std::borrow::Cow<'a, str>,
    count: usize,
    phrasings: usize,
    examples: String,
}

/// Customers' words made inert for a spreadsheet: a cell starting with `=`, `+`,
/// `-`, `@`, a tab or a carriage return would be run as a formula by Excel or
/// LibreOffice (CSV injection), so it gets a leading `'`, as OWASP advises.
pub(super) fn inert(cell: &str) -> std::borrow::Cow<'_, str> {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        std::borrow::Cow::Owned(format!("'{cell}"))
    } else {
        std::borrow::Cow::Borrowed(cell)
    }
}

/// CSV with `header` first (also for a table without rows).
fn csv_of<T: Serialize>(header: &str, rows: impl IntoIterator<Item = T>) -> anyhow::Result<String> {
    let mut w = csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(Vec::new());
    w.write_record(header.split(','))?;
    for r in rows {
        w.serialize(r)?;
    }
    Ok(String::from_utf8(w.into_inner()?)?)
}

impl Report {
    /// One of [`TABLES`] as CSV (with a header row); None for an unknown name.
    pub fn csv(&self, table: &str) -> Option<anyhow::Result<String>> {
        Some(match table {
            "days" => csv_of(
                "day,channel,conversations,automated,handed_over,automation_rate",
                &self.days,
            ),
            "times" => csv_of("measure,by,count,p50_ms,p90_ms", self.time_rows()),
            "reasons" => csv_of("reason,count", &self.transfer_reasons),
            "queues" => csv_of(
                "queue,stays,answered,abandoned,timed_out,abandonment_rate,avg_wait_ms,avg_handle_ms",
                &self.queues,
            ),
            "agents" => csv_of("agent,answered,avg_wait_ms,avg_handle_ms", &self.agents),
            "input" => csv_of("calls,keys_only,speech_only,both,neither", [&self.input]),
            "asr_confidence" => csv_of("from,to,count", &self.asr_confidence),
            "intents" => csv_of("intent,count", &self.top_intents),
            "trend" => csv_of("day,intent,count", &self.intent_trend),
            "unanswered" => csv_of(
                "question,count,phrasings,examples",
                self.unanswered.iter().map(|u| UnansweredRow {
                    question: inert(&u.question),
                    count: u.count,
                    phrasings: u.phrasings,
                    examples: inert(&u.examples.join(" / ")).into_owned(),
                }),
            ),
            _ => return None,
        })
    }

    fn time_rows(&self) -> [TimeRow<'_>; 4] {
        let row = |measure, by, p: &Percentiles| TimeRow {
            measure,
            by,
            count: p.count,
            p50_ms: p.p50_ms,
            p90_ms: p.p90_ms,
        };
        [
            row("first_response", "bot", &self.first_response.bot),
            row("first_response", "human", &self.first_response.human),
            row("resolution", "bot", &self.resolution.bot),
            row("resolution", "human", &self.resolution.human),
        ]
    }

    /// The whole report as Markdown.
    pub fn markdown(&self) -> String {
        let pct = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.1} %", v * 100.0));
        let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1} ms"));
        let mut out = format!(
            "# kefu report {} to {}{}\n\nContacts: {}, resolved without a person: {} ({}), \
             handed over: {} ({}).\n\n\
             | measure | by | count | p50 | p90 |\n|---|---|---|---|---|\n",
            self.from,
            self.to,
            self.channel
                .as_deref()
                .map_or(String::new(), |c| format!(" ({c})")),
            self.conversations,
            self.automated,
            pct(self.automation_rate),
            self.handed_over,
            pct(self.transfer_rate),
        );
        for t in self.time_rows() {
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} |\n",
                t.measure,
                t.by,
                t.count,
                ms(t.p50_ms),
                ms(t.p90_ms)
            ));
        }
        out.push_str(
            "\n| day | channel | contacts | automated | handed over | automation |\n|---|---|---|---|---|---|\n",
        );
        for d in &self.days {
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} |\n",
                d.day,
                d.channel,
                d.conversations,
                d.automated,
                d.handed_over,
                pct(Some(d.automation_rate))
            ));
        }
        out.push_str("\n## Why customers were handed over\n\n| reason | times |\n|---|---|\n");
        for c in &self.transfer_reasons {
            out.push_str(&format!("| {} | {} |\n", c.key, c.count));
        }
        out.push_str(
            "\n## Queues\n\n| queue | customers | answered | abandoned | timed out | abandonment | avg wait | avg handle |\n\
             |---|---|---|---|---|---|---|---|\n",
        );
        for q in &self.queues {
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
                q.queue,
                q.stays,
                q.answered,
                q.abandoned,
                q.timed_out,
                pct(Some(q.abandonment_rate)),
                ms(q.avg_wait_ms),
                ms(q.avg_handle_ms)
            ));
        }
        out.push_str("\n| agent | answered | avg wait | avg handle |\n|---|---|---|---|\n");
        for a in &self.agents {
            out.push_str(&format!(
                "| {} | {} | {} | {} |\n",
                a.agent,
                a.answered,
                ms(a.avg_wait_ms),
                ms(a.avg_handle_ms)
            ));
        }
        let i = &self.input;
        out.push_str(&format!(
            "\n## Calls\n\n{} answered calls: keys only {}, speech only {}, both {}, neither {}.\n\n\
             | recognizer confidence | utterances |\n|---|---|\n",
            i.calls, i.keys_only, i.speech_only, i.both, i.neither
        ));
        for b in &self.asr_confidence {
            out.push_str(&format!("| {:.1}–{:.1} | {} |\n", b.from, b.to, b.count));
        }
        out.push_str("\n## Hot topics\n\n| intent | questions |\n|---|---|\n");
        for c in &self.top_intents {
            out.push_str(&format!("| {} | {} |\n", c.key, c.count));
        }
        out.push_str(
            "\n## Unanswered questions\n\n| question | times | as asked |\n|---|---|---|\n",
        );
        for u in &self.unanswered {
            out.push_str(&format!(
                "| {} | {} | {} |\n",
                u.question.replace('|', "/"),
                u.count,
                u.examples.join(" / ").replace('|', "/")
            ));
        }
        out
    }
}
