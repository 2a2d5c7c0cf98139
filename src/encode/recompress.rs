//! Every codec from one encoding: the rows are encoded once, into an uncompressed file, and
//! each other codec's file is that file's pages compressed and laid out again. The
//! dictionaries, the values, the levels and the statistics are the same in every file; only
//! compression runs per codec. parquet-rs's writers encode per writer, so this works below
//! them, with its public page reader, page writer and `append_column`. What the encoding's
//! column writers gathered beside the pages (the column index, the bloom filter) is carried
//! over as it is, and the offset index is laid out again for the compressed pages.

use std::io::Write;
use std::sync::Arc;

use bytes::{Buf, Bytes};
use parquet::basic::Compression;
use parquet::bloom_filter::Sbbf;
use parquet::column::page::{CompressedPage, Page, PageReader, PageWriter};
use parquet::column::writer::ColumnCloseResult;
use parquet::errors::ParquetError;
use parquet::file::metadata::{
    ColumnChunkMetaData, PageEncodingStats, ParquetMetaDataReader, RowGroupMetaData,
};
use parquet::file::page_index::column_index::ColumnIndexMetaData;
use parquet::file::page_index::offset_index::{OffsetIndexMetaData, PageLocation};
use parquet::file::properties::WriterProperties;
use parquet::file::reader::{ChunkReader, Length};
use parquet::file::serialized_reader::SerializedPageReader;
use parquet::file::statistics::Statistics;
use parquet::file::writer::{SerializedFileWriter, SerializedPageWriter, TrackedWrite};

use crate::encode::codec::Codec;

/// Levels as parquet-rs's defaults (the writer's settings elsewhere): zstd 1, gzip 6,
/// brotli 1.
const ZSTD_LEVEL: i32 = 1;
const GZIP_LEVEL: u32 = 6;
const BROTLI_LEVEL: u32 = 1;

/// What a column chunk's writer gathered beside its pages, which the footer (not the pages)
/// holds and a reader of the pages cannot see until the file is closed: every codec's copy of
/// the chunk carries it.
#[derive(Debug, Clone)]
pub struct ChunkIndex {
    pub column_index: Option<ColumnIndexMetaData>,
    pub offset_index: Option<OffsetIndexMetaData>,
    pub bloom_filter: Option<Sbbf>,
}

impl ChunkIndex {
    /// What `close` (a column chunk just written) gathered.
    pub fn of(close: &ColumnCloseResult) -> ChunkIndex {
        ChunkIndex {
            column_index: close.column_index.clone(),
            offset_index: close.offset_index.clone(),
            bloom_filter: close.bloom_filter.clone(),
        }
    }
}

/// `file` (an uncompressed Parquet file, as [`crate::encode::writer`] writes it) with every page
/// compressed with `codec`: the same schema, row groups, encodings, statistics, page index,
/// bloom filters and key-value metadata, each column chunk's compression, sizes and offsets
/// updated. `indexes` holds, per row group and leaf column, what its writer gathered.
/// Uncompressed, the file itself.
///
/// # Errors
/// What parquet-rs reports reading or writing the file (not expected for our own files).
pub fn recompress(
    file: &Bytes,
    codec: Codec,
    props: WriterProperties,
    indexes: &[Vec<ChunkIndex>],
) -> Result<Bytes, ParquetError> {
    if codec == Codec::Uncompressed {
        return Ok(file.clone());
    }
    let metadata = ParquetMetaDataReader::new().parse_and_finish(file)?;
    let schema = metadata.file_metadata().schema_descr().root_schema_ptr();
    let mut out =
        SerializedFileWriter::new(Vec::with_capacity(file.len() / 2), schema, Arc::new(props))?;
    for kv in metadata
        .file_metadata()
        .key_value_metadata()
        .into_iter()
        .flatten()
    {
        out.append_key_value_metadata(kv.clone());
    }
    for (group, indexes) in metadata.row_groups().iter().zip(indexes) {
        append_row_group(&mut out, group, indexes, file.clone(), 0, codec)?;
    }
    Ok(Bytes::from(out.into_inner()?))
}

