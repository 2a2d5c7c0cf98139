//! Parquet files written a row group at a time from a stream of batches, as a source object
//! is read: [`StreamWriter`].

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use bytes::Bytes;
use parquet::arrow::arrow_writer::{ArrowColumnWriter, ArrowRowGroupWriterFactory, compute_leaves};
use parquet::arrow::{ArrowSchemaConverter, ArrowWriter, add_encoded_arrow_schema_to_metadata};
use parquet::file::metadata::RowGroupMetaDataPtr;
use parquet::file::writer::SerializedFileWriter;

use crate::Error;
use crate::encode::codec::Codec;
use crate::encode::recompress::ChunkIndex;
use crate::encode::skipping::{BLOOM_ROWS, Skipping};
use crate::encode::writer::{
    Columns, RowGroupSize, append_chunks, distinct, parquet_error, properties,
};

/// The room reserved for a streamed file's finished bytes until they are taken: a part and a
/// row group fit, and the size is past the mmap threshold [`crate::lambda::memory`] sets (32 MiB), so
/// each buffer is its own mapping, returned whole when its part is sent, and never fragments
/// the heap; only the pages written to are resident.
const PART_BUFFER: usize = 33 << 20;

/// The default `ROW_GROUP_ROWS`: parquet-rs's own bound; row groups are sized by their bytes
/// (`ROW_GROUP_BYTES`) first, and by [`BLOOM_ROWS`] in a file with bloom filters.
pub const ROW_GROUP_ROWS: usize = 1 << 20;

/// One Parquet file per distinct codec, written a row group at a time from a stream of
/// batches; whole row groups can be taken out as they are finished (a multipart upload's
/// parts), so a file of any size never sits in memory whole.
///
/// Each row group is encoded once, uncompressed; every other codec's file gets that row
/// group's pages compressed as soon as it is finished (see [`crate::encode::recompress`]).
///
/// Kept whole: `write`, `take_ready` and `finish` are three short steps over the same list
/// of files, and the order of bytes between them is the point of the type.
pub struct StreamWriter {
    /// The one encoding; the uncompressed file itself when one was asked for. Its row groups
    /// are written here rather than by `ArrowWriter` (which makes the same bytes) to keep
    /// each column chunk's page index and bloom filter for the other codecs' files.
    encoded: SerializedFileWriter<Vec<u8>>,
    factory: ArrowRowGroupWriterFactory,
    schema: SchemaRef,
    row_group: RowGroupSize,
    /// The row group in progress: a writer per leaf column, and its rows.
    columns: Vec<ArrowColumnWriter>,
    buffered: usize,
    /// Row groups of `encoded` not yet in every other file, with what their writers gathered.
    finished: Vec<(RowGroupMetaDataPtr, Vec<ChunkIndex>)>,
    /// With `sort_by`: the rows of the next row group, held until it is full and sorted.
    sort: Option<(Skipping, Vec<RecordBatch>)>,
    /// Bytes of `encoded`'s file that have left its buffer.
    left: u64,
    /// Each codec's file, in the order first asked for.
    files: Vec<(Codec, File)>,
    /// Room reserved for each buffer of finished bytes.
    reserve: usize,
    rows: usize,
}

/// Where a codec's finished bytes wait to be taken.
enum File {
    /// The uncompressed file: `encoded`'s own row groups, as they left its buffer.
    Encoded(Vec<Bytes>),
    /// Another codec's file, fed each row group's pages compressed.
    Compressed(SerializedFileWriter<Vec<u8>>),
}

