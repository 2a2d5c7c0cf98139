//! The conversion core (rows to one Arrow batch, built once) and the batch to Parquet bytes
//! per codec, whole: encoded once, uncompressed, on two threads, then every other codec's file
//! from its pages. A streamed source object's files, a row group at a time, are
//! [`crate::encode::streamed`]'s; which columns keep a dictionary,
//! [`crate::encode::dictionary`]'s.

use std::time::{Duration, Instant};

use arrow_array::{Array, RecordBatch};
use arrow_schema::SchemaRef;
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_writer::{
    ArrowColumnChunk, ArrowColumnWriter, ArrowLeafColumn, compute_leaves,
};
use parquet::file::page_index::column_index::ColumnIndexMetaData;
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterPropertiesBuilder};
use parquet::file::writer::SerializedRowGroupWriter;
use parquet::schema::types::ColumnPath;

use crate::Error;
use crate::encode::codec::Codec;
use crate::encode::columns::UnknownKeys;
use crate::encode::dictionary::plain_columns;
use crate::encode::partition::{self, Layout, PartitionBy};
use crate::encode::recompress::ChunkIndex;
use crate::encode::skipping::{BLOOM_FPP, Skipping};
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

/// How rows are laid out in files: split by `partition_by`, into at most `max` partitions, a
/// streamed file past about `max_file_bytes` continued in the next (`c001`), and within each
/// file sorted and given bloom filters as `skipping` says.
#[derive(Debug, Clone, Copy)]
pub struct Partitioning<'a> {
    pub by: Option<&'a PartitionBy>,
    pub max: usize,
    pub max_file_bytes: Option<u64>,
    pub skipping: &'a Skipping,
}

impl Partitioning<'_> {
    /// No `partition_by`: one file per codec.
    pub const NONE: Partitioning<'static> = Partitioning {
        by: None,
        max: 1,
        max_file_bytes: None,
        skipping: &Skipping::NONE,
    };
}

/// The least `max_file_bytes`: a streamed row group's bound in a 128 MB function. An event's
/// inline rows (at most Lambda's 6 MB payload) never make a file this large.
pub const MIN_FILE_BYTES: u64 = 16 << 20;

