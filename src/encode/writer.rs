//! The conversion core (rows to one Arrow batch, built once) and the batch to Parquet bytes
//! per codec.

use std::time::{Duration, Instant};

use std::collections::HashSet;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, SchemaRef};
use bytes::Bytes;
use parquet::arrow::arrow_writer::{
    ArrowColumnChunk, ArrowColumnWriter, ArrowLeafColumn, compute_leaves,
};
use parquet::arrow::{ArrowSchemaConverter, ArrowWriter, add_encoded_arrow_schema_to_metadata};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::ColumnPath;

use crate::Error;
use crate::encode::codec::Codec;
use crate::encode::columns::UnknownKeys;
use crate::encode::partition::{self, Layout, PartitionBy};
use crate::rows::Rows;

/// The `created_by` written into every file, in the `<app> version <v> (build <b>)` form that
/// parquet-mr and Arrow parse.
pub const CREATED_BY: &str = concat!(
    env!("CARGO_PKG_NAME"),
    " version ",
    env!("CARGO_PKG_VERSION"),
    " (build parquet-rs)"
);

/// Every codec's Parquet bytes for one set of rows.
#[derive(Debug)]
pub struct Encoded {
    /// The schema of the rows: the declared one, or the one inferred from the rows (with the
    /// partition columns, which the files leave out).
    pub schema: SchemaRef,
    pub rows: usize,
    /// One entry per partition, in the order each first appears; one with an empty path
    /// without `partition_by`.
    pub partitions: Vec<EncodedPartition>,
    /// The partition columns, when partitioned.
    pub layout: Option<Layout>,
    /// Time spent inferring the schema and building the batch.
    pub build_time: Duration,
    /// Time spent encoding every codec (in parallel).
    pub encode_time: Duration,
}

/// One partition's files.
#[derive(Debug)]
pub struct EncodedPartition {
    /// `dt=2024-01-01/` (see [`crate::encode::partition`]); empty without `partition_by`.
    pub path: String,
    pub rows: usize,
    /// One entry per distinct codec, in the order first asked for.
    pub files: Vec<(Codec, Bytes)>,
}

impl EncodedPartition {
    /// The bytes written for `codec` (one of those asked for).
    pub fn file(&self, codec: Codec) -> Option<&Bytes> {
        self.files.iter().find(|(c, _)| *c == codec).map(|(_, b)| b)
    }
}

/// How rows are partitioned: by `partition_by`, into at most `max` partitions.
#[derive(Debug, Clone, Copy)]
pub struct Partitioning<'a> {
    pub by: Option<&'a PartitionBy>,
    pub max: usize,
}

impl Partitioning<'_> {
    /// No `partition_by`: one file per codec.
    pub const NONE: Partitioning<'static> = Partitioning { by: None, max: 1 };
}

