//! A `source` object: where it is, how its rows are framed (NDJSON, a JSON array, CSV or TSV,
//! with CSV's options in `csv.rs`) and compressed (gzip, zstd), and a [`Reader`] that turns
//! its bytes, as they arrive, into [`Chunk`]s of whole rows (`reader.rs`), so an object of any
//! size passes through bounded memory.

mod csv;
mod reader;

use serde::Deserialize;

pub use csv::CsvOptions;
pub use reader::{CHUNK_BYTES, Chunk, MAX_ROW_BYTES, Reader};

use crate::Error;
use crate::input::target::{S3Prefix, check_bucket_name};

/// How the rows are laid out in the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// JSON Lines: one object a line, blank lines ignored.
    Ndjson,
    /// One JSON array of objects.
    Json,
    /// CSV records; `tab`: the delimiter is a tab unless the options set one (TSV).
    Csv { tab: bool },
}

impl Format {
    /// The format an event names (`ndjson` or `jsonl`, `json`, `csv`, `tsv`; any case) in
    /// `field`.
    ///
    /// # Errors
    /// `InvalidEvent` for another name.
    pub fn named(name: &str, field: &str) -> Result<Format, Error> {
        match name.to_ascii_lowercase().as_str() {
            "ndjson" | "jsonl" => Ok(Format::Ndjson),
            "json" => Ok(Format::Json),
            "csv" => Ok(Format::Csv { tab: false }),
            "tsv" => Ok(Format::Csv { tab: true }),
            other => Err(Error::InvalidEvent(format!(
                "`{field}`: unknown format `{other}` (use ndjson, json, csv or tsv)"
            ))),
        }
    }
}

/// How an object is read: what [`Source::framing`] decides, and the names a header-less CSV
/// object's columns take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Framing {
    pub format: Format,
    pub compression: Compression,
    /// For CSV.
    pub csv: CsvOptions,
    /// A header-less CSV object's columns, in order (a declared schema's); `None`: `_c0`, …
    pub columns: Option<Vec<String>>,
}

/// How the object's bytes are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// A validated `source`: an object in S3 and, optionally, its format and version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub bucket: String,
    pub key: String,
    /// `None`: the key's extension decides.
    pub format: Option<Format>,
    /// A specific version to read (from a notification, or the event); `None` is the latest.
    pub version_id: Option<String>,
    /// CSV options: the event's, else `CSV_OPTIONS`'; `None`: the defaults.
    pub csv: Option<CsvOptions>,
    /// `DEFAULT_SOURCE_FORMAT`: the format when neither the event nor the key's extension
    /// tells.
    pub fallback: Option<Format>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    uri: String,
    format: Option<String>,
    version_id: Option<String>,
    csv: Option<Box<serde_json::value::RawValue>>,
}

impl Source {
    /// Parses the event's `source` field: `{"uri": "s3://bucket/key", "format": "ndjson",
    /// "version_id": "...", "csv": {...}}` (only `uri` required).
    ///
    /// # Errors
    /// `InvalidEvent` for another shape, a URI that is not `s3://bucket/key`, or an unknown
    /// format.
    ///
    /// ```
    /// use rows_to_parquet::input::source::{Format, Source};
    /// let source = Source::parse(r#"{"uri": "s3://in-bucket/day 1/a+b.ndjson.gz"}"#).unwrap();
    /// assert_eq!((source.bucket.as_str(), source.key.as_str()), ("in-bucket", "day 1/a+b.ndjson.gz"));
    /// assert_eq!(source.format, None);
    /// ```
    pub fn parse(json: &str) -> Result<Source, Error> {
        let raw: RawSource = serde_json::from_str(json).map_err(|e| {
            Error::InvalidEvent(format!(
                r#"`source` must be {{"uri": "s3://bucket/key", "format": "ndjson", "json", "csv" or "tsv" (optional), "csv": {{options}} (optional)}}: {e}"#
            ))
        })?;
        let format = raw
            .format
            .map(|name| Format::named(&name, "source.format"))
            .transpose()?;
        let mut source = Source::from_uri(&raw.uri)?;
        source.format = format;
        source.version_id = raw.version_id.filter(|v| !v.is_empty());
        source.csv = raw
            .csv
            .map(|csv| CsvOptions::parse(csv.get(), "source.csv"))
            .transpose()?;
        Ok(source)
    }

