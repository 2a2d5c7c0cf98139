//! CSV and TSV records onto the tape (RFC 4180: quoted fields holding delimiters, doubled
//! quotes and line breaks; CRLF or LF line ends), each record one object whose keys are the
//! header's names and whose values are the fields' text, so inference and building read them
//! as they read JSON rows (the tape is marked [`Rows::is_text`]: its strings are values to
//! convert, not JSON strings).
//!
//! One [`Lexer`] finds where fields and records end. The source reader runs it over bytes as
//! they arrive to cut chunks between records; [`Rows::parse_csv`] runs it again over a whole
//! chunk to lay the fields out. Both see the same boundaries, so a quoted line break never
//! cuts a record.

use std::borrow::Cow;
use std::ops::ControlFlow;

use super::Rows;
use super::tape::{Slot, Span, within_spans};
use crate::Error;

/// How fields are delimited and quoted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dialect {
    pub delimiter: u8,
    /// `None`: no quoting; every quote is literal.
    pub quote: Option<u8>,
    /// Inside quotes, the byte that makes the next one literal (`\`); a doubled quote is
    /// always a literal quote (RFC 4180).
    pub escape: Option<u8>,
    /// A record starting with this byte is a comment line, skipped.
    pub comment: Option<u8>,
}

impl Default for Dialect {
    fn default() -> Dialect {
        Dialect {
            delimiter: b',',
            quote: Some(b'"'),
            escape: None,
            comment: None,
        }
    }
}

/// What a chunk's records become: the dialect, the columns' names, and the rules for values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub dialect: Dialect,
    /// A record's fields in order.
    pub names: Vec<String>,
    /// A field of exactly this text (quoted or not, as Spark reads it) is null.
    pub null_value: String,
    /// Spark's `PERMISSIVE`: missing fields are null and extra ones dropped; otherwise
    /// (`FAILFAST`) either is an error.
    pub permissive: bool,
}

/// Where a field or record ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Boundary {
    /// A delimiter.
    Field,
    /// A line break outside quotes that ends a record.
    Record,
    /// The line break ending a comment line.
    Comment,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum State {
    #[default]
    RecordStart,
    FieldStart,
    Unquoted,
    Quoted,
    /// A quote inside a quoted field: it closes the field, unless another follows.
    QuoteInQuoted,
    /// The escape byte inside a quoted field.
    Escaped,
    Comment,
}

/// The CSV state machine, resumable between any two bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Lexer {
    state: State,
}

impl Lexer {
    /// Whether the bytes so far end inside a quoted field.
    pub fn in_quotes(&self) -> bool {
        matches!(self.state, State::Quoted | State::Escaped)
    }

    /// Runs over `text[at..]`, calling `on(position, boundary)` at each delimiter and line
    /// break that ends a field, record or comment, until `on` breaks (the position after that
    /// boundary is returned) or the text ends (its length is returned).
    pub fn run(
        &mut self,
        dialect: &Dialect,
        text: &[u8],
        at: usize,
        on: impl FnMut(usize, Boundary) -> ControlFlow<()>,
    ) -> usize {
        self.lex(dialect, text, at, true, on)
    }

    /// As [`Lexer::run`], but only where records and comment lines end: outside quotes it
    /// jumps from quote to line break rather than from field to field (a quote opens a field
    /// only right after a delimiter), which is what cutting chunks needs.
    pub fn records(
        &mut self,
        dialect: &Dialect,
        text: &[u8],
        at: usize,
        on: impl FnMut(usize, Boundary) -> ControlFlow<()>,
    ) -> usize {
        self.lex(dialect, text, at, false, on)
    }