/// The whole conversion core: takes the declared schema or infers one, builds one batch
/// (freeing the rows), splits it into partitions, and encodes each once per distinct codec.
///
/// # Errors
/// As [`crate::schema::inference::infer`], [`crate::encode::columns::build`], [`PartitionBy::layout`],
/// [`Layout::split`] and [`to_parquet`].
///
/// ```
/// use rows_to_parquet::encode::{codec::Codec, writer};
/// use rows_to_parquet::input::event;
/// let event = event::parse(br#"{"rows": [{"name": "John Doe", "age": 30}]}"#).unwrap();
/// let codecs = [Codec::Uncompressed, Codec::Snappy];
/// let none = writer::Partitioning::NONE;
/// let encoded = writer::rows_to_parquet(event.input.rows().unwrap(), None, Default::default(), &codecs, none).unwrap();
/// assert_eq!((encoded.rows, encoded.schema.fields().len()), (1, 2));
/// assert!(encoded.partitions[0].file(Codec::Snappy).unwrap().starts_with(b"PAR1"));
/// ```
pub fn rows_to_parquet(
    rows: Rows,
    schema: Option<SchemaRef>,
    unknown: UnknownKeys,
    codecs: &[Codec],
    partitioning: Partitioning,
) -> Result<Encoded, Error> {
    let started = Instant::now();
    let schema = match schema {
        Some(declared) => declared,
        None => crate::schema::inference::infer(&rows)?,
    };
    crate::schema::inference::check_names(schema.fields())?;
    let layout = partitioning.by.map(|by| by.layout(&schema)).transpose()?;
    let batches = crate::encode::columns::build(&rows, schema.clone(), unknown)?;
    let parts = partition::parts(layout.as_ref(), batches, partitioning.max, |i| {
        rows.row_ref(i)
    })?;
    drop(rows);
    let built = Instant::now();
    let partitions = parts
        .into_iter()
        .map(|part| {
            Ok(EncodedPartition {
                rows: part.batches.iter().map(RecordBatch::num_rows).sum(),
                files: to_parquet_all(&part.batches, codecs)?,
                path: part.path,
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    Ok(Encoded {
        schema,
        rows: partitions.iter().map(|p| p.rows).sum(),
        partitions,
        layout,
        build_time: built - started,
        encode_time: built.elapsed(),
    })
}

/// How many values, spread evenly over a column, are sampled to choose its encoding.
const DICTIONARY_SAMPLE: usize = 1024;

/// The leaf columns of `batch` that a dictionary would make larger (ids, timestamps, free
/// text, measurements: mostly distinct values), written plain to save that size and the hash
/// per value a dictionary costs. Columns inside lists and maps keep the default.
fn plain_columns(batch: &RecordBatch) -> Vec<ColumnPath> {
    fn visit(path: &mut Vec<String>, array: &dyn Array, out: &mut Vec<ColumnPath>) {
        if let Some(strukt) = array.as_struct_opt() {
            for (field, child) in strukt.fields().iter().zip(strukt.columns()) {
                path.push(field.name().clone());
                visit(path, child.as_ref(), out);
                path.pop();
            }
        } else if plain_is_smaller(array) {
            out.push(ColumnPath::new(path.clone()));
        }
    }
    let mut out = Vec::new();
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        visit(&mut vec![field.name().clone()], column.as_ref(), &mut out);
    }
    out
}

/// Whether a column's values written plain take fewer bytes than a dictionary (each distinct
/// value once, plus a bit-packed index per value), judged from [`DICTIONARY_SAMPLE`] non-null
/// values spread over the column. Distinctness alone misjudges short strings: 1,000 values
/// repeated over 29,000 rows look mostly distinct in a sample of 1,024, yet their 10-bit
/// indices are far smaller than 4-byte lengths plus the values. False below 64 sampled
/// values, or for a type without fixed-width or string values.
fn plain_is_smaller(array: &dyn Array) -> bool {
    let data = array.to_data();
    let stride = data.len().div_ceil(DICTIONARY_SAMPLE).max(1);
    let rows = (0..data.len())
        .step_by(stride)
        .filter(|&i| data.is_valid(i));
    let mut seen: HashSet<&[u8]> = HashSet::with_capacity(DICTIONARY_SAMPLE);
    let mut sampled = 0;
    // Bytes of one plain value: 4 for a string's length, plus its bytes.
    let mut plain_bytes = 0;
    match data.data_type() {
        DataType::Utf8 | DataType::Binary => {
            let offsets = data.buffer::<i32>(0);
            let values = data.buffers()[1].as_slice();
            for i in rows {
                let value = &values[offsets[i] as usize..offsets[i + 1] as usize];
                plain_bytes += 4 + value.len();
                seen.insert(value);
                sampled += 1;
            }
        }
        DataType::Boolean => return false,
        other => {
            let Some(width) = other.primitive_width() else {
                return false;
            };
            let values = &data.buffers()[0].as_slice()[data.offset() * width..];
            for i in rows {
                seen.insert(&values[i * width..(i + 1) * width]);
                plain_bytes += width;
                sampled += 1;
            }
        }
    }
    if sampled < 64 {
        return false;
    }
    let values = data.len() - data.null_count();
    let distinct = estimated_distinct(seen.len(), sampled, values);
    let value_bytes = plain_bytes as f64 / sampled as f64;
    let index_bits = (usize::BITS - distinct.saturating_sub(1).leading_zeros()).max(1);
    let plain = values as f64 * value_bytes;
    let dictionary = distinct as f64 * value_bytes + values as f64 * f64::from(index_bits) / 8.0;
    plain < dictionary
}

/// The number of distinct values among `values` that would show `seen` distinct ones in a
/// sample of `sampled`, were they drawn uniformly: the `d` solving
/// `d * (1 - exp(-sampled / d)) = seen`, at most `values` (a sample with no repeat says every
/// value may differ).
fn estimated_distinct(seen: usize, sampled: usize, values: usize) -> usize {
    let expected_seen = |d: f64| d * (1.0 - (-(sampled as f64) / d).exp());
    let (mut low, mut high) = (seen.max(1), values.max(seen).max(1));
    if expected_seen(high as f64) <= seen as f64 {
        return high;
    }
    while low < high {
        let middle = low + (high - low) / 2;
        if expected_seen(middle as f64) < seen as f64 {
            low = middle + 1;
        } else {
            high = middle;
        }
    }
    low
}

/// Writer settings every reader we target accepts: lists in the spec's three-level form, our
/// `created_by`, Parquet 1.0 pages, dictionaries except for the `plain` columns, and min/max
/// statistics per column chunk. Pages end at 1 MB, not also every 20,000 rows, and there is no
/// page index: a file holds at most a 6 MB event in one row group, so most columns are one
/// page, whose page-index entry would only repeat the chunk's statistics (and made small
/// files larger than pyarrow's).
fn properties(codec: Codec, plain: &[ColumnPath], row_group: RowGroupSize) -> WriterProperties {
    let compression = crate::encode::recompress::compression(codec);
    let mut builder = WriterProperties::builder()
        .set_compression(compression)
        .set_coerce_types(true)
        .set_data_page_row_count_limit(usize::MAX)
        .set_statistics_enabled(EnabledStatistics::Chunk)
        .set_offset_index_disabled(true)
        .set_max_row_group_row_count(Some(row_group.rows))
        .set_max_row_group_bytes(row_group.bytes)
        .set_created_by(CREATED_BY.into());
    for path in plain {
        builder = builder.set_column_dictionary_enabled(path.clone(), false);
    }
    builder.build()
}

/// One complete Parquet file (a single row group up to 1 Mi rows) holding `batch`.
///
/// # Errors
/// `InvalidEvent` if Parquet cannot represent the batch (not expected for inferred schemas).
pub fn to_parquet(batch: &RecordBatch, codec: Codec) -> Result<Bytes, Error> {
    let mut files = to_parquet_all(std::slice::from_ref(batch), &[codec])?;
    Ok(files.remove(0).1)
}

/// One Parquet file of `batches` (one schema, at least one batch) in one row group: the file
/// `ArrowWriter` makes, byte for byte, with its columns encoded on two threads from
/// [`crate::rows::PARALLEL_ROWS`] rows (whole top-level columns to each, balanced by size).
fn write(batches: &[RecordBatch], codec: Codec, plain: &[ColumnPath]) -> Result<Bytes, Error> {
    let failed = |e| parquet_error(codec, e);
    let schema = batches[0].schema();
    let props = properties(codec, plain, RowGroupSize::WHOLE_EVENT);
    let (mut file, factory) = ArrowWriter::try_new(Vec::new(), schema.clone(), Some(props))
        .and_then(ArrowWriter::into_serialized_writer)
        .map_err(failed)?;
    let mut writers = factory
        .create_column_writers(0)
        .map_err(failed)?
        .into_iter();
    // Per top-level column: its size, and its leaves' writers, each with that leaf's values
    // from every batch.
    let mut columns: Vec<(usize, Vec<Leaf>)> = Vec::with_capacity(schema.fields().len());
    for (i, field) in schema.fields().iter().enumerate() {
        let mut leaves: Vec<Leaf> = Vec::new();
        let mut size = 0;
        for batch in batches {
            size += batch.column(i).get_array_memory_size();
            let values = compute_leaves(field, batch.column(i)).map_err(failed)?;
            for (n, values) in values.into_iter().enumerate() {
                if n == leaves.len() {
                    let writer = writers.next().expect("a writer for every leaf");
                    leaves.push((writer, Vec::new()));
                }
                leaves[n].1.push(values);
            }
        }
        columns.push((size, leaves));
    }
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let chunks = if rows < crate::rows::PARALLEL_ROWS || columns.len() < 2 {
        encode_columns(
            columns
                .into_iter()
                .map(|(_, leaves)| leaves)
                .enumerate()
                .collect(),
        )
    } else {
        // The largest columns first, each to the thread with less so far.
        let mut order: Vec<(usize, (usize, Vec<Leaf>))> = columns.into_iter().enumerate().collect();
        order.sort_by_key(|(_, (size, _))| std::cmp::Reverse(*size));
        let (mut first, mut second) = (Vec::new(), Vec::new());
        let (mut first_size, mut second_size) = (0, 0);
        for (i, (size, leaves)) in order {
            if first_size <= second_size {
                first_size += size;
                first.push((i, leaves));
            } else {
                second_size += size;
                second.push((i, leaves));
            }
        }
        std::thread::scope(|scope| {
            let other = scope.spawn(|| encode_columns(second));
            let mut chunks = encode_columns(first)?;
            chunks.extend(
                other
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))?,
            );
            chunks.sort_by_key(|(i, _)| *i);
            Ok(chunks)
        })
    }
    .map_err(failed)?;
    let mut row_group = file.next_row_group().map_err(failed)?;
    for (_, column) in chunks {
        for chunk in column {
            chunk.append_to_row_group(&mut row_group).map_err(failed)?;
        }
    }
    row_group.close().map_err(failed)?;
    Ok(Bytes::from(file.into_inner().map_err(failed)?))
}

/// A leaf column's writer, and its values from each batch.
type Leaf = (ArrowColumnWriter, Vec<ArrowLeafColumn>);

/// Encodes each `(index, leaves)` column: its chunks, under the same index.
fn encode_columns(
    columns: Vec<(usize, Vec<Leaf>)>,
) -> parquet::errors::Result<Vec<(usize, Vec<ArrowColumnChunk>)>> {
    columns
        .into_iter()
        .map(|(i, leaves)| {
            let chunks = leaves
                .into_iter()
                .map(|(mut writer, values)| {
                    for values in &values {
                        writer.write(values)?;
                    }
                    writer.close()
                })
                .collect::<parquet::errors::Result<_>>()?;
            Ok((i, chunks))
        })
        .collect()
}

fn parquet_error(codec: Codec, e: parquet::errors::ParquetError) -> Error {
    Error::InvalidEvent(format!(
        "the rows could not be written as Parquet ({}): {e}",
        codec.name()
    ))
}

/// When a file's row group is closed and the next begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowGroupSize {
    /// At most this many rows.
    pub rows: usize,
    /// At most about this many encoded bytes (`None`: no limit).
    pub bytes: Option<usize>,
}

