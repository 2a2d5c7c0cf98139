//! The function's configuration: environment variables, read and validated once at start.

use crate::Error;
use std::time::Duration;

use crate::encode::columns::UnknownKeys;
use crate::encode::partition::MAX_PARTITIONS;
use crate::encode::partition::PartitionBy;
use crate::encode::skipping::Skipping;
use crate::encode::streamed::ROW_GROUP_ROWS;
use crate::encode::writer::{
    RowGroupSize, parse_max_file_bytes, parse_row_group_bytes, row_group_bytes_default,
};
use crate::input::event::Evolution;
use crate::input::event::declared_schema;
use crate::input::records::Metadata;
use crate::input::source::{CsvOptions, Format, Source};
use crate::input::target::{
    AllowList, S3Prefix, TableAllowList, TableTarget, Target, parse_all_targets,
};
use arrow_schema::SchemaRef;

/// Everything the environment configures. A bad value fails the start (an init error) rather
/// than every invocation.
#[derive(Debug, Clone)]
pub struct Config {
    /// `DEFAULT_TARGETS`' folders: the targets of an event that names none.
    pub default_targets: Option<Vec<Target>>,
    /// `DEFAULT_TARGETS`' tables.
    pub default_tables: Vec<TableTarget>,
    /// `ALLOWED_PREFIXES`: when set, the only folders targets may lie in.
    pub allowed: Option<AllowList>,
    /// `AWS_ENDPOINT_URL_S3` or `AWS_ENDPOINT_URL` is set: a local or S3-compatible server,
    /// which needs path-style addressing (`http://host/bucket/key`).
    pub custom_endpoint: bool,
    /// `EXPECTED_BUCKET_OWNER`: the 12-digit account id every bucket written to must belong to.
    pub expected_bucket_owner: Option<String>,
    /// `ALLOWED_SOURCES`: when set, the only folders source objects may be read from.
    pub allowed_sources: Option<AllowList>,
    /// `ROW_GROUP_ROWS`: rows per row group of a file streamed from a source object, at most.
    pub row_group_rows: usize,
    /// `ROW_GROUP_BYTES`: about how many encoded bytes such a row group holds per codec (an
    /// event's `row_group_bytes` decides for itself); default 128 MiB, or a sixteenth of the
    /// function's memory when that is less.
    pub row_group_bytes: usize,
    /// `AWS_LAMBDA_FUNCTION_MEMORY_SIZE`, which Lambda sets (MB; 128 without it): what bounds
    /// a row group.
    pub memory_mb: usize,
    /// `MAX_PARTITIONS`: distinct `partition_by` partitions one event or object may write.
    pub max_partitions: usize,
    /// `MAX_FILE_BYTES`: a streamed file's size past which it continues in the next (an
    /// event's `max_file_bytes` decides for itself); unset, no bound.
    pub max_file_bytes: Option<u64>,
    /// `METRICS_NAMESPACE` (or Powertools' `POWERTOOLS_METRICS_NAMESPACE`): the CloudWatch
    /// namespace of the function's metrics.
    pub metrics_namespace: String,
    /// `AWS_LAMBDA_FUNCTION_NAME`, which Lambda sets: the metrics' `FunctionName` dimension.
    pub function_name: String,
    /// `ALLOWED_TABLES`: when set, the only tables table targets and folders' `glue_table` may
    /// name.
    pub allowed_tables: Option<TableAllowList>,
    /// `SCHEMA_EVOLUTION`: whether a table target takes a column it lacks (an event's
    /// `schema_evolution` decides for itself).
    pub schema_evolution: Evolution,
    /// `TABLE_WAREHOUSE`: where a missing table is created
    /// (`<warehouse><database>.db/<table>/`); unset, a missing table is `TableNotFound`.
    pub table_warehouse: Option<S3Prefix>,
    /// `EXACTLY_ONCE_DAYS`: how long work committed to a table stays recognised, even after
    /// its snapshot expires (default 14, SQS's longest retention).
    pub exactly_once: Duration,
    /// `ERROR_OUTPUT`: where a stream batch's bad records go (one NDJSON object each); unset,
    /// a bad record stops its shard there and is reported to Lambda as the batch's failure.
    pub error_output: Option<S3Prefix>,
    /// `STREAM_METADATA`: the per-record columns a stream batch's rows get (`arrival`, `key`,
    /// `shard`, `position`, `all`); none by default.
    pub stream_metadata: Metadata,
    /// `SCHEMA`, `UNKNOWN_KEYS` and `PARTITION_BY`: the options of triggers that carry none
    /// (S3 and EventBridge notifications, stream batches), as an event's `schema`,
    /// `unknown_keys` and `partition_by`.
    pub schema: Option<SchemaRef>,
    pub unknown_keys: UnknownKeys,
    pub partition_by: Option<PartitionBy>,
    /// `BLOOM_FILTER_COLUMNS` and `SORT_BY`: an event's `bloom_filter_columns` and `sort_by`
    /// when it gives neither.
    pub skipping: Skipping,
    /// `DEFAULT_SOURCE_FORMAT`: a source object's format when neither its event nor its
    /// key's extension tells (`ndjson`, `json`, `csv`, `tsv`).
    pub source_format: Option<Format>,
    /// `CSV_OPTIONS`: a CSV source's options when its event carries none (a `csv` object).
    pub csv_options: Option<CsvOptions>,
}