    fn lex(
        &mut self,
        dialect: &Dialect,
        text: &[u8],
        mut at: usize,
        fields: bool,
        mut on: impl FnMut(usize, Boundary) -> ControlFlow<()>,
    ) -> usize {
        let quote = dialect.quote;
        while at < text.len() {
            let b = text[at];
            match self.state {
                State::RecordStart if dialect.comment == Some(b) => {
                    self.state = State::Comment;
                    at += 1;
                }
                State::RecordStart | State::FieldStart if quote == Some(b) => {
                    self.state = State::Quoted;
                    at += 1;
                }
                State::QuoteInQuoted if quote == Some(b) => {
                    self.state = State::Quoted;
                    at += 1;
                }
                State::RecordStart | State::FieldStart | State::Unquoted | State::QuoteInQuoted
                    if !fields && quote.is_some() =>
                {
                    let q = quote.expect("matched on it");
                    let Some(found) = memchr::memchr2(q, b'\n', &text[at..]) else {
                        self.state = match text.last() == Some(&dialect.delimiter) {
                            true => State::FieldStart,
                            false => State::Unquoted,
                        };
                        return text.len();
                    };
                    at += found + 1;
                    if text[at - 1] == b'\n' {
                        self.state = State::RecordStart;
                        if on(at - 1, Boundary::Record).is_break() {
                            return at;
                        }
                    } else {
                        // Past the state's own byte: the quote opens a field only after a
                        // delimiter.
                        self.state = match at >= 2 && text[at - 2] == dialect.delimiter {
                            true => State::Quoted,
                            false => State::Unquoted,
                        };
                    }
                }
                State::RecordStart | State::FieldStart | State::Unquoted | State::QuoteInQuoted => {
                    let Some(found) = memchr::memchr2(dialect.delimiter, b'\n', &text[at..]) else {
                        self.state = State::Unquoted;
                        return text.len();
                    };
                    at += found + 1;
                    let boundary = if text[at - 1] == b'\n' {
                        self.state = State::RecordStart;
                        Boundary::Record
                    } else {
                        self.state = State::FieldStart;
                        Boundary::Field
                    };
                    if on(at - 1, boundary).is_break() {
                        return at;
                    }
                }
                State::Quoted => {
                    let q = quote.expect("only a quote opens a quoted field");
                    let found = match dialect.escape {
                        Some(e) if e != q => memchr::memchr2(q, e, &text[at..]),
                        _ => memchr::memchr(q, &text[at..]),
                    };
                    let Some(found) = found else {
                        return text.len();
                    };
                    at += found;
                    self.state = match text[at] == q {
                        true => State::QuoteInQuoted,
                        false => State::Escaped,
                    };
                    at += 1;
                }
                State::Escaped => {
                    self.state = State::Quoted;
                    at += 1;
                }
                State::Comment => {
                    let Some(found) = memchr::memchr(b'\n', &text[at..]) else {
                        return text.len();
                    };
                    at += found + 1;
                    self.state = State::RecordStart;
                    if on(at - 1, Boundary::Comment).is_break() {
                        return at;
                    }
                }
            }
        }
        at
    }
}

/// The fields of one record (`text`, with or without its line break), decoded: a header.
///
/// # Errors
/// As [`Rows::parse_csv`], naming line `line`.
pub fn record_fields(text: &str, dialect: &Dialect, line: usize) -> Result<Vec<String>, Error> {
    let mut ends = Vec::new();
    let mut last = Boundary::Field;
    let mut lexer = Lexer::default();
    lexer.run(dialect, text.as_bytes(), 0, |at, boundary| {
        ends.push(at);
        last = boundary;
        match boundary {
            Boundary::Field => ControlFlow::Continue(()),
            _ => ControlFlow::Break(()),
        }
    });
    if lexer.in_quotes() {
        return Err(unterminated(line));
    }
    if last == Boundary::Field {
        ends.push(text.len());
    }
    let mut start = 0;
    ends.into_iter()
        .map(|end| {
            let value = field(text, start, end, dialect, line)?.into_owned();
            start = end + 1;
            Ok(value)
        })
        .collect()
}

/// The decoded text of the field `text[start..end]`: a record's last field without its `\r`,
/// a quoted one without its quotes and escapes.
fn field<'t>(
    text: &'t str,
    start: usize,
    end: usize,
    dialect: &Dialect,
    line: usize,
) -> Result<Cow<'t, str>, Error> {
    let mut raw = &text[start..end];
    if text.as_bytes().get(end) != Some(&dialect.delimiter) {
        raw = raw.strip_suffix('\r').unwrap_or(raw);
    }
    let Some(q) = dialect
        .quote
        .filter(|&q| raw.as_bytes().first() == Some(&q))
    else {
        return Ok(Cow::Borrowed(raw));
    };
    let bad = || {
        Error::InvalidEvent(format!(
            "line {line}: a quoted field has characters after its closing quote (a quote inside quotes must be doubled)"
        ))
    };
    let inner = match raw.len() >= 2 && raw.as_bytes()[raw.len() - 1] == q {
        true => &raw[1..raw.len() - 1],
        false => return Err(bad()),
    };
    let escape = dialect.escape.unwrap_or(q);
    if memchr::memchr2(q, escape, inner.as_bytes()).is_none() {
        return Ok(Cow::Borrowed(inner));
    }
    let mut decoded = Vec::with_capacity(inner.len());
    let mut bytes = inner.bytes();
    while let Some(b) = bytes.next() {
        if b != q && b != escape {
            decoded.push(b);
            continue;
        }
        match bytes.next() {
            Some(next) if next == q || (b == escape && next == escape) => decoded.push(next),
            // An escape before anything else is itself.
            Some(next) if b == escape && b != q => decoded.extend([b, next]),
            _ => return Err(bad()),
        }
    }
    // Only ASCII bytes were taken out of valid UTF-8.
    Ok(Cow::Owned(
        String::from_utf8(decoded).expect("UTF-8 stays UTF-8"),
    ))
}

