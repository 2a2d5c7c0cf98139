//! A Rust AWS Lambda that turns a JSON event of rows, or an NDJSON or JSON object in S3 of any
//! size, into Parquet objects in S3: one object per target, each in its own codec
//! (uncompressed, Snappy, zstd, gzip, LZ4, Brotli), written all or none. It is invoked
//! directly or by S3 notifications, EventBridge and SQS.
//!
//! # Layout
//! By stage, in the order an invocation goes through them:
//! - `main.rs`: the thin `bootstrap`; builds [`lambda::config::Config`] and the S3 client once.
//! - [`lambda::runtime`]: the invocation's body as the Runtime API delivered it (before
//!   `lambda_runtime` would parse it).
//! - [`handler`]: one invocation end to end, the replies, and the Lambda `errorType` mapping.
//!
//! Input (no AWS types):
//! - [`trigger`]: what arrived: an event, an S3 or EventBridge notification, an SQS batch.
//! - [`event`]: the event contract (`rows` or `source`), validated once into typed values.
//! - [`json`]: a strict JSON scanner over the bytes (no value tree).
//! - [`rows`]: rows as a flat tape of JSON nodes, parsed in the same pass.
//! - [`source`]: a source object's format and compression, and the reader that cuts its bytes
//!   into chunks of whole rows.
//! - [`target`]: S3 prefixes, codecs, object keys and the allow-list policies.
//!
//! Schema (no AWS types):
//! - [`schema`]: type inference over all rows (at once, or chunk by chunk), the name rules.
//! - [`ddl`]: Spark DDL schemas in, Spark and Athena DDL out.
//! - [`convert`]: exact conversions to declared types (decimals, dates, timestamps, base64).
//!
//! Arrow and Parquet (no AWS types):
//! - [`columns`]: Arrow columns built straight from the tape.
//! - [`partition`]: `partition_by`: rows split into Hive folders (`dt=2024-01-01/`).
//! - [`encode`]: the batch to Parquet bytes per codec, whole or a row group at a time.
//! - [`recompress`]: every codec's file from one encoding (pages compressed again).
//!
//! S3 (the only AWS code):
//! - [`store`]: reads of source objects, checksummed PUTs, multipart uploads, and the
//!   all-or-nothing commit and clean-up.
//! - [`stream`]: a source object through reader, schema, columns and encoder into a
//!   transaction of multipart uploads.
//! - [`job`]: a Distributed Map job committed as a whole: the `_SUCCESS` marker from the map
//!   run's results.
//!
//! Around them: [`lambda::config`] (environment variables, read once, and logging), [`lambda::memory`] (the
//! allocator's settings for a small function), and [`Error`] (every failure, one variant per
//! `errorType`).

pub mod encode;
mod error;
pub mod handler;
pub mod input;
pub mod lambda;
pub mod rows;
pub mod schema;
pub mod store;

pub use error::Error;
