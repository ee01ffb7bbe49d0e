//! Reading TOML with positions (dialplans, knowledge bases, config): every value keeps
//! its span, so each error an admin sees names `file:line:col`.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// One problem found in a dialplan file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub line: usize,
    pub col: usize,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.col,
            self.message
        )
    }
}

/// Everything wrong with a set of files, one `file:line:col: message` per line.
#[derive(Debug)]
pub struct Diagnostics {
    pub diagnostics: Vec<Diagnostic>,
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// A short, stable fingerprint of file texts (FNV-1a, 64 bits), to tell versions
/// apart in logs and call records.
pub fn version_of(texts: &[&str]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (i, text) in texts.iter().enumerate() {
        // A separator, so ["ab", "c"] and ["a", "bc"] differ.
        let sep = (i > 0).then_some(0u8);
        for b in sep.into_iter().chain(text.bytes()) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

/// The `*.toml` files of a directory, sorted by name; `what` names them in errors
/// ("dialplan", "knowledge-base").
pub fn toml_files(dir: &Path, what: &str) -> Result<Vec<PathBuf>, Diagnostics> {
    let whole = |message: String| Diagnostics {
        diagnostics: vec![Diagnostic {
            file: dir.to_path_buf(),
            line: 1,
            col: 1,
            message,
        }],
    };
    let entries =
        std::fs::read_dir(dir).map_err(|e| whole(format!("cannot read {what} directory: {e}")))?;
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml") && p.is_file())
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(whole(format!("no {what} files (*.toml) in this directory")));
    }
    Ok(files)
}

/// The text of one file and the diagnostics gathered while reading it.
pub struct Source<'a> {
    pub path: &'a Path,
    pub text: &'a str,
    pub diagnostics: Vec<Diagnostic>,
}

impl<'a> Source<'a> {
    pub fn new(path: &'a Path, text: &'a str) -> Self {
        Self {
            path,
            text,
            diagnostics: Vec::new(),
        }
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text[..self.text.floor_char_boundary(offset)];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        (line, before[line_start..].chars().count() + 1)
    }

    pub fn error(&mut self, span: Range<usize>, message: impl Into<String>) {
        let (line, col) = self.position(span.start);
        self.diagnostics.push(Diagnostic {
            file: self.path.to_path_buf(),
            line,
            col,
            message: message.into(),
        });
    }
}

pub type Value<'i> = Spanned<DeValue<'i>>;

/// A TOML table being read field by field; fields never asked for are reported as
/// unknown when the reader is finished.
pub struct Fields<'t, 'i> {
    /// What the table is, for messages ("node `menu`", "[dialplan]").
    pub what: String,
    pub span: Range<usize>,
    entries: Vec<(&'t Spanned<Cow<'i, str>>, &'t Value<'i>, bool)>,
}

impl<'t, 'i> Fields<'t, 'i> {
    pub fn new(what: impl Into<String>, span: Range<usize>, table: &'t DeTable<'i>) -> Self {
        Self {
            what: what.into(),
            span,
            entries: table.iter().map(|(k, v)| (k, v, false)).collect(),
        }
    }

    /// Takes a field if present.
    pub fn take(&mut self, name: &str) -> Option<&'t Value<'i>> {
        self.entries
            .iter_mut()
            .find(|(k, _, _)| k.get_ref() == name)
            .map(|(_, v, used)| {
                *used = true;
                *v
            })
    }

    /// Reports every field that no reader asked for.
    pub fn finish(self, src: &mut Source<'_>, allowed: &[&str]) {
        for (k, _, used) in self.entries {
            if !used {
                src.error(
                    k.span(),
                    format!(
                        "unknown field `{}` in {}; expected one of: {}",
                        k.get_ref(),
                        self.what,
                        allowed.join(", ")
                    ),
                );
            }
        }
    }

    pub fn string(&mut self, src: &mut Source<'_>, name: &str) -> Option<Spanned<String>> {
        let v = self.take(name)?;
        match v.get_ref() {
            DeValue::String(s) => Some(Spanned::new(v.span(), s.to_string())),
            _ => {
                src.error(v.span(), format!("`{name}` must be a string"));
                None
            }
        }
    }