impl StreamWriter {
    /// Files for `codecs` (duplicates written once) of `first`'s schema; `first` (the first
    /// batch) also decides which columns are written without a dictionary; the bloom filters
    /// `skipping` asks for are made for a row group's rows, then folded to what it holds.
    /// With `skipping.sort_by`, each row group's rows are sorted. `alone` says this is the
    /// only file being written per codec: it gets `PART_BUFFER` reserved, while the many
    /// small files of a partitioned stream grow theirs as they need.
    ///
    /// # Errors
    /// `InvalidEvent` if Parquet cannot represent the schema, or for a bad bloom filter
    /// column (as [`Skipping::bloom_columns`]).
    pub fn new(
        first: &RecordBatch,
        codecs: &[Codec],
        row_group: RowGroupSize,
        alone: bool,
        skipping: &Skipping,
    ) -> Result<StreamWriter, Error> {
        let mut choices = Columns::of(std::slice::from_ref(first), skipping)?;
        let mut row_group = row_group;
        if !choices.bloom.is_empty() {
            row_group.rows = row_group.rows.min(BLOOM_ROWS);
        }
        for (_, most) in &mut choices.bloom {
            *most = row_group.rows as u64;
        }
        let reserve = if alone { PART_BUFFER } else { 0 };
        let schema = first.schema();
        let props = properties(Codec::Uncompressed, &choices, row_group);
        // The Parquet schema ArrowWriter derives.
        let root = ArrowSchemaConverter::new()
            .with_coerce_types(props.coerce_types())
            .convert(&schema)
            .map_err(|e| parquet_error(Codec::Uncompressed, e))?
            .root_schema_ptr();
        let (encoded, factory) =
            ArrowWriter::try_new(Vec::with_capacity(reserve), schema.clone(), Some(props))
                .and_then(ArrowWriter::into_serialized_writer)
                .map_err(|e| parquet_error(Codec::Uncompressed, e))?;
        let columns = factory
            .create_column_writers(0)
            .map_err(|e| parquet_error(Codec::Uncompressed, e))?;
        let files = distinct(codecs)
            .into_iter()
            .map(|codec| {
                if codec == Codec::Uncompressed {
                    return Ok((codec, File::Encoded(Vec::new())));
                }
                // What ArrowWriter adds to its file: the Arrow schema, in the footer.
                let mut props = properties(codec, &choices, row_group);
                add_encoded_arrow_schema_to_metadata(&schema, &mut props);
                SerializedFileWriter::new(
                    Vec::with_capacity(reserve),
                    root.clone(),
                    Arc::new(props),
                )
                .map(|w| (codec, File::Compressed(w)))
                .map_err(|e| parquet_error(codec, e))
            })
            .collect::<Result<_, _>>()?;
        Ok(StreamWriter {
            encoded,
            factory,
            schema,
            row_group,
            columns,
            buffered: 0,
            finished: Vec::new(),
            sort: (!skipping.sort_by.is_empty()).then(|| (skipping.clone(), Vec::new())),
            left: 0,
            files,
            reserve,
            rows: 0,
        })
    }

    /// Rows written so far.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// About the largest file's size so far: its finished row groups, with the row group in
    /// progress for the uncompressed encoding (the others' are added as it finishes).
    pub fn size(&self) -> u64 {
        let encoded = self.encoded.bytes_written() + self.in_progress_size();
        self.files
            .iter()
            .map(|(_, file)| match file {
                File::Encoded(_) => encoded as u64,
                File::Compressed(out) => out.bytes_written() as u64,
            })
            .max()
            .unwrap_or(0)
    }

    /// About how much memory the files hold: row groups in progress and bytes not taken.
    pub fn memory(&self) -> usize {
        let waiting: usize = self
            .files
            .iter()
            .map(|(_, file)| match file {
                File::Encoded(parts) => parts.iter().map(Bytes::len).sum(),
                File::Compressed(out) => out.inner().len(),
            })
            .sum();
        let columns: usize = self
            .columns
            .iter()
            .map(ArrowColumnWriter::memory_size)
            .sum();
        let held: usize = self
            .sort
            .iter()
            .flat_map(|(_, held)| held)
            .map(RecordBatch::get_array_memory_size)
            .sum();
        columns + held + self.encoded.inner().len() + waiting
    }

    /// The row group in progress's estimated encoded size.
    fn in_progress_size(&self) -> usize {
        let sizes = self.columns.iter().map(|c| c.get_estimated_total_bytes());
        sizes.sum()
    }

