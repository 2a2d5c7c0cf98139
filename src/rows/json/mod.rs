//! A strict JSON scanner over the event's bytes (RFC 8259: UTF-8, no BOM, no trailing
//! commas, no lone surrogates, nothing after the value), written for this one job: the rows
//! go straight onto their tape ([`crate::rows`]) with strings and numbers borrowed from the
//! input, and the few other top-level fields are handed on as raw text. No value tree, no
//! allocation per value unless a string has escapes.
//!
//! The structure (containers, members, skipping a value, positions and errors) is here; the
//! scalar tokens (strings, numbers, literals) are in `tokens.rs`.

mod tokens;

use std::borrow::Cow;

use crate::Error;

/// `bytes` as text, checked 32 bytes at a time (simdutf8: 3x std's check on text with some
/// non-ASCII, where std leaves its ASCII fast path; `bench/profile.md`); else how many bytes
/// are valid, as std finds them.
pub fn utf8(bytes: &[u8]) -> Result<&str, usize> {
    match simdutf8::basic::from_utf8(bytes) {
        Ok(text) => Ok(text),
        Err(_) => std::str::from_utf8(bytes).map_err(|e| e.valid_up_to()),
    }
}

/// Containers may nest this deep (serde_json's limit); deeper input is refused, not recursed.
pub const MAX_DEPTH: usize = 128;

/// A position in the event and the text before it (whitespace skipped where it is allowed).
pub struct Scanner<'a> {
    text: &'a str,
    pos: usize,
    /// The line `text` starts on, for messages about one line of an NDJSON object.
    first_line: usize,
    /// What the text is, for messages: "the event" or "the line".
    subject: &'static str,
}

/// A JSON number, as the scanner found it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Number<'a> {
    /// An integer that fits in i64.
    Int(i64),
    /// Any other number, exactly as written.
    Text(&'a str),
}

impl<'a> Scanner<'a> {
    /// # Errors
    /// `InvalidEvent` if the bytes are not UTF-8 (naming where).
    pub fn new(bytes: &'a [u8]) -> Result<Scanner<'a>, Error> {
        // The tape addresses the event with 31-bit offsets; Lambda's limit is 6 MB.
        if bytes.len() >= 1 << 31 {
            return Err(Error::InvalidEvent("the event is larger than 2 GiB".into()));
        }
        match utf8(bytes) {
            Ok(text) => Ok(Scanner::over(text, 1, "the event")),
            Err(valid_up_to) => Err(Scanner::over(
                std::str::from_utf8(&bytes[..valid_up_to]).unwrap_or_default(),
                1,
                "the event",
            )
            .at_end()
            .syntax("invalid UTF-8")),
        }
    }

    /// A scanner over part of a larger text (a line or a chunk of a source object, already
    /// checked to be UTF-8) that starts on line `first_line`; messages call it `subject`.
    pub fn over(text: &'a str, first_line: usize, subject: &'static str) -> Scanner<'a> {
        Scanner {
            text,
            pos: 0,
            first_line,
            subject,
        }
    }

