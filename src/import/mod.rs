//! `cutover import nginx`: a migration aid that reads the config a team already runs
//! and writes the cutover config that does the same, listing what it could not carry.

mod model;
pub mod nginx;
mod write;

use std::path::Path;

pub use nginx::{At, ParseError};

/// One directive left out, or carried with a difference, and where it stood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub at: At,
    pub directive: String,
    pub why: String,
}

impl Finding {
    pub(crate) fn new(at: &At, directive: &str, why: impl Into<String>) -> Finding {
        Finding {
            at: at.clone(),
            directive: directive.to_owned(),
            why: why.into(),
        }
    }
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}: {}", self.at, self.directive, self.why)
    }
}

/// What an import came to.
#[derive(Debug)]
pub struct Imported {
    /// The cutover config.
    pub toml: String,
    /// Directives not carried over: a reason to look before using the output.
    pub left_out: Vec<Finding>,
    /// Directives carried with a difference worth knowing: written as comments at the
    /// top of the output.
    pub notes: Vec<Finding>,
}

/// Reads the nginx config at `path` (with its includes) and writes the cutover config.
pub fn nginx(path: &Path) -> Result<Imported, ParseError> {
    let (model, mut left_out, mut notes) = nginx::read(path)?;
    left_out.sort_by(|a, b| (&a.at.file, a.at.line).cmp(&(&b.at.file, b.at.line)));
    notes.sort_by(|a, b| (&a.at.file, a.at.line).cmp(&(&b.at.file, b.at.line)));
    Ok(Imported {
        toml: write::toml(&model, &path.display().to_string(), &notes),
        left_out,
        notes,
    })
}
