//! The rows stage: JSON bytes into rows, in one strict pass (no AWS types, nothing from the
//! stages above; the schema and encode stages read the rows from here).
//!
//! [`json`] does the lexing (escapes, surrogates, nesting limits); this module keeps what it
//! finds as a `Vec` of 8-byte slots instead of a `serde_json::Value` tree: no map per row,
//! strings and numbers other than integers referred to where they lie in the event (only
//! strings with escapes are decoded, into one side buffer), so a decimal never passes through
//! f64 and a 6 MB event's tape stays under 10 MB. Objects are checked for duplicate keys here,
//! once.

pub mod json;

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;
use std::ops::Range;

use crate::Error;
use crate::rows::json::{Number, Scanner};

/// Rows from which inference and building work on the two halves of the rows on two threads.
pub const PARALLEL_ROWS: usize = 16_384;

/// Bytes of rows from which the second half is parsed on a second thread.
const PARALLEL_BYTES: usize = 1 << 20;

/// Where a second thread may start scanning rows: with at least [`PARALLEL_BYTES`] left, the
/// first `{` after the middle of what is left that follows `}` and `,` (whitespace between):
/// a row start in flat or nested rows alike, unless it lies inside a string or a nested list,
/// which the first half's scan then finds out.
fn split_point(scanner: &Scanner) -> Option<usize> {
    let text = scanner.source().as_bytes();
    let from = scanner.position();
    if text.len() - from < PARALLEL_BYTES {
        return None;
    }
    let middle = from + (text.len() - from) / 2;
    let is_space = |b: &u8| matches!(b, b' ' | b'\n' | b'\r' | b'\t');
    let mut at = middle;
    while at < text.len() {
        let close = at + text[at..].iter().position(|&b| b == b'}')?;
        let mut next = close + 1;
        next += text[next..].iter().take_while(|b| is_space(b)).count();
        if text.get(next) == Some(&b',') {
            next += 1;
            next += text[next..].iter().take_while(|b| is_space(b)).count();
            if text.get(next) == Some(&b'{') {
                return Some(next);
            }
        }
        at = close + 1;
    }
    None
}

/// Bytes of text per tape slot that the split parse reserves for. Rows of short strings take
/// a slot per 5 bytes (a key or value of 2-6 bytes with its quotes and separator); reserving
/// for fewer meant a copy of the whole tape when it outgrew its block, which held both copies
/// at once. Reserved pages that no slot reaches are never touched, so they cost no memory.
const TEXT_PER_SLOT: usize = 4;

/// Objects with more members than this are checked for duplicate keys with a hash set.
const SMALL_OBJECT: usize = 32;

/// Which row a message is about: its index among the rows (of the event, or of a source
/// object's JSON array), or its 1-based line in an NDJSON object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowRef {
    Index(usize),
    Line(usize),
}

impl fmt::Display for RowRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RowRef::Index(i) => write!(f, "row {i}"),
            RowRef::Line(n) => write!(f, "line {n}"),
        }
    }
}

/// One JSON value, or the start of a container whose contents follow it on the tape.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Node<'r> {
    Null,
    Bool(bool),
    /// An integer that fits in i64.
    Int(i64),
    /// Any other number, exactly as written: with a fraction or exponent, `-0`, or an integer
    /// beyond i64.
    Number(&'r str),
    Str(&'r str),
    /// An object; `Key`, value pairs follow, up to node `end` (exclusive).
    Object {
        end: u32,
    },
    Key(&'r str),
    /// An array; its elements follow, up to node `end` (exclusive).
    Array {
        end: u32,
    },
}

impl Node<'_> {
    /// The JSON type, for messages that must not quote the value.
    pub fn json_type(&self) -> &'static str {
        match self {
            Node::Null => "null",
            Node::Bool(_) => "boolean",
            Node::Int(_) => "integer",
            Node::Number(text) if is_integer_text(text) => "integer",
            Node::Number(_) => "float",
            Node::Str(_) | Node::Key(_) => "string",
            Node::Object { .. } => "object",
            Node::Array { .. } => "array",
        }
    }
}