/// The metrics' namespace when neither variable is set.
pub const DEFAULT_NAMESPACE: &str = "RowsToParquet";

/// A list of names as an environment variable gives it (`dt,region`, or a JSON array) in
/// its JSON form.
fn names_json(value: &str) -> String {
    let value = value.trim();
    match value.starts_with('[') {
        true => value.to_owned(),
        false => serde_json::to_string(&value.split(',').map(str::trim).collect::<Vec<_>>())
            .expect("names serialize"),
    }
}

/// Logs as Lambda's logging controls ask: JSON lines with `AWS_LAMBDA_LOG_FORMAT=JSON`, else
/// text; the level from `AWS_LAMBDA_LOG_LEVEL`, else `RUST_LOG` (a plain level such as
/// `debug`), else INFO. To stdout, without timestamps (CloudWatch adds its own).
pub fn init_logging() {
    use tracing_subscriber::filter::LevelFilter;
    let var = |name| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let level = match var("AWS_LAMBDA_LOG_LEVEL").or_else(|| var("RUST_LOG")) {
        Some(v) if v.trim().eq_ignore_ascii_case("fatal") => LevelFilter::ERROR,
        Some(v) => v.trim().parse().unwrap_or(LevelFilter::INFO),
        None => LevelFilter::INFO,
    };
    let json = var("AWS_LAMBDA_LOG_FORMAT").is_some_and(|f| f.trim().eq_ignore_ascii_case("json"));
    let logs = tracing_subscriber::fmt()
        .with_target(false)
        .without_time()
        .with_max_level(level);
    if json {
        logs.json().init();
    } else {
        logs.init();
    }
}

