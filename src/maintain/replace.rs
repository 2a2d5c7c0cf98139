//! The `replace` snapshot, built by hand: iceberg-rust 0.10.1 has no action that removes a
//! data file (its snapshot producer writes no deleted entry, its summary refuses
//! `Operation::Replace`, and its `TransactionAction` is crate-private), so this module makes
//! the snapshot from the crate's public builders and commits it through the catalog's own
//! `UpdateTable` swap, as appends are.
//!
//! A replace changes which files hold the rows, never the rows: the manifests that list a
//! removed file are rewritten with that entry `DELETED` and every other live entry
//! `EXISTING` (their snapshot ids and sequence numbers kept), the added files get a manifest of
//! their own, untouched manifests are carried over as they are; or, to merge manifests, every
//! live entry is written again as `EXISTING` into one manifest per partition spec. Then a
//! manifest list, a snapshot with operation `replace`, the next sequence number and the
//! summary's totals, and the main branch moved to it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{SystemTime, UNIX_EPOCH};

use iceberg::spec::{
    DataFile, FormatVersion, MAIN_BRANCH, ManifestContentType, ManifestEntryRef, ManifestFile,
    ManifestList, ManifestListWriter, ManifestWriterBuilder, Operation, Snapshot,
    SnapshotReference, SnapshotRetention, Summary,
};
use iceberg::table::Table;
use iceberg::{Catalog, ErrorKind, TableIdent, TableUpdate};

use crate::Error;
use crate::catalog::append::{catalog_error, retry_pause};
use crate::catalog::glue::GlueCatalog;
use crate::catalog::marks::{MARKS, Marks};
use crate::store::table_files::TableFiles;

/// What a replace changes.
#[derive(Debug, Default)]
pub struct Change {
    /// Live data files it removes, by path: each must still be live in the version it is
    /// applied to.
    pub removed: HashSet<String>,
    /// Data files it adds, written in the table's default partition spec.
    pub added: Vec<DataFile>,
    /// Every manifest merged: each spec's live entries into one manifest.
    pub merge: bool,
}

/// A removed file is no longer live in the version the change was applied to: another writer
/// removed it meanwhile.
#[derive(Debug)]
pub struct Gone(pub String);

/// The current snapshot's manifests (data and delete), as its manifest list names them.
///
/// # Errors
/// iceberg's, when the list cannot be read.
pub async fn manifests(table: &Table) -> iceberg::Result<Vec<ManifestFile>> {
    let Some(snapshot) = table.metadata().current_snapshot() else {
        return Ok(Vec::new());
    };
    manifests_of(table, snapshot).await
}

/// The manifests `snapshot`'s manifest list names.
///
/// # Errors
/// iceberg's, when the list cannot be read.
pub async fn manifests_of(
    table: &Table,
    snapshot: &Snapshot,
) -> iceberg::Result<Vec<ManifestFile>> {
    let bytes = table
        .file_io()
        .new_input(snapshot.manifest_list())?
        .read()
        .await?;
    let list = ManifestList::parse_with_version(&bytes, table.metadata().format_version())?;
    Ok(list.consume_entries().into_iter().collect())
}

/// A manifest's entries, their inherited snapshot ids and sequence numbers filled in.
///
/// # Errors
/// iceberg's, when the manifest cannot be read.
pub async fn entries(
    table: &Table,
    manifest: &ManifestFile,
) -> iceberg::Result<Vec<ManifestEntryRef>> {
    let manifest = manifest.load_manifest(table.file_io()).await?;
    Ok(manifest.entries().to_vec())
}

