//! Building the tape: the rows scanned in one strict pass, the second half on a second thread
//! for large events, and every object checked for repeated keys.

use std::borrow::Cow;
use std::collections::HashSet;

use super::tape::{DECODED, Packed, Slot, Span, within_spans};
use super::{RowRef, Rows, same_key};
use crate::Error;
use crate::rows::json::{Number, Scanner};

/// Bytes of rows from which the second half is parsed on a second thread.
pub(super) const PARALLEL_BYTES: usize = 1 << 20;

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
pub(super) const SMALL_OBJECT: usize = 32;

impl<'a> Rows<'a> {
    /// The span of `text`, borrowed from the event or decoded into the side buffer.
    pub(super) fn span(&mut self, text: Cow<'a, str>) -> Span {
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
    pub(super) fn rows_until(
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

    pub(super) fn push(&mut self, slot: Slot) -> usize {
        self.slots.push(Packed::pack(slot));
        self.slots.len() - 1
    }

    /// Closes the container opened at `start`, now that its contents are on the tape.
    pub(super) fn close(&mut self, start: usize) {
        let end = self.slots.len() as u32;
        self.slots[start] = Packed::pack(match self.slots[start].unpack() {
            Slot::Object { .. } => Slot::Object { end },
            Slot::Array { .. } => Slot::Array { end },
            _ => unreachable!("only containers are closed"),
        });
    }

    /// A key that appears twice in the object at `object` (small objects compare pairwise,
    /// without allocating).
    fn duplicate_key(&mut self, object: usize) -> Option<&str> {
        // The keys walked once into a list kept from object to object (walking the tape again
        // for each key made this the costliest part of parsing wide rows; a fresh array per
        // object cost its zeroing), then compared pairwise from there. Each key's length and
        // end bytes in one word, compared before the key itself: keys of one object mostly
        // differ there, and short keys of one length (`a`, `b`, …) would otherwise each take
        // a byte comparison with every other.
        let mut keys = std::mem::take(&mut self.keys);
        keys.clear();
        keys.extend(
            self.members(object)
                .map(|(key, value)| (value as u32 - 1, head(key))),
        );
        let repeated = if keys.len() <= SMALL_OBJECT {
            (1..keys.len()).find_map(|i| {
                let (at, word) = keys[i];
                keys[..i]
                    .iter()
                    .any(|&(earlier, other)| {
                        other == word && same_key(self.key(earlier), self.key(at))
                    })
                    .then_some(at)
            })
        } else {
            let mut seen = HashSet::new();
            keys.iter()
                .map(|&(at, _)| at)
                .find(|&at| !seen.insert(self.key(at)))
        };
        self.keys = keys;
        repeated.map(|at| self.key(at))
    }

    /// The text of the key slot at `at`.
    fn key(&self, at: u32) -> &str {
        self.text(self.slots[at as usize].span())
    }
}

/// A key's length, first and last byte in one word: equal keys have equal heads, so unequal
/// heads settle a comparison without reading the keys.
fn head(key: &str) -> u32 {
    let bytes = key.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(&first), Some(&last)) => {
            (bytes.len() as u32) << 16 | u32::from(first) << 8 | u32::from(last)
        }
        _ => 0,
    }
}