    /// Appends `batches` to every file.
    ///
    /// # Errors
    /// As [`to_parquet`](crate::encode::writer::to_parquet).
    pub fn write(&mut self, batches: &[RecordBatch]) -> Result<(), Error> {
        self.rows += batches.iter().map(RecordBatch::num_rows).sum::<usize>();
        match &mut self.sort {
            None => {
                for batch in batches {
                    self.write_batch(batch.clone())
                        .map_err(|e| parquet_error(Codec::Uncompressed, e))?;
                }
            }
            Some((_, held)) => {
                held.extend(batches.iter().cloned());
                let rows: usize = held.iter().map(RecordBatch::num_rows).sum();
                let bytes: usize = held.iter().map(RecordBatch::get_array_memory_size).sum();
                let bound = self.row_group.bytes.unwrap_or(usize::MAX);
                if rows >= self.row_group.rows || bytes >= bound {
                    self.write_sorted(bytes >= bound)?;
                }
            }
        }
        self.recompress_finished()
    }

    /// The rows held for sorting, sorted, written as whole row groups; the rest (fewer than
    /// a row group's rows) held again for the next, unless `all`.
    fn write_sorted(&mut self, all: bool) -> Result<(), Error> {
        let Some((skipping, held)) = &mut self.sort else {
            return Ok(());
        };
        if held.is_empty() {
            return Ok(());
        }
        let skipping = skipping.clone();
        let failed = |e| parquet_error(Codec::Uncompressed, e);
        let mut rows = skipping.sorted_batches(std::mem::take(held))?.remove(0);
        while rows.num_rows() >= self.row_group.rows || (all && rows.num_rows() > 0) {
            let take = rows.num_rows().min(self.row_group.rows);
            self.write_batch(rows.slice(0, take)).map_err(failed)?;
            self.flush().map_err(failed)?;
            rows = rows.slice(take, rows.num_rows() - take);
        }
        if let Some((_, held)) = &mut self.sort
            && rows.num_rows() > 0
        {
            held.push(rows);
        }
        Ok(())
    }

    /// Writes `batch` into the row group in progress, closing it where `ArrowWriter` would:
    /// at `row_group.rows` rows, or before the row that its average row size says would take
    /// it past `row_group.bytes`.
    fn write_batch(&mut self, mut batch: RecordBatch) -> parquet::errors::Result<()> {
        while batch.num_rows() > 0 {
            let mut fit = self.row_group.rows - self.buffered;
            if let Some(max) = self.row_group.bytes.filter(|_| self.buffered > 0) {
                let size = self.in_progress_size();
                let room = max.saturating_sub(size);
                if let Some(rows) = room.checked_div(size / self.buffered) {
                    fit = fit.min(rows);
                }
            }
            if fit == 0 {
                self.flush()?;
                continue;
            }
            let part = batch.slice(0, fit.min(batch.num_rows()));
            let mut writers = self.columns.iter_mut();
            for (field, column) in self.schema.fields().iter().zip(part.columns()) {
                for leaf in compute_leaves(field, column)? {
                    writers.next().expect("a writer per leaf").write(&leaf)?;
                }
            }
            self.buffered += part.num_rows();
            batch = batch.slice(part.num_rows(), batch.num_rows() - part.num_rows());
            let full = self.buffered >= self.row_group.rows
                || (self.row_group.bytes).is_some_and(|max| self.in_progress_size() >= max);
            if full {
                self.flush()?;
            }
        }
        Ok(())
    }

    /// Closes the row group in progress into `encoded` (none without rows).
    fn flush(&mut self) -> parquet::errors::Result<()> {
        if self.buffered == 0 {
            return Ok(());
        }
        let next = self.encoded.flushed_row_groups().len() + 1;
        let columns =
            std::mem::replace(&mut self.columns, self.factory.create_column_writers(next)?);
        let chunks = columns
            .into_iter()
            .map(ArrowColumnWriter::close)
            .collect::<parquet::errors::Result<Vec<_>>>()?;
        let mut row_group = self.encoded.next_row_group()?;
        let indexes = append_chunks(&mut row_group, chunks)?;
        let metadata = row_group.close()?;
        self.finished.push((metadata, indexes));
        self.buffered = 0;
        Ok(())
    }