impl RowGroupSize {
    /// An event's rows: one row group (a 6 MB event is far below 1 Mi rows).
    const WHOLE_EVENT: RowGroupSize = RowGroupSize {
        rows: 1 << 20,
        bytes: None,
    };

    /// A streamed source object: `ROW_GROUP_ROWS` rows, and at most 16 MiB encoded per codec
    /// (wide rows reach it first), so that the row groups being built for every codec stay
    /// within a 128 MB function.
    pub fn streamed(rows: usize) -> RowGroupSize {
        RowGroupSize {
            rows,
            bytes: Some(16 << 20),
        }
    }
}

/// The room reserved for a streamed file's finished bytes until they are taken: a part and a
/// row group fit, and the size is past the mmap threshold [`crate::lambda::memory`] sets (32 MiB), so
/// each buffer is its own mapping, returned whole when its part is sent, and never fragments
/// the heap; only the pages written to are resident.
const PART_BUFFER: usize = 33 << 20;

/// The default `ROW_GROUP_ROWS`: DuckDB's row group size, about 6 MB of the seed rows' JSON.
pub const ROW_GROUP_ROWS: usize = 122_880;

/// One Parquet file per distinct codec, written a row group at a time from a stream of
/// batches; whole row groups can be taken out as they are finished (a multipart upload's
/// parts), so a file of any size never sits in memory whole.
///
/// Each row group is encoded once, uncompressed; every other codec's file gets that row
/// group's pages compressed as soon as it is finished (see [`crate::encode::recompress`]).
pub struct StreamWriter {
    /// The one encoding; the uncompressed file itself when one was asked for.
    encoded: ArrowWriter<Vec<u8>>,
    /// Bytes of `encoded`'s file that have left its buffer.
    left: u64,
    /// Row groups of `encoded` already in every other file.
    recompressed: usize,
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
    /// batch) also decides which columns are written without a dictionary. `alone` says this
    /// is the only file being written per codec: it gets [`PART_BUFFER`] reserved, while
    /// the many small files of a partitioned stream grow theirs as they need.
    ///
    /// # Errors
    /// `InvalidEvent` if Parquet cannot represent the schema.
    pub fn new(
        first: &RecordBatch,
        codecs: &[Codec],
        row_group: RowGroupSize,
        alone: bool,
    ) -> Result<StreamWriter, Error> {
        let plain = plain_columns(first);
        let reserve = if alone { PART_BUFFER } else { 0 };
        let schema = first.schema();
        let props = properties(Codec::Uncompressed, &plain, row_group);
        // The Parquet schema ArrowWriter derives.
        let root = ArrowSchemaConverter::new()
            .with_coerce_types(props.coerce_types())
            .convert(&schema)
            .map_err(|e| parquet_error(Codec::Uncompressed, e))?
            .root_schema_ptr();
        let encoded =
            ArrowWriter::try_new(Vec::with_capacity(reserve), schema.clone(), Some(props))
                .map_err(|e| parquet_error(Codec::Uncompressed, e))?;
        let files = distinct(codecs)
            .into_iter()
            .map(|codec| {
                if codec == Codec::Uncompressed {
                    return Ok((codec, File::Encoded(Vec::new())));
                }
                // What ArrowWriter adds to its file: the Arrow schema, in the footer.
                let mut props = properties(codec, &plain, row_group);
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
            left: 0,
            recompressed: 0,
            files,
            reserve,
            rows: 0,
        })
    }