/// String equality for keys, which are short and compared for every member of every row:
/// a byte loop up to 16 bytes is cheaper than a call to `memcmp`.
#[inline]
pub fn same_key(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len()
        && if a.len() <= 16 {
            a.iter().zip(b).all(|(x, y)| x == y)
        } else {
            a == b
        }
}

/// Whether a JSON number's text is an integer literal (no fraction, no exponent).
pub fn is_integer_text(text: &str) -> bool {
    !text.bytes().any(|b| matches!(b, b'.' | b'e' | b'E'))
}

/// Where a string's or number's text lies: in the event, or (flag [`DECODED`] in `len`) in
/// the tape's buffer of strings that had escapes.
#[derive(Debug, Clone, Copy)]
struct Span {
    at: u32,
    len: u32,
}

const DECODED: u32 = 1 << 27;

/// The most text a tape's spans can reach (`len` and its flag take 28 bits of a [`Packed`]
/// slot); far more than an event (6 MB) or a source chunk (2 MiB plus one row of at most
/// 32 MiB) holds.
const MAX_TEXT: usize = DECODED as usize - 1;

/// Refuses text the tape's spans cannot reach (past [`MAX_TEXT`]).
fn within_spans(text: &str) -> Result<(), Error> {
    if text.len() > MAX_TEXT {
        return Err(Error::InvalidEvent(format!(
            "the rows are {} bytes; at most {MAX_TEXT} can be converted at once",
            text.len()
        )));
    }
    Ok(())
}

/// A [`Node`] as the tape works with it.
#[derive(Debug, Clone, Copy)]
enum Slot {
    Null,
    Bool(bool),
    /// An integer within 60 bits (nearly every one), kept in its slot.
    Int(i64),
    /// Any other i64, by its index in [`Rows::ints`].
    BigInt(u32),
    Number(Span),
    Str(Span),
    Object {
        end: u32,
    },
    Key(Span),
    Array {
        end: u32,
    },
}

/// A [`Slot`] as stored: 8 bytes, half of what the enum takes, so the tape (the largest thing
/// a conversion holds, a slot per 5 to 8 bytes of rows) needs half the memory. The low 4 bits
/// say which slot; a span keeps its length and flag in bits 4-31 and its offset in 32-63.
#[derive(Debug, Clone, Copy)]
struct Packed(u64);

impl Packed {
    const NULL: u64 = 0;
    const BOOL: u64 = 1;
    const INT: u64 = 2;
    const BIG_INT: u64 = 3;
    const NUMBER: u64 = 4;
    const STR: u64 = 5;
    const KEY: u64 = 6;
    const OBJECT: u64 = 7;
    const ARRAY: u64 = 8;

    /// Whether `v` fits an [`Slot::Int`] slot.
    fn holds(v: i64) -> bool {
        (v << 4) >> 4 == v
    }

    fn pack(slot: Slot) -> Packed {
        let span = |tag: u64, s: Span| tag | u64::from(s.len) << 4 | u64::from(s.at) << 32;
        Packed(match slot {
            Slot::Null => Packed::NULL,
            Slot::Bool(v) => Packed::BOOL | u64::from(v) << 4,
            Slot::Int(v) => {
                debug_assert!(Packed::holds(v));
                Packed::INT | (v << 4) as u64
            }
            Slot::BigInt(i) => Packed::BIG_INT | u64::from(i) << 4,
            Slot::Number(s) => span(Packed::NUMBER, s),
            Slot::Str(s) => span(Packed::STR, s),
            Slot::Key(s) => span(Packed::KEY, s),
            Slot::Object { end } => Packed::OBJECT | u64::from(end) << 4,
            Slot::Array { end } => Packed::ARRAY | u64::from(end) << 4,
        })
    }

    #[inline]
    fn tag(self) -> u64 {
        self.0 & 15
    }

    /// The payload of a `Bool`, `BigInt`, `Object` or `Array` slot.
    #[inline]
    fn small(self) -> u32 {
        (self.0 >> 4) as u32
    }