    fn at_end(mut self) -> Scanner<'a> {
        self.pos = self.text.len();
        self
    }

    /// The whole event's text.
    pub fn source(&self) -> &'a str {
        self.text
    }

    /// Where the scanner is, in bytes from the start of its text.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// A second scanner over the same text, from `pos`: to scan a later part of it on
    /// another thread.
    pub fn fork(&self, pos: usize) -> Scanner<'a> {
        Scanner {
            text: self.text,
            pos,
            first_line: self.first_line,
            subject: self.subject,
        }
    }

    /// Carries on from where `fork` (a scanner over the same text) stopped.
    pub fn resume(&mut self, fork: Scanner<'a>) {
        debug_assert!(std::ptr::eq(self.text, fork.text));
        self.pos = fork.pos;
    }

    /// "the event is not valid JSON: `what` at line L column C" (here).
    pub fn syntax(&self, what: &str) -> Error {
        Error::InvalidEvent(format!(
            "{} is not valid JSON: {what} {}",
            self.subject,
            self.at()
        ))
    }

    /// A well-formed event that breaks the contract: `what`, and where.
    pub fn refuse(&self, what: &str) -> Error {
        Error::InvalidEvent(format!("{what} {}", self.at()))
    }

    /// "at line L column C", 1-based, counting characters, like serde_json's messages.
    fn at(&self) -> String {
        let before = &self.text[..self.pos.min(self.text.len())];
        let line = before.matches('\n').count() + self.first_line;
        let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
        format!("at line {line} column {column}")
    }

    /// The next byte after whitespace, not consumed; `None` at the end.
    pub fn peek(&mut self) -> Option<u8> {
        let text = self.text;
        let bytes = text.as_bytes();
        while let Some(&b) = bytes.get(self.pos) {
            if !matches!(b, b' ' | b'\n' | b'\r' | b'\t') {
                return Some(b);
            }
            self.pos += 1;
        }
        None
    }

    /// The JSON type of the value here, from its first byte: `object`, `array`, `string`,
    /// `number`, `boolean` or `null`.
    ///
    /// # Errors
    /// `InvalidEvent` (not valid JSON) if no value can start here.
    pub fn value_type(&mut self) -> Result<&'static str, Error> {
        Ok(match self.peek() {
            Some(b'{') => "object",
            Some(b'[') => "array",
            Some(b'"') => "string",
            Some(b'-' | b'0'..=b'9') => "number",
            Some(b't' | b'f') => "boolean",
            Some(b'n') => "null",
            _ => return Err(self.syntax("expected a value")),
        })
    }

    /// Refuses the value here with `message` (which names its type, never the value), unless
    /// it is malformed JSON, which is reported as such.
    pub fn refuse_value(&mut self, message: &str) -> Error {
        match self.raw_value() {
            Ok(_) => self.refuse(message),
            Err(malformed) => malformed,
        }
    }

    /// Consumes `byte` (after whitespace) or fails naming what was expected.
    pub fn expect(&mut self, byte: u8, what: &str) -> Result<(), Error> {
        match self.peek() {
            Some(b) if b == byte => {
                self.pos += 1;
                Ok(())
            }
            Some(_) => Err(self.syntax(&format!("expected {what}"))),
            None => Err(self.syntax(&format!("EOF while expecting {what}"))),
        }
    }

    /// After a member or element: `true` if another follows (a `,` was consumed), `false` at
    /// `close` (consumed).
    pub fn more(&mut self, close: u8) -> Result<bool, Error> {
        match self.peek() {
            Some(b',') => {
                self.pos += 1;
                Ok(true)
            }
            Some(b) if b == close => {
                self.pos += 1;
                Ok(false)
            }
            Some(_) => Err(self.syntax(&format!("expected `,` or `{}`", close as char))),
            None => Err(self.syntax("EOF while parsing a list or an object")),
        }
    }

    /// Consumes `close` (after whitespace) if it is next: an empty container.
    pub fn empty(&mut self, close: u8) -> bool {
        let empty = self.peek() == Some(close);
        if empty {
            self.pos += 1;
        }
        empty
    }

    /// A member's key and its `:`.
    pub fn key(&mut self) -> Result<Cow<'a, str>, Error> {
        if self.peek() != Some(b'"') {
            return Err(self.syntax("expected a string key"));
        }
        let key = self.string()?;
        self.expect(b':', "`:`")?;
        Ok(key)
    }

    /// Only whitespace may follow the event.
    pub fn end(&mut self) -> Result<(), Error> {
        match self.peek() {
            None => Ok(()),
            Some(_) => Err(self.syntax("trailing characters")),
        }
    }

    /// Checks the value here and returns its text, for fields parsed elsewhere.
    pub fn raw_value(&mut self) -> Result<&'a str, Error> {
        self.peek();
        let start = self.pos;
        self.skip_value(0)?;
        Ok(&self.text[start..self.pos])
    }

    fn skip_value(&mut self, depth: usize) -> Result<(), Error> {
        match self.peek() {
            Some(b'{') => {
                self.enter(depth)?;
                if !self.empty(b'}') {
                    loop {
                        self.key()?;
                        self.skip_value(depth + 1)?;
                        if !self.more(b'}')? {
                            break;
                        }
                    }
                }
            }
            Some(b'[') => {
                self.enter(depth)?;
                if !self.empty(b']') {
                    loop {
                        self.skip_value(depth + 1)?;
                        if !self.more(b']')? {
                            break;
                        }
                    }
                }
            }
            Some(b'"') => {
                self.string()?;
            }
            Some(b'-' | b'0'..=b'9') => {
                self.number()?;
            }
            Some(_) => {
                self.literal()?;
            }
            None => return Err(self.syntax("EOF while parsing a value")),
        }
        Ok(())
    }

    /// Consumes the `{` or `[` here, refusing to go deeper than [`MAX_DEPTH`].
    pub fn enter(&mut self, depth: usize) -> Result<(), Error> {
        if depth >= MAX_DEPTH {
            return Err(self.syntax(&format!(
                "nested more than {MAX_DEPTH} levels deep (recursion limit)"
            )));
        }
        self.pos += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(json: &str) -> Scanner<'_> {
        Scanner::new(json.as_bytes()).unwrap()
    }

    #[test]
    fn raw_values_are_checked_and_positions_reported() {
        let mut s = scan(r#" {"a": [1, {"b": null}], "c": "x"} , "#);
        assert_eq!(
            s.raw_value().unwrap(),
            r#"{"a": [1, {"b": null}], "c": "x"}"#
        );
        let err = scan("{\n  \"a\": [1, 2,]\n}").raw_value().unwrap_err();
        assert!(err.to_string().ends_with("at line 2 column 14"), "{err}");
        let deep = "[".repeat(MAX_DEPTH + 1);
        assert!(
            scan(&deep)
                .raw_value()
                .unwrap_err()
                .to_string()
                .contains("recursion limit")
        );
        let err = Scanner::new(b"{\"a\": \"\xff\"}")
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("invalid UTF-8 at line 1 column 8"), "{err}");
    }
}