    /// An object named by `s3://bucket/key` (the key taken literally, not URL-decoded).
    ///
    /// # Errors
    /// `InvalidEvent` when the URI is not of that form or the bucket name is invalid.
    pub fn from_uri(uri: &str) -> Result<Source, Error> {
        let invalid = |why: &str| {
            Error::InvalidEvent(format!(
                "`source.uri` `{uri}` {why} (expected s3://bucket/key)"
            ))
        };
        let rest = uri
            .strip_prefix("s3://")
            .ok_or_else(|| invalid("is not an S3 URI"))?;
        let (bucket, key) = rest
            .split_once('/')
            .ok_or_else(|| invalid("names no object"))?;
        Source::new(bucket, key).map_err(|why| invalid(&why))
    }

    /// An object by bucket and (decoded) key, as a notification names it.
    ///
    /// # Errors
    /// The reason, when the bucket name is invalid or the key empty or a folder.
    pub fn new(bucket: &str, key: &str) -> Result<Source, String> {
        check_bucket_name(bucket)?;
        if key.is_empty() || key.ends_with('/') {
            return Err("names a folder, not an object".into());
        }
        Ok(Source {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            format: None,
            version_id: None,
            csv: None,
            fallback: None,
        })
    }

    /// The source with what its trigger left out taken from the configuration: the format
    /// when nothing else tells (`DEFAULT_SOURCE_FORMAT`) and the CSV options
    /// (`CSV_OPTIONS`).
    pub fn with_defaults(mut self, format: Option<Format>, csv: Option<&CsvOptions>) -> Source {
        self.fallback = format;
        if self.csv.is_none() {
            self.csv = csv.cloned();
        }
        self
    }

    pub fn uri(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }

    /// Whether the object lies inside `prefix` (folder-wise).
    pub fn is_in(&self, prefix: &S3Prefix) -> bool {
        self.bucket == prefix.bucket && self.key.starts_with(&prefix.key_prefix)
    }

