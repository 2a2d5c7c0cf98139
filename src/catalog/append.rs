//! Rows appended to an Iceberg table exactly once: data files written under the table's
//! location by iceberg-rust's writer (Parquet field ids and the metrics engines prune on), then
//! one snapshot whose summary records the identity of the work. A table that already has a
//! snapshot recording that identity has this work: nothing more is written or committed, so a
//! retried or redelivered invocation adds its rows once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arrow_array::RecordBatch;
use iceberg::arrow::RecordBatchPartitionSplitter;
use iceberg::spec::{DataFile, DataFileFormat, NestedFieldRef, PartitionKey, SchemaRef};
use iceberg::spec::{NullOrder, SortDirection, Transform};
use iceberg::table::Table;
use iceberg::transaction::{AddColumn, ApplyTransactionAction, Transaction};
use iceberg::writer::base_writer::data_file_writer::DataFileWriterBuilder;
use iceberg::writer::file_writer::ParquetWriterBuilder;
use iceberg::writer::file_writer::location_generator::{
    DefaultFileNameGenerator, DefaultLocationGenerator, LocationGenerator,
};
use iceberg::writer::file_writer::rolling_writer::RollingFileWriterBuilder;
use iceberg::writer::partitioning::PartitioningWriter;
use iceberg::writer::partitioning::fanout_writer::FanoutWriter;
use iceberg::writer::{IcebergWriter, IcebergWriterBuilder};
use iceberg::{Catalog, ErrorKind, TableIdent};
use parquet::schema::types::ColumnPath;

use super::glue::GlueCatalog;
use super::identity::{IDENTITY, Marked, committed, record};
use super::marks::{Advance, MARKS, compare_positions};
use crate::Error;
use crate::encode::codec::Codec;
use crate::encode::skipping::{BLOOM_FPP, BLOOM_ROWS, Skipping, SortKey};
use crate::encode::writer::table_properties;
use crate::store::budget::CLEANUP_RESERVE;
use crate::store::table_files::TableFiles;

/// What an append did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    pub snapshot_id: i64,
    /// The snapshot was already there: an earlier delivery of the same work committed it.
    pub already: bool,
    /// Data files this invocation committed (none when `already`).
    pub data_files: Vec<String>,
    /// Parts of the work another delivery had committed meanwhile: their files are in no
    /// snapshot, for the caller to remove.
    pub skipped: Vec<Part>,
    pub attempts: u32,
}