    /// Every row group `encoded` has finished since the last call, compressed into every
    /// other file, one thread per codec; its uncompressed bytes then kept or dropped.
    fn recompress_finished(&mut self) -> Result<(), Error> {
        if self.finished.is_empty() {
            return Ok(());
        }
        let groups = std::mem::take(&mut self.finished);
        self.encoded
            .flush()
            .map_err(|e| parquet_error(Codec::Uncompressed, e.into()))?;
        // Offsets in the footer come from the writer's own count, not the buffer's length,
        // so the finished bytes can leave it.
        let fresh = Vec::with_capacity(self.reserve);
        let bytes = Bytes::from(std::mem::replace(self.encoded.inner_mut(), fresh));
        let from = self.left;
        self.left += bytes.len() as u64;
        std::thread::scope(|scope| {
            let handles: Vec<_> = self
                .files
                .iter_mut()
                .filter_map(|(codec, file)| match file {
                    File::Compressed(out) => Some((*codec, out)),
                    File::Encoded(_) => None,
                })
                .map(|(codec, out)| {
                    let (groups, bytes) = (&groups, &bytes);
                    scope.spawn(move || {
                        groups.iter().try_for_each(|(group, indexes)| {
                            crate::encode::recompress::append_row_group(
                                out,
                                group,
                                indexes,
                                bytes.clone(),
                                from,
                                codec,
                            )
                            .map_err(|e| parquet_error(codec, e))
                        })
                    })
                })
                .collect();
            handles.into_iter().try_for_each(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
        })?;
        if let Some(parts) = self.files.iter_mut().find_map(|(_, file)| match file {
            File::Encoded(parts) => Some(parts),
            File::Compressed(_) => None,
        }) {
            parts.push(bytes);
        }
        Ok(())
    }

    /// The finished row groups not taken yet of each file that has at least `min` bytes of
    /// them, with its codec, in the order the codecs were first asked for.
    ///
    /// # Errors
    /// As [`to_parquet`](crate::encode::writer::to_parquet).
    pub fn take_ready(&mut self, min: usize) -> Result<Vec<(Codec, Bytes)>, Error> {
        let min = min.max(1);
        let mut ready = Vec::new();
        for (codec, file) in &mut self.files {
            let bytes = match file {
                File::Encoded(parts) => {
                    if parts.iter().map(Bytes::len).sum::<usize>() < min {
                        continue;
                    }
                    joined(std::mem::take(parts))
                }
                File::Compressed(out) => {
                    out.flush().map_err(|e| parquet_error(*codec, e.into()))?;
                    let buffer = out.inner_mut();
                    if buffer.len() < min {
                        continue;
                    }
                    let fresh = Vec::with_capacity(PART_BUFFER);
                    Bytes::from(std::mem::replace(buffer, fresh))
                }
            };
            ready.push((*codec, bytes));
        }
        Ok(ready)
    }

    /// Closes every file; the bytes of each not taken yet, with the codec.
    ///
    /// # Errors
    /// As [`to_parquet`](crate::encode::writer::to_parquet).
    pub fn finish(mut self) -> Result<Vec<(Codec, Bytes)>, Error> {
        self.write_sorted(true)?;
        self.flush()
            .map_err(|e| parquet_error(Codec::Uncompressed, e))?;
        self.recompress_finished()?;
        // The footer; the uncompressed file (at most one) ends with it.
        let mut footer = self
            .encoded
            .into_inner()
            .map_err(|e| parquet_error(Codec::Uncompressed, e))?;
        self.files
            .into_iter()
            .map(|(codec, file)| match file {
                File::Encoded(mut parts) => {
                    parts.push(Bytes::from(std::mem::take(&mut footer)));
                    Ok((codec, joined(parts)))
                }
                File::Compressed(out) => out
                    .into_inner()
                    .map(|rest| (codec, Bytes::from(rest)))
                    .map_err(|e| parquet_error(codec, e)),
            })
            .collect()
    }
}

/// `parts` as one buffer (without a copy when there is one).
fn joined(mut parts: Vec<Bytes>) -> Bytes {
    match parts.len() {
        1 => parts.pop().expect("one"),
        _ => Bytes::from(parts.concat()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::writer::tests::{batches_of, i_values};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::bloom_filter::Sbbf;

    #[test]
    fn streamed_files_come_out_in_parts_that_join_into_one_valid_file() {
        let batch_from = |first: usize| {
            let json: Vec<String> = (first..first + 10_000)
                .map(|i| format!(r#"{{"i": {i}, "s": "row {i} of many"}}"#))
                .collect();
            batches_of(&format!("[{}]", json.join(","))).remove(0)
        };
        let codecs = [Codec::Snappy, Codec::Uncompressed, Codec::Snappy];
        let mut writer = StreamWriter::new(
            &batch_from(0),
            &codecs,
            RowGroupSize::streamed(25_000, 16 << 20),
            true,
            &Skipping::NONE,
        )
        .unwrap();
        let order = [Codec::Snappy, Codec::Uncompressed];
        let mut files = [Vec::new(), Vec::new()];
        let mut parts = [0, 0];
        for first in (0..100_000).step_by(10_000) {
            writer.write(&[batch_from(first)]).unwrap();
            let ready = writer.take_ready(100_000).unwrap();
            let codecs: Vec<_> = ready.iter().map(|(c, _)| *c).collect();
            assert!(
                order.iter().filter(|c| codecs.contains(c)).eq(&codecs),
                "{codecs:?}"
            );
            for (codec, part) in ready {
                assert!(part.len() >= 100_000);
                let i = order.iter().position(|c| *c == codec).unwrap();
                files[i].extend_from_slice(&part);
                parts[i] += 1;
            }
        }
        assert_eq!(writer.rows(), 100_000);
        let finished = writer.finish().unwrap();
        let codecs: Vec<_> = finished.iter().map(|(c, _)| *c).collect();
        assert_eq!(codecs, order);
        let columns = Columns::of(&[batch_from(0)], &Skipping::NONE).unwrap();
        for (i, (codec, rest)) in finished.into_iter().enumerate() {
            files[i].extend_from_slice(&rest);
            assert!(parts[i] >= 2, "{codec:?} came out in {} parts", parts[i]);
            let builder =
                ParquetRecordBatchReaderBuilder::try_new(Bytes::from(files[i].clone())).unwrap();
            assert_eq!(builder.metadata().num_row_groups(), 4, "{codec:?}");
            let batches: Vec<_> = builder.build().unwrap().map(Result::unwrap).collect();
            assert!(i_values(&batches).into_iter().eq(0..100_000), "{codec:?}");
            // Encoded once, the Snappy file from the uncompressed row groups' pages: still
            // byte for byte what ArrowWriter makes with Snappy.
            let props = properties(codec, &columns, RowGroupSize::streamed(25_000, 16 << 20));
            let mut direct =
                ArrowWriter::try_new(Vec::new(), batch_from(0).schema(), Some(props)).unwrap();
            for first in (0..100_000).step_by(10_000) {
                direct.write(&batch_from(first)).unwrap();
            }
            assert!(direct.into_inner().unwrap() == files[i], "{codec:?}");
        }
    }

    #[test]
    fn with_sort_by_each_row_group_is_sorted_and_bloom_filters_find_its_values() {
        let batch_from = |first: usize| {
            let json: Vec<String> = (first..first + 10_000)
                .map(|i| format!(r#"{{"i": {i}, "s": "key-{}"}}"#, i % 5_000))
                .collect();
            batches_of(&format!("[{}]", json.join(","))).remove(0)
        };
        let skipping = Skipping::parse(Some(r#"["s"]"#), Some(r#"["i DESC"]"#)).unwrap();
        let mut writer = StreamWriter::new(
            &batch_from(0),
            &[Codec::Snappy],
            RowGroupSize::streamed(25_000, 16 << 20),
            true,
            &skipping,
        )
        .unwrap();
        let mut file = Vec::new();
        for first in (0..100_000).step_by(10_000) {
            writer.write(&[batch_from(first)]).unwrap();
            for (_, part) in writer.take_ready(1).unwrap() {
                file.extend_from_slice(&part);
            }
        }
        file.extend_from_slice(&writer.finish().unwrap().remove(0).1);
        let file = Bytes::from(file);
        let builder = ParquetRecordBatchReaderBuilder::try_new(file.clone()).unwrap();
        let meta = builder.metadata().clone();
        let values = i_values(
            &builder
                .build()
                .unwrap()
                .map(Result::unwrap)
                .collect::<Vec<_>>(),
        );
        // Rows are held until a row group's worth arrived (3 batches of 10,000 for 25,000
        // rows), then sorted: a whole row group written, the other 5,000 held for the next.
        let groups: Vec<i64> = meta.row_groups().iter().map(|g| g.num_rows()).collect();
        assert_eq!(groups, [25_000; 4]);
        let mut at = 0;
        for (n, rows) in groups.iter().enumerate() {
            let group = &values[at..at + *rows as usize];
            assert!(
                group.windows(2).all(|w| w[0] > w[1]),
                "row group {n} is not sorted"
            );
            at += *rows as usize;
        }
        let mut all = values.clone();
        all.sort_unstable();
        assert!(all.into_iter().eq(0..100_000));
        // 5,000 distinct keys in a row group of 25,000 rows: the filter folded to fit them.
        let filter = |column| Sbbf::read_from_column_chunk(meta.row_group(0).column(column), &file);
        let keys = filter(1).unwrap().expect("a bloom filter on `s`");
        assert!((0..5_000).all(|k| keys.check(&format!("key-{k}").as_str())));
        let misses = (0..10_000).filter(|k| keys.check(&format!("other-{k}").as_str()));
        assert!(misses.count() < 300, "far more than 1% false positives");
        assert!(filter(0).unwrap().is_none());
        let length = meta.row_group(0).column(1).bloom_filter_length().unwrap();
        assert!(
            length < 16 << 10,
            "{length} bytes: not folded from 25,000 values' 32 KiB"
        );
    }

    #[test]
    fn a_file_with_bloom_filters_keeps_its_row_groups_to_what_they_are_made_for() {
        let schema = Arc::new(arrow_schema::Schema::new(vec![arrow_schema::Field::new(
            "i",
            arrow_schema::DataType::Int64,
            false,
        )]));
        let batch = |first: i64| {
            let values = arrow_array::Int64Array::from_iter_values(first..first + 65_000);
            RecordBatch::try_new(schema.clone(), vec![Arc::new(values)]).unwrap()
        };
        let rows_of = |skipping: &Skipping| {
            let sized = RowGroupSize::streamed(ROW_GROUP_ROWS, 16 << 20);
            let codecs = [Codec::Uncompressed];
            let mut writer = StreamWriter::new(&batch(0), &codecs, sized, true, skipping).unwrap();
            writer.write(&[batch(0), batch(65_000)]).unwrap();
            let mut file = Vec::new();
            for (_, part) in writer.take_ready(1).unwrap() {
                file.extend_from_slice(&part);
            }
            file.extend_from_slice(&writer.finish().unwrap().remove(0).1);
            let meta = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(file)).unwrap();
            let groups = meta.metadata().row_groups().iter().map(|g| g.num_rows());
            groups.collect::<Vec<_>>()
        };
        // Sized by bytes (1 MiB of integers is far below 16 MiB): one row group.
        assert_eq!(rows_of(&Skipping::NONE), [130_000]);
        let bloom = Skipping::parse(Some(r#"["i"]"#), None).unwrap();
        assert_eq!(
            rows_of(&bloom),
            [BLOOM_ROWS as i64, 130_000 - BLOOM_ROWS as i64]
        );
    }
}