/// The table updates that commit `change` on `table` (as read), with the files written for
/// them (manifests and manifest list, for the caller to remove if the commit fails).
///
/// # Errors
/// `Ok(Err(Gone))` when a removed file is not live in `table`; iceberg's errors when a file
/// cannot be read or written, or the table's format is not version 2.
pub async fn stage(
    table: &Table,
    change: &Change,
) -> iceberg::Result<Result<(Vec<TableUpdate>, Vec<String>), Gone>> {
    let metadata = table.metadata();
    if metadata.format_version() != FormatVersion::V2 {
        return Err(iceberg::Error::new(
            ErrorKind::FeatureUnsupported,
            format!(
                "{}: only format version 2 tables are maintained here (this one is {:?})",
                table.identifier(),
                metadata.format_version()
            ),
        ));
    }
    let Some(current) = metadata.current_snapshot() else {
        return match change.removed.iter().next() {
            Some(path) => Ok(Err(Gone(path.clone()))),
            None => Err(iceberg::Error::new(
                ErrorKind::DataInvalid,
                "a table without a snapshot has nothing to replace",
            )),
        };
    };
    let snapshot_id = new_snapshot_id(metadata);
    let sequence_number = metadata.next_sequence_number();
    let location = metadata.location().trim_end_matches('/').to_owned();
    let commit = uuid::Uuid::now_v7();
    let mut written = Vec::new();
    let mut kept: Vec<ManifestFile> = Vec::new();
    let mut counts = Counts::default();
    let mut found = HashSet::new();
    // Live entries to write again, by partition spec: from a manifest that lists a removed
    // file, or from every manifest when merging.
    let mut again: BTreeMap<i32, Vec<(ManifestEntryRef, bool)>> = BTreeMap::new();
    for manifest in manifests(table).await? {
        if manifest.content != ManifestContentType::Data {
            kept.push(manifest);
            continue;
        }
        let entries = entries(table, &manifest).await?;
        let touched = change.merge
            || entries
                .iter()
                .any(|e| e.is_alive() && change.removed.contains(e.file_path()));
        if !touched {
            kept.push(manifest);
            continue;
        }
        counts.replaced_manifests += 1;
        for entry in entries.into_iter().filter(|e| e.is_alive()) {
            let removed = change.removed.contains(entry.file_path());
            if removed {
                found.insert(entry.file_path().to_owned());
            }
            again
                .entry(manifest.partition_spec_id)
                .or_default()
                .push((entry, removed));
        }
    }
    if let Some(missing) = change.removed.iter().find(|p| !found.contains(*p)) {
        return Ok(Err(Gone(missing.clone())));
    }
    let mut n = 0;
    let mut next_path = || {
        n += 1;
        format!("{location}/metadata/{commit}-m{n}.avro")
    };
    let mut written_manifests = Vec::new();
    for (spec_id, entries) in again {
        let path = next_path();
        let mut writer = manifest_writer(table, spec_id, snapshot_id, &path)?;
        for (entry, removed) in entries {
            let (sequence, file_sequence) = (
                entry.sequence_number().unwrap_or_default(),
                entry.file_sequence_number,
            );
            let data_file = entry.data_file().clone();
            if removed {
                counts.deleted(&data_file);
                writer.add_delete_file(data_file, sequence, file_sequence)?;
            } else {
                let added_by = entry.snapshot_id().unwrap_or(current.snapshot_id());
                writer.add_existing_file(data_file, added_by, sequence, file_sequence)?;
            }
        }
        written.push(path);
        written_manifests.push(writer.write_manifest_file().await?);
    }
    if !change.added.is_empty() {
        let path = next_path();
        let spec_id = metadata.default_partition_spec_id();
        let mut writer = manifest_writer(table, spec_id, snapshot_id, &path)?;
        for data_file in &change.added {
            counts.added(data_file);
            writer.add_file(data_file.clone(), sequence_number)?;
        }
        written.push(path);
        written_manifests.push(writer.write_manifest_file().await?);
    }
    counts.created_manifests = written_manifests.len();
    counts.kept_manifests = kept.len();
    let list_path = format!("{location}/metadata/snap-{snapshot_id}-1-{commit}.avro");
    let output = table.file_io().new_output(&list_path)?;
    let mut list = ManifestListWriter::v2(
        output.writer().await?,
        snapshot_id,
        Some(current.snapshot_id()),
        sequence_number,
    );
    list.add_manifests(written_manifests.into_iter().chain(kept))?;
    list.close().await?;
    written.push(list_path.clone());
    let mut properties = counts.summary(&current.summary().additional_properties);
    // The streams' marks, carried so the newest snapshot keeps holding them.
    if let Some(marks) = Marks::carried(table) {
        let json = serde_json::to_string(&marks).expect("marks serialize");
        properties.insert(MARKS.to_owned(), json);
    }
    let summary = Summary {
        operation: Operation::Replace,
        additional_properties: properties,
    };
    let snapshot = Snapshot::builder()
        .with_snapshot_id(snapshot_id)
        .with_parent_snapshot_id(Some(current.snapshot_id()))
        .with_sequence_number(sequence_number)
        .with_timestamp_ms(now_ms())
        .with_manifest_list(list_path)
        .with_summary(summary)
        .with_schema_id(metadata.current_schema_id())
        .build();
    let updates = vec![
        TableUpdate::AddSnapshot { snapshot },
        TableUpdate::SetSnapshotRef {
            ref_name: MAIN_BRANCH.to_owned(),
            reference: SnapshotReference::new(
                snapshot_id,
                SnapshotRetention::branch(None, None, None),
            ),
        },
    ];
    Ok(Ok((updates, written)))
}

