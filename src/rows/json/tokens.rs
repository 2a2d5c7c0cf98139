//! The scalar tokens of JSON's grammar: strings (escapes, surrogate pairs, control
//! characters), numbers (kept as written unless they fit i64) and the literals.

use std::borrow::Cow;

use super::{Number, Scanner};
use crate::Error;

impl<'a> Scanner<'a> {
    /// The string starting at the current `"`: borrowed unless it has escapes.
    pub fn string(&mut self) -> Result<Cow<'a, str>, Error> {
        let text = self.text;
        let bytes = text.as_bytes();
        let start = self.pos + 1;
        let mut i = plain_run(bytes, start);
        // The common case: no escape before the closing quote.
        while let Some(&b) = bytes.get(i) {
            match b {
                b'"' => {
                    self.pos = i + 1;
                    return Ok(Cow::Borrowed(&text[start..i]));
                }
                b'\\' => break,
                0..=0x1f => {
                    self.pos = i;
                    return Err(self.syntax("control character in a string"));
                }
                _ => i += 1,
            }
        }
        let mut out = String::with_capacity(i - start + 16);
        let mut run = start;
        loop {
            let Some(&b) = bytes.get(i) else {
                self.pos = i;
                return Err(self.syntax("EOF while parsing a string"));
            };
            match b {
                b'"' => {
                    out.push_str(&text[run..i]);
                    self.pos = i + 1;
                    return Ok(Cow::Owned(out));
                }
                b'\\' => {
                    out.push_str(&text[run..i]);
                    self.pos = i;
                    i = self.escape(&mut out)?;
                    run = i;
                }
                0..=0x1f => {
                    self.pos = i;
                    return Err(self.syntax("control character in a string"));
                }
                _ => i += 1,
            }
        }
    }

    /// Decodes the escape at `self.pos` (a `\`) into `out`; returns the index after it.
    fn escape(&mut self, out: &mut String) -> Result<usize, Error> {
        let text = self.text;
        let bytes = text.as_bytes();
        let i = self.pos + 1;
        let simple = match bytes.get(i) {
            Some(b'"') => '"',
            Some(b'\\') => '\\',
            Some(b'/') => '/',
            Some(b'b') => '\u{8}',
            Some(b'f') => '\u{c}',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            Some(b'u') => {
                let high = self.hex4(i + 1)?;
                let (code, next) = match high {
                    0xD800..=0xDBFF => {
                        if bytes.get(i + 5..i + 7) != Some(b"\\u") {
                            return Err(self.syntax("lone leading surrogate in a \\u escape"));
                        }
                        let low = self.hex4(i + 7)?;
                        if !(0xDC00..=0xDFFF).contains(&low) {
                            return Err(self.syntax("lone leading surrogate in a \\u escape"));
                        }
                        (0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00), i + 11)
                    }
                    0xDC00..=0xDFFF => {
                        return Err(self.syntax("lone trailing surrogate in a \\u escape"));
                    }
                    _ => (high, i + 5),
                };
                out.push(char::from_u32(code).expect("surrogates were handled"));
                return Ok(next);
            }
            _ => return Err(self.syntax("invalid escape")),
        };
        out.push(simple);
        Ok(i + 1)
    }

    /// The four hex digits at `at`.
    fn hex4(&mut self, at: usize) -> Result<u32, Error> {
        let text = self.text;
        let digits = text.as_bytes().get(at..at + 4);
        digits
            .filter(|d| d.iter().all(u8::is_ascii_hexdigit))
            .and_then(|d| u32::from_str_radix(std::str::from_utf8(d).ok()?, 16).ok())
            .ok_or_else(|| {
                self.pos = at;
                self.syntax("invalid \\u escape")
            })
    }

    /// The number starting here (`-` or a digit), checked against JSON's grammar.
    pub fn number(&mut self) -> Result<Number<'a>, Error> {
        let text = self.text;
        let bytes = text.as_bytes();
        let start = self.pos;
        let mut i = start;
        let negative = bytes[i] == b'-';
        if negative {
            i += 1;
        }
        let digits = i;
        let mut value: u64 = 0;
        match bytes.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => {
                while let Some(&d @ b'0'..=b'9') = bytes.get(i) {
                    value = value.wrapping_mul(10).wrapping_add(u64::from(d - b'0'));
                    i += 1;
                }
            }
            _ => {
                self.pos = i;
                return Err(self.syntax("invalid number"));
            }
        }
        let integer_digits = i - digits;
        let mut plain_integer = true;
        if bytes.get(i) == Some(&b'.') {
            plain_integer = false;
            i += 1;
            i = self.digits(i)?;
        }
        if matches!(bytes.get(i), Some(b'e' | b'E')) {
            plain_integer = false;
            i += 1;
            if matches!(bytes.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            i = self.digits(i)?;
        }
        self.pos = i;
        let text = &text[start..i];
        // `-0` stays text, so a float column keeps its sign.
        if !plain_integer || text == "-0" {
            return Ok(Number::Text(text));
        }
        // Up to 18 digits cannot overflow.
        if integer_digits <= 18 {
            let value = value as i64;
            return Ok(Number::Int(if negative { -value } else { value }));
        }
        Ok(text.parse().map_or(Number::Text(text), Number::Int))
    }

    /// One or more digits at `i`; returns the index after them.
    fn digits(&mut self, mut i: usize) -> Result<usize, Error> {
        let text = self.text;
        let bytes = text.as_bytes();
        let first = i;
        while bytes.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == first {
            self.pos = i;
            return Err(self.syntax("invalid number"));
        }
        Ok(i)
    }

    /// `true`, `false` or `null` here.
    pub fn literal(&mut self) -> Result<Option<bool>, Error> {
        let rest = &self.text.as_bytes()[self.pos..];
        for (word, value) in [
            (&b"true"[..], Some(true)),
            (b"false", Some(false)),
            (b"null", None),
        ] {
            if rest.starts_with(word) {
                self.pos += word.len();
                return Ok(value);
            }
        }
        Err(self.syntax("expected a value"))
    }
}