impl Config {
    /// Reads the process environment.
    ///
    /// # Errors
    /// `InvalidConfig` as [`Config::from_lookup`].
    pub fn from_env() -> Result<Config, Error> {
        Config::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads variables through `var`, so tests need not touch the process environment.
    /// Empty values count as unset.
    ///
    /// # Errors
    /// `InvalidConfig` when a variable does not parse, or a default target lies outside
    /// `ALLOWED_PREFIXES`.
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Result<Config, Error> {
        let var = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let to_config = |e: Error| Error::InvalidConfig(e.to_string());
        let allowed = var("ALLOWED_PREFIXES")
            .map(|v| AllowList::parse(&v, "ALLOWED_PREFIXES"))
            .transpose()?;
        let allowed_sources = var("ALLOWED_SOURCES")
            .map(|v| AllowList::parse(&v, "ALLOWED_SOURCES"))
            .transpose()?;
        let whole = |name: &str, default: usize, range: std::ops::RangeInclusive<usize>| {
            let Some(v) = var(name) else {
                return Ok(default);
            };
            v.trim()
                .parse::<usize>()
                .ok()
                .filter(|n| range.contains(n))
                .ok_or_else(|| {
                    Error::InvalidConfig(format!(
                        "{name} must be a whole number from {} to {}",
                        range.start(),
                        range.end()
                    ))
                })
        };
        let row_group_rows = whole("ROW_GROUP_ROWS", ROW_GROUP_ROWS, 1_000..=10_000_000)?;
        let memory_mb = whole("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", 128, 128..=10_240)?;
        let row_group_bytes = match var("ROW_GROUP_BYTES") {
            Some(v) => parse_row_group_bytes(&v, memory_mb)
                .map_err(|why| Error::InvalidConfig(format!("ROW_GROUP_BYTES {why}")))?,
            None => row_group_bytes_default(memory_mb),
        };
        let max_partitions = whole("MAX_PARTITIONS", MAX_PARTITIONS, 1..=100_000)?;
        let exactly_once_days = whole("EXACTLY_ONCE_DAYS", 14, 1..=3650)?;
        let max_file_bytes = var("MAX_FILE_BYTES")
            .map(|v| {
                parse_max_file_bytes(&v)
                    .map_err(|why| Error::InvalidConfig(format!("MAX_FILE_BYTES {why}")))
            })
            .transpose()?;
        let allowed_tables = var("ALLOWED_TABLES")
            .map(|v| TableAllowList::parse(&v))
            .transpose()?;
        let (default_targets, default_tables) = match var("DEFAULT_TARGETS") {
            None => (None, Vec::new()),
            Some(v) => {
                let targets = parse_all_targets(&v, "DEFAULT_TARGETS").map_err(to_config)?;
                (Some(targets.folders), targets.tables)
            }
        };
        if let (Some(allowed), Some(targets)) = (&allowed, &default_targets) {
            allowed.check(targets).map_err(to_config)?;
        }
        if let Some(allowed) = &allowed_tables {
            default_tables
                .iter()
                .try_for_each(|t| allowed.check(t))
                .map_err(to_config)?;
        }
        let custom_endpoint =
            var("AWS_ENDPOINT_URL_S3").is_some() || var("AWS_ENDPOINT_URL").is_some();
        let expected_bucket_owner = var("EXPECTED_BUCKET_OWNER").map(|v| v.trim().to_owned());
        if let Some(owner) = &expected_bucket_owner
            && !(owner.len() == 12 && owner.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(Error::InvalidConfig(
                "EXPECTED_BUCKET_OWNER must be a 12-digit AWS account id".into(),
            ));
        }
        let metrics_namespace = var("METRICS_NAMESPACE")
            .or_else(|| var("POWERTOOLS_METRICS_NAMESPACE"))
            .map_or_else(|| DEFAULT_NAMESPACE.to_owned(), |v| v.trim().to_owned());
        let in_namespace = |c: char| c.is_ascii_alphanumeric() || ".-_/#: ".contains(c);
        if metrics_namespace.len() > 255
            || !metrics_namespace.chars().all(in_namespace)
            || metrics_namespace.starts_with("AWS/")
        {
            return Err(Error::InvalidConfig(
                "METRICS_NAMESPACE must be 1 to 255 letters, digits or .-_/#: (CloudWatch's rule) and must not start with AWS/".into(),
            ));
        }
        let table_warehouse = var("TABLE_WAREHOUSE")
            .map(|v| S3Prefix::parse(v.trim(), "TABLE_WAREHOUSE").map_err(to_config))
            .transpose()?;
        let schema_evolution = var("SCHEMA_EVOLUTION")
            .map(|v| Evolution::parse(&v, "SCHEMA_EVOLUTION"))
            .transpose()
            .map_err(to_config)?
            .unwrap_or_default();
        let error_output = var("ERROR_OUTPUT")
            .map(|v| S3Prefix::parse(v.trim(), "ERROR_OUTPUT").map_err(to_config))
            .transpose()?;
        let stream_metadata = var("STREAM_METADATA")
            .map(|v| Metadata::parse(&v))
            .transpose()
            .map_err(|why| Error::InvalidConfig(format!("STREAM_METADATA: {why}")))?
            .unwrap_or_default();
        let schema = var("SCHEMA")
            .map(|v| declared_schema(&v).map_err(to_config))
            .transpose()?;
        let unknown_keys = match (var("UNKNOWN_KEYS").as_deref().map(str::trim), &schema) {
            (None, _) => UnknownKeys::default(),
            (Some("error"), Some(_)) => UnknownKeys::Error,
            (Some("drop"), Some(_)) => UnknownKeys::Drop,
            _ => {
                return Err(Error::InvalidConfig(
                    "UNKNOWN_KEYS must be `error` or `drop`, and applies only with SCHEMA".into(),
                ));
            }
        };
        let partition_by = var("PARTITION_BY")
            .map(|v| PartitionBy::parse(&names_json(&v)).map_err(to_config))
            .transpose()?;
        let (bloom, sort_by) = (var("BLOOM_FILTER_COLUMNS"), var("SORT_BY"));
        let skipping = Skipping::parse(
            bloom.map(|v| names_json(&v)).as_deref(),
            sort_by.map(|v| names_json(&v)).as_deref(),
        )
        .map_err(to_config)?;
        let source_format = var("DEFAULT_SOURCE_FORMAT")
            .map(|v| Format::named(v.trim(), "DEFAULT_SOURCE_FORMAT").map_err(to_config))
            .transpose()?;
        let csv_options = var("CSV_OPTIONS")
            .map(|v| CsvOptions::parse(&v, "CSV_OPTIONS").map_err(to_config))
            .transpose()?;
        Ok(Config {
            source_format,
            csv_options,
            schema,
            unknown_keys,
            partition_by,
            skipping,
            error_output,
            stream_metadata,
            schema_evolution,
            allowed_tables,
            table_warehouse,
            metrics_namespace,
            function_name: var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|| "local".into()),
            default_targets,
            default_tables,
            allowed,
            custom_endpoint,
            expected_bucket_owner,
            allowed_sources,
            row_group_rows,
            row_group_bytes,
            memory_mb,
            max_partitions,
            max_file_bytes,
            exactly_once: Duration::from_secs(exactly_once_days as u64 * 24 * 3600),
        })
    }

