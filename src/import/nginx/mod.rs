//! nginx's side of `cutover import nginx`: its config syntax ([`parse`]), and the
//! mapping onto cutover's model ([`map`], with [`known`] for the directives it only
//! recognises and [`values`] for its units).

mod known;
mod map;
pub mod parse;
mod server;
mod values;

pub use parse::{At, ParseError};

use std::path::Path;

use super::model::Model;
use super::Finding;

/// The model of the nginx config at `path`, and what was left out or changed.
pub(super) fn read(path: &Path) -> Result<(Model, Vec<Finding>, Vec<Finding>), ParseError> {
    let directives = parse::read(path)?;
    let mut mapper = map::Mapper::new();
    mapper.main(&directives);
    let base = path.parent().unwrap_or(Path::new("."));
    // nginx reads relative certificate paths against its prefix; the config's own
    // directory is where they are when the config was copied whole.
    for (cert, key, _) in &mut mapper.model.certs {
        for p in [cert, key] {
            if Path::new(p.as_str()).is_relative() {
                *p = base.join(p.as_str()).to_string_lossy().into_owned();
            }
        }
    }
    Ok((mapper.model, mapper.left_out, mapper.notes))
}
