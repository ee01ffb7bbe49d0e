//! The expected-output bookkeeping the scripted tests share (`tests/interpreter.rs`
//! for calls, `tests/conversations.rs` for chats): each `<` line is checked, in
//! order, against what happened; with `UPDATE_EXPECT=1` the script is rewritten
//! instead, keeping every other line (and each `<` line still true) as written.

use std::collections::VecDeque;
use std::path::Path;

/// Whether the scripts' expected lines are to be rewritten.
pub fn update_requested() -> bool {
    std::env::var_os("UPDATE_EXPECT").is_some_and(|v| v == "1")
}

/// What happened and is not yet checked; under an update, the script as it
/// should read.
pub struct Expect {
    pub pending: VecDeque<String>,
    update: Option<Vec<String>>,
}

impl Expect {
    pub fn new(update: bool) -> Self {
        Self {
            pending: VecDeque::new(),
            update: update.then(Vec::new),
        }
    }

    /// A `<` line (`raw`, expecting `want`): why it does not hold, if it does not.
    pub fn expect(&mut self, raw: &str, want: &str) -> Result<(), String> {
        let got = self.pending.pop_front();
        if let Some(update) = self.update.as_mut() {
            // A line still true keeps its comment; a changed one is rewritten.
            match got {
                Some(got) if got == want => update.push(raw.to_string()),
                Some(got) => update.push(format!("< {got}")),
                None => {}
            }
            return Ok(());
        }
        match got {
            Some(got) if got == want => Ok(()),
            Some(got) => Err(format!("expected `{want}`, got `{got}`")),
            None => Err(format!("expected `{want}`, got nothing")),
        }
    }

    /// Before an acting line: every output must have been expected.
    pub fn settle(&mut self) -> Result<(), String> {
        if let Some(update) = self.update.as_mut() {
            update.extend(self.pending.drain(..).map(|got| format!("< {got}")));
        }
        match self.pending.front() {
            Some(extra) => Err(format!("unexpected output before this: `{extra}`")),
            None => Ok(()),
        }
    }

    /// A line that is not an expectation: an update copies it as it is.
    pub fn keep(&mut self, raw: &str) {
        if let Some(update) = self.update.as_mut() {
            update.push(raw.to_string());
        }
    }

    /// Under an update, writes the script back if it changed.
    pub fn finish(&mut self, file: &Path, text: &str) {
        if let Some(lines) = self.update.take() {
            let mut out = lines.join("\n");
            out.push('\n');
            if out != text {
                std::fs::write(file, out).unwrap();
            }
        }
    }
}
