//! `hours`: routes on business hours in a time zone, e.g.
//! `open = ["mon-fri 09:00-18:00", "sat 10:00-16:00"]`, with `closed_dates` for
//! public holidays.

use chrono::{Datelike, NaiveDate, NaiveTime, Timelike, Weekday};
use chrono_tz::Tz;

use super::Cx;
use crate::dialplan::NodeId;
use crate::dialplan::interpreter::{Flow, Run};
use crate::source::Fields;

pub const FIELDS: &[&str] = &[
    "type",
    "timezone",
    "open",
    "closed_dates",
    "when_open",
    "when_closed",
];

#[derive(Debug)]
pub struct Window {
    /// Bit n set: open on weekday n (Monday = 0).
    pub days: u8,
    /// Minutes after midnight, start inclusive, end exclusive (1440 = midnight).
    pub from: u32,
    pub to: u32,
}

#[derive(Debug)]
pub struct Hours {
    pub timezone: Tz,
    pub windows: Vec<Window>,
    pub closed_dates: Vec<NaiveDate>,
    pub when_open: NodeId,
    pub when_closed: NodeId,
}

impl Hours {
    pub fn parse(f: &mut Fields<'_, '_>, cx: &mut Cx<'_, '_>) -> Option<Self> {
        let timezone = f.required_string(cx.src, "timezone").and_then(|t| {
            t.get_ref()
                .parse::<Tz>()
                .map_err(|_| {
                    cx.src.error(
                        t.span(),
                        format!(
                            "unknown time zone `{}`; use an IANA name such as \"Asia/Shanghai\"",
                            t.get_ref()
                        ),
                    );
                })
                .ok()
        });
        let mut windows = Vec::new();
        match f.strings(cx.src, "open") {
            Some(specs) => {
                for spec in specs {
                    match parse_window(spec.get_ref()) {
                        Ok(w) => windows.push(w),
                        Err(e) => cx.src.error(spec.span(), e),
                    }
                }
            }
            None => cx.src.error(
                f.span.clone(),
                format!("{} needs `open`, e.g. [\"mon-fri 09:00-18:00\"]", f.what),
            ),
        }
        let mut closed_dates = Vec::new();
        for d in f.strings(cx.src, "closed_dates").unwrap_or_default() {
            match NaiveDate::parse_from_str(d.get_ref(), "%Y-%m-%d") {
                Ok(date) => closed_dates.push(date),
                Err(_) => cx.src.error(d.span(), "dates are written YYYY-MM-DD"),
            }
        }
        let when_open = cx.required_target(f, "when_open");
        let when_closed = cx.required_target(f, "when_closed");
        Some(Self {
            timezone: timezone?,
            windows,
            closed_dates,
            when_open: when_open?,
            when_closed: when_closed?,
        })
    }

    pub fn is_open(&self, at: chrono::DateTime<chrono::Utc>) -> bool {
        let local = at.with_timezone(&self.timezone);
        if self.closed_dates.contains(&local.date_naive()) {
            return false;
        }
        let day = local.weekday().num_days_from_monday();
        let minute = local.hour() * 60 + local.minute();
        self.windows
            .iter()
            .any(|w| w.days & (1 << day) != 0 && (w.from..w.to).contains(&minute))
    }

    pub fn enter(&self, run: &mut Run) -> Flow {
        if self.is_open(run.now.wall) {
            Flow::Next(self.when_open)
        } else {
            Flow::Next(self.when_closed)
        }
    }
}

const SPEC_HELP: &str = "write opening hours like \"mon-fri 09:00-18:00\", \"sat,sun 10:00-16:00\" or \"daily 08:00-20:00\"";

fn parse_window(spec: &str) -> Result<Window, String> {
    let (days, times) = spec
        .trim()
        .split_once(' ')
        .ok_or_else(|| SPEC_HELP.to_string())?;
    let days = parse_days(days.trim())?;
    let (from, to) = times
        .trim()
        .split_once('-')
        .ok_or_else(|| SPEC_HELP.to_string())?;
    let from = parse_minute(from)?;
    let to = parse_minute(to)?;
    if from >= to {
        return Err(format!(
            "opening time {} must be before closing time; split overnight hours into two windows",
            times.trim()
        ));
    }
    Ok(Window { days, from, to })
}

fn parse_days(s: &str) -> Result<u8, String> {
    if s.eq_ignore_ascii_case("daily") {
        return Ok(0x7F);
    }
    let mut mask = 0u8;
    for part in s.split(',') {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let a = parse_weekday(a)?;
        let b = parse_weekday(b)?;
        let (mut d, end) = (a.num_days_from_monday(), b.num_days_from_monday());
        loop {
            mask |= 1 << d;
            if d == end {
                break;
            }
            d = (d + 1) % 7;
        }
    }
    Ok(mask)
}

fn parse_weekday(s: &str) -> Result<Weekday, String> {
    s.trim().parse::<Weekday>().map_err(|_| {
        format!(
            "`{}` is not a day; use mon, tue, wed, thu, fri, sat, sun or daily",
            s.trim()
        )
    })
}

fn parse_minute(s: &str) -> Result<u32, String> {
    let s = s.trim();
    if s == "24:00" {
        return Ok(24 * 60);
    }
    NaiveTime::parse_from_str(s, "%H:%M")
        .map(|t| t.hour() * 60 + t.minute())
        .map_err(|_| format!("`{s}` is not a time; use HH:MM (00:00 to 24:00)"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn hours(specs: &[&str]) -> Hours {
        Hours {
            timezone: "Asia/Shanghai".parse().unwrap(),
            windows: specs.iter().map(|s| parse_window(s).unwrap()).collect(),
            closed_dates: vec![NaiveDate::from_ymd_opt(2026, 10, 1).unwrap()],
            when_open: 0,
            when_closed: 1,
        }
    }

    #[test]
    fn open_in_local_time() {
        let h = hours(&["mon-fri 09:00-18:00", "sat 10:00-16:00"]);
        // Tuesday 2026-11-24 01:30 UTC is 09:30 in Shanghai.
        assert!(
            h.is_open(
                chrono::Utc
                    .with_ymd_and_hms(2026, 11, 24, 1, 30, 0)
                    .unwrap()
            )
        );
        // 10:00 UTC is 18:00 local: closed (end is exclusive).
        assert!(
            !h.is_open(
                chrono::Utc
                    .with_ymd_and_hms(2026, 11, 24, 10, 0, 0)
                    .unwrap()
            )
        );
        // Sunday.
        assert!(!h.is_open(chrono::Utc.with_ymd_and_hms(2026, 11, 29, 3, 0, 0).unwrap()));
        // A holiday that falls on a Thursday.
        assert!(!h.is_open(chrono::Utc.with_ymd_and_hms(2026, 10, 1, 3, 0, 0).unwrap()));
    }

    #[test]
    fn day_lists_and_ranges() {
        assert_eq!(parse_days("mon-fri").unwrap(), 0b0011111);
        assert_eq!(parse_days("sat,sun").unwrap(), 0b1100000);
        assert_eq!(parse_days("fri-mon").unwrap(), 0b1110001);
        assert!(parse_days("someday").is_err());
        assert!(parse_window("mon 18:00-09:00").is_err());
        assert!(parse_window("mon 9-5").is_err());
        assert_eq!(parse_window("daily 00:00-24:00").unwrap().to, 1440);
    }
}