    /// The span of a `Number`, `Str` or `Key` slot.
    #[inline]
    fn span(self) -> Span {
        Span {
            at: (self.0 >> 32) as u32,
            len: (self.0 >> 4) as u32 & (DECODED | MAX_TEXT as u32),
        }
    }

    // The tape is read far more often than written (inference, then building, walk it), so
    // the readers (`Rows::node`, `skip`, `members`) decode the fields they need from the tag
    // rather than through this.
    fn unpack(self) -> Slot {
        match self.tag() {
            Packed::NULL => Slot::Null,
            Packed::BOOL => Slot::Bool(self.small() != 0),
            Packed::INT => Slot::Int(self.0 as i64 >> 4),
            Packed::BIG_INT => Slot::BigInt(self.small()),
            Packed::NUMBER => Slot::Number(self.span()),
            Packed::STR => Slot::Str(self.span()),
            Packed::KEY => Slot::Key(self.span()),
            Packed::OBJECT => Slot::Object { end: self.small() },
            Packed::ARRAY => Slot::Array { end: self.small() },
            _ => unreachable!("only Packed::pack makes slots"),
        }
    }
}

/// Every row of an event, each an object on one shared tape.
#[derive(Debug, Default)]
pub struct Rows<'a> {
    /// The event's text, which spans point into.
    source: &'a str,
    /// Strings that had escapes, decoded one after another.
    decoded: String,
    slots: Vec<Packed>,
    /// Integers beyond 60 bits, which [`Slot::BigInt`] slots point into.
    ints: Vec<i64>,
    /// The tape index of each row's `Object` node.
    starts: Vec<u32>,
    /// The index of the first row (a chunk of a source object starts past 0).
    first_row: usize,
    /// Each row's line, for rows from NDJSON lines; empty otherwise.
    lines: Vec<usize>,
}

impl<'a> Rows<'a> {
    pub fn len(&self) -> usize {
        self.starts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }

