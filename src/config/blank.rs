//! The entries of a TOML document located by byte span, and the byte ranges that blank
//! one of them out while leaving valid TOML in which every other byte keeps its offset.

use std::collections::BTreeMap;
use std::ops::Range;

use toml::de::{DeString, DeTable, DeValue};
use toml::Spanned;

/// What blanking one entry takes.
#[derive(Debug)]
pub(super) struct Removal {
    /// Byte ranges to overwrite with spaces.
    pub(crate) ranges: Vec<Range<usize>>,
    /// Keys that can vanish with the entry: its own, and those of the dotted-key tables
    /// around it, which disappear when it was their only content.
    pub keys: Vec<String>,
}

/// How to blank the innermost entry at byte `pos` of `text`; `None` when `text` is not
/// TOML or no entry is there.
pub(super) fn removal_at(text: &str, pos: usize) -> Option<Removal> {
    let doc = DeTable::parse(text).ok()?;
    let mut entries = Entries {
        text: text.as_bytes(),
        nodes: Vec::new(),
        lists: Vec::new(),
    };
    let root = Within {
        up: None,
        list: None,
        depth: 0,
    };
    entries.table(doc.get_ref(), root);
    entries.sort_lists();
    let target = entries.innermost(pos)?;
    Some(entries.removal(target))
}

/// `text` with `ranges` overwritten by spaces. Newlines are kept and every byte of a
/// character becomes a space, so all other text keeps its line, column and offset.
pub(super) fn blank(text: &str, ranges: &[Range<usize>]) -> Option<String> {
    let mut bytes = text.as_bytes().to_vec();
    for r in ranges {
        let end = r.end.min(bytes.len());
        let start = r.start.min(end);
        for b in bytes.get_mut(start..end).into_iter().flatten() {
            if *b != b'\n' {
                *b = b' ';
            }
        }
    }
    // The parser's spans fall on character boundaries; should one not, recovery stops
    // here rather than panic.
    String::from_utf8(bytes).ok()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// `key = value`, or an element of an inline array.
    Leaf,
    /// The `a` that a dotted key `a.b = 1` or a header `[a.b]` implies: it has no text of
    /// its own, so its span is that of its first key.
    Implicit,
    /// A `[table]`, whose span is its header.
    Header,
    /// The `routes` of `[[routes]]`, whose span is its first header.
    TableArray,
    /// One `[[routes]]`, whose span is its header.
    TableArrayElement,
}

struct Node {
    key: Option<(String, Range<usize>)>,
    value: Range<usize>,
    shape: Shape,
    /// The comma-separated list (inline table or array) it is an item of; `None` for
    /// entries one to a line.
    list: Option<usize>,
    up: Option<usize>,
    depth: usize,
    /// One past its last descendant: nodes are stored in pre-order.
    end: usize,
}

/// The items of an inline table (flattened through dotted keys) or of an inline array.
struct List {
    /// Just inside the `{` or `[`.
    open: usize,
    /// The `}` or `]`.
    close: usize,
    /// Leaf nodes, in source order once sorted.
    items: Vec<usize>,
}

#[derive(Clone, Copy)]
struct Within {
    up: Option<usize>,
    list: Option<usize>,
    depth: usize,
}

struct Entries<'a> {
    text: &'a [u8],
    nodes: Vec<Node>,
    lists: Vec<List>,
}

impl Node {
    /// Whether an error at `pos` is about this entry. Serde points at a key (unknown
    /// field) or at the start of a value (wrong type); a header's span covers the keys of
    /// the tables it implies, so only its first byte counts.
    fn hit(&self, pos: usize) -> bool {
        let in_key = self.key.as_ref().is_some_and(|(_, k)| k.contains(&pos));
        match self.shape {
            Shape::Leaf => in_key || self.value.contains(&pos),
            Shape::Implicit => in_key,
            Shape::Header | Shape::TableArray => in_key || pos == self.value.start,
            Shape::TableArrayElement => false,
        }
    }

    fn start(&self) -> usize {
        self.key.as_ref().map_or(self.value.start, |(_, k)| k.start)
    }
}

