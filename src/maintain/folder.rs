//! A Hive dataset maintained: `{"maintain": {"folder": …}}`, a target folder with a Glue table
//! over it (`glue_table`), whose readers go through the table.
//!
//! - `rewrite_data_files`: the first run marks the table for compaction (a table parameter;
//!   writes of a marked table look where each partition is read) and moves nothing until every
//!   write that read the table before the mark has ended. Then, in each partition (in its
//!   turn, as a partition overwrite takes it),
//!   the small files older than the function's timeout written again as files of about the
//!   target size into a compaction folder of their own inside the partition's
//!   ([`crate::catalog::places`]); the younger ones (an append in flight may still be
//!   copying them after a move) copied there as they are; then the partition moved there in
//!   one Glue call (an unpartitioned table: the table), so a reader through the catalog sees
//!   the old files or the new, never both and never neither. What arrived in the old place
//!   meanwhile is copied after the move (if that fails, the move is undone).
//! - `remove_orphan_files`: the files of a partition's folder the table no longer reads (those
//!   a compaction replaced, and compaction folders it left), older than the bound, deleted.

use std::collections::HashSet;
use std::mem::discriminant;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arrow_array::{ArrayRef, RecordBatch, new_null_array};
use arrow_schema::{Field, Schema, SchemaRef};
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt, TryStreamExt};
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
use parquet::arrow::async_reader::{AsyncFileReader, ParquetRecordBatchStreamBuilder};
use parquet::errors::ParquetError;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};

use super::rewrite::{DEFAULT_TARGET, wanted};
use super::{Found, Maintenance, Report, StepReport};
use crate::Error;
use crate::catalog::hive::{COMPACTED, HiveTables};
use crate::catalog::places::Place;
use crate::encode::codec::Codec;
use crate::encode::recompress::compression;
use crate::encode::skipping::Skipping;
use crate::encode::streamed::StreamWriter;
use crate::input::maintain::{RemoveOrphanFiles, RewriteDataFiles, Steps};
use crate::input::target::{S3Prefix, TableTarget};
use crate::store::budget::{turn_give_up, write_budget};
use crate::store::lease::turn::{Claim, Turn};
use crate::store::s3::S3Store;
use crate::store::transaction::{PART_BYTES, Transaction};

/// Rows a read batch holds.
const BATCH_ROWS: usize = 8192;

/// A Parquet object read by ranges, as the reader asks for them: a file of any size is read
/// a row group at a time.
struct S3File {
    store: S3Store,
    bucket: String,
    key: String,
    size: u64,
}

impl AsyncFileReader for S3File {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        async move {
            (self.store.read_range(&self.bucket, &self.key, range).await)
                .map_err(|e| ParquetError::External(Box::new(e)))
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        _options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            let size = self.size;
            let reader = ParquetMetaDataReader::new().with_prefetch_hint(Some(64 << 10));
            Ok(Arc::new(reader.load_and_finish(self, size).await?))
        }
        .boxed()
    }
}

/// The codec a file's first column chunk is written with (Snappy for a file without rows).
fn codec_of(metadata: &ParquetMetaData) -> Codec {
    let Some(group) = metadata.row_groups().first() else {
        return Codec::Snappy;
    };
    let used = discriminant(&group.column(0).compression());
    (Codec::ALL.into_iter())
        .find(|c| discriminant(&compression(*c)) == used)
        .unwrap_or(Codec::Snappy)
}

/// The one schema `schemas` (the files') fit: their columns in order of first appearance,
/// all nullable when a file lacks one; `None` when two files give a column different types.
fn merged(schemas: &[SchemaRef]) -> Option<SchemaRef> {
    let mut fields: Vec<Field> = Vec::new();
    for schema in schemas {
        for field in schema.fields() {
            match fields.iter().find(|f| f.name() == field.name()) {
                Some(f) if f.data_type() == field.data_type() => {}
                Some(_) => return None,
                None => fields.push(field.as_ref().clone().with_metadata(Default::default())),
            }
        }
    }
    let uneven = schemas.iter().any(|s| s.fields().len() != fields.len());
    if uneven {
        fields = fields.into_iter().map(|f| f.with_nullable(true)).collect();
    }
    Some(Arc::new(Schema::new(fields)))
}