    pub fn node(&self, at: usize) -> Node<'_> {
        let slot = self.slots[at];
        match slot.tag() {
            Packed::NULL => Node::Null,
            Packed::BOOL => Node::Bool(slot.small() != 0),
            Packed::INT => Node::Int(slot.0 as i64 >> 4),
            Packed::BIG_INT => Node::Int(self.ints[slot.small() as usize]),
            Packed::NUMBER => Node::Number(self.text(slot.span())),
            Packed::STR => Node::Str(self.text(slot.span())),
            Packed::KEY => Node::Key(self.text(slot.span())),
            Packed::OBJECT => Node::Object { end: slot.small() },
            Packed::ARRAY => Node::Array { end: slot.small() },
            _ => unreachable!("only Packed::pack makes slots"),
        }
    }

    fn text(&self, span: Span) -> &str {
        let (buffer, len) = if span.len & DECODED == 0 {
            (self.source, span.len)
        } else {
            (self.decoded.as_str(), span.len & !DECODED)
        };
        let range = span.at as usize..(span.at + len) as usize;
        debug_assert!(buffer.get(range.clone()).is_some());
        // SAFETY: every span was made from a `&str` slice of this buffer (`Rows::span`), so the
        // range is in bounds and on character boundaries; this runs for every key of every
        // row, where the checked slice's boundary tests showed in profiles.
        unsafe { buffer.get_unchecked(range) }
    }

    /// The span of `text`, borrowed from the event or decoded into the side buffer.
    fn span(&mut self, text: Cow<'a, str>) -> Span {
        match text {
            Cow::Borrowed(text) => Span {
                at: (text.as_ptr() as usize - self.source.as_ptr() as usize) as u32,
                len: text.len() as u32,
            },
            Cow::Owned(text) => {
                let at = self.decoded.len() as u32;
                self.decoded.push_str(&text);
                Span {
                    at,
                    len: text.len() as u32 | DECODED,
                }
            }
        }
    }

    /// The tape index of each row's object, in row order.
    pub fn starts(&self) -> impl Iterator<Item = usize> + '_ {
        self.starts.iter().map(|&s| s as usize)
    }

    /// `(which row, tape index of its object)` for each row in `part` (indices on this tape).
    pub fn rows_in(&self, part: Range<usize>) -> impl Iterator<Item = (RowRef, usize)> + '_ {
        let first = part.start;
        self.starts[part]
            .iter()
            .enumerate()
            .map(move |(i, &s)| (self.row_ref(first + i), s as usize))
    }

    /// How messages name the row at `index` on this tape.
    pub fn row_ref(&self, index: usize) -> RowRef {
        match self.lines.get(index) {
            Some(&line) => RowRef::Line(line),
            None => RowRef::Index(self.first_row + index),
        }
    }

    /// `work` on the first and on the second half of the rows, on two threads; both results,
    /// in row order.
    pub fn on_halves<T: Send>(&self, work: impl Fn(Range<usize>) -> T + Sync) -> (T, T) {
        let middle = self.len() / 2;
        std::thread::scope(|scope| {
            let second = scope.spawn(|| work(middle..self.len()));
            let first = work(0..middle);
            let second = second
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (first, second)
        })
    }

    /// The index just past the value that starts at `at`.
    pub fn skip(&self, at: usize) -> usize {
        let slot = self.slots[at];
        match slot.tag() {
            Packed::OBJECT | Packed::ARRAY => slot.small() as usize,
            _ => at + 1,
        }
    }

    /// The `(key, value index)` pairs of the object at `at`.
    pub fn members(&self, at: usize) -> impl Iterator<Item = (&str, usize)> + '_ {
        let end = self.skip(at);
        let mut next = at + 1;
        std::iter::from_fn(move || {
            if next >= end {
                return None;
            }
            let key = self.slots[next];
            debug_assert_eq!(
                key.tag(),
                Packed::KEY,
                "an object's members start with a key"
            );
            let value = next + 1;
            next = self.skip(value);
            Some((self.text(key.span()), value))
        })
    }

    /// The value indices of the array at `at`.
    pub fn elements(&self, at: usize) -> impl Iterator<Item = usize> + '_ {
        let end = self.skip(at);
        let mut next = at + 1;
        std::iter::from_fn(move || {
            if next >= end {
                return None;
            }
            let element = next;
            next = self.skip(element);
            Some(element)
        })
    }

    /// Parses the `rows` array at the scanner onto a fresh tape; `depth` is the array's
    /// nesting level in the event, `first_row` the index of its first element (past 0 for a
    /// later chunk of a source object).
    ///
    /// # Errors
    /// `InvalidEvent` for malformed JSON, `rows` that is not an array, a row that is not an
    /// object (naming its index) and an object with a repeated key (naming the row and key).
    pub fn parse(
        scanner: &mut Scanner<'a>,
        depth: usize,
        first_row: usize,
    ) -> Result<Rows<'a>, Error> {
        let kind = scanner.value_type()?;
        if kind != "array" {
            let what = match kind {
                "null" => "null".to_owned(),
                other => format!("a JSON {other}"),
            };
            return Err(
                scanner.refuse_value(&format!("`rows` must be an array of objects, not {what}"))
            );
        }
        within_spans(scanner.source())?;
        scanner.enter(depth)?;
        let mut rows = Rows {
            source: scanner.source(),
            first_row,
            ..Rows::default()
        };
        if scanner.empty(b']') {
            return Ok(rows);
        }
        let Some(split) = split_point(scanner) else {
            rows.rows_until(scanner, depth, None)?;
            return Ok(rows);
        };
        // The second half on another thread, from a guessed row start: its tape is used only
        // if the first half's scan lands exactly there between two rows (so the guess was a
        // row start, and that scan is the one a single pass would make) and it succeeded.
        // Otherwise, and for any error, the first half's scanner goes on alone: the same
        // result, and the same first error, as one pass.
        // Both tapes sized once, the first for all the rows (the second is appended to it):
        // growing them by doublings while two threads fault in pages costs more than the
        // second thread saves.
        let left = scanner.source().len() - scanner.position();
        rows.slots.reserve(left / TEXT_PER_SLOT);
        std::thread::scope(|scope| {
            let mut fork = scanner.fork(split);
            let source = rows.source;
            let second = scope.spawn(move || {
                let mut rest = Rows {
                    source,
                    slots: Vec::with_capacity((source.len() - split) / TEXT_PER_SLOT),
                    ..Rows::default()
                };
                rest.rows_until(&mut fork, depth, None)
                    .map(|_| (rest, fork))
            });
            if rows.rows_until(scanner, depth, Some(split))? {
                if let Ok((rest, fork)) = second.join().expect("the second half's scan panicked") {
                    rows.append(rest);
                    scanner.resume(fork);
                    return Ok(rows);
                }
                rows.rows_until(scanner, depth, None)?;
            }
            Ok(rows)
        })
    }

    /// Rows onto this tape until the array closes, or, with `stop`, until the next row would
    /// start exactly at byte `stop` (`true`: stopped there). Passing `stop` anywhere else goes
    /// on to the end.
    fn rows_until(
        &mut self,
        scanner: &mut Scanner<'a>,
        depth: usize,
        mut stop: Option<usize>,
    ) -> Result<bool, Error> {
        loop {
            let row = self.row_ref(self.starts.len());
            let start = self.slots.len();
            self.value(scanner, depth + 1, row)?;
            if !matches!(self.slots[start].unpack(), Slot::Object { .. }) {
                return Err(scanner.refuse(&format!(
                    "{row} is a JSON {}, not an object",
                    self.node(start).json_type()
                )));
            }
            self.starts.push(start as u32);
            if !scanner.more(b']')? {
                return Ok(false);
            }
            if let Some(at) = stop {
                scanner.peek();
                match scanner.position() {
                    here if here == at => return Ok(true),
                    here if here > at => stop = None,
                    _ => {}
                }
            }
        }
    }

    /// Appends `rest`'s rows (a later part of the same text) after these.
    fn append(&mut self, rest: Rows<'a>) {
        let slots = self.slots.len() as u32;
        let decoded = self.decoded.len() as u32;
        let moved = |span: Span| match span.len & DECODED {
            0 => span,
            _ => Span {
                at: span.at + decoded,
                len: span.len,
            },
        };
        let ints = self.ints.len() as u32;
        self.slots.extend(rest.slots.into_iter().map(|slot| {
            Packed::pack(match slot.unpack() {
                Slot::Object { end } => Slot::Object { end: end + slots },
                Slot::Array { end } => Slot::Array { end: end + slots },
                Slot::Str(span) => Slot::Str(moved(span)),
                Slot::Key(span) => Slot::Key(moved(span)),
                Slot::Number(span) => Slot::Number(moved(span)),
                Slot::BigInt(i) => Slot::BigInt(i + ints),
                other => other,
            })
        }));
        self.decoded.push_str(&rest.decoded);
        self.ints.extend(rest.ints);
        self.starts
            .extend(rest.starts.into_iter().map(|s| s + slots));
    }

    /// Parses whole lines of an NDJSON object (JSON Lines: one object a line, blank lines
    /// skipped, a `\r` before the `\n` allowed) onto a fresh tape; `text` starts on line
    /// `first_line`. Each line is checked on its own, as strictly as the event: an object
    /// split over two lines is an error, not one row.
    ///
    /// # Errors
    /// `InvalidEvent` naming the line for malformed JSON, a line that is not an object, and
    /// an object with a repeated key.
    pub fn parse_lines(text: &'a str, first_line: usize) -> Result<Rows<'a>, Error> {
        within_spans(text)?;
        let mut rows = Rows {
            source: text,
            // Sized once for typical rows (a slot per 8 bytes of text), so that chunk after
            // chunk asks the heap for one block size rather than a series of doublings.
            slots: Vec::with_capacity(text.len() / 8),
            ..Rows::default()
        };
        for (i, line) in text.split('\n').enumerate() {
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.bytes().all(|b| matches!(b, b' ' | b'\t' | b'\r')) {
                continue;
            }
            let number = first_line + i;
            let mut scanner = Scanner::over(line, number, "the line");
            let kind = scanner.value_type()?;
            if kind != "object" {
                return Err(
                    scanner.refuse_value(&format!("line {number} is a JSON {kind}, not an object"))
                );
            }
            let start = rows.slots.len();
            rows.value(&mut scanner, 0, RowRef::Line(number))?;
            scanner.end()?;
            rows.starts.push(start as u32);
            rows.lines.push(number);
        }
        Ok(rows)
    }

    /// Appends the value at the scanner (and everything inside it) to the tape.
    fn value(&mut self, scanner: &mut Scanner<'a>, depth: usize, row: RowRef) -> Result<(), Error> {
        let slot = match scanner.peek() {
            Some(b'{') => {
                scanner.enter(depth)?;
                let start = self.push(Slot::Object { end: 0 });
                if !scanner.empty(b'}') {
                    loop {
                        let key = scanner.key()?;
                        let key = self.span(key);
                        self.push(Slot::Key(key));
                        self.value(scanner, depth + 1, row)?;
                        if !scanner.more(b'}')? {
                            break;
                        }
                    }
                }
                self.close(start);
                if let Some(key) = self.duplicate_key(start) {
                    // Keys are column names, not row values: safe to show.
                    return Err(
                        scanner.refuse(&format!("{row}: key `{key}` appears twice in one object"))
                    );
                }
                return Ok(());
            }
            Some(b'[') => {
                scanner.enter(depth)?;
                let start = self.push(Slot::Array { end: 0 });
                if !scanner.empty(b']') {
                    loop {
                        self.value(scanner, depth + 1, row)?;
                        if !scanner.more(b']')? {
                            break;
                        }
                    }
                }
                self.close(start);
                return Ok(());
            }
            Some(b'"') => {
                let text = scanner.string()?;
                Slot::Str(self.span(text))
            }
            Some(b'-' | b'0'..=b'9') => match scanner.number()? {
                Number::Int(v) if Packed::holds(v) => Slot::Int(v),
                Number::Int(v) => {
                    self.ints.push(v);
                    Slot::BigInt(self.ints.len() as u32 - 1)
                }
                Number::Text(text) => Slot::Number(self.span(text.into())),
            },
            Some(_) => match scanner.literal()? {
                Some(v) => Slot::Bool(v),
                None => Slot::Null,
            },
            None => return Err(scanner.syntax("EOF while parsing a value")),
        };
        self.slots.push(Packed::pack(slot));
        Ok(())
    }

    fn push(&mut self, slot: Slot) -> usize {
        self.slots.push(Packed::pack(slot));
        self.slots.len() - 1
    }

    /// Closes the container opened at `start`, now that its contents are on the tape.
    fn close(&mut self, start: usize) {
        let end = self.slots.len() as u32;
        self.slots[start] = Packed::pack(match self.slots[start].unpack() {
            Slot::Object { .. } => Slot::Object { end },
            Slot::Array { .. } => Slot::Array { end },
            _ => unreachable!("only containers are closed"),
        });
    }

    /// A key that appears twice in the object at `object` (small objects compare pairwise,
    /// without allocating).
    fn duplicate_key(&self, object: usize) -> Option<&str> {
        // The keys walked once into a small array, then compared pairwise from there (walking
        // the tape again for each key made this the costliest part of parsing wide rows).
        let mut keys = [""; SMALL_OBJECT];
        let mut count = 0;
        for (key, _) in self.members(object) {
            if count == SMALL_OBJECT {
                count = usize::MAX;
                break;
            }
            keys[count] = key;
            count += 1;
        }
        if count != usize::MAX {
            let keys = &keys[..count];
            return (1..count).find_map(|i| {
                keys[..i]
                    .iter()
                    .any(|earlier| same_key(earlier, keys[i]))
                    .then_some(keys[i])
            });
        }
        let mut seen = HashSet::new();
        self.members(object)
            .map(|(k, _)| k)
            .find(|k| !seen.insert(*k))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(json: &str) -> Result<Rows<'_>, Error> {
        Rows::parse(&mut Scanner::new(json.as_bytes())?, 1, 0)
    }

    #[test]
    fn tape_keeps_order_borrows_strings_and_number_text() {
        let json = r#"[{"a": 1, "b": "x\ny", "c": [1.50, null, true], "d": {"e": 12345678901234567890.12}},
                       {"b": "plain", "n": -0, "big": 18446744073709551616}]"#;
        let rows = rows(json).unwrap();
        assert_eq!(rows.len(), 2);
        let starts: Vec<_> = rows.starts().collect();
        let first: Vec<_> = rows
            .members(starts[0])
            .map(|(k, v)| (k, rows.node(v)))
            .collect();
        assert_eq!(first[0], ("a", Node::Int(1)));
        assert_eq!(first[1], ("b", Node::Str("x\ny")));
        // Only the string with an escape was copied.
        assert_eq!(rows.decoded, "x\ny");
        let c = rows
            .elements(member(&rows, starts[0], "c"))
            .collect::<Vec<_>>();
        assert_eq!(
            c.iter().map(|&i| rows.node(i)).collect::<Vec<_>>(),
            [Node::Number("1.50"), Node::Null, Node::Bool(true)]
        );
        let second: Vec<_> = rows
            .members(starts[1])
            .map(|(k, v)| (k, rows.node(v)))
            .collect();
        assert_eq!(second[0].1, Node::Str("plain"));
        assert_eq!(second[1].1, Node::Number("-0"));
        assert_eq!(second[2].1, Node::Number("18446744073709551616"));
        assert_eq!(second[2].1.json_type(), "integer");
        let e: Vec<_> = rows
            .members(member(&rows, starts[0], "d"))
            .map(|(k, v)| (k, rows.node(v)))
            .collect();
        assert_eq!(e, [("e", Node::Number("12345678901234567890.12"))]);
    }

    #[test]
    fn integers_of_every_width_survive_the_8_byte_slots() {
        let edges = [
            0,
            -1,
            (1 << 59) - 1,
            -(1 << 59),
            1 << 59,
            -(1 << 59) - 1,
            i64::MAX,
            i64::MIN,
        ];
        let json = format!(
            "[{}]",
            edges
                .map(|v| format!(r#"{{"v": {v}, "end": [true, false]}}"#))
                .join(",")
        );
        let rows = rows(&json).unwrap();
        let back: Vec<_> = rows
            .starts()
            .map(|s| rows.node(member(&rows, s, "v")))
            .collect();
        assert_eq!(back, edges.map(Node::Int));
        // Only the four past 60 bits were kept beside the tape.
        assert_eq!(rows.ints.len(), 4);
        let end = member(&rows, rows.starts().next().unwrap(), "end");
        let flags: Vec<_> = rows.elements(end).map(|i| rows.node(i)).collect();
        assert_eq!(flags, [Node::Bool(true), Node::Bool(false)]);
        assert_eq!(std::mem::size_of::<Packed>(), 8);
    }

    fn member(rows: &Rows, object: usize, key: &str) -> usize {
        rows.members(object).find(|(k, _)| *k == key).unwrap().1
    }

    #[test]
    fn rejects_non_arrays_non_objects_and_duplicate_keys() {
        for (json, word) in [
            (r#"{"a": 1}"#, "must be an array"),
            ("null", "not null"),
            (r#""x""#, "not a JSON string"),
            ("7", "not a JSON number"),
            (r#"[{"a": 1}, [1]]"#, "row 1 is a JSON array"),
            (r#"[{"a": 1}, 2]"#, "row 1 is a JSON integer"),
            (r#"[{"a": 1, "a": 2}]"#, "row 0: key `a` appears twice"),
            (
                r#"[{"x": {"b": 1, "c": 2, "b": 3}}]"#,
                "key `b` appears twice",
            ),
        ] {
            let err = rows(json).expect_err(json).to_string();
            assert!(err.contains(word), "{json}: {err}");
        }
        let many: Vec<String> = (0..40).map(|i| format!("\"k{i}\": {i}")).collect();
        let json = format!("[{{{}, \"k7\": 0}}]", many.join(","));
        assert!(
            rows(&json)
                .unwrap_err()
                .to_string()
                .contains("`k7` appears twice")
        );
        assert_eq!(rows(&format!("[{{{}}}]", many.join(","))).unwrap().len(), 1);
        // Each size of object: compared pairwise up to SMALL_OBJECT keys, hashed past it.
        for size in [2, SMALL_OBJECT - 1, SMALL_OBJECT, SMALL_OBJECT + 1] {
            let json = format!("[{{{}, \"k0\": 0}}]", many[..size - 1].join(","));
            let err = rows(&json).unwrap_err().to_string();
            assert!(err.contains("`k0` appears twice"), "{size}: {err}");
            assert_eq!(
                rows(&format!("[{{{}}}]", many[..size].join(",")))
                    .unwrap()
                    .len(),
                1
            );
        }
    }

    /// The rows as one scan on one thread would put them on the tape.
    fn one_pass(json: &str) -> Result<Rows<'_>, Error> {
        let mut scanner = Scanner::new(json.as_bytes())?;
        scanner.enter(1)?;
        let mut rows = Rows {
            source: scanner.source(),
            ..Rows::default()
        };
        rows.rows_until(&mut scanner, 1, None)?;
        scanner.end()?;
        Ok(rows)
    }

    fn same_tape(a: &Rows, b: &Rows) {
        assert_eq!(a.starts, b.starts);
        assert_eq!(a.slots.len(), b.slots.len());
        for i in 0..a.slots.len() {
            assert_eq!(a.node(i), b.node(i), "slot {i}");
        }
    }

    #[test]
    fn a_large_array_is_parsed_in_two_halves_into_the_tape_of_one_pass() {
        let shapes: [&dyn Fn(usize) -> String; 3] = [
            // Flat rows, some strings with escapes (decoded into the side buffer).
            // Integers past 60 bits (kept beside the tape) in both halves.
            &|i| {
                format!(
                    r#"{{"id": {i}, "name": "n\u00e9{i}", "x": {i}.5, "big": {}}}"#,
                    i64::MAX - i as i64
                )
            },
            // Rows whose lists hold objects: the guessed split lands inside a row.
            &|i| format!(r#"{{"a": [{{"x": {i}}}, {{"y": 2}}, {{"z": [{{}}, {{}}]}}]}}"#),
            // Strings holding `}}, {{`: the guess lands inside a string.
            &|i| format!(r#"{{"s": "}}, {{ \"q\": {i} }}, {{", "t": "}},{{"}}"#),
        ];
        for shape in shapes {
            let rows: Vec<String> = (0..40_000).map(shape).collect();
            let json = format!("[{}]", rows.join(",\n "));
            assert!(json.len() > PARALLEL_BYTES);
            let mut scanner = Scanner::new(json.as_bytes()).unwrap();
            let two = Rows::parse(&mut scanner, 1, 0).unwrap();
            scanner.end().unwrap();
            same_tape(&two, &one_pass(&json).unwrap());
            assert_eq!(two.len(), 40_000);
        }
    }

    #[test]
    fn errors_in_either_half_are_the_ones_one_pass_reports() {
        let rows: Vec<String> = (0..40_000)
            .map(|i| format!(r#"{{"id": {i}, "name": "row {i}"}}"#))
            .collect();
        for bad in [3_000, 20_000, 30_000, 39_999] {
            for broken in [
                r#"{"id": 1, "id": 2}"#,
                "[1]",
                r#"{"id": tru}"#,
                r#"{"id" 1}"#,
            ] {
                let mut rows = rows.clone();
                rows[bad] = broken.to_owned();
                let json = format!("[{}]", rows.join(",\n"));
                let two = Rows::parse(&mut Scanner::new(json.as_bytes()).unwrap(), 1, 0)
                    .unwrap_err()
                    .to_string();
                assert_eq!(two, one_pass(&json).unwrap_err().to_string(), "{bad}");
                assert!(
                    two.contains(&format!("row {bad}"))
                        || two.contains(&format!("line {}", bad + 1)),
                    "{bad}: {two}"
                );
            }
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let json = format!(
            "[{{\"a\": {}{}}}]",
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        assert!(
            rows(&json)
                .unwrap_err()
                .to_string()
                .contains("recursion limit")
        );
    }
}