    /// A streamed file's row groups: `ROW_GROUP_ROWS`, and an event's `row_group_bytes` (as it
    /// wrote it), else `ROW_GROUP_BYTES`.
    ///
    /// # Errors
    /// `InvalidEvent` for an event's value that is not a whole number from 1 MiB to an eighth
    /// of the function's memory.
    pub fn row_group(&self, asked: Option<&str>) -> Result<RowGroupSize, Error> {
        let Some(raw) = asked else {
            return Ok(self.row_groups());
        };
        let bytes = parse_row_group_bytes(raw, self.memory_mb)
            .map_err(|why| Error::InvalidEvent(format!("`row_group_bytes` {why}")))?;
        Ok(RowGroupSize::streamed(self.row_group_rows, bytes))
    }

    /// A streamed file's row groups as the configuration sizes them.
    pub fn row_groups(&self) -> RowGroupSize {
        RowGroupSize::streamed(self.row_group_rows, self.row_group_bytes)
    }

    /// `source` with what its trigger left out from `DEFAULT_SOURCE_FORMAT` and `CSV_OPTIONS`.
    pub fn source(&self, source: Source) -> Source {
        source.with_defaults(self.source_format, self.csv_options.as_ref())
    }

    /// The targets an event writes to: its own, else `DEFAULT_TARGETS`, checked against
    /// `ALLOWED_PREFIXES`.
    ///
    /// # Errors
    /// `InvalidEvent` when there are no targets at all; `TargetNotAllowed` for a target outside
    /// the allowed folders; `TableNotAllowed` for a folder's `glue_table` outside
    /// `ALLOWED_TABLES`.
    pub fn resolve_targets(&self, from_event: Option<Vec<Target>>) -> Result<Vec<Target>, Error> {
        let targets = from_event
            .or_else(|| self.default_targets.clone())
            .ok_or_else(|| {
                Error::InvalidEvent(
                    "the event has no `targets` and the function has no DEFAULT_TARGETS".into(),
                )
            })?;
        if let Some(allowed) = &self.allowed {
            allowed.check(&targets)?;
        }
        if let Some(allowed) = &self.allowed_tables {
            let mut glued = targets.iter().filter_map(|t| t.glue_table.as_ref());
            glued.try_for_each(|t| allowed.check(t))?;
        }
        Ok(targets)
    }

