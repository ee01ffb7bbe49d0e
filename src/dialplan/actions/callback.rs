//! `callback`: the caller asks to be called back. The call's ticket (opened here
//! if the call has none) goes on the desk's list of callbacks to make, with the
//! number to call: `to`, the caller's own number by default (`${caller}`), or a
//! number the caller keyed in (`${callback_number}` from a `collect` node).

use super::Cx;
use crate::dialplan::NodeId;
use crate::dialplan::interpreter::{Flow, Output, Run};
use crate::source::Fields;

pub const FIELDS: &[&str] = &["type", "to", "queue", "next"];

#[derive(Debug)]
pub struct Callback {
    /// The number to call, with `${name}` call variables.
    pub to: String,
    /// The queue a ticket opened here belongs to ("" when none).
    pub queue: String,
    pub next: NodeId,
}

/// Whether `to` can name a phone number: digits (with `+`, `*`, `#`, spaces and
/// dashes) and call variables.
fn dialable(to: &str) -> bool {
    let mut rest = to;
    while let Some(start) = rest.find("${") {
        let Some(end) = rest[start..].find('}') else {
            return false;
        };
        if !rest[..start].chars().all(number_char) {
            return false;
        }
        rest = &rest[start + end + 1..];
    }
    rest.chars().all(number_char)
}

fn number_char(c: char) -> bool {
    c.is_ascii_digit() || matches!(c, '+' | '*' | '#' | ' ' | '-')
}

/// The number as dialled: separators dropped; None when nothing dialable is
/// left (an anonymous caller, an empty variable) or it is longer than any
/// phone number (32).
pub fn number(text: &str) -> Option<String> {
    let n: String = text.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
    let digits = n.chars().filter(char::is_ascii_digit).count();
    let valid = digits >= 3
        && n.len() <= 32
        && n.chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '+' | '*' | '#'))
        && !n[1..].contains('+');
    valid.then_some(n)
}

impl Callback {
    pub fn parse(f: &mut Fields<'_, '_>, cx: &mut Cx<'_, '_>) -> Option<Self> {
        let to = match f.string(cx.src, "to") {
            Some(t) if !dialable(t.get_ref()) || t.get_ref().trim().is_empty() => {
                cx.src.error(
                    t.span(),
                    "`to` must be a phone number or call variables, like \"${caller}\"",
                );
                None
            }
            Some(t) => Some(t.into_inner()),
            None => Some("${caller}".to_string()),
        };
        let queue = f
            .string(cx.src, "queue")
            .map(|q| q.into_inner())
            .unwrap_or_default();
        let next = cx.required_target(f, "next");
        Some(Self {
            to: to?,
            queue,
            next: next?,
        })
    }

    pub fn enter(&self, run: &mut Run) -> Flow {
        let to = run.interpolate(&self.to);
        run.emit(Output::Callback {
            to,
            queue: self.queue.clone(),
        });
        Flow::Next(self.next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_checked_as_written_and_as_dialled() {
        assert!(dialable("${caller}"));
        assert!(dialable("+86 ${area}-${local}"));
        assert!(!dialable("sip:evil@example.com"));
        assert!(!dialable("${caller"));
        assert_eq!(
            number("+86 138-1234-5678").as_deref(),
            Some("+8613812345678")
        );
        assert_eq!(number("1001").as_deref(), Some("1001"));
        assert_eq!(number(""), None);
        assert_eq!(number("anonymous"), None);
        assert_eq!(number("12"), None);
        assert_eq!(number("1+2345"), None);
        assert_eq!(number(&"9".repeat(33)), None);
    }
}
