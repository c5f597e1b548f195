//! `cutover import nginx FILE [-o OUT]`: writes the cutover config that does what the
//! nginx config does (what it carries with a difference is said in comments at its
//! top), lists on stderr what it could not carry over, and checks its output as
//! `check` would. Exit status: 0 all carried, 2 something left out, 1 the
//! nginx config could not be read or the output does not pass `check`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::config;
use crate::import;

pub(super) fn nginx(file: &Path, out: Option<&PathBuf>) -> ExitCode {
    let imported = match import::nginx(file) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    for l in &imported.left_out {
        eprintln!("{l}");
    }
    // Checked where it will live, so relative paths read as they will.
    let checked_as = out.cloned().unwrap_or_else(|| {
        let dir = file.parent().unwrap_or(Path::new("."));
        dir.join("cutover.imported.toml")
    });
    let check = config::parse(&checked_as, &imported.toml);
    match out {
        Some(path) => {
            if let Err(e) = std::fs::write(path, &imported.toml) {
                eprintln!("cannot write {}: {e}", path.display());
                return ExitCode::from(1);
            }
        }
        None => print!("{}", imported.toml),
    }
    if let Err(e) = check {
        eprintln!("the imported config does not pass `cutover check`:");
        for d in &e.errors {
            eprintln!("  {d}");
        }
        return ExitCode::from(1);
    }
    if imported.left_out.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "{} directive(s) not carried over; the config above does the rest",
            imported.left_out.len()
        );
        ExitCode::from(2)
    }
}
