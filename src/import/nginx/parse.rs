//! nginx's config syntax: directives with arguments, ended by `;` or carrying a
//! `{ ... }` block; `#` comments; single- and double-quoted strings with backslash
//! escapes; `${var}` inside a word; `include` with globs, spliced in where it stands.
//! A relative include is resolved against the main file's directory (nginx's prefix),
//! whichever file includes it. Variables stay text.

use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where a directive starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct At {
    pub file: Arc<PathBuf>,
    pub line: u32,
}

impl std::fmt::Display for At {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

#[derive(Debug, Clone)]
pub struct Directive {
    pub name: String,
    pub args: Vec<String>,
    /// The `{ ... }` block, for a block directive.
    pub block: Option<Vec<Directive>>,
    pub at: At,
}

/// A syntax error or an unreadable file, at `file:line`.
#[derive(Debug, thiserror::Error)]
#[error("{at}: {message}")]
pub struct ParseError {
    pub at: At,
    pub message: String,
}

/// Includes deeper than this are taken for a loop.
const MAX_INCLUDE_DEPTH: usize = 16;

/// Reads `path` and every file it includes.
pub fn read(path: &Path) -> Result<Vec<Directive>, ParseError> {
    let root = path.parent().unwrap_or(Path::new("."));
    read_file(path, root, None, 0)
}

fn read_file(
    path: &Path,
    root: &Path,
    from: Option<&At>,
    depth: usize,
) -> Result<Vec<Directive>, ParseError> {
    let file = Arc::new(path.to_path_buf());
    let fail = |message: String| ParseError {
        at: from.cloned().unwrap_or(At {
            file: file.clone(),
            line: 0,
        }),
        message,
    };
    if depth > MAX_INCLUDE_DEPTH {
        return Err(fail(format!(
            "includes nested deeper than {MAX_INCLUDE_DEPTH}: a loop?"
        )));
    }
    let bytes =
        std::fs::read(path).map_err(|e| fail(format!("cannot read {}: {e}", path.display())))?;
    // nginx takes any bytes; a Latin-1 comment must not stop the import.
    let text = String::from_utf8_lossy(&bytes);
    let tokens = tokenize(&text, &file)?;
    let mut pos = 0;
    let directives = parse_block(&tokens, &mut pos, &file, 0)?;
    expand_includes(directives, root, depth)
}

#[derive(Debug, PartialEq)]
enum Tok {
    Word(String),
    Semi,
    Open,
    Close,
}

fn tokenize(text: &str, file: &Arc<PathBuf>) -> Result<Vec<(Tok, u32)>, ParseError> {
    let mut out = Vec::new();
    let mut line = 1u32;
    let mut chars = text.chars().peekable();
    let err = |line, message: &str| ParseError {
        at: At {
            file: file.clone(),
            line,
        },
        message: message.to_owned(),
    };
    while let Some(c) = chars.next() {
        match c {
            '\n' => line += 1,
            c if c.is_whitespace() => {}
            '#' => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        line += 1;
                        break;
                    }
                }
            }
            ';' => out.push((Tok::Semi, line)),
            '{' => out.push((Tok::Open, line)),
            '}' => out.push((Tok::Close, line)),
            '"' | '\'' => {
                let start = line;
                let mut word = String::new();
                loop {
                    match chars.next() {
                        None => return Err(err(start, "unterminated quoted string")),
                        Some(q) if q == c => break,
                        Some('\\') => match chars.next() {
                            Some('n') => word.push('\n'),
                            Some('t') => word.push('\t'),
                            Some('r') => word.push('\r'),
                            Some(e @ ('"' | '\'' | '\\')) => word.push(e),
                            Some(e) => {
                                line += u32::from(e == '\n');
                                word.push('\\');
                                word.push(e);
                            }
                            None => return Err(err(start, "unterminated quoted string")),
                        },
                        Some(ch) => {
                            line += u32::from(ch == '\n');
                            word.push(ch);
                        }
                    }
                }
                out.push((Tok::Word(word), start));
            }
            c => {
                let mut word = String::from(c);
                let mut escaped = c == '\\';
                while let Some(&n) = chars.peek() {
                    if escaped {
                        word.push(n);
                        chars.next();
                        escaped = false;
                        continue;
                    }
                    // `${name}` is one word, braces and all.
                    if n == '{' && word.ends_with('$') {
                        for b in chars.by_ref() {
                            word.push(b);
                            if b == '}' {
                                break;
                            }
                        }
                        continue;
                    }
                    if n.is_whitespace() || matches!(n, ';' | '{' | '}') {
                        break;
                    }
                    escaped = n == '\\';
                    word.push(n);
                    chars.next();
                }
                out.push((Tok::Word(word), line));
            }
        }
    }
    Ok(out)
}

/// Blocks nested deeper than this are refused (no real config comes close; the parser
/// recurses per block).
const MAX_BLOCK_DEPTH: usize = 64;

