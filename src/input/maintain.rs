//! A maintenance event: `{"maintain": {"table": "analytics.clicks", <steps>}}` (or
//! `"folder"` for a Hive dataset), as a schedule or a person sends it, asking for the table
//! maintenance steps (what the `maintain` stage does with it). The steps named run, in a fixed
//! order; none named runs all four with their defaults.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::Error;
use crate::input::target::{S3Prefix, TableTarget};

/// Spark's `min-input-files`: a partition is rewritten once it has this many small files.
pub const MIN_INPUT_FILES: usize = 5;
/// Athena's `VACUUM`: snapshots older than 5 days expire, the last one always stays.
pub const EXPIRE_OLDER_THAN: Duration = Duration::from_secs(432_000);
pub const RETAIN_LAST: usize = 1;
/// Spark's `remove_orphan_files`: files older than 3 days.
pub const ORPHANS_OLDER_THAN: Duration = Duration::from_secs(259_200);

/// What a maintenance event asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct Maintain {
    pub what: Maintained,
    pub steps: Steps,
    /// Say what each step would do, change nothing.
    pub dry_run: bool,
}

/// What is maintained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Maintained {
    /// An Iceberg table in the Glue Data Catalog.
    Table(TableTarget),
    /// A folder target with a Hive table (`glue_table`; `None`: the one `DEFAULT_TARGETS`
    /// gives the folder).
    Folder {
        folder: S3Prefix,
        glue_table: Option<TableTarget>,
    },
}

/// The steps asked for, each `None` when not asked.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Steps {
    pub rewrite_data_files: Option<RewriteDataFiles>,
    pub rewrite_manifests: Option<RewriteManifests>,
    pub expire_snapshots: Option<ExpireSnapshots>,
    pub remove_orphan_files: Option<RemoveOrphanFiles>,
}

/// Small files of a partition rewritten into files of about the target size.
#[derive(Debug, Clone, PartialEq)]
pub struct RewriteDataFiles {
    /// `None`: the table's `write.target-file-size-bytes`, else 512 MiB.
    pub target_file_bytes: Option<u64>,
    pub min_input_files: usize,
    /// Only these partitions (column name to value, as the partition's values), if given.
    pub partitions: Option<Vec<Map<String, Value>>>,
}

/// The current snapshot's manifests merged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RewriteManifests {}

/// Old snapshots removed, and the files only they reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpireSnapshots {
    pub older_than: Duration,
    pub retain_last: usize,
}

/// Files under the table's location that nothing reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoveOrphanFiles {
    /// Never below the function's own timeout and a margin (an append in flight may have just
    /// written a file): zero means that floor.
    pub older_than: Duration,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMaintain {
    table: Option<String>,
    folder: Option<String>,
    glue_table: Option<String>,
    rewrite_data_files: Option<Value>,
    rewrite_manifests: Option<Value>,
    expire_snapshots: Option<Value>,
    remove_orphan_files: Option<Value>,
}

