//! The rows stage: JSON bytes into rows, in one strict pass (no AWS types, nothing from the
//! stages above; the schema and encode stages read the rows from here).
//!
//! [`json`] does the lexing (escapes, surrogates, nesting limits), [`csv`] lays CSV records out
//! on the same tape (their fields as text to convert); this module keeps what it
//! finds as a `Vec` of 8-byte slots instead of a `serde_json::Value` tree: no map per row,
//! strings and numbers other than integers referred to where they lie in the event (only
//! strings with escapes are decoded, into one side buffer), so a decimal never passes through
//! f64 and a 6 MB event's tape stays under 10 MB. Objects are checked for duplicate keys here,
//! once.

pub mod csv;
pub mod json;
mod parse;
mod tape;

use std::fmt;
use std::ops::Range;

use tape::{DECODED, Packed, Span};

/// The rows of a JSON array, as an event's `rows` holds them (for tests of the stages that
/// read rows, without an event around them).
///
/// # Panics
/// If `json` is not an array of rows.
#[cfg(test)]
pub(crate) fn rows_of(json: &str) -> Rows<'_> {
    let mut scanner = json::Scanner::new(json.as_bytes()).unwrap();
    let rows = Rows::parse(&mut scanner, 1, 0).unwrap();
    scanner.end().unwrap();
    rows
}

/// Rows from which inference and building work on the two halves of the rows on two threads.
pub const PARALLEL_ROWS: usize = 16_384;

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
    /// Each row's line, for rows from NDJSON lines or CSV records; empty otherwise.
    lines: Vec<usize>,
    /// CSV records: their columns' names, in order; every row's members are these, in this
    /// order (fewer in `PERMISSIVE`), and its strings fields to convert ([`Rows::is_text`]).
    /// Empty for JSON rows.
    names: Vec<Span>,
    /// While parsing: the keys of the object being checked for repeats (tape index; length,
    /// first and last byte), kept to be reused by the next.
    keys: Vec<(u32, u32)>,
}

/// Reading the tape, as inference and building walk it (the tape is built in `parse.rs`).
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;
    use json::Scanner;
    use parse::{PARALLEL_BYTES, SMALL_OBJECT};

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
            // A repeat among keys of one length, first and last byte (`c01`, `c11`: one word
            // for the quick comparison, told apart by the bytes between); a key written once
            // with an escape and once without.
            (
                r#"[{"c01": 1, "c11": 2, "customer_id": 3, "c01": 4}]"#,
                "key `c01` appears twice",
            ),
            (
                r#"[{"a": 1, "b": 2, "\u0061": 3}]"#,
                "key `a` appears twice",
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
        // Distinct keys that share their length, first and last byte, or some of them, are
        // not taken for repeats.
        let similar = r#"[{"c01": 1, "c11": 2, "customer_id": 3, "customer_ip": 4, "a": 5,
            "a\u0000": 6, "": 7}]"#;
        assert_eq!(rows(similar).unwrap().len(), 1);
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