/// `batch` in `schema`: its columns in that order, nulls for those it lacks.
fn conform(
    schema: &SchemaRef,
    batch: &RecordBatch,
) -> Result<RecordBatch, arrow_schema::ArrowError> {
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|f| match batch.column_by_name(f.name()) {
            Some(column) => column.clone(),
            None => new_null_array(f.data_type(), batch.num_rows()),
        })
        .collect();
    RecordBatch::try_new(schema.clone(), columns)
}

/// One partition's compaction: what it read, wrote and carried over.
#[derive(Default)]
struct Compacted {
    files_read: usize,
    bytes_read: u64,
    files_written: usize,
    bytes_written: u64,
    /// Younger files (and any that is not small Parquet) copied as they are.
    carried: usize,
    /// Files read, for a dry run's report.
    keys: Vec<String>,
}

/// How a partition's compaction ended.
enum Outcome {
    /// Too few small old files.
    Skipped,
    /// Not enough time left for its files: the next run compacts it.
    NoTime,
    Done(Compacted),
}

/// The folder, its table and the Glue calls a run makes.
struct Dataset<'a> {
    folder: &'a S3Prefix,
    table: &'a TableTarget,
    hive: HiveTables<'a>,
}

impl Dataset<'_> {
    /// `place`'s location as a key prefix in the folder's bucket.
    fn key_of<'p>(&self, place: &'p Place) -> &'p str {
        let bucket = format!("s3://{}/", self.folder.bucket);
        place.location.strip_prefix(&bucket).unwrap_or_default()
    }
}

