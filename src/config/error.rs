//! Config errors that point at `file:line:column`.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One finding in a config file, located.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub path: PathBuf,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// A config that cannot be used, with everything wrong with it.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigError {
    pub errors: Vec<Diagnostic>,
}

impl Diagnostic {
    /// Locates byte offset `span.start` of `text` as 1-based line and column.
    pub fn at(path: &Path, text: &str, span: Range<usize>, message: impl Into<String>) -> Self {
        let start = span.start.min(text.len());
        let before = &text.as_bytes()[..start];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        let column = String::from_utf8_lossy(&before[line_start..])
            .chars()
            .count()
            + 1;
        Diagnostic {
            path: path.to_path_buf(),
            line,
            column,
            message: message.into(),
        }
    }
}

impl Diagnostic {
    /// Logs this finding as an event of its own at `level` (an error, or else a
    /// warning), with file, line and column as fields: in a JSON log, one JSON line.
    pub fn log(&self, level: tracing::Level) {
        let (file, line, column) = (self.path.display(), self.line, self.column);
        if level == tracing::Level::ERROR {
            tracing::error!(%file, line, column, "{self}");
        } else {
            tracing::warn!(%file, line, column, "{self}");
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.path.display(),
            self.line,
            self.column,
            self.message
        )
    }
}

impl ConfigError {
    /// A failure that is no fault of the file's.
    pub fn other(message: &str) -> Self {
        ConfigError {
            errors: vec![Diagnostic {
                path: PathBuf::new(),
                line: 0,
                column: 0,
                message: message.to_owned(),
            }],
        }
    }

    /// In the order a reader goes through the file, each finding once.
    pub(super) fn in_file_order(mut errors: Vec<Diagnostic>) -> Self {
        errors.sort_by_key(|d| (d.line, d.column));
        let mut unique: Vec<Diagnostic> = Vec::with_capacity(errors.len());
        for d in errors {
            let seen = unique
                .iter()
                .rev()
                .take_while(|u| (u.line, u.column) == (d.line, d.column))
                .any(|u| *u == d);
            if !seen {
                unique.push(d);
            }
        }
        ConfigError { errors: unique }
    }

    pub(crate) fn unreadable(path: &Path, err: &std::io::Error) -> Self {
        ConfigError {
            errors: vec![Diagnostic {
                path: path.to_path_buf(),
                line: 1,
                column: 1,
                message: format!("cannot read config file: {err}"),
            }],
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}