fn unterminated(line: usize) -> Error {
    Error::InvalidEvent(format!(
        "line {line}: a quoted field never closes (an unterminated quote)"
    ))
}

/// The names Spark gives a header's fields: empty ones (or the null value) `_c<index>`, ones
/// repeated (ignoring case) `<name><index>`.
///
/// # Errors
/// `InvalidEvent` when two names are still one after that (`a,a,a1` makes `a1` twice).
pub fn header_names(fields: Vec<String>, null_value: &str) -> Result<Vec<String>, Error> {
    let lower: Vec<String> = fields.iter().map(|f| f.to_lowercase()).collect();
    let repeated = |name: &str| lower.iter().filter(|l| *l == name).count() > 1;
    let names: Vec<String> = (fields.iter().enumerate())
        .map(|(i, name)| {
            if name.is_empty() || name == null_value {
                format!("_c{i}")
            } else if repeated(&lower[i]) {
                format!("{name}{i}")
            } else {
                name.clone()
            }
        })
        .collect();
    let mut seen = std::collections::HashSet::new();
    match names.iter().find(|n| !seen.insert(n.to_lowercase())) {
        Some(twice) => Err(Error::InvalidEvent(format!(
            "the header names column `{twice}` twice (once after renaming repeated names as Spark does)"
        ))),
        None => Ok(names),
    }
}

impl<'a> Rows<'a> {
    /// Lays the CSV records of `text` (whole records; its first on line `first_line`) out on
    /// a tape: each record an object of `layout.names`, each field a string (a `Str` to
    /// convert) or, for the null value, a null. Blank lines and comment lines are
    /// skipped.
    ///
    /// # Errors
    /// `InvalidEvent` naming the record's line for a quoted field that never closes or has
    /// characters after its closing quote, and (unless permissive) a record with more or
    /// fewer fields than there are names.
    pub fn parse_csv(text: &'a str, layout: &Layout, first_line: usize) -> Result<Rows<'a>, Error> {
        within_spans(text)?;
        let mut rows = Rows {
            source: text,
            slots: Vec::with_capacity(text.len() / 4),
            ..Rows::default()
        };
        rows.names = (layout.names.iter())
            .map(|name| rows.span(Cow::Owned(name.clone())))
            .collect();
        let mut records = Records {
            layout,
            text,
            record: Record::new(first_line),
            field_at: 0,
        };
        let mut failed = None;
        let mut lexer = Lexer::default();
        lexer.run(
            &layout.dialect,
            text.as_bytes(),
            0,
            |at, boundary| match records.boundary(&mut rows, at, boundary) {
                Ok(()) => ControlFlow::Continue(()),
                Err(e) => {
                    failed = Some(e);
                    ControlFlow::Break(())
                }
            },
        );
        if let Some(e) = failed {
            return Err(e);
        }
        if lexer.in_quotes() {
            return Err(unterminated(records.record.line));
        }
        // A last record without a line break.
        if !matches!(lexer.state, State::RecordStart | State::Comment) {
            records.boundary(&mut rows, text.len(), Boundary::Record)?;
        }
        Ok(rows)
    }

    /// One field of `record` onto the tape (`name`: `None` past the last name).
    fn push_field(&mut self, record: &mut Record, name: Option<Span>, value: Option<Cow<'a, str>>) {
        if record.fields == 0 {
            record.object = self.push(Slot::Object { end: 0 });
        }
        record.fields += 1;
        // A field past the last name is only counted: refused or dropped when the record ends.
        if let Some(name) = name {
            self.push(Slot::Key(name));
            match value {
                None => self.push(Slot::Null),
                Some(value) => {
                    let span = self.span(value);
                    self.push(Slot::Str(span))
                }
            };
        }
    }

    /// Ends `record`: its object closed and counted as a row, or an error for a count of
    /// fields other than `columns` (unless permissive, where the tape already holds the
    /// fields there are, and no more than `columns`).
    fn close_record(
        &mut self,
        record: &mut Record,
        columns: usize,
        permissive: bool,
    ) -> Result<(), Error> {
        if record.fields == 0 {
            return Ok(());
        }
        if record.fields != columns && !permissive {
            let line = record.line;
            let found = record.fields;
            return Err(Error::InvalidEvent(format!(
                "line {line}: {found} field{} where there are {columns} column{} (mode FAILFAST; PERMISSIVE fills missing fields with nulls and drops extra ones)",
                if found == 1 { "" } else { "s" },
                if columns == 1 { "" } else { "s" },
            )));
        }
        self.close(record.object);
        self.starts.push(record.object as u32);
        self.lines.push(record.line);
        Ok(())
    }

    /// Whether the tape's strings are CSV fields: text to convert to the column's type,
    /// where a JSON string only ever fills a string-like column.
    pub fn is_text(&self) -> bool {
        !self.names.is_empty()
    }

    /// CSV records' column names, in the order every row's members follow (see
    /// [`Rows::record_values`]).
    pub fn text_names(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.names.iter().map(|&name| self.text(name))
    }

    /// A CSV record's values, in [`Rows::text_names`]' order (the first ones, in
    /// `PERMISSIVE`), without looking at their keys: each member is a key and a scalar.
    pub fn record_values(&self, at: usize) -> impl Iterator<Item = usize> + use<> {
        (at + 2..self.skip(at)).step_by(2)
    }
}

/// Where laying out a chunk's records stands.
struct Records<'l, 'a> {
    layout: &'l Layout,
    text: &'a str,
    record: Record,
    /// Where the current field starts.
    field_at: usize,
}

impl<'a> Records<'_, 'a> {
    /// The field ending at `at` onto `rows`, and the record too at a record's end.
    fn boundary(
        &mut self,
        rows: &mut Rows<'a>,
        at: usize,
        boundary: Boundary,
    ) -> Result<(), Error> {
        let start = std::mem::replace(&mut self.field_at, at + 1);
        let record = &mut self.record;
        let mut next_line = record.line;
        if boundary != Boundary::Comment {
            let raw = &self.text.as_bytes()[start..at];
            let dialect = &self.layout.dialect;
            let quoted = dialect.quote.is_some_and(|q| raw.first() == Some(&q));
            let blank =
                record.fields == 0 && boundary == Boundary::Record && matches!(raw, [] | [b'\r']);
            if !blank {
                let value = field(self.text, start, at, dialect, record.line)?;
                let value = (value != self.layout.null_value).then_some(value);
                let name = rows.names.get(record.fields).copied();
                rows.push_field(record, name, value);
            }
            if quoted {
                // Line breaks inside quotes.
                record.breaks += memchr::memchr_iter(b'\n', raw).count();
            }
            if boundary == Boundary::Field {
                return Ok(());
            }
            next_line += record.breaks;
            rows.close_record(record, rows.names.len(), self.layout.permissive)?;
        }
        *record = Record::new(next_line + 1);
        Ok(())
    }
}

