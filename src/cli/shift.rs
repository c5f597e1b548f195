//! `cutover shift ROUTE POOL=WEIGHT...`: the safe way to change a split by hand. The
//! file is edited where the weights are and nowhere else (comments, order and layout
//! stay), the result is checked exactly as `cutover check` checks a file, and only a
//! valid result replaces the file, in one rename. A running proxy's watcher sees it.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use toml_edit::{DocumentMut, Item, Value};

use super::Report;
use crate::config;

/// One `POOL=WEIGHT` argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Weight {
    pub pool: String,
    pub weight: u32,
}

impl std::str::FromStr for Weight {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (pool, weight) = s
            .split_once('=')
            .ok_or_else(|| format!("{s:?}: expected POOL=WEIGHT, e.g. k8s=50"))?;
        let weight = weight
            .trim()
            .parse()
            .map_err(|_| format!("{s:?}: the weight must be a whole number from 0"))?;
        let pool = pool.trim();
        if pool.is_empty() {
            return Err(format!("{s:?}: no pool name before '='"));
        }
        Ok(Weight {
            pool: pool.to_owned(),
            weight,
        })
    }
}

/// Runs `shift` on the file at `path`.
pub(super) fn run(path: &Path, route: &str, weights: &[Weight]) -> ExitCode {
    match shift(path, route, weights) {
        Ok((old, new)) => {
            println!("{}: route {route:?}", path.display());
            println!("  before: {}", show(&old));
            println!("  after:  {}", show(&new));
            ExitCode::SUCCESS
        }
        Err(Refused::Invalid(e)) => {
            for d in &e.errors {
                Report::Plain.finding(d, tracing::Level::ERROR);
            }
            eprintln!(
                "cutover shift: the result would not be a valid config; {} is unchanged",
                path.display()
            );
            ExitCode::FAILURE
        }
        Err(Refused::Other(why)) => {
            eprintln!("cutover shift: {why}");
            ExitCode::FAILURE
        }
    }
}

/// A route's split as the file has it: (pool, weight), in the file's order.
type Split = Vec<(String, i64)>;

enum Refused {
    /// The edited file would not pass `check`.
    Invalid(config::ConfigError),
    Other(String),
}

/// Edits, checks and writes; the route's split before and after.
fn shift(path: &Path, route: &str, weights: &[Weight]) -> Result<(Split, Split), Refused> {
    let cannot_read =
        |e: std::io::Error| Refused::Other(format!("cannot read {}: {e}", path.display()));
    let real = std::fs::canonicalize(path).map_err(cannot_read)?;
    if is_configmap(path, &real) {
        // The file is a link into a directory the kubelet replaces (and mounts read
        // only): an edit here would fail, or be undone at its next sync.
        return Err(Refused::Other(format!(
            "{} is mounted from a Kubernetes ConfigMap: edit the ConfigMap instead \
             (kubectl edit configmap ...), and cutover picks the change up",
            path.display()
        )));
    }
    // Another symlink: edit the file it points at, and leave the link a link.
    let path = real.as_path();
    let meta = std::fs::metadata(path).map_err(cannot_read)?;
    let text = std::fs::read_to_string(path)
        .map_err(|e| Refused::Other(format!("cannot read {}: {e}", path.display())))?;
    if let Some(w) = weights
        .iter()
        .enumerate()
        .find_map(|(i, w)| weights[..i].iter().any(|o| o.pool == w.pool).then_some(w))
    {
        return Err(Refused::Other(format!("pool {:?} is given twice", w.pool)));
    }
    let (edited, old, new) = edit(&text, route, weights).map_err(Refused::Other)?;
    config::parse(path, &edited).map_err(Refused::Invalid)?;
    write_atomically(path, &edited, &meta)
        .map_err(|e| Refused::Other(format!("cannot write {}: {e}", path.display())))?;
    Ok((old, new))
}

/// Whether `path` (resolved to `real`) is a file of a ConfigMap volume: the kubelet
/// links it through `..data` into a `..<timestamp>` directory.
fn is_configmap(path: &Path, real: &Path) -> bool {
    let hidden_dir = real.components().any(|c| {
        let c = c.as_os_str().to_string_lossy();
        c.starts_with("..") && c.len() > 2
    });
    let linked = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    let data = path.parent().is_some_and(|d| d.join("..data").exists());
    hidden_dir || (linked && data)
}