/// Parses a `max_file_bytes` value (a JSON number or an environment variable's text).
///
/// # Errors
/// What is wrong with it, for the caller to name where it came from.
///
/// ```
/// use rows_to_parquet::encode::writer::parse_max_file_bytes;
/// assert_eq!(parse_max_file_bytes("536870912"), Ok(512 << 20));
/// assert!(parse_max_file_bytes("1000").unwrap_err().contains("at least"));
/// ```
pub fn parse_max_file_bytes(text: &str) -> Result<u64, String> {
    let bytes: u64 = text
        .trim()
        .parse()
        .map_err(|_| format!("must be a whole number of bytes, not `{}`", text.trim()))?;
    match bytes >= MIN_FILE_BYTES {
        true => Ok(bytes),
        false => Err(format!(
            "must be at least {MIN_FILE_BYTES} (16 MiB), not {bytes}"
        )),
    }
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
    let skipping = partitioning.skipping;
    let partitions = parts
        .into_iter()
        .map(|part| {
            let batches = skipping.sorted_batches(part.batches)?;
            Ok(EncodedPartition {
                rows: batches.iter().map(RecordBatch::num_rows).sum(),
                files: to_parquet_all(&batches, codecs, skipping)?,
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

/// What is chosen per column from the rows: the columns written without a dictionary (see
/// [`crate::encode::dictionary`]), and those with a bloom filter, with the most distinct
/// values it may hold (see [`Skipping::bloom_columns`]).
#[derive(Debug, Default)]
pub(super) struct Columns {
    pub plain: Vec<ColumnPath>,
    pub bloom: Vec<(ColumnPath, u64)>,
}

impl Columns {
    /// The choices for `batches` (one schema, at least one batch).
    ///
    /// # Errors
    /// As [`Skipping::bloom_columns`].
    pub(super) fn of(batches: &[RecordBatch], skipping: &Skipping) -> Result<Columns, Error> {
        Ok(Columns {
            plain: plain_columns(&batches[0]),
            bloom: skipping.bloom_columns(batches)?,
        })
    }
}

/// The most rows in a data page: parquet-mr's default (`parquet.page.row.count.limit`).
pub const PAGE_ROWS: usize = 20_000;

/// Writer settings every reader we target accepts: lists in the spec's three-level form, our
/// `created_by`, Parquet 1.0 pages, dictionaries except for the `plain` columns, min/max
/// statistics per column chunk, and the page index (a column index of each page's min/max and
/// an offset index of where each page starts), which Trino, Spark and Athena read to skip
/// pages (see [`append_chunks`] for the column indexes left out). Pages end at 1 MiB or 20,000 rows, as parquet-mr's do, so a column of a large
/// file has pages to skip. The `columns.bloom` columns get a split-block bloom filter at
/// [`BLOOM_FPP`].
pub(super) fn properties(
    codec: Codec,
    columns: &Columns,
    row_group: RowGroupSize,
) -> WriterProperties {
    let compression = crate::encode::recompress::compression(codec);
    let mut builder = WriterProperties::builder()
        .set_compression(compression)
        .set_coerce_types(true)
        .set_data_page_row_count_limit(PAGE_ROWS)
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(row_group.rows))
        .set_max_row_group_bytes(row_group.bytes)
        .set_created_by(CREATED_BY.into());
    for path in &columns.plain {
        builder = builder.set_column_dictionary_enabled(path.clone(), false);
    }
    with_bloom_filters(builder, &columns.bloom).build()
}

/// Settings for an Iceberg table's data files: the same page index and pages, bloom filters
/// on the `bloom` columns, and the row groups iceberg-rust's writer sizes; with filters, a row
/// group holds no more rows than its filters are made for (each filter's memory is taken when
/// its row group starts, and a filter given more values than it was made for loses its
/// false-positive rate).
pub fn table_properties(codec: Codec, bloom: &[(ColumnPath, u64)]) -> WriterProperties {
    let mut builder = WriterProperties::builder()
        .set_compression(crate::encode::recompress::compression(codec))
        .set_data_page_row_count_limit(PAGE_ROWS)
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_created_by(CREATED_BY.into());
    if let Some(most) = bloom.iter().map(|(_, most)| *most).min() {
        builder = builder.set_max_row_group_row_count(Some(most.max(1) as usize));
    }
    with_bloom_filters(builder, bloom).build()
}

/// `builder` with a split-block bloom filter on each `bloom` column: sized for at most that
/// many distinct values at [`BLOOM_FPP`], and folded by parquet-rs, once the chunk is written,
/// to the smallest size that keeps that rate for the values it holds.
fn with_bloom_filters(
    mut builder: WriterPropertiesBuilder,
    bloom: &[(ColumnPath, u64)],
) -> WriterPropertiesBuilder {
    for (path, distinct) in bloom {
        builder = builder
            .set_column_bloom_filter_enabled(path.clone(), true)
            .set_column_bloom_filter_ndv(path.clone(), *distinct)
            .set_column_bloom_filter_fpp(path.clone(), BLOOM_FPP);
    }
    builder
}

/// One complete Parquet file (a single row group up to 1 Mi rows) holding `batch`.
///
/// # Errors
/// `InvalidEvent` if Parquet cannot represent the batch (not expected for inferred schemas).
pub fn to_parquet(batch: &RecordBatch, codec: Codec) -> Result<Bytes, Error> {
    let mut files = to_parquet_all(std::slice::from_ref(batch), &[codec], &Skipping::NONE)?;
    Ok(files.remove(0).1)
}

/// One Parquet file of `batches` (one schema, at least one batch) in one row group: the file
/// `ArrowWriter` makes, byte for byte, with its columns encoded on two threads from
/// [`crate::rows::PARALLEL_ROWS`] rows (whole top-level columns to each, balanced by size);
/// and what each leaf column's writer gathered, for the other codecs' files.
fn write(
    batches: &[RecordBatch],
    codec: Codec,
    columns: &Columns,
) -> Result<(Bytes, Vec<ChunkIndex>), Error> {
    let failed = |e| parquet_error(codec, e);
    let schema = batches[0].schema();
    let props = properties(codec, columns, RowGroupSize::WHOLE_EVENT);
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
    let chunks = chunks.into_iter().flat_map(|(_, column)| column);
    let indexes = append_chunks(&mut row_group, chunks).map_err(failed)?;
    row_group.close().map_err(failed)?;
    Ok((Bytes::from(file.into_inner().map_err(failed)?), indexes))
}

/// Appends `chunks` (a row group's leaf columns, in order) to `row_group`, keeping what each
/// one's writer gathered. A column index whose pages all have the same min and max (a chunk of
/// one page, a column of a few values spread over every page) is left out: it would only
/// repeat the chunk's statistics. The offset index is always written.
pub(super) fn append_chunks<W: std::io::Write + Send>(
    row_group: &mut SerializedRowGroupWriter<'_, W>,
    chunks: impl IntoIterator<Item = ArrowColumnChunk>,
) -> parquet::errors::Result<Vec<ChunkIndex>> {
    chunks
        .into_iter()
        .map(|mut chunk| {
            let close = chunk.close_mut();
            if close.column_index.as_ref().is_some_and(repeats_the_chunk) {
                close.column_index = None;
            }
            let index = ChunkIndex::of(chunk.close());
            chunk.append_to_row_group(row_group)?;
            Ok(index)
        })
        .collect()
}

/// Whether every page in `index` has the same min and max, none of them all nulls.
fn repeats_the_chunk(index: &ColumnIndexMetaData) -> bool {
    fn same<T: PartialEq>(values: impl IntoIterator<Item = T>) -> bool {
        let mut values = values.into_iter();
        let first = values.next();
        values.all(|v| Some(v) == first)
    }
    let pages = index.num_pages() as usize;
    if (0..pages).any(|p| index.is_null_page(p)) {
        return false;
    }
    macro_rules! bounds {
        ($index:expr) => {
            same($index.min_values_iter()) && same($index.max_values_iter())
        };
    }
    match index {
        ColumnIndexMetaData::NONE => false,
        ColumnIndexMetaData::BOOLEAN(i) => bounds!(i),
        ColumnIndexMetaData::INT32(i) => bounds!(i),
        ColumnIndexMetaData::INT64(i) => bounds!(i),
        ColumnIndexMetaData::INT96(i) => bounds!(i),
        ColumnIndexMetaData::FLOAT(i) => bounds!(i),
        ColumnIndexMetaData::DOUBLE(i) => bounds!(i),
        ColumnIndexMetaData::BYTE_ARRAY(i) => bounds!(i),
        ColumnIndexMetaData::FIXED_LEN_BYTE_ARRAY(i) => bounds!(i),
    }
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

pub(super) fn parquet_error(codec: Codec, e: parquet::errors::ParquetError) -> Error {
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

    /// A streamed source object: at most `rows` rows (`ROW_GROUP_ROWS`) and about `bytes`
    /// encoded per codec (`ROW_GROUP_BYTES`), whichever comes first.
    pub fn streamed(rows: usize, bytes: usize) -> RowGroupSize {
        RowGroupSize {
            rows,
            bytes: Some(bytes),
        }
    }
}

/// The row group size Athena advises and parquet-mr writes: a streamed row group's default
/// where the function's memory allows it.
pub const ROW_GROUP_BYTES: usize = 128 << 20;

/// The least `row_group_bytes` may be.
pub const MIN_ROW_GROUP_BYTES: usize = 1 << 20;

/// The most a streamed row group may hold in a function of `memory_mb` MB: an eighth of it
/// (16 MiB at 128 MB, 128 MiB from 1,024 MB). The row group in progress, its compressed
/// copies, the open files of other partitions and the parts being uploaded fit beside it.
///
/// ```
/// use rows_to_parquet::encode::writer::{ROW_GROUP_BYTES, row_group_bytes_most};
/// assert_eq!(row_group_bytes_most(128), 16 << 20);
/// assert_eq!(row_group_bytes_most(1024).min(ROW_GROUP_BYTES), 128 << 20);
/// ```
pub fn row_group_bytes_most(memory_mb: usize) -> usize {
    (memory_mb << 20) / 8
}

/// A streamed row group's size when neither the event nor `ROW_GROUP_BYTES` gives one:
/// [`ROW_GROUP_BYTES`], or a sixteenth of the function's memory when that is less (8 MiB at
/// 128 MB, 64 MiB at 1,024 MB, 128 MiB from 2,048 MB). Half the most: at 128 MB, row groups of
/// 16 MiB raised a streamed file's peak RSS from about 60 to 72-81 MiB (`bench/stream.py`)
/// for no less CPU.
///
/// ```
/// use rows_to_parquet::encode::writer::row_group_bytes_default;
/// assert_eq!(row_group_bytes_default(128), 8 << 20);
/// assert_eq!(row_group_bytes_default(10_240), 128 << 20);
/// ```
pub fn row_group_bytes_default(memory_mb: usize) -> usize {
    ROW_GROUP_BYTES.min(row_group_bytes_most(memory_mb) / 2)
}

/// `row_group_bytes` as an event or `ROW_GROUP_BYTES` gives it, for a function of `memory_mb`
/// MB.
///
/// # Errors
/// Why not, for the caller's message: not a whole number, under 1 MiB, or more than
/// [`row_group_bytes_most`].
///
/// ```
/// use rows_to_parquet::encode::writer::parse_row_group_bytes;
/// assert_eq!(parse_row_group_bytes("8388608", 128), Ok(8 << 20));
/// assert!(parse_row_group_bytes("134217728", 128).unwrap_err().contains("128 MB"));
/// ```
pub fn parse_row_group_bytes(text: &str, memory_mb: usize) -> Result<usize, String> {
    let bytes: usize = text
        .trim()
        .parse()
        .map_err(|_| format!("must be a whole number of bytes, not `{}`", text.trim()))?;
    let most = row_group_bytes_most(memory_mb);
    if bytes < MIN_ROW_GROUP_BYTES {
        return Err(format!(
            "must be at least {MIN_ROW_GROUP_BYTES} (1 MiB), not {bytes}"
        ));
    }
    if bytes > most {
        return Err(format!(
            "{bytes} is more than a function of {memory_mb} MB can build (at most {most}, an eighth of its memory): give it more memory or ask for less"
        ));
    }
    Ok(bytes)
}

/// `codecs` without repeats, in the order first asked for.
pub(super) fn distinct(codecs: &[Codec]) -> Vec<Codec> {
    let mut distinct: Vec<Codec> = Vec::with_capacity(codecs.len());
    for &codec in codecs {
        if !distinct.contains(&codec) {
            distinct.push(codec);
        }
    }
    distinct
}

/// Encodes `batches` (one schema, at least one batch, in the order to write) once, into an
/// uncompressed file, then gives one file per distinct codec, in the order given: that file's
/// pages compressed with each codec, in parallel (see [`crate::encode::recompress`]).
/// `skipping`'s bloom filters are written; its order is the caller's to make.
///
/// # Errors
/// The first encoding error, as [`to_parquet`]; a bad bloom filter column, as
/// [`Skipping::bloom_columns`].
pub fn to_parquet_all(
    batches: &[RecordBatch],
    codecs: &[Codec],
    skipping: &Skipping,
) -> Result<Vec<(Codec, Bytes)>, Error> {
    let columns = &Columns::of(batches, skipping)?;
    let (encoded, indexes) = &write(batches, Codec::Uncompressed, columns)?;
    let indexes = std::slice::from_ref(indexes);
    std::thread::scope(|scope| {
        let handles: Vec<_> = distinct(codecs)
            .into_iter()
            .map(|codec| {
                scope.spawn(move || {
                    let props = properties(codec, columns, RowGroupSize::WHOLE_EVENT);
                    crate::encode::recompress::recompress(encoded, codec, props, indexes)
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
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float64Type, Int64Type};
    use parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
    use parquet::column::page::Page;
    use parquet::file::metadata::PageIndexPolicy;
    use parquet::file::reader::{FileReader, SerializedFileReader};

    /// The batches built from `json` (an array of rows) with the inferred schema: one, or two
    /// halves from [`crate::rows::PARALLEL_ROWS`] rows.
    pub(crate) fn batches_of(json: &str) -> Vec<RecordBatch> {
        let rows = crate::rows::rows_of(json);
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
        // Min/max statistics in every column chunk and the offset index; no column index for
        // chunks of one page, which would only repeat the statistics.
        assert!(meta.row_group(0).columns().iter().all(|c| {
            c.statistics().is_some_and(|s| s.min_bytes_opt().is_some())
                && c.column_index_offset().is_none()
                && c.offset_index_offset().is_some()
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
            let columns = Columns {
                plain: plain.to_vec(),
                bloom: Vec::new(),
            };
            let props = properties(Codec::Snappy, &columns, RowGroupSize::WHOLE_EVENT);
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
    fn columns_encoded_on_two_threads_make_arrow_writers_file() {
        // Enough rows for two threads, in two built halves; columns of unequal sizes, nested
        // ones among them (a struct's two leaves stay together), nulls and a plain column.
        // Every column's pages have bounds of their own, so every chunk keeps its column
        // index, as ArrowWriter's do (the ones left out are `many_rows_...`'s).
        let rows = 2 * crate::rows::PARALLEL_ROWS + 3;
        let json: Vec<String> = (0..rows)
            .map(|i| {
                format!(
                    r#"{{"id": {i}, "city": "c{}", "note": {}, "geo": {{"lat": {i}.5, "zone": {}}}, "tags": [{i}, {}]}}"#,
                    i / 3_000,
                    if i % 5 == 0 { "null".to_owned() } else { format!(r#""a longer text {i}""#) },
                    i / 2_000,
                    i % 11
                )
            })
            .collect();
        let batches = batches_of(&format!("[{}]", json.join(",")));
        assert_eq!(batches.len(), 2, "built in two halves");
        // With a bloom filter too, for the rows of both halves.
        let skipping = Skipping::parse(Some(r#"["id", "geo.zone"]"#), None).unwrap();
        let columns = Columns::of(&batches, &skipping).unwrap();
        assert!(!columns.plain.is_empty());
        let bloom: Vec<_> = columns
            .bloom
            .iter()
            .map(|(p, n)| (p.string(), *n))
            .collect();
        assert_eq!(
            bloom,
            [("id".into(), rows as u64), ("geo.zone".into(), rows as u64)]
        );
        for codec in [Codec::Uncompressed, Codec::Snappy] {
            let props = properties(codec, &columns, RowGroupSize::WHOLE_EVENT);
            let mut writer =
                ArrowWriter::try_new(Vec::new(), batches[0].schema(), Some(props)).unwrap();
            for batch in &batches {
                writer.write(batch).unwrap();
            }
            let expected = writer.into_inner().unwrap();
            let (ours, _) = write(&batches, codec, &columns).unwrap();
            assert!(ours == expected, "{codec:?}: not ArrowWriter's bytes");
        }
    }

    #[test]
    fn many_rows_are_built_in_two_halves_into_one_row_group_in_order() {
        let rows = 2 * crate::rows::PARALLEL_ROWS + 7;
        let json: Vec<String> = (0..rows)
            .map(|i| format!(r#"{{"i": {i}, "c": {}}}"#, i % 3))
            .collect();
        let array = format!("[{}]", json.join(","));
        let encoded = rows_to_parquet(
            crate::rows::rows_of(&array),
            None,
            Default::default(),
            &[Codec::Snappy],
            Partitioning::NONE,
        )
        .unwrap();
        assert_eq!(encoded.rows, rows);
        let file = encoded.partitions[0].files[0].1.clone();
        let (back, meta) = {
            let options =
                ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Required);
            let builder =
                ParquetRecordBatchReaderBuilder::try_new_with_options(file.clone(), options)
                    .unwrap();
            let meta = builder.metadata().clone();
            let batches: Vec<_> = builder.build().unwrap().map(Result::unwrap).collect();
            (i_values(&batches), meta)
        };
        assert_eq!(meta.num_row_groups(), 1);
        assert!(back.iter().copied().eq(0..rows as i64));
        // Pages of PAGE_ROWS rows, each in the Snappy file's offset index at its own place
        // and in the column index with its own min and max.
        let file = SerializedFileReader::new(file).unwrap();
        let pages = file
            .get_row_group(0)
            .unwrap()
            .get_column_page_reader(0)
            .unwrap();
        let data_pages = pages
            .filter(|p| matches!(p, Ok(Page::DataPage { .. } | Page::DataPageV2 { .. })))
            .count();
        assert_eq!(data_pages, rows.div_ceil(PAGE_ROWS));
        let locations = meta.offset_index().unwrap()[0][0].page_locations();
        // A page ends at the first write batch (1,024 rows) past PAGE_ROWS.
        let second = locations[1].first_row_index;
        assert_eq!(locations[0].first_row_index, 0);
        assert!((PAGE_ROWS as i64..PAGE_ROWS as i64 + 1024).contains(&second));
        let chunk = meta.row_group(0).column(0);
        assert_eq!(locations[0].offset, chunk.data_page_offset());
        let end = chunk.byte_range().0 + chunk.byte_range().1;
        let last = locations[1].offset + i64::from(locations[1].compressed_page_size);
        assert_eq!(last as u64, end);
        let ColumnIndexMetaData::INT64(index) = &meta.column_index().unwrap()[0][0] else {
            panic!("an INT64 column index");
        };
        let bounds: Vec<_> = (0..2)
            .map(|page| {
                (
                    *index.min_value(page).unwrap(),
                    *index.max_value(page).unwrap(),
                )
            })
            .collect();
        assert_eq!(bounds, [(0, second - 1), (second, rows as i64 - 1)]);
        // `c` has the same min and max on every page: its column index is left out.
        assert!(matches!(
            meta.column_index().unwrap()[0][1],
            ColumnIndexMetaData::NONE
        ));
        assert!(meta.row_group(0).column(1).column_index_offset().is_none());
        assert_eq!(meta.offset_index().unwrap()[0][1].page_locations().len(), 2);

        // A bad value in each half: the first one is named, as one thread would.
        let mut json = json;
        json[3] = r#"{"i": "x"}"#.into();
        json[rows - 2] = r#"{"i": "x"}"#.into();
        let event = format!(
            r#"{{"rows": [{}], "schema": "i BIGINT, c BIGINT"}}"#,
            json.join(",")
        );
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

    /// The `i` column of every batch, in order.
    pub(crate) fn i_values(batches: &[RecordBatch]) -> Vec<i64> {
        batches
            .iter()
            .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
            .collect()
    }

    #[test]
    fn table_row_groups_hold_no_more_rows_than_their_filters_are_made_for() {
        let plain = table_properties(Codec::Zstd, &[]);
        let bloom = [(ColumnPath::from("id"), 500), (ColumnPath::from("k"), 900)];
        let filtered = table_properties(Codec::Zstd, &bloom);
        assert_eq!(filtered.max_row_group_row_count(), Some(500));
        assert!(plain.max_row_group_row_count() > Some(500));
        let id = ColumnPath::from("id");
        assert_eq!(
            filtered.bloom_filter_properties(&id).map(|p| p.ndv),
            Some(500)
        );
        assert!(plain.bloom_filter_properties(&id).is_none());
    }

    #[test]
    fn parallel_encoding_dedupes_codecs_and_keeps_order() {
        let batch = batch_of(r#"[{"a": 1}]"#);
        let out = to_parquet_all(
            std::slice::from_ref(&batch),
            &[Codec::Zstd, Codec::Snappy, Codec::Zstd],
            &Skipping::NONE,
        )
        .unwrap();
        let codecs: Vec<_> = out.iter().map(|(c, _)| *c).collect();
        assert_eq!(codecs, [Codec::Zstd, Codec::Snappy]);
        assert_eq!(out[1].1, to_parquet(&batch, Codec::Snappy).unwrap());
    }
}