/// The record being laid out.
struct Record {
    /// The line it starts on.
    line: usize,
    /// Its object's slot.
    object: usize,
    fields: usize,
    /// Line breaks inside its quoted fields.
    breaks: usize,
}

impl Record {
    fn new(line: usize) -> Record {
        Record {
            line,
            object: 0,
            fields: 0,
            breaks: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where records and comment lines end, as `run` (field by field) or `records` finds
    /// them, the text fed in pieces of `piece`.
    fn ends(dialect: &Dialect, text: &[u8], piece: usize, fields: bool) -> Vec<usize> {
        let mut lexer = Lexer::default();
        let mut found = Vec::new();
        let mut on = |at, boundary| {
            if boundary != Boundary::Field {
                found.push(at);
            }
            ControlFlow::Continue(())
        };
        let mut at = 0;
        while at < text.len() {
            // The text so far grows by a piece; the lexer resumes where it stopped.
            let so_far = &text[..(at + piece).min(text.len())];
            at = match fields {
                true => lexer.run(dialect, so_far, at, &mut on),
                false => lexer.records(dialect, so_far, at, &mut on),
            };
        }
        found
    }

    #[test]
    fn skipping_fields_finds_the_same_record_ends() {
        let text =
            b"a,b,c\n\"x,\"\"\ny\",2,\"\"\n# c,\"\n q\"r,\"s\\\"t\",u\r\n,,\"\n\"\nlast\"x,\"z\"";
        for dialect in [
            Dialect::default(),
            Dialect {
                comment: Some(b'#'),
                escape: Some(b'\\'),
                ..Dialect::default()
            },
            Dialect {
                delimiter: b'\t',
                ..Dialect::default()
            },
        ] {
            let whole = ends(&dialect, text, text.len(), true);
            assert!(whole.len() >= 4, "{whole:?}");
            for piece in [1, 2, 3, 7] {
                assert_eq!(
                    ends(&dialect, text, piece, true),
                    whole,
                    "{dialect:?} fields {piece}"
                );
                assert_eq!(
                    ends(&dialect, text, piece, false),
                    whole,
                    "{dialect:?} records {piece}"
                );
            }
        }
    }
}