/// Appends to `out` the row group `group` of an uncompressed file with its pages compressed
/// with `codec`; `indexes` holds what each of its leaf columns' writers gathered. `bytes` are
/// that file's bytes from offset `from` on (a streamed file's earlier row groups have already
/// left), holding at least the whole row group.
///
/// # Errors
/// As [`recompress`].
pub fn append_row_group<W: Write + Send>(
    out: &mut SerializedFileWriter<W>,
    group: &RowGroupMetaData,
    indexes: &[ChunkIndex],
    bytes: Bytes,
    from: u64,
    codec: Codec,
) -> Result<(), ParquetError> {
    if indexes.len() != group.columns().len() {
        return Err(ParquetError::General(format!(
            "{} column indexes for {} column chunks",
            indexes.len(),
            group.columns().len()
        )));
    }
    let file = Arc::new(Tail { bytes, from });
    let mut writer = out.next_row_group()?;
    for (chunk, index) in group.columns().iter().zip(indexes) {
        let rows = group.num_rows();
        let pages = SerializedPageReader::new(file.clone(), chunk, rows as usize, None)?;
        let (bytes, close) = column_chunk(Box::new(pages), chunk, index, rows, codec)?;
        writer.append_column(&bytes, close)?;
    }
    writer.close()?;
    Ok(())
}

/// A file's bytes from offset `from` on, read at the file's own offsets.
struct Tail {
    bytes: Bytes,
    from: u64,
}

impl Tail {
    fn range(&self, start: u64, len: usize) -> Result<std::ops::Range<usize>, ParquetError> {
        start
            .checked_sub(self.from)
            .map(|at| at as usize..at as usize + len)
            .filter(|range| range.end <= self.bytes.len())
            .ok_or_else(|| {
                ParquetError::EOF(format!("offset {start} is not in this part of the file"))
            })
    }
}

impl Length for Tail {
    fn len(&self) -> u64 {
        self.from + self.bytes.len() as u64
    }
}

impl ChunkReader for Tail {
    type T = bytes::buf::Reader<Bytes>;

    fn get_read(&self, start: u64) -> Result<Self::T, ParquetError> {
        let at = self.range(start, 0)?.start;
        Ok(self.bytes.slice(at..).reader())
    }

    fn get_bytes(&self, start: u64, length: usize) -> Result<Bytes, ParquetError> {
        Ok(self.bytes.slice(self.range(start, length)?))
    }
}

/// One column chunk's pages compressed with `codec`, laid out from offset 0, and its metadata:
/// `index` carried over, its offset index (when it has one) giving the new pages' places.
fn column_chunk(
    pages: Box<dyn PageReader>,
    chunk: &ColumnChunkMetaData,
    index: &ChunkIndex,
    rows: i64,
    codec: Codec,
) -> Result<(Bytes, ColumnCloseResult), ParquetError> {
    let mut sink = TrackedWrite::new(Vec::with_capacity(chunk.compressed_size() as usize));
    let mut dictionary_offset = None;
    let mut data_offset = None;
    let (mut compressed, mut uncompressed) = (0, 0);
    // What the writer records, in file order: pages per (type, encoding), runs merged.
    let mut encoding_stats: Vec<PageEncodingStats> = Vec::new();
    // Each data page's offset and size, header included, in this layout.
    let mut locations: Vec<(i64, i32)> = Vec::new();
    {
        let mut writer = SerializedPageWriter::new(&mut sink);
        for page in pages {
            let page = compress_page(page?, codec)?;
            let is_dictionary = matches!(page.compressed_page(), Page::DictionaryPage { .. });
            match encoding_stats.last_mut() {
                Some(last)
                    if last.page_type == page.page_type() && last.encoding == page.encoding() =>
                {
                    last.count += 1
                }
                _ => encoding_stats.push(PageEncodingStats {
                    page_type: page.page_type(),
                    encoding: page.encoding(),
                    count: 1,
                }),
            }
            let spec = writer.write_page(page)?;
            let offset = Some(spec.offset as i64);
            if is_dictionary {
                dictionary_offset = dictionary_offset.or(offset);
            } else {
                data_offset = data_offset.or(offset);
                locations.push((spec.offset as i64, spec.compressed_size as i32));
            }
            compressed += spec.compressed_size as i64;
            uncompressed += spec.uncompressed_size as i64;
        }
        writer.close()?;
    }
    let bytes = Bytes::from(sink.into_inner()?);
    let mut metadata = chunk.clone().into_builder();
    if let Some(statistics) = chunk.statistics() {
        // Reading cannot tell whether the deprecated min/max were written; the writer writes
        // them for signed sort orders.
        let signed = chunk.column_descr().sort_order().is_signed();
        metadata = metadata.set_statistics(backwards_compatible(statistics.clone(), signed));
    }
    let metadata = metadata
        .set_page_encoding_stats(encoding_stats)
        .set_compression(compression(codec))
        .set_total_compressed_size(compressed)
        .set_total_uncompressed_size(uncompressed)
        .set_dictionary_page_offset(dictionary_offset)
        .set_data_page_offset(data_offset.unwrap_or_default())
        .set_index_page_offset(None)
        .build()?;
    let offset_index = index
        .offset_index
        .as_ref()
        .map(|encoded| relocated(encoded, &locations))
        .transpose()?;
    let close = ColumnCloseResult {
        bytes_written: bytes.len() as u64,
        rows_written: rows as u64,
        metadata,
        bloom_filter: index.bloom_filter.clone(),
        column_index: index.column_index.clone(),
        offset_index,
    };
    Ok((bytes, close))
}