/// The text with `route`'s split weights set; the split before and after.
fn edit(text: &str, route: &str, weights: &[Weight]) -> Result<(String, Split, Split), String> {
    let mut doc: DocumentMut = text
        .parse()
        .map_err(|e| format!("the file is not valid TOML ({e}); run `cutover check`"))?;
    let routes = doc
        .get_mut("routes")
        .and_then(Item::as_array_of_tables_mut)
        .ok_or("the file has no [[routes]]")?;
    let table = routes
        .iter_mut()
        .find(|t| t.get("name").and_then(Item::as_str) == Some(route))
        .ok_or_else(|| format!("no route named {route:?}"))?;
    let split = table
        .get_mut("split")
        .and_then(Item::as_table_like_mut)
        .ok_or_else(|| format!("route {route:?} has no split"))?;
    let old = weights_of(split);
    let mut added = false;
    for w in weights {
        let value = i64::from(w.weight);
        match split.get_mut(&w.pool) {
            // In place: the value's own spacing and comment stay.
            Some(item) => match item.as_value_mut() {
                Some(v) => {
                    let decor = v.decor().clone();
                    *v = Value::from(value);
                    *v.decor_mut() = decor;
                }
                None => return Err(format!("split.{} is not a number", w.pool)),
            },
            None => {
                split.insert(&w.pool, toml_edit::value(value));
                added = true;
            }
        }
    }
    let new = weights_of(split);
    if added {
        // An inline table grown by a key keeps the old last value's trailing space
        // (`k8s = 10 , blue = 5`): lay that one table out afresh.
        if let Some(inline) = table.get_mut("split").and_then(Item::as_inline_table_mut) {
            inline.fmt();
        }
    }
    Ok((doc.to_string(), old, new))
}

fn weights_of(split: &dyn toml_edit::TableLike) -> Split {
    split
        .iter()
        .map(|(k, v)| (k.to_owned(), v.as_integer().unwrap_or(-1)))
        .collect()
}

fn show(split: &[(String, i64)]) -> String {
    let total: i64 = split.iter().map(|(_, w)| (*w).max(0)).sum();
    let mut out = String::new();
    for (i, (pool, w)) in split.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let share = if total > 0 {
            *w as f64 * 100.0 / total as f64
        } else {
            0.0
        };
        let _ = write!(out, "{pool} = {w} ({share:.0}%)");
    }
    out
}

/// Writes `text` to a temporary file beside `path` with the same mode (and owner, when
/// allowed), then renames it over `path`: a reader, the watcher included, sees the old
/// file or the new one, never half of one.
fn write_atomically(path: &Path, text: &str, meta: &std::fs::Metadata) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map_or_else(|| "config".into(), |n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(".{name}.shift-{}", std::process::id()));
    let result = (|| {
        let mut open = std::fs::OpenOptions::new();
        // A new file, never one (or a link) already there; readable by no one else
        // than the old one was, from its first byte.
        open.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
            open.mode(meta.permissions().mode() & 0o7777);
        }
        let mut f = open.open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::set_permissions(&tmp, meta.permissions())?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            // Only root may give a file away: anyone else is told, since the proxy may
            // not read a file its owner cannot.
            if std::os::unix::fs::chown(&tmp, Some(meta.uid()), Some(meta.gid())).is_err() {
                eprintln!(
                    "cutover shift: warning: {} now belongs to you, not to uid {} gid {}",
                    path.display(),
                    meta.uid(),
                    meta.gid()
                );
            }
        }
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(pool: &str, weight: u32) -> Weight {
        Weight {
            pool: pool.into(),
            weight,
        }
    }

    const FILE: &str = "# the migration\n[pools.ecs] # old\nbackends = [\"10.0.0.1:80\"]\n\n\
        [[routes]]\nname = \"other\"\nsplit = { ecs = 1 }\n\n\
        [[routes]]\nname   = \"ad-api\"   # the ad service\n\
        split  = { ecs = 90, k8s = 10 }  # step 1\nsticky = \"cookie:uid\"\n";

    #[test]
    fn only_the_weights_change() {
        let (out, old, new) = edit(FILE, "ad-api", &[w("ecs", 50), w("k8s", 50)]).expect("edit");
        assert_eq!(
            out,
            FILE.replace("ecs = 90, k8s = 10", "ecs = 50, k8s = 50"),
            "comments, spacing and order byte for byte"
        );
        assert_eq!(old, [("ecs".into(), 90), ("k8s".into(), 10)]);
        assert_eq!(new, [("ecs".into(), 50), ("k8s".into(), 50)]);
    }

    #[test]
    fn a_new_pool_joins_an_inline_split_neatly() {
        let (out, ..) = edit(FILE, "ad-api", &[w("blue", 5)]).expect("edit");
        assert!(
            out.contains("split  = { ecs = 90, k8s = 10, blue = 5 }  # step 1\n"),
            "{out}"
        );
    }

    #[test]
    fn a_split_table_and_a_new_pool() {
        let file = "[[routes]]\nname = \"r\"\n[routes.split]\necs = 1 # one\n";
        let (out, _, new) = edit(file, "r", &[w("ecs", 3), w("k8s", 1)]).expect("edit");
        assert_eq!(
            out,
            "[[routes]]\nname = \"r\"\n[routes.split]\necs = 3 # one\nk8s = 1\n"
        );
        assert_eq!(new, [("ecs".into(), 3), ("k8s".into(), 1)]);
    }

    #[test]
    fn unknown_routes_and_bad_arguments_are_refused() {
        assert!(edit(FILE, "nope", &[w("ecs", 1)]).is_err());
        assert!(edit("[[routes", "r", &[]).is_err());
        assert!("k8s".parse::<Weight>().is_err());
        assert!("k8s=-1".parse::<Weight>().is_err());
        assert!("=5".parse::<Weight>().is_err());
        assert_eq!("k8s=25".parse::<Weight>(), Ok(w("k8s", 25)));
    }
}
