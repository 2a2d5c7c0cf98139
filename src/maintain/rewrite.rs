//! `rewrite_data_files`: in each partition of the table's current spec that holds at least
//! `min_input_files` live files under 3/4 of the target size, those files read (iceberg-rust's
//! reader: by field id, in the table's current schema, a row group at a time) and written
//! again as files of about the target size; then ONE `replace` snapshot removing exactly the
//! files read and adding the new ones. The same rows, values, types and partitions.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use futures::{StreamExt, TryStreamExt};
use iceberg::arrow::ArrowReaderBuilder;
use iceberg::scan::FileScanTask;
use iceberg::spec::{DataFile, ManifestContentType, PartitionKey, Struct};
use iceberg::table::Table;
use iceberg::{Runtime, TableIdent};
use serde_json::{Map, Value};

use super::replace::{self, Change};
use super::{Maintenance, StepReport};
use crate::Error;
use crate::catalog::append::{self, catalog_error, table_codec};
use crate::input::maintain::RewriteDataFiles;

/// Without a table property or a parameter: Spark's and Athena's 512 MiB.
pub(super) const DEFAULT_TARGET: u64 = 512 << 20;
/// The table property that sets it, as Iceberg's writers read it.
const TARGET_PROPERTY: &str = "write.target-file-size-bytes";

/// One partition's small files, to be written again as one or a few files.
struct Group {
    /// Its folder, `dt=2024-05-01` (as iceberg writes it).
    path: String,
    partition: Struct,
    files: Vec<DataFile>,
}

impl Group {
    fn bytes(&self) -> u64 {
        self.files.iter().map(DataFile::file_size_in_bytes).sum()
    }
}

/// The target size: the step's, else the table's property, else 512 MiB.
fn target(table: &Table, options: &RewriteDataFiles) -> u64 {
    options
        .target_file_bytes
        .or_else(|| {
            let property = table.metadata().properties().get(TARGET_PROPERTY);
            property.and_then(|v| v.parse().ok())
        })
        .unwrap_or(DEFAULT_TARGET)
}

/// Whether a partition folder (`dt=2024-05-01/region=eu`) has every value `wanted` names.
pub(super) fn wanted(path: &str, partitions: Option<&Vec<Map<String, Value>>>) -> bool {
    let Some(partitions) = partitions else {
        return true;
    };
    let values: BTreeMap<&str, &str> = path
        .split('/')
        .filter_map(|segment| segment.split_once('='))
        .collect();
    partitions.iter().any(|asked| {
        asked.iter().all(|(name, value)| {
            let value = match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            values.get(name.as_str()) == Some(&value.as_str())
        })
    })
}

/// The partitions to rewrite in the current snapshot, smallest folder first; or why none is
/// (a table with delete files is left to an engine that applies them).
async fn plan(
    table: &Table,
    options: &RewriteDataFiles,
    target: u64,
) -> Result<Result<Vec<Group>, String>, iceberg::Error> {
    let metadata = table.metadata();
    let spec = metadata.default_partition_spec();
    let small = target / 4 * 3;
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    for manifest in replace::manifests(table).await? {
        let entries = replace::entries(table, &manifest).await?;
        if manifest.content == ManifestContentType::Deletes {
            if entries.iter().any(|e| e.is_alive()) {
                return Ok(Err("the table has delete files, which this rewrite does not apply: compact it with an engine that does (Athena's OPTIMIZE, Spark's rewrite_data_files)".into()));
            }
            continue;
        }
        if manifest.partition_spec_id != spec.spec_id() {
            continue; // written in an older spec: its partitions are not the current ones
        }
        for entry in entries.into_iter().filter(|e| e.is_alive()) {
            let file = entry.data_file();
            if file.file_size_in_bytes() >= small {
                continue;
            }
            let key = PartitionKey::new(
                (**spec).clone(),
                metadata.current_schema().clone(),
                file.partition().clone(),
            );
            let path = key.to_path();
            groups
                .entry(path.clone())
                .or_insert_with(|| Group {
                    path,
                    partition: file.partition().clone(),
                    files: Vec::new(),
                })
                .files
                .push(file.clone());
        }
    }
    let mut chosen: Vec<Group> = groups
        .into_values()
        .filter(|g| g.files.len() >= options.min_input_files)
        .filter(|g| wanted(&g.path, options.partitions.as_ref()))
        .collect();
    chosen.sort_by_key(Group::bytes);
    Ok(Ok(chosen))
}

