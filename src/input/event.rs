//! The event contract: `{"rows": [...] or "source": {...}, "targets": [...], "schema": ...,
//! "unknown_keys": ..., "dry_run": ..., "partition_by": [...]}`, validated into typed values.

use std::borrow::Cow;
use std::sync::Arc;

use arrow_schema::{Field, Schema, SchemaRef};
use serde::Deserialize;

use crate::Error;
use crate::encode::columns::UnknownKeys;
use crate::encode::partition::PartitionBy;
use crate::encode::skipping::Skipping;
use crate::encode::writer::parse_max_file_bytes;
use crate::input::source::Source;
use crate::input::target::{S3Prefix, TableTarget, Target, Targets, parse_all_targets};
use crate::rows::Rows;
use crate::rows::json::Scanner;
use crate::schema::ddl;

/// The optional top-level fields besides `rows` or `source`.
const OPTIONAL_FIELDS: [&str; 11] = [
    "targets",
    "schema",
    "unknown_keys",
    "dry_run",
    "partition_by",
    "schema_evolution",
    "max_file_bytes",
    "row_group_bytes",
    "mode",
    "bloom_filter_columns",
    "sort_by",
];

/// What a write does to what its folders held before (`mode`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum WriteMode {
    /// Adds to the folder.
    #[default]
    Append,
    /// After the write, each folder holds only what it wrote.
    Overwrite,
    /// After the write, each partition folder it wrote in holds only what it wrote; the other
    /// partitions are left as they are.
    OverwritePartitions,
}

impl WriteMode {
    /// Parses `append`, `overwrite` or `overwrite_partitions`.
    ///
    /// # Errors
    /// `InvalidEvent` naming `what` for anything else.
    pub fn parse(name: &str, what: &str) -> Result<WriteMode, Error> {
        match name {
            "append" => Ok(WriteMode::Append),
            "overwrite" => Ok(WriteMode::Overwrite),
            "overwrite_partitions" => Ok(WriteMode::OverwritePartitions),
            _ => Err(Error::InvalidEvent(format!(
                "{what} must be \"append\", \"overwrite\" or \"overwrite_partitions\""
            ))),
        }
    }
}

/// Whether a table target's schema may change to take the rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Evolution {
    /// A column the table lacks is `TableSchemaMismatch`.
    #[default]
    None,
    /// A column the table lacks is added to it, optional, in the data's own commit.
    AddColumns,
}

impl Evolution {
    /// Parses `none` or `add_columns`.
    ///
    /// # Errors
    /// `InvalidEvent` naming `what` for anything else.
    pub fn parse(name: &str, what: &str) -> Result<Evolution, Error> {
        match name.trim() {
            "none" => Ok(Evolution::None),
            "add_columns" => Ok(Evolution::AddColumns),
            _ => Err(Error::InvalidEvent(format!(
                "{what} must be \"none\" or \"add_columns\""
            ))),
        }
    }
}

/// What an event converts: its own rows, an S3 object named by `source`, or the objects of a
/// Step Functions Distributed Map batch.
#[derive(Debug)]
pub enum Input<'a> {
    Rows(Rows<'a>),
    Source(Source),
    /// A Distributed Map batch, converted all or nothing together.
    Objects {
        objects: Vec<Source>,
        /// `BatchInput.manifests`: the folder the batch lists what it wrote in, so that its
        /// reply is a small reference (Step Functions fails a state whose output passes
        /// 256 KiB); `None` replies with the listing itself, as before.
        manifests: Option<S3Prefix>,
        /// Each object's `Etag` as the listing gave it (`None` when the item had none): with
        /// the keys, the batch's identity, which names its files.
        etags: Vec<Option<String>>,
    },
}

impl<'a> Input<'a> {
    /// The inline rows; `None` for objects.
    pub fn rows(self) -> Option<Rows<'a>> {
        match self {
            Input::Rows(rows) => Some(rows),
            Input::Source(_) | Input::Objects { .. } => None,
        }
    }
}