fn parse_block(
    tokens: &[(Tok, u32)],
    pos: &mut usize,
    file: &Arc<PathBuf>,
    depth: usize,
) -> Result<Vec<Directive>, ParseError> {
    let nested = depth > 0;
    let at = |line| At {
        file: file.clone(),
        line,
    };
    if depth > MAX_BLOCK_DEPTH {
        let line = tokens.get(*pos).map_or(1, |t| t.1);
        return Err(ParseError {
            at: at(line),
            message: format!("blocks nested deeper than {MAX_BLOCK_DEPTH}"),
        });
    }
    let mut out = Vec::new();
    loop {
        let Some((tok, line)) = tokens.get(*pos) else {
            if nested {
                let line = tokens.last().map_or(1, |t| t.1);
                return Err(ParseError {
                    at: at(line),
                    message: "unexpected end of file, expecting \"}\"".into(),
                });
            }
            return Ok(out);
        };
        *pos += 1;
        let name = match tok {
            Tok::Close if nested => return Ok(out),
            Tok::Word(w) => w.clone(),
            other => {
                return Err(ParseError {
                    at: at(*line),
                    message: format!("unexpected {}", describe(other)),
                })
            }
        };
        let mut args = Vec::new();
        loop {
            let Some((tok, l)) = tokens.get(*pos) else {
                return Err(ParseError {
                    at: at(*line),
                    message: format!("directive \"{name}\" is not terminated by \";\""),
                });
            };
            *pos += 1;
            match tok {
                Tok::Word(w) => args.push(w.clone()),
                Tok::Semi => {
                    out.push(Directive {
                        name,
                        args,
                        block: None,
                        at: at(*line),
                    });
                    break;
                }
                Tok::Open => {
                    let block = parse_block(tokens, pos, file, depth + 1)?;
                    out.push(Directive {
                        name,
                        args,
                        block: Some(block),
                        at: at(*line),
                    });
                    break;
                }
                Tok::Close => {
                    return Err(ParseError {
                        at: at(*l),
                        message: format!("unexpected \"}}\" in directive \"{name}\""),
                    })
                }
            }
        }
    }
}

fn describe(tok: &Tok) -> &'static str {
    match tok {
        Tok::Semi => "\";\"",
        Tok::Open => "\"{\"",
        Tok::Close => "\"}\"",
        Tok::Word(_) => "word",
    }
}

/// Replaces every `include` (at any depth) by the directives of the files it names.
fn expand_includes(
    directives: Vec<Directive>,
    root: &Path,
    depth: usize,
) -> Result<Vec<Directive>, ParseError> {
    let mut out = Vec::with_capacity(directives.len());
    for mut d in directives {
        if d.name == "include" && d.block.is_none() {
            let [pattern] = d.args.as_slice() else {
                return Err(ParseError {
                    at: d.at,
                    message: "include takes one file or pattern".into(),
                });
            };
            for file in included(root, pattern, &d.at)? {
                out.extend(read_file(&file, root, Some(&d.at), depth + 1)?);
            }
            continue;
        }
        if let Some(block) = d.block.take() {
            d.block = Some(expand_includes(block, root, depth)?);
        }
        out.push(d);
    }
    Ok(out)
}

/// The files an `include` names, in name order; a pattern may match none, a plain
/// path must exist (as nginx has it).
fn included(dir: &Path, pattern: &str, at: &At) -> Result<Vec<PathBuf>, ParseError> {
    let full = dir.join(pattern);
    let text = full.to_string_lossy();
    let fail = |message: String| ParseError {
        at: at.clone(),
        message,
    };
    if !pattern.contains(['*', '?', '[']) {
        return Ok(vec![full]);
    }
    let paths =
        glob::glob(&text).map_err(|e| fail(format!("bad include pattern {pattern:?}: {e}")))?;
    let mut files = paths
        .filter_map(Result::ok)
        .filter(|p| p.is_file())
        .collect::<Vec<_>>();
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<Directive>, ParseError> {
        let file = Arc::new(PathBuf::from("t.conf"));
        let tokens = tokenize(text, &file)?;
        parse_block(&tokens, &mut 0, &file, 0)
    }

    #[test]
    fn directives_blocks_quotes_comments_and_lines() {
        let d = parse(
            "user nginx; # a comment\nhttp {\n  log_format main '$remote_addr \"x\"';\n  \
             split_clients \"${remote_addr}AAA\" $v { 50% a; * b; }\n}\n",
        )
        .expect("parses");
        assert_eq!(d[0].name, "user");
        assert_eq!(d[0].args, ["nginx"]);
        let http = d[1].block.as_ref().expect("block");
        assert_eq!(http[0].args, ["main", "$remote_addr \"x\""]);
        assert_eq!(http[1].args, ["${remote_addr}AAA", "$v"]);
        assert_eq!(http[1].at.line, 4);
        let split = http[1].block.as_ref().expect("split block");
        assert_eq!(
            (split[0].name.as_str(), split[0].args.as_slice()),
            ("50%", &["a".to_owned()][..])
        );
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let e = parse("http {\n server {\n listen 80;\n").expect_err("unclosed");
        assert!(e.to_string().starts_with("t.conf:"), "{e}");
        let e = parse("a b\n}").expect_err("stray brace");
        assert_eq!(e.at.line, 2, "{e}");
        let e = parse("a 'b;\n").expect_err("open quote");
        assert_eq!(e.at.line, 1, "{e}");
        assert!(parse("a b").is_err());
        let deep = "a {".repeat(100_000);
        assert!(
            parse(&deep).is_err(),
            "deep nesting is an error, not a stack overflow"
        );
    }
}