    pub fn required_string(&mut self, src: &mut Source<'_>, name: &str) -> Option<Spanned<String>> {
        if let Some(s) = self.string(src, name) {
            return Some(s);
        }
        if !self.entries.iter().any(|(k, _, _)| k.get_ref() == name) {
            src.error(self.span.clone(), format!("{} needs `{name}`", self.what));
        }
        None
    }

    pub fn bool(&mut self, src: &mut Source<'_>, name: &str) -> Option<bool> {
        let v = self.take(name)?;
        match v.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            _ => {
                src.error(v.span(), format!("`{name}` must be true or false"));
                None
            }
        }
    }

    /// A non-negative integer no larger than `max`.
    pub fn count(&mut self, src: &mut Source<'_>, name: &str, max: u32) -> Option<u32> {
        let v = self.take(name)?;
        let parsed = match v.get_ref() {
            DeValue::Integer(i) => u32::from_str_radix(i.as_str(), i.radix()).ok(),
            _ => None,
        };
        match parsed {
            Some(n) if n <= max => Some(n),
            _ => {
                src.error(
                    v.span(),
                    format!("`{name}` must be a whole number from 0 to {max}"),
                );
                None
            }
        }
    }

    /// A duration written like "5s", "1500ms" or "2m".
    pub fn duration(&mut self, src: &mut Source<'_>, name: &str) -> Option<Duration> {
        let v = self.take(name)?;
        let text = match v.get_ref() {
            DeValue::String(s) => s.as_ref(),
            _ => "",
        };
        match humantime::parse_duration(text) {
            Ok(d) if d <= Duration::from_secs(3600) => Some(d),
            Ok(_) => {
                src.error(v.span(), format!("`{name}` is longer than an hour"));
                None
            }
            Err(e) => {
                src.error(
                    v.span(),
                    format!("`{name}` is not a duration ({e}); write it like \"5s\" or \"1500ms\""),
                );
                None
            }
        }
    }

    /// A string or an array of strings.
    pub fn strings(&mut self, src: &mut Source<'_>, name: &str) -> Option<Vec<Spanned<String>>> {
        let v = self.take(name)?;
        match v.get_ref() {
            DeValue::String(s) => Some(vec![Spanned::new(v.span(), s.to_string())]),
            DeValue::Array(items) => {
                let mut out = Vec::new();
                for item in items.iter() {
                    match item.get_ref() {
                        DeValue::String(s) => out.push(Spanned::new(item.span(), s.to_string())),
                        _ => src.error(item.span(), format!("`{name}` must hold strings only")),
                    }
                }
                Some(out)
            }
            _ => {
                src.error(
                    v.span(),
                    format!("`{name}` must be a string or an array of strings"),
                );
                None
            }
        }
    }

    pub fn table(
        &mut self,
        src: &mut Source<'_>,
        name: &str,
    ) -> Option<(&'t DeTable<'i>, Range<usize>)> {
        let v = self.take(name)?;
        match v.get_ref() {
            DeValue::Table(t) => Some((t, v.span())),
            _ => {
                src.error(v.span(), format!("`{name}` must be a table"));
                None
            }
        }
    }

    pub fn array(&mut self, src: &mut Source<'_>, name: &str) -> Option<&'t [Value<'i>]> {
        let v = self.take(name)?;
        match v.get_ref() {
            DeValue::Array(a) => Some(&a[..]),
            _ => {
                src.error(v.span(), format!("`{name}` must be an array"));
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_characters_not_bytes() {
        let text = "a = 1\n名 = \"x\"\n";
        let src = Source::new(Path::new("f.toml"), text);
        assert_eq!(src.position(0), (1, 1));
        assert_eq!(src.position(6), (2, 1));
        // The `=` after one three-byte character is column 3.
        assert_eq!(src.position(text.find('=').unwrap()), (1, 3));
        assert_eq!(src.position(text.rfind('=').unwrap()), (2, 3));
    }
}
