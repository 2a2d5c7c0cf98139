//! Every codec from one encoding: the rows are encoded once, into an uncompressed file, and
//! each other codec's file is that file's pages compressed and laid out again. The
//! dictionaries, the values, the levels and the statistics are the same in every file; only
//! compression runs per codec. parquet-rs's writers encode per writer, so this works below
//! them, with its public page reader, page writer and `append_column`.

use std::io::Write;
use std::sync::Arc;

use bytes::{Buf, Bytes};
use parquet::basic::Compression;
use parquet::column::page::{CompressedPage, Page, PageReader, PageWriter};
use parquet::column::writer::ColumnCloseResult;
use parquet::errors::ParquetError;
use parquet::file::metadata::{
    ColumnChunkMetaData, PageEncodingStats, ParquetMetaDataReader, RowGroupMetaData,
};
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

/// `file` (an uncompressed Parquet file, as [`crate::encode::writer`] writes it) with every page
/// compressed with `codec`: the same schema, row groups, encodings, statistics and key-value
/// metadata, each column chunk's compression, sizes and offsets updated. Uncompressed, the
/// file itself.
///
/// # Errors
/// What parquet-rs reports reading or writing the file (not expected for our own files).
pub fn recompress(
    file: &Bytes,
    codec: Codec,
    props: WriterProperties,
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
    for group in metadata.row_groups() {
        append_row_group(&mut out, group, file.clone(), 0, codec)?;
    }
    Ok(Bytes::from(out.into_inner()?))
}

/// Appends to `out` the row group `group` of an uncompressed file with its pages compressed
/// with `codec`. `bytes` are that file's bytes from offset `from` on (a streamed file's
/// earlier row groups have already left), holding at least the whole row group.
///
/// # Errors
/// As [`recompress`].
pub fn append_row_group<W: Write + Send>(
    out: &mut SerializedFileWriter<W>,
    group: &RowGroupMetaData,
    bytes: Bytes,
    from: u64,
    codec: Codec,
) -> Result<(), ParquetError> {
    let file = Arc::new(Tail { bytes, from });
    let mut writer = out.next_row_group()?;
    for chunk in group.columns() {
        let rows = group.num_rows();
        let pages = SerializedPageReader::new(file.clone(), chunk, rows as usize, None)?;
        let (bytes, close) = column_chunk(Box::new(pages), chunk, rows, codec)?;
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

/// One column chunk's pages compressed with `codec`, laid out from offset 0, and its metadata.
fn column_chunk(
    pages: Box<dyn PageReader>,
    chunk: &ColumnChunkMetaData,
    rows: i64,
    codec: Codec,
) -> Result<(Bytes, ColumnCloseResult), ParquetError> {
    let mut sink = TrackedWrite::new(Vec::with_capacity(chunk.compressed_size() as usize));
    let mut dictionary_offset = None;
    let mut data_offset = None;
    let (mut compressed, mut uncompressed) = (0, 0);
    // What the writer records, in file order: pages per (type, encoding), runs merged.
    let mut encoding_stats: Vec<PageEncodingStats> = Vec::new();
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
    let close = ColumnCloseResult {
        bytes_written: bytes.len() as u64,
        rows_written: rows as u64,
        metadata,
        bloom_filter: None,
        column_index: None,
        offset_index: None,
    };
    Ok((bytes, close))
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
    use parquet::file::properties::EnabledStatistics;

    /// The settings both ways of writing get.
    fn props(codec: Codec) -> WriterProperties {
        WriterProperties::builder()
            .set_compression(compression(codec))
            .set_statistics_enabled(EnabledStatistics::Chunk)
            .set_offset_index_disabled(true)
            .build()
    }

    /// What parquet-rs's own writer makes of `batch` with `codec`.
    fn direct(batch: &arrow_array::RecordBatch, codec: Codec) -> Bytes {
        let mut writer =
            ArrowWriter::try_new(Vec::new(), batch.schema(), Some(props(codec))).unwrap();
        writer.write(batch).unwrap();
        Bytes::from(writer.into_inner().unwrap())
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
        for codec in Codec::ALL {
            let again = recompress(&plain, codec, props(codec)).unwrap();
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