/// Commits `change` to the table `ident`: staged on the newest version, retried on
/// conflicts (the table re-read, and every removed file checked to be still live: appends
/// meanwhile are kept) until `deadline` less the clean-up reserve. Returns the snapshot id.
/// What an attempt that Glue refused wrote is removed at once.
///
/// # Errors
/// `CommitConflict` when a removed file is no longer live (another writer replaced it), or
/// retries ran out; `CatalogFailed` when the catalog fails, and the outcome is unknown (then
/// `written` forgets its files: a snapshot may refer to them); `TableNotFound`.
pub async fn commit(
    catalog: &GlueCatalog,
    written: &TableFiles,
    ident: &TableIdent,
    change: &Change,
    deadline: Option<SystemTime>,
) -> Result<i64, Error> {
    let mut attempts = 0;
    loop {
        attempts += 1;
        let table = catalog
            .load_table(ident)
            .await
            .map_err(|e| catalog_error(ident, e))?;
        let staged = stage(&table, change)
            .await
            .map_err(|e| catalog_error(ident, e))?;
        let (updates, files) = match staged {
            Ok(staged) => staged,
            Err(Gone(path)) => {
                return Err(Error::CommitConflict(format!(
                    "{ident}: {path}, which this rewrite replaces, was removed by another writer meanwhile; nothing was committed"
                )));
            }
        };
        let list = files.last().cloned().unwrap_or_default();
        match catalog.commit_updates(ident, updates).await {
            Ok(table) => return Ok(table.metadata().current_snapshot_id().unwrap_or_default()),
            Err(e) if e.kind() == ErrorKind::CatalogCommitConflicts => {
                written.remove(files).await;
                let Some(pause) = retry_pause(attempts, deadline) else {
                    return Err(Error::CommitConflict(format!(
                        "{ident}: {attempts} commits conflicted with other writers and the time for retries ran out; nothing was committed"
                    )));
                };
                tokio::time::sleep(pause).await;
            }
            Err(e) => {
                // The swap may have landed although its answer was lost: look before the
                // caller removes files the snapshot may refer to.
                let landed = catalog.load_table(ident).await.map(|table| {
                    let current = table.metadata().current_snapshot();
                    current
                        .filter(|s| s.manifest_list() == list)
                        .map(|s| s.snapshot_id())
                });
                return match landed {
                    Ok(Some(snapshot_id)) => Ok(snapshot_id),
                    Ok(None) => Err(catalog_error(ident, e)),
                    Err(_) => {
                        written.forget();
                        Err(Error::CatalogFailed(format!(
                            "table {ident}: the commit's outcome is unknown ({e}); its files were kept"
                        )))
                    }
                };
            }
        }
    }
}

