//! Text laid out for a terminal: columns that fit [`WIDTH`], names cut with an
//! ellipsis, colour that never counts toward the width.

/// No line is wider than this, whatever the names and addresses.
pub(super) const WIDTH: usize = 80;

/// The document comes off the network: a control character in a name must not drive
/// the terminal.
pub(super) fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// At most `width` characters, the middle replaced by an ellipsis when cut: both ends
/// tell names apart (`…-zone-b`, an address's port).
pub(super) fn clip_middle(s: &str, width: usize) -> String {
    let n = s.chars().count();
    if n <= width {
        return s.to_owned();
    }
    let keep = width.saturating_sub(1);
    let head: String = s.chars().take(keep - keep / 2).collect();
    let tail: String = s.chars().skip(n - keep / 2).collect();
    format!("{head}…{tail}")
}

/// At most `width` characters, the start replaced by an ellipsis when cut: a path's
/// file name says more than its root.
pub(super) fn clip_left(s: &str, width: usize) -> String {
    let n = s.chars().count();
    if n <= width {
        return s.to_owned();
    }
    let tail: String = s.chars().skip(n + 1 - width).collect();
    format!("…{tail}")
}

/// The visible width: characters, less ANSI colour sequences.
pub(super) fn visible_width(line: &str) -> usize {
    let mut n = 0;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // `ESC [ ... m`
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            n += 1;
        }
    }
    n
}

/// The line cut to `width` visible columns with an ellipsis; colour sequences are kept
/// whole, and reset after a cut.
pub(super) fn fit(line: &str, width: usize, colour: bool) -> String {
    if visible_width(line) <= width {
        return line.to_owned();
    }
    let mut out = String::new();
    let mut n = 0;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            out.push(c);
            for c in chars.by_ref() {
                out.push(c);
                if c == 'm' {
                    break;
                }
            }
        } else if n + 1 < width {
            out.push(c);
            n += 1;
        } else {
            break;
        }
    }
    out.push('…');
    if colour {
        out.push_str(RESET);
    }
    out
}

// === impl Pen ===

pub(super) const RESET: &str = "\x1b[0m";

#[derive(Debug, Clone, Copy)]
pub(super) enum Paint {
    Bold,
    Dim,
    Green,
    Yellow,
    Red,
}

/// Paints text when colour is on, and leaves it alone when it is off.
pub(super) struct Pen(pub(super) bool);

impl Pen {
    pub(super) fn paint(&self, paint: Paint, text: &str) -> String {
        if !self.0 {
            return text.to_owned();
        }
        let code = match paint {
            Paint::Bold => "1",
            Paint::Dim => "2",
            Paint::Green => "32",
            Paint::Yellow => "33",
            Paint::Red => "31",
        };
        format!("\x1b[{code}m{text}{RESET}")
    }
}

// === impl Table ===

pub(super) struct Cell {
    pub(super) text: String,
    pub(super) paint: Option<Paint>,
}

impl Cell {
    pub(super) fn plain(text: String) -> Cell {
        Cell { text, paint: None }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Align {
    Left,
    Right,
}

/// A column: its heading, alignment and least width (a column of dashes stays as wide
/// as one of figures, so tables line up).
pub(super) struct Column(pub(super) &'static str, pub(super) Align, pub(super) usize);

/// Columns sized by their content, indented by two; the first (the name) takes what
/// the others leave of the width and is cut in the middle when that is not enough.
pub(super) struct Table {
    columns: &'static [Column],
    rows: Vec<Vec<Cell>>,
}

impl Table {
    pub(super) fn new(columns: &'static [Column]) -> Table {
        Table {
            columns,
            rows: Vec::new(),
        }
    }

    pub(super) fn row(&mut self, cells: Vec<Cell>) {
        self.rows.push(cells);
    }

    pub(super) fn render(&self, pen: &Pen, out: &mut Vec<String>) {
        let cols = self.columns;
        let mut widths: Vec<usize> = cols.iter().map(|c| c.0.chars().count().max(c.2)).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.text.chars().count());
            }
        }
        // Two spaces between columns when the names fit that way, else one between
        // figures; a left-aligned column always has two after it.
        let fixed = |gap: usize| -> usize {
            2 + (1..cols.len())
                .map(|i| if cols[i - 1].1 == Align::Left { 2 } else { gap } + widths[i])
                .sum::<usize>()
        };
        let gap = if widths[0] + fixed(2) <= WIDTH { 2 } else { 1 };
        widths[0] = widths[0].min(WIDTH.saturating_sub(fixed(gap)).max(8));
        let line = |cells: Vec<(&str, Option<Paint>)>| {
            let mut line = String::from("  ");
            for (i, (text, paint)) in cells.into_iter().enumerate() {
                if i > 0 {
                    let n = if cols[i - 1].1 == Align::Left { 2 } else { gap };
                    line.push_str(&" ".repeat(n));
                }
                let text = clip_middle(text, widths[i]);
                let pad = " ".repeat(widths[i] - text.chars().count());
                let text = match paint {
                    Some(p) => pen.paint(p, &text),
                    None => text,
                };
                match cols[i].1 {
                    Align::Left => {
                        line.push_str(&text);
                        line.push_str(&pad);
                    }
                    Align::Right => {
                        line.push_str(&pad);
                        line.push_str(&text);
                    }
                }
            }
            line.trim_end().to_owned()
        };
        out.push(line(cols.iter().map(|c| (c.0, Some(Paint::Dim))).collect()));
        for row in &self.rows {
            out.push(line(
                row.iter().map(|c| (c.text.as_str(), c.paint)).collect(),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_cuts_visible_text_and_keeps_escapes_whole() {
        let line = format!("\x1b[1m{}\x1b[0m", "x".repeat(100));
        let cut = fit(&line, 10, true);
        assert_eq!(visible_width(&cut), 10);
        assert!(cut.starts_with("\x1b[1mxxxxxxxxx…"));
        assert!(cut.ends_with(RESET));
        assert_eq!(fit("short", 10, false), "short");
    }

    #[test]
    fn clips_keep_the_ends_that_tell_names_apart() {
        assert_eq!(clip_middle("abcdefghij", 10), "abcdefghij");
        assert_eq!(clip_middle("abcdefghij", 5), "ab…ij");
        assert_eq!(clip_left("/a/b/c/file.toml", 10), "…file.toml");
        assert_eq!(clean("a\x1b[31mb\n"), "a?[31mb?");
    }
}