/// A validated event: at least one row (each an object, borrowing the event's bytes), or a
/// source object.
#[derive(Debug)]
pub struct Event<'a> {
    pub input: Input<'a>,
    /// `None` when the event has no `targets`: the function's `DEFAULT_TARGETS` apply.
    pub targets: Option<Vec<Target>>,
    /// The Iceberg tables among the event's `targets`.
    pub tables: Vec<TableTarget>,
    /// The declared schema; `None` infers one from the rows.
    pub schema: Option<SchemaRef>,
    pub unknown_keys: UnknownKeys,
    /// Build everything, write nothing, describe what would be written.
    pub dry_run: bool,
    /// Hive folders by these columns' values; `None` writes one object per target.
    pub partition_by: Option<PartitionBy>,
    /// `schema_evolution`; `None` leaves it to the function's `SCHEMA_EVOLUTION`.
    pub schema_evolution: Option<Evolution>,
    /// `max_file_bytes`; `None` leaves it to the function's `MAX_FILE_BYTES`.
    pub max_file_bytes: Option<u64>,
    /// `row_group_bytes` as the event wrote it (the function's memory bounds it: see
    /// [`crate::lambda::config::Config::row_group`]); `None` leaves it to `ROW_GROUP_BYTES`.
    pub row_group_bytes: Option<&'a str>,
    /// `mode`: what the write does to what the folders held.
    pub mode: WriteMode,
    /// `bloom_filter_columns` and `sort_by`; `None` (neither given) leaves both to the
    /// function's `BLOOM_FILTER_COLUMNS` and `SORT_BY`.
    pub skipping: Option<Skipping>,
}

/// Parses and validates an event's bytes in one pass (the rows go straight onto a tape).
///
/// # Errors
/// `InvalidEvent` for malformed JSON (with line and column), a body that is not an object, an
/// unknown or repeated top-level field, both or neither of `rows` and `source`, and `rows`
/// that is not an array, is empty, or holds a non-object (naming its index) or an object with
/// a repeated key; target errors as [`parse_all_targets`]; source errors as [`Source::parse`].
///
/// ```
/// let event = rows_to_parquet::input::event::parse(
///     br#"{"rows": [{"name": "John Doe", "age": 30}],
///          "targets": [{"prefix": "s3://my-bucket/out/", "compression": "snappy"}]}"#,
/// ).unwrap();
/// assert_eq!(event.targets.unwrap()[0].prefix.key_prefix, "out/");
/// assert_eq!(event.input.rows().unwrap().len(), 1);
/// ```
pub fn parse(bytes: &[u8]) -> Result<Event<'_>, Error> {
    Fields::read(bytes)?.into_event()
}

/// The top-level fields of a JSON object: `rows` parsed onto its tape as it is met, every
/// other field kept as raw text; shared by the event and the trigger envelopes, so a body is
/// scanned once whatever it turns out to be.
///
/// Kept whole: its ways out (an event, a Distributed Map batch, a trigger's lookups) read the
/// same two lists and share the checks on them (unknown fields, one input), which read best
/// beside each other.
pub struct Fields<'a> {
    rows: Option<Rows<'a>>,
    others: Vec<(Cow<'a, str>, &'a str)>,
}

