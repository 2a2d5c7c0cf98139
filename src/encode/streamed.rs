//! Parquet files written a row group at a time from a stream of batches, as a source object
//! is read: [`StreamWriter`].

use std::sync::Arc;

use arrow_array::RecordBatch;
use bytes::Bytes;
use parquet::arrow::{ArrowSchemaConverter, ArrowWriter, add_encoded_arrow_schema_to_metadata};
use parquet::file::writer::SerializedFileWriter;

use crate::Error;
use crate::encode::codec::Codec;
use crate::encode::dictionary::plain_columns;
use crate::encode::writer::{RowGroupSize, distinct, parquet_error, properties};

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
///
/// Kept whole: `write`, `take_ready` and `finish` are three short steps over the same list
/// of files, and the order of bytes between them is the point of the type.
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
    /// is the only file being written per codec: it gets `PART_BUFFER` reserved, while
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

    /// About the largest file's size so far: its finished row groups, with the row group in
    /// progress for the uncompressed encoding (the others' are added as it finishes).
    pub fn size(&self) -> u64 {
        let encoded = self.encoded.bytes_written() + self.encoded.in_progress_size();
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
        self.encoded.memory_size() + self.encoded.inner().len() + waiting
    }

    /// Appends `batches` to every file.
    ///
    /// # Errors
    /// As [`to_parquet`](crate::encode::writer::to_parquet).
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::writer::tests::{batches_of, i_values};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

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
}