/// A writer of `table`'s data files in `schema` (the table's, or the one its commit makes),
/// named `<name>-<n>.parquet` under its data folder, in the partition folders of its
/// partition spec (a new file past `target_bytes`, else past iceberg-rust's default size); it takes batches in that
/// schema's Arrow form, field ids included, and its `close` gives the data files with their
/// metrics (and partition values). The files are `codec`-compressed, with the page index, the
/// bloom filters and the sort order the table asks for ([`table_skipping`]).
///
/// # Errors
/// `CatalogFailed` when the table's location cannot be read; `InvalidEvent` for a partition
/// spec whose transforms iceberg-rust cannot compute.
pub async fn data_file_writer(
    table: &Table,
    schema: &SchemaRef,
    codec: Codec,
    name: &str,
    target_bytes: Option<u64>,
) -> Result<DataFiles, Error> {
    let failed = |e: iceberg::Error| {
        Error::CatalogFailed(format!(
            "writing a data file of {}: {e}",
            table.identifier()
        ))
    };
    let metadata = table.metadata();
    let locations = Locations {
        folders: DefaultLocationGenerator::new(metadata).map_err(failed)?,
        name: name.to_owned(),
        counts: Arc::default(),
    };
    let names = DefaultFileNameGenerator::new(name.to_owned(), None, DataFileFormat::Parquet);
    let arrow = iceberg::arrow::schema_to_arrow_schema(schema).map_err(failed)?;
    let skipping = table_skipping(table, &arrow);
    let capacity = bloom_capacity(table).min(BLOOM_ROWS as u64);
    let bloom: Vec<(ColumnPath, u64)> = (skipping.bloom_filter_columns.iter())
        .map(|column| {
            (
                ColumnPath::new(column.split('.').map(str::to_owned).collect()),
                capacity,
            )
        })
        .collect();
    let parquet = ParquetWriterBuilder::new(table_properties(codec, &bloom), schema.clone());
    let rolling = match target_bytes {
        Some(bytes) => RollingFileWriterBuilder::new(
            parquet,
            usize::try_from(bytes).unwrap_or(usize::MAX),
            table.file_io().clone(),
            locations,
            names,
        ),
        None => RollingFileWriterBuilder::new_with_default_file_size(
            parquet,
            table.file_io().clone(),
            locations,
            names,
        ),
    };
    let files = DataFileWriterBuilder::new(rolling);
    let spec = metadata.default_partition_spec();
    let order = Skipping {
        sort_by: skipping.sort_by,
        ..Skipping::NONE
    };
    if spec.is_unpartitioned() {
        let files = files.build(None).await.map_err(failed)?;
        return Ok(DataFiles {
            writers: Writers::Unpartitioned(Box::new(files)),
            order,
        });
    }
    let splitter =
        RecordBatchPartitionSplitter::try_new_with_computed_values(schema.clone(), spec.clone())
            .map_err(|e| {
                Error::InvalidEvent(format!(
                    "table {}: its partition spec cannot be computed here: {e}",
                    table.identifier()
                ))
            })?;
    Ok(DataFiles {
        writers: Writers::Partitioned(Box::new(Fanout {
            splitter,
            files: FanoutWriter::new(files),
        })),
        order,
    })
}

type Files = DataFileWriterBuilder<ParquetWriterBuilder, Locations, DefaultFileNameGenerator>;

/// Data file paths numbered within each partition (`<partition folder>/<name>-<n>.parquet`),
/// not in the order iceberg-rust's writers happen to open files across partitions: the same
/// rows under the same name give the same paths, so a retried map batch rewrites its own
/// files instead of leaving the first attempt's beside them.
#[derive(Clone)]
pub struct Locations {
    folders: DefaultLocationGenerator,
    name: String,
    counts: Arc<Mutex<HashMap<String, u32>>>,
}

impl LocationGenerator for Locations {
    fn generate_location(&self, partition: Option<&PartitionKey>, _: &str) -> String {
        let folder = partition.map(PartitionKey::to_path).unwrap_or_default();
        let mut counts = self.counts.lock().expect("not poisoned");
        let n = counts.entry(folder).or_default();
        let file = format!("{}-{n:05}.parquet", self.name);
        *n += 1;
        self.folders.generate_location(partition, &file)
    }
}

/// What [`data_file_writer`] gives: the data files, each batch written in the table's order.
pub struct DataFiles {
    writers: Writers,
    order: Skipping,
}

/// One data file at a time, or one per partition.
enum Writers {
    Unpartitioned(Box<<Files as IcebergWriterBuilder>::R>),
    Partitioned(Box<Fanout>),
}

/// Each batch split by partition, each partition its own files.
pub struct Fanout {
    splitter: RecordBatchPartitionSplitter,
    files: FanoutWriter<Files>,
}

impl DataFiles {
    /// Writes `batch`, sorted in the table's sort order (a streamed source's rows a chunk at a
    /// time).
    ///
    /// # Errors
    /// iceberg-rust's, when a file cannot be written or a partition value computed.
    pub async fn write(&mut self, batch: RecordBatch) -> iceberg::Result<()> {
        self.write_all(vec![batch]).await
    }

    /// Writes `batches` (one schema: an event's rows, built in halves) as one run in the
    /// table's sort order (joined only when the table has one).
    ///
    /// # Errors
    /// As [`DataFiles::write`].
    pub async fn write_all(&mut self, batches: Vec<RecordBatch>) -> iceberg::Result<()> {
        let batches = self.order.sorted_batches(batches).map_err(|e| {
            iceberg::Error::new(ErrorKind::DataInvalid, format!("sorting the rows: {e}"))
        })?;
        for batch in batches {
            match &mut self.writers {
                Writers::Unpartitioned(files) => files.write(batch).await?,
                Writers::Partitioned(fanout) => {
                    for (key, part) in fanout.splitter.split(&batch)? {
                        fanout.files.write(key, part).await?;
                    }
                }
            }
        }
        Ok(())
    }

