//! Where objects go: S3 prefixes, each target's codec, and the `ALLOWED_PREFIXES` policy.
//!
//! Targets are validated once, here, into typed values; nothing downstream re-checks a prefix.

use std::fmt;

use serde::Deserialize;

use crate::Error;
use crate::encode::codec::Codec;

/// A folder in S3: a valid bucket name and a non-empty key prefix ending in `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Prefix {
    pub bucket: String,
    /// Ends with `/`, never starts with one.
    pub key_prefix: String,
}

impl S3Prefix {
    /// Parses `s3://bucket/path/` (a missing trailing slash is added).
    ///
    /// # Errors
    /// `InvalidTarget` for anything that is not such a URI, names an invalid bucket, or has
    /// empty path segments; `TargetNotAllowed` for `.` or `..` segments, which would make the
    /// key mean something else to tools that normalise paths. `what` says where the URI came
    /// from, for the message.
    pub fn parse(uri: &str, what: &str) -> Result<S3Prefix, Error> {
        S3Prefix::parse_with(uri, what, false)
    }

    /// As [`S3Prefix::parse`], but `whole_bucket` also accepts `s3://bucket` or `s3://bucket/`
    /// (an empty key prefix): an allow-list may grant a whole bucket, a target may not write to
    /// its root.
    fn parse_with(uri: &str, what: &str, whole_bucket: bool) -> Result<S3Prefix, Error> {
        let invalid = |why: &str| Error::InvalidTarget(format!("{what}: {why}"));
        let rest = uri
            .strip_prefix("s3://")
            .ok_or_else(|| invalid("must be an s3://bucket/path/ URI"))?;
        let (bucket, path) = rest.split_once('/').unwrap_or((rest, ""));
        check_bucket_name(bucket).map_err(|why| invalid(&why))?;
        if path.is_empty() && whole_bucket {
            return Ok(S3Prefix {
                bucket: bucket.to_owned(),
                key_prefix: String::new(),
            });
        }
        if path.is_empty() {
            return Err(invalid(
                "must name a folder inside the bucket (s3://bucket/path/), not the bucket alone",
            ));
        }
        if path.chars().any(|c| c == '\\' || c.is_control()) {
            return Err(invalid("contains a backslash or a control character"));
        }
        // S3 keys are literal, so `%2e%2e` would be stored as typed, while consoles, URL-based
        // tools and allow-list readers that decode would see `..`: refuse the ambiguity.
        if let Some(c) = path.chars().find(|c| matches!(c, '%' | '?' | '#')) {
            return Err(Error::TargetNotAllowed(format!(
                "{what}: contains `{c}` (percent-encoding or URL syntax); write the key as plain text"
            )));
        }
        let path = path.strip_suffix('/').unwrap_or(path);
        for segment in path.split('/') {
            match segment {
                "" => return Err(invalid("has an empty path segment (`//`)")),
                "." | ".." => {
                    return Err(Error::TargetNotAllowed(format!(
                        "{what}: has a `{segment}` path segment"
                    )));
                }
                _ => {}
            }
        }
        Ok(S3Prefix {
            bucket: bucket.to_owned(),
            key_prefix: format!("{path}/"),
        })
    }

    /// True when `other` is this folder or inside it.
    pub fn contains(&self, other: &S3Prefix) -> bool {
        self.bucket == other.bucket && other.key_prefix.starts_with(&self.key_prefix)
    }
}

impl fmt::Display for S3Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key_prefix)
    }
}

/// S3's bucket naming rules (general purpose buckets), so a typo fails here with a clear
/// message rather than as an opaque S3 error after other targets were written.
pub fn check_bucket_name(name: &str) -> Result<(), String> {
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    let alnum = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let looks_like_ip = name.split('.').count() == 4
        && name
            .split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if !(3..=63).contains(&name.len())
        || !ok_chars
        || !alnum(name.bytes().next())
        || !alnum(name.bytes().last())
        || name.contains("..")
        || looks_like_ip
        || ["xn--", "sthree-", "amzn-s3-demo-"]
            .iter()
            .any(|p| name.starts_with(p))
        || ["-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"]
            .iter()
            .any(|s| name.ends_with(s))
    {
        return Err(format!(
            "bucket name `{name}` is not a valid S3 bucket name (3-63 characters: a-z, 0-9, `.`, `-`; no reserved prefix or suffix such as `xn--` or `-s3alias`)"
        ));
    }
    Ok(())
}

