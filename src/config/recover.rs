//! Deserializes past serde's first error, so that `check` can name every error of a
//! file that parses as TOML, not just the first unknown key or wrong-typed value.
//!
//! Each error with a span is recorded, then the entry it points at is blanked with
//! spaces and serde runs again. Blanking keeps every newline and every byte offset, so
//! later errors (and the semantic checks on the final text) are located exactly as in
//! the file the user wrote.

use std::path::Path;

use super::blank;
use super::raw::RawConfig;
use super::Diagnostic;

/// Enough for any config a person writes; the bound only keeps a pathological file
/// from costing a parse per entry.
const MAX_ROUNDS: usize = 100;

pub(super) struct Deserialized {
    /// What serde made of the text once every recorded error was blanked out; `None`
    /// when recovery stopped first.
    pub raw: Option<RawConfig>,
    pub errors: Vec<Diagnostic>,
    /// The byte ranges blanked out: a later finding that touches one follows from the
    /// blanking (an emptied split, an emptied backend list), not from the user.
    pub blanked: Vec<std::ops::Range<usize>>,
}

pub(super) fn deserialize(path: &Path, text: &str) -> Deserialized {
    let mut current = text.to_owned();
    let mut errors = Vec::new();
    let mut blanked_keys: Vec<String> = Vec::new();
    for _ in 0..MAX_ROUNDS {
        let e = match toml::from_str::<RawConfig>(&current) {
            Ok(raw) => {
                return Deserialized {
                    raw: Some(raw),
                    blanked: changed(text, &current),
                    errors,
                }
            }
            Err(e) => e,
        };
        let message = e.message().trim().to_owned();
        let missing = missing_field(&message).map(str::to_owned);
        // Serde walks the tables in a fixed order and reports a missing field only after
        // the rest of its table, so a missing field named like a key we blanked is missing
        // from the table we blanked it in: our doing, not the user's.
        if missing.as_ref().is_some_and(|f| blanked_keys.contains(f)) {
            break;
        }
        let span = e.span();
        errors.push(Diagnostic::at(
            path,
            text,
            span.clone().unwrap_or(0..0),
            message,
        ));
        // Blanking cannot add what is missing.
        if missing.is_some() {
            break;
        }
        let Some((next, keys)) = span.and_then(|s| without_entry_at(&current, s.start)) else {
            break;
        };
        current = next;
        blanked_keys.extend(keys);
    }
    Deserialized {
        raw: None,
        errors,
        blanked: Vec::new(),
    }
}

/// The runs of bytes where `now` differs from `was` (both the same length: blanking
/// only turns bytes into spaces).
fn changed(was: &str, now: &str) -> Vec<std::ops::Range<usize>> {
    let mut runs: Vec<std::ops::Range<usize>> = Vec::new();
    for (i, (a, b)) in was.bytes().zip(now.bytes()).enumerate() {
        if a == b {
            continue;
        }
        match runs.last_mut() {
            Some(run) if run.end == i => run.end = i + 1,
            _ => runs.push(i..i + 1),
        }
    }
    runs
}

/// `text` with the entry at `pos` blanked, and the keys that went with it. `None` when
/// that makes no progress or would break the TOML, whose syntax errors would be ours.
fn without_entry_at(text: &str, pos: usize) -> Option<(String, Vec<String>)> {
    let removal = blank::removal_at(text, pos)?;
    let next = blank::blank(text, &removal.ranges)?;
    let valid = toml::de::DeTable::parse(&next).is_ok();
    (valid && next != text).then_some((next, removal.keys))
}