    /// Rows written so far.
    pub fn rows(&self) -> usize {
        self.rows
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
        self.encoded.memory_size() + self.encoded.inner().len() + waiting
    }

    /// Appends `batches` to every file.
    ///
    /// # Errors
    /// As [`to_parquet`].
    pub fn write(&mut self, batches: &[RecordBatch]) -> Result<(), Error> {
        for batch in batches {
            self.encoded
                .write(batch)
                .map_err(|e| parquet_error(Codec::Uncompressed, e))?;
        }
        self.rows += batches.iter().map(RecordBatch::num_rows).sum::<usize>();
        self.recompress_finished()
    }

    /// Every row group `encoded` has finished since the last call, compressed into every
    /// other file, one thread per codec; its uncompressed bytes then kept or dropped.
    fn recompress_finished(&mut self) -> Result<(), Error> {
        let groups = &self.encoded.flushed_row_groups()[self.recompressed..];
        if groups.is_empty() {
            return Ok(());
        }
        let groups = groups.to_vec();
        self.encoded
            .sync()
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
                        groups.iter().try_for_each(|group| {
                            crate::encode::recompress::append_row_group(
                                out,
                                group,
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
        self.recompressed += groups.len();
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
    /// As [`to_parquet`].
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
    /// As [`to_parquet`].
    pub fn finish(mut self) -> Result<Vec<(Codec, Bytes)>, Error> {
        self.encoded
            .flush()
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

/// `codecs` without repeats, in the order first asked for.
fn distinct(codecs: &[Codec]) -> Vec<Codec> {
    let mut distinct: Vec<Codec> = Vec::with_capacity(codecs.len());
    for &codec in codecs {
        if !distinct.contains(&codec) {
            distinct.push(codec);
        }
    }
    distinct
}

/// Encodes `batches` (one schema, at least one batch) once, into an uncompressed file, then
/// gives one file per distinct codec, in the order given: that file's pages compressed with
/// each codec, in parallel (see [`crate::encode::recompress`]).
///
/// # Errors
/// The first encoding error, as [`to_parquet`].
pub fn to_parquet_all(
    batches: &[RecordBatch],
    codecs: &[Codec],
) -> Result<Vec<(Codec, Bytes)>, Error> {
    let plain = &plain_columns(&batches[0]);
    let encoded = &write(batches, Codec::Uncompressed, plain)?;
    std::thread::scope(|scope| {
        let handles: Vec<_> = distinct(codecs)
            .into_iter()
            .map(|codec| {
                scope.spawn(move || {
                    let props = properties(codec, plain, RowGroupSize::WHOLE_EVENT);
                    crate::encode::recompress::recompress(encoded, codec, props)
                        .map(|file| (codec, file))
                        .map_err(|e| parquet_error(codec, e))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use arrow_array::StructArray;
    use arrow_array::types::{Float64Type, Int64Type};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::column::page::Page;
    use parquet::file::reader::{FileReader, SerializedFileReader};

    /// The batches built from `json` (an array of rows) with the inferred schema: one, or two
    /// halves from [`crate::rows::PARALLEL_ROWS`] rows.
    pub(crate) fn batches_of(json: &str) -> Vec<RecordBatch> {
        let event = format!(r#"{{"rows": {json}}}"#);
        let rows = crate::input::event::parse(event.as_bytes())
            .unwrap()
            .input
            .rows()
            .unwrap();
        let schema = crate::schema::inference::infer(&rows).unwrap();
        crate::encode::columns::build(&rows, schema, Default::default()).unwrap()
    }

    fn batch_of(json: &str) -> RecordBatch {
        batches_of(json).remove(0)
    }

    fn read_back(bytes: Bytes) -> (RecordBatch, parquet::file::metadata::ParquetMetaData) {
        let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).unwrap();
        let meta = builder.metadata().as_ref().clone();
        let mut batches: Vec<_> = builder.build().unwrap().collect::<Result<_, _>>().unwrap();
        assert_eq!(batches.len(), 1, "one batch expected for small inputs");
        (batches.remove(0), meta)
    }

    fn as_json(batch: &RecordBatch) -> String {
        let mut writer = arrow_json::ArrayWriter::new(Vec::new());
        writer.write(batch).unwrap();
        writer.finish().unwrap();
        String::from_utf8(writer.into_inner()).unwrap()
    }

    const MIXED: &str = r#"[
        {"name": "John Doe", "age": 30, "score": 1, "ok": true, "addr": {"zip": "10001", "geo": {"lat": 40.7}}, "tags": ["a", "b"]},
        {"name": "Zoë 🚀 \"quoted\"\n\ttab\u0001", "score": 2.5, "ok": null, "addr": null, "tags": []},
        {"age": -9223372036854775808, "addr": {"zip": null}, "tags": null, "extra": null}
    ]"#;

    #[test]
    fn every_codec_round_trips_values_and_records_its_codec() {
        let batch = batch_of(MIXED);
        for codec in Codec::ALL {
            let (back, meta) = read_back(to_parquet(&batch, codec).unwrap());
            assert_eq!(as_json(&back), as_json(&batch), "{codec:?}");
            for (read, written) in back.schema().fields().iter().zip(batch.schema().fields()) {
                assert_eq!(read.name(), written.name());
                // Lists are read back with Parquet's `element` name, so compare modulo names.
                assert!(
                    read.data_type().equals_datatype(written.data_type()),
                    "{read:?} vs {written:?}"
                );
            }
            let expected = match codec {
                Codec::Uncompressed => "UNCOMPRESSED",
                Codec::Snappy => "SNAPPY",
                Codec::Zstd => "ZSTD",
                Codec::Gzip => "GZIP",
                Codec::Lz4 => "LZ4_RAW",
                Codec::Brotli => "BROTLI",
            };
            for column in meta.row_group(0).columns() {
                let name = format!("{:?}", column.compression());
                assert!(name.starts_with(expected), "{codec:?}: {name}");
            }
            assert_eq!(meta.file_metadata().created_by(), Some(CREATED_BY));
            assert_eq!(meta.file_metadata().num_rows(), 3);
            assert_eq!(meta.num_row_groups(), 1);
        }
    }

    #[test]
    fn values_land_where_the_rows_put_them() {
        let batch = batch_of(MIXED);
        let col = |name: &str| batch.column_by_name(name).unwrap().clone();
        let name = col("name");
        assert_eq!(
            name.as_string::<i32>().value(1),
            "Zoë 🚀 \"quoted\"\n\ttab\u{1}"
        );
        assert!(name.is_null(2));
        let age = col("age");
        assert_eq!(age.as_primitive::<Int64Type>().value(2), i64::MIN);
        assert!(age.is_null(1));
        let score = col("score");
        let score_values = score.as_primitive::<Float64Type>();
        assert_eq!((score_values.value(0), score_values.value(1)), (1.0, 2.5));
        assert!(score.is_null(2));
        let addr = col("addr");
        let addr: &StructArray = addr.as_struct();
        assert!(addr.is_null(1) && addr.is_valid(2));
        assert!(addr.column_by_name("zip").unwrap().is_null(2));
        let tags = col("tags");
        let tags = tags.as_list::<i32>();
        assert_eq!(tags.value_length(0), 2);
        assert_eq!(tags.value_length(1), 0);
        assert!(tags.is_valid(1) && tags.is_null(2));
        assert_eq!(col("extra").null_count(), 3);
    }

    #[test]
    fn lists_use_the_three_level_element_form() {
        let bytes = to_parquet(&batch_of(r#"[{"tags": ["x"]}]"#), Codec::Snappy).unwrap();
        let (_, meta) = read_back(bytes);
        let path = meta
            .file_metadata()
            .schema_descr()
            .column(0)
            .path()
            .string();
        assert_eq!(path, "tags.list.element");
    }

    #[test]
    fn declared_types_survive_parquet_with_reader_friendly_logical_types() {
        let event = br#"{"rows": [{"d": "2026-11-27", "t": "2026-11-27T10:00:00Z", "p": "1.25", "i": 7, "m": {"k": 1}, "b": "aGk="}],
                         "schema": "d DATE, t TIMESTAMP, p DECIMAL(10,2), i INT NOT NULL, m MAP<STRING, BIGINT>, b BINARY"}"#;
        let event = crate::input::event::parse(event).unwrap();
        let encoded = rows_to_parquet(
            event.input.rows().unwrap(),
            event.schema,
            event.unknown_keys,
            &[Codec::Snappy],
            Partitioning::NONE,
        )
        .unwrap();
        let (back, meta) = read_back(encoded.partitions[0].files[0].1.clone());
        assert_eq!(back.schema().fields().len(), 6);
        for (read, written) in back.schema().fields().iter().zip(encoded.schema.fields()) {
            assert!(
                read.data_type().equals_datatype(written.data_type()),
                "{read:?} vs {written:?}"
            );
            assert_eq!(read.is_nullable(), written.is_nullable(), "{read:?}");
        }
        let descr = meta.file_metadata().schema_descr();
        let logical = |i: usize| format!("{:?}", descr.column(i).logical_type_ref());
        assert!(
            logical(1).contains("is_adjusted_to_u_t_c: true") && logical(1).contains("MICROS"),
            "{}",
            logical(1)
        );
        assert!(
            logical(2).contains("Decimal") && logical(2).contains("scale: 2"),
            "{}",
            logical(2)
        );
        assert_eq!(descr.column(4).path().string(), "m.key_value.key");
        // Min/max statistics in every column chunk, and no page index to repeat them.
        assert!(meta.row_group(0).columns().iter().all(|c| {
            c.statistics().is_some_and(|s| s.min_bytes_opt().is_some())
                && c.column_index_offset().is_none()
                && c.offset_index_offset().is_none()
        }));
        assert_eq!(
            as_json(&back),
            r#"[{"d":"2026-11-27","t":"2026-11-27T10:00:00Z","p":1.25,"i":7,"m":{"k":1},"b":"6869"}]"#
        );
    }

    #[test]
    fn columns_a_dictionary_would_enlarge_are_written_plain() {
        let rows: Vec<String> = (0..200)
            .map(|i| {
                format!(
                    r#"{{"id": {i}, "city": "c{}", "ok": true, "geo": {{"lat": {i}.5, "zone": {}}}, "tags": [{i}]}}"#,
                    i % 7,
                    i % 3
                )
            })
            .collect();
        let batch = batch_of(&format!("[{}]", rows.join(",")));
        let plain: Vec<String> = plain_columns(&batch).iter().map(|p| p.string()).collect();
        assert_eq!(plain, ["id", "geo.lat"]);

        let (back, meta) = read_back(to_parquet(&batch, Codec::Snappy).unwrap());
        assert_eq!(as_json(&back), as_json(&batch));
        let has_dictionary: Vec<(String, bool)> = meta
            .row_group(0)
            .columns()
            .iter()
            .map(|c| {
                (
                    c.column_path().string(),
                    c.dictionary_page_offset().is_some(),
                )
            })
            .collect();
        let expected = [
            ("id", false),
            ("city", true),
            ("ok", false),
            ("geo.lat", false),
            ("geo.zone", true),
            ("tags.list.element", true),
        ];
        let expected: Vec<(String, bool)> =
            expected.iter().map(|(p, d)| (p.to_string(), *d)).collect();
        assert_eq!(has_dictionary, expected);
        // Too few values to judge: the default (a dictionary) stays.
        assert!(plain_columns(&batch_of(r#"[{"id": 1}, {"id": 2}]"#)).is_empty());
    }

    #[test]
    fn short_strings_repeated_over_many_rows_keep_a_dictionary() {
        // 1,000 short codes in a scrambled order over 29,000 rows: a sample of 1,024 sees
        // about 640 of them (mostly distinct), yet a dictionary is much smaller than plain.
        let rows: Vec<String> = (0..29_000u64)
            .map(|i| {
                let code = i.wrapping_mul(2_654_435_761) % 1_000;
                format!(r#"{{"code": "x{code:x}", "serial": "x{i:x}"}}"#)
            })
            .collect();
        let batch = batch_of(&format!("[{}]", rows.join(",")));
        let plain: Vec<String> = plain_columns(&batch).iter().map(|p| p.string()).collect();
        assert_eq!(plain, ["serial"]);
        let snappy = |plain: &[ColumnPath]| {
            let props = properties(Codec::Snappy, plain, RowGroupSize::WHOLE_EVENT);
            let mut out = Vec::new();
            let mut writer = ArrowWriter::try_new(&mut out, batch.schema(), Some(props)).unwrap();
            writer.write(&batch).unwrap();
            writer.close().unwrap();
            out.len()
        };
        let [both_plain, chosen, both_dictionary] = [
            snappy(&[ColumnPath::from("code"), ColumnPath::from("serial")]),
            snappy(&[ColumnPath::from("serial")]),
            snappy(&[]),
        ];
        assert!(chosen < both_plain && chosen < both_dictionary);
    }

    #[test]
    fn distinct_values_are_estimated_from_the_sample() {
        assert_eq!(estimated_distinct(10, 1024, 29_000), 10);
        assert_eq!(estimated_distinct(1024, 1024, 29_000), 29_000);
        let thousand = estimated_distinct(641, 1024, 29_000);
        assert!((950..=1050).contains(&thousand), "{thousand}");
        // Never more than the values there are.
        assert_eq!(estimated_distinct(1000, 1024, 1024), 1024);
    }

    #[test]
    fn columns_encoded_on_two_threads_make_arrow_writers_file() {
        // Enough rows for two threads, in two built halves; columns of unequal sizes, nested
        // ones among them (a struct's two leaves stay together), nulls and a plain column.
        let rows = 2 * crate::rows::PARALLEL_ROWS + 3;
        let json: Vec<String> = (0..rows)
            .map(|i| {
                format!(
                    r#"{{"id": {i}, "city": "c{}", "note": {}, "geo": {{"lat": {i}.5, "zone": {}}}, "tags": [{i}, {}]}}"#,
                    i % 7,
                    if i % 5 == 0 { "null".to_owned() } else { format!(r#""a longer text {i}""#) },
                    i % 3,
                    i % 11
                )
            })
            .collect();
        let batches = batches_of(&format!("[{}]", json.join(",")));
        assert_eq!(batches.len(), 2, "built in two halves");
        let plain = plain_columns(&batches[0]);
        assert!(!plain.is_empty());
        for codec in [Codec::Uncompressed, Codec::Snappy] {
            let props = properties(codec, &plain, RowGroupSize::WHOLE_EVENT);
            let mut writer =
                ArrowWriter::try_new(Vec::new(), batches[0].schema(), Some(props)).unwrap();
            for batch in &batches {
                writer.write(batch).unwrap();
            }
            let expected = writer.into_inner().unwrap();
            let ours = write(&batches, codec, &plain).unwrap();
            assert!(ours == expected, "{codec:?}: not ArrowWriter's bytes");
        }
    }

    #[test]
    fn many_rows_are_built_in_two_halves_into_one_row_group_in_order() {
        // Past parquet-rs's default of 20,000 rows per page, too.
        let rows = 2 * crate::rows::PARALLEL_ROWS + 7;
        let json: Vec<String> = (0..rows).map(|i| format!(r#"{{"i": {i}}}"#)).collect();
        let event = format!(r#"{{"rows": [{}]}}"#, json.join(","));
        let event = crate::input::event::parse(event.as_bytes()).unwrap();
        let encoded = rows_to_parquet(
            event.input.rows().unwrap(),
            None,
            Default::default(),
            &[Codec::Snappy],
            Partitioning::NONE,
        )
        .unwrap();
        assert_eq!(encoded.rows, rows);
        let file = encoded.partitions[0].files[0].1.clone();
        let (back, meta) = {
            let builder = ParquetRecordBatchReaderBuilder::try_new(file.clone()).unwrap();
            let meta = builder.metadata().clone();
            let batches: Vec<_> = builder.build().unwrap().map(Result::unwrap).collect();
            (i_values(&batches), meta)
        };
        assert_eq!(meta.num_row_groups(), 1);
        assert!(back.iter().copied().eq(0..rows as i64));
        let file = SerializedFileReader::new(file).unwrap();
        let pages = file
            .get_row_group(0)
            .unwrap()
            .get_column_page_reader(0)
            .unwrap();
        let data_pages = pages
            .filter(|p| matches!(p, Ok(Page::DataPage { .. } | Page::DataPageV2 { .. })))
            .count();
        assert_eq!(data_pages, 1, "one data page of {rows} rows");

        // A bad value in each half: the first one is named, as one thread would.
        let mut json = json;
        json[3] = r#"{"i": "x"}"#.into();
        json[rows - 2] = r#"{"i": "x"}"#.into();
        let event = format!(r#"{{"rows": [{}], "schema": "i BIGINT"}}"#, json.join(","));
        let event = crate::input::event::parse(event.as_bytes()).unwrap();
        let err = rows_to_parquet(
            event.input.rows().unwrap(),
            event.schema,
            Default::default(),
            &[Codec::Snappy],
            Partitioning::NONE,
        )
        .unwrap_err();
        assert!(err.to_string().contains("at row 3:"), "{err}");
    }

    #[test]
    fn streamed_files_come_out_in_parts_that_join_into_one_valid_file() {
        let batch_from = |first: usize| {
            let json: Vec<String> = (first..first + 10_000)
                .map(|i| format!(r#"{{"i": {i}, "s": "row {i} of many"}}"#))
                .collect();
            batch_of(&format!("[{}]", json.join(",")))
        };
        let codecs = [Codec::Snappy, Codec::Uncompressed, Codec::Snappy];
        let mut writer = StreamWriter::new(
            &batch_from(0),
            &codecs,
            RowGroupSize::streamed(25_000),
            true,
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
        let plain = plain_columns(&batch_from(0));
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
            let props = properties(codec, &plain, RowGroupSize::streamed(25_000));
            let mut direct =
                ArrowWriter::try_new(Vec::new(), batch_from(0).schema(), Some(props)).unwrap();
            for first in (0..100_000).step_by(10_000) {
                direct.write(&batch_from(first)).unwrap();
            }
            assert!(direct.into_inner().unwrap() == files[i], "{codec:?}");
        }
    }

    /// The `i` column of every batch, in order.
    fn i_values(batches: &[RecordBatch]) -> Vec<i64> {
        batches
            .iter()
            .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
            .collect()
    }

    #[test]
    fn parallel_encoding_dedupes_codecs_and_keeps_order() {
        let batch = batch_of(r#"[{"a": 1}]"#);
        let out = to_parquet_all(
            std::slice::from_ref(&batch),
            &[Codec::Zstd, Codec::Snappy, Codec::Zstd],
        )
        .unwrap();
        let codecs: Vec<_> = out.iter().map(|(c, _)| *c).collect();
        assert_eq!(codecs, [Codec::Zstd, Codec::Snappy]);
        assert_eq!(out[1].1, to_parquet(&batch, Codec::Snappy).unwrap());
    }
}
