//! A CSV source's options (`source.csv`, `BatchInput.csv`, the `CSV_OPTIONS` setting), checked
//! once into [`CsvOptions`]: Spark's option names, RFC 4180's defaults.

use serde::Deserialize;

use crate::Error;
use crate::rows::csv::{Dialect, Layout};

/// How a CSV object is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvOptions {
    /// `None`: `,`, or a tab for a `.tsv` object.
    pub delimiter: Option<u8>,
    pub quote: Option<u8>,
    pub escape: Option<u8>,
    pub comment: Option<u8>,
    /// The first record names the columns (default); otherwise they are `_c0`, `_c1`, … or
    /// a declared schema's, in order.
    pub header: bool,
    pub null_value: String,
    /// `PERMISSIVE` rather than `FAILFAST`.
    pub permissive: bool,
}

impl Default for CsvOptions {
    fn default() -> CsvOptions {
        CsvOptions {
            delimiter: None,
            quote: Some(b'"'),
            escape: None,
            comment: None,
            header: true,
            null_value: String::new(),
            permissive: false,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCsv {
    delimiter: Option<String>,
    sep: Option<String>,
    quote: Option<String>,
    escape: Option<String>,
    comment: Option<String>,
    header: Option<bool>,
    null_value: Option<String>,
    #[serde(rename = "nullValue")]
    null_value_spark: Option<String>,
    mode: Option<String>,
    encoding: Option<String>,
}

impl CsvOptions {
    /// Parses a `csv` object (`field` names it in messages): `delimiter` (or Spark's `sep`),
    /// `quote` (`""`: no quoting), `escape`, `comment` (or null), `header`, `null_value`,
    /// `mode` (`FAILFAST`, `PERMISSIVE`), `encoding` (`utf-8`).
    ///
    /// # Errors
    /// `InvalidEvent` naming the option: an unknown one, a delimiter, quote, escape or comment
    /// that is not one ASCII character (or is a line break, or two of them the same), a mode
    /// other than those two, an encoding other than UTF-8.
    ///
    /// ```
    /// use rows_to_parquet::input::source::CsvOptions;
    /// let csv = CsvOptions::parse(r#"{"delimiter": ";", "header": false}"#, "source.csv").unwrap();
    /// assert_eq!((csv.delimiter, csv.header), (Some(b';'), false));
    /// ```
    pub fn parse(json: &str, field: &str) -> Result<CsvOptions, Error> {
        let invalid = |why: String| Error::InvalidEvent(format!("`{field}`: {why}"));
        let raw: RawCsv = serde_json::from_str(json).map_err(|e| {
            invalid(format!(
                "expected an object of delimiter, quote, escape, comment, header, null_value, mode, encoding: {e}"
            ))
        })?;
        let byte = |name: &str, value: Option<String>| -> Result<Option<u8>, Error> {
            let Some(value) = value else { return Ok(None) };
            match value.as_bytes() {
                [b] if b.is_ascii() && !matches!(b, b'\n' | b'\r') => Ok(Some(*b)),
                _ => Err(invalid(format!(
                    "`{name}` must be one ASCII character other than a line break"
                ))),
            }
        };
        let defaults = CsvOptions::default();
        let delimiter = byte("delimiter", raw.delimiter.or(raw.sep))?;
        let quote = match raw.quote.as_deref() {
            Some("") => None,
            _ => byte("quote", raw.quote)?.or(defaults.quote),
        };
        let csv = CsvOptions {
            delimiter,
            quote,
            escape: byte("escape", raw.escape)?,
            comment: byte("comment", raw.comment)?,
            header: raw.header.unwrap_or(defaults.header),
            null_value: raw.null_value.or(raw.null_value_spark).unwrap_or_default(),
            permissive: match raw.mode.as_deref().map(str::to_ascii_uppercase).as_deref() {
                None | Some("FAILFAST") => false,
                Some("PERMISSIVE") => true,
                Some("DROPMALFORMED") => {
                    return Err(invalid(
                        "mode DROPMALFORMED is not offered: it drops rows without a word; use FAILFAST (the default) or PERMISSIVE".into(),
                    ));
                }
                Some(other) => {
                    return Err(invalid(format!(
                        "unknown mode `{other}` (FAILFAST or PERMISSIVE)"
                    )));
                }
            },
        };
        if let Some(encoding) = raw.encoding {
            let name = encoding.to_ascii_lowercase().replace(['-', '_'], "");
            if name != "utf8" {
                return Err(invalid(format!(
                    "encoding `{encoding}` is not read: only UTF-8 (convert the object first, e.g. `iconv -f {encoding} -t UTF-8`)"
                )));
            }
        }
        let dialect = csv.dialect(false);
        let bytes = [
            Some(dialect.delimiter),
            dialect.quote,
            dialect.escape,
            dialect.comment,
        ];
        let set: Vec<u8> = bytes.iter().flatten().copied().collect();
        if (1..set.len()).any(|i| set[..i].contains(&set[i])) {
            return Err(invalid(
                "delimiter, quote, escape and comment must be different characters".into(),
            ));
        }
        Ok(csv)
    }

    /// The delimiter: set, else a tab for a `.tsv` object, else `,`.
    pub fn delimiter_for(&self, tsv: bool) -> u8 {
        self.delimiter.unwrap_or(if tsv { b'\t' } else { b',' })
    }

    /// How fields are delimited and quoted.
    pub fn dialect(&self, tsv: bool) -> Dialect {
        Dialect {
            delimiter: self.delimiter_for(tsv),
            quote: self.quote,
            // An escape equal to the quote is RFC 4180's doubling, which is always on (and
            // no clash).
            escape: self.escape.filter(|e| Some(*e) != self.quote),
            comment: self.comment,
        }
    }

    /// The layout of records whose columns are `names`.
    pub fn layout(&self, tsv: bool, names: Vec<String>) -> Layout {
        Layout {
            dialect: self.dialect(tsv),
            names,
            null_value: self.null_value.clone(),
            permissive: self.permissive,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_checked_and_named() {
        let all = CsvOptions::parse(
            r##"{"delimiter": "\t", "quote": "'", "escape": "\\", "header": false,
                "null_value": "NA", "comment": "#", "mode": "permissive", "encoding": "UTF-8"}"##,
            "source.csv",
        )
        .unwrap();
        assert_eq!(
            all,
            CsvOptions {
                delimiter: Some(b'\t'),
                quote: Some(b'\''),
                escape: Some(b'\\'),
                comment: Some(b'#'),
                header: false,
                null_value: "NA".into(),
                permissive: true,
            }
        );
        let layout = all.layout(false, vec!["a".into()]);
        assert_eq!(layout.dialect.delimiter, b'\t');
        let spark = CsvOptions::parse(
            r#"{"sep": ";", "nullValue": "-", "quote": "", "escape": "\""}"#,
            "c",
        )
        .unwrap();
        assert_eq!(
            (spark.delimiter, spark.quote, spark.null_value.as_str()),
            (Some(b';'), None, "-")
        );
        assert_eq!(CsvOptions::default().delimiter_for(true), b'\t');
        // Escape equal to the quote: RFC 4180's doubling.
        let doubled = CsvOptions::parse(r#"{"escape": "\""}"#, "c").unwrap();
        assert_eq!(doubled.dialect(false).escape, None);
        for (json, word) in [
            (
                r#"{"delimiter": ";;"}"#,
                "`delimiter` must be one ASCII character",
            ),
            (r#"{"delimiter": "\n"}"#, "other than a line break"),
            (r#"{"quote": "é"}"#, "`quote` must be one ASCII"),
            (r#"{"delimiter": "\"", "quote": "\""}"#, "must be different"),
            (r#"{"mode": "DROPMALFORMED"}"#, "drops rows without a word"),
            (r#"{"mode": "lenient"}"#, "unknown mode `LENIENT`"),
            (r#"{"encoding": "latin1"}"#, "only UTF-8"),
            (r#"{"delim": ","}"#, "unknown field `delim`"),
            (r#"{"header": "yes"}"#, "expected an object"),
        ] {
            let e = CsvOptions::parse(json, "source.csv").unwrap_err();
            assert_eq!(e.error_type(), "InvalidEvent");
            assert!(
                e.to_string().contains(word) && e.to_string().contains("`source.csv`"),
                "{json}: {e}"
            );
        }
    }
}