/// `encoded` (the offset index of the uncompressed chunk) with its pages at `locations`
/// (offset, size with header): the same pages, so the same first rows.
fn relocated(
    encoded: &OffsetIndexMetaData,
    locations: &[(i64, i32)],
) -> Result<OffsetIndexMetaData, ParquetError> {
    let pages = encoded.page_locations();
    if pages.len() != locations.len() {
        return Err(ParquetError::General(format!(
            "an offset index of {} pages for {} data pages",
            pages.len(),
            locations.len()
        )));
    }
    Ok(OffsetIndexMetaData {
        page_locations: pages
            .iter()
            .zip(locations)
            .map(|(page, &(offset, compressed_page_size))| PageLocation {
                offset,
                compressed_page_size,
                first_row_index: page.first_row_index,
            })
            .collect(),
        unencoded_byte_array_data_bytes: encoded.unencoded_byte_array_data_bytes().cloned(),
    })
}

/// `statistics` with the deprecated `min`/`max` fields written too when `signed`.
fn backwards_compatible(statistics: Statistics, signed: bool) -> Statistics {
    match statistics {
        Statistics::Boolean(s) => Statistics::Boolean(s.with_backwards_compatible_min_max(signed)),
        Statistics::Int32(s) => Statistics::Int32(s.with_backwards_compatible_min_max(signed)),
        Statistics::Int64(s) => Statistics::Int64(s.with_backwards_compatible_min_max(signed)),
        Statistics::Int96(s) => Statistics::Int96(s.with_backwards_compatible_min_max(signed)),
        Statistics::Float(s) => Statistics::Float(s.with_backwards_compatible_min_max(signed)),
        Statistics::Double(s) => Statistics::Double(s.with_backwards_compatible_min_max(signed)),
        Statistics::ByteArray(s) => {
            Statistics::ByteArray(s.with_backwards_compatible_min_max(signed))
        }
        Statistics::FixedLenByteArray(s) => {
            Statistics::FixedLenByteArray(s.with_backwards_compatible_min_max(signed))
        }
    }
}

/// The page with its buffer compressed (a version 1 page compresses its levels and values
/// together, as our writer's pages are).
fn compress_page(page: Page, codec: Codec) -> Result<CompressedPage, ParquetError> {
    let size = page.buffer().len();
    let buf = Bytes::from(compress(codec, page.buffer())?);
    let page = match page {
        Page::DictionaryPage {
            num_values,
            encoding,
            is_sorted,
            ..
        } => Page::DictionaryPage {
            buf,
            num_values,
            encoding,
            is_sorted,
        },
        Page::DataPage {
            num_values,
            encoding,
            def_level_encoding,
            rep_level_encoding,
            statistics,
            ..
        } => Page::DataPage {
            buf,
            num_values,
            encoding,
            def_level_encoding,
            rep_level_encoding,
            statistics,
        },
        Page::DataPageV2 { .. } => {
            return Err(ParquetError::General(
                "version 2 data pages are not recompressed (the writer writes version 1)".into(),
            ));
        }
    };
    Ok(CompressedPage::new(page, size))
}

/// Parquet's compression of `codec` (`LZ4_RAW` for lz4).
pub fn compression(codec: Codec) -> Compression {
    use parquet::basic::{BrotliLevel, GzipLevel, ZstdLevel};
    match codec {
        Codec::Uncompressed => Compression::UNCOMPRESSED,
        Codec::Snappy => Compression::SNAPPY,
        Codec::Zstd => Compression::ZSTD(ZstdLevel::try_new(ZSTD_LEVEL).expect("a valid level")),
        Codec::Gzip => Compression::GZIP(GzipLevel::try_new(GZIP_LEVEL).expect("a valid level")),
        Codec::Lz4 => Compression::LZ4_RAW,
        Codec::Brotli => {
            Compression::BROTLI(BrotliLevel::try_new(BROTLI_LEVEL).expect("a valid level"))
        }
    }
}