impl<'a> Fields<'a> {
    /// Reads the body, which must be one JSON object with no repeated field.
    ///
    /// # Errors
    /// `InvalidEvent` for malformed JSON, a body that is not an object, a repeated field, and
    /// bad `rows` (as [`parse`]).
    pub fn read(bytes: &'a [u8]) -> Result<Fields<'a>, Error> {
        let mut scanner = Scanner::new(bytes)?;
        let kind = scanner.value_type()?;
        if kind != "object" {
            let article = match kind {
                "null" => "",
                "array" => "an ",
                _ => "a ",
            };
            return Err(scanner.refuse_value(&format!(
                "the event must be a JSON object with `rows` (or `source`) and optionally `targets`, not {article}{kind}"
            )));
        }
        scanner.enter(0)?;
        let mut fields = Fields {
            rows: None,
            others: Vec::new(),
        };
        if !scanner.empty(b'}') {
            loop {
                let key = scanner.key()?;
                if fields.has(&key) {
                    return Err(scanner.refuse(&format!("the event has `{key}` twice")));
                }
                if key == "rows" {
                    fields.rows = Some(Rows::parse(&mut scanner, 1, 0)?);
                } else {
                    fields.others.push((key, scanner.raw_value()?));
                }
                if !scanner.more(b'}')? {
                    break;
                }
            }
        }
        scanner.end()?;
        Ok(fields)
    }

    fn has(&self, name: &str) -> bool {
        (name == "rows" && self.rows.is_some()) || self.others.iter().any(|(n, _)| n == name)
    }

    /// The raw JSON of a field; `null` counts as absent.
    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.others
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, raw)| *raw)
            .filter(|raw| *raw != "null")
    }

    /// # Errors
    /// `InvalidEvent` naming the first field not in `allowed`, for an object (`what`) of a
    /// fixed shape.
    pub fn only(&self, allowed: &[&str], what: &str) -> Result<(), Error> {
        match self.unknown(allowed) {
            Some(unknown) => Err(Error::InvalidEvent(format!(
                "unknown field `{unknown}` in {what} (expected {})",
                allowed
                    .iter()
                    .map(|f| format!("`{f}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
            None => Ok(()),
        }
    }

    /// The first field (besides `rows`) not in `allowed`.
    fn unknown(&self, allowed: &[&str]) -> Option<&str> {
        self.others
            .iter()
            .map(|(name, _)| name.as_ref())
            .find(|name| !allowed.contains(name))
    }

    /// The value of a string field; `None` when absent or not a string.
    pub fn string(&self, name: &str) -> Option<String> {
        serde_json::from_str(self.get(name)?).ok()
    }

    /// Whether the object has `rows` or a `source` object: it is an event of this function's
    /// own (EventBridge's `source` is a string).
    pub fn is_event(&self) -> bool {
        self.rows.is_some() || self.get("source").is_some_and(|s| s.starts_with('{'))
    }

    /// Validates the fields as an event of this function's own.
    ///
    /// # Errors
    /// As [`parse`].
    pub fn into_event(mut self) -> Result<Event<'a>, Error> {
        self.refuse_unknown(&["source"], "`rows` or `source`, and optionally")?;
        let input = match (self.rows.take(), self.get("source")) {
            (Some(_), Some(_)) => {
                return Err(Error::InvalidEvent(
                    "the event has both `rows` and `source`; give one".into(),
                ));
            }
            (None, None) => {
                return Err(Error::InvalidEvent(
                    "the event has no `rows` array (nor a `source` object)".into(),
                ));
            }
            (Some(rows), None) if rows.is_empty() => {
                return Err(Error::InvalidEvent(
                    "`rows` is empty: there is nothing to write".into(),
                ));
            }
            (Some(rows), None) => Input::Rows(rows),
            (None, Some(source)) => Input::Source(Source::parse(source)?),
        };
        self.with_input(input)
    }

    /// Validates the fields as a Distributed Map batch's `BatchInput` (`bucket`, optionally
    /// `format`, `csv` and `manifests`, and the event's optional fields) for the batch's object `keys`.
    ///
    /// # Errors
    /// `InvalidEvent` for a missing `bucket`, an unknown field or format, a key that is a
    /// folder; otherwise as [`parse`].
    pub fn into_batch(self, items: Vec<(String, Option<String>)>) -> Result<Event<'a>, Error> {
        self.refuse_unknown(
            &["bucket", "format", "csv", "manifests"],
            "`bucket`, and optionally `format`, `csv`, `manifests`,",
        )?;
        let bucket = self.string("bucket").ok_or_else(|| {
            Error::InvalidEvent(
                "`BatchInput.bucket` must name the bucket the items are listed from".into(),
            )
        })?;
        let format = self
            .string("format")
            .map(|name| crate::input::source::Format::named(&name, "BatchInput.format"))
            .transpose()?;
        let csv = self
            .get("csv")
            .map(|csv| crate::input::source::CsvOptions::parse(csv, "BatchInput.csv"))
            .transpose()?;
        let (keys, etags): (Vec<String>, Vec<Option<String>>) = items.into_iter().unzip();
        let objects = keys
            .iter()
            .enumerate()
            .map(|(i, key)| {
                let mut source = Source::new(&bucket, key).map_err(|why| {
                    Error::InvalidEvent(format!("Items[{i}]: s3://{bucket}/{key} {why}"))
                })?;
                source.format = format;
                source.csv = csv.clone();
                Ok(source)
            })
            .collect::<Result<Vec<_>, Error>>()?;
        let manifests = match self.get("manifests").map(serde_json::from_str::<String>) {
            None => None,
            Some(Ok(uri)) => Some(S3Prefix::parse(&uri, "BatchInput.manifests")?),
            Some(Err(_)) => {
                return Err(Error::InvalidEvent(
                    "`BatchInput.manifests` must be an s3://bucket/folder/ string".into(),
                ));
            }
        };
        self.with_input(Input::Objects {
            objects,
            manifests,
            etags,
        })
    }

    /// Refused so that a typo such as `target` fails loudly instead of silently writing to
    /// the default targets: any field but `own` and the optional ones.
    fn refuse_unknown(&self, own: &[&str], expected: &str) -> Result<(), Error> {
        let allowed: Vec<&str> = own.iter().chain(&OPTIONAL_FIELDS).copied().collect();
        match self.unknown(&allowed) {
            None => Ok(()),
            Some(unknown) => Err(Error::InvalidEvent(format!(
                "unknown field `{unknown}` in the event (expected {expected} {})",
                OPTIONAL_FIELDS.map(|f| format!("`{f}`")).join(", ")
            ))),
        }
    }

    /// The optional fields validated, for `input`.
    fn with_input(self, input: Input<'a>) -> Result<Event<'a>, Error> {
        let (targets, tables) = match self.get("targets").map(|t| parse_all_targets(t, "targets")) {
            None => (None, Vec::new()),
            Some(given) => {
                let Targets { folders, tables } = given?;
                (Some(folders), tables)
            }
        };
        let schema = self.get("schema").map(parse_schema).transpose()?;
        let unknown_keys = match (self.get("unknown_keys"), &schema) {
            (None, _) => UnknownKeys::default(),
            (Some(_), None) => {
                return Err(Error::InvalidEvent(
                    "`unknown_keys` applies only to an event with a `schema`".into(),
                ));
            }
            (Some(r#""error""#), Some(_)) => UnknownKeys::Error,
            (Some(r#""drop""#), Some(_)) => UnknownKeys::Drop,
            (Some(_), Some(_)) => {
                return Err(Error::InvalidEvent(
                    r#"`unknown_keys` must be "error" or "drop""#.into(),
                ));
            }
        };
        let dry_run = match self.get("dry_run") {
            None | Some("false") => false,
            Some("true") => true,
            Some(_) => {
                return Err(Error::InvalidEvent(
                    "`dry_run` must be true or false".into(),
                ));
            }
        };
        let schema_evolution = match self.get("schema_evolution") {
            None => None,
            Some(raw) => Some(match serde_json::from_str::<String>(raw) {
                Ok(name) => Evolution::parse(&name, "`schema_evolution`")?,
                Err(_) => Evolution::parse(raw, "`schema_evolution`")?,
            }),
        };
        let partition_by = self
            .get("partition_by")
            .map(PartitionBy::parse)
            .transpose()?;
        let max_file_bytes = self
            .get("max_file_bytes")
            .map(|raw| {
                parse_max_file_bytes(raw)
                    .map_err(|why| Error::InvalidEvent(format!("`max_file_bytes` {why}")))
            })
            .transpose()?;
        let (bloom, sort_by) = (self.get("bloom_filter_columns"), self.get("sort_by"));
        let skipping = (bloom.is_some() || sort_by.is_some())
            .then(|| Skipping::parse(bloom, sort_by))
            .transpose()?;
        let mode = match self.get("mode") {
            None => WriteMode::Append,
            Some(raw) => match serde_json::from_str::<String>(raw) {
                Ok(name) => WriteMode::parse(&name, "`mode`")?,
                Err(_) => WriteMode::parse(raw, "`mode`")?,
            },
        };
        Ok(Event {
            mode,
            skipping,
            max_file_bytes,
            row_group_bytes: self.get("row_group_bytes"),
            input,
            targets,
            tables,
            schema,
            unknown_keys,
            dry_run,
            partition_by,
            schema_evolution,
        })
    }
}

/// One field of the JSON form of a schema.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SchemaField {
    name: String,
    #[serde(rename = "type")]
    data_type: String,
    #[serde(default = "nullable_by_default")]
    nullable: bool,
}

fn nullable_by_default() -> bool {
    true
}

/// A schema as Spark DDL (`"name STRING, age INT NOT NULL"`) or as a JSON list of
/// `{"name", "type", "nullable"}`.
fn parse_schema(json: &str) -> Result<SchemaRef, Error> {
    match json.starts_with('"') {
        true => {
            let ddl: String = serde_json::from_str(json)
                .map_err(|e| Error::InvalidEvent(format!("`schema`: {e}")))?;
            declared_schema(&ddl)
        }
        false if json.starts_with('[') => declared_schema(json),
        false => Err(Error::InvalidEvent(
            r#"`schema`: must be a Spark DDL string or a list of {"name", "type", "nullable"}"#
                .into(),
        )),
    }
}

/// A declared schema: Spark DDL (`"id BIGINT, name STRING"`), or a JSON list of
/// `{"name", "type", "nullable"}` (an event's `schema`, or the `SCHEMA` setting).
///
/// # Errors
/// `InvalidEvent` naming what is wrong.
pub fn declared_schema(text: &str) -> Result<SchemaRef, Error> {
    let invalid = |why: String| Error::InvalidEvent(format!("`schema`: {why}"));
    let json = text.trim_start();
    let schema = if !json.starts_with('[') {
        ddl::parse(text).map_err(invalid)?
    } else {
        let fields: Vec<SchemaField> = serde_json::from_str(json).map_err(|e| {
            invalid(format!(
                r#"must be a Spark DDL string or a list of {{"name", "type", "nullable"}}: {e}"#
            ))
        })?;
        let mut out: Vec<Field> = Vec::with_capacity(fields.len());
        for f in fields {
            if out
                .iter()
                .any(|seen| seen.name().eq_ignore_ascii_case(&f.name))
            {
                return Err(invalid(format!("field `{}` appears twice", f.name)));
            }
            let data_type = ddl::parse_type(&f.data_type)
                .map_err(|e| invalid(format!("field `{}`: {e}", f.name)))?;
            out.push(Field::new(f.name, data_type, f.nullable));
        }
        Schema::new(out)
    };
    if schema.fields().is_empty() {
        return Err(invalid("names no field".into()));
    }
    Ok(Arc::new(schema))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(json: &str) -> Error {
        parse(json.as_bytes()).expect_err(json)
    }

    #[test]
    fn keeps_key_order_and_optional_targets() {
        let e = parse(br#"{"rows":[{"z":1,"a":2,"m":3}]}"#).unwrap();
        assert!(e.targets.is_none());
        let rows = e.input.rows().unwrap();
        let row = rows.starts().next().unwrap();
        assert_eq!(
            rows.members(row).map(|(k, _)| k).collect::<Vec<_>>(),
            ["z", "a", "m"]
        );
    }

    #[test]
    fn bad_events_are_invalid_event_with_a_clear_message() {
        for (json, word) in [
            ("", "not valid JSON"),
            ("{\"rows\": [", "not valid JSON"),
            (r#"{"rows": [{"a": 1}]} x"#, "not valid JSON"),
            ("[1,2]", "must be a JSON object with `rows`"),
            (r#""secret""#, "not a string"),
            ("{}", "no `rows`"),
            (r#"{"rows": null}"#, "not null"),
            (r#"{"rows": {"a": 1}}"#, "must be an array of objects"),
            (
                r#"{"rows": [{"a": 1}], "rows": [{"a": 1}]}"#,
                "`rows` twice",
            ),
            (
                r#"{"rows": [{"a": 1, "a": 2}]}"#,
                "row 0: key `a` appears twice",
            ),
            (r#"{"rows": []}"#, "empty"),
            (r#"{"rows": [{"a": 1}, [1]]}"#, "row 1 is a JSON array"),
            (
                r#"{"rows": [{"a": 1}, {"a": 2}, "x"]}"#,
                "row 2 is a JSON string",
            ),
            (
                r#"{"rows": [{"a": 1}], "target": []}"#,
                "unknown field `target`",
            ),
        ] {
            let e = err(json);
            assert_eq!(e.error_type(), "InvalidEvent", "{json}: {e}");
            assert!(e.to_string().contains(word), "{json}: {e}");
        }
    }

    #[test]
    fn schema_options_and_dry_run() {
        let e = parse(br#"{"rows": [{"a": 1}], "schema": "a INT NOT NULL", "unknown_keys": "drop", "dry_run": true}"#).unwrap();
        assert_eq!(ddl::to_spark(e.schema.as_ref().unwrap()), "a INT NOT NULL");
        assert_eq!((e.unknown_keys, e.dry_run), (UnknownKeys::Drop, true));
        let listed = parse(br#"{"rows": [{"a": 1}], "schema": [{"name": "a", "type": "int", "nullable": false}, {"name": "b", "type": "array<string>"}]}"#).unwrap();
        assert_eq!(
            ddl::to_spark(listed.schema.as_ref().unwrap()),
            "a INT NOT NULL, b ARRAY<STRING>"
        );
        assert_eq!(
            (listed.unknown_keys, listed.dry_run),
            (UnknownKeys::Error, false)
        );
        for (json, word) in [
            (
                r#"{"rows": [{"a": 1}], "schema": "a INTEGR"}"#,
                "`schema`: schema: expected a type",
            ),
            (
                r#"{"rows": [{"a": 1}], "schema": [{"name": "a"}]}"#,
                "missing field `type`",
            ),
            (
                r#"{"rows": [{"a": 1}], "schema": [{"name": "a", "type": "int"}, {"name": "A", "type": "int"}]}"#,
                "appears twice",
            ),
            (r#"{"rows": [{"a": 1}], "schema": []}"#, "names no field"),
            (
                r#"{"rows": [{"a": 1}], "unknown_keys": "drop"}"#,
                "only to an event with a `schema`",
            ),
            (
                r#"{"rows": [{"a": 1}], "schema": "a INT", "unknown_keys": "keep"}"#,
                "\"error\" or \"drop\"",
            ),
            (r#"{"rows": [{"a": 1}], "dry_run": "yes"}"#, "true or false"),
            (
                r#"{"rows": [{"a": 1}], "dry_run": true, "dry_run": false}"#,
                "`dry_run` twice",
            ),
        ] {
            let e = err(json);
            assert_eq!(e.error_type(), "InvalidEvent", "{json}: {e}");
            assert!(e.to_string().contains(word), "{json}: {e}");
        }
    }

    #[test]
    fn schema_evolution_is_none_or_add_columns() {
        let event = |extra: &str| format!(r#"{{"rows": [{{"a": 1}}]{extra}}}"#);
        let given = |extra: &str| parse(event(extra).as_bytes()).map(|e| e.schema_evolution);
        assert_eq!(given("").unwrap(), None);
        assert_eq!(
            given(r#", "schema_evolution": "add_columns""#).unwrap(),
            Some(Evolution::AddColumns)
        );
        assert_eq!(
            given(r#", "schema_evolution": "none""#).unwrap(),
            Some(Evolution::None)
        );
        for bad in [
            r#", "schema_evolution": "yes""#,
            r#", "schema_evolution": 1"#,
        ] {
            let e = given(bad).unwrap_err();
            assert!(e.to_string().contains("add_columns"), "{bad}: {e}");
        }
    }

    #[test]
    fn mode_is_append_unless_named() {
        let given = |extra: &str| {
            parse(format!(r#"{{"rows": [{{"a": 1}}]{extra}}}"#).as_bytes()).map(|e| e.mode)
        };
        assert_eq!(given("").unwrap(), WriteMode::Append);
        assert_eq!(
            given(r#", "mode": "overwrite_partitions""#).unwrap(),
            WriteMode::OverwritePartitions
        );
        let e = given(r#", "mode": "replace""#).unwrap_err();
        assert!(e.to_string().contains("`mode` must be"), "{e}");
    }

    #[test]
    fn max_file_bytes_is_a_whole_number_of_at_least_16_mib() {
        let given = |extra: &str| {
            parse(format!(r#"{{"rows": [{{"a": 1}}]{extra}}}"#).as_bytes())
                .map(|e| e.max_file_bytes)
        };
        assert_eq!(given("").unwrap(), None);
        assert_eq!(
            given(r#", "max_file_bytes": 536870912"#).unwrap(),
            Some(512 << 20)
        );
        for bad in [
            r#", "max_file_bytes": 1024"#,
            r#", "max_file_bytes": "big""#,
            r#", "max_file_bytes": -1"#,
        ] {
            let e = given(bad).unwrap_err();
            assert!(e.to_string().contains("`max_file_bytes`"), "{bad}: {e}");
        }
    }

    #[test]
    fn target_errors_surface_as_invalid_target() {
        let e =
            err(r#"{"rows":[{"a":1}],"targets":[{"prefix":"s3://b-1/x","compression":"lzo"}]}"#);
        assert_eq!(e.error_type(), "InvalidTarget");
        assert!(e.to_string().contains("lzo"), "{e}");
    }

    #[test]
    fn row_values_never_appear_in_messages() {
        let e = err(r#"{"rows":[{"a":1},"top-secret-value"]}"#);
        assert!(!e.to_string().contains("top-secret-value"), "{e}");
    }
}