/// The field a "missing field `x`" error names.
fn missing_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("missing field `")?;
    rest.split('`').next()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn located(text: &str) -> (bool, Vec<String>) {
        let d = deserialize(Path::new("t.toml"), text);
        let errors = d
            .errors
            .iter()
            .map(|e| format!("{}:{}: {}", e.line, e.column, e.message))
            .collect();
        (d.raw.is_some(), errors)
    }

    fn blanked(text: &str, pos: usize) -> String {
        let removal = blank::removal_at(text, pos).expect("an entry there");
        blank::blank(text, &removal.ranges).expect("utf-8")
    }

    #[test]
    fn blanking_keeps_offsets_and_leaves_valid_toml() {
        let cases = [
            ("a = 1\nb = 2\n", "b", "a = 1\n     \n"),
            (
                "t = { a = 1, b = 2, c = 3 }\n",
                "a",
                "t = {        b = 2, c = 3 }\n",
            ),
            (
                "t = { a = 1, b = 2, c = 3 }\n",
                "b",
                "t = { a = 1       , c = 3 }\n",
            ),
            (
                "t = { a = 1, b = 2, c = 3 }\n",
                "c",
                "t = { a = 1, b = 2        }\n",
            ),
            (
                "t = { x.a = 1, x.b = 2, c = 3 }\n",
                "x",
                "t = {                   c = 3 }\n",
            ),
            ("t = { a = 1 }\n", "a", "t = {       }\n"),
            ("v = [1, \"é\", 3]\n", "\"", "v = [1      , 3]\n"),
            (
                "[s]\nx = 1\n[s.u]\ny = 2\n[t]\n",
                "s",
                "   \n     \n     \n     \n[t]\n",
            ),
            (
                "[[r]]\nx = 1\n[[r]]\n[t]\n",
                "r",
                "     \n     \n     \n[t]\n",
            ),
            (
                "a.b = 1\na.c = 2\nd = 3\n",
                "a",
                "       \n       \nd = 3\n",
            ),
        ];
        for (text, at, want) in cases {
            let pos = text.find(at).expect("marker");
            let got = blanked(text, pos);
            assert_eq!(got, want, "blanking {at:?} in {text:?}");
            assert!(toml::de::DeTable::parse(&got).is_ok(), "{got:?}");
        }
    }

    #[test]
    fn a_wrong_type_in_a_required_field_is_not_also_missing() {
        let (ok, errors) = located("[[routes]]\nname = \"r\"\nsplit = \"x\"\n");
        assert!(!ok);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].starts_with("3:9: invalid type"), "{errors:?}");
    }

    #[test]
    fn a_missing_field_of_the_users_own_is_reported() {
        let (ok, errors) = located("[limits]\nretires = 1\n[[routes]]\nname = \"r\"\n");
        assert!(!ok);
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[1].contains("missing field `split`"), "{errors:?}");
    }

    #[test]
    fn odd_inputs_do_not_panic() {
        let odd = [
            "",
            "\u{0}",
            "= 1",
            "a = [",
            "ключ = 1\n[[routes]]\nимя = \"é\"\n",
            "\"é\" = { \"ü\" = [1, 2, { x = \"ÿ\" }] }\n",
            "[limits]\r\nretries = \"x\"\r\nbogus = 1\r\n",
            "routes = [1, \"x\", {}, [[]]]\n",
            "[[pools]]\n[[pools]]\n[[limits]]\n",
            "limits = { retries = \"x\", bogus = 1, }\n",
            "limits = {\n  # c\n  bogus = 1, # d\n  retries = 2,\n}\n",
            "listen.http = [\"a\", 5, 'b',]\nlisten.x = 1\n",
            "pools.p.backends = [{ addr = 1 }, { wieght = 2, addr = \"a:1\" }]\n",
            "[runtime.workers]\n[runtime]\nx = '''\nmulti\n'''\n",
        ];
        for text in odd {
            let (ok, errors) = located(text);
            assert!(ok || !errors.is_empty(), "{text:?}");
        }
    }

    #[test]
    fn a_mangled_good_config_never_panics() {
        let good = "[limits]\nretries = 2\n[pools.p]\nbackends = [\"127.0.0.1:1\", { addr = \"127.0.0.1:2\", weight = 2 }]\n\
                    slow_start = { window = \"30s\" }\n[[routes]]\nname = \"r\"\nsplit = { p = 1 }\n";
        for (i, _) in good.char_indices() {
            for junk in ["\"", "=", "[", "]", "{", ",", "x", "5", "\n", "é"] {
                let text = format!("{}{junk}{}", &good[..i], &good[i..]);
                let (ok, errors) = located(&text);
                assert!(ok || !errors.is_empty(), "{text:?}");
            }
        }
    }
}