/// A step's parameters (`value`; `None` when the step is not named) as `T`, or its defaults
/// when `every` (no step named, so all run); an error names the step.
fn step<T: serde::de::DeserializeOwned + Default>(
    name: &str,
    value: Option<Value>,
    every: bool,
) -> Result<Option<T>, Error> {
    match value {
        Some(value) => serde_json::from_value(value)
            .map(Some)
            .map_err(|e| Error::InvalidEvent(format!("`maintain.{name}`: {e}"))),
        None if every => Ok(Some(T::default())),
        None => Ok(None),
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRewrite {
    target_file_bytes: Option<Value>,
    min_input_files: Option<Value>,
    partitions: Option<Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawManifests {}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawExpire {
    older_than_seconds: Option<Value>,
    retain_last: Option<Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawOrphans {
    older_than_seconds: Option<Value>,
}

/// A whole-number parameter (`maintain.<name>`), at least `min`.
fn whole(name: &str, value: Option<Value>, min: u64) -> Result<Option<u64>, Error> {
    match value {
        None => Ok(None),
        Some(v) => v.as_u64().filter(|n| *n >= min).map(Some).ok_or_else(|| {
            Error::InvalidEvent(format!(
                "`maintain.{name}` must be a whole number of at least {min}, not {v}"
            ))
        }),
    }
}

impl Maintain {
    /// Parses the `maintain` field and, if given, `dry_run` beside it.
    ///
    /// # Errors
    /// `InvalidEvent` naming the field or parameter that is wrong; `InvalidTarget` for a table
    /// name or folder that is not one.
    pub fn parse(json: &str, dry_run: Option<&str>) -> Result<Maintain, Error> {
        let invalid = |why: String| Error::InvalidEvent(format!("`maintain`: {why}"));
        let raw: RawMaintain = serde_json::from_str(json).map_err(|e| invalid(e.to_string()))?;
        let what = match (&raw.table, &raw.folder) {
            (Some(_), None) if raw.glue_table.is_some() => {
                return Err(invalid(
                    "`glue_table` names a folder's Hive table: an Iceberg `table` is its own"
                        .into(),
                ));
            }
            (Some(table), None) => Maintained::Table(TableTarget::parse(table, "maintain.table")?),
            (None, Some(folder)) => Maintained::Folder {
                folder: S3Prefix::parse(folder, "maintain.folder")?,
                glue_table: (raw.glue_table.as_deref())
                    .map(|t| TableTarget::parse(t, "maintain.glue_table"))
                    .transpose()?,
            },
            _ => {
                return Err(invalid(
                    "name one `table` (<database>.<table>) or one `folder` (s3://bucket/path/)"
                        .into(),
                ));
            }
        };
        let named = [
            &raw.rewrite_data_files,
            &raw.rewrite_manifests,
            &raw.expire_snapshots,
            &raw.remove_orphan_files,
        ];
        let every = named.iter().all(|v| v.is_none());
        let tables_only = named[1..3].iter().any(|v| v.is_some());
        if let (Maintained::Folder { folder, .. }, true) = (&what, tables_only) {
            return Err(invalid(format!(
                "the folder {folder} has no snapshots or manifests: only `rewrite_data_files` and `remove_orphan_files` apply to a folder"
            )));
        }
        let every_table_step = every && matches!(what, Maintained::Table(_));
        let rewrite: Option<RawRewrite> =
            step("rewrite_data_files", raw.rewrite_data_files, every)?;
        let rewrite_data_files = rewrite
            .map(|r| {
                let partitions = match r.partitions {
                    None => None,
                    Some(Value::Array(list)) if !list.is_empty() => Some(
                        list.into_iter()
                            .map(|p| match p {
                                Value::Object(values) => Ok(values),
                                _ => Err(invalid("`rewrite_data_files.partitions` holds objects of partition values, such as {\"dt\": \"2024-05-01\"}".into())),
                            })
                            .collect::<Result<Vec<_>, _>>()?,
                    ),
                    Some(_) => {
                        return Err(invalid("`rewrite_data_files.partitions` must be a non-empty list of partitions (leave it out to rewrite every partition)".into()));
                    }
                };
                let min_input_files = whole("rewrite_data_files.min_input_files", r.min_input_files, 2)?;
                Ok(RewriteDataFiles {
                    target_file_bytes: whole("rewrite_data_files.target_file_bytes", r.target_file_bytes, 1)?,
                    min_input_files: min_input_files.map_or(MIN_INPUT_FILES, |n| n as usize),
                    partitions,
                })
            })
            .transpose()?;
        let manifests: Option<RawManifests> =
            step("rewrite_manifests", raw.rewrite_manifests, every_table_step)?;
        let expire: Option<RawExpire> =
            step("expire_snapshots", raw.expire_snapshots, every_table_step)?;
        let expire_snapshots = expire
            .map(|e| {
                let retain_last = whole("expire_snapshots.retain_last", e.retain_last, 1)?;
                let older_than = whole(
                    "expire_snapshots.older_than_seconds",
                    e.older_than_seconds,
                    0,
                )?;
                Ok::<_, Error>(ExpireSnapshots {
                    older_than: older_than.map_or(EXPIRE_OLDER_THAN, Duration::from_secs),
                    retain_last: retain_last.map_or(RETAIN_LAST, |n| n as usize),
                })
            })
            .transpose()?;
        let orphans: Option<RawOrphans> =
            step("remove_orphan_files", raw.remove_orphan_files, every)?;
        let steps = Steps {
            rewrite_data_files,
            rewrite_manifests: manifests.map(|_| RewriteManifests {}),
            expire_snapshots,
            remove_orphan_files: orphans
                .map(|o| {
                    let older_than = whole(
                        "remove_orphan_files.older_than_seconds",
                        o.older_than_seconds,
                        0,
                    )?;
                    Ok::<_, Error>(RemoveOrphanFiles {
                        older_than: older_than.map_or(ORPHANS_OLDER_THAN, Duration::from_secs),
                    })
                })
                .transpose()?,
        };
        let dry_run = match dry_run.map(str::trim) {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                return Err(Error::InvalidEvent(format!(
                    "`dry_run` must be true or false, not {other}"
                )));
            }
        };
        Ok(Maintain {
            what,
            steps,
            dry_run,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_alone_runs_every_step_with_its_defaults() {
        let m = Maintain::parse(r#"{"table": "analytics.clicks"}"#, None).unwrap();
        assert_eq!(
            m.what,
            Maintained::Table(TableTarget::parse("analytics.clicks", "t").unwrap())
        );
        let steps = m.steps;
        let rewrite = steps.rewrite_data_files.unwrap();
        assert_eq!(
            (rewrite.target_file_bytes, rewrite.min_input_files),
            (None, 5)
        );
        assert!(steps.rewrite_manifests.is_some());
        assert_eq!(
            steps.expire_snapshots.unwrap(),
            ExpireSnapshots {
                older_than: Duration::from_secs(432_000),
                retain_last: 1
            }
        );
        assert_eq!(
            steps.remove_orphan_files.unwrap().older_than,
            Duration::from_secs(259_200)
        );
        assert!(!m.dry_run);
    }

    #[test]
    fn the_steps_named_are_the_only_ones_run_with_their_parameters() {
        let m = Maintain::parse(
            r#"{"table": "analytics.clicks",
                "rewrite_data_files": {"target_file_bytes": 134217728, "min_input_files": 3, "partitions": [{"dt": "2024-05-01"}]},
                "expire_snapshots": {"older_than_seconds": 60, "retain_last": 2}}"#,
            Some("true"),
        )
        .unwrap();
        let rewrite = m.steps.rewrite_data_files.unwrap();
        assert_eq!(rewrite.target_file_bytes, Some(134_217_728));
        assert_eq!(rewrite.min_input_files, 3);
        assert_eq!(rewrite.partitions.unwrap()[0]["dt"], "2024-05-01");
        assert_eq!(m.steps.expire_snapshots.unwrap().retain_last, 2);
        assert!(m.steps.rewrite_manifests.is_none() && m.steps.remove_orphan_files.is_none());
        assert!(m.dry_run);
    }

    #[test]
    fn a_bad_parameter_is_named() {
        for (json, word) in [
            (r#"{}"#, "name one `table`"),
            (
                r#"{"table": "a.b", "folder": "s3://my-bucket/x/"}"#,
                "name one `table`",
            ),
            (
                r#"{"table": "a.b", "rewrite_data_files": {"min_input_files": 1}}"#,
                "`maintain.rewrite_data_files.min_input_files` must be a whole number of at least 2",
            ),
            (
                r#"{"table": "a.b", "rewrite_data_files": {"target_file_bytes": 0}}"#,
                "`maintain.rewrite_data_files.target_file_bytes`",
            ),
            (
                r#"{"table": "a.b", "rewrite_data_files": {"target_file_bytes": "1G"}}"#,
                "`maintain.rewrite_data_files.target_file_bytes`",
            ),
            (
                r#"{"table": "a.b", "rewrite_data_files": {"partitions": ["dt=1"]}}"#,
                "holds objects of partition values",
            ),
            (
                r#"{"table": "a.b", "rewrite_data_files": {"partitions": []}}"#,
                "partitions",
            ),
            (
                r#"{"table": "a.b", "rewrite_data_files": {"target": 1}}"#,
                "`maintain.rewrite_data_files`: unknown field `target`",
            ),
            (
                r#"{"table": "a.b", "rewrite_manifests": {"x": 1}}"#,
                "`maintain.rewrite_manifests`: unknown field `x`",
            ),
            (
                r#"{"table": "a.b", "expire_snapshots": {"retain_last": 0}}"#,
                "`maintain.expire_snapshots.retain_last`",
            ),
            (
                r#"{"table": "a.b", "expire_snapshots": {"older_than_seconds": -1}}"#,
                "`maintain.expire_snapshots.older_than_seconds`",
            ),
            (
                r#"{"table": "a.b", "remove_orphan_files": {"older_than_seconds": 1.5}}"#,
                "`maintain.remove_orphan_files.older_than_seconds`",
            ),
            (
                r#"{"folder": "s3://my-bucket/x/", "expire_snapshots": {}}"#,
                "only `rewrite_data_files` and `remove_orphan_files`",
            ),
            (
                r#"{"table": "a.b", "vacuum": {}}"#,
                "unknown field `vacuum`",
            ),
        ] {
            let e = Maintain::parse(json, None).unwrap_err();
            assert_eq!(e.error_type(), "InvalidEvent", "{json}");
            assert!(e.to_string().contains(word), "{json}: {e}");
        }
        assert_eq!(
            Maintain::parse(r#"{"table": "Bad.Name"}"#, None)
                .unwrap_err()
                .error_type(),
            "InvalidTarget"
        );
        assert!(Maintain::parse(r#"{"table": "a.b"}"#, Some("1")).is_err());
    }

    #[test]
    fn a_folder_alone_is_compacted_and_its_replaced_files_removed() {
        let m = Maintain::parse(r#"{"folder": "s3://my-bucket/out/x/"}"#, None).unwrap();
        assert!(matches!(
            m.what,
            Maintained::Folder {
                glue_table: None,
                ..
            }
        ));
        assert!(m.steps.rewrite_data_files.is_some());
        assert!(m.steps.rewrite_manifests.is_none() && m.steps.expire_snapshots.is_none());
        assert!(m.steps.remove_orphan_files.is_some());
        let m = Maintain::parse(
            r#"{"folder": "s3://my-bucket/out/x/", "glue_table": "a.b", "remove_orphan_files": {}}"#,
            None,
        )
        .unwrap();
        let Maintained::Folder { glue_table, .. } = m.what else {
            panic!("a folder")
        };
        assert_eq!(glue_table.unwrap().to_string(), "a.b");
        assert!(m.steps.rewrite_data_files.is_none());
        let e = Maintain::parse(r#"{"table": "a.b", "glue_table": "a.c"}"#, None).unwrap_err();
        assert!(
            e.to_string().contains("an Iceberg `table` is its own"),
            "{e}"
        );
    }
}