    /// The data files written.
    ///
    /// # Errors
    /// iceberg-rust's, when a file cannot be completed.
    pub async fn close(self) -> iceberg::Result<Vec<DataFile>> {
        match self.writers {
            Writers::Unpartitioned(mut files) => files.close().await,
            Writers::Partitioned(fanout) => fanout.files.close().await,
        }
    }
}

/// Work for a table: its parts' data files, and the columns their commit adds.
pub struct Work<'a> {
    pub parts: Vec<Part>,
    /// Optional columns added in the same commit, with the ids the files were written with.
    pub adds: &'a [NestedFieldRef],
    /// A stream batch's shards: the marks its commit raises (none for other work).
    pub advances: &'a [Advance],
}

/// One unit of work (an invocation's rows, a message, a source object, a job): the identity
/// its snapshot records, and its data files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub identity: String,
    pub files: Vec<DataFile>,
}

/// Commits the work's files (and added columns) to `table` (as the caller last read it) as
/// one snapshot recording the identities of its parts, leaving out a part a snapshot already
/// records; the catalog checks the identities once more against the version it swaps from.
/// Conflicts with other writers are retried (the table re-read, the identities checked
/// again, the append re-applied) with jittered backoff until `deadline` less the clean-up
/// reserve; `written` logs what the attempts write, so a refused attempt's files are removed
/// at once.
///
/// # Errors
/// `CommitConflict` when retries run out, or when the work adds columns and another writer
/// changed the schema meanwhile (the files' field ids would no longer match);
/// `TableNotFound` when the table went away; `CatalogFailed` for any other failure. Nothing
/// is committed then.
pub async fn commit(
    catalog: &GlueCatalog,
    written: &TableFiles,
    table: Table,
    work: Work<'_>,
    deadline: Option<SystemTime>,
) -> Result<Appended, Error> {
    let Work {
        mut parts,
        adds,
        advances,
    } = work;
    let ident = &table.identifier().clone();
    let mut skipped = Vec::new();
    let mut table = table;
    let mut attempts = 0;
    loop {
        attempts += 1;
        if attempts > 1 {
            table = catalog
                .load_table(ident)
                .await
                .map_err(|e| catalog_error(ident, e))?;
        }
        let (mut done, mut todo) = (Vec::new(), Vec::new());
        let mut snapshot_of_done = None;
        for part in parts {
            match catalog.committed(&table, &part.identity).await? {
                Some(snapshot_id) => {
                    snapshot_of_done.get_or_insert(snapshot_id);
                    done.push(part);
                }
                None => todo.push(part),
            }
        }
        parts = todo;
        let Some(first) = parts.first() else {
            return Ok(Appended {
                snapshot_id: snapshot_of_done.unwrap_or_default(),
                already: true,
                data_files: Vec::new(),
                skipped,
                attempts,
            });
        };
        skipped.extend(done);
        let identity = record(parts.iter().map(|p| p.identity.as_str()));
        let files: Vec<DataFile> = parts.iter().flat_map(|p| p.files.clone()).collect();
        let paths: Vec<String> = files.iter().map(|f| f.file_path().to_owned()).collect();
        let mut transaction = Transaction::new(&table);
        if let Some(first) = adds.first() {
            if table.metadata().last_column_id() != first.id - 1 {
                return Err(Error::CommitConflict(format!(
                    "{ident}: another writer changed the table's schema while this invocation added columns to it; nothing was committed (a retry adds them anew)"
                )));
            }
            let mut update = transaction.update_schema();
            for field in adds {
                update = update.add_column(AddColumn::optional(
                    &field.name,
                    (*field.field_type).clone(),
                ));
            }
            transaction = update
                .apply(transaction)
                .map_err(|e| catalog_error(ident, e))?;
        }
        let mut properties = HashMap::from([(IDENTITY.to_owned(), identity)]);
        if !advances.is_empty() {
            properties.insert(MARKS.to_owned(), advanced(catalog, &table, advances).await?);
        }
        let append = transaction
            .fast_append()
            // The identity stands for the files: the duplicate check would read every manifest.
            .with_check_duplicate(false)
            .add_data_files(files)
            .set_snapshot_properties(properties);
        let transaction = append
            .apply(transaction)
            .map_err(|e| catalog_error(ident, e))?;
        let before = written.written().len();
        let probe = first.identity.clone();
        match transaction.commit(catalog).await {
            Ok(table) => {
                let current = table.metadata().current_snapshot();
                let marked = Marked {
                    snapshot_id: current.map_or(0, |s| s.snapshot_id()),
                    committed_ms: current.map_or(0, |s| s.timestamp_ms()),
                };
                let identities: Vec<&str> = parts.iter().map(|p| p.identity.as_str()).collect();
                // Best effort: the snapshot's summary holds the work until it expires.
                let shards: Vec<(&str, &str, &str)> = (advances.iter())
                    .map(|a| (a.stream.as_str(), a.shard.as_str(), a.to.as_str()))
                    .collect();
                let marked_shards = catalog.mark_shards(&table, marked, &shards);
                let markers = match catalog.mark(&table, marked, &identities).await {
                    Ok(()) => marked_shards.await,
                    Err(e) => Err(e),
                };
                if let Err(e) = markers {
                    tracing::warn!(table = %ident, error = %e, "markers of committed work were not written");
                }
                return Ok(Appended {
                    snapshot_id: marked.snapshot_id,
                    already: false,
                    data_files: paths,
                    skipped,
                    attempts,
                });
            }
            Err(e) if e.kind() == ErrorKind::CatalogCommitConflicts => {
                // Glue refused this attempt: its manifest, manifest list and metadata file
                // are referenced by nothing.
                for path in &written.written()[before..] {
                    let _ = iceberg::io::Storage::delete(written, path).await;
                }
                let Some(pause) = retry_pause(attempts, deadline) else {
                    return Err(Error::CommitConflict(format!(
                        "{ident}: {attempts} commits conflicted with other writers and the time for retries ran out; nothing was committed"
                    )));
                };
                tokio::time::sleep(pause).await;
            }
            Err(e) => {
                // The commit may have landed although its answer was lost: look before the
                // caller removes files a snapshot may refer to.
                return match catalog.load_table(ident).await {
                    Ok(table) => match committed(&table, &probe) {
                        Some(snapshot_id) => Ok(Appended {
                            snapshot_id,
                            already: false,
                            data_files: paths,
                            skipped,
                            attempts,
                        }),
                        None => Err(catalog_error(ident, e)),
                    },
                    Err(_) => {
                        written.forget();
                        Err(Error::CatalogFailed(format!(
                            "table {ident}: the commit's outcome is unknown ({e}); its files were kept, and a retry commits the work once"
                        )))
                    }
                };
            }
        }
    }
}

