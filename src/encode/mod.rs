//! The encode stage: rows into Arrow columns and Arrow into Parquet bytes, one file per codec
//! (no AWS types; uses the rows and the schema stages).
//!
//! - [`codec`]: the compression codecs a target can ask for.
//! - [`columns`]: Arrow columns built straight from the tape.
//! - [`partition`]: `partition_by`: rows split into Hive folders (`dt=2024-01-01/`).
//! - [`writer`]: the batch to Parquet bytes per codec, whole (inline rows).
//! - [`streamed`]: Parquet files a row group at a time (a source object, as it is read).
//! - [`dictionary`]: which columns are written plain rather than with a dictionary.
//! - [`recompress`]: every codec's file from one encoding (pages compressed again).
//! - [`skipping`]: `bloom_filter_columns` and `sort_by`, which let readers skip.

pub mod codec;
pub mod columns;
pub mod dictionary;
pub mod partition;
pub mod recompress;
pub mod skipping;
pub mod streamed;
pub mod writer;