impl Entries<'_> {
    fn table(&mut self, table: &DeTable<'_>, at: Within) {
        for (key, value) in table.iter() {
            self.entry(Some(key), value, at);
        }
    }

    fn entry(
        &mut self,
        key: Option<&Spanned<DeString<'_>>>,
        value: &Spanned<DeValue<'_>>,
        at: Within,
    ) {
        let shape = self.shape(key, value, at.list);
        let index = self.nodes.len();
        self.nodes.push(Node {
            key: key.map(|k| (k.get_ref().to_string(), k.span())),
            value: value.span(),
            shape,
            list: at.list,
            up: at.up,
            depth: at.depth,
            end: index + 1,
        });
        if let (Shape::Leaf, Some(list)) = (shape, at.list.and_then(|l| self.lists.get_mut(l))) {
            list.items.push(index);
        }
        self.children(
            shape,
            value,
            Within {
                up: Some(index),
                list: at.list,
                depth: at.depth + 1,
            },
        );
        let end = self.nodes.len();
        if let Some(node) = self.nodes.get_mut(index) {
            node.end = end;
        }
    }

    /// Walks what `value` contains: a dotted-key table's entries stay in the list (or
    /// lines) they were written in; an inline table or array starts a list of its own.
    fn children(&mut self, shape: Shape, value: &Spanned<DeValue<'_>>, inner: Within) {
        let lines = Within {
            list: None,
            ..inner
        };
        match (shape, value.get_ref()) {
            (Shape::Implicit, DeValue::Table(t)) => self.table(t, inner),
            (Shape::Header | Shape::TableArrayElement, DeValue::Table(t)) => self.table(t, lines),
            (Shape::TableArray, DeValue::Array(a)) => {
                a.iter().for_each(|e| self.entry(None, e, lines))
            }
            (Shape::Leaf, DeValue::Table(t)) => {
                let list = Some(self.new_list(value.span()));
                self.table(t, Within { list, ..inner });
            }
            (Shape::Leaf, DeValue::Array(a)) => {
                let list = Some(self.new_list(value.span()));
                a.iter()
                    .for_each(|e| self.entry(None, e, Within { list, ..inner }));
            }
            _ => {}
        }
    }

    fn shape(
        &self,
        key: Option<&Spanned<DeString<'_>>>,
        value: &Spanned<DeValue<'_>>,
        list: Option<usize>,
    ) -> Shape {
        let span = value.span();
        match (key, value.get_ref()) {
            // Only the elements of a `[[table]]` array are walked keyless outside a list.
            (None, _) if list.is_none() => Shape::TableArrayElement,
            (Some(k), DeValue::Table(_)) if k.span() == span => Shape::Implicit,
            (Some(_), DeValue::Table(_))
                if list.is_none() && self.text.get(span.start) == Some(&b'[') =>
            {
                Shape::Header
            }
            (Some(_), DeValue::Array(a))
                if list.is_none() && a.first().is_some_and(|f| f.span() == span) =>
            {
                Shape::TableArray
            }
            _ => Shape::Leaf,
        }
    }

    fn new_list(&mut self, span: Range<usize>) -> usize {
        self.lists.push(List {
            open: span.start + 1,
            close: span.end.saturating_sub(1),
            items: Vec::new(),
        });
        self.lists.len() - 1
    }

    /// Tables are walked in key order, not file order.
    fn sort_lists(&mut self) {
        let nodes = &self.nodes;
        for list in &mut self.lists {
            list.items
                .sort_by_key(|&i| nodes.get(i).map_or(0, |n| n.value.start));
        }
    }

    fn innermost(&self, pos: usize) -> Option<usize> {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.hit(pos))
            .max_by_key(|(_, n)| n.depth)
            .map(|(i, _)| i)
    }

    fn removal(&self, target: usize) -> Removal {
        let end = self.nodes.get(target).map_or(target, |n| n.end);
        let mut ranges = Vec::new();
        let mut listed: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for (i, n) in self.nodes.iter().enumerate().take(end).skip(target) {
            match (n.shape, n.list) {
                (Shape::Leaf, Some(list)) => listed.entry(list).or_default().push(i),
                (Shape::Leaf, None) => ranges.push(self.line_start(n.start())..n.value.end),
                (Shape::Header | Shape::TableArrayElement, _) => {
                    ranges.push(self.line_start(n.value.start)..n.value.end);
                }
                (Shape::Implicit | Shape::TableArray, _) => {}
            }
        }
        for (list, removed) in listed {
            if let Some(list) = self.lists.get(list) {
                ranges.extend(self.list_removal(list, &removed));
            }
        }
        Removal {
            ranges,
            keys: self.vanishing_keys(target),
        }
    }

    /// Each item's range runs from the end of the item before it (or the opening
    /// bracket) to its own end, so it takes the comma before it along. The first item
    /// has no comma before it: when it goes, the comma before the first kept item (or a
    /// trailing comma, when none is kept) goes too.
    fn list_removal(&self, list: &List, removed: &[usize]) -> Vec<Range<usize>> {
        let mut ranges = Vec::new();
        let mut start = list.open;
        let mut first_kept = None;
        for &item in &list.items {
            let end = self.nodes.get(item).map_or(start, |n| n.value.end);
            if removed.contains(&item) {
                ranges.push(start..end);
            } else if first_kept.is_none() {
                first_kept = Some(start);
            }
            start = end;
        }
        let first_removed = list.items.first().is_some_and(|i| removed.contains(i));
        if first_removed {
            let after = first_kept.unwrap_or(start);
            if let Some(comma) = self.comma_after(after, list.close) {
                ranges.push(comma..comma + 1);
            }
        }
        ranges
    }

    /// The comma that follows a value ending at `from`, across whitespace and comments.
    fn comma_after(&self, from: usize, close: usize) -> Option<usize> {
        let mut i = from;
        while i < close {
            match self.text.get(i)? {
                b',' => return Some(i),
                b' ' | b'\t' | b'\r' | b'\n' => i += 1,
                b'#' => {
                    let rest = self.text.get(i..close)?;
                    i += rest.iter().position(|&b| b == b'\n')?;
                }
                _ => return None,
            }
        }
        None
    }

    fn line_start(&self, pos: usize) -> usize {
        let before = self.text.get(..pos).unwrap_or(self.text);
        before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1)
    }

    fn vanishing_keys(&self, target: usize) -> Vec<String> {
        let mut keys = Vec::new();
        let mut at = self.nodes.get(target);
        while let Some(node) = at {
            if let Some((key, _)) = &node.key {
                keys.push(key.clone());
            }
            at = node
                .up
                .and_then(|up| self.nodes.get(up))
                .filter(|n| n.shape == Shape::Implicit);
        }
        keys
    }
}