/// The marks property of a commit raising `advances` on `table` as last read.
///
/// # Errors
/// `CommitConflict` when another invocation committed records of one of the shards since the
/// batch's records were filtered against its mark (its files may hold records already
/// committed); `CatalogFailed` when a marker cannot be read.
async fn advanced(
    catalog: &GlueCatalog,
    table: &Table,
    advances: &[Advance],
) -> Result<String, Error> {
    let shards: Vec<(&str, &str)> = (advances.iter())
        .map(|a| (a.stream.as_str(), a.shard.as_str()))
        .collect();
    let mut marks = catalog.marks(table, &shards).await?;
    let now_ms = SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    for a in advances {
        let held = marks.get(&a.stream, &a.shard).map(|m| m.position.as_str());
        let unchanged = match (held, a.from.as_deref()) {
            (None, None) => true,
            (Some(held), Some(from)) => compare_positions(held, from).is_eq(),
            _ => false,
        };
        if !unchanged {
            return Err(Error::CommitConflict(format!(
                "{}: records of {} were committed by another invocation while this one wrote its own; nothing was committed, and a retry of the batch adds only what is new",
                table.identifier(),
                a.shard
            )));
        }
        marks.raise(&a.stream, &a.shard, &a.to, now_ms);
    }
    Ok(marks.record(catalog.horizon(), now_ms))
}