impl Maintenance<'_> {
    /// Runs the steps `steps` names on the Hive dataset in `folder` with `table` over it.
    ///
    /// # Errors
    /// `TableNotFound`; `InvalidTarget` for an Iceberg table or one over another folder; a
    /// step's error (what it wrote is removed; the partitions before it stay done).
    pub async fn run_folder(
        &self,
        folder: &S3Prefix,
        table: &TableTarget,
        steps: &Steps,
    ) -> Result<Report, Error> {
        let dataset = Dataset {
            folder,
            table,
            hive: HiveTables::new(self.glue),
        };
        let mut report = Report {
            table: table.to_string(),
            folder: Some(folder.to_string()),
            dry_run: self.dry_run,
            ..Report::default()
        };
        if let Some(options) = &steps.rewrite_data_files {
            report.rewrite_data_files = Some(self.compact_folder(&dataset, options).await?);
        }
        if let Some(options) = &steps.remove_orphan_files {
            report.remove_orphan_files = Some(self.remove_replaced(&dataset, options).await?);
        }
        Ok(report)
    }

    /// `rewrite_data_files` (see the module docs).
    async fn compact_folder(
        &self,
        dataset: &Dataset<'_>,
        options: &RewriteDataFiles,
    ) -> Result<StepReport, Error> {
        let (since, places) = dataset.hive.places(dataset.table, dataset.folder).await?;
        let mut report = StepReport::default();
        if !self.dry_run {
            // Writes that read the table before it was marked do not look where partitions
            // are read: none may be running when a partition moves.
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            let since = match since {
                Some(since) => since,
                None => dataset.hive.mark(dataset.table, now.as_secs()).await?,
            };
            let wait = self.older_than(Duration::ZERO);
            let ready = Duration::from_secs(since) + wait;
            if now < ready {
                report.skipped = Some(format!(
                    "{} is marked for compaction: writes now look where each partition is read; partitions move once every write that did not look has ended, in {} s (the function's timeout and a margin after the mark): run it again then",
                    dataset.table,
                    (ready - now).as_secs() + 1
                ));
                report.more = true;
                return Ok(report);
            }
        }
        let target = options.target_file_bytes.unwrap_or(DEFAULT_TARGET);
        let run = uuid::Uuid::now_v7().to_string();
        let mut carried = 0;
        let started = Instant::now();
        let wanted_places = places
            .iter()
            .filter(|p| wanted(&p.path, options.partitions.as_ref()));
        for place in wanted_places {
            if !self.dry_run && !self.time_for(0, report.bytes_read, started.elapsed()) {
                report.more = true;
                break;
            }
            // Whether a partition of `bytes` can be compacted before the deadline, at the pace
            // so far.
            let done = report.bytes_read;
            let fits = |bytes| self.time_for(bytes, done, started.elapsed());
            let outcome = match self.dry_run {
                true => {
                    self.compact(dataset, place, options, target, &run, &fits)
                        .await?
                }
                false => {
                    let claim = Claim::replace(
                        &dataset.folder.bucket,
                        &dataset.folder.key_prefix,
                        &place.path,
                    );
                    let give_up = turn_give_up(self.deadline);
                    let taken = Turn::take(self.store, vec![claim], self.holder.clone(), give_up);
                    let mut turn = match taken.await {
                        Ok(turn) => turn,
                        // An overwrite held it until there was no time left.
                        Err(Error::WriteConflict(_)) => {
                            report.more = true;
                            break;
                        }
                        Err(e) => return Err(e),
                    };
                    let outcome =
                        (self.compact(dataset, place, options, target, &run, &fits)).await;
                    turn.release().await;
                    outcome?
                }
            };
            let compacted = match outcome {
                Outcome::Skipped => continue,
                Outcome::NoTime => {
                    report.more = true;
                    break;
                }
                Outcome::Done(compacted) => compacted,
            };
            report.partitions += 1;
            report.files_read += compacted.files_read;
            report.bytes_read += compacted.bytes_read;
            report.files_written += compacted.files_written;
            report.bytes_written += compacted.bytes_written;
            carried += compacted.carried;
            let room = super::LISTED.saturating_sub(report.keys.len());
            report.keys.extend(compacted.keys.into_iter().take(room));
        }
        report.note = Some(format!(
            "files younger than {} s are carried over as they are, compacted by a later run ({carried} this run)",
            self.older_than(Duration::ZERO).as_secs()
        ));
        Ok(report)
    }

    /// The Parquet objects and others directly in `place`'s location (not `_` or `.` names).
    async fn direct(&self, dataset: &Dataset<'_>, place: &Place) -> Result<Vec<Found>, Error> {
        let prefix = dataset.key_of(place);
        let listed = self.list(&place.location).await?;
        Ok(listed
            .into_iter()
            .filter(|f| {
                let name = &f.key[prefix.len()..];
                !name.contains('/') && !name.starts_with(['_', '.'])
            })
            .collect())
    }

    /// One partition's compaction, holding its turn, once `fits` says its bytes can be
    /// compacted in the time left.
    async fn compact(
        &self,
        dataset: &Dataset<'_>,
        place: &Place,
        options: &RewriteDataFiles,
        target: u64,
        run: &str,
        fits: &dyn Fn(u64) -> bool,
    ) -> Result<Outcome, Error> {
        let bucket = &dataset.folder.bucket;
        let listed = self.direct(dataset, place).await?;
        let bound = self.older_than(Duration::ZERO);
        let now = SystemTime::now();
        let small = target / 4 * 3;
        let (inputs, carried): (Vec<&Found>, Vec<&Found>) = listed.iter().partition(|f| {
            f.older_than(bound, now) && f.size < small && f.key.ends_with(".parquet")
        });
        if inputs.len() < options.min_input_files {
            return Ok(Outcome::Skipped);
        }
        let mut compacted = Compacted {
            files_read: inputs.len(),
            bytes_read: inputs.iter().map(|f| f.size).sum(),
            carried: carried.len(),
            ..Compacted::default()
        };
        if self.dry_run {
            compacted.keys = inputs.iter().map(|f| f.uri.clone()).collect();
            return Ok(Outcome::Done(compacted));
        }
        if !fits(compacted.bytes_read) {
            return Ok(Outcome::NoTime);
        }
        let into = format!(
            "{}{}{COMPACTED}{run}/",
            dataset.folder.key_prefix, place.path
        );
        let mut made: Vec<String> = Vec::new();
        let moved = async {
            let written = self
                .write_compacted(dataset, place, &inputs, target, &into, run)
                .await?;
            made.extend(written.iter().map(|(key, _)| key.clone()));
            compacted.files_written = written.len();
            compacted.bytes_written = written.iter().map(|(_, size)| size).sum();
            let from = dataset.key_of(place);
            for found in &carried {
                let name = &found.key[from.len()..];
                let copy = format!("{into}{name}");
                self.store.copy(bucket, &found.key, &copy).await?;
                made.push(copy);
            }
            dataset
                .hive
                .relocate(dataset.table, place, &format!("s3://{bucket}/{into}"))
                .await
        }
        .await;
        if let Err(e) = moved {
            let left = self.store.delete_keys(bucket, &made).await;
            return Err(crate::store::transaction::with_leftovers(e, &left));
        }
        // What arrived in the old place before the move: a write that looked before the move
        // copies nothing, so it is copied here.
        let seen: HashSet<&str> = listed.iter().map(|f| f.key.as_str()).collect();
        let caught_up = async {
            let from = dataset.key_of(place);
            for found in self.direct(dataset, place).await? {
                if !seen.contains(found.key.as_str()) {
                    let name = &found.key[from.len()..];
                    self.store
                        .copy(bucket, &found.key, &format!("{into}{name}"))
                        .await?;
                    compacted.carried += 1;
                }
            }
            Ok::<_, Error>(())
        }
        .await;
        if let Err(e) = caught_up {
            // Back where everything is: the old place never lost a file.
            let moved_to = Place {
                location: format!("s3://{bucket}/{into}"),
                ..place.clone()
            };
            dataset
                .hive
                .relocate(dataset.table, &moved_to, &place.location)
                .await?;
            return Err(e);
        }
        tracing::info!(
            table = %dataset.table,
            partition = %place.path,
            files_read = compacted.files_read,
            files_written = compacted.files_written,
            carried = compacted.carried,
            "partition compacted"
        );
        Ok(Outcome::Done(compacted))
    }

    /// Reads `inputs` a row group at a time and writes their rows as files of about `target`
    /// bytes under `into` (the first file's codec, the page index), all visible at once; each
    /// file's key and size.
    async fn write_compacted(
        &self,
        dataset: &Dataset<'_>,
        place: &Place,
        inputs: &[&Found],
        target: u64,
        into: &str,
        run: &str,
    ) -> Result<Vec<(String, u64)>, Error> {
        let bucket = &dataset.folder.bucket;
        let failed = |e: &dyn std::fmt::Display| {
            Error::S3WriteFailed(format!(
                "compacting {}'s partition {}: {e}; nothing was changed",
                dataset.table, place.path
            ))
        };
        let file = |found: &Found| S3File {
            store: self.store.clone(),
            bucket: bucket.clone(),
            key: found.key.clone(),
            size: found.size,
        };
        let mut footers = Vec::with_capacity(inputs.len());
        for found in inputs {
            let read =
                ArrowReaderMetadata::load_async(&mut file(found), ArrowReaderOptions::new()).await;
            footers.push(read.map_err(|e| failed(&format!("reading {}: {e}", found.uri)))?);
        }
        let schemas: Vec<SchemaRef> = footers.iter().map(|f| f.schema().clone()).collect();
        let schema =
            merged(&schemas).ok_or_else(|| failed(&"its files give one column different types"))?;
        let codec = codec_of(footers[0].metadata());
        let expected: i64 = footers
            .iter()
            .map(|f| f.metadata().file_metadata().num_rows())
            .sum();
        let mut transaction = Transaction::new(self.store);
        // Each file's key and size; the last is the one open.
        let mut files: Vec<(String, u64)> = Vec::new();
        let mut open: Option<(usize, StreamWriter)> = None;
        let mut rows = 0;
        let written = async {
            for (found, footer) in inputs.iter().zip(footers) {
                let mut batches =
                    ParquetRecordBatchStreamBuilder::new_with_metadata(file(found), footer)
                        .with_batch_size(BATCH_ROWS)
                        .build()
                        .map_err(|e| failed(&e))?;
                while let Some(batch) = batches.try_next().await.map_err(|e| failed(&e))? {
                    let batch = conform(&schema, &batch).map_err(|e| failed(&e))?;
                    rows += batch.num_rows() as i64;
                    let (index, writer) = match &mut open {
                        Some(open) => open,
                        None => {
                            let key = format!(
                                "{into}part-{:05}-{run}-c000{}",
                                files.len(),
                                codec.file_suffix()
                            );
                            let index = transaction.add(bucket.clone(), key.clone());
                            files.push((key, 0));
                            let writer = StreamWriter::new(
                                &batch,
                                &[codec],
                                self.row_group,
                                true,
                                &Skipping::default(),
                            )?;
                            open.insert((index, writer))
                        }
                    };
                    writer.write(&[batch])?;
                    for (_, bytes) in writer.take_ready(PART_BYTES)? {
                        files.last_mut().expect("open").1 += bytes.len() as u64;
                        transaction.part(*index, bytes).await?;
                    }
                    if writer.size() >= target {
                        let (index, writer) = open.take().expect("open");
                        for (_, bytes) in writer.finish()? {
                            files.last_mut().expect("open").1 += bytes.len() as u64;
                            transaction.last(index, bytes).await?;
                        }
                    }
                }
            }
            if let Some((index, writer)) = open.take() {
                for (_, bytes) in writer.finish()? {
                    files.last_mut().expect("open").1 += bytes.len() as u64;
                    transaction.last(index, bytes).await?;
                }
            }
            if rows != expected {
                return Err(failed(&format!(
                    "read {rows} rows of the {expected} its files hold"
                )));
            }
            transaction
                .commit(write_budget(self.deadline, SystemTime::now())?)
                .await
        }
        .await;
        match written {
            Ok(_) => Ok(files),
            Err(e) => {
                let left = transaction.abort().await;
                Err(crate::store::transaction::with_leftovers(e, &left))
            }
        }
    }

    /// `remove_orphan_files` of a folder (see the module docs).
    async fn remove_replaced(
        &self,
        dataset: &Dataset<'_>,
        options: &RemoveOrphanFiles,
    ) -> Result<StepReport, Error> {
        let (_, places) = dataset.hive.places(dataset.table, dataset.folder).await?;
        let bound = self.older_than(options.older_than);
        let now = SystemTime::now();
        let bucket = &dataset.folder.bucket;
        let mut doomed = Vec::new();
        for place in &places {
            let home = format!("{}{}", dataset.folder.key_prefix, place.path);
            for found in self.list(&format!("s3://{bucket}/{home}")).await? {
                let rest = &found.key[home.len()..];
                let (dir, name) = match rest.split_once('/') {
                    None => ("", rest),
                    Some((dir, name)) if dir.starts_with(COMPACTED) && !name.contains('/') => {
                        (&rest[..=dir.len()], name)
                    }
                    Some(_) => continue, // a deeper partition's, or the leases
                };
                let read_here = format!("s3://{bucket}/{home}{dir}") == place.location;
                let old = found.older_than(bound, now);
                if !read_here && old && !(dir.is_empty() && name.starts_with(['_', '.'])) {
                    doomed.push(found.uri);
                }
            }
        }
        let mut report = StepReport {
            note: Some(format!(
                "files younger than {} s were left alone",
                bound.as_secs()
            )),
            ..StepReport::default()
        };
        self.delete(&mut report, doomed).await;
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::Int64Array;
    use arrow_schema::DataType;

    fn schema(fields: &[(&str, DataType, bool)]) -> SchemaRef {
        let fields = fields
            .iter()
            .map(|(n, t, null)| Field::new(*n, t.clone(), *null));
        Arc::new(Schema::new(fields.collect::<Vec<_>>()))
    }

    #[test]
    fn files_of_added_columns_merge_and_a_changed_type_does_not() {
        let a = schema(&[("id", DataType::Int64, false)]);
        let b = schema(&[
            ("id", DataType::Int64, false),
            ("city", DataType::Utf8, true),
        ]);
        let both = merged(&[a.clone(), b.clone()]).unwrap();
        assert_eq!(both.fields().len(), 2);
        assert!(both.fields().iter().all(|f| f.is_nullable()));
        assert!(
            !merged(&[a.clone(), a.clone()])
                .unwrap()
                .field(0)
                .is_nullable()
        );
        let c = schema(&[("id", DataType::Utf8, true)]);
        assert!(merged(&[a.clone(), c]).is_none());
        let batch = RecordBatch::try_new(a, vec![Arc::new(Int64Array::from(vec![1, 2]))]).unwrap();
        let out = conform(&both, &batch).unwrap();
        assert_eq!(out.column(1).null_count(), 2);
        assert_eq!(out.num_columns(), 2);
    }
}