/// One output: a folder and the codec to write there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub prefix: S3Prefix,
    pub codec: Codec,
    /// `glue_table`: the Hive table over the folder, kept in step with what is written.
    pub glue_table: Option<TableTarget>,
}

/// S3's limit on a key's length in bytes.
const MAX_KEY_BYTES: usize = 1024;

impl Target {
    /// `<prefix><partition>part-00000-<id>-c<file><suffix>`: Spark's naming for a task's
    /// files, `partition` being the Hive folders (`dt=2024-01-01/`, or empty) and `file`
    /// counting a partition's files (`c000`, `c001`). `id` makes a retried invocation
    /// overwrite its own objects: the request id for inline rows, the source object's identity
    /// for a source.
    ///
    /// # Errors
    /// `InvalidTarget` when the key would be longer than S3 allows (`index` names the target).
    pub fn object_key(
        &self,
        index: usize,
        partition: &str,
        id: &str,
        file: usize,
    ) -> Result<String, Error> {
        let key = format!(
            "{}{partition}part-00000-{id}-c{file:03}{}",
            self.prefix.key_prefix,
            self.codec.file_suffix()
        );
        if key.len() > MAX_KEY_BYTES {
            return Err(Error::InvalidTarget(format!(
                "targets[{index}].prefix: the object key would be {} bytes, over S3's {MAX_KEY_BYTES}",
                key.len()
            )));
        }
        Ok(key)
    }
}

/// An Iceberg table to append to, in the Glue Data Catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableTarget {
    pub database: String,
    pub table: String,
    /// `None`: the table's `write.parquet.compression-codec`, else zstd.
    pub codec: Option<Codec>,
}

impl fmt::Display for TableTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.database, self.table)
    }
}

impl TableTarget {
    /// Parses `<database>.<table>`: Glue's names (lower case letters, digits, `_`; up to 255
    /// characters), as Athena can query them.
    ///
    /// # Errors
    /// `InvalidTarget` naming `what`.
    pub fn parse(name: &str, what: &str) -> Result<TableTarget, Error> {
        let valid = |part: &str| {
            !part.is_empty()
                && part.len() <= 255
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        };
        match name.split_once('.') {
            Some((database, table)) if valid(database) && valid(table) => Ok(TableTarget {
                database: database.to_owned(),
                table: table.to_owned(),
                codec: None,
            }),
            _ => Err(Error::InvalidTarget(format!(
                "{what}: a table is named `<database>.<table>`, each of lower-case letters, digits and `_`"
            ))),
        }
    }
}

/// `ALLOWED_TABLES`: the tables table targets may name, as comma-separated
/// `<database>.<table>` patterns in which `*` ends a part to match any rest (`analytics.*`,
/// `analytics.clicks_*`, `*.*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableAllowList(Vec<(String, String)>);