/// Bound on attempts without a deadline (tests, local runs).
const MAX_ATTEMPTS: u32 = 20;

/// The pause before attempt `attempts + 1` of a commit that conflicted, or `None` when the
/// time for retries (to `deadline` less the clean-up reserve) or the attempts ran out.
pub fn retry_pause(attempts: u32, deadline: Option<SystemTime>) -> Option<Duration> {
    let pause = backoff(attempts);
    let left = deadline
        .and_then(|d| d.duration_since(SystemTime::now()).ok())
        .map(|left| left.saturating_sub(CLEANUP_RESERVE));
    let out_of_time = left.is_some_and(|left| left < pause * 2);
    (!out_of_time && attempts < MAX_ATTEMPTS).then_some(pause)
}

/// The codec of a table's data files: the target's, else the table's
/// `write.parquet.compression-codec`, else zstd.
pub fn table_codec(table: &Table, asked: Option<Codec>) -> Codec {
    asked
        .or_else(|| {
            let property = table.metadata().properties().get(CODEC_PROPERTY);
            property.and_then(|name| Codec::from_name(name))
        })
        .unwrap_or(Codec::Zstd)
}

/// The table property naming its Parquet codec.
pub const CODEC_PROPERTY: &str = "write.parquet.compression-codec";

/// The table properties that ask for a bloom filter on a column, as Iceberg's writers read
/// them: `<prefix><column>` = `true`, at most `<max bytes property>` bytes each.
const BLOOM_PROPERTY: &str = "write.parquet.bloom-filter-enabled.column.";
const BLOOM_MAX_BYTES_PROPERTY: &str = "write.parquet.bloom-filter-max-bytes";
/// Iceberg's default for it: 1 MiB.
const BLOOM_MAX_BYTES: u64 = 1 << 20;

/// What `table` asks of its data files for readers to skip through: bloom filters on the
/// columns its `write.parquet.bloom-filter-enabled.column.<name>` properties enable (those in
/// `arrow`, the schema written), and its default sort order, as far as it sorts top-level
/// columns by transforms that keep their order (identity, years to hours, truncate; a bucket
/// or nested field ends it).
pub fn table_skipping(table: &Table, arrow: &arrow_schema::Schema) -> Skipping {
    let metadata = table.metadata();
    let mut bloom_filter_columns: Vec<String> = metadata
        .properties()
        .iter()
        .filter(|(key, value)| key.starts_with(BLOOM_PROPERTY) && value.eq_ignore_ascii_case("true"))
        .map(|(key, _)| key[BLOOM_PROPERTY.len()..].to_owned())
        .filter(|name| {
            let present = arrow.field_with_name(name.split('.').next().unwrap_or_default()).is_ok();
            if !present {
                tracing::warn!(table = %table.identifier(), column = %name, "a bloom filter property names no column; ignored");
            }
            present
        })
        .collect();
    bloom_filter_columns.sort();
    let schema = metadata.current_schema();
    let sort_by = metadata
        .default_sort_order()
        .fields
        .iter()
        .map_while(|field| {
            let keeps_order = !matches!(
                field.transform,
                Transform::Bucket(_) | Transform::Void | Transform::Unknown
            );
            let column = schema.name_by_field_id(field.source_id)?;
            (keeps_order && !column.contains('.') && arrow.field_with_name(column).is_ok()).then(
                || SortKey {
                    column: column.to_owned(),
                    options: arrow_schema::SortOptions {
                        descending: field.direction == SortDirection::Descending,
                        nulls_first: field.null_order == NullOrder::First,
                    },
                },
            )
        })
        .collect();
    Skipping {
        bloom_filter_columns,
        sort_by,
    }
}