    /// How to read the object: `.gz` or `.zst` at the end of the key (or, without one, the
    /// object's `Content-Encoding`) selects the decompression; the format is the event's
    /// `source.format`, else the extension before that (`.ndjson`, `.jsonl`: NDJSON; `.json`:
    /// a JSON array; `.csv`; `.tsv`: CSV with tabs), else `DEFAULT_SOURCE_FORMAT`.
    ///
    /// # Errors
    /// `InvalidEvent` naming the source when nothing tells the format, or the encoding is
    /// not one this function reads.
    pub fn framing(&self, content_encoding: Option<&str>) -> Result<Framing, Error> {
        let lower = self.key.to_ascii_lowercase();
        let (stem, by_extension) = if let Some(stem) = lower.strip_suffix(".gz") {
            (stem, Some(Compression::Gzip))
        } else if let Some(stem) = lower.strip_suffix(".zst") {
            (stem, Some(Compression::Zstd))
        } else {
            (lower.as_str(), None)
        };
        let compression = match by_extension {
            Some(c) => c,
            None => match content_encoding
                .map(|e| e.trim().to_ascii_lowercase())
                .as_deref()
            {
                None | Some("" | "identity") => Compression::None,
                Some("gzip" | "x-gzip") => Compression::Gzip,
                Some("zstd") => Compression::Zstd,
                Some(other) => {
                    return Err(Error::InvalidEvent(format!(
                        "source {}: its Content-Encoding `{other}` is not one this function reads (gzip, zstd)",
                        self.uri()
                    )));
                }
            },
        };
        let by_name = [
            (".ndjson", Format::Ndjson),
            (".jsonl", Format::Ndjson),
            (".json", Format::Json),
            (".csv", Format::Csv { tab: false }),
            (".tsv", Format::Csv { tab: true }),
        ]
        .into_iter()
        .find_map(|(extension, format)| stem.ends_with(extension).then_some(format));
        let Some(format) = self.format.or(by_name).or(self.fallback) else {
            return Err(Error::InvalidEvent(format!(
                "source {}: cannot tell its format from the name (expected .ndjson, .jsonl, .json, .csv or .tsv, optionally then .gz or .zst); set `source.format` (or DEFAULT_SOURCE_FORMAT) to ndjson, json, csv or tsv",
                self.uri()
            )));
        };
        Ok(Framing {
            format,
            compression,
            csv: self.csv.clone().unwrap_or_default(),
            columns: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_follows_the_extension_then_the_encoding() {
        let s = |key: &str| Source::new("in-bucket", key).unwrap();
        let cases = [
            ("a.ndjson", None, Format::Ndjson, Compression::None),
            ("a.JSONL.GZ", None, Format::Ndjson, Compression::Gzip),
            ("a.json.zst", None, Format::Json, Compression::Zstd),
            ("a.json", Some("gzip"), Format::Json, Compression::Gzip),
            (
                "a.ndjson.gz",
                Some("gzip"),
                Format::Ndjson,
                Compression::Gzip,
            ),
            (
                "a.jsonl",
                Some("identity"),
                Format::Ndjson,
                Compression::None,
            ),
        ];
        for (key, encoding, format, compression) in cases {
            let framing = s(key).framing(encoding).unwrap();
            assert_eq!(
                (framing.format, framing.compression),
                (format, compression),
                "{key}"
            );
        }
        let named =
            Source::parse(r#"{"uri": "s3://in-bucket/export", "format": "NDJSON"}"#).unwrap();
        assert_eq!(named.framing(None).unwrap().format, Format::Ndjson);
        let tsv = s("exports/day.TSV.gz").framing(None).unwrap();
        assert_eq!(
            (tsv.format, tsv.compression),
            (Format::Csv { tab: true }, Compression::Gzip)
        );
        assert_eq!(
            s("a.csv").framing(None).unwrap().format,
            Format::Csv { tab: false }
        );
        // The configured format only where neither the event nor the name tells.
        let csv = CsvOptions::parse(r#"{"delimiter": ";"}"#, "CSV_OPTIONS").unwrap();
        let defaulted =
            |key: &str| s(key).with_defaults(Some(Format::Csv { tab: false }), Some(&csv));
        let export = defaulted("export").framing(None).unwrap();
        assert_eq!(
            (export.format, export.csv.delimiter),
            (Format::Csv { tab: false }, Some(b';'))
        );
        assert_eq!(
            defaulted("a.jsonl").framing(None).unwrap().format,
            Format::Ndjson
        );
        let own = Source::parse(
            r#"{"uri": "s3://in-bucket/x", "format": "tsv", "csv": {"header": false}}"#,
        )
        .unwrap()
        .with_defaults(None, Some(&csv));
        let framing = own.framing(None).unwrap();
        assert_eq!(
            (framing.format, framing.csv.header, framing.csv.delimiter),
            (Format::Csv { tab: true }, false, None)
        );
        for (key, encoding, word) in [
            ("a.txt", None, "cannot tell its format"),
            ("a.gz", None, "cannot tell its format"),
            ("a.json", Some("br"), "Content-Encoding `br`"),
        ] {
            let e = s(key).framing(encoding).unwrap_err();
            assert_eq!(e.error_type(), "InvalidEvent");
            assert!(
                e.to_string().contains(word) && e.to_string().contains("s3://in-bucket/"),
                "{e}"
            );
        }
    }

    #[test]
    fn source_uris_and_shapes_are_checked() {
        let ok = Source::parse(r#"{"uri": "s3://in-bucket/a/b%2B c.json", "version_id": "v1"}"#)
            .unwrap();
        assert_eq!(ok.key, "a/b%2B c.json");
        assert_eq!(ok.version_id.as_deref(), Some("v1"));
        for (json, word) in [
            (r#"{"uri": "https://x/y"}"#, "not an S3 URI"),
            (r#"{"uri": "s3://in-bucket"}"#, "names no object"),
            (r#"{"uri": "s3://in-bucket/dir/"}"#, "folder"),
            (r#"{"uri": "s3://In_Bucket/a.json"}"#, "bucket name"),
            (
                r#"{"uri": "s3://in-bucket/a.json", "format": "parquet"}"#,
                "unknown format `parquet`",
            ),
            (r#"{"url": "s3://in-bucket/a.json"}"#, "unknown field"),
            (
                r#"{"uri": "s3://in-bucket/a.csv", "csv": {"sep": "ab"}}"#,
                "`source.csv`: `delimiter` must be one ASCII character",
            ),
            (r#""s3://in-bucket/a.json""#, "must be"),
        ] {
            let e = Source::parse(json).unwrap_err();
            assert_eq!(e.error_type(), "InvalidEvent", "{json}");
            assert!(e.to_string().contains(word), "{json}: {e}");
        }
    }
}