/// `input` compressed in the framing Parquet specifies for `codec`, as parquet-rs frames it.
fn compress(codec: Codec, input: &[u8]) -> Result<Vec<u8>, ParquetError> {
    let external = |e: std::io::Error| ParquetError::External(Box::new(e));
    Ok(match codec {
        Codec::Uncompressed => input.to_vec(),
        Codec::Snappy => snap::raw::Encoder::new()
            .compress_vec(input)
            .map_err(|e| ParquetError::External(Box::new(e)))?,
        Codec::Zstd => zstd::bulk::compress(input, ZSTD_LEVEL).map_err(external)?,
        Codec::Gzip => {
            let mut encoder = flate2::write::GzEncoder::new(
                Vec::with_capacity(input.len() / 2),
                flate2::Compression::new(GZIP_LEVEL),
            );
            encoder.write_all(input).map_err(external)?;
            encoder.finish().map_err(external)?
        }
        Codec::Lz4 => lz4_flex::block::compress(input),
        Codec::Brotli => {
            let mut out = Vec::with_capacity(input.len() / 2);
            {
                let mut encoder = brotli::CompressorWriter::new(&mut out, 4096, BROTLI_LEVEL, 22);
                encoder.write_all(input).map_err(external)?;
                encoder.flush().map_err(external)?;
            }
            out
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use parquet::arrow::ArrowWriter;
    use parquet::file::metadata::PageIndexPolicy;
    use parquet::file::properties::EnabledStatistics;
    use parquet::schema::types::ColumnPath;

    /// The settings both ways of writing get: small pages (several per chunk, so the offset
    /// index has pages to place), the page index and a bloom filter on `id`.
    fn props(codec: Codec) -> WriterProperties {
        WriterProperties::builder()
            .set_compression(compression(codec))
            .set_statistics_enabled(EnabledStatistics::Page)
            .set_data_page_row_count_limit(1_000)
            .set_column_bloom_filter_enabled(ColumnPath::from("id"), true)
            .build()
    }

    /// What parquet-rs's own writer makes of `batch` with `codec`.
    fn direct(batch: &arrow_array::RecordBatch, codec: Codec) -> Bytes {
        let mut writer =
            ArrowWriter::try_new(Vec::new(), batch.schema(), Some(props(codec))).unwrap();
        writer.write(batch).unwrap();
        Bytes::from(writer.into_inner().unwrap())
    }

    /// The page index and bloom filters of `file`'s column chunks, as their writers gathered
    /// them.
    fn indexes_of(file: &Bytes) -> Vec<Vec<ChunkIndex>> {
        let meta = ParquetMetaDataReader::new()
            .with_page_index_policy(PageIndexPolicy::Required)
            .parse_and_finish(file)
            .unwrap();
        let (columns, offsets) = (meta.column_index().unwrap(), meta.offset_index().unwrap());
        let chunks = |(g, group): (usize, &RowGroupMetaData)| {
            let index = |(c, chunk): (usize, &ColumnChunkMetaData)| ChunkIndex {
                column_index: Some(columns[g][c].clone())
                    .filter(|i| !matches!(i, ColumnIndexMetaData::NONE)),
                offset_index: Some(offsets[g][c].clone()),
                bloom_filter: Sbbf::read_from_column_chunk(chunk, file).unwrap(),
            };
            group.columns().iter().enumerate().map(index).collect()
        };
        meta.row_groups().iter().enumerate().map(chunks).collect()
    }

    #[test]
    fn recompressed_files_are_byte_for_byte_what_the_writer_makes_with_that_codec() {
        let rows: Vec<String> = (0..5_000)
            .map(|i| {
                format!(
                    r#"{{"id": {i}, "city": "c{}", "note": {}, "tags": ["t{}"], "geo": {{"lat": {i}.5}}}}"#,
                    i % 7,
                    if i % 3 == 0 { "null".to_string() } else { format!("\"n{}\"", i % 11) },
                    i % 5
                )
            })
            .collect();
        let batch =
            crate::encode::writer::tests::batches_of(&format!("[{}]", rows.join(","))).remove(0);
        let plain = direct(&batch, Codec::Uncompressed);
        let indexes = indexes_of(&plain);
        assert!(indexes[0][0].bloom_filter.is_some() && indexes[0][1].bloom_filter.is_none());
        assert!(
            indexes[0][0]
                .offset_index
                .as_ref()
                .unwrap()
                .page_locations()
                .len()
                == 5
        );
        for codec in Codec::ALL {
            let again = recompress(&plain, codec, props(codec), &indexes).unwrap();
            let want = direct(&batch, codec);
            assert!(
                again == want,
                "{codec:?}: {} bytes, the writer's {}",
                again.len(),
                want.len()
            );
        }
    }
}