/// The distinct values a bloom filter of `table`'s `write.parquet.bloom-filter-max-bytes`
/// (default 1 MiB) holds at [`BLOOM_FPP`]: at most what its filters are made for, as
/// Iceberg's writers make theirs. [`data_file_writer`] makes them for no more than a streamed
/// row group's rows (256 KiB each, held by every partition's open file) and keeps the row
/// groups to that many rows; parquet-rs folds each filter to what its chunk holds.
fn bloom_capacity(table: &Table) -> u64 {
    let bytes = table
        .metadata()
        .properties()
        .get(BLOOM_MAX_BYTES_PROPERTY)
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(BLOOM_MAX_BYTES);
    // parquet-rs's sizing (bits = -8 n / ln(1 - p^(1/8))), inverted, a little under so that
    // rounding up to a power of two stays within the bound.
    let per_value = -8.0 / (1.0 - BLOOM_FPP.powf(1.0 / 8.0)).ln();
    ((bytes * 8) as f64 / per_value * 0.99).max(1.0) as u64
}

/// 50 ms doubling to 2 s, each pause drawn from its upper half (jitter keeps writers that
/// conflicted once from conflicting again in step).
fn backoff(attempt: u32) -> Duration {
    let ceiling = Duration::from_millis(50 << attempt.min(6)).min(Duration::from_secs(2));
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |t| t.subsec_nanos());
    let jitter = f64::from(nanos % 1000) / 1000.0;
    ceiling.mul_f64(0.5 + jitter / 2.0)
}