fn manifest_writer(
    table: &Table,
    spec_id: i32,
    snapshot_id: i64,
    path: &str,
) -> iceberg::Result<iceberg::spec::ManifestWriter> {
    let metadata = table.metadata();
    let spec = metadata.partition_spec_by_id(spec_id).ok_or_else(|| {
        iceberg::Error::new(
            ErrorKind::DataInvalid,
            format!("a manifest names partition spec {spec_id}, which the table does not have"),
        )
    })?;
    let output = table.file_io().new_output(path)?;
    let builder = ManifestWriterBuilder::new(
        output,
        Some(snapshot_id),
        metadata.current_schema().clone(),
        (**spec).clone(),
    );
    Ok(builder.build_v2_data())
}

/// A snapshot id no snapshot of the table has: positive, from the commit's time and a random
/// part, as Java's `SnapshotIdGeneratorUtil` makes them.
fn new_snapshot_id(metadata: &iceberg::spec::TableMetadata) -> i64 {
    loop {
        let uuid = uuid::Uuid::now_v7().as_u128();
        let id = ((uuid >> 64) as i64 ^ uuid as i64) & i64::MAX;
        if id != 0 && metadata.snapshot_by_id(id).is_none() {
            return id;
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// What a replace changed, for its summary.
#[derive(Debug, Default)]
struct Counts {
    added_files: u64,
    added_records: u64,
    added_bytes: u64,
    deleted_files: u64,
    deleted_records: u64,
    deleted_bytes: u64,
    created_manifests: usize,
    replaced_manifests: usize,
    kept_manifests: usize,
}

impl Counts {
    fn added(&mut self, file: &DataFile) {
        self.added_files += 1;
        self.added_records += file.record_count();
        self.added_bytes += file.file_size_in_bytes();
    }

    fn deleted(&mut self, file: &DataFile) {
        self.deleted_files += 1;
        self.deleted_records += file.record_count();
        self.deleted_bytes += file.file_size_in_bytes();
    }

    /// The summary's properties: what changed, and the totals carried from the parent's
    /// (`previous`) with the change applied, as Iceberg's `SnapshotSummary` writes them.
    fn summary(&self, previous: &HashMap<String, String>) -> HashMap<String, String> {
        let total = |key: &str, plus: u64, minus: u64| {
            previous
                .get(key)
                .and_then(|v| v.parse::<u64>().ok())
                .map(|v| (key.to_owned(), (v + plus).saturating_sub(minus).to_string()))
        };
        let mut summary: HashMap<String, String> = [
            ("added-data-files", self.added_files),
            ("added-records", self.added_records),
            ("added-files-size", self.added_bytes),
            ("deleted-data-files", self.deleted_files),
            ("deleted-records", self.deleted_records),
            ("removed-files-size", self.deleted_bytes),
            ("manifests-created", self.created_manifests as u64),
            ("manifests-replaced", self.replaced_manifests as u64),
            ("manifests-kept", self.kept_manifests as u64),
        ]
        .into_iter()
        .filter(|(key, n)| *n > 0 || key.starts_with("manifests-"))
        .map(|(key, n)| (key.to_owned(), n.to_string()))
        .collect();
        summary.extend(
            [
                total("total-data-files", self.added_files, self.deleted_files),
                total("total-records", self.added_records, self.deleted_records),
                total("total-files-size", self.added_bytes, self.deleted_bytes),
                total("total-delete-files", 0, 0),
                total("total-position-deletes", 0, 0),
                total("total-equality-deletes", 0, 0),
            ]
            .into_iter()
            .flatten(),
        );
        summary
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use arrow_array::{Int64Array, RecordBatch, StringArray};
    use futures::TryStreamExt;
    use iceberg::spec::{
        ManifestStatus, NestedField, PrimitiveType, Schema, Transform, Type, UnboundPartitionSpec,
    };
    use iceberg::transaction::{ApplyTransactionAction, Transaction};
    use iceberg::{MemoryCatalog, TableCreation};

    use crate::catalog::append::data_file_writer;
    use crate::catalog::append::tests::memory_table;
    use crate::encode::codec::Codec;

    /// A table partitioned by `dt` in iceberg-rust's memory catalog (no network).
    async fn table() -> (MemoryCatalog, Table) {
        let long = Type::Primitive(PrimitiveType::Long);
        let string = Type::Primitive(PrimitiveType::String);
        let schema = Schema::builder()
            .with_fields(vec![
                NestedField::required(1, "id", long).into(),
                NestedField::required(2, "dt", string).into(),
            ])
            .build()
            .unwrap();
        let spec = UnboundPartitionSpec::builder()
            .add_partition_field(2, "dt", Transform::Identity)
            .unwrap()
            .build();
        let creation = TableCreation::builder()
            .name("t".into())
            .schema(schema)
            .partition_spec(spec)
            .build();
        memory_table(creation).await
    }

    /// The data files of `rows` (`(id, dt)`), as an append writes them.
    async fn files(table: &Table, rows: &[(i64, &str)], name: &str) -> Vec<DataFile> {
        let schema = table.metadata().current_schema().clone();
        let arrow = Arc::new(iceberg::arrow::schema_to_arrow_schema(&schema).unwrap());
        let ids = Int64Array::from_iter_values(rows.iter().map(|r| r.0));
        let days = StringArray::from_iter_values(rows.iter().map(|r| r.1));
        let batch = RecordBatch::try_new(arrow, vec![Arc::new(ids), Arc::new(days)]).unwrap();
        let mut writer = data_file_writer(table, &schema, Codec::Zstd, name, None)
            .await
            .unwrap();
        writer.write(batch).await.unwrap();
        writer.close().await.unwrap()
    }

    /// `table` after `updates`, as the catalog's swap would leave it.
    fn applied(table: &Table, updates: Vec<TableUpdate>) -> Table {
        let mut builder = table.metadata().clone().into_builder(None);
        for update in updates {
            builder = update.apply(builder).unwrap();
        }
        Table::builder()
            .identifier(table.identifier().clone())
            .metadata(builder.build().unwrap().metadata)
            .file_io(table.file_io().clone())
            .runtime(iceberg::Runtime::current())
            .build()
            .unwrap()
    }

    async fn ids(table: &Table, snapshot: Option<i64>) -> Vec<i64> {
        let mut scan = table.scan();
        if let Some(id) = snapshot {
            scan = scan.snapshot_id(id);
        }
        let batches: Vec<RecordBatch> = scan
            .build()
            .unwrap()
            .to_arrow()
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        let mut ids: Vec<i64> = batches
            .iter()
            .flat_map(|b| {
                let column = b.column_by_name("id").unwrap();
                let ids = column.as_any().downcast_ref::<Int64Array>().unwrap();
                ids.values().to_vec()
            })
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Each live or deleted entry of the current snapshot: (path, status, data sequence number).
    async fn entries_now(table: &Table) -> Vec<(String, ManifestStatus, Option<i64>)> {
        let mut all = Vec::new();
        for manifest in manifests(table).await.unwrap() {
            for entry in entries(table, &manifest).await.unwrap() {
                all.push((
                    entry.file_path().to_owned(),
                    entry.status(),
                    entry.sequence_number(),
                ));
            }
        }
        all
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn summaries_cover_a_tables_work_until_its_first_snapshots_expire() {
        use crate::catalog::identity::covered;
        use std::time::{Duration, SystemTime};

        let (catalog, mut table) = table().await;
        for n in 0..3_i64 {
            let new = files(&table, &[(n, "a")], &format!("append-{n}")).await;
            let transaction = Transaction::new(&table);
            let append = transaction.fast_append().add_data_files(new);
            table = append
                .apply(transaction)
                .unwrap()
                .commit(&catalog)
                .await
                .unwrap();
        }
        let (now, horizon) = (SystemTime::now(), Duration::from_secs(14 * 24 * 3600));
        assert!(covered(&table, horizon, now), "its first snapshot is there");
        // Another engine expires the first two (and may clear the kept one's parent).
        let current = table.metadata().current_snapshot_id().unwrap();
        let older: Vec<i64> = (table.metadata().snapshots())
            .map(|s| s.snapshot_id())
            .filter(|id| *id != current)
            .collect();
        let expired = applied(
            &table,
            vec![TableUpdate::RemoveSnapshots {
                snapshot_ids: older,
            }],
        );
        assert!(
            !covered(&expired, horizon, now),
            "recent work's snapshots are gone: ask the markers"
        );
        // Past the horizon, what is gone no longer needs recognising.
        let later = now + horizon + Duration::from_secs(60);
        assert!(covered(&expired, horizon, later));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_replace_removes_exactly_its_files_keeps_the_others_and_every_row() {
        use std::time::Duration;

        let (catalog, mut table) = table().await;
        // Three appends of two rows a day over two days: six files.
        let mut appended = Vec::new();
        for n in 0..3_i64 {
            let rows = [
                (n * 4, "a"),
                (n * 4 + 1, "a"),
                (n * 4 + 2, "b"),
                (n * 4 + 3, "b"),
            ];
            let new = files(&table, &rows, &format!("append-{n}")).await;
            appended.extend(
                new.iter()
                    .map(|f| (f.file_path().to_owned(), f.partition().clone())),
            );
            // A stream's marks, as this function's appends record them.
            let mut marks = Marks::default();
            marks.raise("arn:s", "shardId-0", &n.to_string(), 1);
            let recorded = HashMap::from([(MARKS.to_owned(), marks.record(Duration::MAX, 1))]);
            let transaction = Transaction::new(&table);
            let append = transaction.fast_append().add_data_files(new);
            let append = append.set_snapshot_properties(recorded);
            let transaction = append.apply(transaction).unwrap();
            table = transaction.commit(&catalog).await.unwrap();
        }
        let before = table.metadata().current_snapshot().unwrap().clone();
        assert_eq!(ids(&table, None).await, (0..12).collect::<Vec<_>>());

        // Day a's three files replaced by one holding their rows.
        let day_a: Vec<String> = (appended.iter())
            .filter(|(path, _)| path.contains("dt=a"))
            .map(|(path, _)| path.clone())
            .collect();
        assert_eq!(day_a.len(), 3);
        let rows = [(0, "a"), (1, "a"), (4, "a"), (5, "a"), (8, "a"), (9, "a")];
        let change = Change {
            removed: day_a.iter().cloned().collect(),
            added: files(&table, &rows, "rewrite").await,
            merge: false,
        };
        let (updates, written) = stage(&table, &change).await.unwrap().unwrap();
        assert_eq!(
            written.len(),
            2 + 1,
            "day a's three rewritten into one manifest of deletes, the added files' manifest, the list"
        );
        let replaced = applied(&table, updates);

        let snapshot = replaced.metadata().current_snapshot().unwrap();
        assert_eq!(snapshot.summary().operation, Operation::Replace);
        assert_eq!(snapshot.parent_snapshot_id(), Some(before.snapshot_id()));
        assert_eq!(snapshot.sequence_number(), before.sequence_number() + 1);
        let totals = &snapshot.summary().additional_properties;
        assert_eq!(totals["total-records"], "12");
        assert_eq!(totals["total-data-files"], "4");
        assert_eq!(totals["deleted-data-files"], "3");
        assert_eq!(totals["added-data-files"], "1");
        // The marks carried: the newest snapshot still holds them.
        let carried = Marks::carried(&replaced).unwrap();
        assert_eq!(carried.get("arn:s", "shardId-0").unwrap().position, "2");
        assert!(totals.contains_key(MARKS));

        let now = entries_now(&replaced).await;
        for path in &day_a {
            let entry = now.iter().find(|(p, ..)| p == path).unwrap();
            assert_eq!(entry.1, ManifestStatus::Deleted, "{path}");
            // Its own data sequence number: the append that added it (1, 2, 3).
            let append = 1 + day_a.iter().position(|p| p == path).unwrap() as i64;
            assert_eq!(entry.2, Some(append), "{path}");
        }
        let live: Vec<_> = now
            .iter()
            .filter(|e| e.1 != ManifestStatus::Deleted)
            .collect();
        assert_eq!(live.len(), 4);
        let added: Vec<_> = live
            .iter()
            .filter(|e| e.1 == ManifestStatus::Added)
            .collect();
        assert_eq!(added.len(), 1);
        assert_eq!(added[0].2, Some(snapshot.sequence_number()));
        // Every row once, now and at the snapshot before (time travel).
        assert_eq!(ids(&replaced, None).await, (0..12).collect::<Vec<_>>());
        assert_eq!(
            ids(&replaced, Some(before.snapshot_id())).await,
            (0..12).collect::<Vec<_>>()
        );

        // A file no longer live cannot be replaced again: another rewrite won.
        let again = Change {
            removed: HashSet::from([day_a[0].clone()]),
            ..Change::default()
        };
        let gone = stage(&replaced, &again).await.unwrap().unwrap_err();
        assert_eq!(gone.0, day_a[0]);

        // Merging: one data manifest, every live file in it as existing, the rows the same.
        let merge = Change {
            merge: true,
            ..Change::default()
        };
        let (updates, _) = stage(&replaced, &merge).await.unwrap().unwrap();
        let merged = applied(&replaced, updates);
        let data = manifests(&merged).await.unwrap();
        assert_eq!(data.len(), 1);
        let now = entries_now(&merged).await;
        assert_eq!(now.len(), 4);
        assert!(now.iter().all(|e| e.1 == ManifestStatus::Existing));
        let merged_totals = &merged
            .metadata()
            .current_snapshot()
            .unwrap()
            .summary()
            .additional_properties;
        assert_eq!(merged_totals["total-records"], "12");
        assert_eq!(merged_totals["manifests-created"], "1");
        assert_eq!(ids(&merged, None).await, (0..12).collect::<Vec<_>>());
    }

    #[test]
    fn a_summary_carries_the_totals_with_the_change_applied() {
        let counts = Counts {
            added_files: 1,
            added_records: 300,
            added_bytes: 9_000,
            deleted_files: 3,
            deleted_records: 300,
            deleted_bytes: 12_000,
            created_manifests: 2,
            replaced_manifests: 3,
            kept_manifests: 1,
        };
        let previous = HashMap::from([
            ("total-data-files".to_owned(), "10".to_owned()),
            ("total-records".to_owned(), "1000".to_owned()),
            ("total-files-size".to_owned(), "40000".to_owned()),
            ("total-delete-files".to_owned(), "0".to_owned()),
        ]);
        let summary = counts.summary(&previous);
        assert_eq!(summary["total-data-files"], "8");
        assert_eq!(
            summary["total-records"], "1000",
            "a replace keeps every row"
        );
        assert_eq!(summary["total-files-size"], "37000");
        assert_eq!(summary["deleted-data-files"], "3");
        assert_eq!(summary["added-data-files"], "1");
        assert_eq!(summary["manifests-replaced"], "3");
        assert_eq!(summary["total-delete-files"], "0");
        assert!(
            !summary.contains_key("total-equality-deletes"),
            "not in the parent: not made up"
        );
    }
}