/// The index of the first byte from `i` that may end or escape a string (`"`, `\\` or a
/// control character), checking 8 bytes at a time; at most `bytes.len()`, and possibly earlier
/// (the byte loop that follows checks each byte from there).
fn plain_run(bytes: &[u8], mut i: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    while let Some(chunk) = bytes.get(i..i + 8) {
        let x = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        // A byte below 0x20, or equal to `"` or `\`: the high bit of its lane is set. Bytes
        // of 0x80 and above (UTF-8) only cause a false stop, which the byte loop clears.
        let special = x.wrapping_sub(ONES * 0x20) & !x & HIGH
            | has_zero(x ^ (ONES * u64::from(b'"')))
            | has_zero(x ^ (ONES * u64::from(b'\\')));
        if special != 0 {
            return i;
        }
        i += 8;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(json: &str) -> Scanner<'_> {
        Scanner::new(json.as_bytes()).unwrap()
    }

    #[test]
    fn the_8_byte_skip_never_passes_a_quote_backslash_or_control_character() {
        let filler = "abcdé🚀xyz0123456789ABCDEFGHIJ";
        for special in [b'"', b'\\', 0x00, 0x01, 0x1f] {
            for at in 0..40 {
                let mut bytes: Vec<u8> = filler.bytes().cycle().take(48).collect();
                bytes[at] = special;
                for from in 0..=at {
                    let stop = plain_run(&bytes, from);
                    assert!(stop <= at, "{special:#x} at {at}, from {from}: {stop}");
                }
            }
        }
        // Plain text is skipped 8 bytes at a time up to its last whole word.
        assert_eq!(plain_run(b"abcdefghijklmnopq", 0), 16);
    }

    #[test]
    fn strings_borrow_unless_escaped_and_decode_every_escape() {
        assert!(matches!(
            scan(r#""plain é""#).string().unwrap(),
            Cow::Borrowed("plain é")
        ));
        let escaped = scan(r#""a\"b\\c\/d\b\f\n\r\t\u00e9\ud83d\ude80 z""#)
            .string()
            .unwrap();
        assert_eq!(escaped, "a\"b\\c/d\u{8}\u{c}\n\r\té🚀 z");
        for bad in [
            r#""\ud800""#,
            r#""\ud800\u0041""#,
            r#""\udc00""#,
            r#""\x""#,
            r#""\u12""#,
            "\"a\u{1}\"",
            r#""open"#,
        ] {
            let err = scan(bad).string().unwrap_err().to_string();
            assert!(err.contains("not valid JSON"), "{bad}: {err}");
        }
    }

    #[test]
    fn numbers_follow_the_grammar_and_keep_their_text() {
        fn number(text: &str) -> Result<Number<'_>, Error> {
            scan(text).number()
        }
        assert_eq!(number("0").unwrap(), Number::Int(0));
        assert_eq!(number("-42").unwrap(), Number::Int(-42));
        assert_eq!(
            number("9223372036854775807").unwrap(),
            Number::Int(i64::MAX)
        );
        assert_eq!(
            number("-9223372036854775808").unwrap(),
            Number::Int(i64::MIN)
        );
        for text in [
            "9223372036854775808",
            "18446744073709551616",
            "-0",
            "1.50",
            "1e400",
            "-2.5E-3",
        ] {
            assert_eq!(number(text).unwrap(), Number::Text(text));
        }
        for bad in ["-", "01x", "1.", "1.e5", "1e", "-a"] {
            let mut s = scan(bad);
            let whole = s.number().map(|_| s.pos == bad.len());
            assert!(!matches!(whole, Ok(true)), "{bad}");
        }
    }
}