/// A catalog failure as the error a caller can act on.
pub fn catalog_error(ident: &TableIdent, e: iceberg::Error) -> Error {
    match e.kind() {
        ErrorKind::TableNotFound | ErrorKind::NamespaceNotFound => Error::TableNotFound(format!(
            "table {ident} does not exist in the Glue Data Catalog"
        )),
        _ => Error::CatalogFailed(format!("table {ident}: {e}")),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use iceberg::memory::{MEMORY_CATALOG_WAREHOUSE, MemoryCatalogBuilder};
    use iceberg::{CatalogBuilder, MemoryCatalog, NamespaceIdent, TableCreation};

    /// `creation` made in the namespace `db` of a fresh iceberg-rust memory catalog (no
    /// network); the catalog, which the table's files live in, is kept with it.
    pub(crate) async fn memory_table(creation: TableCreation) -> (MemoryCatalog, Table) {
        let warehouse = HashMap::from([(
            MEMORY_CATALOG_WAREHOUSE.to_owned(),
            "memory://warehouse".to_owned(),
        )]);
        let catalog = MemoryCatalogBuilder::default()
            .load("memory", warehouse)
            .await
            .unwrap();
        let db = NamespaceIdent::new("db".into());
        catalog.create_namespace(&db, HashMap::new()).await.unwrap();
        let table = catalog.create_table(&db, creation).await.unwrap();
        (catalog, table)
    }

    #[test]
    fn backoff_grows_to_a_ceiling_with_jitter() {
        for attempt in 1..30 {
            let pause = backoff(attempt);
            let ceiling = Duration::from_millis(50 << attempt.min(6)).min(Duration::from_secs(2));
            assert!(
                pause <= ceiling && pause >= ceiling / 2,
                "{attempt}: {pause:?}"
            );
        }
        assert!(backoff(30) <= Duration::from_secs(2));
    }

    #[tokio::test]
    async fn a_tables_bloom_properties_and_sort_order_shape_its_data_files() {
        use arrow_array::cast::AsArray;
        use arrow_array::types::Int64Type;
        use arrow_array::{Int64Array, StringArray};
        use iceberg::TableCreation;
        use iceberg::spec::{NestedField, PrimitiveType, Schema, SortField, SortOrder, Type};
        use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

        let schema = Schema::builder()
            .with_fields(vec![
                NestedField::optional(1, "id", Type::Primitive(PrimitiveType::Long)).into(),
                NestedField::required(2, "city", Type::Primitive(PrimitiveType::String)).into(),
            ])
            .build()
            .unwrap();
        // `id` descending with nulls last, then a bucket of `city`, which ends the order.
        let field = |id, transform, direction| {
            SortField::builder()
                .source_id(id)
                .transform(transform)
                .direction(direction)
                .null_order(NullOrder::Last)
                .build()
        };
        let order = SortOrder::builder()
            .with_order_id(1)
            .with_sort_field(field(1, Transform::Identity, SortDirection::Descending))
            .with_sort_field(field(2, Transform::Bucket(4), SortDirection::Ascending))
            .build(&schema)
            .unwrap();
        let properties = [
            (format!("{BLOOM_PROPERTY}id"), "true".to_owned()),
            (format!("{BLOOM_PROPERTY}city"), "false".to_owned()),
            (format!("{BLOOM_PROPERTY}gone"), "true".to_owned()),
        ];
        let creation = TableCreation::builder()
            .name("t".into())
            .schema(schema.clone())
            .sort_order(order)
            .properties(properties)
            .build();
        let (_catalog, table) = memory_table(creation).await;
        let schema = table.metadata().current_schema().clone();
        let arrow = Arc::new(iceberg::arrow::schema_to_arrow_schema(&schema).unwrap());
        let skipping = table_skipping(&table, &arrow);
        assert_eq!(skipping.bloom_filter_columns, ["id"]);
        let sort: Vec<_> = skipping
            .sort_by
            .iter()
            .map(|k| (k.column.as_str(), k.options))
            .collect();
        let descending = arrow_schema::SortOptions {
            descending: true,
            nulls_first: false,
        };
        assert_eq!(sort, [("id", descending)]);

        let ids = Int64Array::from_iter((0..3_000).map(|i| (i % 7 != 0).then_some(i * 37 % 1_000)));
        let cities = StringArray::from_iter_values((0..3_000).map(|i| format!("c{}", i % 3)));
        let batch = RecordBatch::try_new(arrow, vec![Arc::new(ids), Arc::new(cities)]).unwrap();
        // Made for `BLOOM_ROWS` values, folded to the 1,000 distinct ids' 2 KiB.
        let mut writer = data_file_writer(&table, &schema, Codec::Zstd, "f", None)
            .await
            .unwrap();
        writer.write(batch).await.unwrap();
        let [file] = <[DataFile; 1]>::try_from(writer.close().await.unwrap()).unwrap();
        let bytes = table
            .file_io()
            .new_input(file.file_path())
            .unwrap()
            .read()
            .await
            .unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes).unwrap();
        assert_eq!(file.record_count(), 3_000);
        assert_eq!(reader.metadata().file_metadata().num_rows(), 3_000);
        let chunks = reader.metadata().row_group(0).columns().to_vec();
        let filter = chunks[0].bloom_filter_length().unwrap_or_default();
        assert!(
            (1_000..4_000).contains(&filter),
            "a bloom filter of {filter} bytes"
        );
        assert!(chunks[1].bloom_filter_length().is_none());
        assert!(chunks.iter().all(|c| c.column_index_offset().is_some()));
        let batches: Vec<RecordBatch> = reader.build().unwrap().map(Result::unwrap).collect();
        let back: Vec<Option<i64>> = batches
            .iter()
            .flat_map(|b| b.column(0).as_primitive::<Int64Type>().iter())
            .collect();
        let mut expected: Vec<Option<i64>> = (0..3_000)
            .map(|i| (i % 7 != 0).then_some(i * 37 % 1_000))
            .collect();
        expected.sort_by(|a, b| match (a, b) {
            (None, None) => std::cmp::Ordering::Equal,
            (None, _) => std::cmp::Ordering::Greater,
            (_, None) => std::cmp::Ordering::Less,
            (Some(a), Some(b)) => b.cmp(a),
        });
        assert!(back == expected, "not in the table's order");
    }
}