    /// The folders a sweep looks in: `ALLOWED_PREFIXES`, else `DEFAULT_TARGETS`' folders,
    /// where every upload this function starts lies.
    ///
    /// # Errors
    /// `InvalidEvent` when neither is set: a sweep never lists beyond the function's folders.
    pub fn sweep_folders(&self) -> Result<Vec<S3Prefix>, Error> {
        match (&self.allowed, &self.default_targets) {
            (Some(allowed), _) => Ok(allowed.prefixes().to_vec()),
            (None, Some(targets)) => Ok(targets.iter().map(|t| t.prefix.clone()).collect()),
            (None, None) => Err(Error::InvalidEvent(
                "a sweep needs ALLOWED_PREFIXES or DEFAULT_TARGETS: it only looks in the function's own folders".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::codec::Codec;
    use crate::input::target::parse_targets;

    #[test]
    fn default_targets_may_name_tables_within_allowed_tables() {
        let mixed = r#"[{"table": "analytics.clicks"}, {"prefix": "s3://b-1/out/", "compression": "zstd"}]"#;
        let c = config(&[
            ("DEFAULT_TARGETS", mixed),
            ("ALLOWED_TABLES", "analytics.*"),
        ])
        .unwrap();
        assert_eq!(c.default_tables[0].to_string(), "analytics.clicks");
        assert_eq!(c.resolve_targets(None).unwrap().len(), 1);
        let only = config(&[("DEFAULT_TARGETS", r#"[{"table": "raw.x"}]"#)]).unwrap();
        assert!(only.resolve_targets(None).unwrap().is_empty());
        let e = config(&[("DEFAULT_TARGETS", mixed), ("ALLOWED_TABLES", "raw.*")]).unwrap_err();
        assert_eq!(e.error_type(), "InvalidConfig");
        assert!(e.to_string().contains("analytics.clicks"), "{e}");
        let e = config(&[("ALLOWED_TABLES", "analytics")]).unwrap_err();
        assert_eq!(e.error_type(), "InvalidConfig");
        let e = config(&[("TABLE_WAREHOUSE", "warehouse/")]).unwrap_err();
        assert_eq!(e.error_type(), "InvalidConfig");
    }

    fn config(vars: &[(&str, &str)]) -> Result<Config, Error> {
        Config::from_lookup(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
    }

    const DEFAULTS: &str = r#"[{"prefix":"s3://b-1/out/parquet/","compression":"uncompressed"},{"prefix":"s3://b-1/out/parquet-snappy/","compression":"snappy"}]"#;

    #[test]
    fn nothing_set_means_no_defaults_and_no_policy() {
        let c = config(&[("DEFAULT_TARGETS", " ")]).unwrap();
        assert!(c.default_targets.is_none() && c.allowed.is_none() && !c.custom_endpoint);
        let err = c.resolve_targets(None).unwrap_err();
        assert_eq!(err.error_type(), "InvalidEvent");
        assert!(err.to_string().contains("DEFAULT_TARGETS"), "{err}");
    }

    #[test]
    fn default_targets_apply_only_when_the_event_has_none() {
        let c = config(&[
            ("DEFAULT_TARGETS", DEFAULTS),
            ("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9000"),
        ])
        .unwrap();
        assert!(c.custom_endpoint);
        let owned = config(&[("EXPECTED_BUCKET_OWNER", " 123456789012 ")]).unwrap();
        assert_eq!(owned.expected_bucket_owner.as_deref(), Some("123456789012"));
        let defaults = c.resolve_targets(None).unwrap();
        assert_eq!(
            defaults.iter().map(|t| t.codec).collect::<Vec<_>>(),
            [Codec::Uncompressed, Codec::Snappy]
        );
        let own = parse_targets(
            r#"[{"prefix":"s3://b-2/x/","compression":"zstd"}]"#,
            "targets",
        )
        .unwrap();
        assert_eq!(c.resolve_targets(Some(own.clone())).unwrap(), own);
    }

    #[test]
    fn row_groups_are_sized_by_bytes_within_the_functions_memory() {
        let small = config(&[]).unwrap();
        assert_eq!(small.row_group(None).unwrap().bytes, Some(8 << 20));
        assert_eq!(
            small.row_group(Some("16777216")).unwrap().bytes,
            Some(16 << 20)
        );
        let e = small.row_group(Some("33554432")).unwrap_err();
        assert_eq!(e.error_type(), "InvalidEvent");
        assert!(e.to_string().contains("`row_group_bytes`"), "{e}");
        let middle = config(&[("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024")]).unwrap();
        assert_eq!(middle.row_group(None).unwrap().bytes, Some(64 << 20));
        let large = config(&[("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "2048")]).unwrap();
        assert_eq!(large.row_group(None).unwrap().bytes, Some(128 << 20));
        let asked = large.row_group(Some("268435456")).unwrap();
        assert_eq!((asked.rows, asked.bytes), (1 << 20, Some(256 << 20)));
        let set = config(&[("ROW_GROUP_BYTES", "4194304"), ("ROW_GROUP_ROWS", "5000")]);
        let set = set.unwrap().row_group(None).unwrap();
        assert_eq!((set.rows, set.bytes), (5000, Some(4 << 20)));
    }

    #[test]
    fn bad_variables_fail_the_start() {
        for vars in [
            &[("DEFAULT_TARGETS", "not json")][..],
            &[("DEFAULT_TARGETS", "[]")],
            &[("EXPECTED_BUCKET_OWNER", "my-account")],
            &[("EXPECTED_BUCKET_OWNER", "1234567890123")],
            &[("ALLOWED_PREFIXES", "b-1/out")],
            &[("ALLOWED_SOURCES", "in-bucket/in/")],
            &[("ROW_GROUP_ROWS", "10")],
            &[("ROW_GROUP_ROWS", "many")],
            &[("ROW_GROUP_BYTES", "1000")],
            &[("ROW_GROUP_BYTES", "134217728")],
            &[("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "64")],
            &[("MAX_PARTITIONS", "0")],
            &[("MAX_PARTITIONS", "-5")],
            &[("MAX_FILE_BYTES", "1000")],
            &[("MAX_FILE_BYTES", "512MiB")],
            &[("ERROR_OUTPUT", "errors/")],
            &[("SCHEMA", "id BIGINT, name STRNG")],
            &[("UNKNOWN_KEYS", "drop")],
            &[("SCHEMA", "id BIGINT"), ("UNKNOWN_KEYS", "keep")],
            &[("PARTITION_BY", "dt,,region")],
            &[("DEFAULT_SOURCE_FORMAT", "parquet")],
            &[("CSV_OPTIONS", r#"{"delimiter": "||"}"#)],
            &[("STREAM_METADATA", "arrival,offsets")],
            &[("METRICS_NAMESPACE", "AWS/Lambda")],
            &[("POWERTOOLS_METRICS_NAMESPACE", "rows{to}parquet")],
            &[
                ("ALLOWED_PREFIXES", "s3://b-2/only/"),
                ("DEFAULT_TARGETS", DEFAULTS),
            ],
        ] {
            let err = config(vars).expect_err(&format!("{vars:?}"));
            assert_eq!(err.error_type(), "InvalidConfig", "{vars:?}: {err}");
        }
    }

    #[test]
    fn allowed_prefixes_police_event_targets() {
        let c = config(&[("ALLOWED_PREFIXES", "s3://b-1/out/")]).unwrap();
        let inside = parse_targets(
            r#"[{"prefix":"s3://b-1/out/x/","compression":"zstd"}]"#,
            "targets",
        )
        .unwrap();
        assert!(c.resolve_targets(Some(inside)).is_ok());
        let outside = parse_targets(
            r#"[{"prefix":"s3://b-1/elsewhere/","compression":"zstd"}]"#,
            "targets",
        )
        .unwrap();
        assert_eq!(
            c.resolve_targets(Some(outside)).unwrap_err().error_type(),
            "TargetNotAllowed"
        );
    }
}