impl TableAllowList {
    /// # Errors
    /// `InvalidConfig` for a pattern of another shape.
    pub fn parse(list: &str) -> Result<TableAllowList, Error> {
        list.split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|pattern| {
                let valid = |part: &str| {
                    let stem = part.strip_suffix('*').unwrap_or(part);
                    (stem.len() < part.len() || !stem.is_empty())
                        && stem
                            .bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                };
                match pattern.split_once('.') {
                    Some((d, t)) if valid(d) && valid(t) => Ok((d.to_owned(), t.to_owned())),
                    _ => Err(Error::InvalidConfig(format!(
                        "ALLOWED_TABLES: `{pattern}` is not a <database>.<table> pattern (lower case, `*` only at the end of a part)"
                    ))),
                }
            })
            .collect::<Result<Vec<_>, _>>()
            .map(TableAllowList)
    }

    /// # Errors
    /// `TableNotAllowed` naming the table and the patterns.
    pub fn check(&self, table: &TableTarget) -> Result<(), Error> {
        let matches = |pattern: &str, name: &str| match pattern.strip_suffix('*') {
            Some(stem) => name.starts_with(stem),
            None => pattern == name,
        };
        let allowed = self
            .0
            .iter()
            .any(|(d, t)| matches(d, &table.database) && matches(t, &table.table));
        match allowed {
            true => Ok(()),
            false => Err(Error::TableNotAllowed(format!(
                "table {table} is outside ALLOWED_TABLES ({}); nothing was written",
                self.0
                    .iter()
                    .map(|(d, t)| format!("{d}.{t}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }
}

/// What an event's `targets` name: folders, and Iceberg tables.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Targets {
    pub folders: Vec<Target>,
    pub tables: Vec<TableTarget>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    prefix: Option<String>,
    table: Option<String>,
    compression: Option<String>,
    glue_table: Option<String>,
}

/// Parses a JSON array of `{"prefix", "compression"}` folders (the event's `targets` or the
/// `DEFAULT_TARGETS` variable, named by `origin` in messages); tables are refused here.
///
/// # Errors
/// As [`parse_all_targets`]; `InvalidTarget` for a table.
pub fn parse_targets(json: &str, origin: &str) -> Result<Vec<Target>, Error> {
    let targets = parse_all_targets(json, origin)?;
    match targets.tables.first() {
        None => Ok(targets.folders),
        Some(table) => Err(Error::InvalidTarget(format!(
            "`{origin}` names the table {table}: only folders may be given here"
        ))),
    }
}

/// Parses a JSON array of `{"prefix", "compression"}` folders and `{"table",
/// "compression"?}` tables.
///
/// # Errors
/// `InvalidTarget` when the JSON is not such an array, is empty, names an unknown codec, a
/// bad prefix or table name, or one prefix or table twice; `TargetNotAllowed` as
/// [`S3Prefix::parse`].
pub fn parse_all_targets(json: &str, origin: &str) -> Result<Targets, Error> {
    let raw: Vec<RawTarget> = serde_json::from_str(json).map_err(|e| {
        Error::InvalidTarget(format!(
            "`{origin}` must be an array of {{\"prefix\": \"s3://bucket/path/\", \"compression\": \"snappy\"}} or {{\"table\": \"database.table\"}} objects: {e}"
        ))
    })?;
    if raw.is_empty() {
        return Err(Error::InvalidTarget(format!("`{origin}` is empty")));
    }
    let mut targets = Targets::default();
    // Each folder's index in `raw`, for messages.
    let mut folder_at = Vec::new();
    for (i, t) in raw.iter().enumerate() {
        let codec = t
            .compression
            .as_deref()
            .map(|name| {
                Codec::from_name(name).ok_or_else(|| {
                    Error::InvalidTarget(format!(
                        "{origin}[{i}].compression: unknown codec `{name}` (use one of uncompressed, snappy, zstd, gzip, lz4, brotli)"
                    ))
                })
            })
            .transpose()?;
        match (&t.prefix, &t.table) {
            (Some(prefix), None) => {
                let codec = codec.ok_or_else(|| {
                    Error::InvalidTarget(format!("{origin}[{i}]: a folder needs its `compression`"))
                })?;
                let prefix = S3Prefix::parse(prefix, &format!("{origin}[{i}].prefix"))?;
                if let Some(j) = targets
                    .folders
                    .iter()
                    .position(|seen| seen.prefix == prefix)
                {
                    return Err(Error::InvalidTarget(format!(
                        "{origin}[{i}].prefix: {prefix} is already the prefix of {origin}[{}]; give each target its own folder",
                        folder_at[j]
                    )));
                }
                let what = format!("{origin}[{i}].glue_table");
                let glue_table = t
                    .glue_table
                    .as_deref()
                    .map(|name| TableTarget::parse(name, &what))
                    .transpose()?;
                if let Some(table) = &glue_table {
                    let named = |t: &Option<TableTarget>| t.as_ref() == Some(table);
                    if targets.folders.iter().any(|f| named(&f.glue_table)) {
                        return Err(Error::InvalidTarget(format!(
                            "{what}: {table} is named for two folders; a table lies over one"
                        )));
                    }
                }
                folder_at.push(i);
                targets.folders.push(Target {
                    prefix,
                    codec,
                    glue_table,
                });
            }
            (None, Some(_)) if t.glue_table.is_some() => {
                return Err(Error::InvalidTarget(format!(
                    "{origin}[{i}].glue_table: only a folder (`prefix`) has a Glue table over it; an Iceberg `table` is its own"
                )));
            }
            (None, Some(table)) => {
                let mut table = TableTarget::parse(table, &format!("{origin}[{i}].table"))?;
                table.codec = codec;
                if targets
                    .tables
                    .iter()
                    .any(|seen| seen.to_string() == table.to_string())
                {
                    return Err(Error::InvalidTarget(format!(
                        "{origin}[{i}].table: {table} is named twice"
                    )));
                }
                targets.tables.push(table);
            }
            _ => {
                return Err(Error::InvalidTarget(format!(
                    "{origin}[{i}]: a target has a `prefix` (a folder) or a `table`, not both or neither"
                )));
            }
        }
    }
    Ok(targets)
}

/// The `ALLOWED_PREFIXES` (targets) or `ALLOWED_SOURCES` policy: folders that outputs, or
/// source objects, must lie inside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowList(Vec<S3Prefix>);

impl AllowList {
    /// Parses a comma-separated list of `s3://bucket/path/` folders or whole `s3://bucket`s,
    /// the value of the variable `name`.
    ///
    /// # Errors
    /// `InvalidConfig` when the list is empty or an entry is not a valid prefix.
    pub fn parse(list: &str, name: &str) -> Result<AllowList, Error> {
        let prefixes = list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                S3Prefix::parse_with(s, name, true).map_err(|e| Error::InvalidConfig(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if prefixes.is_empty() {
            return Err(Error::InvalidConfig(format!(
                "{name} is set but names no prefix"
            )));
        }
        Ok(AllowList(prefixes))
    }

    /// The folders (or whole buckets, with an empty key prefix).
    pub fn prefixes(&self) -> &[S3Prefix] {
        &self.0
    }

    /// Whether the object `s3://bucket/key` lies inside one of the folders.
    pub fn allows_object(&self, bucket: &str, key: &str) -> bool {
        self.0
            .iter()
            .any(|p| p.bucket == bucket && key.starts_with(&p.key_prefix))
    }

    /// The folders, for messages.
    pub fn describe(&self) -> String {
        self.0
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// # Errors
    /// `TargetNotAllowed` naming the first target outside every allowed folder.
    pub fn check(&self, targets: &[Target]) -> Result<(), Error> {
        targets
            .iter()
            .try_for_each(|t| self.check_folder(&t.prefix, "target"))
    }

    /// # Errors
    /// `TargetNotAllowed` when `folder` (`what`, for the message) is outside every allowed
    /// folder.
    pub fn check_folder(&self, folder: &S3Prefix, what: &str) -> Result<(), Error> {
        match self.0.iter().any(|allowed| allowed.contains(folder)) {
            true => Ok(()),
            false => Err(Error::TargetNotAllowed(format!(
                "{what} {folder} is outside ALLOWED_PREFIXES ({})",
                self.describe()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_named_database_dot_table_and_policed_by_patterns() {
        let t = parse_all_targets(
            r#"[{"table": "analytics.clicks"}, {"prefix": "s3://b-1/out/", "compression": "snappy"}, {"table": "raw.events", "compression": "gzip"}]"#,
            "targets",
        )
        .unwrap();
        assert_eq!(t.folders.len(), 1);
        assert_eq!(t.tables[0].to_string(), "analytics.clicks");
        assert_eq!(
            (t.tables[0].codec, t.tables[1].codec),
            (None, Some(Codec::Gzip))
        );
        for bad in [
            r#"[{"table": "clicks"}]"#,
            r#"[{"table": "Analytics.clicks"}]"#,
            r#"[{"table": "a.b", "prefix": "s3://b-1/out/"}]"#,
            r#"[{"table": "a.b"}, {"table": "a.b"}]"#,
            r#"[{"prefix": "s3://b-1/out/"}]"#,
        ] {
            let e = parse_all_targets(bad, "targets").unwrap_err();
            assert_eq!(e.error_type(), "InvalidTarget", "{bad}: {e}");
        }
        let folder = parse_targets(
            r#"[{"prefix": "s3://b-1/out/", "compression": "snappy", "glue_table": "analytics.raw"}]"#,
            "targets",
        )
        .unwrap();
        assert_eq!(folder[0].glue_table.as_ref().unwrap().table, "raw");
        for bad in [
            r#"[{"table": "a.b", "glue_table": "a.c"}]"#,
            r#"[{"prefix": "s3://b-1/out/", "compression": "snappy", "glue_table": "Raw"}]"#,
            r#"[{"prefix": "s3://b-1/x/", "compression": "snappy", "glue_table": "a.t"}, {"prefix": "s3://b-1/y/", "compression": "zstd", "glue_table": "a.t"}]"#,
        ] {
            let e = parse_all_targets(bad, "targets").unwrap_err();
            assert!(e.to_string().contains("glue_table"), "{bad}: {e}");
        }
        let e = parse_targets(r#"[{"table": "a.b"}]"#, "DEFAULT_TARGETS").unwrap_err();
        assert!(e.to_string().contains("only folders"), "{e}");

        let allowed = TableAllowList::parse("analytics.*, raw.events_*").unwrap();
        let table = |name| TableTarget::parse(name, "t").unwrap();
        assert!(allowed.check(&table("analytics.clicks")).is_ok());
        assert!(allowed.check(&table("raw.events_2024")).is_ok());
        let e = allowed.check(&table("raw.other")).unwrap_err();
        assert_eq!(e.error_type(), "TableNotAllowed");
        assert!(e.to_string().contains("analytics.*, raw.events_*"), "{e}");
        for bad in ["analytics", "a*b.c", "A.b", ".x"] {
            assert!(TableAllowList::parse(bad).is_err(), "{bad}");
        }
    }

    fn prefix(uri: &str) -> Result<S3Prefix, Error> {
        S3Prefix::parse(uri, "t")
    }

    #[test]
    fn prefix_adds_trailing_slash_and_splits_bucket() {
        let p = prefix("s3://my-bucket/out/parquet").unwrap();
        assert_eq!(p.bucket, "my-bucket");
        assert_eq!(p.key_prefix, "out/parquet/");
        assert_eq!(p.to_string(), "s3://my-bucket/out/parquet/");
        assert_eq!(prefix("s3://my-bucket/out/parquet/").unwrap(), p);
    }

    #[test]
    fn prefix_rejections_name_the_problem() {
        for (uri, kind, word) in [
            ("my-bucket/out/", "InvalidTarget", "s3://"),
            ("https://my-bucket/out/", "InvalidTarget", "s3://"),
            ("s3://my-bucket", "InvalidTarget", "folder"),
            ("s3://my-bucket/", "InvalidTarget", "folder"),
            ("s3:///out/", "InvalidTarget", "bucket name"),
            ("s3://My_Bucket/out/", "InvalidTarget", "bucket name"),
            ("s3://ab/out/", "InvalidTarget", "bucket name"),
            ("s3://-bucket/out/", "InvalidTarget", "bucket name"),
            ("s3://192.168.1.1/out/", "InvalidTarget", "bucket name"),
            ("s3://bucket/a//b/", "InvalidTarget", "empty path segment"),
            ("s3://bucket/a\\b/", "InvalidTarget", "backslash"),
            ("s3://bucket/a/../b/", "TargetNotAllowed", "`..`"),
            ("s3://bucket/./b/", "TargetNotAllowed", "`.`"),
            ("s3://bucket/out/%2e%2e/b/", "TargetNotAllowed", "`%`"),
            (
                "s3://bucket/out%2F..%2Fother/",
                "TargetNotAllowed",
                "percent-encoding",
            ),
            ("s3://bucket/out/x?y/", "TargetNotAllowed", "`?`"),
            ("s3://bucket/out/\\..\\other/", "InvalidTarget", "backslash"),
            ("s3://bucket//out/", "InvalidTarget", "empty path segment"),
            ("s3://my%2Dbucket/out/", "InvalidTarget", "bucket name"),
            ("s3://bucket..name/out/", "InvalidTarget", "bucket name"),
            ("s3://xn--bucket/out/", "InvalidTarget", "bucket name"),
            ("s3://bucket-s3alias/out/", "InvalidTarget", "bucket name"),
        ] {
            let err = prefix(uri).expect_err(uri);
            assert_eq!(err.error_type(), kind, "{uri}: {err}");
            assert!(err.to_string().contains(word), "{uri}: {err}");
        }
    }

    #[test]
    fn targets_parse_and_reject() {
        let t = parse_targets(
            r#"[{"prefix":"s3://b-1/x","compression":"uncompressed"},{"prefix":"s3://b-1/y/","compression":"Snappy"}]"#,
            "targets",
        )
        .unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[1].codec, Codec::Snappy);
        assert_eq!(t[0].prefix.key_prefix, "x/");

        for (json, word) in [
            ("[]", "empty"),
            ("{}", "must be an array"),
            (r#"[{"prefix":"s3://b-1/x"}]"#, "compression"),
            (
                r#"[{"prefix":"s3://b-1/x","compression":null}]"#,
                "needs its `compression`",
            ),
            (
                r#"[{"prefix":"s3://b-1/x","compression":"lzo"}]"#,
                "unknown codec `lzo`",
            ),
            (
                r#"[{"prefix":"s3://b-1/x","compression":"snappy","extra":1}]"#,
                "extra",
            ),
            (
                r#"[{"prefix":"s3://b-1/x","compression":"snappy"},{"prefix":"s3://b-1/x/","compression":"zstd"}]"#,
                "targets[1].prefix",
            ),
            (
                r#"[{"prefix":"b-1/x","compression":"snappy"}]"#,
                "targets[0].prefix",
            ),
        ] {
            let err = parse_targets(json, "targets").expect_err(json);
            assert_eq!(err.error_type(), "InvalidTarget", "{json}: {err}");
            assert!(err.to_string().contains(word), "{json}: {err}");
        }
    }

    #[test]
    fn allow_list_is_folder_based() {
        let allow = AllowList::parse("s3://b-1/out, s3://b-2/x/", "ALLOWED_PREFIXES").unwrap();
        let ok = parse_targets(
            r#"[{"prefix":"s3://b-1/out/a/","compression":"snappy"},{"prefix":"s3://b-2/x/","compression":"zstd"}]"#,
            "targets",
        )
        .unwrap();
        allow.check(&ok).unwrap();
        for uri in ["s3://b-1/output/", "s3://b-3/out/", "s3://b-2/y/"] {
            let t = vec![Target {
                prefix: prefix(uri).unwrap(),
                codec: Codec::Snappy,
                glue_table: None,
            }];
            let err = allow.check(&t).expect_err(uri);
            assert_eq!(err.error_type(), "TargetNotAllowed");
            assert!(err.to_string().contains(uri), "{err}");
        }
        assert_eq!(
            AllowList::parse(" , ", "ALLOWED_PREFIXES")
                .unwrap_err()
                .error_type(),
            "InvalidConfig"
        );
        for bad in [
            "b-1/out/",
            "s3://b-1/a//b/",
            "s3://B-1/",
            "s3://b-1/out/%2e%2e/",
            "s3://b-1/a\\b/",
            "s3://b_1/",
        ] {
            assert_eq!(
                AllowList::parse(bad, "ALLOWED_PREFIXES")
                    .unwrap_err()
                    .error_type(),
                "InvalidConfig",
                "{bad}"
            );
        }

        let whole_bucket = AllowList::parse("s3://b-2", "ALLOWED_PREFIXES").unwrap();
        assert_eq!(
            whole_bucket,
            AllowList::parse("s3://b-2/", "ALLOWED_PREFIXES").unwrap()
        );
        whole_bucket.check(&ok[1..]).unwrap();
        assert_eq!(
            whole_bucket.check(&ok[..1]).unwrap_err().error_type(),
            "TargetNotAllowed"
        );
    }
}