/// Reads `group`'s files and writes them again; the new data files.
async fn rewrite(
    table: &Table,
    group: &Group,
    target: u64,
    name: &str,
) -> Result<Vec<DataFile>, Error> {
    let ident = table.identifier();
    let failed = |e: iceberg::Error| {
        Error::CatalogFailed(format!(
            "table {ident}: rewriting partition {}: {e}",
            group.path
        ))
    };
    let metadata = table.metadata();
    let schema = metadata.current_schema().clone();
    let field_ids: Vec<i32> = schema.as_struct().fields().iter().map(|f| f.id).collect();
    let tasks: Vec<iceberg::Result<FileScanTask>> = group
        .files
        .iter()
        .map(|file| {
            Ok(FileScanTask::builder()
                .with_file_size_in_bytes(file.file_size_in_bytes())
                .with_start(0)
                .with_length(file.file_size_in_bytes())
                .with_record_count(Some(file.record_count()))
                .with_data_file_path(file.file_path().to_owned())
                .with_data_file_format(file.file_format())
                .with_schema(schema.clone())
                .with_project_field_ids(field_ids.clone())
                // No partition constants: Iceberg's data files hold their partition source
                // columns, read as the writer takes them (a constant comes run-end encoded).
                .with_case_sensitive(true)
                .build())
        })
        .collect();
    let reader = ArrowReaderBuilder::new(table.file_io().clone(), Runtime::current())
        .with_data_file_concurrency_limit(1)
        .build();
    let mut batches = reader
        .read(futures::stream::iter(tasks).boxed())
        .map_err(failed)?
        .stream();
    let codec = table_codec(table, None);
    let mut writer = append::data_file_writer(table, &schema, codec, name, Some(target)).await?;
    let mut rows = 0;
    while let Some(batch) = batches.try_next().await.map_err(failed)? {
        rows += batch.num_rows() as u64;
        writer.write(batch).await.map_err(failed)?;
    }
    let written = writer.close().await.map_err(failed)?;
    let read: u64 = group.files.iter().map(DataFile::record_count).sum();
    let wrote: u64 = written.iter().map(DataFile::record_count).sum();
    if rows != read || wrote != read || written.iter().any(|f| *f.partition() != group.partition) {
        return Err(Error::CatalogFailed(format!(
            "table {ident}: rewriting partition {} read {rows} rows of the {read} its manifests list and wrote {wrote}, or wrote into another partition; nothing was committed",
            group.path
        )));
    }
    Ok(written)
}

impl Maintenance<'_> {
    /// The step (see the module docs).
    ///
    /// # Errors
    /// `CatalogFailed` when a file cannot be read or written; as [`replace::commit`]. What this
    /// step wrote is removed by the caller on any failure.
    pub(super) async fn rewrite_data_files(
        &self,
        ident: &TableIdent,
        table: &Table,
        options: &RewriteDataFiles,
    ) -> Result<StepReport, Error> {
        let target = target(table, options);
        let mut report = StepReport::default();
        let groups = match plan(table, options, target)
            .await
            .map_err(|e| catalog_error(ident, e))?
        {
            Ok(groups) => groups,
            Err(why) => {
                report.skipped = Some(why);
                return Ok(report);
            }
        };
        let name = format!("rewrite-{}", uuid::Uuid::now_v7());
        let mut change = Change::default();
        let started = Instant::now();
        for group in &groups {
            if !self.dry_run && !self.time_for(group.bytes(), report.bytes_read, started.elapsed())
            {
                report.more = true;
                break;
            }
            report.partitions += 1;
            report.files_read += group.files.len();
            report.bytes_read += group.bytes();
            change
                .removed
                .extend(group.files.iter().map(|f| f.file_path().to_owned()));
            if self.dry_run {
                report
                    .keys
                    .extend(group.files.iter().map(|f| f.file_path().to_owned()));
                continue;
            }
            let written = rewrite(table, group, target, &name).await?;
            report.files_written += written.len();
            report.bytes_written += written
                .iter()
                .map(DataFile::file_size_in_bytes)
                .sum::<u64>();
            change.added.extend(written);
        }
        if self.dry_run || change.removed.is_empty() {
            return Ok(report);
        }
        let files = self.catalog.files();
        report.snapshot_id =
            Some(replace::commit(self.catalog, files, ident, &change, self.deadline).await?);
        Ok(report)
    }

    /// Whether another `bytes` of input can be rewritten and committed before the deadline,
    /// at the pace of what was rewritten so far (`done` bytes in `spent`).
    pub(super) fn time_for(&self, bytes: u64, done: u64, spent: Duration) -> bool {
        let Some(deadline) = self.deadline else {
            return true;
        };
        let left = deadline
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        // A commit, and the clean-up after a failed one.
        let reserve = Duration::from_secs(15);
        let pace = match done {
            // Before any is done: 10 MB a second, what 128 MB of memory (1/14 of a vCPU)
            // reads and writes again.
            0 => Duration::from_secs_f64(bytes as f64 / 10e6),
            _ => spent.mul_f64(bytes as f64 / done as f64),
        };
        left > reserve + pace
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_chosen_by_their_folder_values() {
        let asked: Vec<Map<String, Value>> =
            serde_json::from_str(r#"[{"dt": "2024-05-01"}, {"dt": "2024-05-03", "n": 7}]"#)
                .unwrap();
        assert!(wanted("dt=2024-05-01/n=1", Some(&asked)));
        assert!(wanted("dt=2024-05-03/n=7", Some(&asked)));
        assert!(!wanted("dt=2024-05-03/n=8", Some(&asked)));
        assert!(!wanted("dt=2024-05-02", Some(&asked)));
        assert!(wanted("anything", None));
    }
}
